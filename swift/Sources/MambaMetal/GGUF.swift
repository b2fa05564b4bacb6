// GGUF files (ggml's single-file format; github.com/ggml-org/ggml docs/gguf.md):
//   "GGUF" | version u32 (2 or 3) | tensor_count u64 | kv_count u64
//   kv_count × (key: string, value_type u32, value)      string = u64 length + UTF-8 bytes
//   tensor_count × (name: string, n_dims u32, ne[n_dims] u64, type u32, offset u64)
//   padding to general.alignment (default 32), then the tensor data; offsets are relative to it.
// ne[0] is the innermost (contiguous) dimension: a torch (rows, cols) matrix has ne = [cols, rows].
//
// `GGUFFile.parse` reads from bytes alone (also the entry point for fuzzing): every count and length
// is checked against the bytes that remain before anything is allocated for it, so a header claiming
// 2^60 entries fails at once with a message, never with an allocation.

/// ggml tensor types by id (ggml.h `enum ggml_type`), named for messages.
let ggmlTypeNames: [UInt32: String] = [
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
    12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
    20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
    29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
]

func ggmlTypeName(_ t: UInt32) -> String { ggmlTypeNames[t] ?? "type \(t)" }

/// The ggml types this engine reads, with (elements, bytes) per block.
enum GGMLType: UInt32 {
    case f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    var block: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q4_0: return (32, 18)
        case .q8_0: return (32, 34)
        case .q4_K: return (256, 144)
        case .q5_K: return (256, 176)
        case .q6_K: return (256, 210)
        }
    }

    var name: String { ggmlTypeName(rawValue) }
}

struct GGUFTensorInfo {
    let name: String
    /// ggml order: ne[0] innermost.
    let ne: [Int]
    let type: UInt32
    /// Byte offset of the data from the start of the file.
    let offset: Int
    /// Byte size, when the type is one this engine reads.
    let byteCount: Int?

    var elementCount: Int { ne.reduce(1, *) }
    /// Rows of ne[0] elements (every outer dimension counted).
    var rows: Int { elementCount / ne[0] }
}

struct GGUFFile {
    enum Value: Equatable {
        case int(Int64), uint(UInt64), float(Double), bool(Bool), string(String)
        /// Arrays are skipped, not materialised: their element type and count are kept.
        case array(elementType: UInt32, count: Int)

        var integer: Int? {
            switch self {
            case .int(let v): return Int(exactly: v)
            case .uint(let v): return Int(exactly: v)
            default: return nil
            }
        }

        var number: Double? {
            switch self {
            case .float(let v): return v
            case .int(let v): return Double(v)
            case .uint(let v): return Double(v)
            default: return nil
            }
        }
    }

    let version: UInt32
    let metadata: [String: Value]
    let tensors: [GGUFTensorInfo]
    let dataOffset: Int

    static let magic: [UInt8] = [0x47, 0x47, 0x55, 0x46] // "GGUF"

    static func hasMagic(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 4 && Array(bytes[0..<4]) == magic
    }

    /// Parses the header, metadata and tensor table of a GGUF file held in `bytes`; `file` names it in errors.
    static func parse(_ bytes: UnsafeRawBufferPointer, file: String) throws -> GGUFFile {
        var r = GGUFReader(bytes: bytes, file: file)
        guard hasMagic(bytes) else { throw r.fail("not a GGUF file (no \"GGUF\" magic)") }
        r.at = 4
        let version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw r.fail(version == 1 ? "GGUF version 1 is not supported (2 and 3 are)"
                : "GGUF version \(version) is not supported (2 and 3 are; a big-endian file reads as a huge version)")
        }
        let tensorCount = try r.count("tensor_count", minBytesEach: 24)
        let kvCount = try r.count("kv_count", minBytesEach: 13)
        var metadata: [String: Value] = [:]
        for i in 0..<kvCount {
            let key = try r.string("key of metadata entry \(i)")
            let type = try r.u32("type of \(key)")
            let value = try r.value(type: type, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else { throw r.fail("metadata key \(key) appears twice") }
        }
        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard let n = a.integer, n > 0, n <= 1 << 16, n & (n - 1) == 0 else {
                throw r.fail("general.alignment must be a power of two up to 65536")
            }
            alignment = n
        }
        var infos: [(name: String, ne: [Int], type: UInt32, offset: UInt64)] = []
        var names = Set<String>()
        for i in 0..<tensorCount {
            let name = try r.string("name of tensor \(i)")
            let nDims = try r.u32("n_dims of tensor \(name)")
            guard (1...4).contains(nDims) else { throw r.fail("tensor \(name) has \(nDims) dimensions (1 to 4 allowed)") }
            var ne: [Int] = []
            var n = 1
            for _ in 0..<nDims {
                let d = try r.u64("dimension of tensor \(name)")
                guard d >= 1, d < 1 << 40 else { throw r.fail("tensor \(name) has dimension \(d)") }
                ne.append(Int(d))
                let (p, overflow) = n.multipliedReportingOverflow(by: Int(d))
                guard !overflow, p < 1 << 48 else { throw r.fail("tensor \(name) is too large (\(ne) elements)") }
                n = p
            }
            let type = try r.u32("type of tensor \(name)")
            let offset = try r.u64("offset of tensor \(name)")
            guard names.insert(name).inserted else { throw r.fail("tensor \(name) appears twice") }
            infos.append((name, ne, type, offset))
        }
        let dataOffset = (r.at + alignment - 1) / alignment * alignment
        guard dataOffset <= bytes.count else { throw r.fail("truncated: the tensor data would start at byte \(dataOffset)") }
        let dataSize = bytes.count - dataOffset
        var tensors: [GGUFTensorInfo] = []
        for t in infos {
            guard t.offset % UInt64(alignment) == 0 else {
                throw r.fail("tensor \(t.name) offset \(t.offset) is not a multiple of the alignment \(alignment)")
            }
            guard t.offset <= UInt64(dataSize) else {
                throw r.fail("tensor \(t.name) starts at data offset \(t.offset), beyond the data (\(dataSize) bytes): truncated file?")
            }
            var size: Int? = nil
            if let known = GGMLType(rawValue: t.type) {
                let (blk, bytesPerBlock) = known.block
                guard t.ne[0] % blk == 0 else {
                    throw r.fail("tensor \(t.name): ne[0] = \(t.ne[0]) is not a multiple of \(known.name)'s block of \(blk)")
                }
                size = t.ne.reduce(1, *) / blk * bytesPerBlock
                guard UInt64(size!) <= UInt64(dataSize) - t.offset else {
                    throw r.fail("tensor \(t.name) (\(known.name), ne \(t.ne)) needs \(size!) bytes at data offset \(t.offset), but the file has \(UInt64(dataSize) - t.offset) there: truncated file?")
                }
            }
            tensors.append(GGUFTensorInfo(name: t.name, ne: t.ne, type: t.type, offset: dataOffset + Int(t.offset),
                                          byteCount: size))
        }
        let sized = tensors.filter { $0.byteCount != nil }.sorted { $0.offset < $1.offset }
        for k in sized.indices.dropFirst() where sized[k].offset < sized[k - 1].offset + sized[k - 1].byteCount! {
            throw r.fail("tensors \(sized[k - 1].name) and \(sized[k].name) overlap")
        }
        return GGUFFile(version: version, metadata: metadata, tensors: tensors, dataOffset: dataOffset)
    }
}

