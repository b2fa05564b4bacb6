// Heaps: one allocation, sub-allocated into buffers (first fit; freed ranges are reused).
#if !canImport(Metal)
import CMetalCompat
import Foundation

/// Alignment of buffers in a heap (heapBufferSizeAndAlign).
let heapAlignment = 256

final class CompatHeap: MTLHeap {
    let storage: BufferStorage
    let descriptorType: MTLHeapType
    let options: MTLResourceOptions
    var label: String?
    private let lock = NSLock()
    /// Allocated ranges of an automatic heap, sorted by offset.
    private var used: [Range<Int>] = []

    init?(descriptor: MTLHeapDescriptor) {
        guard descriptor.size > 0, let storage = BufferStorage.allocate(length: descriptor.size) else { return nil }
        self.storage = storage
        self.descriptorType = descriptor.type
        self.options = descriptor.resourceOptions
        mc_counter_add(Int32(MC_COUNTER_HEAP_ALLOCATIONS.rawValue), 1)
        mc_counter_add(Int32(MC_COUNTER_ALLOCATED_BYTES.rawValue), UInt64(descriptor.size))
        if let trace = MetalCompatTrace.recorder {
            trace.lock.lock()
            trace.heapMade(self)
            trace.lock.unlock()
        }
    }

    /// Every buffer made in this heap goes through here (the trace records where it lives).
    private func made(_ b: CompatBuffer) -> CompatBuffer {
        if let trace = MetalCompatTrace.recorder {
            trace.lock.lock()
            trace.bufferMade(b)
            trace.lock.unlock()
        }
        return b
    }

    var device: any MTLDevice { CompatDevice.shared }
    var size: Int { storage.length }
    var type: MTLHeapType { descriptorType }
    var storageMode: MTLStorageMode { options.storageMode }
    var cpuCacheMode: MTLCPUCacheMode { options.cpuCacheMode }
    var hazardTrackingMode: MTLHazardTrackingMode { options.hazardTrackingMode }
    var resourceOptions: MTLResourceOptions { options }

    var usedSize: Int {
        lock.lock()
        defer { lock.unlock() }
        return used.reduce(0) { $0 + $1.count }
    }

    var currentAllocatedSize: Int { size }

    func maxAvailableSize(alignment: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        var best = 0
        var start = 0
        for r in used + [size..<size] {
            let aligned = roundUp(start, max(alignment, 1))
            best = max(best, r.lowerBound - aligned)
            start = r.upperBound
        }
        return best
    }

    func makeBuffer(length: Int, options: MTLResourceOptions) -> (any MTLBuffer)? {
        guard descriptorType == .automatic, length > 0 else { return nil }
        let count = roundUp(length, heapAlignment)
        lock.lock()
        var offset = 0
        var slot = used.count
        for (i, r) in used.enumerated() {
            if r.lowerBound - offset >= count {
                slot = i
                break
            }
            offset = r.upperBound
        }
        guard offset + count <= size else {
            lock.unlock()
            return nil
        }
        let range = offset..<(offset + count)
        used.insert(range, at: slot)
        lock.unlock()
        let sub = BufferStorage(base: storage.base + offset, length: length, capacity: count) { [self] in
            lock.lock()
            used.removeAll { $0 == range }
            lock.unlock()
        }
        return made(CompatBuffer(storage: sub, options: options, heap: self, heapOffset: offset, allocatedSize: count))
    }

    /// Placement heaps: the caller chooses the offset (resources may alias).
    func makeBuffer(length: Int, options: MTLResourceOptions, offset: Int) -> (any MTLBuffer)? {
        guard descriptorType == .placement, length > 0, offset >= 0, offset % heapAlignment == 0,
              offset + length <= size
        else { return nil }
        // Placement heaps may alias: no slack is this buffer's alone.
        let sub = BufferStorage(base: storage.base + offset, length: length) { [storage] in _ = storage }
        return made(CompatBuffer(
            storage: sub, options: options, heap: self, heapOffset: offset, allocatedSize: roundUp(length, heapAlignment)))
    }
}

#endif
