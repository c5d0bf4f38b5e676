/* test_logprobs.c - the log-probabilities the engine delivers with each committed token
 * (vb_generate_params.n_logprobs, vb_logprobs, vb_sched_logprobs) against the independent numpy
 * reference forward (scripts/ref_forward.py, float64): on a fixture model, the generated tokens
 * (greedy, and sampled at temperature 0.9 with a logit_bias, which must not change the reported
 * distribution) are forwarded by the reference after the prompt and its logits log-softmaxed in
 * double here; each token's logprob and its top alternatives must match. Then the invariants
 * (greedy token = the most likely, alternatives sorted, sum of their probabilities <= 1), the
 * other decoders (verify, WeDLM exact: the same greedy tokens and logprobs as AR within 1e-4;
 * WeDLM free: each token the most likely of the row it was filled from, mask aside), the
 * scheduler's delivery (vb_sched_logprobs equal to vb_generate's) and out-of-range settings; and
 * the row computation on hand-made rows (ties, -inf, NaN, fewer tokens than asked, 37 entries:
 * the vectorized blocks and the tail) against log-softmax in double here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decode/decode_internal.h"
#include "test.h"
#include "vibee.h"
#include "vibee_sched.h"

#define N_GEN 24
#define MODEL "gpt2-f32"
/* f32 kernels against the float64 reference: logits within ~1e-4 relative (test_reference.c) */
#define REF_TOL 2e-3
#define DECODER_TOL 1e-4

static const vb_token PROMPT[] = {17, 250, 3, 99, 142, 7};
#define N_PROMPT ((int32_t)(sizeof PROMPT / sizeof PROMPT[0]))

typedef struct fixture {
    vb_model *model;
    vb_context *ctx;
    int32_t n_vocab;
    char path[512];
} fixture;

static int fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s/models/%s.gguf", vbt_fixture_dir(), MODEL);
    char err[256];
    if (vb_model_load(f->path, NULL, &f->model, err, sizeof err) != VB_OK) return -1;
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_threads = 1;
    cp.n_ctx = 256;
    if (vb_context_init(f->model, &cp, &f->ctx, err, sizeof err) != VB_OK) return -1;
    f->n_vocab = vb_model_get_info(f->model)->n_vocab;
    return 0;
}

static void fixture_close(fixture *f) {
    vb_context_free(f->ctx);
    vb_model_free(f->model);
}

/* vb_generate on sequence 0 (freed first) with logprobs; returns the status. */
static int generate(fixture *f, vb_generate_params gp, vb_token *out, vb_logprobs *lp, int32_t *n_out) {
    vb_kv_free_seq(f->ctx, 0);
    gp.logprobs = lp;
    vb_generate_stats st;
    int rc = vb_generate(f->ctx, PROMPT, N_PROMPT, &gp, out, N_GEN, n_out, &st);
    if (rc != VB_OK) fprintf(stderr, "    vb_generate: %s (%s)\n", vb_status_str(rc), st.note);
    return rc;
}

static vb_generate_params greedy_params(int32_t n_logprobs) {
    vb_generate_params gp = vb_generate_default_params();
    gp.n_predict = N_GEN;
    gp.stop_at_eos = false;
    gp.n_logprobs = n_logprobs;
    return gp;
}

/* The reference's log-softmax rows for prompt + gen[n]: lsm[i][v] = log p(v | prompt, gen[0..i))
 * in double. Returns a malloc'd [n][n_vocab] array or NULL (message in why). */
