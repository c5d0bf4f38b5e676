#!/usr/bin/env bash
# make_models.sh - writes the random-weight benchmark models of real shapes (GPT-2 124M, Qwen3 0.6B)
# in F16, Q8_0 and Q4_0 with scripts/make_model.py, and Q4_K_M with `vibee quantize` from the F16
# file (the bytes llama.cpp's quantizer writes: tests/test_quant_types.c), into a cache
# directory outside the repository.
# Existing files are kept (delete one to remake it). Random weights run exactly the same kernels
# and read exactly the same bytes per token as trained ones, which is all a speed benchmark needs.
#
# Usage: bash bench/cpu/make_models.sh        (prints the directory it wrote to on the last line)
#   env: BENCH_MODELS (default ${VB_CACHE:-$HOME/.cache/vibee}/bench-models), TYPES ("f16 q8_0 q4_0"),
#        MODELS ("gpt2-124m qwen3-0.6b"), QTYPES ("q4_k_m": made from the f16 file), VIBEE (build/vibee)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${BENCH_MODELS:-${VB_CACHE:-$HOME/.cache/vibee}/bench-models}
TYPES=${TYPES:-"f16 q8_0 q4_0"}
QTYPES=${QTYPES:-"q4_k_m"}
VIBEE=${VIBEE:-$ROOT/build/vibee}
MODELS=${MODELS:-"gpt2-124m qwen3-0.6b"}
mkdir -p "$DIR"

# shape flags per model (the published configs)
shape() {
    case "$1" in
    # GPT-2 small: untied output.weight, as llama.cpp's converter writes GPT-2 (a copy of wte).
    # Output rows are 768 long, a multiple of every block size, so no vocab padding is needed.
    gpt2-124m) echo "--arch gpt2 --n-layer 12 --n-embd 768 --n-head 12 --n-ff 3072 --n-vocab 50257 --n-ctx 1024" ;;
    # Qwen3-0.6B: GQA 16/8 heads, head_dim 128 (q width 2048 > n_embd), tied LM head.
    qwen3-0.6b) echo "--arch qwen3 --n-layer 28 --n-embd 1024 --n-head 16 --n-head-kv 8 --head-dim 128 --n-ff 3072 --n-vocab 151936 --n-ctx 40960 --tied" ;;
    *) echo "make_models.sh: unknown model $1" >&2; return 1 ;;
    esac
}

for m in $MODELS; do
    flags=$(shape "$m")
    for t in $TYPES; do
        out="$DIR/$m-$t.gguf"
        if [ -s "$out" ]; then echo "exists: $out"; continue; fi
        # shellcheck disable=SC2086
        /usr/bin/python3 "$ROOT/scripts/make_model.py" $flags --type "$t" --name "$m-$t" --out "$out.tmp"
        mv "$out.tmp" "$out"
    done
    for t in $QTYPES; do
        out="$DIR/$m-$t.gguf"
        if [ -s "$out" ]; then echo "exists: $out"; continue; fi
        [ -s "$DIR/$m-f16.gguf" ] || { echo "make_models.sh: $t needs $DIR/$m-f16.gguf (TYPES with f16)" >&2; exit 1; }
        "$VIBEE" quantize "$DIR/$m-f16.gguf" "$out.tmp" "$t"
        mv "$out.tmp" "$out"
    done
done
echo "$DIR"
