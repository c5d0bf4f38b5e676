#!/usr/bin/env python3
"""analyze.py - turns the WeDLM benchmark's raw.jsonl.gz (written by run.py; a plain raw.jsonl is
read too) into the tables of results.md (printed to stdout as markdown) and the plot tau_sweep.png
(speedup vs quality over the tau sweep; needs Debian's python3-matplotlib).

Per set and config, over the prompts (each compared with the AR run of the same prompt):
  tok/fwd      median tokens per decode forward
  ms/forward   median wall milliseconds per decode forward (decode time / decode forwards)
  tok/s        median decode tokens/s (wall clock, decode phase only)
  speedup      median over prompts of decode tok/s / the same prompt's AR decode tok/s
  prefix agr   mean over prompts of (length of the common prefix with AR greedy) / (AR length)
  exact        fraction of prompts whose output equals AR greedy exactly
  NLL          median over prompts of the AR model's mean NLL (nats/token) of the produced tokens
  dNLL         mean over prompts of NLL - NLL(AR output of that prompt)

Usage: /usr/bin/python3 bench/wedlm/analyze.py [DIR] [--plot FILE.png] [--results FILE.md]
  prints the tables; --results also writes them into FILE.md with the machine (lscpu), the load
  (/proc/loadavg before and after the run) and the commands, above the text of DIR/reading.md
  (the hand-written reading of the numbers) when that file exists.
"""
import gzip
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(dirpath):
    meta, recs = None, []
    path = os.path.join(dirpath, "raw.jsonl.gz")
    opener = gzip.open if os.path.exists(path) else open
    if not os.path.exists(path):
        path = os.path.join(dirpath, "raw.jsonl")
    with opener(path, "rt") as f:
        for line in f:
            d = json.loads(line)
            if "meta" in d:
                meta = d["meta"]
            else:
                recs.append(d)
    return meta, recs