static double *reference_logprobs(const fixture *f, const vb_token *gen, int32_t n, char *why, size_t why_len) {
    char toks[4096] = "", pos[4096] = "";
    size_t lt = 0, lpos = 0;
    int32_t total = N_PROMPT + n;
    for (int32_t i = 0; i < total; i++) {
        lt += (size_t)snprintf(toks + lt, sizeof toks - lt, "%s%d", i ? "," : "", i < N_PROMPT ? PROMPT[i] : gen[i - N_PROMPT]);
        lpos += (size_t)snprintf(pos + lpos, sizeof pos - lpos, "%s%d", i ? "," : "", i);
    }
    char bin[] = "/tmp/vb_logprobs_refXXXXXX";
    int fd = mkstemp(bin);
    if (fd < 0) {
        snprintf(why, why_len, "mkstemp failed");
        return NULL;
    }
    char cmd[10240], out[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 scripts/ref_forward.py '%s' --tokens %s --positions %s --out %s 2>&1",
             f->path, toks, pos, bin);
    int rc = vbt_run_cmd(cmd, out, sizeof out);
    double *lsm = NULL;
    float *logits = malloc(sizeof(float) * (size_t)total * (size_t)f->n_vocab);
    FILE *fp = rc == 0 ? fopen(bin, "rb") : NULL;
    if (rc != 0) snprintf(why, why_len, "ref_forward.py failed (%d): %.300s", rc, out);
    else if (!fp || !logits || fread(logits, sizeof(float), (size_t)total * (size_t)f->n_vocab, fp) !=
                                     (size_t)total * (size_t)f->n_vocab)
        snprintf(why, why_len, "cannot read the reference logits %s", bin);
    else if ((lsm = malloc(sizeof(double) * (size_t)n * (size_t)f->n_vocab))) {
        for (int32_t i = 0; i < n; i++) { /* row N_PROMPT-1+i predicts gen[i] */
            const float *row = logits + (size_t)(N_PROMPT - 1 + i) * (size_t)f->n_vocab;
            double max = -INFINITY, sum = 0.0;
            for (int32_t v = 0; v < f->n_vocab; v++) max = row[v] > max ? row[v] : max;
            for (int32_t v = 0; v < f->n_vocab; v++) sum += exp((double)row[v] - max);
            for (int32_t v = 0; v < f->n_vocab; v++)
                lsm[(size_t)i * (size_t)f->n_vocab + (size_t)v] = (double)row[v] - max - log(sum);
        }
    }
    if (fp) fclose(fp);
    free(logits);
    remove(bin);
    char json[64];
    snprintf(json, sizeof json, "%s.json", bin); /* the header ref_forward.py writes beside it */
    remove(json);
    close(fd);
    return lsm;
}

/* Compare lp[n] with the reference rows: the token's logprob, and each alternative k both as the
 * reference's k-th largest value and as the reference logprob of the token it names (robust to
 * near-ties). Returns 1 or 0 with the reason in why. */
static int matches_reference(const fixture *f, const vb_token *gen, const vb_logprobs *lp, int32_t n,
                             int32_t n_top, const double *lsm, double *worst, char *why, size_t why_len) {
    double *sorted = malloc(sizeof(double) * (size_t)f->n_vocab);
    if (!sorted) return 0;
    int ok = 1;
    for (int32_t i = 0; i < n && ok; i++) {
        const double *ref = lsm + (size_t)i * (size_t)f->n_vocab;
        double e = fabs(lp[i].logprob - ref[gen[i]]);
        if (e > *worst) *worst = e;
        if (lp[i].token != gen[i] || !(e <= REF_TOL)) {
            snprintf(why, why_len, "token %d (%d): logprob %.6f, reference %.6f", i, gen[i], lp[i].logprob, ref[gen[i]]);
            ok = 0;
            break;
        }
        if (lp[i].n_top != n_top) {
            snprintf(why, why_len, "token %d: %d alternatives, asked %d", i, lp[i].n_top, n_top);
            ok = 0;
            break;
        }
        memcpy(sorted, ref, sizeof(double) * (size_t)f->n_vocab);
        for (int32_t k = 0; k < n_top; k++) { /* selection of the k-th largest */
            int32_t best = k;
            for (int32_t v = k + 1; v < f->n_vocab; v++)
                if (sorted[v] > sorted[best]) best = v;
            double t = sorted[k];
            sorted[k] = sorted[best];
            sorted[best] = t;
            double e1 = fabs(lp[i].top[k].logprob - sorted[k]);
            double e2 = fabs(lp[i].top[k].logprob - ref[lp[i].top[k].token]);
            if (e1 > *worst) *worst = e1;
            if (!(e1 <= REF_TOL && e2 <= REF_TOL)) {
                snprintf(why, why_len, "token %d alternative %d (id %d): %.6f, reference k-th %.6f, of that id %.6f",
                         i, k, lp[i].top[k].token, lp[i].top[k].logprob, sorted[k], ref[lp[i].top[k].token]);
                ok = 0;
                break;
            }
        }
    }
    free(sorted);
    return ok;
}

