#!/usr/bin/env python3
"""run.py - the WeDLM benchmark of issue 6 on the shipped model (Debian python3 only).

For every prompt of the two sets (prompts_code.txt, prompts_lowent.txt; the sets alternate prompt
by prompt so a run cut short by --budget-s still covers both) and every decoder config, in a
shuffled order per prompt (configs interleaved so that load changes on a shared machine hit all
configs alike), runs

    vibee run --json -n 128 -t 1 -p PROMPT <config options>

and records tokens/forward, decode tok/s, the commit histogram and the tokens. Then scores every
distinct continuation with `vibee score --json-in` (the AR model's mean NLL in nats/token) and
writes raw.jsonl.gz (one record per run) and prompts_tokens.jsonl (the prompt tokens). analyze.py
turns these into results.md and tau_sweep.png.

Configs: ar; wedlm with tau in TAUS x lambda 0.02 for window 16 and 4 with the variants (default:
d0-AR + leftmost fallback) and window 16 with the official rule (--wedlm-official); wedlm
--wedlm-exact (lossless) for window 4 and 8, tau in EXACT_TAUS; wedlm --window 0 (auto) at tau 0.4
and exact at tau 100; verify with --draft-max 2, 4, 8, 0 (auto).

The adaptive modes read the measured cost of K-row forwards from a cost cache file
(VIBEE_COST_CACHE = OUT/.cost-tables.tsv, emptied at the start); before the timed runs, one
untimed warm-up generation per adaptive config measures it, as a user's first run would. The
table used is recorded in raw.jsonl.gz's meta.

Usage: /usr/bin/python3 bench/wedlm/run.py [--vibee build-wedlm/vibee] [--limit N] [--budget-s S]
                                           [--out DIR] [--n 128] [--sets code,lowent]
"""
import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TAUS = (0.2, 0.4, 0.7, 1.0, 1.5, 2.0, 3.0)
EXACT_TAUS = (0.4, 1.0, 2.0, 3.0, 100.0)


def configs():
    out = [("ar", ["--decoder", "ar"])]
    for window, official in ((16, False), (4, False), (16, True)):
        for tau in TAUS:
            name = f"wedlm w{window} {'official' if official else 'variants'} tau={tau}"
            args = ["--decoder", "wedlm", "--window", str(window), "--tau", str(tau), "--lambda", "0.02"]
            if official:
                args.append("--wedlm-official")
            out.append((name, args))
    # exact mode: every filled slot checked against the AR row before it (lossless at any tau)
    for window in (4, 8):
        for tau in EXACT_TAUS:
            out.append((f"wedlm w{window} exact tau={tau}",
                        ["--decoder", "wedlm", "--wedlm-exact", "--window", str(window), "--tau", str(tau),
                         "--lambda", "0.02"]))
    # the adaptive window (chosen from the measured cost of K-row forwards; may fall back to AR)
    out.append(("wedlm w=auto variants tau=0.4", ["--decoder", "wedlm", "--window", "0", "--tau", "0.4",
                                                   "--lambda", "0.02"]))
    out.append(("wedlm w=auto exact tau=100", ["--decoder", "wedlm", "--wedlm-exact", "--window", "0",
                                                "--tau", "100", "--lambda", "0.02"]))
    for k in (2, 4, 8, 0):
        out.append((f"verify k={'auto' if k == 0 else k}", ["--decoder", "verify", "--draft-max", str(k)]))
    return out


