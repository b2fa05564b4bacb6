// SIMD-group functions against lane-by-lane references, including a partial SIMD group, and the
// divergence MetalCompat reports instead of hanging.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class SimdTests: XCTestCase {
    func testSimdFunctionsOverFullAndPartialSimdGroups() throws {
        let gpu = GPU.shared
        let threads = 48, groups = 3 // SIMD groups of 32 and 16 lanes
        let n = threads * groups
        var x = randomFloats(n, seed: 21)
        for i in 0..<32 { x[i] = abs(x[i]) + 0.01 } // one SIMD group where simd_all(v > 0) holds
        let out = gpu.buffer(count: n * 10, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("simd_ops.metal", "simd_ops"))
            enc.setBuffer(gpu.buffer(x), offset: 0, index: 0)
            enc.setBuffer(out, offset: 0, index: 1)
            enc.dispatchThreadgroups(MTLSize(width: groups, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: threads, height: 1, depth: 1))
        }
        XCTAssertCompleted(cb)
        let r = gpu.read(out, as: Float.self, count: n * 10)
        for g in 0..<groups {
            for sg in 0..<2 {
                let base = g * threads + sg * 32
                let k = min(32, threads - sg * 32) // active lanes
                let v = Array(x[base..<base + k])
                let sum = v.reduce(0, +)
                for l in 0..<k {
                    let o = Array(r[(base + l) * 10..<(base + l) * 10 + 10])
                    let at = "threadgroup \(g), SIMD group \(sg), lane \(l)"
                    XCTAssertEqual(o[0], sum, accuracy: 1e-5, "simd_sum \(at)")
                    XCTAssertEqual(o[1], v.max()!, "simd_max \(at)")
                    XCTAssertEqual(o[2], v.min()!, "simd_min \(at)")
                    if l ^ 1 < k { XCTAssertEqual(o[3], v[l ^ 1], "simd_shuffle_xor \(at)") }
                    // Lanes with no source lane keep their value (MSL); inactive sources are undefined.
                    if l + 1 >= 32 { XCTAssertEqual(o[4], v[l], "simd_shuffle_down \(at)") }
                    else if l + 1 < k { XCTAssertEqual(o[4], v[l + 1], "simd_shuffle_down \(at)") }
                    XCTAssertEqual(o[5], l >= 2 ? v[l - 2] : v[l], "simd_shuffle_up \(at)")
                    XCTAssertEqual(o[6], v[3], "simd_broadcast \(at)")
                    if 31 - l < k { XCTAssertEqual(o[7], v[31 - l], "simd_shuffle \(at)") }
                    XCTAssertEqual(o[8], v[0..<l].reduce(0, +), accuracy: 1e-5, "simd_prefix_exclusive_sum \(at)")
                    XCTAssertEqual(o[9], v.allSatisfy { $0 > 0 } ? 1 : 0, "simd_all \(at)")
                }
            }
        }
    }

    func testDivergentSimdFunctionsAreReported() throws {
        #if canImport(Metal)
        throw XCTSkip("undefined behaviour on a GPU; MetalCompat reports it")
        #else
        let gpu = GPU.shared
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("simd_ops.metal", "divergent_simd"))
            enc.setBuffer(gpu.buffer(count: 64, fill: Float.nan), offset: 0, index: 0)
            enc.dispatchThreadgroups(MTLSize(width: 1, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 64, height: 1, depth: 1))
        }
        XCTAssertEqual(cb.status, .error)
        let message = errorMessage(cb)
        XCTAssertTrue(message.contains("divergent_simd") && message.contains("different SIMD-group functions"), message)
        #endif
    }

    func testBarrierInDivergentControlFlowIsADeadlockNotAHang() throws {
        #if canImport(Metal)
        throw XCTSkip("would hang a GPU until the watchdog fires")
        #else
        let gpu = GPU.shared
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("simd_ops.metal", "divergent_barrier"))
            enc.setBuffer(gpu.buffer(count: 64, fill: Float.nan), offset: 0, index: 0)
            enc.dispatchThreadgroups(MTLSize(width: 2, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: 64, height: 1, depth: 1))
        }
        XCTAssertEqual(cb.status, .error)
        XCTAssertEqual((cb.error as? MTLCommandBufferError)?.code, .timeout)
        let message = errorMessage(cb)
        XCTAssertTrue(message.contains("divergent_barrier") && message.contains("deadlock"), message)
        XCTAssertTrue(message.contains("2 thread(s) wait at threadgroup_barrier"), message)
        #endif
    }
}
