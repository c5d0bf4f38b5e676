#!/usr/bin/env python3
"""make_prompts.py - writes the two prompt sets of the WeDLM benchmark (one JSON string per line):

  prompts_code.txt    20 held-out prompts from the model's domain: cuts of 200-400 bytes (whole
                      lines) from Python *test* files of this Debian 12 machine (*/test_*.py and
                      */tests/*.py under /usr/lib/python3*), which the shipped model's training set
                      excluded (it used the non-test *.py files). Deterministic (seeded, sorted).
  prompts_lowent.txt  20 low-entropy prompts: continuing a listing, tables of constants, repeated
                      boilerplate, and text whose continuation repeats the prompt (input-grounded).

Run: /usr/bin/python3 bench/wedlm/make_prompts.py [--vibee build/vibee]
  (rewrites both files next to this script). A code cut always ends where the source file goes on
  with a non-blank line; with --vibee, a cut is also dropped when the model's AR greedy
  continuation (`vibee run --json -n 128`) stops at EOS before 64 tokens, since a prompt the model
  takes for the end of a file measures no decoding speed.
"""
import glob
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def ar_length(vibee, prompt):
    p = subprocess.run([vibee, "run", "--json", "-n", "128", "-t", "1", "-p", prompt], capture_output=True,
                       text=True, timeout=120, check=True)
    return json.loads(p.stdout)["n_generated"]


def code_prompts(n=20, seed=6, vibee=None):
    files = set()
    for pat in ("/usr/lib/python3*/**/test_*.py", "/usr/lib/python3*/**/tests/*.py"):
        files.update(glob.glob(pat, recursive=True))
    files = sorted(f for f in files if os.path.isfile(f) and not os.path.islink(f))
    rng = random.Random(seed)
    rng.shuffle(files)
    out, seen_dirs = [], {}
    for path in files:
        if len(out) == n:
            break
        d = os.path.dirname(path)
        if seen_dirs.get(d, 0) >= 2:  # spread over packages
            continue
        try:
            text = open(path, encoding="ascii").read()
        except (UnicodeDecodeError, OSError):
            continue
        lines = text.splitlines(keepends=True)
        if len(lines) < 60:
            continue
        for _ in range(20):  # a few tries per file
            start = rng.randrange(20, len(lines) - 30)
            target = rng.randrange(200, 360)
            chunk, end = "", start
            for line in lines[start:]:
                chunk += line
                end += 1
                if len(chunk) >= target:
                    break
            if end >= len(lines) or not lines[end].strip():
                continue
            body = [l for l in chunk.splitlines() if l.strip() and not l.strip().startswith("#")]
            if (200 <= len(chunk) <= 400 and len(body) >= 4 and "\t" not in chunk
                    and chunk.count('"""') == 0 and chunk.count("'''") == 0):
                if vibee and ar_length(vibee, chunk) < 64:
                    print(f"dropped a cut of {path}: AR stops at once", file=sys.stderr)
                    continue
                out.append(chunk)
                seen_dirs[d] = seen_dirs.get(d, 0) + 1
                break
    assert len(out) == n, len(out)
    return out


def lowent_prompts():
    p = []
    p.append("".join(f"ERR_{i} = {i}\n" for i in range(12)))
    p.append("TABLE = [\n" + "".join(
        "    " + ", ".join(f"0x{r * 8 + c:02x}" for c in range(8)) + ",\n" for r in range(5)))
    p.append("import enum\n\n\nclass Color(enum.IntEnum):\n" + "".join(f"    C{i} = {i}\n" for i in range(10)))
    p.append("class TestSquare(unittest.TestCase):\n" + "".join(
        f"    def test_square_{i}(self):\n        self.assertEqual(square({i}), {i * i})\n\n" for i in range(1, 4)))
    p.append("CODES = {\n" + "".join(f"    '{c}': {ord(c)},\n" for c in "abcdefghijkl"))
    p.append("__all__ = [\n" + "".join(f'    "func_{c}",\n' for c in "abcdefghijk"))
    p.append("class File:\n" + "".join(
        f"    @property\n    def {n}(self):\n        return self._{n}\n\n" for n in ("name", "size", "mode", "owner")))
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    p.append("NUMBERS = [\n" + "".join(f"    ({i + 1}, '{w}'),\n" for i, w in enumerate(words[:8])))
    p.append("parser = argparse.ArgumentParser()\n" + "".join(
        f"parser.add_argument('--{n}', type=int, default=0)\n" for n in ("alpha", "beta", "gamma", "delta", "epsilon")))
    p.append("x = [0] * 32\n" + "".join(f"x[{i}] = 0\n" for i in range(16)))
    p.append("# " + "-" * 60 + "\n# Section 1\n# " + "-" * 60 + "\n\n\ndef one():\n    pass\n\n\n# " + "-" * 60
             + "\n# Section 2\n# " + "-" * 60 + "\n\n\ndef two():\n    pass\n\n\n# " + "-" * 60 + "\n")
    ops = ("add", "sub", "mul", "div", "mod")
    p.append("def opcode(op):\n" + "".join(
        f"    {'if' if i == 0 else 'elif'} op == '{o}':\n        return OP_{o.upper()}\n" for i, o in enumerate(ops)))
    p.append("".join(f'print("step {i}")\n' for i in range(1, 13)))
    p.append("class Point:\n    def __init__(self, a, b, c, d, e, f, g, h, i, j):\n"
             "        self.a = a\n        self.b = b\n        self.c = c\n        self.d = d\n")
    block = ("def parse(line):\n    key, _, value = line.partition('=')\n    key = key.strip()\n"
             "    value = value.strip()\n    return key, value\n\n\n")
    p.append(block + "# the same function again\n" + block.split("\n")[0] + "\n")
    p.append('DATA = """\nname,age,city\n' + "".join(
        f"user{i},{20 + i},city{i}\n" for i in range(10)))
    p.append("".join(f"assert f({i}) == {i}\n" for i in range(14)))
    p.append("".join(f"from .module_{c} import {c.upper()}\n" for c in "abcdefghij"))
    p.append("".join(f"    def get_{n}(self):\n        return self.{n}\n\n" for n in ("x", "y", "z", "w"))
             + "    def set_x(self, value):\n        self.x = value\n\n    def set_y(self, value):\n")
    p.append("KEYWORDS = (\n" + "".join(
        f"    '{k}',\n" for k in ("False", "None", "True", "and", "as", "assert", "async", "await", "break",
                                 "class", "continue", "def", "del", "elif")))
    assert len(p) == 20
    for s in p:
        assert 120 <= len(s) <= 420, (len(s), s)
    return p


def main():
    vibee = sys.argv[sys.argv.index("--vibee") + 1] if "--vibee" in sys.argv else None
    for name, prompts in (("prompts_code.txt", code_prompts(vibee=vibee)), ("prompts_lowent.txt", lowent_prompts())):
        with open(os.path.join(HERE, name), "w") as f:
            for s in prompts:
                f.write(json.dumps(s) + "\n")
        print(name, len(prompts), "prompts, bytes", min(map(len, prompts)), "-", max(map(len, prompts)))


if __name__ == "__main__":
    main()
