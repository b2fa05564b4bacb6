#!/usr/bin/env python3
"""Reference fixtures for the engine tests: tiny random-weight Mamba2 models and their logits.

For each fixture this writes tests/fixtures/<name>/:
  config.json          transformers or mamba_ssm format
  model.safetensors    (or model-0000N-of-0000M.safetensors + model.safetensors.index.json)
  reference.json       {"tokens": [...], "promptLength": P, "vocabRows": V, "source": "..."}
  logits.f32           float32 little-endian, [len(tokens), V]: the logits after every position

References are computed in float64 by code nobody in this project wrote where possible:
  - transformers' Mamba2ForCausalLM (float64 weights) for ngroups = 1 models;
  - for ngroups > 1, an independent float64 implementation of mamba_ssm's recurrence below
    (mamba_ssm normalises the gated RMSNorm per group; some transformers 5.x releases normalise over
    all of d_inner). For ngroups = 1 both references are computed and must agree, which checks the
    independent implementation against transformers.

Run:  python3 tools/make_fixtures.py            (needs torch, transformers, safetensors, numpy)
"""

import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")

PROMPT_LEN = 40  # longer than two chunks of 16
STEPS = 64  # teacher-forced decode steps after the prompt


# ---------------------------------------------------------------------------------------------
# Independent float64 implementation of mamba_ssm's Mamba2 (sequential recurrence, one token at a
# time). Shapes are in the comments; `w` maps mamba_ssm tensor names to float64 arrays.
# ---------------------------------------------------------------------------------------------
def softplus(x):
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rmsnorm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * weight


