#!/usr/bin/python3
"""plot_bench.py - turns the JSON lines written by bench/cpu/run.sh (vibee bench --json, tagged with
run_id/file, plus machine/params/load records) into charts and a markdown report:

  <outdir>/decode.png   decode tok/s per model, weight type and thread count, cpu vs llamacpp side by
                        side, the memory-bandwidth limit (probe GB/s / weight bytes per token) marked
  <outdir>/prefill.png  the same for prefill
  <outdir>/kcost.png    cost(K)/cost(1) of a K-row forward, per backend and thread count
  <outdir>/results.md   the tables (ratios cpu/llamacpp, bandwidth, fraction of the limit, cost(K)),
                        the machine, the commands and the load during the run

Usage: /usr/bin/python3 bench/plot_bench.py [RESULTS.jsonl] [--run RUN_ID] [--outdir DIR]
  default input: the newest bench/cpu/results-*.jsonl; default run: the newest run in it that has
  results and no {"kind":"aborted"} record; default outdir: the input's directory.
Needs only Debian's python3-matplotlib (apt-get install python3-matplotlib).
"""
import argparse
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BACKENDS = ("cpu", "llamacpp")
COLORS = {"cpu": "#1f77b4", "llamacpp": "#ff7f0e"}
TYPE_ORDER = {"f32": 0, "bf16": 1, "f16": 2, "q8_0": 3, "q6_k": 4, "q4_k": 5, "q4_0": 6}


def load(path, run_id):
    records = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"plot_bench: {path}:{n}: skipped, not JSON ({e})", file=sys.stderr)
    runs = []  # run ids in order of appearance
    for r in records:
        if r.get("run_id") and r["run_id"] not in runs:
            runs.append(r["run_id"])
    if not runs:
        sys.exit(f"plot_bench: no tagged records in {path}")
    if run_id is None:
        # the newest run that has results (a run cut short still counts if nothing newer exists)
        aborted = {x["run_id"] for x in records if x.get("kind") == "aborted"}
        with_results = [r for r in runs if r not in aborted and
                        any(x.get("run_id") == r and x.get("kind") == "bench" for x in records)]
        run_id = with_results[-1] if with_results else runs[-1]
    if run_id not in runs:
        sys.exit(f"plot_bench: run {run_id} not in {path} (runs: {', '.join(runs)})")
    why = {x["run_id"]: "aborted: " + x.get("why", "") for x in records if x.get("kind") == "aborted"}
    why.update({x["run_id"]: x.get("note", "") for x in records if x.get("kind") == "note"})
    return run_id, [r for r in records if r.get("run_id") == run_id], [(r, why.get(r, "")) for r in runs]


def model_base(rec):
    """'qwen3-0.6b' from file .../qwen3-0.6b-q8_0.gguf and weight_type q8_0."""
    name = os.path.basename(rec.get("file") or rec.get("model", "?"))
    if name.endswith(".gguf"):
        name = name[:-5]
    suffix = "-" + rec.get("weight_type", "")
    return name[: -len(suffix)] if name.endswith(suffix) else name


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def ratio(a, b):
    return a / b if a and b else None


def collect(recs):
    """speed rows {(model, type, threads): {backend: record}} and cost(K) records."""
    speed, kcost = {}, []
    for r in recs:
        if r.get("kind") != "bench":
            continue
        if "kcost" in r:
            kcost.append(r)
        if r.get("n_gen", 0) > 0 or r.get("n_prompt", 0) > 0:
            key = (model_base(r), r["weight_type"], r["threads"])
            speed.setdefault(key, {})[r["backend"]] = r
    order = sorted(speed, key=lambda k: (k[0], TYPE_ORDER.get(k[1], 99), k[1], k[2]))
    return [(k, speed[k]) for k in order], kcost


