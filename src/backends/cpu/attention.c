/* attention.c - attention over the paged KV cache (see attention.h).
 *
 * Work is cut into tiles: one KV head, a run of consecutive batch rows of one sequence, and the
 * query heads of those rows that read this KV head (GQA), at most ATTN_TILE_Q query vectors in
 * all. Every cached K and V row a tile needs is read (and, for an F16 cache, converted) once
 * for all of its queries. The SIMD paths (AVX2 / AVX-512) run a tile one of two ways:
 *  - tile path (>= ATTN_TILE_MIN_Q queries, e.g. the 16 rows x 2 heads of a multi-row
 *    forward): queries transposed to qt [head_dim][m_pad], so one register holds one element
 *    of 16 (8) queries; scores st [n_kv][m_pad] by broadcasting each K element against those
 *    registers (no horizontal sums); softmax down the columns (vb_op_softmax_cols_level);
 *  - row path (fewer queries, e.g. one-row decode): keys transposed to kt [head_dim][n_kv]
 *    and the same kernel with the roles swapped (scores [n_q][n_kv], vb_op_softmax_num_level);
 *  and both finish with the probability-weighted V sum (one register block of up to 6 queries
 *    x 64 columns over the V rows) scaled by 1/sum at the end.
 * Both compute each (query, key) score as one FMA chain over head_dim in order, the softmax
 * sums exactly (order-free), and the V sums as one FMA chain over the cached rows in order, so
 * a query gets the same bits at one instruction-set level whatever batch it is in (K-row
 * verify forwards equal one-row decode, as the matmul kernels guarantee too).
 * The portable path is the straightforward per-row one (dot products, softmax, axpy).
 * Causality: query row i sees cached rows [0, n_kv[i]). A tile computes scores up to the
 * largest n_kv of its rows (all those rows are written, they belong to this sequence) and sets
 * the scores a row must not see to -inf, so their probabilities are exactly 0.
 * Work split: tiles in a fixed order (KV head outermost, so consecutive tiles read the same
 * rows) are dealt out to the threads by estimated cost; when there are fewer tiles than
 * threads the tiles are made smaller (down to single query heads).
 * Instruction sets: portable, AVX2/FMA/F16C (use_avx2 and head_dim % 8 == 0), AVX-512F
 * (additionally vb_kernels_level() >= VB_KLEVEL_AVX512 and head_dim % 16 == 0). */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "../../types.h"
#include "kernels.h"
#include "ops.h"

#define ATTN_TILE_Q 32    /* most query vectors (row, head) in one tile */
#define ATTN_TILE_MIN_Q 8 /* fewer than this: the row path */
#define ATTN_PV_QUERIES 6 /* queries per V-sum register block (tile path) */

int64_t vb_attention_scratch_floats(int32_t max_kv, int32_t head_dim, int32_t group,
                                    int32_t block_size) {
    (void)group; /* tiles hold at most ATTN_TILE_Q query vectors whatever the group size */
    /* queries [ATTN_TILE_Q][head_dim] + one block of converted K or V head rows
       [block_size][head_dim] + scores [ATTN_TILE_Q][max_kv + 64] + transposed keys
       [head_dim][max_kv + 64], rounded up to 16 floats */
    const int64_t width = (int64_t)max_kv + 64;
    return ((int64_t)(ATTN_TILE_Q + block_size) * head_dim + (ATTN_TILE_Q + head_dim) * width +
            15) /
           16 * 16;
}

/* Scores of n_heads query heads against n_k key rows:
 * scores[h * stride + r] = q[h] . k[r] * scale.  q: [n_heads][hd]; k: n_k rows, k_stride apart. */
static void qk_portable(const float *q, int32_t n_heads, int32_t hd, const float *k,
                        int64_t k_stride, int32_t n_k, float scale, float *scores, int64_t stride) {
    for (int32_t r = 0; r < n_k; r++)
        for (int32_t h = 0; h < n_heads; h++)
            scores[h * stride + r] = vb_op_dot(q + (int64_t)h * hd, k + r * k_stride, hd) * scale;
}

/* out[h] += sum_r p[h * stride + r] * v[r] for n_heads output heads.  out: [n_heads][hd];
 * v: n_v rows, v_stride apart. */
static void pv_portable(float *out, int32_t n_heads, int32_t hd, const float *v, int64_t v_stride,
                        int32_t n_v, const float *p, int64_t stride) {
    for (int32_t r = 0; r < n_v; r++)
        for (int32_t h = 0; h < n_heads; h++)
            vb_op_axpy(out + (int64_t)h * hd, p[h * stride + r], v + r * v_stride, hd);
}

