/* test_cpu_backend.c - tests of the cpu backend's forward semantics (DESIGN §3) through the
 * public API: a K-row forward equals K one-row forwards; sequences in one batch equal each
 * sequence alone; non-monotonic positions (WeDLM reordering) equal the same rows one by one in
 * physical order; truncate + re-forward, fork, KV full, bad tokens, gpt2 positions. Each check
 * compares two different computation paths (batched matrix-matrix vs row by row, shared vs
 * fresh cache blocks), so a wrong mask, cache slot, block table walk or position would show.
 * Models: tiny random-weight F32 GGUF files of every architecture written here with the GGUF
 * writer, and the shipped WeDLM model (qwen3, F16) embedded in the library. The numerical
 * check against an independent numpy forward pass is tests/test_reference.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cpu/kernels.h"
#include "gguf/gguf.h"
#include "test.h"
#include "types.h"
#include "vibee.h"

/* ---------------------------------------------------------------------------------------- */
/* tiny random models */

typedef struct tiny_spec {
    const char *arch; /* gpt2, llama, qwen2, qwen3 */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    bool tied;                 /* no output.weight */
    int extra_declared_layers; /* block_count claims this many layers more than
                                  written */
} tiny_spec;

static uint64_t rng_state;
static float rng_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

typedef struct tensor_store {
    float *bufs[256];
    int n;
} tensor_store;

/* Defects to plant in the next model written (NULL: none). */
static const char *plant_q5_0_tensor;      /* this tensor is written as Q8_1 (no cpu kernel) */
static const char *plant_extra_row_tensor; /* this tensor gets one row too many */

static int add_tensor(vb_gguf_writer *w, tensor_store *ts, const char *name, int64_t n_in,
                      int64_t n_out, float center, float spread) {
    if (plant_extra_row_tensor && strcmp(name, plant_extra_row_tensor) == 0) n_out++;
    const int64_t n = n_in * n_out;
    float *d = malloc((size_t)n * sizeof *d);
    if (!d || ts->n >= 256) {
        free(d);
        return VB_ERR_NOMEM;
    }
    ts->bufs[ts->n++] = d;
    for (int64_t i = 0; i < n; i++) d[i] = center + spread * rng_uniform();
    const int64_t ne[2] = {n_in, n_out};
    uint32_t type = VB_TYPE_F32;
    if (plant_q5_0_tensor && strcmp(name, plant_q5_0_tensor) == 0) {
        type = VB_TYPE_Q8_1; /* 36 bytes per 32 elements fit in the f32 buffer; zeros are valid */
        memset(d, 0, (size_t)n * sizeof *d);
    }
    return vb_gguf_writer_add_tensor(w, name, type, n_out > 1 ? 2 : 1, ne, d);
}

/* Write a random F32 model of spec to path. Returns VB_OK or an error. */
static int write_tiny_model(const tiny_spec *s, const char *path, uint64_t seed) {
    rng_state = seed;
    vb_gguf_writer *w = vb_gguf_writer_init();
    if (!w) return VB_ERR_NOMEM;
    tensor_store ts = {.n = 0};
    char key[128], name[128];
    const char *a = s->arch;
    const bool gpt2 = strcmp(a, "gpt2") == 0;
    const int E = s->n_embd, Q = s->n_head * s->head_dim, KV = s->n_head_kv * s->head_dim;
    int rc = vb_gguf_writer_set_str(w, "general.architecture", a);
#define KEY_U32(suffix, v)                                                                         \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if (rc == VB_OK) rc = vb_gguf_writer_set_u32(w, key, (uint32_t)(v));                       \
    } while (0)
#define KEY_F32(suffix, v)                                                                         \
    do {                                                                                           \
        snprintf(key, sizeof key, "%s.%s", a, suffix);                                             \
        if (rc == VB_OK) rc = vb_gguf_writer_set_f32(w, key, (v));                                 \
    } while (0)
    KEY_U32("context_length", s->n_ctx);
    KEY_U32("embedding_length", E);
    KEY_U32("block_count", s->n_layer + s->extra_declared_layers);
    KEY_U32("feed_forward_length", s->n_ff);
    KEY_U32("attention.head_count", s->n_head);
    KEY_U32("attention.head_count_kv", s->n_head_kv);
    KEY_U32("attention.key_length", s->head_dim);
    KEY_U32("attention.value_length", s->head_dim);
    if (gpt2) {
        KEY_F32("attention.layer_norm_epsilon", 1e-5f);
    } else {
        KEY_F32("attention.layer_norm_rms_epsilon", 1e-6f);
        KEY_F32("rope.freq_base", 10000.0f);
    }
#define T(nm, n_in, n_out, c, sp)                                                                  \
    do {                                                                                           \
        if (rc == VB_OK) rc = add_tensor(w, &ts, nm, n_in, n_out, c, sp);                          \
    } while (0)