/* The invariants of one entry: logprob <= 0, alternatives sorted and distinct, sum of their
   probabilities <= 1. */
static int invariants(const vb_logprobs *l, char *why, size_t why_len) {
    double sum = 0.0;
    if (!(l->logprob <= 0.0f)) {
        snprintf(why, why_len, "logprob %.6f > 0", l->logprob);
        return 0;
    }
    for (int32_t k = 0; k < l->n_top; k++) {
        sum += exp(l->top[k].logprob);
        if (k > 0 && !(l->top[k].logprob <= l->top[k - 1].logprob)) {
            snprintf(why, why_len, "alternatives not sorted at %d", k);
            return 0;
        }
        for (int32_t m = 0; m < k; m++)
            if (l->top[m].token == l->top[k].token) {
                snprintf(why, why_len, "alternative %d repeated", l->top[k].token);
                return 0;
            }
    }
    if (!(sum <= 1.0 + 1e-6)) {
        snprintf(why, why_len, "alternatives' probabilities sum to %.6f > 1", sum);
        return 0;
    }
    return 1;
}

TEST(logprobs_ar_greedy_matches_reference) {
    fixture f;
    CHECKF(fixture_open(&f) == 0, "cannot open the fixture %s (make fixtures)", f.path);
    vb_token out[N_GEN];
    vb_logprobs lp[N_GEN];
    int32_t n = 0;
    int rc = generate(&f, greedy_params(5), out, lp, &n);
    char why[512] = "";
    double *lsm = rc == VB_OK && n == N_GEN ? reference_logprobs(&f, out, n, why, sizeof why) : NULL;
    double worst = 0.0;
    int ok = lsm && matches_reference(&f, out, lp, n, 5, lsm, &worst, why, sizeof why);
    for (int32_t i = 0; ok && i < n; i++) {
        ok = invariants(&lp[i], why, sizeof why);
        /* greedy: the committed token is the most likely one */
        if (ok && !(lp[i].logprob >= lp[i].top[0].logprob - 1e-6f)) {
            snprintf(why, sizeof why, "token %d: greedy token logprob %.6f below the top %.6f", i, lp[i].logprob,
                     lp[i].top[0].logprob);
            ok = 0;
        }
    }
    free(lsm);
    fixture_close(&f);
    CHECKF(rc == VB_OK && n == N_GEN, "generation failed: %d, %d tokens", rc, n);
    CHECKF(ok, "%s (worst difference %.2e)", why, worst);
}

/* Sampling at temperature 0.9 with a logit_bias: the reported distribution is still the model's
   (raw logits, temperature 1), so the sampled tokens' logprobs match the reference too. */
TEST(logprobs_sampled_report_the_model_distribution) {
    fixture f;
    CHECKF(fixture_open(&f) == 0, "cannot open the fixture %s (make fixtures)", f.path);
    vb_generate_params gp = greedy_params(3);
    gp.sampler.temp = 0.9f;
    gp.sampler.seed = 11;
    vb_logit_bias bias[] = {{70, -4.0f}, {157, 2.5f}};
    gp.sampler.logit_bias = bias;
    gp.sampler.n_logit_bias = 2;
    vb_token out[N_GEN];
    vb_logprobs lp[N_GEN];
    int32_t n = 0;
    int rc = generate(&f, gp, out, lp, &n);
    char why[512] = "";
    double *lsm = rc == VB_OK && n == N_GEN ? reference_logprobs(&f, out, n, why, sizeof why) : NULL;
    double worst = 0.0;
    int ok = lsm && matches_reference(&f, out, lp, n, 3, lsm, &worst, why, sizeof why);
    for (int32_t i = 0; ok && i < n; i++) ok = invariants(&lp[i], why, sizeof why);
    int32_t n_not_top = 0; /* sampling (and the bias) commit tokens other than the most likely */
    for (int32_t i = 0; i < n; i++) n_not_top += lp[i].token != lp[i].top[0].token;
    free(lsm);
    fixture_close(&f);
    CHECKF(rc == VB_OK && n == N_GEN, "generation failed: %d, %d tokens", rc, n);
    CHECKF(ok, "%s (worst difference %.2e)", why, worst);
    CHECKF(n_not_top > 0, "every sampled token was the most likely one: the test samples nothing");
}

