/* ops.c - per-row operations of the CPU forward pass: normalisations, rotary embedding,
 * activations, softmax, adds (see ops.h). Plain C; the dot/axpy helpers use GCC/Clang vector
 * extensions so that they vectorise without -ffast-math. exp and softmax have AVX-512 and AVX2
 * paths (a polynomial exp, see ops.h) chosen at run time by the kernel level of kernels.h. */
#include "ops.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels.h"

typedef float vb_f32x8 __attribute__((vector_size(32)));

float vb_op_dot(const float *a, const float *b, int64_t n) {
    vb_f32x8 acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vb_f32x8 a0, a1, b0, b1;
        memcpy(&a0, a + i, sizeof a0);
        memcpy(&a1, a + i + 8, sizeof a1);
        memcpy(&b0, b + i, sizeof b0);
        memcpy(&b1, b + i + 8, sizeof b1);
        acc0 += a0 * b0;
        acc1 += a1 * b1;
    }
    acc0 += acc1;
    float sum = 0.0f;
    for (int k = 0; k < 8; k++) sum += acc0[k];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void vb_op_axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    vb_f32x8 av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) {
        vb_f32x8 xv, yv;
        memcpy(&xv, x + i, sizeof xv);
        memcpy(&yv, y + i, sizeof yv);
        yv += av * xv;
        memcpy(y + i, &yv, sizeof yv);
    }
    for (; i < n; i++) y[i] += a * x[i];
}

static void rmsnorm_portable(const float *x, float *y, const float *w, int64_t n_rows, int64_t n,
                             float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum_sq = 0.0;
        for (int64_t i = 0; i < n; i++) sum_sq += (double)xr[i] * xr[i];
        const float scale = (float)(1.0 / sqrt(sum_sq / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale * w[i];
    }
}

void vb_op_layernorm(const float *x, float *y, const float *w, const float *b, int64_t n_rows,
                     int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += xr[i];
        const double mean = sum / (double)n;
        double var = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double d = xr[i] - mean;
            var += d * d;
        }
        var /= (double)n;
        const float scale = (float)(1.0 / sqrt(var + (double)eps));
        const float mean_f = (float)mean;
        for (int64_t i = 0; i < n; i++) {
            const float v = (xr[i] - mean_f) * scale * w[i];
            yr[i] = b ? v + b[i] : v;
        }
    }
}

#define VB_ROPE_MAX_PAIRS 512

/* The cos / sin of the last positions, per thread: a forward rotates each row once per layer,
 * so with up to ROPE_SLOTS rows (decoding, WeDLM windows, verify drafts) only the first layer
 * computes them (pow + sincos per pair was ~5% of a K-row step of the shipped model).
 * Direct-mapped by position; a change of n_rot, base or factors empties it. */
#define ROPE_SLOTS 16
typedef struct rope_slot {
    int32_t pos;                      /* -1: empty */
    float cos_t[VB_ROPE_MAX_PAIRS];   /* [n_rot / 2] */
    float sin_t[VB_ROPE_MAX_PAIRS];   /* [n_rot / 2] */
} rope_slot;
typedef struct rope_cache {
    bool has_factors;
    int32_t n_rot;                    /* 0: empty */
    float theta_base;
    float factors[VB_ROPE_MAX_PAIRS]; /* [n_rot / 2] copy of freq_factors */
    rope_slot slot[ROPE_SLOTS];
} rope_cache;

static _Thread_local rope_cache rope_last;

