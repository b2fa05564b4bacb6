// The Metal backend: per token one command buffer, one compute encoder, 3 dispatches per layer + 2
// with buffer barriers between them, one commit and one wait; a prompt runs in blocks of whole chunks,
// one command buffer per block (MetalPrefillPlan). Logits land in a shared buffer that TypeScript
// reads in place.
#if canImport(Metal)
// autoreleasepool (run) is the ObjectiveC overlay's, reached through Foundation: imported explicitly
// rather than relied on as a re-export of Metal's.
import Foundation
import Metal
#else
import MetalCompat
#endif

final class MetalBackend: Backend {
    let name = "metal"
    let device: String
    let threads = 1
    let logits: UnsafeMutablePointer<Float>

    private let gpu: any MTLDevice
    private let queue: any MTLCommandQueue
    private let model: MetalModel
    private let stepPlan: MetalDecodePlan
    private let sequencePlan: MetalDecodePlan
    /// plans[n - 1] encodes n rows (stepPlan and sequencePlan among them): the subset steps' plans.
    private let plans: [MetalDecodePlan]
    /// The runs of consecutive sequences of a subset step (capacity kept between steps).
    private var runs: [(seq: Int, row: Int, count: Int)] = []
    private let prefillPlan: MetalPrefillPlan
    private let prefillMode: EngineOptions.PrefillMode
    private let batch: Int
    /// The decode step recorded once at load, when options.recorded is set.
    private let recorded: RecordingSink?
    /// Kernel parameters in use (configs/metal_tune.json entry, explicit options, or defaults).
    let tuning: MetalTuning
    /// This backend's own counts (what it committed, encoded and allocated).
    private(set) var own = GPUCounters()

    static let maxBatch = 8
    /// Prompt tokens per command buffer, about (the chunked prefill rounds it to whole chunks).
    static let prefillBlock = 256

    init(weights: ModelWeights, options: EngineOptions) throws {
        guard let gpu = MTLCreateSystemDefaultDevice() else {
            throw MambaFailure.backend("no Metal device is available")
        }
        guard options.batchSize <= MetalBackend.maxBatch else {
            throw MambaFailure.unsupported("the Metal backend supports batchSize up to \(MetalBackend.maxBatch)")
        }
        guard let queue = gpu.makeCommandQueue() else { throw MambaFailure.backend("cannot create a Metal command queue") }
        self.gpu = gpu
        self.queue = queue
        batch = options.batchSize
        device = "metal (\(gpu.name)\(options.recorded ? ", recorded" : ""))"
        model = try MetalModel(device: gpu, weights: weights, batch: batch,
                               prefillCapacity: MetalPrefillBuffers.capacity(config: weights.config,
                                                                             target: MetalBackend.prefillBlock))
        let kernels = try MetalKernels(device: gpu)
        let tuning = try MetalTuning.resolve(table: options.tuneTable, source: options.tuneTableSource,
                                             tuning: options.tuning, gpu: gpu.name,
                                             config: weights.config, batch: batch)
        self.tuning = tuning
        stepPlan = try MetalDecodePlan(kernels: kernels, model: model, rows: batch, tuning: tuning)
        sequencePlan = batch == 1 ? stepPlan : try MetalDecodePlan(kernels: kernels, model: model, rows: 1, tuning: tuning)
        var plans = [sequencePlan]
        for rows in stride(from: 2, to: batch, by: 1) {
            plans.append(try MetalDecodePlan(kernels: kernels, model: model, rows: rows, tuning: tuning))
        }
        if batch > 1 { plans.append(stepPlan) }
        self.plans = plans
        runs.reserveCapacity(batch)
        prefillPlan = try MetalPrefillPlan(kernels: kernels, model: model, tuning: tuning)
        prefillMode = options.prefillMode
        logits = model.logits.buffer.contents().assumingMemoryBound(to: Float.self)
        if options.recorded {
            let count = CountingSink()
            stepPlan.encode(count, seq: 0, tokenIndex: 0, logits: true)
            let recorder = try RecordingSink(device: gpu, maxCommands: count.dispatches)
            stepPlan.encode(recorder, seq: 0, tokenIndex: 0, logits: true)
            recorded = recorder
        } else {
            recorded = nil
        }
        own.heapAllocations = 1
        own.bufferAllocations = UInt64(model.arena.bufferCount)
        own.allocatedBytes = UInt64(model.arena.heap.size)
    }

