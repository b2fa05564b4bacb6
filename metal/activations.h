// Activations of the Mamba2 block, shared by ssm_decode.metal and ssd_prefill.metal. Include it after
// <metal_stdlib> and `using namespace metal;`. makeLibrary(source:) has no files to include from, so
// tools/gen_metal_bindings.ts inlines this header where the sources are embedded (MetalSources.swift)
// and in MetalCompat's C++ copies; each .metal file includes it once (no guard: the C++ copies are
// compiled twice, in two namespaces, in one translation unit).

inline float silu(float v) { return v / (1.0f + exp(-v)); }

// softplus with mamba_ssm's threshold: the identity above 20; below -15, log(1 + e^v) = e^v to float
// precision, and computing it as exp keeps tiny dt from rounding to zero.
inline float softplus(float v) { return v > 20.0f ? v : (v < -15.0f ? exp(v) : log(1.0f + exp(v))); }
