// The quantized loaders and the quantizer against the formats' own code (fixtures from
// tools/make_quant_fixtures.py): MLX files written by mlx-lm, MLX's quantizer, GGUF blocks dequantized
// by gguf-py. Everything is compared bit for bit.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import XCTest

@testable import MambaMetal

private let fixtures: String = {
    var url = #filePath
    for _ in 0..<4 { url = String(url[..<url.lastIndex(of: "/")!]) }
    return url + "/tests/fixtures/"
}()

/// A safetensors file's tensors as raw bytes (any dtype), for the expected values.
private func rawTensors(_ path: String) throws -> [String: (dtype: String, shape: [Int], bytes: [UInt8])] {
    let f = try MappedFile(path: path)
    var n: UInt64 = 0
    for k in 0..<8 { n |= UInt64(f.bytes(k, 1)![0]) << (8 * UInt64(k)) }
    let header = try JSON.parse(f.bytes(8, Int(n))!, context: path)
    var out: [String: (String, [Int], [UInt8])] = [:]
    for (name, e) in header.object! where name != "__metadata__" {
        let offs = e["data_offsets"]!.array!.map { $0.int! }
        out[name] = (e["dtype"]!.string!, e["shape"]!.array!.map { $0.int! },
                     Array(f.bytes(8 + Int(n) + offs[0], offs[1] - offs[0])!))
    }
    return out
}

