#!/bin/bash
# gpu_check.sh - the device check of the `cuda` backend, run on a GPU machine from the repository
# root (a fresh checkout: it builds from source). Steps, each logged and timed:
#   1. nvidia-smi: the card's name, memory, driver;
#   2. make -j16 the library, the CLI and the test runner (CUDA backend, sm_90), and
#      bench/cuda/cuda_bench.c;
#   3. the cuda tests (tests/test_cuda.c) against the numpy-reference fixtures (carried in
#      build-cuda/fixtures, or made here with python3 when missing) and the cpu backend;
#   4. cuda_bench on a random-weight Qwen3-0.6B-shaped F16 model (made by scripts/make_model.py):
#      read bandwidth, decode tok/s at batch 1 and its fraction of the bandwidth, cost of K rows;
#   5. the AR, WeDLM and verify decoders on the shipped model, backends cuda and cpu
#      (cuda_bench --decoders, through the library API).
# Results go to $OUT (default ./gpu_out): gpu_check.log (everything), tests.log, bench.md,
# bench.json, decoders.md. Never stops at a failing step; the exit status says whether any did.
# A missing pcre2.h (Ubuntu images without libpcre2-dev) is taken from build-cuda/shim/pcre2.h.
set -u
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
BUILD=build-cuda
J=${J:-16}
status=0
t_start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t_start ))s] $*"; }
fail() { echo "!!! FAILED: $*"; status=1; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv || fail nvidia-smi
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME=${NVCC%/bin/nvcc}
echo "nvcc: $NVCC ($("$NVCC" --version | tail -2 | head -1))"

step "build (make -j$J)"
command -v make >/dev/null || fail "no make on this machine"
command -v cc >/dev/null || export CC=gcc
export CFLAGS="${CFLAGS:-}" LDFLAGS="${LDFLAGS:-}"
if ! echo '#include <pcre2.h>' | cc -DPCRE2_CODE_UNIT_WIDTH=8 -E - >/dev/null 2>&1; then
    shim=/tmp/vb_pcre2_shim
    mkdir -p "$shim"
    cp build-cuda/shim/pcre2.h "$shim/" 2>/dev/null || fail "no pcre2.h here and no build-cuda/shim/pcre2.h"
    lib=$(ls /usr/lib/x86_64-linux-gnu/libpcre2-8.so* /lib/x86_64-linux-gnu/libpcre2-8.so* 2>/dev/null | head -1)
    [ -n "$lib" ] && ln -sf "$lib" "$shim/libpcre2-8.so"
    echo "using pcre2 shim: header from build-cuda/shim, library $lib"
    CFLAGS="$CFLAGS -I$shim"
    LDFLAGS="$LDFLAGS -L$shim"
fi
make BUILD=$BUILD LLAMACPP=0 CUDA_ARCH_FLAGS="-gencode=arch=compute_90,code=sm_90" -j"$J" $BUILD/libvibee.a $BUILD/vibee $BUILD/test_runner >"$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; fail "make"; }
grep -E '^(cuda|llamacpp|onnx):' "$OUT/build.log" | sort -u
grep -iE 'warning' "$OUT/build.log" | head -20
LIBS="-lm -lpcre2-8 -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcublas -lcudart -lstdc++ -pthread"
${CC:-cc} -std=c11 -O2 -Wall -Wextra -D_GNU_SOURCE $CFLAGS -Iinclude -Isrc -I"$CUDA_HOME/include" \
    bench/cuda/cuda_bench.c $BUILD/libvibee.a $LDFLAGS $LIBS -o $BUILD/cuda_bench || fail "cuda_bench build"

step "fixtures"
export VB_FIXTURES=$PWD/$BUILD/fixtures
if [ ! -f "$VB_FIXTURES/models/qwen3-f16-long.bin" ]; then
    PY=python3 sh scripts/fixtures/models.sh || echo "(fixture generation failed; the fixture test skips)"
fi
ls "$VB_FIXTURES/models" 2>/dev/null | grep -c gguf

step "tests: test_runner cuda (one process per test, so a crash stops only its own test)"
: >"$OUT/tests.log"
failed_tests=""
for t in cuda_kernel_gemv cuda_kernel_attention cuda_without_gpu cuda_fixture cuda_shipped \
         cuda_k_rows cuda_graph_replay cuda_interleaved cuda_fork cuda_kv_full; do
    timeout 120 $BUILD/test_runner $t >"$OUT/t.log" 2>&1
    rc=$?
    cat "$OUT/t.log" >>"$OUT/tests.log"
    if [ $rc -ne 0 ] || ! grep -q ' 0 failed' "$OUT/t.log"; then
        failed_tests="$failed_tests $t"
        echo "--- $t FAILED (exit $rc):"; tail -15 "$OUT/t.log"
    else
        grep -E '^(ok|cuda:)' "$OUT/t.log"
    fi
done
rm -f "$OUT/t.log"
if [ -n "$failed_tests" ]; then
    fail "cuda tests:$failed_tests"
    if command -v compute-sanitizer >/dev/null; then
        for t in $(echo $failed_tests | cut -d' ' -f1-2); do
            step "compute-sanitizer memcheck $t"
            timeout 60 compute-sanitizer --tool memcheck --print-limit 5 $BUILD/test_runner $t 2>&1 | tail -40
        done
    fi
fi

step "bench model: random Qwen3-0.6B shape, F16"
MODEL=/tmp/qwen3-0.6b-f16.gguf
PY=python3
$PY -c 'import numpy' 2>/dev/null || PY=/usr/bin/python3
[ -f $MODEL ] || timeout 150 $PY scripts/make_model.py --arch qwen3 --n-layer 28 --n-embd 1024 \
    --n-head 16 --n-head-kv 8 --head-dim 128 --n-ff 3072 --n-vocab 151936 --n-ctx 4096 \
    --type f16 --tied --no-vocab --name qwen3-0.6b-random --out $MODEL || fail "make_model"

step "cuda_bench"
timeout 150 $BUILD/cuda_bench $MODEL 128 "$OUT/bench.json" | tee "$OUT/bench.md" || fail "cuda_bench"

step "decoders on the shipped model (library API through cuda_bench --decoders)"
timeout 90 $BUILD/cuda_bench --decoders models/wedlm-py-6m-f16.gguf | tee "$OUT/decoders.md" \
    || fail "decoders"

step "done (status $status)"
exit $status
