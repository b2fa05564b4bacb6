// The model's weights by role, each checked against the config before use. Large matrices stay in
// their stored dtype (views into the mapped files, or converted copies when a dtype is forced);
// small per-channel vectors are widened to float32.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a weight matrix is held in memory: float as stored, or quantized (docs/quantization.md).
enum WeightDType: String {
    case f32, f16, bf16, q8, q4

    init(_ d: DType) {
        switch d {
        case .f32: self = .f32
        case .f16: self = .f16
        case .bf16: self = .bf16
        }
    }

    var isQuantized: Bool { self == .q8 || self == .q4 }
    /// Bytes per element of a float dtype (scales use .f16 or .f32).
    var floatBytes: Int { self == .f32 ? 4 : 2 }
}

/// `p` itself when aligned to `alignment`, else an aligned copy of its `bytes` (returned to be kept alive).
/// A file may place a tensor at any offset (safetensors data offsets, a GGUF alignment of 1), and the
/// kernels load elements as their type: a misaligned load is undefined behaviour in C.
func inPlaceAligned(_ p: UnsafeRawPointer, bytes: Int, to alignment: Int) -> (UnsafeRawPointer, OwnedBytes?) {
    if Int(bitPattern: p) % alignment == 0 { return (p, nil) }
    let copy = OwnedBytes(count: bytes)
    copy.pointer.copyMemory(from: p, byteCount: bytes)
    return (UnsafeRawPointer(copy.pointer), copy)
}

/// What a loader should turn the large matrices into: nil keeps them as stored; q8/q4 quantize
/// float matrices with MLX's algorithm (groups of `groupSize` columns); f32/f16/bf16 convert, and
/// dequantize quantized ones.
struct MatrixTarget {
    var dtype: WeightDType? = nil
    var groupSize = 64
}

/// A weight matrix in the form the backends read: row-major (rows, cols), float or quantized.
final class WeightMatrix {
    let name: String
    let dtype: WeightDType
    let rows: Int, cols: Int
    /// f32/f16/bf16: rows · cols values. q8/q4: rows · cols · bits / 8 bytes of codes.
    let data: UnsafeRawPointer
    /// q8/q4: bits and group size; nil for float matrices.
    let quant: QuantSpec?
    /// q8/q4: .f16 or .f32, the type of `scales` and `biases`.
    let scaleDType: WeightDType
    let scales: UnsafeRawPointer? // (rows, cols / groupSize)
    let biases: UnsafeRawPointer? // (rows, cols / groupSize)
    /// What the file stored, for the engine info: "F16", "Q4_K", "MLX q4 g64, bf16 scales", …
    let source: String
    /// Keeps the memory alive: mapped files and owned copies.
    private let owners: [AnyObject]

    /// A float matrix: a view into a mapped file, or an owned copy when `target` is another float dtype.
    init(_ view: TensorView, rows: Int, cols: Int, as target: WeightDType?) {
        name = view.name
        self.rows = rows
        self.cols = cols
        source = view.dtype.rawValue
        quant = nil
        scaleDType = .f32
        scales = nil
        biases = nil
        let stored = WeightDType(view.dtype)
        let want = target ?? stored
        dtype = want
        if want == stored {
            let (p, copy) = inPlaceAligned(view.data, bytes: rows * cols * want.floatBytes, to: want.floatBytes)
            data = p
            owners = [view.file] + (copy.map { [$0] } ?? [])
            return
        }
        let n = rows * cols
        let buf = OwnedBytes(count: n * want.floatBytes)
        let f = view.toFloat32()
        switch want {
        case .f16:
            let p = buf.pointer.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { p[i] = floatToHalf(f[i]) }
        case .bf16:
            let p = buf.pointer.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { p[i] = floatToBF16(f[i]) }
        default: buf.pointer.copyMemory(from: f, byteCount: n * 4)
        }
        data = UnsafeRawPointer(buf.pointer)
        owners = [buf]
    }

    /// A quantized matrix over existing memory (codes, scales and biases kept alive by `owners`).
    init(name: String, rows: Int, cols: Int, spec: QuantSpec, scaleDType: WeightDType, codes: UnsafeRawPointer,
         scales: UnsafeRawPointer, biases: UnsafeRawPointer, owners: [AnyObject], source: String) {
        self.name = name
        self.rows = rows
        self.cols = cols
        dtype = spec.bits == 8 ? .q8 : .q4
        quant = spec
        self.scaleDType = scaleDType
        data = codes
        self.scales = scales
        self.biases = biases
        self.owners = owners
        self.source = source
    }

