/* test_quant_types.c - vibee's dequantization of every quantized weight type against llama.cpp's
 * own (ggml's to_float, reached through the llamacpp backend's build), on blocks written by
 * llama.cpp's quantizer (ggml_quantize_chunk of random rows: the bytes real files hold) and on
 * random blocks (every bit pattern of the data bytes, random f16 scales): the two must agree to
 * float rounding (ggml may fuse a multiply-add where vibee rounds twice: 1e-6 of the row's
 * largest value). Also the optimized product on llama.cpp-written rows against vb_matmul_ref.
 * Without the llamacpp backend compiled in these tests FAIL (VB_NO_LLAMACPP=1 skips them). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/kernels.h"
#include "backends/cpu/quantize_ggml.h"
#include "backends/llamacpp/llamacpp_backend.h"
#include "gguf/gguf.h"
#include "test.h"
#include "types.h"
#include "vibee.h"

static const uint32_t qt_types[] = {
    VB_TYPE_Q4_0, VB_TYPE_Q4_1, VB_TYPE_Q5_0, VB_TYPE_Q5_1, VB_TYPE_Q8_0, VB_TYPE_IQ4_NL,
    VB_TYPE_Q2_K, VB_TYPE_Q3_K, VB_TYPE_Q4_K, VB_TYPE_Q5_K, VB_TYPE_Q6_K, VB_TYPE_IQ4_XS,
};
#define QT_N_TYPES (sizeof qt_types / sizeof qt_types[0])

/* A file holding a type vibee has no kernels for (IQ2_XXS, as llama.cpp's IQ2 presets write):
 * the model loads (so `vibee info` describes it: tensors per type, the one the cpu backend
 * lacks), and the cpu backend refuses it with the type's name and the tensor's. */
TEST(quant_types_unsupported_type_named) {
    char src[1024], dst[1100], err[512];
    snprintf(src, sizeof src, "%s/models/qwen2-q6_k.gguf", vbt_fixture_dir());
    snprintf(dst, sizeof dst, "%s/models/iq2_xxs-test.tmp", vbt_fixture_dir());
    vb_gguf *g = NULL;
    CHECKF(vb_gguf_open(src, true, &g, err, sizeof err) == VB_OK, "%s (make fixtures)", err);
    vb_gguf_writer *w = vb_gguf_writer_init();
    CHECK(w && vb_gguf_writer_copy_keys(w, g, NULL, 0) == VB_OK);
    uint8_t *blocks = NULL;
    for (int64_t i = 0; i < vb_gguf_n_tensors(g); i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        uint32_t type = t->type;
        const void *data = t->data;
        if (!strcmp(t->name, "blk.0.ffn_down.weight")) { /* 66-byte blocks of 256 */
            type = VB_TYPE_IQ2_XXS;
            blocks = malloc((size_t)(t->n_elems / 256 * 66));
            CHECK(blocks);
            memset(blocks, 0x11, (size_t)(t->n_elems / 256 * 66));
            data = blocks;
        }
        CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, t->name, type, t->n_dims, t->ne, data), VB_OK);
    }
    CHECK(blocks != NULL);
    CHECKF(vb_gguf_writer_write(w, dst, err, sizeof err) == VB_OK, "%s", err);
    vb_gguf_writer_free(w);
    vb_gguf_close(g);
    free(blocks);
    vb_model *m = NULL;
    int st = vb_model_load(dst, NULL, &m, err, sizeof err);
    CHECKF(st == VB_OK, "load: %s", err);
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_threads = 1;
    p.n_ctx = 64;
    vb_context *c = NULL;
    st = vb_context_init(m, &p, &c, err, sizeof err);
    vb_context_free(c);
    vb_model_free(m);
    char cmd[1400], out[4096];
    snprintf(cmd, sizeof cmd, "%s info -m %s 2>&1", vbt_vibee_bin(), dst);
    int rc = vbt_run_cmd(cmd, out, sizeof out);
    remove(dst);
    printf("     %s\n", err);
    CHECKF(st != VB_OK && strstr(err, "iq2_xxs") && strstr(err, "blk.0.ffn_down.weight"),
           "cpu context: status %d, message '%s'", st, err);
    CHECKF(rc == 0 && strstr(out, "architecture") && strstr(out, "1 iq2_xxs (no cpu kernels)") &&
               strstr(out, "14 q6_k") && strstr(out, "cpu backend  cannot run"),
           "vibee info: exit %d, output '%s'", rc, out);
}

