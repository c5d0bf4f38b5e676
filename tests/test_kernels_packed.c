/* test_kernels_packed.c - the packed weight products (vb_pack_weights, vb_matmul_packed):
 * the float and Q8_0 layouts against their definitions, every instruction-set level against
 * vb_matmul_ref over odd shapes (n_out not a multiple of 16, small and odd n_in; Q8_0 against
 * its definition computed here in double: X quantized per 32, exact integer dots), K-row
 * products bit for bit equal to one-row products (K = 1..33, threads 1 and 2), the levels bit
 * for bit equal to each other, and a check that the error bound is not vacuous. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/kernels.h"
#include "backends/cpu/threadpool.h"
#include "test.h"
#include "vibee.h"

static uint64_t pk_rng = 0x243F6A8885A308D3ull;
static float pk_uniform(void) { /* [-1, 1) */
    pk_rng ^= pk_rng << 13;
    pk_rng ^= pk_rng >> 7;
    pk_rng ^= pk_rng << 17;
    return (float)((pk_rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}
static float pk_normal(void) { return pk_uniform() + pk_uniform() + pk_uniform() + pk_uniform(); }

static const uint32_t pk_types[] = {VB_TYPE_F32, VB_TYPE_F16, VB_TYPE_BF16};

/* A random [n_out][n_in] matrix of `type` (wf: its float values, rounded through the type). */
static void *pk_make_w(uint32_t type, int64_t n_in, int64_t n_out, float *wf) {
    int64_t rb = vb_type_row_bytes(type, n_in);
    uint8_t *W = malloc((size_t)(rb * n_out));
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) wf[o * n_in + i] = pk_normal();
        vb_quantize_row(type, wf + o * n_in, W + o * rb, n_in);
        vb_dequantize_row(type, W + o * rb, wf + o * n_in, n_in);
    }
    return W;
}

static void *pk_pack(uint32_t type, const void *W, int64_t n_in, int64_t n_out) {
    size_t bytes = vb_packed_bytes(type, n_in, n_out);
    void *P = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (P && vb_pack_weights(type, W, n_in, n_out, P) != VB_OK) {
        free(P);
        return NULL;
    }
    return P;
}

TEST(kernels_packed_layout) {
    const int64_t n_in = 5, n_out = 19; /* two blocks, the second with 3 rows and 13 of padding */
    float wf[19 * 5];
    for (size_t t = 0; t < sizeof pk_types / sizeof pk_types[0]; t++) {
        uint32_t type = pk_types[t];
        CHECK(vb_packed_supported(type));
        CHECK(vb_packed_bytes(type, n_in, n_out) == (size_t)(2 * n_in * 16 * (type == VB_TYPE_F32 ? 4 : 2)));
        uint8_t *W = pk_make_w(type, n_in, n_out, wf);
        uint8_t *P = pk_pack(type, W, n_in, n_out);
        CHECK(P != NULL);
        size_t es = type == VB_TYPE_F32 ? 4 : 2;
        for (int64_t b = 0; b < 2; b++)
            for (int64_t i = 0; i < n_in; i++)
                for (int64_t l = 0; l < 16; l++) {
                    const uint8_t *p = P + ((b * n_in + i) * 16 + l) * (int64_t)es;
                    int64_t o = b * 16 + l;
                    if (o < n_out) CHECK(memcmp(p, W + (o * n_in + i) * (int64_t)es, es) == 0);
                    else CHECK(p[0] == 0 && p[es - 1] == 0);
                }
        free(W), free(P);
    }
    CHECK(!vb_packed_supported(VB_TYPE_Q4_0));
    CHECK(vb_packed_bytes(VB_TYPE_Q4_0, 32, 16) == 0);
    char dummy[64];
    CHECK(vb_pack_weights(VB_TYPE_Q4_0, dummy, 32, 1, dummy) == VB_ERR_UNSUPPORTED);
}

/* Q8_0: 19 rows of 2 blocks -> two output blocks of [2 blocks][8 dwords][16 rows][4 bytes]
 * unsigned quants, then [2 blocks][16] F16 scales; padding rows are quant 0 (0x80), scale 0. */
