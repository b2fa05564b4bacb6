// What encoders record into a command buffer. Nothing runs before commit(): like the GPU, MetalCompat
// executes a command buffer's commands in order when it is committed, with the argument values they
// were encoded with (buffers by reference, setBytes data by copy).
#if !canImport(Metal)

/// A buffer argument: memory and offset, kept alive until the command buffer is done with it.
struct BoundBuffer {
    let storage: BufferStorage
    var offset: Int
    /// The MTLBuffer bound (nil for setBytes data), for residency checks of indirect commands.
    let buffer: CompatBuffer?
}

/// The argument tables of a dispatch: [[buffer(n)]] and [[threadgroup(n)]] lengths.
struct ArgumentTable {
    static let slots = 31
    var buffers = [BoundBuffer?](repeating: nil, count: ArgumentTable.slots)
    var threadgroupLengths = [Int](repeating: 0, count: ArgumentTable.slots)
}

struct DispatchCommand {
    let pipeline: CompatComputePipelineState
    let arguments: ArgumentTable
    let grid: MTLSize // threadgroups per grid, or threads per grid when nonuniform
    let threadsPerThreadgroup: MTLSize
    let nonuniform: Bool
    let origin: String // where it was encoded, for error messages
}

/// Resources an encoder declared with useResource/useHeap (indirect commands may only touch these).
struct Residency {
    var resources = Set<ObjectIdentifier>()
    var heaps = Set<ObjectIdentifier>()

    func contains(_ buffer: CompatBuffer) -> Bool {
        if resources.contains(ObjectIdentifier(buffer)) { return true }
        if let heap = buffer.owningHeap, heaps.contains(ObjectIdentifier(heap)) { return true }
        return false
    }
}

enum EncodedCommand {
    case dispatch(DispatchCommand)
    /// executeCommandsInBuffer: the ICB is read when the command buffer runs, as on the GPU.
    case indirect(
        icb: CompatIndirectCommandBuffer, range: Range<Int>, pipeline: CompatComputePipelineState?,
        arguments: ArgumentTable, residency: Residency, origin: String)
    /// memoryBarrier: later dispatches see earlier ones' writes (always true here; the trace records it).
    case barrier
    /// A compute encoder began (its dispatch type, for the trace).
    case encoder(MTLDispatchType)
    /// A blit operation, done on the CPU when the command buffer runs.
    case blit(() -> Void)
    /// API misuse found while encoding: the command buffer fails when it reaches this point.
    case failure(MTLCommandBufferError)
}

#endif
