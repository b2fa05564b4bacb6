// The kernels' quantized variants (MV_QUANT in metal/matvec.metal, MM_QUANT in metal/matmul.metal,
// EMB_QUANT in metal/embedding.metal) against "dequantize with the contract's formula
// (docs/quantization.md: fma(scale, q, bias) in float32), then a float product in Double", within
// 1e-5 · max|ref|; embedding rows exactly. Matrices are random codes with random scales and biases of
// either sign, in 4 and 8 bits, every group size, f16 and f32 scales, uploaded by the backend's own
// GPUMatrixFormat; outputs are poisoned with NaN. Then a whole model whose layers hold different formats
// against the CPU backend on the same weights dequantized to float32.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import Foundation
import XCTest

@testable import MambaMetal

extension TestRandom {
    /// A random (rows, cols) matrix in the affine form, as a loader hands it over: uniform codes, scales of
    /// either sign about 2 / 2^bits and biases in [−1, 1] (f16 values when `scalesHalf`).
    mutating func quantized(rows: Int, cols: Int, bits: Int, groupSize: Int, scalesHalf: Bool,
                            name: String = "w") -> WeightMatrix {
        let spec = QuantSpec(bits: bits, groupSize: groupSize), groups = rows * cols / groupSize
        let codes = OwnedBytes(count: rows * spec.codeBytes(cols: cols))
        let c = codes.pointer.assumingMemoryBound(to: UInt8.self)
        for i in 0..<codes.count { c[i] = UInt8(truncatingIfNeeded: next()) }
        let width = scalesHalf ? 2 : 4
        let scales = OwnedBytes(count: groups * width), biases = OwnedBytes(count: groups * width)
        for g in 0..<groups {
            let s = float(-2, 2) / Float(1 << bits), b = float(-1, 1)
            if scalesHalf {
                scales.pointer.assumingMemoryBound(to: UInt16.self)[g] = floatToHalf(s)
                biases.pointer.assumingMemoryBound(to: UInt16.self)[g] = floatToHalf(b)
            } else {
                scales.pointer.assumingMemoryBound(to: Float.self)[g] = s
                biases.pointer.assumingMemoryBound(to: Float.self)[g] = b
            }
        }
        return WeightMatrix(name: name, rows: rows, cols: cols, spec: spec, scaleDType: scalesHalf ? .f16 : .f32,
                            codes: UnsafeRawPointer(codes.pointer), scales: UnsafeRawPointer(scales.pointer),
                            biases: UnsafeRawPointer(biases.pointer), owners: [codes, scales, biases],
                            source: "random")
    }
}

extension WeightMatrix {
    /// Every element dequantized by the contract's formula (WeightMatrix.value), row-major.
    var dequantized: [Float] { (0..<rows * cols).map { value($0 / cols, $0 % cols) } }
}

final class MetalQuantizedKernelTests: MetalTestCase {
    /// `m` in GPU buffers: codes written by the backend's upload code, scales and biases as loaded.
    func upload(_ m: WeightMatrix) -> GPUMatrix {
        let format = GPUMatrixFormat(m)
        let v = device.makeBuffer(length: max(format.bytes(m), 16), options: .storageModeShared)!
        format.write(m, values: v.contents())
        let n = format.scaleBytes(m)
        let s = device.makeBuffer(bytes: m.scales!, length: n, options: .storageModeShared)!
        let b = device.makeBuffer(bytes: m.biases!, length: n, options: .storageModeShared)!
        return GPUMatrix(format, values: (v, 0), scales: (s, 0), biases: (b, 0))
    }

    // MARK: matvec (decode)

