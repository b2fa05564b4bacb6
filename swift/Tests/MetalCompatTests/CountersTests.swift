// MetalCompat's process-wide counters (compat-only API).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class CountersTests: XCTestCase {
    func testCountersFollowTheAPI() throws {
        #if canImport(Metal)
        throw XCTSkip("MetalCompat counters")
        #else
        let gpu = GPU.shared
        let pipeline = try gpu.pipeline("vector_add.metal", "vector_add")
        let before = MetalCompatCounters.snapshot()
        let a = gpu.device.makeBuffer(length: 4000, options: [])!
        let hd = MTLHeapDescriptor()
        hd.size = 1 << 20
        let heap = gpu.device.makeHeap(descriptor: hd)!
        let b = heap.makeBuffer(length: 4000, options: [])!
        let c = heap.makeBuffer(length: 4000, options: [])!
        let cb = gpu.run { enc in
            enc.setComputePipelineState(pipeline)
            enc.setBuffer(a, offset: 0, index: 0)
            enc.setBuffer(b, offset: 0, index: 1)
            enc.setBuffer(c, offset: 0, index: 2)
            for _ in 0..<3 {
                enc.dispatchThreads(MTLSize(width: 1000, height: 1, depth: 1),
                                    threadsPerThreadgroup: MTLSize(width: 64, height: 1, depth: 1))
            }
        }
        XCTAssertCompleted(cb)
        let after = MetalCompatCounters.snapshot()
        XCTAssertEqual(after.commandBuffers - before.commandBuffers, 1)
        XCTAssertEqual(after.computeEncoders - before.computeEncoders, 1)
        XCTAssertEqual(after.dispatches - before.dispatches, 3)
        XCTAssertEqual(after.bufferAllocations - before.bufferAllocations, 3)
        XCTAssertEqual(after.heapAllocations - before.heapAllocations, 1)
        XCTAssertEqual(after.allocatedBytes - before.allocatedBytes, 4000 + (1 << 20)) // heap buffers add nothing
        XCTAssertEqual(after.values.count, 6)
        #endif
    }
}
