// Shared by the kernel tests: a deterministic generator, buffers, one-encoder command buffers and a
// comparison that reports the worst element.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

@testable import MambaMetal

/// A small deterministic generator, so failures reproduce.
struct TestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 11
    }
    mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() % 1_000_000) / 1_000_000
    }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
    /// Weights as the GPU holds them: rounded to f16 when `half`, so a reference in Double sees the same values.
    mutating func weights(_ n: Int, half: Bool) -> [Float] {
        let w = floats(n)
        return half ? w.map { halfToFloat(floatToHalf($0)) } : w
    }
}

/// Device, kernels and buffer helpers for the kernel tests (no tests of its own).
class MetalTestCase: XCTestCase {
    var device: (any MTLDevice)!
    var kernels: MetalKernels!
    var queue: (any MTLCommandQueue)!

    override func setUpWithError() throws {
        device = try XCTUnwrap(MTLCreateSystemDefaultDevice())
        kernels = try MetalKernels(device: device)
        queue = try XCTUnwrap(device.makeCommandQueue())
    }

    func buffer(_ values: [Float]) -> any MTLBuffer { padded(values, length: 16) }

    func halfBuffer(_ values: [Float]) -> any MTLBuffer { padded(values.map(floatToHalf), length: 16) }

    /// A shared buffer of at least `length` bytes that starts with `values` (only their bytes are read).
    func padded<T>(_ values: [T], length: Int) -> any MTLBuffer {
        values.withUnsafeBytes { bytes in
            let b = device.makeBuffer(length: max(bytes.count, length), options: .storageModeShared)!
            if let base = bytes.baseAddress { b.contents().copyMemory(from: base, byteCount: bytes.count) }
            return b
        }
    }

    func read(_ b: any MTLBuffer, _ n: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: b.contents().assumingMemoryBound(to: Float.self), count: n))
    }

    /// One command buffer, encoded through the backend's own sink (so kernels are bound by name).
    func run(_ encode: (EncoderSink) -> Void) throws {
        let cb = try XCTUnwrap(queue.makeCommandBuffer())
        let enc = try XCTUnwrap(cb.makeComputeCommandEncoder())
        encode(EncoderSink(enc))
        enc.endEncoding()
        cb.commit()
        cb.waitUntilCompleted()
        XCTAssertEqual(cb.status, .completed, "\(String(describing: cb.error))")
    }

    func assertClose(_ got: [Float], _ want: [Float], rel: Float, _ what: String) {
        XCTAssertEqual(got.count, want.count)
        let scale = max(want.map(abs).max() ?? 1, 1e-6)
        var worst: Float = 0, at = -1
        for i in 0..<got.count {
            let d = abs(got[i] - want[i])
            if !(d <= worst) { worst = d.isNaN ? .infinity : d; at = i }
        }
        XCTAssertLessThanOrEqual(worst, rel * scale, "\(what): max|Δ| \(worst) at \(at) (got \(at >= 0 ? got[at] : 0), want \(at >= 0 ? want[at] : 0))")
    }

    func countBuffer(_ n: Int) -> any MTLBuffer {
        padded([UInt32(n)], length: 16)
    }

    /// Reference: y[b, r] (=, +=) Σ_k W[r, k] · x̂[b, k], in Double.
    func matvecReference(W: [Float], N: Int, K: Int, x: [Float], nb: Int, y0: [Float], norm: MatvecNorm, normW: [Float],
                         sumsq: [Float], groups: Int, heads: Int, parts: Int = 1, eps: Float, accumulate: Bool) -> [Float] {
        var y = y0
        for b in 0..<nb {
            var xh = (0..<K).map { Double(x[b * K + $0]) }
            if norm == .rms {
                let ms = xh.reduce(0) { $0 + $1 * $1 } / Double(K)
                let s = 1 / (ms + Double(eps)).squareRoot()
                xh = (0..<K).map { xh[$0] * s * Double(normW[$0]) }
            } else if norm == .gatedGroups {
                let gs = K / groups, hpg = heads / groups
                for k in 0..<K {
                    let g = k / gs
                    // the group's heads, each as `parts` partial sums (one per SSM block)
                    let ss = (0..<hpg * parts).reduce(0.0) { $0 + Double(sumsq[(b * heads + g * hpg) * parts + $1]) }
                    xh[k] *= Double(normW[k]) / (ss / Double(gs) + Double(eps)).squareRoot()
                }
            }
            for r in 0..<N {
                var s = 0.0
                for k in 0..<K { s += Double(W[r * K + k]) * xh[k] }
                y[b * N + r] = Float((accumulate ? Double(y0[b * N + r]) : 0) + s)
            }
        }
        return y
    }

    /// The SSM block's partial sums of squares as it leaves them for out_proj, (nb, heads, parts): each
    /// group's Σ x² split into random positive pieces over its heads and parts (with one group the matvec
    /// takes the scale from x itself, so the two must agree).
    func gatedSumsq(_ rng: inout TestRandom, x: [Float], nb: Int, K: Int, groups: Int, heads: Int, parts: Int = 1)
        -> [Float]
    {
        var sumsq = rng.floats(nb * heads * parts, 0.5, 4)
        let hpg = heads / groups, gs = K / groups
        for b in 0..<nb {
            for g in 0..<groups {
                let want = (0..<gs).reduce(0.0) { $0 + Double(x[b * K + g * gs + $1] * x[b * K + g * gs + $1]) }
                let range = (b * heads + g * hpg) * parts..<(b * heads + (g + 1) * hpg) * parts
                let have = range.reduce(0.0) { $0 + Double(sumsq[$1]) }
                for i in range { sumsq[i] = Float(Double(sumsq[i]) * want / have) }
            }
        }
        return sumsq
    }
}
