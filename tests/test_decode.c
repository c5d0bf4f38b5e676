/* test_decode.c - the decoders (src/decode/): the WeDLM selection rule on hand-made logits, a
 * hand-worked WeDLM window trace, the KV-cached WeDLM decoder against a full-recompute reference
 * written here, draft-and-verify and WeDLM variants against AR greedy (sim backend, and the
 * shipped model on the cpu backend), prompt lookup, the cost model, KV-full, n_predict 0, EOS. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode/cost_model.h"
#include "decode/decode_internal.h"
#include "decode/wedlm.h"
#include "model.h"
#include "test.h"
#include "vibee.h"
#include "vibee_sched.h"

/* ------------------------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------------------------ */

typedef struct sim_env {
    vb_model *model;
    vb_context *ctx;
} sim_env;

static int sim_open(sim_env *e, uint64_t seed, float peak, int32_t n_ctx, int32_t n_seq) {
    vb_sim_params sp = vb_sim_default_params();
    sp.seed = seed;
    sp.peak = peak;
    memset(e, 0, sizeof *e);
    if (vb_model_load_sim(&sp, &e->model, NULL, 0) != VB_OK) return -1;
    vb_context_params cp = vb_context_default_params();
    cp.backend = "sim";
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    if (vb_context_init(e->model, &cp, &e->ctx, NULL, 0) != VB_OK) {
        vb_model_free(e->model);
        return -1;
    }
    return 0;
}

static void sim_close(sim_env *e) {
    vb_context_free(e->ctx);
    vb_model_free(e->model);
}

static int32_t text_tokens(const char *s, vb_token *out) {
    int32_t n = 0;
    for (; *s; s++) out[n++] = (unsigned char)*s;
    return n;
}

/* Generate from an empty sequence 0 (freed afterwards); returns the status. */
static int gen(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
               const vb_generate_params *p, vb_token *out, int32_t max_out, int32_t *n_out,
               vb_generate_stats *st) {
    vb_kv_free_seq(ctx, p->seq);
    int rc = vb_generate(ctx, prompt, n_prompt, p, out, max_out, n_out, st);
    return rc;
}

static vb_generate_params params_for(int decoder, int32_t n_predict) {
    vb_generate_params p = vb_generate_default_params();
    p.decoder = decoder;
    p.n_predict = n_predict;
    return p;
}

/* ------------------------------------------------------------------------------------------
 * selection rule on hand-made logits
 * ------------------------------------------------------------------------------------------ */

TEST(decode_entropy_values) {
    float uniform4[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    CHECKF(fabs(vb_wedlm_entropy(uniform4, 4) - log(4.0)) < 1e-9, "uniform: %g",
           vb_wedlm_entropy(uniform4, 4));
    /* p = (1/2, 1/4, 1/4): H = 1.5 ln 2 */
    float halves[3] = {logf(0.5f) + 3.0f, logf(0.25f) + 3.0f, logf(0.25f) + 3.0f};
    CHECKF(fabs(vb_wedlm_entropy(halves, 3) - 1.5 * log(2.0)) < 1e-6, "halves: %g",
           vb_wedlm_entropy(halves, 3));
    float peaked[3] = {100.0f, 0.0f, 0.0f};
    double h = vb_wedlm_entropy(peaked, 3);
    CHECKF(h >= 0.0 && h < 1e-30, "peaked: %g", h);
    /* a -inf entry (a backend or a caller masking a token) has p = 0: no NaN */
    float with_ninf[3] = {-INFINITY, 2.0f, 2.0f};
    CHECKF(fabs(vb_wedlm_entropy(with_ninf, 3) - log(2.0)) < 1e-9, "-inf: %g",
           vb_wedlm_entropy(with_ninf, 3));
    float with_nan[2] = {NAN, 0.0f};
    CHECK(isnan(vb_wedlm_entropy(with_nan, 2)));
    float all_ninf[2] = {-INFINITY, -INFINITY};
    CHECK(isnan(vb_wedlm_entropy(all_ninf, 2)));
    /* vocabulary-sized rows (the vectorized path): against a double-precision sum, for flat,
       peaked and very peaked rows, with -inf entries and a tail that is not a whole block */
    static float row[4099];
    uint64_t s = 12345;
    const float scales[4] = {0.1f, 3.0f, 20.0f, 200.0f};
    for (int si = 0; si < 4; si++)
        for (int n = 4096; n <= 4099; n += 3) {
            for (int i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                row[i] = scales[si] * (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
            }
            row[7] = -INFINITY;
            row[n - 1] = -INFINITY;
            double mx = -INFINITY, sum = 0.0, sum_d = 0.0;
            for (int i = 0; i < n; i++) mx = row[i] > mx ? row[i] : mx;
            for (int i = 0; i < n; i++) {
                if (row[i] == -INFINITY) continue;
                double e = exp(row[i] - mx);
                sum += e;
                sum_d += e * (row[i] - mx);
            }
            double want = log(sum) - sum_d / sum, got = vb_wedlm_entropy(row, n);
            CHECKF(fabs(got - want) < 2e-5 * (1.0 + want), "scale %g n %d: %.9g vs %.9g",
                   scales[si], n, got, want);
        }
}

TEST(decode_select_rule) {
    vb_wedlm_rule rule = {0.4f, 0.02f, false, false};
    int32_t j[4] = {0, 1, 2, 5};
    int8_t chosen[4];
    double score[4];
    /* distance penalty: 0.39 qualifies at d=0 but not at d=1 (0.41); 0.1 + 0.1 at d=5 = 0.2 */
    double ent_a[4] = {0.39, 0.39, 1.0, 0.1};
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent_a, 4, chosen, score), 2);
    CHECK(chosen[0] == 1 && chosen[1] == 0 && chosen[2] == 0 && chosen[3] == 1);
    CHECKF(fabs(score[1] - 0.41) < 1e-6 && fabs(score[3] - 0.2) < 1e-6, "scores %g %g", score[1],
           score[3]);
    /* none under tau: the single best score (official) ... */
    double ent_b[4] = {3.0, 2.5, 0.9, 4.0};
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent_b, 4, chosen, NULL), 1);
    CHECK(chosen[2] == 1 && chosen[0] == 0 && chosen[1] == 0 && chosen[3] == 0);
    /* ... or the leftmost mask (variant) */
    rule.leftmost_fallback = true;
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent_b, 4, chosen, NULL), 1);
    CHECK(chosen[0] == 1 && chosen[2] == 0);
    /* tau threshold is strict, and NaN never qualifies nor wins */
    rule.leftmost_fallback = false;
    double ent_c[4] = {NAN, 0.4, NAN, NAN};
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent_c, 4, chosen, score), 1);
    CHECK(chosen[1] == 1 && chosen[0] == 0);
    CHECK(isinf(score[0]));
    /* prefix_only (backends masking by position): only the run from the first mask */
    rule.prefix_only = true;
    double ent_d[4] = {0.1, 0.1, 2.0, 0.0};
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent_d, 4, chosen, NULL), 2);
    CHECK(chosen[0] && chosen[1] && !chosen[2] && !chosen[3]);
    double ent_e[4] = {2.0, 0.1, 0.1, 0.0};
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent_e, 4, chosen, NULL), 1);
    CHECK(chosen[0] && !chosen[1]);
}

/* The pitfall of the reference kit: masking the MASK column to -inf before the entropy with a
 * naive p*log(p) sum gives NaN for every mask, so nothing passes tau and the decoder fills one
 * slot per step. The rule must score raw logits (mask column included) and ban the mask only
 * when sampling. */
