#!/usr/bin/python3
"""wedlm_golden.py MODEL.gguf TEXTS.json OUT.golden - golden token ids for the shipped WeDLM model
from its own training tokenizer (scripts/wedlm/bpe.py, byte-level BPE + Qwen2 pre-tokenizer),
rebuilt from the model's tokenizer.ggml.tokens / merges. Needs Debian's python3-regex (bpe.py's
stdlib fallback is only approximate, so without it nothing is written and the script fails).
Golden line: hex(UTF-8 text) TAB parse_special(0/1) TAB ids separated by spaces."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "wedlm"))


def read_kv(path):
    """GGUF metadata only (v2/v3): dict key -> value (arrays as lists)."""
    buf = open(path, "rb").read()
    o = 0

    def rd(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, buf, o)
        o += struct.calcsize("<" + fmt)
        return v[0]

    def rs():
        nonlocal o
        n = rd("Q")
        s = buf[o:o + n].decode("utf-8")
        o += n
        return s

    sc = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rv(t):
        if t == 8:
            return rs()
        if t == 9:
            et, n = rd("I"), rd("Q")
            return [rv(et) for _ in range(n)]
        return rd(sc[t])

    if buf[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    o = 4
    rd("I")
    rd("Q")
    n_kv = rd("Q")
    kv = {}
    for _ in range(n_kv):
        k = rs()
        kv[k] = rv(rd("I"))
    return kv


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    model, texts_path, out = sys.argv[1:]
    try:
        import regex  # noqa: F401
    except ImportError:
        raise SystemExit("wedlm_golden.py: python3-regex is missing (apt-get install -y python3-regex); "
                         "bpe.py's fallback pattern is only approximate, so no golden file was written")
    import bpe
    kv = read_kv(model)
    tokens = kv["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in kv["tokenizer.ggml.merges"]]
    tok = bpe.Tokenizer(tokens, merges)
    assert tok.mask_id == kv["tokenizer.ggml.mask_token_id"], "mask id differs from the GGUF key"
    texts = json.load(open(texts_path, encoding="utf-8"))
    texts += [
        "import os\nimport sys\n\ndef main(argv):\n    \"\"\"Entry point.\"\"\"\n    return 0\n",
        "class Foo(Bar):\n    def __init__(self, x: int = 3) -> None:\n        self._x = x  # comment\n",
        "for i, (k, v) in enumerate(sorted(d.items(), key=lambda kv: -kv[1])):\n\tprint(f\"{i:>4} {k!r}\")\n",
    ]
    # whitespace the references disagree on (JavaScript's \s takes U+FEFF, not U+0085; PCRE2's
    # takes U+180E): only Python's regex module (Unicode White_Space) is the reference here
    texts += ["x \ufeffy", "x \u0085y", "x \u180ey", "a\u0085\u0085 b", "\u180e\u180e x", "q\u0085\n\u0085 z"]
    specials = ["done<|endoftext|>next", "x = <|mask|><|mask|> + 1<|endoftext|>"]
    lines = [f"# scripts/wedlm/bpe.py on {os.path.basename(model)}: n_vocab {len(tokens)}, {len(merges)} merges",
             "# hex(utf-8 text) \\t parse_special \\t ids"]
    for t in texts:
        lines.append(f"{t.encode('utf-8').hex()}\t0\t{' '.join(map(str, tok.encode(t)))}")
    for t in specials:
        lines.append(f"{t.encode('utf-8').hex()}\t1\t{' '.join(map(str, tok.encode(t, parse_special=True)))}")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"tokenizer fixtures: wedlm written ({len(lines) - 2} cases)")


if __name__ == "__main__":
    main()