#ifndef VB_HAVE_LLAMACPP
static void qt_missing(const char *file, int line) {
    const char *ok = getenv("VB_NO_LLAMACPP");
    if (ok && strcmp(ok, "1") == 0) {
        printf("     skipped: llama.cpp backend not compiled in (VB_NO_LLAMACPP=1)\n");
        return;
    }
    vbt_fail(file, line, "llama.cpp backend not compiled in, test could not run: run "
                         "scripts/build_llamacpp.sh and rebuild (or set VB_NO_LLAMACPP=1 to skip)");
}
TEST(quant_types_dequant_vs_llamacpp) { qt_missing(__FILE__, __LINE__); }
TEST(quant_types_matmul_llamacpp_rows) { qt_missing(__FILE__, __LINE__); }
TEST(quant_types_quantizer_bytes_vs_llamacpp) { qt_missing(__FILE__, __LINE__); }
#else

static uint64_t qt_rng = 0x853C49E6748FEA9Bull;
static float qt_normal(void) { /* sum of 4 uniforms in [-1, 1) */
    float s = 0;
    for (int i = 0; i < 4; i++) {
        qt_rng ^= qt_rng << 13, qt_rng ^= qt_rng >> 7, qt_rng ^= qt_rng << 17;
        s += (float)((qt_rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
    }
    return s;
}

/* max |a - b| / max |b| over n (b all zero: max |a - b|) */
static double qt_rel_max(const float *a, const float *b, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) e = d; /* NaN sticks */
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return m > 0 ? e / m : e;
}

TEST(quant_types_dequant_vs_llamacpp) {
    const int64_t n = 1024, rows = 6; /* 4 super-blocks / 32 blocks per row */
    float *x = malloc((size_t)(n * rows) * sizeof(float));
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    uint8_t *q = malloc((size_t)(n * rows) * 2);
    CHECK(x && a && b && q);
    for (int64_t i = 0; i < n * rows; i++) x[i] = qt_normal() * (1.0f + (float)(i / n)); /* rows of growing scale */
    for (size_t t = 0; t < QT_N_TYPES; t++) {
        uint32_t type = qt_types[t];
        const char *name = vb_type_get(type)->name;
        int64_t rb = vb_type_row_bytes(type, n);
        for (int src = 0; src < 2; src++) { /* 0: llama.cpp's quantizer, 1: random blocks */
            if (src == 0) CHECK_EQ_INT(vb_llamacpp_quantize(type, x, q, rows, n), VB_OK);
            else CHECK_EQ_INT(vbt_random_blocks(type, q, rows * n / vb_type_get(type)->block_elems, (unsigned)t), 0);
            double worst = 0, dist = 0;
            for (int64_t r = 0; r < rows; r++) {
                vb_dequantize_row(type, q + r * rb, a, n);
                CHECK_EQ_INT(vb_llamacpp_dequantize(type, q + r * rb, b, n), VB_OK);
                double e = qt_rel_max(a, b, n);
                if (!(e <= worst)) worst = e;
                if (src == 0) {
                    double d = qt_rel_max(b, x + r * n, n);
                    if (d > dist) dist = d;
                }
            }
            if (src == 0) printf("     %-7s llama.cpp-written rows: max rel diff %.2g (quantization error %.3f)\n", name, worst, dist);
            else printf("     %-7s random blocks:          max rel diff %.2g\n", name, worst);
            CHECKF(worst <= 1e-6, "%s (%s): vibee's dequantization differs from llama.cpp's by %g",
                   name, src ? "random blocks" : "llama.cpp-written", worst);
            /* the quantizer really ran: values near the input, not zeros */
            if (src == 0) CHECKF(dist > 0 && dist < 0.6, "%s: llama.cpp's rows far from the input (%g)", name, dist);
        }
    }
    free(x), free(a), free(b), free(q);
}

/* Squared error of n values against a row dequantized from `type` blocks q. */
static double qt_sq_err(uint32_t type, const void *q, const float *x, int64_t n) {
    float y[256];
    vb_dequantize_row(type, q, y, n);
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    return e;
}

/* vibee's quantizers against llama.cpp's (ggml_quantize_chunk, no importance matrix) on the same
 * rows: normal values at scales 1e-3 .. 1e2, rows with an outlier, with zero blocks, with
 * constant blocks. Every block of every type byte-identical: vb_quantize_row takes the copy
 * compiled as the linked llama.cpp is (FMA, fused multiply-adds, -mtune=native) on a CPU with
 * AVX2 + FMA, and llama.cpp's own native build has no FMA where the CPU has none.
 * The plain copy (CPUs without FMA) against the same FMA build: Q4_0 .. Q5_1 only round a
 * product plus a constant, which a fused multiply-add changes at exact ties alone: identical
 * (measured); the searching quantizers (IQ4_NL, Q2_K .. Q6_K) compare
 * candidate scales by sums of products that an FMA rounds differently, so at a near tie they
 * keep another candidate: at most 40% of the blocks may differ (measured: Q5_K 29%, Q2_K 11%,
 * Q4_K 5%), and summed over rows, their squared error relative to the row's energy within 15%
 * of llama.cpp's (one flipped sub-block scale can move the super-block scale and so every
 * byte of the block). */
TEST(quant_types_quantizer_bytes_vs_llamacpp) {
    const int64_t n = 1024, rows = 48;
    qt_rng = 0x853C49E6748FEA9Bull; /* the same rows whatever ran before */
    float *x = malloc((size_t)(n * rows) * sizeof(float));
    uint8_t *a = malloc((size_t)(n * rows) * 2), *b = malloc((size_t)(n * rows) * 2);
    CHECK(x && a && b);
    for (int64_t r = 0; r < rows; r++) {
        float scale = powf(10.0f, (float)(r % 6) - 3.0f); /* 1e-3 .. 1e2 */
        for (int64_t i = 0; i < n; i++) x[r * n + i] = qt_normal() * scale;
        if (r % 4 == 1) x[r * n + (r * 37) % n] = 25.0f * scale;       /* an outlier */
        if (r % 4 == 2) memset(x + r * n + 64, 0, 256 * sizeof(float)); /* zero blocks */
        if (r % 4 == 3) for (int i = 512; i < 768; i++) x[r * n + i] = 0.5f * scale; /* constant */
    }
    const struct { uint32_t type; bool exact; } types[] = {
        {VB_TYPE_Q4_0, true}, {VB_TYPE_Q8_0, true}, {VB_TYPE_Q4_1, true}, {VB_TYPE_Q5_0, true},
        {VB_TYPE_Q5_1, true}, {VB_TYPE_IQ4_NL, false}, {VB_TYPE_Q2_K, false}, {VB_TYPE_Q3_K, false},
        {VB_TYPE_Q4_K, false}, {VB_TYPE_Q5_K, false}, {VB_TYPE_Q6_K, false}, {VB_TYPE_IQ4_XS, false}};
    const bool fma_copy = vb_kernels_max_level() >= VB_KLEVEL_AVX2; /* what vb_quantize_row takes */
    for (int plain = 0; plain < 2; plain++)
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint32_t type = types[t].type;
        if (plain && (type == VB_TYPE_Q4_0 || type == VB_TYPE_Q8_0)) continue; /* one copy (kernels_quant.c) */
        const vb_type_traits *tr = vb_type_get(type);
        const int64_t be = tr->block_elems, bb = tr->block_bytes;
        int64_t rb = vb_type_row_bytes(type, n), nblk = rows * n / be, bad = 0;
        double ra = 0, rbl = 0; /* sums over rows of the relative squared error, vibee / llama.cpp */
        CHECK_EQ_INT(vb_llamacpp_quantize(type, x, b, rows, n), VB_OK);
        for (int64_t r = 0; r < rows; r++) {
            if (plain) CHECK_EQ_INT(vb_quantize_ggml_row_plain(type, x + r * n, a + r * rb, n), VB_OK);
            else CHECK_EQ_INT(vb_quantize_row(type, x + r * n, a + r * rb, n), VB_OK);
            double energy = 0, ea = 0, eb = 0;
            for (int64_t i = 0; i < n; i++) energy += (double)x[r * n + i] * x[r * n + i];
            for (int64_t k = 0; k < n / be; k++) {
                const uint8_t *qa = a + r * rb + k * bb, *qb = b + r * rb + k * bb;
                if (memcmp(qa, qb, (size_t)bb) == 0) continue;
                bad++;
                ea += qt_sq_err(type, qa, x + r * n + k * be, be);
                eb += qt_sq_err(type, qb, x + r * n + k * be, be);
            }
            ra += ea / energy;
            rbl += eb / energy;
        }
        printf("     %-7s %3lld of %4lld blocks differ from llama.cpp's (%s copy); their relative squared "
               "error: vibee %.3g, llama.cpp %.3g\n", tr->name, (long long)bad, (long long)nblk,
               plain || !fma_copy ? "plain" : "FMA", ra, rbl);
        if (!plain || types[t].exact) CHECKF(bad == 0, "%s: %lld blocks differ from llama.cpp's", tr->name, (long long)bad);
        CHECKF(bad * 100 <= 40 * nblk, "%s: %lld of %lld blocks differ from llama.cpp's quantizer", tr->name,
               (long long)bad, (long long)nblk);
        CHECKF(ra <= 1.15 * rbl, "%s: the differing blocks are worse than llama.cpp's (%g vs %g)", tr->name, ra, rbl);
    }
    free(x), free(a), free(b);
}

