// Command buffer rules and misuse: single use, encoder lifetime, missing bindings, limits. MetalCompat
// reports misuse through status/error where Metal's validation layer would stop the process.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class CommandBufferTests: XCTestCase {
    private func addKernel(_ enc: any MTLComputeCommandEncoder, n: Int = 40) throws {
        let gpu = GPU.shared
        enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_add"))
        enc.setBuffer(gpu.buffer(randomFloats(n, seed: 61)), offset: 0, index: 0)
        enc.setBuffer(gpu.buffer(randomFloats(n, seed: 62)), offset: 0, index: 1)
        enc.setBuffer(gpu.buffer(count: n, fill: Float.nan), offset: 0, index: 2)
        enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                            threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
    }

    func testStatusAndCompletionHandler() throws {
        let cb = GPU.shared.queue.makeCommandBuffer()!
        XCTAssertEqual(cb.status, .notEnqueued)
        var handled = false
        cb.addCompletedHandler { _ in handled = true }
        let enc = cb.makeComputeCommandEncoder()!
        try addKernel(enc)
        enc.endEncoding()
        cb.commit()
        cb.waitUntilCompleted()
        XCTAssertCompleted(cb)
        XCTAssertNil(cb.error)
        XCTAssertTrue(handled)
    }

    func testCommittingTwiceIsAnError() throws {
        #if canImport(Metal)
        throw XCTSkip("Metal's validation layer stops the process instead")
        #else
        let cb = try GPU.shared.run { try addKernel($0) }
        XCTAssertCompleted(cb)
        cb.commit()
        XCTAssertEqual(cb.status, .error)
        XCTAssertEqual((cb.error as? MTLCommandBufferError)?.code, .notPermitted)
        XCTAssertTrue(errorMessage(cb).contains("already committed"), errorMessage(cb))
        #endif
    }

    func testEncoderMisuseIsReportedNotTrapped() throws {
        #if canImport(Metal)
        throw XCTSkip("Metal's validation layer stops the process instead")
        #else
        // Encoding after endEncoding.
        let cb = GPU.shared.queue.makeCommandBuffer()!
        let enc = cb.makeComputeCommandEncoder()!
        enc.endEncoding()
        try addKernel(enc)
        cb.commit()
        XCTAssertEqual(cb.status, .error)
        XCTAssertTrue(errorMessage(cb).contains("after endEncoding"), errorMessage(cb))

        // Committing while an encoder is still open.
        let cb2 = GPU.shared.queue.makeCommandBuffer()!
        try addKernel(cb2.makeComputeCommandEncoder()!)
        cb2.commit()
        XCTAssertEqual(cb2.status, .error)
        XCTAssertTrue(errorMessage(cb2).contains("still encoding"), errorMessage(cb2))

        // A dispatch without a pipeline; setBytes over 4 KiB.
        let cb3 = GPU.shared.run { enc in
            var big = [UInt8](repeating: 0, count: 5000)
            enc.setBytes(&big, length: big.count, index: 0)
        }
        XCTAssertEqual(cb3.status, .error)
        XCTAssertTrue(errorMessage(cb3).contains("4096"), errorMessage(cb3))
        let cb4 = GPU.shared.run { enc in
            enc.dispatchThreads(MTLSize(width: 1, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 1, height: 1, depth: 1))
        }
        XCTAssertEqual(cb4.status, .error)
        XCTAssertTrue(errorMessage(cb4).contains("without a compute pipeline state"), errorMessage(cb4))
        #endif
    }

    func testMissingBindingsAndLimitsAreReported() throws {
        #if canImport(Metal)
        throw XCTSkip("undefined behaviour on a GPU; MetalCompat reports it")
        #else
        let gpu = GPU.shared
        // buffer(1) never bound.
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_add"))
            enc.setBuffer(gpu.buffer(count: 8, fill: Float(0)), offset: 0, index: 0)
            enc.setBuffer(gpu.buffer(count: 8, fill: Float(0)), offset: 0, index: 2)
            enc.dispatchThreads(MTLSize(width: 8, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 8, height: 1, depth: 1))
        }
        XCTAssertEqual(cb.status, .error)
        XCTAssertTrue(errorMessage(cb).contains("kernel 'vector_add' uses [[buffer(1)]]"), errorMessage(cb))

        // Threadgroup memory length not set.
        let cb2 = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("reduction.metal", "tree_sum"))
            enc.setBuffer(gpu.buffer(count: 64, fill: Float(0)), offset: 0, index: 0)
            enc.setBuffer(gpu.buffer(count: 1, fill: Float(0)), offset: 0, index: 1)
            var n: UInt32 = 64
            enc.setBytes(&n, length: 4, index: 2)
            enc.dispatchThreadgroups(MTLSize(width: 1, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 64, height: 1, depth: 1))
        }
        XCTAssertEqual(cb2.status, .error)
        XCTAssertTrue(errorMessage(cb2).contains("setThreadgroupMemoryLength was not called"), errorMessage(cb2))

        // Threadgroup over the limit.
        let cb3 = try gpu.run { enc in
            try addKernel(enc, n: 4096)
            enc.dispatchThreads(MTLSize(width: 4096, height: 1, depth: 1), threadsPerThreadgroup: MTLSize(width: 2048, height: 1, depth: 1))
        }
        XCTAssertEqual(cb3.status, .error)
        XCTAssertTrue(errorMessage(cb3).contains("at most 1024 threads"), errorMessage(cb3))
        #endif
    }

    func testStaleOrUnknownSourceIsACompileFailure() throws {
        #if canImport(Metal)
        throw XCTSkip("Metal compiles any source")
        #else
        XCTAssertThrowsError(try GPU.shared.device.makeLibrary(source: "", options: nil))
        let source = TestKernelSources.source(named: "vector_add.metal")! + "\n// edited after generation\n"
        XCTAssertThrowsError(try GPU.shared.device.makeLibrary(source: source, options: nil)) { error in
            XCTAssertEqual((error as? MTLLibraryError)?.code, .compileFailure)
            XCTAssertTrue("\(error)".contains("deno task gen:metal"), "\(error)")
        }
        #endif
    }

    func testFunctionNames() throws {
        let lib = try GPU.shared.library("vector_add.metal")
        XCTAssertEqual(Set(lib.functionNames), ["vector_add", "vector_math"])
        XCTAssertNil(lib.makeFunction(name: "no_such_kernel"))
        let p = try GPU.shared.pipeline("vector_add.metal", "vector_add")
        XCTAssertEqual(p.threadExecutionWidth, 32)
        XCTAssertGreaterThanOrEqual(p.maxTotalThreadsPerThreadgroup, 256)
    }
}