TEST(decode_nan_pitfall) {
    enum { V = 6, MASK = 5 };
    float row[V] = {9.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f}; /* confident, some mass on MASK */
    float masked[V];
    memcpy(masked, row, sizeof row);
    masked[MASK] = -INFINITY;
    double naive = 0.0, z = 0.0;
    for (int i = 0; i < V; i++) z += exp((double)masked[i]);
    for (int i = 0; i < V; i++) {
        double lp = (double)masked[i] - log(z);
        naive -= exp(lp) * lp;
    }
    CHECK(isnan(naive)); /* what the pitfall computes */
    double h = vb_wedlm_entropy(row, V);
    double want = 0.0, zr = 0.0;
    for (int i = 0; i < V; i++) zr += exp((double)row[i]);
    for (int i = 0; i < V; i++) want -= exp(row[i]) / zr * ((double)row[i] - log(zr));
    CHECKF(fabs(h - want) < 1e-9 && h < 0.4, "entropy %g want %g", h, want);
    /* two such rows both qualify: more than one slot per step */
    vb_wedlm_rule rule = {0.4f, 0.02f, false, false};
    int32_t j[2] = {0, 1};
    double ent[2] = {h, h};
    int8_t chosen[2];
    CHECK_EQ_INT(vb_wedlm_select(&rule, j, ent, 2, chosen, NULL), 2);
    /* sampling bans the MASK even when it has the largest logit */
    float mask_top[V] = {1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 5.0f};
    vb_sampler_params sp = vb_sampler_default_params();
    vb_sampler *s = vb_sampler_init(&sp);
    CHECK(s != NULL);
    vb_token t = vb_sampler_sample(s, mask_top, V, NULL, 0, MASK);
    vb_sampler_free(s);
    CHECK_EQ_INT(t, 0);
}

/* ------------------------------------------------------------------------------------------
 * hand-worked window trace (pure step logic), W = 4, committed prefix c = 10
 * ------------------------------------------------------------------------------------------ */

TEST(decode_wedlm_trace_handworked) {
    const int32_t c0 = 10;
    vb_wedlm_rule rule = {0.4f, 0.02f, false, false};
    vb_token slot[16];
    int32_t order[16], mj[16];
    int8_t chosen[16];
    for (int j = 0; j < 4; j++) slot[j] = VB_WEDLM_MASK;
    int32_t n = 4;

    /* step 1: nothing to commit; batch = 4 masks at c..c+3 in order */
    CHECK_EQ_INT(vb_wedlm_leading_filled(slot, n), 0);
    CHECK_EQ_INT(vb_wedlm_order(slot, n, order), 0);
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(order[i], i);
    /* entropies: slots 1 and 2 confident -> fill them (tokens 101, 102) */
    double e1[4] = {2.0, 0.1, 0.2, 3.0};
    for (int k = 0; k < 4; k++) mj[k] = k;
    CHECK_EQ_INT(vb_wedlm_select(&rule, mj, e1, 4, chosen, NULL), 2);
    CHECK(!chosen[0] && chosen[1] && chosen[2] && !chosen[3]);
    slot[1] = 101;
    slot[2] = 102;

    /* step 2: slot 0 is a mask -> nothing committed, no refill; physical order: 101 (c+1),
       102 (c+2), MASK (c), MASK (c+3); every row is scratch: truncate back to c */
    CHECK_EQ_INT(vb_wedlm_leading_filled(slot, n), 0);
    CHECK_EQ_INT(vb_wedlm_order(slot, n, order), 2);
    int32_t want2[4] = {1, 2, 0, 3};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(order[i], want2[i]);
    CHECK_EQ_INT(c0 + order[2], 10); /* the first mask row sits at logical c, physically third */
    /* masks j = 0 and 3: slot 0 confident (0.3 < 0.4), slot 3 at d=3: 0.35 + 0.06 = 0.41 -> no */
    mj[0] = 0;
    mj[1] = 3;
    double e2[2] = {0.3, 0.35};
    CHECK_EQ_INT(vb_wedlm_select(&rule, mj, e2, 2, chosen, NULL), 1);
    CHECK(chosen[0] && !chosen[1]);
    slot[0] = 100;

    /* step 3: leading run 100 101 102 -> refill 3 masks (window 7); batch: 100 101 102 at
       c..c+2, then masks c+3..c+6; commit 3: rows c..c+2 are exact prefix rows, kept (KV c+3) */
    int32_t nlead = vb_wedlm_leading_filled(slot, n);
    CHECK_EQ_INT(nlead, 3);
    for (int k = 0; k < nlead; k++) slot[n++] = VB_WEDLM_MASK;
    CHECK_EQ_INT(n, 7);
    CHECK_EQ_INT(vb_wedlm_order(slot, n, order), 3);
    for (int i = 0; i < 7; i++) CHECK_EQ_INT(order[i], i);
    /* after the commit the window is c' = 13, slots j' = 0..3 are the 4 masks */
    memmove(slot, slot + nlead, sizeof(vb_token) * (size_t)(n - nlead));
    n -= nlead;
    CHECK_EQ_INT(n, 4);
    for (int j = 0; j < 4; j++) CHECK_EQ_INT(slot[j], VB_WEDLM_MASK);
    /* all uncertain: official rule fills the best (slot 2), leftmost variant fills slot 0 */
    for (int k = 0; k < 4; k++) mj[k] = k;
    double e3[4] = {2.0, 1.5, 0.9, 1.2};
    vb_wedlm_select(&rule, mj, e3, 4, chosen, NULL);
    CHECK(chosen[2] && !chosen[0]);
    rule.leftmost_fallback = true;
    vb_wedlm_select(&rule, mj, e3, 4, chosen, NULL);
    CHECK(chosen[0] && !chosen[2]);
    slot[2] = 202;

    /* step 4 (official fill of slot 2): no commit; order 202 first then masks 0, 1, 3 */
    CHECK_EQ_INT(vb_wedlm_leading_filled(slot, n), 0);
    CHECK_EQ_INT(vb_wedlm_order(slot, n, order), 1);
    int32_t want4[4] = {2, 0, 1, 3};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(order[i], want4[i]);
}

/* ------------------------------------------------------------------------------------------
 * WeDLM decoder on sim: batch structure per forward, and equality with a full-recompute
 * reference (no KV reuse) written here
 * ------------------------------------------------------------------------------------------ */

typedef struct trace_rec {
    int32_t n_forward;
    int32_t n_prompt;
    vb_token mask;
    int bad;          /* first violated invariant (0 = none) */
    int32_t rows[64]; /* rows per decode forward */
    int32_t kv[64];   /* kv rows before each decode forward */
} trace_rec;

static void trace_observer(const vb_batch *b, int32_t kv_len, void *user) {
    trace_rec *t = user;
    int32_t f = t->n_forward++;
    if (kv_len < t->n_prompt) return; /* prefill */
    int32_t d = f - 1;
    if (d >= 0 && d < 64) {
        t->rows[d] = b->n;
        t->kv[d] = kv_len;
    }
    /* filled rows first, then masks; positions ascending within each group, all distinct,
       all in [kv_len, kv_len + n) (the window sits right after the committed prefix) */
    int32_t i = 0;
    vb_pos last = -1;
    while (i < b->n && b->token[i] != t->mask) {
        if (b->pos[i] <= last && !t->bad) t->bad = 1;
        last = b->pos[i++];
    }
    /* the leading filled rows: positions kv_len, kv_len+1, ... */
    last = -1;
    for (; i < b->n; i++) {
        if (b->token[i] != t->mask && !t->bad) t->bad = 2;
        if (b->pos[i] <= last && !t->bad) t->bad = 3;
        if (!b->want_logits[i] && !t->bad) t->bad = 4;
        last = b->pos[i];
    }
    uint8_t seen[128] = {0};
    for (i = 0; i < b->n; i++) {
        int32_t off = b->pos[i] - kv_len;
        if ((off < 0 || off >= b->n || off >= 128 || seen[off]) && !t->bad) t->bad = 5;
        if (off >= 0 && off < 128) seen[off] = 1;
    }
}

