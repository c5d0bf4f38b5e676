/* test_kernels.c - CPU kernels and thread pool: dequantization of hand-built blocks of every
 * type, quantizers (bit-exact cases for Q8_0/Q4_0, error bounds for all), f16/bf16 round
 * trips, every instruction-set path of vb_matmul against vb_matmul_ref for every type over
 * odd shapes and row counts, the thread pool's one-call-per-ith contract, and the
 * bandwidth probe. */
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/cpu/kernels.h"
#include "backends/cpu/membw.h"
#include "backends/cpu/threadpool.h"
#include "test.h"
#include "vibee.h"

/* ------------------------------------------------------------------ helpers */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rng_uniform(void) { /* [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static float rng_normal(void) { /* sum of 4 uniforms: roughly gaussian, sd ~1.15 */
    return rng_uniform() + rng_uniform() + rng_uniform() + rng_uniform();
}

static double rel_rms(const float *a, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (double)(a[i] - ref[i]) * (a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Byte offsets of the f16 fields (scales, minimums) in one block of each quantized type. */
static const struct { uint32_t type; int n; int off[2]; } block_f16_fields[] = {
    {VB_TYPE_Q4_0, 1, {0}},   {VB_TYPE_Q4_1, 2, {0, 2}},   {VB_TYPE_Q5_0, 1, {0}},
    {VB_TYPE_Q5_1, 2, {0, 2}}, {VB_TYPE_Q8_0, 1, {0}},     {VB_TYPE_IQ4_NL, 1, {0}},
    {VB_TYPE_Q2_K, 2, {80, 82}}, {VB_TYPE_Q3_K, 1, {108}}, {VB_TYPE_Q4_K, 2, {0, 2}},
    {VB_TYPE_Q5_K, 2, {0, 2}}, {VB_TYPE_Q6_K, 1, {208}},   {VB_TYPE_IQ4_XS, 1, {0}},
};

int vbt_random_blocks(unsigned type, void *dst, long long n_blocks, unsigned seed) {
    const vb_type_traits *tr = vb_type_get(type);
    int k = -1;
    for (size_t i = 0; i < sizeof block_f16_fields / sizeof block_f16_fields[0]; i++)
        if (block_f16_fields[i].type == type) k = (int)i;
    if (!tr || k < 0) return -1;
    uint64_t st = 0x2545F4914F6CDD1Dull ^ ((uint64_t)seed * 0x9E3779B97F4A7C15ull);
    uint8_t *p = dst;
    for (long long b = 0; b < n_blocks; b++) {
        uint8_t *blk = p + b * tr->block_bytes;
        for (int i = 0; i < tr->block_bytes; i++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            blk[i] = (uint8_t)(st >> 32);
        }
        for (int f = 0; f < block_f16_fields[k].n; f++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            float v = (float)((st >> 40) & 0xFFFFFF) / 16777216.0f * 0.2f - 0.1f;
            uint16_t h = vb_f32_to_f16(v);
            memcpy(blk + block_f16_fields[k].off[f], &h, 2);
        }
    }
    return 0;
}

/* One row of n floats as `type`: vibee's quantizer where it has one, else random blocks. */
static void make_row(uint32_t type, const float *x, void *dst, int64_t n, unsigned seed) {
    if (vb_quantize_row(type, x, dst, n) == VB_ERR_UNSUPPORTED)
        vbt_random_blocks(type, dst, n / vb_type_get(type)->block_elems, seed);
}

/* ------------------------------------------------------------------ dequantization by hand */

TEST(kernels_dequant_q8_0_hand) {
    vb_block_q8_0 b[2];
    b[0].d = 0x3800; /* 0.5 */
    b[1].d = 0xC000; /* -2.0 */
    for (int i = 0; i < 32; i++) {
        b[0].qs[i] = (int8_t)(i - 16);
        b[1].qs[i] = (int8_t)(i == 0 ? -128 : 127 - i);
    }
    float y[64];
    vb_dequantize_row(VB_TYPE_Q8_0, b, y, 64);
    for (int i = 0; i < 32; i++) {
        CHECKF(y[i] == 0.5f * (i - 16), "y[%d] = %g", i, y[i]);
        float e = -2.0f * (i == 0 ? -128 : 127 - i);
        CHECKF(y[32 + i] == e, "y[%d] = %g want %g", 32 + i, y[32 + i], e);
    }
}

TEST(kernels_dequant_q4_0_hand) {
    vb_block_q4_0 b;
    b.d = 0x4000; /* 2.0 */
    for (int i = 0; i < 16; i++) b.qs[i] = (uint8_t)(i | ((15 - i) << 4));
    float y[32];
    vb_dequantize_row(VB_TYPE_Q4_0, &b, y, 32);
    for (int i = 0; i < 16; i++) {
        CHECKF(y[i] == 2.0f * (i - 8), "low nibble element %d = %g", i, y[i]);
        CHECKF(y[16 + i] == 2.0f * (15 - i - 8), "high nibble element %d = %g", 16 + i, y[16 + i]);
    }
}

TEST(kernels_dequant_q4_k_hand) {
    vb_block_q4_k b;
    memset(&b, 0, sizeof b);
    b.d = 0x3C00;    /* 1.0 */
    b.dmin = 0x3800; /* 0.5 */
    /* scales 0..3 in bytes 0..3 (low 6 bits), mins 0..3 in bytes 4..7; scales/mins 4..7 take
     * their low 4 bits from bytes 8..11 and their high 2 bits from the top of bytes 0..7. */
    const int sc[8] = {1, 2, 3, 63, 5 + 16, 6, 7 + 48, 8};
    const int mn[8] = {9, 10, 0, 12, 13, 14 + 32, 15, 4};
    for (int j = 0; j < 4; j++) {
        b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
    }
    int q[256];
    for (int i = 0; i < 256; i++) q[i] = (i * 7 + 3) % 16;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 32; i++) b.qs[32 * k + i] = (uint8_t)(q[64 * k + i] | (q[64 * k + 32 + i] << 4));
    float y[256];
    vb_dequantize_row(VB_TYPE_Q4_K, &b, y, 256);
    for (int i = 0; i < 256; i++) {
        float e = 1.0f * sc[i / 32] * q[i] - 0.5f * mn[i / 32];
        CHECKF(y[i] == e, "element %d: %g want %g", i, y[i], e);
    }
}

TEST(kernels_dequant_q6_k_hand) {
    vb_block_q6_k b;
    memset(&b, 0, sizeof b);
    b.d = 0x3400; /* 0.25 */
    for (int k = 0; k < 16; k++) b.scales[k] = (int8_t)(k % 2 ? -(k + 1) : k + 1);
    int q[256];
    for (int i = 0; i < 256; i++) q[i] = (i * 13 + 5) % 64;
    /* element 128 h + 32 g + l: 4 low bits in ql[64 h + l + 32 (g & 1)] (low nibble for g < 2,
     * high for g >= 2), 2 high bits in qh[32 h + l] at bit 2 g. */
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) {
                int v = q[128 * h + 32 * g + l];
                b.ql[64 * h + l + 32 * (g & 1)] |= (uint8_t)((v & 0xF) << (g >= 2 ? 4 : 0));
                b.qh[32 * h + l] |= (uint8_t)((v >> 4) << (2 * g));
            }
    float y[256];
    vb_dequantize_row(VB_TYPE_Q6_K, &b, y, 256);
    for (int i = 0; i < 256; i++) {
        float e = 0.25f * b.scales[i / 16] * (q[i] - 32);
        CHECKF(y[i] == e, "element %d: %g want %g", i, y[i], e);
    }
}

