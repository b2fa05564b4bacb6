// Where gpuCounters() come from. On Linux they are MetalCompat's own process-wide counts, an
// independent check of what the backend claims to do; on a Mac the backend's count of its own work.
#if canImport(Metal)
func gpuCounterSource(_ own: GPUCounters) -> GPUCounters { own }
#else
import MetalCompat

func gpuCounterSource(_ own: GPUCounters) -> GPUCounters {
    let s = MetalCompatCounters.snapshot()
    return GPUCounters(commandBuffers: s.commandBuffers, computeEncoders: s.computeEncoders, dispatches: s.dispatches,
                       bufferAllocations: s.bufferAllocations, heapAllocations: s.heapAllocations,
                       allocatedBytes: s.allocatedBytes)
}
#endif
