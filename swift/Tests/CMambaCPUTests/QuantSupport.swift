// Quantized matrices in the contract's form (docs/quantization.md) with their dequantized float32
// values, made from a seeded generator, for the kernel and model tests.
import CMambaCPU

/// A small deterministic generator, so failures reproduce.
struct Rng {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state >> 11
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func float(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() % 16_777_216) / 16_777_216
    }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in float(lo, hi) } }
}

/// IEEE half bits → float, for finite values (the tests make only those).
func halfBitsToFloat(_ h: UInt16) -> Float {
    let sign: Float = h & 0x8000 != 0 ? -1 : 1
    let e = Int((h >> 10) & 0x1F), m = Float(h & 0x3FF)
    if e == 0 { return sign * m * 0x1p-24 }
    return sign * (1 + m / 1024) * Float(sign: .plus, exponent: e - 15, significand: 1)
}

/// A half near a float in half's range, truncated; ±0 below its normal range (the tests only need
/// some half value).
func floatToHalfBits(_ f: Float) -> UInt16 {
    let b = f.bitPattern
    let sign = UInt16((b >> 16) & 0x8000)
    let e = Int((b >> 23) & 0xFF) - 127 + 15
    if e <= 0 { return sign }
    precondition(e < 31, "value \(f) outside the half range used by the tests")
    return sign | UInt16(e) << 10 | UInt16((b >> 13) & 0x3FF)
}

/// A (rows, cols) matrix quantized with `bits` bits in groups of `groupSize`, scales and biases as f16
/// or f32, and `dense` = fmaf(scale, q, bias) as float32, the reference every kernel is held to.
final class QuantMatrix {
    let rows: Int, cols: Int, bits: Int, groupSize: Int, f32Scales: Bool
    let codes: UnsafeMutablePointer<UInt8>
    let scales: UnsafeMutableRawPointer, biases: UnsafeMutableRawPointer
    private(set) var dense: [Float]

    /// Random codes; per group a random scale (either sign) of about `range` / 2^bits and a bias that
    /// centres the codes (as MLX's quantization does: bias ≈ −scale · 2^(bits−1)), or with
    /// `randomBiases` half of the time a random one.
    init(rows: Int, cols: Int, bits: Int, groupSize: Int, f32Scales: Bool, range: Float = 1, randomBiases: Bool = true,
         rng: inout Rng) {
        precondition(cols % groupSize == 0 && (bits == 4 || bits == 8))
        self.rows = rows
        self.cols = cols
        self.bits = bits
        self.groupSize = groupSize
        self.f32Scales = f32Scales
        let codeBytes = rows * cols * bits / 8, groups = rows * cols / groupSize, ss = f32Scales ? 4 : 2
        codes = .allocate(capacity: max(codeBytes, 1))
        scales = .allocate(byteCount: max(groups * ss, 4), alignment: 16)
        biases = .allocate(byteCount: max(groups * ss, 4), alignment: 16)
        for i in 0..<codeBytes { codes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let levels = Float((1 << bits) - 1)
        var s = [Float](repeating: 0, count: groups), b = [Float](repeating: 0, count: groups)
        for g in 0..<groups {
            var scale = rng.float(0.25, 1) * range / levels * (rng.int(4) == 0 ? -1 : 1)
            let centred = !randomBiases || rng.int(2) == 0
            var bias = centred ? -scale * (levels / 2) * rng.float(0.9, 1.1) : rng.float(-range, range)
            if f32Scales {
                scales.storeBytes(of: scale, toByteOffset: 4 * g, as: Float.self)
                biases.storeBytes(of: bias, toByteOffset: 4 * g, as: Float.self)
            } else {
                let sh = floatToHalfBits(scale), bh = floatToHalfBits(bias)
                scale = halfBitsToFloat(sh)
                bias = halfBitsToFloat(bh)
                scales.storeBytes(of: sh, toByteOffset: 2 * g, as: UInt16.self)
                biases.storeBytes(of: bh, toByteOffset: 2 * g, as: UInt16.self)
            }
            s[g] = scale
            b[g] = bias
        }
        dense = [Float](repeating: 0, count: rows * cols)
        let perRow = cols / groupSize
        for r in 0..<rows {
            for c in 0..<cols {
                let g = r * perRow + c / groupSize
                dense[r * cols + c] = b[g].addingProduct(s[g], Float(code(r, c))) // one rounding, as fmaf
            }
        }
    }

    deinit {
        codes.deallocate()
        scales.deallocate()
        biases.deallocate()
    }

    func code(_ r: Int, _ c: Int) -> Int {
        if bits == 8 { return Int(codes[r * cols + c]) }
        let byte = codes[(r * cols + c) / 2]
        return Int(c % 2 == 0 ? byte & 15 : byte >> 4)
    }

    var matrix: mcpu_matrix {
        mcpu_matrix(data: UnsafeRawPointer(codes), dtype: Int32(bits == 8 ? MCPU_Q8 : MCPU_Q4), rows: Int32(rows),
                    cols: Int32(cols), group_size: Int32(groupSize),
                    scale_dtype: Int32(f32Scales ? MCPU_F32 : MCPU_F16), scales: UnsafeRawPointer(scales),
                    biases: UnsafeRawPointer(biases))
    }
}

/// Float32 storage that outlives the descriptors pointing into it.
final class FloatBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(from: values, count: count)
    }
    deinit { pointer.deallocate() }

    var matrix: (Int, Int) -> mcpu_matrix {
        { rows, cols in
            mcpu_matrix(data: UnsafeRawPointer(self.pointer), dtype: Int32(MCPU_F32), rows: Int32(rows),
                        cols: Int32(cols), group_size: 0, scale_dtype: 0, scales: nil, biases: nil)
        }
    }
}

/// max |a − b| over all elements, NaN counting as infinitely far.
func maxAbsDiff(_ a: [Float], _ b: [Double]) -> Double {
    var d = 0.0
    for i in a.indices {
        let x = abs(Double(a[i]) - b[i])
        if !(x <= d) { d = x.isNaN ? .infinity : x }
    }
    return d
}
