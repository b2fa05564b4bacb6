#!/usr/bin/env python3
"""Float64 reference logits of a GGUF mamba2 file, for tools/compare_llamacpp.ts.

  python3 tools/llamacpp_reference.py --llama-cpp SRC MODEL.gguf IDS OUT_PREFIX [--matmuls DIR]

IDS: int32 little-endian token ids, fed one by one from an empty state. Writes two (ids x vocab) float32
logit files:

  OUT_PREFIX.exact.f32  the model the file describes: every tensor dequantized by gguf-py (llama.cpp's own
                        Python port of ggml's reference dequantization), then mamba_ssm's recurrence in
                        float64 (the independent implementation in tools/make_fixtures.py);
  OUT_PREFIX.ggml.f32   the same, but each matrix product first rounds its input vector the way ggml's CPU
                        backend does before multiplying (ggml_compute_forward_mul_mat converts src1 to the
                        weight type's vec_dot_type): to f16 for F16 weights, to Q8_0 blocks (32 values,
                        d = max|x| / 127 stored as f16, q = rint(x · 127 / max|x|)) for Q8_0 and Q4_0, to Q8_K blocks
                        (256 values, d = -max / 127 in f32, q = nearest(x / d)) for K-quants
                        (ggml-cpu/arch/x86/quants.c quantize_row_q8_0, ggml-quants.c quantize_row_q8_K_ref).

The difference between the two is what llama.cpp's arithmetic alone does to the logits: a float32 engine
that reads the same weights should sit near `exact`, llama.cpp near `ggml`.

--matmuls DIR (the output of `llamacpp_logits matmuls`): recomputes each dumped product of llama.cpp (layer 0
and the lm_head, every token) from its float32 input, as `ggml` (rounded input) and as `exact`, and prints
{weight name: {"vsRounded": worst |llama.cpp - ggml| / max |ggml|, "vsExact": ...}} as JSON: whether
llama.cpp's own products are the dequantized weights times the rounded activations, nothing else.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import reference_mamba_ssm  # noqa: E402


def round_f16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float64)


def q8_0(x):
    """ggml's x86 quantize_row_q8_0 (AVX2), then dequantized: the values its Q8_0/Q4_0 dot products multiply
    by. (The portable quantize_row_q8_0_ref differs in rare codes: 1/d instead of 127/max, roundf.)"""
    x = np.asarray(x, np.float32).reshape(-1, 32)
    amax = np.max(np.abs(x), axis=1, keepdims=True)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint((x * inv).astype(np.float32))  # _mm256_round_ps(_MM_ROUND_NEAREST): halves to even
    return (round_f16(d) * q).reshape(-1)


def q8_k(x):
    """quantize_row_q8_K_ref, then dequantized (the K-quants' dot products)."""
    x = np.asarray(x, np.float32).reshape(-1, 256)
    out = np.zeros(x.shape, np.float64)
    for b in range(x.shape[0]):
        row = x[b]
        i = int(np.argmax(np.abs(row)))  # the first of equal maxima, as the C loop's strict '>'
        mx = row[i]
        if mx == 0:
            continue
        iscale = np.float32(-127.0) / mx
        q = np.minimum(127, np.rint((iscale * row).astype(np.float32)))  # nearest_int: rounds half to even
        out[b] = np.float64(np.float32(1) / iscale) * q
    return out.reshape(-1)


def activation_rounding(qtype, gguf):
    Q = gguf.GGMLQuantizationType
    if qtype in (Q.F32,):
        return lambda x: x
    if qtype in (Q.F16,):
        return round_f16
    if qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        return q8_0
    if qtype in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
        return q8_k
    raise SystemExit(f"no activation rounding known for {qtype.name}")


class RoundedMatrix:
    """A weight matrix whose `@` rounds the vector first, as ggml's mul_mat does."""

    def __init__(self, w, rounding):
        self.w, self.rounding = w, rounding

    def __matmul__(self, x):
        return self.w @ self.rounding(x)

    def __getitem__(self, i):  # embedding rows: ggml_get_rows dequantizes, no rounding
        return self.w[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("model")
    ap.add_argument("ids")
    ap.add_argument("out_prefix")
    ap.add_argument("--matmuls", help="directory written by `llamacpp_logits matmuls`")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.abspath(a.llama_cpp), "gguf-py"))
    import gguf

    reader = gguf.GGUFReader(a.model)

    def field(key):
        f = reader.fields[key]
        return f.parts[f.data[0]].tolist()[0]

    tensors = {}
    types = {}
    for t in reader.tensors:
        shape = [int(n) for n in reversed(t.shape.tolist())]  # numpy order: ne reversed
        tensors[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        types[t.name] = t.tensor_type
    d_model = field("mamba2.embedding_length")
    d_inner = field("mamba2.ssm.inner_size")
    n_heads = field("mamba2.ssm.time_step_rank")
    cfg = {
        "d_model": d_model, "n_layer": field("mamba2.block_count"), "d_state": field("mamba2.ssm.state_size"),
        "d_conv": field("mamba2.ssm.conv_kernel"), "headdim": d_inner // n_heads,
        "ngroups": field("mamba2.ssm.group_count"), "eps": field("mamba2.attention.layer_norm_rms_epsilon"),
        "dt_limit": (0.0, float("inf")), "expand": d_inner // d_model,
    }

    def weights(rounded):
        def matrix(name):
            return RoundedMatrix(tensors[name], activation_rounding(types[name], gguf)) if rounded else tensors[name]

        w = {"backbone.embedding.weight": tensors["token_embd.weight"],
             "backbone.norm_f.weight": tensors["output_norm.weight"].reshape(-1)}
        w["lm_head.weight"] = matrix("output.weight" if "output.weight" in tensors else "token_embd.weight")
        for i in range(cfg["n_layer"]):
            p, g = f"backbone.layers.{i}.", f"blk.{i}."
            w[p + "norm.weight"] = tensors[g + "attn_norm.weight"].reshape(-1)
            w[p + "mixer.in_proj.weight"] = matrix(g + "ssm_in.weight")
            w[p + "mixer.conv1d.weight"] = tensors[g + "ssm_conv1d.weight"].reshape(-1, 1, cfg["d_conv"])
            w[p + "mixer.conv1d.bias"] = tensors[g + "ssm_conv1d.bias"].reshape(-1)
            w[p + "mixer.dt_bias"] = tensors[g + "ssm_dt.bias"].reshape(-1)
            w[p + "mixer.A_log"] = np.log(-tensors[g + "ssm_a"].reshape(-1))  # the file stores A = -exp(A_log)
            w[p + "mixer.D"] = tensors[g + "ssm_d"].reshape(-1)
            w[p + "mixer.norm.weight"] = tensors[g + "ssm_norm.weight"].reshape(-1)
            w[p + "mixer.out_proj.weight"] = matrix(g + "ssm_out.weight")
        return w

    if a.matmuls:
        report = {}
        for f in sorted(os.listdir(a.matmuls)):
            if not f.endswith(".in.f32"):
                continue
            name = f[:-len(".in.f32")]
            w = tensors[name].reshape(-1, tensors[name].shape[-1])  # (rows, cols)
            x = np.fromfile(os.path.join(a.matmuls, f), "<f4").reshape(-1, w.shape[1])
            y = np.fromfile(os.path.join(a.matmuls, name + ".out.f32"), "<f4").reshape(x.shape[0], -1)
            rounding = activation_rounding(types[name], gguf)
            worst = {"vsRounded": 0.0, "vsExact": 0.0}
            for p in range(x.shape[0]):
                for key, ref in (("vsRounded", w @ rounding(x[p])), ("vsExact", w @ x[p].astype(np.float64))):
                    worst[key] = max(worst[key], float(np.max(np.abs(y[p] - ref)) / np.max(np.abs(ref))))
            report[name] = {"type": types[name].name, **worst}
        print(json.dumps(report))

    ids = np.fromfile(a.ids, dtype="<i4").tolist()
    for name, rounded in (("exact", False), ("ggml", True)):
        logits = reference_mamba_ssm(weights(rounded), cfg, ids)
        logits.astype("<f4").tofile(f"{a.out_prefix}.{name}.f32")


if __name__ == "__main__":
    main()
