/* test_decode_exact.c - WeDLM exact mode (every filled slot checked against the AR row before
 * it) against AR greedy on the sim backend (many seeds, confidences, tau, windows, with and
 * without reordering) and on the shipped model (cpu); the cost cache file (round trip,
 * hostile contents, reuse across contexts) and the online correction of cost(K). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode/cost_model.h"
#include "decode/decode_internal.h"
#include "test.h"
#include "vibee.h"

typedef struct exact_env {
    vb_model *model;
    vb_context *ctx;
} exact_env;

static int exact_open_sim(exact_env *e, uint64_t seed, float peak, const char *cost_path) {
    vb_sim_params sp = vb_sim_default_params();
    sp.seed = seed;
    sp.peak = peak;
    memset(e, 0, sizeof *e);
    if (vb_model_load_sim(&sp, &e->model, NULL, 0) != VB_OK) return -1;
    vb_context_params cp = vb_context_default_params();
    cp.backend = "sim";
    cp.n_ctx = 4096;
    cp.n_seq_max = 1;
    cp.cost_cache_path = cost_path;
    if (vb_context_init(e->model, &cp, &e->ctx, NULL, 0) != VB_OK) {
        vb_model_free(e->model);
        return -1;
    }
    return 0;
}

static void exact_close(exact_env *e) {
    vb_context_free(e->ctx);
    vb_model_free(e->model);
}

/* Generate n_pred tokens with p (hooks may be NULL) from an emptied sequence 0. */
static int exact_gen(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                     vb_generate_params p, int32_t n_pred, const vb_decode_hooks *hooks,
                     vb_token *out, int32_t *n_out, vb_generate_stats *st) {
    p.n_predict = n_pred;
    vb_kv_free_seq(ctx, 0);
    return vb_generate_hooked(ctx, prompt, n_prompt, &p, out, 256, n_out, st, hooks);
}

/* Number of tokens where a and b differ (plus the length difference). */
static int n_diff(const vb_token *a, int32_t na, const vb_token *b, int32_t nb) {
    int d = na > nb ? na - nb : nb - na;
    for (int32_t i = 0; i < na && i < nb; i++) d += a[i] != b[i];
    return d;
}

TEST(decode_wedlm_exact_equals_ar_sim) {
    const float peaks[3] = {2.0f, 8.0f, 30.0f};
    const float taus[3] = {0.4f, 3.0f, 100.0f};
    const int32_t windows[2] = {4, 16};
    const char *text = "import os\nimport os\nimport sys\n";
    vb_token prompt[64];
    int32_t n_prompt = 0;
    for (const char *s = text; *s; s++) prompt[n_prompt++] = (unsigned char)*s;
    int lossy_differs = 0; /* the same settings without the check must differ somewhere */
    double best_tpf = 0.0;
    for (uint64_t seed = 1; seed <= 4; seed++)
        for (int pi = 0; pi < 3; pi++) {
            exact_env e;
            CHECK(exact_open_sim(&e, seed, peaks[pi], NULL) == 0);
            vb_generate_params p = vb_generate_default_params();
            vb_token ar[256], out[256];
            int32_t n_ar = 0, n_out = 0;
            vb_generate_stats st;
            CHECK(exact_gen(e.ctx, prompt, n_prompt, p, 96, NULL, ar, &n_ar, &st) == VB_OK);
            p.decoder = VB_DECODER_WEDLM;
            for (int ti = 0; ti < 3; ti++)
                for (int wi = 0; wi < 2; wi++)
                    for (int d0 = 0; d0 < 2; d0++) {
                        p.tau = taus[ti];
                        p.window = windows[wi];
                        p.wedlm_d0_ar = d0;
                        p.wedlm_exact = false;
                        CHECK(exact_gen(e.ctx, prompt, n_prompt, p, 96, NULL, out, &n_out, &st) ==
                              VB_OK);
                        lossy_differs += n_diff(ar, n_ar, out, n_out) > 0;
                        p.wedlm_exact = true;
                        int rc = exact_gen(e.ctx, prompt, n_prompt, p, 96, NULL, out, &n_out, &st);
                        CHECKF(rc == VB_OK, "rc %d: %s", rc, st.note);
                        CHECKF(n_diff(ar, n_ar, out, n_out) == 0,
                               "seed %llu peak %.0f tau %.1f W %d d0 %d: %d tokens differ from AR",
                               (unsigned long long)seed, peaks[pi], taus[ti], windows[wi], d0,
                               n_diff(ar, n_ar, out, n_out));
                        CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + n_out);
                        if (st.tokens_per_forward > best_tpf) best_tpf = st.tokens_per_forward;
                    }
            exact_close(&e);
            if (vbt_failed_now()) return;
        }
    CHECKF(lossy_differs > 0, "WeDLM without the check never left AR greedy: the test is void");
    /* on the confident sim (peak 30) masks are mostly right: several tokens per forward */
    CHECKF(best_tpf > 2.0, "best %.2f tokens/forward", best_tpf);
}

