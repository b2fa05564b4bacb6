// Each decode kernel in metal/ against a plain Swift reference, on random inputs, with outputs
// poisoned (NaN) beforehand so an element the kernel fails to write is caught, and with sizes that
// are not multiples of the SIMD width, the threadgroup or the float4 step. These run through
// MetalCompat on Linux and against the GPU on a Mac.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

@testable import MambaMetal

final class MetalKernelTests: MetalTestCase {
    // MARK: matvec

    func checkMatvec(N: Int, K: Int, nb: Int, half: Bool, norm: MatvecNorm, accumulate: Bool, groups: Int = 1,
                     heads: Int = 1, rowsPerSimdgroup: Int = 2, splitK: Int = 1, parts: Int = 1, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let W = rng.weights(N * K, half: half)
        let x = rng.floats(nb * K, -2, 2), normW = rng.floats(K, 0.5, 1.5)
        let sumsq = gatedSumsq(&rng, x: x, nb: nb, K: K, groups: groups, heads: heads, parts: parts)
        let y0: [Float] = accumulate ? rng.floats(nb * N) : [Float](repeating: .nan, count: nb * N)
        let eps: Float = 1e-5
        let mv = try MetalMatvec(kernels: kernels, spec: MatvecSpec(
            n: N, k: K, batch: nb, weights: half ? .f16 : .f32, norm: norm, accumulate: accumulate, groups: groups,
            heads: heads, eps: eps, rowsPerSimdgroup: rowsPerSimdgroup, splitK: splitK, headParts: parts))
        let wb = half ? halfBuffer(W) : buffer(W)
        let xb = buffer(x), yb = buffer(y0), nwb = buffer(normW), ssb = buffer(sumsq)
        try run { sink in
            // Only the inputs this norm reads are bound: the others are switched off by function constants.
            mv.encode(sink, w: GPUMatrix(half ? .f16 : .f32, values: (wb, 0)), x: (xb, 0), y: (yb, 0), norm: norm == .none ? nil : (nwb, 0),
                      sumsq: norm == .gatedGroups ? (ssb, 0) : nil)
        }
        let want = matvecReference(W: W, N: N, K: K, x: x, nb: nb, y0: y0, norm: norm, normW: normW, sumsq: sumsq,
                                   groups: groups, heads: heads, parts: parts, eps: eps, accumulate: accumulate)
        assertClose(read(yb, nb * N), want, rel: 1e-5,
                    "matvec N=\(N) K=\(K) batch=\(nb) half=\(half) norm=\(norm) acc=\(accumulate) R=\(rowsPerSimdgroup) "
                        + "splitK=\(splitK) parts=\(parts)")
    }

    func testMatvecPlainAndBatched() throws {
        try checkMatvec(N: 37, K: 52, nb: 1, half: false, norm: .none, accumulate: false, seed: 1)
        try checkMatvec(N: 37, K: 52, nb: 3, half: true, norm: .none, accumulate: false, seed: 2)
        try checkMatvec(N: 129, K: 300, nb: 8, half: true, norm: .none, accumulate: false, rowsPerSimdgroup: 4, seed: 3)
        try checkMatvec(N: 5, K: 1, nb: 2, half: false, norm: .none, accumulate: false, rowsPerSimdgroup: 1, seed: 4)
    }

    func testMatvecScalarPathWhenKIsNotAMultipleOfFour() throws {
        try checkMatvec(N: 33, K: 50, nb: 2, half: true, norm: .rms, accumulate: false, seed: 5)
        try checkMatvec(N: 33, K: 51, nb: 1, half: false, norm: .none, accumulate: true, rowsPerSimdgroup: 3, seed: 6)
    }

    func testMatvecFusedRMSNorm() throws {
        try checkMatvec(N: 70, K: 96, nb: 3, half: false, norm: .rms, accumulate: false, seed: 7)
        try checkMatvec(N: 70, K: 96, nb: 1, half: true, norm: .rms, accumulate: false, seed: 8)
    }

    func testMatvecGatedGroupNormWithResidualAdd() throws {
        try checkMatvec(N: 41, K: 96, nb: 3, half: false, norm: .gatedGroups, accumulate: true, groups: 2, heads: 6, seed: 9)
        try checkMatvec(N: 41, K: 96, nb: 2, half: true, norm: .gatedGroups, accumulate: true, groups: 3, heads: 6, seed: 10)
        // group size 6: not a multiple of 4, so the scalar path applies the per-group scale
        try checkMatvec(N: 9, K: 18, nb: 1, half: false, norm: .gatedGroups, accumulate: true, groups: 3, heads: 3, seed: 11)
    }