void vb_op_rope(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, int32_t pos,
                float theta_base, const float *freq_factors, enum vb_rope_kind kind) {
    const int32_t n_pairs = n_rot / 2;
    if (n_pairs > VB_ROPE_MAX_PAIRS || n_pairs <= 0) return; /* callers check n_rot at load */
    rope_cache *c = &rope_last;
    const bool same_key =
        c->n_rot == n_rot && c->theta_base == theta_base && c->has_factors == (freq_factors != NULL) &&
        (!freq_factors || memcmp(c->factors, freq_factors, (size_t)n_pairs * sizeof(float)) == 0);
    if (!same_key) {
        c->n_rot = n_rot;
        c->theta_base = theta_base;
        c->has_factors = freq_factors != NULL;
        if (freq_factors) memcpy(c->factors, freq_factors, (size_t)n_pairs * sizeof(float));
        for (int s = 0; s < ROPE_SLOTS; s++) c->slot[s].pos = -1;
    }
    rope_slot *t = &c->slot[(uint32_t)pos % ROPE_SLOTS];
    if (t->pos != pos || pos < 0) {
        for (int32_t i = 0; i < n_pairs; i++) {
            double angle = (double)pos * pow((double)theta_base, -2.0 * (double)i / (double)n_rot);
            if (freq_factors) angle /= (double)freq_factors[i];
            t->cos_t[i] = (float)cos(angle);
            t->sin_t[i] = (float)sin(angle);
        }
        t->pos = pos;
    }
    const float *cos_t = t->cos_t, *sin_t = t->sin_t;
    for (int32_t h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * head_dim;
        for (int32_t i = 0; i < n_pairs; i++) {
            const int32_t ia = kind == VB_ROPE_NEOX ? i : 2 * i;
            const int32_t ib = kind == VB_ROPE_NEOX ? i + n_pairs : 2 * i + 1;
            const float a = xh[ia], b = xh[ib];
            xh[ia] = a * cos_t[i] - b * sin_t[i];
            xh[ib] = a * sin_t[i] + b * cos_t[i];
        }
    }
}

/* The gated activations, one formula for both: act(g) = g * sigmoid(z(g)) = g / (1 + exp(-z)),
 * with z = g for SiLU and z = 2 sqrt(2/pi) (g + 0.044715 g^3) for GELU's tanh approximation
 * (0.5 g (1 + tanh(u)) = g / (1 + exp(-2u))). gate[i] = act(gate[i]) * (up ? up[i] : 1). */
#define GELU_K0 1.5957691216057308f /* 2 sqrt(2/pi) */
#define GELU_K1 0.044715f

static void act_mul_portable(float *gate, const float *up, int64_t n, bool gelu) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float z = gelu ? GELU_K0 * (g + GELU_K1 * g * g * g) : g;
        const float a = g / (1.0f + expf(-z));
        gate[i] = up ? a * up[i] : a;
    }
}

void vb_op_softcap(float *x, int64_t n, float c) {
    for (int64_t i = 0; i < n; i++) x[i] = c * tanhf(x[i] / c);
}

/* ----------------------------------------------------------------------- exp, softmax */

/* The polynomial exp (all SIMD paths): x = n ln2 + r with n = round(x / ln2) and ln2 split
 * into a high part with 12 trailing zero bits (n * EXP_LN2_HI is exact for |n| < 2^12) and a
 * low part; exp(r) by its Taylor polynomial of degree 7 (truncation error < 6e-9 relative on
 * |r| <= 0.3466); 2^n applied as 2^(n>>1) * 2^(n-(n>>1)), both normal for n in [-150, 128]. */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f      /* 0x3f317200 */
#define EXP_LN2_LO 1.42860682030941723e-6f /* ln2 - EXP_LN2_HI */
#define EXP_X_MIN (-104.0f)                /* below: exp(x) < 2^-150, result 0 */
#define EXP_X_MAX 89.0f                    /* above: exp(x) > FLT_MAX, result +inf */
#define EXP_C2 (1.0f / 2)
#define EXP_C3 (1.0f / 6)
#define EXP_C4 (1.0f / 24)
#define EXP_C5 (1.0f / 120)
#define EXP_C6 (1.0f / 720)
#define EXP_C7 (1.0f / 5040)

/* The order-independent sum of softmax numerators p in [0, 1]: p * 2^30 = hi + rem with hi
 * the nearest integer (rem exact, |rem| <= 0.5) and lo = nearest integer to rem * 2^30;
 * hi and lo are summed as integers, so any order gives the same sum. */
#define SUM_SCALE 1073741824.0f /* 2^30 */
typedef struct exact_sum {
    int64_t hi, lo;
} exact_sum;