#define TL(fmt, n_in, n_out, c, sp)                                                                \
    do {                                                                                           \
        snprintf(name, sizeof name, fmt, il);                                                      \
        T(name, n_in, n_out, c, sp);                                                               \
    } while (0)
    const float wE = 1.7f / sqrtf((float)E), wQ = 1.7f / sqrtf((float)Q),
                wF = 1.7f / sqrtf((float)s->n_ff);
    T("token_embd.weight", E, s->n_vocab, 0.0f, 1.0f);
    T("output_norm.weight", E, 1, 1.0f, 0.2f);
    if (!s->tied) T("output.weight", E, s->n_vocab, 0.0f, wE);
    if (gpt2) {
        T("position_embd.weight", E, s->n_ctx, 0.0f, 0.5f);
        T("output_norm.bias", E, 1, 0.0f, 0.1f);
    }
    for (int il = 0; il < s->n_layer; il++) {
        TL("blk.%d.attn_norm.weight", E, 1, 1.0f, 0.2f);
        TL("blk.%d.ffn_norm.weight", E, 1, 1.0f, 0.2f);
        TL("blk.%d.attn_output.weight", Q, E, 0.0f, wQ);
        TL("blk.%d.ffn_up.weight", E, s->n_ff, 0.0f, wE);
        TL("blk.%d.ffn_down.weight", s->n_ff, E, 0.0f, wF);
        if (gpt2) {
            TL("blk.%d.attn_norm.bias", E, 1, 0.0f, 0.1f);
            TL("blk.%d.ffn_norm.bias", E, 1, 0.0f, 0.1f);
            TL("blk.%d.attn_qkv.weight", E, Q + 2 * KV, 0.0f, wE);
            TL("blk.%d.attn_qkv.bias", Q + 2 * KV, 1, 0.0f, 0.1f);
            TL("blk.%d.attn_output.bias", E, 1, 0.0f, 0.1f);
            TL("blk.%d.ffn_up.bias", s->n_ff, 1, 0.0f, 0.1f);
            TL("blk.%d.ffn_down.bias", E, 1, 0.0f, 0.1f);
            continue;
        }
        TL("blk.%d.attn_q.weight", E, Q, 0.0f, wE);
        TL("blk.%d.attn_k.weight", E, KV, 0.0f, wE);
        TL("blk.%d.attn_v.weight", E, KV, 0.0f, wE);
        TL("blk.%d.ffn_gate.weight", E, s->n_ff, 0.0f, wE);
        if (strcmp(a, "qwen2") == 0) {
            TL("blk.%d.attn_q.bias", Q, 1, 0.0f, 0.1f);
            TL("blk.%d.attn_k.bias", KV, 1, 0.0f, 0.1f);
            TL("blk.%d.attn_v.bias", KV, 1, 0.0f, 0.1f);
        }
        if (strcmp(a, "qwen3") == 0) {
            TL("blk.%d.attn_q_norm.weight", s->head_dim, 1, 1.0f, 0.2f);
            TL("blk.%d.attn_k_norm.weight", s->head_dim, 1, 1.0f, 0.2f);
        }
    }
#undef T
#undef TL
#undef KEY_U32
#undef KEY_F32
    char err[256] = "";
    if (rc == VB_OK) rc = vb_gguf_writer_write(w, path, err, sizeof err);
    if (rc != VB_OK) fprintf(stderr, "    write_tiny_model(%s): %d %s\n", a, rc, err);
    vb_gguf_writer_free(w);
    for (int i = 0; i < ts.n; i++) free(ts.bufs[i]);
    return rc;
}

static const tiny_spec TINY_GPT2 = {"gpt2", 64, 32, 2, 4, 4, 8, 64, 48, false, 0};
static const tiny_spec TINY_LLAMA = {"llama", 64, 32, 2, 4, 2, 8, 48, 256, false, 0};
static const tiny_spec TINY_QWEN2 = {"qwen2", 64, 32, 2, 4, 1, 8, 48, 256, true, 0};
static const tiny_spec TINY_QWEN3 = {"qwen3", 64, 32, 2, 4, 2, 16, 48, 256, true, 0};

/* Load the tiny model of spec (written to a temporary file). NULL on failure. */
static vb_model *load_tiny(const tiny_spec *s) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/vb_test_cpu_%s_%d.gguf", s->arch, (int)getpid());
    if (write_tiny_model(s, path, 0x5eed0000u + (uint64_t)s->n_head_kv) != VB_OK) return NULL;
    vb_model *m = NULL;
    char err[512] = "";
    int rc = vb_model_load(path, NULL, &m, err, sizeof err);
    unlink(path);
    if (rc != VB_OK) fprintf(stderr, "    load %s: %s\n", path, err);
    return m;
}

static vb_model *load_shipped(void) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    if (!data || !size) return NULL;
    vb_model *m = NULL;
    char err[512] = "";
    if (vb_model_load_from_memory(data, size, "wedlm-py-6m-f16", NULL, &m, err, sizeof err) !=
        VB_OK)
        fprintf(stderr, "    load embedded model: %s\n", err);
    return m;
}

static vb_context *make_ctx(vb_model *m, int n_ctx, int n_seq_max, int n_threads) {
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = n_ctx;
    p.n_seq_max = n_seq_max;
    p.n_threads = n_threads;
    p.n_batch_max = 64;
    vb_context *c = NULL;
    char err[512] = "";
    if (vb_context_init(m, &p, &c, err, sizeof err) != VB_OK)
        fprintf(stderr, "    vb_context_init: %s\n", err);
    return c;
}