/* Reference WeDLM by full recompute on sequence 1: every step forwards prompt + committed +
 * the reordered window from scratch. Same rule (entropy of raw logits, lambda distance, tau,
 * best or leftmost fallback, argmax without the mask, optional d0-AR row). */
static int ref_wedlm(vb_context *ctx, const vb_token *prompt, int32_t n_prompt, int32_t n_pred,
                     int32_t W, float tau, float lambda, bool d0_ar, bool leftmost, vb_token mask,
                     int32_t n_vocab, vb_token *out, int32_t *n_forward) {
    vb_token seq_tok[512];
    int32_t c = n_prompt, n_out = 0, window_n = W;
    vb_token win[64];
    for (int j = 0; j < W; j++) win[j] = -1;
    memcpy(seq_tok, prompt, sizeof(vb_token) * (size_t)n_prompt);
    vb_batch *b = vb_batch_init(512);
    *n_forward = 0;
    while (n_out < n_pred) {
        int32_t nlead = 0;
        while (nlead < window_n && win[nlead] >= 0) nlead++;
        for (int k = 0; k < nlead; k++) win[window_n++] = -1;
        if (window_n > n_pred - n_out) window_n = n_pred - n_out; /* as the decoder caps */
        int32_t order[64], n_f = 0;
        for (int j = 0; j < window_n; j++)
            if (win[j] >= 0) order[n_f++] = j;
        int32_t n_rows = n_f;
        for (int j = 0; j < window_n; j++)
            if (win[j] < 0) order[n_rows++] = j;
        vb_kv_free_seq(ctx, 1);
        vb_batch_clear(b);
        for (int i = 0; i < c; i++) vb_batch_add(b, seq_tok[i], i, 1, false);
        for (int i = 0; i < n_rows; i++)
            vb_batch_add(b, win[order[i]] >= 0 ? win[order[i]] : mask, c + order[i], 1, true);
        b->want_logits[c + nlead - 1] = 1;
        if (vb_forward(ctx, b) != VB_OK) break;
        (*n_forward)++;
        int32_t cnew = c + nlead;
        for (int k = 0; k < nlead; k++) {
            seq_tok[c + k] = win[k];
            out[n_out++] = win[k];
            if (n_out >= n_pred) break;
        }
        if (n_out >= n_pred) break;
        /* masks, window indices after the commit */
        double best = INFINITY;
        int32_t best_k = -1, n_sel = 0, sel[64], mjs[64], n_m = 0;
        for (int i = n_f; i < n_rows; i++) mjs[n_m++] = order[i] - nlead;
        for (int k = 0; k < n_m; k++) {
            const float *lg = (d0_ar && mjs[k] == 0) ? vb_get_logits(ctx, cnew - 1)
                                                     : vb_get_logits(ctx, c + n_f + k);
            double mx = -INFINITY, z = 0.0, h = 0.0;
            for (int v = 0; v < n_vocab; v++) mx = lg[v] > mx ? lg[v] : mx;
            for (int v = 0; v < n_vocab; v++) z += exp(lg[v] - mx);
            for (int v = 0; v < n_vocab; v++) {
                double lp = lg[v] - mx - log(z);
                if (exp(lp) > 0) h -= exp(lp) * lp;
            }
            double s = h + lambda * (mjs[k] - mjs[0]);
            if (s < tau) sel[n_sel++] = k;
            if (s < best) {
                best = s;
                best_k = k;
            }
        }
        if (n_sel == 0) sel[n_sel++] = leftmost ? 0 : best_k;
        vb_token fills[64];
        for (int q = 0; q < n_sel; q++) {
            int k = sel[q];
            const float *lg = (d0_ar && mjs[k] == 0) ? vb_get_logits(ctx, cnew - 1)
                                                     : vb_get_logits(ctx, c + n_f + k);
            vb_token am = -1;
            for (int v = 0; v < n_vocab; v++)
                if (v != mask && (am < 0 || lg[v] > lg[am])) am = v;
            fills[q] = am;
        }
        memmove(win, win + nlead, sizeof(vb_token) * (size_t)(window_n - nlead));
        window_n -= nlead;
        c = cnew;
        for (int q = 0; q < n_sel; q++) win[mjs[sel[q]]] = fills[q];
    }
    vb_kv_free_seq(ctx, 1);
    vb_batch_free(b);
    return n_out;
}

static void wedlm_vs_reference(uint64_t seed, float peak, float tau, bool d0, bool leftmost,
                               int32_t W) {
    sim_env e;
    CHECK(sim_open(&e, seed, peak, 4096, 2) == 0);
    vb_token prompt[64], out[64], ref[64];
    int32_t n_prompt = text_tokens("def main(argv):\n    return ", prompt);
    vb_generate_params p = params_for(VB_DECODER_WEDLM, 40);
    p.window = W;
    p.tau = tau;
    p.wedlm_d0_ar = d0;
    p.wedlm_leftmost_fallback = leftmost;
    p.stop_at_eos = false;
    trace_rec tr = {0};
    tr.n_prompt = n_prompt;
    tr.mask = vb_model_get_info(e.model)->mask;
    vb_generate_stats st;
    int32_t n_out = 0;
    vb_kv_free_seq(e.ctx, 0);
    vb_decode_hooks hooks = {trace_observer, &tr, NULL, NULL};
    int rc = vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st, &hooks);
    CHECKF(rc == VB_OK && n_out == 40, "rc %d n_out %d (%s)", rc, n_out, st.note);
    CHECKF(tr.bad == 0, "batch invariant %d violated", tr.bad);
    CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + n_out);
    int32_t ref_fwd = 0;
    int32_t n_ref = ref_wedlm(e.ctx, prompt, n_prompt, 40, W, tau, 0.02f, d0, leftmost, tr.mask,
                              vb_model_get_info(e.model)->n_vocab, ref, &ref_fwd);
    CHECK_EQ_INT(n_ref, 40);
    for (int i = 0; i < 40; i++)
        CHECKF(out[i] == ref[i], "seed %llu tau %g d0 %d left %d: token %d: %d vs ref %d",
               (unsigned long long)seed, tau, d0, leftmost, i, out[i], ref[i]);
    CHECK_EQ_INT(st.n_forward_decode, ref_fwd);
    int64_t committed = 0;
    for (int k = 0; k < VB_HIST_MAX; k++) committed += k * st.commit_hist[k];
    CHECK_EQ_INT(committed, 40);
    sim_close(&e);
}

TEST(decode_wedlm_matches_full_recompute) {
    wedlm_vs_reference(1, 8.0f, 0.4f, false, false, 4);
    wedlm_vs_reference(2, 8.0f, 1.0f, false, false, 4);
    wedlm_vs_reference(3, 20.0f, 0.4f, false, false, 16);
    wedlm_vs_reference(4, 12.0f, 2.0f, true, true, 8);
    wedlm_vs_reference(5, 8.0f, 0.4f, true, false, 4);
    wedlm_vs_reference(6, 8.0f, 0.4f, false, true, 16);
}

/* The trace of the KV-cached decoder itself: window rows per forward and the KV before each
 * (committed prefix only: scratch rows were truncated). */