/* Exact mode stays AR greedy even when the "mask" token is a token AR itself emits (a wrong
 * --mask-token): AR-row fills and checks never ban it, only mask-row drafts do. */
TEST(decode_wedlm_exact_mask_id_emitted_by_ar) {
    exact_env e;
    CHECK(exact_open_sim(&e, 2, 8.0f, NULL) == 0);
    vb_token prompt[16] = {'f', 'o', 'r', ' ', 'x', ' ', 'i', 'n', ' '};
    vb_generate_params p = vb_generate_default_params();
    vb_token ar[256], out[256];
    int32_t n_ar = 0, n_out = 0;
    vb_generate_stats st;
    CHECK(exact_gen(e.ctx, prompt, 9, p, 96, NULL, ar, &n_ar, &st) == VB_OK);
    int count[256] = {0}, best = 0;
    for (int i = 0; i < n_ar; i++)
        if (ar[i] >= 0 && ar[i] < 256 && ++count[ar[i]] > count[best]) best = ar[i];
    CHECKF(count[best] >= 3, "AR output too varied (%d)", count[best]);
    p.decoder = VB_DECODER_WEDLM;
    p.wedlm_exact = true;
    p.mask_token = best;
    p.tau = 100.0f;
    p.window = 4;
    CHECK(exact_gen(e.ctx, prompt, 9, p, 96, NULL, out, &n_out, &st) == VB_OK);
    CHECKF(n_diff(ar, n_ar, out, n_out) == 0, "mask id %d: differs from AR", best);
    exact_close(&e);
}

/* A backend that masks by position (llama.cpp's caps) takes the prefix-only fallback; exact mode
 * must stay lossless there too. */
TEST(decode_wedlm_exact_position_masked) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        exact_env e;
        CHECK(exact_open_sim(&e, seed, 30.0f, NULL) == 0);
        vb_token prompt[16] = {'d', 'e', 'f', ' ', 'f', '('};
        vb_generate_params p = vb_generate_default_params();
        vb_token ar[256], out[256];
        int32_t n_ar = 0, n_out = 0;
        vb_generate_stats st;
        CHECK(exact_gen(e.ctx, prompt, 6, p, 80, NULL, ar, &n_ar, &st) == VB_OK);
        vb_backend_caps caps = vb_context_caps(e.ctx);
        caps.physical_causality = false;
        vb_decode_hooks hooks = {NULL, NULL, &caps, NULL};
        p.decoder = VB_DECODER_WEDLM;
        p.wedlm_exact = true;
        p.tau = 100.0f;
        p.window = 8;
        CHECK(exact_gen(e.ctx, prompt, 6, p, 80, &hooks, out, &n_out, &st) == VB_OK);
        CHECKF(n_diff(ar, n_ar, out, n_out) == 0, "seed %llu: differs from AR",
               (unsigned long long)seed);
        CHECK(strstr(st.note, "masks by position") != NULL);
        exact_close(&e);
    }
}

/* Temperature > 0: exact mode samples every committed token from an exact AR row; check it
 * runs, commits n_predict tokens and keeps the KV consistent (distributional equality is the
 * argument in wedlm.c, as for verify). */
