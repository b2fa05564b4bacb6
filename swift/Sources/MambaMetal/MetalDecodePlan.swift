// One token's work for `rows` sequences, as dispatches into a compute encoder:
//
//   embedding_gather ─┐ residual = E[token]; conv_pos += 1
//   for each layer:   │
//     matvec in_proj  ├─ zxbcdt = in_proj · RMSNorm(residual)                   (MV_NORM 1)
//     ssm_decode_block├─ conv ring, SSM state update, gated = y · silu(z), sumsq per head
//     matvec out_proj ├─ residual += out_proj · GroupNorm(gated)                 (MV_NORM 2)
//   matvec lm_head    ┘ logits = lm_head · RMSNorm(residual)                     (MV_NORM 1)
//
// 3 dispatches per layer + 2, a buffer barrier between each. Which sequences a dispatch touches is
// chosen only by buffer offsets (row `seq` of every activation and state buffer), so the same plan
// serves a batch step (rows = batch, seq = 0) and a one-sequence prefill (rows = 1, seq = s).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// What one kernel dispatch needs beyond its bindings.
struct DispatchShape {
    let threadgroups: MTLSize
    let threadsPerThreadgroup: MTLSize
    let threadgroupMemory: Int
}

final class MetalDecodePlan {
    let rows: Int
    private let model: MetalModel
    private let embed: any MTLComputePipelineState
    private let inProj: any MTLComputePipelineState
    private let block: any MTLComputePipelineState
    private let outProj: any MTLComputePipelineState
    private let lmHead: any MTLComputePipelineState
    private let inProjShape: DispatchShape, outProjShape: DispatchShape, lmHeadShape: DispatchShape
    private let blockShape: DispatchShape

    /// Dispatches `encode` issues for one token (with the lm_head).
    var dispatchesPerToken: Int { 3 * model.config.nLayer + 2 }

    init(kernels: MetalKernels, model: MetalModel, rows: Int, tuning: MetalTuning) throws {
        let c = model.config
        self.rows = rows
        self.model = model
        embed = try kernels.pipeline("embedding.metal", "embedding_gather", [
            0: .int(c.dModel), 1: .int(rows), 2: .bool(model.embeddingFormat.half), 3: .int(c.dConv),
        ])
        func matvec(_ n: Int, _ k: Int, half: Bool, norm: Int, accumulate: Bool) throws -> any MTLComputePipelineState {
            try kernels.pipeline("matvec.metal", "matvec", [
                0: .int(n), 1: .int(k), 2: .int(rows), 3: .bool(half), 4: .int(norm), 5: .bool(accumulate),
                6: .int(c.nGroups), 7: .int(c.nHeads), 8: .float(Float(c.eps)), 9: .int(tuning.matvecRowsPerSimdgroup),
            ])
        }
        inProj = try matvec(c.dInProj, c.dModel, half: model.inProjFormat.half, norm: 1, accumulate: false)
        outProj = try matvec(c.dModel, c.dInner, half: model.outProjFormat.half, norm: 2, accumulate: true)
        lmHead = try matvec(c.vocabSize, c.dModel, half: model.lmHeadFormat.half, norm: 1, accumulate: false)
        block = try kernels.pipeline("ssm_decode.metal", "ssm_decode_block", [
            0: .int(c.dInner), 1: .int(c.dState), 2: .int(c.headDim), 3: .int(c.nHeads), 4: .int(c.nGroups),
            5: .int(c.dConv), 6: .int(c.nLayer), 7: .float(Float(c.timeStepMin)), 8: .float(Float(c.timeStepMax)),
        ])
        func matvecShape(_ n: Int) -> DispatchShape {
            let rowsPerGroup = 4 * tuning.matvecRowsPerSimdgroup
            return DispatchShape(
                threadgroups: MTLSize(width: (n + rowsPerGroup - 1) / rowsPerGroup, height: 1, depth: 1),
                threadsPerThreadgroup: MTLSize(width: 128, height: 1, depth: 1),
                threadgroupMemory: roundUp(4 * rows * max(c.nGroups, 1), 16))
        }
        inProjShape = matvecShape(c.dInProj)
        outProjShape = matvecShape(c.dModel)
        lmHeadShape = matvecShape(c.vocabSize)
        blockShape = DispatchShape(
            threadgroups: MTLSize(width: c.nHeads, height: rows, depth: 1),
            threadsPerThreadgroup: MTLSize(width: 256, height: 1, depth: 1),
            threadgroupMemory: roundUp(4 * (c.headDim + 2 * c.dState + 8), 16))
        for p in [embed, inProj, block, outProj, lmHead] where p.maxTotalThreadsPerThreadgroup < 256 {
            throw MambaFailure.backend("a Metal pipeline allows only \(p.maxTotalThreadsPerThreadgroup) threads per threadgroup")
        }
    }

