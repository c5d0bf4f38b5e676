/* test_kv_q8.c - the Q8_0 KV cache (enum vb_kv_type VB_KV_Q8_0, llama.cpp's -ctk/-ctv q8_0) on
 * the cpu backend: logits within a stated bound of the F32 cache and of the numpy reference
 * forward (fixture models whose head size is a multiple of 32), at depth too (a context long
 * enough that decode attention splits into several chunks); a row's logits the same whatever
 * batch it is in; the llamacpp backend with its own q8_0 cache agreeing within a bound; and clear
 * refusals (a backend without it, a head size not a multiple of 32). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vibee.h"

/* The bound, measured on these fixtures (random weights): Q8_0 keeps 8 bits per value with one
   f16 scale per 32, so K and V carry relative errors up to ~0.4% of their block's largest value;
   logits then moved by up to 2.5% of the largest logit (qwen3-q8_0). */
#define Q8_BOUND 3e-2

static vb_context *open_ctx(vb_model *m, const char *backend, int kv_type, int n_ctx, char *err, size_t len) {
    vb_context_params p = vb_context_default_params();
    p.backend = backend;
    p.n_ctx = n_ctx;
    p.n_seq_max = 1;
    p.n_threads = 1;
    p.kv_type = kv_type;
    vb_context *c = NULL;
    return vb_context_init(m, &p, &c, err, len) == VB_OK ? c : NULL;
}

/* Forward toks[0..n) at positions 0.. in batches of `step` rows; logits of every row into out. */
static int run(vb_context *c, const vb_token *toks, int n, int step, float *out) {
    const int32_t V = vb_model_get_info(vb_context_model(c))->n_vocab;
    vb_batch *b = vb_batch_init(step);
    int rc = b ? VB_OK : VB_ERR_NOMEM;
    vb_kv_free_seq(c, 0);
    for (int i0 = 0; rc == VB_OK && i0 < n; i0 += step) {
        int k = n - i0 < step ? n - i0 : step;
        vb_batch_clear(b);
        for (int i = 0; i < k; i++) vb_batch_add(b, toks[i0 + i], i0 + i, 0, true);
        rc = vb_forward(c, b);
        for (int i = 0; rc == VB_OK && i < k; i++)
            memcpy(out + (size_t)(i0 + i) * V, vb_get_logits(c, i), (size_t)V * sizeof(float));
    }
    vb_batch_free(b);
    return rc;
}

/* max |a - b| / max(1, max |b|) over n values */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, mag = 1.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return d / mag;
}

/* The fixture's reference: its tokens/positions (from <name>.json) and the numpy logits
   (<name>.bin, [n_rows][n_vocab] f32). Returns n_rows or -1. */
static int load_reference(const char *name, vb_token *toks, vb_pos *pos, int max, float **logits, int n_vocab) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.json", vbt_fixture_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static char js[1 << 16];
    size_t len = fread(js, 1, sizeof js - 1, f);
    fclose(f);
    js[len] = 0;
    int n = 0, np = 0;
    const char *t = strstr(js, "\"tokens\": ["), *p = strstr(js, "\"positions\": [");
    if (!t || !p) return -1;
    for (t += 11; *t && *t != ']' && n < max; n++) {
        toks[n] = (vb_token)strtol(t, (char **)&t, 10);
        while (*t == ',' || *t == ' ') t++;
    }
    for (p += 14; *p && *p != ']' && np < max; np++) {
        pos[np] = (vb_pos)strtol(p, (char **)&p, 10);
        while (*p == ',' || *p == ' ') p++;
    }
    if (np != n) return -1;
    snprintf(path, sizeof path, "%s/models/%s.bin", vbt_fixture_dir(), name);
    f = fopen(path, "rb");
    if (!f) return -1;
    *logits = malloc((size_t)n * n_vocab * sizeof(float));
    size_t got = *logits ? fread(*logits, sizeof(float), (size_t)n * n_vocab, f) : 0;
    fclose(f);
    if (got != (size_t)n * n_vocab) {
        free(*logits);
        *logits = NULL;
        return -1;
    }
    return n;
}

static const char *const MODELS[] = {"gpt2-q8_0", "llama-f32-256", "llama-f16-mqa", "qwen3-f32", "qwen2-f32-896",
                                     "qwen3-q8_0"};

/* Against the F32 cache and the numpy reference, on the fixtures' own tokens and positions
   (positions out of order included). */
