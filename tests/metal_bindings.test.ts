// MetalCompat binding generator: the checked-in generated files are current, staleness is detected,
// and kernel signatures are read (or rejected) as documented in tools/metal_bindings/parse.ts.

import { staleOutputs, writeOutputs } from "../tools/gen_metal_bindings.ts";
import { sourceHash } from "../tools/metal_bindings/hash.ts";
import { parseMetal } from "../tools/metal_bindings/parse.ts";
import { cppView } from "../tools/metal_bindings/transform.ts";
import { emitBindings } from "../tools/metal_bindings/emit_bindings.ts";
import { swiftLiteral } from "../tools/metal_bindings/emit_swift.ts";

const repoRoot = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

function assert(cond: unknown, message = "assertion failed"): asserts cond {
  if (!cond) throw new Error(message);
}

function assertEquals<T>(actual: T, expected: T, message = "") {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}\n  actual:   ${a}\n  expected: ${e}`);
}

function assertThrows(fn: () => unknown, includes: string) {
  try {
    fn();
  } catch (e) {
    const m = e instanceof Error ? e.message : String(e);
    assert(m.includes(includes), `error "${m}" does not mention "${includes}"`);
    return;
  }
  throw new Error(`expected an error mentioning "${includes}"`);
}

Deno.test("generated MetalCompat bindings are up to date (gen_metal_bindings.ts --check)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}/tools/gen_metal_bindings.ts`, "--check"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert(out.code === 0, `stale bindings:\n${err}`);
});

