#!/usr/bin/env python3
"""Reference fixtures for the TypeScript tokenizer tests (tests/tokenizer.test.ts).

Expected ids and decoded strings come from the Hugging Face `tokenizers` library (the reference
implementation); the TypeScript tokenizer must reproduce them exactly.

Writes tests/fixtures/tokenizer/:
  texts.json                      the shared test texts (Austen excerpts + hand-written + random mixes)
  gpt-neox-20b.expected.json      expected ids/decodes for ../shared/data/tokenizers/gpt-neox-20b.tokenizer.json
  demo.expected.json              the same for models/demo/tokenizer.json (if present; keyed by its sha256)
  tiny-bpe.tokenizer.json         a tiny byte-level BPE trained here (no normalizer, full byte alphabet,
                                  extra added tokens with lstrip / rstrip / single_word / normalized flags)
  tiny-bpe.expected.json
  tiny-nfkc.tokenizer.json        a tiny byte-level BPE with a Sequence[NFKC, Lowercase] normalizer and
                                  no initial alphabet (unseen bytes have no token and are dropped)
  tiny-nfkc.expected.json

Each *.expected.json holds:
  {"tokenizer": file name, "sha256": hex of the tokenizer file, "tokenizers_version": ...,
   "encode": [{"text": i, "ids": [...], "decoded": decode(ids)}],       # i indexes texts.json
   "encodeSpecialAsText": [{"text": i, "ids": [...]}],                  # with encode_special_tokens = True
   "decode": [{"ids": [...], "text": decode(ids), "textWithSpecial": decode(ids, skip_special_tokens=False)}]}

Austen excerpts are read from ../shared/data/austen at generation time; only the excerpts are committed.

Run (from the repository root):  python3 tools/make_tokenizer_fixtures.py
"""

import glob
import hashlib
import json
import os
import random
import sys

from tokenizers import AddedToken, Tokenizer, __version__, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
NEOX = os.path.join(SHARED, "tokenizers", "gpt-neox-20b.tokenizer.json")
AUSTEN = os.path.join(SHARED, "austen")
DEMO = os.path.join(ROOT, "models", "demo", "tokenizer.json")


def austen_excerpts(rng: random.Random):
    """Excerpts cut at word boundaries, of varied length, from each novel (raw text: hard line breaks)."""
    files = sorted(glob.glob(os.path.join(AUSTEN, "*.txt")))
    if not files:
        sys.exit(f"no Austen texts in {AUSTEN}")
    out = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for k in range(20):
            length = rng.choice([40, 80, 150, 300, 600])
            start = rng.randrange(0, len(text) - length - 1)
            # start at the next space so excerpts begin at a word (sometimes keep the leading space)
            start = text.index(" ", start) + rng.choice([0, 1])
            piece = text[start:start + length]
            if k % 5 == 4:
                piece = piece.replace("\n", "\r\n")  # CRLF variant
            out.append(piece)
        # one bigger chunk per novel, with its paragraph structure
        start = rng.randrange(0, len(text) - 3000)
        out.append(text[start:start + 2500])
    return out