static void f16_to_f32_portable(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i++) dst[i] = vb_f16_to_f32(src[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VB_ATTN_HAVE_SIMD 1
/* The same three with AVX2 + FMA + F16C (head_dim a multiple of 8; the caller checks). */
#define VB_AVX2 __attribute__((target("avx2,fma,f16c")))
#define VB_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define VB_INLINE inline __attribute__((always_inline))

VB_AVX2 static void f16_to_f32_avx2(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
}

/* ---------------------------------------------------------------- AVX-512 kernels */

/* out[q] += sum_r p[q * p_qstride + r * p_rstride] * v[r] for NQ outputs and DV * 16 columns
 * starting at column d: the NQ x DV accumulators stay in registers over the n_v rows. */
VB_AVX512 static VB_INLINE void pv_block_avx512(int NQ, int DV, float *const *out, int32_t d,
                                                const float *v, int64_t v_stride, int32_t n_v,
                                                const float *p, int64_t p_qstride,
                                                int64_t p_rstride) {
    __m512 acc[ATTN_PV_QUERIES][4];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) acc[i][j] = _mm512_loadu_ps(out[i] + d + 16 * j);
    for (int32_t r = 0; r < n_v; r++) {
        const float *vr = v + r * v_stride + d;
        const float *pr = p + r * p_rstride;
        __m512 vv[4];
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) vv[j] = _mm512_loadu_ps(vr + 16 * j);
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) {
            const __m512 pi = _mm512_set1_ps(pr[i * p_qstride]);
#pragma GCC unroll 4
            for (int j = 0; j < DV; j++) acc[i][j] = _mm512_fmadd_ps(pi, vv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) _mm512_storeu_ps(out[i] + d + 16 * j, acc[i][j]);
}

#define PV_BLOCK_CASES(FN, DV)                                                                     \
    switch (nq) {                                                                                  \
    case 1: FN(1, DV, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride);      \
        break;                                                                                     \
    case 2: FN(2, DV, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride);      \
        break;                                                                                     \
    case 3: FN(3, DV, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride);      \
        break;                                                                                     \
    case 4: FN(4, DV, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride);      \
        break;                                                                                     \
    case 5: FN(5, DV, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride);      \
        break;                                                                                     \
    default:                                                                                       \
        FN(6, DV, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride);          \
        break;                                                                                     \
    }

/* out[i][:hd] += sum_r p[i * p_qstride + r * p_rstride] * v[r] for n_out outputs (any hd
 * multiple of 16): blocks of up to 6 outputs x 64 columns. */
VB_AVX512 static void pv_many_avx512(float *const *out, int32_t n_out, int32_t hd, const float *v,
                                     int64_t v_stride, int32_t n_v, const float *p,
                                     int64_t p_qstride, int64_t p_rstride) {
    for (int32_t i = 0; i < n_out; i += ATTN_PV_QUERIES) {
        const int32_t nq = n_out - i < ATTN_PV_QUERIES ? n_out - i : ATTN_PV_QUERIES;
        int32_t d = 0;
        for (; d + 64 <= hd; d += 64) PV_BLOCK_CASES(pv_block_avx512, 4)
        for (; d < hd; d += 16) PV_BLOCK_CASES(pv_block_avx512, 1)
    }
}

VB_AVX512 static void f16_to_f32_avx512(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
}

/* st[r * m_pad + m0 + 16c + i] = (sum over d in order of qt[d][m0 + 16c + i] * k[r][d],
 * one FMA chain from 0) * scale, for KB rows r of k and C vectors of 16 columns. The tile path
 * calls it with qt = queries transposed and k = key rows; the row path with qt = keys
 * transposed and k = query rows: both give each (query, key) score the same bits. */
VB_AVX512 static VB_INLINE void qk_block_avx512(int C, int KB, const float *qt, int64_t m_pad,
                                                int32_t m0, int32_t hd, const float *k,
                                                int64_t k_stride, float scale, float *st) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < KB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int32_t d = 0; d < hd; d++) {
        __m512 qv[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) qv[c] = _mm512_loadu_ps(qt + d * m_pad + m0 + 16 * c);
#pragma GCC unroll 8
        for (int r = 0; r < KB; r++) {
            const __m512 kv = _mm512_set1_ps(k[r * k_stride + d]);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(kv, qv[c], acc[r][c]);
        }
    }
    const __m512 vscale = _mm512_set1_ps(scale);
#pragma GCC unroll 8
    for (int r = 0; r < KB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            _mm512_storeu_ps(st + r * m_pad + m0 + 16 * c, _mm512_mul_ps(acc[r][c], vscale));
}