TEST(kernels_packed_q8_0_layout) {
    const int64_t n_in = 64, n_out = 19, nb = 2;
    float wf[19 * 64];
    uint8_t *W = pk_make_w(VB_TYPE_Q8_0, n_in, n_out, wf);
    CHECK(vb_packed_supported(VB_TYPE_Q8_0));
    CHECK(vb_packed_bytes(VB_TYPE_Q8_0, n_in, n_out) == (size_t)(2 * nb * (512 + 32)));
    CHECK(vb_packed_bytes(VB_TYPE_Q8_0, 48, n_out) == 0); /* not a multiple of 32 */
    uint8_t *P = pk_pack(VB_TYPE_Q8_0, W, n_in, n_out);
    CHECK(P != NULL);
    const vb_block_q8_0 *blk = (const vb_block_q8_0 *)W;
    for (int64_t ob = 0; ob < 2; ob++) {
        const uint8_t *p = P + ob * nb * (512 + 32);
        for (int64_t k = 0; k < nb; k++)
            for (int64_t l = 0; l < 16; l++) {
                int64_t o = ob * 16 + l;
                uint16_t d;
                memcpy(&d, p + 512 * nb + 32 * k + 2 * l, 2);
                CHECK(d == (o < n_out ? blk[o * nb + k].d : 0));
                for (int i = 0; i < 32; i++) {
                    uint8_t q = p[512 * k + 64 * (i / 4) + 4 * l + i % 4];
                    CHECK(q == (o < n_out ? (uint8_t)(blk[o * nb + k].qs[i] + 128) : 0x80));
                }
            }
    }
    free(W), free(P);
}

/* Q8_0: every level and row count against the definition, in double: X quantized per 32
 * (d = amax / 127, q = round(x * 127 / amax), ties to even), exact integer dots, summed as
 * dw * dx * dot. Only the float rounding of the chain separates them. */
TEST(kernels_packed_q8_0_matches_definition) {
    const int64_t n_ins[] = {32, 96, 256, 768};
    const int64_t n_outs[] = {1, 17, 64, 130};
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    int bad = 0;
    for (int level = 0; level <= vb_kernels_max_level() && !bad; level++) {
        CHECK_EQ_INT(vb_kernels_force_level(level), level);
        for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0] && !bad; a++)
            for (size_t b = 0; b < sizeof n_outs / sizeof n_outs[0] && !bad; b++) {
                int64_t n_in = n_ins[a], n_out = n_outs[b], nb = n_in / 32, n_rows = 9;
                float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
                uint8_t *W = pk_make_w(VB_TYPE_Q8_0, n_in, n_out, wf);
                const vb_block_q8_0 *blk = (const vb_block_q8_0 *)W;
                void *P = pk_pack(VB_TYPE_Q8_0, W, n_in, n_out);
                float *X = malloc((size_t)(n_rows * n_in) * sizeof(float));
                float *Y = malloc((size_t)(n_rows * n_out) * sizeof(float));
                for (int64_t i = 0; i < n_rows * n_in; i++) X[i] = pk_normal() * (1 + (i % 5));
                memset(X + n_in, 0, (size_t)n_in * sizeof(float)); /* row 1: zeros */
                vb_matmul_packed(tp, VB_TYPE_Q8_0, P, n_in, n_out, X, n_rows, Y, false);
                for (int64_t r = 0; r < n_rows && !bad; r++)
                    for (int64_t o = 0; o < n_out && !bad; o++) {
                        double ref = 0, mag = 0;
                        for (int64_t k = 0; k < nb; k++) {
                            const float *xb = X + r * n_in + 32 * k;
                            float amax = 0;
                            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
                            float id = amax != 0 ? 127.0f / amax : 0.0f;
                            long dot = 0;
                            for (int i = 0; i < 32; i++) dot += lrintf(xb[i] * id) * blk[o * nb + k].qs[i];
                            double s = (double)vb_f16_to_f32(blk[o * nb + k].d) * (amax / 127.0f);
                            ref += s * (double)dot;
                            mag += fabs(s * (double)dot);
                        }
                        double y = Y[r * n_out + o];
                        if (!(fabs(y - ref) <= 1e-6 * mag + 1e-30)) {
                            fprintf(stderr, "    level %s n_in %lld n_out %lld row %lld out %lld: %g want %g\n",
                                    vb_kernels_level_name(level), (long long)n_in, (long long)n_out,
                                    (long long)r, (long long)o, y, ref);
                            bad = 1;
                        }
                    }
                free(wf), free(W), free(P), free(X), free(Y);
            }
    }
    vb_kernels_force_level(-1);
    vb_threadpool_free(tp);
    CHECK(!bad);
}

