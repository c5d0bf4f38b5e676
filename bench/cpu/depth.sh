#!/usr/bin/env bash
# depth.sh - the issue-14 table: prefill and decode of vibee's `cpu` backend against llama.cpp
# (the `llamacpp` backend: the llama.cpp library vibee links, scripts/build_llamacpp.sh) at
# several context depths, both in one `vibee bench` process per configuration, pinned the way
# llama.cpp's users run it (OMP_PROC_BIND=close OMP_PLACES=cores), F16 KV on both sides. Rounds
# are interleaved and the backend order alternates by round (cpu first, then llamacpp first).
# Writes one JSON line per measurement (vibee bench --json, plus "round" and "order") to OUT;
# bench/cpu/depth_table.py turns the file into the markdown table.
#
# Usage: bash bench/cpu/depth.sh OUT.jsonl
#   env: VIBEE (build/vibee), MODELS (files in BENCH_MODELS, default: the Qwen3 0.6B and GPT-2
#        124M files of make_models.sh in f16, q8_0, q4_0 and q4_k_m), QWEN_DEPTHS ("0 1024 4096"),
#        GPT2_DEPTHS ("0 384": GPT-2 has 1024 learned positions, and depth + prompt + generated
#        tokens must stay below), THREADS ("1 2"), ROUNDS (2), N_PROMPT (128), N_GEN (32), REPS (3)
set -euo pipefail
OUT=${1:?usage: depth.sh OUT.jsonl}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VIBEE=${VIBEE:-$ROOT/build/vibee}
DIR=${BENCH_MODELS:-${VB_CACHE:-$HOME/.cache/vibee}/bench-models}
MODELS=${MODELS:-"qwen3-0.6b-q4_k_m qwen3-0.6b-q4_0 qwen3-0.6b-q8_0 qwen3-0.6b-f16 gpt2-124m-q4_k_m gpt2-124m-q4_0 gpt2-124m-q8_0 gpt2-124m-f16"}
QWEN_DEPTHS=${QWEN_DEPTHS:-"0 1024 4096"}
GPT2_DEPTHS=${GPT2_DEPTHS:-"0 384"}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-2}
N_PROMPT=${N_PROMPT:-128}
N_GEN=${N_GEN:-32}
REPS=${REPS:-3}
export OMP_PROC_BIND=close OMP_PLACES=cores

for r in $(seq 1 "$ROUNDS"); do
    order="cpu,llamacpp"
    [ $((r % 2)) -eq 0 ] && order="llamacpp,cpu"
    for m in $MODELS; do
        f="$DIR/$m.gguf"
        [ -s "$f" ] || { echo "depth.sh: missing $f (bash bench/cpu/make_models.sh)" >&2; exit 1; }
        depths=$QWEN_DEPTHS
        case "$m" in gpt2*) depths=$GPT2_DEPTHS ;; esac
        for t in $THREADS; do
            echo "round $r $m threads $t depths $depths ($order) $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
            "$VIBEE" bench -m "$f" -b "$order" -t "$t" -p "$N_PROMPT" -n "$N_GEN" \
                -d "$(echo "$depths" | tr ' ' ',')" -r "$REPS" --kv-type f16 --json 2>/dev/null |
                sed "s/^{/{\"file\":\"$m\",\"round\":$r,\"order\":\"$order\",/" >> "$OUT"
        done
    done
done
