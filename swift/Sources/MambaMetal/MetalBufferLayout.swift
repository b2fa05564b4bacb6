// Every buffer of the Metal backend in one table: what it holds, its rows and the bytes of one row, in
// heap order. The same table sizes the heap and places the buffers (MetalArena), and gives the offsets
// the dispatch code binds (row r of a buffer starts r · rowBytes in), so no length, order or stride is
// written twice. A tool that replays the plan elsewhere can read the placements from the arena.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// The buffers of a Metal model, by what they hold. Each case's shape is its row in MetalBufferLayout.
enum MetalBuffer: Hashable, CustomStringConvertible {
    /// One layer's parameters, at the offsets of LayerLayout.
    case layerWeights(Int)
    /// Values, or codes when quantized.
    case embedding
    /// A quantized embedding's scales and biases (absent otherwise).
    case embeddingScales, embeddingBiases
    /// Absent when tied: the embedding serves.
    case lmHead
    /// An untied quantized lm_head's scales and biases (absent otherwise).
    case lmHeadScales, lmHeadBiases
    case normF
    case residual
    /// The in_proj output: z | x B C | dt.
    case zxbcdt
    /// y · silu(z).
    case gated
    /// Σ gated² per head, for out_proj's group norm.
    case sumsq
    case logits
    case tokens
    /// The newest slot of each sequence's conv ring.
    case convPos
    case convState
    case ssmState
    /// Scratch of the chunked prefill (one block of one sequence).
    case prefill(MetalPrefillBuffer)

    /// The buffer's label (what GPU tools show).
    var description: String {
        switch self {
        case .layerWeights(let l): return "layer \(l) weights"
        case .embedding: return "embedding"
        case .embeddingScales: return "embedding scales"
        case .embeddingBiases: return "embedding biases"
        case .lmHead: return "lm_head"
        case .lmHeadScales: return "lm_head scales"
        case .lmHeadBiases: return "lm_head biases"
        case .normF: return "norm_f"
        case .residual: return "residual"
        case .zxbcdt: return "zxbcdt"
        case .gated: return "gated"
        case .sumsq: return "sumsq"
        case .logits: return "logits"
        case .tokens: return "tokens"
        case .convPos: return "conv_pos"
        case .convState: return "conv_state"
        case .ssmState: return "ssm_state"
        case .prefill(let p): return "prefill \(p.rawValue)"
        }
    }
}

/// A buffer's size as rows of its leading dimension (sequences, tokens, (sequence, layer) pairs, …).
struct BufferShape {
    let rows: Int
    let rowBytes: Int
    var bytes: Int { rows * rowBytes }
}

/// A placed buffer and the stride of its leading dimension.
struct PlacedBuffer {
    let buffer: any MTLBuffer
    let rowBytes: Int

    /// Row `row` (a sequence, a token, …) as a kernel argument.
    func row(_ row: Int) -> KernelBuffer { (buffer, row * rowBytes) }
}

struct MetalBufferLayout {
    /// The largest MetalTuning.ssmSplit: partial sums of squares per head that `sumsq` has room for.
    static let maxSSMSplit = MetalTuning.allowed(.ssmSplit).max()!

    /// Every buffer with its shape, in heap order.
    private(set) var entries: [(buffer: MetalBuffer, shape: BufferShape)] = []

    /// `layerBytes`: each layer's weights buffer (LayerLayout); `prefillCapacity`: prompt tokens per
    /// chunked-prefill block.
    init(weights: ModelWeights, layerBytes: [Int], batch B: Int, tokenCapacity: Int, prefillCapacity: Int) {
        let c = weights.config, f = 4
        for (l, bytes) in layerBytes.enumerated() { add(.layerWeights(l), rows: 1, rowBytes: bytes) }
        // Weight matrices: (vocab, d_model) in their GPU format; quantized: codes, then (vocab, d_model / G)
        // scales and biases.
        addMatrix(weights.embedding, .embedding, .embeddingScales, .embeddingBiases)
        if weights.lmHead !== weights.embedding { addMatrix(weights.lmHead, .lmHead, .lmHeadScales, .lmHeadBiases) }
        add(.normF, rows: 1, rowBytes: f * c.dModel)                    // (d_model) f32
        add(.residual, rows: B, rowBytes: f * c.dModel)                 // (batch, d_model) f32
        add(.zxbcdt, rows: B, rowBytes: f * c.dInProj)                  // (batch, d_in_proj) f32
        add(.gated, rows: B, rowBytes: f * c.dInner)                    // (batch, d_inner) f32
        // (batch, n_heads, ssmSplit ≤ maxSSMSplit) f32: sized for the largest split, so the heap's layout
        // does not depend on the tuning.
        add(.sumsq, rows: B, rowBytes: f * c.nHeads * MetalBufferLayout.maxSSMSplit)
        add(.logits, rows: B, rowBytes: f * c.vocabSize)                // (batch, vocab) f32
        add(.tokens, rows: tokenCapacity, rowBytes: 4)                  // (token_capacity) i32
        add(.convPos, rows: B, rowBytes: 4)                             // (batch) u32
        // States: one row per (sequence, layer), sequence-major, as forward.c's mcpu_conv_state.
        add(.convState, rows: B * c.nLayer, rowBytes: f * c.convDim * c.dConv)  // rows of (conv_dim, d_conv) f32
        add(.ssmState, rows: B * c.nLayer, rowBytes: f * c.nHeads * c.headDim * c.dState)  // (heads, P, N) f32
        for p in MetalPrefillBuffer.allCases {
            entries.append((.prefill(p), p.shape(config: c, capacity: prefillCapacity)))
        }
    }

    private mutating func addMatrix(_ m: WeightMatrix, _ values: MetalBuffer, _ scales: MetalBuffer,
                                    _ biases: MetalBuffer) {
        let format = GPUMatrixFormat(m)
        add(values, rows: m.rows, rowBytes: format.rowBytes(cols: m.cols))
        guard format.quantized != nil else { return }
        add(scales, rows: m.rows, rowBytes: format.scaleRowBytes(cols: m.cols))
        add(biases, rows: m.rows, rowBytes: format.scaleRowBytes(cols: m.cols))
    }

    private mutating func add(_ buffer: MetalBuffer, rows: Int, rowBytes: Int) {
        entries.append((buffer, BufferShape(rows: rows, rowBytes: rowBytes)))
    }
}
