// The Metal API's class types: descriptors, compile options and function-constant values.
#if !canImport(Metal)
import Foundation

open class MTLHeapDescriptor {
    open var size: Int = 0
    open var storageMode: MTLStorageMode = .private
    open var cpuCacheMode: MTLCPUCacheMode = .defaultCache
    open var hazardTrackingMode: MTLHazardTrackingMode = .default
    open var type: MTLHeapType = .automatic
    open var resourceOptions: MTLResourceOptions {
        get {
            MTLResourceOptions(
                rawValue: cpuCacheMode.rawValue | (storageMode.rawValue << 4) | (hazardTrackingMode.rawValue << 8))
        }
        set {
            cpuCacheMode = newValue.cpuCacheMode
            storageMode = newValue.storageMode
            hazardTrackingMode = newValue.hazardTrackingMode
        }
    }

    public init() {}
}

open class MTLCompileOptions {
    /// MetalCompat runs precompiled kernels: it cannot apply macros, so makeLibrary throws when set.
    open var preprocessorMacros: [String: NSObject]?
    /// Accepted and recorded by the library (and its trace); MetalCompat's kernels are C++ compiled without
    /// fast math, so they always compute as `.safe` would: no reassociation, precise functions.
    open var mathMode: MTLMathMode = .fast
    /// The older switch: false is `mathMode = .safe`, as on macOS before `mathMode` existed.
    open var fastMathEnabled: Bool {
        get { mathMode == .fast }
        set { mathMode = newValue ? .fast : .safe }
    }
    open var languageVersion: MTLLanguageVersion = .version3_1

    public init() {}
}

/// Values for a library's [[function_constant]]s, by index or by name.
open class MTLFunctionConstantValues {
    struct Value {
        let type: MTLDataType
        let bytes: [UInt8]
    }

    var byIndex: [Int: Value] = [:]
    var byName: [String: Value] = [:]

    public init() {}

    private func read(_ value: UnsafeRawPointer, _ type: MTLDataType) -> Value {
        let size = type.packedSize ?? 0
        return Value(type: type, bytes: Array(UnsafeRawBufferPointer(start: value, count: size)))
    }

    open func setConstantValue(_ value: UnsafeRawPointer, type: MTLDataType, index: Int) {
        byIndex[index] = read(value, type)
    }

    open func setConstantValue(_ value: UnsafeRawPointer, type: MTLDataType, withName name: String) {
        byName[name] = read(value, type)
    }

    open func setConstantValues(_ values: UnsafeRawPointer, type: MTLDataType, range: Range<Int>) {
        let stride = type.packedSize ?? 0
        for (k, index) in range.enumerated() { byIndex[index] = read(values + k * stride, type) }
    }

    open func reset() {
        byIndex = [:]
        byName = [:]
    }
}

open class MTLComputePipelineDescriptor {
    open var label: String?
    open var computeFunction: (any MTLFunction)?
    open var supportIndirectCommandBuffers: Bool = false
    open var threadGroupSizeIsMultipleOfThreadExecutionWidth: Bool = false
    open var maxTotalThreadsPerThreadgroup: Int = 0

    public init() {}

    open func reset() {
        label = nil
        computeFunction = nil
        supportIndirectCommandBuffers = false
        threadGroupSizeIsMultipleOfThreadExecutionWidth = false
        maxTotalThreadsPerThreadgroup = 0
    }
}

open class MTLIndirectCommandBufferDescriptor {
    open var commandTypes: MTLIndirectCommandType = []
    open var inheritPipelineState: Bool = false
    open var inheritBuffers: Bool = true // Apple documents no default ("always set this property explicitly")
    open var maxVertexBufferBindCount: Int = 0
    open var maxFragmentBufferBindCount: Int = 0
    open var maxKernelBufferBindCount: Int = 0
    /// macOS 14+. Apple documents no default; MetalCompat takes 0, so a command that sets threadgroup
    /// memory fails unless the descriptor reserves room for it, which makes code set it explicitly
    /// (whatever a real GPU's default is, an explicit count is then right on both).
    open var maxKernelThreadgroupMemoryBindCount: Int = 0

    public init() {}
}

/// Pipeline reflection: MetalCompat has none to offer (makeComputePipelineState stores nil).
open class MTLComputePipelineReflection {}
public typealias MTLAutoreleasedComputePipelineReflection = MTLComputePipelineReflection

/// Stand-in for the Objective-C runtime's pointer type, which only exists on Apple platforms: the
/// reflection argument of makeComputePipelineState(descriptor:options:reflection:).
public struct AutoreleasingUnsafeMutablePointer<Pointee> {
    let pointer: UnsafeMutablePointer<Pointee>

    public init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }

    public var pointee: Pointee {
        get { pointer.pointee }
        nonmutating set { pointer.pointee = newValue }
    }
}

#endif
