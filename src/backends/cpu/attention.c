/* attention.c - attention over the paged KV cache (see attention.h), flash-decoding style.
 *
 * Work is cut into tiles: a run of consecutive batch rows of one sequence and the query heads
 * of those rows that read one KV head (GQA), at most ATTN_TILE_Q query vectors in all; a tile
 * with fewer than ATTN_TILE_MIN_Q queries per KV head (one-row decode, small verify) takes
 * several KV heads (n_kvh), so that a thread streams whole stretches of each cached row instead
 * of 256 of every 2048 bytes per pass (measured 3-4x slower on the bench machine). Every K and
 * V row a tile needs is read once for all of its queries, straight from the cache blocks.
 *
 * A tile's cached rows are processed in chunks of ATTN_CHUNK rows (whole blocks). For each
 * chunk and query: scores, their max m_c, the softmax numerators exp(s - m_c) with their
 * (exact, order-free) sum l_c, and the V sum acc_c (one FMA chain per element over the rows
 * in order, from 0). The chunks are then folded in chunk order (log-sum-exp merge: out = out *
 * exp(M - M') + acc_c * exp(m_c - M'), the same for the sum) and scaled by 1 / sum once.
 * The SIMD paths (AVX2 / AVX-512) compute a chunk's scores one of two ways:
 *  - tile path (>= ATTN_TILE_MIN_Q queries per KV head, e.g. the 16 rows x 2 heads of a
 *    prefill or verify tile): queries transposed to qt [head_dim][m_pad], so one register holds
 *    one element of 16 (8) queries; scores st [chunk][m_pad] by broadcasting each K element
 *    against those registers (no horizontal sums); softmax down the columns;
 *  - row path (fewer queries): keys transposed ATTN_KT_COLS at a time (F16 converted on the way)
 *    into a small kt [head_dim][64] in L1 and the same kernel with the roles swapped, V rows
 *    read (and converted) straight from the cache, the next rows prefetched;
 *  both compute each (query, key) score as one FMA chain over head_dim in order, so a query gets
 *  the same bits at one instruction-set level whatever batch it is in (K-row verify / WeDLM
 *  forwards equal one-row decode, as the matmul kernels guarantee too).
 * The portable path does the same per chunk with plain dot products and axpys.
 * Causality: query row i sees cached rows [lo[i], n_kv[i]), lo = 0 or, in a sliding-window
 * layer, n_kv[i] - window. A chunk is computed up to the largest n_kv of its tile; rows a query
 * must not see are -inf (probability exactly 0), and a chunk a query does not reach at all is
 * left out of its fold (its fold starts at the first chunk it sees).
 * Work split: tiles in a fixed order (KV heads outermost). When there are few tiles for the
 * threads (ATTN_SPLIT_UNITS per thread), each tile is split into ranges of chunks: phase 1 runs
 * the (tile, chunk range) units, writing each chunk's (m_c, l_c, acc_c) into slots in the
 * threads' scratch; phase 2 folds each split tile's chunks in chunk order, exactly as an
 * unsplit tile folds them on the fly, so the result does not depend on the split, the thread
 * count or the batch. Units and folds are dealt to the threads by estimated cost.
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
#define ATTN_CHUNK 256    /* cached rows per chunk (whole blocks; see chunk_rows) */
#define ATTN_KT_COLS 64   /* keys transposed at a time on the row path */
#define ATTN_SPLIT_UNITS 4 /* split tiles over chunks until there are this many units a thread */
#define ATTN_SLOTS_PER_CHUNK 32 /* partial results of split tiles: per thread, per chunk of max_kv */

/* Cached rows per chunk: the largest whole number of blocks up to ATTN_CHUNK (at least one). */
static int32_t chunk_rows(int32_t block_size) {
    return block_size >= ATTN_CHUNK ? block_size : ATTN_CHUNK / block_size * block_size;
}

/* Floats of the tmp scratch: one converted block of one KV head. */
static int64_t tmp_floats(int32_t head_dim, int32_t block_size) {
    return (int64_t)block_size * head_dim;
}

/* Floats of one thread's working scratch (see split_scratch), rounded up to 16. */
static int64_t work_floats(int32_t head_dim, int32_t block_size) {
    const int64_t hd = head_dim, ch = chunk_rows(block_size);
    return ((3 * ATTN_TILE_Q + ATTN_KT_COLS) * hd + tmp_floats(head_dim, block_size) +
            ATTN_TILE_Q * (ch + 64) + 15) /
           16 * 16;
}

int64_t vb_attention_scratch_floats(int32_t max_kv, int32_t head_dim, int32_t group,
                                    int32_t block_size) {
    (void)group; /* tiles hold at most ATTN_TILE_Q query vectors whatever the group size */
    /* working scratch + ATTN_SLOTS_PER_CHUNK partial results [head_dim + 2] per chunk of
       max_kv rows (for tiles split across threads) */
    const int64_t ch = chunk_rows(block_size), n_chunks = ((int64_t)max_kv + ch - 1) / ch;
    return work_floats(head_dim, block_size) +
           ATTN_SLOTS_PER_CHUNK * (n_chunks > 0 ? n_chunks : 1) * ((int64_t)head_dim + 2);
}

/* scores[m * stride + r] = q[m] . k[r] * scale for n_q queries and n_k key rows (k_stride
 * apart). */
static void qk_portable(const float *const *q, int32_t n_q, int32_t hd, const float *k,
                        int64_t k_stride, int32_t n_k, float scale, float *scores, int64_t stride) {
    for (int32_t r = 0; r < n_k; r++)
        for (int32_t m = 0; m < n_q; m++)
            scores[m * stride + r] = vb_op_dot(q[m], k + r * k_stride, hd) * scale;
}

/* out[i][:hd] += sum_r p[i * p_qstride + r * p_rstride] * v[r] for n_out outputs, v: n_v
 * rows v_stride apart (the portable pv_many). */
static void pv_portable(float *const *out, int32_t n_out, int32_t hd, const void *v,
                        int64_t v_stride, int32_t n_v, const float *p, int64_t p_qstride,
                        int64_t p_rstride) {
    for (int32_t r = 0; r < n_v; r++)
        for (int32_t i = 0; i < n_out; i++)
            vb_op_axpy(out[i], p[i * p_qstride + r * p_rstride], (const float *)v + r * v_stride,
                       hd);
}

static void f16_to_f32_portable(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i++) dst[i] = vb_f16_to_f32(src[i]);
}

/* n values (a multiple of 32) of Q8_0 blocks: d * q, one product each (the SIMD versions give
   the same bits). */