static void exact_sum_add(exact_sum *s, float p) {
    if (!(p >= 0.0f && p <= 1.0f)) p = 1.0f; /* NaN (from non-finite activations): keep the
                                                 conversions below defined */
    const float scaled = p * SUM_SCALE;
    const float hi = nearbyintf(scaled);
    s->hi += (int64_t)hi;
    s->lo += (int64_t)nearbyintf((scaled - hi) * SUM_SCALE);
}

static float exact_sum_inv(int64_t hi, int64_t lo) {
    return (float)(1073741824.0 / ((double)hi + (double)lo * (1.0 / 1073741824.0)));
}

static void exp_portable(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

static void softmax_portable(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static float softmax_num_portable(float *x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    exact_sum sum = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        exact_sum_add(&sum, x[i]);
    }
    return exact_sum_inv(sum.hi, sum.lo);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VB_OPS_HAVE_SIMD 1
#define VB_OPS_AVX2 __attribute__((target("avx2,fma,f16c")))
#define VB_OPS_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

VB_OPS_AVX512 static inline __m512 exp_vec_avx512(__m512 x) {
    const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_X_MIN), _CMP_LT_OQ);
    /* max/min return their second operand when one is NaN: NaN passes through */
    x = _mm512_min_ps(_mm512_set1_ps(EXP_X_MAX), _mm512_max_ps(_mm512_set1_ps(EXP_X_MIN), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C7), r, _mm512_set1_ps(EXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i k = _mm512_cvtps_epi32(n);
    const __m512i k1 = _mm512_srai_epi32(k, 1), k2 = _mm512_sub_epi32(k, k1);
    const __m512i bias = _mm512_set1_epi32(127);
    const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k1, bias), 23));
    const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k2, bias), 23));
    return _mm512_maskz_mov_ps((__mmask16)~underflow, _mm512_mul_ps(_mm512_mul_ps(p, s1), s2));
}

VB_OPS_AVX2 static inline __m256 exp_vec_avx2(__m256 x) {
    const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_X_MIN), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(EXP_X_MAX), _mm256_max_ps(_mm256_set1_ps(EXP_X_MIN), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C7), r, _mm256_set1_ps(EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i k = _mm256_cvtps_epi32(n);
    const __m256i k1 = _mm256_srai_epi32(k, 1), k2 = _mm256_sub_epi32(k, k1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(p, s1), s2));
}

VB_OPS_AVX512 static void exp_avx512(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp_vec_avx512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, exp_vec_avx512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* Lanes [0, n) of a 256-bit vector as a mask (n <= 8). */
VB_OPS_AVX2 static inline __m256i lane_mask_avx2(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

VB_OPS_AVX2 static void exp_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp_vec_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        const __m256i m = lane_mask_avx2(n - i);
        _mm256_maskstore_ps(y + i, m, exp_vec_avx2(_mm256_maskload_ps(x + i, m)));
    }
}

VB_OPS_AVX512 static void softmax_avx512(float *x, int64_t n) {
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
    __m512 vmax = neg_inf;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1); /* n - i < 16 */
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(neg_inf, tail, x + i));
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    /* exp(x - max), summed in double: [0,8) and [8,16) lanes in two accumulators */
    __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp_vec_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), max));
        _mm512_storeu_ps(x + i, e);
        sum_lo = _mm512_add_pd(sum_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum_hi = _mm512_add_pd(sum_hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                           _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    if (i < n) {
        const __m512 e = _mm512_maskz_mov_ps(
            tail, exp_vec_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), max)));
        _mm512_mask_storeu_ps(x + i, tail, e);
        sum_lo = _mm512_add_pd(sum_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum_hi = _mm512_add_pd(sum_hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                           _mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const double sum = _mm512_reduce_add_pd(_mm512_add_pd(sum_lo, sum_hi));
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n)
        _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inv));
}