/* st [n_k][m_pad] = k [n_k][hd] x qt [hd][m_pad] * scale (m_pad % 16 == 0): 8 rows x 32
 * columns per block, or for fewer than 8 rows 2 rows x 64 columns (enough FMA chains). */
VB_AVX512 static void qk_tile_avx512(const float *qt, int64_t m_pad, int32_t hd, const float *k,
                                     int64_t k_stride, int32_t n_k, float scale, float *st) {
    int64_t m0 = 0;
    if (n_k < 8)
        for (; m0 + 64 <= m_pad; m0 += 64) {
            int32_t r = 0;
            for (; r + 2 <= n_k; r += 2)
                qk_block_avx512(4, 2, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                                st + r * m_pad);
            for (; r < n_k; r++)
                qk_block_avx512(4, 1, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                                st + r * m_pad);
        }
    for (; m0 < m_pad; m0 += 32) {
        const bool two = m_pad - m0 >= 32;
        int32_t r = 0;
        for (; r + 8 <= n_k; r += 8) {
            if (two)
                qk_block_avx512(2, 8, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                                st + r * m_pad);
            else
                qk_block_avx512(1, 8, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                                st + r * m_pad);
        }
        for (; r < n_k; r++) {
            if (two)
                qk_block_avx512(2, 1, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                                st + r * m_pad);
            else
                qk_block_avx512(1, 1, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                                st + r * m_pad);
        }
    }
}

/* kt[d][c] = k[c][d] for 16 rows c of k (rows >= n are zeros) and all d < hd (hd % 16 == 0):
 * 16 x 16 register transposes.  kt: rows kt_stride apart. */
VB_AVX512 static void transpose_rows_avx512(const float *k, int64_t k_stride, int32_t n, int32_t hd,
                                            float *kt, int64_t kt_stride) {
    for (int32_t d0 = 0; d0 < hd; d0 += 16) {
        __m512 r[16], a[16], b[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i < n ? _mm512_loadu_ps(k + i * k_stride + d0) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) { /* per 128-bit lane: [r2i[0] r2i+1[0] r2i[1] r2i+1[1]].. */
            a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) { /* b[4i + c], lane L: column 4L + c of rows 4i..4i+3 */
            const __m512d x0 = _mm512_castps_pd(a[4 * i]), x1 = _mm512_castps_pd(a[4 * i + 1]);
            const __m512d x2 = _mm512_castps_pd(a[4 * i + 2]), x3 = _mm512_castps_pd(a[4 * i + 3]);
            b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(x0, x2));
            b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x0, x2));
            b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(x1, x3));
            b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(x1, x3));
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) { /* 4 x 4 transpose of 128-bit lanes */
            const __m512 y0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44);
            const __m512 y1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
            const __m512 y2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44);
            const __m512 y3 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
            _mm512_storeu_ps(kt + (d0 + c) * kt_stride, _mm512_shuffle_f32x4(y0, y2, 0x88));
            _mm512_storeu_ps(kt + (d0 + 4 + c) * kt_stride, _mm512_shuffle_f32x4(y0, y2, 0xDD));
            _mm512_storeu_ps(kt + (d0 + 8 + c) * kt_stride, _mm512_shuffle_f32x4(y1, y3, 0x88));
            _mm512_storeu_ps(kt + (d0 + 12 + c) * kt_stride, _mm512_shuffle_f32x4(y1, y3, 0xDD));
        }
    }
}

/* The same three with AVX2: vectors of 8 columns; 6 rows x 16 columns per block, or for fewer
 * than 6 rows 2 rows x 32 columns. */
VB_AVX2 static VB_INLINE void qk_block_avx2(int C, int KB, const float *qt, int64_t m_pad,
                                            int32_t m0, int32_t hd, const float *k,
                                            int64_t k_stride, float scale, float *st) {
    __m256 acc[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < KB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int32_t d = 0; d < hd; d++) {
        __m256 qv[4];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) qv[c] = _mm256_loadu_ps(qt + d * m_pad + m0 + 8 * c);
#pragma GCC unroll 6
        for (int r = 0; r < KB; r++) {
            const __m256 kv = _mm256_set1_ps(k[r * k_stride + d]);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(kv, qv[c], acc[r][c]);
        }
    }
    const __m256 vscale = _mm256_set1_ps(scale);
#pragma GCC unroll 6
    for (int r = 0; r < KB; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            _mm256_storeu_ps(st + r * m_pad + m0 + 8 * c, _mm256_mul_ps(acc[r][c], vscale));
}