/* Error of Y against the reference relative to the expected norm for unrelated W and X (as
 * test_kernels.c row_error): sqrt(sum (y - yref)^2 / max(sum yref^2, |W|^2 |x|^2 / n_in)). */
static double pk_row_error(const float *y, const float *yref, const float *wf, const float *x,
                           int64_t n_in, int64_t n_out) {
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

TEST(kernels_packed_matches_reference) {
    const int64_t n_ins[] = {1, 7, 13, 32, 100, 257};
    const int64_t n_outs[] = {1, 3, 16, 17, 47, 130};
    const int64_t n_rowss[] = {1, 2, 3, 5, 8, 9, 17};
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    int bad = 0;
    for (int level = 0; level <= vb_kernels_max_level() && !bad; level++) {
        CHECK_EQ_INT(vb_kernels_force_level(level), level);
        for (size_t t = 0; t < sizeof pk_types / sizeof pk_types[0] && !bad; t++)
            for (size_t a = 0; a < sizeof n_ins / sizeof n_ins[0] && !bad; a++)
                for (size_t b = 0; b < sizeof n_outs / sizeof n_outs[0] && !bad; b++) {
                    uint32_t type = pk_types[t];
                    int64_t n_in = n_ins[a], n_out = n_outs[b];
                    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
                    uint8_t *W = pk_make_w(type, n_in, n_out, wf);
                    void *P = pk_pack(type, W, n_in, n_out);
                    float *X = malloc((size_t)(17 * n_in) * sizeof(float));
                    float *Y = malloc((size_t)(17 * n_out) * sizeof(float));
                    float *Yr = malloc((size_t)(17 * n_out) * sizeof(float));
                    for (int64_t i = 0; i < 17 * n_in; i++) X[i] = pk_normal() * (1 + (i % 5));
                    memset(X + n_in, 0, (size_t)n_in * sizeof(float)); /* row 1: zeros */
                    for (size_t c = 0; c < sizeof n_rowss / sizeof n_rowss[0] && !bad; c++) {
                        int64_t n_rows = n_rowss[c];
                        vb_matmul_ref(type, W, n_in, n_out, X, n_rows, Yr);
                        for (int use_tp = 0; use_tp < 2 && !bad; use_tp++) {
                            memset(Y, 0xFF, (size_t)(n_rows * n_out) * sizeof(float)); /* NaN */
                            vb_matmul_packed(use_tp ? tp : NULL, type, P, n_in, n_out, X, n_rows, Y, false);
                            for (int64_t r = 0; r < n_rows && !bad; r++) {
                                double e = pk_row_error(Y + r * n_out, Yr + r * n_out, wf, X + r * n_in,
                                                        n_in, n_out);
                                if (!(e <= 2e-6)) {
                                    fprintf(stderr, "    %s level %s tp %d n_in %lld n_out %lld rows %lld row %lld: "
                                            "rel err %g\n", vb_type_get(type)->name, vb_kernels_level_name(level),
                                            use_tp, (long long)n_in, (long long)n_out, (long long)n_rows,
                                            (long long)r, e);
                                    bad = 1;
                                }
                            }
                        }
                    }
                    free(wf), free(W), free(P), free(X), free(Y), free(Yr);
                }
    }
    vb_kernels_force_level(-1);
    vb_threadpool_free(tp);
    CHECK(!bad);
}

/* The bound above is tight enough to fail: a product with two W rows swapped is far off. */
TEST(kernels_packed_bound_is_not_vacuous) {
    const int64_t n_in = 100, n_out = 17;
    float wf[17 * 100], X[100], Y[17], Yr[17];
    uint8_t *W = pk_make_w(VB_TYPE_F16, n_in, n_out, wf);
    for (int64_t i = 0; i < n_in; i++) X[i] = pk_normal();
    vb_matmul_ref(VB_TYPE_F16, W, n_in, n_out, X, 1, Yr);
    uint8_t tmp[200];
    memcpy(tmp, W, 200), memcpy(W, W + 200 * 16, 200), memcpy(W + 200 * 16, tmp, 200); /* rows 0, 16 */
    void *P = pk_pack(VB_TYPE_F16, W, n_in, n_out);
    vb_matmul_packed(NULL, VB_TYPE_F16, P, n_in, n_out, X, 1, Y, false);
    CHECK(pk_row_error(Y, Yr, wf, X, n_in, n_out) > 1e-2);
    free(W), free(P);
}

/* K rows at once give each row exactly the bits of a one-row product, on every level, with
 * and without threads; and every level gives the same bits. */
TEST(kernels_packed_k_rows_bit_identical_to_one_row) {
    const int64_t shapes[][2] = {{256, 200}, {768, 64}, {100, 47}, {7, 33}, {1024, 40}}; /* n_in, n_out */
    vb_threadpool *tp = vb_threadpool_create(2);
    CHECK(tp != NULL);
    int bad = 0;
    const uint32_t types[] = {VB_TYPE_F32, VB_TYPE_F16, VB_TYPE_BF16, VB_TYPE_Q8_0};
    for (size_t t = 0; t < sizeof types / sizeof types[0] && !bad; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0] && !bad; s++) {
            uint32_t type = types[t];
            int64_t n_in = shapes[s][0], n_out = shapes[s][1];
            if (type == VB_TYPE_Q8_0 && n_in % 32) continue;
            float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
            uint8_t *W = pk_make_w(type, n_in, n_out, wf);
            void *P = pk_pack(type, W, n_in, n_out);
            float *X = malloc((size_t)(33 * n_in) * sizeof(float));
            float *Y = malloc((size_t)(33 * n_out) * sizeof(float));
            float *Y1 = malloc((size_t)(33 * n_out) * sizeof(float)); /* row r alone, level 0 first */
            float *Y1l = malloc((size_t)n_out * sizeof(float));
            for (int64_t i = 0; i < 33 * n_in; i++) X[i] = pk_normal() * (1 + (i % 3));
            for (int level = 0; level <= vb_kernels_max_level() && !bad; level++) {
                vb_kernels_force_level(level);
                for (int64_t r = 0; r < 33; r++) {
                    vb_matmul_packed(NULL, type, P, n_in, n_out, X + r * n_in, 1, Y1l, false);
                    if (level == 0) memcpy(Y1 + r * n_out, Y1l, (size_t)n_out * sizeof(float));
                    else if (memcmp(Y1 + r * n_out, Y1l, (size_t)n_out * sizeof(float)) != 0) {
                        fprintf(stderr, "    %s n_in %lld n_out %lld: level %s differs from portable\n",
                                vb_type_get(type)->name, (long long)n_in, (long long)n_out,
                                vb_kernels_level_name(level));
                        bad = 1;
                        break;
                    }
                }
                for (int64_t k = 1; k <= 33 && !bad; k++)
                    for (int use_tp = 0; use_tp < 2 && !bad; use_tp++) {
                        vb_matmul_packed(use_tp ? tp : NULL, type, P, n_in, n_out, X, k, Y, false);
                        if (memcmp(Y, Y1, (size_t)(k * n_out) * sizeof(float)) != 0) {
                            fprintf(stderr, "    %s level %s n_in %lld n_out %lld K %lld tp %d: differs from one row\n",
                                    vb_type_get(type)->name, vb_kernels_level_name(level), (long long)n_in,
                                    (long long)n_out, (long long)k, use_tp);
                            bad = 1;
                        }
                    }
            }
            free(wf), free(W), free(P), free(X), free(Y), free(Y1), free(Y1l);
        }
    vb_kernels_force_level(-1);
    vb_threadpool_free(tp);
    CHECK(!bad);
}

