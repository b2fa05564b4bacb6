// Threadgroup reductions with barriers, and SIMD-group + threadgroup two-level reductions.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class ReductionTests: XCTestCase {
    /// Sums of consecutive blocks of `block` elements (a partial last block), in double precision.
    private func blockSums(_ x: [Float], block: Int) -> [Float] {
        stride(from: 0, to: x.count, by: block).map { Float(x[$0..<min($0 + block, x.count)].reduce(0.0) { $0 + Double($1) }) }
    }

    func testTreeSumWithBarriers() throws {
        let gpu = GPU.shared
        let n = 3000, threads = 256
        let groups = ceilDiv(n, threads)
        let x = randomFloats(n, seed: 11)
        let sums = gpu.buffer(count: groups, fill: Float.nan)
        var count = UInt32(n)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("reduction.metal", "tree_sum"))
            enc.setBuffer(gpu.buffer(x), offset: 0, index: 0)
            enc.setBuffer(sums, offset: 0, index: 1)
            enc.setBytes(&count, length: 4, index: 2)
            enc.setThreadgroupMemoryLength(threads * 4, index: 0)
            enc.dispatchThreadgroups(MTLSize(width: groups, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: threads, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        XCTAssertClose(gpu.read(sums, as: Float.self, count: groups), blockSums(x, block: threads), tolerance: 1e-4)
    }

    func testSimdSumThenThreadgroupSumWithPartialSimdGroups() throws {
        let gpu = GPU.shared
        let n = 1000, threads = 96 // last threadgroup: 1000 - 10 * 96 = 40 threads, SIMD groups of 32 and 8
        let groups = ceilDiv(n, threads)
        let x = randomFloats(n, seed: 12)
        let sums = gpu.buffer(count: groups, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("reduction.metal", "simd_tree_sum"))
            enc.setBuffer(gpu.buffer(x), offset: 0, index: 0)
            enc.setBuffer(sums, offset: 0, index: 1)
            enc.setThreadgroupMemoryLength(16, index: 0) // threads / 32 = 3 floats, rounded up to 16 bytes
            enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: threads, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        XCTAssertClose(gpu.read(sums, as: Float.self, count: groups), blockSums(x, block: threads), tolerance: 1e-4)
    }
}