/* The other decoders deliver AR's logprobs for AR's greedy tokens: verify (every committed token
   sampled from its verify row) and WeDLM in exact mode (every token checked against, or filled
   from, the AR row); WeDLM free: each token is the most likely of the row it was filled from
   (the mask token aside, which fills never take). */
TEST(logprobs_decoders_agree_with_ar) {
    fixture f;
    CHECKF(fixture_open(&f) == 0, "cannot open the fixture %s (make fixtures)", f.path);
    vb_token ar[N_GEN], out[N_GEN];
    vb_logprobs ar_lp[N_GEN], lp[N_GEN];
    int32_t n_ar = 0, n = 0;
    int rc = generate(&f, greedy_params(4), ar, ar_lp, &n_ar);
    CHECKF(rc == VB_OK && n_ar == N_GEN, "AR generation failed: %d", rc);
    vb_token mask = f.n_vocab - 2; /* the fixture has no mask token: lend one */
    struct {
        const char *name;
        int decoder;
        int32_t draft_max, window;
        bool exact, need_multi;
    } runs[] = {{"verify", VB_DECODER_VERIFY, 4, 0, false, true},
                {"verify adaptive", VB_DECODER_VERIFY, 0, 0, false, false},
                {"wedlm exact", VB_DECODER_WEDLM, 0, 4, true, true},
                {"wedlm exact w8", VB_DECODER_WEDLM, 0, 8, true, true}};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        vb_generate_params gp = greedy_params(4);
        gp.decoder = runs[r].decoder;
        gp.draft_max = runs[r].draft_max;
        gp.window = runs[r].window;
        gp.wedlm_exact = runs[r].exact;
        gp.mask_token = mask;
        gp.tau = 100.0f; /* WeDLM: every mask is filled from its own row, then checked */
        gp.logprobs = lp;
        vb_kv_free_seq(f.ctx, 0);
        vb_generate_stats st;
        rc = vb_generate(f.ctx, PROMPT, N_PROMPT, &gp, out, N_GEN, &n, &st);
        CHECKF(rc == VB_OK && n == N_GEN, "%s: %d, %d tokens (%s)", runs[r].name, rc, n, st.note);
        int64_t n_multi = 0; /* steps that committed more than one token: the decoder did its work */
        for (int k = 2; k < VB_HIST_MAX; k++) n_multi += st.commit_hist[k];
        CHECKF(n_multi > 0 || !runs[r].need_multi, "%s: no step committed two tokens", runs[r].name);
        for (int32_t i = 0; i < n; i++) {
            CHECKF(out[i] == ar[i] && lp[i].token == out[i], "%s: token %d is %d, AR %d", runs[r].name, i, out[i], ar[i]);
            CHECKF(fabsf(lp[i].logprob - ar_lp[i].logprob) <= DECODER_TOL, "%s: token %d logprob %.7f, AR %.7f",
                   runs[r].name, i, lp[i].logprob, ar_lp[i].logprob);
            CHECK_EQ_INT(lp[i].n_top, ar_lp[i].n_top);
            for (int32_t k = 0; k < lp[i].n_top; k++)
                CHECKF(fabsf(lp[i].top[k].logprob - ar_lp[i].top[k].logprob) <= DECODER_TOL,
                       "%s: token %d alternative %d: %.7f, AR %.7f", runs[r].name, i, k, lp[i].top[k].logprob,
                       ar_lp[i].top[k].logprob);
        }
    }

    /* WeDLM free (fills not checked): greedy fills are the row's most likely non-mask token */
    vb_generate_params gp = greedy_params(VB_LOGPROBS_MAX);
    gp.decoder = VB_DECODER_WEDLM;
    gp.window = 4;
    gp.tau = 100.0f; /* every mask qualifies: most tokens come from mask rows */
    gp.mask_token = mask;
    gp.logprobs = lp;
    vb_kv_free_seq(f.ctx, 0);
    rc = vb_generate(f.ctx, PROMPT, N_PROMPT, &gp, out, N_GEN, &n, NULL);
    CHECKF(rc == VB_OK && n == N_GEN, "wedlm: %d, %d tokens", rc, n);
    int32_t differs = 0;
    for (int32_t i = 0; i < n; i++) {
        char why[256];
        CHECKF(lp[i].token == out[i], "wedlm: entry %d names %d, token %d", i, lp[i].token, out[i]);
        CHECKF(invariants(&lp[i], why, sizeof why), "wedlm token %d: %s", i, why);
        const vb_token_logprob *best = lp[i].top[0].token == mask ? &lp[i].top[1] : &lp[i].top[0];
        CHECKF(best->token == out[i] && fabsf(best->logprob - lp[i].logprob) <= 1e-6f,
               "wedlm token %d (%d, %.6f) is not the most likely of its row (%d, %.6f)", i, out[i], lp[i].logprob,
               best->token, best->logprob);
        differs += out[i] != ar[i] || fabsf(lp[i].logprob - ar_lp[i].logprob) > DECODER_TOL;
    }
    fixture_close(&f);
    CHECKF(differs > 0, "free WeDLM reported AR's tokens and logprobs everywhere: the mask rows were not used");
}