def prefix_len(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def aggregate(recs):
    """{set: {config: row}} with the metrics above; configs in first-seen order of meta."""
    ar = {(r["set"], r["prompt"]): r for r in recs if r["config"] == "ar"}
    groups = {}
    for r in recs:
        key = (r["set"], r["prompt"])
        if key not in ar:
            continue
        groups.setdefault(r["set"], {}).setdefault(r["config"], []).append((r, ar[key]))
    out = {}
    for s, by_cfg in groups.items():
        out[s] = {}
        for cfg, pairs in by_cfg.items():
            tpf = [r["tokens_per_forward"] for r, _ in pairs]
            tps = [r["decode_tok_s"] for r, _ in pairs]
            spd = [r["decode_tok_s"] / a["decode_tok_s"] for r, a in pairs if a["decode_tok_s"] > 0]
            agr = [prefix_len(r["tokens"], a["tokens"]) / max(1, len(a["tokens"])) for r, a in pairs]
            exact = [r["tokens"] == a["tokens"] for r, a in pairs]
            nll = [r["nll"] for r, _ in pairs]
            dnll = [r["nll"] - a["nll"] for r, a in pairs]
            msf = [1e3 * r["decode_seconds"] / max(1, r["n_forward_decode"]) for r, _ in pairs]
            n_tok = sum(r["n_generated"] for r, _ in pairs)
            n_fwd = sum(r["n_forward_decode"] for r, _ in pairs)
            out[s][cfg] = {
                "n": len(pairs), "tpf": statistics.median(tpf), "tpf_pooled": n_tok / max(1, n_fwd),
                "tok_s": statistics.median(tps), "ms_fwd": statistics.median(msf), "speedup": statistics.median(spd),
                "agree": statistics.mean(agr), "exact": sum(exact) / len(exact),
                "nll": statistics.median(nll), "dnll": statistics.mean(dnll),
                "notes": sorted({r["note"] for r, _ in pairs if r["note"]}),
            }
    return out


def table(rows, order):
    lines = ["| config | tok/fwd (median) | tok/fwd (pooled) | ms/forward | decode tok/s | speedup vs AR"
             " | prefix agreement | exact = AR | NLL (nats/tok) | dNLL vs AR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cfg in order:
        if cfg not in rows:
            continue
        m = rows[cfg]
        lines.append(f"| {cfg} | {m['tpf']:.2f} | {m['tpf_pooled']:.2f} | {m['ms_fwd']:.2f} | {m['tok_s']:.0f} | {m['speedup']:.2f}x"
                     f" | {m['agree']:.2f} | {m['exact']:.2f} | {m['nll']:.3f} | {m['dnll']:+.3f} |")
    return "\n".join(lines)


def plot(agg, order, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in ("code", "lowent") if s in agg]
    fig, axes = plt.subplots(3, len(sets), figsize=(6.2 * len(sets), 12), squeeze=False)
    families = [("wedlm w16 variants", "tab:blue", "o-"), ("wedlm w16 official", "tab:orange", "s-"),
                ("wedlm w4 variants", "tab:green", "^-"), ("wedlm w4 official", "tab:red", "v-"),
                ("wedlm w4 exact", "tab:brown", "P-"), ("wedlm w8 exact", "tab:gray", "X-")]
    panels = [("speedup", "agree", "decode speedup vs AR (wall clock)", "prefix agreement with AR greedy"),
              ("speedup", "dnll", "decode speedup vs AR (wall clock)", "NLL - NLL(AR), nats/token"),
              ("tpf", "agree", "tokens per forward (median)", "prefix agreement with AR greedy")]
    titles = {"code": "held-out Python (test files)", "lowent": "low-entropy set"}
    for c, s in enumerate(sets):
        rows = agg[s]
        for r, (xk, yk, xl, yl) in enumerate(panels):
            ax = axes[r][c]
            for fam, color, style in families:
                pts = [(rows[k][xk], rows[k][yk], k.split("tau=")[1]) for k in order
                       if k.startswith(fam + " ") and k in rows]
                if not pts:
                    continue
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=fam, ms=5)
                for x, y, t in pts:
                    ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=color)
            vk = [k for k in order if k.startswith("verify") and k in rows]
            for j, k in enumerate(vk):
                ax.plot(rows[k][xk], rows[k][yk], "D", color="tab:purple", ms=6,
                        label="verify (= AR output)" if j == 0 else None)
                ax.annotate(k.replace("verify ", ""), (rows[k][xk], rows[k][yk]), textcoords="offset points",
                            xytext=(-12, -12 - 9 * j), fontsize=7, color="tab:purple")
            if "ar" in rows:
                ax.plot(rows["ar"][xk], rows["ar"][yk], "k*", ms=12, label="ar")
            ax.axvline(1.0, color="gray", lw=0.6, ls=":")
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(f"{titles.get(s, s)} (labels: tau)")
                ax.legend(fontsize=7, loc="best")
    fig.suptitle("wedlm-py-6m on cpu, 1 thread, -n 128: speedup vs quality over the tau sweep (lambda 0.02)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def machine():
    import subprocess
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    except OSError:
        return "lscpu not available"
    keep = ("Model name", "CPU family", "Model:", "CPU(s):", "Thread(s) per core", "L1d", "L2", "L3",
            "Hypervisor vendor")
    out = [" ".join(l.split()) for l in lines if l.startswith(keep)]
    flags = [l for l in lines if l.startswith("Flags")]
    if flags:
        have = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni") if f" {f}" in flags[0]]
        out.append("Flags (relevant): " + " ".join(have))
    return "; ".join(out)


def main():
    args = sys.argv[1:]
    png = results = None
    for opt in ("--plot", "--results"):
        if opt in args:
            i = args.index(opt)
            if opt == "--plot":
                png = args[i + 1]
            else:
                results = args[i + 1]
            del args[i:i + 2]
    d = args[0] if args else HERE
    meta, recs = load(d)
    agg = aggregate(recs)
    order = meta["configs"] if meta else sorted({r["config"] for r in recs})
    text = []
    for s in ("code", "lowent"):
        if s not in agg:
            continue
        n = agg[s]["ar"]["n"] if "ar" in agg[s] else 0
        text.append(f"### Set `{s}` ({n} prompts)\n")
        text.append(table(agg[s], order))
        notes = sorted({nt for m in agg[s].values() for nt in m["notes"]})
        if notes:
            text.append("\nNotes from the decoders: " + "; ".join(notes))
        text.append("")
    tables = "\n".join(text)
    print(tables)
    if png:
        plot(agg, order, png)
    if results:
        reading = ""
        rp = os.path.join(d, "reading.md")
        if os.path.exists(rp):
            reading = open(rp).read()
        with open(results, "w") as f:
            backend = meta.get("backend", "cpu") if meta else "cpu"
            f.write(f"# WeDLM benchmark (issue 6): wedlm-py-6m on the {backend} backend\n\n")
            f.write(reading + ("\n" if reading else ""))
            f.write("## Setup\n\n")
            f.write(f"- Machine: {machine()}\n")
            if meta:
                f.write(f"- Run started {meta['started_utc']} UTC, {meta['run_seconds']} s of runs + "
                        f"{meta['score_seconds']} s scoring ({meta['n_scored']} distinct continuations); "
                        f"/proc/loadavg before: `{meta['uptime_before']}`, after: `{meta['uptime_after']}` "
                        "(2 vCPUs shared with other jobs: wall-clock numbers are noisy; every config ran "
                        "interleaved with AR on the same prompt, in a shuffled order per prompt)\n")
                f.write(f"- Each run: `{meta['command']}`, model = {meta.get('model', 'embedded')} "
                        f"(embedded = models/wedlm-py-6m-f16.gguf), backend {meta.get('backend', 'cpu')}; configs: `--decoder ar`; "
                        "`--decoder wedlm --window W --tau T --lambda 0.02 [--wedlm-official | --wedlm-exact]` "
                        "(W = 0: adaptive); "
                        "`--decoder verify --draft-max K` (0 = auto)\n")
                if meta.get("cost_tables_before"):
                    f.write("- Cost of K-row forwards used by the adaptive modes (cost cache file, measured by "
                            "an untimed warm-up run before the timed runs; `K:seconds`): before "
                            f"`{meta['cost_tables_before'].split(chr(9))[-1].strip()}`, after the runs (the "
                            f"file is not changed by runs) `{meta.get('cost_tables_after', '').split(chr(9))[-1].strip()}`\n")
            f.write("- NLL: `vibee score --json-in FILE` (AR next-token log-softmax of the produced tokens "
                    "after the prompt, teacher-forced)\n")
            f.write("- Reproduce: `/usr/bin/python3 bench/wedlm/make_prompts.py` (prompt sets), "
                    "`/usr/bin/python3 bench/wedlm/run.py --vibee build/vibee` (about 4-5 min here, 1520 runs; other backends: see the subfolders' Setup), "
                    "`/usr/bin/python3 bench/wedlm/analyze.py bench/wedlm --plot bench/wedlm/tau_sweep.png "
                    "--results bench/wedlm/results.md`\n")
            f.write("- Metrics: tok/fwd = generated tokens / decode forwards (median over prompts; pooled = "
                    "sums over prompts); decode tok/s = median; speedup = median over prompts of tok/s / "
                    "AR tok/s of the same prompt; prefix agreement = mean over prompts of (common prefix "
                    "with AR greedy) / (AR length); exact = fraction of prompts identical to AR; NLL = "
                    "median of the per-prompt mean NLL (nats/token); dNLL = mean of NLL - NLL(AR output)\n\n")
            f.write("## Results\n\n")
            f.write(tables + "\n")
            f.write("![speedup vs quality over the tau sweep](tau_sweep.png)\n")


if __name__ == "__main__":
    main()
