// A Mamba2 model from a GGUF file of llama.cpp's `mamba2` architecture (convert_hf_to_gguf.py's
// Mamba2Model, llama.cpp src/models/mamba2.cpp). Names and shapes, in ggml order (ne[0] innermost):
//   token_embd.weight           [d_model, vocab]        output.weight  [d_model, vocab] (absent: tied)
//   output_norm.weight          [d_model]
//   blk.N.attn_norm.weight      [d_model]               blk.N.ssm_in.weight   [d_model, d_in_proj]
//   blk.N.ssm_conv1d.weight     [d_conv, conv_dim]      blk.N.ssm_conv1d.bias [conv_dim]
//   blk.N.ssm_dt.bias           [n_heads]               blk.N.ssm_a  [1, n_heads]   A = -exp(A_log)
//   blk.N.ssm_d                 [1, n_heads]            blk.N.ssm_norm.weight [d_inner / n_group, n_group]
//   blk.N.ssm_out.weight        [d_inner, d_model]
// Metadata: mamba2.{embedding_length, block_count, ssm.conv_kernel, ssm.inner_size, ssm.state_size,
// ssm.time_step_rank (= n_heads), ssm.group_count, attention.layer_norm_rms_epsilon}. The converter
// pads the vocabulary to a multiple of 16, so the embedding has as many rows as the token list.
//
// Matrices of type Q8_0, Q4_0, Q4_K, Q5_K and Q6_K become the in-memory affine form with every
// dequantized value unchanged (the table in docs/quantization.md); F32/F16/BF16 are used in place.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum GGUFModel {
    static func load(path: String, target: MatrixTarget) throws -> ModelWeights {
        let file = try MappedFile(path: path)
        let bytes = UnsafeRawBufferPointer(start: file.base, count: file.size)
        guard GGUFFile.hasMagic(bytes) else {
            throw MambaFailure.format("\(path) is neither a model directory nor a GGUF file")
        }
        let gguf = try GGUFFile.parse(bytes, file: path)
        return try build(gguf, file: file, target: target)
    }

    static func build(_ g: GGUFFile, file: MappedFile, target: MatrixTarget) throws -> ModelWeights {
        let path = file.path
        guard case .string(let arch)? = g.metadata["general.architecture"] else {
            throw MambaFailure.format("\(path): missing metadata general.architecture")
        }
        guard arch == "mamba2" else {
            throw MambaFailure.unsupported("\(path): architecture \"\(arch)\" is not supported (only mamba2)")
        }
        func int(_ key: String) throws -> Int {
            guard let v = g.metadata["mamba2." + key] else { throw MambaFailure.format("\(path): missing metadata mamba2.\(key)") }
            guard let i = v.integer, i > 0, i <= 1 << 24 else {
                throw MambaFailure.format("\(path): metadata mamba2.\(key) must be an integer from 1 to 2^24")
            }
            return i
        }
        let tensors = Dictionary(g.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let dModel = try int("embedding_length"), dInner = try int("ssm.inner_size"), nHeads = try int("ssm.time_step_rank")
        guard dInner % dModel == 0 else {
            throw MambaFailure.unsupported("\(path): ssm.inner_size \(dInner) is not a multiple of embedding_length \(dModel)")
        }
        guard dInner % nHeads == 0 else {
            throw MambaFailure.format("\(path): ssm.inner_size \(dInner) does not split into \(nHeads) heads (ssm.time_step_rank)")
        }
        guard let emb = tensors["token_embd.weight"] else { throw MambaFailure.format("\(path): missing tensor token_embd.weight") }
        guard emb.ne.count == 2 else { throw MambaFailure.shape("\(path): tensor token_embd.weight has shape \(emb.ne)") }
        let epsKey = "mamba2.attention.layer_norm_rms_epsilon"
        guard let eps = g.metadata[epsKey]?.number else { throw MambaFailure.format("\(path): missing metadata \(epsKey)") }
        let c = MambaConfig(
            dModel: dModel, nLayer: try int("block_count"), vocabSize: emb.ne[1], dState: try int("ssm.state_size"),
            dConv: try int("ssm.conv_kernel"), expand: dInner / dModel, headDim: dInner / nHeads,
            nGroups: try int("ssm.group_count"), chunkSize: 256, eps: eps,
            tieEmbeddings: tensors["output.weight"] == nil, timeStepMin: 0, timeStepMax: .infinity)
        try c.validate("\(path) (metadata)")
        if case .array(_, let n)? = g.metadata["tokenizer.ggml.tokens"], n != c.vocabSize {
            throw MambaFailure.shape(
                "\(path): tokenizer.ggml.tokens has \(n) entries but token_embd.weight has \(c.vocabSize) rows")
        }

        func info(_ name: String, _ ne: [Int]) throws -> GGUFTensorInfo {
            guard let t = tensors[name] else { throw MambaFailure.format("\(path): missing tensor \(name)") }
            // ggml's dimensions past n_dims are 1, and writers differ in what they keep: the converter
            // writes ssm_norm as [d_inner, 1], llama-quantize (ggml_n_dims) as [d_inner]. Compare as ggml does.
            func padded(_ x: [Int]) -> [Int] { x.count >= 4 ? x : x + Array(repeating: 1, count: 4 - x.count) }
            guard padded(t.ne) == padded(ne) else {
                throw MambaFailure.shape(
                    "\(path): tensor \(name) has shape \(t.ne) (ggml order), but the metadata implies \(ne) (d_model \(dModel), d_inner \(dInner), d_state \(c.dState), n_group \(c.nGroups), heads \(nHeads))")
            }
            return t
        }
        func vector(_ name: String, _ ne: [Int]) throws -> [Float] {
            let t = try info(name, ne)
            let p = file.base + t.offset
            switch GGMLType(rawValue: t.type) {
            case .f32?: return (0..<t.elementCount).map { Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
            case .f16?: return (0..<t.elementCount).map { halfToFloat(p.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
            case .bf16?:
                return (0..<t.elementCount).map {
                    Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16)
                }
            default:
                throw MambaFailure.unsupported(
                    "\(path): tensor \(name) has type \(ggmlTypeName(t.type)); vectors must be F32, F16 or BF16")
            }
        }
        func matrix(_ name: String, rows: Int, cols: Int) throws -> WeightMatrix {
            try GGMLConvert.matrix(try info(name, [cols, rows]), file: file).converted(to: target)
        }

        let embedding = try matrix("token_embd.weight", rows: c.vocabSize, cols: dModel)
        let lmHead = c.tieEmbeddings ? embedding : try matrix("output.weight", rows: c.vocabSize, cols: dModel)
        var hash = Fingerprint()
        hash.add([c.dModel, c.nLayer, c.vocabSize, c.dState, c.dConv, c.expand, c.headDim, c.nGroups])
        var layers: [LayerWeights] = []
        for i in 0..<c.nLayer {
            let p = "blk.\(i)."
            let A = try vector(p + "ssm_a", [1, nHeads]), dtBias = try vector(p + "ssm_dt.bias", [nHeads])
            let D = try vector(p + "ssm_d", [1, nHeads])
            hash.add(A + dtBias + D)
            layers.append(LayerWeights(
                norm: try vector(p + "attn_norm.weight", [dModel]),
                inProj: try matrix(p + "ssm_in.weight", rows: c.dInProj, cols: dModel),
                convWeight: try vector(p + "ssm_conv1d.weight", [c.dConv, c.convDim]),
                convBias: try vector(p + "ssm_conv1d.bias", [c.convDim]),
                dtBias: dtBias, aLog: A.map { logf(-$0) }, A: A, D: D,
                gatedNorm: try vector(p + "ssm_norm.weight", [dInner / c.nGroups, c.nGroups]),
                outProj: try matrix(p + "ssm_out.weight", rows: dModel, cols: dInner)))
        }
        return ModelWeights(config: c, embedding: embedding, lmHead: lmHead,
                            normF: try vector("output_norm.weight", [dModel]), layers: layers, fingerprint: hash.value)
    }
}

/// ggml's block types → the in-memory affine form, reproducing ggml's float32 dequantization
/// (ggml-quants.c `dequantize_row_*`) bit for bit; see docs/quantization.md for why each is exact.
enum GGMLConvert {
    /// Tensor `t` as a matrix of rows of ne[0] elements. Rows count every outer dimension (as ggml's
    /// ggml_nrows): a writer may drop trailing 1s, so a (1, n) matrix can arrive 1-D.
    static func matrix(_ t: GGUFTensorInfo, file: MappedFile) throws -> WeightMatrix {
        let rows = t.rows, cols = t.ne[0], src = file.base + t.offset
        guard let type = GGMLType(rawValue: t.type) else {
            throw MambaFailure.unsupported(
                "\(file.path): tensor \(t.name) has type \(ggmlTypeName(t.type)); supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K")
        }
        switch type {
        case .f32, .f16, .bf16:
            let dtype: WeightDType = type == .f32 ? .f32 : type == .f16 ? .f16 : .bf16
            let (data, copy) = inPlaceAligned(src, bytes: rows * cols * dtype.floatBytes, to: dtype.floatBytes)
            return WeightMatrix(name: t.name, rows: rows, cols: cols, dtype: dtype, data: data,
                                owners: [file] + (copy.map { [$0] } ?? []), source: type.name)
        case .q8_0, .q4_0: return try legacy(t, type, src, path: file.path)
        case .q4_K, .q5_K, .q6_K: return try kQuant(t, type, src, path: file.path)
        }
    }

    private static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        halfToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    private static func checkFinite(_ v: Float, _ t: GGUFTensorInfo, block: Int, path: String) throws {
        guard v.isFinite else {
            throw MambaFailure.format("\(path): tensor \(t.name) block \(block) has a non-finite scale (\(v))")
        }
    }

    /// Q8_0 (d f16, 32 × int8: d·q) and Q4_0 (d f16, 16 bytes: d·(q − 8), element j in the low nibble of
    /// byte j, element j + 16 in its high nibble): one group of 32 per block, scale d, bias −128·d or
    /// −8·d. Scales stay f16 (d is f16; the bias is d times a power of two) unless a bias overflows f16.
    private static func legacy(_ t: GGUFTensorInfo, _ type: GGMLType, _ src: UnsafeRawPointer, path: String) throws
        -> WeightMatrix
    {
        let rows = t.rows, cols = t.ne[0], groups = cols / 32, blocks = rows * groups
        let q8 = type == .q8_0, blockBytes = type.block.bytes, offset: Float = q8 ? 128 : 8
        var f16 = true
        for b in 0..<blocks {
            let d = half(src, b * blockBytes)
            try checkFinite(d, t, block: b, path: path)
            if abs(d * offset) > 65504 { f16 = false }
        }
        let spec = QuantSpec(bits: q8 ? 8 : 4, groupSize: 32)
        let codes = OwnedBytes(count: rows * spec.codeBytes(cols: cols))
        let scales = OwnedBytes(count: blocks * (f16 ? 2 : 4)), biases = OwnedBytes(count: blocks * (f16 ? 2 : 4))
        let out = codes.pointer.assumingMemoryBound(to: UInt8.self)
        for b in 0..<blocks {
            let blk = src + b * blockBytes
            let d = half(blk, 0)
            if f16 {
                scales.pointer.storeBytes(of: blk.loadUnaligned(as: UInt16.self), toByteOffset: 2 * b, as: UInt16.self)
                biases.pointer.storeBytes(of: floatToHalf(-offset * d), toByteOffset: 2 * b, as: UInt16.self)
            } else {
                scales.pointer.storeBytes(of: d, toByteOffset: 4 * b, as: Float.self)
                biases.pointer.storeBytes(of: -offset * d, toByteOffset: 4 * b, as: Float.self)
            }
            let qs = (blk + 2).assumingMemoryBound(to: UInt8.self)
            if q8 {
                let dst = out + b * 32
                for j in 0..<32 { dst[j] = qs[j] &+ 128 } // int8 q → q + 128
            } else {
                let dst = out + b * 16
                func e(_ i: Int) -> UInt8 { i < 16 ? qs[i] & 0xF : qs[i - 16] >> 4 }
                for j in 0..<16 { dst[j] = e(2 * j) | (e(2 * j + 1) << 4) }
            }
        }
        return WeightMatrix(name: t.name, rows: rows, cols: cols, spec: spec, scaleDType: f16 ? .f16 : .f32,
                            codes: UnsafeRawPointer(codes.pointer), scales: UnsafeRawPointer(scales.pointer),
                            biases: UnsafeRawPointer(biases.pointer), owners: [codes, scales, biases],
                            source: type.name)
    }

    /// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block's 12 packed bytes (ggml's get_scale_min_k4).
    private static func scaleMin(_ j: Int, _ q: UnsafePointer<UInt8>) -> (Float, Float) {
        if j < 4 { return (Float(q[j] & 63), Float(q[j + 4] & 63)) }
        return (Float((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)), Float((q[j + 4] >> 4) | ((q[j] >> 6) << 4)))
    }

    /// Super-blocks of 256:
    ///   Q4_K (d, dmin f16, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles): 8 groups of 32,
    ///        value (d·sc)·q − dmin·m → 4-bit G32, scale d·sc, bias −dmin·m (f32).
    ///   Q5_K (as Q4_K plus 32 bytes of fifth bits): → 8-bit G32, same scale and bias.
    ///   Q6_K (128 bytes low nibbles, 64 bytes of 2 high bits, 16 int8 scales, d f16): 16 groups of 16,
    ///        value (d·sc)·(q − 32) → 8-bit G16, scale d·sc, bias −32·d·sc (f32).
    private static func kQuant(_ t: GGUFTensorInfo, _ type: GGMLType, _ src: UnsafeRawPointer, path: String) throws
        -> WeightMatrix
    {
        let rows = t.rows, cols = t.ne[0], superBlocks = rows * cols / 256, blockBytes = type.block.bytes
        let spec = QuantSpec(bits: type == .q4_K ? 4 : 8, groupSize: type == .q6_K ? 16 : 32)
        let groupsPerBlock = 256 / spec.groupSize, bytesPerBlock = 256 * spec.bits / 8
        let codes = OwnedBytes(count: rows * spec.codeBytes(cols: cols))
        let scales = OwnedBytes(count: 4 * superBlocks * groupsPerBlock)
        let biases = OwnedBytes(count: 4 * superBlocks * groupsPerBlock)
        let out = codes.pointer.assumingMemoryBound(to: UInt8.self)
        let sOut = scales.pointer.assumingMemoryBound(to: Float.self)
        let bOut = biases.pointer.assumingMemoryBound(to: Float.self)
        for b in 0..<superBlocks {
            let blk = src + b * blockBytes
            let dst = out + b * bytesPerBlock, s = sOut + b * groupsPerBlock, bias = bOut + b * groupsPerBlock
            switch type {
            case .q4_K, .q5_K:
                let d = half(blk, 0), dmin = half(blk, 2)
                try checkFinite(d, t, block: b, path: path)
                try checkFinite(dmin, t, block: b, path: path)
                let packed = (blk + 4).assumingMemoryBound(to: UInt8.self)
                let qh = (blk + 16).assumingMemoryBound(to: UInt8.self) // Q5_K only
                let ql = (blk + (type == .q4_K ? 16 : 48)).assumingMemoryBound(to: UInt8.self)
                for g in 0..<8 {
                    let (sc, m) = scaleMin(g, packed)
                    s[g] = d * sc
                    bias[g] = -(dmin * m)
                    // Groups 2k and 2k+1 share bytes 32k..32k+31: low nibbles, then high nibbles.
                    let bytes = ql + 32 * (g / 2), shift = UInt8(4 * (g % 2))
                    for l in 0..<32 {
                        let q = (bytes[l] >> shift) & 0xF
                        if type == .q4_K {
                            let at = g * 16 + l / 2
                            dst[at] = l % 2 == 0 ? q : dst[at] | (q << 4)
                        } else {
                            dst[g * 32 + l] = q | (((qh[l] >> UInt8(g)) & 1) << 4)
                        }
                    }
                }
            default: // Q6_K
                let ql = blk.assumingMemoryBound(to: UInt8.self), qh = ql + 128
                let sc = (blk + 192).assumingMemoryBound(to: Int8.self), d = half(blk, 208)
                try checkFinite(d, t, block: b, path: path)
                for g in 0..<16 {
                    s[g] = d * Float(sc[g])
                    bias[g] = -32 * s[g]
                }
                for h in 0..<2 {
                    let l0 = ql + 64 * h, h0 = qh + 32 * h, y = dst + 128 * h
                    for l in 0..<32 {
                        y[l] = (l0[l] & 0xF) | (((h0[l] >> 0) & 3) << 4)
                        y[l + 32] = (l0[l + 32] & 0xF) | (((h0[l] >> 2) & 3) << 4)
                        y[l + 64] = (l0[l] >> 4) | (((h0[l] >> 4) & 3) << 4)
                        y[l + 96] = (l0[l + 32] >> 4) | (((h0[l] >> 6) & 3) << 4)
                    }
                }
            }
        }
        return WeightMatrix(name: t.name, rows: rows, cols: cols, spec: spec, scaleDType: .f32,
                            codes: UnsafeRawPointer(codes.pointer), scales: UnsafeRawPointer(scales.pointer),
                            biases: UnsafeRawPointer(biases.pointer), owners: [codes, scales, biases],
                            source: type.name)
    }
}
