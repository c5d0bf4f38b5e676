/* kernels_internal.h - what the kernel files share and nothing outside them uses: the
 * activations quantized to 8-bit blocks (X8), the arguments of one matrix product, and the
 * entry points of each instruction-set path (kernels_avx2.c, kernels_avx512.c; the portable
 * path lives in kernels_matmul.c, the dispatcher). */
#ifndef VB_KERNELS_INTERNAL_H
#define VB_KERNELS_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* Activations quantized per 32 elements for integer dot products with quantized weights:
 * x[r][32 b + i] ~= d[r][b] * q[r][32 b + i], q in -127..127 (signed bytes). */
typedef struct vb_x8 {
    int8_t *q;      /* [n_rows][n_in] */
    float *d;       /* [n_rows][n_in / 32] block scales */
    float *dsum;    /* [n_rows][n_in / 32] d * (sum of the block's q): weight offsets/minimums */
    float *dsum16;  /* [n_rows][n_in / 16] d * (sum of each half block's q): Q6_K offsets */
    int32_t *isum;  /* [n_rows][n_in / 32] sum of the block's q (packed Q8_0 offsets) */
    int64_t n_in;   /* multiple of 32 */
    int64_t nb;     /* n_in / 32 */
} vb_x8;

/* The same activations regrouped for the lane kernels of the AVX-512 path (Q8_0, Q4_0, Q4_K,
 * Q6_K with several X rows): X rows in groups of G = 16 / D; per group and 32-block, S = 8 / D
 * vectors of 64 bytes in which 32-bit lane l holds dword s * D + l % D of the block of row
 * l / D. A W block broadcast D dwords at a time then meets every row of the group in one
 * vpdpbusd whose int32 lanes each belong to a single (X row, block): the per-block scales
 * are applied lane-wise with no horizontal sums (D > 1: the D lanes of a row are added
 * first). Rows past n_rows are zero. */
typedef struct vb_x8_lanes {
    int8_t *q;     /* [n_groups][nb][S][64] */
    float *d;      /* [n_groups][nb][16] lane l: block scale of row l / D */
    float *s;      /* [n_groups][nb][16] lane l: x8 dsum of row l / D (offsets, minimums) */
    float *s16;    /* [n_groups][2 nb][16] lane l: x8 dsum16 of row l / D (Q6_K offsets) */
    int D;         /* 1, 2 or 4 dwords per lane and step */
    int64_t n_groups;
} vb_x8_lanes;

/* One product Y[n_rows][n_out] = X[n_rows][n_in] * W^T. */
typedef struct vb_mm_args {
    uint32_t type;
    const uint8_t *W;  /* [n_out][row_bytes] */
    int64_t row_bytes; /* bytes of one W row */
    int64_t n_in, n_out;
    const float *X; /* [n_rows][n_in] */
    int64_t n_rows;
    float *Y;  /* [n_rows][n_out] */
    vb_x8 x8;  /* quantized X, for quantized W types (x8.q == NULL otherwise) */
    vb_x8_lanes xl; /* x8 regrouped for the lane kernels (xl.q == NULL: not used) */
    const int32_t *panel; /* packed Q8_0: x8 in row tiles (vb_q8_panel_fill), else NULL */
} vb_mm_args;

/* X8 regrouped for the packed Q8_0 product (kernels.h): X rows in tiles of up to
 * VB_Q8_PANEL_ROWS (R rows in a tile, the last one may have fewer); per tile and input block
 * k, VB_Q8_PANEL_STRIDE(R) int32 words: [8 dwords][R rows] of quants (4 bytes each), then
 * [R] -128 x the block sums (the dots' start), then [R] block scales (floats). Tile t starts at
 * t x nb x VB_Q8_PANEL_STRIDE(VB_Q8_PANEL_ROWS). A tile's kernel then reads every activation
 * through one pointer at constant offsets. */