TEST(kv_q8_0_close_to_f32_and_reference) {
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        char path[1024], err[512] = "";
        snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), MODELS[mi]);
        vb_model *m = NULL;
        CHECKF(vb_model_load(path, NULL, &m, err, sizeof err) == VB_OK, "run `make fixtures`: %s", err);
        if (!m) return;
        const int32_t V = vb_model_get_info(m)->n_vocab;
        vb_token toks[64];
        vb_pos pos[64];
        float *ref = NULL;
        int n = load_reference(MODELS[mi], toks, pos, 64, &ref, V);
        CHECKF(n > 0, "%s: reference fixture unreadable (run `make fixtures`)", MODELS[mi]);
        vb_context *cq = open_ctx(m, "cpu", VB_KV_Q8_0, 256, err, sizeof err);
        CHECKF(cq, "%s: %s", MODELS[mi], err);
        vb_context *cf = open_ctx(m, "cpu", VB_KV_F32, 256, err, sizeof err);
        float *lq = malloc((size_t)n * V * sizeof(float)), *lf = malloc((size_t)n * V * sizeof(float));
        vb_batch *b = vb_batch_init(n);
        for (int i = 0; i < n; i++) vb_batch_add(b, toks[i], pos[i], 0, true);
        CHECK_EQ_INT(vb_forward(cq, b), VB_OK);
        for (int i = 0; i < n; i++) memcpy(lq + (size_t)i * V, vb_get_logits(cq, i), (size_t)V * sizeof(float));
        CHECK_EQ_INT(vb_forward(cf, b), VB_OK);
        for (int i = 0; i < n; i++) memcpy(lf + (size_t)i * V, vb_get_logits(cf, i), (size_t)V * sizeof(float));
        const double d_f32 = rel_diff(lq, lf, (size_t)n * V), d_ref = rel_diff(lq, ref, (size_t)n * V);
        const double f32_ref = rel_diff(lf, ref, (size_t)n * V);
        fprintf(stderr, "     %-16s q8_0 vs f32 KV %.2e, vs reference %.2e (f32 KV vs reference %.2e)\n",
                MODELS[mi], d_f32, d_ref, f32_ref);
        CHECKF(d_f32 > 0 && d_f32 <= Q8_BOUND, "%s: q8_0 vs f32 KV differ by %g", MODELS[mi], d_f32);
        CHECKF(d_ref <= Q8_BOUND + f32_ref, "%s: q8_0 KV vs reference %g", MODELS[mi], d_ref);
        vb_batch_free(b);
        free(lq);
        free(lf);
        free(ref);
        vb_context_free(cq);
        vb_context_free(cf);
        vb_model_free(m);
    }
}

/* A context of 500 rows (decode attention in two chunks of 256, split across threads): decode
   rows close to the F32 cache's, and every row the same alone as in a batch of 7 (batched
   prefill, one-row decode and threads give the same bits). */
TEST(kv_q8_0_depth_and_batch_invariance) {
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/models/llama-f32-256.gguf", vbt_fixture_dir());
    vb_model *m = NULL;
    CHECKF(vb_model_load(path, NULL, &m, err, sizeof err) == VB_OK, "run `make fixtures`: %s", err);
    if (!m) return;
    const int32_t V = vb_model_get_info(m)->n_vocab;
    enum { N = 500 };
    vb_token toks[N];
    for (int i = 0; i < N; i++) toks[i] = (vb_token)((1103515245u * (unsigned)(i + 3) + 12345u) % (unsigned)V);
    vb_context *cq = open_ctx(m, "cpu", VB_KV_Q8_0, 512, err, sizeof err);
    CHECKF(cq, "%s", err);
    vb_context *cf = open_ctx(m, "cpu", VB_KV_F32, 512, err, sizeof err);
    float *one = malloc((size_t)N * V * sizeof(float)), *many = malloc((size_t)N * V * sizeof(float));
    float *f32 = malloc((size_t)N * V * sizeof(float));
    CHECK_EQ_INT(run(cq, toks, N, 1, one), VB_OK);
    CHECK_EQ_INT(run(cq, toks, N, 7, many), VB_OK);
    CHECK_EQ_INT(run(cf, toks, N, 7, f32), VB_OK);
    const double same = rel_diff(one, many, (size_t)N * V);
    CHECKF(same == 0.0, "q8_0 KV: rows alone and in batches of 7 differ by %g", same);
    const double d = rel_diff(one + (size_t)(N - 40) * V, f32 + (size_t)(N - 40) * V, (size_t)40 * V);
    fprintf(stderr, "     rows 460..499: q8_0 vs f32 KV %.2e\n", d);
    CHECKF(d > 0 && d <= Q8_BOUND, "deep rows: q8_0 vs f32 KV differ by %g", d);
    /* two threads split the deep rows' attention: the same bits */
    vb_context_params p = vb_context_default_params();
    p.n_ctx = 512;
    p.n_seq_max = 1;
    p.n_threads = 2;
    p.kv_type = VB_KV_Q8_0;
    vb_context *c2 = NULL;
    CHECK_EQ_INT(vb_context_init(m, &p, &c2, err, sizeof err), VB_OK);
    CHECK_EQ_INT(run(c2, toks, N, 7, f32), VB_OK);
    CHECKF(rel_diff(f32, many, (size_t)N * V) == 0.0, "q8_0 KV: 2 threads differ from 1");
    vb_context_free(c2);
    free(one);
    free(many);
    free(f32);
    vb_context_free(cq);
    vb_context_free(cf);
    vb_model_free(m);
}

