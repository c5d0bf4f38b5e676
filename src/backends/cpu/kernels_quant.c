/* kernels_quant.c - scalar per-type row conversion: dequantization of every supported weight
 * type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K .. Q6_K, IQ4_XS; GGML block
 * layouts from types.h; one function per type in a table), the
 * reference quantizers of Q8_0 and Q4_0 (bit-exact with ggml's reference ones; the other
 * block types through quantize_ggml.c), embedding row lookup and the naive reference
 * matrix product vb_matmul_ref that every optimized path is tested against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "../../../include/vibee.h"
#include "kernels_internal.h"
#include "quantize_ggml.h"

/* ---------------------------------------------------------------- dequantization */

_Static_assert(sizeof(vb_block_q4_1) == 20 && sizeof(vb_block_q5_0) == 22 && sizeof(vb_block_q5_1) == 24 &&
                   sizeof(vb_block_q2_k) == 84 && sizeof(vb_block_q3_k) == 110 &&
                   sizeof(vb_block_q5_k) == 176 && sizeof(vb_block_iq4_nl) == 18 &&
                   sizeof(vb_block_iq4_xs) == 136,
               "block layouts of types.h");

static void dequant_q8_0(const void *xv, float *y, int64_t nb) {
    const vb_block_q8_0 *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        for (int i = 0; i < VB_QK8_0; i++) y[b * VB_QK8_0 + i] = d * (float)x[b].qs[i];
    }
}

/* Q4_0: byte i holds element i in its low nibble and element i + 16 in its high nibble. */
static void dequant_q4_0(const void *xv, float *y, int64_t nb) {
    const vb_block_q4_0 *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        float *yb = y + b * VB_QK4_0;
        for (int i = 0; i < VB_QK4_0 / 2; i++) {
            yb[i] = d * (float)((x[b].qs[i] & 0x0F) - 8);
            yb[i + 16] = d * (float)((x[b].qs[i] >> 4) - 8);
        }
    }
}

/* Q4_K: 8 sub-blocks of 32; value = d * scale_j * q - dmin * min_j. Each 32 bytes of qs hold
 * sub-block 2k in the low nibbles and sub-block 2k + 1 in the high nibbles. */
static void dequant_q4_k(const void *xv, float *y, int64_t nb) {
    const vb_block_q4_k *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d), dmin = vb_f16_to_f32(x[b].dmin);
        float *yb = y + b * VB_QK_K;
        for (int k = 0; k < 4; k++) {
            const uint8_t *q = x[b].qs + 32 * k;
            uint8_t sc0, m0, sc1, m1;
            vb_q4k_scale_min(2 * k, x[b].scales, &sc0, &m0);
            vb_q4k_scale_min(2 * k + 1, x[b].scales, &sc1, &m1);
            float d0 = d * sc0, dm0 = dmin * m0, d1 = d * sc1, dm1 = dmin * m1;
            for (int i = 0; i < 32; i++) {
                yb[64 * k + i] = d0 * (float)(q[i] & 0x0F) - dm0;
                yb[64 * k + 32 + i] = d1 * (float)(q[i] >> 4) - dm1;
            }
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; q = 4 low bits (ql) | 2 high bits (qh) << 4,
 * value = d * scale * (q - 32). Per half of 128: ql[0..63], qh[0..31]; element 32 g + l
 * (g = 0..3) takes the low/high nibble of ql[l] / ql[l + 32] and bits 2g..2g+1 of qh[l]. */
static void dequant_q6_k(const void *xv, float *y, int64_t nb) {
    const vb_block_q6_k *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
            const int8_t *sc = x[b].scales + 8 * h;
            float *yh = y + b * VB_QK_K + 128 * h;
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                int q0 = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
                int q1 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                int q2 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                int q3 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                yh[l] = d * sc[s + 0] * (float)(q0 - 32);
                yh[l + 32] = d * sc[s + 2] * (float)(q1 - 32);
                yh[l + 64] = d * sc[s + 4] * (float)(q2 - 32);
                yh[l + 96] = d * sc[s + 6] * (float)(q3 - 32);
            }
        }
    }
}

/* Q4_1: value d * q + m, nibbles as Q4_0. */
static void dequant_q4_1(const void *xv, float *y, int64_t nb) {
    const vb_block_q4_1 *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d), m = vb_f16_to_f32(x[b].m);
        float *yb = y + b * 32;
        for (int i = 0; i < 16; i++) {
            yb[i] = d * (float)(x[b].qs[i] & 0x0F) + m;
            yb[i + 16] = d * (float)(x[b].qs[i] >> 4) + m;
        }
    }
}

/* Q5_0 / Q5_1: the fifth bit of element i is bit i of the little-endian 32-bit qh. */
static void dequant_q5_0(const void *xv, float *y, int64_t nb) {
    const vb_block_q5_0 *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        uint32_t qh;
        memcpy(&qh, x[b].qh, 4);
        float *yb = y + b * 32;
        for (int i = 0; i < 16; i++) {
            int q0 = (x[b].qs[i] & 0x0F) | (int)(((qh >> i) & 1) << 4);
            int q1 = (x[b].qs[i] >> 4) | (int)(((qh >> (i + 16)) & 1) << 4);
            yb[i] = d * (float)(q0 - 16);
            yb[i + 16] = d * (float)(q1 - 16);
        }
    }
}