HAND_WRITTEN = [
    # empty and trivial
    "", " ", "a", "\n", "\t", "\r\n", "  ", "   ", "Hello", "Hello world", " Hello world", "Hello world ",
    # contractions (case sensitive in the GPT-2 pattern)
    "don't", "DON'T", "I'm here, you're there, we've been, they'll go, he'd say, it's",
    "IT'S I'LL WE'VE", "'s's's", "rock 'n' roll", "O'Brien's", "’curly’ apostrophe’s",
    # numbers
    "1234567890", "3.14159 and 2,718", "In 1811, Mr. Dashwood had 4000 pounds.", "x1y2z3", "1st 2nd 3rd",
    "٠١٢٣٤٥٦٧٨٩ digits", "Ⅻ ⅻ ½ ² ³", "१२३ देवनागरी",
    # punctuation and symbols
    "Hello!!! What??? ...", "--- *** ___ === +++", "«quoted» „German“ “English”", "a—b–c", "€100 £50 ¥30 $20",
    "(a) [b] {c} <d>", "@user #tag ~tilde `tick` ^caret |pipe| \\back",
    # whitespace runs (the GPT-NeoX vocabulary has added tokens for 2..24 spaces)
    "a  b", "a   b", "a    b", "x" + " " * 24 + "y", "x" + " " * 25 + "y", "x" + " " * 50 + "y",
    " " * 7, " " * 30, "word" + " " * 5, " " * 5 + "word", "a \t b", "a\t\tb", "\t\t\tindented",
    "line1\n\nline2\n\n\nline3", "trailing newline\n", "\n\nleading newlines", "a \n b", "a  \n  b",
    "tabs\tand  spaces \t mixed", "end with spaces   ", "   ", " \n ", "\n \n \n",
    # CRLF and CR
    "line one\r\nline two\r\n", "a\r\n\r\nb", "old mac\rline", "\r\n  indented after crlf", "x \r\n y",
    # Unicode whitespace and format characters
    "no\u00a0break space", "em\u2003space", "ideographic\u3000space", "next\u0085line", "a\u2028b\u2029c",
    "zero\u200bwidth\u200cnon\u200djoiner", "\ufeffBOM at start", "BOM\ufeffinside", "soft\u00adhyphen",
    "word\u180emongolian", "narrow\u202fnbsp", "ctrl\x00nul\x01\x1b[31mred\x1b[0m", "unit\x1fsep\x1c",
    # accents, NFC composition, combining marks
    "café naïve résumé", "cafe\u0301 nai\u0308ve", "e\u0301", "A\u030a", "\u212b angstrom sign",
    "\u2126 ohm sign", "o\u0302\u0323 stacked", "Z\u0351\u0353\u0354a\u0350\u0352l\u0357g\u035bo",
    "\u1100\u1161\u11a8 jamo", "한국어 텍스트", "\uf900 compat ideograph", "ﬁ ligature ﬀ", "Ǆ ǅ ǆ",
    "ｆｕｌｌｗｉｄｔｈ", "Ｈｅｌｌｏ！", "x\u0301\u0301\u0301", "\u0301leading combining",
    # scripts
    "中文文本测试，包括标点符号。", "日本語のテキスト、ひらがなとカタカナ。", "Русский текст с пунктуацией.",
    "Ελληνικά γράμματα", "עברית מימין לשמאל", "العربية من اليمين إلى اليسار", "ภาษาไทยไม่มีช่องว่าง",
    "हिन्दी पाठ", "Tiếng Việt có dấu", "ქართული", "Հայերեն", "ᚠᚢᚦᚨᚱᚲ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙",
    "𐍈 gothic", "mixed中文and英文123混合",
    # emoji
    "😀", "😀😃😄😁", "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇫🇷🇯🇵", "❤️ heart", "1️⃣ keycap",
    "emoji😀inside", "🤖 robots 🤖 everywhere 🤖", "🧑🏿‍🚀",
    # code
    "def foo(x):\n    return x * 2\n",
    "function add(a, b) {\n  return a + b;\n}\n",
    "for (int i = 0; i < n; ++i) {\n\t\tsum += a[i];\n}",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "<html>\n  <body>\n    <p class=\"x\">Hi</p>\n  </body>\n</html>",
    "SELECT * FROM users WHERE id = 42;",
    "if x != y and not z:\n        pass\n            # deep comment",
    "const re = /^\\s+|\\s+$/g; // trim",
    "    four\n        eight\n            twelve\n                sixteen",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 1); }",
    "$ ls -la | grep '.ts' && echo \"done\"",
    "https://example.com/path?query=1&b=2#frag",
    "user@example.com",
    # special tokens and look-alikes
    "<|endoftext|>", "Hello<|endoftext|>World", "Hello <|endoftext|> World", "<|endoftext|><|endoftext|>",
    "a<|padding|>b", "<|endoftext|>\n\nThe next document", "<|endoftext", "endoftext|>", "<|endoftext|",
    "<|end of text|>", "<<|endoftext|>>", "text<|endoftext|>  two spaces", "<|ENDOFTEXT|>",
    "e\u0301<|endoftext|>\u0301", "<|endoftext|>" + " " * 26,
    # tokens of the tiny fixtures' extra added tokens (plain text for the other tokenizers)
    "a <mask> b", "a<mask>b", "a   <mask>   b", "<mask><mask>", "[SW] alone", "x[SW]y", "two [SW] [SW] here",
    "<r>   right stripped", "tail<r>", "Hello WORLD and hello world", "HELLO there", "héllo normalized",
    "é[SW] _[SW]_ 1[SW] [SW]2 ([SW]) [SW]", "x\t\n <mask>y", "a\u3000<mask>", "<r>\u3000\n z", "<r><r> <mask> <mask>",
    "  <mask>  ", "<mask>  [SW]  <r>  HELLO  ",
    "‿[SW]‿ -[SW]- ²[SW]² \u0301[SW]\u200d Ⅻ[SW]Ⅻ ＿[SW]＿ ١[SW]",
    # long pieces (exercise long-word BPE)
    "a" * 300, "ab" * 200, "-" * 120, "=" * 64, "." * 100, "ha" * 150 + "!",
    "supercalifragilisticexpialidocious" * 8,
    "中" * 200, "😀" * 60, "Lorem-ipsum-dolor-sit-amet-consectetur-adipiscing-elit" * 4,
    "0123456789" * 30,
]