TEST(kernels_dequant_float_types) {
    uint16_t h[3] = {0x3C00, 0xC100, 0x0001}; /* 1, -2.5, smallest subnormal */
    float y[3];
    vb_dequantize_row(VB_TYPE_F16, h, y, 3);
    CHECK(y[0] == 1.0f && y[1] == -2.5f && y[2] == ldexpf(1.0f, -24));
    uint16_t bf[2] = {0x3F80, 0xC020}; /* 1, -2.5 */
    vb_dequantize_row(VB_TYPE_BF16, bf, y, 2);
    CHECK(y[0] == 1.0f && y[1] == -2.5f);
}

/* ------------------------------------------------------------------ quantizers */

TEST(kernels_quantize_q8_0_q4_0_exact) {
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16);
    vb_block_q8_0 q8;
    CHECK_EQ_INT(vb_quantize_row(VB_TYPE_Q8_0, x, &q8, 32), VB_OK);
    CHECK_EQ_INT(q8.d, vb_f32_to_f16(16.0f / 127.0f));
    const float d = 16.0f / 127.0f, id = 1.0f / d; /* ggml: d = amax / 127, q = round(x / d) */
    for (int i = 0; i < 32; i++) {
        int e = (int)roundf((float)(i - 16) * id);
        CHECKF(q8.qs[i] == e, "q8_0 q[%d] = %d want %d", i, q8.qs[i], e);
    }
    CHECK(q8.qs[0] == -127 && q8.qs[31] == 119);

    /* Q4_0: the largest magnitude is x[0] = -16 -> d = -16 / -8 = 2, q = min(15, (int)(x/2 + 8.5)) */
    vb_block_q4_0 q4;
    CHECK_EQ_INT(vb_quantize_row(VB_TYPE_Q4_0, x, &q4, 32), VB_OK);
    CHECK_EQ_INT(q4.d, 0x4000);
    for (int i = 0; i < 16; i++) {
        int lo = (int)((float)(i - 16) / 2.0f + 8.5f), hi = (int)((float)i / 2.0f + 8.5f);
        if (hi > 15) hi = 15;
        CHECKF(q4.qs[i] == (uint8_t)(lo | (hi << 4)), "q4_0 byte %d = 0x%02x", i, q4.qs[i]);
    }
    /* a block whose largest magnitude is positive gets a negative d */
    x[5] = 40.0f;
    CHECK_EQ_INT(vb_quantize_row(VB_TYPE_Q4_0, x, &q4, 32), VB_OK);
    CHECK(vb_f16_to_f32(q4.d) == -5.0f);
    CHECK_EQ_INT(q4.qs[5] & 0xF, 0); /* 40 / -5 + 8.5 = 0.5 -> 0 */
    /* all zero: d = 0, every q = 8 */
    memset(x, 0, sizeof x);
    CHECK_EQ_INT(vb_quantize_row(VB_TYPE_Q4_0, x, &q4, 32), VB_OK);
    CHECK(vb_f16_to_f32(q4.d) == 0.0f && q4.qs[0] == 0x88 && q4.qs[15] == 0x88);
    CHECK_EQ_INT(vb_quantize_row(VB_TYPE_Q8_0, x, &q8, 31), VB_ERR_ARG);
    CHECK_EQ_INT(vb_quantize_row(VB_TYPE_Q8_1, x, &q8, 32), VB_ERR_UNSUPPORTED);
}