static void dequant_q5_1(const void *xv, float *y, int64_t nb) {
    const vb_block_q5_1 *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d), m = vb_f16_to_f32(x[b].m);
        uint32_t qh;
        memcpy(&qh, x[b].qh, 4);
        float *yb = y + b * 32;
        for (int i = 0; i < 16; i++) {
            int q0 = (x[b].qs[i] & 0x0F) | (int)(((qh >> i) & 1) << 4);
            int q1 = (x[b].qs[i] >> 4) | (int)(((qh >> (i + 16)) & 1) << 4);
            yb[i] = d * (float)q0 + m;
            yb[i + 16] = d * (float)q1 + m;
        }
    }
}

static void dequant_iq4_nl(const void *xv, float *y, int64_t nb) {
    const vb_block_iq4_nl *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        float *yb = y + b * 32;
        for (int i = 0; i < 16; i++) {
            yb[i] = d * (float)vb_kvalues_iq4nl[x[b].qs[i] & 0x0F];
            yb[i + 16] = d * (float)vb_kvalues_iq4nl[x[b].qs[i] >> 4];
        }
    }
}

/* Q2_K: 32-element group k = 4 h + j (h = half of 128, j = 0..3) takes bits 2j..2j+1 of the
 * 32 bytes qs[32 h ..]; its two 16-element halves use scale bytes 2k and 2k + 1. */
static void dequant_q2_k(const void *xv, float *y, int64_t nb) {
    const vb_block_q2_k *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d), dmin = vb_f16_to_f32(x[b].dmin);
        float *yb = y + b * VB_QK_K;
        for (int k = 0; k < 8; k++) {
            const uint8_t *q = x[b].qs + 32 * (k / 4);
            int shift = 2 * (k % 4);
            for (int i = 0; i < 32; i++) {
                uint8_t sc = x[b].scales[2 * k + i / 16];
                yb[32 * k + i] = d * (float)(sc & 0xF) * (float)((q[i] >> shift) & 3) - dmin * (float)(sc >> 4);
            }
        }
    }
}

/* Q3_K: group k = 4 h + j as Q2_K for the low bits; the high bit is bit k of hmask[i]. */
static void dequant_q3_k(const void *xv, float *y, int64_t nb) {
    const vb_block_q3_k *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        int8_t sc[16];
        vb_q3k_scales(x[b].scales, sc);
        float *yb = y + b * VB_QK_K;
        for (int k = 0; k < 8; k++) {
            const uint8_t *q = x[b].qs + 32 * (k / 4);
            int shift = 2 * (k % 4);
            for (int i = 0; i < 32; i++) {
                int v = ((q[i] >> shift) & 3) - ((x[b].hmask[i] >> k) & 1 ? 0 : 4);
                yb[32 * k + i] = d * (float)sc[2 * k + i / 16] * (float)v;
            }
        }
    }
}

/* Q5_K: Q4_K plus bit j of qh[i] as the fifth bit of element i of sub-block j. */
static void dequant_q5_k(const void *xv, float *y, int64_t nb) {
    const vb_block_q5_k *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d), dmin = vb_f16_to_f32(x[b].dmin);
        float *yb = y + b * VB_QK_K;
        uint8_t sc[8], m[8];
        vb_q4k_unpack(x[b].scales, sc, m);
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = x[b].qs + 32 * (j / 2);
            float dj = d * sc[j], mj = dmin * m[j];
            for (int i = 0; i < 32; i++) {
                int v = (j % 2 ? q[i] >> 4 : q[i] & 0xF) | (((x[b].qh[i] >> j) & 1) << 4);
                yb[32 * j + i] = dj * (float)v - mj;
            }
        }
    }
}

static void dequant_iq4_xs(const void *xv, float *y, int64_t nb) {
    const vb_block_iq4_xs *x = xv;
    for (int64_t b = 0; b < nb; b++) {
        float d = vb_f16_to_f32(x[b].d);
        for (int ib = 0; ib < 8; ib++) {
            float dl = d * (float)vb_iq4xs_scale(&x[b], ib);
            const uint8_t *q = x[b].qs + 16 * ib;
            float *yb = y + b * VB_QK_K + 32 * ib;
            for (int i = 0; i < 16; i++) {
                yb[i] = dl * (float)vb_kvalues_iq4nl[q[i] & 0x0F];
                yb[i + 16] = dl * (float)vb_kvalues_iq4nl[q[i] >> 4];
            }
        }
    }
}