#define VB_Q8_PANEL_ROWS 8
#define VB_Q8_PANEL_STRIDE(R) (10 * (R))
#define VB_Q8_PANEL_START(R) (8 * (R))
#define VB_Q8_PANEL_SCALE(R) (9 * (R))
/* int32 words of the panel of n_rows rows of nb blocks */
static inline int64_t vb_q8_panel_words(int64_t n_rows, int64_t nb) {
    const int64_t n_tiles = (n_rows + VB_Q8_PANEL_ROWS - 1) / VB_Q8_PANEL_ROWS;
    return n_tiles * nb * VB_Q8_PANEL_STRIDE(VB_Q8_PANEL_ROWS);
}
/* -128 x a block sum, the start of a packed Q8_0 dot (wraps instead of overflowing on the
 * garbage sums of non-finite activations). */
static inline int32_t vb_q8_dot_start(int32_t isum) { return (int32_t)(0u - ((uint32_t)isum << 7)); }
/* Fill panel (vb_q8_panel_words words) from a->x8. */
void vb_q8_panel_fill(const vb_mm_args *a, int32_t *panel);

/* X rows from which the AVX-512 path multiplies Q8_0 / Q4_0 (resp. Q4_K / Q6_K) weights with
 * the lane kernels (below it, the per-row tile kernels); the D to use for n_rows rows.
 * The lane kernels add, per output, exactly the products the per-row tile adds, in the same
 * order (fused where it fuses, its horizontal sums reproduced lane by lane), so a product of
 * K rows gives each row bit for bit what a one-row product gives: a batched verify or
 * WeDLM window sees the logits of one-row decoding (tests: kernels_matmul_k_rows_bit_
 * identical_to_one_row, cpu_fixture_models_k_rows_equal_single_rows). */
#define VB_LANES_MIN_ROWS 3
#define VB_LANES_MIN_ROWS_K 5 /* Q4_K, Q6_K (their lane kernels assume D <= 2) */
/* X rows from which `type` takes the lane kernels on the AVX-512 path (0: it has none). */
static inline int64_t vb_lanes_min_rows(uint32_t type) {
    static const uint8_t min_rows[VB_TYPE_COUNT] = {
        [VB_TYPE_Q8_0] = VB_LANES_MIN_ROWS, [VB_TYPE_Q4_0] = VB_LANES_MIN_ROWS,
        [VB_TYPE_Q4_K] = VB_LANES_MIN_ROWS_K, [VB_TYPE_Q6_K] = VB_LANES_MIN_ROWS_K,
        [VB_TYPE_Q4_1] = VB_LANES_MIN_ROWS, [VB_TYPE_Q5_0] = VB_LANES_MIN_ROWS,
        [VB_TYPE_Q5_1] = VB_LANES_MIN_ROWS, [VB_TYPE_IQ4_NL] = VB_LANES_MIN_ROWS,
        [VB_TYPE_Q5_K] = VB_LANES_MIN_ROWS, [VB_TYPE_IQ4_XS] = VB_LANES_MIN_ROWS,
        [VB_TYPE_Q2_K] = VB_LANES_MIN_ROWS_K, [VB_TYPE_Q3_K] = VB_LANES_MIN_ROWS_K, /* slower below */
    };
    return type < VB_TYPE_COUNT ? min_rows[type] : 0;
}
static inline int vb_lanes_d(int64_t n_rows) { /* 4, 2 or 1 (the kernels handle D <= 4) */
    return n_rows <= 4 ? 4 : n_rows <= 8 ? 2 : 1;
}
/* Quantize a->X (all rows, split over tp from 8 rows) into a->x8 in the calling thread's
 * scratch buffer, with extra_bytes more (64-byte aligned) at *extra for the caller. The
 * portable level quantizes exactly as the SIMD levels do. With reuse, and when the buffer
 * still holds this X (same pointer, shape, level, caller kind and extra_bytes: nothing else
 * was prepared on the thread since), nothing is computed and *reused (if given) is set: the
 * caller's extra bytes are as it left them. VB_OK or VB_ERR_NOMEM. */
