#!/usr/bin/env python3
"""Reference greedy generation of the bundled demo model, for the engine's test.

Loads models/demo with transformers' Mamba2ForCausalLM in float64 (the float16 weights of
model.safetensors, upcast), tokenizes the prompt with the `tokenizers` library and greedily
generates 32 tokens twice:
  * an explicit loop of full forward passes over the whole sequence (no cache), logits computed in
    float64 from the backbone's last hidden state and the tied embedding matrix;
  * transformers' generate() with its recurrent cache (use_cache=True, do_sample=False).
Both must give the same ids. Writes tests/fixtures/demo_greedy.json:
  prompt, promptIds, greedyIds (32), greedyText (the decoded continuation), fullText,
  minTop2Margin (smallest best-minus-second-best logit along the greedy path), margins,
  lastPromptLogits (first 64 logits after the last prompt token), lastPromptArgmax, and provenance.

Run (from the repository root, CPU, a few seconds):  python3 tools/make_demo_fixture.py
"""

import argparse
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "demo_greedy.json"))
    ap.add_argument("--prompt", default="It is a truth universally acknowledged")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--logits", type=int, default=64)
    args = ap.parse_args()

    import transformers
    from tokenizers import Tokenizer
    from transformers import Mamba2ForCausalLM

    torch.manual_seed(0)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    prompt_ids = tok.encode(args.prompt).ids
    model = Mamba2ForCausalLM.from_pretrained(args.model, dtype=torch.float64)
    model.eval()
    assert model.backbone.embeddings.weight.dtype == torch.float64
    emb = model.backbone.embeddings.weight  # tied with lm_head

    def next_logits(ids):
        h = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        return h.double() @ emb.T  # float64 logits

    # 1. explicit loop over full forward passes
    ids = list(prompt_ids)
    greedy, margins = [], []
    last_prompt_logits = None
    with torch.no_grad():
        for i in range(args.steps):
            logits = next_logits(ids)
            if i == 0:
                last_prompt_logits = logits
                # cross-check the float64 head against transformers' own (float32) logits
                ref = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
                assert torch.allclose(ref, logits, rtol=1e-5, atol=1e-4), (ref - logits).abs().max()
            top2 = torch.topk(logits, 2)
            nxt = int(top2.indices[0])
            margins.append(float(top2.values[0] - top2.values[1]))
            greedy.append(nxt)
            ids.append(nxt)

    # 2. transformers' generate() with its cache
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=args.steps, do_sample=False,
                             use_cache=True, num_beams=1)
    cached = out[0, len(prompt_ids):].tolist()
    print("full-forward:", greedy)
    print("generate    :", cached)
    assert cached == greedy, "cached generate() and the full-forward loop disagree"

    text = tok.decode(greedy)
    fixture = {
        "prompt": args.prompt,
        "promptIds": prompt_ids,
        "greedyIds": greedy,
        "greedyText": text,
        "fullText": args.prompt + text,
        "minTop2Margin": min(margins),
        "margins": [round(m, 6) for m in margins],
        "lastPromptLogits": [float(v) for v in last_prompt_logits[: args.logits]],
        "lastPromptArgmax": int(last_prompt_logits.argmax()),
        "source": (f"transformers {transformers.__version__} Mamba2ForCausalLM, float64 (models/demo float16 weights "
                   f"upcast), torch {torch.__version__}; greedy by full forward passes, checked against "
                   f"generate(use_cache=True)"),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(repr(fixture["fullText"]))
    print("minTop2Margin", fixture["minTop2Margin"], "at step", margins.index(min(margins)))
    if fixture["minTop2Margin"] < 1e-3:
        print("WARNING: minTop2Margin below 1e-3: a tiny numerical difference could change the greedy path")


if __name__ == "__main__":
    main()
