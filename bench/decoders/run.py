#!/usr/bin/env python3
"""run.py - the one engine's benchmark: `vibee batch` aggregate tokens/s with AR, draft-and-verify
and WeDLM (exact) at 1, 8 and 16 concurrent sequences, each decoder's ratio to AR at the same
concurrency, in interleaved rounds (every configuration once per round; median over rounds).

  python3 bench/decoders/run.py [--vibee build/vibee] [--rounds 3] [--tokens 64] [--threads 1]
                                [--models shipped,distilled,qwen3] [--out results.jsonl]

Models: the shipped model (embedded), the self-distilled one (models/wedlm-py-6m-sd-f16.gguf) and
a random-weight Qwen3-0.6B-shaped Q8_0 model (scripts/make_model.py, cached in
~/.cache/vibee/bench-models; AR and verify only: it has no mask token). Prompts: the first 16 of
bench/wedlm/prompts_code.txt (code), newlines flattened to spaces (`vibee batch` reads one prompt
per line). Every run generates --tokens tokens per prompt with --ignore-eos, greedy. Aggregate
tok/s = generated tokens / wall time of the whole batch (prefill included). "Outside the forward":
1 - forward seconds / scheduler step seconds (decoder work: selection, entropy, sampling, logits
reads, and the scheduler's own bookkeeping)."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DECODERS = {
    "ar": [],
    "verify": ["--decoder", "verify"],  # draft length auto (cost(K) + acceptance)
    "wedlm-exact": ["--decoder", "wedlm", "--wedlm-exact", "--window", "4", "--tau", "100"],
}


def qwen3_model():
    d = os.path.expanduser("~/.cache/vibee/bench-models")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "qwen3-0.6b-q8_0.gguf")
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_model.py"), "--arch", "qwen3",
                        "--n-layer", "28", "--n-embd", "1024", "--n-head", "16", "--n-head-kv", "8",
                        "--head-dim", "128", "--n-ff", "3072", "--n-vocab", "151936", "--n-ctx", "40960",
                        "--tied", "--type", "q8_0", "--seed", "1", "--out", path], check=True)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vibee", default=os.path.join(ROOT, "build/vibee"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="shipped,distilled,qwen3")
    ap.add_argument("--parallel", default="1,8,16")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    models = {}
    for m in a.models.split(","):
        if m == "shipped": models[m] = ([], list(DECODERS))
        elif m == "distilled": models[m] = (["-m", os.path.join(ROOT, "models/wedlm-py-6m-sd-f16.gguf")], list(DECODERS))
        elif m == "qwen3": models[m] = (["-m", qwen3_model()], ["ar", "verify"])
    prompts = []
    with open(os.path.join(ROOT, "bench/wedlm/prompts_code.txt")) as f:
        for line in f:
            prompts.append(" ".join(json.loads(line).split()))
            if len(prompts) == 16: break
    tmp = tempfile.mkdtemp()
    pfile = os.path.join(tmp, "prompts.txt")
    with open(pfile, "w") as f: f.write("\n".join(prompts) + "\n")
    levels = [int(x) for x in a.parallel.split(",")]
    runs = {}
    out = open(a.out, "a") if a.out else None
    for rnd in range(a.rounds):
        for m, (margs, decs) in models.items():
            for p in levels:
                for d in decs:
                    cmd = [a.vibee, "batch", *margs, "-f", pfile, "-n", str(a.tokens), "--parallel", str(p),
                           "--ignore-eos", "--json", "-t", str(a.threads), "-c", "8192", *DECODERS[d]]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        print("FAILED:", " ".join(cmd), r.stderr[-400:], file=sys.stderr)
                        continue
                    j = json.loads(r.stdout)
                    st = j["stats"]
                    gen = st["generated"]
                    fw = sum(c.get("n_forward", 0) for c in j["completions"])
                    rec = {"round": rnd, "model": m, "parallel": p, "decoder": d, "tok_s": gen / st["wall_seconds"],
                           "tokens_per_forward": gen / fw if fw else 0.0, "steps": st["steps"], "generated": gen,
                           "outside_forward": 1.0 - st["forward_seconds"] / st["step_seconds"]
                           if st["step_seconds"] > 0 else 0.0,
                           "texts": [c["text"] for c in j["completions"]]}
                    runs.setdefault((m, p, d), []).append(rec)
                    if out:
                        out.write(json.dumps({k: v for k, v in rec.items() if k != "texts"}) + "\n")
                        out.flush()
                    print(f"round {rnd} {m} P={p} {d}: {rec['tok_s']:.1f} tok/s, {rec['tokens_per_forward']:.2f} tok/fwd",
                          file=sys.stderr)
    print(f"| model | sequences | decoder | aggregate tok/s (median of {a.rounds}) | vs AR | tokens/forward | "
          "step time outside the forward | same text as AR |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for m, (_, decs) in models.items():
        for p in levels:
            ar = runs.get((m, p, "ar"))
            ar_med = statistics.median(r["tok_s"] for r in ar) if ar else 0
            for d in decs:
                rs = runs.get((m, p, d))
                if not rs: continue
                med = statistics.median(r["tok_s"] for r in rs)
                same = "yes" if ar and all(r["texts"] == ar[0]["texts"] for r in rs) else "no"
                print(f"| {m} | {p} | {d} | {med:.1f} | {med / ar_med if ar_med else 0:.2f}x | "
                      f"{statistics.median(r['tokens_per_forward'] for r in rs):.2f} | "
                      f"{100 * statistics.median(r['outside_forward'] for r in rs):.1f}% | {same} |")


if __name__ == "__main__":
    main()
