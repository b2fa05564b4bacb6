// Value types of the Metal API subset (names, raw values and shapes as in Apple's Swift overlay).
#if !canImport(Metal)

/// The dimensions of a grid, threadgroup or region.
/// Not Equatable: neither is Apple's (an imported C struct), and code must compile on both.
public struct MTLSize {
    public var width: Int
    public var height: Int
    public var depth: Int

    public init() {
        self.init(width: 0, height: 0, depth: 0)
    }

    public init(width: Int, height: Int, depth: Int) {
        self.width = width
        self.height = height
        self.depth = depth
    }
}

/// Size and alignment of a resource in a heap (device.heapBufferSizeAndAlign(length:options:)).
public struct MTLSizeAndAlign {
    public var size: Int
    public var align: Int

    public init() {
        self.init(size: 0, align: 0)
    }

    public init(size: Int, align: Int) {
        self.size = size
        self.align = align
    }
}

public enum MTLStorageMode: UInt {
    case shared = 0
    case managed = 1
    case `private` = 2
    case memoryless = 3
}

public enum MTLCPUCacheMode: UInt {
    case defaultCache = 0
    case writeCombined = 1
}

public enum MTLHazardTrackingMode: UInt {
    case `default` = 0
    case untracked = 1
    case tracked = 2
}

public enum MTLHeapType: Int {
    case automatic = 0
    case placement = 1
    case sparse = 2
}

public enum MTLPurgeableState: UInt {
    case keepCurrent = 1
    case nonVolatile = 2
    case volatile = 3
    case empty = 4
}

public struct MTLResourceOptions: OptionSet {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    public static let cpuCacheModeWriteCombined = MTLResourceOptions(rawValue: 1)
    public static let storageModeShared = MTLResourceOptions([])
    public static let storageModeManaged = MTLResourceOptions(rawValue: 1 << 4)
    public static let storageModePrivate = MTLResourceOptions(rawValue: 2 << 4)
    public static let storageModeMemoryless = MTLResourceOptions(rawValue: 3 << 4)
    public static let hazardTrackingModeUntracked = MTLResourceOptions(rawValue: 1 << 8)
    public static let hazardTrackingModeTracked = MTLResourceOptions(rawValue: 2 << 8)

    var storageMode: MTLStorageMode { MTLStorageMode(rawValue: (rawValue >> 4) & 0xf) ?? .shared }
    var cpuCacheMode: MTLCPUCacheMode { MTLCPUCacheMode(rawValue: rawValue & 0xf) ?? .defaultCache }
    var hazardTrackingMode: MTLHazardTrackingMode { MTLHazardTrackingMode(rawValue: (rawValue >> 8) & 0x3) ?? .default }
}

public struct MTLBarrierScope: OptionSet {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    public static let buffers = MTLBarrierScope(rawValue: 1)
    public static let textures = MTLBarrierScope(rawValue: 2)
    public static let renderTargets = MTLBarrierScope(rawValue: 4)
}

public struct MTLResourceUsage: OptionSet {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    public static let read = MTLResourceUsage(rawValue: 1)
    public static let write = MTLResourceUsage(rawValue: 2)
    public static let sample = MTLResourceUsage(rawValue: 4)
}

public struct MTLPipelineOption: OptionSet {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    public static let argumentInfo = MTLPipelineOption(rawValue: 1)
    public static let bindingInfo = MTLPipelineOption(rawValue: 1)
    public static let bufferTypeInfo = MTLPipelineOption(rawValue: 2)
    public static let failOnBinaryArchiveMiss = MTLPipelineOption(rawValue: 4)
}

public struct MTLIndirectCommandType: OptionSet {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    public static let draw = MTLIndirectCommandType(rawValue: 1)
    public static let drawIndexed = MTLIndirectCommandType(rawValue: 2)
    public static let drawPatches = MTLIndirectCommandType(rawValue: 4)
    public static let drawIndexedPatches = MTLIndirectCommandType(rawValue: 8)
    public static let concurrentDispatch = MTLIndirectCommandType(rawValue: 32)
    public static let concurrentDispatchThreads = MTLIndirectCommandType(rawValue: 64)
}

public enum MTLCommandBufferStatus: UInt {
    case notEnqueued = 0
    case enqueued = 1
    case committed = 2
    case scheduled = 3
    case completed = 4
    case error = 5
}

public enum MTLDispatchType: UInt {
    case serial = 0
    case concurrent = 1
}

public enum MTLFunctionType: UInt {
    case vertex = 1
    case fragment = 2
    case kernel = 3
}

public enum MTLMathMode: Int {
    case safe = 0
    case relaxed = 1
    case fast = 2
}

public enum MTLLanguageVersion: UInt {
    case version1_1 = 65537
    case version1_2 = 65538
    case version2_0 = 131072
    case version2_1 = 131073
    case version2_2 = 131074
    case version2_3 = 131075
    case version2_4 = 131076
    case version3_0 = 196608
    case version3_1 = 196609
    case version3_2 = 196610
}

public enum MTLGPUFamily: Int {
    case apple1 = 1001, apple2, apple3, apple4, apple5, apple6, apple7, apple8, apple9, apple10
    case mac1 = 2001, mac2 = 2002
    case common1 = 3001, common2, common3
    case macCatalyst1 = 4001, macCatalyst2
    case metal3 = 5001, metal4 = 5002
}

/// Data types of function constants and arguments (the scalar and vector cases kernels use here).
public enum MTLDataType: UInt {
    case none = 0
    case `struct` = 1
    case array = 2
    case float = 3, float2, float3, float4
    case half = 16, half2, half3, half4
    case int = 29, int2, int3, int4
    case uint = 33, uint2, uint3, uint4
    case short = 37, short2, short3, short4
    case ushort = 41, ushort2, ushort3, ushort4
    case char = 45, char2, char3, char4
    case uchar = 49, uchar2, uchar3, uchar4
    case bool = 53, bool2, bool3, bool4
    case pointer = 60
    case long = 81, long2, long3, long4
    case ulong = 85, ulong2, ulong3, ulong4
    case bfloat = 121, bfloat2, bfloat3, bfloat4

    /// Bytes one value occupies when read from memory (3-component vectors are packed).
    var packedSize: Int? {
        let scalars: [(MTLDataType, Int)] = [
            (.float, 4), (.half, 2), (.int, 4), (.uint, 4), (.short, 2), (.ushort, 2), (.char, 1), (.uchar, 1),
            (.bool, 1), (.long, 8), (.ulong, 8), (.bfloat, 2),
        ]
        for (base, size) in scalars where rawValue >= base.rawValue && rawValue < base.rawValue + 4 {
            return size * Int(rawValue - base.rawValue + 1)
        }
        return nil
    }
}

#endif
