/* test_embed.c - vb_embed (final hidden states, pooled) against the independent numpy reference
 * (scripts/ref_forward.py --hidden-out: float64 from exactly dequantized weights) on the random-
 * weight fixture models of scripts/fixtures/models.sh that carry <name>.hidden.bin: the final
 * hidden states (after the output norm) of the fixture's 16 tokens at positions 0..15, for gpt2,
 * llama, qwen2 and qwen3 in f32, f16, bf16 and q8_0.
 *
 * Per model, on a "cpu" context whose batch limit is 5 (so the 16 tokens run in 4 chunks and the
 * KV carries state across them) and on one with the default limit (one chunk):
 *   - pooling none: every row within the weight type's tolerance of the reference row,
 *         err(row) = max_i |ours_i - ref_i| / max_i |ref_i|
 *     (1e-4 for f32, f16 and bf16 weights, which the cpu backend multiplies in f32; q8_0 6e-2 as
 *     tests/test_reference.c allows for logits: its 8-bit activation rounding; measured: f32,
 *     f16, bf16 <= 1e-6, q8_0 2.4e-2);
 *   - mean, cls and last, not normalised: within the tolerance of the mean / first / last
 *     reference row computed here; normalised: unit length and within the tolerance of the
 *     normalised reference vector;
 *   - the sequence is empty again afterwards and the KV pool has every block back; a sequence
 *     that holds rows is left alone (vb_embed picks another).
 * Errors: a backend without hidden states (sim) answers VB_ERR_UNSUPPORTED with a message; empty
 * input, a token out of range, bad pooling, too small an output, input longer than the model's context or the KV cache:
 * VB_ERR_ARG; a busy sequence: VB_ERR_STATE; a pool too full now: VB_KV_FULL with nothing kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vibee.h"

#define EMB_ROWS 16

typedef struct emb_case {
    const char *name;
    double tol; /* max relative error per row */
} emb_case;

static const emb_case cases[] = {
    {"gpt2-f32", 1e-4},     {"llama-f32", 1e-4},   {"llama-f16-mqa", 1e-4}, {"qwen2-q8_0", 6e-2},
    {"qwen2-f32-long", 1e-4}, {"qwen3-f32", 1e-4}, {"qwen3-bf16", 1e-4},
};

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                buf[n] = 0;
                if (len) *len = (size_t)n;
            }
        }
    }
    fclose(f);
    return buf;
}

/* The "tokens" array of the fixture header <name>.json: returns the count or -1. */
static int fixture_tokens(const char *name, vb_token *out, int cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.json", vbt_fixture_dir(), name);
    char *json = slurp(path, NULL);
    const char *p = json ? strstr(json, "\"tokens\": [") : NULL;
    int n = -1;
    if (p) {
        p += strlen("\"tokens\": [");
        n = 0;
        while (*p && *p != ']' && n < cap) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            out[n++] = (vb_token)v;
            p = end;
            while (*p == ',' || *p == ' ') p++;
        }
        if (*p != ']') n = -1;
    }
    free(json);
    return n;
}

/* max_i |a_i - b_i| / max_i |b_i| (NaN fails) */
static double rel_err(const float *a, const double *b, int n) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        if (d < 0) d = -d;
        if (!(d <= num)) num = d;
        double m = b[i] < 0 ? -b[i] : b[i];
        if (m > den) den = m;
    }
    return den > 0 ? num / den : num;
}

static double norm2(const double *v, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

static int open_cpu(const char *name, int32_t n_batch_max, int32_t n_seq, int32_t n_ctx, vb_model **m,
                    vb_context **c, char *err, size_t err_len) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), name);
    *c = NULL;
    if (vb_model_load(path, NULL, m, err, err_len) != VB_OK) return 0;
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_threads = 2;
    cp.n_batch_max = n_batch_max;
    cp.n_seq_max = n_seq;
    cp.n_ctx = n_ctx;
    if (vb_context_init(*m, &cp, c, err, err_len) != VB_OK) {
        vb_model_free(*m);
        *m = NULL;
        return 0;
    }
    return 1;
}