TEST(decode_wedlm_exact_sampling_runs) {
    exact_env e;
    CHECK(exact_open_sim(&e, 5, 4.0f, NULL) == 0);
    vb_token prompt[4] = {'a', 'b', 'c', 'd'}, out[256];
    int32_t n_out = 0;
    vb_generate_stats st;
    vb_generate_params p = vb_generate_default_params();
    p.decoder = VB_DECODER_WEDLM;
    p.wedlm_exact = true;
    p.tau = 100.0f;
    p.sampler.temp = 0.9f;
    p.sampler.seed = 7;
    p.stop_at_eos = false;
    CHECK(exact_gen(e.ctx, prompt, 4, p, 120, NULL, out, &n_out, &st) == VB_OK);
    CHECK_EQ_INT(n_out, 120);
    CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), 4 + 120);
    vb_token mask = vb_model_get_info(e.model)->mask;
    for (int i = 0; i < n_out; i++) CHECK(out[i] >= 0 && out[i] != mask);
    exact_close(&e);
}

/* The shipped models on the cpu backend (the embedded one, its Q8_0 copy and the
 * self-distilled variant in models/): every mask filled (tau 100), every fill checked, output =
 * the model's AR greedy. */
static void exact_shipped(const char *file) {
    vb_model *m = NULL;
    char err[256] = "";
    size_t size = 0;
    const void *data = file ? NULL : vb_embedded_model(&size);
    int rc = data ? vb_model_load_from_memory(data, size, "wedlm-py-6m", NULL, &m, err, sizeof err)
                  : vb_model_load(file ? file : "models/wedlm-py-6m-f16.gguf", NULL, &m, err,
                                  sizeof err);
    CHECKF(rc == VB_OK, "load %s: %s", file ? file : "(embedded)", err);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_ctx = 512;
    cp.n_seq_max = 1;
    vb_context *ctx = NULL;
    rc = vb_context_init(m, &cp, &ctx, err, sizeof err);
    CHECKF(rc == VB_OK, "cpu backend: %s", err);
    const char *texts[2] = {"import os\nimport sys\n\ndef main(",
                            "x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, "};
    for (int ti = 0; ti < 2; ti++) {
        vb_token prompt[64], ar[256], out[256];
        int32_t n_prompt = vb_tokenize(m, texts[ti], strlen(texts[ti]), true, false, prompt, 64);
        CHECK(n_prompt > 0 && n_prompt <= 64);
        int32_t n_ar = 0, n_out = 0;
        vb_generate_stats st;
        vb_generate_params p = vb_generate_default_params();
        p.stop_at_eos = false;
        CHECK(exact_gen(ctx, prompt, n_prompt, p, 64, NULL, ar, &n_ar, &st) == VB_OK);
        p.decoder = VB_DECODER_WEDLM;
        p.wedlm_exact = true;
        const float taus[2] = {1.0f, 100.0f};
        for (int k = 0; k < 2; k++) {
            p.tau = taus[k];
            p.window = 8;
            CHECK(exact_gen(ctx, prompt, n_prompt, p, 64, NULL, out, &n_out, &st) == VB_OK);
            CHECKF(n_diff(ar, n_ar, out, n_out) == 0, "%s prompt %d tau %.0f: differs from AR",
                   file ? file : "embedded", ti, taus[k]);
        }
    }
    vb_context_free(ctx);
    vb_model_free(m);
}

TEST(decode_wedlm_exact_shipped_model) { exact_shipped(NULL); }
TEST(decode_wedlm_exact_distilled_model) { exact_shipped("models/wedlm-py-6m-sd-f16.gguf"); }
/* the Q8_0 copy: the packed VNNI product (kernels.h) must give K-row windows the bits of AR */
TEST(decode_wedlm_exact_q8_0_model) { exact_shipped("models/wedlm-py-6m-q8_0.gguf"); }

/* ------------------------------------------------------------------------------------------
 * cost cache file and online correction
 * ------------------------------------------------------------------------------------------ */

