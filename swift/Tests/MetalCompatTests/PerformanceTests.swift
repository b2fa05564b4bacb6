// Costs of MetalCompat's execution model (a correctness tool, but kernels with hundreds of threads and
// many barriers must stay usable). Run with METALCOMPAT_BENCH=1; prints the measurements.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import Foundation
import XCTest

final class PerformanceTests: XCTestCase {
    override func setUpWithError() throws {
        if ProcessInfo.processInfo.environment["METALCOMPAT_BENCH"] != "1" {
            throw XCTSkip("set METALCOMPAT_BENCH=1 to measure")
        }
    }

    /// Best-of-3 wall time of one command buffer with one dispatch.
    private func time(_ kernel: String, iters: UInt32, grid: MTLSize, group: MTLSize, nonuniform: Bool = false) throws -> Double {
        let gpu = GPU.shared
        let pipeline = try gpu.pipeline("bench.metal", kernel)
        let out = gpu.buffer(count: grid.width * group.width, fill: Float(0))
        var best = Double.infinity
        for _ in 0..<3 {
            var n = iters
            let start = DispatchTime.now().uptimeNanoseconds
            let cb = gpu.run { enc in
                enc.setComputePipelineState(pipeline)
                enc.setBuffer(out, offset: 0, index: 0)
                enc.setBytes(&n, length: 4, index: 1)
                if nonuniform { enc.dispatchThreads(grid, threadsPerThreadgroup: group) }
                else { enc.dispatchThreadgroups(grid, threadsPerThreadgroup: group) }
            }
            XCTAssertCompleted(cb)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start))
        }
        return best
    }

    func testCosts() throws {
        let threads = 256, iters: UInt32 = 200
        let one = MTLSize(width: 1, height: 1, depth: 1), tg = MTLSize(width: threads, height: 1, depth: 1)
        let base = try time("barrier_loop", iters: 0, grid: one, group: tg)
        let barrier = try time("barrier_loop", iters: iters, grid: one, group: tg)
        let simd = try time("simd_loop", iters: iters, grid: one, group: tg)
        let perBarrier = (barrier - base) / Double(iters)
        let perSimd = (simd - base) / Double(iters)
        print(String(format: "MetalCompat: threadgroup_barrier, %d threads: %.1f us per barrier (%.1f ns per thread)",
                     threads, perBarrier / 1000, perBarrier / Double(threads)))
        print(String(format: "MetalCompat: simd_sum, %d threads: %.1f us per call (%.1f ns per thread)",
                     threads, perSimd / 1000, perSimd / Double(threads)))
        let empty = try time("empty_kernel", iters: 0, grid: one, group: MTLSize(width: 1, height: 1, depth: 1))
        print(String(format: "MetalCompat: dispatch of 1 thread (commit + wait included): %.1f us", empty / 1000))
        let n = 1 << 20
        let big = try time("empty_kernel", iters: 0, grid: MTLSize(width: n, height: 1, depth: 1), group: tg, nonuniform: true)
        print(String(format: "MetalCompat: dispatch of %d threads (4096 threadgroups): %.1f ms (%.1f ns per thread, %d workers)",
                     n, big / 1e6, big / Double(n), ProcessInfo.processInfo.activeProcessorCount))
    }
}
