#!/bin/bash
# gpu_baseline.sh - one-call device script for issue 8's baseline: Hugging Face transformers'
# eager greedy `generate` against vibee's cuda backend (AR, WeDLM, verify through the CLI
# `vibee run --json`) on the same weights, with the token ids of both compared. Steps, each
# timed and limited so the whole script ends inside $BUDGET seconds (default 250):
#   1. the card (nvidia-smi) and the pythons there (torch / transformers / numpy versions);
#   2. make -j$J BUILD=$BUILD the CLI (CUDA for sm_90 only; a missing pcre2.h is taken from
#      build-cuda/shim, as scripts/gpu_check.sh does), in the background while the pythons are
#      checked; skipped when $VIBEE names a built CLI;
#   3. a random Qwen3-0.6B-shaped F16 GGUF made with torch on the GPU
#      (scripts/hf_baseline.py make-random; needs no numpy), built while make runs;
#   4. vibee run -b cuda --decoder ar|wedlm|verify --json, $REPS runs each, 128 new tokens with
#      --ignore-eos, on models/wedlm-py-6m-f16.gguf ("shipped", prompt "import os\nimport sys\n\n
#      def main(") and on the random model ("random", 64 fixed prompt ids);
#   5. scripts/hf_baseline.py run on both: Qwen3ForCausalLM fp16 on cuda, eager attention,
#      greedy generate with the KV cache, median of $REPS after a warm-up, ids compared with
#      vibee's AR output;
#   6. a markdown summary (scripts/hf_baseline.py summarize).
# Without a GPU (here, on a CPU-only machine) it runs steps 1, 2, 4 and 6 with -b cpu on the
# shipped model and a tiny random model, and says that it skips the GPU parts.
# Results in $OUT (default ./gpu_baseline_out): gpu_baseline.log (everything), build.log,
# vibee_runs.jsonl (one `vibee run --json` object per run, with "_label"), hf_runs.jsonl,
# summary.md. Never stops at a failing step; the exit status says whether any failed.
set -u
OUT=${OUT:-$PWD/gpu_baseline_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_baseline.log") 2>&1
BUILD=${BUILD:-build}
BUDGET=${BUDGET:-250}
N=${N:-128}
REPS=${REPS:-3}
WORK=${WORK:-/tmp/vb_gpu_baseline}
mkdir -p "$WORK"
status=0
t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - t_start )); }
step() { echo; echo "=== [$(elapsed)s] $*"; }
fail() { echo "!!! FAILED: $*"; status=1; }
# lim S: S seconds, or what is left of the budget (at least 1)
lim() { local left=$(( BUDGET - $(elapsed) )); [ "$left" -lt "$1" ] && echo $(( left > 1 ? left : 1 )) || echo "$1"; }

step "device"
if nvidia-smi -L >/dev/null 2>&1; then
    HAVE_GPU=1
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
else
    HAVE_GPU=0
    echo "no GPU here (nvidia-smi -L failed): the cuda and transformers parts are SKIPPED; vibee runs with -b cpu"
fi
BE=cuda; [ $HAVE_GPU = 1 ] || BE=cpu

step "build (background)"
if [ -n "${VIBEE:-}" ] && [ -x "$VIBEE" ]; then
    echo "using the CLI given in VIBEE=$VIBEE (no build)"
