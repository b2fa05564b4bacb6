// Device and threadgroup atomics under threadgroups that run on several worker threads at once.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class AtomicTests: XCTestCase {
    func testCountsAndFloatSum() throws {
        let gpu = GPU.shared
        let n = 5000, threads = 64
        let x = (0..<n).map { Float($0 % 7) } // small integers: the float sum is exact in any order
        let counters = gpu.buffer(count: 2, fill: UInt32(0))
        let total = gpu.buffer(count: 1, fill: Float(0))
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("atomics.metal", "count_threads"))
            enc.setBuffer(counters, offset: 0, index: 0)
            enc.setBuffer(total, offset: 0, index: 1)
            enc.setBuffer(gpu.buffer(x), offset: 0, index: 2)
            enc.setThreadgroupMemoryLength(16, index: 0)
            enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: threads, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        XCTAssertEqual(gpu.read(counters, as: UInt32.self, count: 2), [UInt32(n), UInt32(n)])
        XCTAssertEqual(gpu.read(total, as: Float.self, count: 1)[0], x.reduce(0, +))
    }
}
