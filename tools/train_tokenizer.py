#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of the bundled demo model (models/demo) on the Austen novels.

Also holds the corpus preparation shared with tools/train_demo.py (`load_corpus`):
  * each novel is read as UTF-8, line endings normalised;
  * hard-wrapped lines inside a paragraph are joined with one space, runs of spaces collapsed,
    the `_italic_` underscores dropped, paragraphs separated by a blank line ("\n\n");
  * the last `heldout_frac` (5%) of each novel's paragraphs, by bytes, is held out for evaluation
    and never used to train the tokenizer or the model;
  * documents (novel parts) are separated by the special token `<|endoftext|>` (id 0).

Tokenizer: BPE over bytes (GPT-2 style ByteLevel pre-tokenizer with add_prefix_space false and its
regex, ByteLevel decoder and post-processor), NFC normaliser, vocabulary 8192 including the 256
byte symbols and `<|endoftext|>` = id 0.

Run (from the repository root, CPU, a few seconds):
  python3 tools/train_tokenizer.py --data-dir ../shared/data/austen --out models/demo/tokenizer.json
"""

import argparse
import glob
import json
import os
import re
import sys

EOT = "<|endoftext|>"


def clean_novel(raw: str) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("_", "")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        para = " ".join(line.strip() for line in block.split("\n") if line.strip())
        para = re.sub(r"[ \t]+", " ", para).strip()
        if para:
            paragraphs.append(para)
    return paragraphs


def load_corpus(data_dir: str, heldout_frac: float = 0.05):
    """Returns (train_texts, heldout_texts, names): one text per novel in each list, sorted by file name."""
    files = sorted(glob.glob(os.path.join(data_dir, "*.txt")))
    if not files:
        sys.exit(f"no .txt files in {data_dir}")
    train, heldout, names = [], [], []
    for path in files:
        with open(path, encoding="utf-8") as f:
            paragraphs = clean_novel(f.read())
        total = sum(len(p.encode("utf-8")) + 2 for p in paragraphs)
        # split point: first paragraph whose start lies beyond (1 - heldout_frac) of the bytes
        acc, split = 0, len(paragraphs)
        for i, p in enumerate(paragraphs):
            if acc >= (1.0 - heldout_frac) * total:
                split = i
                break
            acc += len(p.encode("utf-8")) + 2
        train.append("\n\n".join(paragraphs[:split]) + "\n")
        heldout.append("\n\n".join(paragraphs[split:]) + "\n")
        names.append(os.path.basename(path))
    return train, heldout, names


def build_tokenizer(train_texts, vocab_size: int, min_frequency: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train_texts, trainer=trainer)
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data/austen")
    ap.add_argument("--out", default="models/demo/tokenizer.json")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--min-frequency", type=int, default=2)
    ap.add_argument("--heldout-frac", type=float, default=0.05)
    args = ap.parse_args()

    train, heldout, names = load_corpus(args.data_dir, args.heldout_frac)
    tok = build_tokenizer(train, args.vocab_size, args.min_frequency)
    assert tok.token_to_id(EOT) == 0, "<|endoftext|> must be id 0"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # The Python decoders.ByteLevel() constructor ignores its options; write them explicitly so the
    # file says add_prefix_space false everywhere (the decoder ignores the field anyway).
    spec = json.loads(tok.to_str())
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=2)
        f.write("\n")
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.out)

    # summary
    n_train = sum(len(e.ids) for e in tok.encode_batch(train))
    n_held = sum(len(e.ids) for e in tok.encode_batch(heldout))
    b_train = sum(len(t.encode("utf-8")) for t in train)
    b_held = sum(len(t.encode("utf-8")) for t in heldout)
    print(json.dumps({
        "vocab": tok.get_vocab_size(), "novels": names,
        "train_bytes": b_train, "train_tokens": n_train,
        "heldout_bytes": b_held, "heldout_tokens": n_held,
        "bytes_per_token": round(b_train / n_train, 3),
    }, indent=1))
    probe = "It is a truth universally acknowledged"
    enc = tok.encode(probe)
    print(probe, "->", enc.ids, enc.tokens)
    assert tok.decode(enc.ids) == probe


if __name__ == "__main__":
    main()
