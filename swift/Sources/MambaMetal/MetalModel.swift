// The model in GPU memory: weights uploaded once, activation and state buffers, and the per-layer
// offset table (`layerMeta`) the dispatch code binds from. Everything is allocated here, at load.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// Where one layer's parameters live inside its weights buffer (byte offsets, 256-aligned).
struct LayerMeta {
    let buffer: any MTLBuffer
    let inProj: Int      // (d_in_proj, d_model) f16 or f32
    let outProj: Int     // (d_model, d_inner) f16 or f32
    let convWeight: Int  // (conv_dim, d_conv) f32
    let convBias: Int    // (conv_dim) f32
    let headParams: Int  // dt_bias | A | D, (3, n_heads) f32
    let norm: Int        // (d_model) f32
    let gatedNorm: Int   // (d_inner) f32
}

/// How a weight matrix is stored for the GPU: f16 where the checkpoint's values allow, else f32
/// (bf16 is widened into one of them: the kernels read f16 or f32).
struct GPUMatrixFormat {
    let half: Bool

    init(_ matrices: [WeightMatrix]) {
        half = matrices.allSatisfy { m in
            switch m.dtype {
            case .f16: return true
            case .f32: return false
            case .bf16: return m.fitsInHalf
            case .q8, .q4: return false // never reached: Engine.checkQuantizedSupport refuses them first
            }
        }
    }

    func bytes(_ m: WeightMatrix) -> Int { m.rows * m.cols * (half ? 2 : 4) }

    func write(_ m: WeightMatrix, to dst: UnsafeMutableRawPointer) {
        let n = m.rows * m.cols
        if (half && m.dtype == .f16) || (!half && m.dtype == .f32) {
            dst.copyMemory(from: m.data, byteCount: m.byteCount)
            return
        }
        let src16 = m.data.assumingMemoryBound(to: UInt16.self)
        let f32 = m.data.assumingMemoryBound(to: Float.self)
        func value(_ i: Int) -> Float {
            switch m.dtype {
            case .f32: return f32[i]
            case .f16: return halfToFloat(src16[i])
            case .bf16: return Float(bitPattern: UInt32(src16[i]) << 16)
            case .q8, .q4: return m.value(i / m.cols, i % m.cols)
            }
        }
        if half {
            let out = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { out[i] = floatToHalf(value(i)) }
        } else {
            let out = dst.assumingMemoryBound(to: Float.self)
            for i in 0..<n { out[i] = value(i) }
        }
    }
}

extension WeightMatrix {
    /// Whether every value survives conversion to f16 (bf16's range is f32's).
    var fitsInHalf: Bool {
        guard dtype == .bf16 else { return dtype == .f16 }
        let p = data.assumingMemoryBound(to: UInt16.self)
        for i in 0..<(rows * cols) where abs(Float(bitPattern: UInt32(p[i]) << 16)) >= 65504 { return false }
        return true
    }
}

final class MetalModel {
    let config: MambaConfig
    let batch: Int
    let tokenCapacity: Int
    let arena: MetalArena
    let inProjFormat: GPUMatrixFormat, outProjFormat: GPUMatrixFormat
    let embeddingFormat: GPUMatrixFormat, lmHeadFormat: GPUMatrixFormat

    let layers: [LayerMeta]
    let embedding: any MTLBuffer    // (vocab, d_model)
    let lmHead: any MTLBuffer       // (vocab, d_model), the embedding when tied
    let normF: any MTLBuffer        // (d_model) f32
    let residual: any MTLBuffer     // (batch, d_model) f32
    let zxbcdt: any MTLBuffer       // (batch, d_in_proj) f32: in_proj output z | x B C | dt
    let gated: any MTLBuffer        // (batch, d_inner) f32: y · silu(z)
    let sumsq: any MTLBuffer        // (batch, n_heads) f32: Σ gated² per head
    let logits: any MTLBuffer       // (batch, vocab) f32
    let tokens: any MTLBuffer       // (token_capacity) i32
    let convPos: any MTLBuffer      // (batch) u32: newest slot of each sequence's conv ring
    let convState: any MTLBuffer    // (batch, n_layer, conv_dim, d_conv) f32, a ring per channel
    let ssmState: any MTLBuffer     // (batch, n_layer, n_heads, head_dim, d_state) f32
    let prefill: MetalPrefillBuffers

