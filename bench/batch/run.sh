#!/bin/sh
# run.sh - batch-inference benchmark: aggregate decode tokens/s of `vibee batch` with 1, 2, 4, 8
# and 16 concurrent sequences against one sequence at a time (--parallel 1), in the same run, on
# the cpu backend with random-weight GPT-2-124M-shape and Qwen3-0.6B-shape Q8_0 models made by
# scripts/make_model.py; plus KV waste (mean over steps while requests run) and prefix-sharing
# savings (8 prompts sharing a 64-token prefix, with and without sharing). Prints a markdown table.
#
#   bench/batch/run.sh [VIBEE]      env: N (tokens per sequence, default 32), THREADS (default 2),
#                                   MODELS (cache dir, default ~/.cache/vibee/bench-models),
#                                   ONLY (gpt2 or qwen3 to run one model), REPEAT (runs per
#                                   point, the fastest kept: the machine may be shared; default 1)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VIBEE=${1:-$ROOT/build/vibee}
N=${N:-32}
THREADS=${THREADS:-2}
MODELS=${MODELS:-$HOME/.cache/vibee/bench-models}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$MODELS"

make_model() { # name, make_model.py args...
    name=$1; shift
    if [ ! -s "$MODELS/$name.gguf" ]; then
        echo "making $MODELS/$name.gguf" >&2
        /usr/bin/python3 "$ROOT/scripts/make_model.py" "$@" --type q8_0 --seed 1 --out "$MODELS/$name.gguf" >&2
    fi
}
make_model gpt2-124m-q8_0 --arch gpt2 --n-layer 12 --n-embd 768 --n-head 12 --n-ff 3072 --n-vocab 50257 --n-ctx 1024
make_model qwen3-0.6b-q8_0 --arch qwen3 --n-layer 28 --n-embd 1024 --n-head 16 --n-head-kv 8 --head-dim 128 \
    --n-ff 3072 --n-vocab 151936 --n-ctx 40960 --tied

# prompts: distinct sentences (about 8-12 tokens each)
words="alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
i=0
: > "$TMP/p16.txt"
for w in $words; do
    i=$((i + 1))
    echo "Request $i asks about $w and the weather in city number $i" >> "$TMP/p16.txt"
done
shared="This is a long shared system prompt that every request repeats word for word before its own question:"
: > "$TMP/shared8.txt"
for w in alpha bravo charlie delta echo foxtrot golf hotel; do echo "$shared tell me about $w" >> "$TMP/shared8.txt"; done

field() { sed -n "s/.*\"$1\": \([-0-9.e+]*\).*/\1/p" "$2" | tail -1; }

run() { # model, prompts file, parallel, extra args -> json file of the fastest of REPEAT runs
    best=""; best_tps=-1; k=0
    while [ "$k" -lt "${REPEAT:-1}" ]; do
        k=$((k + 1))
        out="$TMP/r.$$.$(date +%s%N).json"
        "$VIBEE" batch -m "$1" -f "$2" -n "$N" --parallel "$3" --ignore-eos --json -t "$THREADS" -c 4096 $4 > "$out" 2>/dev/null
        tps=$(field decode_tokens_per_second "$out")
        if awk -v a="$tps" -v b="$best_tps" 'BEGIN { exit !(a > b) }'; then best=$out; best_tps=$tps; fi
    done
    echo "$best"
}

echo "| model | sequences | aggregate decode tok/s | vs one at a time | all tok/s (with prefill) | max rows/step | KV waste | preemptions |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for m in gpt2-124m-q8_0 qwen3-0.6b-q8_0; do
    case "${ONLY:-}" in "") ;; gpt2) [ "$m" = gpt2-124m-q8_0 ] || continue ;; qwen3) [ "$m" = qwen3-0.6b-q8_0 ] || continue ;; esac
    M="$MODELS/$m.gguf"
    head -n 4 "$TMP/p16.txt" > "$TMP/p4.txt"
    base=$(run "$M" "$TMP/p4.txt" 1 "")
    b=$(field decode_tokens_per_second "$base")
    echo "| $m | 1 at a time (4 prompts) | $b | 1.00x | $(field tokens_per_second "$base") | $(field max_batch_rows "$base") | $(field kv_waste_mean "$base") | $(field preemptions "$base") |"
    for p in 1 2 4 8 16; do
        head -n "$p" "$TMP/p16.txt" > "$TMP/pp.txt"
        r=$(run "$M" "$TMP/pp.txt" "$p" "")
        d=$(field decode_tokens_per_second "$r")
        x=$(awk -v a="$d" -v b="$b" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
        echo "| $m | $p | $d | $x | $(field tokens_per_second "$r") | $(field max_batch_rows "$r") | $(field kv_waste_mean "$r") | $(field preemptions "$r") |"
    done
done
echo
echo "| model | prefix sharing | prefill rows | rows shared | wall s | prefix hits |"
echo "|---|---|---:|---:|---:|---:|"
for m in gpt2-124m-q8_0 qwen3-0.6b-q8_0; do
    case "${ONLY:-}" in "") ;; gpt2) [ "$m" = gpt2-124m-q8_0 ] || continue ;; qwen3) [ "$m" = qwen3-0.6b-q8_0 ] || continue ;; esac
    M="$MODELS/$m.gguf"
    for mode in off on; do
        extra=""; [ $mode = off ] && extra="--no-prefix-sharing"
        # one prompt first (its blocks become shareable), then the other 7 at once
        r=$(run "$M" "$TMP/shared8.txt" 8 "$extra --token-budget 64")
        echo "| $m | $mode | $(field prefill_rows "$r") | $(field prefix_tokens "$r") | $(field wall_seconds "$r") | $(field prefix_hits "$r") |"
    done
done
