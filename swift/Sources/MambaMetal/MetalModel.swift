// The model in GPU memory: weights uploaded once, activation and state buffers, and the per-layer
// parameter offsets (LayerLayout) the dispatch code binds from. Everything is allocated here, at load,
// in one heap laid out by MetalBufferLayout.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// One layer's parameters, in the order LayerLayout places them in the layer's weights buffer.
enum LayerParameter: Int, CaseIterable {
    case inProj      // (d_in_proj, d_model) f16 or f32
    case outProj     // (d_model, d_inner) f16 or f32
    case convWeight  // (conv_dim, d_conv) f32
    case convBias    // (conv_dim) f32
    case headParams  // dt_bias | A | D, (3, n_heads) f32
    case norm        // (d_model) f32
    case gatedNorm   // (d_inner) f32
}

/// Where each parameter sits in a layer's weights buffer: byte offsets, 256-aligned, from one list of
/// sizes, so the offsets written to and the offsets bound are the same numbers.
struct LayerLayout {
    /// Offsets indexed by LayerParameter.rawValue.
    private let offsets: [Int]
    /// The whole layer's bytes.
    let bytes: Int

    init(_ layer: LayerWeights, config c: MambaConfig, formats: MetalMatrixFormats) {
        var offsets: [Int] = [], end = 0
        for p in LayerParameter.allCases {
            let size: Int
            switch p {
            case .inProj: size = formats.inProj.bytes(layer.inProj)
            case .outProj: size = formats.outProj.bytes(layer.outProj)
            case .convWeight: size = 4 * layer.convWeight.count
            case .convBias: size = 4 * layer.convBias.count
            case .headParams: size = 4 * 3 * c.nHeads
            case .norm: size = 4 * c.dModel
            case .gatedNorm: size = 4 * c.dInner
            }
            offsets.append(roundUp(end, 256))
            end = offsets.last! + size
        }
        self.offsets = offsets
        bytes = end
    }

    subscript(_ p: LayerParameter) -> Int { offsets[p.rawValue] }
}

/// One layer's weights buffer and where its parameters are in it.
struct LayerMeta {
    let buffer: any MTLBuffer
    let layout: LayerLayout

    /// Parameter `p` as a kernel argument.
    subscript(_ p: LayerParameter) -> KernelBuffer { (buffer, layout[p]) }
}

/// How each family of weight matrices is stored for the GPU.
struct MetalMatrixFormats {
    let inProj: GPUMatrixFormat, outProj: GPUMatrixFormat, embedding: GPUMatrixFormat, lmHead: GPUMatrixFormat

    init(_ weights: ModelWeights) {
        inProj = GPUMatrixFormat(weights.layers.map(\.inProj))
        outProj = GPUMatrixFormat(weights.layers.map(\.outProj))
        embedding = GPUMatrixFormat([weights.embedding])
        lmHead = GPUMatrixFormat([weights.lmHead])
    }
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

    var elementBytes: Int { half ? 2 : 4 }

    func bytes(_ m: WeightMatrix) -> Int { m.rows * m.cols * elementBytes }

    var dtype: String { half ? "f16" : "f32" }

    /// Converts `m` into `buffer` at `offset` through the arena's one upload function.
    func upload(_ m: WeightMatrix, to buffer: any MTLBuffer, offset: Int = 0, arena: MetalArena) {
        arena.upload(buffer, offset: offset, length: bytes(m), tensor: m.name, dtype: dtype) { write(m, to: $0) }
    }

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
    /// Sequences, and token slots: the larger of the batch and a prompt block.
    let batch: Int, tokenCapacity: Int
    let formats: MetalMatrixFormats
    /// The heap every buffer below is placed in, by MetalBufferLayout.
    let arena: MetalArena

    let layers: [LayerMeta]
    // Shapes: MetalBufferLayout, where each of these is a row of the table.
    let embedding: any MTLBuffer, lmHead: any MTLBuffer, normF: any MTLBuffer
    let residual: PlacedBuffer, zxbcdt: PlacedBuffer, gated: PlacedBuffer, sumsq: PlacedBuffer
    let logits: PlacedBuffer, tokens: PlacedBuffer, convPos: PlacedBuffer
    let convState: PlacedBuffer, ssmState: PlacedBuffer
    let prefill: MetalPrefillBuffers