VB_OPS_AVX2 static void softmax_avx2(float *x, int64_t n) {
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
    __m256 vmax = neg_inf;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    const __m256i tail = lane_mask_avx2(n - i); /* n - i < 8 */
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, _mm256_maskload_ps(x + i, tail),
                                                _mm256_castsi256_ps(tail)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 max = _mm256_set1_ps(_mm_cvtss_f32(m4));
    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp_vec_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), max));
        _mm256_storeu_ps(x + i, e);
        sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (i < n) {
        const __m256 e =
            _mm256_and_ps(_mm256_castsi256_ps(tail),
                          exp_vec_avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, tail), max)));
        _mm256_maskstore_ps(x + i, tail, e);
        sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    const __m256d s4 = _mm256_add_pd(sum_lo, sum_hi);
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
    const __m256 inv = _mm256_set1_ps((float)(1.0 / _mm_cvtsd_f64(s2)));
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (i < n)
        _mm256_maskstore_ps(x + i, tail, _mm256_mul_ps(_mm256_maskload_ps(x + i, tail), inv));
}

/* exact_sum_add on 16 lanes: the hi and lo integers of each lane added to 64-bit sums
 * (lanes 0-7 in *hi0 / *lo0, lanes 8-15 in *hi1 / *lo1). */
VB_OPS_AVX512 static inline void exact_sum_add_avx512(__m512 p, __m512i *hi0, __m512i *hi1,
                                                      __m512i *lo0, __m512i *lo1) {
    const __m512 scaled = _mm512_mul_ps(p, _mm512_set1_ps(SUM_SCALE));
    const __m512i hi = _mm512_cvtps_epi32(scaled); /* nearest (MXCSR default) */
    const __m512 rem = _mm512_sub_ps(scaled, _mm512_cvtepi32_ps(hi));
    const __m512i lo = _mm512_cvtps_epi32(_mm512_mul_ps(rem, _mm512_set1_ps(SUM_SCALE)));
    *hi0 = _mm512_add_epi64(*hi0, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(hi)));
    *hi1 = _mm512_add_epi64(*hi1, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(hi, 1)));
    *lo0 = _mm512_add_epi64(*lo0, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(lo)));
    *lo1 = _mm512_add_epi64(*lo1, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(lo, 1)));
}

VB_OPS_AVX2 static inline void exact_sum_add_avx2(__m256 p, __m256i *hi0, __m256i *hi1,
                                                  __m256i *lo0, __m256i *lo1) {
    const __m256 scaled = _mm256_mul_ps(p, _mm256_set1_ps(SUM_SCALE));
    const __m256i hi = _mm256_cvtps_epi32(scaled);
    const __m256 rem = _mm256_sub_ps(scaled, _mm256_cvtepi32_ps(hi));
    const __m256i lo = _mm256_cvtps_epi32(_mm256_mul_ps(rem, _mm256_set1_ps(SUM_SCALE)));
    *hi0 = _mm256_add_epi64(*hi0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(hi)));
    *hi1 = _mm256_add_epi64(*hi1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(hi, 1)));
    *lo0 = _mm256_add_epi64(*lo0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lo)));
    *lo1 = _mm256_add_epi64(*lo1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(lo, 1)));
}

VB_OPS_AVX512 static float softmax_num_avx512(float *x, int64_t n) {
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
    __m512 vmax = neg_inf;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1);
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(neg_inf, tail, x + i));
    const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512i hi0 = _mm512_setzero_si512(), hi1 = hi0, lo0 = hi0, lo1 = hi0;
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp_vec_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), max));
        _mm512_storeu_ps(x + i, e);
        exact_sum_add_avx512(e, &hi0, &hi1, &lo0, &lo1);
    }
    if (i < n) {
        const __m512 e = _mm512_maskz_mov_ps(
            tail, exp_vec_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), max)));
        _mm512_mask_storeu_ps(x + i, tail, e);
        exact_sum_add_avx512(e, &hi0, &hi1, &lo0, &lo1);
    }
    return exact_sum_inv(_mm512_reduce_add_epi64(_mm512_add_epi64(hi0, hi1)),
                         _mm512_reduce_add_epi64(_mm512_add_epi64(lo0, lo1)));
}