TEST(decode_wedlm_trace_sim) {
    sim_env e;
    CHECK(sim_open(&e, 7, 30.0f, 4096, 1) == 0);
    vb_token prompt[16], out[32];
    int32_t n_prompt = text_tokens("x = ", prompt);
    vb_generate_params p = params_for(VB_DECODER_WEDLM, 12);
    p.window = 4;
    p.stop_at_eos = false;
    trace_rec tr = {0};
    tr.n_prompt = n_prompt;
    tr.mask = vb_model_get_info(e.model)->mask;
    vb_generate_stats st;
    int32_t n_out = 0;
    vb_decode_hooks hooks = {trace_observer, &tr, NULL, NULL};
    int rc = vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 32, &n_out, &st, &hooks);
    CHECK(rc == VB_OK && n_out == 12);
    CHECK(tr.bad == 0);
    /* first decode forward: 4 masks on top of the prompt */
    CHECK_EQ_INT(tr.kv[0], n_prompt);
    CHECK_EQ_INT(tr.rows[0], 4);
    /* forward f has W + (tokens it commits) rows, capped by the tokens still to generate; the
       KV before it holds the prompt + the tokens committed so far (scratch rows truncated) */
    int32_t nf = (int32_t)st.n_forward_decode;
    CHECK(nf >= 2 && nf < 64);
    for (int f = 0; f < nf; f++) {
        int32_t done_before = tr.kv[f] - n_prompt;
        int32_t commits = (f + 1 < nf ? tr.kv[f + 1] : n_prompt + 12) - tr.kv[f];
        int32_t want = 4 + commits < 12 - done_before ? 4 + commits : 12 - done_before;
        CHECKF(commits >= 0 && tr.rows[f] == want, "forward %d: %d rows, want %d", f, tr.rows[f],
               want);
    }
    /* peak 30 on sim: masks near known text are confident, so > 1 token per forward (the NaN
       pitfall would give exactly 1) */
    CHECKF(st.tokens_per_forward > 1.3, "tokens/forward %g", st.tokens_per_forward);
    sim_close(&e);
}

/* Backends that mask by position (physical_causality false): every batch in logical order,
 * contiguous after the cached rows; still several tokens per forward when confident, and at
 * tau 0 the same text as AR. */
typedef struct order_rec {
    int bad;
} order_rec;

static void logical_order_observer(const vb_batch *b, int32_t kv_len, void *user) {
    order_rec *r = user;
    for (int32_t i = 0; i < b->n; i++)
        if (b->pos[i] != kv_len + i) r->bad = 1;
}

TEST(decode_wedlm_position_masked_backend) {
    sim_env e;
    CHECK(sim_open(&e, 11, 30.0f, 4096, 1) == 0);
    vb_token prompt[32], out[64], ar[64];
    int32_t n_prompt = text_tokens("print(x)\n", prompt), n_out = 0, n_ar = 0;
    vb_backend_caps caps = vb_context_caps(e.ctx);
    caps.physical_causality = false;
    order_rec rec = {0};
    vb_decode_hooks hooks = {logical_order_observer, &rec, &caps, NULL};
    vb_generate_params p = params_for(VB_DECODER_WEDLM, 48);
    p.window = 8;
    p.tau = 1.0f;
    p.wedlm_d0_ar = false;
    p.wedlm_leftmost_fallback = false; /* forced on by the fallback */
    vb_generate_stats st;
    vb_kv_free_seq(e.ctx, 0);
    CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st, &hooks) == VB_OK);
    CHECK_EQ_INT(n_out, 48);
    CHECK(rec.bad == 0);
    CHECK(strstr(st.note, "position") != NULL);
    CHECKF(st.tokens_per_forward > 1.3, "tokens/forward %g", st.tokens_per_forward);
    CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + 48);
    /* tau 0 with the d0-AR row: AR text */
    p.tau = 0.0f;
    p.wedlm_d0_ar = true;
    vb_kv_free_seq(e.ctx, 0);
    CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st, &hooks) == VB_OK);
    CHECK(rec.bad == 0);
    vb_generate_params pa = params_for(VB_DECODER_AR, 48);
    CHECK(gen(e.ctx, prompt, n_prompt, &pa, ar, 64, &n_ar, &st) == VB_OK);
    CHECK_EQ_INT(n_ar, n_out);
    for (int i = 0; i < n_ar; i++) CHECK_EQ_INT(out[i], ar[i]);
    sim_close(&e);
}

/* ------------------------------------------------------------------------------------------
 * lossless decoders == AR greedy
 * ------------------------------------------------------------------------------------------ */

static void check_same_as_ar(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                             vb_generate_params p, int32_t n_pred, const char *what) {
    vb_token ar[256], other[256];
    int32_t n_ar = 0, n_other = 0;
    vb_generate_stats st;
    vb_generate_params pa = p;
    pa.decoder = VB_DECODER_AR;
    pa.n_predict = n_pred;
    p.n_predict = n_pred;
    CHECK(gen(ctx, prompt, n_prompt, &pa, ar, 256, &n_ar, &st) == VB_OK);
    int rc = gen(ctx, prompt, n_prompt, &p, other, 256, &n_other, &st);
    CHECKF(rc == VB_OK, "%s: rc %d (%s)", what, rc, st.note);
    CHECKF(n_ar == n_other, "%s: %d vs %d tokens", what, n_ar, n_other);
    for (int i = 0; i < n_ar; i++)
        CHECKF(ar[i] == other[i], "%s: token %d differs (%d vs %d)", what, i, ar[i], other[i]);
    CHECK_EQ_INT(vb_kv_seq_len(ctx, p.seq), n_prompt + n_other);
}

TEST(decode_verify_equals_ar_sim) {
    const float peaks[3] = {2.0f, 8.0f, 30.0f};
    for (uint64_t seed = 1; seed <= 4; seed++)
        for (int pi = 0; pi < 3; pi++) {
            sim_env e;
            CHECK(sim_open(&e, seed, peaks[pi], 4096, 1) == 0);
            vb_token prompt[64];
            int32_t n_prompt = text_tokens("import os\nimport os\nimport sys\n", prompt);
            vb_generate_params p = params_for(VB_DECODER_VERIFY, 0);
            p.draft_max = 8;
            check_same_as_ar(e.ctx, prompt, n_prompt, p, 100, "verify draft 8");
            p.draft_max = 0;
            check_same_as_ar(e.ctx, prompt, n_prompt, p, 100, "verify adaptive");
            p.draft_max = 3;
            p.ngram_min = 1;
            p.sampler.repeat_penalty = 1.3f;
            check_same_as_ar(e.ctx, prompt, n_prompt, p, 100, "verify repeat penalty");
            sim_close(&e);
            if (vbt_failed_now()) return;
        }
}

/* WeDLM-window drafts in verify (adaptive mode, model with a mask token): mask rows appear in
 * the forwards, drafts from them get accepted, and the output is still AR greedy. */
typedef struct mask_rec {
    vb_token mask;
    int forwards_with_masks;
} mask_rec;

static void mask_observer(const vb_batch *b, int32_t kv_len, void *user) {
    (void)kv_len;
    mask_rec *r = user;
    for (int32_t i = 0; i < b->n; i++)
        if (b->token[i] == r->mask) {
            r->forwards_with_masks++;
            break;
        }
}