/* ---------------------------------------------------------------------------------------- */
/* helpers */

/* Forward rows [n] (all want logits) and copy the logits into out[n][n_vocab]. */
static int run_rows(vb_context *c, int n, const vb_token *tok, const vb_pos *pos, const vb_seq *seq,
                    float *out) {
    const int32_t V = vb_model_get_info(vb_context_model(c))->n_vocab;
    vb_batch *b = vb_batch_init(n);
    if (!b) return VB_ERR_NOMEM;
    for (int i = 0; i < n; i++) vb_batch_add(b, tok[i], pos[i], seq[i], true);
    int rc = vb_forward(c, b);
    for (int i = 0; rc == VB_OK && i < n; i++)
        memcpy(out + (size_t)i * V, vb_get_logits(c, i), (size_t)V * sizeof(float));
    vb_batch_free(b);
    return rc;
}

/* Largest |a - b| over n, scaled by max(1, max |b|). */
static double max_rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, mag = 1.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return d / mag;
}

static const vb_token PROMPT[] = {3,  17, 42, 5,  9,  60, 33, 1,  28, 11, 50, 7,
                                  19, 2,  44, 38, 21, 6,  13, 57, 29, 4,  35, 48};
#define N_PROMPT ((int)(sizeof PROMPT / sizeof PROMPT[0]))

/* K rows in one forward == the same rows one per forward (sequence 0, positions
 * 0..K-1). */
static void check_k_rows_equal_single(vb_model *m, int n_threads, double tol) {
    const int K = 20;
    const int32_t V = vb_model_get_info(m)->n_vocab;
    vb_context *cb = make_ctx(m, 256, 4, n_threads), *cs = make_ctx(m, 256, 4, n_threads);
    float *lb = malloc((size_t)K * V * sizeof(float)), *ls = malloc((size_t)K * V * sizeof(float));
    CHECK(cb && cs && lb && ls);
    vb_pos pos[64];
    vb_seq seq[64] = {0};
    for (int i = 0; i < K; i++) pos[i] = i;
    CHECK_EQ_INT(run_rows(cb, K, PROMPT, pos, seq, lb), VB_OK);
    for (int i = 0; i < K; i++)
        CHECK_EQ_INT(run_rows(cs, 1, PROMPT + i, pos + i, seq, ls + (size_t)i * V), VB_OK);
    const double d = max_rel_diff(lb, ls, (size_t)K * V);
    CHECKF(d <= tol, "K-row vs single-row logits differ by %g (tol %g)", d, tol);
    CHECK_EQ_INT(vb_kv_seq_len(cb, 0), K);
    CHECK_EQ_INT(vb_kv_seq_len(cs, 0), K);
    /* the logits must not all be equal (a model that ignores its input would pass
     * above) */
    CHECK(max_rel_diff(lb, lb + (size_t)(K - 1) * V, (size_t)V) > 1e-3);
    vb_context_free(cb);
    vb_context_free(cs);
    free(lb);
    free(ls);
}

/* Run body on a freshly written tiny model of spec; the model is freed even
 * when body fails. */
static void with_tiny(const tiny_spec *spec, void (*body)(vb_model *m)) {
    vb_model *m = load_tiny(spec);
    CHECKF(m != NULL, "cannot make the tiny %s model", spec->arch);
    body(m);
    vb_model_free(m);
}

TEST(cpu_k_rows_equal_single_rows_all_archs) {
    const tiny_spec *specs[] = {&TINY_GPT2, &TINY_LLAMA, &TINY_QWEN2, &TINY_QWEN3};
    for (int s = 0; s < 4; s++) {
        vb_model *m = load_tiny(specs[s]);
        CHECKF(m != NULL, "load tiny %s", specs[s]->arch);
        check_k_rows_equal_single(m, 2, 1e-5);
        vb_model_free(m);
        if (vbt_failed_now()) {
            fprintf(stderr, "    (arch %s)\n", specs[s]->arch);
            return;
        }
    }
}

TEST(cpu_k_rows_equal_single_rows_shipped_f16) {
    vb_model *m = load_shipped();
    CHECK(m != NULL);
    CHECK(strcmp(vb_model_get_info(m)->arch, "qwen3") == 0);
    check_k_rows_equal_single(m, 2, 1e-4);
    vb_model_free(m);
}

static void cpu_threads_do_not_change_logits_body(vb_model *m_) {
    const int K = 12;
    const int32_t V = 64;
    vb_context *c1 = make_ctx(m_, 128, 2, 1), *c2 = make_ctx(m_, 128, 2, 3);
    float l1[12 * 64], l2[12 * 64];
    vb_pos pos[12];
    vb_seq seq[12] = {0};
    for (int i = 0; i < K; i++) pos[i] = i;
    CHECK(c1 && c2);
    CHECK_EQ_INT(run_rows(c1, K, PROMPT, pos, seq, l1), VB_OK);
    CHECK_EQ_INT(run_rows(c2, K, PROMPT, pos, seq, l2), VB_OK);
    CHECKF(max_rel_diff(l1, l2, (size_t)K * V) <= 1e-5, "1 vs 3 threads: %g",
           max_rel_diff(l1, l2, (size_t)K * V));
    vb_context_free(c1);
    vb_context_free(c2);
}