TEST(embed_matches_reference) {
    double worst[sizeof cases / sizeof cases[0]] = {0};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const emb_case *k = &cases[ci];
        vb_token toks[EMB_ROWS + 1];
        int n = fixture_tokens(k->name, toks, EMB_ROWS + 1);
        CHECKF(n == EMB_ROWS, "%s: fixture tokens missing or malformed: run `make fixtures`", k->name);
        for (int batch_max = 5; batch_max <= 512; batch_max += 507) {
            vb_model *m = NULL;
            vb_context *c = NULL;
            char err[512];
            CHECKF(open_cpu(k->name, batch_max, 3, 0, &m, &c, err, sizeof err), "%s: %s", k->name, err);
            const int E = vb_model_get_info(m)->n_embd;
            char path[512];
            snprintf(path, sizeof path, "%s/models/%s.hidden.bin", vbt_fixture_dir(), k->name);
            size_t len = 0;
            float *ref32 = (float *)slurp(path, &len);
            double *ref = malloc((size_t)n * (size_t)E * sizeof *ref), pool[3][1024];
            float *ours = malloc((size_t)n * (size_t)E * sizeof *ours);
            int ok = ref32 && len == (size_t)n * (size_t)E * sizeof(float) && ref && ours && E <= 1024;
            if (ok) {
                for (size_t i = 0; i < (size_t)n * (size_t)E; i++) ref[i] = ref32[i];
                /* the reference pooled here: mean, first (cls), last */
                for (int d = 0; d < E; d++) {
                    double s = 0.0;
                    for (int r = 0; r < n; r++) s += ref[(size_t)r * E + d];
                    pool[0][d] = s / n;
                    pool[1][d] = ref[d];
                    pool[2][d] = ref[(size_t)(n - 1) * E + d];
                }
            }
            /* a sequence holding rows is left alone: seq 0 gets 3 rows first */
            vb_batch *b = vb_batch_init(3);
            for (int i = 0; b && i < 3; i++) vb_batch_add(b, toks[i], i, 0, false);
            int fst = b ? vb_forward(c, b) : VB_ERR_NOMEM;
            vb_batch_free(b);
            const int32_t free0 = vb_kv_blocks_free(c);
            vb_embed_params ep = vb_embed_default_params();
            ep.pooling = VB_POOLING_NONE;
            ep.normalize = false;
            int st = ok && fst == VB_OK ? vb_embed(c, toks, n, &ep, ours, (int64_t)n * E) : VB_ERR_ARG;
            double e_rows = 0.0;
            for (int r = 0; st == VB_OK && r < n; r++) {
                double e = rel_err(ours + (size_t)r * E, ref + (size_t)r * E, E);
                if (!(e <= e_rows)) e_rows = e;
            }
            const int32_t len0 = vb_kv_seq_len(c, 0), len1 = vb_kv_seq_len(c, 1), free1 = vb_kv_blocks_free(c);
            /* pooled, raw and normalised */
            static const int32_t pools[3] = {VB_POOLING_MEAN, VB_POOLING_CLS, VB_POOLING_LAST};
            static const char *const pool_names[3] = {"mean", "cls", "last"};
            double e_pool[3][2] = {{0}}, unit[3] = {0};
            int pst = VB_OK;
            for (int pi = 0; pi < 3 && st == VB_OK && pst == VB_OK; pi++) {
                for (int nz = 0; nz < 2 && pst == VB_OK; nz++) {
                    float v[1024];
                    ep.pooling = pools[pi];
                    ep.normalize = nz;
                    pst = vb_embed(c, toks, n, &ep, v, E);
                    double want[1024], len_want = nz ? norm2(pool[pi], E) : 1.0, got = 0.0;
                    for (int d = 0; d < E; d++) {
                        want[d] = pool[pi][d] / len_want;
                        got += (double)v[d] * v[d];
                    }
                    e_pool[pi][nz] = rel_err(v, want, E);
                    if (nz) unit[pi] = sqrt(got);
                }
            }
            const char *cerr = vb_context_error(c);
            free(ref32);
            free(ref);
            free(ours);
            const int32_t free2 = vb_kv_blocks_free(c), len1b = vb_kv_seq_len(c, 1);
            vb_context_free(c);
            vb_model_free(m);
            CHECKF(ok, "%s: %s is missing or has the wrong size: run `make fixtures`", k->name, path);
            CHECKF(fst == VB_OK && st == VB_OK && pst == VB_OK, "%s (batch %d): forward %d, embed %d / %d: %s",
                   k->name, batch_max, fst, st, pst, cerr);
            CHECKF(e_rows <= k->tol, "%s (batch %d): hidden rows differ from the reference by %.3g > %.3g",
                   k->name, batch_max, e_rows, k->tol);
            CHECKF(len0 == 3 && len1 == 0 && len1b == 0 && free1 == free0 && free2 == free0,
                   "%s: after vb_embed seq 0 holds %d rows (3), seq 1 %d / %d (0), free blocks %d / %d (%d)",
                   k->name, len0, len1, len1b, free1, free2, free0);
            for (int pi = 0; pi < 3; pi++) {
                CHECKF(e_pool[pi][0] <= k->tol && e_pool[pi][1] <= k->tol,
                       "%s (batch %d): %s pooling differs from the pooled reference by %.3g (raw), %.3g "
                       "(normalised) > %.3g", k->name, batch_max, pool_names[pi], e_pool[pi][0], e_pool[pi][1],
                       k->tol);
                CHECKF(fabs(unit[pi] - 1.0) < 1e-5, "%s: normalised %s vector has length %.8f", k->name,
                       pool_names[pi], unit[pi]);
            }
            if (e_rows > worst[ci]) worst[ci] = e_rows;
        }
    }
    printf("  embed: worst hidden-row error:");
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) printf(" %s %.2g", cases[ci].name, worst[ci]);
    printf("\n");
}

