// One token's work for `rows` sequences, as dispatches into a compute encoder:
//
//   embedding_gather ─┐ residual = E[token]; conv_pos += 1
//   for each layer:   │
//     matvec in_proj  ├─ zxbcdt = in_proj · RMSNorm(residual)                   (.rms)
//     ssm_decode_block├─ conv ring, SSM state update, gated = y · silu(z), sumsq per block of a head's rows
//     matvec out_proj ├─ residual += out_proj · GroupNorm(gated)                 (.gatedGroups)
//   matvec lm_head    ┘ logits = lm_head · RMSNorm(residual)                     (.rms)
//
// 3 dispatches per layer + 2, a buffer barrier between each. How many threadgroups each dispatch has is
// MetalTuning's choice (rows per simdgroup and K slices of the matvecs, blocks per head of the SSM block). Which sequences a dispatch touches is
// chosen only by buffer offsets (row `seq` of every activation and state buffer), so the same plan
// serves a batch step (rows = batch, seq = 0) and a one-sequence prefill (rows = 1, seq = s).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

extension Kernel.EmbeddingConstants {
    /// embedding.metal specialised for `rows` tokens and an embedding stored as `format`.
    static func embedding(dModel: Int, dConv: Int, rows: Int, _ format: GPUMatrixFormat) -> Self {
        let q = format.quantized ?? .unused
        return .init(EMB_D_MODEL: dModel, EMB_BATCH: rows, EMB_HALF: format.isHalf, EMB_D_CONV: dConv,
                     EMB_QUANT: format.quantized != nil, EMB_BITS: q.bits, EMB_GROUP_SIZE: q.groupSize,
                     EMB_SCALES_HALF: q.scalesHalf)
    }
}

final class MetalDecodePlan {
    let rows: Int
    private let model: MetalModel
    private let embed: KernelPipeline<Kernel.EmbeddingGather>
    /// Per layer (layers may hold different formats; equal specialisations share one pipeline).
    private let inProj: [MetalMatvec], outProj: [MetalMatvec]
    private let lmHead: MetalMatvec
    private let block: KernelPipeline<Kernel.SsmDecodeBlock>
    private let blockGrid: DispatchGrid, blockThreadgroupMemory: Int
    private let split: Int // threadgroups per head of the SSM block (tuning ssmSplit)

    init(kernels: MetalKernels, model: MetalModel, rows: Int, tuning: MetalTuning) throws {
        let c = model.config
        self.rows = rows
        self.model = model
        embed = try kernels.pipeline(Kernel.EmbeddingGather.self, .embedding(
            dModel: c.dModel, dConv: c.dConv, rows: rows, model.embedding.format))
        let split = tuning.ssmSplit
        func matvec(_ n: Int, _ k: Int, _ w: GPUMatrixFormat, norm: MatvecNorm, accumulate: Bool, rowsPerSimdgroup: Int,
                    splitK: Int) throws -> MetalMatvec {
            try MetalMatvec(kernels: kernels, spec: MatvecSpec(
                n: n, k: k, batch: rows, weights: w, norm: norm, accumulate: accumulate, groups: c.nGroups,
                heads: c.nHeads, eps: Float(c.eps), rowsPerSimdgroup: rowsPerSimdgroup, splitK: splitK,
                headParts: split))
        }
        inProj = try model.layers.map {
            try matvec(c.dInProj, c.dModel, $0.layout.inProj, norm: .rms, accumulate: false,
                       rowsPerSimdgroup: tuning.matvecRowsPerSimdgroup, splitK: tuning.matvecSplitK)
        }
        outProj = try model.layers.map {
            try matvec(c.dModel, c.dInner, $0.layout.outProj, norm: .gatedGroups, accumulate: true,
                       rowsPerSimdgroup: tuning.outProjRowsPerSimdgroup, splitK: tuning.outProjSplitK)
        }
        lmHead = try matvec(c.vocabSize, c.dModel, model.lmHead.format, norm: .rms, accumulate: false,
                            rowsPerSimdgroup: tuning.lmHeadRowsPerSimdgroup, splitK: tuning.lmHeadSplitK)
        block = try kernels.pipeline(Kernel.SsmDecodeBlock.self, .init(
            SSM_D_INNER: c.dInner, SSM_D_STATE: c.dState, SSM_HEAD_DIM: c.headDim, SSM_HEADS: c.nHeads,
            SSM_GROUPS: c.nGroups, SSM_D_CONV: c.dConv, SSM_LAYERS: c.nLayer, SSM_DT_MIN: Float(c.timeStepMin),
            SSM_DT_MAX: Float(c.timeStepMax), SSM_SPLIT: split))
        guard split <= MetalBufferLayout.maxSSMSplit else {  // sumsq's room for partial sums per head
            throw MambaFailure.internalError("ssmSplit \(split) exceeds the sumsq buffer's \(MetalBufferLayout.maxSSMSplit)")
        }
        self.split = split
        blockGrid = MetalDecodePlan.blockGrid(heads: c.nHeads, split: split, rows: rows)
        blockThreadgroupMemory = roundUp(4 * ((c.headDim + split - 1) / split + 2 * c.dState + 8), 16)
        for p in [embed.state, block.state] where p.maxTotalThreadsPerThreadgroup < 256 {
            throw MambaFailure.backend("a Metal pipeline allows only \(p.maxTotalThreadsPerThreadgroup) threads per threadgroup")
        }
    }

