// Two ways to issue the same dispatches: straight into a compute encoder (a fresh command buffer
// per token), or recorded once into an MTLIndirectCommandBuffer that each token replays (Metal's
// analogue of CUDA graph replay: the CPU no longer re-encodes ~3 dispatches per layer per token).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

protocol MetalCommandSink: AnyObject {
    func setPipeline(_ pipeline: any MTLComputePipelineState)
    func setBuffer(_ buffer: any MTLBuffer, offset: Int, index: Int)
    func setThreadgroupMemory(_ length: Int, index: Int)
    func dispatchThreadgroups(_ groups: MTLSize, threadsPerThreadgroup: MTLSize)
    func dispatchThreads(_ threads: MTLSize, threadsPerThreadgroup: MTLSize)
    /// Later dispatches see every buffer write of earlier ones.
    func barrier()
}

/// Encodes into a live compute encoder (dispatchType .concurrent, so barriers are explicit), counting
/// what it encodes: the GPU counters report these counts, not a formula for what a plan should issue.
final class EncoderSink: MetalCommandSink {
    let encoder: any MTLComputeCommandEncoder
    private(set) var dispatches = 0

    init(_ encoder: any MTLComputeCommandEncoder) { self.encoder = encoder }

    func setPipeline(_ pipeline: any MTLComputePipelineState) { encoder.setComputePipelineState(pipeline) }
    func setBuffer(_ buffer: any MTLBuffer, offset: Int, index: Int) { encoder.setBuffer(buffer, offset: offset, index: index) }
    func setThreadgroupMemory(_ length: Int, index: Int) { encoder.setThreadgroupMemoryLength(length, index: index) }

    func dispatchThreadgroups(_ groups: MTLSize, threadsPerThreadgroup: MTLSize) {
        encoder.dispatchThreadgroups(groups, threadsPerThreadgroup: threadsPerThreadgroup)
        dispatches += 1
    }

    func dispatchThreads(_ threads: MTLSize, threadsPerThreadgroup: MTLSize) {
        encoder.dispatchThreads(threads, threadsPerThreadgroup: threadsPerThreadgroup)
        dispatches += 1
    }

    func barrier() { encoder.memoryBarrier(scope: .buffers) }

    /// Runs the commands `recorded` holds, with every buffer of `heap` resident.
    func execute(_ recorded: RecordingSink, heap: any MTLHeap) {
        encoder.useHeap(heap)
        encoder.executeCommandsInBuffer(recorded.icb, range: 0..<recorded.count)
        dispatches += recorded.count
    }
}

/// Counts the dispatches a plan issues without encoding anything (to size an indirect command buffer).
final class CountingSink: MetalCommandSink {
    private(set) var dispatches = 0

    func setPipeline(_ pipeline: any MTLComputePipelineState) {}
    func setBuffer(_ buffer: any MTLBuffer, offset: Int, index: Int) {}
    func setThreadgroupMemory(_ length: Int, index: Int) {}
    func dispatchThreadgroups(_ groups: MTLSize, threadsPerThreadgroup: MTLSize) { dispatches += 1 }
    func dispatchThreads(_ threads: MTLSize, threadsPerThreadgroup: MTLSize) { dispatches += 1 }
    func barrier() {}
}

/// Records into an indirect command buffer: one command per dispatch, each carrying its own
/// pipeline, bindings and threadgroup memory; a barrier marks the next command to wait for all
/// earlier ones.
final class RecordingSink: MetalCommandSink {
    let icb: any MTLIndirectCommandBuffer
    private(set) var count = 0
    private var pipeline: (any MTLComputePipelineState)?
    private var buffers: [(any MTLBuffer, Int, Int)] = []
    private var threadgroupMemory: [(Int, Int)] = []
    private var barrierBeforeNext = false

    init(device: any MTLDevice, maxCommands: Int) throws {
        let desc = MTLIndirectCommandBufferDescriptor()
        desc.commandTypes = [.concurrentDispatch, .concurrentDispatchThreads]
        desc.inheritPipelineState = false
        desc.inheritBuffers = false
        desc.maxKernelBufferBindCount = Kernel.maxBufferBindCount
        // macOS 14+ (the package's minimum); its default is undocumented, so reserve the slot explicitly.
        desc.maxKernelThreadgroupMemoryBindCount = Kernel.maxThreadgroupMemoryBindCount
        guard let icb = device.makeIndirectCommandBuffer(descriptor: desc, maxCommandCount: maxCommands, options: []) else {
            throw MambaFailure.backend("cannot create a Metal indirect command buffer of \(maxCommands) commands")
        }
        self.icb = icb
    }

    func setPipeline(_ pipeline: any MTLComputePipelineState) { self.pipeline = pipeline }
    func setBuffer(_ buffer: any MTLBuffer, offset: Int, index: Int) { buffers.append((buffer, offset, index)) }
    func setThreadgroupMemory(_ length: Int, index: Int) { threadgroupMemory.append((length, index)) }

    private func nextCommand() -> any MTLIndirectComputeCommand {
        let cmd = icb.indirectComputeCommandAt(count)
        count += 1
        if let pipeline { cmd.setComputePipelineState(pipeline) }
        for (b, offset, index) in buffers { cmd.setKernelBuffer(b, offset: offset, at: index) }
        for (length, index) in threadgroupMemory { cmd.setThreadgroupMemoryLength(length, index: index) }
        if barrierBeforeNext { cmd.setBarrier() }
        barrierBeforeNext = false
        buffers.removeAll(keepingCapacity: true)
        threadgroupMemory.removeAll(keepingCapacity: true)
        return cmd
    }

    func dispatchThreadgroups(_ groups: MTLSize, threadsPerThreadgroup: MTLSize) {
        nextCommand().concurrentDispatchThreadgroups(groups, threadsPerThreadgroup: threadsPerThreadgroup)
    }

    func dispatchThreads(_ threads: MTLSize, threadsPerThreadgroup: MTLSize) {
        nextCommand().concurrentDispatchThreads(threads, threadsPerThreadgroup: threadsPerThreadgroup)
    }

    func barrier() { barrierBeforeNext = true }
}