Deno.test("a .metal file changed without regenerating is reported stale", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/metal`);
    const kernel = `#include <metal_stdlib>
using namespace metal;
kernel void k(device float* x [[buffer(0)]], uint i [[thread_position_in_grid]]) { x[i] = 1.0f; }
`;
    await Deno.writeTextFile(`${root}/metal/a.metal`, kernel);
    await writeOutputs(root);
    assertEquals(await staleOutputs(root), []);

    await Deno.writeTextFile(`${root}/metal/a.metal`, kernel.replace("1.0f", "2.0f"));
    const stale = await staleOutputs(root);
    for (const p of ["a.metal.h", "a.cpp"]) {
      assert(stale.includes(`swift/Sources/MetalKernelsCPU/generated/${p}`), p);
    }
    assert(stale.includes("swift/Sources/MambaMetal/Generated/MetalSources.swift"));
    assert(
      !stale.includes("swift/Sources/MambaMetal/Generated/KernelBindings.swift"),
      "a body change leaves the bindings as they were",
    );
    await Deno.writeTextFile(`${root}/metal/a.metal`, kernel.replace("[[buffer(0)]]", "[[buffer(1)]]"));
    assert(
      (await staleOutputs(root)).includes("swift/Sources/MambaMetal/Generated/KernelBindings.swift"),
      "a signature change makes the host's bindings stale",
    );

    await writeOutputs(root);
    await Deno.remove(`${root}/metal/a.metal`);
    const stray = await staleOutputs(root);
    assert(
      stray.includes("swift/Sources/MetalKernelsCPU/generated/a.cpp"),
      "outputs of a removed file are stray",
    );
    await writeOutputs(root);
    assertEquals(await staleOutputs(root), []);
    const swift = await Deno.readTextFile(`${root}/swift/Sources/MambaMetal/Generated/MetalSources.swift`);
    assert(
      swift.includes("static let files: [(name: String, source: String)] = []"),
      "empty metal/ gives an empty list",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a header beside the .metal files is inlined where sources are embedded, and tracked", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/metal`);
    await Deno.writeTextFile(`${root}/metal/shared.h`, "inline float twice(float v) { return 2.0f * v; }\n");
    const kernel = `#include <metal_stdlib>
using namespace metal;
#include "shared.h"
kernel void k(device float* x [[buffer(0)]], uint i [[thread_position_in_grid]]) { x[i] = twice(x[i]); }
`;
    await Deno.writeTextFile(`${root}/metal/a.metal`, kernel);
    await writeOutputs(root);
    const swift = await Deno.readTextFile(`${root}/swift/Sources/MambaMetal/Generated/MetalSources.swift`);
    assert(swift.includes("inline float twice(float v)"), "the header's text is embedded");
    assert(!swift.includes('#include "shared.h"'), "makeLibrary(source:) sees no local include");
    assert(swift.includes('#line 4 "metal/a.metal"'), "messages after the header point into a.metal");
    const view = await Deno.readTextFile(`${root}/swift/Sources/MetalKernelsCPU/generated/a.metal.h`);
    assert(view.includes("inline float twice(float v)"), "the C++ copy has it too");

    await Deno.writeTextFile(`${root}/metal/shared.h`, "inline float twice(float v) { return v + v; }\n");
    const stale = await staleOutputs(root);
    for (const p of ["MetalKernelsCPU/generated/a.cpp", "MambaMetal/Generated/MetalSources.swift"]) {
      assert(stale.includes(`swift/Sources/${p}`), `a header change makes ${p} stale`);
    }
    await Deno.writeTextFile(
      `${root}/metal/a.metal`,
      kernel.replace('#include "shared.h"', '#include "shared.h"\n#include "shared.h"'),
    );
    let message = "";
    await writeOutputs(root).catch((e) => message = e.message);
    assert(message.includes('metal/a.metal:4: "shared.h" is included twice'), message);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("kernel signatures: buffers, threadgroup memory, positions, constants, templates", () => {
  const src = `#include <metal_stdlib>
using namespace metal;
#define IDX_OUT 3
constant bool HAS_B [[function_constant(0)]];
constant float S [[function_constant(1)]];
constant bool USE_S = is_function_constant_defined(S);
struct P { uint n; };
inline float helper(threadgroup float* t, uint i) { return t[i]; }
[[max_total_threads_per_threadgroup(256)]]
kernel void first(device const float* a [[buffer(0)]],
                  device const float* b [[buffer(1), function_constant(HAS_B)]],
                  constant P& p [[buffer(2)]],
                  device vec<float, 4>* out [[buffer(IDX_OUT)]],
                  threadgroup float* t [[ threadgroup(0) ]],
                  ushort2 tid [[thread_position_in_threadgroup]],
                  uint w [[thread_execution_width]]) {
  threadgroup float* alias = t + 1;
  out[0] = float4(helper(alias, tid.x) + (USE_S ? S : 0.0f));
}
template <typename T>
kernel void gen(device T* x [[buffer(0)]], uint i [[thread_position_in_grid]]) { x[i] = T(0); }
template [[host_name("gen_f32")]] kernel void gen<float>(device float*, uint);
template [[host_name("gen_f16")]] kernel decltype(gen<half>) gen<half>;
`;
  const parsed = parseMetal(src, "t.metal");
  assertEquals(parsed.kernels.map((k) => [k.name, k.callee, k.maxTotalThreads]), [
    ["first", "first", 256],
    ["gen_f32", "gen<float>", 0],
    ["gen_f16", "gen<half>", 0],
  ]);
  assertEquals(parsed.kernels[0].params.map((p) => p.binding), [
    { kind: "buffer", index: 0 },
    { kind: "buffer", index: 1, condition: "HAS_B" },
    { kind: "buffer", index: 2 },
    { kind: "buffer", index: 3 },
    { kind: "threadgroup", index: 0 },
    { kind: "position", attribute: "thread_position_in_threadgroup" },
    { kind: "position", attribute: "threads_per_simdgroup" },
  ]);
  assertEquals(parsed.constants.map((c) => [c.name, c.type, c.index]), [["HAS_B", "bool", 0], [
    "S",
    "float",
    1,
  ]]);
  assertEquals(parsed.derived.map((d) => d.name), ["USE_S"]);

  const view = cppView(src, parsed, "metal/t.metal");
  assertEquals(view.split("\n").length, src.split("\n").length + 1, "the C++ view keeps lines (plus #line)");
  assert(view.includes("[[ mc_threadgroup_index(0) ]]"), "threadgroup attribute renamed");
  assert(view.includes("#define USE_S ((bool)(is_function_constant_defined ( S )))"), view);
});