def reference_mamba_ssm(w, cfg, tokens):
    d_model, n_layer = cfg["d_model"], cfg["n_layer"]
    d_state, d_conv, headdim, ngroups = cfg["d_state"], cfg["d_conv"], cfg["headdim"], cfg["ngroups"]
    eps, dt_min, dt_max = cfg["eps"], cfg["dt_limit"][0], cfg["dt_limit"][1]
    d_inner = cfg["expand"] * d_model
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * ngroups * d_state
    emb = w["backbone.embedding.weight"]  # (V, d_model)
    lm_head = w.get("lm_head.weight", emb)  # (V, d_model)
    conv_state = [np.zeros((conv_dim, d_conv)) for _ in range(n_layer)]
    ssm_state = [np.zeros((nheads, headdim, d_state)) for _ in range(n_layer)]
    out = []
    for t in tokens:
        residual = emb[t].copy()  # (d_model,)
        for i in range(n_layer):
            p = f"backbone.layers.{i}."
            h = rmsnorm(residual, w[p + "norm.weight"], eps)
            zxbcdt = w[p + "mixer.in_proj.weight"] @ h  # (2*d_inner + 2*ngroups*d_state + nheads,)
            z = zxbcdt[:d_inner]
            xBC = zxbcdt[d_inner:d_inner + conv_dim]
            dt = zxbcdt[d_inner + conv_dim:]
            cs = conv_state[i]
            cs[:, :-1] = cs[:, 1:]
            cs[:, -1] = xBC
            conv_w = w[p + "mixer.conv1d.weight"][:, 0, :]  # (conv_dim, d_conv)
            xBC = silu(np.sum(cs * conv_w, axis=1) + w[p + "mixer.conv1d.bias"])
            x = xBC[:d_inner].reshape(nheads, headdim)
            B = xBC[d_inner:d_inner + ngroups * d_state].reshape(ngroups, d_state)
            C = xBC[d_inner + ngroups * d_state:].reshape(ngroups, d_state)
            dt = np.clip(softplus(dt + w[p + "mixer.dt_bias"]), dt_min, dt_max)  # (nheads,)
            A = -np.exp(w[p + "mixer.A_log"])  # (nheads,)
            dA = np.exp(dt * A)
            y = np.zeros((nheads, headdim))
            heads_per_group = nheads // ngroups
            for hd in range(nheads):
                g = hd // heads_per_group
                s = ssm_state[i][hd]  # (headdim, d_state)
                s[:] = s * dA[hd] + dt[hd] * np.outer(x[hd], B[g])
                y[hd] = s @ C[g] + w[p + "mixer.D"][hd] * x[hd]
            y = y.reshape(d_inner) * silu(z)
            gs = d_inner // ngroups
            norm_w = w[p + "mixer.norm.weight"]
            y = np.concatenate([rmsnorm(y[g * gs:(g + 1) * gs], norm_w[g * gs:(g + 1) * gs], eps)
                                for g in range(ngroups)])
            residual = residual + w[p + "mixer.out_proj.weight"] @ y
        h = rmsnorm(residual, w["backbone.norm_f.weight"], eps)
        out.append(lm_head @ h)
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# Random weights with magnitudes that keep every part of the block active (dt spans the softplus
# threshold on one head, the state neither explodes nor vanishes).
# ---------------------------------------------------------------------------------------------
def random_weights(rng, cfg, vocab_rows, tied):
    d_model, d_state, d_conv = cfg["d_model"], cfg["d_state"], cfg["d_conv"]
    headdim, ngroups = cfg["headdim"], cfg["ngroups"]
    d_inner = cfg["expand"] * d_model
    nheads = d_inner // headdim
    conv_dim = d_inner + 2 * ngroups * d_state
    d_in_proj = 2 * d_inner + 2 * ngroups * d_state + nheads
    w = {"backbone.embedding.weight": rng.normal(0, 1.0, (vocab_rows, d_model))}
    for i in range(cfg["n_layer"]):
        p = f"backbone.layers.{i}."
        w[p + "norm.weight"] = 1.0 + 0.2 * rng.normal(size=d_model)
        w[p + "mixer.in_proj.weight"] = rng.normal(0, 1.0 / math.sqrt(d_model), (d_in_proj, d_model))
        w[p + "mixer.conv1d.weight"] = rng.normal(0, 0.5, (conv_dim, 1, d_conv))
        w[p + "mixer.conv1d.bias"] = rng.normal(0, 0.2, conv_dim)
        dt = np.exp(rng.uniform(math.log(0.01), math.log(0.5), nheads))
        dt_bias = dt + np.log(-np.expm1(-dt))  # inverse softplus
        dt_bias[0] = 21.0  # above softplus' threshold of 20: the identity branch
        w[p + "mixer.dt_bias"] = dt_bias
        w[p + "mixer.A_log"] = np.log(rng.uniform(1, 16, nheads))
        w[p + "mixer.D"] = rng.uniform(0.5, 1.5, nheads)
        w[p + "mixer.norm.weight"] = 1.0 + 0.2 * rng.normal(size=d_inner)
        w[p + "mixer.out_proj.weight"] = rng.normal(0, 1.0 / math.sqrt(d_inner), (d_model, d_inner))
    w["backbone.norm_f.weight"] = 1.0 + 0.2 * rng.normal(size=d_model)
    if not tied:
        w["lm_head.weight"] = rng.normal(0, 1.0 / math.sqrt(d_model), (vocab_rows, d_model))
    return w


def round_to(w, dtype):
    """Round float64 weights through the storage dtype, so the reference sees what the file holds."""
    t = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return {k: torch.from_numpy(v).to(t).to(torch.float64).numpy() for k, v in w.items()}


