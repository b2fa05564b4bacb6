// All GPU memory of a backend: one placement heap holding every buffer of a MetalBufferLayout at a
// page-aligned offset, all allocated at load. Nothing is allocated afterwards, so memory stays flat
// however long generation runs.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

final class MetalArena {
    /// Apple silicon's page size; also a multiple of the 4 KiB pages elsewhere.
    static let page = 16384
    static let options: MTLResourceOptions = [.storageModeShared]

    let heap: any MTLHeap
    /// Where each buffer of the layout sits in the heap, in layout order.
    let placements: [(buffer: MetalBuffer, offset: Int, length: Int)]
    private var placed: [MetalBuffer: PlacedBuffer] = [:]

    var bufferCount: Int { placed.count }

    /// Places every buffer of `layout`, in order; the heap is sized from the same offsets.
    init(device: any MTLDevice, layout: MetalBufferLayout) throws {
        var placements: [(buffer: MetalBuffer, offset: Int, length: Int)] = []
        var end = 0
        for (buffer, shape) in layout.entries {
            let length = max(shape.bytes, 16)
            let sa = device.heapBufferSizeAndAlign(length: length, options: MetalArena.options)
            let offset = roundUp(end, max(sa.align, MetalArena.page))
            placements.append((buffer, offset, length))
            end = offset + roundUp(sa.size, MetalArena.page)
        }
        let desc = MTLHeapDescriptor()
        desc.type = .placement
        desc.storageMode = .shared
        desc.size = end
        guard let heap = device.makeHeap(descriptor: desc) else {
            throw MambaFailure.backend("cannot allocate a Metal heap of \(desc.size) bytes")
        }
        self.heap = heap
        self.placements = placements
        for ((buffer, offset, length), (_, shape)) in zip(placements, layout.entries) {
            guard let b = heap.makeBuffer(length: length, options: MetalArena.options, offset: offset) else {
                throw MambaFailure.backend("cannot place a \(length)-byte Metal buffer (\(buffer)) in the heap")
            }
            b.label = buffer.description
            placed[buffer] = PlacedBuffer(buffer: b, rowBytes: shape.rowBytes)
        }
    }

    /// The placed buffer `buffer`; an error if the layout has none (e.g. the lm_head of a tied model).
    func buffer(_ buffer: MetalBuffer) throws -> PlacedBuffer {
        guard let b = placed[buffer] else { throw MambaFailure.internalError("no Metal buffer \(buffer) in the layout") }
        return b
    }

    /// Writes `length` bytes at `offset` of `buffer` at load (`write` gets the address). `tensor` names the
    /// checkpoint tensor they hold, stored as `dtype` ("f16" or "f32"); nil for values computed here.
    /// Under MetalCompat the trace records it, so the GPU proxy (tools/gpu) can rebuild the heap.
    func upload(_ buffer: any MTLBuffer, offset: Int = 0, length: Int, tensor: String? = nil, dtype: String? = nil,
                _ write: (UnsafeMutableRawPointer) -> Void) {
        write(buffer.contents() + offset)
        #if !canImport(Metal)
        MetalCompatTrace.fill(buffer, offset: offset, length: length, tensor: tensor, dtype: dtype)
        #endif
    }
}

func roundUp(_ n: Int, _ m: Int) -> Int { (n + m - 1) / m * m }
