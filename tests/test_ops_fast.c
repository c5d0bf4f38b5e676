/* test_ops_fast.c - the SIMD paths of softmax and attention against independent references:
 * the polynomial exp (AVX-512, AVX2) against libm's double exp on a dense grid and on edge
 * cases, softmax rows and column softmaxes against double-precision softmax, and vb_attention
 * (portable, AVX2 and AVX-512 paths; row and tile paths; F32 and F16 caches; several GQA group
 * sizes, head sizes, thread counts, interleaved sequences and arbitrary per-row visible
 * lengths) against a double-precision attention computed straight from the cache rows, and
 * each batch row against the same row run alone (bit-identical at one level). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/attention.h"
#include "backends/cpu/kernels.h"
#include "backends/cpu/ops.h"
#include "test.h"
#include "types.h"

/* Deterministic uniform floats in [lo, hi). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float uniform(float lo, float hi) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}

/* Relative error of an exp result y for input x (the bound used, 2.5e-7, is about 2 ulp; the
 * SIMD paths measure 0.93 ulp, libm 0.5 ulp); subnormal results (below 2^-126) are allowed
 * the rounding of the subnormal (2^-149 absolute) on top. */
static double exp_error(float x, float y) {
    const double ref = exp((double)x);
    const double err = fabs((double)y - ref);
    return ref < 0x1p-126 ? (err - 0x1p-149) / ref : err / ref;
}

TEST(ops_fast_exp_matches_libm) {
    enum { N = 200003 };
    float *x = malloc(N * sizeof *x), *y = malloc((N + 1) * sizeof *y);
    CHECK(x && y);
    /* dense grid over the softmax range [-88.8, 0] (odd count: tails of every path), and
       some positive values */
    for (int i = 0; i < N; i++) x[i] = -88.8f * (float)i / (float)(N - 1);
    for (int i = 0; i < 2000; i++) x[i * 97] = uniform(0.0f, 88.0f);
    for (int level = VB_KLEVEL_PORTABLE; level <= vb_kernels_max_level(); level++) {
        y[N] = 12345.0f; /* guard: nothing written past n */
        vb_op_exp_level(level, y, x, N);
        CHECKF(y[N] == 12345.0f, "level %d wrote past the end", level);
        double worst = 0.0;
        float worst_x = 0.0f;
        for (int i = 0; i < N; i++) {
            const double e = exp_error(x[i], y[i]);
            if (e > worst) worst = e, worst_x = x[i];
        }
        CHECKF(worst <= 2.5e-7, "level %d: exp relative error %.3g at x = %.9g", level, worst,
               (double)worst_x);
        /* edge cases */
        const float edge[] = {0.0f,
                              -0.0f,
                              1e-30f,
                              -1e-30f,
                              -1e-7f,
                              -87.3f,
                              -87.33f,
                              -88.0f,
                              -88.8f,
                              -103.0f,
                              -103.9f,
                              -104.5f,
                              -200.0f,
                              -1e30f,
                              -INFINITY,
                              88.7f,
                              89.0f,
                              200.0f,
                              INFINITY,
                              NAN,
                              0.5f * (float)M_LN2,
                              -0.5f * (float)M_LN2};
        const int n_edge = (int)(sizeof edge / sizeof edge[0]);
        float out[sizeof edge / sizeof edge[0]];
        vb_op_exp_level(level, out, edge, n_edge);
        for (int i = 0; i < n_edge; i++) {
            const float e = edge[i];
            if (isnan(e)) {
                CHECKF(isnan(out[i]), "level %d: exp(nan) = %g", level, (double)out[i]);
            } else if (e < -104.0f) {
                CHECKF(out[i] == 0.0f, "level %d: exp(%g) = %g, want 0", level, (double)e,
                       (double)out[i]);
            } else if (e > 88.73f) {
                CHECKF(isinf(out[i]) && out[i] > 0, "level %d: exp(%g) = %g, want inf", level,
                       (double)e, (double)out[i]);
            } else if (e > -87.0f) {
                CHECKF(exp_error(e, out[i]) <= 2.5e-7, "level %d: exp(%g) = %.9g, libm %.9g", level,
                       (double)e, (double)out[i], exp((double)e));
            } else { /* subnormal results: within 2^-149 + 1e-6 relative */
                const double ref = exp((double)e);
                CHECKF(fabs(out[i] - ref) <= 0x1p-149 + 1e-6 * ref,
                       "level %d: exp(%g) = %.9g, libm %.9g", level, (double)e, (double)out[i],
                       ref);
            }
        }
        CHECKF(out[0] == 1.0f && out[1] == 1.0f, "level %d: exp(0) %g, exp(-0) %g", level,
               (double)out[0], (double)out[1]);
        /* every short length and offset (masked tails) */
        for (int n = 1; n <= 40; n++) {
            float in[48], res[48];
            for (int i = 0; i < 48; i++) in[i] = uniform(-30.0f, 0.0f), res[i] = -1.0f;
            vb_op_exp_level(level, res + 3, in + 3, n);
            for (int i = 0; i < 48; i++) {
                if (i < 3 || i >= 3 + n) {
                    CHECKF(res[i] == -1.0f, "level %d n %d: wrote outside at %d", level, n, i);
                } else {
                    CHECKF(exp_error(in[i], res[i]) <= 2.5e-7, "level %d n %d: exp(%g) = %g", level,
                           n, (double)in[i], (double)res[i]);
                }
            }
        }
    }
    free(x);
    free(y);
}