/* Horizontal sum of 4 int64 lanes. */
VB_OPS_AVX2 static inline int64_t hsum_epi64_avx2(__m256i v) {
    const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

VB_OPS_AVX2 static float softmax_num_avx2(float *x, int64_t n) {
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
    __m256 vmax = neg_inf;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    const __m256i tail = lane_mask_avx2(n - i);
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, _mm256_maskload_ps(x + i, tail),
                                                _mm256_castsi256_ps(tail)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 max = _mm256_set1_ps(_mm_cvtss_f32(m4));
    __m256i hi0 = _mm256_setzero_si256(), hi1 = hi0, lo0 = hi0, lo1 = hi0;
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp_vec_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), max));
        _mm256_storeu_ps(x + i, e);
        exact_sum_add_avx2(e, &hi0, &hi1, &lo0, &lo1);
    }
    if (i < n) {
        const __m256 e =
            _mm256_and_ps(_mm256_castsi256_ps(tail),
                          exp_vec_avx2(_mm256_sub_ps(_mm256_maskload_ps(x + i, tail), max)));
        _mm256_maskstore_ps(x + i, tail, e);
        exact_sum_add_avx2(e, &hi0, &hi1, &lo0, &lo1);
    }
    return exact_sum_inv(hsum_epi64_avx2(_mm256_add_epi64(hi0, hi1)),
                         hsum_epi64_avx2(_mm256_add_epi64(lo0, lo1)));
}

/* Column softmax numerators, 16 columns at a time (n_cols % 16 == 0). */
VB_OPS_AVX512 static void softmax_cols_avx512(float *x, int64_t n_rows, int64_t n_cols,
                                              float *inv_sum) {
    for (int64_t c = 0; c < n_cols; c += 16) {
        __m512 vmax = _mm512_loadu_ps(x + c);
        for (int64_t r = 1; r < n_rows; r++)
            vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + r * n_cols + c));
        __m512i hi0 = _mm512_setzero_si512(), hi1 = hi0, lo0 = hi0, lo1 = hi0;
        for (int64_t r = 0; r < n_rows; r++) {
            float *xr = x + r * n_cols + c;
            const __m512 e = exp_vec_avx512(_mm512_sub_ps(_mm512_loadu_ps(xr), vmax));
            _mm512_storeu_ps(xr, e);
            exact_sum_add_avx512(e, &hi0, &hi1, &lo0, &lo1);
        }
        int64_t hi[16], lo[16];
        _mm512_storeu_si512(hi, hi0);
        _mm512_storeu_si512(hi + 8, hi1);
        _mm512_storeu_si512(lo, lo0);
        _mm512_storeu_si512(lo + 8, lo1);
        for (int j = 0; j < 16; j++) inv_sum[c + j] = exact_sum_inv(hi[j], lo[j]);
    }
}

/* Column softmax numerators, 8 columns at a time (n_cols % 8 == 0). */
VB_OPS_AVX2 static void softmax_cols_avx2(float *x, int64_t n_rows, int64_t n_cols,
                                          float *inv_sum) {
    for (int64_t c = 0; c < n_cols; c += 8) {
        __m256 vmax = _mm256_loadu_ps(x + c);
        for (int64_t r = 1; r < n_rows; r++)
            vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + r * n_cols + c));
        __m256i hi0 = _mm256_setzero_si256(), hi1 = hi0, lo0 = hi0, lo1 = hi0;
        for (int64_t r = 0; r < n_rows; r++) {
            float *xr = x + r * n_cols + c;
            const __m256 e = exp_vec_avx2(_mm256_sub_ps(_mm256_loadu_ps(xr), vmax));
            _mm256_storeu_ps(xr, e);
            exact_sum_add_avx2(e, &hi0, &hi1, &lo0, &lo1);
        }
        int64_t hi[8], lo[8];
        _mm256_storeu_si256((__m256i *)hi, hi0);
        _mm256_storeu_si256((__m256i *)(hi + 4), hi1);
        _mm256_storeu_si256((__m256i *)lo, lo0);
        _mm256_storeu_si256((__m256i *)(lo + 4), lo1);
        for (int j = 0; j < 8; j++) inv_sum[c + j] = exact_sum_inv(hi[j], lo[j]);
    }
}