Deno.test("host bindings: constants and arguments by name, optional inputs as Optionals", () => {
  const src = `#include <metal_stdlib>
using namespace metal;
constant bool HAS_B [[function_constant(0)]];  // b is bound
constant float S [[function_constant(3)]];
constant bool USE_S = is_function_constant_defined(S);
kernel void first_kernel(device const float* a [[buffer(0)]],          // the input
                         device const float* b [[buffer(1), function_constant(HAS_B)]],
                         device float* out [[buffer(4)]],
                         threadgroup float* tile [[threadgroup(2)]],
                         uint i [[thread_position_in_grid]]) { out[i] = a[i] + (USE_S ? S : 0.0f); }
`;
  const swift = emitBindings("Kernel", [{
    stem: "t",
    displayPath: "metal/t.metal",
    parsed: parseMetal(src, "t.metal"),
  }]);
  for (
    const line of [
      "struct TConstants: FunctionConstants {",
      "/// b is bound",
      "let HAS_B: Bool",
      "let S: Float?", // tested with is_function_constant_defined: may be left unset
      "enum ID: Int { case HAS_B = 0, S = 3 }",
      "enum FirstKernel: KernelBinding {",
      'static let function = "first_kernel"',
      "enum Buffer: Int { case a = 0, b = 1, out = 4 }",
      "enum Threadgroup: Int { case tile = 2 }",
      "/// `device const float* a`: the input",
      "let a: KernelBuffer",
      "let b: KernelBuffer?",
      "let tile: Int",
      "if let b = self.b { sink.setBuffer(b.buffer, offset: b.offset, index: Buffer.b.rawValue) }",
      "sink.setThreadgroupMemory(self.tile, index: Threadgroup.tile.rawValue)",
      "static let maxBufferBindCount = 5",
      "static let maxThreadgroupMemoryBindCount = 3",
    ]
  ) assert(swift.includes(line), `missing: ${line}\n${swift}`);
  assert(!swift.includes("let i:"), "position parameters are not arguments");
  const vector = "constant float4 V [[function_constant(0)]];\n";
  assertThrows(
    () =>
      emitBindings("Kernel", [{
        stem: "v",
        displayPath: "metal/v.metal",
        parsed: parseMetal(vector, "v.metal"),
      }]),
    "function constant 'V' has type 'float4', which the Swift bindings do not support yet",
  );
  const clash = "kernel void t_constants(device float* x [[buffer(0)]]) {}\n";
  assertThrows(
    () =>
      emitBindings("Kernel", [{
        stem: "t",
        displayPath: "metal/t.metal",
        parsed: parseMetal(clash, "t.metal"),
      }]),
    "would both be the Swift type Kernel.TConstants",
  );
});

Deno.test("unsupported kernel code is rejected with a clear message", () => {
  const head = "#include <metal_stdlib>\nusing namespace metal;\n";
  const cases: [string, string][] = [
    [
      "kernel void k(device float* x [[buffer(0)]], uint i [[thread_index_in_threadgroup]]) {\n" +
      "  threadgroup float tile[64];\n  tile[i] = x[i];\n}\n",
      "t.metal:4: threadgroup variable declared inside a function",
    ],
    [
      "namespace n {\nkernel void k(device float* x [[buffer(0)]]) {}\n}\n",
      "t.metal:4: kernel functions must be declared at file scope",
    ],
    ["kernel void k(device float* x [[buffer(0)]], float y) {}\n", "parameter 'y' has no [[buffer(n)]]"],
    ["kernel void k(texture2d<float> t [[texture(0)]]) {}\n", "[[texture]] is not supported"],
    ["kernel void k(device float* x [[buffer(31)]]) {}\n", "outside 0...30"],
    [
      "kernel void k(device float* x [[buffer(0)]], device float* y [[buffer(0)]]) {}\n",
      "two parameters bound to [[buffer(0)]]",
    ],
  ];
  for (const [kernel, message] of cases) assertThrows(() => parseMetal(head + kernel, "t.metal"), message);
});

Deno.test("source hash: FNV-1a 64 with CRLF read as LF", () => {
  assertEquals(sourceHash(""), "cbf29ce484222325");
  assertEquals(sourceHash("a"), "af63dc4c8601ec8c");
  assertEquals(sourceHash("x\r\ny\n"), sourceHash("x\ny\n"));
});

Deno.test("Swift literal delimiters outnumber the #s in the text", () => {
  const text = 'a "quoted" \\n "#"## """#';
  const lit = swiftLiteral(text);
  assert(lit.startsWith('###"""\n') && lit.endsWith('\n"""###'), lit);
  assertEquals(swiftLiteral("x\r\ny"), '#"""\nx\ny\n"""#');
});