else
    VIBEE=$BUILD/vibee
    J=${J:-16}
    command -v cc >/dev/null || export CC=gcc
    export CFLAGS="${CFLAGS:-}" LDFLAGS="${LDFLAGS:-}"
    if ! echo '#include <pcre2.h>' | ${CC:-cc} -DPCRE2_CODE_UNIT_WIDTH=8 -E - >/dev/null 2>&1; then
        shim=/tmp/vb_pcre2_shim
        mkdir -p "$shim"
        cp build-cuda/shim/pcre2.h "$shim/" 2>/dev/null || fail "no pcre2.h here and no build-cuda/shim/pcre2.h"
        lib=$(ls /usr/lib/x86_64-linux-gnu/libpcre2-8.so* /lib/x86_64-linux-gnu/libpcre2-8.so* 2>/dev/null | head -1)
        [ -n "$lib" ] && ln -sf "$lib" "$shim/libpcre2-8.so"
        echo "using pcre2 shim: header from build-cuda/shim, library $lib"
        CFLAGS="$CFLAGS -I$shim"
        LDFLAGS="$LDFLAGS -L$shim"
    fi
    echo "make -j$J BUILD=$BUILD LLAMACPP=0 ONNX=0 CUDA_ARCH_FLAGS=sm_90 $VIBEE"
    timeout "$(lim 150)" make BUILD="$BUILD" LLAMACPP=0 ONNX=0 \
        CUDA_ARCH_FLAGS="-gencode=arch=compute_90,code=sm_90" -j"$J" "$VIBEE" >"$OUT/build.log" 2>&1 &
    MAKE_PID=$!
    echo "(make runs in the background while the pythons are checked and the random model is made)"
fi


step "pythons"
HFPY=""
seen=" "
for py in python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    real=$(readlink -f "$(command -v "$py")")
    case "$seen" in *" $real "*) continue ;; esac
    seen="$seen$real "
    echo "--- $py ($(command -v "$py"))"
    timeout "$(lim 40)" "$py" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for m in ("numpy", "torch", "transformers"):
    try:
        mod = importlib.import_module(m)
        extra = ""
        if m == "torch":
            extra = " cuda=%s %s" % (mod.cuda.is_available(), mod.cuda.get_device_name(0) if mod.cuda.is_available() else "")
        print("  %s %s%s" % (m, mod.__version__, extra))
    except Exception as e:
        print("  %s: MISSING (%s)" % (m, str(e).splitlines()[0] if str(e) else type(e).__name__))
EOF
    if [ -z "$HFPY" ] && "$py" -c "import torch, transformers" 2>/dev/null; then HFPY=$py; fi
done
echo "transformers python: ${HFPY:-none}"
PY=python3; command -v python3 >/dev/null || PY=/usr/bin/python3

# random model: made on the GPU while make runs (a tiny pure-python one without GPU/torch)
if [ $HAVE_GPU = 1 ] && [ -n "$HFPY" ]; then
    RANDOM_MODEL=$WORK/qwen3-0.6b-random-f16.gguf
    RANDOM_MASK=151935
    step "random model (background): $HFPY scripts/hf_baseline.py make-random"
    timeout "$(lim 120)" "$HFPY" scripts/hf_baseline.py make-random --out "$RANDOM_MODEL" >"$WORK/make_random.log" 2>&1 &
    MAKE_RANDOM_PID=$!
else
    RANDOM_MODEL=$WORK/qwen3-tiny-random-f16.gguf
    RANDOM_MASK=511
    step "random model: tiny (no GPU or no torch+transformers)"
    $PY scripts/hf_baseline.py make-random --tiny --out "$RANDOM_MODEL" >"$WORK/make_random.log" 2>&1 &
    MAKE_RANDOM_PID=$!
fi

step "wait for the build"
if [ -n "${MAKE_PID:-}" ]; then
    wait $MAKE_PID || { tail -30 "$OUT/build.log"; fail "make"; }
    grep -E '^(cuda|serve|llamacpp|onnx):' "$OUT/build.log" | sort -u
    grep -iE 'warning|error' "$OUT/build.log" | head -10
fi
[ -x "$VIBEE" ] || fail "no CLI at $VIBEE"

step "prompts"
SHIPPED=models/wedlm-py-6m-f16.gguf
SHIPPED_IDS=$(timeout 20 "$VIBEE" run -b cpu -m $SHIPPED -p $'import os\nimport sys\n\ndef main(' -n 1 --json 2>/dev/null \
    | $PY -c 'import json,sys; print(",".join(map(str, json.loads(sys.stdin.read().strip().splitlines()[-1])["prompt_tokens"])))')
