// The MSL compatibility header's breadth: results of many functions against Swift references.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import Foundation
import XCTest

final class MslCoverageTests: XCTestCase {
    private func scalarReference(x: Float, y: Float, i: Int32, u: UInt32) -> [Float] {
        let v: [Float] = [x, y, 1]
        let len = (v.map { $0 * $0 }.reduce(0, +)).squareRoot()
        return [
            exp(x), exp(x), log(y), y.squareRoot(),
            1 / y.squareRoot(), pow(y, x), tanh(x), exp2(x),
            max(x, y), min(x, 0.5), min(max(y, 1.25), 1.5), x * y + 1,
            x + (y - x) * 0.25, x < 0.5 ? 0 : 1, y, x > y ? y : x,
            Float(abs(i)), Float(max(i, -3)), Float(u.nonzeroBitCount), Float(u.leadingZeroBitCount),
            x, roundToHalf(x), roundToBfloat(y),
            roundToHalf(roundToHalf(x) * 2 + 1),
            x * x + y * y + 1, len, 1 / len, y,
            1, 1, 1, 65504,
            21, 7, 1,
            7 + 100 + 5, // exchange returns the CAS result 7; swapped; then 5
            y - y.rounded(.down), (-x).rounded(.down), (y * 10).rounded(), min(max(y, 0), 1),
        ]
    }

    func testScalarFunctions() throws {
        let gpu = GPU.shared
        let x: Float = 0.6180339, y: Float = 1.4142135, i: Int32 = -7, u: UInt32 = 0x00f0_1234
        let out = gpu.buffer(count: 40, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("msl_coverage.metal", "scalar_functions"))
            enc.setBuffer(gpu.buffer([x, y, Float(i), Float(u)]), offset: 0, index: 0)
            enc.setBuffer(out, offset: 0, index: 1)
            enc.setBuffer(gpu.buffer(count: 4, fill: Int32(0)), offset: 0, index: 2)
            enc.dispatchThreadgroups(MTLSize(width: 1, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 1, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        let result = gpu.read(out, as: Float.self, count: 40)
        let expected = scalarReference(x: x, y: y, i: i, u: u)
        for k in 0..<40 {
            XCTAssertEqual(result[k], expected[k], accuracy: 2e-6 * max(1, abs(expected[k])), "out[\(k)]")
        }
    }

    func testSimdAndQuadFunctions() throws {
        let gpu = GPU.shared
        var v = randomFloats(32, seed: 81)
        v[0] = -abs(v[0]) // lane 0 negative: visible in the ballot and broadcast_first
        let out = gpu.buffer(count: 32 * 8, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("msl_coverage.metal", "simd_functions"))
            enc.setBuffer(gpu.buffer(v), offset: 0, index: 0)
            enc.setBuffer(out, offset: 0, index: 1)
            enc.dispatchThreadgroups(MTLSize(width: 1, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        let r = gpu.read(out, as: Float.self, count: 32 * 8)
        let ballot = (0..<32).reduce(UInt32(0)) { v[$1] > 0 ? $0 | (1 << $1) : $0 } & 0xffff
        for l in 0..<32 {
            let o = Array(r[l * 8..<l * 8 + 8])
            let quad = (l / 4) * 4
            XCTAssertEqual(o[0], v[0...l].reduce(0, +), accuracy: 1e-5, "prefix_inclusive_sum lane \(l)")
            XCTAssertEqual(o[1], v[(l + 5) % 32], "shuffle_rotate_down lane \(l)")
            XCTAssertEqual(o[2], v[0], "broadcast_first lane \(l)")
            XCTAssertEqual(o[3], Float(ballot), "ballot lane \(l)")
            XCTAssertEqual(o[4], 255, "simd_or lane \(l)")
            XCTAssertEqual(o[5], v[quad..<quad + 4].reduce(0, +), accuracy: 1e-6, "quad_sum lane \(l)")
            XCTAssertEqual(o[6], v[quad + 3 - l % 4], "quad_shuffle lane \(l)")
            XCTAssertEqual(o[7], l == 0 ? 1 : 0, "simd_is_first lane \(l)")
        }
    }
}

/// x rounded to the nearest bfloat (round to nearest even), as a float.
func roundToBfloat(_ x: Float) -> Float {
    let u = x.bitPattern
    return Float(bitPattern: (u &+ 0x7fff &+ ((u >> 16) & 1)) & 0xffff_0000)
}
