/* kernels_avx2.c - the AVX2 + FMA + F16C path of the matrix product (x86-64 only). The whole
 * file is compiled for that instruction set with a target pragma and is only entered after
 * the dispatcher (kernels_matmul.c) saw the features at run time, so the library itself is
 * built without -march and still runs on older CPUs. Integer dot products of 8-bit weights
 * and activations use the sign trick: maddubs(|w|, sign(x, w)) then madd with ones. */
#if defined(__x86_64__)
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include "kernels_internal.h"

#define VB_SIMD(name) name##_avx2
#define VB_FLOAT_512 0
#define VB_Q_512 0
#define VB_Q8_UNSIGNED 0 /* (w + 128) * x pairs would saturate maddubs' int16 */

static inline __attribute__((always_inline)) __m256i x8dot_prep(__m256i w) { return w; }

static inline __attribute__((always_inline)) __m256i x8dot(__m256i prep, __m256i w, __m256i x) {
    (void)prep;
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* Unsigned w (<= 127 here: nibbles) times signed x. */
static inline __attribute__((always_inline)) __m256i x8dot_us(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

#include "kernels_simd_template.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
#include "kernels_internal.h"
/* Never called off x86-64 (the dispatcher only picks this path after a CPU check). */
void vb_x8_quantize_avx2(const vb_mm_args *a, int64_t r0, int64_t r1) { (void)a, (void)r0, (void)r1; }
void vb_mm_rows_avx2(const vb_mm_args *a, int64_t o0, int64_t o1) { (void)a, (void)o0, (void)o1; }
void vb_mm_packed_avx2(const vb_mm_args *a, int64_t b0, int64_t b1) { (void)a, (void)b0, (void)b1; }
#endif
