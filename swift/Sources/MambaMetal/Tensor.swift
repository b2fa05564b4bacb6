// Raw tensors: typed views into memory-mapped checkpoint files.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types the engine reads from checkpoints.
enum DType: String {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"

    var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// A read-only memory mapping of a whole file; unmapped when the last reference goes away. Parsers
/// read files only through this, so `init(bytes:name:)` runs the same code on bytes held in memory
/// (the fuzz targets, FuzzTargets.swift).
final class MappedFile {
    let path: String
    let base: UnsafeRawPointer
    let size: Int
    /// True for `init(bytes:name:)`: `base` is an owned heap copy, not a mapping.
    private let owned: Bool

    init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a FIFO (or a device) in a model directory must not block the open; it is refused below.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        if fd < 0 { throw MambaFailure.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw MambaFailure.io("cannot stat \(path)") }
        if (st.st_mode & S_IFMT) != S_IFREG { throw MambaFailure.io("\(path) is not a regular file") }
        let size = Int(st.st_size)
        if size == 0 { throw MambaFailure.format("\(path) is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw MambaFailure.io("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        self.base = UnsafeRawPointer(p)
        self.size = size
        self.owned = false
    }

    /// A copy of `bytes` that reads as the file `name`, exactly `bytes.count` long: a read past its end
    /// is a heap overflow that AddressSanitizer reports, where a mapping would hide it in the last page.
    init(bytes: UnsafeRawBufferPointer, name: String) throws {
        if bytes.isEmpty { throw MambaFailure.format("\(name) is empty") }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
        copy.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        self.path = name
        self.base = UnsafeRawPointer(copy)
        self.size = bytes.count
        self.owned = true
    }

    deinit {
        if owned { UnsafeMutableRawPointer(mutating: base).deallocate() } else {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        }
    }

    /// Bytes [offset, offset + count) as a buffer; nil when the range leaves the file.
    func bytes(_ offset: Int, _ count: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else { return nil }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }
}

/// A tensor stored in a checkpoint: dtype, shape (row-major, contiguous) and its bytes.
/// `file` keeps the mapping alive as long as the view exists.
struct TensorView {
    let name: String
    let dtype: DType
    let shape: [Int]
    let data: UnsafeRawPointer
    let file: MappedFile

    var elementCount: Int { shape.reduce(1, *) }
    var byteCount: Int { elementCount * dtype.byteSize }
}

/// A U32 tensor: MLX's packed quantized codes (little-endian words, first element in the lowest bits).
struct PackedView {
    let name: String
    let shape: [Int]
    let data: UnsafeRawPointer
    let file: MappedFile
}

extension TensorView {
    /// The values as float32 (f16 and bf16 widened exactly).
    func toFloat32() -> [Float] {
        let n = elementCount
        switch dtype {
        case .f32:
            return Array(UnsafeBufferPointer(start: data.assumingMemoryBound(to: Float.self), count: n))
        case .f16:
            let p = data.assumingMemoryBound(to: UInt16.self)
            return (0..<n).map { halfToFloat(p[$0]) }
        case .bf16:
            let p = data.assumingMemoryBound(to: UInt16.self)
            return (0..<n).map { Float(bitPattern: UInt32(p[$0]) << 16) }
        }
    }
}

/// IEEE half → float, written out so it works where Float16 is unavailable (macOS on x86-64).
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    var exp = Int32((h >> 10) & 0x1F)
    var mant = UInt32(h & 0x3FF)
    if exp == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
    if exp == 0 {
        if mant == 0 { return Float(bitPattern: sign) }
        exp = 1
        while mant & 0x400 == 0 {
            mant <<= 1
            exp -= 1
        }
        mant &= 0x3FF
    }
    return Float(bitPattern: sign | UInt32(exp + 112) << 23 | (mant << 13))
}

/// float → IEEE half, round to nearest even.
func floatToHalf(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    let sign = UInt16((x >> 16) & 0x8000)
    let exp = Int32((x >> 23) & 0xFF) - 127 + 15
    var mant = x & 0x7F_FFFF
    if (x >> 23) & 0xFF == 0xFF { return sign | 0x7C00 | (mant != 0 ? 0x200 : 0) }
    if exp >= 0x1F { return sign | 0x7C00 }
    if exp <= 0 {
        if exp < -10 { return sign }
        mant |= 0x80_0000
        let shift = UInt32(14 - exp)
        var h = mant >> shift
        let rem = mant & ((1 << shift) - 1), half = UInt32(1) << (shift - 1)
        if rem > half || (rem == half && h & 1 == 1) { h += 1 }
        return sign | UInt16(h)
    }
    var h = UInt32(exp) << 10 | (mant >> 13)
    let rem = mant & 0x1FFF
    if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) { h += 1 }
    return sign | UInt16(h)
}

/// float → bfloat16, round to nearest even.
func floatToBF16(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    if f.isNaN { return UInt16(x >> 16) | 0x40 }
    let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
    return UInt16(rounded >> 16)
}

/// Whole-file reads for small files (config.json, index files).
func readTextFile(_ path: String) throws -> MappedFile { try MappedFile(path: path) }

func fileExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0
}

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
