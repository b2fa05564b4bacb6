// The blit command encoder, for buffers: copies and fills happen in order with the command buffer's
// dispatches when it runs. Range rules that macOS enforces (fill ranges in multiples of 4 bytes) are
// checked so that code which works here also works on a Mac.
#if !canImport(Metal)

final class CompatBlitCommandEncoder: MTLBlitCommandEncoder {
    let commandBuffer: CompatCommandBuffer
    var label: String?
    private var ended = false

    init(commandBuffer: CompatCommandBuffer) { self.commandBuffer = commandBuffer }

    var device: any MTLDevice { CompatDevice.shared }

    private func misuse(_ message: String) {
        commandBuffer.record(.failure(MTLCommandBufferError(.notPermitted, "MetalCompat: blit encoder: \(message)")))
    }

    private func encoding(_ call: String) -> Bool {
        if ended { misuse("\(call) called after endEncoding()") }
        return !ended
    }

    func copy(
        from sourceBuffer: any MTLBuffer, sourceOffset: Int, to destinationBuffer: any MTLBuffer,
        destinationOffset: Int, size: Int
    ) {
        guard encoding("copy") else { return }
        guard let src = sourceBuffer as? CompatBuffer, let dst = destinationBuffer as? CompatBuffer else {
            return misuse("copy: not MetalCompat buffers")
        }
        guard size >= 0, sourceOffset >= 0, destinationOffset >= 0, sourceOffset + size <= src.length,
              destinationOffset + size <= dst.length
        else {
            return misuse("copy of \(size) bytes from offset \(sourceOffset) (of \(src.length)) to offset "
                + "\(destinationOffset) (of \(dst.length)) leaves a buffer")
        }
        let (s, d) = (src.storage, dst.storage)
        commandBuffer.record(.blit { (d.base + destinationOffset).copyMemory(from: s.base + sourceOffset, byteCount: size) })
    }

    func fill(buffer: any MTLBuffer, range: Range<Int>, value: UInt8) {
        guard encoding("fill") else { return }
        guard let b = buffer as? CompatBuffer else { return misuse("fill: not a MetalCompat buffer") }
        guard range.lowerBound >= 0, range.upperBound <= b.length, !range.isEmpty else {
            return misuse("fill range \(range) is empty or leaves the buffer's \(b.length) bytes")
        }
        guard range.lowerBound % 4 == 0, range.count % 4 == 0 else {
            return misuse("fill range \(range) must start and end at multiples of 4 bytes (macOS requires it)")
        }
        let s = b.storage
        commandBuffer.record(.blit { (s.base + range.lowerBound).initializeMemory(as: UInt8.self, repeating: value, count: range.count) })
    }

    func synchronize(resource: any MTLResource) { _ = encoding("synchronize") }

    func resetCommandsInBuffer(_ buffer: any MTLIndirectCommandBuffer, range: Range<Int>) {
        guard encoding("resetCommandsInBuffer") else { return }
        guard let icb = buffer as? CompatIndirectCommandBuffer, range.lowerBound >= 0, range.upperBound <= icb.size else {
            return misuse("resetCommandsInBuffer: range \(range) outside the indirect command buffer")
        }
        commandBuffer.record(.blit { icb.reset(range) })
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
