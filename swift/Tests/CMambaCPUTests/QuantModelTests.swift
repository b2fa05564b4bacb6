// A whole model with quantized in_proj, out_proj and embedding / lm_head against the same model with
// those matrices dequantized to float32 (the quantization then is the only difference): chunked
// prefill (long and short prompts) and decode steps at batch 3, both kernel sets. Also: a sequence's
// logits are bit-identical whatever else shares its step.
import CMambaCPU
import XCTest

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sizes of the test model: two groups, a vocab that is not a multiple of 16, prompts longer than a
/// prefill block.
private enum Shape {
    static let dModel = 128, nLayer = 2, dState = 16, dConv = 4, headDim = 32, nGroups = 2, vocab = 100
    static let dInner = 2 * dModel, nHeads = dInner / headDim
    static let convDim = dInner + 2 * nGroups * dState, dInProj = 2 * dInner + 2 * nGroups * dState + nHeads
    static let chunk = 16, block = 32
}

/// Random weights shaped like a trained model's, the large matrices quantized.
private final class QuantWeights {
    let embedding: QuantMatrix, lmHead: QuantMatrix?
    let inProj: [QuantMatrix], outProj: [QuantMatrix]
    let norm: [FloatBuffer], convW: [FloatBuffer], convB: [FloatBuffer], dtBias: [FloatBuffer], A: [FloatBuffer]
    let D: [FloatBuffer], gnorm: [FloatBuffer]
    let normF: FloatBuffer

    init(bits: Int, groupSize: Int, f32Scales: Bool, tied: Bool, rng: inout Rng) {
        func q(_ rows: Int, _ cols: Int, _ range: Float) -> QuantMatrix {
            QuantMatrix(rows: rows, cols: cols, bits: bits, groupSize: groupSize, f32Scales: f32Scales, range: range,
                        randomBiases: false, rng: &rng)
        }
        embedding = q(Shape.vocab, Shape.dModel, 2)
        lmHead = tied ? nil : q(Shape.vocab, Shape.dModel, 2)
        var inP: [QuantMatrix] = [], outP: [QuantMatrix] = []
        var norm: [FloatBuffer] = [], convW: [FloatBuffer] = [], convB: [FloatBuffer] = [], dtBias: [FloatBuffer] = []
        var A: [FloatBuffer] = [], D: [FloatBuffer] = [], gnorm: [FloatBuffer] = []
        for _ in 0..<Shape.nLayer {
            inP.append(q(Shape.dInProj, Shape.dModel, 0.3))
            outP.append(q(Shape.dModel, Shape.dInner, 0.2))
            norm.append(FloatBuffer(rng.floats(Shape.dModel, 0.9, 1.1)))
            convW.append(FloatBuffer(rng.floats(Shape.convDim * Shape.dConv, -0.5, 0.5)))
            convB.append(FloatBuffer(rng.floats(Shape.convDim, -0.1, 0.1)))
            dtBias.append(FloatBuffer((0..<Shape.nHeads).map { _ in
                let dt = expf(rng.float(logf(0.001), logf(0.1)))
                return logf(expm1f(dt))
            }))
            A.append(FloatBuffer(rng.floats(Shape.nHeads, -16, -1)))
            D.append(FloatBuffer(rng.floats(Shape.nHeads, 0.5, 1.5)))
            gnorm.append(FloatBuffer(rng.floats(Shape.dInner, 0.9, 1.1)))
        }
        (inProj, outProj) = (inP, outP)
        (self.norm, self.convW, self.convB, self.dtBias, self.A, self.D, self.gnorm) = (norm, convW, convB, dtBias, A, D, gnorm)
        normF = FloatBuffer(rng.floats(Shape.dModel, 0.9, 1.1))
    }
}

/// One CPU engine over the weights: quantized as they are, or with the matrices dequantized to float32.
private final class TestEngine {
    let weights: QuantWeights
    let batch: Int
    private var dense: [FloatBuffer] = []
    private let layers: UnsafeMutablePointer<mcpu_layer>
    private let model: UnsafeMutablePointer<mcpu_model>
    private let state: UnsafeMutablePointer<Float>
    let logits: UnsafeMutablePointer<Float>
    private let engine: OpaquePointer