TEST(embed_errors) {
    char err[512];
    /* a backend without hidden states: a status and a message, no crash */
    vb_model *sm = NULL;
    vb_context *sc = NULL;
    CHECKF(vb_model_load("sim", NULL, &sm, err, sizeof err) == VB_OK, "%s", err);
    vb_context_params sp = vb_context_default_params();
    sp.backend = "sim";
    CHECKF(vb_context_init(sm, &sp, &sc, err, sizeof err) == VB_OK, "%s", err);
    vb_token t3[3] = {1, 2, 3};
    float v[8];
    int st = vb_embed(sc, t3, 3, NULL, v, 8);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vb_context_error(sc));
    vb_context_free(sc);
    vb_model_free(sm);
    CHECKF(st == VB_ERR_UNSUPPORTED && strstr(msg, "sim") && strstr(msg, "hidden"), "sim: %d '%s'", st, msg);
    CHECK(vb_embed(NULL, t3, 3, NULL, v, 8) == VB_ERR_ARG);

    /* gpt2-f32: n_ctx_train 256, n_embd 72; KV of 64 tokens + one block per sequence (6 x 16) */
    vb_model *m = NULL;
    vb_context *c = NULL;
    CHECKF(open_cpu("gpt2-f32", 512, 2, 64, &m, &c, err, sizeof err), "%s", err);
    const int E = vb_model_get_info(m)->n_embd;
    float *out = malloc(400 * sizeof(float) * (size_t)E);
    vb_token *toks = malloc(400 * sizeof *toks);
    CHECK(out && toks);
    for (int i = 0; i < 400; i++) toks[i] = (vb_token)(i * 7 % 300);
    vb_embed_params ep = vb_embed_default_params();
    int r_empty = vb_embed(c, toks, 0, NULL, out, E);
    int r_null = vb_embed(c, NULL, 3, NULL, out, E);
    vb_token bad_tok[2] = {5, 300}; /* n_vocab 300 */
    int r_tok = vb_embed(c, bad_tok, 2, NULL, out, E);
    ep.pooling = 9;
    int r_pool = vb_embed(c, toks, 3, &ep, out, E);
    ep.pooling = VB_POOLING_NONE;
    int r_small = vb_embed(c, toks, 3, &ep, out, 3 * E - 1);
    snprintf(msg, sizeof msg, "%s", vb_context_error(c));
    ep = vb_embed_default_params();
    int r_ctx = vb_embed(c, toks, 300, &ep, out, E); /* > n_ctx_train 256 */
    char msg_ctx[512];
    snprintf(msg_ctx, sizeof msg_ctx, "%s", vb_context_error(c));
    int r_pool_size = vb_embed(c, toks, 100, &ep, out, E); /* > the 96-token pool */
    char msg_kv[512];
    snprintf(msg_kv, sizeof msg_kv, "%s", vb_context_error(c));
    /* seq 0 holds 64 rows (4 blocks): 2 blocks free, an input of 48 tokens needs 3 */
    vb_batch *b = vb_batch_init(64);
    for (int i = 0; b && i < 64; i++) vb_batch_add(b, toks[i], i, 0, false);
    int fst = b ? vb_forward(c, b) : VB_ERR_NOMEM;
    vb_batch_free(b);
    int32_t free_before = vb_kv_blocks_free(c);
    int r_full = vb_embed(c, toks, 48, &ep, out, E);
    int32_t free_after = vb_kv_blocks_free(c), len1 = vb_kv_seq_len(c, 1);
    ep.seq = 0;
    int r_busy = vb_embed(c, toks, 3, &ep, out, E);
    ep.seq = 5;
    int r_range = vb_embed(c, toks, 3, &ep, out, E);
    ep.seq = -1;
    int r_fits = vb_embed(c, toks, 20, &ep, out, E); /* 2 blocks: fits in seq 1 */
    /* both sequences busy */
    b = vb_batch_init(1);
    if (b) vb_batch_add(b, toks[0], 0, 1, false);
    int fst1 = b ? vb_forward(c, b) : VB_ERR_NOMEM;
    vb_batch_free(b);
    int r_none = vb_embed(c, toks, 3, &ep, out, E);
    free(out);
    free(toks);
    vb_context_free(c);
    vb_model_free(m);
    CHECK_EQ_INT(r_empty, VB_ERR_ARG);
    CHECK_EQ_INT(r_null, VB_ERR_ARG);
    CHECK_EQ_INT(r_tok, VB_ERR_ARG);
    CHECK_EQ_INT(r_pool, VB_ERR_ARG);
    CHECKF(r_small == VB_ERR_ARG && strstr(msg, "floats"), "out too small: %d '%s'", r_small, msg);
    CHECKF(r_ctx == VB_ERR_ARG && strstr(msg_ctx, "context of 256"), "too long: %d '%s'", r_ctx, msg_ctx);
    CHECKF(r_pool_size == VB_ERR_ARG && strstr(msg_kv, "KV cache"), "longer than the pool: %d '%s'", r_pool_size,
           msg_kv);
    CHECK_EQ_INT(fst, VB_OK);
    CHECKF(r_full == VB_KV_FULL && free_after == free_before && len1 == 0,
           "pool too full now: %d, free blocks %d -> %d, seq 1 holds %d", r_full, free_before, free_after, len1);
    CHECK_EQ_INT(r_busy, VB_ERR_STATE);
    CHECK_EQ_INT(r_range, VB_ERR_ARG);
    CHECK_EQ_INT(r_fits, VB_OK);
    CHECK_EQ_INT(fst1, VB_OK);
    CHECK_EQ_INT(r_none, VB_ERR_STATE);
}
