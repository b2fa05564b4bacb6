// Two threads, each with its own queue, dispatching specializations of the same kernel at once: the
// function-constant values of one must never leak into the other's dispatches.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import Foundation
import XCTest

final class ConcurrencyTests: XCTestCase {
    func testConcurrentEnginesWithDifferentConstants() throws {
        let gpu = GPU.shared
        let n = 300
        let x = randomFloats(n, seed: 101)
        var pipelines: [any MTLComputePipelineState] = []
        for scale in [Float(2), Float(-3)] {
            let c = MTLFunctionConstantValues()
            var useBias = false, s = scale
            c.setConstantValue(&useBias, type: .bool, index: 0)
            c.setConstantValue(&s, type: .float, index: 1)
            pipelines.append(try gpu.pipeline("function_constants.metal", "scale_bias", constants: c))
        }
        var failures = [String](repeating: "", count: 2)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            let queue = gpu.device.makeCommandQueue()!
            let xb = gpu.buffer(x)
            let scale: Float = t == 0 ? 2 : -3
            for round in 0..<40 {
                let out = gpu.buffer(count: n, fill: Float.nan)
                let cb = queue.makeCommandBuffer()!
                let enc = cb.makeComputeCommandEncoder()!
                enc.setComputePipelineState(pipelines[t])
                enc.setBuffer(xb, offset: 0, index: 0)
                enc.setBuffer(out, offset: 0, index: 2)
                enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                                    threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
                enc.endEncoding()
                cb.commit()
                cb.waitUntilCompleted()
                let result = gpu.read(out, as: Float.self, count: n)
                if cb.status != .completed || result != x.map({ $0 * scale }) {
                    lock.lock()
                    failures[t] = "thread \(t), round \(round): \(String(describing: cb.error))"
                    lock.unlock()
                    return
                }
            }
        }
        XCTAssertEqual(failures, ["", ""])
    }
}
