#!/usr/bin/env python3
"""distill_data.py - self-distillation data for the WeDLM mask stream: prompt cuts from the training domain
plus the model's OWN AR greedy continuation (made with the vibee CLI).

Prompts: non-test *.py files under --roots (default /usr/lib/python3,/usr/lib/python3.11); every path with a
`test` component in any directory name or file name is skipped (the benchmark prompts of
bench/wedlm/make_prompts.py come from */test_*.py and */tests/*.py, so none of those files is used), and
any file that contains one of the bench prompts verbatim is skipped too. A prompt = [BOS] + (plen-1) tokens
starting at a line start somewhere in the file. Its continuation = `vibee run --json -n N -t 1
--prompt-tokens ...` (AR greedy); samples that stop at EOS before N tokens are dropped.

Output: --out FILE.jsonl, one {"path", "prompt_tokens", "tokens"} object a line (appended; resumable).
Run: nice -n 19 /usr/bin/python3 distill_data.py --gguf models/wedlm-py-6m-f16.gguf --vibee /tmp/vibee-model
       --out /tmp/wedlm-sd/distill.jsonl --minutes 10
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_load import read_gguf, gguf_tokenizer  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def is_test_path(p):
    parts = p.split(os.sep)
    return any("test" in x.lower() for x in parts)


def list_files(roots):
    files = set()
    for r in roots:
        files.update(glob.glob(os.path.join(r, "**", "*.py"), recursive=True))
    return sorted(f for f in files if os.path.isfile(f) and not os.path.islink(f) and not is_test_path(f))


def read_source(path, exclude_text, min_len=2000, max_len=400000):
    """The text of a Python file to cut samples from, or None: unreadable or not UTF-8, shorter than
    min_len or longer than max_len (None: no bound) characters, or holding one of exclude_text."""
    try:
        text = open(path, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        return None
    if len(text) < min_len or (max_len is not None and len(text) > max_len):
        return None
    if any(b in text for b in exclude_text):
        return None
    return text


def bench_prompts():
    out = []
    for name in ("prompts_code.txt", "prompts_lowent.txt"):
        p = os.path.join(REPO, "bench", "wedlm", name)
        if os.path.exists(p):
            out += [json.loads(l) for l in open(p) if l.strip()]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--vibee", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--roots", default="/usr/lib/python3,/usr/lib/python3.11")
    ap.add_argument("--plen", type=int, default=64, help="prompt tokens incl. BOS")
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--max-samples", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--per-file", type=int, default=1)
    a = ap.parse_args()
    t0 = time.time()
    kv, _ = read_gguf(a.gguf)
    tok = gguf_tokenizer(kv)
    bos = kv["tokenizer.ggml.bos_token_id"]
    eos = kv.get("tokenizer.ggml.eos_token_id", bos)
    bench = bench_prompts()
    files = list_files(a.roots.split(","))
    rng = random.Random(a.seed)
    rng.shuffle(files)
    done = set()
    if os.path.exists(a.out):
        done = {json.loads(l)["path"] for l in open(a.out) if l.strip()}
    print(f"[data] {len(files)} candidate files, {len(done)} already done, {len(bench)} bench prompts excluded",
          flush=True)
    fo = open(a.out, "a")
    n_ok = n_short = 0
    for path in files:
        if time.time() - t0 > a.minutes * 60 or n_ok >= a.max_samples:
            break
        if path in done:
            continue
        text = read_source(path, bench)
        if text is None:
            continue
        lines = text.splitlines(keepends=True)
        for _ in range(a.per_file):
            start = rng.randrange(0, max(1, len(lines) - 40))
            chunk = "".join(lines[start:start + 60])
            ids = tok.encode(chunk)
            if len(ids) < a.plen - 1:
                continue
            prompt = [bos] + ids[:a.plen - 1]
            r = subprocess.run([a.vibee, "run", "-m", a.gguf, "--json", "-n", str(a.n), "-t", "1",
                                "--prompt-tokens", ",".join(map(str, prompt))], capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                print("[data] vibee failed:", r.stderr[-300:], flush=True)
                continue
            j = json.loads(r.stdout)
            gen = j["tokens"]
            if len(gen) < a.n or eos in gen:
                n_short += 1
                continue
            assert j["prompt_tokens"] == prompt, "vibee changed the prompt tokens"
            fo.write(json.dumps(dict(path=path, prompt_tokens=prompt, tokens=gen)) + "\n")
            fo.flush()
            n_ok += 1
        if n_ok % 100 == 0 and n_ok:
            print(f"[data] {n_ok} samples ({n_short} dropped: EOS) t={time.time()-t0:.0f}s", flush=True)
    print(f"[data] done: {n_ok} samples, {n_short} dropped (EOS before {a.n}), t={time.time()-t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
