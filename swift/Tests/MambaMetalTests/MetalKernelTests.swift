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

    /// Reference: y[b, r] (=, +=) Σ_k W[r, k] · x̂[b, k], in Double.
    func matvecReference(W: [Float], N: Int, K: Int, x: [Float], nb: Int, y0: [Float], norm: Int, normW: [Float],
                         sumsq: [Float], groups: Int, heads: Int, eps: Float, accumulate: Bool) -> [Float] {
        var y = y0
        for b in 0..<nb {
            var xh = (0..<K).map { Double(x[b * K + $0]) }
            if norm == 1 {
                let ms = xh.reduce(0) { $0 + $1 * $1 } / Double(K)
                let s = 1 / (ms + Double(eps)).squareRoot()
                xh = (0..<K).map { xh[$0] * s * Double(normW[$0]) }
            } else if norm == 2 {
                let gs = K / groups, hpg = heads / groups
                for k in 0..<K {
                    let g = k / gs
                    let ss = (0..<hpg).reduce(0.0) { $0 + Double(sumsq[b * heads + g * hpg + $1]) }
                    xh[k] *= Double(normW[k]) / (ss / Double(gs) + Double(eps)).squareRoot()
                }
            }
            for r in 0..<N {
                var s = 0.0
                for k in 0..<K { s += Double(W[r * K + k]) * xh[k] }
                y[b * N + r] = Float((accumulate ? Double(y0[b * N + r]) : 0) + s)
            }
        }
        return y
    }

    func checkMatvec(N: Int, K: Int, nb: Int, half: Bool, norm: Int, accumulate: Bool, groups: Int = 1,
                     heads: Int = 1, rowsPerSimdgroup: Int = 2, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        var W = rng.floats(N * K)
        if half { W = W.map { halfToFloat(floatToHalf($0)) } }
        let x = rng.floats(nb * K, -2, 2), normW = rng.floats(K, 0.5, 1.5)
        let sumsq = rng.floats(nb * heads, 0.5, 4)
        let y0: [Float] = accumulate ? rng.floats(nb * N) : [Float](repeating: .nan, count: nb * N)
        let eps: Float = 1e-5
        let pipe = try kernels.pipeline("matvec.metal", "matvec", [
            0: .int(N), 1: .int(K), 2: .int(nb), 3: .bool(half), 4: .int(norm), 5: .bool(accumulate),
            6: .int(groups), 7: .int(heads), 8: .float(eps), 9: .int(rowsPerSimdgroup),
        ])
        let wb = half ? halfBuffer(W) : buffer(W)
        let xb = buffer(x), yb = buffer(y0), nwb = buffer(normW), ssb = buffer(sumsq)
        try run { enc in
            enc.setComputePipelineState(pipe)
            for (i, b) in [wb, xb, yb, nwb, ssb].enumerated() { enc.setBuffer(b, offset: 0, index: i) }
            enc.setThreadgroupMemoryLength(roundUp(4 * nb * max(groups, 1), 16), index: 0)
            let perGroup = 4 * rowsPerSimdgroup
            enc.dispatchThreadgroups(MTLSize(width: (N + perGroup - 1) / perGroup, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 128, height: 1, depth: 1))
        }
        let want = matvecReference(W: W, N: N, K: K, x: x, nb: nb, y0: y0, norm: norm, normW: normW, sumsq: sumsq,
                                   groups: groups, heads: heads, eps: eps, accumulate: accumulate)
        assertClose(read(yb, nb * N), want, rel: 1e-5,
                    "matvec N=\(N) K=\(K) batch=\(nb) half=\(half) norm=\(norm) acc=\(accumulate) R=\(rowsPerSimdgroup)")
    }

    func testMatvecPlainAndBatched() throws {
        try checkMatvec(N: 37, K: 52, nb: 1, half: false, norm: 0, accumulate: false, seed: 1)
        try checkMatvec(N: 37, K: 52, nb: 3, half: true, norm: 0, accumulate: false, seed: 2)
        try checkMatvec(N: 129, K: 300, nb: 8, half: true, norm: 0, accumulate: false, rowsPerSimdgroup: 4, seed: 3)
        try checkMatvec(N: 5, K: 1, nb: 2, half: false, norm: 0, accumulate: false, rowsPerSimdgroup: 1, seed: 4)
    }

    func testMatvecScalarPathWhenKIsNotAMultipleOfFour() throws {
        try checkMatvec(N: 33, K: 50, nb: 2, half: true, norm: 1, accumulate: false, seed: 5)
        try checkMatvec(N: 33, K: 51, nb: 1, half: false, norm: 0, accumulate: true, rowsPerSimdgroup: 3, seed: 6)
    }

    func testMatvecFusedRMSNorm() throws {
        try checkMatvec(N: 70, K: 96, nb: 3, half: false, norm: 1, accumulate: false, seed: 7)
        try checkMatvec(N: 70, K: 96, nb: 1, half: true, norm: 1, accumulate: false, seed: 8)
    }

    func testMatvecGatedGroupNormWithResidualAdd() throws {
        try checkMatvec(N: 41, K: 96, nb: 3, half: false, norm: 2, accumulate: true, groups: 2, heads: 6, seed: 9)
        try checkMatvec(N: 41, K: 96, nb: 2, half: true, norm: 2, accumulate: true, groups: 3, heads: 6, seed: 10)
        // group size 6: not a multiple of 4, so the scalar path applies the per-group scale
        try checkMatvec(N: 9, K: 18, nb: 1, half: false, norm: 2, accumulate: true, groups: 3, heads: 3, seed: 11)
    }

    // MARK: embedding

    func testEmbeddingGatherAndConvPosition() throws {
        for half in [false, true] {
            var rng = TestRandom(state: half ? 12 : 13)
            let vocab = 11, dModel = 300, nb = 3, dConv = 4
            var E = rng.floats(vocab * dModel)
            if half { E = E.map { halfToFloat(floatToHalf($0)) } }
            let tokens: [Int32] = [7, 0, 10]
            let pipe = try kernels.pipeline("embedding.metal", "embedding_gather",
                                            [0: .int(dModel), 1: .int(nb), 2: .bool(half), 3: .int(dConv)])
            let eb = half ? halfBuffer(E) : buffer(E)
            let tb = padded(tokens, length: 16)
            let rb = buffer([Float](repeating: .nan, count: nb * dModel))
            let pos: [UInt32] = [3, 0, 2]
            let pb = padded(pos, length: 16)
            try run { enc in
                enc.setComputePipelineState(pipe)
                for (i, b) in [eb, tb, rb, pb].enumerated() { enc.setBuffer(b, offset: 0, index: i) }
                enc.dispatchThreads(MTLSize(width: dModel, height: nb, depth: 1),
                                    threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1))
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
            try checkBlock(s, seed: 20 + UInt64(i))
        }
    }

    func checkBlock(_ s: BlockShape, seed: UInt64) throws {
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
        let pipe = try kernels.pipeline("ssm_decode.metal", "ssm_decode_block", [
            0: .int(s.D), 1: .int(s.N), 2: .int(s.P), 3: .int(s.H), 4: .int(s.G), 5: .int(s.K), 6: .int(s.layers),
            7: .float(dtMin), 8: .float(dtMax),
        ])
        let zb = buffer(zx), cb = buffer(conv0), sb = buffer(ssm0)
        let pb = padded(pos, length: max(16, 4 * s.nb))
        let gb = buffer([Float](repeating: .nan, count: s.nb * s.D))
        let qb = buffer([Float](repeating: .nan, count: s.nb * s.H))
        let bufs = [zb, cb, sb, pb, buffer(convW), buffer(convB), buffer(dtBias + A + Dp), gb, qb]
        try run { enc in
            enc.setComputePipelineState(pipe)
            for (i, b) in bufs.enumerated() { enc.setBuffer(b, offset: 0, index: i) }
            enc.setThreadgroupMemoryLength(roundUp(4 * (s.P + 2 * s.N + 8), 16), index: 0)
            enc.dispatchThreadgroups(MTLSize(width: s.H, height: s.nb, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1))
        }

        // Reference, in Double, written from the math (mamba_ssm's step) rather than from the kernel.
        var conv = conv0, ssm = ssm0
        var gated = [Float](repeating: 0, count: s.nb * s.D), sumsq = [Float](repeating: 0, count: s.nb * s.H)
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
                var sq = 0.0
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
                    sq += gv * gv
                }
                sumsq[b * s.H + h] = Float(sq)
            }
        }
        let what = "block P=\(s.P) N=\(s.N) H=\(s.H) G=\(s.G) K=\(s.K) batch=\(s.nb)"
        assertClose(read(gb, s.nb * s.D), gated, rel: 1e-5, what + " gated")
        assertClose(read(qb, s.nb * s.H), sumsq, rel: 1e-5, what + " sumsq")
        assertClose(read(sb, ssmFloats), ssm, rel: 1e-5, what + " ssm_state")
        assertClose(read(cb, convFloats), conv, rel: 0, what + " conv_state")
    }
}
