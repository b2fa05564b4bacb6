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
    case inProj         // (d_in_proj, d_model) f16 or f32, or (d_in_proj, d_model · bits / 8) codes
    case inProjScales   // quantized in_proj: (d_in_proj, d_model / G) f16 or f32; else empty
    case inProjBiases   // quantized in_proj: (d_in_proj, d_model / G) f16 or f32; else empty
    case outProj        // (d_model, d_inner) f16 or f32, or (d_model, d_inner · bits / 8) codes
    case outProjScales  // quantized out_proj: (d_model, d_inner / G); else empty
    case outProjBiases  // quantized out_proj: (d_model, d_inner / G); else empty
    case convWeight     // (conv_dim, d_conv) f32
    case convBias       // (conv_dim) f32
    case headParams     // dt_bias | A | D, (3, n_heads) f32
    case norm           // (d_model) f32
    case gatedNorm      // (d_inner) f32
}

/// Where each parameter sits in a layer's weights buffer: byte offsets, 256-aligned, from one list of
/// sizes, so the offsets written to and the offsets bound are the same numbers. Layers may differ
/// (a GGUF file can hold Q4_K in one layer's in_proj and Q6_K in another's).
struct LayerLayout {
    /// Offsets indexed by LayerParameter.rawValue.
    private let offsets: [Int]
    /// The whole layer's bytes.
    let bytes: Int
    let inProj: GPUMatrixFormat, outProj: GPUMatrixFormat