    /// A float matrix over existing memory.
    init(name: String, rows: Int, cols: Int, dtype: WeightDType, data: UnsafeRawPointer, owners: [AnyObject],
         source: String) {
        self.name = name
        self.rows = rows
        self.cols = cols
        self.dtype = dtype
        self.data = data
        self.owners = owners
        self.source = source
        quant = nil
        scaleDType = .f32
        scales = nil
        biases = nil
    }

    /// Bytes the backends read for the whole matrix (codes, scales and biases for quantized ones).
    var byteCount: Int {
        guard let q = quant else { return rows * cols * dtype.floatBytes }
        return rows * q.codeBytes(cols: cols) + 2 * rows * (cols / q.groupSize) * scaleDType.floatBytes
    }

    /// Returns the matrix's pages to the OS once a backend holds its own copy and nothing reads this one
    /// again (the CPU backend streams packed copies; mamba_cpu.h says which matrices it never reads
    /// after packing), so the weights are not resident twice. Pages of a mapped file are dropped from
    /// this process and would be read back from the file if touched; the pages of an owned copy
    /// (converted or quantized at load) are freed and read as zeros afterwards. Only whole pages inside
    /// the codes, scales and biases are released.
    func releaseResidentPages() {
        func drop(_ p: UnsafeRawPointer?, _ bytes: Int) {
            guard let p else { return }
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let first = (Int(bitPattern: p) + page - 1) / page * page, end = (Int(bitPattern: p) + bytes) / page * page
            guard end > first, let start = UnsafeMutableRawPointer(bitPattern: first) else { return }
            _ = madvise(start, end - first, Int32(MADV_DONTNEED))
        }
        guard let q = quant else { return drop(data, rows * cols * dtype.floatBytes) }
        drop(data, rows * q.codeBytes(cols: cols))
        drop(scales, rows * (cols / q.groupSize) * scaleDType.floatBytes)
        drop(biases, rows * (cols / q.groupSize) * scaleDType.floatBytes)
    }

    /// This matrix in `target`'s form: quantized with MLX's algorithm (when float and cols divide
    /// into groups), converted to another float dtype (dequantized if quantized), or itself.
    /// Throws for a matrix that cannot be quantized (a non-finite value).
    func converted(to target: MatrixTarget) throws -> WeightMatrix {
        guard let want = target.dtype, want != dtype else { return self }
        if want.isQuantized {
            guard quant == nil, cols % target.groupSize == 0 else { return self }
            let spec = QuantSpec(bits: want == .q8 ? 8 : 4, groupSize: target.groupSize)
            return try AffineQuantizer.quantize(rows: rows, cols: cols, spec: spec, name: name,
                                            source: "\(source), quantized at load") { r, out in
                self.row(r, into: out)
            }
        }
        let buf = OwnedBytes(count: rows * cols * want.floatBytes)
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: cols)
        defer { tmp.deallocate() }
        for r in 0..<rows {
            row(r, into: tmp)
            switch want {
            case .f16:
                let p = buf.pointer.assumingMemoryBound(to: UInt16.self) + r * cols
                for c in 0..<cols { p[c] = floatToHalf(tmp[c]) }
            case .bf16:
                let p = buf.pointer.assumingMemoryBound(to: UInt16.self) + r * cols
                for c in 0..<cols { p[c] = floatToBF16(tmp[c]) }
            default:
                (buf.pointer + 4 * r * cols).copyMemory(from: tmp, byteCount: 4 * cols)
            }
        }
        return WeightMatrix(name: name, rows: rows, cols: cols, dtype: want, data: UnsafeRawPointer(buf.pointer),
                            owners: [buf], source: quant == nil ? source : "\(source), dequantized at load")
    }

    /// For the engine info: what the file stored and what the backends read.
    var info: JSON {
        var o: [String: JSON] = [
            "name": .string(name), "stored": .string(source), "dtype": .string(dtype.rawValue),
            "rows": .number(Double(rows)), "cols": .number(Double(cols)), "bytes": .number(Double(byteCount)),
        ]
        if let q = quant {
            o["groupSize"] = .number(Double(q.groupSize))
            o["scaleDType"] = .string(scaleDType.rawValue)
        }
        return .object(o)
    }
}