    /// ssm_decode_block's grid: one threadgroup of 256 threads per head and row.
    /// Where row `row`'s partial sums of squares start. The SSM block and out_proj index sumsq as (row, head,
    /// part) with `split` parts, denser than the layout's rows (which have room for the largest split), so a
    /// dispatch that starts at a later row must be bound at row · heads · split, not at the layout's row.
    private func sumsq(row: Int) -> KernelBuffer { (model.sumsq.buffer, 4 * row * model.config.nHeads * split) }

    /// One threadgroup per (head part, sequence): a head's rows split over `split` threadgroups.
    private static func blockGrid(heads: Int, split: Int, rows: Int) -> DispatchGrid {
        .threadgroups(MTLSize(width: heads * split, height: rows, depth: 1),
                      threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1))
    }

    /// Encodes one token for sequences seq ..< seq + rows, reading tokens[tokenIndex ..< tokenIndex + rows].
    func encode(_ enc: MetalCommandSink, seq: Int, tokenIndex: Int, logits: Bool) {
        let m = model, c = model.config
        enc.dispatch(embed, .init(embedding: m.embedding.values, tokens: m.tokens.row(tokenIndex),
                                  residual: m.residual.row(seq), conv_pos: m.convPos.row(seq),
                                  scales: m.embedding.scales, biases: m.embedding.biases),
                     .threads(MTLSize(width: c.dModel, height: rows, depth: 1),
                              threadsPerThreadgroup: MTLSize(width: min(256, c.dModel), height: 1, depth: 1)))
        enc.barrier()
        for (l, L) in m.layers.enumerated() {
            inProj[l].encode(enc, w: L.inProj, x: m.residual.row(seq), y: m.zxbcdt.row(seq), norm: L[.norm])
            enc.barrier()

            enc.dispatch(block, .init(
                zxbcdt: m.zxbcdt.row(seq), conv_state: (m.convState.buffer, m.convStateOffset(seq: seq, layer: l)),
                ssm_state: (m.ssmState.buffer, m.ssmStateOffset(seq: seq, layer: l)), conv_pos: m.convPos.row(seq),
                conv_w: L[.convWeight], conv_b: L[.convBias], head_p: L[.headParams], gated: m.gated.row(seq),
                sumsq: sumsq(row: seq), shared: blockThreadgroupMemory), blockGrid)
            enc.barrier()

            outProj[l].encode(enc, w: L.outProj, x: m.gated.row(seq), y: m.residual.row(seq), norm: L[.gatedNorm],
                              sumsq: sumsq(row: seq))
            enc.barrier()
        }
        if logits { encodeLogits(enc, residual: m.residual.row(seq), seq: seq) }
    }

    /// One token for some sequences only: `runs` lists them as runs of consecutive sequences (sequence
    /// `seq` ..< seq + count) whose tokens and activations sit at compact rows `row` ..< row + count; this
    /// plan's `rows` is the number of rows in all. The matrix products run once over every row, so each
    /// weight is read once; the dispatches that touch state (the embedding's conv ring position and the
    /// SSM block) run per run at that run's state offsets, so no other sequence's state is read or
    /// written; the lm_head runs per run (with `plans[count - 1]`, the plan for `count` rows) into those
    /// sequences' logits rows. Per row the arithmetic is that of `encode`, so the results are the same bits.
    func encodeSubset(_ enc: MetalCommandSink, runs: ArraySlice<(seq: Int, row: Int, count: Int)>,
                      plans: [MetalDecodePlan]) {
        let m = model, c = model.config
        for r in runs {
            // EMB_BATCH = rows bounds the grid; this grid has only the run's rows.
            enc.dispatch(embed, .init(embedding: m.embedding.values, tokens: m.tokens.row(r.row),
                                      residual: m.residual.row(r.row), conv_pos: m.convPos.row(r.seq),
                                      scales: m.embedding.scales, biases: m.embedding.biases),
                         .threads(MTLSize(width: c.dModel, height: r.count, depth: 1),
                                  threadsPerThreadgroup: MTLSize(width: min(256, c.dModel), height: 1, depth: 1)))
        }
        enc.barrier()
        for (l, L) in m.layers.enumerated() {
            inProj[l].encode(enc, w: L.inProj, x: m.residual.row(0), y: m.zxbcdt.row(0), norm: L[.norm])
            enc.barrier()
            for r in runs {
                enc.dispatch(block, .init(
                    zxbcdt: m.zxbcdt.row(r.row),
                    conv_state: (m.convState.buffer, m.convStateOffset(seq: r.seq, layer: l)),
                    ssm_state: (m.ssmState.buffer, m.ssmStateOffset(seq: r.seq, layer: l)),
                    conv_pos: m.convPos.row(r.seq), conv_w: L[.convWeight], conv_b: L[.convBias],
                    head_p: L[.headParams], gated: m.gated.row(r.row), sumsq: sumsq(row: r.row),
                    shared: blockThreadgroupMemory),
                    MetalDecodePlan.blockGrid(heads: c.nHeads, split: split, rows: r.count))
            }
            enc.barrier()
            outProj[l].encode(enc, w: L.outProj, x: m.gated.row(0), y: m.residual.row(0), norm: L[.gatedNorm],
                              sumsq: sumsq(row: 0))
            enc.barrier()
        }
        for r in runs { plans[r.count - 1].encodeLogits(enc, residual: m.residual.row(r.row), seq: r.seq) }
    }

    /// logits[seq ..< seq + rows] = lm_head · RMSNorm(rows of `residual`): also how a prompt block gets
    /// its last token's logits.
    func encodeLogits(_ enc: MetalCommandSink, residual: KernelBuffer, seq: Int) {
        let m = model
        lmHead.encode(enc, w: m.lmHead, x: residual, y: m.logits.row(seq), norm: (m.normF, 0))
    }
}
