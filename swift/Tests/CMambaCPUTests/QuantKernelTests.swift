// The quantized CPU kernels (every kernel set: 0 the best, 1 generic, 2 AVX2, 3 AVX-VNNI) against
// "dequantize with the contract's formula, then multiply in float64": matrix × tokens by the decode
// path (1–8 tokens) and the prefill path (passes of 8 tokens), and embedding rows read from the
// row-major and the packed form.
import CMambaCPU
import XCTest

final class QuantKernelTests: XCTestCase {
    /// Activations with a wide spread: most groups in [-1, 1], some scaled far up or down, one zero.
    private func activations(_ n: Int, cols: Int, rng: inout Rng) -> [Float] {
        var x = rng.floats(n * cols)
        for t in 0..<n {
            for c in 0..<cols {
                switch (c / 16 + t) % 7 {
                case 2: x[t * cols + c] *= 1e-3
                case 4: x[t * cols + c] *= 300
                case 5 where t == 0: x[t * cols + c] = 0
                default: break
                }
            }
        }
        return x
    }

    private func reference(_ w: [Float], rows: Int, cols: Int, _ x: [Float], _ n: Int, plus y0: [Float]?) -> [Double] {
        var out = [Double](repeating: 0, count: n * rows)
        for t in 0..<n {
            for r in 0..<rows {
                var s = 0.0
                for c in 0..<cols { s += Double(w[r * cols + c]) * Double(x[t * cols + c]) }
                out[t * rows + r] = s + Double(y0?[t * rows + r] ?? 0)
            }
        }
        return out
    }