TEST(cpu_threads_do_not_change_logits) {
    with_tiny(&TINY_QWEN3, cpu_threads_do_not_change_logits_body);
}

/* Two sequences interleaved in one batch == each sequence alone in a fresh
 * context. */
static void check_two_sequences(vb_model *m) {
    const int32_t V = vb_model_get_info(m)->n_vocab;
    enum { NA = 7, NB = 11 };
    vb_token tok[NA + NB];
    vb_pos pos[NA + NB];
    vb_seq seq[NA + NB];
    int ia = 0, ib = 0;
    for (int i = 0; i < NA + NB; i++) { /* interleave: B B A B A ... */
        const bool take_a = ia < NA && (i % 3 == 2 || ib >= NB);
        seq[i] = take_a ? 1 : 3;
        tok[i] = take_a ? PROMPT[ia] : PROMPT[10 + ib];
        pos[i] = take_a ? ia++ : ib++;
    }
    float *lb = malloc((size_t)(NA + NB) * V * sizeof(float));
    float *la = malloc((size_t)NB * V * sizeof(float));
    vb_context *c = make_ctx(m, 256, 4, 2);
    CHECK(lb && la && c);
    /* sequence 3 already holds a row of history, seq 1 none: lengths must be
     * respected */
    const vb_token hist_tok = 9;
    const vb_pos hist_pos = 0;
    const vb_seq hist_seq = 3;
    float hist[4096];
    CHECK(V <= 4096);
    CHECK_EQ_INT(run_rows(c, 1, &hist_tok, &hist_pos, &hist_seq, hist), VB_OK);
    for (int i = 0; i < NA + NB; i++)
        if (seq[i] == 3) pos[i] += 1;
    CHECK_EQ_INT(run_rows(c, NA + NB, tok, pos, seq, lb), VB_OK);
    CHECK_EQ_INT(vb_kv_seq_len(c, 1), NA);
    CHECK_EQ_INT(vb_kv_seq_len(c, 3), NB + 1);
    for (int which = 0; which < 2; which++) {
        const vb_seq want = which ? 3 : 1;
        vb_context *ca = make_ctx(m, 256, 1, 1);
        CHECK(ca);
        vb_token t[NB + 1];
        vb_pos p[NB + 1];
        vb_seq s0[NB + 1] = {0};
        int n = 0;
        if (want == 3) {
            t[n] = hist_tok;
            p[n] = 0;
            n++;
        }
        const int first = n;
        for (int i = 0; i < NA + NB; i++)
            if (seq[i] == want) {
                t[n] = tok[i];
                p[n] = pos[i];
                n++;
            }
        float *lone = malloc((size_t)n * V * sizeof(float));
        CHECK(lone);
        CHECK_EQ_INT(run_rows(ca, n, t, p, s0, lone), VB_OK);
        int k = first;
        for (int i = 0; i < NA + NB; i++) {
            if (seq[i] != want) continue;
            const double d = max_rel_diff(lb + (size_t)i * V, lone + (size_t)k * V, (size_t)V);
            CHECKF(d <= 1e-5, "seq %d row %d: batched vs alone differ by %g", want, i, d);
            k++;
        }
        free(lone);
        vb_context_free(ca);
    }
    vb_context_free(c);
    free(lb);
    free(la);
}

TEST(cpu_two_sequences_in_one_batch_equal_alone) {
    with_tiny(&TINY_LLAMA, check_two_sequences);
    with_tiny(&TINY_GPT2, check_two_sequences);
}

/* WeDLM reordering: rows whose logical positions go backwards inside the batch
 * equal the same rows fed one per forward in that physical order, and differ
 * from the positions sorted. */
static void check_non_monotonic(vb_model *m) {
    const int32_t V = vb_model_get_info(m)->n_vocab;
    enum { NP = 6, W = 6 };
    const vb_token prefix[NP] = {4, 8, 15, 16, 23, 42};
    /* window: filled slots first (positions 6, 8), then masks (7, 9, 10, 11) */
    const vb_pos wpos[W] = {6, 8, 7, 9, 10, 11};
    const vb_token wtok[W] = {30, 31, 63, 63, 63, 63};
    vb_pos ppos[NP];
    vb_seq seq[NP + W] = {0};
    for (int i = 0; i < NP; i++) ppos[i] = i;
    float *lb = malloc((size_t)W * V * sizeof(float)), *ls = malloc((size_t)W * V * sizeof(float));
    float *pre = malloc((size_t)NP * V * sizeof(float));
    vb_context *cb = make_ctx(m, 128, 1, 2), *cs = make_ctx(m, 128, 1, 1);
    CHECK(lb && ls && pre && cb && cs);
    CHECK_EQ_INT(run_rows(cb, NP, prefix, ppos, seq, pre), VB_OK);
    CHECK_EQ_INT(run_rows(cs, NP, prefix, ppos, seq, pre), VB_OK);
    CHECK_EQ_INT(run_rows(cb, W, wtok, wpos, seq, lb), VB_OK);
    for (int i = 0; i < W; i++)
        CHECK_EQ_INT(run_rows(cs, 1, wtok + i, wpos + i, seq, ls + (size_t)i * V), VB_OK);
    const double d = max_rel_diff(lb, ls, (size_t)W * V);
    CHECKF(d <= 1e-5, "reordered window vs one by one differ by %g", d);
    /* positions matter: the same tokens at sorted positions give other logits */
    CHECK_EQ_INT(vb_kv_truncate(cs, 0, NP), VB_OK);
    const vb_pos sorted[W] = {6, 7, 8, 9, 10, 11};
    CHECK_EQ_INT(run_rows(cs, W, wtok, sorted, seq, ls), VB_OK);
    CHECKF(max_rel_diff(lb + V, ls + V, (size_t)V) > 1e-4, "position of row 1 had no effect");
    vb_context_free(cb);
    vb_context_free(cs);
    free(lb);
    free(ls);
    free(pre);
}