VB_AVX2 static void qk_tile_avx2(const float *qt, int64_t m_pad, int32_t hd, const float *k,
                                 int64_t k_stride, int32_t n_k, float scale, float *st) {
    int64_t m0 = 0;
    if (n_k < 6)
        for (; m0 + 32 <= m_pad; m0 += 32) {
            int32_t r = 0;
            for (; r + 2 <= n_k; r += 2)
                qk_block_avx2(4, 2, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                              st + r * m_pad);
            for (; r < n_k; r++)
                qk_block_avx2(4, 1, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                              st + r * m_pad);
        }
    for (; m0 < m_pad; m0 += 16) {
        const bool two = m_pad - m0 >= 16;
        int32_t r = 0;
        for (; r + 6 <= n_k; r += 6) {
            if (two)
                qk_block_avx2(2, 6, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                              st + r * m_pad);
            else
                qk_block_avx2(1, 6, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                              st + r * m_pad);
        }
        for (; r < n_k; r++) {
            if (two)
                qk_block_avx2(2, 1, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                              st + r * m_pad);
            else
                qk_block_avx2(1, 1, qt, m_pad, (int32_t)m0, hd, k + r * k_stride, k_stride, scale,
                              st + r * m_pad);
        }
    }
}

/* kt[d][c] = k[c][d] for 8 rows c (rows >= n are zeros), hd % 8 == 0: 8 x 8 transposes. */
VB_AVX2 static void transpose_rows_avx2(const float *k, int64_t k_stride, int32_t n, int32_t hd,
                                        float *kt, int64_t kt_stride) {
    for (int32_t d0 = 0; d0 < hd; d0 += 8) {
        __m256 r[8], a[8], b[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            r[i] = i < n ? _mm256_loadu_ps(k + i * k_stride + d0) : _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            a[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            a[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 2
        for (int i = 0; i < 2; i++) { /* b[4i + c], 128-bit lane L: column 4L + c, rows 4i.. */
            const __m256d x0 = _mm256_castps_pd(a[4 * i]), x1 = _mm256_castps_pd(a[4 * i + 1]);
            const __m256d x2 = _mm256_castps_pd(a[4 * i + 2]), x3 = _mm256_castps_pd(a[4 * i + 3]);
            b[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(x0, x2));
            b[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(x0, x2));
            b[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(x1, x3));
            b[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(x1, x3));
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            _mm256_storeu_ps(kt + (d0 + c) * kt_stride,
                             _mm256_permute2f128_ps(b[c], b[4 + c], 0x20));
            _mm256_storeu_ps(kt + (d0 + 4 + c) * kt_stride,
                             _mm256_permute2f128_ps(b[c], b[4 + c], 0x31));
        }
    }
}

/* pv_block_avx512 with AVX2: NQ outputs x DV * 8 columns (NQ <= 3 with DV 4). */
VB_AVX2 static VB_INLINE void pv_block_avx2(int NQ, int DV, float *const *out, int32_t d,
                                            const float *v, int64_t v_stride, int32_t n_v,
                                            const float *p, int64_t p_qstride, int64_t p_rstride) {
    __m256 acc[ATTN_PV_QUERIES][4];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) acc[i][j] = _mm256_loadu_ps(out[i] + d + 8 * j);
    for (int32_t r = 0; r < n_v; r++) {
        const float *vr = v + r * v_stride + d;
        const float *pr = p + r * p_rstride;
        __m256 vv[4];
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) vv[j] = _mm256_loadu_ps(vr + 8 * j);
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) {
            const __m256 pi = _mm256_set1_ps(pr[i * p_qstride]);
#pragma GCC unroll 4
            for (int j = 0; j < DV; j++) acc[i][j] = _mm256_fmadd_ps(pi, vv[j], acc[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) _mm256_storeu_ps(out[i] + d + 8 * j, acc[i][j]);
}

/* out[i][:hd] += sum_r p[i * p_qstride + r * p_rstride] * v[r] (hd multiple of 8): blocks of
 * 3 outputs x 32 columns, or 6 outputs x 8 columns for the rest of the columns. */
VB_AVX2 static void pv_many_avx2(float *const *out, int32_t n_out, int32_t hd, const float *v,
                                 int64_t v_stride, int32_t n_v, const float *p, int64_t p_qstride,
                                 int64_t p_rstride) {
    int32_t d = 0;
    for (; d + 32 <= hd; d += 32)
        for (int32_t i = 0; i < n_out; i += 3) {
            const int32_t nq = n_out - i < 3 ? n_out - i : 3;
            if (nq == 3)
                pv_block_avx2(3, 4, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride,
                              p_rstride);
            else if (nq == 2)
                pv_block_avx2(2, 4, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride,
                              p_rstride);
            else
                pv_block_avx2(1, 4, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride,
                              p_rstride);
        }
    for (; d < hd; d += 8)
        for (int32_t i = 0; i < n_out; i += ATTN_PV_QUERIES) {
            const int32_t nq = n_out - i < ATTN_PV_QUERIES ? n_out - i : ATTN_PV_QUERIES;
            PV_BLOCK_CASES(pv_block_avx2, 1)
        }
}
#endif

typedef struct attn_fns {
    int level; /* enum vb_kernel_level of these kernels */
    void (*f16_to_f32)(const uint16_t *src, float *dst, int32_t n);
    /* SIMD paths only (NULL for the portable path): */
    int32_t lanes; /* floats per vector */
    void (*qk_tile)(const float *qt, int64_t m_pad, int32_t hd, const float *k, int64_t k_stride,
                    int32_t n_k, float scale, float *st);
    void (*pv_many)(float *const *out, int32_t n_out, int32_t hd, const float *v, int64_t v_stride,
                    int32_t n_v, const float *p, int64_t p_qstride, int64_t p_rstride);
    void (*transpose_rows)(const float *k, int64_t k_stride, int32_t n, int32_t hd, float *kt,
                           int64_t kt_stride); /* `lanes` rows */
} attn_fns;

static attn_fns pick_fns(const vb_attn_args *a) {
    attn_fns f = {VB_KLEVEL_PORTABLE, f16_to_f32_portable, 1, NULL, NULL, NULL};
#ifdef VB_ATTN_HAVE_SIMD
    if (a->use_avx2 && a->head_dim % 8 == 0)
        f = (attn_fns){VB_KLEVEL_AVX2, f16_to_f32_avx2, 8,
                       qk_tile_avx2,   pv_many_avx2,    transpose_rows_avx2};
    if (a->use_avx2 && a->head_dim % 16 == 0 && vb_kernels_level() >= VB_KLEVEL_AVX512)
        f = (attn_fns){VB_KLEVEL_AVX512, f16_to_f32_avx512, 16,
                       qk_tile_avx512,   pv_many_avx512,    transpose_rows_avx512};
#else
    (void)a;
#endif
    return f;
}

/* Rows [0, n) of head `kv_head` of a cache block of kv_type elements, as float rows *stride
 * apart: a pointer into the block (F32, stride kv_dim) or converted into tmp (F16, stride
 * head_dim).  tmp: [block_size][head_dim]. */
static const float *kv_block_rows(const void *block, int32_t n, int32_t kv_dim, int32_t kv_head,
                                  int32_t head_dim, const vb_attn_args *a, const attn_fns *f,
                                  float *tmp, int64_t *stride) {
    const int64_t off = (int64_t)kv_head * head_dim;
    if (a->kv_type == VB_KV_F32) {
        *stride = kv_dim;
        return (const float *)block + off;
    }
    for (int32_t r = 0; r < n; r++)
        f->f16_to_f32((const uint16_t *)block + off + (int64_t)r * kv_dim,
                      tmp + (int64_t)r * head_dim, head_dim);
    *stride = head_dim;
    return tmp;
}

/* A unit of work: query heads [head0, head0 + n_heads) of batch rows [row0, row0 + n_rows)
 * (all of one sequence), which read KV head kv_head. */
typedef struct attn_tile {
    int32_t kv_head, row0, n_rows, head0, n_heads;
} attn_tile;

/* Scratch of one thread (floats, see vb_attention_scratch_floats): queries [ATTN_TILE_Q][hd],
 * tmp [block_size][hd], scores [ATTN_TILE_Q][width], kt [hd][width], width = max_kv + 64
 * (recovered from scratch_stride). */
typedef struct attn_scratch {
    float *q, *tmp, *scores, *kt;
    int64_t width;
} attn_scratch;

static attn_scratch split_scratch(const vb_attn_args *a, float *scratch) {
    const int64_t hd = a->head_dim, bs = vb_kvc_config(a->kv)->block_size;
    const int64_t head = (ATTN_TILE_Q + bs) * hd;
    attn_scratch s = {.q = scratch, .tmp = scratch + ATTN_TILE_Q * hd};
    s.width = (a->scratch_stride - head) / (ATTN_TILE_Q + hd);
    s.scores = scratch + head;
    s.kt = s.scores + ATTN_TILE_Q * s.width;
    return s;
}

/* Portable path: query heads [head0, head0 + n_heads) of row `row`, all reading KV head
 * kv_head: scores, softmax per head, weighted sum of the V rows. */
static void attend_heads_portable(const vb_attn_args *a, const attn_fns *f, int32_t row,
                                  int32_t kv_head, int32_t head0, int32_t n_heads,
                                  const attn_scratch *sc) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, kv_dim = cfg->kv_dim, hd = a->head_dim;
    const int32_t n_kv = a->n_kv[row];
    float *scores = sc->scores; /* [n_heads][n_kv] */
    const float *q = a->q + (int64_t)row * a->n_head * hd + (int64_t)head0 * hd; /* [n_heads][hd] */
    float *out = a->out + (int64_t)row * a->n_head * hd + (int64_t)head0 * hd;   /* [n_heads][hd] */

    int32_t n_blocks = 0;
    int64_t stride = 0;
    const int32_t *table = vb_kvc_block_table(a->kv, a->seq[row], &n_blocks);
    for (int32_t j = 0; j < n_kv; j += bs) {
        const int32_t n_in_block = n_kv - j < bs ? n_kv - j : bs;
        const float *k = kv_block_rows(vb_kvc_k(a->kv, a->layer, table[j / bs]), n_in_block, kv_dim,
                                       kv_head, hd, a, f, sc->tmp, &stride);
        qk_portable(q, n_heads, hd, k, stride, n_in_block, a->scale, scores + j, n_kv);
    }
    for (int32_t h = 0; h < n_heads; h++)
        vb_op_softmax_level(VB_KLEVEL_PORTABLE, scores + (int64_t)h * n_kv, n_kv);
    memset(out, 0, (size_t)n_heads * (size_t)hd * sizeof *out);
    for (int32_t j = 0; j < n_kv; j += bs) {
        const int32_t n_in_block = n_kv - j < bs ? n_kv - j : bs;
        const float *v = kv_block_rows(vb_kvc_v(a->kv, a->layer, table[j / bs]), n_in_block, kv_dim,
                                       kv_head, hd, a, f, sc->tmp, &stride);
        pv_portable(out, n_heads, hd, v, stride, n_in_block, scores + j, n_kv);
    }
}

/* The queries of a tile: output rows, visible lengths, largest and smallest visible length. */
typedef struct tile_queries {
    int32_t n_q, n_kv_max, n_kv_min;
    const float *q[ATTN_TILE_Q]; /* [hd] each */
    float *out[ATTN_TILE_Q];     /* [hd] each */
    int32_t n_kv[ATTN_TILE_Q];
    float inv_sum[ATTN_TILE_Q + 16];
} tile_queries;

static void tile_queries_init(const vb_attn_args *a, const attn_tile *t, tile_queries *tq) {
    tq->n_q = t->n_rows * t->n_heads;
    tq->n_kv_max = 0;
    tq->n_kv_min = INT32_MAX;
    for (int32_t m = 0; m < tq->n_q; m++) {
        const int32_t row = t->row0 + m / t->n_heads, head = t->head0 + m % t->n_heads;
        const int64_t off = ((int64_t)row * a->n_head + head) * a->head_dim;
        tq->q[m] = a->q + off;
        tq->out[m] = a->out + off;
        tq->n_kv[m] = a->n_kv[row];
        if (tq->n_kv[m] > tq->n_kv_max) tq->n_kv_max = tq->n_kv[m];
        if (tq->n_kv[m] < tq->n_kv_min) tq->n_kv_min = tq->n_kv[m];
    }
}

/* The probability-weighted V sums of a tile's queries from p (p[m * p_qstride + j *
 * p_rstride] for query m, cached row j), then the 1/sum scale: out[m] = inv_sum[m] *
 * sum_j p_j v_j, the sum one FMA chain per element in the order of j. */
static void weighted_v_sum(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                           const tile_queries *tq, const float *p, int64_t p_qstride,
                           int64_t p_rstride, float *tmp) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim;
    int32_t n_blocks = 0;
    int64_t stride = 0;
    const int32_t *table = vb_kvc_block_table(a->kv, a->seq[t->row0], &n_blocks);
    for (int32_t m = 0; m < tq->n_q; m++) memset(tq->out[m], 0, (size_t)hd * sizeof(float));
    for (int32_t j = 0; j < tq->n_kv_max; j += bs) {
        const int32_t n_in_block = tq->n_kv_max - j < bs ? tq->n_kv_max - j : bs;
        const float *v = kv_block_rows(vb_kvc_v(a->kv, a->layer, table[j / bs]), n_in_block,
                                       cfg->kv_dim, t->kv_head, hd, a, f, tmp, &stride);
        f->pv_many((float *const *)tq->out, tq->n_q, hd, v, stride, n_in_block, p + j * p_rstride,
                   p_qstride, p_rstride);
    }
    for (int32_t m = 0; m < tq->n_q; m++)
        for (int32_t d = 0; d < hd; d++) tq->out[m][d] *= tq->inv_sum[m];
}

/* SIMD tile path (>= ATTN_TILE_MIN_Q queries): key-major, queries transposed. */
static void attend_tile(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                        const attn_scratch *sc) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim;
    tile_queries tq;
    tile_queries_init(a, t, &tq);
    const int32_t m_pad = (tq.n_q + f->lanes - 1) / f->lanes * f->lanes;
    float *qt = sc->q;      /* [hd][m_pad] */
    float *st = sc->scores; /* [n_kv_max][m_pad] */
    for (int32_t d = 0; d < hd; d++)
        for (int32_t m = 0; m < m_pad; m++)
            qt[(int64_t)d * m_pad + m] = m < tq.n_q ? tq.q[m][d] : 0.0f;

    int32_t n_blocks = 0;
    int64_t stride = 0;
    const int32_t *table = vb_kvc_block_table(a->kv, a->seq[t->row0], &n_blocks);
    for (int32_t j = 0; j < tq.n_kv_max; j += bs) {
        const int32_t n_in_block = tq.n_kv_max - j < bs ? tq.n_kv_max - j : bs;
        const float *k = kv_block_rows(vb_kvc_k(a->kv, a->layer, table[j / bs]), n_in_block,
                                       cfg->kv_dim, t->kv_head, hd, a, f, sc->tmp, &stride);
        f->qk_tile(qt, m_pad, hd, k, stride, n_in_block, a->scale, st + (int64_t)j * m_pad);
    }
    /* causality: key rows [n_kv[m], n_kv_max) are not visible to query m */
    for (int32_t j = tq.n_kv_min; j < tq.n_kv_max; j++)
        for (int32_t m = 0; m < tq.n_q; m++)
            if (j >= tq.n_kv[m]) st[(int64_t)j * m_pad + m] = -INFINITY;
    vb_op_softmax_cols_level(f->level, st, tq.n_kv_max, m_pad, tq.inv_sum);
    weighted_v_sum(a, f, t, &tq, st, 1, m_pad, sc->tmp);
}

