// The model on the GPU and the plans that drive it, without running a kernel: the buffer table
// (MetalBufferLayout) as the arena places it (every buffer once, in table order, page-aligned, disjoint,
// inside the heap, at least as long as its shape; the named state offsets step by (sequence, layer) rows
// as forward.c's mcpu_conv_state does), and the dispatches each plan encodes, against the formulas in
// README (the backend's counters report what was encoded, so the formulas live only here and in tests/).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import Foundation
import XCTest

@testable import MambaMetal

final class MetalModelTests: XCTestCase {
    let batch = 3

    func fixtureWeights(_ target: MatrixTarget = MatrixTarget(dtype: .f16)) throws -> ModelWeights {
        let dir = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tests/fixtures/tiny-g2").path
        return try ModelWeights(try Checkpoint.load(directory: dir), target: target)
    }

    func testPlansEncodeTheDispatchesOfTheFormulas() throws {
        for target in [MatrixTarget(dtype: .f16), MatrixTarget(dtype: .q4, groupSize: 32)] {
            try checkDispatches(try fixtureWeights(target))
        }
    }

    /// The same counts whatever the weights' format: quantized matrices change pipelines, not dispatches.
    func checkDispatches(_ weights: ModelWeights) throws {
        let c = weights.config
        let device = try XCTUnwrap(MTLCreateSystemDefaultDevice())
        let model = try MetalModel(device: device, weights: weights, batch: batch, prefillCapacity: 2 * c.chunkSize)
        let kernels = try MetalKernels(device: device)
        let decode = try MetalDecodePlan(kernels: kernels, model: model, rows: batch, tuning: .defaults)
        let prefill = try MetalPrefillPlan(kernels: kernels, model: model, tuning: .defaults)
        func count(_ encode: (CountingSink) -> Void) -> Int {
            let sink = CountingSink()
            encode(sink)
            return sink.dispatches
        }
        // Decode: embedding, then in_proj, SSM block, out_proj per layer, then the lm_head.
        XCTAssertEqual(count { decode.encode($0, seq: 0, tokenIndex: 0, logits: true) }, 3 * c.nLayer + 2)
        XCTAssertEqual(count { decode.encode($0, seq: 0, tokenIndex: 0, logits: false) }, 3 * c.nLayer + 1)
        // A prompt block: embedding, then 8 per layer (in_proj, conv ∥ cumsum, C·Bᵀ ∥ chunk_state,
        // state_passing, chunk_scan, out_proj); the lm_head is the decode plan's.
        for tokens in [1, c.chunkSize, 2 * c.chunkSize] {
            XCTAssertEqual(count { prefill.encode($0, seq: 1, tokens: tokens) }, 1 + 8 * c.nLayer, "\(tokens) tokens")
        }
    }

    func testQuantizedMatricesHaveCodesScalesAndBiasesInTheTable() throws {
        let weights = try fixtureWeights(MatrixTarget(dtype: .q4, groupSize: 32)), c = weights.config
        let device = try XCTUnwrap(MTLCreateSystemDefaultDevice())
        let model = try MetalModel(device: device, weights: weights, batch: 1, prefillCapacity: c.chunkSize)
        let q4 = GPUMatrixFormat.affine(AffineFormat(bits: 4, groupSize: 32, scalesHalf: true))
        XCTAssertEqual(model.embedding.format, q4)
        XCTAssertEqual(model.layers[1].layout.outProj, q4)
        let order = model.arena.placements.map(\.buffer)
        XCTAssertEqual(Array(order[c.nLayer..<c.nLayer + 4]), [.embedding, .embeddingScales, .embeddingBiases, .normF],
                       "tied: no lm_head buffers")
        let lengths = Dictionary(uniqueKeysWithValues: model.arena.placements.map { ($0.buffer, $0.length) })
        XCTAssertEqual(lengths[.embedding], c.vocabSize * c.dModel / 2)
        XCTAssertEqual(lengths[.embeddingScales], c.vocabSize * c.dModel / 32 * 2)
        // In a layer: codes, then scales and biases right after (256-aligned), each (rows, cols / 32) f16.
        let L = model.layers[0].layout
        XCTAssertEqual(L[.inProjScales], roundUp(L[.inProj] + c.dInProj * c.dModel / 2, 256))
        XCTAssertEqual(L[.inProjBiases], roundUp(L[.inProjScales] + c.dInProj * c.dModel / 32 * 2, 256))
        XCTAssertEqual(L[.outProj], roundUp(L[.inProjBiases] + c.dInProj * c.dModel / 32 * 2, 256))
        // The uploaded bytes are the loaded ones.
        let m = weights.layers[0].inProj, bound = model.layers[0].inProj
        XCTAssertEqual(memcmp(bound.values.buffer.contents() + bound.values.offset, m.data, m.rows * m.cols / 2), 0)
        XCTAssertEqual(memcmp(bound.biases!.buffer.contents() + bound.biases!.offset, m.biases!, m.rows * m.cols / 16), 0)
    }

