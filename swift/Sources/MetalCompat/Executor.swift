// Runs a committed command buffer's commands: each dispatch becomes an mc_dispatch_desc for the C
// runtime (CMetalCompat/dispatch.c), which validates bindings and limits against the kernel's table and
// runs every threadgroup. The first failure stops the command buffer, as a GPU fault would.
#if !canImport(Metal)
import CMetalCompat

struct CommandExecutor {
    let checking: Bool

    func run(_ commands: [EncodedCommand]) -> MTLCommandBufferError? {
        for command in commands {
            let failure: MTLCommandBufferError?
            switch command {
            case .failure(let f):
                failure = f
            case .barrier, .encoder:
                failure = nil
            case .blit(let operation):
                operation()
                failure = nil
            case .dispatch(let d):
                failure = dispatch(d)
            case .indirect(let icb, let range, let pipeline, let arguments, let residency, let origin):
                failure = runIndirect(icb, range, pipeline, arguments, residency, origin)
            }
            if let failure { return failure }
        }
        return nil
    }

    private func runIndirect(
        _ icb: CompatIndirectCommandBuffer, _ range: Range<Int>, _ encoderPipeline: CompatComputePipelineState?,
        _ encoderArguments: ArgumentTable, _ residency: Residency, _ origin: String
    ) -> MTLCommandBufferError? {
        if let problem = icb.problem { return MTLCommandBufferError(.notPermitted, problem) }
        for i in range {
            guard let c = icb.command(at: i), let (grid, group, nonuniform) = c.dispatch else { continue }
            if let problem = c.problem { return MTLCommandBufferError(.notPermitted, problem) }
            let where_ = "indirect compute command \(i) (\(origin))"
            guard let pipeline = icb.config.inheritPipelineState ? encoderPipeline : c.pipeline else {
                return MTLCommandBufferError(.notPermitted, "MetalCompat: \(where_) has no compute pipeline state")
            }
            var arguments = c.arguments
            if icb.config.inheritBuffers {
                arguments.buffers = encoderArguments.buffers
            } else {
                // The GPU only sees what the encoder made resident: a missing useResource is a real bug.
                for (index, bound) in arguments.buffers.enumerated() {
                    guard let buffer = bound?.buffer, !residency.contains(buffer) else { continue }
                    return MTLCommandBufferError(
                        .invalidResource,
                        "MetalCompat: \(where_), kernel '\(pipeline.function.name)': the buffer at index \(index) "
                            + "was not made resident with useResource(_:usage:) or useHeap(_:) on the encoder")
                }
            }
            let d = DispatchCommand(
                pipeline: pipeline, arguments: arguments, grid: grid, threadsPerThreadgroup: group,
                nonuniform: nonuniform, origin: where_)
            if let failure = dispatch(d) { return failure }
        }
        return nil
    }

    private func dispatch(_ d: DispatchCommand) -> MTLCommandBufferError? {
        let function = d.pipeline.function
        let dims = [d.grid.width, d.grid.height, d.grid.depth, d.threadsPerThreadgroup.width,
                    d.threadsPerThreadgroup.height, d.threadsPerThreadgroup.depth]
        if dims.contains(where: { $0 < 0 || $0 > Int(UInt32.max) }) {
            return MTLCommandBufferError(
                .invalidResource,
                "MetalCompat: kernel '\(function.name)' (\(d.origin)): grid \(d.grid) / threadgroup "
                    + "\(d.threadsPerThreadgroup) out of range")
        }
        var desc = mc_dispatch_desc()
        desc.file = function.library.file
        desc.kernel = Int32(function.kernel)
        desc.grid = (UInt32(d.grid.width), UInt32(d.grid.height), UInt32(d.grid.depth))
        desc.group = (
            UInt32(d.threadsPerThreadgroup.width), UInt32(d.threadsPerThreadgroup.height),
            UInt32(d.threadsPerThreadgroup.depth)
        )
        desc.nonuniform = d.nonuniform ? 1 : 0
        desc.checking = checking ? 1 : 0
        desc.max_total_threads = UInt32(d.pipeline.maxTotalThreadsPerThreadgroup)
        withUnsafeMutableBytes(of: &desc.buffers) { raw in
            let slots = raw.bindMemory(to: UnsafeMutableRawPointer?.self)
            for (i, b) in d.arguments.buffers.enumerated() { slots[i] = b.map { $0.storage.base + $0.offset } }
        }
        withUnsafeMutableBytes(of: &desc.buffer_lengths) { raw in
            let slots = raw.bindMemory(to: UInt64.self)
            for (i, b) in d.arguments.buffers.enumerated() { slots[i] = UInt64(b.map { $0.storage.length - $0.offset } ?? 0) }
        }
        withUnsafeMutableBytes(of: &desc.buffer_slack) { raw in
            let slots = raw.bindMemory(to: UInt64.self)
            for (i, b) in d.arguments.buffers.enumerated() { slots[i] = UInt64(b.map { $0.storage.capacity - $0.storage.length } ?? 0) }
        }
        var lengthsOK = true
        withUnsafeMutableBytes(of: &desc.threadgroup_lengths) { raw in
            let slots = raw.bindMemory(to: UInt32.self)
            for (i, n) in d.arguments.threadgroupLengths.enumerated() {
                if n < 0 || n > Int(UInt32.max) { lengthsOK = false } else { slots[i] = UInt32(n) }
            }
        }
        if !lengthsOK {
            return MTLCommandBufferError(
                .invalidResource, "MetalCompat: kernel '\(function.name)' (\(d.origin)): bad threadgroup memory length")
        }
        var message = [CChar](repeating: 0, count: 1024)
        let values = function.constantStorage.map { UnsafeRawPointer($0) }
        let status = values.withUnsafeBufferPointer { v -> Int32 in
            desc.constant_values = v.isEmpty ? nil : v.baseAddress
            return mc_dispatch(&desc, &message, message.count)
        }
        guard status != MC_OK.rawValue else { return nil }
        let code: MTLCommandBufferError.Code
        switch UInt32(status) {
        case MC_ERR_BINDING.rawValue: code = .invalidResource
        case MC_ERR_DEADLOCK.rawValue: code = .timeout // a GPU would hang until the watchdog fires
        case MC_ERR_RESOURCES.rawValue: code = .outOfMemory
        default: code = .internal
        }
        return MTLCommandBufferError(code, "MetalCompat: \(String(cString: message)) [\(d.origin)]")
    }
}

#endif
