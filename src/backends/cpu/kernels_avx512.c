/* kernels_avx512.c - the AVX-512 path of the matrix product (x86-64 only): the kernels of
 * kernels_simd_template.h with 512-bit float tiles and the VNNI instruction vpdpbusd
 * (AVX512-VNNI + VL, on 256-bit vectors) as the 8-bit dot product. vpdpbusd multiplies
 * unsigned by signed bytes: 4-bit weights are unsigned already (Q4_0, Q4_K; Q6_K before its
 * -32); Q8_0 weights are flipped to w + 128; the offsets are subtracted with the activation
 * block sums (X8 dsum, dsum16). Compiled for the instruction set with a target pragma;
 * entered only after the dispatcher's run-time CPU check. */
#if defined(__x86_64__)
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif

#include "kernels_internal.h"

#define VB_SIMD(name) name##_avx512
#define VB_FLOAT_512 1
#define VB_Q_512 1
#define VB_Q8_UNSIGNED 1

/* Signed weights times signed activations: the template's generic form, not taken by the
 * kernels of this path (they use the unsigned form below); the AVX2 sign trick. */
static inline __attribute__((always_inline)) __m256i x8dot_prep(__m256i w) { return w; }

static inline __attribute__((always_inline)) __m256i x8dot(__m256i prep, __m256i w, __m256i x) {
    (void)prep;
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* Unsigned w times signed x (no saturation: vpdpbusd sums into int32 directly). */
static inline __attribute__((always_inline)) __m256i x8dot_us(__m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
}

#include "kernels_simd_template.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
#include "kernels_internal.h"
void vb_x8_quantize_avx512(const vb_mm_args *a, int64_t r0, int64_t r1) { (void)a, (void)r0, (void)r1; }
void vb_mm_rows_avx512(const vb_mm_args *a, int64_t o0, int64_t o1) { (void)a, (void)o0, (void)o1; }
void vb_mm_packed_avx512(const vb_mm_args *a, int64_t b0, int64_t b1) { (void)a, (void)b0, (void)b1; }
#endif