    func checkMatvec(N: Int, K: Int, nb: Int, bits: Int, G: Int, scalesHalf: Bool, norm: MatvecNorm,
                     accumulate: Bool = false, groups: Int = 1, heads: Int = 1, rowsPerSimdgroup: Int = 2,
                     splitK: Int = 1, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let m = rng.quantized(rows: N, cols: K, bits: bits, groupSize: G, scalesHalf: scalesHalf)
        let x = rng.floats(nb * K, -2, 2), normW = rng.floats(K, 0.5, 1.5)
        let sumsq = gatedSumsq(&rng, x: x, nb: nb, K: K, groups: groups, heads: heads)
        let y0: [Float] = accumulate ? rng.floats(nb * N) : [Float](repeating: .nan, count: nb * N)
        let w = upload(m)
        XCTAssertEqual(w.format, .affine(AffineFormat(bits: bits, groupSize: G, scalesHalf: scalesHalf)))
        let mv = try MetalMatvec(kernels: kernels, spec: MatvecSpec(
            n: N, k: K, batch: nb, weights: w.format, norm: norm, accumulate: accumulate, groups: groups,
            heads: heads, eps: 1e-5, rowsPerSimdgroup: rowsPerSimdgroup, splitK: splitK))
        let yb = buffer(y0)
        try run { sink in
            mv.encode(sink, w: w, x: (buffer(x), 0), y: (yb, 0), norm: norm == .none ? nil : (buffer(normW), 0),
                      sumsq: norm == .gatedGroups ? (buffer(sumsq), 0) : nil)
        }
        let want = matvecReference(
            W: m.dequantized, N: N, K: K, x: x, nb: nb, y0: y0, norm: norm, normW: normW, sumsq: sumsq,
            groups: groups, heads: heads, eps: 1e-5, accumulate: accumulate)
        assertClose(read(yb, nb * N), want, rel: 1e-5,
                    "q\(bits) g\(G) \(scalesHalf ? "f16" : "f32") matvec N=\(N) K=\(K) batch=\(nb) norm=\(norm) R=\(rowsPerSimdgroup) "
                        + "splitK=\(splitK)")
    }

    func testMatvecEveryBitsGroupAndScaleType() throws {
        var seed: UInt64 = 100
        for bits in [4, 8] {
            for G in [16, 32, 64, 128] {
                for scalesHalf in [true, false] {
                    seed += 1
                    // K = 2 groups plus one more: steps per row not a multiple of the 32 lanes.
                    try checkMatvec(N: 19, K: 3 * max(G, 64), nb: 1 + Int(seed % 3), bits: bits, G: G,
                                    scalesHalf: scalesHalf, norm: .none, rowsPerSimdgroup: 1 + Int(seed % 4),
                                    splitK: [1, 2, 4][Int(seed % 3)], seed: seed)
                }
            }
        }
    }

    func testMatvecBatchesAndRowsPerSimdgroup() throws {
        // N not a multiple of 4 · R; a K whose 8-byte steps outnumber the lanes unevenly (1088 / 8 = 136).
        try checkMatvec(N: 129, K: 256, nb: 8, bits: 4, G: 64, scalesHalf: true, norm: .none, rowsPerSimdgroup: 4, seed: 1)
        try checkMatvec(N: 5, K: 1088, nb: 2, bits: 8, G: 32, scalesHalf: false, norm: .none, rowsPerSimdgroup: 3, seed: 2)
        try checkMatvec(N: 37, K: 64, nb: 7, bits: 4, G: 16, scalesHalf: false, norm: .none, accumulate: true,
                        rowsPerSimdgroup: 1, seed: 3)
    }

    func testMatvecFusedNorms() throws {
        // in_proj and lm_head: the RMSNorm (its scale from the loop's own x); out_proj: the gated group norm
        // with the residual add (one group: as the RMSNorm; several: scales from the SSM block's sums).
        try checkMatvec(N: 70, K: 128, nb: 3, bits: 8, G: 128, scalesHalf: true, norm: .rms, seed: 4)
        try checkMatvec(N: 33, K: 192, nb: 1, bits: 4, G: 64, scalesHalf: false, norm: .rms, rowsPerSimdgroup: 4, seed: 5)
        try checkMatvec(N: 41, K: 96, nb: 3, bits: 4, G: 32, scalesHalf: false, norm: .gatedGroups, accumulate: true,
                        groups: 2, heads: 6, seed: 6)
        // norm groups of 6 columns: a lane's step straddles them, so the scale is taken per column.
        try checkMatvec(N: 9, K: 48, nb: 2, bits: 8, G: 16, scalesHalf: true, norm: .gatedGroups, accumulate: true,
                        groups: 8, heads: 8, seed: 7)
        // K slices: each slice's sums and sums of squares added in slice order.
        for splitK in [2, 4] {
            try checkMatvec(N: 33, K: 192, nb: 5, bits: 4, G: 64, scalesHalf: false, norm: .rms, rowsPerSimdgroup: 2,
                            splitK: splitK, seed: 8)
            try checkMatvec(N: 41, K: 96, nb: 3, bits: 8, G: 32, scalesHalf: true, norm: .gatedGroups, accumulate: true,
                            groups: 1, heads: 6, rowsPerSimdgroup: 1, splitK: splitK, seed: 9)
            try checkMatvec(N: 41, K: 96, nb: 2, bits: 4, G: 32, scalesHalf: false, norm: .gatedGroups,
                            accumulate: true, groups: 2, heads: 6, rowsPerSimdgroup: 3, splitK: splitK, seed: 10)
        }
    }

