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
    private let embed: KernelPipeline<Kernel.EmbeddingGatherPrompt>
    private let conv: KernelPipeline<Kernel.Conv1dPrefill>
    private let cumsum: KernelPipeline<Kernel.ChunkCumsum>
    private let chunkState: KernelPipeline<Kernel.ChunkState>
    private let statePassing: KernelPipeline<Kernel.StatePassing>
    private let chunkScan: KernelPipeline<Kernel.ChunkScan>
    /// Per layer (layers may hold different formats; equal specialisations share one pipeline).
    private let inProj: [MetalMatmul], outProj: [MetalMatmul]
    private let cb: MetalMatmul

    var capacity: Int { model.prefill.capacity }

    /// Threadgroup side of the SSD kernels' tiles (SSD_TILE in ssd_prefill.metal) and their threads.
    private static let ssdTile = 32, ssdThreads = 128

    init(kernels: MetalKernels, model: MetalModel, tuning: MetalTuning) throws {
        let c = model.config, T = model.prefill.capacity, Q = c.chunkSize
        self.model = model
        embed = try kernels.pipeline(Kernel.EmbeddingGatherPrompt.self, .embedding(
            dModel: c.dModel, dConv: c.dConv, rows: 1, model.embedding.format))
        let ssd = Kernel.SsdPrefillConstants(
            SSD_D_INNER: c.dInner, SSD_D_STATE: c.dState, SSD_HEAD_DIM: c.headDim, SSD_HEADS: c.nHeads,
            SSD_GROUPS: c.nGroups, SSD_D_CONV: c.dConv, SSD_CHUNK: Q, SSD_CAPACITY: T,
            SSD_DT_MIN: Float(c.timeStepMin), SSD_DT_MAX: Float(c.timeStepMax))
        conv = try kernels.pipeline(Kernel.Conv1dPrefill.self, ssd)
        cumsum = try kernels.pipeline(Kernel.ChunkCumsum.self, ssd)
        chunkState = try kernels.pipeline(Kernel.ChunkState.self, ssd)
        statePassing = try kernels.pipeline(Kernel.StatePassing.self, ssd)
        chunkScan = try kernels.pipeline(Kernel.ChunkScan.self, ssd)

        let tile = tuning.matmulTile
        inProj = try model.layers.map { L in
            var spec = MatmulSpec(n: c.dInProj, k: c.dModel, m: T, tile: tile, ldx: c.dModel, ldw: c.dModel, ldy: c.dInProj)
            spec.weights = L.layout.inProj
            spec.normGroups = 1
            spec.eps = Float(c.eps)
            return try MetalMatmul(kernels: kernels, spec: spec)
        }
        outProj = try model.layers.map { L in
            var spec = MatmulSpec(n: c.dModel, k: c.dInner, m: T, tile: tile, ldx: c.dInner, ldw: c.dInner, ldy: c.dModel)
            spec.weights = L.layout.outProj
            spec.normGroups = c.nGroups
            spec.eps = Float(c.eps)
            spec.accumulate = true
            return try MetalMatmul(kernels: kernels, spec: spec)
        }

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

        let needs = [(embed.state, 256), (conv.state, 256), (statePassing.state, 256), (cumsum.state, 32),
                     (chunkState.state, MetalPrefillPlan.ssdThreads), (chunkScan.state, MetalPrefillPlan.ssdThreads)]
        for (p, threads) in needs where p.maxTotalThreadsPerThreadgroup < threads {
            throw MambaFailure.backend("a Metal prefill pipeline allows only \(p.maxTotalThreadsPerThreadgroup) threads per threadgroup")
        }
    }

    /// Encodes the block of `tokens` prompt tokens in tokens[0 ..< tokens] for sequence `seq`; the
    /// host has written `tokens` into the count buffer. Leaves the last token's residual in row
    /// tokens − 1 of the prefill residual.
    func encode(_ enc: MetalCommandSink, seq: Int, tokens T: Int) {
        let m = model, c = model.config, pf = model.prefill, f = 4
        let Q = c.chunkSize, chunks = (T + Q - 1) / Q, tile = MetalPrefillPlan.ssdTile
        let groupTile = MTLSize(width: MetalPrefillPlan.ssdThreads, height: 1, depth: 1)
        func tiles(_ n: Int) -> Int { (n + tile - 1) / tile }

        enc.dispatch(embed, .init(embedding: m.embedding.values, tokens: m.tokens.row(0), residual: pf.residual.row(0),
                                  conv_pos: m.convPos.row(seq), count: pf.count.row(0), scales: m.embedding.scales,
                                  biases: m.embedding.biases),
                     .threads(MTLSize(width: c.dModel, height: T, depth: 1),
                              threadsPerThreadgroup: MTLSize(width: min(256, c.dModel), height: 1, depth: 1)))
        enc.barrier()

        for (l, L) in m.layers.enumerated() {
            inProj[l].encode(enc, w: L.inProj, x: pf.residual.row(0), y: pf.zxbcdt.row(0), norm: L[.norm],
                             count: pf.count.buffer, tokens: T)
            enc.barrier()

            enc.dispatch(conv, .init(zxbcdt: pf.zxbcdt.row(0),
                                     conv_state: (m.convState.buffer, m.convStateOffset(seq: seq, layer: l)),
                                     conv_pos: m.convPos.row(seq), conv_w: L[.convWeight], conv_b: L[.convBias],
                                     xbc: pf.xbc.row(0), count: pf.count.row(0)),
                         .threadgroups(MTLSize(width: (c.convDim + 31) / 32, height: 1, depth: 1),
                                       threadsPerThreadgroup: MTLSize(width: 32, height: 8, depth: 1)))
            enc.dispatch(cumsum, .init(zxbcdt: pf.zxbcdt.row(0), head_p: L[.headParams], dt: pf.dt.row(0),
                                       cs: pf.cumsum.row(0), count: pf.count.row(0)),
                         .threadgroups(MTLSize(width: c.nHeads, height: chunks, depth: 1),
                                       threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1)))
            enc.barrier()

            // B and C are columns of xbc: B from column d_inner, C after the groups' B.
            cb.encode(enc, w: GPUMatrix(.f32, values: (pf.xbc.buffer, f * c.dInner)), x: (pf.xbc.buffer, f * (c.dInner + c.nGroups * c.dState)),
                      y: pf.cb.row(0), norm: nil, count: pf.count.buffer, tokens: T, batches: chunks * c.nGroups)
            enc.dispatch(chunkState, .init(xbc: pf.xbc.row(0), dt: pf.dt.row(0), cs: pf.cumsum.row(0),
                                           states: pf.states.row(0), count: pf.count.row(0),
                                           shared: f * (2 * tile * tile + tile)),
                         .threadgroups(MTLSize(width: tiles(c.dState), height: tiles(c.headDim), depth: chunks * c.nHeads),
                                       threadsPerThreadgroup: groupTile))
            enc.barrier()

            enc.dispatch(statePassing, .init(states: pf.states.row(0),
                                             ssm_state: (m.ssmState.buffer, m.ssmStateOffset(seq: seq, layer: l)),
                                             cs: pf.cumsum.row(0), count: pf.count.row(0)),
                         .threads(MTLSize(width: c.headDim * c.dState, height: c.nHeads, depth: 1),
                                  threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1)))
            enc.barrier()

            enc.dispatch(chunkScan, .init(zxbcdt: pf.zxbcdt.row(0), xbc: pf.xbc.row(0), dt: pf.dt.row(0),
                                          cs: pf.cumsum.row(0), cb: pf.cb.row(0), states: pf.states.row(0),
                                          head_p: L[.headParams], gated: pf.gated.row(0), count: pf.count.row(0),
                                          shared: f * (2 * tile * tile + 2 * tile)),
                         .threadgroups(MTLSize(width: tiles(c.headDim), height: tiles(min(Q, T)), depth: chunks * c.nHeads),
                                       threadsPerThreadgroup: groupTile))
            enc.barrier()

            outProj[l].encode(enc, w: L.outProj, x: pf.gated.row(0), y: pf.residual.row(0), norm: L[.gatedNorm],
                              count: pf.count.buffer, tokens: T)
            enc.barrier()
        }
    }
}