    /// Encodes one token for sequences seq ..< seq + rows, reading tokens[tokenIndex ..< tokenIndex + rows].
    /// Returns the number of dispatches encoded.
    @discardableResult
    func encode(_ enc: MetalCommandSink, seq: Int, tokenIndex: Int, logits: Bool) -> Int {
        let m = model, c = model.config, f = 4
        enc.setPipeline(embed)
        enc.setBuffer(m.embedding, offset: 0, index: 0)
        enc.setBuffer(m.tokens, offset: 4 * tokenIndex, index: 1)
        enc.setBuffer(m.residual, offset: f * seq * c.dModel, index: 2)
        enc.setBuffer(m.convPos, offset: 4 * seq, index: 3)
        enc.dispatchThreads(MTLSize(width: c.dModel, height: rows, depth: 1),
                            threadsPerThreadgroup: MTLSize(width: min(256, c.dModel), height: 1, depth: 1))
        enc.barrier()
        for (l, L) in m.layers.enumerated() {
            matvec(enc, inProj, inProjShape, W: L.buffer, wOffset: L.inProj, x: m.residual, xOffset: f * seq * c.dModel,
                   y: m.zxbcdt, yOffset: f * seq * c.dInProj, norm: L.buffer, normOffset: L.norm)
            enc.barrier()

            enc.setPipeline(block)
            enc.setBuffer(m.zxbcdt, offset: f * seq * c.dInProj, index: 0)
            enc.setBuffer(m.convState, offset: f * (seq * c.nLayer + l) * c.convDim * c.dConv, index: 1)
            enc.setBuffer(m.ssmState, offset: f * (seq * c.nLayer + l) * c.nHeads * c.headDim * c.dState, index: 2)
            enc.setBuffer(m.convPos, offset: 4 * seq, index: 3)
            enc.setBuffer(L.buffer, offset: L.convWeight, index: 4)
            enc.setBuffer(L.buffer, offset: L.convBias, index: 5)
            enc.setBuffer(L.buffer, offset: L.headParams, index: 6)
            enc.setBuffer(m.gated, offset: f * seq * c.dInner, index: 7)
            enc.setBuffer(m.sumsq, offset: f * seq * c.nHeads, index: 8)
            enc.setThreadgroupMemory(blockShape.threadgroupMemory, index: 0)
            enc.dispatchThreadgroups(blockShape.threadgroups, threadsPerThreadgroup: blockShape.threadsPerThreadgroup)
            enc.barrier()

            matvec(enc, outProj, outProjShape, W: L.buffer, wOffset: L.outProj, x: m.gated, xOffset: f * seq * c.dInner,
                   y: m.residual, yOffset: f * seq * c.dModel, norm: L.buffer, normOffset: L.gatedNorm,
                   sumsqOffset: f * seq * c.nHeads)
            enc.barrier()
        }
        guard logits else { return dispatchesPerToken - 1 }
        encodeLogits(enc, residual: m.residual, offset: f * seq * c.dModel, seq: seq)
        return dispatchesPerToken
    }