/* llama.cpp with its own q8_0 K and V cache on the same files: vibee's q8_0 cache is no farther
   from vibee's F32 cache than llama.cpp's q8_0 cache is from llama.cpp's F32 cache (llama.cpp
   also rounds the queries to q8_0 for the K products), and the two q8_0 runs agree within the
   bound. One-row steps (decode). */
TEST(kv_q8_0_agrees_with_llamacpp) {
    for (size_t mi = 0; mi < sizeof MODELS / sizeof MODELS[0]; mi++) {
        char path[1024], err[512] = "";
        snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), MODELS[mi]);
        vb_model *m = NULL;
        CHECKF(vb_model_load(path, NULL, &m, err, sizeof err) == VB_OK, "run `make fixtures`: %s", err);
        if (!m) return;
        vb_context *lq = open_ctx(m, "llamacpp", VB_KV_Q8_0, 256, err, sizeof err);
        if (!lq && strstr(err, "unknown backend")) {
            vb_model_free(m);
            vbt_skip("the llamacpp backend is not built");
            return;
        }
        CHECKF(lq, "llamacpp with a q8_0 KV cache: %s", err);
        vb_context *lf = open_ctx(m, "llamacpp", VB_KV_F32, 256, err, sizeof err);
        vb_context *vq = open_ctx(m, "cpu", VB_KV_Q8_0, 256, err, sizeof err);
        vb_context *vf = open_ctx(m, "cpu", VB_KV_F32, 256, err, sizeof err);
        CHECK(lf && vq && vf);
        const int32_t V = vb_model_get_info(m)->n_vocab;
        enum { N = 48 };
        vb_token toks[N];
        for (int i = 0; i < N; i++) toks[i] = (vb_token)((7919u * (unsigned)(i + 1)) % (unsigned)V);
        float *out[4];
        vb_context *ctx[4] = {lq, lf, vq, vf};
        for (int k = 0; k < 4; k++) {
            out[k] = malloc((size_t)N * V * sizeof(float));
            CHECK_EQ_INT(run(ctx[k], toks, N, 1, out[k]), VB_OK);
        }
        const size_t n = (size_t)N * V;
        const double d_llama = rel_diff(out[0], out[1], n), d_vibee = rel_diff(out[2], out[3], n);
        const double d_both = rel_diff(out[2], out[0], n);
        fprintf(stderr, "     %-16s q8_0 vs f32 KV: vibee %.2e, llama.cpp %.2e; vibee vs llama.cpp q8_0 %.2e\n",
                MODELS[mi], d_vibee, d_llama, d_both);
        CHECKF(d_vibee <= d_llama * 1.25 + 1e-3, "%s: vibee's q8_0 cache moves logits by %g, llama.cpp's by %g",
               MODELS[mi], d_vibee, d_llama);
        CHECKF(d_both <= Q8_BOUND, "%s: vibee vs llama.cpp with q8_0 KV: %g", MODELS[mi], d_both);
        for (int k = 0; k < 4; k++) {
            free(out[k]);
            vb_context_free(ctx[k]);
        }
        vb_model_free(m);
    }
}

TEST(kv_q8_0_refusals) {
    char path[1024], err[512] = "";
    /* a head size of 24 (gpt2-f32): Q8_0 blocks would span two heads */
    snprintf(path, sizeof path, "%s/models/gpt2-f32.gguf", vbt_fixture_dir());
    vb_model *m = NULL;
    CHECKF(vb_model_load(path, NULL, &m, err, sizeof err) == VB_OK, "%s", err);
    if (!m) return;
    vb_context_params p = vb_context_default_params();
    p.kv_type = VB_KV_Q8_0;
    vb_context *c = NULL;
    CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_UNSUPPORTED);
    CHECKF(strstr(err, "multiple of 32") && strstr(err, "24"), "%s", err);
    CHECK(c == NULL);
    vb_model_free(m);
    /* a backend without a q8_0 cache */
    vb_sim_params sp = vb_sim_default_params();
    CHECK_EQ_INT(vb_model_load_sim(&sp, &m, NULL, 0), VB_OK);
    p.backend = "sim";
    CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_UNSUPPORTED);
    CHECKF(strstr(err, "q8_0") && strstr(err, "sim"), "%s", err);
    p.kv_type = 7;
    CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_ARG);
    vb_model_free(m);
    /* the CLI spelling */
    char out[4096];
    snprintf(path, sizeof path, "'%s' run -m '%s/models/qwen3-f32.gguf' --kv-type q8_0 --prompt-tokens 1,2,3 -n 4 2>&1",
             vbt_vibee_bin(), vbt_fixture_dir());
    CHECK_EQ_INT(vbt_run_cmd(path, out, sizeof out), 0);
    snprintf(path, sizeof path, "'%s' run -m sim --kv-type q4 -n 4 2>&1", vbt_vibee_bin());
    CHECK_EQ_INT(vbt_run_cmd(path, out, sizeof out), 2);
    CHECKF(strstr(out, "q8_0"), "%s", out);
}
