// Embedding gather: the first dispatch of every decode step.
#include <metal_stdlib>
using namespace metal;

constant int EMB_D_MODEL [[function_constant(0)]];  // width of the residual stream
constant int EMB_BATCH   [[function_constant(1)]];  // sequences in this dispatch
constant bool EMB_HALF   [[function_constant(2)]];  // embedding stored as f16 (else f32)
constant int EMB_D_CONV  [[function_constant(3)]];  // conv window: conv_pos advances modulo it

// residual[b, :] = embedding[tokens[b], :] (widened to f32), and each sequence's conv ring position
// advances by one token, so every layer's fused block writes its new conv input into the same slot.
// Grid: dispatchThreads (EMB_D_MODEL, EMB_BATCH); threadgroup (min(256, EMB_D_MODEL), 1).
kernel void embedding_gather(device const uchar *embedding [[buffer(0)]],  // (vocab, d_model) f16 or f32
                             device const int *tokens      [[buffer(1)]],  // (batch), validated by the host
                             device float *residual        [[buffer(2)]],  // (batch, d_model)
                             device uint *conv_pos         [[buffer(3)]],  // (batch) newest slot of the conv ring
                             uint2 gid [[thread_position_in_grid]]) {
    const uint k = gid.x, b = gid.y;
    if (k >= uint(EMB_D_MODEL) || b >= uint(EMB_BATCH)) return;
    const ulong row = ulong(tokens[b]) * ulong(EMB_D_MODEL);
    float v;
    if (EMB_HALF) {
        v = float(((device const half *)embedding)[row + k]);
    } else {
        v = ((device const float *)embedding)[row + k];
    }
    residual[b * uint(EMB_D_MODEL) + k] = v;
    if (k == 0) conv_pos[b] = (conv_pos[b] + 1) % uint(EMB_D_CONV);
}