static void q8_to_f32_portable(const void *src, float *dst, int32_t n) {
    vb_dequantize_row(VB_TYPE_Q8_0, src, dst, n);
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

VB_AVX2 static void q8_to_f32_avx2(const void *src, float *dst, int32_t n) {
    const vb_block_q8_0 *b = src;
    for (int32_t i = 0; i < n; i += VB_QK8_0, b++) {
        const __m256 d = _mm256_set1_ps(vb_f16_to_f32(b->d));
        for (int j = 0; j < VB_QK8_0; j += 8) {
            const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + j)));
            _mm256_storeu_ps(dst + i + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}

/* ---------------------------------------------------------------- AVX-512 kernels */

/* out[q] += sum_r p[q * p_qstride + r * p_rstride] * v[r] for NQ outputs and DV * 16 columns
 * starting at column d: the NQ x DV accumulators stay in registers over the n_v rows. */
VB_AVX512 static VB_INLINE void pv_block_avx512(int NQ, int DV, int F16, float *const *out,
                                                int32_t d, const void *v, int64_t v_stride,
                                                int32_t n_v,
                                                const float *p, int64_t p_qstride,
                                                int64_t p_rstride) {
    __m512 acc[ATTN_PV_QUERIES][4];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) acc[i][j] = _mm512_loadu_ps(out[i] + d + 16 * j);
    for (int32_t r = 0; r < n_v; r++) {
        const int64_t vo = r * v_stride + d;
        const float *pr = p + r * p_rstride;
        __m512 vv[4];
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++)
            vv[j] = F16 ? _mm512_cvtph_ps(_mm256_loadu_si256(
                              (const __m256i *)((const uint16_t *)v + vo + 16 * j)))
                        : _mm512_loadu_ps((const float *)v + vo + 16 * j);
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

#define PV_BLOCK_CASES(FN, DV, F16) \
    switch (nq) { \
    case 1: FN(1, DV, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride); \
        break; \
    case 2: FN(2, DV, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride); \
        break; \
    case 3: FN(3, DV, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride); \
        break; \
    case 4: FN(4, DV, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride); \
        break; \
    case 5: FN(5, DV, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride); \
        break; \
    default: \
        FN(6, DV, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride, p_rstride); \
        break; \
    }

/* out[i][:hd] += sum_r p[i * p_qstride + r * p_rstride] * v[r] for n_out outputs (any hd
 * multiple of 16): blocks of up to 6 outputs x 64 columns. */
VB_AVX512 static VB_INLINE void pv_impl_avx512(float *const *out, int32_t n_out, int32_t hd,
                                               const void *v, int64_t v_stride, int32_t n_v,
                                               const float *p, int64_t p_qstride,
                                               int64_t p_rstride, int F16) {
    for (int32_t i = 0; i < n_out; i += ATTN_PV_QUERIES) {
        const int32_t nq = n_out - i < ATTN_PV_QUERIES ? n_out - i : ATTN_PV_QUERIES;
        int32_t d = 0;
        for (; d + 64 <= hd; d += 64) PV_BLOCK_CASES(pv_block_avx512, 4, F16)
        for (; d < hd; d += 16) PV_BLOCK_CASES(pv_block_avx512, 1, F16)
    }
}

VB_AVX512 static void pv_many_avx512(float *const *out, int32_t n_out, int32_t hd, const void *v,
                                     int64_t v_stride, int32_t n_v, const float *p,
                                     int64_t p_qstride, int64_t p_rstride) {
    pv_impl_avx512(out, n_out, hd, v, v_stride, n_v, p, p_qstride, p_rstride, 0);
}

/* The same reading F16 V rows. */
VB_AVX512 static void pv_many_f16_avx512(float *const *out, int32_t n_out, int32_t hd,
                                         const void *v, int64_t v_stride, int32_t n_v,
                                         const float *p, int64_t p_qstride, int64_t p_rstride) {
    pv_impl_avx512(out, n_out, hd, v, v_stride, n_v, p, p_qstride, p_rstride, 1);
}

VB_AVX512 static void q8_to_f32_avx512(const void *src, float *dst, int32_t n) {
    const vb_block_q8_0 *b = src;
    for (int32_t i = 0; i < n; i += VB_QK8_0, b++) {
        const __m512 d = _mm512_set1_ps(vb_f16_to_f32(b->d));
        for (int j = 0; j < VB_QK8_0; j += 16) {
            const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + j)));
            _mm512_storeu_ps(dst + i + j, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q)));
        }
    }
}

VB_AVX512 static void f16_to_f32_avx512(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
}

/* st[r * st_stride + m0 + 16c + i] = (sum over d in order of qt[d * m_pad + m0 + 16c + i] *
 * k[r][d], one FMA chain from 0) * scale, for KB rows r of k and C vectors of 16 columns. The tile path
 * calls it with qt = queries transposed and k = key rows; the row path with qt = keys
 * transposed and k = query rows: both give each (query, key) score the same bits. */
VB_AVX512 static VB_INLINE void qk_block_avx512(int C, int KB, const float *qt, int64_t m_pad,
                                                int32_t m0, int32_t hd, const float *k,
                                                int64_t k_stride, float scale, float *st,
                                                int64_t st_stride) {
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
            _mm512_storeu_ps(st + r * st_stride + m0 + 16 * c, _mm512_mul_ps(acc[r][c], vscale));
}

/* st [n_k][n_cols] (rows st_stride apart) = k [n_k][hd] x qt [hd][n_cols] (rows qt_stride
 * apart) * scale (n_cols % 16 == 0): 8 rows x 32 columns per block, or for fewer than 8 rows 2 rows x 64 columns (enough FMA chains). */
VB_AVX512 static void qk_tile_avx512(const float *qt, int64_t qt_stride, int64_t n_cols, int32_t hd,
                                     const float *k, int64_t k_stride, int32_t n_k, float scale,
                                     float *st, int64_t st_stride) {
    int64_t m0 = 0;
    if (n_k < 8)
        for (; m0 + 64 <= n_cols; m0 += 64) {
            int32_t r = 0;
            for (; r + 2 <= n_k; r += 2)
                qk_block_avx512(4, 2, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                                scale, st + r * st_stride, st_stride);
            for (; r < n_k; r++)
                qk_block_avx512(4, 1, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                                scale, st + r * st_stride, st_stride);
        }
    for (; m0 < n_cols; m0 += 32) {
        const bool two = n_cols - m0 >= 32;
        int32_t r = 0;
        for (; r + 8 <= n_k; r += 8) {
            if (two)
                qk_block_avx512(2, 8, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                                scale, st + r * st_stride, st_stride);
            else
                qk_block_avx512(1, 8, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                                scale, st + r * st_stride, st_stride);
        }
        for (; r < n_k; r++) {
            if (two)
                qk_block_avx512(2, 1, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                                scale, st + r * st_stride, st_stride);
            else
                qk_block_avx512(1, 1, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                                scale, st + r * st_stride, st_stride);
        }
    }
}

/* kt[d][c] = k[c][d] for 16 rows c of k (rows >= n are zeros) and all d < hd (hd % 16 == 0):
 * 16 x 16 register transposes.  kt: rows kt_stride apart. */
