// Command queues and command buffers. commit() runs the command buffer to completion on the calling
// thread (dispatch by dispatch, each spread over the worker pool), so waitUntilCompleted() has nothing
// to wait for and completion handlers run before commit() returns. Single use is enforced as on Metal:
// a second commit() is an error, reported through status and error.
#if !canImport(Metal)
import CMetalCompat
import Foundation

final class CompatCommandQueue: MTLCommandQueue {
    var label: String?

    var device: any MTLDevice { CompatDevice.shared }

    func makeCommandBuffer() -> (any MTLCommandBuffer)? { CompatCommandBuffer(queue: self, retained: true) }

    func makeCommandBufferWithUnretainedReferences() -> (any MTLCommandBuffer)? {
        CompatCommandBuffer(queue: self, retained: false)
    }
}

final class CompatCommandBuffer: MTLCommandBuffer {
    let queue: CompatCommandQueue
    let retainedReferences: Bool
    var label: String?
    private(set) var status: MTLCommandBufferStatus = .notEnqueued
    private(set) var error: (any Error)?
    private(set) var gpuStartTime: Double = 0
    private(set) var gpuEndTime: Double = 0
    private var commands: [EncodedCommand] = []
    private var openEncoder: AnyObject? // the compute or blit encoder still encoding
    private var scheduledHandlers: [MTLCommandBufferHandler] = []
    private var completedHandlers: [MTLCommandBufferHandler] = []
    private var committed = false

    init(queue: CompatCommandQueue, retained: Bool) {
        self.queue = queue
        self.retainedReferences = retained
    }

    var device: any MTLDevice { CompatDevice.shared }
    var commandQueue: any MTLCommandQueue { queue }
    private var name: String { label.map { "command buffer '\($0)'" } ?? "command buffer" }

    func record(_ command: EncodedCommand) { commands.append(command) }

    func encoderEnded(_ encoder: AnyObject) {
        if openEncoder === encoder { openEncoder = nil }
    }

    func makeComputeCommandEncoder() -> (any MTLComputeCommandEncoder)? {
        makeComputeCommandEncoder(dispatchType: .serial)
    }

    func makeComputeCommandEncoder(dispatchType: MTLDispatchType) -> (any MTLComputeCommandEncoder)? {
        if committed { return nil }
        if openEncoder != nil {
            record(.failure(MTLCommandBufferError(
                .notPermitted, "MetalCompat: a compute encoder was made while another encoder of the \(name) was "
                    + "still encoding (call endEncoding() first)")))
        }
        let encoder = CompatComputeCommandEncoder(commandBuffer: self, dispatchType: dispatchType)
        openEncoder = encoder
        return encoder
    }

    func makeBlitCommandEncoder() -> (any MTLBlitCommandEncoder)? {
        if committed { return nil }
        if openEncoder != nil {
            record(.failure(MTLCommandBufferError(
                .notPermitted, "MetalCompat: a blit encoder was made while another encoder of the \(name) was "
                    + "still encoding (call endEncoding() first)")))
        }
        let encoder = CompatBlitCommandEncoder(commandBuffer: self)
        openEncoder = encoder
        return encoder
    }

    func enqueue() {
        if status == .notEnqueued { status = .enqueued }
    }

    func commit() {
        if committed {
            fail(MTLCommandBufferError(
                .notPermitted, "MetalCompat: commit() called on a \(name) that was already committed "
                    + "(a command buffer can be committed only once; make a new one)"))
            return
        }
        committed = true
        mc_counter_add(Int32(MC_COUNTER_COMMAND_BUFFERS.rawValue), 1)
        if openEncoder != nil {
            fail(MTLCommandBufferError(
                .notPermitted, "MetalCompat: \(name) committed while an encoder was still encoding "
                    + "(call endEncoding() first)"))
            return
        }
        status = .scheduled
        for handler in scheduledHandlers { handler(self) }
        gpuStartTime = ProcessInfo.processInfo.systemUptime
        var failure: MTLCommandBufferError?
        if let trace = MetalCompatTrace.recorder {
            // Recorded as encoded, before it runs; a dry trace does not run it at all.
            trace.lock.lock()
            trace.commit(commands, label: label)
            if !trace.dry {
                failure = CommandExecutor(checking: mc_checking_enabled() != 0).run(commands)
                trace.snapshot()
            }
            trace.lock.unlock()
        } else {
            failure = CommandExecutor(checking: mc_checking_enabled() != 0).run(commands)
        }
        gpuEndTime = ProcessInfo.processInfo.systemUptime
        commands = [] // release what the commands retained, as Metal does once a command buffer completes
        if let failure {
            fail(failure)
        } else {
            status = .completed
            for handler in completedHandlers { handler(self) }
            completedHandlers = []
        }
    }

    private func fail(_ failure: MTLCommandBufferError) {
        error = failure
        status = .error
        for handler in completedHandlers { handler(self) }
        completedHandlers = []
    }

    func waitUntilScheduled() {}
    func waitUntilCompleted() {}

    func addScheduledHandler(_ block: @escaping MTLCommandBufferHandler) {
        if committed { block(self) } else { scheduledHandlers.append(block) }
    }

    func addCompletedHandler(_ block: @escaping MTLCommandBufferHandler) {
        if status == .completed || status == .error { block(self) } else { completedHandlers.append(block) }
    }

    func pushDebugGroup(_ string: String) {}
    func popDebugGroup() {}
}

#endif