private func floats(_ b: [UInt8]) -> [Float] {
    b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

private func weights(_ dir: String, _ target: MatrixTarget = MatrixTarget()) throws -> ModelWeights {
    try Engine.loadWeights(path: fixtures + dir, target: target)
}

/// The module path of a matrix in the transformers naming the MLX fixtures use.
private func module(_ m: WeightMatrix) -> String { String(m.name.dropLast(".weight".count)) }

final class QuantizedLoadTests: XCTestCase {
    /// Every quantized matrix of mlx-lm's files reads as the codes, scales and biases MLX wrote.
    func testMLXFilesMatchTheirCodes() throws {
        for (dir, dtype, group, count) in [("mlx-q4-g32", WeightDType.q4, 32, 6), ("mlx-q4-g64-f16", .q4, 64, 5),
                                           ("mlx-q8-g128-f16", .q8, 128, 2), ("mlx-q8-g32-bf16", .q8, 32, 6)] {
            let w = try weights(dir)
            let expected = try rawTensors(fixtures + dir + "/expected.safetensors")
            let quantized = w.matrices.filter { $0.quant != nil }
            XCTAssertEqual(quantized.count, count, dir)
            for m in quantized {
                let name = module(m)
                XCTAssertEqual(m.dtype, dtype, name)
                XCTAssertEqual(m.quant?.groupSize, group, name)
                let codes = expected[name + ".codes"]!.bytes
                let scales = floats(expected[name + ".scales"]!.bytes), biases = floats(expected[name + ".biases"]!.bytes)
                let groups = m.cols / group
                var bad = 0
                for r in 0..<m.rows {
                    let row = m.data.assumingMemoryBound(to: UInt8.self) + r * m.quant!.codeBytes(cols: m.cols)
                    for c in 0..<m.cols where quantCode(row, c, bits: m.quant!.bits) != codes[r * m.cols + c] { bad += 1 }
                    for g in 0..<groups {
                        let s = scales[r * groups + g], b = biases[r * groups + g]
                        // value(r, c) = fma(scale, q, bias): recover scale and bias from two codes' values.
                        let c0 = g * group
                        let q0 = Float(codes[r * m.cols + c0])
                        let v = m.value(r, c0)
                        if v.bitPattern != b.addingProduct(s, q0).bitPattern { bad += 1 }
                    }
                }
                XCTAssertEqual(bad, 0, "\(dir) \(name)")
            }
            // Modules mlx-lm left unquantized (columns not divisible by the group) stay float.
            for m in w.matrices where m.quant == nil { XCTAssertNotEqual(m.cols % group, 0, "\(dir) \(m.name)") }
        }
    }

    /// Load-time quantization is MLX's quantizer: the same bytes as mlx-lm for f16 weights, and for f32
    /// weights the same codes with the scales and biases rounded to f16.
    func testLoadTimeQuantizationEqualsMLX() throws {
        for (src, ref, dtype, group) in [("tiny-f16", "mlx-q4-g64-f16", WeightDType.q4, 64),
                                         ("tiny-f16", "mlx-q8-g128-f16", .q8, 128),
                                         ("tiny-g1", "mlx-q4-g32", .q4, 32)] {
            let ours = try weights(src, MatrixTarget(dtype: dtype, groupSize: group))
            let theirs = try weights(ref)
            XCTAssertEqual(ours.matrices.count, theirs.matrices.count)
            for (a, b) in zip(ours.matrices, theirs.matrices) {
                XCTAssertEqual(a.quant, b.quant, "\(src) \(a.name)")
                XCTAssertEqual(a.dtype, b.dtype, "\(src) \(a.name)")
                guard let q = a.quant else { continue }
                let codeBytes = a.rows * q.codeBytes(cols: a.cols), n = a.rows * a.cols / q.groupSize
                XCTAssertEqual(memcmp(a.data, b.data, codeBytes), 0, "\(src) \(a.name) codes")
                XCTAssertEqual(a.scaleDType, .f16)
                for (mine, mlx) in [(a.scales!, b.scales!), (a.biases!, b.biases!)] {
                    let p = mine.assumingMemoryBound(to: UInt16.self)
                    for i in 0..<n {
                        let want = b.scaleDType == .f16 ? mlx.assumingMemoryBound(to: UInt16.self)[i]
                            : floatToHalf(mlx.assumingMemoryBound(to: Float.self)[i])
                        if p[i] != want { XCTFail("\(src) \(a.name) scale/bias \(i): \(p[i]) != \(want)"); break }
                    }
                }
            }
        }
    }

    /// The quantizer's arithmetic on hand-checked groups: the edge of largest magnitude is exact,
    /// scales turn negative when the maximum dominates, a constant group keeps its value.
    func testAffineQuantizerGroups() {
        func run(_ w: [Float], bits: Int) -> (Float, Float, [UInt8]) {
            var codes = [UInt8](repeating: 0, count: w.count)
            let (s, b) = w.withUnsafeBufferPointer { AffineQuantizer.group($0.baseAddress!, count: w.count, bits: bits,
                                                                           codes: &codes) }
            return (s, b, codes)
        }
        let ramp = (0..<16).map { Float($0) }
        let (s, b, q) = run(ramp, bits: 4)
        XCTAssertEqual(s, -1)
        XCTAssertEqual(b, 15)
        XCTAssertEqual(q, (0..<16).map { UInt8(15 - $0) })
        let (s2, b2, q2) = run(ramp.map { -$0 }, bits: 4) // |min| > |max|: positive scale from the minimum
        XCTAssertEqual(s2, 1)
        XCTAssertEqual(b2, -15)
        XCTAssertEqual(q2, (0..<16).map { UInt8(15 - $0) })
        let (s3, b3, q3) = run([Float](repeating: 0.25, count: 32), bits: 8)
        XCTAssertEqual(b3.addingProduct(s3, Float(q3[0])), 0.25)
    }

    /// Every GGUF block type converts to the affine form with each dequantized value equal, bit for bit,
    /// to gguf-py's float32 dequantization (ggml-quants.c's arithmetic).
    func testGGUFConversionsMatchGGUFPy() throws {
        let path = fixtures + "gguf/quants.gguf"
        let file = try MappedFile(path: path)
        let gguf = try GGUFFile.parse(UnsafeRawBufferPointer(start: file.base, count: file.size), file: path)
        let expected = try rawTensors(fixtures + "gguf/quants.expected.safetensors")
        let forms: [String: (WeightDType, Int, WeightDType)] = [
            "q8_0": (.q8, 32, .f16), "q8_0.big": (.q8, 32, .f32), "q4_0": (.q4, 32, .f16), "q4_0.big": (.q4, 32, .f32),
            "q4_K": (.q4, 32, .f32), "q5_K": (.q8, 32, .f32), "q6_K": (.q8, 16, .f32),
            "f32": (.f32, 0, .f32), "f16": (.f16, 0, .f32), "bf16": (.bf16, 0, .f32),
        ]
        XCTAssertEqual(Set(gguf.tensors.map(\.name)), Set(forms.keys))
        for t in gguf.tensors {
            let m = try GGMLConvert.matrix(t, file: file)
            let (dtype, group, scaleType) = forms[t.name]!
            XCTAssertEqual(m.dtype, dtype, t.name)
            XCTAssertEqual(m.quant?.groupSize ?? 0, group, t.name)
            if m.quant != nil { XCTAssertEqual(m.scaleDType, scaleType, t.name) }
            let want = floats(expected[t.name]!.bytes)
            // Bit for bit, except the sign of a zero: ggml's d·q is −0 when d and q differ in sign and one
            // of them is 0; fma(d, q + k, −k·d) is +0 there. Both are the value 0.
            var bad = 0, signedZeros = 0
            for r in 0..<m.rows {
                for c in 0..<m.cols {
                    let got = m.value(r, c), ref = want[r * m.cols + c]
                    if got.bitPattern == ref.bitPattern { continue }
                    if got == 0 && ref == 0 { signedZeros += 1 } else { bad += 1 }
                }
            }
            XCTAssertEqual(bad, 0, "\(t.name): \(bad) of \(m.rows * m.cols) values differ from gguf-py")
            if signedZeros > 0 { XCTAssertTrue(["q8_0", "q8_0.big", "q4_0", "q4_0.big", "q6_K"].contains(t.name)) }
        }
    }

    /// llama.cpp's converter output loads with the config its metadata implies; Q8_0 matrices are within
    /// half a step of the f32 file's values, and the engine info names what each matrix became.
    func testGGUFModelsFromTheConverter() throws {
        let f32 = try weights("gguf/tiny-g1.f32.gguf"), q8 = try weights("gguf/tiny-g1.q8_0.gguf")
        XCTAssertEqual(f32.config, q8.config)
        XCTAssertEqual(f32.config.vocabSize, 128)
        XCTAssertFalse(f32.config.tieEmbeddings)
        XCTAssertEqual(f32.matrixDType, "f32")
        XCTAssertEqual(q8.matrixDType, "q8")
        for (a, b) in zip(f32.matrices, q8.matrices) {
            XCTAssertEqual(b.source, "Q8_0")
            var worst: Float = 0, top: Float = 0
            for r in 0..<a.rows {
                for c in 0..<a.cols {
                    worst = max(worst, abs(a.value(r, c) - b.value(r, c)))
                    top = max(top, abs(a.value(r, c)))
                }
            }
            XCTAssertLessThanOrEqual(worst, top / 127, a.name)
        }
        XCTAssertEqual(q8.matrices[0].info["stored"], .string("Q8_0"))
        XCTAssertEqual(q8.matrices[0].info["dtype"], .string("q8"))
        // Dequantizing at load gives the converted values exactly.
        let deq = try weights("gguf/tiny-g1.q8_0.gguf", MatrixTarget(dtype: .f32))
        for (a, b) in zip(q8.matrices, deq.matrices) {
            for r in 0..<a.rows { for c in 0..<a.cols { XCTAssertEqual(a.value(r, c), b.value(r, c)) } }
        }
    }

    /// deno task quantize's output, loaded again, holds the bytes load-time quantization gives.
    func testQuantizeToolOutputEqualsLoadTime() throws {
        let dst = NSTemporaryDirectoryPath() + "mamba-quantize-\(getpid())"
        defer { _ = system("rm -rf '\(dst)'") }
        for (src, bits, group) in [("tiny-g1", 4, 64), ("tiny-f16", 8, 32), ("gguf/tiny-g1.f32.gguf", 4, 32)] {
            try QuantizeTool.run(source: fixtures + src, destination: dst, spec: QuantSpec(bits: bits, groupSize: group),
                                 progress: false)
            let loadTime = try weights(src, MatrixTarget(dtype: bits == 8 ? .q8 : .q4, groupSize: group))
            let tool = try Engine.loadWeights(path: dst, target: MatrixTarget())
            XCTAssertEqual(tool.config.dModel, loadTime.config.dModel)
            XCTAssertEqual(tool.config.vocabSize, loadTime.config.vocabSize)
            for (a, b) in zip(loadTime.matrices, tool.matrices) {
                XCTAssertEqual(a.dtype, b.dtype, "\(src) \(a.name)")
                XCTAssertEqual(a.byteCount, b.byteCount, "\(src) \(a.name)")
                if let q = a.quant {
                    let n = a.rows * (a.cols / q.groupSize) * a.scaleDType.floatBytes
                    XCTAssertEqual(memcmp(a.data, b.data, a.rows * q.codeBytes(cols: a.cols)), 0, "\(src) \(a.name)")
                    XCTAssertEqual(memcmp(a.scales!, b.scales!, n), 0, "\(src) \(a.name) scales")
                    XCTAssertEqual(memcmp(a.biases!, b.biases!, n), 0, "\(src) \(a.name) biases")
                } else {
                    XCTAssertEqual(memcmp(a.data, b.data, a.byteCount), 0, "\(src) \(a.name)")
                }
            }
            for (a, b) in zip(loadTime.layers, tool.layers) {
                XCTAssertEqual(a.convWeight, b.convWeight)
                XCTAssertEqual(a.gatedNorm, b.gatedNorm)
                XCTAssertEqual(a.D, b.D)
            }
        }
    }
}

private func NSTemporaryDirectoryPath() -> String {
    let t = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    return t.hasSuffix("/") ? t : t + "/"
}
