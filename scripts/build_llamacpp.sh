#!/usr/bin/env bash
# build_llamacpp.sh - builds a CPU-only static llama.cpp library for vibee's `llamacpp` backend
# from the llama.cpp + ggml sources that the npm package llama.rn carries under package/cpp/
# (ggml symbols renamed with an lm_ prefix, llama_* API unchanged; see DESIGN.md section 5).
#
# Output (the "cache", found by src/backends/llamacpp/llamacpp.mk):
#   ${VB_CACHE:-$HOME/.cache/vibee}/llama.cpp-<llama.rn version>/
#     include/          llama.h and the ggml/gguf headers it includes
#     lib/libllama_vibee.a
#     build-info.txt    llama.cpp build number + commit, compiler, CPU flags, time taken
#     cpu-flags.txt     the exact CPU flags the library was compiled with (one line)
#     stamp             key of this build (version + compiler + CPU flags); present only when complete
#
# CPU flags: llama.cpp's CMake uses -march=native for a native build (GGML_NATIVE=ON). The cache may
# be reused on another machine, so the script expands -march=native into the explicit flags the
# compiler resolves it to on THIS machine, records them, and rebuilds when they differ (the Makefile
# fragment also refuses a cache built for other flags). Comparisons between engines are fair only
# when both use the CPU's SIMD; vibee's own kernels are built for the same machine.
#
# Idempotent: does nothing when the cache already holds a build with the same key.
# Usage: bash scripts/build_llamacpp.sh [--force]
#   env: VB_CACHE, JOBS (default 2), CC, CXX, VB_LLAMA_OPENMP=0 (ggml's thread pool, not OpenMP),
#        LLAMA_RN_TGZ=path/to/llama.rn-0.12.9.tgz to build offline from a tarball made by
#        `npm pack llama.rn@0.12.9` (its sha256 is checked either way)
set -euo pipefail

LLAMA_RN_VERSION=0.12.9
LLAMA_RN_SHA256=7069fbf1db95f07cfd9bfbbd0d160be5c0d329c5985868e00c3248338598bca5
CC=${CC:-cc}
CXX=${CXX:-c++}
JOBS=${JOBS:-2}
CACHE_ROOT=${VB_CACHE:-$HOME/.cache/vibee}
DEST="$CACHE_ROOT/llama.cpp-$LLAMA_RN_VERSION"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'build_llamacpp: %s\n' "$*"; }
die() { printf 'build_llamacpp: error: %s\n' "$*" >&2; exit 1; }

[ -n "${LLAMA_RN_TGZ:-}" ] || command -v npm >/dev/null ||
    die "npm not found (needed to fetch llama.rn@$LLAMA_RN_VERSION; or set LLAMA_RN_TGZ)"
command -v "$CC" >/dev/null || die "C compiler '$CC' not found"
command -v "$CXX" >/dev/null || die "C++ compiler '$CXX' not found"

# --- CPU flags: what -march=native means on this machine, made explicit -----------------------
native_flags() {
    # cc1's command line after driver expansion: -march=<cpu> -m<feature>... -mtune=<cpu>
    "$CC" -### -march=native -x c -c /dev/null -o /dev/null 2>&1 |
        grep -m1 'cc1' | tr ' ' '\n' | tr -d '"' | grep -E '^-m' | tr '\n' ' ' | sed 's/ $//'
}
CPU_FLAGS=$(native_flags)
[ -n "$CPU_FLAGS" ] || die "could not resolve -march=native with $CC (is it GCC or clang?)"

# OpenMP is llama.cpp's default threading (GGML_OPENMP=ON); use it when the compiler has it.
# VB_LLAMA_OPENMP=0 builds with ggml's own thread pool instead.
OPENMP_FLAGS=""
if [ "${VB_LLAMA_OPENMP:-1}" != 0 ] &&
   printf 'int main(void){return 0;}\n' | "$CC" -fopenmp -x c - -o /dev/null 2>/dev/null; then
    OPENMP_FLAGS="-fopenmp"