    // MARK: embedding rows

    func testEmbeddingRowsAreDequantizedExactly() throws {
        for (i, (bits, G, scalesHalf)) in [(4, 32, true), (8, 16, false), (4, 128, false), (8, 64, true)].enumerated() {
            var rng = TestRandom(state: 30 + UInt64(i))
            let vocab = 13, dModel = 256, nb = 3, dConv = 4
            let m = rng.quantized(rows: vocab, cols: dModel, bits: bits, groupSize: G, scalesHalf: scalesHalf)
            let E = upload(m)
            let tokens: [Int32] = [12, 0, 7]
            let tb = padded(tokens, length: 16)
            let rb = buffer([Float](repeating: .nan, count: nb * dModel))
            let pb = device.makeBuffer(bytes: [UInt32](repeating: 0, count: 4), length: 16, options: .storageModeShared)!
            let constants = Kernel.EmbeddingConstants.embedding(dModel: dModel, dConv: dConv, rows: nb, E.format)
            let decode = try kernels.pipeline(Kernel.EmbeddingGather.self, constants)
            let prompt = try kernels.pipeline(Kernel.EmbeddingGatherPrompt.self, constants)
            let want = tokens.flatMap { t in (0..<dModel).map { m.value(Int(t), $0) } }
            let grid = DispatchGrid.threads(MTLSize(width: dModel, height: nb, depth: 1),
                                            threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1))
            try run { sink in
                sink.dispatch(decode, .init(embedding: E.values, tokens: (tb, 0), residual: (rb, 0), conv_pos: (pb, 0),
                                            scales: E.scales, biases: E.biases), grid)
            }
            XCTAssertEqual(read(rb, nb * dModel), want, "embedding_gather q\(bits) g\(G)")
            rb.contents().initializeMemory(as: Float.self, repeating: .nan, count: nb * dModel)
            try run { sink in
                sink.dispatch(prompt, .init(embedding: E.values, tokens: (tb, 0), residual: (rb, 0), conv_pos: (pb, 0),
                                            count: (countBuffer(nb), 0), scales: E.scales, biases: E.biases), grid)
            }
            XCTAssertEqual(read(rb, nb * dModel), want, "embedding_gather_prompt q\(bits) g\(G)")
        }
    }

    // MARK: matmul (prefill)

    /// Y[m, n] (=, +=) Σ_k X̂[m, k] · W[n, k] with W the first K of `ldw` columns of a quantized matrix.
    func checkMatmul(T: Int, N: Int, K: Int, ldw: Int, tile: Int, tileK: Int = 32, bits: Int, G: Int,
                     scalesHalf: Bool, groups: Int, accumulate: Bool, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let capacity = T + 5, ldx = K + 3, ldy = N + 2
        let X = rng.floats(capacity * ldx, -2, 2), normW = rng.floats(K, 0.5, 1.5)
        let m = rng.quantized(rows: N, cols: ldw, bits: bits, groupSize: G, scalesHalf: scalesHalf)
        let W = m.dequantized
        let y0 = accumulate ? rng.floats(capacity * ldy) : [Float](repeating: .nan, count: capacity * ldy)
        let w = upload(m)
        var spec = MatmulSpec(n: N, k: K, m: capacity, tile: tile, ldx: ldx, ldw: ldw, ldy: ldy)
        spec.tileK = tileK
        spec.weights = w.format
        spec.normGroups = groups
        spec.accumulate = accumulate
        let mm = try MetalMatmul(kernels: kernels, spec: spec)
        let yb = buffer(y0)
        try run { sink in
            mm.encode(sink, w: w, x: (buffer(X), 0), y: (yb, 0), norm: groups > 0 ? (buffer(normW), 0) : nil,
                      count: countBuffer(T), tokens: T)
        }
        var want = y0
        for r in 0..<T {
            var xh = (0..<K).map { Double(X[r * ldx + $0]) }
            if groups > 0 {
                let gs = K / groups
                for g in 0..<groups {
                    let ss = (g * gs..<(g + 1) * gs).reduce(0.0) { $0 + xh[$1] * xh[$1] }
                    let s = 1 / (ss / Double(gs) + 1e-5).squareRoot()
                    for k in g * gs..<(g + 1) * gs { xh[k] *= s * Double(normW[k]) }
                }
            }
            for n in 0..<N {
                var s = 0.0
                for k in 0..<K { s += xh[k] * Double(W[n * ldw + k]) }
                want[r * ldy + n] = Float((accumulate ? Double(y0[r * ldy + n]) : 0) + s)
            }
        }
        let got = read(yb, capacity * ldy)
        let what = "q\(bits) g\(G) matmul T=\(T) N=\(N) K=\(K)/\(ldw) tile=\(tile)×\(tileK) groups=\(groups) acc=\(accumulate)"
        assertClose(got.enumerated().map { want[$0.offset].isNaN ? 0 : $0.element }, want.map { $0.isNaN ? 0 : $0 },
                    rel: 1e-5, what)
        for i in 0..<got.count where want[i].isNaN { XCTAssert(got[i].isNaN, "\(what): wrote outside the output at \(i)") }
    }

    func testMatmulProjections() throws {
        try checkMatmul(T: 37, N: 45, K: 64, ldw: 64, tile: 16, bits: 4, G: 32, scalesHalf: true, groups: 0,
                        accumulate: false, seed: 60)
        try checkMatmul(T: 37, N: 45, K: 70, ldw: 80, tile: 32, bits: 8, G: 16, scalesHalf: false, groups: 0,
                        accumulate: false, seed: 61)
        try checkMatmul(T: 70, N: 20, K: 128, ldw: 128, tile: 64, tileK: 16, bits: 4, G: 128, scalesHalf: false,
                        groups: 0, accumulate: true, seed: 62)
        try checkMatmul(T: 1, N: 33, K: 64, ldw: 64, tile: 32, tileK: 8, bits: 8, G: 64, scalesHalf: true, groups: 0,
                        accumulate: false, seed: 63)
    }

    func testMatmulFusedNorms() throws {
        try checkMatmul(T: 29, N: 50, K: 64, ldw: 64, tile: 32, bits: 8, G: 32, scalesHalf: true, groups: 1,
                        accumulate: false, seed: 64)
        try checkMatmul(T: 33, N: 17, K: 96, ldw: 96, tile: 16, tileK: 24, bits: 4, G: 16, scalesHalf: false,
                        groups: 3, accumulate: true, seed: 65)
    }

    func testMatmulRefusesBatchOffsetsForQuantizedWeights() throws {
        var spec = MatmulSpec(n: 16, k: 32, m: 16, tile: 16, ldx: 32, ldw: 32, ldy: 16)
        spec.weights = .affine(AffineFormat(bits: 4, groupSize: 32, scalesHalf: true))
        spec.wInner = 32
        XCTAssertThrowsError(try MetalMatmul(kernels: kernels, spec: spec))
        spec.wInner = 0
        spec.ldw = 48
        XCTAssertThrowsError(try MetalMatmul(kernels: kernels, spec: spec), "rows of 48 columns are not whole groups of 32")
    }

    // MARK: a whole model with a different format in every matrix

    /// `m` with its f16 scales and biases widened to f32 (the same values, read through the f32 path).
    func widened(_ m: WeightMatrix) -> WeightMatrix {
        let n = m.rows * m.cols / m.quant!.groupSize
        let s = OwnedBytes(count: 4 * n), b = OwnedBytes(count: 4 * n)
        for i in 0..<n {
            s.pointer.assumingMemoryBound(to: Float.self)[i] = halfToFloat(m.scales!.assumingMemoryBound(to: UInt16.self)[i])
            b.pointer.assumingMemoryBound(to: Float.self)[i] = halfToFloat(m.biases!.assumingMemoryBound(to: UInt16.self)[i])
        }
        return WeightMatrix(name: m.name, rows: m.rows, cols: m.cols, spec: m.quant!, scaleDType: .f32, codes: m.data,
                            scales: UnsafeRawPointer(s.pointer), biases: UnsafeRawPointer(b.pointer),
                            owners: [m, s, b], source: m.source)
    }

    /// As a Q4_K_M GGUF file mixes Q4_K and Q6_K layers: each matrix of tiny-g2 in another format (4 and 8
    /// bits, groups of 16 to 128, f16 and f32 scales, one f16 matrix, an untied lm_head). The Metal backend
    /// (decode plans for batch 2 and 1, chunked prefill) against the CPU backend on the same weights
    /// dequantized to float32 at load, and against the CPU backend's quantized kernels: logits within
    /// 1e-5 · max|ref|.
    func testModelWithEveryFormatMatchesTheDequantizedModelOnTheCPU() throws {
        let dir = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tests/fixtures/tiny-g2").path
        let f32 = try ModelWeights(try Checkpoint.load(directory: dir), target: MatrixTarget())
        func q(_ m: WeightMatrix, _ dtype: WeightDType, _ G: Int, f32Scales: Bool = false) throws -> WeightMatrix {
            let quantized = try m.converted(to: MatrixTarget(dtype: dtype, groupSize: G))
            XCTAssertEqual(quantized.dtype, dtype, "\(m.name) quantized")
            return f32Scales ? widened(quantized) : quantized
        }
        let L = f32.layers
        func layer(_ l: LayerWeights, inProj: WeightMatrix, outProj: WeightMatrix) -> LayerWeights {
            LayerWeights(norm: l.norm, inProj: inProj, convWeight: l.convWeight, convBias: l.convBias, dtBias: l.dtBias,
                         aLog: l.aLog, A: l.A, D: l.D, gatedNorm: l.gatedNorm, outProj: outProj)
        }
        let mixed = try ModelWeights(
            config: f32.config, embedding: q(f32.embedding, .q8, 64, f32Scales: true),
            lmHead: q(f32.lmHead, .q4, 16), normF: f32.normF,
            layers: [layer(L[0], inProj: q(L[0].inProj, .q4, 32, f32Scales: true), outProj: q(L[0].outProj, .q8, 16)),
                     layer(L[1], inProj: L[1].inProj.converted(to: MatrixTarget(dtype: .f16)),
                           outProj: q(L[1].outProj, .q4, 128))],
            fingerprint: f32.fingerprint)
        let reference = try ModelWeights(
            config: mixed.config, embedding: mixed.embedding.converted(to: MatrixTarget(dtype: .f32)),
            lmHead: mixed.lmHead.converted(to: MatrixTarget(dtype: .f32)), normF: mixed.normF,
            layers: mixed.layers.map { try layer($0, inProj: $0.inProj.converted(to: MatrixTarget(dtype: .f32)),
                                                   outProj: $0.outProj.converted(to: MatrixTarget(dtype: .f32))) },
            fingerprint: mixed.fingerprint)

        var options = EngineOptions()
        options.batchSize = 2
        let metal = try MetalBackend(weights: mixed, options: options)
        let cpu = try CPUBackend(weights: reference, batch: 2, threads: 1)
        // The CPU backend's own quantized kernels on the same (mixed) weights, as a second opinion.
        let cpuQuantized = try CPUBackend(weights: mixed, batch: 2, threads: 1)
        let V = mixed.config.vocabSize
        var rng = TestRandom(state: 77)
        let prompt = (0..<37).map { _ in Int32(rng.next() % UInt64(V)) }
        var worst: Float = 0, worstQuantized: Float = 0
        func compare(_ what: String) {
            let got = Array(UnsafeBufferPointer(start: metal.logits, count: 2 * V))
            let want = Array(UnsafeBufferPointer(start: cpu.logits, count: 2 * V))
            let other = Array(UnsafeBufferPointer(start: cpuQuantized.logits, count: 2 * V))
            assertClose(got, want, rel: 1e-5, what)
            assertClose(got, other, rel: 1e-5, what + ", vs the CPU's quantized kernels")
            let top = want.map(abs).max()!
            worst = max(worst, zip(got, want).map { abs($0 - $1) }.max()! / top)
            worstQuantized = max(worstQuantized, zip(got, other).map { abs($0 - $1) }.max()! / top)
        }
        let all: [any Backend] = [metal, cpu, cpuQuantized]
        for backend in all {
            try prompt.withUnsafeBufferPointer { try backend.prefill($0, seq: 1) }
        }
        compare("after a 37-token prefill of sequence 1 (chunked: in_proj and out_proj by the matmul)")
        for t in 0..<4 {
            let tokens: [Int32] = [Int32(t * 5 % V), prompt[t]]
            for backend in all {
                try tokens.withUnsafeBufferPointer { try backend.step($0) }
            }
            compare("decode step \(t), batch 2")
        }
        print("mixed-format model, Metal vs dequantized f32 on the CPU: max|Δ| / max|ref| = \(worst); vs the CPU's quantized kernels: \(worstQuantized)")
    }
}
