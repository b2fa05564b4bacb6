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

// The prompt-block form: residual[t, :] = embedding[tokens[t], :] for the block's count tokens (one
// sequence), and that sequence's conv ring position advances by count at once; each layer's
// conv1d_prefill then lays the block's inputs into the ring so that they end at the new slot.
// Grid: dispatchThreads(EMB_D_MODEL, count); threadgroup (min(256, EMB_D_MODEL), 1).
kernel void embedding_gather_prompt(device const uchar *embedding [[buffer(0)]],  // (vocab, d_model)
                                    device const int *tokens      [[buffer(1)]],  // (count)
                                    device float *residual        [[buffer(2)]],  // (count, d_model)
                                    device uint *conv_pos         [[buffer(3)]],  // this sequence's slot
                                    device const uint *count      [[buffer(4)]],
                                    uint2 gid [[thread_position_in_grid]]) {
    const uint k = gid.x, t = gid.y;
    if (k >= uint(EMB_D_MODEL) || t >= count[0]) return;
    const ulong row = ulong(tokens[t]) * ulong(EMB_D_MODEL);
    residual[t * uint(EMB_D_MODEL) + k] = EMB_HALF ? float(((device const half *)embedding)[row + k])
                                                   : ((device const float *)embedding)[row + k];
    if (k == 0 && t == 0) conv_pos[0] = (conv_pos[0] + count[0]) % uint(EMB_D_CONV);
}