/// One Mamba2 block's parameters.
struct LayerWeights {
    let norm: [Float]          // (d_model)
    let inProj: WeightMatrix   // (d_in_proj, d_model)
    let convWeight: [Float]    // (conv_dim, d_conv)
    let convBias: [Float]      // (conv_dim)
    let dtBias: [Float]        // (n_heads)
    let aLog: [Float]          // (n_heads)  as stored (GGUF stores A: A_log = log(-A))
    let A: [Float]             // (n_heads)  A = -exp(A_log)
    let D: [Float]             // (n_heads)
    let gatedNorm: [Float]     // (d_inner)
    let outProj: WeightMatrix  // (d_model, d_inner)
}

struct ModelWeights {
    let config: MambaConfig
    let embedding: WeightMatrix // (vocab, d_model)
    let lmHead: WeightMatrix    // (vocab, d_model); the embedding itself when tied
    let normF: [Float]          // (d_model)
    let layers: [LayerWeights]
    /// FNV-1a over the shapes and the small per-head parameters: tells apart state saved by another model.
    let fingerprint: UInt64

    /// The large matrices, embedding first, then in_proj and out_proj of each layer, then lm_head when untied.
    var matrices: [WeightMatrix] {
        [embedding] + layers.flatMap { [$0.inProj, $0.outProj] } + (lmHead === embedding ? [] : [lmHead])
    }

    /// The dtype of the large matrices (what decode streams), or "mixed".
    var matrixDType: String {
        let all = matrices.map(\.dtype)
        return all.allSatisfy { $0 == all[0] } ? all[0].rawValue : "mixed"
    }

    /// A quantized matrix, if any (the backends that cannot run them name it).
    var firstQuantized: WeightMatrix? { matrices.first { $0.quant != nil } }

    /// Bytes of weights a decode step reads (every matrix once; embedding rows are negligible).
    var decodeWeightBytes: Int {
        lmHead.byteCount + layers.reduce(0) { $0 + $1.inProj.byteCount + $1.outProj.byteCount }
            + 4 * (normF.count + layers.reduce(0) { $0 + $1.norm.count + $1.convWeight.count + $1.convBias.count
                + $1.gatedNorm.count + 3 * $1.A.count })
    }

    init(config: MambaConfig, embedding: WeightMatrix, lmHead: WeightMatrix, normF: [Float], layers: [LayerWeights],
         fingerprint: UInt64) {
        self.config = config
        self.embedding = embedding
        self.lmHead = lmHead
        self.normF = normF
        self.layers = layers
        self.fingerprint = fingerprint
    }

    init(_ ck: Checkpoint, target: MatrixTarget) throws {
        let c = ck.config
        config = c
        var lookup = TensorLookup(ck)
        embedding = try lookup.matrix(["backbone.embeddings", "backbone.embedding"], rows: c.vocabSize, cols: c.dModel,
                                      vocabCheck: true).converted(to: target)
        normF = try lookup.tensor(["backbone.norm_f.weight"], [c.dModel]).toFloat32()
        if c.tieEmbeddings {
            lmHead = embedding
        } else {
            lmHead = try lookup.matrix(["lm_head"], rows: c.vocabSize, cols: c.dModel, vocabCheck: true)
                .converted(to: target)
        }
        var layers: [LayerWeights] = []
        var hash = Fingerprint()
        hash.add([c.dModel, c.nLayer, c.vocabSize, c.dState, c.dConv, c.expand, c.headDim, c.nGroups])
        for i in 0..<c.nLayer {
            let p = "backbone.layers.\(i)."
            // mamba_ssm/transformers store conv1d as (channels, 1, d_conv), mlx-lm as (channels, d_conv, 1):
            // the same bytes as (channels, d_conv).
            let convW = try lookup.tensor([p + "mixer.conv1d.weight"], [c.convDim, 1, c.dConv],
                                          alternatives: [[c.convDim, c.dConv], [c.convDim, c.dConv, 1]])
            let aLog = try lookup.tensor([p + "mixer.A_log"], [c.nHeads]).toFloat32()
            let dtBias = try lookup.tensor([p + "mixer.dt_bias"], [c.nHeads]).toFloat32()
            let d = try lookup.tensor([p + "mixer.D"], [c.nHeads]).toFloat32()
            hash.add(aLog + dtBias + d)
            layers.append(LayerWeights(
                norm: try lookup.tensor([p + "norm.weight"], [c.dModel]).toFloat32(),
                inProj: try lookup.matrix([p + "mixer.in_proj"], rows: c.dInProj, cols: c.dModel).converted(to: target),
                convWeight: convW.toFloat32(),
                convBias: try lookup.tensor([p + "mixer.conv1d.bias"], [c.convDim]).toFloat32(),
                dtBias: dtBias, aLog: aLog, A: aLog.map { -expf($0) }, D: d,
                gatedNorm: try lookup.tensor([p + "mixer.norm.weight"], [c.dInner]).toFloat32(),
                outProj: try lookup.matrix([p + "mixer.out_proj"], rows: c.dModel, cols: c.dInner).converted(to: target)))
        }
        self.layers = layers
        fingerprint = hash.value
        try lookup.checkAllQuantizedUsed()
    }
}