static void tmp_path(char *buf, size_t len, const char *tag) {
    snprintf(buf, len, "/tmp/vibee-test-%s-%ld.tsv", tag, (long)getpid());
    remove(buf);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

TEST(decode_cost_file_roundtrip) {
    char path[256];
    tmp_path(path, sizeof path, "cost-rt");
    vb_cost_table t = {3, {1, 4, 16}, {1e-4, 2.5e-4, 9.75e-4}}, u;
    CHECK(vb_cost_file_load(path, "k1", &u) == VB_ERR_IO); /* no file */
    CHECK(vb_cost_file_store(path, "k1", &t) == VB_OK);
    vb_cost_table t2 = {2, {1, 2}, {3e-3, 4e-3}};
    CHECK(vb_cost_file_store(path, "k2", &t2) == VB_OK);
    CHECK(vb_cost_file_load(path, "k1", &u) == VB_OK);
    CHECK_EQ_INT(u.n, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(u.rows[i], t.rows[i]);
        CHECK(fabs(u.seconds[i] - t.seconds[i]) <= 1e-12);
    }
    CHECK(vb_cost_file_load(path, "k", &u) == VB_ERR_IO); /* a prefix of a key is not the key */
    t.seconds[0] = 5e-5; /* replace k1: one line, new value, k2 kept */
    CHECK(vb_cost_file_store(path, "k1", &t) == VB_OK);
    CHECK(vb_cost_file_load(path, "k1", &u) == VB_OK && fabs(u.seconds[0] - 5e-5) < 1e-15);
    CHECK(vb_cost_file_load(path, "k2", &u) == VB_OK && u.n == 2 && u.rows[1] == 2);
    FILE *f = fopen(path, "rb");
    int lines = 0, ch;
    while (f && (ch = fgetc(f)) != EOF) lines += ch == '\n';
    if (f) fclose(f);
    CHECK_EQ_INT(lines, 2);
    /* keys with a tab or newline are refused; an unwritable place fails cleanly */
    CHECK(vb_cost_file_store(path, "a\tb", &t) == VB_ERR_ARG);
    CHECK(vb_cost_file_store("/nonexistent-dir/x/costs.tsv", "k", &t) == VB_ERR_IO);
    remove(path);
}

TEST(decode_cost_file_hostile) {
    char path[256];
    tmp_path(path, sizeof path, "cost-bad");
    static const char *bad[] = {
        "k\t",                         /* no points */
        "k\t1:0.001,",                 /* trailing comma only: parsed as one point, fine? */
        "k\t0:0.001",                  /* K < 1 */
        "k\t1:-1",                     /* negative seconds */
        "k\t1:nan",                    /* NaN */
        "k\t1:inf",                    /* inf */
        "k\t4:0.001,2:0.002",          /* not ascending */
        "k\t1:0.001;2:0.002",          /* bad separator */
        "k\t1:0.001,2:0.001,3:0.001,4:0.001,5:0.001,6:0.001,7:0.001,8:0.001,9:0.001", /* > max */
        "k\t99999999999999999999:1",   /* overflow */
        "k 1:0.001",                   /* no tab */
        "k\t1:0.001x",                 /* junk after a number */
    };
    int accepted = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i], strlen(bad[i]));
        vb_cost_table u;
        int rc = vb_cost_file_load(path, "k", &u);
        if (rc == VB_OK) {
            accepted++;
            CHECK(u.n >= 1 && u.n <= VB_COST_MAX_POINTS);
            for (int j = 0; j < u.n; j++) CHECK(u.rows[j] >= 1 && u.seconds[j] > 0.0);
        }
    }
    CHECKF(accepted <= 1, "%d malformed lines accepted", accepted); /* only "1:0.001," */
    /* random bytes, and random mutations of a good file: never a crash, never a bad table */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    char good[] = "k\t1:0.0001,2:0.0002,4:0.0004,8:0.0008\nother\t1:0.5\n";
    char buf[256];
    for (int it = 0; it < 3000; it++) {
        size_t n;
        if (it % 2) {
            n = sizeof good - 1;
            memcpy(buf, good, n);
            for (int m = 0; m < 3; m++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                buf[(s >> 33) % n] = (char)(s >> 17);
            }
        } else {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            n = (s >> 40) % sizeof buf;
            for (size_t j = 0; j < n; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                buf[j] = (char)(s >> 35);
            }
        }
        write_file(path, buf, n);
        vb_cost_table u;
        if (vb_cost_file_load(path, "k", &u) == VB_OK) {
            CHECK(u.n >= 1 && u.n <= VB_COST_MAX_POINTS);
            for (int j = 0; j < u.n; j++)
                CHECK(u.rows[j] >= 1 && (j == 0 || u.rows[j] > u.rows[j - 1]) &&
                      u.seconds[j] > 0.0 && isfinite(u.seconds[j]));
        }
        /* storing over a damaged file keeps going */
        vb_cost_table t = {1, {1}, {1e-3}};
        CHECK(vb_cost_file_store(path, "k", &t) == VB_OK);
        CHECK(vb_cost_file_load(path, "k", &u) == VB_OK && u.n == 1);
        if (vbt_failed_now()) break;
    }
    remove(path);
}