    /// Every parallel layout (rows per simdgroup × K slices) on every path: float4 and scalar steps, each
    /// norm, a batch of 8, N not a multiple of the rows a threadgroup covers, K shorter than the slices.
    func testMatvecEveryParallelLayout() throws {
        var seed: UInt64 = 100
        for R in [1, 2, 3, 4] {
            for splitK in [1, 2, 4] {
                seed += 1
                try checkMatvec(N: 37, K: 300, nb: 8, half: true, norm: .none, accumulate: false,
                                rowsPerSimdgroup: R, splitK: splitK, seed: seed)
                try checkMatvec(N: 70, K: 96, nb: 3, half: false, norm: .rms, accumulate: false,
                                rowsPerSimdgroup: R, splitK: splitK, seed: seed + 1000)
                try checkMatvec(N: 33, K: 51, nb: 2, half: false, norm: .rms, accumulate: true,
                                rowsPerSimdgroup: R, splitK: splitK, seed: seed + 2000)
                try checkMatvec(N: 5, K: 1, nb: 1, half: true, norm: .none, accumulate: false,
                                rowsPerSimdgroup: R, splitK: splitK, seed: seed + 3000)
            }
        }
    }

    /// out_proj's group norm from per-block partial sums of squares (the SSM block's split), with K slices.
    func testMatvecGatedNormFromPartialSums() throws {
        for (i, parts) in [2, 4, 8].enumerated() {
            let seed = 200 + UInt64(i)
            try checkMatvec(N: 41, K: 96, nb: 3, half: false, norm: .gatedGroups, accumulate: true, groups: 2,
                            heads: 6, rowsPerSimdgroup: 1, splitK: 4, parts: parts, seed: seed)
            try checkMatvec(N: 9, K: 18, nb: 8, half: true, norm: .gatedGroups, accumulate: true, groups: 3,
                            heads: 3, rowsPerSimdgroup: 2, splitK: 2, parts: parts, seed: seed + 10)
            // 40 heads × 8 parts: more partial sums per group than a simdgroup has lanes
            try checkMatvec(N: 20, K: 160, nb: 2, half: false, norm: .gatedGroups, accumulate: true, groups: 1,
                            heads: 40, rowsPerSimdgroup: 3, splitK: 1, parts: parts, seed: seed + 20)
        }
    }

    /// Batched rows are computed exactly as single ones, whatever the layout: batching never changes a
    /// sequence's result.
    func testMatvecBatchedRowsEqualSingleRows() throws {
        var rng = TestRandom(state: 300)
        let N = 45, K = 96, nb = 5
        let W = rng.weights(N * K, half: true), x = rng.floats(nb * K, -2, 2), normW = rng.floats(K, 0.5, 1.5)
        for (R, splitK) in [(1, 4), (2, 1), (3, 2)] {
            func run(rows: Int, x: [Float]) throws -> [Float] {
                let mv = try MetalMatvec(kernels: kernels, spec: MatvecSpec(
                    n: N, k: K, batch: rows, weights: .f16, norm: .rms, rowsPerSimdgroup: R, splitK: splitK))
                let yb = buffer([Float](repeating: .nan, count: rows * N))
                try self.run { sink in
                    mv.encode(sink, w: GPUMatrix(.f16, values: (halfBuffer(W), 0)), x: (buffer(x), 0), y: (yb, 0), norm: (buffer(normW), 0))
                }
                return read(yb, rows * N)
            }
            let batched = try run(rows: nb, x: x)
            for b in 0..<nb {
                let single = try run(rows: 1, x: Array(x[b * K..<(b + 1) * K]))
                XCTAssertEqual(Array(batched[b * N..<(b + 1) * N]), single, "row \(b), R=\(R) splitK=\(splitK)")
            }
        }
    }

    /// Only ssd_prefill.metal (its compensated cumulative sum) is compiled without fast math.
    func testSafeMathOnlyForTheCompensatedPrefill() throws {
        let safe = try XCTUnwrap(MetalKernels.compileOptions("ssd_prefill.metal"))
        #if !canImport(Metal)
        XCTAssertEqual(safe.mathMode, .safe)
        XCTAssertFalse(safe.fastMathEnabled)
        #endif
        _ = safe
        for file in MetalSources.files where file.name != "ssd_prefill.metal" {
            XCTAssertNil(MetalKernels.compileOptions(file.name), file.name)
        }
    }