/* Block dequantizers by type: (blocks, out, number of blocks). */
typedef void (*dequant_fn)(const void *x, float *y, int64_t nb);
static const dequant_fn dequant_table[VB_TYPE_COUNT] = {
    [VB_TYPE_Q8_0] = dequant_q8_0,   [VB_TYPE_Q4_0] = dequant_q4_0,
    [VB_TYPE_Q4_1] = dequant_q4_1,   [VB_TYPE_Q5_0] = dequant_q5_0,
    [VB_TYPE_Q5_1] = dequant_q5_1,   [VB_TYPE_IQ4_NL] = dequant_iq4_nl,
    [VB_TYPE_Q2_K] = dequant_q2_k,   [VB_TYPE_Q3_K] = dequant_q3_k,
    [VB_TYPE_Q4_K] = dequant_q4_k,   [VB_TYPE_Q5_K] = dequant_q5_k,
    [VB_TYPE_Q6_K] = dequant_q6_k,   [VB_TYPE_IQ4_XS] = dequant_iq4_xs,
};

void vb_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case VB_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case VB_TYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = vb_f16_to_f32(s[i]);
        return;
    }
    case VB_TYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = vb_bf16_to_f32(s[i]);
        return;
    }
    default: break;
    }
    const vb_type_traits *t = vb_type_get(type);
    if (t && type < VB_TYPE_COUNT && dequant_table[type]) {
        dequant_table[type](src, dst, n / t->block_elems);
        return;
    }
    memset(dst, 0, (size_t)n * sizeof(float)); /* unsupported: zeros */
}

/* ---------------------------------------------------------------- quantization */

/* ggml's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d). */
static void quant_q8_0(const float *x, vb_block_q8_0 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * VB_QK8_0;
        float amax = 0.0f;
        for (int i = 0; i < VB_QK8_0; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = vb_f32_to_f16(d);
        for (int i = 0; i < VB_QK8_0; i++) y[b].qs[i] = (int8_t)roundf(xb[i] * id);
    }
}

/* ggml's quantize_row_q4_0_ref: d = (signed value of largest magnitude) / -8,
 * q = min(15, (int8)(x / d + 8.5)). */
static void quant_q4_0(const float *x, vb_block_q4_0 *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * VB_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < VB_QK4_0; i++) {
            if (amax < fabsf(xb[i])) {
                amax = fabsf(xb[i]);
                max = xb[i];
            }
        }
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = vb_f32_to_f16(d);
        for (int i = 0; i < VB_QK4_0 / 2; i++) {
            int8_t q0 = (int8_t)(xb[i] * id + 8.5f), q1 = (int8_t)(xb[i + 16] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[b].qs[i] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}


/* F32 -> F16, rounding to nearest even like vb_f32_to_f16 (the F16C instruction rounds the
 * same way, so the paths agree bit for bit on every non-NaN input). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,f16c"))) static int64_t f32_to_f16_f16c(const float *src, uint16_t *dst,
                                                                    int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}
#endif

static void f32_to_f16_row(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (vb_kernels_level() >= VB_KLEVEL_AVX2) i = f32_to_f16_f16c(src, dst, n);
#endif
    for (; i < n; i++) dst[i] = vb_f32_to_f16(src[i]);
}

int vb_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const vb_type_traits *t = vb_type_get(type);
    if (!t || !src || !dst || n < 0 || n % t->block_elems != 0) return VB_ERR_ARG;
    switch (type) {
    case VB_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return VB_OK;
    case VB_TYPE_F16: f32_to_f16_row(src, dst, n); return VB_OK;
    case VB_TYPE_BF16: {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = vb_f32_to_bf16(src[i]);
        return VB_OK;
    }
    case VB_TYPE_Q8_0: quant_q8_0(src, dst, n / VB_QK8_0); return VB_OK;
    case VB_TYPE_Q4_0: quant_q4_0(src, dst, n / VB_QK4_0); return VB_OK;
    default: return vb_quantize_ggml_row(type, src, dst, n); /* the others llama.cpp writes */
    }
}

/* ---------------------------------------------------------------- lookup and reference */

void vb_get_row(uint32_t type, const void *W, int64_t n, int64_t r, float *dst) {
    int64_t row_bytes = vb_type_row_bytes(type, n);
    if (row_bytes < 0) {
        memset(dst, 0, (size_t)n * sizeof(float));
        return;
    }
    vb_dequantize_row(type, (const uint8_t *)W + r * row_bytes, dst, n);
}

void vb_matmul_ref(uint32_t type, const void *W, int64_t n_in, int64_t n_out, const float *X,
                   int64_t n_rows, float *Y) {
    int64_t row_bytes = vb_type_row_bytes(type, n_in);
    float *w = malloc((size_t)(n_in > 0 ? n_in : 1) * sizeof(float)); /* [n_in] one W row */
    if (!w || row_bytes < 0) {
        free(w);
        memset(Y, 0, (size_t)(n_rows * n_out) * sizeof(float));
        return;
    }
    for (int64_t o = 0; o < n_out; o++) {
        vb_dequantize_row(type, (const uint8_t *)W + o * row_bytes, w, n_in);
        for (int64_t r = 0; r < n_rows; r++) {
            const float *x = X + r * n_in;
            float sum = 0.0f;
            for (int64_t i = 0; i < n_in; i++) sum += w[i] * x[i];
            Y[r * n_out + o] = sum;
        }
    }
    free(w);
}