def load_prompts(name):
    with open(os.path.join(HERE, f"prompts_{name}.txt")) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_one(vibee, prompt, args, n, backend="cpu", model=None, extra=(), threads=1):
    cmd = [vibee, "run", "--json", "-n", str(n), "-t", str(threads), "-b", backend, "-p", prompt] + args + list(extra)
    if model:
        cmd += ["-m", model]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    wall = time.time() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    d = json.loads(p.stdout)
    d["wall_s"] = wall
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vibee", default="build-wedlm/vibee")
    ap.add_argument("--limit", type=int, default=20, help="prompts per set")
    ap.add_argument("--budget-s", type=float, default=0, help="start no new prompt after this many seconds")
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="vibee run -t")
    ap.add_argument("--sets", default="code,lowent")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--backend", default="cpu", help="vibee backend (-b): cpu, llamacpp, onnx, ...")
    ap.add_argument("--model", default=None, help="GGUF file (default: the embedded model; llamacpp needs a file)")
    ap.add_argument("--extra", default="", help="more vibee run options, space-separated (e.g. --vocab FILE.gguf)")
    ap.add_argument("--score-model", default=None, help="GGUF to score with (default: --model)")
    ap.add_argument("--configs", default="", help="regular expression: run only the matching configs (ar always)")
    a = ap.parse_args()
    sets = a.sets.split(",")
    prompts = {s: load_prompts(s)[: a.limit] for s in sets}
    order = []  # (set, index), sets alternating
    for i in range(a.limit):
        for s in sets:
            if i < len(prompts[s]):
                order.append((s, i))
    cfgs = [c for c in configs() if c[0] == "ar" or not a.configs or re.search(a.configs, c[0])]
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    raw_path = os.path.join(a.out, "raw.jsonl.gz")
    ptok_path = os.path.join(a.out, "prompts_tokens.jsonl")
    t_start = time.time()
    records, ptoks = [], {}
    meta = {"started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "uptime_before": open("/proc/loadavg").read().strip(),
            "command": f"{a.vibee} run --json -n {a.n} -t {a.threads} -b {a.backend}{' -m ' + a.model if a.model else ''}{' ' + a.extra if a.extra else ''} -p PROMPT <config>",
            "model": a.model or "embedded",
            "backend": a.backend, "configs": [c[0] for c in cfgs]}
    cost_path = os.path.join(a.out, ".cost-tables.tsv")
    if os.path.exists(cost_path):
        os.remove(cost_path)
    os.environ["VIBEE_COST_CACHE"] = cost_path
    for name, args in cfgs:  # warm-up: measure cost(K) once (untimed), as a first run would
        if "auto" in name:
            run_one(a.vibee, "import os\n", args, 32, a.backend, a.model, a.extra.split(), a.threads)
    meta["cost_tables_before"] = open(cost_path).read() if os.path.exists(cost_path) else ""
    for k, (s, i) in enumerate(order):
        if a.budget_s and time.time() - t_start > a.budget_s:
            print(f"budget reached after {k} prompts", file=sys.stderr)
            break
        shuffled = cfgs[:]
        rng.shuffle(shuffled)
        for name, args in shuffled:
            d = run_one(a.vibee, prompts[s][i], args, a.n, a.backend, a.model, a.extra.split(), a.threads)
            ptoks[(s, i)] = d["prompt_tokens"]
            records.append({"set": s, "prompt": i, "config": name, "tokens": d["tokens"],
                            "n_generated": d["n_generated"], "n_forward_decode": d["n_forward_decode"],
                            "tokens_per_forward": d["tokens_per_forward"], "decode_tok_s": d["decode_tok_s"],
                            "decode_seconds": d["decode_seconds"], "window": d["window"],
                            "commit_hist": d["commit_hist"], "note": d["note"], "wall_s": round(d["wall_s"], 4)})
        el = time.time() - t_start
        print(f"[{el:6.0f}s] {s} prompt {i} done ({k + 1}/{len(order)})", file=sys.stderr, flush=True)
    meta["run_seconds"] = round(time.time() - t_start, 1)
    meta["cost_tables_after"] = open(cost_path).read() if os.path.exists(cost_path) else ""
    meta["uptime_after"] = open("/proc/loadavg").read().strip()
    # Score every distinct continuation (and so every AR output) with the AR model.
    uniq = {}
    for r in records:
        uniq.setdefault((r["set"], r["prompt"], tuple(r["tokens"])), None)
    keys = list(uniq)
    score_in = os.path.join(a.out, ".score_in.jsonl")
    with open(score_in, "w") as f:
        for s, i, toks in keys:
            f.write(json.dumps({"prompt_tokens": ptoks[(s, i)], "tokens": list(toks)}, separators=(",", ":")) + "\n")
    t0 = time.time()
    score_model = a.score_model or a.model
    p = subprocess.run([a.vibee, "score", "-t", "1", "--json-in", score_in] + (["-m", score_model] if score_model else []),
                       capture_output=True, text=True,
                       timeout=1200)
    if p.returncode != 0:
        raise RuntimeError("vibee score failed: " + p.stderr[-400:])
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) == len(keys), (len(lines), len(keys))
    for key, sc in zip(keys, lines):
        uniq[key] = sc["nll_mean"]
    os.remove(score_in)
    meta["score_seconds"] = round(time.time() - t0, 1)
    meta["n_scored"] = len(keys)
    for r in records:
        r["nll"] = uniq[(r["set"], r["prompt"], tuple(r["tokens"]))]
    with gzip.open(raw_path, "wt") as f:
        f.write(json.dumps({"meta": meta}) + "\n")
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    with open(ptok_path, "w") as f:
        for (s, i), t in sorted(ptoks.items()):
            f.write(json.dumps({"set": s, "prompt": i, "prompt_tokens": t}, separators=(",", ":")) + "\n")
    print(f"wrote {raw_path} ({len(records)} runs, {meta['run_seconds']} s + scoring {meta['score_seconds']} s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
