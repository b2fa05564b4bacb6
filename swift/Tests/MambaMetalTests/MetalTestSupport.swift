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

    func run(_ encode: (any MTLComputeCommandEncoder) -> Void) throws {
        let cb = try XCTUnwrap(queue.makeCommandBuffer())
        let enc = try XCTUnwrap(cb.makeComputeCommandEncoder())
        encode(enc)
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
}