/* Largest error of softmax output y against a double softmax of x, relative to each exact
 * value, allowing for the rounding of x - max in float (|x - max| * 2^-24 relative). */
static double softmax_error(const float *x, const float *y, int64_t n, int64_t stride) {
    double max = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n; i++) max = fmax(max, x[i * stride]);
    for (int64_t i = 0; i < n; i++) sum += exp((double)x[i * stride] - max);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)x[i * stride] - max;
        const double ref = exp(d) / sum;
        if (ref < 1e-30) {
            worst = fmax(worst, fabs(y[i * stride] - ref) / 1e-30);
            continue;
        }
        const double e = fabs(y[i * stride] - ref) / ref / (2e-6 + fabs(d) * 0x1p-23);
        worst = fmax(worst, e);
    }
    return worst; /* <= 1: within tolerance */
}

TEST(ops_fast_softmax_matches_double) {
    static const int64_t lengths[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257, 1000, 1043};
    float *x = malloc(1100 * sizeof *x), *y = malloc(1101 * sizeof *y);
    CHECK(x && y);
    for (int level = VB_KLEVEL_PORTABLE; level <= vb_kernels_max_level(); level++) {
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            const int64_t n = lengths[li];
            for (int kind = 0; kind < 3; kind++) {
                for (int64_t i = 0; i < n; i++) {
                    x[i] = kind == 0 ? uniform(-5.0f, 5.0f) : uniform(-60.0f, 40.0f);
                    if (kind == 2 && i % 3 == 1) x[i] = -INFINITY; /* masked scores */
                }
                if (kind == 2) x[0] = 1.0f;
                memcpy(y, x, (size_t)n * sizeof *x);
                y[n] = 777.0f;
                vb_op_softmax_level(level, y, n);
                CHECKF(y[n] == 777.0f, "level %d n %lld: wrote past the end", level, (long long)n);
                const double e = softmax_error(x, y, n, 1);
                CHECKF(e <= 1.0, "level %d n %lld kind %d: softmax error %.3g x tolerance", level,
                       (long long)n, kind, e);
            }
        }
    }
    free(x);
    free(y);
}