    /// One token for some sequences only: `runs` lists them as runs of consecutive sequences (sequence
    /// `seq` ..< seq + count) whose tokens and activations sit at compact rows `row` ..< row + count; this
    /// plan's `rows` is the number of rows in all. The matrix products run once over every row, so each
    /// weight is read once; the dispatches that touch state (the embedding's conv ring position and the
    /// SSM block) run per run at that run's state offsets, so no other sequence's state is read or
    /// written; the lm_head runs per run (with `plans[count - 1]`, the plan for `count` rows) into those
    /// sequences' logits rows. Per row the arithmetic is that of `encode`, so the results are the same
    /// bits. Returns the number of dispatches encoded.
    func encodeSubset(_ enc: MetalCommandSink, runs: ArraySlice<(seq: Int, row: Int, count: Int)>,
                      plans: [MetalDecodePlan]) -> Int {
        let m = model, c = model.config, f = 4
        var dispatches = 0
        for r in runs {
            enc.setPipeline(embed) // EMB_BATCH = rows bounds the grid; the grid has the run's rows
            enc.setBuffer(m.embedding, offset: 0, index: 0)
            enc.setBuffer(m.tokens, offset: 4 * r.row, index: 1)
            enc.setBuffer(m.residual, offset: f * r.row * c.dModel, index: 2)
            enc.setBuffer(m.convPos, offset: 4 * r.seq, index: 3)
            enc.dispatchThreads(MTLSize(width: c.dModel, height: r.count, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: min(256, c.dModel), height: 1, depth: 1))
            dispatches += 1
        }
        enc.barrier()
        for (l, L) in m.layers.enumerated() {
            matvec(enc, inProj, inProjShape, W: L.buffer, wOffset: L.inProj, x: m.residual, xOffset: 0,
                   y: m.zxbcdt, yOffset: 0, norm: L.buffer, normOffset: L.norm)
            enc.barrier()
            for r in runs {
                enc.setPipeline(block)
                enc.setBuffer(m.zxbcdt, offset: f * r.row * c.dInProj, index: 0)
                enc.setBuffer(m.convState, offset: f * (r.seq * c.nLayer + l) * c.convDim * c.dConv, index: 1)
                enc.setBuffer(m.ssmState, offset: f * (r.seq * c.nLayer + l) * c.nHeads * c.headDim * c.dState, index: 2)
                enc.setBuffer(m.convPos, offset: 4 * r.seq, index: 3)
                enc.setBuffer(L.buffer, offset: L.convWeight, index: 4)
                enc.setBuffer(L.buffer, offset: L.convBias, index: 5)
                enc.setBuffer(L.buffer, offset: L.headParams, index: 6)
                enc.setBuffer(m.gated, offset: f * r.row * c.dInner, index: 7)
                enc.setBuffer(m.sumsq, offset: f * r.row * c.nHeads, index: 8)
                enc.setThreadgroupMemory(blockShape.threadgroupMemory, index: 0)
                enc.dispatchThreadgroups(MTLSize(width: c.nHeads, height: r.count, depth: 1),
                                         threadsPerThreadgroup: blockShape.threadsPerThreadgroup)
            }
            enc.barrier()
            matvec(enc, outProj, outProjShape, W: L.buffer, wOffset: L.outProj, x: m.gated, xOffset: 0,
                   y: m.residual, yOffset: 0, norm: L.buffer, normOffset: L.gatedNorm, sumsqOffset: 0)
            enc.barrier()
            dispatches += 2 + runs.count
        }
        for r in runs {
            plans[r.count - 1].encodeLogits(enc, residual: m.residual, offset: f * r.row * c.dModel, seq: r.seq)
        }
        return dispatches + runs.count
    }

    /// logits[seq ..< seq + rows] = lm_head · RMSNorm(rows of `residual` from `offset`): also how a
    /// prompt block gets its last token's logits.
    func encodeLogits(_ enc: MetalCommandSink, residual: any MTLBuffer, offset: Int, seq: Int) {
        let m = model, c = model.config
        matvec(enc, lmHead, lmHeadShape, W: m.lmHead, wOffset: 0, x: residual, xOffset: offset,
               y: m.logits, yOffset: 4 * seq * c.vocabSize, norm: m.normF, normOffset: 0)
    }

    private func matvec(_ enc: MetalCommandSink, _ pipeline: any MTLComputePipelineState,
                        _ shape: DispatchShape, W: any MTLBuffer, wOffset: Int, x: any MTLBuffer, xOffset: Int,
                        y: any MTLBuffer, yOffset: Int, norm: any MTLBuffer, normOffset: Int, sumsqOffset: Int = 0) {
        enc.setPipeline(pipeline)
        enc.setBuffer(W, offset: wOffset, index: 0)
        enc.setBuffer(x, offset: xOffset, index: 1)
        enc.setBuffer(y, offset: yOffset, index: 2)
        enc.setBuffer(norm, offset: normOffset, index: 3)
        enc.setBuffer(model.sumsq, offset: sumsqOffset, index: 4)
        enc.setThreadgroupMemory(shape.threadgroupMemory, index: 0)
        enc.dispatchThreadgroups(shape.threadgroups, threadsPerThreadgroup: shape.threadsPerThreadgroup)
    }
}