TEST(decode_verify_window_drafts) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        sim_env e;
        CHECK(sim_open(&e, seed, 30.0f, 4096, 1) == 0);
        vb_token prompt[64], ar[128], out[128];
        int32_t n_prompt = text_tokens("abcdefgh", prompt), n_ar = 0, n_out = 0;
        vb_generate_params p = params_for(VB_DECODER_AR, 100);
        vb_generate_stats st;
        CHECK(gen(e.ctx, prompt, n_prompt, &p, ar, 128, &n_ar, &st) == VB_OK);
        p.decoder = VB_DECODER_VERIFY;
        p.draft_max = 0;
        p.ngram_min = 3;
        /* measured costs (timing-dependent choices: only losslessness is checked), then a
           GPU-like flat table (window drafting pays) */
        vb_cost_table flat = {4, {1, 4, 16, 64}, {1.0, 1.0, 1.05, 1.2}};
        for (int variant = 0; variant < 2; variant++) {
            mask_rec rec = {vb_model_get_info(e.model)->mask, 0};
            vb_decode_hooks hooks = {mask_observer, &rec, NULL, variant ? &flat : NULL};
            vb_kv_free_seq(e.ctx, 0);
            CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 128, &n_out, &st,
                                     &hooks) == VB_OK);
            CHECK_EQ_INT(n_out, n_ar);
            for (int i = 0; i < n_ar; i++) CHECK_EQ_INT(out[i], ar[i]);
            CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + n_out);
            if (variant) { /* deterministic choices (no timing): window drafts must be used */
                CHECKF(rec.forwards_with_masks > 0, "seed %llu: no mask rows",
                       (unsigned long long)seed);
                CHECKF(st.tokens_per_forward > 2.0, "seed %llu: %.2f tokens/forward",
                       (unsigned long long)seed, st.tokens_per_forward);
            }
        }
        vb_cost_forget(e.ctx);
        sim_close(&e);
    }
}

TEST(decode_wedlm_leftmost_tau0_equals_ar) {
    for (uint64_t seed = 1; seed <= 3; seed++) {
        sim_env e;
        CHECK(sim_open(&e, seed, 8.0f, 4096, 1) == 0);
        vb_token prompt[64];
        int32_t n_prompt = text_tokens("for i in range(", prompt);
        vb_generate_params p = params_for(VB_DECODER_WEDLM, 0);
        p.tau = 0.0f;
        p.wedlm_d0_ar = true;
        p.wedlm_leftmost_fallback = true;
        check_same_as_ar(e.ctx, prompt, n_prompt, p, 60, "wedlm tau 0");
        p.window = 0; /* adaptive: may switch to AR, must stay identical */
        check_same_as_ar(e.ctx, prompt, n_prompt, p, 60, "wedlm tau 0 adaptive");
        /* adaptive at tau 0 fills one slot per step: AR must win even when rows are free */
        vb_cost_table flat = {4, {1, 4, 16, 64}, {1.0, 1.0, 1.05, 1.2}};
        vb_decode_hooks hooks = {NULL, NULL, NULL, &flat};
        vb_token out[64];
        int32_t n_out = 0;
        vb_generate_stats st;
        p.n_predict = 60;
        vb_kv_free_seq(e.ctx, 0);
        CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st, &hooks) ==
              VB_OK);
        CHECK_EQ_INT(st.window_used, 1);
        sim_close(&e);
        /* a confident model (sim peak 30) at tau 2 with free rows: stays WeDLM, W > 1 */
        CHECK(sim_open(&e, seed, 30.0f, 4096, 1) == 0);
        p.tau = 2.0f;
        vb_kv_free_seq(e.ctx, 0);
        CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st, &hooks) ==
              VB_OK);
        CHECK_EQ_INT(n_out, 60);
        CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + 60);
        CHECKF(st.tokens_per_forward > 1.5, "%.2f tokens/forward", st.tokens_per_forward);
        CHECKF(st.window_used > 1, "window %d (%s)", st.window_used, st.note);
        sim_close(&e);
        if (vbt_failed_now()) return;
    }
}

/* The shipped model on the cpu backend: verify and WeDLM (d0-AR + leftmost, tau 0) equal AR. */
TEST(decode_shipped_model_lossless) {
    vb_model *m = NULL;
    char err[256] = "";
    int rc = vb_model_load("models/wedlm-py-6m-f16.gguf", NULL, &m, err, sizeof err);
    if (rc != VB_OK) {
        size_t size = 0;
        const void *data = vb_embedded_model(&size);
        CHECKF(data && size, "no shipped model: %s", err);
        rc = vb_model_load_from_memory(data, size, "wedlm-py-6m", NULL, &m, err, sizeof err);
    }
    CHECKF(rc == VB_OK, "load: %s", err);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_ctx = 512;
    cp.n_seq_max = 1;
    vb_context *ctx = NULL;
    rc = vb_context_init(m, &cp, &ctx, err, sizeof err);
    CHECKF(rc == VB_OK, "cpu backend: %s", err);
    const char *text = "import os\nimport sys\n\ndef main(";
    vb_token prompt[64];
    int32_t n_prompt = vb_tokenize(m, text, strlen(text), true, false, prompt, 64);
    CHECK(n_prompt > 0 && n_prompt <= 64);
    vb_generate_params p = params_for(VB_DECODER_VERIFY, 0);
    p.stop_at_eos = false;
    check_same_as_ar(ctx, prompt, n_prompt, p, 32, "shipped verify");
    p.decoder = VB_DECODER_WEDLM;
    p.tau = 0.0f;
    check_same_as_ar(ctx, prompt, n_prompt, p, 32, "shipped wedlm tau 0");
    vb_context_free(ctx);
    vb_model_free(m);
}

/* ------------------------------------------------------------------------------------------
 * prompt lookup, cost model
 * ------------------------------------------------------------------------------------------ */

TEST(decode_ngram_draft) {
    /* ... 1 2 3 4 5 ... 9 1 2 3 | last three tokens "1 2 3" match at 0: propose 4 5 6 */
    vb_token h[] = {1, 2, 3, 4, 5, 6, 9, 7, 2, 3, 8, 1, 2, 3};
    vb_token d[8];
    int32_t n = (int32_t)(sizeof h / sizeof h[0]);
    CHECK_EQ_INT(vb_verify_ngram_draft(h, n, 2, 3, 3, d), 3);
    CHECK(d[0] == 4 && d[1] == 5 && d[2] == 6);
    /* the most recent match wins: "2 3" occurs at 1 and 8; with n_max 2 -> 8 follows */
    CHECK_EQ_INT(vb_verify_ngram_draft(h, n, 2, 2, 4, d), 4);
    CHECK(d[0] == 8 && d[1] == 1 && d[2] == 2 && d[3] == 3);
    /* no match of length >= 2 */
    vb_token g[] = {1, 2, 3, 4, 5};
    CHECK_EQ_INT(vb_verify_ngram_draft(g, 5, 2, 3, 4, d), 0);
    /* the draft stops at the end of the history */
    vb_token r[] = {7, 7, 7};
    CHECK_EQ_INT(vb_verify_ngram_draft(r, 3, 1, 3, 8, d), 1);
    CHECK_EQ_INT(d[0], 7);
}

TEST(decode_cost_model_choice) {
    vb_cost_table flat = {4, {1, 2, 4, 8}, {1.0, 1.0, 1.01, 1.02}};    /* GPU-like */
    vb_cost_table steep = {4, {1, 2, 4, 8}, {1.0, 2.0, 4.0, 8.0}};     /* cost ~ rows */
    CHECK(fabs(vb_cost_seconds(&steep, 3) - 3.0) < 1e-12);
    CHECK(fabs(vb_cost_seconds(&steep, 16) - 16.0) < 1e-12);
    CHECK(fabs(vb_cost_expected_tokens(0.5, 2) - 1.75) < 1e-12);
    CHECK(vb_cost_best_draft(&flat, 0.8, 7) >= 6);
    CHECK_EQ_INT(vb_cost_best_draft(&flat, 0.0, 7), 0);
    CHECK_EQ_INT(vb_cost_best_draft(&steep, 0.9, 7), 0);
    /* measured on sim: a table, and the sequence is left as it was */
    sim_env e;
    CHECK(sim_open(&e, 1, 8.0f, 4096, 1) == 0);
    vb_batch *b = vb_batch_init(8);
    for (int i = 0; i < 5; i++) vb_batch_add(b, 'a' + i, i, 0, false);
    CHECK(vb_forward(e.ctx, b) == VB_OK);
    vb_batch_free(b);
    vb_cost_table t;
    CHECK(vb_cost_measure(e.ctx, 0, 'a', 16, &t) == VB_OK);
    CHECK(t.n >= 1 && t.rows[0] == 1);
    CHECK(t.n <= VB_COST_MAX_POINTS && t.rows[t.n - 1] <= 16);
    CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), 5);
    vb_cost_forget(e.ctx);
    sim_close(&e);
}

