// One block of prompt tokens (one sequence) through every layer, in mamba_ssm's chunked (SSD) form:
//
//   embedding_gather_prompt      residual (T, d_model) = E[tokens]; conv_pos += T
//   for each layer:
//     matmul in_proj             zxbcdt = RMSNorm(residual) · in_projᵀ                      (norm fused)
//     conv1d_prefill ∥ chunk_cumsum   xbc = silu(conv(x B C)), conv ring handed on │ dt, Σ dt·A per chunk
//     matmul C·Bᵀ ∥ chunk_state  causal C·Bᵀ per (chunk, group) │ each chunk's state from zero
//     state_passing              start state of each chunk from the sequence's state; final state → ssm_state
//     chunk_scan                 gated = (y + D·x) · silu(z), y from the start state and within the chunk
//     matmul out_proj            residual += GroupRMSNorm(gated) · out_projᵀ                (norm fused)
//
// 8 dispatches per layer + 1, in 6 barrier-separated stages per layer (∥: no barrier between the two).
// The logits of the block's last token come from the decode plan's lm_head matvec on that row.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

final class MetalPrefillPlan {
    private let model: MetalModel
    private let embed: any MTLComputePipelineState
    private let conv: any MTLComputePipelineState
    private let cumsum: any MTLComputePipelineState
    private let chunkState: any MTLComputePipelineState
    private let statePassing: any MTLComputePipelineState
    private let chunkScan: any MTLComputePipelineState
    private let inProj: MetalMatmul, outProj: MetalMatmul, cb: MetalMatmul

    static let dispatchesPerLayer = 8
    /// Dispatches `encode` issues for one block (without the lm_head).
    var dispatchesPerBlock: Int { 1 + MetalPrefillPlan.dispatchesPerLayer * model.config.nLayer }
    var capacity: Int { model.prefill.capacity }

    /// Threadgroup side of the SSD kernels' tiles (SSD_TILE in ssd_prefill.metal) and their threads.
    private static let ssdTile = 32, ssdThreads = 128

    init(kernels: MetalKernels, model: MetalModel, tuning: MetalTuning) throws {
        let c = model.config, T = model.prefill.capacity, Q = c.chunkSize
        self.model = model
        embed = try kernels.pipeline("embedding.metal", "embedding_gather_prompt", [
            0: .int(c.dModel), 1: .int(1), 2: .bool(model.embeddingFormat.half), 3: .int(c.dConv),
        ])
        let ssd: [Int: FunctionConstant] = [
            0: .int(c.dInner), 1: .int(c.dState), 2: .int(c.headDim), 3: .int(c.nHeads), 4: .int(c.nGroups),
            5: .int(c.dConv), 6: .int(Q), 7: .int(T), 8: .float(Float(c.timeStepMin)), 9: .float(Float(c.timeStepMax)),
        ]
        conv = try kernels.pipeline("ssd_prefill.metal", "conv1d_prefill", ssd)
        cumsum = try kernels.pipeline("ssd_prefill.metal", "chunk_cumsum", ssd)
        chunkState = try kernels.pipeline("ssd_prefill.metal", "chunk_state", ssd)
        statePassing = try kernels.pipeline("ssd_prefill.metal", "state_passing", ssd)
        chunkScan = try kernels.pipeline("ssd_prefill.metal", "chunk_scan", ssd)

        let tile = tuning.matmulTile
        var inSpec = MatmulSpec(n: c.dInProj, k: c.dModel, m: T, tile: tile, ldx: c.dModel, ldw: c.dModel, ldy: c.dInProj)
        inSpec.weightsHalf = model.inProjFormat.half
        inSpec.normGroups = 1
        inSpec.eps = Float(c.eps)
        inProj = try MetalMatmul(kernels: kernels, spec: inSpec)

        var outSpec = MatmulSpec(n: c.dModel, k: c.dInner, m: T, tile: tile, ldx: c.dInner, ldw: c.dInner, ldy: c.dModel)
        outSpec.weightsHalf = model.outProjFormat.half
        outSpec.normGroups = c.nGroups
        outSpec.eps = Float(c.eps)
        outSpec.accumulate = true
        outProj = try MetalMatmul(kernels: kernels, spec: outSpec)

        // C·Bᵀ: X = C and W = B, both rows of xbc; batch index = chunk · n_groups + group.
        var cbSpec = MatmulSpec(n: Q, k: c.dState, m: Q, tile: Q <= 16 ? 16 : tile, ldx: c.convDim, ldw: c.convDim, ldy: Q)
        cbSpec.causal = true
        cbSpec.zInner = c.nGroups
        cbSpec.xOuter = Q * c.convDim
        cbSpec.xInner = c.dState
        cbSpec.wOuter = Q * c.convDim
        cbSpec.wInner = c.dState
        cbSpec.yOuter = c.nGroups * Q * Q
        cbSpec.yInner = Q * Q
        cb = try MetalMatmul(kernels: kernels, spec: cbSpec)

        let needs = [(embed, 256), (conv, 256), (statePassing, 256), (cumsum, 32),
                     (chunkState, MetalPrefillPlan.ssdThreads), (chunkScan, MetalPrefillPlan.ssdThreads)]
        for (p, threads) in needs where p.maxTotalThreadsPerThreadgroup < threads {
            throw MambaFailure.backend("a Metal prefill pipeline allows only \(p.maxTotalThreadsPerThreadgroup) threads per threadgroup")
        }
    }