TEST(cpu_non_monotonic_positions_equal_physical_order) {
    with_tiny(&TINY_QWEN3, check_non_monotonic);
    with_tiny(&TINY_LLAMA, check_non_monotonic);
    with_tiny(&TINY_GPT2, check_non_monotonic);
}

static void cpu_truncate_then_reforward_reproduces_logits_body(vb_model *m_) {
    const int32_t V = 64;
    vb_context *c = make_ctx(m_, 128, 1, 2);
    CHECK(c);
    enum { N = 20, KEEP = 13 };
    vb_pos pos[N];
    vb_seq seq[N] = {0};
    for (int i = 0; i < N; i++) pos[i] = i;
    float first[N * 64], again[N * 64], other[N * 64];
    CHECK_EQ_INT(run_rows(c, N, PROMPT, pos, seq, first), VB_OK);
    CHECK_EQ_INT(vb_kv_truncate(c, 0, KEEP), VB_OK);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), KEEP);
    /* scratch rows with other tokens, then roll back again */
    vb_token junk[N - KEEP];
    for (int i = 0; i < N - KEEP; i++) junk[i] = (vb_token)(63 - i);
    CHECK_EQ_INT(run_rows(c, N - KEEP, junk, pos + KEEP, seq, other), VB_OK);
    CHECK_EQ_INT(vb_kv_truncate(c, 0, KEEP), VB_OK);
    CHECK_EQ_INT(run_rows(c, N - KEEP, PROMPT + KEEP, pos + KEEP, seq, again), VB_OK);
    const double d = max_rel_diff(again, first + (size_t)KEEP * V, (size_t)(N - KEEP) * V);
    CHECKF(d <= 1e-5, "re-forward after truncate differs by %g", d);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), N);
    vb_context_free(c);
}

TEST(cpu_truncate_then_reforward_reproduces_logits) {
    with_tiny(&TINY_QWEN2, cpu_truncate_then_reforward_reproduces_logits_body);
}

static void cpu_fork_shares_prefix_and_continuations_equal_fresh_body(vb_model *m_) {
    const int32_t V = 64;
    enum { NP = 11, NC = 7 }; /* prefix ends inside a block: the shared block is copied */
    vb_pos pos[NP + NC];
    vb_seq s0[NP + NC] = {0}, s1[NC], s2[NC];
    for (int i = 0; i < NP + NC; i++) pos[i] = i;
    for (int i = 0; i < NC; i++) s1[i] = 1, s2[i] = 2;
    const vb_token *cont_a = PROMPT + NP, *cont_b = PROMPT + 3;
    float pre[NP * 64], la[NC * 64], lb[NC * 64], fa[(NP + NC) * 64], fb[(NP + NC) * 64];
    vb_context *c = make_ctx(m_, 256, 3, 2);
    CHECK(c);
    CHECK_EQ_INT(run_rows(c, NP, PROMPT, pos, s0, pre), VB_OK);
    CHECK_EQ_INT(vb_kv_fork(c, 0, 1), VB_OK);
    CHECK_EQ_INT(vb_kv_fork(c, 0, 2), VB_OK);
    vb_stats st = vb_context_stats(c);
    CHECK_EQ_INT(st.kv.blocks_used, 1); /* 11 rows in one shared block */
    CHECK_EQ_INT(run_rows(c, NC, cont_a, pos + NP, s1, la), VB_OK);
    CHECK_EQ_INT(run_rows(c, NC, cont_b, pos + NP, s2, lb), VB_OK);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), NP);
    CHECK_EQ_INT(vb_kv_seq_len(c, 1), NP + NC);
    CHECK_EQ_INT(vb_kv_seq_len(c, 2), NP + NC);
    /* fresh runs of prefix + continuation */
    vb_token ta[NP + NC], tb[NP + NC];
    memcpy(ta, PROMPT, NP * sizeof *ta);
    memcpy(tb, PROMPT, NP * sizeof *tb);
    memcpy(ta + NP, cont_a, NC * sizeof *ta);
    memcpy(tb + NP, cont_b, NC * sizeof *tb);
    vb_context *fresh = make_ctx(m_, 256, 2, 1);
    CHECK(fresh);
    CHECK_EQ_INT(run_rows(fresh, NP + NC, ta, pos, s0, fa), VB_OK);
    CHECK_EQ_INT(vb_kv_free_seq(fresh, 0), VB_OK);
    CHECK_EQ_INT(run_rows(fresh, NP + NC, tb, pos, s0, fb), VB_OK);
    double d = max_rel_diff(la, fa + (size_t)NP * V, (size_t)NC * V);
    CHECKF(d <= 1e-5, "fork continuation A differs from fresh by %g", d);
    d = max_rel_diff(lb, fb + (size_t)NP * V, (size_t)NC * V);
    CHECKF(d <= 1e-5, "fork continuation B differs from fresh by %g", d);
    /* the source continues unharmed by its forks' writes */
    float l0[NC * 64];
    CHECK_EQ_INT(run_rows(c, NC, cont_b, pos + NP, s0, l0), VB_OK);
    d = max_rel_diff(l0, lb, (size_t)NC * V);
    CHECKF(d <= 1e-5, "source after fork differs by %g", d);
    vb_context_free(fresh);
    vb_context_free(c);
}