/* ------------------------------------------------------------------------------------------
 * edge cases: n_predict 0, EOS, callback stop, KV full, state errors
 * ------------------------------------------------------------------------------------------ */

TEST(decode_n_predict_zero) {
    sim_env e;
    CHECK(sim_open(&e, 1, 8.0f, 4096, 1) == 0);
    vb_token prompt[16], out[4];
    int32_t n_prompt = text_tokens("abc", prompt);
    for (int d = 0; d < 3; d++) {
        vb_generate_params p = params_for(d, 0);
        vb_generate_stats st;
        int32_t n_out = -1;
        CHECK(gen(e.ctx, prompt, n_prompt, &p, out, 4, &n_out, &st) == VB_OK);
        CHECK_EQ_INT(n_out, 0);
        CHECK_EQ_INT(st.n_generated, 0);
        CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt);
    }
    sim_close(&e);
}

static bool stop_after_5(vb_token t, void *user) {
    (void)t;
    int *count = user;
    return ++*count < 5;
}

TEST(decode_eos_and_callback_stop) {
    sim_env e;
    CHECK(sim_open(&e, 3, 8.0f, 4096, 1) == 0);
    vb_token prompt[32], ar[64], out[64];
    int32_t n_prompt = text_tokens("while True:\n", prompt), n_ar = 0, n_out = 0;
    vb_generate_params p = params_for(VB_DECODER_AR, 40);
    vb_generate_stats st;
    CHECK(gen(e.ctx, prompt, n_prompt, &p, ar, 64, &n_ar, &st) == VB_OK && n_ar == 40);
    /* make the 8th greedy token the model's EOS (sim never predicts its own EOS) */
    vb_token stop = ar[7];
    int32_t first = 0;
    while (ar[first] != stop) first++;
    vb_model *mm = (vb_model *)vb_context_model(e.ctx);
    vb_token saved_eos = mm->info.eos;
    mm->info.eos = stop;
    for (int d = 0; d < 3; d++) {
        p = params_for(d, 40);
        p.window = 4;
        p.tau = 0.0f; /* WeDLM: leftmost + d0-AR (defaults) at tau 0 equals AR */
        CHECK(gen(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st) == VB_OK);
        CHECKF(n_out == first + 1 && out[first] == stop, "decoder %d: %d tokens", d, n_out);
        CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + n_out);
        p.stop_at_eos = false;
        CHECK(gen(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st) == VB_OK);
        CHECK_EQ_INT(n_out, 40);
        /* callback stop after 5 tokens */
        int count = 0;
        p.on_token = stop_after_5;
        p.user = &count;
        CHECK(gen(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st) == VB_OK);
        CHECK_EQ_INT(n_out, 5);
        CHECK_EQ_INT(count, 5);
        CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + 5);
    }
    mm->info.eos = saved_eos;
    sim_close(&e);
}

TEST(decode_kv_full) {
    vb_token prompt[32], ref[512], out[512];
    sim_env big, small;
    CHECK(sim_open(&big, 5, 8.0f, 4096, 1) == 0);
    CHECK(sim_open(&small, 5, 8.0f, 64, 1) == 0);
    int32_t n_prompt = text_tokens("x = [1, 2, 3]\n", prompt), n_ref = 0, n_out = 0;
    vb_generate_params p = params_for(VB_DECODER_AR, 300);
    vb_generate_stats st;
    CHECK(gen(big.ctx, prompt, n_prompt, &p, ref, 512, &n_ref, &st) == VB_OK && n_ref == 300);
    for (int d = 0; d < 3; d++) {
        p = params_for(d, 300);
        p.tau = 0.0f;
        p.window = 8;
        int rc = gen(small.ctx, prompt, n_prompt, &p, out, 512, &n_out, &st);
        CHECKF(rc == VB_KV_FULL, "decoder %d: rc %d", d, rc);
        CHECKF(n_out > 20 && n_out < 300, "decoder %d: %d tokens", d, n_out);
        CHECK_EQ_INT(st.n_generated, n_out);
        for (int i = 0; i < n_out; i++) CHECK_EQ_INT(out[i], ref[i]);
        /* every token but possibly the last is cached */
        int32_t len = vb_kv_seq_len(small.ctx, 0);
        CHECKF(len >= n_prompt + n_out - 1 && len <= n_prompt + n_out, "decoder %d: kv %d", d, len);
    }
    /* a prompt that does not fit at all */
    vb_token longp[200];
    for (int i = 0; i < 200; i++) longp[i] = 'a' + i % 26;
    p = params_for(VB_DECODER_AR, 10);
    CHECK(gen(small.ctx, longp, 200, &p, out, 512, &n_out, &st) == VB_KV_FULL);
    CHECK_EQ_INT(n_out, 0);
    sim_close(&small);
    sim_close(&big);
}

TEST(decode_state_errors) {
    sim_env e;
    CHECK(sim_open(&e, 1, 8.0f, 4096, 1) == 0);
    vb_token prompt[8], out[8];
    int32_t n_prompt = text_tokens("ab", prompt), n_out = 0;
    vb_generate_params p = params_for(VB_DECODER_AR, 4);
    vb_generate_stats st;
    CHECK(gen(e.ctx, prompt, n_prompt, &p, out, 8, &n_out, &st) == VB_OK);
    /* the sequence is not empty now */
    CHECK(vb_generate(e.ctx, prompt, n_prompt, &p, out, 8, &n_out, &st) == VB_ERR_STATE);
    CHECK(strlen(st.note) > 0);
    vb_kv_free_seq(e.ctx, 0);
    CHECK(vb_generate(e.ctx, prompt, 0, &p, out, 8, &n_out, &st) == VB_ERR_ARG);
    p.seq = 99;
    CHECK(vb_generate(e.ctx, prompt, n_prompt, &p, out, 8, &n_out, &st) == VB_ERR_ARG);
    /* WeDLM without a mask token */
    vb_model *mm = (vb_model *)vb_context_model(e.ctx);
    vb_token saved = mm->info.mask;
    mm->info.mask = -1;
    p = params_for(VB_DECODER_WEDLM, 4);
    CHECK(vb_generate(e.ctx, prompt, n_prompt, &p, out, 8, &n_out, &st) == VB_ERR_UNSUPPORTED);
    CHECK(strstr(st.note, "mask") != NULL);
    p.mask_token = saved; /* an explicit mask token works */
    CHECK(vb_generate(e.ctx, prompt, n_prompt, &p, out, 8, &n_out, &st) == VB_OK);
    mm->info.mask = saved;
    sim_close(&e);
}

/* A backend with small batches: the prompt is prefilled in chunks, the WeDLM window and the
 * drafts are capped, and the text is the same as with large batches. */