/* The scheduler hands out the same values (vb_sched_logprobs) for a request among others, and
   nothing for requests that did not ask; settings out of range are refused. */
TEST(logprobs_scheduler_and_errors) {
    fixture f;
    CHECKF(fixture_open(&f) == 0, "cannot open the fixture %s (make fixtures)", f.path);
    vb_token ar[N_GEN];
    vb_logprobs ar_lp[N_GEN];
    int32_t n_ar = 0;
    int rc = generate(&f, greedy_params(2), ar, ar_lp, &n_ar);
    vb_kv_free_seq(f.ctx, 0);
    CHECKF(rc == VB_OK && n_ar == N_GEN, "AR generation failed: %d", rc);
    vb_sched *s = NULL;
    char err[256];
    CHECKF(vb_sched_init(f.ctx, NULL, &s, err, sizeof err) == VB_OK, "vb_sched_init: %s", err);
    vb_request_params rp = vb_request_default_params();
    rp.n_predict = N_GEN;
    rp.stop_at_eos = false;
    vb_request_id with = 0, without = 0, other = 0;
    vb_token other_prompt[] = {5, 6, 7, 8, 9};
    CHECK(vb_sched_submit(s, other_prompt, 5, &rp, &other) == VB_OK);
    CHECK(vb_sched_submit(s, PROMPT, N_PROMPT, &rp, &without) == VB_OK);
    rp.decoding.n_logprobs = 2;
    CHECK(vb_sched_submit(s, PROMPT, N_PROMPT, &rp, &with) == VB_OK);
    rp.decoding.n_logprobs = VB_LOGPROBS_MAX + 1;
    vb_request_id bad = 0;
    int rc_hi = vb_sched_submit(s, PROMPT, N_PROMPT, &rp, &bad);
    rp.decoding.n_logprobs = -2;
    int rc_lo = vb_sched_submit(s, PROMPT, N_PROMPT, &rp, &bad);
    while (!vb_sched_idle(s)) CHECK(vb_sched_step(s) == VB_OK);
    int32_t n = 0, n_tok = 0;
    const vb_logprobs *lp = vb_sched_logprobs(s, with, &n);
    const vb_token *toks = vb_sched_tokens(s, with, &n_tok);
    const vb_logprobs *none = vb_sched_logprobs(s, without, NULL);
    int same = lp && n == N_GEN && n_tok == N_GEN;
    for (int32_t i = 0; same && i < n; i++)
        same = toks[i] == ar[i] && lp[i].token == ar[i] && fabsf(lp[i].logprob - ar_lp[i].logprob) <= DECODER_TOL &&
               lp[i].n_top == 2 && lp[i].top[1].token == ar_lp[i].top[1].token;
    vb_sched_free(s);
    vb_generate_params gp = greedy_params(VB_LOGPROBS_MAX + 1);
    vb_token out[N_GEN];
    int rc_gen = vb_generate(f.ctx, PROMPT, N_PROMPT, &gp, out, N_GEN, &n, NULL);
    fixture_close(&f);
    CHECKF(same, "the scheduler's logprobs differ from vb_generate's (%d entries)", n);
    CHECK(none == NULL);
    CHECK_EQ_INT(rc_hi, VB_ERR_ARG);
    CHECK_EQ_INT(rc_lo, VB_ERR_ARG);
    CHECK_EQ_INT(rc_gen, VB_ERR_ARG);
}