    private var tokenSlots: UnsafeMutablePointer<Int32> { model.tokens.buffer.contents().assumingMemoryBound(to: Int32.self) }

    /// One command buffer with one compute encoder: `body` encodes, then commit and wait.
    private func run(_ body: (EncoderSink) -> Void) throws {
        try autoreleasepool {
            guard let cb = queue.makeCommandBuffer(),
                  let enc = cb.makeComputeCommandEncoder(dispatchType: .concurrent)
            else { throw MambaFailure.backend("cannot create a Metal command buffer") }
            let sink = EncoderSink(enc)
            body(sink)
            enc.endEncoding()
            cb.commit()
            cb.waitUntilCompleted()
            own.commandBuffers += 1
            own.computeEncoders += 1
            own.dispatches += UInt64(sink.dispatches)
            if cb.status == .error {
                throw MambaFailure.backend("Metal command buffer failed: \(cb.error.map { "\($0)" } ?? "unknown error")")
            }
        }
    }

    func step(_ tokens: UnsafeBufferPointer<Int32>) throws {
        tokenSlots.update(from: tokens.baseAddress!, count: tokens.count)
        if let recorded {
            // Replay: the recorded commands read the token slots, which were just rewritten.
            try run { sink in sink.execute(recorded, heap: model.arena.heap) }
        } else {
            try run { sink in stepPlan.encode(sink, seq: 0, tokenIndex: 0, logits: true) }
        }
    }

    /// Only the listed sequences, in one command buffer (MetalDecodePlan.encodeSubset).
    func step(_ tokens: UnsafeBufferPointer<Int32>, seqs: UnsafeBufferPointer<Int32>) throws {
        tokenSlots.update(from: tokens.baseAddress!, count: tokens.count)
        runs.removeAll(keepingCapacity: true)
        var i = 0
        while i < seqs.count {
            var k = 1
            while i + k < seqs.count && seqs[i + k] == seqs[i] + Int32(k) { k += 1 }
            runs.append((seq: Int(seqs[i]), row: i, count: k))
            i += k
        }
        let plan = plans[seqs.count - 1]
        try run { sink in plan.encodeSubset(sink, runs: runs[...], plans: plans) }
    }

    func prefill(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        switch prefillMode {
        case .chunked: try prefillChunked(tokens, seq: seq)
        case .tokens: try prefillTokens(tokens, seq: seq)
        }
    }

    /// One command buffer per block of prefillPlan.capacity tokens; each block continues from the state
    /// the previous one left (or the sequence's state), and the last one also computes the logits.
    private func prefillChunked(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        let pf = model.prefill
        var start = 0
        while start < tokens.count {
            let n = min(pf.capacity, tokens.count - start)
            tokenSlots.update(from: tokens.baseAddress! + start, count: n)
            pf.setCount(n)
            let last = start + n == tokens.count
            try run { enc in
                prefillPlan.encode(enc, seq: seq, tokens: n)
                if last { sequencePlan.encodeLogits(enc, residual: pf.residual.row(n - 1), seq: seq) }
            }
            start += n
        }
    }

    /// Token by token through the decode kernels (options.prefillMode "tokens").
    private func prefillTokens(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        var start = 0
        while start < tokens.count {
            let n = min(model.prefill.capacity, tokens.count - start)
            tokenSlots.update(from: tokens.baseAddress! + start, count: n)
            let last = start + n == tokens.count
            try run { enc in
                for t in 0..<n { sequencePlan.encode(enc, seq: seq, tokenIndex: t, logits: last && t == n - 1) }
            }
            start += n
        }
    }

    func reset(seq: Int) { model.reset(seq: seq) }
    func readState(seq: Int, into out: UnsafeMutableRawBufferPointer) { model.readState(seq: seq, into: out) }
    func writeState(seq: Int, from data: UnsafeRawBufferPointer) { model.writeState(seq: seq, from: data) }
    func counters() -> GPUCounters { gpuCounterSource(own) }
}

extension MetalBackend {
    var extraInfo: [InfoKey: JSON] {
        [
            .gpu: .string(gpu.name),
            // The key configs/metal_tune.json entries are looked up by, with gpu and batch.
            .tuneShape: .string(MetalTuning.shapeKey(model.config)),
            .recorded: .bool(recorded != nil),
            .tuning: tuning.json,
            .prefillMode: .string(prefillMode.rawValue),
            .prefillBlock: .number(Double(model.prefill.capacity)),
        ]
    }
}
