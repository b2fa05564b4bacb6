#!/usr/bin/env python3
"""A random-weight model with the exact shapes of state-spaces/mamba2-130m, and its float64 reference.

The committed fixtures (tools/make_fixtures.py) are tiny: d_state 16, head_dim 16, chunks of 16. This
builds the real shapes instead (d_model 768, 24 layers, d_state 128, head_dim 64, 24 heads, chunk 256,
vocab 50277 padded to 50288, tied embeddings, mamba_ssm config.json and tensor names) with the same
generator and the same two references as the fixtures: transformers' Mamba2ForCausalLM in float64, and
the independent float64 recurrence, kept beside it as logits_recurrence.f32. Over 24 layers the two
agree to ~5e-5 relative, not the ~1e-6 of the 2-layer fixtures: transformers computes its RMSNorms in
float32 even in a float64 model. The prompt is 260 tokens, longer than one
chunk of 256, followed by 8 teacher-forced steps; once with float32 weights, once with float16. The
result is too big to commit (0.5 and 0.26 GB of weights, 54 MB of logits each); it goes to a cache directory, and `deno run -A tools/check_full_shape.ts` compares the
engine's backends with it.

Run:  python3 tools/make_full_shape_reference.py [--out DIR]
      (default DIR: $XDG_CACHE_HOME/mamba-metal/full-shape or ~/.cache/mamba-metal/full-shape;
       about 3 GB of memory and a few minutes on 2 cores)
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as fixtures  # noqa: E402


def main():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(cache, "mamba-metal", "full-shape"))
    args = ap.parse_args()
    fixtures.OUT = args.out
    fixtures.PROMPT_LEN = 260  # longer than one chunk of 256
    fixtures.STEPS = 8
    cfg = dict(d_model=768, n_layer=24, d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1, eps=1e-5,
               chunk_size=256, dt_limit=[0.0, math.inf])
    for dtype in ("f32", "f16"):  # f16: weights stored as float16, the reference computed with them rounded
        fixtures.write_fixture(f"mamba2-130m-shape-{dtype}", cfg, "mamba_ssm", dtype, tied=True, vocab_size=50277,
                               pad_multiple=16, naming="mamba_ssm", shards=1, reference="transformers", seed=130,
                               agree_tol=2e-4)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