    // MARK: embedding

    func testEmbeddingGatherAndConvPosition() throws {
        for half in [false, true] {
            var rng = TestRandom(state: half ? 12 : 13)
            let vocab = 11, dModel = 300, nb = 3, dConv = 4
            let E = rng.weights(vocab * dModel, half: half)
            let tokens: [Int32] = [7, 0, 10]
            let pipe = try kernels.pipeline(Kernel.EmbeddingGather.self, .embedding(
                dModel: dModel, dConv: dConv, rows: nb, half ? .f16 : .f32))
            let eb = half ? halfBuffer(E) : buffer(E)
            let tb = padded(tokens, length: 16)
            let rb = buffer([Float](repeating: .nan, count: nb * dModel))
            let pos: [UInt32] = [3, 0, 2]
            let pb = padded(pos, length: 16)
            try run { sink in
                sink.dispatch(pipe, .init(embedding: (eb, 0), tokens: (tb, 0), residual: (rb, 0), conv_pos: (pb, 0),
                                          scales: nil, biases: nil),
                              .threads(MTLSize(width: dModel, height: nb, depth: 1),
                                       threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1)))
            }
            let want = tokens.flatMap { t in E[Int(t) * dModel..<(Int(t) + 1) * dModel] }
            XCTAssertEqual(read(rb, nb * dModel), want)
            let newPos = Array(UnsafeBufferPointer(start: pb.contents().assumingMemoryBound(to: UInt32.self), count: 3))
            XCTAssertEqual(newPos, [0, 1, 3])
        }
    }

    // MARK: fused SSM block

    struct BlockShape {
        let P: Int, N: Int, H: Int, G: Int, K: Int, layers: Int, nb: Int
        var D: Int { H * P }
        var convDim: Int { D + 2 * G * N }
        var dInProj: Int { D + convDim + H }
    }

    func testFusedDecodeBlock() throws {
        for (i, s) in [
            BlockShape(P: 12, N: 20, H: 6, G: 2, K: 4, layers: 2, nb: 2),
            BlockShape(P: 16, N: 18, H: 4, G: 1, K: 3, layers: 1, nb: 1),  // N not a multiple of 4
            BlockShape(P: 64, N: 128, H: 3, G: 3, K: 4, layers: 1, nb: 3),  // the real head shape
        ].enumerated() {
            try checkBlock(s, split: 1, seed: 20 + UInt64(i))
        }
    }

    /// Every split of a head's rows into threadgroups: splits that do not divide P (the last blocks short
    /// or empty), N not a multiple of 4, state rows that fit the registers loaded across the conv stage
    /// and rows that do not (N = 256 unsplit: 16 float4s a lane), groups whose B and C only block 0 of the
    /// first head writes.
    func testFusedDecodeBlockSplitOverRows() throws {
        let shapes = [
            BlockShape(P: 12, N: 20, H: 6, G: 2, K: 4, layers: 2, nb: 2),
            BlockShape(P: 16, N: 18, H: 4, G: 1, K: 3, layers: 1, nb: 1),
            BlockShape(P: 64, N: 128, H: 3, G: 3, K: 4, layers: 1, nb: 3),
            BlockShape(P: 64, N: 256, H: 2, G: 1, K: 4, layers: 2, nb: 2),
        ]
        var seed: UInt64 = 40
        for s in shapes {
            for split in [1, 2, 4, 8] {
                seed += 1
                try checkBlock(s, split: split, seed: seed)
            }
        }
    }

    func checkBlock(_ s: BlockShape, split: Int, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let zx = rng.floats(s.nb * s.dInProj, -2, 2)
        // layer 0 of `layers`: the kernel is bound at layer 0, sequence strides span all layers
        let convFloats = s.nb * s.layers * s.convDim * s.K, ssmFloats = s.nb * s.layers * s.H * s.P * s.N
        let conv0 = rng.floats(convFloats), ssm0 = rng.floats(ssmFloats)
        let pos: [UInt32] = (0..<s.nb).map { UInt32($0 % s.K) }
        let convW = rng.floats(s.convDim * s.K), convB = rng.floats(s.convDim, -0.5, 0.5)
        var dtBias = rng.floats(s.H, -3, 1)
        dtBias[0] = 25  // softplus' identity branch
        let A = rng.floats(s.H, -4, -0.2), Dp = rng.floats(s.H, 0.5, 1.5)
        let dtMin: Float = 0.001, dtMax: Float = 3
        let pipe = try kernels.pipeline(Kernel.SsmDecodeBlock.self, .init(
            SSM_D_INNER: s.D, SSM_D_STATE: s.N, SSM_HEAD_DIM: s.P, SSM_HEADS: s.H, SSM_GROUPS: s.G, SSM_D_CONV: s.K,
            SSM_LAYERS: s.layers, SSM_DT_MIN: dtMin, SSM_DT_MAX: dtMax, SSM_SPLIT: split))
        let zb = buffer(zx), cb = buffer(conv0), sb = buffer(ssm0)
        let pb = padded(pos, length: max(16, 4 * s.nb))
        let gb = buffer([Float](repeating: .nan, count: s.nb * s.D))
        let qb = buffer([Float](repeating: .nan, count: s.nb * s.H * split))
        let rows = (s.P + split - 1) / split
        try run { sink in
            sink.dispatch(pipe, .init(zxbcdt: (zb, 0), conv_state: (cb, 0), ssm_state: (sb, 0), conv_pos: (pb, 0),
                                      conv_w: (buffer(convW), 0), conv_b: (buffer(convB), 0),
                                      head_p: (buffer(dtBias + A + Dp), 0), gated: (gb, 0), sumsq: (qb, 0),
                                      shared: roundUp(4 * (rows + 2 * s.N + 8), 16)),
                          .threadgroups(MTLSize(width: s.H * split, height: s.nb, depth: 1),
                                        threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1)))
        }

        // Reference, in Double, written from the math (mamba_ssm's step) rather than from the kernel.
        var conv = conv0, ssm = ssm0
        var gated = [Float](repeating: 0, count: s.nb * s.D), sumsq = [Float](repeating: 0, count: s.nb * s.H * split)
        func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }
        for b in 0..<s.nb {
            let row = Array(zx[b * s.dInProj..<(b + 1) * s.dInProj])
            let p = Int(pos[b])
            var xbc = [Double](repeating: 0, count: s.convDim)
            for c in 0..<s.convDim {
                let ring = (b * s.layers) * s.convDim * s.K + c * s.K
                let input = Double(row[s.D + c])
                var acc = Double(convB[c]) + Double(convW[c * s.K + s.K - 1]) * input
                for j in 0..<(s.K - 1) { acc += Double(convW[c * s.K + j]) * Double(conv[ring + (p + 1 + j) % s.K]) }
                xbc[c] = silu(acc)
                conv[ring + p] = Float(input)
            }
            for h in 0..<s.H {
                let g = h / (s.H / s.G)
                let raw = Double(row[s.D + s.convDim + h] + dtBias[h])
                let dt = min(max(raw > 20 ? raw : log(1 + exp(raw)), Double(dtMin)), Double(dtMax))
                let dA = exp(dt * Double(A[h]))
                var sq = [Double](repeating: 0, count: split)  // per block of rows
                for pp in 0..<s.P {
                    let x = xbc[h * s.P + pp]
                    var y = 0.0
                    for n in 0..<s.N {
                        let at = ((b * s.layers) * s.H + h) * s.P * s.N + pp * s.N + n
                        let st = Double(ssm[at]) * dA + dt * x * xbc[s.D + g * s.N + n]
                        ssm[at] = Float(st)
                        y += st * xbc[s.D + s.G * s.N + g * s.N + n]
                    }
                    y += Double(Dp[h]) * x
                    let gv = y * silu(Double(row[h * s.P + pp]))
                    gated[b * s.D + h * s.P + pp] = Float(gv)
                    sq[pp / rows] += gv * gv
                }
                for j in 0..<split { sumsq[(b * s.H + h) * split + j] = Float(sq[j]) }
            }
        }
        let what = "block P=\(s.P) N=\(s.N) H=\(s.H) G=\(s.G) K=\(s.K) batch=\(s.nb) split=\(split)"
        assertClose(read(gb, s.nb * s.D), gated, rel: 1e-5, what + " gated")
        assertClose(read(qb, s.nb * s.H * split), sumsq, rel: 1e-5, what + " sumsq")
        assertClose(read(sb, ssmFloats), ssm, rel: 1e-5, what + " ssm_state")
        assertClose(read(cb, convFloats), conv, rel: 0, what + " conv_state")
    }
}
