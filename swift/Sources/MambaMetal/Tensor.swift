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

/// A read-only memory mapping of a whole file; unmapped when the last reference goes away.
final class MappedFile {
    let path: String
    let base: UnsafeRawPointer
    let size: Int

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw MambaFailure.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw MambaFailure.io("cannot stat \(path)") }
        let size = Int(st.st_size)
        if size == 0 { throw MambaFailure.format("\(path) is empty") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw MambaFailure.io("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        self.base = UnsafeRawPointer(p)
        self.size = size
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

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
