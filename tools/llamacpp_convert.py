#!/usr/bin/env python3
"""A model directory of this project -> GGUF, with llama.cpp's own convert_hf_to_gguf.py (and gguf-py).

Used by tools/compare_llamacpp.ts for the 130m-shape benchmark model and the bundled demo model; the
converter is the one in the llama-cpp-python sdist's vendor/llama.cpp (the tool builds llama.cpp from it).

  python3 tools/llamacpp_convert.py --llama-cpp SRC MODEL_DIR OUT.gguf [--outtype f16]

What is adapted, and why (the weights are never touched):
  * The demo's tokenizer.json comes without a tokenizer_config.json; the generic PreTrainedTokenizerFast
    class reads it as it is (transformers' GPT-NeoX class would add a <|padding|> token of its own).
  * The demo tokenizer's pre-tokenizer hash is unknown to llama.cpp (it was trained here): its regex is
    GPT-2's (ByteLevel with use_regex), so "gpt-2" is supplied when, and only when, the converter does
    not recognise the hash.
  * A directory without tokenizer files (the benchmark models) gets the converter's built-in GPT-NeoX
    vocabulary, which is what state-spaces/mamba2-* use; the mamba_ssm config (`ssm_cfg`) selects
    Mamba2ForCausalLM by itself.
"""

import argparse
import json
import os
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source tree (vendor/llama.cpp of the sdist)")
    ap.add_argument("--outtype", default="f16", help="converter --outtype: f32, f16, bf16, q8_0")
    ap.add_argument("model_dir")
    ap.add_argument("out")
    a = ap.parse_args()
    src = os.path.abspath(a.llama_cpp)
    sys.path.insert(0, os.path.join(src, "gguf-py"))
    sys.path.insert(0, src)  # first: the converter finds its built-in vocabularies at sys.path[0]/models
    from conversion import base as conv_base

    own = conv_base.TextModel.get_vocab_base_pre

    def vocab_base_pre(self, tokenizer):
        try:
            return own(self, tokenizer)
        except NotImplementedError:
            print("llamacpp_convert: pre-tokenizer hash unknown to llama.cpp; using gpt-2 (the same regex)",
                  file=sys.stderr)
            return "gpt-2"

    conv_base.TextModel.get_vocab_base_pre = vocab_base_pre

    model_dir = os.path.abspath(a.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for f in os.listdir(model_dir):
            if f.endswith((".safetensors", ".json")):
                os.symlink(os.path.join(model_dir, f), os.path.join(tmp, f))
        if os.path.exists(os.path.join(tmp, "tokenizer.json")) and not os.path.exists(
                os.path.join(tmp, "tokenizer_config.json")):
            with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
                json.dump({"tokenizer_class": "PreTrainedTokenizerFast"}, f)
        saved = sys.argv
        sys.argv = ["convert_hf_to_gguf.py", tmp, "--outfile", os.path.abspath(a.out), "--outtype", a.outtype]
        try:
            import convert_hf_to_gguf

            convert_hf_to_gguf.main()
        finally:
            sys.argv = saved


if __name__ == "__main__":
    main()
