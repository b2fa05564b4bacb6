// The cost of crossing into the native library from Deno: an empty call, and a decode step of the
// tiniest fixture model (one thread, so that the step itself is a few microseconds of arithmetic and
// no thread hand-off). tools/bench_report.ts times the same two calls from C (tools/native_step_bench.c)
// and reports the difference.
import { MambaEngine } from "../mod.ts";
import { openLibrary } from "../ffi/library.ts";

const lib = openLibrary();
const FIXTURE = new URL("../tests/fixtures/tiny-g1", import.meta.url).pathname;
const engine = MambaEngine.loadSync(FIXTURE, { backend: "cpu", threads: 1 });
const tokens = new Int32Array([5]);

Deno.bench({
  name: "ffi: empty call (mamba_abi_version)",
  group: "ffi",
  baseline: true,
  fn() {
    lib.symbols.mamba_abi_version();
  },
});

Deno.bench({
  name: "ffi: engine.step() on tiny-g1, 1 thread",
  group: "ffi",
  fn() {
    engine.step(tokens);
    tokens[0] = (tokens[0] * 31 + 7) % 100;
  },
});