TEST(cpu_fork_shares_prefix_and_continuations_equal_fresh) {
    with_tiny(&TINY_QWEN3, cpu_fork_shares_prefix_and_continuations_equal_fresh_body);
}

static void cpu_kv_full_is_soft_and_changes_nothing_body(vb_model *m_) {
    /* n_ctx 32, block 16, 2 sequences: 2 + 2 = 4 blocks = 64 rows in the pool */
    vb_context *c = make_ctx(m_, 32, 2, 1);
    CHECK(c);
    vb_pos pos[64];
    vb_seq seq[64];
    vb_token tok[64];
    float *l = malloc(64 * 64 * sizeof(float));
    CHECK(l);
    for (int i = 0; i < 64; i++) pos[i] = i, seq[i] = 0, tok[i] = (vb_token)(i % 64);
    CHECK_EQ_INT(run_rows(c, 40, tok, pos, seq, l), VB_OK); /* 3 blocks */
    float ref[64];
    memcpy(ref, l + 39 * 64, sizeof ref);
    /* seq 1 fits (the last free block), then seq 0 needs one more: the batch
     * fails as a whole */
    vb_seq mixed[24];
    vb_pos mpos[24];
    for (int i = 0; i < 24; i++) {
        mixed[i] = i < 4 ? 1 : 0;
        mpos[i] = i < 4 ? i : 40 + i;
    }
    CHECK_EQ_INT(run_rows(c, 24, tok, mpos, mixed, l), VB_KV_FULL);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), 40);
    CHECK_EQ_INT(vb_kv_seq_len(c, 1), 0);
    CHECK(strlen(vb_context_error(c)) > 0);
    /* and the cache still computes the same thing */
    CHECK_EQ_INT(vb_kv_truncate(c, 0, 39), VB_OK);
    CHECK_EQ_INT(run_rows(c, 1, tok + 39, pos + 39, seq, l), VB_OK);
    CHECKF(max_rel_diff(l, ref, 64) <= 1e-5, "after KV full: %g", max_rel_diff(l, ref, 64));
    vb_stats st = vb_context_stats(c);
    CHECK_EQ_INT(st.kv.blocks_used, 3);
    free(l);
    vb_context_free(c);
}

TEST(cpu_kv_full_is_soft_and_changes_nothing) {
    with_tiny(&TINY_LLAMA, cpu_kv_full_is_soft_and_changes_nothing_body);
}

static void cpu_bad_token_rejected_nothing_changed_body(vb_model *m_) {
    vb_context *c = make_ctx(m_, 64, 1, 1);
    CHECK(c);
    const vb_token toks[3] = {1, 64, 2}; /* 64 == n_vocab */
    const vb_pos pos[3] = {0, 1, 2};
    const vb_seq seq[3] = {0, 0, 0};
    float l[3 * 64];
    CHECK_EQ_INT(run_rows(c, 3, toks, pos, seq, l), VB_ERR_ARG);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), 0);
    const vb_token neg = -1;
    CHECK_EQ_INT(run_rows(c, 1, &neg, pos, seq, l), VB_ERR_ARG);
    const vb_seq bad_seq = 1;
    CHECK_EQ_INT(run_rows(c, 1, toks, pos, &bad_seq, l), VB_ERR_ARG);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), 0);
    vb_context_free(c);
}

TEST(cpu_bad_token_rejected_nothing_changed) {
    with_tiny(&TINY_QWEN3, cpu_bad_token_rejected_nothing_changed_body);
}

static void cpu_gpt2_position_beyond_context_is_error_body(vb_model *m_) {
    vb_context *c = make_ctx(m_, 256, 1, 1);
    CHECK(c);
    const vb_token toks[2] = {1, 2};
    const vb_pos ok_pos[2] = {46, 47}; /* n_ctx_train = 48 */
    const vb_pos bad_pos[2] = {48, 49};
    const vb_seq seq[2] = {0, 0};
    float l[2 * 64];
    CHECK_EQ_INT(run_rows(c, 2, toks, ok_pos, seq, l), VB_OK);
    CHECK_EQ_INT(run_rows(c, 2, toks, bad_pos, seq, l), VB_ERR_ARG);
    CHECK(strstr(vb_context_error(c), "position") != NULL);
    CHECK_EQ_INT(vb_kv_seq_len(c, 0), 2);
    vb_context_free(c);
}