TEST(ops_fast_softmax_cols_matches_double) {
    enum { ROWS = 301, COLS = 32 };
    float *x = malloc(ROWS * COLS * sizeof *x), *y = malloc(ROWS * COLS * sizeof *y);
    CHECK(x && y);
    for (int level = VB_KLEVEL_PORTABLE; level <= vb_kernels_max_level(); level++) {
        for (int cols = 8; cols <= COLS; cols += 8) {
            for (int i = 0; i < ROWS * cols; i++) x[i] = uniform(-30.0f, 10.0f);
            for (int c = 0; c < cols; c++) /* column c sees its first 200 + c rows */
                for (int r = 200 + c; r < ROWS; r++) x[r * cols + c] = -INFINITY;
            memcpy(y, x, (size_t)ROWS * cols * sizeof *x);
            float inv[COLS];
            vb_op_softmax_cols_level(level, y, ROWS, cols, inv);
            for (int i = 0; i < ROWS * cols; i++) y[i] *= inv[i % cols];
            for (int c = 0; c < cols; c++) {
                const double e = softmax_error(x + c, y + c, ROWS, cols);
                CHECKF(e <= 1.0, "level %d cols %d col %d: error %.3g x tolerance", level, cols, c,
                       e);
            }
        }
    }
    free(x);
    free(y);
}

/* silu_mul and rmsnorm (SIMD paths chosen by the kernel level) against double formulas. */
TEST(ops_fast_silu_mul_and_rmsnorm_match_double) {
    enum { N = 203 };
    float g[N], up[N], x[3 * N], w[N], y[3 * N];
    for (int i = 0; i < N; i++) {
        g[i] = i < 6 ? (float[]){-100.0f, 100.0f, 0.0f, -0.0f, -87.0f, 30.0f}[i]
                     : uniform(-12.0f, 12.0f);
        up[i] = uniform(-2.0f, 2.0f);
        w[i] = uniform(0.5f, 1.5f);
    }
    for (int i = 0; i < 3 * N; i++) x[i] = uniform(-3.0f, 3.0f);
    for (int level = VB_KLEVEL_PORTABLE; level <= vb_kernels_max_level(); level++) {
        vb_kernels_force_level(level);
        for (int n = 1; n <= N; n += (n < 40 ? 1 : 41)) {
            float gate[N + 1];
            memcpy(gate, g, sizeof g);
            gate[n] = 99.0f;
            vb_op_silu_mul(gate, up, n);
            CHECKF(gate[n] == 99.0f, "level %d n %d: wrote past the end", level, n);
            for (int i = 0; i < n; i++) {
                const double ref = (double)g[i] / (1.0 + exp(-(double)g[i])) * up[i];
                CHECKF(fabs(gate[i] - ref) <= 1e-6 * fabs(ref) + 1e-30,
                       "level %d: silu(%g) * %g = %.9g, want %.9g", level, (double)g[i],
                       (double)up[i], (double)gate[i], ref);
            }
            for (int alias = 0; alias < 2; alias++) {
                if (alias) { /* in place */
                    memcpy(y, x, sizeof x);
                    vb_op_rmsnorm(y, y, w, 3, n, 1e-6f);
                } else {
                    vb_op_rmsnorm(x, y, w, 3, n, 1e-6f);
                }
                for (int r = 0; r < 3; r++) {
                    double ss = 0.0;
                    for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
                    const double scale = 1.0 / sqrt(ss / n + 1e-6);
                    for (int i = 0; i < n; i++) {
                        const double ref = x[r * n + i] * scale * w[i];
                        CHECKF(fabs(y[r * n + i] - ref) <= 3e-7 * fabs(ref) + 1e-30,
                               "level %d n %d row %d: rmsnorm %.9g, want %.9g", level, n, r,
                               (double)y[r * n + i], ref);
                    }
                }
            }
        }
    }
    vb_kernels_force_level(-1);
}

/* GELU (tanh approximation) and GeGLU at every level against the textbook formula in double,
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), and the property the K-row forwards rely on:
 * an element's result does not depend on where a call starts or ends (masked tails, no scalar
 * remainder with other arithmetic). */
