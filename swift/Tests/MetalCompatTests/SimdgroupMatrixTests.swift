// 8x8 SIMD-group matrix products against a plain Swift matrix product.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class SimdgroupMatrixTests: XCTestCase {
    func testMultiplyAccumulate8x8() throws {
        let gpu = GPU.shared
        let a = randomFloats(64, seed: 41), b = randomFloats(64, seed: 42), c = randomFloats(64, seed: 43)
        let d = gpu.buffer(count: 64, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("simdgroup_matrix.metal", "matmul8x8"))
            enc.setBuffer(gpu.buffer(a), offset: 0, index: 0)
            enc.setBuffer(gpu.buffer(b), offset: 0, index: 1)
            enc.setBuffer(gpu.buffer(c), offset: 0, index: 2)
            enc.setBuffer(d, offset: 0, index: 3)
            enc.dispatchThreadgroups(MTLSize(width: 1, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        var expected = [Float](repeating: 0, count: 64)
        for r in 0..<8 {
            for col in 0..<8 {
                expected[r * 8 + col] = (0..<8).reduce(c[r * 8 + col]) { $0 + a[r * 8 + $1] * b[$1 * 8 + col] }
            }
        }
        XCTAssertClose(gpu.read(d, as: Float.self, count: 64), expected, tolerance: 1e-5)
    }

    func testPartialSimdGroupIsReported() throws {
        #if canImport(Metal)
        throw XCTSkip("undefined on a GPU; MetalCompat reports it")
        #else
        let gpu = GPU.shared
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("simdgroup_matrix.metal", "matmul8x8"))
            for i in 0..<4 { enc.setBuffer(gpu.buffer(count: 64, fill: Float(1)), offset: 0, index: i) }
            enc.dispatchThreadgroups(MTLSize(width: 1, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 16, height: 1, depth: 1))
        }
        XCTAssertEqual(cb.status, .error)
        XCTAssertTrue(errorMessage(cb).contains("fewer than 32 active lanes"), errorMessage(cb))
        #endif
    }

    func testTiledHalfProductWithTransposedLoads() throws {
        let gpu = GPU.shared
        let m = 32, nCols = 48, k = 24
        // Inputs exactly representable in half: multiples of 1/8 in [-2, 2].
        var rng = SeededRandom(seed: 44)
        let a = (0..<m * k).map { _ in Float(Int.random(in: -16...16, using: &rng)) / 8 }
        let bt = (0..<nCols * k).map { _ in Float(Int.random(in: -16...16, using: &rng)) / 8 }
        let out = gpu.buffer(count: m * nCols, fill: Float.nan)
        var mnk = (UInt32(m), UInt32(nCols), UInt32(k), UInt32(0)) // uint3 is 16 bytes
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("simdgroup_matrix.metal", "matmul_tiled"))
            enc.setBuffer(gpu.buffer(a.map { halfBits($0) }), offset: 0, index: 0)
            enc.setBuffer(gpu.buffer(bt.map { halfBits($0) }), offset: 0, index: 1)
            enc.setBuffer(out, offset: 0, index: 2)
            enc.setBytes(&mnk, length: 16, index: 3)
            enc.setThreadgroupMemoryLength(2 * 16 * 8 * 2, index: 0)
            enc.dispatchThreadgroups(MTLSize(width: nCols / 16, height: m / 16, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 128, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        var expected = [Float](repeating: 0, count: m * nCols)
        for r in 0..<m {
            for col in 0..<nCols {
                expected[r * nCols + col] = (0..<k).reduce(0) { $0 + a[r * k + $1] * bt[col * k + $1] }
            }
        }
        XCTAssertClose(gpu.read(out, as: Float.self, count: m * nCols), expected, tolerance: 1e-6)
    }
}

/// The IEEE half bits of a float that half represents exactly (normal range or zero).
func halfBits(_ x: Float) -> UInt16 {
    if x == 0 { return 0 }
    let bits = x.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xff) - 127 + 15
    let mantissa = UInt16((bits >> 13) & 0x3ff)
    return sign | UInt16(exponent) << 10 | mantissa
}