VB_AVX512 static VB_INLINE void transpose_impl_avx512(const void *k, int64_t k_stride, int32_t n,
                                                      int32_t hd, float *kt, int64_t kt_stride,
                                                      int F16) {
    for (int32_t d0 = 0; d0 < hd; d0 += 16) {
        __m512 r[16], a[16], b[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i >= n ? _mm512_setzero_ps()
                   : F16  ? _mm512_cvtph_ps(_mm256_loadu_si256(
                               (const __m256i *)((const uint16_t *)k + i * k_stride + d0)))
                          : _mm512_loadu_ps((const float *)k + i * k_stride + d0);
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

VB_AVX512 static void transpose_rows_avx512(const void *k, int64_t k_stride, int32_t n, int32_t hd,
                                            float *kt, int64_t kt_stride) {
    transpose_impl_avx512(k, k_stride, n, hd, kt, kt_stride, 0);
}

/* The same reading F16 rows (converted exactly as f16_to_f32_avx512 converts them). */
VB_AVX512 static void transpose_rows_f16_avx512(const void *k, int64_t k_stride, int32_t n,
                                                int32_t hd, float *kt, int64_t kt_stride) {
    transpose_impl_avx512(k, k_stride, n, hd, kt, kt_stride, 1);
}

/* The same three with AVX2: vectors of 8 columns; 6 rows x 16 columns per block, or for fewer
 * than 6 rows 2 rows x 32 columns. */
VB_AVX2 static VB_INLINE void qk_block_avx2(int C, int KB, const float *qt, int64_t m_pad,
                                            int32_t m0, int32_t hd, const float *k,
                                            int64_t k_stride, float scale, float *st,
                                            int64_t st_stride) {
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
            _mm256_storeu_ps(st + r * st_stride + m0 + 8 * c, _mm256_mul_ps(acc[r][c], vscale));
}

VB_AVX2 static void qk_tile_avx2(const float *qt, int64_t qt_stride, int64_t n_cols, int32_t hd,
                                 const float *k, int64_t k_stride, int32_t n_k, float scale,
                                 float *st, int64_t st_stride) {
    int64_t m0 = 0;
    if (n_k < 6)
        for (; m0 + 32 <= n_cols; m0 += 32) {
            int32_t r = 0;
            for (; r + 2 <= n_k; r += 2)
                qk_block_avx2(4, 2, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                              scale, st + r * st_stride, st_stride);
            for (; r < n_k; r++)
                qk_block_avx2(4, 1, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                              scale, st + r * st_stride, st_stride);
        }
    for (; m0 < n_cols; m0 += 16) {
        const bool two = n_cols - m0 >= 16;
        int32_t r = 0;
        for (; r + 6 <= n_k; r += 6) {
            if (two)
                qk_block_avx2(2, 6, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                              scale, st + r * st_stride, st_stride);
            else
                qk_block_avx2(1, 6, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                              scale, st + r * st_stride, st_stride);
        }
        for (; r < n_k; r++) {
            if (two)
                qk_block_avx2(2, 1, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                              scale, st + r * st_stride, st_stride);
            else
                qk_block_avx2(1, 1, qt, qt_stride, (int32_t)m0, hd, k + r * k_stride, k_stride,
                              scale, st + r * st_stride, st_stride);
        }
    }
}

/* kt[d][c] = k[c][d] for 8 rows c (rows >= n are zeros), hd % 8 == 0: 8 x 8 transposes. */
VB_AVX2 static VB_INLINE void transpose_impl_avx2(const void *k, int64_t k_stride, int32_t n,
                                                  int32_t hd, float *kt, int64_t kt_stride,
                                                  int F16) {
    for (int32_t d0 = 0; d0 < hd; d0 += 8) {
        __m256 r[8], a[8], b[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            r[i] = i >= n ? _mm256_setzero_ps()
                   : F16  ? _mm256_cvtph_ps(_mm_loadu_si128(
                               (const __m128i *)((const uint16_t *)k + i * k_stride + d0)))
                          : _mm256_loadu_ps((const float *)k + i * k_stride + d0);
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

VB_AVX2 static void transpose_rows_avx2(const void *k, int64_t k_stride, int32_t n, int32_t hd,
                                        float *kt, int64_t kt_stride) {
    transpose_impl_avx2(k, k_stride, n, hd, kt, kt_stride, 0);
}

VB_AVX2 static void transpose_rows_f16_avx2(const void *k, int64_t k_stride, int32_t n, int32_t hd,
                                            float *kt, int64_t kt_stride) {
    transpose_impl_avx2(k, k_stride, n, hd, kt, kt_stride, 1);
}

/* pv_block_avx512 with AVX2: NQ outputs x DV * 8 columns (NQ <= 3 with DV 4). */
VB_AVX2 static VB_INLINE void pv_block_avx2(int NQ, int DV, int F16, float *const *out, int32_t d,
                                            const void *v, int64_t v_stride, int32_t n_v,
                                            const float *p, int64_t p_qstride, int64_t p_rstride) {
    __m256 acc[ATTN_PV_QUERIES][4];
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++) acc[i][j] = _mm256_loadu_ps(out[i] + d + 8 * j);
    for (int32_t r = 0; r < n_v; r++) {
        const int64_t vo = r * v_stride + d;
        const float *pr = p + r * p_rstride;
        __m256 vv[4];
#pragma GCC unroll 4
        for (int j = 0; j < DV; j++)
            vv[j] = F16 ? _mm256_cvtph_ps(_mm_loadu_si128(
                              (const __m128i *)((const uint16_t *)v + vo + 8 * j)))
                        : _mm256_loadu_ps((const float *)v + vo + 8 * j);
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
VB_AVX2 static VB_INLINE void pv_impl_avx2(float *const *out, int32_t n_out, int32_t hd,
                                           const void *v, int64_t v_stride, int32_t n_v,
                                           const float *p, int64_t p_qstride, int64_t p_rstride,
                                           int F16) {
    int32_t d = 0;
    for (; d + 32 <= hd; d += 32)
        for (int32_t i = 0; i < n_out; i += 3) {
            const int32_t nq = n_out - i < 3 ? n_out - i : 3;
            if (nq == 3)
                pv_block_avx2(3, 4, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride,
                              p_rstride);
            else if (nq == 2)
                pv_block_avx2(2, 4, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride,
                              p_rstride);
            else
                pv_block_avx2(1, 4, F16, out + i, d, v, v_stride, n_v, p + i * p_qstride, p_qstride,
                              p_rstride);
        }
    for (; d < hd; d += 8)
        for (int32_t i = 0; i < n_out; i += ATTN_PV_QUERIES) {
            const int32_t nq = n_out - i < ATTN_PV_QUERIES ? n_out - i : ATTN_PV_QUERIES;
            PV_BLOCK_CASES(pv_block_avx2, 1, F16)
        }
}

VB_AVX2 static void pv_many_avx2(float *const *out, int32_t n_out, int32_t hd, const void *v,
                                 int64_t v_stride, int32_t n_v, const float *p, int64_t p_qstride,
                                 int64_t p_rstride) {
    pv_impl_avx2(out, n_out, hd, v, v_stride, n_v, p, p_qstride, p_rstride, 0);
}

VB_AVX2 static void pv_many_f16_avx2(float *const *out, int32_t n_out, int32_t hd, const void *v,
                                     int64_t v_stride, int32_t n_v, const float *p,
                                     int64_t p_qstride, int64_t p_rstride) {
    pv_impl_avx2(out, n_out, hd, v, v_stride, n_v, p, p_qstride, p_rstride, 1);
}
#endif

typedef void (*pv_many_fn)(float *const *out, int32_t n_out, int32_t hd, const void *v,
                           int64_t v_stride, int32_t n_v, const float *p, int64_t p_qstride,
                           int64_t p_rstride);
typedef void (*transpose_fn)(const void *k, int64_t k_stride, int32_t n, int32_t hd, float *kt,
                             int64_t kt_stride); /* `lanes` rows */

typedef struct attn_fns {
    int level; /* enum vb_kernel_level of these kernels */
    void (*f16_to_f32)(const uint16_t *src, float *dst, int32_t n);
    void (*q8_to_f32)(const void *src, float *dst, int32_t n); /* n a multiple of 32 */
    pv_many_fn pv_many; /* F32 V rows */
    /* SIMD paths only (NULL for the portable path): */
    int32_t lanes; /* floats per vector */
    void (*qk_tile)(const float *qt, int64_t qt_stride, int64_t n_cols, int32_t hd, const float *k,
                    int64_t k_stride, int32_t n_k, float scale, float *st, int64_t st_stride);
    transpose_fn transpose_rows, transpose_rows_f16; /* from F32 / F16 rows */
    pv_many_fn pv_many_f16;                          /* F16 V rows */
} attn_fns;

static attn_fns pick_fns(const vb_attn_args *a) {
    attn_fns f = {VB_KLEVEL_PORTABLE, f16_to_f32_portable, q8_to_f32_portable, pv_portable, 1, NULL, NULL,
                  NULL, NULL};
#ifdef VB_ATTN_HAVE_SIMD
    if (a->use_avx2 && a->head_dim % 8 == 0)
        f = (attn_fns){VB_KLEVEL_AVX2,      f16_to_f32_avx2,         q8_to_f32_avx2, pv_many_avx2, 8,
                       qk_tile_avx2,        transpose_rows_avx2,     transpose_rows_f16_avx2,
                       pv_many_f16_avx2};
    if (a->use_avx2 && a->head_dim % 16 == 0 && vb_kernels_level() >= VB_KLEVEL_AVX512)
        f = (attn_fns){VB_KLEVEL_AVX512,    f16_to_f32_avx512,       q8_to_f32_avx512, pv_many_avx512, 16,
                       qk_tile_avx512,      transpose_rows_avx512,   transpose_rows_f16_avx512,
                       pv_many_f16_avx512};
#else
    (void)a;
#endif
    return f;
}

/* Rows [0, n) of head `kv_head` of a cache block of kv_type elements, as float rows *stride
 * apart: a pointer into the block (F32, stride kv_dim) or converted into tmp (F16; Q8_0
 * dequantized, its blocks of 32 never spanning two heads; stride head_dim).
 * tmp: [block_size][head_dim]. */
static const float *kv_block_rows(const void *block, int32_t n, int32_t kv_dim, int32_t kv_head,
                                  int32_t head_dim, const vb_attn_args *a, const attn_fns *f,
                                  float *tmp, int64_t *stride) {
    if (a->kv_type == VB_KV_F32) {
        *stride = kv_dim;
        return (const float *)block + (int64_t)kv_head * head_dim;
    }
    const size_t row_bytes = vb_kvc_row_bytes(a->kv_type, kv_dim);
    const char *src = (const char *)block + vb_kvc_row_bytes(a->kv_type, (int64_t)kv_head * head_dim);
    for (int32_t r = 0; r < n; r++, src += row_bytes) {
        if (a->kv_type == VB_KV_F16)
            f->f16_to_f32((const uint16_t *)src, tmp + (int64_t)r * head_dim, head_dim);
        else
            f->q8_to_f32(src, tmp + (int64_t)r * head_dim, head_dim);
    }
    *stride = head_dim;
    return tmp;
}

/* A unit of work: query heads [head0, head0 + n_heads) of batch rows [row0, row0 + n_rows)
 * (all of one sequence), which read KV head kv_head. */
typedef struct attn_tile {
    int32_t kv_head, row0, n_rows, head0, n_heads;
    int32_t n_kvh; /* KV heads [kv_head, kv_head + n_kvh), each with its query heads
                      [head0 + g * group, + n_heads); > 1 only for row-path tiles (whole groups) */
} attn_tile;

/* Working scratch of one thread (floats, see work_floats): q [ATTN_TILE_Q][hd] (queries, or
 * on the tile path their transpose [hd][m_pad]), tmp [block_size][hd] (a converted F16
 * block of one KV head), scores [ATTN_TILE_Q][chunk + 64] (tile path: [chunk][m_pad]), kt [hd][ATTN_KT_COLS]
 * (row path: transposed keys), acc [ATTN_TILE_Q][hd] (a chunk's V sums); then the thread's
 * share of the partial results of split tiles. */
typedef struct attn_scratch {
    float *q, *tmp, *scores, *kt, *acc;
} attn_scratch;

static attn_scratch split_scratch(const vb_attn_args *a, float *scratch) {
    const int64_t hd = a->head_dim, bs = vb_kvc_config(a->kv)->block_size;
    const int64_t ch = chunk_rows((int32_t)bs);
    attn_scratch s;
    s.q = scratch;
    s.tmp = s.q + ATTN_TILE_Q * hd;
    s.scores = s.tmp + tmp_floats((int32_t)hd, (int32_t)bs);
    s.kt = s.scores + ATTN_TILE_Q * (ch + 64);
    s.acc = s.kt + ATTN_KT_COLS * hd;
    return s;
}

/* The queries of a tile: their vectors and outputs, visible lengths, largest and smallest
 * visible length, the sequence's block table and the chunking of its rows. */
typedef struct tile_queries {
    int32_t n_q, n_kv_max, n_kv_min;
    int32_t n_kvh, qpk, kv_head; /* KV heads, queries per KV head (query m reads KV head
                                    kv_head + m / qpk), first KV head */
    int32_t chunk, n_chunks; /* rows per chunk, chunks covering [0, n_kv_max) */
    const int32_t *table;
    const float *q[ATTN_TILE_Q]; /* [hd] each */
    float *out[ATTN_TILE_Q];     /* [hd] each */
    int32_t n_kv[ATTN_TILE_Q];
    int32_t lo[ATTN_TILE_Q]; /* first visible cached row (0 unless a sliding window) */
} tile_queries;

/* Whether query m sees any row of the chunk starting at cached row j0. */
static bool sees_chunk(const tile_queries *tq, int32_t m, int32_t j0) {
    return tq->n_kv[m] > j0 && tq->lo[m] < j0 + tq->chunk;
}

static void tile_queries_init(const vb_attn_args *a, const attn_tile *t, tile_queries *tq) {
    const int32_t group = a->n_head / a->n_head_kv;
    tq->n_kvh = t->n_kvh;
    tq->qpk = t->n_rows * t->n_heads;
    tq->kv_head = t->kv_head;
    tq->n_q = tq->qpk * t->n_kvh;
    tq->n_kv_max = 0;
    tq->n_kv_min = INT32_MAX;
    for (int32_t m = 0; m < tq->n_q; m++) {
        const int32_t g = m / tq->qpk, mm = m % tq->qpk;
        const int32_t row = t->row0 + mm / t->n_heads, head = t->head0 + g * group + mm % t->n_heads;
        const int64_t off = ((int64_t)row * a->n_head + head) * a->head_dim;
        tq->q[m] = a->q + off;
        tq->out[m] = a->out + off;
        tq->n_kv[m] = a->n_kv[row];
        tq->lo[m] = a->window > 0 && a->n_kv[row] > a->window ? a->n_kv[row] - a->window : 0;
        if (tq->n_kv[m] > tq->n_kv_max) tq->n_kv_max = tq->n_kv[m];
        if (tq->n_kv[m] < tq->n_kv_min) tq->n_kv_min = tq->n_kv[m];
    }
    tq->chunk = chunk_rows(vb_kvc_config(a->kv)->block_size);
    tq->n_chunks = (tq->n_kv_max + tq->chunk - 1) / tq->chunk;
    int32_t n_blocks = 0;
    tq->table = vb_kvc_block_table(a->kv, a->seq[t->row0], &n_blocks);
}

/* Lay out the tile's queries in q scratch for the path that runs it: transposed [hd][m_pad]
 * (tile path) or copied [n_q][hd] (row path); the portable path reads them in place. */
static void tile_queries_stage(const vb_attn_args *a, const attn_fns *f, const tile_queries *tq,
                               const attn_scratch *sc) {
    const int32_t hd = a->head_dim;
    if (!f->qk_tile) return;
    if (tq->qpk >= ATTN_TILE_MIN_Q) {
        const int32_t m_pad = (tq->n_q + f->lanes - 1) / f->lanes * f->lanes;
        for (int32_t d = 0; d < hd; d++)
            for (int32_t m = 0; m < m_pad; m++)
                sc->q[(int64_t)d * m_pad + m] = m < tq->n_q ? tq->q[m][d] : 0.0f;
    } else {
        for (int32_t m = 0; m < tq->n_q; m++)
            memcpy(sc->q + (int64_t)m * hd, tq->q[m], (size_t)hd * sizeof(float));
        /* columns of kt past the keys of a partial group are computed but never used: keep
           them finite */
        memset(sc->kt, 0, (size_t)ATTN_KT_COLS * (size_t)hd * sizeof(float));
    }
}

/* Query-major softmax numerators of one chunk: s [n_q][stride], chunk rows [0, n_c) starting
 * at cached row j0. For each query m that sees the chunk (sees_chunk): rows it must not see
 * become -inf, s = exp(s - max) in place, mx[m] = max, l[m] = sum. For a query that does not
 * see it, p = 0 (its chunk result is not used). */
static void softmax_rows(const attn_fns *f, const tile_queries *tq, float *s, int64_t stride,
                         int32_t j0, int32_t n_c, float *mx, float *l) {
    for (int32_t m = 0; m < tq->n_q; m++) {
        float *sm = s + m * stride;
        const int32_t vis = tq->n_kv[m] - j0;
        if (!sees_chunk(tq, m, j0)) {
            memset(sm, 0, (size_t)n_c * sizeof *sm);
            mx[m] = 0.0f;
            l[m] = 1.0f;
            continue;
        }
        for (int32_t j = 0; j < tq->lo[m] - j0; j++) sm[j] = -INFINITY; /* before the window */
        for (int32_t j = vis; j < n_c; j++) sm[j] = -INFINITY;
        float max = sm[0];
        for (int32_t j = 1; j < n_c; j++)
            if (sm[j] > max) max = sm[j];
        mx[m] = max;
        l[m] = (float)(1.0 / (double)vb_op_softmax_num_level(f->level, sm, n_c));
    }
}

/* Portable scores of a chunk: sc->scores [n_q][chunk + 64]. */
static void chunk_scores_portable(const vb_attn_args *a, const attn_fns *f,
                                  const tile_queries *tq, int32_t kv_head, int32_t j0, int32_t n_c,
                                  const attn_scratch *sc, int64_t stride) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim;
    int64_t k_stride = 0;
    for (int32_t j = j0; j < j0 + n_c; j += bs) {
        const int32_t nb = j0 + n_c - j < bs ? j0 + n_c - j : bs;
        for (int32_t g = 0; g < tq->n_kvh; g++) {
            const float *k = kv_block_rows(vb_kvc_k(a->kv, a->layer, tq->table[j / bs]), nb,
                                           cfg->kv_dim, kv_head + g, hd, a, f, sc->tmp, &k_stride);
            qk_portable(tq->q + g * tq->qpk, tq->qpk, hd, k, k_stride, nb, a->scale,
                        sc->scores + g * tq->qpk * stride + (j - j0), stride);
        }
    }
}

/* Prefetch the K (or V) elements of the tile's KV heads of cached rows [r0, r1) (within one
 * block): a row-path tile reads a window of rows one KV head at a time, a pattern the hardware
 * prefetchers do not follow (measured 2-3x slower than streaming); this streams the rows in
 * ahead, contiguous when the tile has every KV head. */
static void prefetch_rows(const vb_attn_args *a, const tile_queries *tq, bool v, int32_t r0,
                          int32_t r1) {
#if defined(__GNUC__) || defined(__clang__)
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    if (r0 >= r1) return;
    const int64_t row_bytes = (int64_t)vb_kvc_row_bytes(a->kv_type, cfg->kv_dim);
    const int64_t off = (int64_t)vb_kvc_row_bytes(a->kv_type, (int64_t)tq->kv_head * a->head_dim);
    const int64_t len = (int64_t)vb_kvc_row_bytes(a->kv_type, (int64_t)tq->n_kvh * a->head_dim);
    const int32_t blk = tq->table[r0 / cfg->block_size];
    const char *base =
        (const char *)(v ? vb_kvc_v(a->kv, a->layer, blk) : vb_kvc_k(a->kv, a->layer, blk)) + off;
    for (int32_t r = r0; r < r1; r++)
        for (int64_t l = 0; l < len; l += 64)
            __builtin_prefetch(base + (r % cfg->block_size) * row_bytes + l);
#else
    (void)a, (void)tq, (void)v, (void)r0, (void)r1;
#endif
}

/* Prefetch block-aligned rows [r, r + block) clipped to the tile's rows. */
static void prefetch_block(const vb_attn_args *a, const tile_queries *tq, bool v, int32_t r) {
    const int32_t bs = vb_kvc_config(a->kv)->block_size;
    if (r < tq->n_kv_max) prefetch_rows(a, tq, v, r, tq->n_kv_max - r < bs ? tq->n_kv_max : r + bs);
}

/* Row-path scores of a chunk (few queries per KV head): in windows of up to ATTN_KT_COLS
 * rows, for each KV head of the tile, its keys transposed straight from the cache (F16
 * converted on the way) into kt (L1, not the whole context), and its queries as the rows of
 * qk_tile, so that each (query, key) score has the bits of the tile path.  sc->scores
 * [n_q][stride]. */
static void chunk_scores_rows(const vb_attn_args *a, const attn_fns *f, const tile_queries *tq,
                              int32_t kv_head, int32_t j0, int32_t n_c, const attn_scratch *sc,
                              int64_t stride) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim, lanes = f->lanes;
    const int32_t win = bs <= ATTN_KT_COLS ? ATTN_KT_COLS / bs * bs : bs; /* whole blocks */
    /* F32 / F16 keys are transposed straight from the cache; Q8_0 ones from a dequantized copy
       of the block's rows of that head (sc->tmp, consumed before the next block) */
    const bool f16 = a->kv_type == VB_KV_F16, q8 = a->kv_type == VB_KV_Q8_0;
    const transpose_fn transpose = f16 ? f->transpose_rows_f16 : f->transpose_rows;
    const int64_t es = f16 ? 2 : 4;
    for (int32_t w0 = j0; w0 < j0 + n_c; w0 += win) {
        const int32_t w1 = j0 + n_c - w0 < win ? j0 + n_c : w0 + win;
        for (int32_t g = 0; g < tq->n_kvh; g++) {
            const float *qg = sc->q + (int64_t)g * tq->qpk * hd;
            float *sg = sc->scores + g * tq->qpk * stride;
            int32_t col = 0, base = w0 - j0; /* kt columns filled; chunk row of column 0 */
            for (int32_t j = w0; j < w1; j += bs) {
                const int32_t nb = w1 - j < bs ? w1 - j : bs;
                if (g == 0) prefetch_block(a, tq, false, j + win); /* the next window */
                const void *kblock = vb_kvc_k(a->kv, a->layer, tq->table[j / bs]);
                int64_t k_stride = cfg->kv_dim;
                const char *k = q8 ? (const char *)kv_block_rows(kblock, nb, cfg->kv_dim, kv_head + g, hd, a, f,
                                                                 sc->tmp, &k_stride)
                                   : (const char *)kblock + (int64_t)(kv_head + g) * hd * es;
                for (int32_t r = 0; r < nb; r += lanes) {
                    if (col + lanes > ATTN_KT_COLS) {
                        f->qk_tile(sc->kt, ATTN_KT_COLS, (col + lanes - 1) / lanes * lanes, hd,
                                   qg, hd, tq->qpk, a->scale, sg + base, stride);
                        base += col;
                        col = 0;
                    }
                    const int32_t n = nb - r < lanes ? nb - r : lanes;
                    transpose(k + (int64_t)r * k_stride * es, k_stride, n, hd, sc->kt + col, ATTN_KT_COLS);
                    col += n;
                }
            }
            if (col > 0)
                f->qk_tile(sc->kt, ATTN_KT_COLS, (col + lanes - 1) / lanes * lanes, hd, qg, hd,
                           tq->qpk, a->scale, sg + base, stride);
        }
    }
}

/* Tile-path scores and softmax numerators of a chunk (many queries): queries transposed in
 * sc->q [hd][m_pad], scores st [n_c][m_pad] key-major, softmax down the columns. */
static void chunk_softmax_tile(const vb_attn_args *a, const attn_fns *f, const tile_queries *tq,
                               int32_t kv_head, int32_t j0, int32_t n_c, const attn_scratch *sc,
                               int32_t m_pad, float *mx, float *l) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim;
    float *st = sc->scores;
    int64_t k_stride = 0;
    for (int32_t j = j0; j < j0 + n_c; j += bs) {
        const int32_t nb = j0 + n_c - j < bs ? j0 + n_c - j : bs;
        const float *k = kv_block_rows(vb_kvc_k(a->kv, a->layer, tq->table[j / bs]), nb,
                                       cfg->kv_dim, kv_head, hd, a, f, sc->tmp, &k_stride);
        f->qk_tile(sc->q, m_pad, m_pad, hd, k, k_stride, nb, a->scale, st + (int64_t)(j - j0) * m_pad,
                   m_pad);
    }
    /* causality: rows [n_kv[m], ...) and (sliding window) rows before lo[m] are not visible to
       query m; a query that sees none of the chunk gets a column of zeros (its result is not
       used) */
    for (int32_t m = 0; m < tq->n_q; m++) {
        const int32_t vis = tq->n_kv[m] - j0;
        if (!sees_chunk(tq, m, j0)) {
            for (int32_t j = 0; j < n_c; j++) st[(int64_t)j * m_pad + m] = 0.0f;
            continue;
        }
        for (int32_t j = 0; j < tq->lo[m] - j0; j++) st[(int64_t)j * m_pad + m] = -INFINITY;
        for (int32_t j = vis; j < n_c; j++) st[(int64_t)j * m_pad + m] = -INFINITY;
    }
    for (int32_t m = 0; m < tq->n_q; m++) {
        float max = st[m];
        for (int32_t j = 1; j < n_c; j++)
            if (st[(int64_t)j * m_pad + m] > max) max = st[(int64_t)j * m_pad + m];
        mx[m] = max;
    }
    float inv_sum[ATTN_TILE_Q + 16];
    vb_op_softmax_cols_level(f->level, st, n_c, m_pad, inv_sum);
    for (int32_t m = 0; m < tq->n_q; m++) l[m] = (float)(1.0 / (double)inv_sum[m]);
}

/* The partial attention of every query of a tile over chunk c (cached rows [c * chunk,
 * (c + 1) * chunk), clipped to what each query sees): mx[m] = the largest score, l[m] = sum
 * of exp(score - mx[m]), acc[m] = sum of exp(score - mx[m]) * V row, the sum one FMA chain
 * per element over the rows in order.  Only a query's visible rows count; a query that sees
 * none of the chunk gets unused values. The same numbers on every path of one level and
 * whatever else the tile holds. */
static void chunk_partial(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                          const tile_queries *tq, int32_t c, const attn_scratch *sc,
                          float *const *acc, float *mx, float *l) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, hd = a->head_dim;
    const int32_t j0 = c * tq->chunk;
    const int32_t n_c = tq->n_kv_max - j0 < tq->chunk ? tq->n_kv_max - j0 : tq->chunk;
    const float *p;
    int64_t p_q, p_r;
    if (f->qk_tile && tq->qpk >= ATTN_TILE_MIN_Q) { /* one KV head (see next_tile) */
        const int32_t m_pad = (tq->n_q + f->lanes - 1) / f->lanes * f->lanes;
        chunk_softmax_tile(a, f, tq, t->kv_head, j0, n_c, sc, m_pad, mx, l);
        p = sc->scores;
        p_q = 1;
        p_r = m_pad;
    } else {
        const int64_t stride = tq->chunk + 64;
        if (f->qk_tile)
            chunk_scores_rows(a, f, tq, t->kv_head, j0, n_c, sc, stride);
        else
            chunk_scores_portable(a, f, tq, t->kv_head, j0, n_c, sc, stride);
        softmax_rows(f, tq, sc->scores, stride, j0, n_c, mx, l);
        p = sc->scores;
        p_q = stride;
        p_r = 1;
    }
    for (int32_t m = 0; m < tq->n_q; m++) memset(acc[m], 0, (size_t)hd * sizeof(float));
    int64_t v_stride = 0;
    /* the row path reads F32 / F16 V rows straight from the cache (Q8_0: dequantized per block) */
    const bool rows_path = f->qk_tile && tq->qpk < ATTN_TILE_MIN_Q && a->kv_type != VB_KV_Q8_0;
    const bool f16 = a->kv_type == VB_KV_F16;
    if (rows_path) prefetch_block(a, tq, true, j0);
    for (int32_t j = j0; j < j0 + n_c; j += bs) {
        const int32_t nb = j0 + n_c - j < bs ? j0 + n_c - j : bs;
        const void *vblock = vb_kvc_v(a->kv, a->layer, tq->table[j / bs]);
        for (int32_t g = 0; g < tq->n_kvh; g++) {
            float *const *acc_g = acc + g * tq->qpk;
            const float *p_g = p + g * tq->qpk * p_q + (j - j0) * p_r;
            if (rows_path) { /* V rows straight from the cache, KV head after KV head */
                if (g == 0) prefetch_block(a, tq, true, j + bs);
                const int64_t off = (int64_t)(t->kv_head + g) * hd;
                if (f16)
                    f->pv_many_f16(acc_g, tq->qpk, hd, (const uint16_t *)vblock + off, cfg->kv_dim,
                                   nb, p_g, p_q, p_r);
                else
                    f->pv_many(acc_g, tq->qpk, hd, (const float *)vblock + off, cfg->kv_dim, nb,
                               p_g, p_q, p_r);
                continue;
            }
            const float *v = kv_block_rows(vblock, nb, cfg->kv_dim, t->kv_head + g, hd, a, f,
                                           sc->tmp, &v_stride);
            f->pv_many(acc_g, tq->qpk, hd, v, v_stride, nb, p_g, p_q, p_r);
        }
    }
}

/* Running combination of a query's chunks (log-sum-exp merge), in chunk order: out holds the
 * V sum relative to *run_max, *run_sum the softmax denominator. Chunk 0 starts it (out = its
 * acc, the max and sum its own); this folds in a later chunk. */
static void fold_chunk(int level, int32_t hd, float *out, float *run_max, double *run_sum,
                       const float *acc, float mx, float l) {
    const float new_max = *run_max > mx ? *run_max : mx;
    const float x[2] = {*run_max - new_max, mx - new_max};
    float w[2];
    vb_op_exp_level(level, w, x, 2);
    for (int32_t d = 0; d < hd; d++) out[d] = out[d] * w[0] + acc[d] * w[1];
    *run_sum = *run_sum * w[0] + (double)l * w[1];
    *run_max = new_max;
}

static void finish_query(int32_t hd, float *out, double run_sum) {
    const float inv = (float)(1.0 / run_sum);
    for (int32_t d = 0; d < hd; d++) out[d] *= inv;
}

/* A whole tile by one thread: chunk 0 straight into the outputs, each later chunk into
 * sc->acc and folded in, then the 1/sum scale. */
static void run_tile(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                     const attn_scratch *sc) {
    const int32_t hd = a->head_dim;
    tile_queries tq;
    tile_queries_init(a, t, &tq);
    tile_queries_stage(a, f, &tq, sc);
    float *acc[ATTN_TILE_Q], mx[ATTN_TILE_Q], l[ATTN_TILE_Q], run_max[ATTN_TILE_Q];
    double run_sum[ATTN_TILE_Q];
    bool started[ATTN_TILE_Q] = {false}; /* a query's first seen chunk goes straight to out */
    for (int32_t c = 0; c < tq.n_chunks; c++) {
        bool any = false;
        for (int32_t m = 0; m < tq.n_q; m++) any = any || sees_chunk(&tq, m, c * tq.chunk);
        if (!any) continue; /* below every query's sliding window */
        for (int32_t m = 0; m < tq.n_q; m++) acc[m] = started[m] ? sc->acc + (int64_t)m * hd : tq.out[m];
        chunk_partial(a, f, t, &tq, c, sc, acc, mx, l);
        for (int32_t m = 0; m < tq.n_q; m++) {
            if (!sees_chunk(&tq, m, c * tq.chunk)) continue;
            if (!started[m]) {
                run_max[m] = mx[m];
                run_sum[m] = l[m];
                started[m] = true;
            } else {
                fold_chunk(f->level, hd, tq.out[m], &run_max[m], &run_sum[m], acc[m], mx[m], l[m]);
            }
        }
    }
    for (int32_t m = 0; m < tq.n_q; m++) finish_query(hd, tq.out[m], run_sum[m]);
}

/* Partial results of split tiles: slot s ([hd + 2] floats: max, sum, V sum [hd]) lives in
 * the scratch of thread s / slots_per_thread, after its working part. A split tile's slots are
 * [base + c * n_q + m] for chunk c, query m. */
typedef struct attn_slots {
    float *scratch;
    int64_t stride, work, per_thread, floats; /* floats per slot: hd + 2 */
} attn_slots;

static float *slot_at(const attn_slots *s, int64_t i) {
    return s->scratch + (i / s->per_thread) * s->stride + s->work + (i % s->per_thread) * s->floats;
}

/* Chunks [c0, c1) of a split tile into its slots. */
static void run_tile_chunks(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                            int32_t c0, int32_t c1, const attn_slots *slots, int64_t base,
                            const attn_scratch *sc) {
    tile_queries tq;
    tile_queries_init(a, t, &tq);
    tile_queries_stage(a, f, &tq, sc);
    float *acc[ATTN_TILE_Q], mx[ATTN_TILE_Q], l[ATTN_TILE_Q];
    for (int32_t c = c0; c < c1; c++) {
        for (int32_t m = 0; m < tq.n_q; m++) acc[m] = slot_at(slots, base + (int64_t)c * tq.n_q + m) + 2;
        chunk_partial(a, f, t, &tq, c, sc, acc, mx, l);
        for (int32_t m = 0; m < tq.n_q; m++) {
            acc[m][-2] = mx[m];
            acc[m][-1] = l[m];
        }
    }
}

/* The one combine of a split tile: its chunk results folded in chunk order, as run_tile folds
 * them (same bits whether a tile was split or not). */
static void combine_tile(const vb_attn_args *a, const attn_fns *f, const attn_tile *t,
                         const attn_slots *slots, int64_t base) {
    const int32_t hd = a->head_dim;
    tile_queries tq;
    tile_queries_init(a, t, &tq);
    for (int32_t m = 0; m < tq.n_q; m++) {
        const int32_t c0 = tq.lo[m] / tq.chunk; /* the first chunk it sees */
        const float *s0 = slot_at(slots, base + (int64_t)c0 * tq.n_q + m);
        float run_max = s0[0];
        double run_sum = s0[1];
        memcpy(tq.out[m], s0 + 2, (size_t)hd * sizeof(float));
        for (int32_t c = c0 + 1; c < tq.n_chunks && tq.n_kv[m] > c * tq.chunk; c++) {
            const float *sc = slot_at(slots, base + (int64_t)c * tq.n_q + m);
            fold_chunk(f->level, hd, tq.out[m], &run_max, &run_sum, sc + 2, sc[0], sc[1]);
        }
        finish_query(hd, tq.out[m], run_sum);
    }
}

/* Tiles of at most max_q query vectors over kvw KV heads each (kvw > 1 only when max_q / kvw
 * holds whole groups), in a fixed order, one at a time: *t starts zeroed (n_rows 0) and each
 * call moves it to the next tile; false after the last one. */
static bool next_tile(const vb_attn_args *a, int32_t max_q, int32_t kvw, attn_tile *t) {
    const int32_t group = a->n_head / a->n_head_kv;
    const int32_t per_kvh = max_q / kvw > 0 ? max_q / kvw : 1;
    const int32_t heads = group < per_kvh ? group : per_kvh; /* query heads per row and KV head */
    const int32_t max_rows = per_kvh / heads;
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
            kv_head += kvw;
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
    t->n_kvh = a->n_head_kv - kv_head < kvw ? a->n_head_kv - kv_head : kvw;
    return true;
}

/* Largest visible length among a tile's rows. */
static int32_t tile_kv_max(const vb_attn_args *a, const attn_tile *t) {
    int32_t n_kv_max = 0;
    for (int32_t r = 0; r < t->n_rows; r++)
        if (a->n_kv[t->row0 + r] > n_kv_max) n_kv_max = a->n_kv[t->row0 + r];
    return n_kv_max;
}

/* How a tile is run: unsplit (one unit, its chunks folded on the fly) or split into `units`
 * chunk ranges with partial results in slots [base, base + n_chunks * n_q). */
typedef struct tile_plan {
    int32_t n_q, n_kv_max, n_chunks, units;
    int64_t base; /* first slot (split tiles) */
} tile_plan;

typedef struct attn_task {
    const vb_attn_args *args;
    int32_t max_q;      /* query vectors per tile */
    int32_t kvw;        /* KV heads per tile */
    int32_t split;      /* chunk ranges per tile (at most its chunks; 1: no tile is split) */
    int32_t chunk;      /* rows per chunk */
    int64_t unit_cost;  /* sum of the cost of every unit */
    int64_t fold_cost;  /* sum of the combine cost of the split tiles */
    attn_slots slots;
} attn_task;

/* Advances to the next tile and its plan; slot bases accumulate in *next_slot. */
static bool next_planned_tile(const attn_task *task, attn_tile *t, tile_plan *p,
                              int64_t *next_slot) {
    if (!next_tile(task->args, task->max_q, task->kvw, t)) return false;
    p->n_q = t->n_rows * t->n_heads * t->n_kvh;
    p->n_kv_max = tile_kv_max(task->args, t);
    p->n_chunks = (p->n_kv_max + task->chunk - 1) / task->chunk;
    p->units = task->split < p->n_chunks ? task->split : p->n_chunks;
    if (p->units < 1) p->units = 1;
    p->base = *next_slot;
    if (p->units > 1) *next_slot += (int64_t)p->n_chunks * p->n_q;
    return true;
}

/* Chunks [c0, c1) of unit u of a tile, and its estimated cost (query vectors x rows). */
static int64_t unit_range(const attn_task *task, const tile_plan *p, int32_t u, int32_t *c0,
                          int32_t *c1) {
    *c0 = (int32_t)((int64_t)p->n_chunks * u / p->units);
    *c1 = (int32_t)((int64_t)p->n_chunks * (u + 1) / p->units);
    const int32_t j1 = *c1 * task->chunk < p->n_kv_max ? *c1 * task->chunk : p->n_kv_max;
    return (int64_t)p->n_q * (j1 - *c0 * task->chunk + 16);
}

/* Phase 1: the units, in their fixed order, dealt to the threads by cost (thread ith runs the
 * units whose cost midpoint falls in its share). */
static void attention_task(void *arg, int ith, int nth) {
    const attn_task *task = arg;
    const vb_attn_args *a = task->args;
    const attn_scratch sc = split_scratch(a, a->scratch + (int64_t)ith * a->scratch_stride);
    const attn_fns f = pick_fns(a);
    const int64_t lo = task->unit_cost * ith / nth, hi = task->unit_cost * (ith + 1) / nth;
    attn_tile t = {0};
    tile_plan p;
    int64_t done = 0, next_slot = 0;
    while (done < hi && next_planned_tile(task, &t, &p, &next_slot)) {
        for (int32_t u = 0; u < p.units; u++) {
            int32_t c0, c1;
            const int64_t cost = unit_range(task, &p, u, &c0, &c1);
            const int64_t mid = done + cost / 2;
            done += cost;
            if (mid < lo || mid >= hi) continue;
            if (p.units == 1)
                run_tile(a, &f, &t, &sc);
            else
                run_tile_chunks(a, &f, &t, c0, c1, &task->slots, p.base, &sc);
        }
    }
}

/* Phase 2: the combine of each split tile, dealt to the threads the same way. */
static void combine_task(void *arg, int ith, int nth) {
    const attn_task *task = arg;
    const vb_attn_args *a = task->args;
    const attn_fns f = pick_fns(a);
    const int64_t lo = task->fold_cost * ith / nth, hi = task->fold_cost * (ith + 1) / nth;
    attn_tile t = {0};
    tile_plan p;
    int64_t done = 0, next_slot = 0;
    while (done < hi && next_planned_tile(task, &t, &p, &next_slot)) {
        if (p.units == 1) continue;
        const int64_t cost = (int64_t)p.n_q * p.n_chunks;
        const int64_t mid = done + cost / 2;
        done += cost;
        if (mid >= lo && mid < hi) combine_tile(a, &f, &t, &task->slots, p.base);
    }
}

/* Totals of a plan: unit and combine costs, slots used. */
static int64_t plan_totals(attn_task *task) {
    attn_tile t = {0};
    tile_plan p;
    int64_t next_slot = 0;
    task->unit_cost = 0;
    task->fold_cost = 0;
    while (next_planned_tile(task, &t, &p, &next_slot)) {
        for (int32_t u = 0; u < p.units; u++) {
            int32_t c0, c1;
            task->unit_cost += unit_range(task, &p, u, &c0, &c1);
        }
        if (p.units > 1) task->fold_cost += (int64_t)p.n_q * p.n_chunks;
    }
    return next_slot;
}

/* Number of tiles of the plan's shape. */
static int64_t count_tiles(const attn_task *task) {
    attn_tile t = {0};
    int64_t n = 0;
    while (next_tile(task->args, task->max_q, task->kvw, &t)) n++;
    return n;
}

void vb_attention(vb_threadpool *tp, const vb_attn_args *args) {
    const int nth = tp ? vb_threadpool_size(tp) : 1;
    const int32_t hd = args->head_dim, bs = vb_kvc_config(args->kv)->block_size;
    const int32_t group = args->n_head / args->n_head_kv;
    attn_task task = {
        .args = args, .max_q = ATTN_TILE_Q, .kvw = 1, .split = 1, .chunk = chunk_rows(bs)};
    task.slots.scratch = args->scratch;
    task.slots.stride = args->scratch_stride;
    task.slots.work = work_floats(hd, bs);
    task.slots.floats = (int64_t)hd + 2;
    task.slots.per_thread = (args->scratch_stride - task.slots.work) / task.slots.floats;
    if (args->n_rows <= 0) return;
    /* row-path tiles (fewer than ATTN_TILE_MIN_Q queries per KV head, e.g. one-row decode)
       take several KV heads, so that a thread reads whole stretches of each cached row; as
       many as fit a tile while tiles x chunks still give every thread ATTN_SPLIT_UNITS units */
    int32_t max_run = 0, min_kv = INT32_MAX;
    for (int32_t i = 0, run = 0; i < args->n_rows; i++) {
        run = i > 0 && args->seq[i] == args->seq[i - 1] ? run + 1 : 1;
        if (run > max_run) max_run = run;
        if (args->n_kv[i] < min_kv) min_kv = args->n_kv[i];
    }
    if ((int64_t)max_run * group < ATTN_TILE_MIN_Q) {
        int32_t kvw = ATTN_TILE_Q / (max_run * group);
        if (kvw > args->n_head_kv) kvw = args->n_head_kv;
        const int64_t chunks = ((int64_t)min_kv + task.chunk - 1) / task.chunk;
        for (; kvw > 1; kvw--) {
            task.kvw = kvw;
            if (count_tiles(&task) * chunks >= (int64_t)ATTN_SPLIT_UNITS * nth) break;
        }
        task.kvw = kvw;
    }
    int64_t n_tiles = count_tiles(&task);
    /* smaller tiles until every thread has one (or tiles are single heads) */
    while (task.kvw == 1 && n_tiles < nth && task.max_q > 1) {
        task.max_q /= 2;
        n_tiles = count_tiles(&task);
    }
    /* few tiles for the threads (e.g. one-row decode with few KV heads): split tiles over
       their chunks, when the partial results fit the scratch */
    if (nth > 1 && n_tiles > 0 && n_tiles < (int64_t)ATTN_SPLIT_UNITS * nth &&
        task.slots.per_thread > 0) {
        task.split = (int32_t)(((int64_t)ATTN_SPLIT_UNITS * nth + n_tiles - 1) / n_tiles);
        if (plan_totals(&task) > task.slots.per_thread * nth) task.split = 1;
    }
    plan_totals(&task);
    vb_threadpool_run(tp, attention_task, &task);
    if (task.fold_cost > 0) vb_threadpool_run(tp, combine_task, &task);
}
