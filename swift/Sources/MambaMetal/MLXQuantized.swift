// MLX's quantized checkpoints as mlx-lm writes them (mlx-community's 4- and 8-bit models).
//
// config.json carries "quantization": {"group_size": G, "bits": B, "mode": "affine", "<module path>":
// {...} | false, …} (newer mlx-lm copies it to "quantization_config"). A Linear or Embedding module is
// quantized when `<module>.scales` exists (mlx-lm skips modules whose input width G does not divide):
//   <module>.weight  U32 (rows, cols · B / 32)   codes, little-endian words, first element lowest bits
//   <module>.scales  F16/BF16/F32 (rows, cols / G)
//   <module>.biases  same dtype and shape         value = scales · q + biases
// The codes are used in place: on a little-endian machine the words' bytes are already the in-memory
// form's byte order (docs/quantization.md), for 4 and 8 bits alike.

/// config.json's "quantization" object.
struct MLXQuantization {
    let global: QuantSpec
    /// Per-module overrides: a spec, or nil when the module is left unquantized.
    let modules: [String: QuantSpec?]
    let file: String

    static func parse(_ json: JSON?, file: String) throws -> MLXQuantization? {
        guard let json, json != .null else { return nil }
        guard let o = json.object else { throw MambaFailure.format("\(file): \"quantization\" must be an object") }
        let global = try spec(json, default: nil, what: "quantization", file: file)
        var modules: [String: QuantSpec?] = [:]
        for (key, v) in o where !["group_size", "bits", "mode"].contains(key) {
            switch v {
            case .bool(let b): modules[key] = b ? global : .some(nil)
            case .object: modules[key] = try spec(v, default: global, what: "quantization.\(key)", file: file)
            default: break // other fields (e.g. quantization_method) are not per-module settings
            }
        }
        return MLXQuantization(global: global, modules: modules, file: file)
    }

    private static func spec(_ j: JSON, default d: QuantSpec?, what: String, file: String) throws -> QuantSpec {
        if let mode = j["mode"], mode != .null, mode.string != "affine" {
            throw MambaFailure.unsupported(
                "\(file): \(what).mode \(mode.string.map { "\"\($0)\"" } ?? "\(mode)") is not supported (only \"affine\")")
        }
        guard let bits = j["bits"]?.int ?? d?.bits, let g = j["group_size"]?.int ?? d?.groupSize else {
            throw MambaFailure.format("\(file): \(what) needs integer \"bits\" and \"group_size\"")
        }
        guard bits == 4 || bits == 8 else {
            throw MambaFailure.unsupported("\(file): \(what).bits = \(bits) is not supported (4 and 8 are)")
        }
        guard [32, 64, 128].contains(g) else {
            throw MambaFailure.unsupported("\(file): \(what).group_size = \(g) is not supported (32, 64 and 128 are)")
        }
        return QuantSpec(bits: bits, groupSize: g)
    }

    /// The spec of `module`, or nil when the config leaves it unquantized.
    func spec(for module: String) throws -> QuantSpec? {
        if let override = modules[module] { return override }
        return global
    }
}

enum MLXQuantized {
    /// The quantized (rows, cols) matrix of `module`, its shapes and dtypes checked.
    static func matrix(_ ck: Checkpoint, module: String, rows: Int, cols: Int, spec: QuantSpec,
                       vocabCheck: Bool) throws -> WeightMatrix {
        let file = ck.fileOf(module + ".scales")
        let desc = "\(spec.bits)-bit, group size \(spec.groupSize)"
        guard let w = ck.packed[module + ".weight"] else {
            if let t = ck.tensors[module + ".weight"] {
                throw MambaFailure.format(
                    "\(file): tensor \(module).weight is \(t.dtype.rawValue) but \(module).scales says it is quantized (expected U32)")
            }
            throw MambaFailure.format("missing tensor \(module).weight in \(ck.directory) (quantized: \(module).scales exists)")
        }
        guard let s = ck.tensors[module + ".scales"], let b = ck.tensors[module + ".biases"] else {
            throw MambaFailure.format("missing tensor \(module).biases in \(ck.directory) (quantized: \(module).scales exists)")
        }
        guard cols % spec.groupSize == 0 else {
            throw MambaFailure.shape(
                "\(file): tensor \(module) has \(cols) columns, not a multiple of the group size \(spec.groupSize)")
        }
        let packedCols = cols * spec.bits / 32
        if w.shape != [rows, packedCols] {
            if vocabCheck, w.shape.count == 2, w.shape[1] == packedCols {
                throw MambaFailure.shape(
                    "config vocab_size gives \(rows) rows but tensor \(module).weight has shape \(w.shape): the config disagrees with the weights")
            }
            throw MambaFailure.shape(
                "\(file): tensor \(module).weight has shape \(w.shape), but a (\(rows), \(cols)) matrix, \(desc), packs into [\(rows), \(packedCols)] uint32")
        }
        let groupShape = [rows, cols / spec.groupSize]
        for t in [s, b] where t.shape != groupShape {
            throw MambaFailure.shape(
                "\(file): tensor \(t.name) has shape \(t.shape), but a (\(rows), \(cols)) matrix, \(desc), has \(groupShape) groups")
        }
        guard s.dtype == b.dtype else {
            throw MambaFailure.format("\(file): \(s.name) is \(s.dtype.rawValue) but \(b.name) is \(b.dtype.rawValue)")
        }
        // f16 and f32 scales are read in place (when aligned); bf16 widens exactly to f32.
        var owners: [AnyObject] = [w.file]
        func place(_ t: TensorView) -> (UnsafeRawPointer, WeightDType) {
            let n = t.elementCount
            if t.dtype == .bf16 {
                let buf = OwnedBytes(count: 4 * n)
                let p = buf.pointer.assumingMemoryBound(to: UInt32.self)
                for i in 0..<n { p[i] = UInt32(t.data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16 }
                owners.append(buf)
                return (UnsafeRawPointer(buf.pointer), .f32)
            }
            if Int(bitPattern: t.data) % t.dtype.byteSize == 0 { return (t.data, WeightDType(t.dtype)) }
            let buf = OwnedBytes(count: n * t.dtype.byteSize)
            buf.pointer.copyMemory(from: t.data, byteCount: buf.count)
            owners.append(buf)
            return (UnsafeRawPointer(buf.pointer), WeightDType(t.dtype))
        }
        let (scales, scaleType) = place(s)
        let (biases, _) = place(b)
        var codes = w.data
        if Int(bitPattern: codes) % 4 != 0 { // codes are bytes, but keep the kernels' loads aligned
            let buf = OwnedBytes(count: rows * spec.codeBytes(cols: cols))
            buf.pointer.copyMemory(from: codes, byteCount: buf.count)
            owners.append(buf)
            codes = UnsafeRawPointer(buf.pointer)
        }
        owners.append(s.file)
        owners.append(b.file)
        return WeightMatrix(name: module + ".weight", rows: rows, cols: cols, spec: spec, scaleDType: scaleType,
                            codes: codes, scales: scales, biases: biases, owners: owners,
                            source: "MLX q\(spec.bits) g\(spec.groupSize), \(s.dtype.rawValue.lowercased()) scales")
    }
}
