// All GPU memory of a backend: one placement heap, every buffer at a page-aligned offset, all
// allocated at load. Nothing is allocated afterwards, so memory stays flat however long generation runs.
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
    private(set) var bufferCount = 0
    private var next = 0

    /// Bytes a set of buffers of these lengths needs in a placement heap.
    static func heapSize(device: any MTLDevice, lengths: [Int]) -> Int {
        lengths.reduce(0) { total, length in
            let sa = device.heapBufferSizeAndAlign(length: max(length, 16), options: options)
            return roundUp(total, max(sa.align, page)) + roundUp(sa.size, page)
        }
    }

    init(device: any MTLDevice, lengths: [Int]) throws {
        let desc = MTLHeapDescriptor()
        desc.type = .placement
        desc.storageMode = .shared
        desc.size = MetalArena.heapSize(device: device, lengths: lengths)
        guard let heap = device.makeHeap(descriptor: desc) else {
            throw MambaFailure.backend("cannot allocate a Metal heap of \(desc.size) bytes")
        }
        self.heap = heap
    }

    /// The next buffer; `length` must be one of the lengths the arena was sized for, in order.
    func buffer(_ length: Int, label: String) throws -> any MTLBuffer {
        let sa = heap.device.heapBufferSizeAndAlign(length: max(length, 16), options: MetalArena.options)
        let offset = roundUp(next, max(sa.align, MetalArena.page))
        guard let b = heap.makeBuffer(length: max(length, 16), options: MetalArena.options, offset: offset) else {
            throw MambaFailure.backend("cannot place a \(length)-byte Metal buffer (\(label)) in the heap")
        }
        b.label = label
        next = offset + roundUp(sa.size, MetalArena.page)
        bufferCount += 1
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