static void roundtrip(uint32_t type, int64_t n, double *err) {
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    void *q = malloc((size_t)vb_type_row_bytes(type, n));
    for (int64_t i = 0; i < n; i++) x[i] = rng_uniform();
    *err = -1;
    if (vb_quantize_row(type, x, q, n) == VB_OK) {
        vb_dequantize_row(type, q, y, n);
        *err = rel_rms(y, x, n);
    }
    free(x), free(y), free(q);
}

TEST(kernels_quantize_roundtrip_error) {
    const struct { uint32_t type; double bound; } cases[] = {
        {VB_TYPE_F32, 0.0},     {VB_TYPE_F16, 5e-4},  {VB_TYPE_BF16, 4e-3}, {VB_TYPE_Q8_0, 5e-3},
        {VB_TYPE_Q4_0, 0.10},   {VB_TYPE_Q4_K, 0.08}, {VB_TYPE_Q6_K, 0.02},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double err;
        roundtrip(cases[c].type, 4096, &err);
        CHECKF(err >= 0 && err <= cases[c].bound, "%s: rel rms %g > %g", vb_type_get(cases[c].type)->name,
               err, cases[c].bound);
    }
}

TEST(kernels_f16_bf16_roundtrip) {
    /* every finite f16 converts to f32 and back unchanged */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        float f;
        vb_dequantize_row(VB_TYPE_F16, &(uint16_t){(uint16_t)h}, &f, 1);
        uint16_t back;
        vb_quantize_row(VB_TYPE_F16, &f, &back, 1);
        CHECKF(back == h, "f16 0x%04x -> %g -> 0x%04x", h, f, back);
    }
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7F80) == 0x7F80) continue;
        float f;
        vb_dequantize_row(VB_TYPE_BF16, &(uint16_t){(uint16_t)h}, &f, 1);
        uint16_t back;
        vb_quantize_row(VB_TYPE_BF16, &f, &back, 1);
        CHECKF(back == h, "bf16 0x%04x -> %g -> 0x%04x", h, f, back);
    }
    /* rounding to nearest: 1 + 2^-11 is halfway between two f16 values -> even (1.0) */
    float f = 1.0f + ldexpf(1.0f, -11);
    uint16_t h;
    vb_quantize_row(VB_TYPE_F16, &f, &h, 1);
    CHECK_EQ_INT(h, 0x3C00);
}

