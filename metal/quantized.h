// The one quantized matrix form (docs/quantization.md: MLX's affine groups), as matvec.metal,
// matmul.metal and embedding.metal read it. A row-major (rows, cols) matrix of `bits`-bit codes, rows of
// cols · bits / 8 bytes (8-bit: one byte per column; 4-bit: column 2j in the low nibble of byte j, 2j + 1
// in the high nibble), and per row one scale and one bias (f16 or f32) for each group of G columns:
//   w[r, c] = fma(scale[r, c / G], q[r, c], bias[r, c / G])   in float32, one rounding.
// Each file passes its own function constants (bits, G, scale type) to these helpers. Include after
// <metal_stdlib> and `using namespace metal;` (inlined by tools/gen_metal_bindings.ts, as activations.h).

// Scale or bias i of a (rows, cols / G) array, f16 or f32.
inline float affine_param(device const uchar *p, ulong i, bool is_half) {
    return is_half ? float(((device const half *)p)[i]) : ((device const float *)p)[i];
}

// w[r, c] of a matrix whose rows hold `cols` columns: dequantized exactly as the contract says.
inline float affine_value(device const uchar *codes, device const uchar *scales, device const uchar *biases,
                          ulong r, int c, int cols, int bits, int group, bool scales_half) {
    device const uchar *row = codes + r * ulong(cols * bits / 8);
    const uint q = bits == 8 ? uint(row[c]) : (uint(row[c >> 1]) >> uint((c & 1) << 2)) & 0xfu;
    const ulong g = r * ulong(cols / group) + ulong(c / group);
    return fma(affine_param(scales, g, scales_half), float(q), affine_param(biases, g, scales_half));
}

// Codes 4i … 4i+3 of 8 bytes of a row (64 / bits codes) loaded as two little-endian words, as floats.
inline float4 affine_codes4(uint2 w, int i, int bits) {
    const uint first = uint(4 * i * bits);  // bit offset of code 4i in the 64 bits
    const uint word = first < 32u ? w.x : w.y, at = first % 32u, b = uint(bits), m = (1u << b) - 1u;
    return float4(float((word >> at) & m), float((word >> (at + b)) & m), float((word >> (at + 2u * b)) & m),
                  float((word >> (at + 3u * b)) & m));
}

// w[r, c … c+3] for c a multiple of 4 (inside one group, G being a multiple of 4), as affine_value gives
// each: one 32-bit (8-bit codes) or 16-bit (4-bit) load of codes, one scale and one bias.
inline float4 affine_values4(device const uchar *codes, device const uchar *scales, device const uchar *biases,
                             ulong r, int c, int cols, int bits, int group, bool scales_half) {
    device const uchar *row = codes + r * ulong(cols * bits / 8);
    const uint word = bits == 8 ? *(device const uint *)(row + c) : uint(*(device const ushort *)(row + c / 2));
    const ulong g = r * ulong(cols / group) + ulong(c / group);
    const float s = affine_param(scales, g, scales_half), b = affine_param(biases, g, scales_half);
    const float4 q = affine_codes4(uint2(word, 0u), 0, bits);
    return float4(fma(s, q.x, b), fma(s, q.y, b), fma(s, q.z, b), fma(s, q.w, b));
}