    init(_ layer: LayerWeights, config c: MambaConfig) {
        inProj = GPUMatrixFormat(layer.inProj)
        outProj = GPUMatrixFormat(layer.outProj)
        var offsets: [Int] = [], end = 0
        for p in LayerParameter.allCases {
            let size: Int
            switch p {
            case .inProj: size = inProj.bytes(layer.inProj)
            case .inProjScales, .inProjBiases: size = inProj.scaleBytes(layer.inProj)
            case .outProj: size = outProj.bytes(layer.outProj)
            case .outProjScales, .outProjBiases: size = outProj.scaleBytes(layer.outProj)
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

    var inProj: GPUMatrix { GPUMatrix(layout.inProj, values: self[.inProj], scales: self[.inProjScales],
                                      biases: self[.inProjBiases]) }
    var outProj: GPUMatrix { GPUMatrix(layout.outProj, values: self[.outProj], scales: self[.outProjScales],
                                       biases: self[.outProjBiases]) }
}

/// An affine-quantized format (docs/quantization.md): the kernels' function constants for it.
struct AffineFormat: Hashable {
    let bits: Int, groupSize: Int
    /// Scales and biases are f16 (else f32).
    let scalesHalf: Bool

    /// What the kernels' quantization constants are set to for float weights (they are not read).
    static let unused = AffineFormat(bits: 8, groupSize: 32, scalesHalf: false)
}

/// How a weight matrix is stored for the GPU: f16 or f32 values (bf16 is widened into f16 where its
/// values allow, else f32: the kernels read f16 or f32), or affine-quantized codes, scales and biases
/// exactly as loaded (the kernels read that form: no matrix is dequantized for the GPU).
enum GPUMatrixFormat: Hashable {
    case f32, f16
    case affine(AffineFormat)

    init(_ m: WeightMatrix) {
        switch m.dtype {
        case .f16: self = .f16
        case .f32: self = .f32
        case .bf16: self = m.fitsInHalf ? .f16 : .f32
        case .q8, .q4:
            let q = m.quant!
            self = .affine(AffineFormat(bits: q.bits, groupSize: q.groupSize, scalesHalf: m.scaleDType == .f16))
        }
    }

    var isHalf: Bool { self == .f16 }

    /// The affine format, nil for float values.
    var quantized: AffineFormat? {
        if case .affine(let q) = self { return q }
        return nil
    }

    /// Bytes of one row of `cols` values (or codes).
    func rowBytes(cols: Int) -> Int {
        switch self {
        case .f32: return 4 * cols
        case .f16: return 2 * cols
        case .affine(let q): return cols * q.bits / 8
        }
    }

    /// Bytes of one row of scales, and of one row of biases: 0 for float values.
    func scaleRowBytes(cols: Int) -> Int {
        guard let q = quantized else { return 0 }
        return cols / q.groupSize * (q.scalesHalf ? 2 : 4)
    }

    func bytes(_ m: WeightMatrix) -> Int { m.rows * rowBytes(cols: m.cols) }
    func scaleBytes(_ m: WeightMatrix) -> Int { m.rows * scaleRowBytes(cols: m.cols) }

    /// The dtype MetalCompat's trace names float values by ("f16", "f32"); nil for codes, which the trace
    /// carries as bytes.
    var dtype: String? {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .affine: return nil
        }
    }

    /// Writes `m` (in this format: `GPUMatrixFormat(m)`) into `w`'s buffers through the arena's one upload
    /// function: its values or codes, and an affine format's scales and biases as loaded.
    func upload(_ m: WeightMatrix, to w: GPUMatrix, arena: MetalArena) {
        arena.upload(w.values.buffer, offset: w.values.offset, length: bytes(m), tensor: m.name, dtype: dtype) {
            write(m, values: $0)
        }
        guard let scales = w.scales, let biases = w.biases, let s = m.scales, let b = m.biases else { return }
        for (dst, src) in [(scales, s), (biases, b)] {
            arena.upload(dst.buffer, offset: dst.offset, length: scaleBytes(m)) { $0.copyMemory(from: src, byteCount: scaleBytes(m)) }
        }
    }

    /// Writes `m`'s values in this format (`GPUMatrixFormat(m)`), or its codes as they are, to `dst`.
    func write(_ m: WeightMatrix, values dst: UnsafeMutableRawPointer) {
        let n = m.rows * m.cols
        if quantized != nil || (self == .f16 && m.dtype == .f16) || (self == .f32 && m.dtype == .f32) {
            dst.copyMemory(from: m.data, byteCount: bytes(m))
            return
        }
        let src16 = m.data.assumingMemoryBound(to: UInt16.self)
        let f32 = m.data.assumingMemoryBound(to: Float.self)
        func value(_ i: Int) -> Float {
            switch m.dtype {
            case .f32: return f32[i]
            case .f16: return halfToFloat(src16[i])
            case .bf16: return Float(bitPattern: UInt32(src16[i]) << 16)
            case .q8, .q4: return m.value(i / m.cols, i % m.cols) // never reached: quantized stays quantized
            }
        }
        if isHalf {
            let out = dst.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n { out[i] = floatToHalf(value(i)) }
        } else {
            let out = dst.assumingMemoryBound(to: Float.self)
            for i in 0..<n { out[i] = value(i) }
        }
    }
}

/// A weight matrix as the kernels bind it: its values or codes, and an affine format's scales and biases.
struct GPUMatrix {
    let format: GPUMatrixFormat
    let values: KernelBuffer
    /// Affine formats only: (rows, cols / G) each; nil for float values.
    let scales: KernelBuffer?, biases: KernelBuffer?

    init(_ format: GPUMatrixFormat, values: KernelBuffer, scales: KernelBuffer? = nil, biases: KernelBuffer? = nil) {
        self.format = format
        self.values = values
        let quantized = format.quantized != nil
        self.scales = quantized ? scales : nil
        self.biases = quantized ? biases : nil
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
    /// The heap every buffer below is placed in, by MetalBufferLayout.
    let arena: MetalArena

    let layers: [LayerMeta]
    // Shapes: MetalBufferLayout, where each of these is a row of the table.
    let embedding: GPUMatrix, lmHead: GPUMatrix, normF: any MTLBuffer
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
        let layouts = weights.layers.map { LayerLayout($0, config: c) }
        arena = try MetalArena(device: device, layout: MetalBufferLayout(
            weights: weights, layerBytes: layouts.map(\.bytes), batch: batch, tokenCapacity: tokenCapacity,
            prefillCapacity: prefillCapacity))

        var metas: [LayerMeta] = []
        for (i, l) in weights.layers.enumerated() {
            let meta = LayerMeta(buffer: try arena.buffer(.layerWeights(i)).buffer, layout: layouts[i])
            // Every load-time write goes through arena.upload, which tells MetalCompat's trace what it is.
            let arena = arena
            meta.layout.inProj.upload(l.inProj, to: meta.inProj, arena: arena)
            meta.layout.outProj.upload(l.outProj, to: meta.outProj, arena: arena)
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
        embedding = try MetalModel.upload(weights.embedding, arena: arena, .embedding, .embeddingScales, .embeddingBiases)
        if weights.lmHead === weights.embedding {
            lmHead = embedding
        } else {
            lmHead = try MetalModel.upload(weights.lmHead, arena: arena, .lmHead, .lmHeadScales, .lmHeadBiases)
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

    /// Places a (vocab, d_model) matrix in its buffers of the table (scales and biases: quantized only)
    /// and uploads it.
    private static func upload(_ m: WeightMatrix, arena: MetalArena, _ values: MetalBuffer, _ scales: MetalBuffer,
                               _ biases: MetalBuffer) throws -> GPUMatrix {
        let format = GPUMatrixFormat(m), v = try arena.buffer(values).buffer
        let w = format.quantized == nil
            ? GPUMatrix(format, values: (v, 0))
            : GPUMatrix(format, values: (v, 0), scales: (try arena.buffer(scales).buffer, 0),
                        biases: (try arena.buffer(biases).buffer, 0))
        format.upload(m, to: w, arena: arena)
        return w
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
