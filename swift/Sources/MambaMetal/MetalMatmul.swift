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
    var weightsHalf = false
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

    var constants: [Int: FunctionConstant] {
        [
            0: .int(n), 1: .int(k), 2: .int(m), 3: .int(tileM), 4: .int(tileN), 5: .int(tileK),
            6: .bool(weightsHalf), 7: .int(normGroups), 8: .float(eps), 9: .bool(accumulate), 10: .bool(causal),
            11: .int(ldx), 12: .int(ldw), 13: .int(ldy), 14: .int(zInner), 15: .int(xOuter), 16: .int(xInner),
            17: .int(wOuter), 18: .int(wInner), 19: .int(yOuter), 20: .int(yInner),
        ]
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
    }
}

final class MetalMatmul {
    let spec: MatmulSpec
    let pipeline: any MTLComputePipelineState

    init(kernels: MetalKernels, spec: MatmulSpec) throws {
        try spec.validate()
        self.spec = spec
        pipeline = try kernels.pipeline("matmul.metal", "matmul", spec.constants)
        guard pipeline.maxTotalThreadsPerThreadgroup >= MatmulSpec.threads else {
            throw MambaFailure.backend("the matmul pipeline allows only \(pipeline.maxTotalThreadsPerThreadgroup) threads")
        }
    }

    /// A buffer and a byte offset into it.
    typealias Operand = (buffer: any MTLBuffer, offset: Int)

    /// `norm` is bound whether or not the spec normalises (any buffer will do when it does not).
    func encode(_ enc: MetalCommandSink, w: Operand, x: Operand, y: Operand, norm: Operand, count: any MTLBuffer,
                tokens: Int, batches: Int = 1) {
        enc.setPipeline(pipeline)
        enc.setBuffer(w.buffer, offset: w.offset, index: 0)
        enc.setBuffer(x.buffer, offset: x.offset, index: 1)
        enc.setBuffer(y.buffer, offset: y.offset, index: 2)
        enc.setBuffer(norm.buffer, offset: norm.offset, index: 3)
        enc.setBuffer(count, offset: 0, index: 4)
        enc.setThreadgroupMemory(spec.threadgroupMemory, index: 0)
        enc.dispatchThreadgroups(spec.threadgroups(tokens: tokens, batches: batches),
                                 threadsPerThreadgroup: MTLSize(width: MatmulSpec.threads, height: 1, depth: 1))
    }
}
