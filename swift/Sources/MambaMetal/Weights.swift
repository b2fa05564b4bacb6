// The model's weights by role, each checked against the config before use. Large matrices stay in
// their stored dtype (views into the mapped files, or converted copies when a dtype is forced);
// small per-channel vectors are widened to float32.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A weight matrix in the dtype the backends will read: row-major (rows, cols).
final class WeightMatrix {
    let name: String
    let dtype: DType
    let rows: Int, cols: Int
    let data: UnsafeRawPointer
    /// Keeps the memory alive: the mapped file, or an owned converted copy.
    private let owner: AnyObject?
    private let owned: UnsafeMutableRawPointer?

    init(_ view: TensorView, rows: Int, cols: Int, as target: DType?) {
        name = view.name
        self.rows = rows
        self.cols = cols
        let want = target ?? view.dtype
        dtype = want
        if want == view.dtype {
            data = view.data
            owner = view.file
            owned = nil
            return
        }
        let n = rows * cols
        let buf = UnsafeMutableRawPointer.allocate(byteCount: n * want.byteSize, alignment: 64)
        let f = view.toFloat32()
        switch want {
        case .f32: buf.copyMemory(from: f, byteCount: n * 4)
        case .f16:
            let p = buf.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { p[i] = floatToHalf(f[i]) }
        case .bf16:
            let p = buf.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { p[i] = floatToBF16(f[i]) }
        }
        data = UnsafeRawPointer(buf)
        owner = nil
        owned = buf
    }

    deinit { owned?.deallocate() }

    var byteCount: Int { rows * cols * dtype.byteSize }

    /// Returns the matrix's pages to the OS once a backend holds its own copy and nothing reads this one
    /// again (the CPU backend streams packed copies; mamba_cpu.h says which matrices it never reads
    /// after packing), so the weights are not resident twice. Pages of a mapped file are dropped from
    /// this process and would be read back from the file if touched; the pages of an owned converted
    /// copy are freed and read as zeros afterwards. Only whole pages inside the matrix are released.
    func releaseResidentPages() {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: data) + page - 1) / page * page
        let end = (Int(bitPattern: data) + byteCount) / page * page
        guard end > first, let start = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(start, end - first, Int32(MADV_DONTNEED))
    }
}

/// One Mamba2 block's parameters.
struct LayerWeights {
    let norm: [Float]          // (d_model)
    let inProj: WeightMatrix   // (d_in_proj, d_model)
    let convWeight: [Float]    // (conv_dim, d_conv)
    let convBias: [Float]      // (conv_dim)
    let dtBias: [Float]        // (n_heads)
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

    /// The dtype of the large matrices (what decode streams), or "mixed".
    var matrixDType: String {
        let all = [embedding.dtype, lmHead.dtype] + layers.flatMap { [$0.inProj.dtype, $0.outProj.dtype] }
        let first = all[0]
        return all.allSatisfy { $0 == first } ? first.rawValue.lowercased() : "mixed"
    }

    /// Bytes of weights a decode step reads (every matrix once; embedding rows are negligible).
    var decodeWeightBytes: Int {
        lmHead.byteCount + layers.reduce(0) { $0 + $1.inProj.byteCount + $1.outProj.byteCount }
            + 4 * (normF.count + layers.reduce(0) { $0 + $1.norm.count + $1.convWeight.count + $1.convBias.count
                + $1.gatedNorm.count + 3 * $1.A.count })
    }

    init(_ ck: Checkpoint, dtype: DType?) throws {
        let c = ck.config
        config = c
        var lookup = TensorLookup(ck)
        embedding = WeightMatrix(
            try lookup.tensor(["backbone.embeddings.weight", "backbone.embedding.weight"], [c.vocabSize, c.dModel],
                              vocabCheck: true),
            rows: c.vocabSize, cols: c.dModel, as: dtype)
        normF = try lookup.tensor(["backbone.norm_f.weight"], [c.dModel]).toFloat32()
        if c.tieEmbeddings {
            lmHead = embedding
        } else {
            lmHead = WeightMatrix(try lookup.tensor(["lm_head.weight"], [c.vocabSize, c.dModel], vocabCheck: true),
                                  rows: c.vocabSize, cols: c.dModel, as: dtype)
        }
        var layers: [LayerWeights] = []
        var hash = Fingerprint()
        hash.add([c.dModel, c.nLayer, c.vocabSize, c.dState, c.dConv, c.expand, c.headDim, c.nGroups])
        for i in 0..<c.nLayer {
            let p = "backbone.layers.\(i)."
            let convW = try lookup.tensor([p + "mixer.conv1d.weight"], [c.convDim, 1, c.dConv], alternative: [c.convDim, c.dConv])
            let aLog = try lookup.tensor([p + "mixer.A_log"], [c.nHeads]).toFloat32()
            let dtBias = try lookup.tensor([p + "mixer.dt_bias"], [c.nHeads]).toFloat32()
            let d = try lookup.tensor([p + "mixer.D"], [c.nHeads]).toFloat32()
            hash.add(aLog + dtBias + d)
            layers.append(LayerWeights(
                norm: try lookup.tensor([p + "norm.weight"], [c.dModel]).toFloat32(),
                inProj: WeightMatrix(try lookup.tensor([p + "mixer.in_proj.weight"], [c.dInProj, c.dModel]),
                                     rows: c.dInProj, cols: c.dModel, as: dtype),
                convWeight: convW.toFloat32(),
                convBias: try lookup.tensor([p + "mixer.conv1d.bias"], [c.convDim]).toFloat32(),
                dtBias: dtBias, A: aLog.map { -expf($0) }, D: d,
                gatedNorm: try lookup.tensor([p + "mixer.norm.weight"], [c.dInner]).toFloat32(),
                outProj: WeightMatrix(try lookup.tensor([p + "mixer.out_proj.weight"], [c.dModel, c.dInner]),
                                      rows: c.dModel, cols: c.dInner, as: dtype)))
        }
        self.layers = layers
        fingerprint = hash.value
    }
}

/// Finds tensors under either naming scheme and checks their shapes, with messages that name the
/// tensor, the file set and what the config implies.
private struct TensorLookup {
    let ck: Checkpoint

    init(_ ck: Checkpoint) { self.ck = ck }

    mutating func tensor(_ names: [String], _ shape: [Int], alternative: [Int]? = nil,
                         vocabCheck: Bool = false) throws -> TensorView {
        guard let name = names.first(where: { ck.tensors[$0] != nil }) else {
            if let bad = names.first(where: { ck.unusable[$0] != nil }) {
                throw MambaFailure.unsupported(
                    "tensor \(bad) in \(ck.directory) has dtype \(ck.unusable[bad]!); only F32, F16 and BF16 are supported")
            }
            throw MambaFailure.format("missing tensor \(names.joined(separator: " or ")) in \(ck.directory)")
        }
        let t = ck.tensors[name]!
        if t.shape == shape || (alternative != nil && t.shape == alternative!) { return t }
        if vocabCheck, t.shape.count == 2, t.shape[1] == shape[1] {
            throw MambaFailure.shape(
                "config vocab_size gives \(shape[0]) rows but tensor \(name) has shape \(t.shape): the config disagrees with the weights")
        }
        throw MambaFailure.shape(
            "tensor \(name) has shape \(t.shape), but config.json implies \(shape) (d_model \(ck.config.dModel), d_state \(ck.config.dState), ngroups \(ck.config.nGroups), headdim \(ck.config.headDim))")
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