TEST(ops_fast_gelu_and_geglu_match_double_and_ignore_the_split) {
    enum { N = 203 };
    float g[N], up[N];
    for (int i = 0; i < N; i++) {
        g[i] = i < 8 ? (float[]){-100.0f, 100.0f, 0.0f, -0.0f, -10.0f, 10.0f, -5.5f, 1e-20f}[i]
                     : uniform(-8.0f, 8.0f);
        up[i] = uniform(-2.0f, 2.0f);
    }
    for (int level = VB_KLEVEL_PORTABLE; level <= vb_kernels_max_level(); level++) {
        vb_kernels_force_level(level);
        float whole[N], whole_mul[N];
        memcpy(whole, g, sizeof g);
        vb_op_gelu_tanh(whole, N);
        memcpy(whole_mul, g, sizeof g);
        vb_op_gelu_mul(whole_mul, up, N);
        for (int i = 0; i < N; i++) {
            const double x = g[i];
            /* 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): the same function, without the
             * cancellation of 1 + tanh(u) in double for u < -19 (where gelu(-10) ~ -1.2e-37) */
            const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            const double ref = x / (1.0 + exp(-2.0 * u));
            CHECKF(fabs(ref - 0.5 * x * (1.0 + tanh(u))) <= 1e-15 * fabs(x), "reference at %g", x);
            /* float rounding of u moves exp(-2u) by |2u| ulps: the bound grows with it */
            const double rel = 3e-7 * (1.0 + fabs(2.0 * u));
            CHECKF(fabs(whole[i] - ref) <= rel * fabs(ref) + 1e-37, "level %d: gelu(%g) = %.9g, want %.9g",
                   level, x, (double)whole[i], ref);
            CHECKF(fabs(whole_mul[i] - ref * up[i]) <= (rel + 1e-7) * fabs(ref * up[i]) + 1e-37,
                   "level %d: geglu(%g) * %g = %.9g, want %.9g", level, x, (double)up[i],
                   (double)whole_mul[i], ref * up[i]);
        }
        for (int cut = 1; cut < 40; cut += 3) { /* two calls split at `cut` give the same bits */
            float part[N];
            memcpy(part, g, sizeof g);
            vb_op_gelu_tanh(part, cut);
            vb_op_gelu_tanh(part + cut, N - cut);
            CHECKF(memcmp(part, whole, sizeof part) == 0, "level %d: split at %d changed bits", level, cut);
            memcpy(part, g, sizeof g);
            vb_op_silu_mul(part, up, cut);
            vb_op_silu_mul(part + cut, up + cut, N - cut);
            float silu_whole[N];
            memcpy(silu_whole, g, sizeof g);
            vb_op_silu_mul(silu_whole, up, N);
            CHECKF(memcmp(part, silu_whole, sizeof part) == 0, "level %d: silu split at %d changed bits",
                   level, cut);
        }
    }
    vb_kernels_force_level(-1);
}

/* vb_op_rope keeps the last rotation table per thread: calls that change position, base,
 * n_rot, factors (also their values at one address) or kind still rotate by their own angles. */
TEST(ops_fast_rope_table_reuse_matches_double) {
    enum { HD = 16, NH = 3 };
    float ff[HD / 2];
    for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + 0.5f * (float)i;
    static const struct {
        int32_t pos, n_rot, neox, factors;
        float theta;
    } calls[] = {{7, 16, 1, 0, 10000.0f}, {7, 16, 1, 0, 10000.0f},  {8, 16, 1, 0, 10000.0f},
                 {8, 16, 0, 0, 10000.0f}, {8, 8, 0, 0, 10000.0f},   {8, 8, 0, 0, 500.0f},
                 {8, 16, 1, 1, 10000.0f}, {8, 16, 1, 2, 10000.0f},  {8, 16, 1, 1, 10000.0f},
                 {0, 16, 1, 0, 10000.0f}, {123, 16, 1, 0, 10000.0f}};
    for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
        float x[NH * HD], x0[NH * HD];
        for (int i = 0; i < NH * HD; i++) x0[i] = x[i] = uniform(-1.0f, 1.0f);
        for (int i = 0; i < HD / 2; i++) /* factors 2: other values at the same address */
            ff[i] = calls[c].factors == 2 ? 3.0f + (float)i : 1.0f + 0.5f * (float)i;
        const int32_t n_rot = calls[c].n_rot, np = n_rot / 2;
        vb_op_rope(x, NH, HD, n_rot, calls[c].pos, calls[c].theta, calls[c].factors ? ff : NULL,
                   calls[c].neox ? VB_ROPE_NEOX : VB_ROPE_NORM);
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < np; i++) {
                double angle = calls[c].pos * pow(calls[c].theta, -2.0 * i / n_rot);
                if (calls[c].factors) angle /= ff[i];
                const int ia = calls[c].neox ? i : 2 * i, ib = calls[c].neox ? i + np : 2 * i + 1;
                const double a = x0[h * HD + ia], b = x0[h * HD + ib];
                const double ra = a * cos(angle) - b * sin(angle);
                const double rb = a * sin(angle) + b * cos(angle);
                CHECKF(fabs(x[h * HD + ia] - ra) < 1e-6 && fabs(x[h * HD + ib] - rb) < 1e-6,
                       "call %zu head %d pair %d: (%g, %g), want (%g, %g)", c, h, i,
                       (double)x[h * HD + ia], (double)x[h * HD + ib], ra, rb);
            }
    }
}

