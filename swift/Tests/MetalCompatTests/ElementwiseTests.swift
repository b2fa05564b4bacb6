// Element-wise kernels: non-multiple grids (dispatchThreads) and MSL vector syntax.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class ElementwiseTests: XCTestCase {
    func testVectorAddCoversExactlyANonMultipleGrid() throws {
        let gpu = GPU.shared
        let n = 1000, spare = 37 // n is not a multiple of the 64-thread threadgroups
        let a = randomFloats(n, seed: 1), b = randomFloats(n, seed: 2)
        let out = gpu.buffer(count: n + spare, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_add"))
            enc.setBuffer(gpu.buffer(a), offset: 0, index: 0)
            enc.setBuffer(gpu.buffer(b), offset: 0, index: 1)
            enc.setBuffer(out, offset: 0, index: 2)
            enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: 64, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        let result = gpu.read(out, as: Float.self, count: n + spare)
        XCTAssertEqual(Array(result[0..<n]), zip(a, b).map { $0 + $1 })
        XCTAssertTrue(result[n...].allSatisfy { $0.isNaN }, "threads beyond the grid wrote results")
    }

    func testBufferOffsetsShiftTheArguments() throws {
        let gpu = GPU.shared
        let n = 45
        let a = randomFloats(n + 3, seed: 3), b = randomFloats(n, seed: 4)
        let out = gpu.buffer(count: n + 1, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_add"))
            enc.setBuffer(gpu.buffer(a), offset: 3 * 4, index: 0)
            enc.setBuffer(gpu.buffer(b), offset: 0, index: 1)
            enc.setBuffer(out, offset: 4, index: 2)
            enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        let result = gpu.read(out, as: Float.self, count: n + 1)
        XCTAssertTrue(result[0].isNaN)
        XCTAssertEqual(Array(result[1...]), (0..<n).map { a[$0 + 3] + b[$0] })
    }

    func testVectorSyntaxAndMath() throws {
        let gpu = GPU.shared
        let n = 77
        var rng = SeededRandom(seed: 5)
        // Components away from zero so that half rounding stays in half's normal range.
        let x = (0..<4 * n).map { _ in Float.random(in: 0.25...2, using: &rng) * (Bool.random(using: &rng) ? 1 : -1) }
        let out = gpu.buffer(count: 4 * n, fill: Float.nan)
        var count = UInt32(n)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_math"))
            enc.setBuffer(gpu.buffer(x), offset: 0, index: 0)
            enc.setBuffer(out, offset: 0, index: 1)
            enc.setBytes(&count, length: 4, index: 2)
            enc.dispatchThreadgroups(MTLSize(width: ceilDiv(n, 32), height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        var expected = [Float]()
        for i in 0..<n {
            let v = Array(x[4 * i..<4 * i + 4])
            let w = [roundToHalf(v[0]), roundToHalf(v[1]), v[2], 1].map { $0 * 0.5 }
            let s = v.map { $0 > 0 ? Float(1) : 0 }
            let r = 1 / (abs(v[3]) + 1).squareRoot()
            let e = Float(exp(Double(v[0] * 0.25)))
            for j in 0..<4 {
                expected.append((w[3 - j] * r + s[j]) + min(max(v[j], -1), 1) + e)
            }
        }
        XCTAssertClose(gpu.read(out, as: Float.self, count: 4 * n), expected, tolerance: 1e-5)
    }
}
