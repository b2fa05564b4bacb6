// The CPU backend: owns state, logits and the small float32 parameters, and hands pointers to the
// C compute core (Sources/CMambaCPU) which does the arithmetic.
import CMambaCPU

final class CPUBackend: Backend {
    let name = "cpu"
    let device: String
    let threads: Int
    let logits: UnsafeMutablePointer<Float>

    private let weights: ModelWeights // keeps matrices and mappings alive
    private let layout: StateLayout
    private let batch: Int
    private let arena: UnsafeMutablePointer<Float> // small parameters, conv_state, ssm_state, logits
    private let convState: UnsafeMutablePointer<Float> // (batch, n_layer, conv_dim, d_conv)
    private let ssmState: UnsafeMutablePointer<Float>  // (batch, n_layer, n_heads, head_dim, d_state)
    private let layers: UnsafeMutablePointer<mcpu_layer>
    private let model: UnsafeMutablePointer<mcpu_model>
    private let engine: OpaquePointer

    init(weights: ModelWeights, batch: Int, threads requested: Int) throws {
        let c = weights.config
        guard c.dConv <= 16 else {
            throw MambaFailure.unsupported("the CPU backend handles d_conv up to 16, this model has \(c.dConv)")
        }
        self.weights = weights
        self.batch = batch
        layout = StateLayout(config: c)

        let small = weights.normF.count + weights.layers.reduce(0) {
            $0 + $1.norm.count + $1.convWeight.count + $1.convBias.count + $1.dtBias.count + $1.A.count + $1.D.count
                + $1.gatedNorm.count
        }
        let convFloats = batch * c.nLayer * layout.convFloatsPerLayer
        let ssmFloats = batch * c.nLayer * layout.ssmFloatsPerLayer
        let total = small + convFloats + ssmFloats + batch * c.vocabSize
        arena = .allocate(capacity: total)
        arena.initialize(repeating: 0, count: total)
        var cursor = arena
        func place(_ v: [Float]) -> UnsafePointer<Float> {
            let p = cursor
            p.update(from: v, count: v.count)
            cursor += v.count
            return UnsafePointer(p)
        }
        func matrix(_ m: WeightMatrix) -> mcpu_matrix {
            func code(_ d: WeightDType) -> Int32 {
                switch d {
                case .f32: return Int32(MCPU_F32)
                case .f16: return Int32(MCPU_F16)
                case .bf16: return Int32(MCPU_BF16)
                case .q8: return Int32(MCPU_Q8)
                case .q4: return Int32(MCPU_Q4)
                }
            }
            return mcpu_matrix(data: m.data, dtype: code(m.dtype), rows: Int32(m.rows), cols: Int32(m.cols),
                               group_size: Int32(m.quant?.groupSize ?? 0),
                               scale_dtype: m.quant == nil ? 0 : code(m.scaleDType), scales: m.scales, biases: m.biases)
        }
        layers = .allocate(capacity: c.nLayer)
        for (i, l) in weights.layers.enumerated() {
            (layers + i).initialize(to: mcpu_layer(
                norm: place(l.norm), in_proj: matrix(l.inProj), conv_w: place(l.convWeight), conv_b: place(l.convBias),
                dt_bias: place(l.dtBias), A: place(l.A), D: place(l.D), gnorm: place(l.gatedNorm),
                out_proj: matrix(l.outProj)))
        }
        let normF = place(weights.normF)
        convState = cursor
        ssmState = cursor + convFloats
        logits = cursor + convFloats + ssmFloats

        // Prefill works in blocks of whole chunks, about 256 tokens: enough tokens per block for the
        // matrix products to reuse each weight many times, few enough for the activations to stay in cache.
        let block = c.chunkSize >= 256 ? c.chunkSize : c.chunkSize * (256 / c.chunkSize)
        model = .allocate(capacity: 1)
        model.initialize(to: mcpu_model(
            d_model: Int32(c.dModel), n_layer: Int32(c.nLayer), d_inner: Int32(c.dInner), d_state: Int32(c.dState),
            d_conv: Int32(c.dConv), n_heads: Int32(c.nHeads), head_dim: Int32(c.headDim), n_groups: Int32(c.nGroups),
            vocab: Int32(c.vocabSize), batch: Int32(batch), chunk_size: Int32(c.chunkSize),
            prefill_block: Int32(block), eps: Float(c.eps),
            dt_min: Float(c.timeStepMin), dt_max: Float(c.timeStepMax), embedding: matrix(weights.embedding),
            lm_head: matrix(weights.lmHead), norm_f: normF, layers: UnsafePointer(layers), conv_state: convState,
            ssm_state: ssmState, logits: logits))
        guard let e = mcpu_create(model, Int32(requested)) else {
            model.deallocate()
            layers.deallocate()
            arena.deallocate()
            throw MambaFailure.backend(
                "cannot create the CPU backend: out of memory for its packed weights and scratch, or a weight matrix in a format it does not run")
        }
        engine = e
        // The engine streams its packed copies from here on and reads the embedding's rows from the
        // packed lm_head when tied (mamba_cpu.h): the sources need not stay resident next to them. An
        // untied embedding stays (a row per token is read from it; only touched pages are resident).
        var packed: [ObjectIdentifier: WeightMatrix] = [ObjectIdentifier(weights.lmHead): weights.lmHead]
        for l in weights.layers { for m in [l.inProj, l.outProj] { packed[ObjectIdentifier(m)] = m } }
        for m in packed.values { m.releaseResidentPages() }
        threads = Int(mcpu_threads(e))
        device = "cpu (\(String(cString: mcpu_isa())), \(threads) threads)"
    }

