#!/usr/bin/env python3
"""depth_table.py - the markdown table of bench/cpu/depth.sh's JSON lines: per model file,
threads and depth, the median over rounds of vibee's and llama.cpp's prefill and decode tok/s,
their ratios (vibee / llama.cpp), vibee's decode as a fraction of the bandwidth limit measured in
the same process, and both peak RSS figures.

Usage: python3 bench/cpu/depth_table.py FILE.jsonl [FILE.jsonl ...]"""
import json
import statistics
import sys
from collections import defaultdict


def main():
    rows = defaultdict(lambda: defaultdict(list))  # (file, threads, depth) -> key -> values
    for path in sys.argv[1:]:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                d = json.loads(line)
                k = (d["file"], d["threads"], d["depth"])
                b = d["backend"]
                for field in ("prefill_tok_s", "decode_tok_s", "bandwidth_fraction", "rss_mib", "ttft_ms"):
                    if field in d:
                        rows[k][(b, field)].append(d[field])
    med = lambda v: statistics.median(v) if v else float("nan")
    print("| model | thr | depth | pp vibee | pp llama.cpp | pp ratio | tg vibee | tg llama.cpp | tg ratio "
          "| vibee tg / BW limit | rounds | RSS MiB vibee / llama.cpp |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (fname, thr, depth) in sorted(rows, key=lambda k: (k[0], k[1], k[2])):
        r = rows[(fname, thr, depth)]
        pc, pl = med(r[("cpu", "prefill_tok_s")]), med(r[("llamacpp", "prefill_tok_s")])
        dc, dl = med(r[("cpu", "decode_tok_s")]), med(r[("llamacpp", "decode_tok_s")])
        frac = med(r[("cpu", "bandwidth_fraction")])
        n = min(len(r[("cpu", "decode_tok_s")]), len(r[("llamacpp", "decode_tok_s")]))
        rc, rl = med(r[("cpu", "rss_mib")]), med(r[("llamacpp", "rss_mib")])
        print(f"| {fname} | {thr} | {depth} | {pc:.1f} | {pl:.1f} | **{pc / pl:.2f}** | {dc:.1f} | {dl:.1f} | "
              f"**{dc / dl:.2f}** | {100 * frac:.0f}% | {n} | {rc:.0f} / {rl:.0f} |")


if __name__ == "__main__":
    main()