/// Bounds-checked little-endian reads over the file's bytes.
private struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    let file: String
    var at = 0

    init(bytes: UnsafeRawBufferPointer, file: String) {
        self.bytes = bytes
        self.file = file
    }

    var remaining: Int { bytes.count - at }

    func fail(_ m: String) -> MambaFailure { MambaFailure.format("\(file): \(m)") }

    mutating func take(_ n: Int, _ what: String) throws -> Int {
        guard n >= 0, n <= remaining else {
            throw fail("truncated at byte \(at): \(what) needs \(n) bytes, \(remaining) remain")
        }
        defer { at += n }
        return at
    }

    mutating func u32(_ what: String) throws -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(4, what), as: UInt32.self))
    }

    mutating func u64(_ what: String) throws -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(8, what), as: UInt64.self))
    }

    /// A count of entries, each at least `minBytesEach` bytes long: capped by the bytes that remain.
    mutating func count(_ what: String, minBytesEach: Int) throws -> Int {
        let n = try u64(what)
        guard n <= UInt64(remaining / minBytesEach) else {
            throw fail("\(what) = \(n) cannot fit in the \(remaining) bytes that remain")
        }
        return Int(n)
    }

    mutating func string(_ what: String) throws -> String {
        let n = try u64("length of \(what)")
        guard n <= UInt64(remaining) else {
            throw fail("truncated at byte \(at): \(what) claims \(n) bytes, \(remaining) remain")
        }
        let start = try take(Int(n), what)
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<start + Int(n)]), as: UTF8.self)
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFFile.Value {
        switch type {
        case 0: return .uint(UInt64(bytes[try take(1, key)]))
        case 1: return .int(Int64(Int8(bitPattern: bytes[try take(1, key)])))
        case 2: return .uint(UInt64(bytes.loadUnaligned(fromByteOffset: try take(2, key), as: UInt16.self)))
        case 3: return .int(Int64(bytes.loadUnaligned(fromByteOffset: try take(2, key), as: Int16.self)))
        case 4: return .uint(UInt64(try u32(key)))
        case 5: return .int(Int64(Int32(bitPattern: try u32(key))))
        case 6: return .float(Double(Float(bitPattern: try u32(key))))
        case 7:
            let b = bytes[try take(1, key)]
            guard b <= 1 else { throw fail("\(key): bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 8: return .string(try string(key))
        case 9:
            guard depth < 4 else { throw fail("\(key): arrays nested deeper than 4") }
            let elementType = try u32("element type of \(key)")
            let minBytes: Int
            switch elementType {
            case 0, 1, 7: minBytes = 1
            case 2, 3: minBytes = 2
            case 4, 5, 6: minBytes = 4
            case 8, 10, 11, 12: minBytes = 8
            case 9: minBytes = 12
            default: throw fail("\(key): unknown array element type \(elementType)")
            }
            let n = try count("length of array \(key)", minBytesEach: minBytes)
            if elementType == 8 || elementType == 9 {
                for _ in 0..<n { _ = try value(type: elementType, key: key, depth: depth + 1) }
            } else {
                _ = try take(n * minBytes, key)
            }
            return .array(elementType: elementType, count: n)
        case 10: return .uint(try u64(key))
        case 11: return .int(Int64(bitPattern: try u64(key)))
        case 12: return .float(Double(bitPattern: try u64(key)))
        default: throw fail("metadata \(key) has unknown value type \(type)")
        }
    }
}
