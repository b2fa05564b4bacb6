#!/usr/bin/env python3
"""Fixtures for quantized checkpoints, made by the code that defines each format (nobody here wrote it):

MLX (mlx + mlx-lm, the Linux CPU wheels from PyPI):
  tests/fixtures/mlx-<name>/     tiny fixtures quantized by mlx_lm.utils.quantize_model and written by
                                 mlx_lm.utils.save_model / save_config, exactly as mlx-lm's convert does
                                 (model.safetensors + model.safetensors.index.json, "quantization" and
                                 "quantization_config" with "mode": "affine", conv1d as (channels, d_conv, 1))
    expected.safetensors         per quantized module: codes (uint8, rows × cols, unpacked here from MLX's
                                 uint32 words, first element in the lowest bits), scales and biases (f32)
    mlx.logits.f32, mlx.json     (mlx-q4-g32 only) MLX's own float32 forward pass of the quantized model
                                 over the source fixture's tokens: logits after every position

GGUF (llama.cpp's convert_hf_to_gguf.py and gguf-py, from the llama-cpp-python sdist on PyPI):
  tests/fixtures/gguf/tiny-g1.f32.gguf, tiny-g1.q8_0.gguf
                                 tiny-g1 converted by llama.cpp's converter (--outtype f32 / q8_0). The
                                 converter pads the vocabulary to a multiple of 16, so the embedding and
                                 lm_head get 5 zero rows (123 → 128): logits 0..122 are tiny-g1's. The
                                 tokenizer is replaced by 128 byte-level tokens (the converter would need
                                 a tokenizer.json whose vocabulary fits 128 rows).
  tests/fixtures/gguf/demo-vocab.gguf
                                 the demo model's tokenizer.json through the converter's --vocab-only; its
                                 pre-tokenizer hash is unknown to llama.cpp, so "gpt-2" (the same regex) is
                                 supplied.
  tests/fixtures/gguf/quants.gguf + quants.expected.safetensors
                                 one tensor per ggml type the engine reads (F32, F16, BF16, Q8_0, Q4_0, Q4_K,
                                 Q5_K, Q6_K) with random blocks, including negative, subnormal, zero and large
                                 block scales; expected = gguf-py's float32 dequantization (gguf.quants), which
                                 follows ggml-quants.c.

Run (from the repository root):
  pip install "mlx[cpu]" mlx-lm gguf safetensors numpy torch
  pip download llama-cpp-python --no-deps --no-binary :all:   # the sdist; unpack it
  python3 tools/make_quant_fixtures.py --llama-cpp llama_cpp_python-X/vendor/llama.cpp
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


def decode_floats(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__float__"}:
            return float(obj["__float__"].replace("Infinity", "inf"))
        return {k: decode_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_floats(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------- MLX
def mlx_fixture(src, name, bits, group, logits=False):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import mamba2
    from mlx_lm.utils import quantize_model, save_config, save_model

    src_dir = os.path.join(FIX, src)
    config = decode_floats(json.load(open(os.path.join(src_dir, "config.json"))))
    config.setdefault("intermediate_size", config["expand"] * config["hidden_size"])
    config.setdefault("time_step_rank", "auto")
    config.setdefault("use_bias", False)
    config.setdefault("use_conv_bias", True)
    args = mamba2.ModelArgs.from_dict(config)
    model = mamba2.Model(args)
    weights = {}
    for f in sorted(os.listdir(src_dir)):
        if f.endswith(".safetensors"):
            weights.update(mx.load(os.path.join(src_dir, f)))
    # mlx-lm names the embedding as transformers does.
    weights = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in weights.items()}
    weights = model.sanitize(weights)
    model.load_weights(list(weights.items()))
    model, qconfig = quantize_model(model, config, group, bits)
    out = os.path.join(FIX, name)
    shutil.rmtree(out, ignore_errors=True)
    save_model(out, model)
    save_config(qconfig, os.path.join(out, "config.json"))

    # The codes, unpacked independently of the engine, checked against MLX's own dequantize.
    expected = {}
    params = dict(tree_flatten(model.parameters()))
    for key, w in params.items():
        if not key.endswith(".weight") or w.dtype != mx.uint32:
            continue
        module = key[: -len(".weight")]
        s, b = params[module + ".scales"], params[module + ".biases"]
        words = np.array(w)
        per_word = 32 // bits
        codes = (words[..., None] >> (bits * np.arange(per_word, dtype=np.uint32))) & ((1 << bits) - 1)
        codes = codes.reshape(words.shape[0], -1).astype(np.uint8)
        s32, b32 = np.array(s.astype(mx.float32)), np.array(b.astype(mx.float32))
        ours = np.repeat(s32, group, axis=1).astype(np.float64) * codes + np.repeat(b32, group, axis=1)
        theirs = np.array(mx.dequantize(w, s.astype(mx.float32), b.astype(mx.float32), group, bits))
        assert np.abs(ours - theirs).max() <= 1e-6 * max(1.0, np.abs(theirs).max()), module
        expected[module + ".codes"] = codes
        expected[module + ".scales"] = s32
        expected[module + ".biases"] = b32
    from safetensors.numpy import save_file

    save_file(expected, os.path.join(out, "expected.safetensors"))

    if logits:
        ref = json.load(open(os.path.join(src_dir, "reference.json")))
        x = mx.array([ref["tokens"]])
        out_logits = np.array(model(x)[0].astype(mx.float32))
        out_logits.astype("<f4").tofile(os.path.join(out, "mlx.logits.f32"))
        json.dump({"tokens": ref["tokens"], "vocabRows": out_logits.shape[1], "source":
                   f"mlx {mx.__version__} float32 forward of this quantized model (mlx_lm.models.mamba2)"},
                  open(os.path.join(out, "mlx.json"), "w"))
    print(f"{name}: {sorted(expected)[:3]}… ({len(expected) // 3} quantized modules)")


# --------------------------------------------------------------------------------------------- GGUF
BYTE_TO_CHAR = []
_extra = 0
for _b in range(256):
    _printable = 0x21 <= _b <= 0x7E or 0xA1 <= _b <= 0xAC or 0xAE <= _b <= 0xFF
    BYTE_TO_CHAR.append(chr(_b if _printable else 256 + _extra))
    if not _printable:
        _extra += 1


def small_vocab(writer, gguf, n):
    """128 GPT-2-style tokens: <|endoftext|>, newline and the printable ASCII bytes, a few merges, padding."""
    tokens, types = ["<|endoftext|>"], [gguf.TokenType.CONTROL]
    for b in [0x0A] + list(range(0x20, 0x7F)):
        tokens.append(BYTE_TO_CHAR[b])
        types.append(gguf.TokenType.NORMAL)
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "e n", "r e"]
    for m in merges:
        tokens.append(m.replace(" ", ""))
        types.append(gguf.TokenType.NORMAL)
    while len(tokens) < n:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)


def run_converter(llama_cpp, model_dir, outfile, outtype, extra=()):
    saved = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", outfile, "--outtype", outtype, *extra]
    try:
        import convert_hf_to_gguf

        convert_hf_to_gguf.main()
    finally:
        sys.argv = saved


def gguf_fixtures(llama_cpp):
    sys.path.insert(0, llama_cpp)
    sys.path.insert(0, os.path.join(llama_cpp, "gguf-py"))
    import gguf
    import torch
    from safetensors.numpy import load_file, save_file
    from conversion import base as conv_base
    from conversion import mamba as conv_mamba

    out = os.path.join(FIX, "gguf")
    os.makedirs(out, exist_ok=True)

    # tiny-g1 through the converter, vocabulary padded as the converter pads it.
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(FIX, "tiny-g1")
        config = json.load(open(os.path.join(src, "config.json")))
        config["architectures"] = ["Mamba2ForCausalLM"]
        config["vocab_size"] = 128
        json.dump(config, open(os.path.join(tmp, "config.json"), "w"))
        w = load_file(os.path.join(src, "model.safetensors"))
        for k in ("backbone.embeddings.weight", "lm_head.weight"):
            w[k] = np.concatenate([w[k], np.zeros((128 - w[k].shape[0], w[k].shape[1]), w[k].dtype)])
        save_file(w, os.path.join(tmp, "model.safetensors"))
        own_set_vocab = conv_mamba.Mamba2Model.set_vocab
        conv_mamba.Mamba2Model.set_vocab = lambda self: small_vocab(self.gguf_writer, gguf, 128)
        for outtype in ("f32", "q8_0"):
            run_converter(llama_cpp, tmp, os.path.join(out, f"tiny-g1.{outtype}.gguf"), outtype)

    # The demo tokenizer, vocabulary only.
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("config.json", "tokenizer.json"):
            shutil.copy(os.path.join(ROOT, "models", "demo", f), tmp)
        # The generic tokenizer class reads tokenizer.json as it is (transformers' GPT-NeoX class adds a
        # <|padding|> token of its own).
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast"}, open(os.path.join(tmp, "tokenizer_config.json"), "w"))
        conv_mamba.Mamba2Model.set_vocab = own_set_vocab  # the converter's own (pads, then _set_vocab_gpt2)
        conv_base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
        run_converter(llama_cpp, tmp, os.path.join(out, "demo-vocab.gguf"), "f32", ["--vocab-only"])

    # One tensor per type, random blocks with edge-case scales; expected = gguf-py's dequantization.
    rng = np.random.default_rng(13)
    writer = gguf.GGUFWriter(os.path.join(out, "quants.gguf"), "mamba2")
    expected = {}
    rows, cols = 3, 512
    Q = gguf.GGMLQuantizationType

    def f16(values):
        return np.asarray(values, np.float16).view(np.uint8).reshape(-1, 2)

    def add(name, qtype, blocks_bytes):
        data = blocks_bytes.reshape(rows, -1)
        writer.add_tensor(name, data, raw_dtype=qtype)  # shape in bytes: gguf-py derives the elements
        expected[name] = gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(rows, cols)

    def scales(n, big=False):
        d = rng.normal(0, 0.02, n)
        d[0], d[1], d[2] = -0.013, 3e-7, 0.0  # negative, f16 subnormal, zero
        if big:
            d[3] = 9000.0  # 128·d and 8·d leave f16's range: the engine keeps these scales in f32
        return d

    for big in (False, True):
        nb = rows * cols // 32
        tag = ".big" if big else ""
        add(f"q8_0{tag}", Q.Q8_0, np.concatenate([f16(scales(nb, big)), rng.integers(0, 256, (nb, 32), np.uint8)], 1))
        add(f"q4_0{tag}", Q.Q4_0, np.concatenate([f16(scales(nb, big)), rng.integers(0, 256, (nb, 16), np.uint8)], 1))
    nb = rows * cols // 256
    for name, qtype, body in (("q4_K", Q.Q4_K, 12 + 128), ("q5_K", Q.Q5_K, 12 + 32 + 128)):
        dmin = scales(nb)
        dmin[1] = -0.004  # a negative dmin
        add(name, qtype, np.concatenate([f16(scales(nb)), f16(dmin), rng.integers(0, 256, (nb, body), np.uint8)], 1))
    q6 = np.concatenate([rng.integers(0, 256, (nb, 192), np.uint8),
                         rng.integers(-128, 128, (nb, 16)).astype(np.int8).view(np.uint8), f16(scales(nb))], 1)
    add("q6_K", Q.Q6_K, q6)
    for name, dt in (("f32", np.float32), ("f16", np.float16)):
        v = rng.normal(0, 1, (rows, cols)).astype(dt)
        writer.add_tensor(name, v)
        expected[name] = v.astype(np.float32)
    bf = (rng.normal(0, 1, (rows, cols)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    writer.add_tensor("bf16", bf.view(np.uint8).reshape(rows, -1), raw_dtype=Q.BF16)
    expected["bf16"] = (bf.astype(np.uint32) << 16).view(np.float32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, os.path.join(out, "quants.expected.safetensors"))
    print("gguf:", sorted(os.listdir(out)))
    del torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True, help="vendor/llama.cpp of the llama-cpp-python sdist")
    ap.add_argument("--skip-mlx", action="store_true")
    a = ap.parse_args()
    if not a.skip_mlx:  # --skip-mlx: only the GGUF files
        mlx_fixture("tiny-g1", "mlx-q4-g32", 4, 32, logits=True)  # f32 scales, everything quantized
        mlx_fixture("tiny-f16", "mlx-q4-g64-f16", 4, 64)  # f16 scales
        mlx_fixture("tiny-f16", "mlx-q8-g128-f16", 8, 128)  # only out_proj divides by 128: a mixed model
        mlx_fixture("tiny-bf16-sharded", "mlx-q8-g32-bf16", 8, 32)  # bf16 scales
    gguf_fixtures(os.path.abspath(a.llama_cpp))


if __name__ == "__main__":
    main()