[ -n "$SHIPPED_IDS" ] || { SHIPPED_IDS=4094,474,2632,203,474,5; fail "tokenizing the shipped prompt (using fixed ids)"; }
RANDOM_IDS=$(for i in $(seq 0 63); do echo $(( (i * 7919 + 13) % 500 )); done | paste -sd,)
echo "shipped prompt ids: $SHIPPED_IDS"
echo "random prompt ids:  $RANDOM_IDS"
wait $MAKE_RANDOM_PID || fail "make-random"
cat "$WORK/make_random.log"

# vibee_runs LABEL MODEL IDS EXTRA...: REPS runs per decoder, appended to vibee_runs.jsonl
vibee_runs() {
    local label=$1 model=$2 ids=$3; shift 3
    local dec rep
    for dec in ar wedlm verify; do
        for rep in $(seq 1 "$REPS"); do
            timeout "$(lim 40)" "$VIBEE" run -b $BE -m "$model" --prompt-tokens "$ids" -n "$N" --ignore-eos \
                --decoder $dec --json "$@" >"$WORK/v.json" 2>"$WORK/v.err"
            rc=$?
            if [ $rc -ne 0 ] || ! grep -q '^{' "$WORK/v.json"; then
                fail "vibee run $label $dec (exit $rc)"; tail -5 "$WORK/v.err"; break
            fi
            grep '^{' "$WORK/v.json" | tail -1 | sed 's/^{/{"_label":"'"$label"'",/' >>"$OUT/vibee_runs.jsonl"
            [ "$rep" = 1 ] && cp "$WORK/v.json" "$WORK/vibee_${label}_${dec}.json"
            $PY -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print("  %-7s %-6s run %s: decode %8.1f tok/s, prefill %.4f s, decode %.4f s, %d tokens, %.2f tokens/forward" % (sys.argv[2], r["decoder"], sys.argv[3], r["decode_tok_s"], r["prefill_seconds"], r["decode_seconds"], r["n_generated"], r["tokens_per_forward"]))' \
                "$WORK/v.json" "$label" "$rep"
        done
    done
    echo "  $label AR tokens: $(grep -o '"tokens":\[[0-9,]*\]' "$WORK/vibee_${label}_ar.json" 2>/dev/null)"
}

: >"$OUT/vibee_runs.jsonl"
step "vibee -b $BE on the shipped model"
vibee_runs shipped $SHIPPED "$SHIPPED_IDS"
step "vibee -b $BE on the random model"
if [ -f "$RANDOM_MODEL" ]; then
    vibee_runs random "$RANDOM_MODEL" "$RANDOM_IDS" --mask-token $RANDOM_MASK
else
    fail "no random model"
fi

: >"$OUT/hf_runs.jsonl"
if [ $HAVE_GPU = 1 ] && [ -n "$HFPY" ]; then
    for label in shipped random; do
        if [ $label = shipped ]; then m=$SHIPPED; ids=$SHIPPED_IDS; else m=$RANDOM_MODEL; ids=$RANDOM_IDS; fi
        step "transformers eager generate on the $label model"
        [ -f "$m" ] || { fail "no $label model"; continue; }
        PYTHONUNBUFFERED=1 timeout "$(lim 100)" "$HFPY" scripts/hf_baseline.py run --model "$m" --prompt-ids "$ids" \
            --n "$N" --reps "$REPS" --vibee-json "$WORK/vibee_${label}_ar.json" --label $label \
            --out "$OUT/hf_runs.jsonl" 2>&1 | grep -vE 'Warning|warn\(' || true
        grep -q "\"label\": \"$label\"" "$OUT/hf_runs.jsonl" || fail "transformers on $label"
    done
else
    step "transformers: SKIPPED (needs a GPU and a python with torch + transformers)"
fi

step "summary"
$PY scripts/hf_baseline.py summarize --vibee "$OUT/vibee_runs.jsonl" --hf "$OUT/hf_runs.jsonl" | tee "$OUT/summary.md"

step "done (status $status)"
exit $status