    deinit {
        mcpu_destroy(engine)
        model.deallocate()
        layers.deallocate()
        arena.deallocate()
    }

    func step(_ tokens: UnsafeBufferPointer<Int32>) throws {
        mcpu_step(engine, tokens.baseAddress!)
    }

    func step(_ tokens: UnsafeBufferPointer<Int32>, seqs: UnsafeBufferPointer<Int32>) throws {
        mcpu_step_seqs(engine, tokens.baseAddress!, seqs.baseAddress!, Int32(seqs.count))
    }

    func prefill(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        mcpu_prefill(engine, tokens.baseAddress!, Int32(tokens.count), Int32(seq))
    }

    private func convBlock(_ seq: Int) -> UnsafeMutableBufferPointer<Float> {
        let n = weights.config.nLayer * layout.convFloatsPerLayer
        return UnsafeMutableBufferPointer(start: convState + seq * n, count: n)
    }

    private func ssmBlock(_ seq: Int) -> UnsafeMutableBufferPointer<Float> {
        let n = weights.config.nLayer * layout.ssmFloatsPerLayer
        return UnsafeMutableBufferPointer(start: ssmState + seq * n, count: n)
    }

    func reset(seq: Int) {
        convBlock(seq).update(repeating: 0)
        ssmBlock(seq).update(repeating: 0)
    }

    func readState(seq: Int, into out: UnsafeMutableRawBufferPointer) {
        let conv = convBlock(seq), ssm = ssmBlock(seq)
        out.baseAddress!.copyMemory(from: conv.baseAddress!, byteCount: conv.count * 4)
        (out.baseAddress! + conv.count * 4).copyMemory(from: ssm.baseAddress!, byteCount: ssm.count * 4)
    }

    func writeState(seq: Int, from data: UnsafeRawBufferPointer) {
        let conv = convBlock(seq), ssm = ssmBlock(seq)
        UnsafeMutableRawPointer(conv.baseAddress!).copyMemory(from: data.baseAddress!, byteCount: conv.count * 4)
        UnsafeMutableRawPointer(ssm.baseAddress!).copyMemory(from: data.baseAddress! + conv.count * 4,
                                                             byteCount: ssm.count * 4)
    }

    func counters() -> GPUCounters { GPUCounters() }

    var samplingPool: OpaquePointer? { engine }
}
