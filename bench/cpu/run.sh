#!/usr/bin/env bash
# run.sh - the CPU benchmark of issues 3 and 4: `vibee bench` with the cpu and llamacpp backends in
# one run, on every model made by make_models.sh, appending JSON lines to bench/cpu/results-<date>.jsonl.
# Besides vibee's own per-configuration objects (tagged here with run_id and the model file) it writes
#   {"kind":"machine",...}  once per run: CPU model, cores, memory, kernel, llama.cpp build
#   {"kind":"load",...}     `uptime` before and after each model (the machine is shared)
#   {"kind":"params",...}   the bench flags used
# and first (it is short) one cost(K) run (--kcost) for both backends on the Qwen3 0.6B Q8_0 model.
#
# Usage: bash bench/cpu/run.sh               then: /usr/bin/python3 bench/plot_bench.py
#   env: VIBEE (default build-bench/vibee, then build/vibee), BENCH_MODELS (as make_models.sh),
#        MODELS / TYPES (as make_models.sh), P (128) N (64) R (5) THREADS (1,2), KCOST (1,2,4,8,16),
#        OUT (results file), EXTRA (more vibee flags),
#        STOP_AT (UTC HH:MM: start no further model after this time; a {"kind":"skipped"} line says so)
# Budget: with the defaults the whole run took 3 minutes on the 2 quiet cores of the shared AMD EPYC VM
# and 11.5 minutes under a load of 3-6 (llama.cpp's 2-thread runs slow down most); -p 512 -n 128 (issue
# 3's defaults) took 4.5 minutes for GPT-2 F16 alone under load, so 128/64 is the recorded choice.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
VIBEE=${VIBEE:-}
if [ -z "$VIBEE" ]; then
    for v in build-bench/vibee build/vibee; do [ -x "$v" ] && { VIBEE=$v; break; }; done
fi
[ -x "${VIBEE:-}" ] || { echo "run.sh: no vibee binary (make BUILD=build-bench, or set VIBEE)" >&2; exit 1; }
DIR=${BENCH_MODELS:-${VB_CACHE:-$HOME/.cache/vibee}/bench-models}
MODELS=${MODELS:-"gpt2-124m qwen3-0.6b"}
TYPES=${TYPES:-"f16 q8_0 q4_0"}
P=${P:-128} N=${N:-64} R=${R:-5} THREADS=${THREADS:-1,2} KCOST=${KCOST:-1,2,4,8,16}
# same KV layout for both engines (llama.cpp's usual F16 cache), a small context: the test never
# goes past P+N positions and a 40960-cell F32 cache would only cost memory
COMMON="-c 1024 --kv-type f16${EXTRA:+ $EXTRA}"
OUT=${OUT:-bench/cpu/results-$(date -u +%Y-%m-%d).jsonl}
RUN_ID=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# JSON string from arbitrary text (no python needed on the run path)
jstr() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\n')"; }
load_line() { # $1 = when, $2 = model file
    printf '{"kind":"load","run_id":"%s","when":"%s","file":%s,"time":"%s","uptime":%s,"loadavg":%s}\n' \
        "$RUN_ID" "$1" "$(jstr "$2")" "$(date -u +%H:%M:%S)" "$(jstr "$(uptime)")" \
        "$(jstr "$(cut -d' ' -f1-3 /proc/loadavg)")" >>"$OUT"
}
past_stop() { [ -n "${STOP_AT:-}" ] && [ "$(date -u +%H%M)" -ge "$(echo "$STOP_AT" | tr -d :)" ]; }
skipped() {
    echo "run.sh: past STOP_AT $STOP_AT, skipping $1" >&2
    printf '{"kind":"skipped","run_id":"%s","file":%s,"time":"%s"}\n' "$RUN_ID" "$(jstr "$1")" "$(date -u +%H:%M:%S)" >>"$OUT"
}
tag() { # prefix each vibee JSON object with run_id and file
    sed -u "s|^{|{\"kind\":\"bench\",\"run_id\":\"$RUN_ID\",\"file\":$(jstr "$1" | sed 's/|/\\|/g'),|"
}

LCPP_INFO=$(cat "${VB_CACHE:-$HOME/.cache/vibee}"/llama.cpp-*/build-info.txt 2>/dev/null | head -3 | tr '\n' ' ' || true)
printf '{"kind":"machine","run_id":"%s","cpu":%s,"cores":%s,"mem":%s,"kernel":%s,"vibee":%s,"llamacpp":%s}\n' \
    "$RUN_ID" "$(jstr "$(lscpu | sed -n 's/^Model name: *//p' | head -1)")" "$(nproc)" \
    "$(jstr "$(free -g | awk '/^Mem:/{print $2 " GiB"}')")" "$(jstr "$(uname -r)")" "$(jstr "$VIBEE")" \
    "$(jstr "$LCPP_INFO")" >>"$OUT"
printf '{"kind":"params","run_id":"%s","cmd":%s,"kcost_cmd":%s}\n' "$RUN_ID" \
    "$(jstr "vibee bench -m MODEL -b cpu,llamacpp -t $THREADS -p $P -n $N -r $R $COMMON --json")" \
    "$(jstr "vibee bench -m qwen3-0.6b-q8_0.gguf -b cpu,llamacpp -t $THREADS -p 0 -n 0 -r $R --kcost $KCOST $COMMON --json")" >>"$OUT"

echo "run.sh: $VIBEE, models from $DIR, results to $OUT (run $RUN_ID)"
f="$DIR/qwen3-0.6b-q8_0.gguf"
if [ -n "$KCOST" ] && [ -s "$f" ] && past_stop; then skipped "$f (cost(K))"
elif [ -n "$KCOST" ] && [ -s "$f" ]; then
    echo "== cost(K) $f  $(uptime)"
    load_line before "$f (cost(K))"
    # shellcheck disable=SC2086
    "$VIBEE" bench -m "$f" -b cpu,llamacpp -t "$THREADS" -p 0 -n 0 -r "$R" --kcost "$KCOST" $COMMON --json \
        | tag "$f" | tee -a "$OUT"
    load_line after "$f (cost(K))"
fi
for m in $MODELS; do
    for t in $TYPES; do
        f="$DIR/$m-$t.gguf"
        [ -s "$f" ] || { echo "run.sh: missing $f (run bench/cpu/make_models.sh)" >&2; continue; }
        if past_stop; then skipped "$f"; continue; fi
        echo "== $m-$t  $(uptime)"
        load_line before "$f"
        # shellcheck disable=SC2086
        "$VIBEE" bench -m "$f" -b cpu,llamacpp -t "$THREADS" -p "$P" -n "$N" -r "$R" $COMMON --json \
            | tag "$f" | tee -a "$OUT"
        load_line after "$f"
    done
done

echo "run.sh: done, $(grep '"kind":"bench"' "$OUT" | grep -c "\"run_id\":\"$RUN_ID\"") result lines of run $RUN_ID in $OUT"