/* ------------------------------------------------------------------ attention */

typedef struct attn_case {
    int32_t n_head, n_head_kv, head_dim, kv_type;
    int32_t old_len[2]; /* rows cached before the batch, sequences 0 and 1 */
    int32_t n_rows;     /* batch rows; row i is in sequence seq_of(i) */
    int interleave;     /* 0: all rows sequence 0; 1: alternate runs of 10 rows of seq 0 / 1 */
    int subset;         /* keep only every other batch row (as the last layer's compaction) */
    int32_t window;     /* > 0: sliding window, a row sees its last `window` cached rows */
} attn_case;

/* Value i of a cache row of kv_type, read from the storage layout (types.h; Q8_0: d * q of block
   i / 32), not through the kernels. */
static double cache_value(const void *row, int32_t i, int32_t kv_type) {
    if (kv_type == VB_KV_F32) return ((const float *)row)[i];
    if (kv_type == VB_KV_F16) return vb_f16_to_f32(((const uint16_t *)row)[i]);
    const vb_block_q8_0 *b = (const vb_block_q8_0 *)row + i / VB_QK8_0;
    return (double)vb_f16_to_f32(b->d) * b->qs[i % VB_QK8_0];
}

/* Double-precision attention of one query head from the cache rows [lo, n_kv). */
static void reference_head(const vb_kv_cache *kv, int32_t layer, vb_seq seq, int32_t lo,
                           int32_t n_kv, const float *q, int32_t kv_head, int32_t hd,
                           int32_t kv_type, double scale, double *out) {
    double *s = malloc((size_t)n_kv * sizeof *s);
    double max = -INFINITY, sum = 0.0;
    for (int32_t j = 0; j < lo; j++) s[j] = 0.0; /* unused */
    for (int32_t j = lo; j < n_kv; j++) {
        const void *k = vb_kvc_k_row(kv, layer, seq, j);
        double dot = 0.0;
        for (int32_t d = 0; d < hd; d++) {
            const int32_t i = kv_head * hd + d;
            const double kd = cache_value(k, i, kv_type);
            dot += (double)q[d] * kd;
        }
        s[j] = dot * scale;
        max = fmax(max, s[j]);
    }
    for (int32_t j = lo; j < n_kv; j++) sum += (s[j] = exp(s[j] - max));
    for (int32_t d = 0; d < hd; d++) out[d] = 0.0;
    for (int32_t j = lo; j < n_kv; j++) {
        const void *v = vb_kvc_v_row(kv, layer, seq, j);
        for (int32_t d = 0; d < hd; d++) {
            const int32_t i = kv_head * hd + d;
            const double vd = cache_value(v, i, kv_type);
            out[d] += s[j] / sum * vd;
        }
    }
    free(s);
}

/* Runs one case at every level and thread count; returns the worst error (negative: setup
 * failed). */