/* SIMD row path (few queries, e.g. one-row decode): keys transposed, query-major scores, the
 * same arithmetic per (query, key) as the tile path, so a query gets the same bits either way. */
static void attend_rows(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                        const attn_scratch *sc) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim, lanes = f->lanes;
    tile_queries tq;
    tile_queries_init(a, t, &tq);
    /* kt columns: whole blocks of `lanes` rows, plus room for one more when blocks do not
       start on a multiple of `lanes` */
    int64_t width = ((int64_t)tq.n_kv_max + (bs % lanes ? lanes : 0) + lanes - 1) / lanes * lanes;
    if (width % 256 == 0) width += lanes; /* rows of kt 4 KiB apart would share L1 sets */
    float *qbuf = sc->q;                  /* [n_q][hd] */
    float *scores = sc->scores;           /* [n_q][width] */
    float *kt = sc->kt;                   /* [hd][width] */
    for (int32_t m = 0; m < tq.n_q; m++)
        memcpy(qbuf + (int64_t)m * hd, tq.q[m], (size_t)hd * sizeof(float));

    int32_t n_blocks = 0;
    int64_t stride = 0;
    const int32_t *table = vb_kvc_block_table(a->kv, a->seq[t->row0], &n_blocks);
    for (int32_t j = 0; j < tq.n_kv_max; j += bs) {
        const int32_t n_in_block = tq.n_kv_max - j < bs ? tq.n_kv_max - j : bs;
        const float *k = kv_block_rows(vb_kvc_k(a->kv, a->layer, table[j / bs]), n_in_block,
                                       cfg->kv_dim, t->kv_head, hd, a, f, sc->tmp, &stride);
        for (int32_t r = 0; r < n_in_block; r += lanes)
            f->transpose_rows(k + r * stride, stride,
                              n_in_block - r < lanes ? n_in_block - r : lanes, hd, kt + j + r,
                              width);
    }
    for (int32_t d = 0; d < hd; d++) /* columns no key reaches */
        for (int64_t c = tq.n_kv_max; c < width; c++) kt[d * width + c] = 0.0f;
    f->qk_tile(kt, width, hd, qbuf, hd, tq.n_q, a->scale, scores);
    for (int32_t m = 0; m < tq.n_q; m++) {
        float *sm = scores + m * width;
        for (int32_t j = tq.n_kv[m]; j < tq.n_kv_max; j++) sm[j] = -INFINITY;
        tq.inv_sum[m] = vb_op_softmax_num_level(f->level, sm, tq.n_kv_max);
    }
    weighted_v_sum(a, f, t, &tq, scores, width, 1, sc->tmp);
}

