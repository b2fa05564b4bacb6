// One specialisation of metal/matvec.metal, y (= or +=) W · x̂ for a few activation rows (decode), and
// its dispatch. Which normalisation x̂ is, and so which optional inputs exist, is fixed by the spec.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// What the matvec multiplies W by: x itself or x with a norm fused in (the kernel's MV_NORM, MV_GATED).
enum MatvecNorm {
    /// x̂ = x.
    case none
    /// x̂ = RMSNorm(x) · norm_w: the pre-mixer and final norms.
    case rms
    /// x̂ = gated group RMSNorm · norm_w, from the per-head sums of squares the SSM kernel left.
    case gatedGroups
}

struct MatvecSpec {
    /// Rows of W (outputs) and columns (inputs).
    var n: Int, k: Int
    /// Activation rows in one dispatch (1…8).
    var batch: Int
    /// f32, f16 or affine-quantized W.
    var weights: GPUMatrixFormat
    var norm: MatvecNorm
    var accumulate = false
    /// Groups of the gated norm and SSM heads (their sums of squares), for `.gatedGroups`.
    var groups = 1, heads = 1
    var eps: Float = 1e-5
    /// Rows of W each simdgroup computes (1…4; MetalTuning).
    var rowsPerSimdgroup = 2
    /// Simdgroups that share each row, each summing a slice of K (1, 2 or 4; MetalTuning).
    var splitK = 1
    /// `.gatedGroups`: partial sums of squares per head in `sumsq` (the SSM block's split).
    var headParts = 1

    static let threads = 128
    static let simdgroups = threads / 32

    var constants: Kernel.MatvecConstants {
        let q = weights.quantized ?? .unused
        return .init(MV_ROWS: n, MV_COLS: k, MV_BATCH: batch, MV_HALF: weights.isHalf, MV_NORM: norm != .none,
                     MV_GATED: norm == .gatedGroups, MV_ACCUMULATE: accumulate, MV_GROUPS: groups, MV_HEADS: heads,
                     MV_EPS: eps, MV_ROWS_PER_SIMDGROUP: rowsPerSimdgroup, MV_QUANT: weights.quantized != nil,
                     MV_BITS: q.bits, MV_GROUP_SIZE: q.groupSize, MV_SCALES_HALF: q.scalesHalf, MV_SPLIT_K: splitK,
                     MV_HEAD_PARTS: headParts)
    }

    /// The kernel's assumptions about its shape: quantized rows are whole groups of at least 16 columns,
    /// so each 8-byte step of a lane lies inside one group.
    func validate() throws {
        guard (1...8).contains(batch), (1...4).contains(rowsPerSimdgroup), [1, 2, 4].contains(splitK), headParts >= 1
        else {
            throw MambaFailure.internalError(
                "matvec: batch \(batch), \(rowsPerSimdgroup) rows per simdgroup or \(splitK) K slices unsupported")
        }
        if let q = weights.quantized {
            guard [4, 8].contains(q.bits), [16, 32, 64, 128].contains(q.groupSize), k % q.groupSize == 0 else {
                throw MambaFailure.internalError("matvec: \(q.bits)-bit groups of \(q.groupSize) do not fit K = \(k)")
            }
        }
    }

    /// The group scales (one float per activation row and group), then the K slices' sums and sums of squares.
    var threadgroupMemory: Int {
        let slices = splitK > 1 ? MatvecSpec.simdgroups * (rowsPerSimdgroup + 1) * batch : 0
        return roundUp(4 * (batch * max(groups, 1) + slices), 16)
    }

    var grid: DispatchGrid {
        let rowsPerGroup = MatvecSpec.simdgroups / splitK * rowsPerSimdgroup
        return .threadgroups(MTLSize(width: (n + rowsPerGroup - 1) / rowsPerGroup, height: 1, depth: 1),
                             threadsPerThreadgroup: MTLSize(width: MatvecSpec.threads, height: 1, depth: 1))
    }
}

final class MetalMatvec {
    let spec: MatvecSpec
    let pipeline: KernelPipeline<Kernel.Matvec>

    init(kernels: MetalKernels, spec: MatvecSpec) throws {
        try spec.validate()
        self.spec = spec
        pipeline = try kernels.pipeline(Kernel.Matvec.self, spec.constants)
        guard pipeline.state.maxTotalThreadsPerThreadgroup >= MatvecSpec.threads else {
            throw MambaFailure.backend("the matvec pipeline allows only \(pipeline.state.maxTotalThreadsPerThreadgroup) threads")
        }
    }

    /// `w` in the spec's format; `norm` is norm_w (for `.rms` and `.gatedGroups`), `sumsq` the per-head
    /// sums of squares (for `.gatedGroups`); nil where the spec has no such input.
    func encode(_ enc: MetalCommandSink, w: GPUMatrix, x: KernelBuffer, y: KernelBuffer, norm: KernelBuffer?,
                sumsq: KernelBuffer? = nil) {
        assert(w.format == spec.weights, "matvec: a \(w.format) matrix bound to a \(spec.weights) pipeline")
        enc.dispatch(pipeline, .init(W: w.values, x: x, y: y, norm_w: norm, sumsq: sumsq, scales: w.scales,
                                     biases: w.biases, scale: spec.threadgroupMemory),
                     spec.grid)
    }
}