def limit_of(row):
    """decode limit for a configuration: the higher of the two probes (the less disturbed one)."""
    lims = [row[b]["decode_limit_tok_s"] for b in BACKENDS if b in row and row[b].get("decode_limit_tok_s")]
    return max(lims) if lims else None


def load_note(recs):
    """'run 2026-...Z, 1-min load 2.5-5.6 on 2 cores' from the load records."""
    run = next((r["run_id"] for r in recs if r.get("run_id")), "?")
    cores = next((r.get("cores") for r in recs if r.get("kind") == "machine"), "?")
    l1 = [float(r["loadavg"].split()[0]) for r in recs if r.get("kind") == "load" and r.get("loadavg")]
    return f"run {run}" + (f", 1-min load average {min(l1):.1f}-{max(l1):.1f} on {cores} cores" if l1 else "")


def bar_chart(rows, field, title, ylabel, path, mark_limit):
    models = sorted({k[0] for k, _ in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        mrows = [(k, row) for k, row in rows if k[0] == model]
        width = 0.38
        for i, (k, row) in enumerate(mrows):
            for j, b in enumerate(BACKENDS):
                if b not in row:
                    continue
                v = row[b][field]
                x = i + (j - 0.5) * width
                ax.bar(x, v, width, color=COLORS[b], label=b if i == 0 else None)
                ax.text(x, v, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="bottom", fontsize=7)
            if mark_limit:
                lim = limit_of(row)
                if lim:
                    ax.hlines(lim, i - width, i + width, colors="black", linewidth=2,
                              label="bandwidth limit (probe GB/s / weight bytes per token)" if i == 0 else None)
        labels = []
        for k, row in mrows:
            r = ratio(row.get("cpu", {}).get(field), row.get("llamacpp", {}).get(field))
            labels.append(f"{k[1]}\n{k[2]} thr" + (f"\ncpu/llama {r:.2f}" if r is not None else ""))
        ax.set_xticks(range(len(mrows)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(model)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        top = max([row[b][field] for _, row in mrows for b in BACKENDS if b in row] +
                  ([limit_of(row) or 0 for _, row in mrows] if mark_limit else []))
        ax.set_ylim(0, top * 1.1 if top > 0 else 1)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, 0.92), frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def kcost_chart(kcost, path):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    allk = set()
    for r in sorted(kcost, key=lambda r: (r["backend"], r["threads"])):
        ks = sorted(int(k) for k in r["kcost"])
        allk.update(ks)
        ax.plot(ks, [r["kcost"][str(k)] for k in ks], marker="o", color=COLORS.get(r["backend"]),
                linestyle="-" if r["threads"] == 1 else "--", label=f'{r["backend"]}, {r["threads"]} thr')
    if allk:
        ks = sorted(allk)
        ax.plot(ks, ks, color="gray", linewidth=0.8, linestyle=":", label="cost = K (no gain from batching)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
    name = model_base(kcost[0]) + "-" + kcost[0]["weight_type"] if kcost else ""
    ax.set_title(f"cost of a K-row forward / 1-row forward ({name}, 64-row context)", fontsize=10)
    ax.set_xlabel("K (rows per forward)")
    ax.set_ylabel("cost(K) / cost(1)")
    ax.set_yscale("log", base=2)
    yt = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
    lo, hi = ax.get_ylim()
    yt = [y for y in yt if lo <= y <= hi] or yt
    ax.set_yticks(yt)
    ax.set_yticklabels([f"{y:g}" for y in yt])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(run_id, recs, rows, kcost, src, all_runs):
    machine = next((r for r in recs if r.get("kind") == "machine"), {})
    params = next((r for r in recs if r.get("kind") == "params"), {})
    loads = [r for r in recs if r.get("kind") == "load"]
    out = [f"# CPU benchmark: vibee `cpu` vs `llamacpp` backend, run {run_id}", ""]
    out += [f"Source: `{src}` (run_id {run_id}); made by `bench/plot_bench.py`. Charts: "
            "[decode.png](decode.png), [prefill.png](prefill.png), [kcost.png](kcost.png).", ""]
    others = [f"{r} ({why})" if why else r for r, why in all_runs if r != run_id]
    if others:
        out += ["Other runs in the same file (`plot_bench.py --run ID` shows one): " + "; ".join(others) + ".", ""]
    out += ["## Machine", ""]
    out += [f"- CPU: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, memory {machine.get('mem', '?')}, "
            f"kernel {machine.get('kernel', '?')}",
            f"- llama.cpp: {machine.get('llamacpp', '?').strip()}", f"- vibee binary: `{machine.get('vibee', '?')}`", ""]
    out += ["## Commands", "", "```", "bash bench/cpu/make_models.sh", "bash bench/cpu/run.sh",
            "/usr/bin/python3 bench/plot_bench.py", "```", "", "run.sh ran, per model:", "", "```",
            params.get("cmd", "?"), params.get("kcost_cmd", "?"), "```", ""]
    out += ["## Prefill and decode (medians)", "",
            "t/s = tokens per second; ratio = cpu / llamacpp (above 1: vibee faster); BW = the read-bandwidth "
            "probe in the same process just before that backend's measurement (GB/s); limit = the higher BW / "
            "weight bytes read per token; frac = decode / limit.", ""]
    out += ["| model | type | MiB/token | thr | prefill cpu | prefill llama.cpp | ratio | decode cpu | "
            "decode llama.cpp | ratio | BW cpu / llama.cpp | limit t/s | frac cpu | frac llama.cpp |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (model, wtype, thr), row in rows:
        c, l = row.get("cpu", {}), row.get("llamacpp", {})
        any_r = c or l
        lim = limit_of(row)
        fc = c.get("decode_tok_s") / lim if lim and c else None
        fl = l.get("decode_tok_s") / lim if lim and l else None
        out.append(
            f"| {model} | {wtype} | {any_r.get('weight_bytes', 0) / 2**20:.0f} | {thr} | "
            f"{fmt(c.get('prefill_tok_s'))} | {fmt(l.get('prefill_tok_s'))} | "
            f"{fmt(ratio(c.get('prefill_tok_s'), l.get('prefill_tok_s')), 2)} | "
            f"{fmt(c.get('decode_tok_s'))} | {fmt(l.get('decode_tok_s'))} | "
            f"**{fmt(ratio(c.get('decode_tok_s'), l.get('decode_tok_s')), 2)}** | "
            f"{fmt(c.get('bandwidth_gb_s'))} / {fmt(l.get('bandwidth_gb_s'))} | {fmt(lim)} | "
            f"{'-' if fc is None else f'{100 * fc:.0f}%'} | {'-' if fl is None else f'{100 * fl:.0f}%'} |")
    out.append("")
    if kcost:
        ks = sorted({int(k) for r in kcost for k in r["kcost"]})
        name = model_base(kcost[0]) + "-" + kcost[0]["weight_type"]
        out += ["## cost(K): a K-row forward relative to a 1-row forward", "",
                f"Model {name}; each forward on top of a 64-row context; medians. tok/s at K = K / cost(K) x "
                "the decode t/s above for the same backend and threads: the speed of a parallel decoder "
                "that keeps all K tokens of every forward (an upper bound; a real decoder keeps fewer).", "",
                "| backend | thr | " + " | ".join(f"cost({k})" for k in ks) + " | " +
                " | ".join(f"tok/s K={k}" for k in ks) + " |",
                "|---|---:|" + "---:|" * (2 * len(ks))]
        for r in sorted(kcost, key=lambda r: (r["backend"], r["threads"])):
            key = (model_base(r), r["weight_type"], r["threads"])
            base = dict(rows).get(key, {}).get(r["backend"], {}).get("decode_tok_s")
            costs = [r["kcost"].get(str(k)) for k in ks]
            tps = [k / c * base if c and base else None for k, c in zip(ks, costs)]
            out.append(f"| {r['backend']} | {r['threads']} | " + " | ".join(fmt(c, 2) for c in costs) + " | " +
                       " | ".join(fmt(t, 0) for t in tps) + " |")
        out.append("")
    out += ["## Load during the run", "",
            "The machine is shared; `uptime` before and after each model (1, 5, 15-minute load averages; "
            f"{machine.get('cores', '?')} cores).", "", "| model file | before | after |", "|---|---|---|"]
    seen = []
    for r in loads:
        f = os.path.basename(r["file"])
        if r["when"] == "before":
            seen.append([f, f"{r['time']} {r['loadavg']}", ""])
        elif seen and seen[-1][0] == f:
            seen[-1][2] = f"{r['time']} {r['loadavg']}"
    out += [f"| {a} | {b} | {c} |" for a, b, c in seen]
    out.append("")
    skipped = [os.path.basename(r["file"]) for r in recs if r.get("kind") == "skipped"]
    if skipped:
        out += ["Not run (past run.sh's STOP_AT): " + ", ".join(skipped), ""]
    return "\n".join(out)


def headline(rows):
    """decode cpu / llama.cpp (ratio), cpu's fraction of the limit: one line per model and type."""
    threads = sorted({k[2] for k, _ in rows})
    out = ["| model | type | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
           "|---|---|" + "---|" * len(threads)]
    keys = []
    for (m, t, _), _ in rows:
        if (m, t) not in keys:
            keys.append((m, t))
    d = dict(rows)
    for m, t in keys:
        cells = []
        for th in threads:
            row = d.get((m, t, th), {})
            c, l = row.get("cpu", {}).get("decode_tok_s"), row.get("llamacpp", {}).get("decode_tok_s")
            lim = limit_of(row) if row else None
            nd = 1 if c is not None and c < 100 else 0
            cells.append(f"{fmt(c, nd)} / {fmt(l, nd)} ({fmt(ratio(c, l), 2)}), "
                         f"{'-' if not (lim and c) else f'{100 * c / lim:.0f}%'}")
        out.append(f"| {m} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?")
    ap.add_argument("--run")
    ap.add_argument("--outdir")
    ap.add_argument("--headline", action="store_true", help="print the short decode table (for bench/README.md)")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    src = a.results
    if not src:
        files = sorted(glob.glob(os.path.join(here, "cpu", "results-*.jsonl")))
        if not files:
            sys.exit("plot_bench: no bench/cpu/results-*.jsonl (run bench/cpu/run.sh)")
        src = files[-1]
    outdir = a.outdir or os.path.dirname(os.path.abspath(src))
    run_id, recs, all_runs = load(src, a.run)
    rows, kcost = collect(recs)
    if not rows:
        sys.exit(f"plot_bench: run {run_id} has no prefill/decode results")
    if a.headline:
        print(headline(rows))
        return
    first = next(iter(rows[0][1].values()))
    note = load_note(recs)
    bar_chart(rows, "decode_tok_s", f"decode (tg{first['n_gen']}) tokens/s, median of {first['reps']}, higher is "
              f"better\n{note}", "decode tokens/s", os.path.join(outdir, "decode.png"), True)
    bar_chart(rows, "prefill_tok_s", f"prefill (pp{first['n_prompt']}) tokens/s, median of {first['reps']}, higher "
              f"is better\n{note}", "prefill tokens/s", os.path.join(outdir, "prefill.png"), False)
    if kcost:
        kcost_chart(kcost, os.path.join(outdir, "kcost.png"))
    try:
        src_rel = os.path.relpath(src, os.path.dirname(here))
    except ValueError:
        src_rel = src
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(report(run_id, recs, rows, kcost, src_rel, all_runs))
    print(f"plot_bench: run {run_id}: {len(rows)} configurations, {len(kcost)} cost(K) rows -> {outdir}")


if __name__ == "__main__":
    main()