/* A W past the cache-resident size (4 MiB) takes another one-row tiling (4 block streams):
 * still the bits of the K-row product, on each SIMD level. */
TEST(kernels_packed_large_w_one_row_equals_k_rows) {
    const int64_t n_in = 2048, n_out = 520; /* F32: 4.3 MB */
    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
    uint8_t *W = pk_make_w(VB_TYPE_F32, n_in, n_out, wf);
    void *P = pk_pack(VB_TYPE_F32, W, n_in, n_out);
    float *X = malloc((size_t)(9 * n_in) * sizeof(float));
    float *Y = malloc((size_t)(9 * n_out) * sizeof(float)), *Y1 = malloc((size_t)n_out * sizeof(float));
    for (int64_t i = 0; i < 9 * n_in; i++) X[i] = pk_normal();
    int bad = 0;
    for (int level = 1; level <= vb_kernels_max_level(); level++) {
        vb_kernels_force_level(level);
        vb_matmul_packed(NULL, VB_TYPE_F32, P, n_in, n_out, X, 9, Y, false);
        for (int64_t r = 0; r < 9; r++) {
            vb_matmul_packed(NULL, VB_TYPE_F32, P, n_in, n_out, X + r * n_in, 1, Y1, false);
            if (memcmp(Y1, Y + r * n_out, (size_t)n_out * sizeof(float)) != 0) bad = 1;
        }
    }
    vb_kernels_force_level(-1);
    CHECK(!bad);
    free(wf), free(W), free(P), free(X), free(Y), free(Y1);
}