def transformers_reference(w, cfg, vocab_rows, tied, tokens):
    from transformers import Mamba2Config, Mamba2ForCausalLM

    d_inner = cfg["expand"] * cfg["d_model"]
    tc = Mamba2Config(
        hidden_size=cfg["d_model"], num_hidden_layers=cfg["n_layer"], state_size=cfg["d_state"],
        conv_kernel=cfg["d_conv"], expand=cfg["expand"], head_dim=cfg["headdim"],
        num_heads=d_inner // cfg["headdim"], n_groups=cfg["ngroups"], vocab_size=vocab_rows,
        layer_norm_epsilon=cfg["eps"], chunk_size=cfg["chunk_size"], tie_word_embeddings=tied,
        time_step_limit=tuple(cfg["dt_limit"]),
    )
    model = Mamba2ForCausalLM(tc).to(torch.float64).eval()
    sd = {transformers_name(k): torch.from_numpy(v) for k, v in w.items()}
    if tied:
        sd["lm_head.weight"] = sd["backbone.embeddings.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and not [m for m in missing if m != "lm_head.weight"], (missing, unexpected)
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].numpy()
        if cfg["dt_limit"] != [0.0, math.inf]:
            # transformers (like mamba_ssm's step()) skips the time_step_limit clamp on its one-token
            # path, so only the full-sequence forward, which clamps everywhere, is the reference.
            return logits
        # The cached path (prefill of the prompt, then one token at a time) must agree with the full one.
        out = model(torch.tensor([tokens[:PROMPT_LEN]]), use_cache=True)
        cache, step_logits = out.cache, [out.logits[0, -1].numpy()]
        for j in range(PROMPT_LEN, min(PROMPT_LEN + 8, len(tokens))):
            out = model(torch.tensor([[tokens[j]]]), cache=cache, use_cache=True)
            cache = out.cache
            step_logits.append(out.logits[0, -1].numpy())
        for k, sl in enumerate(step_logits):
            d = np.abs(sl - logits[PROMPT_LEN - 1 + k]).max() / np.abs(logits).max()
            assert d < 1e-5, f"transformers cached vs full disagree at {k}: {d}"
    return logits


def transformers_name(k):
    return k.replace("backbone.embedding.", "backbone.embeddings.")


def write_torch_copy(src, name):
    """The same model as pytorch_model.bin (torch.save of a state_dict, lm_head tied by storage, as
    mamba_ssm checkpoints are): tests the zip + pickle reader end to end. Logits: those of `src`."""
    from safetensors.torch import load_file

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    sd = load_file(os.path.join(OUT, src, "model.safetensors"))
    if "lm_head.weight" not in sd:
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    for f in ("config.json", "reference.json", "logits.f32"):
        with open(os.path.join(OUT, src, f), "rb") as a, open(os.path.join(d, f), "wb") as b:
            b.write(a.read())
    print(f"{name}: {src} as pytorch_model.bin")