int vb_x8_prepare(vb_threadpool *tp, vb_mm_args *a, int level, uint32_t kind, size_t extra_bytes,
                  bool reuse, uint8_t **extra, bool *reused);
/* Fill a->xl (buffers allocated by the caller) from a->x8 for all rows. */
void vb_x8_to_lanes(vb_mm_args *a);

/* True if `type` is one of the quantized types whose products use 8-bit activations (every
 * supported block type: the traits table says which). */
static inline int vb_type_uses_x8(uint32_t type) {
    const vb_type_traits *t = vb_type_get(type);
    return t && t->supported && t->block_elems >= 32;
}

/* Per path: quantize rows [r0, r1) of a->X into a->x8, and
 * compute Y for all X rows and W rows [o0, o1). */
void vb_x8_quantize_avx2(const vb_mm_args *a, int64_t r0, int64_t r1);
void vb_mm_rows_avx2(const vb_mm_args *a, int64_t o0, int64_t o1);
void vb_x8_quantize_avx512(const vb_mm_args *a, int64_t r0, int64_t r1);
void vb_mm_rows_avx512(const vb_mm_args *a, int64_t o0, int64_t o1);

/* Per path: the packed float product (vb_matmul_packed) for all X rows and output blocks
 * [b0, b1) (a->W is the packed matrix; a->row_bytes unused). */
void vb_mm_packed_avx2(const vb_mm_args *a, int64_t b0, int64_t b1);
void vb_mm_packed_avx512(const vb_mm_args *a, int64_t b0, int64_t b1);

/* Q4_K packed 6-bit scales and mins of the 8 sub-blocks from the 12 scale bytes: scales 0..3
 * are the low 6 bits of bytes 0..3, mins 0..3 of bytes 4..7; scale / min 4..7 take their low 4
 * bits from the low / high nibble of bytes 8..11 and their top 2 bits from the top 2 bits of
 * bytes 0..3 / 4..7. vb_q4k_scale_min: one sub-block; vb_q4k_unpack: all 8 at once. */
static inline void vb_q4k_unpack(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    uint32_t sc_lo = u0 & 0x3F3F3F3Fu, m_lo = u1 & 0x3F3F3F3Fu;
    uint32_t sc_hi = (u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4);
    uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4);
    memcpy(sc, &sc_lo, 4);
    memcpy(sc + 4, &sc_hi, 4);
    memcpy(m, &m_lo, 4);
    memcpy(m + 4, &m_hi, 4);
}

static inline void vb_q4k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Q3_K's 16 scales (6 bits, minus 32: -32..31) from its 12 scale bytes: scale i < 4 (resp.
 * 4..7) has the low nibble of byte i (resp. i), 8..11 and 12..15 the high nibbles of bytes
 * 0..3 and 4..7; their top 2 bits are bits 0-1, 2-3, 4-5, 6-7 of bytes 8..11 in that order. */
static inline void vb_q3k_scales(const uint8_t *s, int8_t out[16]) {
    for (int i = 0; i < 4; i++) {
        out[i] = (int8_t)(((s[i] & 0xF) | (((s[8 + i] >> 0) & 3) << 4)) - 32);
        out[4 + i] = (int8_t)(((s[4 + i] & 0xF) | (((s[8 + i] >> 2) & 3) << 4)) - 32);
        out[8 + i] = (int8_t)(((s[i] >> 4) | (((s[8 + i] >> 4) & 3) << 4)) - 32);
        out[12 + i] = (int8_t)(((s[4 + i] >> 4) | (((s[8 + i] >> 6) & 3) << 4)) - 32);
    }
}

/* IQ4_XS sub-block ib's scale (6 bits, minus 32). */
static inline int vb_iq4xs_scale(const vb_block_iq4_xs *b, int ib) {
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

#endif