TEST(decode_small_batches) {
    vb_sim_params sp = vb_sim_default_params();
    vb_model *m = NULL;
    CHECK(vb_model_load_sim(&sp, &m, NULL, 0) == VB_OK);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "sim";
    cp.n_seq_max = 1;
    vb_context *big = NULL, *small = NULL;
    CHECK(vb_context_init(m, &cp, &big, NULL, 0) == VB_OK);
    cp.n_batch_max = 6;
    CHECK(vb_context_init(m, &cp, &small, NULL, 0) == VB_OK);
    CHECK_EQ_INT(vb_context_caps(small).max_batch, 6);
    vb_token prompt[64], a[64], b[64];
    int32_t n_prompt = text_tokens("def f(x):\n    return x * 2\n", prompt), na = 0, nb = 0;
    for (int d = 0; d < 3; d++) {
        vb_generate_params p = params_for(d, 40);
        p.tau = 0.0f; /* WeDLM: d0-AR + leftmost at tau 0 is AR text */
        vb_generate_stats st;
        CHECK(gen(big, prompt, n_prompt, &p, a, 64, &na, &st) == VB_OK);
        CHECK(gen(small, prompt, n_prompt, &p, b, 64, &nb, &st) == VB_OK);
        CHECK_EQ_INT(st.n_forward - st.n_forward_decode, (n_prompt + 5) / 6); /* prefill chunks */
        CHECK(st.window_used <= 6);
        CHECK_EQ_INT(na, nb);
        for (int i = 0; i < na; i++) CHECK_EQ_INT(a[i], b[i]);
    }
    vb_context_free(small);
    vb_context_free(big);
    vb_model_free(m);
}

/* ------------------------------------------------------------------------------------------
 * the one engine's fixes (issue 12): every decoder stops at the same place at a full KV and at
 * the model's learned positions, -n 1 costs WeDLM one forward as AR, measuring forwards are
 * counted apart, and the adaptive window's text does not depend on the timings
 * ------------------------------------------------------------------------------------------ */

static const struct { int decoder; bool exact, official; int32_t window; } engine_variants[] = {
    {VB_DECODER_AR, false, false, 16},    {VB_DECODER_VERIFY, false, false, 16},
    {VB_DECODER_WEDLM, false, false, 8},  {VB_DECODER_WEDLM, true, false, 8},
    {VB_DECODER_WEDLM, false, true, 8},   {VB_DECODER_WEDLM, false, false, 0},
};

static vb_generate_params variant_params(int v, int32_t n_predict) {
    vb_generate_params p = params_for(engine_variants[v].decoder, n_predict);
    p.wedlm_exact = engine_variants[v].exact;
    if (engine_variants[v].official) p.wedlm_d0_ar = p.wedlm_leftmost_fallback = false;
    p.window = engine_variants[v].window;
    p.tau = 0.0f;
    p.draft_max = 4;
    p.stop_at_eos = false;
    return p;
}

TEST(engine_kv_full_same_token_count) {
    sim_env e;
    CHECK(sim_open(&e, 9, 8.0f, 64, 1) == 0);
    vb_token prompt[64], out[512];
    int32_t n_prompt = text_tokens("for i in range(10):\n    print(i)\n", prompt), n_ar = -1;
    int n_variants = (int)(sizeof engine_variants / sizeof engine_variants[0]);
    for (int v = 0; v < n_variants; v++) {
        vb_generate_params p = variant_params(v, 400);
        vb_generate_stats st;
        int32_t n_out = 0;
        CHECKF(gen(e.ctx, prompt, n_prompt, &p, out, 512, &n_out, &st) == VB_KV_FULL, "variant %d", v);
        if (v == 0) n_ar = n_out;
        CHECKF(n_out == n_ar, "variant %d: %d tokens at a full KV, AR %d", v, n_out, n_ar);
    }
    sim_close(&e);
}

TEST(engine_learned_positions_stop_like_kv_full) {
    sim_env e;
    CHECK(sim_open(&e, 4, 8.0f, 4096, 1) == 0);
    vb_model *mm = (vb_model *)vb_context_model(e.ctx);
    int32_t saved = mm->info.n_ctx_train;
    vb_token prompt[64], ref[64], out[64];
    int32_t n_prompt = text_tokens("x = [1, 2, 3]\n", prompt), n_ref = 0;
    vb_generate_params p = variant_params(0, 40);
    vb_generate_stats st;
    CHECK(gen(e.ctx, prompt, n_prompt, &p, ref, 64, &n_ref, &st) == VB_OK && n_ref == 40);
    mm->info.n_ctx_train = n_prompt + 25; /* a GPT-2-like model with learned positions */
    int n_variants = (int)(sizeof engine_variants / sizeof engine_variants[0]);
    for (int v = 0; v < n_variants; v++) {
        p = variant_params(v, 40);
        int32_t n_out = 0;
        int rc = gen(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st);
        CHECKF(rc == VB_KV_FULL && n_out == 25, "variant %d: status %d, %d tokens", v, rc, n_out);
        if (v != 2 && v != 4) /* lossless ones, and tau 0 leftmost WeDLM: AR's tokens */
            for (int i = 0; i < n_out; i++) CHECK_EQ_INT(out[i], ref[i]);
    }
    mm->info.n_ctx_train = saved;
    sim_close(&e);
}

TEST(engine_one_token_one_forward) {
    sim_env e;
    CHECK(sim_open(&e, 2, 8.0f, 4096, 1) == 0);
    vb_token prompt[32], out[4];
    int32_t n_prompt = text_tokens("print(", prompt), n_out = 0;
    int n_variants = (int)(sizeof engine_variants / sizeof engine_variants[0]);
    for (int v = 0; v < n_variants; v++) {
        if (engine_variants[v].official) continue; /* the paper's rule has no AR row to use */
        vb_generate_params p = variant_params(v, 1);
        vb_generate_stats st;
        CHECK(gen(e.ctx, prompt, n_prompt, &p, out, 4, &n_out, &st) == VB_OK && n_out == 1);
        CHECKF(st.n_forward_decode == 1, "variant %d: %lld forwards for one token", v, (long long)st.n_forward_decode);
        CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), n_prompt + 1);
    }
    sim_close(&e);
}

static void count_batches(const vb_batch *b, int32_t kv_len, void *user) {
    (void)b;
    (void)kv_len;
    (*(int64_t *)user)++;
}

TEST(engine_measure_forwards_counted_apart) {
    sim_env e;
    CHECK(sim_open(&e, 6, 8.0f, 4096, 1) == 0);
    vb_token prompt[64], out[64];
    int32_t n_prompt = text_tokens("a = 1\nb = 2\na = 1\nb = 2\n", prompt), n_out = 0;
    for (int d = 0; d < 2; d++) {
        vb_cost_forget(e.ctx);
        vb_generate_params p = params_for(d == 0 ? VB_DECODER_VERIFY : VB_DECODER_WEDLM, 30);
        p.draft_max = 0; /* adaptive: measures cost(K) first */
        p.window = 0;
        int64_t batches = 0;
        vb_decode_hooks hooks = {.observer = count_batches, .observer_user = &batches};
        vb_generate_stats st;
        int64_t ctx_before = vb_context_stats(e.ctx).n_forward;
        vb_kv_free_seq(e.ctx, 0);
        CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, out, 64, &n_out, &st, &hooks) == VB_OK);
        int64_t ctx_forwards = vb_context_stats(e.ctx).n_forward - ctx_before;
        CHECKF(st.n_forward == batches, "decoder %d: n_forward %lld, batches %lld", d, (long long)st.n_forward,
               (long long)batches);
        CHECKF(st.n_forward_measure > 0 && st.n_forward + st.n_forward_measure == ctx_forwards,
               "decoder %d: %lld + %lld measure vs %lld forwards", d, (long long)st.n_forward,
               (long long)st.n_forward_measure, (long long)ctx_forwards);
    }
    vb_cost_forget(e.ctx);
    sim_close(&e);
}

/* --window 0: the window follows cost(K); two opposite tables (K rows nearly free, K rows cost
   K times one) give the same text. */
