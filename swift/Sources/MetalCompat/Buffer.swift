// Buffers: plain host memory (MetalCompat's "GPU" is the CPU, so every storage mode is shared memory).
#if !canImport(Metal)
import CMetalCompat
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Memory a buffer's contents live in; frees it when the last buffer (or command) using it goes away.
final class BufferStorage {
    let base: UnsafeMutableRawPointer
    let length: Int
    /// Bytes allocated from base (>= length). The slack after length belongs to no other resource:
    /// overruns land there harmlessly, and checking mode reports them.
    let capacity: Int
    private let release: (() -> Void)?

    init(base: UnsafeMutableRawPointer, length: Int, capacity: Int? = nil, release: (() -> Void)?) {
        self.base = base
        self.length = length
        self.capacity = capacity ?? length
        self.release = release
    }

    /// Zero-filled, page-aligned memory plus at least one page of slack (mmap: untouched pages cost
    /// nothing).
    static func allocate(length: Int) -> BufferStorage? {
        let size = roundUp(max(length, 1), pageSize) + pageSize
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED
        else { return nil }
        return BufferStorage(base: p, length: length, capacity: size) { munmap(p, size) }
    }

    /// A copy of setBytes data, 16-byte aligned like any constant buffer.
    static func copy(of bytes: UnsafeRawPointer, length: Int) -> BufferStorage {
        let capacity = roundUp(max(length, 16), 16)
        let p = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        p.copyMemory(from: bytes, byteCount: length)
        return BufferStorage(base: p, length: length, capacity: capacity) { p.deallocate() }
    }

    deinit { release?() }
}

let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

func roundUp(_ n: Int, _ alignment: Int) -> Int { (n + alignment - 1) / alignment * alignment }

final class CompatBuffer: MTLBuffer {
    let storage: BufferStorage
    let options: MTLResourceOptions
    let owningHeap: CompatHeap?
    let heapOffset: Int
    let allocatedSize: Int
    var label: String?

    init(storage: BufferStorage, options: MTLResourceOptions, heap: CompatHeap?, heapOffset: Int, allocatedSize: Int) {
        self.storage = storage
        self.options = options
        self.owningHeap = heap
        self.heapOffset = heapOffset
        self.allocatedSize = allocatedSize
        mc_counter_add(Int32(MC_COUNTER_BUFFER_ALLOCATIONS.rawValue), 1)
        // A heap's bytes were counted once when the heap was made.
        if heap == nil { mc_counter_add(Int32(MC_COUNTER_ALLOCATED_BYTES.rawValue), UInt64(storage.length)) }
    }

    var device: any MTLDevice { CompatDevice.shared }
    var length: Int { storage.length }
    var gpuAddress: UInt64 { UInt64(UInt(bitPattern: storage.base)) }
    var cpuCacheMode: MTLCPUCacheMode { options.cpuCacheMode }
    var storageMode: MTLStorageMode { options.storageMode }
    var hazardTrackingMode: MTLHazardTrackingMode { options.hazardTrackingMode }
    var resourceOptions: MTLResourceOptions { options }
    var heap: (any MTLHeap)? { owningHeap }

    func contents() -> UnsafeMutableRawPointer { storage.base }
    func didModifyRange(_ range: Range<Int>) {}
    func setPurgeableState(_ state: MTLPurgeableState) -> MTLPurgeableState { .nonVolatile }
}

#endif
