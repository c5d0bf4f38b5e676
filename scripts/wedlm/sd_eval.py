#!/usr/bin/env python3
"""sd_eval.py - compare WeDLM GGUFs with the vibee CLI (for finetune.py candidates):
  (a) --wedlm-exact tokens per forward on the bench prompt sets, for each --window / --tau
      (mean over prompts of tokens_per_forward, and sum tokens / sum decode forwards), with a check that the
      exact output equals the model's own AR greedy output;
  (b) AR NLL (vibee score) of held-out real Python (test files of /usr/lib/python3/dist-packages that neither
      the original training nor distill_data.py used; bench prompt files excluded);
  (c) AR greedy agreement of every model with the first one (fraction of equal tokens position by position,
      of prompts whose whole continuation is equal, and the mean index of the first differing token).
Run: /usr/bin/python3 sd_eval.py --vibee /tmp/vibee-model --models old.gguf,new.gguf --out res.json
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def vrun(vibee, model, prompt, extra):
    r = subprocess.run([vibee, "run", "-m", model, "--json", "-n", "128", "-t", "1", "-p", prompt] + extra,
                       capture_output=True, text=True, timeout=300, check=True)
    return json.loads(r.stdout)


def heldout(path, gguf, n_seq=32, L=256):
    if os.path.exists(path):
        return
    from gguf_load import read_gguf, gguf_tokenizer
    from finetune import real_text_batches
    kv, _ = read_gguf(gguf)
    tok = gguf_tokenizer(kv)
    bench = []
    for name in ("prompts_code.txt", "prompts_lowent.txt"):
        bench += [json.loads(l) for l in open(os.path.join(REPO, "bench", "wedlm", name)) if l.strip()]
    X = real_text_batches(tok, kv["tokenizer.ggml.bos_token_id"], n_seq, L, 99, bench).tolist()
    with open(path, "w") as f:
        for x in X:
            f.write(json.dumps(dict(prompt_tokens=x[:1], tokens=x[1:])) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vibee", required=True)
    ap.add_argument("--models", required=True, help="comma list; the first is the reference for (c)")
    ap.add_argument("--sets", default="prompts_lowent.txt,prompts_code.txt")
    ap.add_argument("--windows", default="4,8")
    ap.add_argument("--taus", default="100,2")
    ap.add_argument("--heldout", default="/tmp/wedlm-sd/heldout.jsonl")
    ap.add_argument("--ref-only", action="store_true",
                    help="the first model is only the AR reference of (c) (its (a)/(b) not measured)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    models = a.models.split(",")
    heldout(a.heldout, models[0])
    res = {}
    ar_ref = {}
    for m in models:
        ref_only = a.ref_only and m == models[0]
        r = res[m] = {"tpf": {}, "agree": {}, "nll": float("nan")}
        sc = None if ref_only else subprocess.run([a.vibee, "score", "-m", m, "-t", "1", "--json-in", a.heldout], capture_output=True,
                            text=True, timeout=600, check=True)
        if sc:
            rows = [json.loads(l) for l in sc.stdout.splitlines() if l.strip().startswith("{")]
            r["nll"] = sum(x["nll_sum"] for x in rows) / sum(x["n"] for x in rows)
        for s in a.sets.split(","):
            prompts = [json.loads(l) for l in open(os.path.join(REPO, "bench", "wedlm", s)) if l.strip()]
            ar = [vrun(a.vibee, m, p, [])["tokens"] for p in prompts]
            if m == models[0]:
                ar_ref[s] = ar
            grams = [tuple(u[i:i + 4]) for u in ar for i in range(len(u) - 3)]
            r.setdefault("distinct4", {})[s] = len(set(grams)) / max(1, len(grams))   # low = repetitive output
            eq = sum(sum(1 for x, y in zip(u, v) if x == y) for u, v in zip(ar, ar_ref[s]))
            tot = sum(max(len(u), len(v)) for u, v in zip(ar, ar_ref[s]))
            first = [next((i for i, (x, y) in enumerate(zip(u, v)) if x != y), min(len(u), len(v)))
                     for u, v in zip(ar, ar_ref[s])]
            r["agree"][s] = dict(token_frac=eq / tot, whole=sum(u == v for u, v in zip(ar, ar_ref[s])) / len(ar),
                                 first_div_mean=sum(first) / len(first))
            for w in ([] if ref_only else a.windows.split(",")):
                for t in a.taus.split(","):
                    js = [vrun(a.vibee, m, p, ["--decoder", "wedlm", "--wedlm-exact", "--window", w, "--tau", t])
                          for p in prompts]
                    lossless = sum(j["tokens"] == g for j, g in zip(js, ar))
                    r["tpf"][f"{s} W{w} tau{t}"] = dict(
                        mean=sum(j["tokens_per_forward"] for j in js) / len(js),
                        pooled=sum(j["n_generated"] for j in js) / sum(j["n_forward_decode"] for j in js),
                        lossless=f"{lossless}/{len(js)}",
                        per_prompt=[round(j["tokens_per_forward"], 3) for j in js])
            print(m, s, json.dumps({k: (v["mean"], v["lossless"]) for k, v in r["tpf"].items() if k.startswith(s)}),
                  flush=True)
        print(m, "nll", r["nll"], "agree", json.dumps(r["agree"]), flush=True)
    json.dump(res, open(a.out, "w"), indent=1)
    keys = list(res[models[-1]]["tpf"].keys())
    models = [m for m in models if res[m]["tpf"]] if a.ref_only else models
    print("| setting | " + " | ".join(os.path.basename(m) for m in models) + " |")
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{res[m]['tpf'][k]['mean']:.2f} ({res[m]['tpf'][k]['pooled']:.2f}) "
                                      f"{res[m]['tpf'][k]['lossless']}" for m in models) + " |")
    print("| AR NLL held-out | " + " | ".join(f"{res[m]['nll']:.4f}" for m in models) + " |")
    allm = list(res.keys())
    for s in a.sets.split(","):
        print(f"| AR greedy distinct 4-grams {s} | " + " | ".join(f"{os.path.basename(m)} {res[m]['distinct4'][s]:.3f}"
                                                              for m in allm) + " |")
    for s in a.sets.split(","):
        print(f"| AR agree {s} (token frac / whole / first divergence) | " + " | ".join(
            f"{res[m]['agree'][s]['token_frac']:.3f} / {res[m]['agree'][s]['whole']:.2f} / "
            f"{res[m]['agree'][s]['first_div_mean']:.1f}" for m in models) + " |")


if __name__ == "__main__":
    main()
