// Affine group quantization, the one in-memory form of every quantized matrix (docs/quantization.md):
// w[r, c] = fma(scale[r, c / G], q[r, c], bias[r, c / G]) in float32. This file holds the form's
// arithmetic: MLX's quantizer (load-time `dtype: "q8" | "q4"` and `deno task quantize` both call it,
// so both give the same bytes) and the reference dequantization the tests and conversions use.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// Bits per code and columns per group of a quantized matrix.
struct QuantSpec: Equatable {
    let bits: Int       // 4 or 8
    let groupSize: Int  // 16, 32, 64 or 128

    /// Bytes of codes in one row of `cols` columns.
    func codeBytes(cols: Int) -> Int { cols * bits / 8 }
}

/// Owned, 64-byte-aligned bytes, freed with their owner.
final class OwnedBytes {
    let pointer: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) {
        self.count = count
        pointer = .allocate(byteCount: max(count, 1), alignment: 64)
    }

    deinit { pointer.deallocate() }
}

/// The code of element `c` of a row of codes (4-bit: column 2j in the low nibble of byte j).
@inline(__always)
func quantCode(_ row: UnsafePointer<UInt8>, _ c: Int, bits: Int) -> UInt8 {
    bits == 8 ? row[c] : (row[c >> 1] >> (UInt8(c & 1) << 2)) & 0xF
}

enum AffineQuantizer {
    /// MLX's affine quantization of one group (mlx/backend/cpu/quantized.cpp `quantize`, the same
    /// steps as the `fallback` in mlx/ops.cpp `affine_quantize`), in float32:
    ///   scale = max((max − min) / (2^bits − 1), 1e-7), negated unless |min| > |max|;
    ///   edge  = min if |min| > |max| else max;   q0 = rint(edge / scale);
    ///   if q0 ≠ 0: scale = edge / q0, bias = edge   else bias = 0;
    ///   q     = clamp(rint((w − bias) / scale), 0, 2^bits − 1).
    /// So the edge value of largest magnitude is reproduced exactly, and scales can be negative.
    /// Codes are computed with the float32 scale and bias; the caller rounds the stored scale and
    /// bias (to f16) afterwards, as MLX does when the weights are f16.
    @inline(__always)
    static func group(_ w: UnsafePointer<Float>, count: Int, bits: Int, codes: UnsafeMutablePointer<UInt8>)
        -> (scale: Float, bias: Float)
    {
        let nBins = Float((1 << bits) - 1)
        var lo = Float.infinity, hi = -Float.infinity
        for j in 0..<count {
            lo = min(lo, w[j])
            hi = max(hi, w[j])
        }
        let useMin = abs(lo) > abs(hi)
        var scale = max((hi - lo) / nBins, 1e-7)
        if !useMin { scale = -scale }
        let edge = useMin ? lo : hi
        let q0 = (edge / scale).rounded(.toNearestOrEven)
        var bias: Float = 0
        if q0 != 0 {
            scale = edge / q0
            bias = edge
        }
        for j in 0..<count {
            let q = ((w[j] - bias) / scale).rounded(.toNearestOrEven)
            codes[j] = UInt8(min(max(q, 0), nBins))
        }
        return (scale, bias)
    }

