// Embedding gather: the first dispatch of every decode step (and of every prompt block). Rows are f32,
// f16 or affine-quantized (quantized.h), chosen by function constants.
#include <metal_stdlib>
using namespace metal;
#include "quantized.h"

constant int EMB_D_MODEL [[function_constant(0)]];  // width of the residual stream
constant int EMB_BATCH   [[function_constant(1)]];  // sequences in this dispatch
constant bool EMB_HALF   [[function_constant(2)]];  // embedding stored as f16 (else f32)
constant int EMB_D_CONV  [[function_constant(3)]];  // conv window: conv_pos advances modulo it
constant bool EMB_QUANT  [[function_constant(4)]];  // rows are affine-quantized codes, else float (EMB_HALF)
constant int EMB_BITS    [[function_constant(5)]];  // EMB_QUANT: 4 or 8 bits per code
constant int EMB_GROUP_SIZE [[function_constant(6)]];   // EMB_QUANT: columns per scale and bias
constant bool EMB_SCALES_HALF [[function_constant(7)]]; // EMB_QUANT: scales and biases f16 (else f32)

// embedding[token, k] in f32: widened, or dequantized exactly (fma(scale, q, bias)).
inline float embedding_value(device const uchar *embedding, device const uchar *scales, device const uchar *biases,
                             uint token, uint k) {
    if (EMB_QUANT) {
        return affine_value(embedding, scales, biases, ulong(token), int(k), EMB_D_MODEL, EMB_BITS, EMB_GROUP_SIZE,
                            EMB_SCALES_HALF);
    }
    const ulong at = ulong(token) * ulong(EMB_D_MODEL) + ulong(k);
    return EMB_HALF ? float(((device const half *)embedding)[at]) : ((device const float *)embedding)[at];
}

// residual[b, :] = embedding[tokens[b], :] (in f32), and each sequence's conv ring position advances by
// one token, so every layer's fused block writes its new conv input into the same slot.
// Grid: dispatchThreads (EMB_D_MODEL, EMB_BATCH); threadgroup (min(256, EMB_D_MODEL), 1).
kernel void embedding_gather(device const uchar *embedding [[buffer(0)]],  // (vocab, d_model) f16/f32, or codes
                             device const int *tokens      [[buffer(1)]],  // (batch), validated by the host
                             device float *residual        [[buffer(2)]],  // (batch, d_model)
                             device uint *conv_pos         [[buffer(3)]],  // (batch) newest slot of the conv ring
                             device const uchar *scales [[buffer(5), function_constant(EMB_QUANT)]],  // (vocab, d_model / G)
                             device const uchar *biases [[buffer(6), function_constant(EMB_QUANT)]],  // (vocab, d_model / G)
                             uint2 gid [[thread_position_in_grid]]) {
    const uint k = gid.x, b = gid.y;
    if (k >= uint(EMB_D_MODEL) || b >= uint(EMB_BATCH)) return;
    residual[b * uint(EMB_D_MODEL) + k] = embedding_value(embedding, scales, biases, uint(tokens[b]), k);
    if (k == 0) conv_pos[b] = (conv_pos[b] + 1) % uint(EMB_D_CONV);
}

// The prompt-block form: residual[t, :] = embedding[tokens[t], :] for the block's count tokens (one
// sequence), and that sequence's conv ring position advances by count at once; each layer's
// conv1d_prefill then lays the block's inputs into the ring so that they end at the new slot.
// Grid: dispatchThreads(EMB_D_MODEL, count); threadgroup (min(256, EMB_D_MODEL), 1).
kernel void embedding_gather_prompt(device const uchar *embedding [[buffer(0)]],  // (vocab, d_model)
                                    device const int *tokens      [[buffer(1)]],  // (count)
                                    device float *residual        [[buffer(2)]],  // (count, d_model)
                                    device uint *conv_pos         [[buffer(3)]],  // this sequence's slot
                                    device const uint *count      [[buffer(4)]],
                                    device const uchar *scales [[buffer(5), function_constant(EMB_QUANT)]],
                                    device const uchar *biases [[buffer(6), function_constant(EMB_QUANT)]],
                                    uint2 gid [[thread_position_in_grid]]) {
    const uint k = gid.x, t = gid.y;
    if (k >= uint(EMB_D_MODEL) || t >= count[0]) return;
    residual[t * uint(EMB_D_MODEL) + k] = embedding_value(embedding, scales, biases, uint(tokens[t]), k);
    if (k == 0 && t == 0) conv_pos[0] = (conv_pos[0] + count[0]) % uint(EMB_D_CONV);
}