fi

KEY="llama.rn=$LLAMA_RN_VERSION cc=$("$CC" -dumpfullversion 2>/dev/null || "$CC" -dumpversion) openmp=${OPENMP_FLAGS:-no} flags=$CPU_FLAGS"
if [ $FORCE = 0 ] && [ -f "$DEST/stamp" ] && [ "$(cat "$DEST/stamp")" = "$KEY" ] &&
   [ -f "$DEST/lib/libllama_vibee.a" ] && [ -f "$DEST/include/llama.h" ]; then
    log "up to date: $DEST ($(grep -m1 '^build' "$DEST/build-info.txt" 2>/dev/null || echo 'build ?'))"
    exit 0
fi

START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vibee-llamacpp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- fetch: npm pack only (no install, no lifecycle scripts) -----------------------------------
TGZ="$WORK/llama.rn-$LLAMA_RN_VERSION.tgz"
if [ -n "${LLAMA_RN_TGZ:-}" ]; then
    log "using $LLAMA_RN_TGZ"
    cp "$LLAMA_RN_TGZ" "$TGZ" || die "cannot read LLAMA_RN_TGZ=$LLAMA_RN_TGZ"
else
    log "fetching llama.rn@$LLAMA_RN_VERSION with npm pack"
    (cd "$WORK" && npm pack --silent --ignore-scripts "llama.rn@$LLAMA_RN_VERSION" >/dev/null) ||
        die "npm pack llama.rn@$LLAMA_RN_VERSION failed (registry reachable? or set LLAMA_RN_TGZ)"
fi
GOT_SHA=$(sha256sum "$TGZ" | cut -d' ' -f1)
[ "$GOT_SHA" = "$LLAMA_RN_SHA256" ] ||
    die "llama.rn-$LLAMA_RN_VERSION.tgz has sha256 $GOT_SHA, expected $LLAMA_RN_SHA256"
tar -xzf "$TGZ" -C "$WORK" package/cpp
SRC="$WORK/package/cpp"
[ -f "$SRC/llama.h" ] && [ -f "$SRC/ggml.c" ] || die "unexpected package layout (no cpp/llama.h)"

BUILD_NUMBER=$(sed -n 's/^int LLAMA_BUILD_NUMBER = \([0-9]*\);/\1/p' "$SRC/common/build-info.cpp")
COMMIT=$(sed -n 's/^char const \* LLAMA_COMMIT = "\([^"]*\)";/\1/p' "$SRC/common/build-info.cpp")
[ -n "$BUILD_NUMBER" ] || die "could not read LLAMA_BUILD_NUMBER from common/build-info.cpp"
log "llama.cpp build $BUILD_NUMBER ($COMMIT), CPU flags: $(echo "$CPU_FLAGS" | grep -o -- '-march=[^ ]*')"

