/* quantize_ggml_template.h - the quantizers llama.cpp's `llama-quantize` uses without an
 * importance matrix, written here from their published algorithms (ggml's reference
 * quantizers) so that vibee writes the blocks llama.cpp writes: Q4_1, Q5_0, Q5_1 (min/max or
 * signed-max scale per block of 32), IQ4_NL and IQ4_XS (non-linear levels, scale search over 15
 * candidates; IQ4_XS's 8 block scales on 6 bits), Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (per-sub-block
 * scale (and min) search, the sub-block scales quantized against a super-block scale, the values
 * re-rounded against the quantized scales).
 *
 * Included twice, as the kernels' template is: by quantize_ggml.c (the library's flags: plain
 * float in source order) and by quantize_ggml_fma.c (compiled as llama.cpp's native build
 * compiles ggml: FMA, multiply-adds fused, tuned for the build machine). Which products GCC
 * fuses into an FMA decides near ties of these searches, so the bytes of a llama.cpp build
 * depend on its flags; the FMA copy gives those of llama.cpp's default (-march=native) build
 * on the same machine. The includer defines QG_ENTRY, the name of the entry point
 * `int QG_ENTRY(uint32_t type, const float *src, void *dst, int64_t n)`. */
#include <math.h>
#include <string.h>

#include "../../../include/vibee.h"
#include "kernels_internal.h"
#include "quantize_ggml.h"

#define GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Round to nearest, ties to even (|v| < 2^22), as ggml's nearest_int does with a magic add. */
static inline int nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* ------------------------------------------------------------------ 32-element blocks */

/* The value of largest magnitude among n (the first such), into *max; returns its magnitude. */
static float signed_absmax(const float *x, int n, float *max) {
    float amax = 0;
    *max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), *max = x[i];
    return amax;
}

/* Q4_1 / Q5_1: a block of 32 values on levels 0..nmax from its minimum: d = (max - min) / nmax
 * into the block's f16 d and m (the minimum); returns 1 / d (0 for a constant block). */
static float block_scale_min(const float *x, int nmax, uint16_t *d_out, uint16_t *m_out, float *min_out) {
    float min = INFINITY, max = -INFINITY;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / nmax;
    *d_out = vb_f32_to_f16(d);
    *m_out = vb_f32_to_f16(min);
    *min_out = min;
    return d ? 1.0f / d : 0.0f;
}

/* 32 five-bit levels q (element j and 16 + j share byte j) into the low nibbles qs[16] and the
 * fifth bits qh (bit j: element j). */
static void pack_q5(const uint8_t q[32], uint8_t qs[16], uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[16 + j] & 0x0F) << 4));
        qh |= (uint32_t)((q[j] & 0x10u) >> 4) << j;
        qh |= (uint32_t)((q[16 + j] & 0x10u) >> 4) << (j + 16);
    }
    memcpy(qh_out, &qh, 4);
}

static void q4_1_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q4_1 *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min;
        const float id = block_scale_min(x, 15, &y[i].d, &y[i].m, &min);
        for (int j = 0; j < 16; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            const uint8_t q0 = (uint8_t)imin(15, (int8_t)(x0 + 0.5f));
            const uint8_t q1 = (uint8_t)imin(15, (int8_t)(x1 + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q5_0_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q5_0 *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float max;
        signed_absmax(x, 32, &max);
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = vb_f32_to_f16(d);
        uint8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)imin(31, (int8_t)(x[j] * id + 16.5f));
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

static void q5_1_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q5_1 *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min;
        const float id = block_scale_min(x, 31, &y[i].d, &y[i].m, &min);
        uint8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Index of the level of the sorted vb_kvalues_iq4nl nearest to v (ties: the upper one). */
static int iq4nl_index(float v) {
    const float v2 = v + v;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int j = idx + step;
        if (v2 >= (float)(vb_kvalues_iq4nl[j - 1] + vb_kvalues_iq4nl[j])) idx = j;
    }
    return idx;
}

/* The scale of one block of 32 on the IQ4_NL levels (weights x^2): from the signed largest value,
 * then 15 trial inverse scales (itry -7..7) keeping the best weighted least-squares fit; 0 for
 * an all-zero block. */
static float iq4_block_scale(const float *x) {
    const int8_t *v = vb_kvalues_iq4nl;
    float w[32], max;
    for (int j = 0; j < 32; j++) w[j] = x[j] * x[j];
    if (signed_absmax(x, 32, &max) < GROUP_MAX_EPS) return 0;
    float d = -max / v[0], id = 1 / d, sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        const float q = v[iq4nl_index(id * x[j])];
        sumqx += w[j] * q * x[j];
        sumq2 += w[j] * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -7; itry <= 7; itry++) {
        id = (itry + v[0]) / max;
        sumqx = sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const float q = v[iq4nl_index(id * x[j])];
            sumqx += w[j] * q * x[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* 32 values on the IQ4_NL levels against scale d (0: the level nearest 0) into 16 nibble bytes. */
static void iq4_pack(const float *x, float d, uint8_t *qs) {
    const float id = d ? 1 / d : 0;
    uint8_t L[32];
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)iq4nl_index(id * x[j]);
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[16 + j] << 4));
}