    /// `prefillCapacity`: prompt tokens per chunked-prefill block (a multiple of the chunk size).
    init(device: any MTLDevice, weights: ModelWeights, batch: Int, prefillCapacity: Int) throws {
        let c = weights.config
        config = c
        self.batch = batch
        tokenCapacity = max(batch, prefillCapacity)
        inProjFormat = GPUMatrixFormat(weights.layers.map(\.inProj))
        outProjFormat = GPUMatrixFormat(weights.layers.map(\.outProj))
        embeddingFormat = GPUMatrixFormat([weights.embedding])
        lmHeadFormat = GPUMatrixFormat([weights.lmHead])
        let tied = weights.lmHead === weights.embedding

        // Per-layer weights buffer: the matrices, then the small f32 vectors.
        var layerOffsets: [Int] = []
        var cursor = 0
        func reserve(_ bytes: Int) -> Int {
            let at = roundUp(cursor, 256)
            cursor = at + bytes
            return at
        }
        let l0 = weights.layers[0]
        for bytes in [inProjFormat.bytes(l0.inProj), outProjFormat.bytes(l0.outProj), 4 * l0.convWeight.count,
                      4 * l0.convBias.count, 4 * 3 * c.nHeads, 4 * c.dModel, 4 * c.dInner]
        {
            layerOffsets.append(reserve(bytes))
        }
        let layerBytes = cursor
        let f = 4, B = batch
        let lengths = [Int](repeating: layerBytes, count: c.nLayer) + [
            embeddingFormat.bytes(weights.embedding), tied ? 0 : lmHeadFormat.bytes(weights.lmHead), f * c.dModel,
            f * B * c.dModel, f * B * c.dInProj, f * B * c.dInner, f * B * c.nHeads, f * B * c.vocabSize,
            4 * tokenCapacity, 4 * B, f * B * c.nLayer * c.convDim * c.dConv,
            f * B * c.nLayer * c.nHeads * c.headDim * c.dState,
        ].filter { $0 > 0 } + MetalPrefillBuffers.lengths(config: c, capacity: prefillCapacity)
        arena = try MetalArena(device: device, lengths: lengths)

        var metas: [LayerMeta] = []
        for (i, l) in weights.layers.enumerated() {
            let buf = try arena.buffer(layerBytes, label: "layer \(i) weights")
            let base = buf.contents()
            let o = layerOffsets
            inProjFormat.write(l.inProj, to: base + o[0])
            outProjFormat.write(l.outProj, to: base + o[1])
            func put(_ v: [Float], _ at: Int) { (base + at).copyMemory(from: v, byteCount: 4 * v.count) }
            put(l.convWeight, o[2])
            put(l.convBias, o[3])
            put(l.dtBias + l.A + l.D, o[4])
            put(l.norm, o[5])
            put(l.gatedNorm, o[6])
            metas.append(LayerMeta(buffer: buf, inProj: o[0], outProj: o[1], convWeight: o[2], convBias: o[3],
                                   headParams: o[4], norm: o[5], gatedNorm: o[6]))
        }
        layers = metas
        embedding = try arena.buffer(embeddingFormat.bytes(weights.embedding), label: "embedding")
        embeddingFormat.write(weights.embedding, to: embedding.contents())
        if tied {
            lmHead = embedding
        } else {
            lmHead = try arena.buffer(lmHeadFormat.bytes(weights.lmHead), label: "lm_head")
            lmHeadFormat.write(weights.lmHead, to: lmHead.contents())
        }
        normF = try arena.buffer(f * c.dModel, label: "norm_f")
        normF.contents().copyMemory(from: weights.normF, byteCount: f * c.dModel)
        residual = try arena.buffer(f * B * c.dModel, label: "residual")
        zxbcdt = try arena.buffer(f * B * c.dInProj, label: "zxbcdt")
        gated = try arena.buffer(f * B * c.dInner, label: "gated")
        sumsq = try arena.buffer(f * B * c.nHeads, label: "sumsq")
        logits = try arena.buffer(f * B * c.vocabSize, label: "logits")
        tokens = try arena.buffer(4 * tokenCapacity, label: "tokens")
        convPos = try arena.buffer(4 * B, label: "conv_pos")
        convState = try arena.buffer(f * B * c.nLayer * c.convDim * c.dConv, label: "conv_state")
        ssmState = try arena.buffer(f * B * c.nLayer * c.nHeads * c.headDim * c.dState, label: "ssm_state")
        prefill = try MetalPrefillBuffers(arena: arena, config: c, capacity: prefillCapacity)
        for b in [logits, convState, ssmState] { b.contents().initializeMemory(as: UInt8.self, repeating: 0, count: b.length) }
        for s in 0..<B { resetConvPosition(seq: s) }
    }

    var layout: StateLayout { StateLayout(config: config) }

    private func convRing(_ seq: Int) -> UnsafeMutablePointer<Float> {
        convState.contents().assumingMemoryBound(to: Float.self) + seq * config.nLayer * layout.convFloatsPerLayer
    }

    private func ssm(_ seq: Int) -> UnsafeMutablePointer<Float> {
        ssmState.contents().assumingMemoryBound(to: Float.self) + seq * config.nLayer * layout.ssmFloatsPerLayer
    }

    private var positions: UnsafeMutablePointer<UInt32> { convPos.contents().assumingMemoryBound(to: UInt32.self) }

    /// With the newest slot at d_conv - 1, the ring's order is the saved (oldest-first) order.
    private func resetConvPosition(seq: Int) { positions[seq] = UInt32(config.dConv - 1) }

    func reset(seq: Int) {
        convRing(seq).update(repeating: 0, count: config.nLayer * layout.convFloatsPerLayer)
        ssm(seq).update(repeating: 0, count: config.nLayer * layout.ssmFloatsPerLayer)
        resetConvPosition(seq: seq)
    }

    /// conv_state (oldest input first, unrolled from the ring) then ssm_state, as StateLayout says.
    func readState(seq: Int, into out: UnsafeMutableRawBufferPointer) {
        let K = config.dConv, oldest = (Int(positions[seq]) + 1) % K
        let ring = convRing(seq), dst = out.baseAddress!.assumingMemoryBound(to: Float.self)
        let channels = config.nLayer * config.convDim
        for ch in 0..<channels {
            for j in 0..<K { dst[ch * K + j] = ring[ch * K + (oldest + j) % K] }
        }
        let ssmFloats = config.nLayer * layout.ssmFloatsPerLayer
        (dst + channels * K).update(from: ssm(seq), count: ssmFloats)
    }

    func writeState(seq: Int, from data: UnsafeRawBufferPointer) {
        let K = config.dConv, channels = config.nLayer * config.convDim
        let src = data.baseAddress!.assumingMemoryBound(to: Float.self)
        convRing(seq).update(from: src, count: channels * K)
        resetConvPosition(seq: seq)
        ssm(seq).update(from: src + channels * K, count: config.nLayer * layout.ssmFloatsPerLayer)
    }
}
