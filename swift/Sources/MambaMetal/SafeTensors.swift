// safetensors files: an 8-byte little-endian header length, a JSON header, then the tensor bytes.
// https://github.com/huggingface/safetensors (format description). Files are memory-mapped; tensors
// are views into the mapping.

/// The dtypes the safetensors format defines; only F32, F16 and BF16 can be used as weights.
private let knownSafetensorsDTypes: Set<String> = [
    "BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64",
]

enum SafeTensors {
    /// Reads every tensor of one file. Tensors of dtypes the engine cannot use are returned as
    /// `unusable` so that asking for one of them names the dtype.
    /// U32 tensors (MLX's packed quantized weights) come back as `packed`.
    static func read(path: String) throws -> (tensors: [TensorView], unusable: [String: String], packed: [PackedView]) {
        try read(file: MappedFile(path: path))
    }

    static func read(file: MappedFile) throws -> (tensors: [TensorView], unusable: [String: String], packed: [PackedView]) {
        let path = file.path
        guard file.size >= 8, let lenBytes = file.bytes(0, 8) else {
            throw MambaFailure.format("\(path): truncated safetensors file (\(file.size) bytes, no header)")
        }
        var headerLen: UInt64 = 0
        for k in 0..<8 { headerLen |= UInt64(lenBytes[k]) << (8 * UInt64(k)) }
        guard headerLen <= UInt64(file.size - 8), headerLen < 100_000_000 else {
            throw MambaFailure.format(
                "\(path): safetensors header length \(headerLen) is beyond the file's \(file.size) bytes")
        }
        let dataStart = 8 + Int(headerLen)
        let header = try JSON.parse(file.bytes(8, Int(headerLen))!, context: "\(path) (safetensors header)")
        guard let entries = header.object else { throw MambaFailure.format("\(path): header is not a JSON object") }

        var tensors: [TensorView] = []
        var unusable: [String: String] = [:]
        var packed: [PackedView] = []
        var ranges: [(begin: Int, end: Int, name: String)] = []
        let dataSize = file.size - dataStart
        for (name, e) in entries where name != "__metadata__" {
            guard let dt = e["dtype"]?.string, let shapeJ = e["shape"]?.array, let offs = e["data_offsets"]?.array,
                  offs.count == 2, let begin = offs[0].int, let end = offs[1].int
            else { throw MambaFailure.format("\(path): tensor \(name) lacks dtype, shape or data_offsets") }
            guard knownSafetensorsDTypes.contains(dt) else {
                throw MambaFailure.format("\(path): tensor \(name) has unknown dtype \"\(dt)\"")
            }
            var shape: [Int] = []
            var count = 1
            for s in shapeJ {
                guard let d = s.int, d >= 0, d < 1 << 40 else {
                    throw MambaFailure.format("\(path): tensor \(name) has an invalid shape")
                }
                shape.append(d)
                let (product, overflow) = count.multipliedReportingOverflow(by: d)
                if overflow || product > 1 << 40 { throw MambaFailure.format("\(path): tensor \(name) is too large") }
                count = product
            }
            guard begin >= 0, end >= begin, end <= dataSize else {
                throw MambaFailure.format(
                    "\(path): tensor \(name) data_offsets [\(begin), \(end)] are outside the data (\(dataSize) bytes)")
            }
            ranges.append((begin, end, name))
            if dt == "U32" {
                guard end - begin == count * 4 else {
                    throw MambaFailure.format(
                        "\(path): tensor \(name) has \(end - begin) bytes but shape \(shape) of U32 needs \(count * 4)")
                }
                packed.append(PackedView(name: name, shape: shape, data: file.base + dataStart + begin, file: file))
                continue
            }
            guard let dtype = DType(rawValue: dt) else {
                unusable[name] = dt
                continue
            }
            guard end - begin == count * dtype.byteSize else {
                throw MambaFailure.format(
                    "\(path): tensor \(name) has \(end - begin) bytes but shape \(shape) of \(dt) needs \(count * dtype.byteSize)")
            }
            tensors.append(TensorView(name: name, dtype: dtype, shape: shape, data: file.base + dataStart + begin, file: file))
        }
        ranges.sort { $0.begin < $1.begin }
        for k in ranges.indices.dropFirst() where ranges[k].begin < ranges[k - 1].end {
            throw MambaFailure.format(
                "\(path): tensors \(ranges[k - 1].name) and \(ranges[k].name) overlap (data_offsets)")
        }
        return (tensors, unusable, packed)
    }
}
