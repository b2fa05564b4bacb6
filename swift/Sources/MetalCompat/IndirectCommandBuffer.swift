// Indirect command buffers with compute commands. Commands are plain records, read when a command
// buffer that executes them runs (not when executeCommandsInBuffer is encoded), as on the GPU.
// Misuse of a command (an index past maxKernelBufferBindCount, setKernelBuffer with inherited
// buffers, ...) is remembered and fails the command buffer that executes it.
#if !canImport(Metal)

/// What a command needs to know of its indirect command buffer's descriptor.
struct IndirectCommandConfig {
    let commandTypes: MTLIndirectCommandType
    let inheritPipelineState: Bool
    let inheritBuffers: Bool
    let maxKernelBufferBindCount: Int
    let maxKernelThreadgroupMemoryBindCount: Int
}

final class CompatIndirectComputeCommand: MTLIndirectComputeCommand {
    let icb: IndirectCommandConfig
    let index: Int
    var pipeline: CompatComputePipelineState?
    var arguments = ArgumentTable()
    var dispatch: (grid: MTLSize, group: MTLSize, nonuniform: Bool)?
    var barrier = false
    var problem: String?

    init(icb: IndirectCommandConfig, index: Int) {
        self.icb = icb
        self.index = index
    }

    private func misuse(_ message: String) {
        if problem == nil { problem = "MetalCompat: indirect compute command \(index): \(message)" }
    }

    func setComputePipelineState(_ pipelineState: any MTLComputePipelineState) {
        if icb.inheritPipelineState { return misuse("setComputePipelineState on a buffer that inherits pipelines") }
        guard let p = pipelineState as? CompatComputePipelineState else { return misuse("not a MetalCompat pipeline") }
        if !p.supportIndirectCommandBuffers {
            misuse("pipeline '\(p.function.name)' was not made with supportIndirectCommandBuffers = true")
        }
        pipeline = p
    }

    func setKernelBuffer(_ buffer: any MTLBuffer, offset: Int, at index: Int) {
        if icb.inheritBuffers { return misuse("setKernelBuffer on a buffer that inherits buffers") }
        guard index >= 0, index < icb.maxKernelBufferBindCount else {
            return misuse("setKernelBuffer at index \(index) >= maxKernelBufferBindCount (\(icb.maxKernelBufferBindCount))")
        }
        guard let b = buffer as? CompatBuffer else { return misuse("setKernelBuffer: not a MetalCompat buffer") }
        guard offset >= 0, offset <= b.length else { return misuse("setKernelBuffer offset \(offset) is outside the buffer") }
        arguments.buffers[index] = BoundBuffer(storage: b.storage, offset: offset, buffer: b)
    }

    func setThreadgroupMemoryLength(_ length: Int, index: Int) {
        guard index >= 0, index < icb.maxKernelThreadgroupMemoryBindCount else {
            return misuse("setThreadgroupMemoryLength at index \(index) >= maxKernelThreadgroupMemoryBindCount " +
                          "(\(icb.maxKernelThreadgroupMemoryBindCount))")
        }
        arguments.threadgroupLengths[index] = length
    }

    func concurrentDispatchThreadgroups(_ threadgroupsPerGrid: MTLSize, threadsPerThreadgroup: MTLSize) {
        if !icb.commandTypes.contains(.concurrentDispatch) {
            misuse("concurrentDispatchThreadgroups in a buffer without the .concurrentDispatch command type")
        }
        dispatch = (threadgroupsPerGrid, threadsPerThreadgroup, false)
    }

    func concurrentDispatchThreads(_ threadsPerGrid: MTLSize, threadsPerThreadgroup: MTLSize) {
        if !icb.commandTypes.contains(.concurrentDispatchThreads) {
            misuse("concurrentDispatchThreads in a buffer without the .concurrentDispatchThreads command type")
        }
        dispatch = (threadsPerGrid, threadsPerThreadgroup, true)
    }

    // Commands run one after another, so a barrier between them always holds.
    func setBarrier() { barrier = true }
    func clearBarrier() { barrier = false }

    func reset() {
        pipeline = nil
        arguments = ArgumentTable()
        dispatch = nil
        barrier = false
        problem = nil
    }
}

final class CompatIndirectCommandBuffer: MTLIndirectCommandBuffer {
    let size: Int
    let config: IndirectCommandConfig
    let options: MTLResourceOptions
    var label: String?
    private var commands: [Int: CompatIndirectComputeCommand] = [:]
    /// Misuse of the buffer itself (an index out of range), reported like a command's.
    var problem: String?

    init(descriptor: MTLIndirectCommandBufferDescriptor, size: Int, options: MTLResourceOptions) {
        self.size = size
        self.config = IndirectCommandConfig(
            commandTypes: descriptor.commandTypes, inheritPipelineState: descriptor.inheritPipelineState,
            inheritBuffers: descriptor.inheritBuffers,
            maxKernelBufferBindCount: min(descriptor.maxKernelBufferBindCount, ArgumentTable.slots),
            maxKernelThreadgroupMemoryBindCount: min(descriptor.maxKernelThreadgroupMemoryBindCount, ArgumentTable.slots))
        self.options = options
    }

    var device: any MTLDevice { CompatDevice.shared }
    var cpuCacheMode: MTLCPUCacheMode { options.cpuCacheMode }
    var storageMode: MTLStorageMode { options.storageMode }
    var hazardTrackingMode: MTLHazardTrackingMode { options.hazardTrackingMode }
    var resourceOptions: MTLResourceOptions { options }
    var heap: (any MTLHeap)? { nil }
    var heapOffset: Int { 0 }
    var allocatedSize: Int { size * 256 }
    func setPurgeableState(_ state: MTLPurgeableState) -> MTLPurgeableState { .nonVolatile }

    func indirectComputeCommandAt(_ commandIndex: Int) -> any MTLIndirectComputeCommand {
        if commandIndex < 0 || commandIndex >= size {
            if problem == nil {
                problem = "MetalCompat: indirectComputeCommandAt(\(commandIndex)) is outside 0..<\(size)"
            }
            return CompatIndirectComputeCommand(icb: config, index: commandIndex) // detached: never executed
        }
        if let c = commands[commandIndex] { return c }
        let c = CompatIndirectComputeCommand(icb: config, index: commandIndex)
        commands[commandIndex] = c
        return c
    }

    /// The command at an index, if one was ever encoded there.
    func command(at index: Int) -> CompatIndirectComputeCommand? { commands[index] }

    func reset(_ range: Range<Int>) {
        for i in range { commands[i]?.reset() }
    }
}

#endif
