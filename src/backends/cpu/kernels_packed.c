/* kernels_packed.c - weights repacked for multi-row products: float weights (F32, F16, BF16;
 * blocks of VB_PACK_LANES output rows interleaved per input element) and Q8_0 weights (16
 * output rows interleaved per 4 bytes, for vpdpbusd against broadcast activation dwords; see
 * kernels.h), the packing itself, the portable product over those layouts, and
 * vb_matmul_packed, which splits the output blocks across the thread pool and dispatches to
 * the AVX-512 / AVX2 / portable path. Every output is one fused multiply-add chain (over input
 * elements, or over Q8_0 blocks of exact integer dots) in input order on every path (the
 * portable one through fmaf), so the result does not depend on the row count, the tiling, the
 * thread split or even the instruction-set level. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../../include/vibee.h"
#include "kernels_internal.h"

bool vb_packed_supported(uint32_t type) {
    return type == VB_TYPE_F32 || type == VB_TYPE_F16 || type == VB_TYPE_BF16 || type == VB_TYPE_Q8_0;
}

bool vb_packed_pays(uint32_t type) {
    /* Q8_0 packed is a VNNI layout: without AVX-512 VNNI its product runs the portable loop */
    return vb_packed_supported(type) &&
           (type != VB_TYPE_Q8_0 || vb_kernels_max_level() == VB_KLEVEL_AVX512);
}

static size_t elem_bytes(uint32_t type) { return type == VB_TYPE_F32 ? 4 : 2; }

size_t vb_packed_bytes(uint32_t type, int64_t n_in, int64_t n_out) {
    if (!vb_packed_supported(type) || n_in <= 0 || n_out <= 0) return 0;
    int64_t n_blocks = (n_out + VB_PACK_LANES - 1) / VB_PACK_LANES;
    if (type == VB_TYPE_Q8_0)
        return n_in % 32 ? 0 : (size_t)n_blocks * (size_t)(n_in / 32) * VB_PACK_Q8_BLOCK_BYTES;
    return (size_t)n_blocks * (size_t)n_in * VB_PACK_LANES * elem_bytes(type);
}

/* Q8_0 output block of up to 16 rows (src: n_rows rows of nb blocks): the quants of input
 * block k at dst + 512 k, as [8 dwords][16 rows][4 bytes] made unsigned (q + 128, i.e. q ^ 0x80;
 * padding rows 0x80 = 0), then the scales of block k at dst + 512 nb + 32 k, [16 rows] F16
 * (padding 0). */
static void pack_block_q8_0(const vb_block_q8_0 *src, int64_t nb, int n_rows, uint8_t *dst) {
    uint16_t *d = (uint16_t *)(dst + 512 * nb);
    for (int64_t k = 0; k < nb; k++)
        for (int l = 0; l < VB_PACK_LANES; l++) {
            const vb_block_q8_0 *blk = l < n_rows ? &src[l * nb + k] : NULL;
            for (int c = 0; c < 8; c++) {
                uint32_t v = 0; /* 4 quants, each + 128 */
                if (blk) memcpy(&v, blk->qs + 4 * c, 4);
                v ^= 0x80808080u;
                memcpy(dst + 512 * k + 64 * c + 4 * l, &v, 4);
            }
            d[16 * k + l] = blk ? blk->d : 0;
        }
}

/* One block: dst[i][l] = row l's element i for l < n_rows_in_block, 0 beyond (ETYPE elements).
 * In tiles of PACK_TILE input elements: the tile's 16 rows are read as short sequential runs
 * and its destination (PACK_TILE x 16 elements) stays in L1 while it fills. */
#define PACK_TILE 64
#define VB_DEFINE_PACK_BLOCK(name, ETYPE)                                                     \
    static void name(const ETYPE *src, int64_t n_in, int n_rows, ETYPE *dst) {                \
        for (int64_t i0 = 0; i0 < n_in; i0 += PACK_TILE) {                                    \
            const int64_t n = n_in - i0 < PACK_TILE ? n_in - i0 : PACK_TILE;                  \
            ETYPE *d = dst + i0 * VB_PACK_LANES;                                              \
            for (int l = 0; l < VB_PACK_LANES; l++) {                                         \
                const ETYPE *r = src + (int64_t)l * n_in + i0;                                \
                if (l < n_rows)                                                               \
                    for (int64_t i = 0; i < n; i++) d[i * VB_PACK_LANES + l] = r[i];          \
                else                                                                          \
                    for (int64_t i = 0; i < n; i++) d[i * VB_PACK_LANES + l] = 0;             \
            }                                                                                 \
        }                                                                                     \
    }