    init(_ w: QuantWeights, quantized: Bool, batch: Int) throws {
        weights = w
        self.batch = batch
        var dense: [FloatBuffer] = []
        func matrix(_ q: QuantMatrix) -> mcpu_matrix {
            if quantized { return q.matrix }
            let b = FloatBuffer(q.dense)
            dense.append(b)
            return b.matrix(q.rows, q.cols)
        }
        layers = .allocate(capacity: Shape.nLayer)
        for l in 0..<Shape.nLayer {
            (layers + l).initialize(to: mcpu_layer(
                norm: w.norm[l].pointer, in_proj: matrix(w.inProj[l]), conv_w: w.convW[l].pointer,
                conv_b: w.convB[l].pointer, dt_bias: w.dtBias[l].pointer, A: w.A[l].pointer, D: w.D[l].pointer,
                gnorm: w.gnorm[l].pointer, out_proj: matrix(w.outProj[l])))
        }
        let embedding = matrix(w.embedding)
        let lmHead = w.lmHead.map(matrix) ?? embedding
        let convFloats = batch * Shape.nLayer * Shape.convDim * Shape.dConv
        let ssmFloats = batch * Shape.nLayer * Shape.nHeads * Shape.headDim * Shape.dState
        state = .allocate(capacity: convFloats + ssmFloats)
        state.initialize(repeating: 0, count: convFloats + ssmFloats)
        logits = .allocate(capacity: batch * Shape.vocab)
        logits.initialize(repeating: .nan, count: batch * Shape.vocab)
        model = .allocate(capacity: 1)
        model.initialize(to: mcpu_model(
            d_model: Int32(Shape.dModel), n_layer: Int32(Shape.nLayer), d_inner: Int32(Shape.dInner),
            d_state: Int32(Shape.dState), d_conv: Int32(Shape.dConv), n_heads: Int32(Shape.nHeads),
            head_dim: Int32(Shape.headDim), n_groups: Int32(Shape.nGroups), vocab: Int32(Shape.vocab),
            batch: Int32(batch), chunk_size: Int32(Shape.chunk), prefill_block: Int32(Shape.block), eps: 1e-5,
            dt_min: 0, dt_max: .infinity, embedding: embedding, lm_head: lmHead, norm_f: w.normF.pointer,
            layers: UnsafePointer(layers), conv_state: state, ssm_state: state + convFloats, logits: logits))
        self.dense = dense
        engine = try XCTUnwrap(mcpu_create(model, 2))
    }

    deinit {
        mcpu_destroy(engine)
        model.deallocate()
        layers.deallocate()
        state.deallocate()
        logits.deallocate()
    }

    func prefill(_ tokens: [Int32], seq: Int) { mcpu_prefill(engine, tokens, Int32(tokens.count), Int32(seq)) }
    func step(_ tokens: [Int32]) { mcpu_step(engine, tokens) }
    func row(_ seq: Int) -> [Float] { Array(UnsafeBufferPointer(start: logits + seq * Shape.vocab, count: Shape.vocab)) }
}

final class QuantModelTests: XCTestCase {
    private func assertClose(_ got: [Float], _ want: [Float], _ what: String) {
        let ref = want.map(Double.init)
        let scale = ref.map(abs).max()!
        let err = maxAbsDiff(got, ref)
        XCTAssertLessThanOrEqual(err, 1e-5 * scale, "\(what): max|Δ| \(err), max|ref| \(scale)")
    }

    private func withKernels(_ generic: Bool, _ body: () throws -> Void) rethrows {
        if generic { setenv("MAMBA_CPU_KERNELS", "generic", 1) }
        defer { if generic { unsetenv("MAMBA_CPU_KERNELS") } }
        try body()
    }

    func testQuantizedModelMatchesDequantizedModel() throws {
        // every bit width, scale dtype, group size, tied and untied embeddings, over the two kernel sets
        let cases: [(bits: Int, g: Int, f32: Bool, tied: Bool)] = [
            (8, 64, false, true), (4, 64, false, true), (8, 32, true, false), (4, 128, true, true),
            (4, 16, false, false), (8, 16, true, true), (8, 128, false, false), (4, 32, false, true),
        ]
        var rng = Rng(11)
        for generic in [false, true] {
            for c in cases {
                let what = "q\(c.bits) g\(c.g) \(c.f32 ? "f32" : "f16") scales, \(c.tied ? "tied" : "untied"), \(generic ? "generic" : "best") kernels"
                let w = QuantWeights(bits: c.bits, groupSize: c.g, f32Scales: c.f32, tied: c.tied, rng: &rng)
                try withKernels(generic) {
                    if generic { XCTAssertEqual(String(cString: mcpu_isa()), "generic") }
                    let q = try TestEngine(w, quantized: true, batch: 3), f = try TestEngine(w, quantized: false, batch: 3)
                    let one = try TestEngine(w, quantized: true, batch: 1)
                    let prompt = (0..<70).map { _ in Int32(rng.int(Shape.vocab)) }
                    for e in [q, f] { e.prefill(prompt, seq: 0) }
                    assertClose(q.row(0), f.row(0), "\(what): prefill of 70 tokens")
                    for e in [q, f] { e.prefill(prompt, seq: 1) }
                    one.prefill(prompt, seq: 0)
                    let short = (0..<5).map { _ in Int32(rng.int(Shape.vocab)) }
                    for e in [q, f] { e.prefill(short, seq: 2) }
                    assertClose(q.row(2), f.row(2), "\(what): prefill of 5 tokens")
                    for s in 0..<6 {
                        let a = Int32(rng.int(Shape.vocab)), b = Int32(rng.int(Shape.vocab))
                        for e in [q, f] { e.step([a, a, b]) }
                        one.step([a])
                        for seq in 0..<3 { assertClose(q.row(seq), f.row(seq), "\(what): step \(s), sequence \(seq)") }
                        XCTAssertEqual(q.row(0).map(\.bitPattern), q.row(1).map(\.bitPattern), "\(what): step \(s), batch position")
                        XCTAssertEqual(q.row(0).map(\.bitPattern), one.row(0).map(\.bitPattern), "\(what): step \(s), batch 1 vs 3")
                    }
                }
            }
        }
    }
}
