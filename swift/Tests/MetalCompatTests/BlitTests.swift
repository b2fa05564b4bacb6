// Blit copies and fills, ordered with the dispatches of the same command buffer.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class BlitTests: XCTestCase {
    func testCopyAndFillInCommandOrder() throws {
        let gpu = GPU.shared
        let n = 64
        let a = randomFloats(n, seed: 91), b = randomFloats(n, seed: 92)
        let abuf = gpu.buffer(a), bbuf = gpu.buffer(b), out = gpu.buffer(count: n, fill: Float.nan)
        let copy = gpu.buffer(count: n, fill: Float.nan)
        let cb = gpu.queue.makeCommandBuffer()!
        let blit = cb.makeBlitCommandEncoder()!
        blit.fill(buffer: abuf, range: 0..<16, value: 0) // a[0..<4] = 0 before the kernel reads a
        blit.endEncoding()
        let enc = cb.makeComputeCommandEncoder()!
        enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_add"))
        enc.setBuffer(abuf, offset: 0, index: 0)
        enc.setBuffer(bbuf, offset: 0, index: 1)
        enc.setBuffer(out, offset: 0, index: 2)
        enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
        enc.endEncoding()
        let blit2 = cb.makeBlitCommandEncoder()!
        blit2.copy(from: out, sourceOffset: 8, to: copy, destinationOffset: 0, size: (n - 2) * 4)
        blit2.endEncoding()
        cb.commit()
        cb.waitUntilCompleted()
        XCTAssertCompleted(cb)
        let sums = (0..<n).map { ($0 < 4 ? 0 : a[$0]) + b[$0] }
        XCTAssertEqual(gpu.read(out, as: Float.self, count: n), sums)
        let copied = gpu.read(copy, as: Float.self, count: n)
        XCTAssertEqual(Array(copied[0..<n - 2]), Array(sums[2...]))
        XCTAssertTrue(copied[(n - 2)...].allSatisfy { $0.isNaN })
    }

    func testFillRangeRulesOfMacOS() throws {
        #if canImport(Metal)
        throw XCTSkip("Metal's validation layer stops the process instead")
        #else
        let gpu = GPU.shared
        let cb = gpu.queue.makeCommandBuffer()!
        let blit = cb.makeBlitCommandEncoder()!
        blit.fill(buffer: gpu.buffer(count: 16, fill: UInt8(1)), range: 1..<7, value: 0)
        blit.endEncoding()
        cb.commit()
        XCTAssertEqual(cb.status, .error)
        XCTAssertTrue(errorMessage(cb).contains("multiples of 4"), errorMessage(cb))
        #endif
    }
}