TEST(cpu_gpt2_position_beyond_context_is_error) {
    with_tiny(&TINY_GPT2, cpu_gpt2_position_beyond_context_is_error_body);
}

/* rows without want_logits still feed the cache: a batch asking only for some
   rows gives them the logits of the all-rows batch */
static void cpu_only_logit_rows_are_computed_the_same_body(vb_model *m_) {
    const int32_t V = 64;
    enum { N = 9 };
    vb_context *ca = make_ctx(m_, 64, 1, 2), *cl = make_ctx(m_, 64, 1, 2);
    CHECK(ca && cl);
    vb_pos pos[N];
    vb_seq seq[N] = {0};
    for (int i = 0; i < N; i++) pos[i] = i;
    float all[N * 64];
    CHECK_EQ_INT(run_rows(ca, N, PROMPT, pos, seq, all), VB_OK);
    vb_batch *b = vb_batch_init(N);
    CHECK(b);
    for (int i = 0; i < N; i++) vb_batch_add(b, PROMPT[i], pos[i], 0, i == 4 || i == N - 1);
    CHECK_EQ_INT(vb_forward(cl, b), VB_OK);
    CHECK(vb_get_logits(cl, 0) == NULL);
    CHECK(vb_get_logits(cl, 4) != NULL && vb_get_logits(cl, N - 1) != NULL);
    double d = max_rel_diff(vb_get_logits(cl, 4), all + 4 * V, (size_t)V);
    d = fmax(d, max_rel_diff(vb_get_logits(cl, N - 1), all + (N - 1) * V, (size_t)V));
    CHECKF(d <= 1e-5, "logit rows differ by %g", d);
    /* a batch with no logit rows still appends its rows */
    vb_batch_clear(b);
    vb_batch_add(b, 5, N, 0, false);
    CHECK_EQ_INT(vb_forward(cl, b), VB_OK);
    CHECK_EQ_INT(vb_kv_seq_len(cl, 0), N + 1);
    vb_batch_free(b);
    vb_context_free(ca);
    vb_context_free(cl);
}

TEST(cpu_only_logit_rows_are_computed_the_same) {
    with_tiny(&TINY_QWEN3, cpu_only_logit_rows_are_computed_the_same_body);
}

static void cpu_f16_kv_cache_close_to_f32_body(vb_model *m_) {
    const int32_t V = 64;
    enum { N = 16 };
    vb_context_params p = vb_context_default_params();
    p.n_ctx = 64;
    p.n_seq_max = 1;
    p.n_threads = 1;
    p.kv_type = VB_KV_F16;
    vb_context *ch = NULL, *cf = make_ctx(m_, 64, 1, 1);
    char err[512];
    CHECK_EQ_INT(vb_context_init(m_, &p, &ch, err, sizeof err), VB_OK);
    CHECK(cf);
    vb_pos pos[N];
    vb_seq seq[N] = {0};
    for (int i = 0; i < N; i++) pos[i] = i;
    float lh[N * 64], lf[N * 64];
    CHECK_EQ_INT(run_rows(ch, N, PROMPT, pos, seq, lh), VB_OK);
    CHECK_EQ_INT(run_rows(cf, N, PROMPT, pos, seq, lf), VB_OK);
    const double d = max_rel_diff(lh, lf, (size_t)N * V);
    CHECKF(d <= 1e-2 && d > 0.0, "f16 vs f32 KV differ by %g", d);
    vb_context_free(ch);
    vb_context_free(cf);
}

TEST(cpu_f16_kv_cache_close_to_f32) { with_tiny(&TINY_LLAMA, cpu_f16_kv_cache_close_to_f32_body); }

TEST(cpu_unsupported_arch_and_missing_tensor_errors) {
    /* a model with an architecture the cpu backend does not know */
    tiny_spec spec = TINY_LLAMA;
    char path[256];
    spec.arch = "mamba";
    snprintf(path, sizeof path, "/tmp/vb_test_cpu_badarch_%d.gguf", (int)getpid());
    CHECK_EQ_INT(write_tiny_model(&spec, path, 7), VB_OK);
    vb_model *m = NULL;
    char err[512] = "";
    const int rc = vb_model_load(path, NULL, &m, err, sizeof err);
    unlink(path);
    if (rc == VB_OK) {
        vb_context_params p = vb_context_default_params();
        vb_context *c = NULL;
        CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_UNSUPPORTED);
        CHECK(strstr(err, "mamba") != NULL);
        CHECK(c == NULL);
        vb_model_free(m);
    }
    /* a qwen2 model whose block_count claims a third layer: blk.2.* is missing */
    spec = TINY_QWEN2;
    spec.extra_declared_layers = 1;
    snprintf(path, sizeof path, "/tmp/vb_test_cpu_missing_%d.gguf", (int)getpid());
    CHECK_EQ_INT(write_tiny_model(&spec, path, 7), VB_OK);
    CHECK_EQ_INT(vb_model_load(path, NULL, &m, err, sizeof err), VB_OK);
    unlink(path);
    vb_context *c = NULL;
    vb_context_params p = vb_context_default_params();
    CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_FORMAT);
    CHECK(strstr(err, "blk.2.") != NULL);
    vb_model_free(m);
}