/* A second context with the same cost cache file finds the table without timing a forward. */
TEST(decode_cost_cache_across_contexts) {
    char path[256];
    tmp_path(path, sizeof path, "cost-ctx");
    exact_env a, b;
    CHECK(exact_open_sim(&a, 3, 8.0f, path) == 0);
    vb_batch *batch = vb_batch_init(4);
    for (int i = 0; i < 4; i++) vb_batch_add(batch, 'a' + i, i, 0, false);
    CHECK(vb_forward(a.ctx, batch) == VB_OK);
    vb_cost_table ta, tb;
    int64_t before = vb_context_stats(a.ctx).n_forward;
    CHECK(vb_cost_measure(a.ctx, 0, 'a', 16, &ta) == VB_OK);
    CHECK(vb_context_stats(a.ctx).n_forward > before); /* measured */
    char key[512];
    vb_cost_key(a.ctx, key, sizeof key);
    CHECK(strstr(key, "backend=sim") != NULL && strchr(key, '\t') == NULL);
    CHECK(vb_cost_file_load(path, key, &tb) == VB_OK && tb.n == ta.n);

    CHECK(exact_open_sim(&b, 3, 8.0f, path) == 0);
    CHECK(vb_forward(b.ctx, batch) == VB_OK);
    before = vb_context_stats(b.ctx).n_forward;
    CHECK(vb_cost_measure(b.ctx, 0, 'a', 16, &tb) == VB_OK);
    CHECK_EQ_INT((int)(vb_context_stats(b.ctx).n_forward - before), 0); /* from the file */
    CHECK_EQ_INT(tb.n, ta.n);
    for (int i = 0; i < ta.n; i++) CHECK(fabs(tb.seconds[i] - ta.seconds[i]) <= 1e-9 * ta.seconds[i]);
    /* a different model shape is a different key: measured again */
    exact_env c;
    vb_sim_params sp = vb_sim_default_params();
    sp.n_vocab = 300;
    memset(&c, 0, sizeof c);
    CHECK(vb_model_load_sim(&sp, &c.model, NULL, 0) == VB_OK);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "sim";
    cp.cost_cache_path = path;
    CHECK(vb_context_init(c.model, &cp, &c.ctx, NULL, 0) == VB_OK);
    CHECK(vb_forward(c.ctx, batch) == VB_OK);
    before = vb_context_stats(c.ctx).n_forward;
    CHECK(vb_cost_measure(c.ctx, 0, 'a', 16, &tb) == VB_OK);
    CHECK(vb_context_stats(c.ctx).n_forward > before);
    vb_batch_free(batch);
    exact_close(&a);
    exact_close(&b);
    exact_close(&c);
    remove(path);
}

TEST(decode_cost_online_median) {
    vb_cost_table t = {2, {1, 4}, {1.0, 4.0}};
    vb_cost_online o;
    vb_cost_online_init(&o, &t);
    CHECK(fabs(vb_cost_online_seconds(&o, 2) - 2.0) < 1e-12); /* the table until 3 timings */
    vb_cost_online_observe(&o, 2, 50.0);                      /* a cold first forward */
    vb_cost_online_observe(&o, 2, 1.5);
    CHECK(fabs(vb_cost_online_seconds(&o, 2) - 2.0) < 1e-12);
    vb_cost_online_observe(&o, 2, 1.6);
    CHECK(fabs(vb_cost_online_seconds(&o, 2) - 1.6) < 1e-12); /* median of 50, 1.5, 1.6 */
    for (int i = 0; i < 20; i++) vb_cost_online_observe(&o, 2, 1.2);
    CHECK(fabs(vb_cost_online_seconds(&o, 2) - 1.2) < 1e-12); /* the ring forgot the old ones */
    vb_cost_online_observe(&o, 2, NAN);
    vb_cost_online_observe(&o, 2, -1.0);
    vb_cost_online_observe(&o, 99, 1.0); /* out of range: ignored */
    CHECK(fabs(vb_cost_online_seconds(&o, 2) - 1.2) < 1e-12);
}