def write_fixture(name, cfg, fmt, dtype, tied, vocab_size, pad_multiple, naming, shards, reference, seed,
                  agree_tol=1e-5):
    """`agree_tol`: how close the two references must be. transformers computes its RMSNorms in float32
    even in a float64 model, so over many layers they drift apart by more than over the tiny ones."""
    rng = np.random.default_rng(seed)
    vocab_rows = vocab_size
    if pad_multiple:
        vocab_rows += (-vocab_size) % pad_multiple
    w = round_to(random_weights(rng, cfg, vocab_rows, tied), dtype)
    total = PROMPT_LEN + STEPS
    tokens = [int(t) for t in rng.integers(0, vocab_size, total)]

    ref_ssm = reference_mamba_ssm(w, cfg, tokens)
    if reference == "transformers":
        ref = transformers_reference(w, cfg, vocab_rows, tied, tokens)
        rel = np.abs(ref - ref_ssm).max() / np.abs(ref).max()
        assert rel < agree_tol, f"{name}: independent implementation disagrees with transformers: {rel}"
        source = f"transformers Mamba2ForCausalLM, float64 (independent float64 recurrence agrees to {rel:.1e})"
    else:
        ref = ref_ssm
        source = "independent float64 implementation of mamba_ssm's recurrence (tools/make_fixtures.py)"

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    d_inner = cfg["expand"] * cfg["d_model"]
    if fmt == "transformers":
        limit_hi = cfg["dt_limit"][1]
        config = {
            "model_type": "mamba2", "hidden_size": cfg["d_model"], "num_hidden_layers": cfg["n_layer"],
            "state_size": cfg["d_state"], "conv_kernel": cfg["d_conv"], "expand": cfg["expand"],
            "head_dim": cfg["headdim"], "num_heads": d_inner // cfg["headdim"], "n_groups": cfg["ngroups"],
            "vocab_size": vocab_rows, "layer_norm_epsilon": cfg["eps"], "chunk_size": cfg["chunk_size"],
            "tie_word_embeddings": tied, "use_bias": False, "use_conv_bias": True, "residual_in_fp32": True,
            "time_step_limit": [cfg["dt_limit"][0],
                                {"__float__": "Infinity"} if math.isinf(limit_hi) else limit_hi],
        }
    else:
        config = {
            "d_model": cfg["d_model"], "d_intermediate": 0, "n_layer": cfg["n_layer"],
            "vocab_size": vocab_size, "pad_vocab_size_multiple": pad_multiple, "rms_norm": True,
            "residual_in_fp32": True, "fused_add_norm": True, "tie_embeddings": tied,
            "ssm_cfg": {"layer": "Mamba2", "d_state": cfg["d_state"], "d_conv": cfg["d_conv"],
                        "expand": cfg["expand"], "headdim": cfg["headdim"], "ngroups": cfg["ngroups"],
                        "chunk_size": cfg["chunk_size"]},
            "attn_layer_idx": [], "attn_cfg": {},
        }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    np_dtype = {"f32": np.float32, "f16": np.float16}.get(dtype)
    names = {k: (transformers_name(k) if naming == "transformers" else k) for k in w}
    tensors = {}
    for k, v in w.items():
        if dtype == "bf16":
            # numpy has no bfloat16: store the upper half of each float32 (exact, values are bf16-rounded)
            bits = (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            tensors[names[k]] = bits
        else:
            tensors[names[k]] = v.astype(np_dtype)
    if shards == 1:
        save_safetensors(os.path.join(d, "model.safetensors"), tensors, dtype)
    else:
        keys = sorted(tensors)
        parts = [keys[i::shards] for i in range(shards)]
        weight_map = {}
        for i, part in enumerate(parts):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_safetensors(os.path.join(d, fname), {k: tensors[k] for k in part}, dtype)
            weight_map.update({k: fname for k in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)

    ref.astype("<f4").tofile(os.path.join(d, "logits.f32"))
    if reference == "transformers" and agree_tol > 1e-5:
        ref_ssm.astype("<f4").tofile(os.path.join(d, "logits_recurrence.f32"))
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump({"tokens": tokens, "promptLength": PROMPT_LEN, "vocabRows": vocab_rows,
                   "vocabSize": vocab_size, "dtype": dtype, "nGroups": cfg["ngroups"],
                   "source": source, "maxAbsLogit": float(np.abs(ref).max())}, f, indent=1)
    print(f"{name}: {dtype}, ngroups {cfg['ngroups']}, vocab {vocab_size}->{vocab_rows}, {len(tokens)} tokens; {source}")


def save_safetensors(path, tensors, dtype):
    if dtype != "bf16":
        save_file(tensors, path)
        return
    # safetensors.numpy cannot tag uint16 as BF16: write the format by hand (header length, JSON, data).
    header, blobs, offset = {}, [], 0
    for k in sorted(tensors):
        b = tensors[k].astype("<u2").tobytes()
        header[k] = {"dtype": "BF16", "shape": list(tensors[k].shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    base = dict(d_model=64, n_layer=2, d_state=16, d_conv=4, expand=2, headdim=16, eps=1e-5, chunk_size=16,
                dt_limit=[0.0, math.inf])
    write_fixture("tiny-g1", dict(base, ngroups=1), "transformers", "f32", tied=False, vocab_size=123,
                  pad_multiple=0, naming="transformers", shards=1, reference="transformers", seed=1)
    write_fixture("tiny-g2", dict(base, ngroups=2), "mamba_ssm", "f32", tied=True, vocab_size=100,
                  pad_multiple=16, naming="mamba_ssm", shards=1, reference="mamba_ssm", seed=2)
    write_torch_copy("tiny-g2", "tiny-g2-torch")
    write_fixture("tiny-f16", dict(base, ngroups=1, dt_limit=[0.01, 1.5]), "transformers", "f16", tied=True,
                  vocab_size=77, pad_multiple=0, naming="transformers", shards=1, reference="transformers",
                  seed=3)
    write_fixture("tiny-bf16-sharded", dict(base, ngroups=2), "transformers", "bf16", tied=False,
                  vocab_size=90, pad_multiple=0, naming="mamba_ssm", shards=2, reference="mamba_ssm", seed=4)


if __name__ == "__main__":
    sys.exit(main())