static void run_tile(const vb_attn_args *a, const attn_fns *f, const attn_tile *t, float *scratch) {
    const attn_scratch sc = split_scratch(a, scratch);
    if (!f->qk_tile) {
        for (int32_t r = 0; r < t->n_rows; r++)
            attend_heads_portable(a, f, t->row0 + r, t->kv_head, t->head0, t->n_heads, &sc);
    } else if (t->n_rows * t->n_heads >= ATTN_TILE_MIN_Q) {
        attend_tile(a, f, t, &sc);
    } else {
        attend_rows(a, f, t, &sc);
    }
}

/* Tiles of at most max_q query vectors, in a fixed order, one at a time: *t starts zeroed
 * (n_rows 0) and each call moves it to the next tile; false after the last one. */
static bool next_tile(const vb_attn_args *a, int32_t max_q, attn_tile *t) {
    const int32_t group = a->n_head / a->n_head_kv;
    const int32_t heads = group < max_q ? group : max_q; /* query heads per row of a tile */
    const int32_t max_rows = max_q / heads;
    int32_t kv_head = t->kv_head, h0 = t->head0 - t->kv_head * group, row = t->row0 + t->n_rows;
    if (t->n_rows == 0) { /* the first tile */
        kv_head = 0;
        h0 = 0;
        row = 0;
    }
    if (row >= a->n_rows) { /* next head chunk, next KV head */
        row = 0;
        h0 += heads;
        if (h0 >= group) {
            h0 = 0;
            kv_head++;
        }
    }
    if (kv_head >= a->n_head_kv || a->n_rows <= 0) return false;
    int32_t end = row + 1;
    while (end < a->n_rows && end - row < max_rows && a->seq[end] == a->seq[row]) end++;
    t->kv_head = kv_head;
    t->row0 = row;
    t->n_rows = end - row;
    t->head0 = kv_head * group + h0;
    t->n_heads = group - h0 < heads ? group - h0 : heads;
    return true;
}