static void iq4_nl_rows(const float *x, void *dst, int64_t nb) {
    vb_block_iq4_nl *y = dst;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float d = iq4_block_scale(x);
        y[i].d = vb_f32_to_f16(d);
        iq4_pack(x, d, y[i].qs);
    }
}

/* IQ4_XS: the 8 block scales as IQ4_NL's, quantized to 6 bits (minus 32) against
 * d = -(signed largest scale) / 32; each block re-picked against its quantized scale. */
static void iq4_xs_rows(const float *x, void *dst, int64_t nb) {
    vb_block_iq4_xs *y = dst;
    for (int64_t i = 0; i < nb; i++, x += VB_QK_K) {
        float scales[8], max_scale;
        for (int ib = 0; ib < 8; ib++) scales[ib] = iq4_block_scale(x + 32 * ib);
        signed_absmax(scales, 8, &max_scale);
        const float d = -max_scale / 32, id = d ? 1 / d : 0.f;
        y[i].d = vb_f32_to_f16(d);
        y[i].scales_h = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int l = imax(-32, imin(31, nearest_int(id * scales[ib])));
            iq4_pack(x + 32 * ib, d * l, y[i].qs + 16 * ib);
            const int u = l + 32;
            if (ib % 2 == 0) y[i].scales_l[ib / 2] = (uint8_t)(u & 0xF);
            else y[i].scales_l[ib / 2] |= (uint8_t)((u & 0xF) << 4);
            y[i].scales_h |= (uint16_t)((u >> 4) << (2 * ib));
        }
    }
}

/* ------------------------------------------------------------------ K-quant helpers */

/* Signed scale for n values, levels -nmax..nmax-1 (stored + nmax in L): from the signed
 * largest value, refined (rmse_type 1: weights w = x^2 or qw) over 18 nearby inverse scales. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw) {
    float max;
    if (signed_absmax(x, n, &max) < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
        return 1 / iscale;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i]; /* rmse_type 1 */
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block scale: signed-max start, then up to 5 passes moving single values to the
 * level that improves the weighted (x^2) fit. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max;
    if (signed_absmax(x, n, &max) < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                const int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Scale and minimum for n values on levels 0..nmax (x ~ scale * L - the_min): min/max start,
 * then nstep + 1 trial inverse scales (rmin + rdelta * is + nmax) / (max - min), each with the
 * weighted least-squares scale and min, keeping the smallest weighted error (|e| if use_mad). */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              int use_mad) {
    float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* ------------------------------------------------------------------ K-quants */

static void q2_k_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q2_k *y = dst;
    for (int64_t i = 0; i < nb; i++, x += VB_QK_K) {
        uint8_t L[VB_QK_K], Laux[16];
        float weights[16], mins[16], scales[16], max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = vb_f32_to_f16(max_scale / 15.f);
        } else {
            memset(y[i].scales, 0, 16);
            y[i].d = vb_f32_to_f16(0.f);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++) y[i].scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = vb_f32_to_f16(max_min / 15.f);
        } else {
            y[i].dmin = vb_f32_to_f16(0.f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = vb_f16_to_f32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = vb_f16_to_f32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + ii] + dm) / d)));
        }
        for (int j = 0; j < VB_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

static void q3_k_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q3_k *y = dst;
    for (int64_t i = 0; i < nb; i++, x += VB_QK_K) {
        int8_t L[VB_QK_K];
        float scales[16], max_scale;
        for (int j = 0; j < 16; j++) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        signed_absmax(scales, 16, &max_scale);
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                l = (int8_t)(imax(-32, imin(31, l)) + 32);
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xF);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = vb_f32_to_f16(1 / iscale);
        } else {
            y[i].d = vb_f32_to_f16(0.f);
        }
        int8_t sc[16];
        vb_q3k_scales(y[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            const float d = vb_f16_to_f32(y[i].d) * sc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + ii] / d))) + 4);
        }
        memset(y[i].hmask, 0, 32);
        for (int j = 0; j < VB_QK_K; j++) /* high bit of element j: bit j / 32 of hmask[j % 32] */
            if (L[j] > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1 << (j / 32));
                L[j] = (int8_t)(L[j] - 4);
            }
        for (int j = 0; j < VB_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

/* Q4_K / Q5_K (nmax 15 / 31): per sub-block of 32 the scale and min search, both sets
 * quantized to 6 bits against d = max / 63, dmin = max_min / 63, then the values re-rounded. */
static void k_scales_mins(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
                          uint8_t scales_out[12], uint16_t *d_out, uint16_t *dmin_out) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]), lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = (uint8_t)imin(63, ls);
        lm = (uint8_t)imin(63, lm);
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = vb_f32_to_f16(max_scale / 63.f);
    *dmin_out = vb_f32_to_f16(max_min / 63.f);
    uint8_t sc[8], m[8];
    vb_q4k_unpack(scales_out, sc, m);
    for (int j = 0; j < 8; j++) {
        const float d = vb_f16_to_f32(*d_out) * sc[j];
        if (!d) continue;
        const float dm = vb_f16_to_f32(*dmin_out) * m[j];
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

static void q4_k_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q4_k *y = dst;
    for (int64_t i = 0; i < nb; i++, x += VB_QK_K) {
        uint8_t L[VB_QK_K];
        memset(y[i].scales, 0, 12);
        k_scales_mins(x, 15, -1.f, 0.1f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) y[i].qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + l + 32] << 4));
    }
}