TEST(kernels_get_row) {
    int64_t n = 64, rows = 5;
    float w[5 * 64];
    for (int i = 0; i < rows * n; i++) w[i] = rng_normal();
    vb_block_q8_0 q[5 * 2];
    for (int r = 0; r < rows; r++) vb_quantize_row(VB_TYPE_Q8_0, w + r * n, q + 2 * r, n);
    float got[64], want[64];
    vb_get_row(VB_TYPE_Q8_0, q, n, 3, got);
    vb_dequantize_row(VB_TYPE_Q8_0, q + 6, want, n);
    CHECK(memcmp(got, want, sizeof got) == 0);
}

/* ------------------------------------------------------------------ matmul: paths vs reference */

/* Error of one Y row against the reference, relative to the larger of the reference row's norm
 * and its expected norm for unrelated W and X (sqrt(sum_o |w_o|^2 |x|^2 / n_in)): a single
 * output that happens to cancel to ~0 must not turn rounding noise into a "large" error. */
static double row_error(const float *y, const float *yref, const float *wf, const float *x, int64_t n_in,
                        int64_t n_out) {
    double num = 0, den = 0, w2 = 0, x2 = 0;
    for (int64_t o = 0; o < n_out; o++) {
        num += (double)(y[o] - yref[o]) * (y[o] - yref[o]);
        den += (double)yref[o] * yref[o];
    }
    for (int64_t i = 0; i < n_in * n_out; i++) w2 += (double)wf[i] * wf[i];
    for (int64_t i = 0; i < n_in; i++) x2 += (double)x[i] * x[i];
    if (w2 * x2 / (double)n_in > den) den = w2 * x2 / (double)n_in;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_matmul_type(uint32_t type, double bound_quant) {
    const vb_type_traits *tr = vb_type_get(type);
    const int64_t n_ins_small[] = {32, 160, 288, 544}; /* 1, 5, 9 and 17 blocks */
    const int64_t n_ins_k[] = {256, 512};
    const int64_t n_ins_float[] = {7, 32, 100};
    const int64_t *n_ins = tr->block_elems == 256 ? n_ins_k : tr->block_elems == 32 ? n_ins_small : n_ins_float;
    int n_n_in = tr->block_elems == 256 ? 2 : tr->block_elems == 32 ? 4 : 3;
    const int64_t n_outs[] = {1, 3, 17, 259};
    const int64_t n_rowss[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33}; /* every lane-group size D */
    bool is_float = type == VB_TYPE_F32 || type == VB_TYPE_F16 || type == VB_TYPE_BF16;
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    int max_level = vb_kernels_max_level();
    for (int level = 0; level <= max_level; level++) {
        CHECK_EQ_INT(vb_kernels_force_level(level), level);
        for (int a = 0; a < n_n_in; a++)
            for (size_t b = 0; b < sizeof n_outs / sizeof n_outs[0]; b++)
                for (size_t c = 0; c < sizeof n_rowss / sizeof n_rowss[0]; c++) {
                    int64_t n_in = n_ins[a], n_out = n_outs[b], n_rows = n_rowss[c];
                    int64_t rb = vb_type_row_bytes(type, n_in);
                    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
                    uint8_t *W = malloc((size_t)(rb * n_out));
                    float *X = malloc((size_t)(n_in * n_rows) * sizeof(float));
                    float *Y = malloc((size_t)(n_out * n_rows) * sizeof(float));
                    float *Yr = malloc((size_t)(n_out * n_rows) * sizeof(float));
                    for (int64_t i = 0; i < n_in * n_out; i++) wf[i] = rng_normal();
                    for (int64_t o = 0; o < n_out; o++)
                        make_row(type, wf + o * n_in, W + o * rb, n_in, (unsigned)(o + 7 * n_in));
                    if (vb_quantize_row(type, wf, W, n_in) == VB_ERR_UNSUPPORTED) /* random blocks */
                        for (int64_t o = 0; o < n_out; o++) vb_dequantize_row(type, W + o * rb, wf + o * n_in, n_in);
                    for (int64_t i = 0; i < n_in * n_rows; i++) X[i] = rng_normal() * (1 + (i % 5));
                    if (n_rows >= 3) memset(X + n_in, 0, (size_t)n_in * sizeof(float)); /* a zero row */
                    vb_matmul_ref(type, W, n_in, n_out, X, n_rows, Yr);
                    for (int use_tp = 0; use_tp < 2; use_tp++) {
                        memset(Y, 0xFF, (size_t)(n_out * n_rows) * sizeof(float)); /* NaN */
                        vb_matmul(use_tp ? tp : NULL, type, W, n_in, n_out, X, n_rows, Y);
                        double bound = (is_float || level == 0) ? 2e-5 : bound_quant;
                        for (int64_t r = 0; r < n_rows; r++) {
                            double e = row_error(Y + r * n_out, Yr + r * n_out, wf, X + r * n_in, n_in, n_out);
                            if (!(e <= bound)) {
                                vb_kernels_force_level(-1);
                                vb_threadpool_free(tp);
                                CHECKF(0, "%s level %s tp %d n_in %lld n_out %lld n_rows %lld row %lld: rel err %g > %g",
                                       tr->name, vb_kernels_level_name(level), use_tp, (long long)n_in,
                                       (long long)n_out, (long long)n_rows, (long long)r, e, bound);
                            }
                        }
                    }
                    free(wf), free(W), free(X), free(Y), free(Yr);
                }
    }
    vb_kernels_force_level(-1);
    vb_threadpool_free(tp);
}

TEST(kernels_matmul_f32) { check_matmul_type(VB_TYPE_F32, 2e-5); }
TEST(kernels_matmul_f16) { check_matmul_type(VB_TYPE_F16, 2e-5); }
TEST(kernels_matmul_bf16) { check_matmul_type(VB_TYPE_BF16, 2e-5); }
TEST(kernels_matmul_q8_0) { check_matmul_type(VB_TYPE_Q8_0, 4e-2); }
TEST(kernels_matmul_q4_0) { check_matmul_type(VB_TYPE_Q4_0, 4e-2); }
TEST(kernels_matmul_q4_k) { check_matmul_type(VB_TYPE_Q4_K, 4e-2); }
TEST(kernels_matmul_q6_k) { check_matmul_type(VB_TYPE_Q6_K, 4e-2); }
TEST(kernels_matmul_q4_1) { check_matmul_type(VB_TYPE_Q4_1, 4e-2); }
TEST(kernels_matmul_q5_0) { check_matmul_type(VB_TYPE_Q5_0, 4e-2); }
TEST(kernels_matmul_q5_1) { check_matmul_type(VB_TYPE_Q5_1, 4e-2); }
TEST(kernels_matmul_iq4_nl) { check_matmul_type(VB_TYPE_IQ4_NL, 4e-2); }
TEST(kernels_matmul_q2_k) { check_matmul_type(VB_TYPE_Q2_K, 4e-2); }
TEST(kernels_matmul_q3_k) { check_matmul_type(VB_TYPE_Q3_K, 4e-2); }
TEST(kernels_matmul_q5_k) { check_matmul_type(VB_TYPE_Q5_K, 4e-2); }
TEST(kernels_matmul_iq4_xs) { check_matmul_type(VB_TYPE_IQ4_XS, 4e-2); }

/* More X rows than one pass of the kernels takes (64): the chunking over X rows, the parallel
 * quantization of X, and every path. */
TEST(kernels_matmul_many_rows) {
    const uint32_t types[] = {VB_TYPE_Q8_0, VB_TYPE_Q4_0, VB_TYPE_Q4_K, VB_TYPE_F16};
    int64_t n_in = 512, n_out = 37, n_rows = 130;
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
    float *X = malloc((size_t)(n_in * n_rows) * sizeof(float));
    float *Y = malloc((size_t)(n_out * n_rows) * sizeof(float)), *Yr = malloc((size_t)(n_out * n_rows) * sizeof(float));
    uint8_t *W = malloc((size_t)(n_in * n_out) * 4);
    for (int64_t i = 0; i < n_in * n_out; i++) wf[i] = rng_normal();
    for (int64_t i = 0; i < n_in * n_rows; i++) X[i] = rng_normal();
    int bad = 0;
    for (size_t t = 0; t < sizeof types / sizeof types[0] && !bad; t++) {
        int64_t rb = vb_type_row_bytes(types[t], n_in);
        for (int64_t o = 0; o < n_out; o++) vb_quantize_row(types[t], wf + o * n_in, W + o * rb, n_in);
        vb_matmul_ref(types[t], W, n_in, n_out, X, n_rows, Yr);
        for (int level = 0; level <= vb_kernels_max_level() && !bad; level++) {
            vb_kernels_force_level(level);
            vb_matmul(tp, types[t], W, n_in, n_out, X, n_rows, Y);
            double e = rel_rms(Y, Yr, n_out * n_rows);
            double bound = types[t] == VB_TYPE_F16 || level == 0 ? 1e-5 : 1e-2;
            if (!(e <= bound)) {
                fprintf(stderr, "    %s level %d: rel err %g > %g\n", vb_type_get(types[t])->name, level, e, bound);
                bad = 1;
            }
        }
    }
    vb_kernels_force_level(-1);
    vb_threadpool_free(tp);
    free(wf), free(X), free(Y), free(Yr), free(W);
    CHECK(!bad);
}

/* Per-row bound for int8 activations is 4e-2 because a row with n_out = 1 is a single sample
 * of an error whose RMS is ~0.6% (max over hundreds of samples ~2%); the aggregate error over
 * many outputs is checked against 1e-2 here. */
/* The 8-bit activation error must actually be small, and a wrong kernel must be caught: a
 * check that the tolerance is not vacuous (the product of a shuffled W is far off). */
TEST(kernels_matmul_bound_is_tight) {
    int64_t n_in = 256, n_out = 64;
    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float)), X[256], Y[64], Yr[64];
    vb_block_q8_0 *W = malloc((size_t)vb_type_row_bytes(VB_TYPE_Q8_0, n_in) * (size_t)n_out);
    for (int64_t i = 0; i < n_in * n_out; i++) wf[i] = rng_normal();
    for (int64_t i = 0; i < n_in; i++) X[i] = rng_normal();
    for (int64_t o = 0; o < n_out; o++) vb_quantize_row(VB_TYPE_Q8_0, wf + o * n_in, W + o * 8, n_in);
    vb_matmul_ref(VB_TYPE_Q8_0, W, n_in, n_out, X, 1, Yr);
    vb_matmul(NULL, VB_TYPE_Q8_0, W, n_in, n_out, X, 1, Y);
    double e = rel_rms(Y, Yr, n_out);
    CHECKF(e < 1e-2, "int8-activation error %g", e);
    for (int64_t o = 0; o < n_out; o++) { /* swap the first two blocks of every row */
        vb_block_q8_0 tmp = W[8 * o];
        W[8 * o] = W[8 * o + 1];
        W[8 * o + 1] = tmp;
    }
    vb_matmul(NULL, VB_TYPE_Q8_0, W, n_in, n_out, X, 1, Y);
    CHECK(rel_rms(Y, Yr, n_out) > 2e-2);
    free(wf), free(W);
}