    /// Encodes the block of `tokens` prompt tokens in tokens[0 ..< tokens] for sequence `seq`; the
    /// host has written `tokens` into the count buffer. Leaves the last token's residual in row
    /// tokens − 1 of the prefill residual. Returns the number of dispatches encoded.
    @discardableResult
    func encode(_ enc: MetalCommandSink, seq: Int, tokens T: Int) -> Int {
        let m = model, c = model.config, pf = model.prefill, f = 4
        let Q = c.chunkSize, chunks = (T + Q - 1) / Q, tile = MetalPrefillPlan.ssdTile
        let groupTile = MTLSize(width: MetalPrefillPlan.ssdThreads, height: 1, depth: 1)
        func tiles(_ n: Int) -> Int { (n + tile - 1) / tile }

        enc.setPipeline(embed)
        enc.setBuffer(m.embedding, offset: 0, index: 0)
        enc.setBuffer(m.tokens, offset: 0, index: 1)
        enc.setBuffer(pf.residual, offset: 0, index: 2)
        enc.setBuffer(m.convPos, offset: 4 * seq, index: 3)
        enc.setBuffer(pf.count, offset: 0, index: 4)
        enc.dispatchThreads(MTLSize(width: c.dModel, height: T, depth: 1),
                            threadsPerThreadgroup: MTLSize(width: min(256, c.dModel), height: 1, depth: 1))
        enc.barrier()

        for (l, L) in m.layers.enumerated() {
            inProj.encode(enc, w: (L.buffer, L.inProj), x: (pf.residual, 0), y: (pf.zxbcdt, 0), norm: (L.buffer, L.norm),
                          count: pf.count, tokens: T)
            enc.barrier()

            enc.setPipeline(conv)
            enc.setBuffer(pf.zxbcdt, offset: 0, index: 0)
            enc.setBuffer(m.convState, offset: f * (seq * c.nLayer + l) * c.convDim * c.dConv, index: 1)
            enc.setBuffer(m.convPos, offset: 4 * seq, index: 2)
            enc.setBuffer(L.buffer, offset: L.convWeight, index: 3)
            enc.setBuffer(L.buffer, offset: L.convBias, index: 4)
            enc.setBuffer(pf.xbc, offset: 0, index: 5)
            enc.setBuffer(pf.count, offset: 0, index: 6)
            enc.dispatchThreadgroups(MTLSize(width: (c.convDim + 31) / 32, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 32, height: 8, depth: 1))

            enc.setPipeline(cumsum)
            enc.setBuffer(pf.zxbcdt, offset: 0, index: 0)
            enc.setBuffer(L.buffer, offset: L.headParams, index: 1)
            enc.setBuffer(pf.dt, offset: 0, index: 2)
            enc.setBuffer(pf.cumsum, offset: 0, index: 3)
            enc.setBuffer(pf.count, offset: 0, index: 4)
            enc.dispatchThreadgroups(MTLSize(width: c.nHeads, height: chunks, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
            enc.barrier()

            cb.encode(enc, w: (pf.xbc, f * c.dInner), x: (pf.xbc, f * (c.dInner + c.nGroups * c.dState)), y: (pf.cb, 0),
                      norm: (pf.xbc, 0), count: pf.count, tokens: T, batches: chunks * c.nGroups)

            enc.setPipeline(chunkState)
            enc.setBuffer(pf.xbc, offset: 0, index: 0)
            enc.setBuffer(pf.dt, offset: 0, index: 1)
            enc.setBuffer(pf.cumsum, offset: 0, index: 2)
            enc.setBuffer(pf.states, offset: 0, index: 3)
            enc.setBuffer(pf.count, offset: 0, index: 4)
            enc.setThreadgroupMemory(f * (2 * tile * tile + tile), index: 0)
            enc.dispatchThreadgroups(MTLSize(width: tiles(c.dState), height: tiles(c.headDim), depth: chunks * c.nHeads),
                                     threadsPerThreadgroup: groupTile)
            enc.barrier()

            enc.setPipeline(statePassing)
            enc.setBuffer(pf.states, offset: 0, index: 0)
            enc.setBuffer(m.ssmState, offset: f * (seq * c.nLayer + l) * c.nHeads * c.headDim * c.dState, index: 1)
            enc.setBuffer(pf.cumsum, offset: 0, index: 2)
            enc.setBuffer(pf.count, offset: 0, index: 3)
            enc.dispatchThreads(MTLSize(width: c.headDim * c.dState, height: c.nHeads, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1))
            enc.barrier()

            enc.setPipeline(chunkScan)
            enc.setBuffer(pf.zxbcdt, offset: 0, index: 0)
            enc.setBuffer(pf.xbc, offset: 0, index: 1)
            enc.setBuffer(pf.dt, offset: 0, index: 2)
            enc.setBuffer(pf.cumsum, offset: 0, index: 3)
            enc.setBuffer(pf.cb, offset: 0, index: 4)
            enc.setBuffer(pf.states, offset: 0, index: 5)
            enc.setBuffer(L.buffer, offset: L.headParams, index: 6)
            enc.setBuffer(pf.gated, offset: 0, index: 7)
            enc.setBuffer(pf.count, offset: 0, index: 8)
            enc.setThreadgroupMemory(f * (2 * tile * tile + 2 * tile), index: 0)
            enc.dispatchThreadgroups(MTLSize(width: tiles(c.headDim), height: tiles(min(Q, T)), depth: chunks * c.nHeads),
                                     threadsPerThreadgroup: groupTile)
            enc.barrier()

            outProj.encode(enc, w: (L.buffer, L.outProj), x: (pf.gated, 0), y: (pf.residual, 0),
                           norm: (L.buffer, L.gatedNorm), count: pf.count, tokens: T)
            enc.barrier()
        }
        return dispatchesPerBlock
    }
}
