// Compute pipeline states: a kernel plus its function-constant values and limits.
#if !canImport(Metal)
import CMetalCompat

final class CompatComputePipelineState: MTLComputePipelineState {
    let function: CompatFunction
    let label: String?
    let maxTotalThreadsPerThreadgroup: Int
    let supportIndirectCommandBuffers: Bool

    init(function: CompatFunction, label: String?, maxThreads: Int, supportIndirectCommandBuffers: Bool) {
        self.function = function
        self.label = label
        var limit = Int(MC_MAX_THREADS)
        let declared = Int(function.descriptor.max_total_threads)
        if declared > 0 { limit = min(limit, declared) }
        if maxThreads > 0 { limit = min(limit, maxThreads) }
        self.maxTotalThreadsPerThreadgroup = limit
        self.supportIndirectCommandBuffers = supportIndirectCommandBuffers
    }

    var device: any MTLDevice { CompatDevice.shared }
    var threadExecutionWidth: Int { Int(MC_SIMD_WIDTH) }
    var staticThreadgroupMemoryLength: Int { 0 }
}

let MC_MAX_THREADS: Int32 = 1024

#endif
