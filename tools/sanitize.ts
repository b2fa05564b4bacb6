/**
 * The test suites under sanitizers, each in a build directory of its own (swift/.build-<name>, which
 * also holds the logs, sanitize-*.log).
 *
 *   deno task sanitize asan    # swift test with AddressSanitizer (Swift and C) + UndefinedBehaviorSanitizer (C)
 *   deno task sanitize tsan    # swift test with ThreadSanitizer
 *   deno task sanitize deno    # the Deno tests' native calls through an ASan+UBSan build of the library
 *   deno task sanitize         # all three
 *   deno task sanitize asan --skip EngineConcurrencyTests   # what CI runs: that suite alone takes
 *                              # minutes under ASan (MetalCompat's fibers); the full run is the command above
 *
 * A configuration fails when a test fails or any sanitizer report appears in the output (UBSan and TSan
 * reports do not always fail the process). Leak checking is off for swift test: XCTest on Linux never
 * frees its test cases. The fuzz driver (deno task fuzz) checks leaks per input instead.
 * `deno` preloads the ASan runtime into Deno (LD_PRELOAD) and points MAMBA_METAL_LIB at the instrumented
 * library; tools/sanitize_preload.ts (deno test --preload) keeps the runtime out of the children that are
 * not Deno (nvcc's device compiler crashes with it); tests/distribution.test.ts is left out (it builds
 * the library with swift, which must not run with the runtime preloaded), and the resident-memory
 * assertions are relaxed by MAMBA_SANITIZER=asan (ASan's quarantine holds freed memory on purpose).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { dirname } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const SWIFT = `${ROOT}swift`;
/** Text that means a sanitizer found something, even where the process still exited 0. */
const REPORT =
  /ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer|ERROR: LeakSanitizer|SUMMARY: \w+Sanitizer/;

interface Config {
  scratch: string;
  flags: string[];
  env: Record<string, string>;
}

const CONFIGS: Record<"asan" | "tsan", Config> = {
  asan: {
    scratch: `${SWIFT}/.build-asan`,
    flags: ["--sanitize=address", "-Xcc", "-fsanitize=undefined"],
    env: { ASAN_OPTIONS: "detect_leaks=0", UBSAN_OPTIONS: "halt_on_error=1:print_stacktrace=1" },
  },
  tsan: {
    scratch: `${SWIFT}/.build-tsan`,
    flags: ["--sanitize=thread"],
    env: { TSAN_OPTIONS: "halt_on_error=0" },
  },
};

async function run(cmd: string, args: string[], env: Record<string, string>, log: string): Promise<boolean> {
  console.error(`$ ${cmd} ${args.join(" ")}`);
  const child = new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped", cwd: ROOT }).spawn();
  // the log sits in the scratch folder, which a fresh clone does not have before its first build
  await Deno.mkdir(dirname(log), { recursive: true });
  const file = await Deno.open(log, { write: true, create: true, truncate: true });
  // stdout and stderr into one log as they come, chunk by chunk in arrival order
  let written = Promise.resolve();
  await Promise.all([child.stdout, child.stderr].map(async (stream) => {
    for await (const chunk of stream) {
      written = written.then(async () => {
        for (let n = 0; n < chunk.length;) n += await file.write(chunk.subarray(n));
      });
    }
  }));
  await written;
  file.close();
  const { success } = await child.status;
  const text = Deno.readTextFileSync(log);
  const report = text.split("\n").findIndex((l) => REPORT.test(l));
  if (report >= 0) {
    console.error(text.split("\n").slice(Math.max(0, report - 5), report + 40).join("\n"));
    return false;
  }
  if (!success) console.error(text.split("\n").slice(-40).join("\n"));
  return success;
}

/** swift test under one configuration. */
async function swiftTest(name: "asan" | "tsan", skip: string[]): Promise<boolean> {
  const c = CONFIGS[name];
  const common = ["--package-path", SWIFT, "--scratch-path", c.scratch, ...c.flags];
  if (!await run("swift", ["build", "--build-tests", ...common], {}, `${c.scratch}/sanitize-build.log`)) {
    return false;
  }
  const skips = skip.flatMap((s) => ["--skip", s]);
  return await run(
    "swift",
    ["test", "--skip-build", ...common, ...skips],
    c.env,
    `${c.scratch}/sanitize-test.log`,
  );
}

/** The Deno tests against an optimised ASan+UBSan build of the library. */
async function denoTests(): Promise<boolean> {
  const c = CONFIGS.asan;
  const build = ["build", "-c", "release", "--package-path", SWIFT, "--scratch-path", c.scratch, ...c.flags];
  if (!await run("swift", [...build, "--product", "MambaMetal"], {}, `${c.scratch}/sanitize-build.log`)) {
    return false;
  }
  const clang = await new Deno.Command("swiftc", { args: ["-print-target-info"], stdout: "piped" }).output();
  const resource = JSON.parse(new TextDecoder().decode(clang.stdout)).paths.runtimeResourcePath as string;
  const runtime = `${resource}/clang/lib/linux/libclang_rt.asan-x86_64.so`;
  const tests = [...Deno.readDirSync(`${ROOT}tests`)]
    .filter((e) => e.name.endsWith(".test.ts") && e.name !== "distribution.test.ts")
    .map((e) => `tests/${e.name}`).sort();
  return await run("deno", ["test", "-A", "--preload", `${ROOT}tools/sanitize_preload.ts`, ...tests], {
    ...c.env,
    // Stack-use-after-return detection (on by default since LLVM 15) gives every MetalCompat fiber a fresh
    // fake stack, mapped and faulted in as the fiber starts and dropped as it exits: about 10 s per step
    // of the tiny model, so the Metal tests (thousands of steps) ran for hours. Off here, 300 ms per step;
    // `sanitize asan` (swift test) keeps it on.
    ASAN_OPTIONS: `${c.env.ASAN_OPTIONS}:detect_stack_use_after_return=0`,
    LD_PRELOAD: runtime,
    MAMBA_ASAN_RUNTIME: runtime, // for sanitize_preload.ts: Deno children get LD_PRELOAD back
    MAMBA_METAL_LIB: `${c.scratch}/release/libMambaMetal.so`,
    MAMBA_SANITIZER: "asan",
  }, `${c.scratch}/sanitize-deno.log`);
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { skip: { type: "string", multiple: true, default: [] } },
  });
  const which = positionals.length > 0 ? positionals : ["asan", "tsan", "deno"];
  let ok = true;
  for (const w of which) {
    const started = performance.now();
    const passed = w === "deno"
      ? await denoTests()
      : w === "asan" || w === "tsan"
      ? await swiftTest(w, values.skip!)
      : null;
    if (passed === null) throw new Error(`sanitize: unknown configuration "${w}" (asan, tsan, deno)`);
    console.log(`${passed ? "ok  " : "FAIL"} ${w} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    ok &&= passed;
  }
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
