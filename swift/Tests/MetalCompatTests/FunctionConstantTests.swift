// Function-constant variants of one kernel, including a buffer argument that only exists when a
// constant is true and a program-scope constant derived from another.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class FunctionConstantTests: XCTestCase {
    private let n = 70

    private func run(useBias: Bool, scale: Float?, offset: UInt32?, bindBias: Bool) throws -> (any MTLCommandBuffer, [Float]) {
        let gpu = GPU.shared
        let constants = MTLFunctionConstantValues()
        var bias = useBias
        constants.setConstantValue(&bias, type: .bool, index: 0)
        if var scale { constants.setConstantValue(&scale, type: .float, withName: "SCALE") }
        if var offset { constants.setConstantValue(&offset, type: .uint, index: 2) }
        let pipeline = try gpu.pipeline("function_constants.metal", "scale_bias", constants: constants)
        let out = gpu.buffer(count: n, fill: Float.nan)
        let cb = gpu.run { enc in
            enc.setComputePipelineState(pipeline)
            enc.setBuffer(gpu.buffer(randomFloats(n, seed: 31)), offset: 0, index: 0)
            if bindBias { enc.setBuffer(gpu.buffer(randomFloats(n, seed: 32)), offset: 0, index: 1) }
            enc.setBuffer(out, offset: 0, index: 2)
            enc.dispatchThreads(MTLSize(width: n, height: 1, depth: 1),
                                threadsPerThreadgroup: MTLSize(width: 32, height: 1, depth: 1))
        }
        return (cb, gpu.read(out, as: Float.self, count: n))
    }

    func testVariants() throws {
        let x = randomFloats(n, seed: 31), b = randomFloats(n, seed: 32)
        let variants: [(Bool, Float?, UInt32?)] = [(true, 2.5, nil), (false, nil, nil), (true, nil, 7), (false, -1, 3)]
        for (useBias, scale, offset) in variants {
            let (cb, out) = try run(useBias: useBias, scale: scale, offset: offset, bindBias: useBias)
            XCTAssertCompleted(cb)
            let expected = (0..<n).map { i in
                x[i] * (scale ?? 1) + (useBias ? b[i] : 0) + Float(offset ?? 0)
            }
            XCTAssertClose(out, expected, tolerance: 1e-6, "USE_BIAS \(useBias), SCALE \(String(describing: scale))")
        }
    }

    func testBufferRequiredOnlyWhenItsConstantIsTrue() throws {
        // USE_BIAS false: buffer(1) is not an argument of the specialized kernel and may stay unbound.
        XCTAssertCompleted(try run(useBias: false, scale: 1, offset: nil, bindBias: false).0)
        #if !canImport(Metal)
        // USE_BIAS true without the buffer: an error naming the index (the GPU would read garbage).
        let (cb, _) = try run(useBias: true, scale: 1, offset: nil, bindBias: false)
        XCTAssertEqual(cb.status, .error)
        XCTAssertTrue(errorMessage(cb).contains("[[buffer(1)]]"), errorMessage(cb))
        #endif
    }

    func testConstantOfTheWrongTypeIsRejected() throws {
        let constants = MTLFunctionConstantValues()
        var wrong: Int32 = 1
        constants.setConstantValue(&wrong, type: .int, index: 1) // SCALE is a float
        XCTAssertThrowsError(try GPU.shared.pipeline("function_constants.metal", "scale_bias", constants: constants))
    }

    /// Compile options other than macros are accepted (a library compiled with safe math, as the backend
    /// compiles ssd_prefill.metal); macros still are not, since the kernels are compiled ahead of time.
    func testCompileOptionsMathModeIsAcceptedMacrosAreNot() throws {
        let gpu = GPU.shared
        let source = try XCTUnwrap(TestKernelSources.source(named: "function_constants.metal"))
        let safe = MTLCompileOptions()
        safe.mathMode = .safe
        XCTAssertNotNil(try gpu.device.makeLibrary(source: source, options: safe).makeFunction(name: "scale_bias"))
        let legacy = MTLCompileOptions()
        legacy.fastMathEnabled = false
        XCTAssertEqual(legacy.mathMode, .safe)
        XCTAssertNotNil(try gpu.device.makeLibrary(source: source, options: legacy).makeFunction(name: "scale_bias"))
        let macros = MTLCompileOptions()
        macros.preprocessorMacros = ["X": NSNumber(value: 1)]
        XCTAssertThrowsError(try gpu.device.makeLibrary(source: source, options: macros))
    }
}