static double run_attn_case(const attn_case *tc, char *where, size_t where_len) {
    const int32_t hd = tc->head_dim, kv_dim = tc->n_head_kv * hd, bs = 16, layer = 1;
    const int32_t n_blocks = 160;
    vb_kv_config cfg = {.n_layer = 2,
                        .kv_dim = kv_dim,
                        .block_size = bs,
                        .n_blocks = n_blocks,
                        .n_seq_max = 2,
                        .kv_type = tc->kv_type};
    vb_kv_cache *kv = NULL;
    if (vb_kvc_create(&cfg, &kv) != VB_OK) return -1.0;
    /* rows: sequence of each batch row and the cache row it writes */
    int32_t seq_len[2] = {0, 0};
    vb_seq row_seq[64];
    int32_t n_kv[64];
    vb_pos pos[64];
    for (int32_t i = 0; i < 64; i++) pos[i] = i;
    /* cached rows, appended in alternating chunks so that the block tables interleave */
    for (int32_t done = 0; seq_len[0] < tc->old_len[0] || seq_len[1] < tc->old_len[1]; done++) {
        for (vb_seq s = 0; s < 2; s++) {
            const int32_t n = tc->old_len[s] - seq_len[s] < 21 ? tc->old_len[s] - seq_len[s] : 21;
            if (n > 0 && vb_kvc_append(kv, s, n, pos, NULL) != VB_OK) return -1.0;
            if (n > 0) seq_len[s] += n;
        }
    }
    int32_t n_rows = 0;
    for (int32_t i = 0; i < tc->n_rows; i++) {
        const vb_seq s = tc->interleave ? (i / 10) % 2 : 0;
        if (vb_kvc_append(kv, s, 1, pos, NULL) != VB_OK) return -1.0;
        seq_len[s]++;
        if (tc->subset && i % 2 == 1) continue;
        row_seq[n_rows] = s;
        n_kv[n_rows] = seq_len[s];
        n_rows++;
    }
    /* random K and V everywhere */
    for (vb_seq s = 0; s < 2; s++)
        for (int32_t r = 0; r < seq_len[s]; r++)
            for (int32_t l = 0; l < 2; l++) {
                void *k = vb_kvc_k_row(kv, l, s, r), *v = vb_kvc_v_row(kv, l, s, r);
                float kr[1024], vr[1024];
                for (int32_t d = 0; d < kv_dim; d++) {
                    const float kd = uniform(-1.0f, 1.0f), vd = uniform(-1.0f, 1.0f);
                    kr[d] = kd;
                    vr[d] = vd;
                    if (tc->kv_type == VB_KV_F32) {
                        ((float *)k)[d] = kd;
                        ((float *)v)[d] = vd;
                    } else if (tc->kv_type == VB_KV_F16) {
                        ((uint16_t *)k)[d] = vb_f32_to_f16(kd);
                        ((uint16_t *)v)[d] = vb_f32_to_f16(vd);
                    }
                }
                if (tc->kv_type == VB_KV_Q8_0) {
                    vb_quantize_row(VB_TYPE_Q8_0, kr, k, kv_dim);
                    vb_quantize_row(VB_TYPE_Q8_0, vr, v, kv_dim);
                }
            }
    const int64_t qn = (int64_t)n_rows * tc->n_head * hd;
    float *q = malloc((size_t)qn * sizeof *q), *out = malloc((size_t)qn * sizeof *out);
    double *ref = malloc((size_t)qn * sizeof *ref);
    float *single = malloc((size_t)tc->n_head * hd * sizeof *single);
    float *first = malloc((size_t)qn * sizeof *first); /* one thread's output at this level */
    const int64_t stride =
        vb_attention_scratch_floats(n_blocks * bs, hd, tc->n_head / tc->n_head_kv, bs);
    float *scratch = malloc((size_t)(stride * 3) * sizeof *scratch);
    if (!q || !out || !ref || !scratch || !single || !first) return -1.0;
    for (int64_t i = 0; i < qn; i++) q[i] = uniform(-2.5f, 2.5f);
    const double scale = 1.0 / sqrt((double)hd);
    for (int32_t i = 0; i < n_rows; i++)
        for (int32_t h = 0; h < tc->n_head; h++)
            reference_head(kv, layer, row_seq[i],
                           tc->window > 0 && n_kv[i] > tc->window ? n_kv[i] - tc->window : 0,
                           n_kv[i], q + ((int64_t)i * tc->n_head + h) * hd,
                           h / (tc->n_head / tc->n_head_kv), hd, tc->kv_type, scale,
                           ref + ((int64_t)i * tc->n_head + h) * hd);
    double worst = 0.0;
    for (int level = VB_KLEVEL_PORTABLE; level <= vb_kernels_max_level(); level++) {
        vb_kernels_force_level(level);
        for (int nth = 1; nth <= 3; nth++) {
            vb_threadpool *tp = nth > 1 ? vb_threadpool_create(nth) : NULL;
            if (nth > 1 && !tp) return -1.0;
            vb_attn_args a = {
                .kv = kv,
                .layer = layer,
                .n_rows = n_rows,
                .q = q,
                .out = out,
                .seq = row_seq,
                .n_kv = n_kv,
                .n_head = tc->n_head,
                .n_head_kv = tc->n_head_kv,
                .head_dim = hd,
                .kv_type = tc->kv_type,
                .use_avx2 = level >= VB_KLEVEL_AVX2,
                .scale = (float)scale,
                .window = tc->window,
                .scratch = scratch,
                .scratch_stride = stride,
            };
            for (int64_t i = 0; i < qn; i++) out[i] = NAN;
            vb_attention(tp, &a);
            /* each row alone gives the same bits as in the batch (tile vs row path) */
            for (int32_t i = 0; i < n_rows && nth <= 2; i++) {
                const int64_t rn = (int64_t)tc->n_head * hd;
                vb_attn_args one = a;
                one.n_rows = 1;
                one.q = q + i * rn;
                one.out = single;
                one.seq = row_seq + i;
                one.n_kv = n_kv + i;
                vb_attention(tp, &one);
                if (memcmp(single, out + i * rn, (size_t)rn * sizeof *out) != 0) {
                    snprintf(where, where_len, "level %d, %d threads: row %d alone differs", level,
                             nth, (int)i);
                    worst = INFINITY;
                }
            }
            vb_threadpool_free(tp);
            /* chunks split over threads and combined in a fixed order: the same bits whatever
               the thread count */
            if (nth == 1) memcpy(first, out, (size_t)qn * sizeof *out);
            else if (memcmp(first, out, (size_t)qn * sizeof *out) != 0) {
                snprintf(where, where_len, "level %d: %d threads differ from one", level, nth);
                worst = INFINITY;
            }
            for (int64_t i = 0; i < qn && worst < INFINITY; i++) {
                const double e = isnan(out[i]) ? INFINITY : fabs(out[i] - ref[i]);
                if (e > worst) {
                    worst = e;
                    snprintf(where, where_len, "level %d, %d threads, row %lld head %lld dim %lld",
                             level, nth, (long long)(i / (tc->n_head * hd)),
                             (long long)(i / hd % tc->n_head), (long long)(i % hd));
                }
            }
        }
    }
    vb_kernels_force_level(-1);
    free(q);
    free(out);
    free(ref);
    free(single);
    free(first);
    free(scratch);
    vb_kvc_free(kv);
    return worst;
}