/* The online correction goes into the context's table when it is within 2x of the measurement,
 * never into the file, and a wild observation (10x) is ignored. */
TEST(decode_cost_online_save) {
    char path[256];
    tmp_path(path, sizeof path, "cost-save");
    exact_env a;
    CHECK(exact_open_sim(&a, 4, 8.0f, path) == 0);
    vb_batch *batch = vb_batch_init(4);
    for (int i = 0; i < 4; i++) vb_batch_add(batch, 'a' + i, i, 0, false);
    CHECK(vb_forward(a.ctx, batch) == VB_OK);
    vb_batch_free(batch);
    vb_cost_table measured, t, in_file;
    CHECK(vb_cost_measure(a.ctx, 0, 'a', 8, &measured) == VB_OK);
    CHECK(measured.n >= 2 && measured.rows[0] == 1 && measured.rows[1] == 2);
    vb_cost_online o;
    vb_cost_online_init(&o, &measured);
    for (int i = 0; i < 5; i++) {
        vb_cost_online_observe(&o, 1, 1.5 * measured.seconds[0]);
        vb_cost_online_observe(&o, 2, 10.0 * measured.seconds[1]);
    }
    vb_cost_online_save(a.ctx, &o);
    CHECK(vb_cost_measure(a.ctx, 0, 'a', 8, &t) == VB_OK); /* from the context */
    CHECK(fabs(t.seconds[0] - 1.5 * measured.seconds[0]) <= 1e-12 * measured.seconds[0]);
    CHECK(t.seconds[1] == measured.seconds[1]);
    char key[512];
    vb_cost_key(a.ctx, key, sizeof key);
    CHECK(vb_cost_file_load(path, key, &in_file) == VB_OK);
    CHECK(fabs(in_file.seconds[0] - measured.seconds[0]) <= 1e-9 * measured.seconds[0]);
    exact_close(&a);
    remove(path);
}

/* A callback that stops generation in the middle of a committed run (several tokens per step):
 * VB_OK with exactly the tokens up to the stop, for the variants and exact mode. */
static bool stop_at_n(vb_token t, void *user) {
    (void)t;
    int *left = user;
    return --*left > 0;
}

TEST(decode_wedlm_stop_inside_committed_run) {
    exact_env e;
    CHECK(exact_open_sim(&e, 6, 30.0f, NULL) == 0);
    vb_token prompt[8] = {'a', 'b', 'c', 'd', 'e', 'f'}, out[256];
    int32_t n_out = 0;
    vb_generate_stats st;
    int multi = 0; /* runs whose steps committed > 1 token: the case under test happened */
    for (int exact = 0; exact < 2; exact++)
        for (int n_stop = 1; n_stop <= 20; n_stop++) {
            vb_generate_params p = vb_generate_default_params();
            p.decoder = VB_DECODER_WEDLM;
            p.wedlm_exact = exact;
            p.tau = 2.0f;
            p.window = 8;
            int left = n_stop;
            p.on_token = stop_at_n;
            p.user = &left;
            int rc = exact_gen(e.ctx, prompt, 6, p, 60, NULL, out, &n_out, &st);
            CHECKF(rc == VB_OK, "exact %d stop %d: status %d (%s)", exact, n_stop, rc, st.note);
            CHECK_EQ_INT(n_out, n_stop);
            CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), 6 + n_stop);
            for (int k = 2; k < VB_HIST_MAX; k++) multi += st.commit_hist[k] > 0;
        }
    CHECKF(multi > 0, "no step committed more than one token: the test is void");
    exact_close(&e);
}