TEST(kernels_cpu_features) {
    const char *f = vb_cpu_features();
    CHECK(f != NULL);
    int max = vb_kernels_max_level();
    CHECK(max >= VB_KLEVEL_PORTABLE && max <= VB_KLEVEL_AVX512);
    if (max >= VB_KLEVEL_AVX2) CHECK(strstr(f, "avx2") && strstr(f, "fma") && strstr(f, "f16c"));
    if (max == VB_KLEVEL_AVX512) CHECK(strstr(f, "avx512vnni") != NULL);
    CHECK_EQ_INT(vb_kernels_force_level(99), max); /* capped */
    vb_kernels_force_portable(true);
    CHECK_EQ_INT(vb_kernels_level(), VB_KLEVEL_PORTABLE);
    vb_kernels_force_portable(false);
    CHECK_EQ_INT(vb_kernels_level(), max);
    CHECK_EQ_INT(vb_kernels_force_level(-1), max);
}

/* ------------------------------------------------------------------ thread pool */

typedef struct {
    int counts[8];
    int nth_seen;
    int bad;
} tp_probe;

static void tp_count(void *arg, int ith, int nth) {
    tp_probe *p = arg;
    if (ith < 0 || ith >= 8 || nth != p->nth_seen) {
        __atomic_store_n(&p->bad, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&p->counts[ith], 1, __ATOMIC_RELAXED);
}

TEST(kernels_threadpool_each_ith_once) {
    for (int n = 1; n <= 4; n++) {
        vb_threadpool *tp = vb_threadpool_create(n);
        CHECK(tp != NULL);
        CHECK_EQ_INT(vb_threadpool_size(tp), n);
        for (int run = 0; run < 500; run++) {
            tp_probe p = {.nth_seen = n};
            vb_threadpool_run(tp, tp_count, &p);
            if (run == 250) usleep(2000); /* let the workers fall asleep on the futex */
            int ok = !p.bad;
            for (int i = 0; i < 8; i++) ok &= p.counts[i] == (i < n ? 1 : 0);
            if (!ok) {
                vb_threadpool_free(tp);
                CHECKF(0, "n=%d run %d: an ith ran other than once", n, run);
            }
        }
        vb_threadpool_free(tp);
    }
    tp_probe p = {.nth_seen = 1};
    vb_threadpool_run(NULL, tp_count, &p);
    CHECK(p.counts[0] == 1 && !p.bad);
    CHECK(vb_threadpool_create(0) == NULL);
    vb_threadpool_free(NULL);
}

/* A caller bound to one core (as an OpenMP runtime binds the initial thread under
 * OMP_PROC_BIND): the pool's workers still get every online CPU, so they do not all share it. */
static void tp_cpus(void *arg, int ith, int nth) {
    (void)nth;
    cpu_set_t m;
    int *cpus = arg;
    cpus[ith] = sched_getaffinity(0, sizeof m, &m) == 0 ? CPU_COUNT(&m) : -1;
}

TEST(kernels_threadpool_workers_not_stuck_on_a_bound_core) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t saved, one;
    CHECK(sched_getaffinity(0, sizeof saved, &saved) == 0);
    if (online < 2 || CPU_COUNT(&saved) < 2) {
        vbt_skip("fewer than 2 CPUs available");
        return;
    }
    int first = 0;
    while (!CPU_ISSET(first, &saved)) first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    CHECK(sched_setaffinity(0, sizeof one, &one) == 0);
    vb_threadpool *tp = vb_threadpool_create(2);
    int cpus[2] = {0, 0};
    if (tp) vb_threadpool_run(tp, tp_cpus, cpus);
    vb_threadpool_free(tp);
    sched_setaffinity(0, sizeof saved, &saved);
    CHECK(tp != NULL);
    CHECK_EQ_INT(cpus[0], 1);                    /* the caller keeps its binding */
    CHECKF(cpus[1] >= 2, "the worker inherited the caller's one-core mask (%d CPUs)", cpus[1]);
}