/* vb_logprobs_compute on hand-made rows against a direct double computation. */
TEST(logprobs_row_edge_cases) {
    enum { N = 37 };
    float row[N];
    for (int i = 0; i < N; i++) row[i] = (float)((i * 7919) % 23) * 0.37f - 3.0f;
    row[5] = row[9] = 9.0f;  /* a tie at the top: the lower id first */
    row[11] = -INFINITY;    /* ruled out */
    row[30] = NAN;          /* counts as -inf */
    double max = -INFINITY, sum = 0.0;
    for (int i = 0; i < N; i++)
        if (!isnan(row[i]) && row[i] > max) max = row[i];
    for (int i = 0; i < N; i++)
        if (!isnan(row[i]) && row[i] > -INFINITY) sum += exp((double)row[i] - max);
    double log_z = max + log(sum);
    vb_logprobs lp;
    vb_logprobs_compute(row, N, 9, VB_LOGPROBS_MAX, &lp);
    CHECK_EQ_INT(lp.token, 9);
    CHECK_EQ_INT(lp.n_top, VB_LOGPROBS_MAX);
    CHECKF(fabs(lp.logprob - (9.0 - log_z)) < 1e-6, "logprob %.8f, expected %.8f", lp.logprob, 9.0 - log_z);
    CHECK_EQ_INT(lp.top[0].token, 5);
    CHECK_EQ_INT(lp.top[1].token, 9);
    double total = 0.0;
    for (int k = 0; k < lp.n_top; k++) {
        vb_token t = lp.top[k].token;
        CHECKF(t != 11 && t != 30, "alternative %d is the -inf / NaN entry %d", k, t);
        CHECKF(fabs(lp.top[k].logprob - ((double)row[t] - log_z)) < 1e-6, "alternative %d (%d): %.8f", k, t,
               lp.top[k].logprob);
        total += exp(lp.top[k].logprob);
        for (int v = 0; v < N; v++) /* nothing left out is likelier */
            if (v != 11 && v != 30 && row[v] > lp.top[lp.n_top - 1].logprob + log_z + 1e-5) {
                int listed = 0;
                for (int m = 0; m < lp.n_top; m++) listed |= lp.top[m].token == v;
                CHECKF(listed, "token %d (%.4f) is likelier than the last alternative but not listed", v, row[v]);
            }
    }
    CHECKF(total < 1.0, "top 20 of 35 finite entries hold all the probability (%.8f)", total);
    vb_logprobs_compute(row, N, 11, 0, &lp);
    CHECKF(lp.n_top == 0 && isinf(lp.logprob) && lp.logprob < 0, "a -inf logit: logprob -inf (%f)", lp.logprob);
    vb_logprobs_compute(row, 3, 1, 5, &lp); /* a vocabulary smaller than asked */
    CHECK_EQ_INT(lp.n_top, 3);
    float none[4] = {-INFINITY, -INFINITY, NAN, -INFINITY};
    vb_logprobs_compute(none, 4, 0, 2, &lp);
    CHECKF(isinf(lp.logprob) && lp.n_top == 2 && isinf(lp.top[0].logprob), "no distribution: -inf everywhere");
}
