// MetalCompat's own public API (beyond Metal's): process-wide counters and the checking-mode switch.
// The backend reaches it only where it imports MetalCompat, i.e. behind `#if !canImport(Metal)`.
#if !canImport(Metal)
import CMetalCompat

/// Cumulative, process-wide counters of Metal API activity (thread-safe; never reset).
public enum MetalCompatCounters {
    public struct Snapshot: Equatable {
        /// Command buffers committed.
        public var commandBuffers: UInt64
        /// Compute command encoders made.
        public var computeEncoders: UInt64
        /// Kernel dispatches run, including those replayed from indirect command buffers.
        public var dispatches: UInt64
        /// Buffers made, standalone or sub-allocated from a heap.
        public var bufferAllocations: UInt64
        /// Heaps made.
        public var heapAllocations: UInt64
        /// Bytes of standalone buffers plus the size of each heap (a heap's buffers add nothing).
        public var allocatedBytes: UInt64

        /// The counters in the order of mamba.h's mamba_gpu_counters.
        public var values: [UInt64] {
            [commandBuffers, computeEncoders, dispatches, bufferAllocations, heapAllocations, allocatedBytes]
        }
    }

    public static func snapshot() -> Snapshot {
        var c = [UInt64](repeating: 0, count: Int(MC_COUNTER_COUNT.rawValue))
        mc_counters_snapshot(&c)
        return Snapshot(
            commandBuffers: c[Int(MC_COUNTER_COMMAND_BUFFERS.rawValue)],
            computeEncoders: c[Int(MC_COUNTER_COMPUTE_ENCODERS.rawValue)],
            dispatches: c[Int(MC_COUNTER_DISPATCHES.rawValue)],
            bufferAllocations: c[Int(MC_COUNTER_BUFFER_ALLOCATIONS.rawValue)],
            heapAllocations: c[Int(MC_COUNTER_HEAP_ALLOCATIONS.rawValue)],
            allocatedBytes: c[Int(MC_COUNTER_ALLOCATED_BYTES.rawValue)])
    }
}

/// Checking mode: dispatches run the instrumented copy of each kernel and check every threadgroup-memory
/// access (uninitialized reads, missing barriers, out-of-bounds). Process-wide; the default comes from
/// METALCOMPAT_CHECK=1. Read when a command buffer is committed.
public enum MetalCompatChecking {
    public static var isEnabled: Bool {
        get { mc_checking_enabled() != 0 }
        set { mc_set_checking_enabled(newValue ? 1 : 0) }
    }
}

#endif
