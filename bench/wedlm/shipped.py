#!/usr/bin/env python3
"""shipped.py - issue 17's table for every shipped model: lossless WeDLM (--wedlm-exact, tau 100,
W 4 and 8, and the adaptive window) and draft-and-verify against AR, at 1 and 2 threads, each
config interleaved with AR per prompt (run.py), on the code and low-entropy prompt sets.

  /usr/bin/python3 bench/wedlm/shipped.py --vibee build/vibee [--models a.gguf,b.gguf] [--threads 1,2]

Writes bench/wedlm/shipped/<model>-t<threads>/raw.jsonl.gz (run.py) and bench/wedlm/shipped/
summary.md (one row per model, threads and set: AR tok/s, then per config tokens/forward (pooled),
median speedup vs AR, and the fraction of prompts whose output equals AR's)."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import analyze  # noqa: E402

CONFIGS = ["wedlm w4 exact tau=100.0", "wedlm w8 exact tau=100.0", "wedlm w=auto exact tau=100",
           "verify k=4", "verify k=auto"]
CONFIG_RE = r"^(verify k=(4|auto)|wedlm w(4|8) exact tau=100\.0|wedlm w=auto exact tau=100)$"
DEFAULT_MODELS = ["models/wedlm-py-6m-f16.gguf", "models/wedlm-py-6m-q8_0.gguf",
                  "models/wedlm-py-6m-sd-f16.gguf", "models/wedlm-py-6m-sd3-f16.gguf"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vibee", default="build/vibee")
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "shipped"))
    ap.add_argument("--skip-runs", action="store_true", help="only rebuild summary.md from the raw files")
    a = ap.parse_args()
    rows = []
    for model in a.models.split(","):
        name = os.path.basename(model).removesuffix(".gguf")
        for t in a.threads.split(","):
            d = os.path.join(a.out, f"{name}-t{t}")
            if not a.skip_runs:
                os.makedirs(d, exist_ok=True)
                subprocess.run([sys.executable, os.path.join(HERE, "run.py"), "--vibee", a.vibee, "--model", model,
                                "--threads", t, "--out", d, "--configs", CONFIG_RE], check=True)
            meta, recs = analyze.load(d)
            agg = analyze.aggregate(recs)
            for s in ("code", "lowent"):
                cells = []
                for c in CONFIGS:
                    m = agg[s].get(c)
                    cells.append(f"{m['tpf_pooled']:.2f} / {m['speedup']:.2f}x / {m['exact']:.2f}" if m else "-")
                rows.append(f"| {name} | {t} | {s} | {agg[s]['ar']['tok_s']:.0f} | " + " | ".join(cells) + " |")
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write("| model | threads | set | AR tok/s | " + " | ".join(CONFIGS) + " |\n")
        f.write("|---|---:|---|---:|" + "---:|" * len(CONFIGS) + "\n")
        f.write("\n".join(rows) + "\n\n")
        f.write("Cells: tokens per forward (pooled over the prompts) / median over prompts of decode tok/s "
                "relative to AR on the same prompt (run right after it) / fraction of prompts whose output "
                "equals AR's. Machine and commands: " + os.path.relpath(os.path.join(a.out, "reading.md"), REPO) + ".\n")
    print(open(os.path.join(a.out, "summary.md")).read())


if __name__ == "__main__":
    main()