static void q5_k_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q5_k *y = dst;
    for (int64_t i = 0; i < nb; i++, x += VB_QK_K) {
        uint8_t L[VB_QK_K];
        memset(y[i].scales, 0, 12);
        k_scales_mins(x, 31, -0.5f, 0.1f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        memset(y[i].qh, 0, 32);
        for (int p = 0; p < 4; p++) /* sub-blocks 2p, 2p + 1: fifth bits 2p, 2p + 1 of qh */
            for (int j = 0; j < 32; j++) {
                int l1 = L[64 * p + j], l2 = L[64 * p + j + 32];
                if (l1 > 15) l1 -= 16, y[i].qh[j] |= (uint8_t)(1 << (2 * p));
                if (l2 > 15) l2 -= 16, y[i].qh[j] |= (uint8_t)(2 << (2 * p));
                y[i].qs[32 * p + j] = (uint8_t)(l1 | (l2 << 4));
            }
    }
}

static void q6_k_rows(const float *x, void *dst, int64_t nb) {
    vb_block_q6_k *y = dst;
    for (int64_t i = 0; i < nb; i++, x += VB_QK_K) {
        int8_t L[VB_QK_K];
        float scales[16], max_scale;
        for (int ib = 0; ib < 16; ib++) scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, NULL);
        if (signed_absmax(scales, 16, &max_scale) < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = vb_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) y[i].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            const float d = vb_f16_to_f32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *q = L + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) | ((q[l + 96] >> 4) << 6));
            }
        }
    }
}

typedef void (*quant_fn)(const float *x, void *dst, int64_t nb);
static const quant_fn quant_table[VB_TYPE_COUNT] = {
    [VB_TYPE_Q4_1] = q4_1_rows, [VB_TYPE_Q5_0] = q5_0_rows, [VB_TYPE_Q5_1] = q5_1_rows,
    [VB_TYPE_IQ4_NL] = iq4_nl_rows, [VB_TYPE_IQ4_XS] = iq4_xs_rows, [VB_TYPE_Q2_K] = q2_k_rows, [VB_TYPE_Q3_K] = q3_k_rows,
    [VB_TYPE_Q4_K] = q4_k_rows, [VB_TYPE_Q5_K] = q5_k_rows, [VB_TYPE_Q6_K] = q6_k_rows,
};

int QG_ENTRY(uint32_t type, const float *src, void *dst, int64_t n) {
    const vb_type_traits *t = vb_type_get(type);
    if (!t || type >= VB_TYPE_COUNT || !quant_table[type]) return VB_ERR_UNSUPPORTED;
    if (n < 0 || n % t->block_elems != 0) return VB_ERR_ARG;
    quant_table[type](src, dst, n / t->block_elems);
    return VB_OK;
}