    /// `prefillCapacity`: prompt tokens per chunked-prefill block (a multiple of the chunk size).
    init(device: any MTLDevice, weights: ModelWeights, batch: Int, prefillCapacity: Int) throws {
        let c = weights.config
        config = c
        self.batch = batch
        tokenCapacity = max(batch, prefillCapacity)
        formats = MetalMatrixFormats(weights)
        let layerLayout = LayerLayout(weights.layers[0], config: c, formats: formats)
        arena = try MetalArena(device: device, layout: MetalBufferLayout(
            weights: weights, formats: formats, layerBytes: layerLayout.bytes, batch: batch,
            tokenCapacity: tokenCapacity, prefillCapacity: prefillCapacity))

        var metas: [LayerMeta] = []
        for (i, l) in weights.layers.enumerated() {
            let meta = LayerMeta(buffer: try arena.buffer(.layerWeights(i)).buffer, layout: layerLayout)
            // Every load-time write goes through arena.upload, which tells MetalCompat's trace what it is.
            let arena = arena
            formats.inProj.upload(l.inProj, to: meta.buffer, offset: meta.layout[.inProj], arena: arena)
            formats.outProj.upload(l.outProj, to: meta.buffer, offset: meta.layout[.outProj], arena: arena)
            let put = { (v: [Float], p: LayerParameter) in
                arena.upload(meta.buffer, offset: meta.layout[p], length: 4 * v.count) {
                    $0.copyMemory(from: v, byteCount: 4 * v.count)
                }
            }
            put(l.convWeight, .convWeight)
            put(l.convBias, .convBias)
            put(l.dtBias + l.A + l.D, .headParams)
            put(l.norm, .norm)
            put(l.gatedNorm, .gatedNorm)
            metas.append(meta)
        }
        layers = metas
        embedding = try arena.buffer(.embedding).buffer
        formats.embedding.upload(weights.embedding, to: embedding, arena: arena)
        if weights.lmHead === weights.embedding {
            lmHead = embedding
        } else {
            lmHead = try arena.buffer(.lmHead).buffer
            formats.lmHead.upload(weights.lmHead, to: lmHead, arena: arena)
        }
        normF = try arena.buffer(.normF).buffer
        arena.upload(normF, length: 4 * c.dModel) { $0.copyMemory(from: weights.normF, byteCount: 4 * c.dModel) }
        residual = try arena.buffer(.residual)
        zxbcdt = try arena.buffer(.zxbcdt)
        gated = try arena.buffer(.gated)
        sumsq = try arena.buffer(.sumsq)
        logits = try arena.buffer(.logits)
        tokens = try arena.buffer(.tokens)
        convPos = try arena.buffer(.convPos)
        convState = try arena.buffer(.convState)
        ssmState = try arena.buffer(.ssmState)
        prefill = try MetalPrefillBuffers(arena: arena, config: c, capacity: prefillCapacity)
        for b in [logits.buffer, convState.buffer, ssmState.buffer] {
            arena.upload(b, length: b.length) { $0.initializeMemory(as: UInt8.self, repeating: 0, count: b.length) }
        }
        for s in 0..<batch { resetConvPosition(seq: s) }
    }

    /// Byte offset of sequence `seq`'s conv rings of layer `layer` in convState (as forward.c's mcpu_conv_state).
    func convStateOffset(seq: Int, layer: Int) -> Int { (seq * config.nLayer + layer) * convState.rowBytes }

    /// Byte offset of sequence `seq`'s SSM state of layer `layer` in ssmState.
    func ssmStateOffset(seq: Int, layer: Int) -> Int { (seq * config.nLayer + layer) * ssmState.rowBytes }

    // MARK: state, from the host

    private var layout: StateLayout { StateLayout(config: config) }

    /// Every layer's conv rings of `seq` (contiguous: layers are consecutive rows).
    private func convRings(_ seq: Int) -> UnsafeMutablePointer<Float> {
        (convState.buffer.contents() + convStateOffset(seq: seq, layer: 0)).assumingMemoryBound(to: Float.self)
    }

    /// Every layer's SSM state of `seq`.
    private func ssm(_ seq: Int) -> UnsafeMutablePointer<Float> {
        (ssmState.buffer.contents() + ssmStateOffset(seq: seq, layer: 0)).assumingMemoryBound(to: Float.self)
    }

    private var positions: UnsafeMutablePointer<UInt32> { convPos.buffer.contents().assumingMemoryBound(to: UInt32.self) }

    /// With the newest slot at d_conv - 1, the ring's order is the saved (oldest-first) order.
    private func resetConvPosition(seq: Int) { positions[seq] = UInt32(config.dConv - 1) }

    func reset(seq: Int) {
        convRings(seq).update(repeating: 0, count: config.nLayer * layout.convFloatsPerLayer)
        ssm(seq).update(repeating: 0, count: config.nLayer * layout.ssmFloatsPerLayer)
        resetConvPosition(seq: seq)
    }

    /// conv_state (oldest input first, unrolled from the ring) then ssm_state, as StateLayout says.
    func readState(seq: Int, into out: UnsafeMutableRawBufferPointer) {
        let K = config.dConv, oldest = (Int(positions[seq]) + 1) % K
        let ring = convRings(seq), dst = out.baseAddress!.assumingMemoryBound(to: Float.self)
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
        convRings(seq).update(from: src, count: channels * K)
        resetConvPosition(seq: seq)
        ssm(seq).update(from: src + channels * K, count: config.nLayer * layout.ssmFloatsPerLayer)
    }
}
