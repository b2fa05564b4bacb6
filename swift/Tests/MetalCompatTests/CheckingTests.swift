// Checking mode: threadgroup-memory hazards are reported with the kernel, thread and byte offset; the
// correct twin of each kernel passes. Compat-only (a GPU silently computes garbage instead).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class CheckingTests: XCTestCase {
    #if !canImport(Metal)
    private var wasEnabled = false
    override func setUp() {
        wasEnabled = MetalCompatChecking.isEnabled
        MetalCompatChecking.isEnabled = true
    }
    override func tearDown() { MetalCompatChecking.isEnabled = wasEnabled } // METALCOMPAT_CHECK=1 runs stay checked
    #endif

    private let threads = 64, groups = 3

    private func run(_ kernel: String) throws -> (any MTLCommandBuffer, [Float], [Float]) {
        let gpu = GPU.shared
        let n = threads * groups
        let x = randomFloats(n, seed: 51)
        let out = gpu.buffer(count: n, fill: Float.nan)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("hazards.metal", kernel))
            enc.setBuffer(gpu.buffer(x), offset: 0, index: 0)
            enc.setBuffer(out, offset: 0, index: 1)
            enc.setThreadgroupMemoryLength(threads * 4, index: 0)
            enc.dispatchThreadgroups(MTLSize(width: groups, height: 1, depth: 1),
                                     threadsPerThreadgroup: MTLSize(width: threads, height: 1, depth: 1))
        }
        return (cb, x, gpu.read(out, as: Float.self, count: n))
    }

    func testCorrectBarrierPasses() throws {
        let (cb, x, out) = try run("neighbour_with_barrier")
        XCTAssertCompleted(cb)
        let expected = (0..<threads * groups).map { i in x[(i / threads) * threads + (i % threads + 1) % threads] }
        XCTAssertEqual(out, expected)
    }

    func testMissingBarrierIsFlagged() throws {
        #if canImport(Metal)
        throw XCTSkip("checking mode is MetalCompat's")
        #else
        // Thread 0 reads thread 1's element before thread 1 writes it: the write finds the earlier read.
        let (cb, _, _) = try run("neighbour_missing_barrier")
        XCTAssertEqual(cb.status, .error)
        let m = errorMessage(cb)
        XCTAssertTrue(m.contains("kernel 'neighbour_missing_barrier'"), m)
        XCTAssertTrue(m.contains("thread 1:") && m.contains("write of [[threadgroup(0)]] at byte offset 4"), m)
        XCTAssertTrue(m.contains("that thread 0 read") && m.contains("missing barrier"), m)
        #endif
    }

    func testReadOfAnotherThreadsWriteSinceTheLastBarrierIsFlagged() throws {
        #if canImport(Metal)
        throw XCTSkip("checking mode is MetalCompat's")
        #else
        // Thread 1 reads thread 0's element, written in the same barrier interval.
        let (cb, _, _) = try run("previous_missing_barrier")
        XCTAssertEqual(cb.status, .error)
        let m = errorMessage(cb)
        XCTAssertTrue(m.contains("kernel 'previous_missing_barrier'"), m)
        XCTAssertTrue(m.contains("thread 1:") && m.contains("read of [[threadgroup(0)]] at byte offset 0"), m)
        XCTAssertTrue(m.contains("that thread 0 wrote") && m.contains("missing barrier"), m)
        #endif
    }

    func testUninitializedReadIsFlagged() throws {
        #if canImport(Metal)
        throw XCTSkip("checking mode is MetalCompat's")
        #else
        let (cb, _, _) = try run("uninitialized_read")
        XCTAssertEqual(cb.status, .error)
        let m = errorMessage(cb)
        XCTAssertTrue(m.contains("uninitialized_read") && m.contains("no thread has written"), m)
        XCTAssertTrue(m.contains("thread 0:") && m.contains("byte offset 4"), m)
        #endif
    }

    func testOutOfBoundsThreadgroupAccessIsFlagged() throws {
        #if canImport(Metal)
        throw XCTSkip("checking mode is MetalCompat's")
        #else
        let (cb, _, _) = try run("out_of_bounds")
        XCTAssertEqual(cb.status, .error)
        let m = errorMessage(cb)
        XCTAssertTrue(m.contains("out_of_bounds") && m.contains("past its length 256"), m)
        XCTAssertTrue(m.contains("thread 63:") && m.contains("write"), m)
        #endif
    }

    func testDeviceBufferOverrunIsFlagged() throws {
        #if canImport(Metal)
        throw XCTSkip("checking mode is MetalCompat's")
        #else
        // vector_add has no bounds check: a grid rounded up to whole threadgroups runs past the buffers.
        let gpu = GPU.shared
        let n = 100
        let run = {
            try gpu.run { enc in
                enc.setComputePipelineState(try gpu.pipeline("vector_add.metal", "vector_add"))
                enc.setBuffer(gpu.buffer(randomFloats(n, seed: 53)), offset: 0, index: 0)
                enc.setBuffer(gpu.buffer(randomFloats(n, seed: 54)), offset: 0, index: 1)
                enc.setBuffer(gpu.device.makeBuffer(length: n * 4, options: [])!, offset: 0, index: 2)
                enc.dispatchThreadgroups(MTLSize(width: ceilDiv(n, 32), height: 1, depth: 1),
                                         threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
            }
        }
        let cb = try run()
        XCTAssertEqual(cb.status, .error)
        let m = errorMessage(cb)
        XCTAssertTrue(m.contains("kernel 'vector_add', threadgroup (3, 0, 0), thread 4: 4-byte read at byte 400 of [[buffer(0)]]"), m)
        XCTAssertTrue(m.contains("past the end of the 400 bytes bound there"), m)
        // Unchecked, the overrun lands in the buffers' own slack: nothing else is corrupted.
        MetalCompatChecking.isEnabled = false
        XCTAssertCompleted(try run())
        #endif
    }

    func testCheckingOffRunsTheUncheckedKernel() throws {
        #if canImport(Metal)
        throw XCTSkip("checking mode is MetalCompat's")
        #else
        MetalCompatChecking.isEnabled = false
        let (cb, _, _) = try run("neighbour_missing_barrier")
        XCTAssertCompleted(cb) // the hazard goes unnoticed without checking, as on a GPU
        #endif
    }
}