VB_DEFINE_PACK_BLOCK(pack_block_32, uint32_t)
VB_DEFINE_PACK_BLOCK(pack_block_16, uint16_t)

int vb_pack_weights(uint32_t type, const void *W, int64_t n_in, int64_t n_out, void *dst) {
    if (!vb_packed_supported(type)) return VB_ERR_UNSUPPORTED;
    if (!W || !dst || n_in <= 0 || n_out <= 0) return VB_ERR_ARG;
    const int64_t n_blocks = (n_out + VB_PACK_LANES - 1) / VB_PACK_LANES;
    const int64_t block_elems = n_in * VB_PACK_LANES;
    if (type == VB_TYPE_Q8_0 && n_in % 32) return VB_ERR_ARG;
    for (int64_t b = 0; b < n_blocks; b++) {
        int64_t o = b * VB_PACK_LANES;
        int n_rows = n_out - o < VB_PACK_LANES ? (int)(n_out - o) : VB_PACK_LANES;
        if (type == VB_TYPE_Q8_0)
            pack_block_q8_0((const vb_block_q8_0 *)W + o * (n_in / 32), n_in / 32, n_rows,
                            (uint8_t *)dst + b * (n_in / 32) * VB_PACK_Q8_BLOCK_BYTES);
        else if (type == VB_TYPE_F32) /* bit patterns: copied as integers */
            pack_block_32((const uint32_t *)W + o * n_in, n_in, n_rows, (uint32_t *)dst + b * block_elems);
        else
            pack_block_16((const uint16_t *)W + o * n_in, n_in, n_rows, (uint16_t *)dst + b * block_elems);
    }
    return VB_OK;
}

/* The packed element at p as a float. */
static inline float packed_elem(uint32_t type, const uint8_t *p) {
    if (type == VB_TYPE_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return type == VB_TYPE_F16 ? vb_f16_to_f32(h) : vb_bf16_to_f32(h);
}

/* Portable Q8_0 path: per output block, X row and lane, the exact integer dot of each input
 * block (the unsigned weights' dot less 128 x the X block sum) into one fmaf chain over the
 * blocks, scale dw * dx rounded first (as the SIMD tile). */
static void mm_packed_q8_0_portable(const vb_mm_args *a, int64_t b0, int64_t b1) {
    const int64_t nb = a->n_in / 32;
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *wb = a->W + (size_t)(b * nb) * VB_PACK_Q8_BLOCK_BYTES; /* see pack_block_q8_0 */
        const uint16_t *wd = (const uint16_t *)(wb + 512 * nb);
        int64_t n_valid = a->n_out - b * VB_PACK_LANES;
        if (n_valid > VB_PACK_LANES) n_valid = VB_PACK_LANES;
        for (int64_t r = 0; r < a->n_rows; r++) {
            const int8_t *xq = a->x8.q + r * a->n_in;
            float acc[VB_PACK_LANES] = {0};
            for (int64_t k = 0; k < nb; k++) {
                const float dx = a->x8.d[r * nb + k];
                for (int l = 0; l < VB_PACK_LANES; l++) {
                    int32_t dot = vb_q8_dot_start(a->x8.isum[r * nb + k]);
                    for (int i = 0; i < 32; i++)
                        dot += (int32_t)wb[512 * k + 64 * (i / 4) + 4 * l + i % 4] * xq[32 * k + i];
                    acc[l] = fmaf((float)dot, vb_f16_to_f32(wd[16 * k + l]) * dx, acc[l]);
                }
            }
            memcpy(a->Y + r * a->n_out + b * VB_PACK_LANES, acc, (size_t)n_valid * sizeof(float));
        }
    }
}

/* Portable path: per block and X row, 16 fmaf chains over i (the same operations, in the
 * same order, as one lane of the SIMD tiles). */