# --- sources: ggml core + CPU backend + llama; no metal/opencl/hexagon/blas/jsi/rn-*/common -----
cd "$SRC"
SOURCES=$(
    ls ggml.c ggml-alloc.c ggml-quants.c ggml-backend.cpp ggml-backend-reg.cpp \
       ggml-backend-dl.cpp ggml-backend-meta.cpp ggml-threading.cpp ggml-opt.cpp gguf.cpp \
       unicode.cpp unicode-data.cpp 2>/dev/null
    ls llama*.cpp
    ls ggml-cpu/*.c ggml-cpu/*.cpp ggml-cpu/amx/*.cpp
    ls ggml-cpu/arch/x86/*.c ggml-cpu/arch/x86/*.cpp | grep -v -e cpu-feats.cpp -e 'rn-'
    ls models/*.cpp
)
N=$(echo "$SOURCES" | wc -l)

DEFS="-DNDEBUG -D_GNU_SOURCE -D_XOPEN_SOURCE=600 -DLM_GGML_USE_CPU -DLM_GGML_USE_CPU_REPACK \
 -DLM_GGML_SCHED_MAX_COPIES=4 -DLM_GGML_VERSION=\"\\\"b$BUILD_NUMBER\\\"\" -DLM_GGML_COMMIT=\"\\\"$COMMIT\\\"\""
[ -n "$OPENMP_FLAGS" ] && DEFS="$DEFS -DLM_GGML_USE_OPENMP"
COMMON="-O3 -fPIC -pthread -w $CPU_FLAGS $OPENMP_FLAGS $DEFS -I. -Iggml-cpu"

# A generated Makefile gives -j parallelism and one progress line per object. Every object gets a
# unique name from its path (ggml-cpu.c and ggml-cpu/ggml-cpu.c and ggml-cpu/ggml-cpu.cpp differ).
MK="$WORK/objs.mk"
{
    echo "all: libllama_vibee.a"
    OBJS=""
    i=0
    for s in $SOURCES; do
        i=$((i + 1))
        o="obj/$(echo "$s" | tr '/' '_').o"
        OBJS="$OBJS $o"
        case "$s" in
            *.c)   cmd="$CC -std=gnu11 $COMMON -c $s -o $o" ;;
            *.cpp) cmd="$CXX -std=gnu++17 $COMMON -c $s -o $o" ;;
        esac
        printf '%s: %s\n\t@printf "build_llamacpp: [%3d/%d] %s\\n"\n\t@%s\n' "$o" "$s" "$i" "$N" "$s" "$cmd"
    done
    printf 'libllama_vibee.a:%s\n\t@rm -f $@\n\t@ar rcs $@ $^\n' "$OBJS"
} > "$MK"
mkdir -p obj
log "compiling $N files with $JOBS jobs"
make -s -f "$MK" -j"$JOBS" || die "compilation failed (see the compiler output above)"

# --- install into the cache ----------------------------------------------------------------------
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/include" "$DEST.tmp/lib"
cp libllama_vibee.a "$DEST.tmp/lib/"
# llama.h and the headers it includes (ggml.h, ggml-cpu.h, ggml-backend.h, ggml-alloc.h, ggml-opt.h, gguf.h)
cp llama.h llama-cpp.h ggml.h ggml-cpu.h ggml-backend.h ggml-alloc.h ggml-opt.h gguf.h "$DEST.tmp/include/"
# The version the backend checks at build time (llamacpp.mk reads it; the backend prints it).
cat > "$DEST.tmp/include/vibee_llama_build.h" <<EOF
/* vibee_llama_build.h - written by scripts/build_llamacpp.sh: which llama.cpp this library is. */
#define VB_LLAMA_BUILD_NUMBER $BUILD_NUMBER
#define VB_LLAMA_COMMIT "$COMMIT"
#define VB_LLAMA_SOURCE "npm llama.rn@$LLAMA_RN_VERSION"
#define VB_LLAMA_CPU_FLAGS "$(echo "$CPU_FLAGS" | grep -o -- '-march=[^ ]*')"
#define VB_LLAMA_OPENMP $([ -n "$OPENMP_FLAGS" ] && echo 1 || echo 0)
EOF
echo "$CPU_FLAGS" > "$DEST.tmp/cpu-flags.txt"
ELAPSED=$(( $(date +%s) - START ))
cat > "$DEST.tmp/build-info.txt" <<EOF
build $BUILD_NUMBER
commit $COMMIT
source npm llama.rn@$LLAMA_RN_VERSION (package/cpp), tarball sha256 $GOT_SHA
compiler $("$CC" --version | head -1) / $("$CXX" --version | head -1)
openmp ${OPENMP_FLAGS:-no}
cpu_flags $CPU_FLAGS
defines $DEFS
files $N
seconds $ELAPSED (jobs $JOBS)
built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)
EOF
echo "$KEY" > "$DEST.tmp/stamp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
log "done in ${ELAPSED}s: $DEST (build $BUILD_NUMBER)"