/* The optimized product (every level, 1..9 X rows) on llama.cpp-written weights against the
 * reference product; n_in with blocks of 32 left over after the groups of 256 (896: Qwen2.5). */
TEST(quant_types_matmul_llamacpp_rows) {
    const int64_t n_ins[] = {256, 896}, n_out = 37, n_rows_max = 9;
    float *w = malloc((size_t)(896 * n_out) * sizeof(float));
    float *X = malloc((size_t)(896 * n_rows_max) * sizeof(float));
    float *Y = malloc((size_t)(n_out * n_rows_max) * sizeof(float));
    float *Yr = malloc((size_t)(n_out * n_rows_max) * sizeof(float));
    uint8_t *W = malloc((size_t)(896 * n_out) * 2);
    CHECK(w && X && Y && Yr && W);
    for (int64_t i = 0; i < 896 * n_rows_max; i++) X[i] = qt_normal();
    for (size_t t = 0; t < QT_N_TYPES; t++)
        for (int a = 0; a < 2; a++) {
            uint32_t type = qt_types[t];
            int64_t n_in = n_ins[a];
            if (n_in % vb_type_get(type)->block_elems) continue;
            for (int64_t i = 0; i < n_in * n_out; i++) w[i] = qt_normal();
            CHECK_EQ_INT(vb_llamacpp_quantize(type, w, W, n_out, n_in), VB_OK);
            for (int level = 0; level <= vb_kernels_max_level(); level++) {
                vb_kernels_force_level(level);
                for (int64_t nr = 1; nr <= n_rows_max; nr += 4) {
                    vb_matmul_ref(type, W, n_in, n_out, X, nr, Yr);
                    vb_matmul(NULL, type, W, n_in, n_out, X, nr, Y);
                    double e = 0, m = 0;
                    for (int64_t i = 0; i < nr * n_out; i++) {
                        double d = fabs((double)Y[i] - Yr[i]);
                        if (!(d <= e)) e = d;
                        if (fabs(Yr[i]) > m) m = fabs(Yr[i]);
                    }
                    vb_kernels_force_level(-1);
                    /* 8-bit activations: about 1% of the largest output */
                    CHECKF(e <= 3e-2 * m, "%s n_in %lld level %s rows %lld: max err %g of %g",
                           vb_type_get(type)->name, (long long)n_in, vb_kernels_level_name(level),
                           (long long)nr, e, m);
                    vb_kernels_force_level(level);
                }
            }
            vb_kernels_force_level(-1);
        }
    free(w), free(X), free(Y), free(Yr), free(W);
}
#endif