    /// Quantizes a row-major (rows, cols) matrix whose element i is `value(i)` (cols % groupSize == 0).
    /// Scales and biases are stored as f16 (MLX's type for f16 weights); a matrix whose scales or
    /// biases f16 cannot hold (|w| beyond f16's range) keeps them in f32 instead.
    /// Rows are split over threads; every row's result depends only on that row. A row holding NaN or
    /// ±inf is refused (`FORMAT`, naming the tensor and row): no code and scale represent it, and
    /// converting its NaN quotient to a code would trap.
    static func quantize(rows: Int, cols: Int, spec: QuantSpec, name: String, source: String,
                         row fill: @escaping (Int, UnsafeMutablePointer<Float>) -> Void) throws -> WeightMatrix {
        let G = spec.groupSize, groups = cols / G, rowBytes = spec.codeBytes(cols: cols)
        let codes = OwnedBytes(count: rows * rowBytes)
        let scales32 = OwnedBytes(count: rows * groups * 4), biases32 = OwnedBytes(count: rows * groups * 4)
        let s32 = scales32.pointer.assumingMemoryBound(to: Float.self)
        let b32 = biases32.pointer.assumingMemoryBound(to: Float.self)
        let out = codes.pointer.assumingMemoryBound(to: UInt8.self)
        let blocks = min(rows, 64)
        // First row of each block holding a non-finite value (rows when none); each block writes its own.
        let nonFinite = UnsafeMutablePointer<Int>.allocate(capacity: max(blocks, 1))
        nonFinite.initialize(repeating: rows, count: max(blocks, 1))
        defer { nonFinite.deallocate() }
        DispatchQueue.concurrentPerform(iterations: blocks) { blk in
            let w = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            let q = UnsafeMutablePointer<UInt8>.allocate(capacity: cols)
            defer { w.deallocate(); q.deallocate() }
            var r = blk * rows / blocks
            while r < (blk + 1) * rows / blocks {
                fill(r, w)
                guard (0..<cols).allSatisfy({ w[$0].isFinite }) else {
                    nonFinite[blk] = r
                    return
                }
                for g in 0..<groups {
                    let (s, b) = group(w + g * G, count: G, bits: spec.bits, codes: q + g * G)
                    s32[r * groups + g] = s
                    b32[r * groups + g] = b
                }
                let dst = out + r * rowBytes
                if spec.bits == 8 {
                    dst.update(from: q, count: cols)
                } else {
                    for j in 0..<(cols / 2) { dst[j] = q[2 * j] | (q[2 * j + 1] << 4) }
                }
                r += 1
            }
        }
        if let r = (0..<blocks).lazy.map({ nonFinite[$0] }).first(where: { $0 < rows }) {
            throw MambaFailure.format(
                "tensor \(name) (\(source)) has a non-finite value in row \(r): it cannot be quantized to \(spec.bits) bits; load it as f16 or f32")
        }
        let n = rows * groups
        let fitsHalf = (0..<n).allSatisfy { halfToFloat(floatToHalf(s32[$0])).isFinite
            && halfToFloat(floatToHalf(b32[$0])).isFinite }
        let scales: OwnedBytes, biases: OwnedBytes
        if fitsHalf {
            scales = OwnedBytes(count: 2 * n)
            biases = OwnedBytes(count: 2 * n)
            let s16 = scales.pointer.assumingMemoryBound(to: UInt16.self)
            let b16 = biases.pointer.assumingMemoryBound(to: UInt16.self)
            for i in 0..<n {
                s16[i] = floatToHalf(s32[i])
                b16[i] = floatToHalf(b32[i])
            }
        } else {
            (scales, biases) = (scales32, biases32)
        }
        return WeightMatrix(name: name, rows: rows, cols: cols, spec: spec, scaleDType: fitsHalf ? .f16 : .f32,
                            codes: UnsafeRawPointer(codes.pointer), scales: UnsafeRawPointer(scales.pointer),
                            biases: UnsafeRawPointer(biases.pointer), owners: [codes, scales, biases],
                            source: source)
    }
}

extension WeightMatrix {
    /// Element (r, c) as float32: the stored value, or fma(scale, q, bias) for quantized matrices.
    func value(_ r: Int, _ c: Int) -> Float {
        let i = r * cols + c
        switch dtype {
        case .f32: return data.assumingMemoryBound(to: Float.self)[i]
        case .f16: return halfToFloat(data.assumingMemoryBound(to: UInt16.self)[i])
        case .bf16: return Float(bitPattern: UInt32(data.assumingMemoryBound(to: UInt16.self)[i]) << 16)
        case .q8, .q4:
            let spec = quant!
            let row = data.assumingMemoryBound(to: UInt8.self) + r * spec.codeBytes(cols: cols)
            let g = r * (cols / spec.groupSize) + c / spec.groupSize
            let s: Float, b: Float
            if scaleDType == .f16 {
                s = halfToFloat(scales!.assumingMemoryBound(to: UInt16.self)[g])
                b = halfToFloat(biases!.assumingMemoryBound(to: UInt16.self)[g])
            } else {
                s = scales!.assumingMemoryBound(to: Float.self)[g]
                b = biases!.assumingMemoryBound(to: Float.self)[g]
            }
            return b.addingProduct(s, Float(quantCode(row, c, bits: spec.bits))) // fma: one rounding
        }
    }

    /// Row r as float32 into `out` (cols values).
    func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32: out.update(from: data.assumingMemoryBound(to: Float.self) + r * cols, count: cols)
        case .f16:
            let p = data.assumingMemoryBound(to: UInt16.self) + r * cols
            for c in 0..<cols { out[c] = halfToFloat(p[c]) }
        case .bf16:
            let p = data.assumingMemoryBound(to: UInt16.self) + r * cols
            for c in 0..<cols { out[c] = Float(bitPattern: UInt32(p[c]) << 16) }
        case .q8, .q4:
            for c in 0..<cols { out[c] = value(r, c) }
        }
    }
}