/* act_mul_portable with the polynomial exp, 16 (8) at a time; the tail is masked, so every
 * element takes the same arithmetic wherever a call starts or ends. */
VB_OPS_AVX512 static void act_mul_avx512(float *gate, const float *up, int64_t n, bool gelu) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512 k0 = _mm512_set1_ps(GELU_K0), k1 = _mm512_set1_ps(GELU_K1);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 z = g;
        if (gelu) z = _mm512_mul_ps(k0, _mm512_add_ps(g, _mm512_mul_ps(k1, _mm512_mul_ps(_mm512_mul_ps(g, g), g))));
        __m512 r = _mm512_div_ps(g, _mm512_add_ps(one, exp_vec_avx512(_mm512_sub_ps(zero, z))));
        if (up) r = _mm512_mul_ps(r, _mm512_maskz_loadu_ps(m, up + i));
        _mm512_mask_storeu_ps(gate + i, m, r);
    }
}

VB_OPS_AVX2 static void act_mul_avx2(float *gate, const float *up, int64_t n, bool gelu) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 k0 = _mm256_set1_ps(GELU_K0), k1 = _mm256_set1_ps(GELU_K1);
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = lane_mask_avx2(n - i < 8 ? n - i : 8);
        const __m256 g = _mm256_maskload_ps(gate + i, m);
        __m256 z = g;
        if (gelu) z = _mm256_mul_ps(k0, _mm256_add_ps(g, _mm256_mul_ps(k1, _mm256_mul_ps(_mm256_mul_ps(g, g), g))));
        __m256 r = _mm256_div_ps(g, _mm256_add_ps(one, exp_vec_avx2(_mm256_sub_ps(zero, z))));
        if (up) r = _mm256_mul_ps(r, _mm256_maskload_ps(up + i, m));
        _mm256_maskstore_ps(gate + i, m, r);
    }
}

/* rmsnorm_portable with the sum of squares in double, 16 (8) floats at a time. */
VB_OPS_AVX512 static void rmsnorm_avx512(const float *x, float *y, const float *w, int64_t n_rows,
                                         int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(m, xr + i);
            const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            const __m512d hi =
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
            s0 = _mm512_fmadd_pd(lo, lo, s0);
            s1 = _mm512_fmadd_pd(hi, hi, s1);
        }
        const double sum_sq = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
        const __m512 scale = _mm512_set1_ps((float)(1.0 / sqrt(sum_sq / (double)n + (double)eps)));
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xr + i), scale);
            _mm512_mask_storeu_ps(yr + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
        }
    }
}

VB_OPS_AVX2 static void rmsnorm_avx2(const float *x, float *y, const float *w, int64_t n_rows,
                                     int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(xr + i);
            const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
            s0 = _mm256_fmadd_pd(lo, lo, s0);
            s1 = _mm256_fmadd_pd(hi, hi, s1);
        }
        const __m256d s4 = _mm256_add_pd(s0, s1);
        __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
        double sum_sq = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
        for (int64_t t = i; t < n; t++) sum_sq += (double)xr[t] * xr[t];
        const float scale_f = (float)(1.0 / sqrt(sum_sq / (double)n + (double)eps));
        const __m256 scale = _mm256_set1_ps(scale_f);
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), scale),
                                                   _mm256_loadu_ps(w + i)));
        for (; i < n; i++) yr[i] = xr[i] * scale_f * w[i];
    }
}
#endif

static void softmax_cols_portable(float *x, int64_t n_rows, int64_t n_cols, float *inv_sum) {
    for (int64_t c = 0; c < n_cols; c++) {
        float max = x[c];
        for (int64_t r = 1; r < n_rows; r++)
            if (x[r * n_cols + c] > max) max = x[r * n_cols + c];
        exact_sum sum = {0, 0};
        for (int64_t r = 0; r < n_rows; r++) {
            float *v = x + r * n_cols + c;
            *v = expf(*v - max);
            exact_sum_add(&sum, *v);
        }
        inv_sum[c] = exact_sum_inv(sum.hi, sum.lo);
    }
}