/// Finds tensors under either naming scheme and checks their shapes, with messages that name the
/// tensor, the file set and what the config implies.
private struct TensorLookup {
    let ck: Checkpoint
    /// Modules read as quantized matrices (every `.scales` tensor must belong to one).
    private var quantizedModules = Set<String>()

    init(_ ck: Checkpoint) { self.ck = ck }

    mutating func tensor(_ names: [String], _ shape: [Int], alternatives: [[Int]] = [],
                         vocabCheck: Bool = false) throws -> TensorView {
        guard let name = names.first(where: { ck.tensors[$0] != nil }) else {
            if let bad = names.first(where: { ck.unusable[$0] != nil }) {
                throw MambaFailure.unsupported(
                    "tensor \(bad) in \(ck.directory) has dtype \(ck.unusable[bad]!); only F32, F16 and BF16 are supported")
            }
            if let packed = names.first(where: { ck.packed[$0] != nil }) {
                throw MambaFailure.unsupported(
                    "tensor \(packed) in \(ck.directory) is packed (U32); only linear and embedding weights can be quantized")
            }
            throw MambaFailure.format("missing tensor \(names.joined(separator: " or ")) in \(ck.directory)")
        }
        let t = ck.tensors[name]!
        if t.shape == shape || alternatives.contains(t.shape) { return t }
        if vocabCheck, t.shape.count == 2, t.shape[1] == shape[1] {
            throw MambaFailure.shape(
                "config vocab_size gives \(shape[0]) rows but tensor \(name) has shape \(t.shape): the config disagrees with the weights")
        }
        throw MambaFailure.shape(
            "tensor \(name) has shape \(t.shape), but config.json implies \(shape) (d_model \(ck.config.dModel), d_state \(ck.config.dState), ngroups \(ck.config.nGroups), headdim \(ck.config.headDim))")
    }

    /// The (rows, cols) matrix of a Linear or Embedding module: `<module>.weight` as stored, or MLX's
    /// quantized triple when `<module>.scales` exists.
    mutating func matrix(_ modules: [String], rows: Int, cols: Int, vocabCheck: Bool = false) throws -> WeightMatrix {
        guard let module = modules.first(where: { ck.tensors[$0 + ".scales"] != nil }) else {
            if let packed = modules.first(where: { ck.packed[$0 + ".weight"] != nil }) {
                throw MambaFailure.format(
                    "tensor \(packed).weight in \(ck.directory) is packed (U32) but \(packed).scales is missing")
            }
            return WeightMatrix(try tensor(modules.map { $0 + ".weight" }, [rows, cols], vocabCheck: vocabCheck),
                                rows: rows, cols: cols, as: nil)
        }
        quantizedModules.insert(module)
        let file = ck.fileOf(module + ".scales")
        guard let q = ck.quantization else {
            throw MambaFailure.format(
                "\(file): tensor \(module).scales exists but \(ck.directory)/config.json has no \"quantization\"")
        }
        guard let spec = try q.spec(for: module) else {
            throw MambaFailure.format(
                "\(file): tensor \(module).scales exists but config.json leaves \(module) unquantized")
        }
        return try MLXQuantized.matrix(ck, module: module, rows: rows, cols: cols, spec: spec, vocabCheck: vocabCheck)
    }

    /// Every `.scales` tensor belongs to a module the model reads as a quantized matrix.
    func checkAllQuantizedUsed() throws {
        for name in ck.tensors.keys.sorted() where name.hasSuffix(".scales") {
            let module = String(name.dropLast(".scales".count))
            if !quantizedModules.contains(module) {
                throw MambaFailure.unsupported(
                    "\(ck.fileOf(name)): tensor \(name): only in_proj, out_proj, the embedding and lm_head can be quantized")
            }
        }
    }
}

struct Fingerprint {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func byte(_ b: UInt8) {
        value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3
    }

    mutating func add(_ ints: [Int]) {
        for i in ints { for k in 0..<8 { byte(UInt8(truncatingIfNeeded: i >> (8 * k))) } }
    }

    mutating func add(_ floats: [Float]) {
        for f in floats { for k in 0..<4 { byte(UInt8(truncatingIfNeeded: f.bitPattern >> (8 * UInt32(k)))) } }
    }
}