    /// Every bit width, scale dtype, group size and kernel set; token counts 1…8 (decode kernels, tiles of
    /// up to 4) and 9, 13 (passes of 8); odd row counts, so the last panel is partial.
    func testMatmulMatchesDequantizedReference() throws {
        var rng = Rng(1)
        for kernels: Int32 in [0, 1, 2, 3] {
            for bits in [8, 4] {
                for f32 in [false, true] {
                    for g in [16, 32, 64, 128] {
                        let rows = 37 + g % 5, cols = 2 * g + 128
                        let q = QuantMatrix(rows: rows, cols: cols, bits: bits, groupSize: g, f32Scales: f32, rng: &rng)
                        for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 13] {
                            let x = activations(n, cols: cols, rng: &rng)
                            let accumulate: Int32 = n % 3 == 0 ? 1 : 0
                            let y0 = accumulate == 1 ? rng.floats(n * rows) : nil
                            var y = y0 ?? [Float](repeating: .nan, count: n * rows)
                            var m = q.matrix
                            XCTAssertEqual(mcpu_test_matmul(&m, x, Int32(n), &y, accumulate, Int32(1 + n % 2), kernels), 0)
                            let ref = reference(q.dense, rows: rows, cols: cols, x, n, plus: y0)
                            let scale = ref.map(abs).max()!
                            let err = maxAbsDiff(y, ref)
                            XCTAssertLessThanOrEqual(
                                err, 1e-5 * scale,
                                "q\(bits) g\(g) \(f32 ? "f32" : "f16") scales, \(n) tokens, kernels \(kernels): max|Δ| \(err), max|ref| \(scale)")
                        }
                    }
                }
            }
        }
    }

    /// The VNNI decode kernels (256- and 512-bit) compute the AVX2 kernels' integer sums in another order,
    /// so their results must be the same bits, for every format and token count. Skipped where the CPU
    /// has no AVX-VNNI.
    func testVNNIKernelsEqualAVX2Bitwise() throws {
        guard String(cString: mcpu_isa()).contains("vnni") else { throw XCTSkip("no AVX-VNNI on this CPU") }
        var rng = Rng(4)
        for bits in [8, 4] {
            for f32 in [false, true] {
                for g in [16, 32, 64, 128] {
                    let rows = 45, cols = 3 * g + 256
                    let q = QuantMatrix(rows: rows, cols: cols, bits: bits, groupSize: g, f32Scales: f32, rng: &rng)
                    for n in 1...8 {
                        let x = activations(n, cols: cols, rng: &rng)
                        var m = q.matrix
                        var avx2 = [Float](repeating: .nan, count: n * rows)
                        XCTAssertEqual(mcpu_test_matmul(&m, x, Int32(n), &avx2, 0, 1, 2), 0)
                        for kernels: Int32 in [0, 3] {  // the best (512-bit where present) and 256-bit VNNI
                            var y = [Float](repeating: .nan, count: n * rows)
                            XCTAssertEqual(mcpu_test_matmul(&m, x, Int32(n), &y, 0, 2, kernels), 0)
                            let differ = zip(y, avx2).filter { $0.bitPattern != $1.bitPattern }.count
                            XCTAssertEqual(differ, 0, "q\(bits) g\(g) f32 scales \(f32), \(n) tokens, kernels \(kernels): \(differ) outputs differ")
                        }
                    }
                }
            }
        }
    }

    /// A matrix of the 130m in_proj's width split over two threads, many tasks of several panels.
    func testMatmulLargeTwoThreads() throws {
        var rng = Rng(2)
        for bits in [8, 4] {
            let rows = 1001, cols = 768
            let q = QuantMatrix(rows: rows, cols: cols, bits: bits, groupSize: 64, f32Scales: false, rng: &rng)
            for kernels: Int32 in [0, 1, 2, 3] {
                for n in [1, 4, 7, 20] {
                    let x = activations(n, cols: cols, rng: &rng)
                    var y = [Float](repeating: .nan, count: n * rows)
                    var m = q.matrix
                    XCTAssertEqual(mcpu_test_matmul(&m, x, Int32(n), &y, 0, 2, kernels), 0)
                    let ref = reference(q.dense, rows: rows, cols: cols, x, n, plus: nil)
                    let scale = ref.map(abs).max()!
                    XCTAssertLessThanOrEqual(maxAbsDiff(y, ref), 1e-5 * scale, "q\(bits), \(n) tokens, kernels \(kernels)")
                }
            }
        }
    }

    /// Embedding rows are the contract's values exactly, from either form.
    func testRowsAreExactlyTheContractValues() throws {
        var rng = Rng(3)
        for kernels: Int32 in [0, 1, 2, 3] {
            for bits in [8, 4] {
                for f32 in [false, true] {
                    for g in [16, 32, 64, 128] {
                        let rows = 35, cols = 256
                        let q = QuantMatrix(rows: rows, cols: cols, bits: bits, groupSize: g, f32Scales: f32, rng: &rng)
                        let pick: [Int32] = [0, 7, 15, 16, 33, 34]
                        for packed: Int32 in [0, 1] {
                            var out = [Float](repeating: .nan, count: pick.count * cols)
                            var m = q.matrix
                            XCTAssertEqual(mcpu_test_rows(&m, pick, Int32(pick.count), &out, packed, kernels), 0)
                            for (i, r) in pick.enumerated() {
                                for c in 0..<cols where out[i * cols + c].bitPattern != q.dense[Int(r) * cols + c].bitPattern {
                                    XCTFail("q\(bits) g\(g) f32 \(f32) packed \(packed) kernels \(kernels): row \(r) col \(c) is \(out[i * cols + c]), want \(q.dense[Int(r) * cols + c])")
                                    return
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Descriptors the kernels do not handle are refused, not run.
    func testBadDescriptorsAreRefused() throws {
        var rng = Rng(5)
        let q = QuantMatrix(rows: 20, cols: 128, bits: 4, groupSize: 32, f32Scales: false, rng: &rng)
        let x = rng.floats(128)
        var y = [Float](repeating: 0, count: 20)
        var bad: [(String, mcpu_matrix)] = []
        var m = q.matrix
        m.group_size = 48
        bad.append(("group size 48", m))
        m = q.matrix
        m.group_size = 256
        bad.append(("group size 256", m))
        m = q.matrix
        m.cols = 120
        bad.append(("cols not a multiple of the group size", m))
        m = q.matrix
        m.scale_dtype = Int32(MCPU_BF16)
        bad.append(("bf16 scales", m))
        m = q.matrix
        m.biases = nil
        bad.append(("no biases", m))
        m = q.matrix
        m.dtype = 7
        bad.append(("unknown dtype", m))
        for (what, var b) in bad {
            XCTAssertEqual(mcpu_test_matmul(&b, x, 1, &y, 0, 1, 0), -1, what)
        }
        var good = q.matrix
        var out = [Float](repeating: 0, count: 128)
        XCTAssertEqual(mcpu_test_rows(&good, [20], 1, &out, 1, 0), -1, "row out of range")
    }

    /// Float matrices still go through the float kernels, and their rows through the packed form.
    func testFloatRowsFromPackedForm() throws {
        var rng = Rng(4)
        let rows = 21, cols = 40
        let w = rng.floats(rows * cols)
        let buf = FloatBuffer(w)
        var m = buf.matrix(rows, cols)
        let pick: [Int32] = [0, 5, 16, 20]
        var out = [Float](repeating: .nan, count: pick.count * cols)
        XCTAssertEqual(mcpu_test_rows(&m, pick, Int32(pick.count), &out, 1, 0), 0)
        for (i, r) in pick.enumerated() {
            XCTAssertEqual(Array(out[i * cols..<(i + 1) * cols]), Array(w[Int(r) * cols..<(Int(r) + 1) * cols]))
        }
    }
}
