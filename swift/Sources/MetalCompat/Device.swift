// The device: MetalCompat's one "GPU", the CPU. It reports an Apple-GPU-like profile (SIMD width 32,
// 1024 threads and 32 KiB of threadgroup memory per threadgroup, Apple GPU families through apple9 and
// metal3) so that backend code takes the paths it takes on Apple silicon.
#if !canImport(Metal)
import CMetalCompat
import Foundation

public func MTLCreateSystemDefaultDevice() -> (any MTLDevice)? { CompatDevice.shared }

public func MTLCopyAllDevices() -> [any MTLDevice] { [CompatDevice.shared] }

final class CompatDevice: MTLDevice {
    static let shared = CompatDevice()

    var name: String { "MetalCompat CPU (\(mc_worker_count()) threads)" }
    var registryID: UInt64 { 0x4d43 }
    var hasUnifiedMemory: Bool { true }
    var maxThreadsPerThreadgroup: MTLSize { MTLSize(width: 1024, height: 1024, depth: 1024) }
    var maxThreadgroupMemoryLength: Int { 32768 }
    var maxBufferLength: Int { 1 << 40 }
    var recommendedMaxWorkingSetSize: UInt64 { UInt64(ProcessInfo.processInfo.physicalMemory) }
    var currentAllocatedSize: Int {
        var c = [UInt64](repeating: 0, count: Int(MC_COUNTER_COUNT.rawValue))
        mc_counters_snapshot(&c)
        return Int(c[Int(MC_COUNTER_ALLOCATED_BYTES.rawValue)])
    }

    func supportsFamily(_ gpuFamily: MTLGPUFamily) -> Bool {
        switch gpuFamily {
        case .apple1, .apple2, .apple3, .apple4, .apple5, .apple6, .apple7, .apple8, .apple9: return true
        case .mac2, .common1, .common2, .common3, .metal3: return true
        default: return false
        }
    }

    func makeCommandQueue() -> (any MTLCommandQueue)? { CompatCommandQueue() }

    func makeCommandQueue(maxCommandBufferCount: Int) -> (any MTLCommandQueue)? { CompatCommandQueue() }

    func makeBuffer(length: Int, options: MTLResourceOptions) -> (any MTLBuffer)? {
        guard length > 0, length <= maxBufferLength, let storage = BufferStorage.allocate(length: length) else {
            return nil
        }
        return CompatBuffer(
            storage: storage, options: options, heap: nil, heapOffset: 0, allocatedSize: roundUp(length, pageSize))
    }

    func makeBuffer(bytes pointer: UnsafeRawPointer, length: Int, options: MTLResourceOptions) -> (any MTLBuffer)? {
        guard let buffer = makeBuffer(length: length, options: options) else { return nil }
        buffer.contents().copyMemory(from: pointer, byteCount: length)
        return buffer
    }

    func makeBuffer(
        bytesNoCopy pointer: UnsafeMutableRawPointer, length: Int, options: MTLResourceOptions,
        deallocator: ((UnsafeMutableRawPointer, Int) -> Void)?
    ) -> (any MTLBuffer)? {
        guard length > 0 else { return nil }
        let storage = BufferStorage(base: pointer, length: length) { deallocator?(pointer, length) }
        return CompatBuffer(storage: storage, options: options, heap: nil, heapOffset: 0, allocatedSize: length)
    }

    func makeHeap(descriptor: MTLHeapDescriptor) -> (any MTLHeap)? { CompatHeap(descriptor: descriptor) }

    func heapBufferSizeAndAlign(length: Int, options: MTLResourceOptions) -> MTLSizeAndAlign {
        MTLSizeAndAlign(size: roundUp(max(length, 1), heapAlignment), align: heapAlignment)
    }

    func makeLibrary(source: String, options: MTLCompileOptions?) throws -> any MTLLibrary {
        if let macros = options?.preprocessorMacros, !macros.isEmpty {
            throw MTLLibraryError(
                .unsupported,
                "MetalCompat: preprocessorMacros are not supported (kernels are compiled ahead of time); "
                    + "use function constants instead")
        }
        return try CompatLibrary.find(source: source, mathMode: options?.mathMode ?? .fast)
    }

    func makeComputePipelineState(function computeFunction: any MTLFunction) throws -> any MTLComputePipelineState {
        guard let f = computeFunction as? CompatFunction else {
            throw MTLLibraryError(.internal, "MetalCompat: not a MetalCompat function")
        }
        return CompatComputePipelineState(function: f, label: nil, maxThreads: 0, supportIndirectCommandBuffers: false)
    }

    func makeComputePipelineState(
        function computeFunction: any MTLFunction, options: MTLPipelineOption,
        reflection: AutoreleasingUnsafeMutablePointer<MTLAutoreleasedComputePipelineReflection?>?
    ) throws -> any MTLComputePipelineState {
        reflection?.pointee = nil
        return try makeComputePipelineState(function: computeFunction)
    }

    func makeComputePipelineState(
        descriptor: MTLComputePipelineDescriptor, options: MTLPipelineOption,
        reflection: AutoreleasingUnsafeMutablePointer<MTLAutoreleasedComputePipelineReflection?>?
    ) throws -> any MTLComputePipelineState {
        guard let f = descriptor.computeFunction as? CompatFunction else {
            throw MTLLibraryError(.internal, "MetalCompat: the pipeline descriptor has no MetalCompat computeFunction")
        }
        reflection?.pointee = nil
        return CompatComputePipelineState(
            function: f, label: descriptor.label, maxThreads: descriptor.maxTotalThreadsPerThreadgroup,
            supportIndirectCommandBuffers: descriptor.supportIndirectCommandBuffers)
    }

    func makeIndirectCommandBuffer(
        descriptor: MTLIndirectCommandBufferDescriptor, maxCommandCount maxCount: Int, options: MTLResourceOptions
    ) -> (any MTLIndirectCommandBuffer)? {
        guard maxCount > 0 else { return nil }
        return CompatIndirectCommandBuffer(descriptor: descriptor, size: maxCount, options: options)
    }
}

#endif