/* Estimated cost of a tile: query vectors x visible rows (+ a fixed part). */
static int64_t tile_cost(const vb_attn_args *a, const attn_tile *t) {
    int32_t n_kv_max = 0;
    for (int32_t r = 0; r < t->n_rows; r++)
        if (a->n_kv[t->row0 + r] > n_kv_max) n_kv_max = a->n_kv[t->row0 + r];
    return (int64_t)t->n_rows * t->n_heads * (n_kv_max + 16);
}

typedef struct attn_task {
    const vb_attn_args *args;
    int32_t max_q;      /* query vectors per tile */
    int64_t total_cost; /* sum of tile_cost over all tiles */
} attn_task;

static void attention_task(void *arg, int ith, int nth) {
    const attn_task *task = arg;
    const vb_attn_args *a = task->args;
    float *scratch = a->scratch + (int64_t)ith * a->scratch_stride;
    const attn_fns f = pick_fns(a);
    /* thread ith runs the tiles whose cost midpoint falls in its share of the total */
    const int64_t lo = task->total_cost * ith / nth, hi = task->total_cost * (ith + 1) / nth;
    attn_tile t = {0};
    int64_t done = 0;
    while (next_tile(a, task->max_q, &t)) {
        const int64_t cost = tile_cost(a, &t);
        const int64_t mid = done + cost / 2;
        done += cost;
        if (mid >= lo && mid < hi) run_tile(a, &f, &t, scratch);
        if (done >= hi) break; /* the later tiles start past this share */
    }
}

void vb_attention(vb_threadpool *tp, const vb_attn_args *args) {
    const int nth = tp ? vb_threadpool_size(tp) : 1;
    attn_task task = {.args = args, .max_q = ATTN_TILE_Q};
    for (;;) { /* smaller tiles until every thread has one (or tiles are single heads) */
        attn_tile t = {0};
        int64_t n_tiles = 0;
        task.total_cost = 0;
        while (next_tile(args, task.max_q, &t)) {
            n_tiles++;
            task.total_cost += tile_cost(args, &t);
        }
        if (n_tiles >= nth || task.max_q == 1) break;
        task.max_q /= 2;
    }
    vb_threadpool_run(tp, attention_task, &task);
}
