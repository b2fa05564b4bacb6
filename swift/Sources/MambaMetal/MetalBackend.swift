// The Metal backend: per token one command buffer, one compute encoder, 3 dispatches per layer + 2
// with buffer barriers between them, one commit and one wait. Logits land in a shared buffer that
// TypeScript reads in place.
#if canImport(Metal)
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
    private let batch: Int
    /// The decode step recorded once at load, when options.recorded is set.
    private let recorded: RecordingSink?
    /// Kernel parameters in use (configs/metal_tune.json entry, explicit options, or defaults).
    let tuning: MetalTuning
    /// This backend's own counts (what it committed, encoded and allocated).
    private(set) var own = GPUCounters()

    static let maxBatch = 8
    /// Prompt tokens encoded per command buffer.
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
                               tokenCapacity: max(batch, MetalBackend.prefillBlock))
        let kernels = try MetalKernels(device: gpu)
        let tuning = try MetalTuning.resolve(table: options.tuneTable, tuning: options.tuning, gpu: gpu.name,
                                             config: weights.config, batch: batch)
        self.tuning = tuning
        stepPlan = try MetalDecodePlan(kernels: kernels, model: model, rows: batch, tuning: tuning)
        sequencePlan = batch == 1 ? stepPlan : try MetalDecodePlan(kernels: kernels, model: model, rows: 1, tuning: tuning)
        logits = model.logits.contents().assumingMemoryBound(to: Float.self)
        if options.recorded {
            let recorder = try RecordingSink(device: gpu, maxCommands: stepPlan.dispatchesPerToken)
            stepPlan.encode(recorder, seq: 0, tokenIndex: 0, logits: true)
            recorded = recorder
        } else {
            recorded = nil
        }
        own.heapAllocations = 1
        own.bufferAllocations = UInt64(model.arena.bufferCount)
        own.allocatedBytes = UInt64(model.arena.heap.size)
    }

    private var tokenSlots: UnsafeMutablePointer<Int32> { model.tokens.contents().assumingMemoryBound(to: Int32.self) }

    /// One command buffer with one compute encoder: `body` encodes, then commit and wait.
    private func run(_ body: (EncoderSink) -> Int) throws {
        try autoreleasepool {
            guard let cb = queue.makeCommandBuffer(),
                  let enc = cb.makeComputeCommandEncoder(dispatchType: .concurrent)
            else { throw MambaFailure.backend("cannot create a Metal command buffer") }
            let dispatches = body(EncoderSink(enc))
            enc.endEncoding()
            cb.commit()
            cb.waitUntilCompleted()
            own.commandBuffers += 1
            own.computeEncoders += 1
            own.dispatches += UInt64(dispatches)
            if cb.status == .error {
                throw MambaFailure.backend("Metal command buffer failed: \(cb.error.map { "\($0)" } ?? "unknown error")")
            }
        }
    }

    func step(_ tokens: UnsafeBufferPointer<Int32>) throws {
        tokenSlots.update(from: tokens.baseAddress!, count: tokens.count)
        if let recorded {
            // Replay: the recorded commands read the token slots, which were just rewritten.
            try run { sink in
                sink.encoder.useHeap(model.arena.heap)
                sink.encoder.executeCommandsInBuffer(recorded.icb, range: 0..<recorded.count)
                return recorded.count
            }
        } else {
            try run { sink in stepPlan.encode(sink, seq: 0, tokenIndex: 0, logits: true) }
        }
    }

    /// Token by token through the decode kernels (the chunked prefill kernels replace this).
    func prefill(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        var start = 0
        while start < tokens.count {
            let n = min(MetalBackend.prefillBlock, tokens.count - start)
            tokenSlots.update(from: tokens.baseAddress! + start, count: n)
            let last = start + n == tokens.count
            try run { enc in
                var dispatches = 0
                for t in 0..<n {
                    dispatches += sequencePlan.encode(enc, seq: seq, tokenIndex: t, logits: last && t == n - 1)
                }
                return dispatches
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
    var extraInfo: [String: JSON] {
        [
            "gpu": .string(gpu.name),
            "recorded": .bool(recorded != nil),
            "tuning": .object([
                "matvecRowsPerSimdgroup": .number(Double(tuning.matvecRowsPerSimdgroup)),
                "matmulTile": .number(Double(tuning.matmulTile)),
            ]),
        ]
    }
}
