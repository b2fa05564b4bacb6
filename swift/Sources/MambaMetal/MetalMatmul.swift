// One specialisation of metal/matmul.metal, Y[z] (= or +=) X̂[z] · W[z]ᵀ, and its dispatch. Shapes,
// strides, tiles and fusions are function constants; only the block's token count is read at run time
// (from a one-word buffer), so one pipeline serves every prompt length.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

struct MatmulSpec {
    /// Columns of Y (rows of W); unused when causal (Y is square per batch index).
    var n: Int
    /// Reduction length.
    var k: Int
    /// Rows of Y per outer batch index, at most (the block capacity, or the chunk size).
    var m: Int
    var tileM: Int, tileN: Int, tileK = 32
    /// f32, f16 or affine-quantized W (quantized: one matrix, no batch offsets, rows of ldw columns).
    var weights = GPUMatrixFormat.f32
    /// 0: X as is; G ≥ 1: RMSNorm of X over G groups of k / G, times norm_w (G = 1: plain RMSNorm).
    var normGroups = 0
    var eps: Float = 1e-5
    var accumulate = false
    var causal = false
    var ldx: Int, ldw: Int, ldy: Int
    /// Batch index z = outer · zInner + inner; element offsets per outer and inner step.
    var zInner = 1
    var xOuter = 0, xInner = 0, wOuter = 0, wInner = 0, yOuter = 0, yInner = 0

    init(n: Int, k: Int, m: Int, tile: Int, ldx: Int, ldw: Int, ldy: Int) {
        self.n = n
        self.k = k
        self.m = m
        tileM = tile
        tileN = tile
        self.ldx = ldx
        self.ldw = ldw
        self.ldy = ldy
    }

    static let threads = 128

    var constants: Kernel.MatmulConstants {
        let q = weights.quantized ?? .unused
        return .init(MM_N: n, MM_K: k, MM_M: m, MM_BM: tileM, MM_BN: tileN, MM_BK: tileK, MM_W_HALF: weights.isHalf,
                     MM_NORM: normGroups > 0, MM_NORM_GROUPS: normGroups, MM_EPS: eps, MM_ACCUMULATE: accumulate,
                     MM_CAUSAL: causal, MM_LDX: ldx, MM_LDW: ldw, MM_LDY: ldy, MM_Z_INNER: zInner,
                     MM_X_OUTER: xOuter, MM_X_INNER: xInner, MM_W_OUTER: wOuter, MM_W_INNER: wInner,
                     MM_Y_OUTER: yOuter, MM_Y_INNER: yInner, MM_QUANT: weights.quantized != nil, MM_BITS: q.bits,
                     MM_GROUP_SIZE: q.groupSize, MM_SCALES_HALF: q.scalesHalf)
    }

    var threadgroupMemory: Int {
        roundUp(4 * (max((tileM + tileN) * tileK, tileM * tileN) + tileM * max(normGroups, 1)), 16)
    }

    /// Threadgroups for `tokens` rows in all (the first outer index has the most) and `batches` indices.
    func threadgroups(tokens: Int, batches: Int = 1) -> MTLSize {
        let rows = min(m, tokens), cols = causal ? rows : n
        return MTLSize(width: (cols + tileN - 1) / tileN, height: (rows + tileM - 1) / tileM, depth: batches)
    }

    func validate() throws {
        guard [16, 32, 64].contains(tileM), [16, 32, 64].contains(tileN), tileK % 8 == 0, (8...64).contains(tileK) else {
            throw MambaFailure.internalError("matmul tiles \(tileM)×\(tileN)×\(tileK) are not supported")
        }
        guard normGroups == 0 || k % normGroups == 0 else {
            throw MambaFailure.internalError("matmul: \(normGroups) norm groups do not divide K = \(k)")
        }
        if let q = weights.quantized {
            guard [4, 8].contains(q.bits), [16, 32, 64, 128].contains(q.groupSize), ldw % q.groupSize == 0, k <= ldw,
                  wOuter == 0, wInner == 0 else {
                throw MambaFailure.internalError(
                    "matmul: \(q.bits)-bit W in groups of \(q.groupSize) needs rows of whole groups and no batch offsets")
            }
        }
    }
}

final class MetalMatmul {
    let spec: MatmulSpec
    let pipeline: KernelPipeline<Kernel.Matmul>

    init(kernels: MetalKernels, spec: MatmulSpec) throws {
        try spec.validate()
        self.spec = spec
        pipeline = try kernels.pipeline(Kernel.Matmul.self, spec.constants)
        guard pipeline.state.maxTotalThreadsPerThreadgroup >= MatmulSpec.threads else {
            throw MambaFailure.backend("the matmul pipeline allows only \(pipeline.state.maxTotalThreadsPerThreadgroup) threads")
        }
    }

    /// `w` in the spec's format; `norm` is norm_w when the spec normalises (normGroups ≥ 1), else nil.
    func encode(_ enc: MetalCommandSink, w: GPUMatrix, x: KernelBuffer, y: KernelBuffer, norm: KernelBuffer?,
                count: any MTLBuffer, tokens: Int, batches: Int = 1) {
        assert(w.format == spec.weights, "matmul: a \(w.format) matrix bound to a \(spec.weights) pipeline")
        enc.dispatch(pipeline, .init(W: w.values, X: x, Y: y, norm_w: norm, count: (count, 0), scales: w.scales,
                                     biases: w.biases, shared: spec.threadgroupMemory),
                     .threadgroups(spec.threadgroups(tokens: tokens, batches: batches),
                                   threadsPerThreadgroup: MTLSize(width: MatmulSpec.threads, height: 1, depth: 1)))
    }
}