static void mm_packed_portable(const vb_mm_args *a, int64_t b0, int64_t b1) {
    if (a->type == VB_TYPE_Q8_0) {
        mm_packed_q8_0_portable(a, b0, b1);
        return;
    }
    const size_t es = elem_bytes(a->type);
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *wb = a->W + (size_t)b * (size_t)a->n_in * VB_PACK_LANES * es; /* [n_in][16] */
        int64_t n_valid = a->n_out - b * VB_PACK_LANES;
        if (n_valid > VB_PACK_LANES) n_valid = VB_PACK_LANES;
        for (int64_t r = 0; r < a->n_rows; r++) {
            const float *x = a->X + r * a->n_in; /* [n_in] */
            float acc[VB_PACK_LANES] = {0};
            for (int64_t i = 0; i < a->n_in; i++) {
                const uint8_t *wi = wb + (size_t)i * VB_PACK_LANES * es;
                for (int l = 0; l < VB_PACK_LANES; l++)
                    acc[l] = fmaf(packed_elem(a->type, wi + (size_t)l * es), x[i], acc[l]);
            }
            memcpy(a->Y + r * a->n_out + b * VB_PACK_LANES, acc, (size_t)n_valid * sizeof(float));
        }
    }
}

void vb_q8_panel_fill(const vb_mm_args *a, int32_t *panel) {
    const int64_t nb = a->x8.nb;
    for (int64_t t = 0; t < a->n_rows; t += VB_Q8_PANEL_ROWS) {
        const int R = a->n_rows - t < VB_Q8_PANEL_ROWS ? (int)(a->n_rows - t) : VB_Q8_PANEL_ROWS;
        int32_t *p = panel + t / VB_Q8_PANEL_ROWS * nb * VB_Q8_PANEL_STRIDE(VB_Q8_PANEL_ROWS);
        for (int64_t k = 0; k < nb; k++, p += VB_Q8_PANEL_STRIDE(R))
            for (int r = 0; r < R; r++) {
                const int64_t row = t + r;
                const int8_t *q = a->x8.q + row * a->n_in + 32 * k; /* [32] */
                for (int c = 0; c < 8; c++) memcpy(&p[c * R + r], q + 4 * c, 4);
                p[VB_Q8_PANEL_START(R) + r] = vb_q8_dot_start(a->x8.isum[row * nb + k]);
                memcpy(&p[VB_Q8_PANEL_SCALE(R) + r], &a->x8.d[row * nb + k], sizeof(float));
            }
    }
}

typedef struct {
    const vb_mm_args *args;
    int level;
} packed_task;

static void packed_task_fn(void *arg, int ith, int nth) {
    const packed_task *t = arg;
    const vb_mm_args *a = t->args;
    int64_t n_blocks = (a->n_out + VB_PACK_LANES - 1) / VB_PACK_LANES;
    int64_t b0 = n_blocks * ith / nth, b1 = n_blocks * (ith + 1) / nth;
    if (b0 >= b1) return;
    if (t->level == VB_KLEVEL_AVX512) vb_mm_packed_avx512(a, b0, b1);
    else if (t->level == VB_KLEVEL_AVX2 && a->type != VB_TYPE_Q8_0) vb_mm_packed_avx2(a, b0, b1);
    else mm_packed_portable(a, b0, b1);
}

void vb_matmul_packed(vb_threadpool *tp, uint32_t type, const void *packed, int64_t n_in,
                      int64_t n_out, const float *X, int64_t n_rows, float *Y, bool x_unchanged) {
    if (n_rows <= 0 || n_out <= 0) return;
    if (!vb_packed_supported(type) || !packed || n_in <= 0) {
        memset(Y, 0, (size_t)(n_rows * n_out) * sizeof(float));
        return;
    }
    vb_mm_args a = {.type = type, .W = packed, .n_in = n_in, .n_out = n_out, .X = X,
                    .n_rows = n_rows, .Y = Y};
    packed_task task = {&a, vb_kernels_level()};
    /* Small products are not worth waking the workers for (as vb_matmul). */
    if (n_rows * n_out * n_in < 32768) tp = NULL;
    if (type == VB_TYPE_Q8_0) {
        uint8_t *panel = NULL;
        bool reused = false;
        size_t panel_bytes = (size_t)vb_q8_panel_words(n_rows, n_in / 32) * sizeof(int32_t);
        if (vb_x8_prepare(tp, &a, task.level, VB_TYPE_COUNT + VB_TYPE_Q8_0, panel_bytes, x_unchanged,
                          &panel, &reused) != VB_OK) {
            memset(Y, 0, (size_t)(n_rows * n_out) * sizeof(float)); /* no memory for the activations */
            return;
        }
        if (!reused) vb_q8_panel_fill(&a, (int32_t *)panel);
        a.panel = (const int32_t *)panel;
    }
    vb_threadpool_run(tp, packed_task_fn, &task);
}
