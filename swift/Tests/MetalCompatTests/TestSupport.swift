// Shared helpers of the MetalCompat tests. Written against the Metal API only: on a Mac the same tests
// run on the real GPU (the compat-only checks say so where they skip).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

/// The device, a queue, and cached libraries of the test kernels.
final class GPU {
    static let shared = GPU()

    let device: any MTLDevice
    let queue: any MTLCommandQueue
    private var libraries: [String: any MTLLibrary] = [:]

    private init() {
        device = MTLCreateSystemDefaultDevice()!
        queue = device.makeCommandQueue()!
    }

    func library(_ file: String) throws -> any MTLLibrary {
        if let l = libraries[file] { return l }
        guard let source = TestKernelSources.source(named: file) else {
            throw XCTSkip("no test kernel file \(file)")
        }
        let l = try device.makeLibrary(source: source, options: nil)
        libraries[file] = l
        return l
    }

    func pipeline(
        _ file: String, _ kernel: String, constants: MTLFunctionConstantValues? = nil, indirect: Bool = false
    ) throws -> any MTLComputePipelineState {
        let lib = try library(file)
        let function: any MTLFunction
        if let constants {
            function = try lib.makeFunction(name: kernel, constantValues: constants)
        } else {
            function = try XCTUnwrap(lib.makeFunction(name: kernel), "no kernel \(kernel) in \(file)")
        }
        if !indirect { return try device.makeComputePipelineState(function: function) }
        let d = MTLComputePipelineDescriptor()
        d.computeFunction = function
        d.supportIndirectCommandBuffers = true
        return try device.makeComputePipelineState(descriptor: d, options: [], reflection: nil)
    }

    func buffer<T>(_ values: [T]) -> any MTLBuffer {
        // At least 16 bytes (no empty buffers), of which only the values' bytes are copied.
        values.withUnsafeBytes { bytes in
            let buffer = device.makeBuffer(length: max(bytes.count, 16), options: [])!
            if let base = bytes.baseAddress { buffer.contents().copyMemory(from: base, byteCount: bytes.count) }
            return buffer
        }
    }

    /// A buffer of `count` elements all set to `fill` (NaN for outputs, so unwritten results show).
    func buffer<T>(count: Int, fill: T) -> any MTLBuffer {
        buffer([T](repeating: fill, count: count))
    }

    func read<T>(_ buffer: any MTLBuffer, as: T.Type, count: Int) -> [T] {
        let p = buffer.contents().bindMemory(to: T.self, capacity: count)
        return Array(UnsafeBufferPointer(start: p, count: count))
    }

    /// Encodes with `encode` into a fresh command buffer, commits and waits; returns the command buffer.
    @discardableResult
    func run(_ encode: (any MTLComputeCommandEncoder) throws -> Void) rethrows -> any MTLCommandBuffer {
        let cb = queue.makeCommandBuffer()!
        let enc = cb.makeComputeCommandEncoder()!
        try encode(enc)
        enc.endEncoding()
        cb.commit()
        cb.waitUntilCompleted()
        return cb
    }
}

/// Asserts that a command buffer completed, showing its error otherwise.
func XCTAssertCompleted(_ cb: any MTLCommandBuffer, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(cb.status, .completed, "command buffer failed: \(String(describing: cb.error))", file: file, line: line)
}

/// The error message of a failed command buffer ("" when it has none).
func errorMessage(_ cb: any MTLCommandBuffer) -> String {
    guard let e = cb.error else { return "" }
    return (e as? LocalizedError)?.errorDescription ?? "\(e)"
}

/// Deterministic random numbers (splitmix64), so failures reproduce.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

func randomFloats(_ n: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1) -> [Float] {
    var rng = SeededRandom(seed: seed)
    return (0..<n).map { _ in Float.random(in: range, using: &rng) }
}

func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }

/// x rounded to the nearest half-precision value (x in half's normal range), as a float.
func roundToHalf(_ x: Float) -> Float {
    let drop: UInt32 = 13
    let bits = x.bitPattern
    let mask: UInt32 = (1 << drop) - 1
    let halfway: UInt32 = 1 << (drop - 1)
    var r = bits & ~mask
    let rest = bits & mask
    if rest > halfway || (rest == halfway && (r >> drop) & 1 == 1) { r += 1 << drop }
    return Float(bitPattern: r)
}

func XCTAssertClose(
    _ a: [Float], _ b: [Float], tolerance: Float, _ message: String = "", file: StaticString = #filePath,
    line: UInt = #line
) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for i in 0..<min(a.count, b.count) where !(abs(a[i] - b[i]) <= tolerance * max(1, abs(b[i]))) {
        XCTFail("\(message) element \(i): \(a[i]) vs expected \(b[i])", file: file, line: line)
        return
    }
}
