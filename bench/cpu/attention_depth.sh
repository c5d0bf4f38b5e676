#!/usr/bin/env bash
# attention_depth.sh - decode speed at depth, A/B between two vibee binaries (e.g. before / after
# an attention change): `vibee run` with a D-token prompt (fixed token ids) and 64 generated
# tokens, F16 KV cache, decode tok/s from its --json output. Rounds are interleaved (A B, then
# B A, ...) and every run is pinned with taskset (1 thread: cpu 0; 2 threads: cpus 0,1), since
# the machine is shared. Prints one TSV line per run, then per configuration the median and the
# best (least disturbed) decode tok/s of each binary and their ratio.
#
# Usage: bash bench/cpu/attention_depth.sh OLD_VIBEE NEW_VIBEE
#   env: MODEL (default ~/.cache/vibee/bench-models/qwen3-0.6b-q8_0.gguf, made by make_models.sh),
#        DEPTHS ("1024 4096"), THREADS ("1 2"), ROUNDS (3), N_GEN (64)
set -euo pipefail
OLD=$1
NEW=$2
MODEL=${MODEL:-${VB_CACHE:-$HOME/.cache/vibee}/bench-models/qwen3-0.6b-q8_0.gguf}
DEPTHS=${DEPTHS:-"1024 4096"}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-3}
N_GEN=${N_GEN:-64}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

tokens() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%s%d", (i ? "," : ""), 1000 + (i * 7919) % 99000 }'; }

run_one() { # binary depth threads -> decode tok/s
    local cpus=0
    [ "$3" -ge 2 ] && cpus=0-$(($3 - 1))
    taskset -c "$cpus" "$1" run -m "$MODEL" --prompt-tokens "$(tokens "$2")" -n "$N_GEN" -t "$3" \
        --kv-type f16 --ignore-eos --json -c $(($2 + N_GEN + 64)) 2>/dev/null |
        grep -o '"decode_tok_s":[0-9.]*' | cut -d: -f2
}

printf 'round\tdepth\tthreads\tbinary\tdecode_tok_s\n'
for r in $(seq 1 "$ROUNDS"); do
    for d in $DEPTHS; do
        for t in $THREADS; do
            order="old new"
            [ $((r % 2)) -eq 0 ] && order="new old"
            for which in $order; do
                bin=$OLD
                [ "$which" = new ] && bin=$NEW
                tps=$(run_one "$bin" "$d" "$t")
                printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$d" "$t" "$which" "$tps" | tee -a "$OUT"
            done
        done
    done
done

echo
echo "| depth | threads | old median | new median | ratio | old best | new best | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for d in $DEPTHS; do
    for t in $THREADS; do
        stats() { awk -F'\t' -v d="$d" -v t="$t" -v w="$1" '$2 == d && $3 == t && $4 == w { print $5 }' "$OUT" |
            sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f", m, v[NR] }'; }
        read -r om ob <<<"$(stats old)"
        read -r nm nb <<<"$(stats new)"
        awk -v d="$d" -v t="$t" -v om="$om" -v ob="$ob" -v nm="$nm" -v nb="$nb" \
            'BEGIN { printf "| %s | %s | %.2f | %.2f | %.2fx | %.2f | %.2f | %.2fx |\n", d, t, om, nm, nm / om, ob, nb, nb / ob }'
    done
done