static void tp_noop(void *arg, int ith, int nth) { (void)arg, (void)ith, (void)nth; }

TEST(kernels_threadpool_overhead) {
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    struct timespec t0, t1;
    for (int i = 0; i < 100; i++) vb_threadpool_run(tp, tp_noop, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = 2000;
    for (int i = 0; i < n; i++) vb_threadpool_run(tp, tp_noop, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / n;
    vb_threadpool_free(tp);
    printf("    threadpool: %.2f us per run with 2 threads\n", us);
    /* generous: on a shared, oversubscribed 2-core machine the worker waits for a CPU; the
     * target on an idle machine is < 5 us. This catches lost wake-ups (which would cost a
     * scheduler tick or hang), not speed. */
    CHECKF(us < 20000.0, "%.1f us per run", us);
}

TEST(kernels_membw_probe) {
    vb_threadpool *tp = vb_threadpool_create(2);
    double gbs = vb_membw_measure(tp, (size_t)16 << 20, 2);
    vb_threadpool_free(tp);
    CHECKF(gbs > 0.1 && gbs < 10000, "%g GB/s", gbs);
}

/* Q8_0 / Q4_0 / Q4_K / Q6_K: a K-row product gives every row exactly (bit for bit) what a one-row product
 * gives, on every path, for row counts that take each kernel (per-row tiles, lane groups of
 * every width, several lane groups) and block counts with and without a partial group of 8
 * (a batched verify must see the logits of one-row decoding; kernels_internal.h). */
TEST(kernels_matmul_k_rows_bit_identical_to_one_row) {
    const uint32_t types[] = {VB_TYPE_Q8_0, VB_TYPE_Q4_0, VB_TYPE_Q4_K, VB_TYPE_Q6_K,
                              VB_TYPE_Q4_1, VB_TYPE_Q5_0, VB_TYPE_Q5_1, VB_TYPE_IQ4_NL,
                              VB_TYPE_Q2_K, VB_TYPE_Q3_K, VB_TYPE_Q5_K, VB_TYPE_IQ4_XS};
    const int64_t n_ins[] = {32, 288, 512, 800, 2592}, n_ins_k[] = {256, 512, 768, 3072, 1024};
    const int64_t ks[] = {2, 3, 4, 5, 8, 9, 16, 17, 33, 70};
    const int64_t n_out = 21;
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    int bad = 0;
    for (int level = 0; level <= vb_kernels_max_level() && !bad; level++) {
        vb_kernels_force_level(level);
        for (size_t t = 0; t < sizeof types / sizeof types[0] && !bad; t++)
            for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0] && !bad; a++) {
                int64_t n_in = vb_type_get(types[t])->block_elems == 256 ? n_ins_k[a] : n_ins[a];
                int64_t rb = vb_type_row_bytes(types[t], n_in);
                float *wf = malloc((size_t)n_in * sizeof(float));
                uint8_t *W = malloc((size_t)(rb * n_out));
                float *X = malloc((size_t)(70 * n_in) * sizeof(float));
                float *Y = malloc((size_t)(70 * n_out) * sizeof(float)), Y1[21];
                for (int64_t o = 0; o < n_out; o++) {
                    for (int64_t i = 0; i < n_in; i++) wf[i] = rng_normal();
                    make_row(types[t], wf, W + o * rb, n_in, (unsigned)o);
                }
                for (int64_t i = 0; i < 70 * n_in; i++) X[i] = rng_normal() * (1 + (i % 3));
                for (size_t k = 0; k < sizeof ks / sizeof ks[0] && !bad; k++) {
                    vb_matmul(ks[k] >= 16 ? tp : NULL, types[t], W, n_in, n_out, X, ks[k], Y);
                    for (int64_t r = 0; r < ks[k] && !bad; r++) {
                        vb_matmul(NULL, types[t], W, n_in, n_out, X + r * n_in, 1, Y1);
                        if (memcmp(Y + r * n_out, Y1, sizeof Y1) != 0) {
                            fprintf(stderr, "    %s level %s n_in %lld K %lld row %lld differs from one row\n",
                                    vb_type_get(types[t])->name, vb_kernels_level_name(level),
                                    (long long)n_in, (long long)ks[k], (long long)r);
                            bad = 1;
                        }
                    }
                }
                free(wf), free(W), free(X), free(Y);
            }
    }
    vb_kernels_force_level(-1);
    vb_threadpool_free(tp);
    CHECK(!bad);
}
