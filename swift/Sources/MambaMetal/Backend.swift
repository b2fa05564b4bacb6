// What an engine needs from a compute backend. The CPU backend (CPUBackend.swift) and the Metal
// backend (MetalBackend.swift) implement it; Engine validates every input before calling in, so
// backends may assume token ids, sequence indices and counts are in range.

/// Cumulative GPU work and allocation counters (zeros for the CPU backend).
struct GPUCounters {
    var commandBuffers: UInt64 = 0
    var computeEncoders: UInt64 = 0
    var dispatches: UInt64 = 0
    var bufferAllocations: UInt64 = 0
    var heapAllocations: UInt64 = 0
    var allocatedBytes: UInt64 = 0

    subscript(_ counter: GPUCounter) -> UInt64 {
        switch counter {
        case .commandBuffers: return commandBuffers
        case .computeEncoders: return computeEncoders
        case .dispatches: return dispatches
        case .bufferAllocations: return bufferAllocations
        case .heapAllocations: return heapAllocations
        case .allocatedBytes: return allocatedBytes
        }
    }

    /// In mamba_gpu_counters' order (enum mamba_gpu_counter).
    var array: [UInt64] { GPUCounter.allCases.map { self[$0] } }
}

protocol Backend: AnyObject {
    /// "cpu" or "metal".
    var name: String { get }
    /// The device or instruction set, for reports.
    var device: String { get }
    var threads: Int { get }
    /// float32 (batch, vocab), fixed for the backend's lifetime.
    var logits: UnsafeMutablePointer<Float> { get }

    /// One token per sequence.
    func step(_ tokens: UnsafeBufferPointer<Int32>) throws
    /// tokens[i] for sequence seqs[i] only (distinct, 1 ≤ count ≤ batch); no other sequence's state or
    /// logits row is touched, and the listed ones get the same bits as from a full step.
    func step(_ tokens: UnsafeBufferPointer<Int32>, seqs: UnsafeBufferPointer<Int32>) throws
    /// Tokens of one sequence, continuing from its state; writes that sequence's logits row.
    func prefill(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws
    func reset(seq: Int)
    /// conv_state then ssm_state of every layer of one sequence, float32, as in `StateLayout`.
    func readState(seq: Int, into: UnsafeMutableRawBufferPointer)
    func writeState(seq: Int, from: UnsafeRawBufferPointer)
    func counters() -> GPUCounters
    /// Backend-specific fields for the engine info JSON (e.g. the GPU name and kernel parameters).
    var extraInfo: [InfoKey: JSON] { get }
    /// A CMambaCPU engine whose thread pool samples several sequences at once (nil: one by one).
    var samplingPool: OpaquePointer? { get }
}

extension Backend {
    var extraInfo: [InfoKey: JSON] { [:] }
    var samplingPool: OpaquePointer? { nil }
}

/// One sequence's state as saved: for each layer conv_state (conv_dim, d_conv), oldest input first,
/// then for each layer ssm_state (n_heads, head_dim, d_state). All float32.
struct StateLayout {
    let config: MambaConfig

    var convFloatsPerLayer: Int { config.convDim * config.dConv }
    var ssmFloatsPerLayer: Int { config.nHeads * config.headDim * config.dState }
    var floatsPerSequence: Int { config.nLayer * (convFloatsPerLayer + ssmFloatsPerLayer) }
    var bytesPerSequence: Int { floatsPerSequence * 4 }
}
