/**
 * Preloaded into `deno test` by `deno task sanitize deno` (tools/sanitize.ts): keeps the ASan runtime,
 * which Deno needs preloaded to load the instrumented library, out of the programs the tests spawn
 * that are not Deno.
 *
 * Why: LD_PRELOAD is inherited by every child, and the runtime preloaded into a program not built for it
 * can break that program. NVIDIA's device compiler (`cicc`, run by `nvcc`) ends in a segmentation fault
 * with it, so the two nvcc tests of tests/gpu_proxy.test.ts failed under the sanitizer and nowhere else.
 * This process has loaded the runtime already, so the variable is removed from its environment, and
 * `Deno.Command` puts it back only for children that are this Deno (tests that run a script against the
 * instrumented library, named by MAMBA_METAL_LIB, which cannot be loaded without the runtime first).
 * Workaround for a test harness: nothing outside the sanitizer run imports this file.
 *
 * @module
 */

const runtime = Deno.env.get("MAMBA_ASAN_RUNTIME");
if (runtime) {
  // each test module may run this again: MAMBA_ASAN_RUNTIME stays, LD_PRELOAD is gone after the first
  Deno.env.delete("LD_PRELOAD");
  const Command = Deno.Command;
  if (!(Command as { keepsAsanForDeno?: boolean }).keepsAsanForDeno) {
    /** Deno.Command with the runtime preloaded into Deno children only. */
    class CommandKeepingAsan extends Command {
      static keepsAsanForDeno = true;
      constructor(command: string | URL, options: Deno.CommandOptions = {}) {
        const path = command instanceof URL ? command.pathname : command;
        super(
          command,
          path === Deno.execPath() && !options.clearEnv
            ? { ...options, env: { LD_PRELOAD: runtime!, ...options.env } }
            : options,
        );
      }
    }
    Deno.Command = CommandKeepingAsan;
  }
}