def random_mixes(rng: random.Random, n: int):
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "  \t\n\r",
        ".,;:!?'\"-()[]{}<>/\\|_@#$%^&*+=~`", "éèàüöçñøåßæœ", "\u0300\u0301\u0302\u0308\u0327",
        "中文日本語한국어", "😀👍🏽❤️🇫🇷\u200d", "αβγδεζηθ", "абвгдежз", "\u00a0\u2003\u3000\u0085\ufeff",
    ]
    out = []
    for _ in range(n):
        length = rng.randrange(1, 120)
        s = []
        while len(s) < length:
            pool = rng.choice(pools)
            s.extend(rng.choice(pool) for _ in range(rng.randrange(1, 8)))
            if rng.random() < 0.05:
                s.append(rng.choice(["<|endoftext|>", " " * rng.randrange(2, 30), "<mask>", "'s", "'ll"]))
        out.append("".join(s))
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def decode_cases(tok: Tokenizer, rng: random.Random, n: int):
    """Random id sequences, biased towards single-byte tokens so that invalid UTF-8 occurs."""
    vocab = tok.get_vocab(with_added_tokens=True)
    size = tok.get_vocab_size(with_added_tokens=True)
    byte_tokens = sorted(i for t, i in vocab.items() if len(t) == 1)  # sorted: dict order is not stable
    added = sorted(tok.get_added_tokens_decoder().keys())
    cases = []
    for k in range(n):
        ids = []
        for _ in range(rng.randrange(1, 16)):
            r = rng.random()
            if r < 0.5:
                ids.append(rng.choice(byte_tokens))
            elif r < 0.65 and added:
                ids.append(rng.choice(added))
            else:
                ids.append(rng.randrange(0, size))
        cases.append(ids)
    # out-of-range ids are skipped by the library
    cases.append([size + 5, vocab.get("a", 0), size + 100])
    return [
        {"ids": ids, "text": tok.decode(ids), "textWithSpecial": tok.decode(ids, skip_special_tokens=False)}
        for ids in cases
    ]


def expected(tok: Tokenizer, path: str, texts, rng: random.Random):
    enc = []
    for i, text in enumerate(texts):
        ids = tok.encode(text).ids
        enc.append({"text": i, "ids": ids, "decoded": tok.decode(ids)})
    # special tokens treated as plain text (Tokenizer.encode_special_tokens = True)
    plain = []
    tok.encode_special_tokens = True
    for i, text in enumerate(texts):
        if any(t.special and t.content in text for t in tok.get_added_tokens_decoder().values()):
            plain.append({"text": i, "ids": tok.encode(text).ids})
    tok.encode_special_tokens = False
    return {
        "tokenizer": os.path.basename(path),
        "sha256": sha256(path),
        "tokenizers_version": __version__,
        "encode": enc,
        "encodeSpecialAsText": plain,
        "decode": decode_cases(tok, rng, 60),
    }


def train_tiny(texts, *, nfkc: bool):
    tok = Tokenizer(models.BPE())
    if nfkc:
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600 if not nfkc else 400,
        min_frequency=2,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=[] if nfkc else pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, special=True, normalized=False)])
    tok.add_tokens([
        AddedToken("[SW]", single_word=True, normalized=False),
        AddedToken("<r>", rstrip=True, normalized=False),
        AddedToken("HELLO", normalized=True),  # normalized content: lower-cased in the nfkc fixture
        AddedToken("é", normalized=True),
        AddedToken("  ", normalized=True),
    ])
    return tok


def main():
    rng = random.Random(20240611)
    os.makedirs(OUT, exist_ok=True)
    texts = austen_excerpts(rng) + HAND_WRITTEN + random_mixes(rng, 60)
    with open(os.path.join(OUT, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(texts)} texts")

    targets = []
    if os.path.exists(NEOX):
        targets.append(("gpt-neox-20b", NEOX))
    else:
        print(f"warning: {NEOX} absent, skipping its fixture")
    if os.path.exists(DEMO):
        targets.append(("demo", DEMO))

    # tiny tokenizers trained on a few KB of Austen
    train_texts = texts[:40]
    for name, nfkc in (("tiny-bpe", False), ("tiny-nfkc", True)):
        tok = train_tiny(train_texts, nfkc=nfkc)
        path = os.path.join(OUT, f"{name}.tokenizer.json")
        tok.save(path, pretty=False)
        targets.append((name, path))

    for name, path in targets:
        tok = Tokenizer.from_file(path)
        data = expected(tok, path, texts, random.Random(name))
        out = os.path.join(OUT, f"{name}.expected.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"{name}: {len(data['encode'])} encode cases, {len(data['decode'])} decode cases -> {out}")


if __name__ == "__main__":
    main()