static int capped_level(int level) {
    const int max = vb_kernels_max_level();
    return level > max ? max : level;
}

void vb_op_exp_level(int level, float *y, const float *x, int64_t n) {
    if (n <= 0) return;
    level = capped_level(level);
#ifdef VB_OPS_HAVE_SIMD
    if (level >= VB_KLEVEL_AVX512) {
        exp_avx512(y, x, n);
        return;
    }
    if (level >= VB_KLEVEL_AVX2) {
        exp_avx2(y, x, n);
        return;
    }
#endif
    exp_portable(y, x, n);
}

void vb_op_softmax_level(int level, float *x, int64_t n) {
    if (n <= 0) return;
    level = capped_level(level);
#ifdef VB_OPS_HAVE_SIMD
    if (level >= VB_KLEVEL_AVX512) {
        softmax_avx512(x, n);
        return;
    }
    if (level >= VB_KLEVEL_AVX2) {
        softmax_avx2(x, n);
        return;
    }
#endif
    softmax_portable(x, n);
}

float vb_op_softmax_num_level(int level, float *x, int64_t n) {
    if (n <= 0) return 0.0f;
    level = capped_level(level);
#ifdef VB_OPS_HAVE_SIMD
    if (level >= VB_KLEVEL_AVX512) return softmax_num_avx512(x, n);
    if (level >= VB_KLEVEL_AVX2) return softmax_num_avx2(x, n);
#endif
    return softmax_num_portable(x, n);
}

void vb_op_softmax_cols_level(int level, float *x, int64_t n_rows, int64_t n_cols, float *inv_sum) {
    if (n_rows <= 0 || n_cols <= 0) return;
    level = capped_level(level);
#ifdef VB_OPS_HAVE_SIMD
    if (level >= VB_KLEVEL_AVX512 && n_cols % 16 == 0) {
        softmax_cols_avx512(x, n_rows, n_cols, inv_sum);
        return;
    }
    if (level >= VB_KLEVEL_AVX2 && n_cols % 8 == 0) {
        softmax_cols_avx2(x, n_rows, n_cols, inv_sum);
        return;
    }
#endif
    softmax_cols_portable(x, n_rows, n_cols, inv_sum);
}

void vb_op_rmsnorm(const float *x, float *y, const float *w, int64_t n_rows, int64_t n, float eps) {
    if (n <= 0) return;
#ifdef VB_OPS_HAVE_SIMD
    const int level = vb_kernels_level();
    if (level >= VB_KLEVEL_AVX512) {
        rmsnorm_avx512(x, y, w, n_rows, n, eps);
        return;
    }
    if (level >= VB_KLEVEL_AVX2) {
        rmsnorm_avx2(x, y, w, n_rows, n, eps);
        return;
    }
#endif
    rmsnorm_portable(x, y, w, n_rows, n, eps);
}

static void act_mul(float *gate, const float *up, int64_t n, bool gelu) {
    if (n <= 0) return;
#ifdef VB_OPS_HAVE_SIMD
    const int level = vb_kernels_level();
    if (level >= VB_KLEVEL_AVX512) {
        act_mul_avx512(gate, up, n, gelu);
        return;
    }
    if (level >= VB_KLEVEL_AVX2) {
        act_mul_avx2(gate, up, n, gelu);
        return;
    }
#endif
    act_mul_portable(gate, up, n, gelu);
}

void vb_op_gelu_tanh(float *x, int64_t n) { act_mul(x, NULL, n, true); }
void vb_op_gelu_mul(float *gate, const float *up, int64_t n) { act_mul(gate, up, n, true); }
void vb_op_silu_mul(float *gate, const float *up, int64_t n) { act_mul(gate, up, n, false); }

void vb_op_exp(float *y, const float *x, int64_t n) {
    vb_op_exp_level(vb_kernels_level(), y, x, n);
}

void vb_op_softmax(float *x, int64_t n) { vb_op_softmax_level(vb_kernels_level(), x, n); }

void vb_op_add_bias(float *x, const float *bias, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) vb_op_add(x + r * n, bias, n);
}

void vb_op_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