TEST(engine_adaptive_window_text_independent_of_costs) {
    sim_env e;
    CHECK(sim_open(&e, 8, 8.0f, 4096, 1) == 0);
    vb_token prompt[64], a[64], b[64];
    int32_t n_prompt = text_tokens("def f(x):\n    return x + 1\n", prompt), na = 0, nb = 0;
    vb_cost_table flat = {4, {1, 2, 4, 8}, {1.0, 1.0, 1.01, 1.02}};
    vb_cost_table steep = {4, {1, 2, 4, 8}, {1.0, 2.0, 4.0, 8.0}};
    vb_generate_params p = params_for(VB_DECODER_WEDLM, 48);
    p.window = 0;
    p.tau = 2.0f; /* fills that AR would not always make */
    vb_generate_stats sa, sb;
    vb_decode_hooks ha = {.cost_override = &flat}, hb = {.cost_override = &steep};
    vb_kv_free_seq(e.ctx, 0);
    CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, a, 64, &na, &sa, &ha) == VB_OK);
    vb_kv_free_seq(e.ctx, 0);
    CHECK(vb_generate_hooked(e.ctx, prompt, n_prompt, &p, b, 64, &nb, &sb, &hb) == VB_OK);
    CHECK(sa.window_used != sb.window_used || sa.n_forward_decode != sb.n_forward_decode);
    CHECK_EQ_INT(na, nb);
    for (int i = 0; i < na; i++) CHECK_EQ_INT(a[i], b[i]);
    sim_close(&e);
}

/* reuse_kv: a sequence holding the KV of a prefix of the prompt (a chat's previous turn, cut to
 * the common prefix) forwards only the rest, and every decoder then generates what it generates
 * from an empty sequence; misuse is refused with the sequence left as it was. The shipped model
 * on the cpu backend (prefill rows against decode rows) and the sim backend. */
static void check_reuse(vb_context *ctx, const vb_token *p1, int32_t n1, const char *what) {
    for (int d = 0; d < 3; d++) {
        vb_generate_params p = params_for(d, 16);
        p.stop_at_eos = false;
        p.tau = 0.0f;
        p.window = 4;
        p.draft_max = 3;
        vb_token first[32], p2[128], fresh[32], reused[32];
        int32_t n_first = 0, n_fresh = 0, n_reused = 0;
        vb_generate_stats st;
        CHECK_EQ_INT(gen(ctx, p1, n1, &p, first, 32, &n_first, &st), VB_OK);
        CHECK_EQ_INT(vb_kv_seq_len(ctx, 0), n1 + n_first);
        /* the next prompt: the first prompt, 10 of its answer's tokens, then 5 new tokens */
        int32_t keep = n1 + 10, n2 = 0;
        memcpy(p2, p1, sizeof *p1 * (size_t)n1);
        memcpy(p2 + n1, first, sizeof *first * 10);
        n2 = keep;
        for (int i = 0; i < 5; i++) p2[n2++] = p1[i % n1];
        CHECK_EQ_INT(vb_kv_truncate(ctx, 0, keep), VB_OK);
        p.reuse_kv = true;
        CHECK_EQ_INT(vb_generate(ctx, p2, n2, &p, reused, 32, &n_reused, &st), VB_OK);
        CHECK_EQ_INT(st.n_prompt, n2);
        CHECK_EQ_INT(st.n_prompt_reused, keep);
        CHECK_EQ_INT(vb_kv_seq_len(ctx, 0), n2 + n_reused);
        p.reuse_kv = false;
        CHECK_EQ_INT(gen(ctx, p2, n2, &p, fresh, 32, &n_fresh, &st), VB_OK);
        CHECK_EQ_INT(st.n_prompt_reused, 0);
        CHECK_EQ_INT(n_reused, n_fresh);
        for (int i = 0; i < n_fresh && i < n_reused; i++)
            CHECKF(reused[i] == fresh[i], "%s decoder %d: token %d: %d reusing the KV, %d fresh", what, d, i,
                   reused[i], fresh[i]);
        /* misuse: as many rows as the prompt, or rows without reuse_kv; nothing is dropped */
        int32_t held = vb_kv_seq_len(ctx, 0);
        p.reuse_kv = true;
        CHECK_EQ_INT(vb_generate(ctx, p2, held, &p, reused, 32, &n_reused, &st), VB_ERR_ARG);
        CHECK(strstr(st.note, "reuse_kv"));
        p.reuse_kv = false;
        CHECK_EQ_INT(vb_generate(ctx, p2, n2, &p, reused, 32, &n_reused, &st), VB_ERR_STATE);
        CHECK_EQ_INT(vb_kv_seq_len(ctx, 0), held);
        /* rows that are not the prompt's (a stale KV): refused, not a silently different text */
        vb_token other[160];
        memcpy(other, p2, sizeof *p2 * (size_t)n2);
        memcpy(other + n2, reused, sizeof *reused * (size_t)n_fresh);
        other[3] = other[3] == 5 ? 6 : 5;
        p.reuse_kv = true;
        CHECK_EQ_INT(vb_generate(ctx, other, held + 1, &p, reused, 32, &n_reused, &st), VB_ERR_ARG);
        CHECKF(strstr(st.note, "row 3"), "%s", st.note);
        CHECK_EQ_INT(vb_kv_seq_len(ctx, 0), held);
    }
}

TEST(engine_reuse_kv_equals_fresh_prefill) {
    sim_env e;
    CHECK(sim_open(&e, 3, 8.0f, 4096, 1) == 0);
    vb_token prompt[64];
    check_reuse(e.ctx, prompt, text_tokens("def f(x):\n    return", prompt), "sim");
    /* the scheduler has its own prefix sharing: reuse_kv is vb_generate's */
    vb_sched *s = NULL;
    vb_kv_free_seq(e.ctx, 0);
    CHECK_EQ_INT(vb_sched_init(e.ctx, NULL, &s, NULL, 0), VB_OK);
    vb_request_params rp = vb_request_default_params();
    rp.decoding.reuse_kv = true;
    vb_request_id id;
    CHECK_EQ_INT(vb_sched_submit(s, prompt, 4, &rp, &id), VB_ERR_ARG);
    CHECK(strstr(vb_sched_error(s), "reuse_kv"));
    vb_sched_free(s);
    sim_close(&e);
    /* a prefill that finds the KV full keeps the rows the sequence held before, no more */
    CHECK(sim_open(&e, 3, 8.0f, 64, 1) == 0);
    vb_token longp[200], out[8];
    int32_t n_out = 0;
    for (int i = 0; i < 200; i++) longp[i] = 'a' + i % 26;
    vb_generate_params p = params_for(VB_DECODER_AR, 4);
    vb_generate_stats st;
    CHECK_EQ_INT(gen(e.ctx, longp, 20, &p, out, 8, &n_out, &st), VB_OK);
    CHECK_EQ_INT(vb_kv_truncate(e.ctx, 0, 12), VB_OK);
    p.reuse_kv = true;
    CHECK_EQ_INT(vb_generate(e.ctx, longp, 200, &p, out, 8, &n_out, &st), VB_KV_FULL);
    CHECK_EQ_INT(n_out, 0);
    CHECK_EQ_INT(vb_kv_seq_len(e.ctx, 0), 12);
    sim_close(&e);

    vb_model *m = NULL;
    char err[256] = "";
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    CHECK(data && size);
    CHECKF(vb_model_load_from_memory(data, size, "wedlm-py-6m", NULL, &m, err, sizeof err) == VB_OK, "%s", err);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_ctx = 512;
    cp.n_seq_max = 1;
    vb_context *ctx = NULL;
    CHECKF(vb_context_init(m, &cp, &ctx, err, sizeof err) == VB_OK, "%s", err);
    const char *text = "import os\nimport sys\n\ndef main(";
    int32_t n = vb_tokenize(m, text, strlen(text), true, false, prompt, 64);
    CHECK(n > 2);
    check_reuse(ctx, prompt, n, "shipped model");
    vb_context_free(ctx);
    vb_model_free(m);
}
