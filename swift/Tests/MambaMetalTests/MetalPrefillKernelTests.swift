// The chunked-prefill kernels (metal/matmul.metal, metal/ssd_prefill.metal, embedding_gather_prompt)
// against plain Swift references in Double: random inputs, outputs poisoned with NaN, shapes that are
// not multiples of the tiles, and the SSD kernels chained as the prefill runs them, compared with the
// token-by-token recurrence (prompts shorter than, equal to and longer than a chunk).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

@testable import MambaMetal

final class MetalPrefillKernelTests: MetalTestCase {
    // MARK: matmul

    /// Y[m, n] (=, +=) Σ_k X̂[m, k] · W[n, k] for m < T, n < N; everything else keeps its old value.
    func checkMatmul(T: Int, N: Int, K: Int, tile: Int, tileK: Int = 32, half: Bool, groups: Int, accumulate: Bool,
                     seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let capacity = T + 5, ldx = K + 3, ldw = K + 1, ldy = N + 2
        let X = rng.floats(capacity * ldx, -2, 2), normW = rng.floats(K, 0.5, 1.5)
        let W = rng.weights(N * ldw, half: half)
        let y0 = accumulate ? rng.floats(capacity * ldy) : [Float](repeating: .nan, count: capacity * ldy)
        var spec = MatmulSpec(n: N, k: K, m: capacity, tile: tile, ldx: ldx, ldw: ldw, ldy: ldy)
        spec.tileK = tileK
        spec.weights = half ? .f16 : .f32
        spec.normGroups = groups
        spec.accumulate = accumulate
        let mm = try MetalMatmul(kernels: kernels, spec: spec)
        let wb = half ? halfBuffer(W) : buffer(W), xb = buffer(X), yb = buffer(y0), nb = buffer(normW)
        try run { sink in
            mm.encode(sink, w: GPUMatrix(half ? .f16 : .f32, values: (wb, 0)), x: (xb, 0), y: (yb, 0), norm: groups > 0 ? (nb, 0) : nil, count: countBuffer(T),
                      tokens: T)
        }

        var want = y0
        for m in 0..<T {
            var xh = (0..<K).map { Double(X[m * ldx + $0]) }
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
                want[m * ldy + n] = Float((accumulate ? Double(y0[m * ldy + n]) : 0) + s)
            }
        }
        let got = read(yb, capacity * ldy)
        let what = "matmul T=\(T) N=\(N) K=\(K) tile=\(tile)×\(tileK) half=\(half) groups=\(groups) acc=\(accumulate)"
        assertClose(got.enumerated().map { want[$0.offset].isNaN ? 0 : $0.element },
                    want.map { $0.isNaN ? 0 : $0 }, rel: 1e-5, what)
        for i in 0..<got.count where want[i].isNaN { XCTAssert(got[i].isNaN, "\(what): wrote outside the output at \(i)") }
    }

    func testMatmulProjectionsOnOddShapes() throws {
        try checkMatmul(T: 37, N: 45, K: 70, tile: 16, half: false, groups: 0, accumulate: false, seed: 40)
        try checkMatmul(T: 37, N: 45, K: 70, tile: 32, half: true, groups: 0, accumulate: false, seed: 41)
        try checkMatmul(T: 1, N: 33, K: 24, tile: 32, tileK: 8, half: false, groups: 0, accumulate: false, seed: 42)
        try checkMatmul(T: 70, N: 20, K: 64, tile: 64, tileK: 16, half: true, groups: 0, accumulate: true, seed: 43)
    }

    func testMatmulFusedNorms() throws {
        // in_proj: the plain RMSNorm; out_proj: the gated group norm with the residual add.
        try checkMatmul(T: 29, N: 50, K: 64, tile: 32, half: true, groups: 1, accumulate: false, seed: 44)
        try checkMatmul(T: 29, N: 50, K: 66, tile: 16, half: false, groups: 3, accumulate: true, seed: 45)
        try checkMatmul(T: 33, N: 17, K: 96, tile: 32, tileK: 24, half: true, groups: 2, accumulate: true, seed: 46)
    }

    /// C·Bᵀ per (chunk, group), causal, with B and C read from inside the rows of xbc.
    func checkCB(T: Int, Q: Int, G: Int, N: Int, tile: Int, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let chunks = (T + Q - 1) / Q, capacity = (chunks + 1) * Q, D = 10, CD = D + 2 * G * N
        let xbc = rng.floats(capacity * CD)
        let cb0 = [Float](repeating: .nan, count: (chunks + 1) * G * Q * Q)
        let mm = try MetalMatmul(kernels: kernels, spec: cbSpec(Q: Q, G: G, N: N, CD: CD, tile: tile))
        let xb = buffer(xbc), yb = buffer(cb0)
        try run { sink in
            mm.encode(sink, w: GPUMatrix(.f32, values: (xb, 4 * D)), x: (xb, 4 * (D + G * N)), y: (yb, 0), norm: nil, count: countBuffer(T),
                      tokens: T, batches: chunks * G)
        }
        let got = read(yb, cb0.count)
        var worst = 0.0, scale = 0.0
        for c in 0..<chunks {
            let rows = min(Q, T - c * Q)
            for g in 0..<G {
                for t in 0..<Q {
                    for s in 0..<Q {
                        let v = got[((c * G + g) * Q + t) * Q + s]
                        guard t < rows, s < rows else {
                            XCTAssert(v.isNaN, "C·Bᵀ wrote outside chunk \(c)'s \(rows) rows at (\(t), \(s))")
                            continue
                        }
                        var want = 0.0
                        if s <= t {
                            for n in 0..<N {
                                want += Double(xbc[(c * Q + t) * CD + D + G * N + g * N + n]) * Double(xbc[(c * Q + s) * CD + D + g * N + n])
                            }
                        }
                        worst = max(worst, abs(Double(v) - want).isNaN ? .infinity : abs(Double(v) - want))
                        scale = max(scale, abs(want))
                    }
                }
            }
        }
        for i in chunks * G * Q * Q..<got.count { XCTAssert(got[i].isNaN, "C·Bᵀ wrote past the last chunk at \(i)") }
        XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "C·Bᵀ T=\(T) Q=\(Q) G=\(G) N=\(N) tile=\(tile)")
    }

    func cbSpec(Q: Int, G: Int, N: Int, CD: Int, tile: Int) -> MatmulSpec {
        var s = MatmulSpec(n: Q, k: N, m: Q, tile: tile, ldx: CD, ldw: CD, ldy: Q)
        s.causal = true
        s.zInner = G
        s.xOuter = Q * CD
        s.xInner = N
        s.wOuter = Q * CD
        s.wInner = N
        s.yOuter = G * Q * Q
        s.yInner = Q * Q
        return s
    }

    func testMatmulCausalGroupedCB() throws {
        try checkCB(T: 40, Q: 16, G: 2, N: 12, tile: 16, seed: 50)
        try checkCB(T: 53, Q: 24, G: 3, N: 20, tile: 16, seed: 51)  // partial tiles inside each chunk
        try checkCB(T: 70, Q: 64, G: 1, N: 40, tile: 32, seed: 52)
        try checkCB(T: 5, Q: 16, G: 1, N: 8, tile: 16, seed: 53)
    }

    // MARK: embedding and conv

    func testEmbeddingGatherPrompt() throws {
        for half in [false, true] {
            var rng = TestRandom(state: half ? 54 : 55)
            let vocab = 11, dModel = 37, T = 5, dConv = 4
            let E = rng.weights(vocab * dModel, half: half)
            let tokens: [Int32] = [7, 0, 10, 3, 7]
            let pipe = try kernels.pipeline(Kernel.EmbeddingGatherPrompt.self, .embedding(
                dModel: dModel, dConv: dConv, rows: 1, half ? .f16 : .f32))
            let eb = half ? halfBuffer(E) : buffer(E)
            let tb = padded(tokens, length: 4 * T)
            let rb = buffer([Float](repeating: .nan, count: (T + 1) * dModel))
            let pb = padded([UInt32(2), 9], length: 16)
            try run { sink in
                sink.dispatch(pipe, .init(embedding: (eb, 0), tokens: (tb, 0), residual: (rb, 0), conv_pos: (pb, 0),
                                          count: (countBuffer(T), 0), scales: nil, biases: nil),
                              .threads(MTLSize(width: dModel, height: T, depth: 1),
                                       threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1)))
            }
            let got = read(rb, (T + 1) * dModel)
            XCTAssertEqual(Array(got[0..<T * dModel]), tokens.flatMap { t in E[Int(t) * dModel..<(Int(t) + 1) * dModel] })
            XCTAssert(got[(T * dModel)...].allSatisfy { $0.isNaN })
            let pos = UnsafeBufferPointer(start: pb.contents().assumingMemoryBound(to: UInt32.self), count: 2)
            XCTAssertEqual(Array(pos), [(2 + 5) % 4, 9])
        }
    }

    struct SSDShape {
        let P: Int, N: Int, H: Int, G: Int, K: Int, Q: Int, T: Int
        var D: Int { H * P }
        var CD: Int { D + 2 * G * N }
        var DP: Int { D + CD + H }
        var chunks: Int { (T + Q - 1) / Q }
        /// More room than the block needs, so strides by capacity are exercised.
        var capacity: Int { (chunks + 1) * Q }
    }

    func ssdConstants(_ s: SSDShape, dtMin: Float = 0.001, dtMax: Float = 26) -> Kernel.SsdPrefillConstants {
        .init(SSD_D_INNER: s.D, SSD_D_STATE: s.N, SSD_HEAD_DIM: s.P, SSD_HEADS: s.H, SSD_GROUPS: s.G, SSD_D_CONV: s.K,
              SSD_CHUNK: s.Q, SSD_CAPACITY: s.capacity, SSD_DT_MIN: dtMin, SSD_DT_MAX: dtMax)
    }

    func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }

    /// conv1d_prefill against the decode step's ring update applied token by token.
    func checkConv(_ s: SSDShape, pos0: Int, seed: UInt64) throws {
        var rng = TestRandom(state: seed)
        let zx = rng.floats(s.capacity * s.DP, -2, 2), ring0 = rng.floats(s.CD * s.K)
        let convW = rng.floats(s.CD * s.K), convB = rng.floats(s.CD, -0.5, 0.5)
        let pipe = try kernels.pipeline(Kernel.Conv1dPrefill.self, ssdConstants(s))
        let ringB = buffer(ring0), out = buffer([Float](repeating: .nan, count: s.capacity * s.CD))
        let posB = padded([UInt32((pos0 + s.T) % s.K)], length: 16)
        try run { sink in
            sink.dispatch(pipe, .init(zxbcdt: (buffer(zx), 0), conv_state: (ringB, 0), conv_pos: (posB, 0),
                                      conv_w: (buffer(convW), 0), conv_b: (buffer(convB), 0), xbc: (out, 0),
                                      count: (countBuffer(s.T), 0)),
                          .threadgroups(MTLSize(width: (s.CD + 31) / 32, height: 1, depth: 1),
                                        threadsPerThreadgroup: MTLSize(width: 32, height: 8, depth: 1)))
        }
        var ring = ring0, want = [Float](repeating: .nan, count: s.capacity * s.CD), pos = pos0
        for t in 0..<s.T {
            pos = (pos + 1) % s.K
            for c in 0..<s.CD {
                let input = zx[t * s.DP + s.D + c]
                var acc = Double(convB[c]) + Double(convW[c * s.K + s.K - 1]) * Double(input)
                for j in 0..<(s.K - 1) { acc += Double(convW[c * s.K + j]) * Double(ring[c * s.K + (pos + 1 + j) % s.K]) }
                want[t * s.CD + c] = Float(silu(acc))
                ring[c * s.K + pos] = input
            }
        }
        let got = read(out, want.count)
        let what = "conv T=\(s.T) K=\(s.K) pos0=\(pos0)"
        assertClose(Array(got[0..<s.T * s.CD]), Array(want[0..<s.T * s.CD]), rel: 1e-6, what)
        XCTAssert(got[(s.T * s.CD)...].allSatisfy { $0.isNaN }, what + ": wrote past the block")
        XCTAssertEqual(read(ringB, ring.count), ring, what + ": ring")
    }

    func testConvPrefillContinuesTheRing() throws {
        for (i, (T, pos0)) in [(2, 3), (4, 1), (37, 0), (1, 2), (9, 2)].enumerated() {
            try checkConv(SSDShape(P: 8, N: 5, H: 3, G: 1, K: 4, Q: 16, T: T), pos0: pos0, seed: 60 + UInt64(i))
        }
        try checkConv(SSDShape(P: 4, N: 6, H: 4, G: 2, K: 3, Q: 8, T: 11), pos0: 1, seed: 66)
    }

    // MARK: SSD

    /// chunk_cumsum → C·Bᵀ → chunk_state → state_passing → chunk_scan, as the prefill chains them, against
    /// the recurrence one token at a time. Returns the worst relative errors (gated, final state).
    @discardableResult
    func checkSSD(_ s: SSDShape, seed: UInt64, extreme: Bool = false) throws -> (Double, Double) {
        var rng = TestRandom(state: seed)
        var zx = rng.floats(s.capacity * s.DP, -2, 2)
        let xbc = rng.floats(s.capacity * s.CD)
        let ssm0 = rng.floats(s.H * s.P * s.N)
        var dtBias = rng.floats(s.H, -3, 1)
        dtBias[0] = 25       // softplus' identity branch; above dt_max (26) for some tokens
        dtBias[1] = -20      // below dt_min: clamped
        var A = rng.floats(s.H, -2, -0.1)
        let Dp = rng.floats(s.H, 0.5, 1.5)
        if extreme {
            // dt from ~0 to ≈4 and A ≈ −15: Σ dt·A reaches −10⁴ within a chunk, where a float's spacing is
            // ~10⁻³, while neighbouring tokens with small dt still weigh exp(cs_t − cs_s) ≈ 1.
            for t in 0..<s.capacity { for h in 0..<s.H { zx[t * s.DP + s.D + s.CD + h] = rng.floats(1, -9, 4)[0] } }
            dtBias = [Float](repeating: 0, count: s.H)
            dtBias[0] = 25 // the identity branch still, clamped at dt_max
            A = rng.floats(s.H, -16, -14)
        }
        let dtMin: Float = 0.001, dtMax: Float = 26
        let C = ssdConstants(s, dtMin: dtMin, dtMax: dtMax)
        let cumsum = try kernels.pipeline(Kernel.ChunkCumsum.self, C)
        let chunkState = try kernels.pipeline(Kernel.ChunkState.self, C)
        let passing = try kernels.pipeline(Kernel.StatePassing.self, C)
        let scan = try kernels.pipeline(Kernel.ChunkScan.self, C)
        let cbMatmul = try MetalMatmul(kernels: kernels, spec: cbSpec(Q: s.Q, G: s.G, N: s.N, CD: s.CD, tile: 16))

        func poisoned(_ n: Int) -> any MTLBuffer { buffer([Float](repeating: .nan, count: n)) }
        let zxB = buffer(zx), xbcB = buffer(xbc), headB = buffer(dtBias + A + Dp), count = countBuffer(s.T)
        let dtB = poisoned(s.H * s.capacity), csB = poisoned(2 * s.H * s.capacity)
        let cbB = poisoned(s.chunks * s.G * s.Q * s.Q), statesB = poisoned(s.chunks * s.H * s.P * s.N)
        let ssmB = buffer(ssm0), gatedB = poisoned(s.capacity * s.D)
        let tile = 32, tiles = { (n: Int) in (n + tile - 1) / tile }
        let threads128 = MTLSize(width: 128, height: 1, depth: 1)
        try run { sink in
            sink.dispatch(cumsum, .init(zxbcdt: (zxB, 0), head_p: (headB, 0), dt: (dtB, 0), cs: (csB, 0), count: (count, 0)),
                          .threadgroups(MTLSize(width: s.H, height: s.chunks, depth: 1),
                                        threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1)))
            sink.barrier()
            cbMatmul.encode(sink, w: GPUMatrix(.f32, values: (xbcB, 4 * s.D)), x: (xbcB, 4 * (s.D + s.G * s.N)), y: (cbB, 0), norm: nil,
                            count: count, tokens: s.T, batches: s.chunks * s.G)
            sink.dispatch(chunkState, .init(xbc: (xbcB, 0), dt: (dtB, 0), cs: (csB, 0), states: (statesB, 0),
                                            count: (count, 0), shared: 4 * (2 * tile * tile + tile)),
                          .threadgroups(MTLSize(width: tiles(s.N), height: tiles(s.P), depth: s.chunks * s.H),
                                        threadsPerThreadgroup: threads128))
            sink.barrier()
            sink.dispatch(passing, .init(states: (statesB, 0), ssm_state: (ssmB, 0), cs: (csB, 0), count: (count, 0)),
                          .threads(MTLSize(width: s.P * s.N, height: s.H, depth: 1),
                                   threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1)))
            sink.barrier()
            sink.dispatch(scan, .init(zxbcdt: (zxB, 0), xbc: (xbcB, 0), dt: (dtB, 0), cs: (csB, 0), cb: (cbB, 0),
                                      states: (statesB, 0), head_p: (headB, 0), gated: (gatedB, 0), count: (count, 0),
                                      shared: 4 * (2 * tile * tile + 2 * tile)),
                          .threadgroups(MTLSize(width: tiles(s.P), height: tiles(min(s.Q, s.T)), depth: s.chunks * s.H),
                                        threadsPerThreadgroup: threads128))
        }

        // The recurrence, in Double, from the sequence's current state.
        var state = ssm0.map(Double.init)
        var gated = [Float](repeating: .nan, count: s.capacity * s.D)
        var identityBranch = false, clampedLow = false, clampedHigh = false
        for t in 0..<s.T {
            for h in 0..<s.H {
                let g = h / (s.H / s.G)
                let raw = Double(zx[t * s.DP + s.D + s.CD + h]) + Double(dtBias[h])
                let sp = raw > 20 ? raw : log(1 + exp(raw))
                let dt = min(max(sp, Double(dtMin)), Double(dtMax))
                identityBranch = identityBranch || (raw > 20 && raw < Double(dtMax))
                clampedLow = clampedLow || sp < dt
                clampedHigh = clampedHigh || sp > dt
                let dA = exp(dt * Double(A[h]))
                for p in 0..<s.P {
                    let x = Double(xbc[t * s.CD + h * s.P + p])
                    var y = 0.0
                    for n in 0..<s.N {
                        let at = (h * s.P + p) * s.N + n
                        state[at] = state[at] * dA + dt * x * Double(xbc[t * s.CD + s.D + g * s.N + n])
                        y += state[at] * Double(xbc[t * s.CD + s.D + s.G * s.N + g * s.N + n])
                    }
                    y += Double(Dp[h]) * x
                    gated[t * s.D + h * s.P + p] = Float(y * silu(Double(zx[t * s.DP + h * s.P + p])))
                }
            }
        }
        XCTAssert(identityBranch && (clampedLow || extreme) && clampedHigh,
                  "the inputs should reach softplus' identity branch and the clamp at dt_min and dt_max")
        let what = "SSD P=\(s.P) N=\(s.N) H=\(s.H) G=\(s.G) Q=\(s.Q) T=\(s.T)"
        let got = read(gatedB, gated.count)
        XCTAssert(got[(s.T * s.D)...].allSatisfy { $0.isNaN }, what + ": wrote past the block")
        let gotGated = Array(got[0..<s.T * s.D]), wantGated = Array(gated[0..<s.T * s.D])
        let wantState = state.map { Float($0) }, gotState = read(ssmB, state.count)
        let tolerance: Float = extreme ? 1e-6 : 1e-4
        assertClose(gotGated, wantGated, rel: tolerance, what + " gated")
        assertClose(gotState, wantState, rel: tolerance, what + " final state")
        return (relativeError(gotGated, wantGated), relativeError(gotState, wantState))
    }

    func relativeError(_ got: [Float], _ want: [Float]) -> Double {
        let scale = Double(want.map(abs).max() ?? 1)
        return zip(got, want).map { Double(abs($0 - $1)) }.max()! / scale
    }

    func testChunkedSSDEqualsTheRecurrence() throws {
        var worst = (0.0, 0.0)
        for (i, s) in [
            SSDShape(P: 12, N: 20, H: 6, G: 2, K: 4, Q: 16, T: 5),    // shorter than a chunk
            SSDShape(P: 12, N: 20, H: 6, G: 2, K: 4, Q: 16, T: 16),   // one chunk exactly
            SSDShape(P: 12, N: 20, H: 6, G: 2, K: 4, Q: 16, T: 17),   // one token more
            SSDShape(P: 16, N: 16, H: 4, G: 1, K: 4, Q: 16, T: 53),   // 3 chunks + 5
            SSDShape(P: 40, N: 36, H: 3, G: 3, K: 4, Q: 48, T: 100),  // chunks with partial 32-token tiles
            SSDShape(P: 64, N: 64, H: 2, G: 1, K: 4, Q: 64, T: 70),   // the demo model's head shape
        ].enumerated() {
            let e = try checkSSD(s, seed: 70 + UInt64(i))
            worst = (max(worst.0, e.0), max(worst.1, e.1))
        }
        print("chunked SSD vs recurrence: max relative error \(worst.0) (gated), \(worst.1) (final state)")
    }

    /// dt up to ≈4 with A ≈ −15 over a 256-token chunk (issue 12, item 7): the cumulative sum of dt·A must
    /// keep the precision of the differences that decide each weight exp(cs_t − cs_s).
    func testChunkedSSDWithExtremeDecay() throws {
        var worst = (0.0, 0.0)
        for (i, s) in [
            SSDShape(P: 16, N: 32, H: 2, G: 1, K: 4, Q: 256, T: 256),
            SSDShape(P: 8, N: 12, H: 2, G: 2, K: 4, Q: 256, T: 300),
        ].enumerated() {
            let e = try checkSSD(s, seed: 90 + UInt64(i), extreme: true)
            worst = (max(worst.0, e.0), max(worst.1, e.1))
        }
        print("chunked SSD with dt ≤ 4, A ≈ −15: max relative error \(worst.0) (gated), \(worst.1) (final state)")
    }
}
