// The compute command encoder: tracks the argument tables and records dispatches. Misuse that Metal's
// validation layer would stop on (encoding after endEncoding, a dispatch without a pipeline, setBytes
// over 4 KiB, ...) is recorded as a failure of the command buffer instead of trapping.
#if !canImport(Metal)
import CMetalCompat

final class CompatComputeCommandEncoder: MTLComputeCommandEncoder {
    let commandBuffer: CompatCommandBuffer
    let dispatchType: MTLDispatchType
    var label: String?
    private var pipeline: CompatComputePipelineState?
    private var table = ArgumentTable()
    private var residency = Residency()
    private var ended = false
    private var dispatchCount = 0

    init(commandBuffer: CompatCommandBuffer, dispatchType: MTLDispatchType) {
        self.commandBuffer = commandBuffer
        self.dispatchType = dispatchType
        mc_counter_add(Int32(MC_COUNTER_COMPUTE_ENCODERS.rawValue), 1)
        commandBuffer.record(.encoder(dispatchType))
    }

    var device: any MTLDevice { CompatDevice.shared }
    private var name: String { label.map { "compute encoder '\($0)'" } ?? "compute encoder" }

    /// False (and a recorded failure) once encoding has ended.
    private func encoding(_ call: String) -> Bool {
        if ended { misuse("\(call) called on a \(name) after endEncoding()") }
        return !ended
    }

    private func misuse(_ message: String) {
        commandBuffer.record(.failure(MTLCommandBufferError(.notPermitted, "MetalCompat: \(message)")))
    }

    private func checkIndex(_ index: Int, _ call: String) -> Bool {
        if index < 0 || index >= ArgumentTable.slots {
            misuse("\(call): index \(index) is outside 0..<\(ArgumentTable.slots)")
            return false
        }
        return true
    }

    func setComputePipelineState(_ state: any MTLComputePipelineState) {
        guard encoding("setComputePipelineState") else { return }
        guard let p = state as? CompatComputePipelineState else { return misuse("not a MetalCompat pipeline state") }
        pipeline = p
    }

    func setBytes(_ bytes: UnsafeRawPointer, length: Int, index: Int) {
        guard encoding("setBytes"), checkIndex(index, "setBytes") else { return }
        guard length > 0, length <= 4096 else {
            return misuse("setBytes(length: \(length)) at index \(index): Metal allows 1...4096 bytes")
        }
        table.buffers[index] = BoundBuffer(storage: .copy(of: bytes, length: length), offset: 0, buffer: nil)
    }

    func setBuffer(_ buffer: (any MTLBuffer)?, offset: Int, index: Int) {
        guard encoding("setBuffer"), checkIndex(index, "setBuffer") else { return }
        guard let buffer else {
            table.buffers[index] = nil
            return
        }
        guard let b = buffer as? CompatBuffer else { return misuse("setBuffer: not a MetalCompat buffer") }
        guard offset >= 0, offset <= b.length else {
            return misuse("setBuffer at index \(index): offset \(offset) is outside the buffer's \(b.length) bytes")
        }
        table.buffers[index] = BoundBuffer(storage: b.storage, offset: offset, buffer: b)
    }

    func setBufferOffset(_ offset: Int, index: Int) {
        guard encoding("setBufferOffset"), checkIndex(index, "setBufferOffset") else { return }
        guard var bound = table.buffers[index] else {
            return misuse("setBufferOffset at index \(index): no buffer is bound there")
        }
        guard offset >= 0, offset <= bound.storage.length else {
            return misuse("setBufferOffset at index \(index): offset \(offset) is outside the buffer")
        }
        bound.offset = offset
        table.buffers[index] = bound
    }

    func setBuffers(_ buffers: [(any MTLBuffer)?], offsets: [Int], range: Range<Int>) {
        for (k, index) in range.enumerated() where k < buffers.count && k < offsets.count {
            setBuffer(buffers[k], offset: offsets[k], index: index)
        }
    }

    func setThreadgroupMemoryLength(_ length: Int, index: Int) {
        guard encoding("setThreadgroupMemoryLength"), checkIndex(index, "setThreadgroupMemoryLength") else { return }
        table.threadgroupLengths[index] = length
    }

    private func dispatch(_ grid: MTLSize, _ group: MTLSize, nonuniform: Bool, _ call: String) {
        guard encoding(call) else { return }
        guard let pipeline else { return misuse("\(call) without a compute pipeline state (\(name))") }
        dispatchCount += 1
        commandBuffer.record(
            .dispatch(
                DispatchCommand(
                    pipeline: pipeline, arguments: table, grid: grid, threadsPerThreadgroup: group,
                    nonuniform: nonuniform, origin: "\(call) #\(dispatchCount) of the \(name)")))
    }

    func dispatchThreadgroups(_ threadgroupsPerGrid: MTLSize, threadsPerThreadgroup: MTLSize) {
        dispatch(threadgroupsPerGrid, threadsPerThreadgroup, nonuniform: false, "dispatchThreadgroups")
    }

    func dispatchThreads(_ threadsPerGrid: MTLSize, threadsPerThreadgroup: MTLSize) {
        dispatch(threadsPerGrid, threadsPerThreadgroup, nonuniform: true, "dispatchThreads")
    }

    // Dispatches run one after another to completion: every barrier is already satisfied.
    func memoryBarrier(scope: MTLBarrierScope) {
        if encoding("memoryBarrier") { commandBuffer.record(.barrier) }
    }

    func memoryBarrier(resources: [any MTLResource]) {
        if encoding("memoryBarrier") { commandBuffer.record(.barrier) }
    }

    func useResource(_ resource: any MTLResource, usage: MTLResourceUsage) {
        guard encoding("useResource") else { return }
        residency.resources.insert(ObjectIdentifier(resource))
    }

    func useResources(_ resources: [any MTLResource], usage: MTLResourceUsage) {
        for r in resources { useResource(r, usage: usage) }
    }

    func useHeap(_ heap: any MTLHeap) {
        guard encoding("useHeap") else { return }
        residency.heaps.insert(ObjectIdentifier(heap))
    }

    func useHeaps(_ heaps: [any MTLHeap]) {
        for h in heaps { useHeap(h) }
    }

    func executeCommandsInBuffer(_ buffer: any MTLIndirectCommandBuffer, range: Range<Int>) {
        guard encoding("executeCommandsInBuffer") else { return }
        guard let icb = buffer as? CompatIndirectCommandBuffer else {
            return misuse("executeCommandsInBuffer: not a MetalCompat indirect command buffer")
        }
        guard range.lowerBound >= 0, range.upperBound <= icb.size else {
            return misuse("executeCommandsInBuffer: range \(range) is outside the buffer's \(icb.size) commands")
        }
        commandBuffer.record(
            .indirect(
                icb: icb, range: range, pipeline: pipeline, arguments: table, residency: residency,
                origin: "executeCommandsInBuffer on the \(name)"))
    }

    func endEncoding() {
        guard encoding("endEncoding") else { return }
        ended = true
        commandBuffer.encoderEnded(self)
    }

    func insertDebugSignpost(_ string: String) {}
    func pushDebugGroup(_ string: String) {}
    func popDebugGroup() {}
}

#endif