/* Load spec with one planted defect and expect vb_context_init to fail with status, naming
 * `tensor` and (if not NULL) `detail` in the message. */
static void expect_init_error(const char *tensor, bool as_q5_0, int status, const char *detail) {
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "/tmp/vb_test_cpu_defect_%d.gguf", (int)getpid());
    plant_q5_0_tensor = as_q5_0 ? tensor : NULL;
    plant_extra_row_tensor = as_q5_0 ? NULL : tensor;
    const int wrc = write_tiny_model(&TINY_QWEN3, path, 11);
    plant_q5_0_tensor = plant_extra_row_tensor = NULL;
    CHECK_EQ_INT(wrc, VB_OK);
    vb_model *m = NULL;
    const int lrc = vb_model_load(path, NULL, &m, err, sizeof err);
    unlink(path);
    CHECKF(lrc == VB_OK, "load: %s", err);
    vb_context *c = NULL;
    vb_context_params p = vb_context_default_params();
    const int rc = vb_context_init(m, &p, &c, err, sizeof err);
    vb_model_free(m);
    CHECK(c == NULL);
    CHECKF(rc == status, "status %d, expected %d (%s)", rc, status, err);
    CHECKF(strstr(err, tensor) != NULL, "message does not name %s: %s", tensor, err);
    if (detail) CHECKF(strstr(err, detail) != NULL, "message does not say %s: %s", detail, err);
}

TEST(cpu_unsupported_type_and_bad_shape_errors) {
    expect_init_error("blk.1.attn_k.weight", true, VB_ERR_UNSUPPORTED, "q8_1");
    expect_init_error("blk.0.ffn_down.weight", false, VB_ERR_FORMAT, "shape");
}

/* The portable and the AVX2 paths (attention inner products, f16 K/V conversion, matmul) give
 * the same logits, with an F32 and an F16 cache. */
static void cpu_portable_and_simd_paths_agree_body(vb_model *m_) {
    const int32_t V = vb_model_get_info(m_)->n_vocab;
    enum { N = 18 };
    vb_pos pos[N];
    vb_seq seq[N] = {0};
    for (int i = 0; i < N; i++) pos[i] = i;
    float *simd = malloc((size_t)N * V * sizeof(float));
    float *portable = malloc((size_t)N * V * sizeof(float));
    double diff[2] = {0, 0};
    int rf = simd && portable ? VB_OK : VB_ERR_NOMEM;
    for (int kv_type = VB_KV_F32; rf == VB_OK && kv_type <= VB_KV_F16; kv_type++) {
        for (int pass = 0; rf == VB_OK && pass < 2; pass++) {
            vb_kernels_force_level(pass == 0 ? -1 : VB_KLEVEL_PORTABLE);
            vb_context_params p = vb_context_default_params();
            p.n_ctx = 64;
            p.n_seq_max = 1;
            p.n_threads = 2;
            p.kv_type = kv_type;
            vb_context *c = NULL;
            char err[512];
            rf = vb_context_init(m_, &p, &c, err, sizeof err);
            if (rf == VB_OK) rf = run_rows(c, N, PROMPT, pos, seq, pass ? portable : simd);
            vb_context_free(c);
            vb_kernels_force_level(-1);
        }
        if (rf == VB_OK) diff[kv_type] = max_rel_diff(portable, simd, (size_t)N * V);
    }
    free(simd);
    free(portable);
    CHECK_EQ_INT(rf, VB_OK);
    CHECKF(diff[VB_KV_F32] <= 1e-5, "f32 KV: portable vs simd paths differ by %g", diff[0]);
    /* with an F16 cache, a last-bit difference of a K/V value between the two matmul paths can
       flip its f16 rounding (2^-11 relative): a looser bound */
    CHECKF(diff[VB_KV_F16] <= 2e-4, "f16 KV: portable vs simd paths differ by %g", diff[1]);
}

TEST(cpu_portable_and_simd_paths_agree) {
    with_tiny(&TINY_QWEN3, cpu_portable_and_simd_paths_agree_body);
    /* head_dim 64: the wide register-blocked paths */
    vb_model *m = load_shipped();
    CHECK(m != NULL);
    cpu_portable_and_simd_paths_agree_body(m);
    vb_model_free(m);
}

/* Every weight type's batched (matrix-matrix) kernel path against its one-row path, through
 * whole models: the fixture models of scripts/fixtures/models.sh. */
TEST(cpu_fixture_models_k_rows_equal_single_rows) {
    static const char *names[] = {"gpt2-q8_0",     "llama-bf16", "llama-q4_0", "llama-q4_k",
                                  "llama-f16-mqa", "qwen2-q6_k", "qwen3-q8_0", "qwen3-f16-long",
                                  "phi3-q8_0",     "phi3-f16-long", "gemma3-q8_0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024], err[512] = "";
        snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), names[i]);
        vb_model *m = NULL;
        CHECKF(vb_model_load(path, NULL, &m, err, sizeof err) == VB_OK,
               "missing fixture (run `make fixtures`): %s", err);
        check_k_rows_equal_single(m, 2, 1e-4);
        vb_model_free(m);
        if (vbt_failed_now()) {
            fprintf(stderr, "    (model %s)\n", names[i]);
            return;
        }
    }
}