TEST(ops_fast_attention_matches_double_reference) {
    static const attn_case cases[] = {
        /* the shipped model's shape: 17-row windows over a long context, and one-row decode */
        {4, 2, 64, VB_KV_F32, {700, 0}, 17, 0, 0, 0},
        {4, 2, 64, VB_KV_F16, {700, 0}, 17, 0, 0, 0},
        {4, 2, 64, VB_KV_F32, {999, 0}, 1, 0, 0, 0},
        {4, 2, 64, VB_KV_F16, {300, 0}, 1, 0, 0, 0},
        /* rows on both sides of a chunk boundary (256 rows), decode over several chunks with
           several KV heads per tile (F16 and F32), MQA decode split over chunks */
        {4, 2, 64, VB_KV_F32, {250, 0}, 17, 0, 0, 0},
        {4, 2, 64, VB_KV_F16, {240, 0}, 4, 0, 0, 0},
        {16, 8, 32, VB_KV_F16, {1500, 0}, 1, 0, 0, 0},
        {16, 8, 32, VB_KV_F32, {1100, 0}, 2, 0, 0, 0},
        {8, 1, 32, VB_KV_F32, {1300, 0}, 1, 0, 0, 0},
        /* two interleaved sequences, compacted rows (arbitrary visible lengths) */
        {4, 2, 64, VB_KV_F32, {130, 257}, 33, 1, 0, 0},
        {4, 2, 64, VB_KV_F16, {130, 57}, 33, 1, 1, 0},
        {4, 2, 64, VB_KV_F32, {0, 0}, 40, 0, 1, 0},
        /* qwen3-0.6b-like head size, MHA, wide groups, MQA */
        {4, 2, 128, VB_KV_F32, {200, 0}, 9, 0, 0, 0},
        {3, 3, 64, VB_KV_F32, {100, 30}, 35, 1, 0, 0},
        {4, 4, 32, VB_KV_F32, {0, 0}, 20, 0, 0, 0},
        {4, 4, 32, VB_KV_F32, {5, 0}, 1, 0, 0, 0},
        {4, 4, 32, VB_KV_F32, {19, 0}, 1, 0, 0, 0},
        {8, 1, 32, VB_KV_F16, {90, 0}, 6, 0, 0, 0},
        {64, 1, 16, VB_KV_F32, {50, 0}, 2, 0, 0, 0},
        /* head sizes the AVX-512 path does not take (AVX2 only) and no SIMD path takes */
        {4, 2, 24, VB_KV_F32, {77, 0}, 17, 0, 0, 0},
        {4, 2, 80, VB_KV_F32, {77, 0}, 17, 0, 0, 0},
        {2, 1, 20, VB_KV_F16, {45, 0}, 12, 0, 0, 0},
        /* sliding windows (gemma3's local layers): starting inside a later chunk, decode split
           over chunks whose first ones no query sees, interleaved and compacted rows, a window
           shorter than the batch, exactly a chunk */
        {4, 2, 64, VB_KV_F32, {700, 0}, 17, 0, 0, 100},
        {4, 2, 64, VB_KV_F16, {999, 0}, 1, 0, 0, 300},
        {16, 8, 32, VB_KV_F16, {1500, 0}, 1, 0, 0, 257},
        {8, 1, 32, VB_KV_F32, {1300, 0}, 2, 0, 0, 256},
        {4, 2, 64, VB_KV_F32, {130, 257}, 33, 1, 0, 64},
        {4, 2, 64, VB_KV_F16, {130, 57}, 33, 1, 1, 40},
        {4, 4, 32, VB_KV_F32, {0, 0}, 20, 0, 0, 5},
        {4, 2, 24, VB_KV_F32, {300, 0}, 17, 0, 0, 7},
        /* a Q8_0 cache (blocks of 32 values dequantized per head): decode and windows over
           several chunks, GQA, MQA, interleaved and compacted rows, a sliding window */
        {4, 2, 64, VB_KV_Q8_0, {700, 0}, 17, 0, 0, 0},
        {4, 2, 64, VB_KV_Q8_0, {999, 0}, 1, 0, 0, 0},
        {16, 8, 32, VB_KV_Q8_0, {1500, 0}, 1, 0, 0, 0},
        {8, 1, 32, VB_KV_Q8_0, {90, 0}, 6, 0, 0, 0},
        {4, 2, 128, VB_KV_Q8_0, {200, 0}, 9, 0, 0, 0},
        {4, 2, 64, VB_KV_Q8_0, {130, 57}, 33, 1, 1, 0},
        {4, 2, 64, VB_KV_Q8_0, {999, 0}, 1, 0, 0, 300},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char where[160] = "";
        const double e = run_attn_case(&cases[i], where, sizeof where);
        CHECKF(e >= 0.0, "case %zu: setup failed", i);
        CHECKF(e <= 2e-5, "case %zu (heads %d/%d, hd %d, kv %d, window %d): max abs error %.3g at %s",
               i, cases[i].n_head, cases[i].n_head_kv, cases[i].head_dim, cases[i].kv_type,
               cases[i].window, e, where);
    }
}