    func testArenaPlacesEveryBufferOfTheTable() throws {
        let weights = try fixtureWeights()
        let c = weights.config, batch = batch, capacity = 2 * c.chunkSize
        let device = try XCTUnwrap(MTLCreateSystemDefaultDevice())
        let model = try MetalModel(device: device, weights: weights, batch: batch, prefillCapacity: capacity)
        let placements = model.arena.placements

        XCTAssertEqual(placements.count, model.arena.bufferCount)
        XCTAssertEqual(Set(placements.map(\.buffer)).count, placements.count, "every buffer once")
        for (a, b) in zip(placements, placements.dropFirst()) {
            XCTAssertLessThanOrEqual(a.offset + a.length, b.offset, "\(a.buffer) overlaps \(b.buffer)")
        }
        for p in placements {
            XCTAssertEqual(p.offset % MetalArena.page, 0, "\(p.buffer) is page-aligned")
            XCTAssertLessThanOrEqual(p.offset + p.length, model.arena.heap.size, "\(p.buffer) is inside the heap")
        }
        let expected: [MetalBuffer] = (0..<c.nLayer).map { .layerWeights($0) } + [.embedding]
            + (c.tieEmbeddings ? [] : [.lmHead])
            + [.normF, .residual, .zxbcdt, .gated, .sumsq, .logits, .tokens, .convPos, .convState, .ssmState]
            + MetalPrefillBuffer.allCases.map { .prefill($0) }
        XCTAssertEqual(placements.map(\.buffer), expected, "heap order is table order")

        // Lengths cover the shapes the kernels index.
        XCTAssertGreaterThanOrEqual(model.ssmState.buffer.length, 4 * batch * c.nLayer * c.nHeads * c.headDim * c.dState)
        XCTAssertGreaterThanOrEqual(model.convState.buffer.length, 4 * batch * c.nLayer * c.convDim * c.dConv)
        XCTAssertGreaterThanOrEqual(model.prefill.cb.buffer.length, 4 * (capacity / c.chunkSize) * c.nGroups * c.chunkSize * c.chunkSize)
        XCTAssertGreaterThanOrEqual(model.embedding.values.buffer.length, 2 * weights.embedding.rows * weights.embedding.cols)

        // (sequence, layer) rows, sequence-major.
        let conv = 4 * c.convDim * c.dConv, ssm = 4 * c.nHeads * c.headDim * c.dState
        XCTAssertEqual(model.convStateOffset(seq: 0, layer: 1), conv)
        XCTAssertEqual(model.convStateOffset(seq: 2, layer: 1), (2 * c.nLayer + 1) * conv)
        XCTAssertEqual(model.ssmStateOffset(seq: 1, layer: c.nLayer - 1), (2 * c.nLayer - 1) * ssm)
        XCTAssertEqual(model.residual.row(2).offset, 2 * 4 * c.dModel)
        XCTAssertEqual(model.logits.row(1).offset, 4 * c.vocabSize)

        // Each layer's parameters: 256-aligned, in LayerParameter order, disjoint.
        let L = model.layers[0].layout
        let offsets = LayerParameter.allCases.map { L[$0] }
        XCTAssertEqual(offsets, offsets.sorted())
        XCTAssert(offsets.allSatisfy { $0 % 256 == 0 })
        XCTAssertEqual(L[.outProj] - L[.inProj], roundUp(2 * c.dInProj * c.dModel, 256))
    }
}