/* Through the whole shipped model (F16, packed at load): K rows in one forward give the logits
 * of the same rows forwarded one at a time, bit for bit, with 1 and 2 threads (what the
 * draft-and-verify decoder's "identical to AR greedy" relies on; the attention and the other
 * row-wise operations must be row-count independent too for this to hold). */
static int pk_forward_rows(vb_context *c, int n, const vb_token *tok, int pos0, float *out, int32_t V) {
    vb_batch *b = vb_batch_init(n);
    if (!b) return VB_ERR_NOMEM;
    for (int i = 0; i < n; i++) vb_batch_add(b, tok[i], pos0 + i, 0, true);
    int rc = vb_forward(c, b);
    for (int i = 0; rc == VB_OK && i < n; i++)
        memcpy(out + (size_t)i * V, vb_get_logits(c, i), (size_t)V * sizeof(float));
    vb_batch_free(b);
    return rc;
}

static void pk_shipped_k_rows(const char *file) {
    size_t size = 0;
    const void *data = file ? NULL : vb_embedded_model(&size);
    vb_model *m = NULL;
    char err[512] = "";
    int rc = data ? vb_model_load_from_memory(data, size, "wedlm-py-6m-f16", NULL, &m, err, sizeof err)
                  : vb_model_load(file, NULL, &m, err, sizeof err);
    CHECKF(rc == VB_OK, "load %s: %s", file ? file : "(embedded)", err);
    const int32_t V = vb_model_get_info(m)->n_vocab;
    enum { K = 17 };
    const vb_token tok[K] = {3, 17, 42, 5, 9, 60, 33, 1, 28, 11, 50, 7, 19, 2, 44, 38, 21};
    float *lk = malloc((size_t)K * V * sizeof(float)), *l1 = malloc((size_t)K * V * sizeof(float));
    CHECK(lk && l1);
    for (int n_threads = 1; n_threads <= 2; n_threads++) {
        vb_context *ck = NULL, *c1 = NULL;
        vb_context_params p = vb_context_default_params();
        p.backend = "cpu";
        p.n_ctx = 64;
        p.n_threads = n_threads;
        CHECK(vb_context_init(m, &p, &ck, err, sizeof err) == VB_OK);
        CHECK(vb_context_init(m, &p, &c1, err, sizeof err) == VB_OK);
        /* a prompt of 5 rows first, then K rows at once vs K single rows */
        CHECK_EQ_INT(pk_forward_rows(ck, 5, tok + 3, 0, lk, V), VB_OK);
        CHECK_EQ_INT(pk_forward_rows(c1, 5, tok + 3, 0, l1, V), VB_OK);
        CHECK_EQ_INT(pk_forward_rows(ck, K, tok, 5, lk, V), VB_OK);
        for (int i = 0; i < K; i++) CHECK_EQ_INT(pk_forward_rows(c1, 1, tok + i, 5 + i, l1 + (size_t)i * V, V), VB_OK);
        for (int i = 0; i < K; i++)
            CHECKF(memcmp(lk + (size_t)i * V, l1 + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                   "threads %d: row %d of %d differs from its one-row forward", n_threads, i, K);
        vb_context_free(ck);
        vb_context_free(c1);
    }
    free(lk), free(l1);
    vb_model_free(m);
}

TEST(kernels_packed_shipped_model_k_rows_bit_identical) { pk_shipped_k_rows(NULL); }
/* its Q8_0 copy: packed for the VNNI product on AVX-512 machines, the per-row and lane
   kernels elsewhere (those are row-count independent too) */
TEST(kernels_packed_shipped_q8_0_k_rows_bit_identical) { pk_shipped_k_rows("models/wedlm-py-6m-q8_0.gguf"); }

/* x_unchanged reuses the quantized X of the thread's previous product only while it is still
 * there: right after a product of the same X it gives the fresh bits; after a product that
 * quantized another X (packed or not) it quantizes again; a different X with the flag set
 * is quantized too. */
TEST(kernels_packed_q8_0_x_unchanged_reuse) {
    const int64_t n_in = 256, n_out = 48, n_rows = 5;
    float *wf = malloc((size_t)(n_in * n_out) * sizeof(float));
    uint8_t *W = pk_make_w(VB_TYPE_Q8_0, n_in, n_out, wf);
    uint8_t *W4 = pk_make_w(VB_TYPE_Q4_0, n_in, n_out, wf);
    void *P = pk_pack(VB_TYPE_Q8_0, W, n_in, n_out);
    float *X = malloc((size_t)(n_rows * n_in) * sizeof(float)), *X2 = malloc((size_t)(n_rows * n_in) * sizeof(float));
    float *Y = malloc((size_t)(n_rows * n_out) * sizeof(float)), *Yr = malloc((size_t)(n_rows * n_out) * sizeof(float));
    float *Y2r = malloc((size_t)(n_rows * n_out) * sizeof(float));
    for (int64_t i = 0; i < n_rows * n_in; i++) X[i] = pk_normal(), X2[i] = pk_normal();
    const size_t yb = (size_t)(n_rows * n_out) * sizeof(float);
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X2, n_rows, Y2r, false);
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X, n_rows, Yr, false);
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X, n_rows, Y, true); /* reused */
    CHECK(memcmp(Y, Yr, yb) == 0);
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X2, n_rows, Y, true); /* another X */
    CHECK(memcmp(Y, Y2r, yb) == 0);
    vb_matmul(NULL, VB_TYPE_Q4_0, W4, n_in, n_out, X, n_rows, Y); /* quantizes X into the scratch */
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X2, n_rows, Y, true);
    CHECK(memcmp(Y, Y2r, yb) == 0);
    memcpy(X2, X, (size_t)(n_rows * n_in) * sizeof(float)); /* the caller broke the contract: */
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X2, n_rows, Y, true); /* stale, as told */
    CHECK(memcmp(Y, Y2r, yb) == 0);
    vb_matmul_packed(NULL, VB_TYPE_Q8_0, P, n_in, n_out, X2, n_rows, Y, false);
    CHECK(memcmp(Y, Yr, yb) == 0);
    free(wf), free(W), free(W4), free(P), free(X), free(X2), free(Y), free(Yr), free(Y2r);
}
