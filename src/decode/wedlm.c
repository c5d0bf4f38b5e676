/* wedlm.c - WeDLM streaming parallel decoding (DESIGN §4) over the forward primitive.
 *
 * State: the committed prefix (c rows in the KV) and a window slot[0..n) of logical positions
 * c..c+n-1, each a filled (not yet committed) token or a mask. One step:
 *   1. refill: the nlead filled slots at the front will be committed by this forward; top the
 *      window up with masks to W + nlead slots (fewer near n_predict or the batch limit);
 *   2. reorder physically: filled slots ascending, then masks ascending, each at pos c + j;
 *   3. one forward of the n window rows on top of the cache, logits on the mask rows (and on row
 *      nlead-1, the AR row of the last committed token, always: d0-AR, exact, adaptive, a full KV);
 *   4. commit slot[0..nlead): their rows are physically rows 0..nlead-1 of the batch, after the
 *      committed prefix, so each saw exactly its logical prefix: the KV rows are exact and kept;
 *      every other row is scratch and truncated (vb_kv_truncate to c + nlead);
 *   5. select among the remaining masks by entropy + lambda * distance < tau (wedlm_select),
 *      sample the chosen ones (the mask token banned from the sample, not from the entropy).
 * Filled tokens are never revised (except in exact mode). A slot filled in step s is committed
 * in the first later step in which it belongs to the leading filled run; it is re-run in every
 * step until then (its row in earlier steps saw masks or later-filled slots in front of it, so
 * those rows are scratch).
 *
 * With a grammar (vb_generate_params.grammar) exact mode is forced: a fill at a later position
 * cannot know the grammar state there, so each is checked against the AR row sampled (masked)
 * in the right state when it is committed; the output is then constrained AR's.
 *
 * Exact mode (wedlm_exact): a filled slot is a draft. When it is committed, the row of the token
 * before it (forwarded in the same batch, or last_logits for the first slot) is an exact AR row;
 * the slot is kept only if sampling that row gives the same token (at temperature 0: the argmax),
 * as in draft-and-verify. The first slot that fails is replaced by that sample (committed by the
 * next forward), the slots after it are re-masked and nothing is filled in that step, since every
 * mask row saw the rejected token. Slots filled from an exact AR row (d0-AR) are not re-checked.
 * Greedy output is then AR greedy for any tau; tau only trades forward rows for drafts.
 *
 * Backends without physical causality (llama.cpp masks by position): only a run of masks from
 * the first one may be filled (prefix_only), so the window is always [filled...][masks...] and
 * physical order equals logical order; every step then commits >= 1 token.
 *
 * Log-probabilities (n_logprobs >= 0): a slot's are computed from the row it was filled from
 * and travel with it; in exact mode a slot checked at its commit takes the checking AR row's.
 *
 * window = 0 (adaptive): W is chosen from the measured cost(K) and the observed tokens per step;
 * when a 1-slot window is best, the rest is decoded autoregressively from the last AR row. */
#include "decode/wedlm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode/cost_model.h"
#include "decode/decode_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Pure step logic
 * --------------------------------------------------------------------------------------------- */

int32_t vb_wedlm_leading_filled(const vb_token *slot, int32_t n) {
    int32_t k = 0;
    while (k < n && slot[k] != VB_WEDLM_MASK) k++;
    return k;
}

int32_t vb_wedlm_order(const vb_token *slot, int32_t n, int32_t *order) {
    int32_t n_filled = 0;
    for (int32_t j = 0; j < n; j++)
        if (slot[j] != VB_WEDLM_MASK) order[n_filled++] = j;
    int32_t i = n_filled;
    for (int32_t j = 0; j < n; j++)
        if (slot[j] == VB_WEDLM_MASK) order[i++] = j;
    return n_filled;
}

/* e^d and d * e^d summed over d[i] = x[i] - max for blocks of ENT_LANES entries, in float lanes
 * the compiler vectorizes (portable C, no intrinsics): e^d = 2^k * e^r, d = k ln2 + r, |r| <=
 * ln2 / 2, e^r by its degree-6 Taylor polynomial (relative error ~2e-7); d is clamped at -87
 * (e^-87 ~ 1.6e-38: -inf logits and the far tail add < 1e-34 to the sums). A vocabulary row
 * costs ~1 ns per entry instead of ~5 with libm's exp (the entropy of 16 mask rows of 4096
 * logits was a third of a WeDLM step of the shipped model). */
#define ENT_LANES 16
static void entropy_sums_blocks(const float *x, int32_t n_blocks, float max, double *sum,
                                double *sum_d) {
    float s[ENT_LANES] = {0}, sd[ENT_LANES] = {0};
    for (int32_t b = 0; b < n_blocks; b++, x += ENT_LANES) {
        float d[ENT_LANES], kf[ENT_LANES];
        int32_t k[ENT_LANES];
        union {
            int32_t i;
            float f;
        } scale[ENT_LANES];
        for (int j = 0; j < ENT_LANES; j++) {
            float v = x[j] - max;
            d[j] = v > -87.0f ? v : -87.0f;
        }
        for (int j = 0; j < ENT_LANES; j++) { /* round to nearest by the 1.5 * 2^23 trick */
            kf[j] = (d[j] * 1.44269504f + 12582912.0f) - 12582912.0f;
            k[j] = (int32_t)kf[j];
        }
        for (int j = 0; j < ENT_LANES; j++) scale[j].i = (k[j] + 127) * (1 << 23);
        for (int j = 0; j < ENT_LANES; j++) {
            float r = d[j] - kf[j] * 0.693145752f - kf[j] * 1.42860677e-6f;
            float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f +
                      r * (0.00833333377f + r * 0.00138888892f)))));
            float e = p * scale[j].f;
            s[j] += e;
            sd[j] += e * d[j];
        }
    }
    for (int j = 0; j < ENT_LANES; j++) {
        *sum += s[j];
        *sum_d += sd[j];
    }
}

void vb_wedlm_exp_sums(const float *x, int32_t n, float max, double *sum, double *sum_d) {
    *sum = *sum_d = 0.0;
    int32_t n_blocks = n / ENT_LANES;
    entropy_sums_blocks(x, n_blocks, max, sum, sum_d);
    for (int32_t i = n_blocks * ENT_LANES; i < n; i++) { /* the tail, exactly */
        if (!(x[i] > -INFINITY)) continue;
        double d = (double)x[i] - max;
        double e = exp(d);
        *sum += e;
        *sum_d += e * d;
    }
}

double vb_wedlm_entropy(const float *logits, int32_t n) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(logits[i])) return NAN;
        if (logits[i] > max) max = logits[i];
    }
    if (n <= 0 || isinf(max)) return NAN; /* all -inf, or a +inf logit */
    /* H = log(sum e^d) - sum(e^d * d) / sum(e^d), d = x - max; -inf entries have p = 0 */
    double sum, sum_d;
    vb_wedlm_exp_sums(logits, n, max, &sum, &sum_d);
    double h = log(sum) - sum_d / sum;
    return h > 0.0 ? h : 0.0; /* rounding can give -1e-17 for a one-hot row */
}

int32_t vb_wedlm_select(const vb_wedlm_rule *rule, const int32_t *mask_j, const double *entropy,
                        int32_t n_mask, int8_t *chosen, double *score) {
    if (n_mask <= 0) return 0;
    int32_t n_chosen = 0, best = 0;
    double best_score = INFINITY;
    bool run_open = true; /* prefix_only: still inside the run of qualifying masks from k = 0 */
    for (int32_t k = 0; k < n_mask; k++) {
        double s = entropy[k] + (double)rule->lambda * (double)(mask_j[k] - mask_j[0]);
        if (isnan(s)) s = INFINITY;
        if (score) score[k] = s;
        bool ok = s < (double)rule->tau;
        if (rule->prefix_only) {
            run_open = run_open && ok && mask_j[k] == mask_j[0] + k;
            ok = run_open;
        }
        chosen[k] = ok;
        n_chosen += ok;
        if (s < best_score) {
            best_score = s;
            best = k;
        }
    }
    if (n_chosen == 0) {
        int32_t pick = (rule->leftmost_fallback || rule->prefix_only) ? 0 : best;
        chosen[pick] = 1;
        n_chosen = 1;
    }
    return n_chosen;
}

/* ---------------------------------------------------------------------------------------------
 * The decoder
 * --------------------------------------------------------------------------------------------- */

#define ADAPT_FIRST 4       /* adaptive mode: steps before the first choice of W from data */
#define ADAPT_EVERY 8       /* steps between later choices */
#define ADAPT_MAX_WINDOW 16

typedef struct wedlm_buffers {
    vb_token *slot;   /* [cap] window: token or VB_WEDLM_MASK, logical order */
    int32_t *order;   /* [cap] batch row -> slot index */
    int32_t *mask_j;  /* [cap] window index (after the commit) of each mask row */
    double *entropy;  /* [cap] */
    int8_t *chosen;   /* [cap] */
    int8_t *checked;  /* [cap] exact mode: the slot was sampled from an exact AR row (d0-AR or a
                         correction), so it needs no check */
    vb_logprobs *lp;  /* [cap] with n_logprobs >= 0: each filled slot's log-probabilities, from
                         the row it was filled from (else NULL) */
} wedlm_buffers;

static void buffers_free(wedlm_buffers *b) {
    free(b->slot);
    free(b->order);
    free(b->mask_j);
    free(b->entropy);
    free(b->chosen);
    free(b->checked);
    free(b->lp);
}

static int buffers_alloc(wedlm_buffers *b, int32_t cap, bool logprobs) {
    memset(b, 0, sizeof *b);
    b->slot = malloc(sizeof(vb_token) * (size_t)cap);
    b->order = malloc(sizeof(int32_t) * (size_t)cap);
    b->mask_j = malloc(sizeof(int32_t) * (size_t)cap);
    b->entropy = malloc(sizeof(double) * (size_t)cap);
    b->chosen = malloc((size_t)cap);
    b->checked = calloc((size_t)cap, 1);
    b->lp = logprobs ? malloc(sizeof(vb_logprobs) * (size_t)cap) : NULL;
    if (!b->slot || !b->order || !b->mask_j || !b->entropy || !b->chosen || !b->checked ||
        (logprobs && !b->lp)) {
        buffers_free(b);
        return VB_ERR_NOMEM;
    }
    return VB_OK;
}

/* Tokens per step at window w if each slot after the first fills with probability a. */
static double window_expected_tokens(double a, int32_t w) {
    return vb_cost_expected_tokens(a, w - 1);
}

/* The a for which window_expected_tokens(a, w) equals the observed tokens per step. */
static double fill_rate_from_observed(double tokens_per_step, int32_t w) {
    double lo = 0.0, hi = 0.99;
    for (int it = 0; it < 40; it++) {
        double mid = 0.5 * (lo + hi);
        if (window_expected_tokens(mid, w) < tokens_per_step) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Window 1..w_max maximising expected tokens / cost(rows of a step = W + tokens committed). */
static int32_t best_window(const vb_cost_online *t, double a, int32_t w_max) {
    int32_t best_w = 1;
    double best_rate = 1.0 / vb_cost_online_seconds(t, 1); /* plain AR */
    for (int32_t w = 2; w <= w_max; w++) {
        double e = window_expected_tokens(a, w);
        double rate = e / vb_cost_online_seconds(t, w + (int32_t)lround(e));
        if (rate > best_rate * 1.02) {
            best_rate = rate;
            best_w = w;
        }
    }
    return best_w;
}

typedef struct wedlm_state {
    wedlm_buffers b;
    vb_wedlm_rule rule;
    vb_token mask;
    bool adaptive, learn_costs;
    int32_t W, max_rows;
    int32_t n;               /* slots in the window */
    vb_cost_online costs;    /* adaptive: the measured table, corrected by this run's steps */
    int64_t step, adapt_steps, adapt_tokens, adapt_after;
    double adapt_seconds;    /* wall time of the counted steps (adaptive, timed) */
    /* this step */
    int32_t nlead, n_filled;
} wedlm_state;

static void wedlm_release(vb_decode_run *run, bool ok) {
    (void)ok; /* (whole-step timings are not saved into the context's table: verify reads that
                 table as forward costs) */
    wedlm_state *w = run->state;
    if (!w) return;
    buffers_free(&w->b);
    free(w);
    run->state = NULL;
}

/* Hand the request over to AR from here on (the KV holds every committed token and
   last_logits predicts the next position). */
static int wedlm_switch_to_ar(vb_decode_run *run) {
    wedlm_release(run, true);
    run->ops = &vb_decoder_ar;
    return run->ops->resume(run);
}

static int wedlm_start(vb_decode_run *run) {
    const vb_generate_params *p = &run->params;
    int32_t max_rows = run->batch->capacity;
    if (max_rows < 2) {
        vb_decode_note(run, "WeDLM needs batches of >= 2 rows (backend max_batch %d): decoded AR",
                       (int)max_rows);
        run->ops = &vb_decoder_ar;
        return run->ops->resume(run);
    }
    if (run->limit - run->n_out == 1 && (p->wedlm_d0_ar || p->wedlm_exact)) {
        /* one token left: it is the AR row's token either way; no window forward for it */
        run->ops = &vb_decoder_ar;
        return run->ops->resume(run);
    }
    if (run->grammar && !p->wedlm_exact) {
        /* fills at later positions cannot know the grammar state there: each is checked
           against the AR row sampled (masked) in the right state before it is committed */
        run->params.wedlm_exact = true;
        vb_decode_note(run, "grammar: fills checked (exact mode)");
    }
    if (p->window == 0 && !p->wedlm_exact) {
        /* the window follows measured timings: checked fills keep the text independent of them */
        run->params.wedlm_exact = true;
        vb_decode_note(run, "adaptive window: fills checked (exact mode)");
    }
    wedlm_state *w = calloc(1, sizeof *w);
    if (!w) return VB_ERR_NOMEM;
    run->state = w;
    w->max_rows = max_rows;
    w->mask = p->mask_token >= 0 ? p->mask_token : run->info->mask;
    w->rule = (vb_wedlm_rule){p->tau, p->lambda, p->wedlm_leftmost_fallback, false};
    if (!run->caps.physical_causality) {
        w->rule.prefix_only = true;
        vb_decode_note(run, "backend masks by position: no reordering, leftmost masks only");
    }
    w->adaptive = p->window == 0;
    w->W = w->adaptive ? 2 : p->window;
    vb_cost_online_init(&w->costs, run->cost_override);
    w->learn_costs = w->adaptive && !run->cost_override;
    if (w->adaptive) {
        int rc = VB_OK;
        if (!run->cost_override)
            rc = vb_decode_measure(run, 2 * ADAPT_MAX_WINDOW + 1, &w->costs.table);
        if (rc < 0) return rc;
        /* a prior fill rate of 0.5; if even that cannot beat AR on this machine, decode AR */
        w->W = best_window(&w->costs, 0.5, ADAPT_MAX_WINDOW);
        if (w->W < 2) {
            vb_decode_note(run, "adaptive: AR is faster (measured cost of K-row forwards)");
            run->stats->window_used = 1;
            return wedlm_switch_to_ar(run);
        }
    }
    if (w->W > max_rows / 2) w->W = max_rows / 2;
    run->stats->window_used = w->W;
    int32_t cap = 2 * (w->W > ADAPT_MAX_WINDOW ? w->W : ADAPT_MAX_WINDOW) + 1;
    if (buffers_alloc(&w->b, cap, run->lp != NULL) != VB_OK) return VB_ERR_NOMEM;
    int32_t left = run->limit - run->n_out;
    w->n = left < w->W ? left : w->W;
    for (int32_t j = 0; j < w->n; j++) w->b.slot[j] = VB_WEDLM_MASK;
    w->adapt_after = ADAPT_FIRST;
    return VB_OK;
}

/* The window is kept across a re-prefill; last_logits is the AR row of the last committed
   token again. */
static int wedlm_resume(vb_decode_run *run) {
    if (!run->state) return wedlm_start(run);
    return VB_OK;
}

/* 1. refill; 2. order; 3. the rows. A retry (full KV) halves the window. */
static int32_t wedlm_plan(vb_decode_run *run, int32_t max_rows, bool retry) {
    const vb_generate_params *p = &run->params;
    wedlm_state *w = run->state;
    wedlm_buffers *b = &w->b;
    if (retry) {
        if (w->n <= 1) return 0;
        w->n = (w->n + 1) / 2;
        w->W = w->n;
        run->stats->window_used = w->W;
        w->nlead = vb_wedlm_leading_filled(b->slot, w->n);
    } else {
        w->nlead = vb_wedlm_leading_filled(b->slot, w->n);
        int32_t remaining = run->limit - run->n_out;
        int32_t target = w->W + w->nlead;
        if (target > remaining) target = remaining;
        if (target > max_rows) target = max_rows;
        if (w->n > max_rows) { /* fewer rows this step: the slots past them are dropped */
            w->n = max_rows;
            if (w->nlead > w->n) w->nlead = w->n;
        }
        while (w->n < target) b->slot[w->n++] = VB_WEDLM_MASK;
    }
    w->n_filled = vb_wedlm_order(b->slot, w->n, b->order);
    for (int32_t i = 0; i < w->n; i++) {
        int32_t j = b->order[i];
        bool is_mask = b->slot[j] == VB_WEDLM_MASK;
        /* the AR row of the last committed token is always asked for: d0-AR, exact checks and
           the adaptive mode read it, and at a full KV it gives the token AR would commit */
        bool want = is_mask || i == w->nlead - 1 ||
                    (p->wedlm_exact && i < w->nlead);
        vb_batch_add(run->batch, is_mask ? w->mask : b->slot[j], run->kv_len + j, run->seq, want);
    }
    return w->n;
}

/* 4. commit; 5. select and fill; slide; adaptive choice of W. */
static int wedlm_consume(vb_decode_run *run, int32_t *kv_keep) {
    const vb_generate_params *p = &run->params;
    wedlm_state *w = run->state;
    wedlm_buffers *b = &w->b;
    int32_t c = run->kv_len, nlead = w->nlead, n_filled = w->n_filled;
    int32_t step_rows = w->n;
    *kv_keep = c;

    /* 4. commit the leading filled run; exact mode: slot j only if the AR row before it
       (last_logits for j = 0, row j - 1 otherwise) samples the same token, and on the first
       disagreement that sample replaces slot j and every later slot is re-masked (their rows
       and fills saw the rejected token) */
    int32_t n_commit = 0;
    bool rejected = false;
    while (n_commit < nlead) {
        if (p->wedlm_exact && !b->checked[n_commit]) {
            const float *ar = n_commit == 0 ? run->last_logits
                                            : vb_decode_row_logits(run, n_commit - 1);
            /* as AR samples: nothing banned (a model whose argmax is the mask id gets it) */
            vb_token x = ar ? vb_decode_sample(run, ar, -1) : -1;
            if (x < 0) {
                vb_decode_note(run, "no AR row to check slot %d", (int)n_commit);
                return VB_ERR_BACKEND;
            }
            if (x != b->slot[n_commit]) {
                b->slot[n_commit] = x;
                b->checked[n_commit] = 1;
                if (b->lp) vb_logprobs_compute(ar, run->n_vocab, x, p->n_logprobs, &b->lp[n_commit]);
                w->n = n_commit + 1; /* the refill of the next step adds the masks */
                rejected = true;
                break;
            }
        }
        /* the log-probabilities: of the AR row that just checked the slot, else of the row it
           was filled from (d0-AR and corrections: an AR row too) */
        const float *lp_row = p->wedlm_exact && !b->checked[n_commit]
                                  ? (n_commit == 0 ? run->last_logits
                                                   : vb_decode_row_logits(run, n_commit - 1))
                                  : NULL;
        if (run->lp && !lp_row) run->lp[run->n_out] = b->lp[n_commit];
        bool go_on = vb_decode_commit(run, b->slot[n_commit], lp_row);
        n_commit++;
        if (!go_on) break;
    }
    *kv_keep = c + n_commit;
    /* the AR row of the last committed token, for the next step (not needed when generation
       stopped inside the run: that row may have no logits) */
    if (n_commit > 0 && !run->done) {
        int rc = vb_decode_keep_logits(run, n_commit - 1);
        if (rc != VB_OK) return rc;
    }
    vb_decode_record_step(run, n_commit);
    bool counted = w->step++ > 0; /* the first forward cannot commit anything: not counted */
    if (counted) {
        w->adapt_steps++;
        w->adapt_tokens += n_commit;
    }
    if (run->done) return VB_OK;

    /* 5. select among the masks (window indices after the commit) and sample; after a
       rejection every mask row saw the rejected token: nothing is filled this step */
    int32_t n_mask = rejected ? 0 : w->n - n_filled; /* (n itself shrank on a rejection) */
    for (int32_t k = 0; k < n_mask; k++) {
        int32_t row = n_filled + k;
        b->mask_j[k] = b->order[row] - nlead;
        const float *lg = (p->wedlm_d0_ar && b->mask_j[k] == 0) ? run->last_logits
                                                                : vb_decode_row_logits(run, row);
        if (!lg) {
            vb_decode_note(run, "backend returned no logits for mask row %d", (int)row);
            return VB_ERR_BACKEND;
        }
        b->entropy[k] = vb_wedlm_entropy(lg, run->n_vocab);
    }
    vb_wedlm_select(&w->rule, b->mask_j, b->entropy, n_mask, b->chosen, NULL);
    for (int32_t k = 0; k < n_mask; k++) {
        if (!b->chosen[k]) continue;
        int32_t row = n_filled + k;
        bool from_ar = p->wedlm_d0_ar && b->mask_j[k] == 0;
        const float *lg = from_ar ? run->last_logits : vb_decode_row_logits(run, row);
        /* exact mode: a fill from the AR row is committed unchecked, so it is sampled as AR
           samples (mask id not banned); a draft from a mask row never is the mask id */
        vb_token t = vb_decode_sample(run, lg, from_ar && p->wedlm_exact ? -1 : w->mask);
        if (t < 0) {
            vb_decode_note(run, "sampler failed (%d)", (int)t);
            return VB_ERR_BACKEND;
        }
        b->slot[nlead + b->mask_j[k]] = t;
        b->checked[nlead + b->mask_j[k]] = from_ar;
        if (b->lp) vb_logprobs_compute(lg, run->n_vocab, t, p->n_logprobs, &b->lp[nlead + b->mask_j[k]]);
    }

    /* the window slides by the committed run (the engine truncates the scratch rows) */
    memmove(b->slot, b->slot + n_commit, sizeof(vb_token) * (size_t)(w->n - n_commit));
    memmove(b->checked, b->checked + n_commit, (size_t)(w->n - n_commit));
    if (b->lp) memmove(b->lp, b->lp + n_commit, sizeof(vb_logprobs) * (size_t)(w->n - n_commit));
    w->n -= n_commit;
    if (w->learn_costs) { /* the whole step: forward, checks, entropies, fills */
        double dt = vb_time_now() - run->step_t0;
        vb_cost_online_observe(&w->costs, step_rows, dt);
        if (counted) w->adapt_seconds += dt;
    }

    /* adaptive: re-choose W from the observed tokens per step; W = 1 means AR is best */
    if (w->adaptive && w->adapt_steps >= w->adapt_after) {
        double tps = (double)w->adapt_tokens / (double)w->adapt_steps;
        double a = fill_rate_from_observed(tps, w->W);
        int32_t w_new = best_window(&w->costs, a, ADAPT_MAX_WINDOW);
        if (w_new > w->max_rows / 2) w_new = w->max_rows / 2;
        /* measured, not modelled: if these steps committed tokens more slowly than AR
           forwards run (5% margin: AR's own per-token work is not in cost(1)), try a smaller
           window, down to AR */
        if (w->learn_costs && w->adapt_seconds > 0.0 &&
            (double)w->adapt_tokens / w->adapt_seconds <
                1.05 / vb_cost_online_seconds(&w->costs, 1) &&
            w_new >= w->W)
            w_new = w->W - 1;
        w->adapt_seconds = 0.0;
        w->adapt_steps = w->adapt_tokens = 0;
        w->adapt_after = ADAPT_EVERY;
        if (w_new <= 1) {
            vb_decode_note(run, "adaptive: AR is faster (%.2f tokens/step at W=%d)", tps,
                           (int)w->W);
            run->stats->window_used = 1;
            return wedlm_switch_to_ar(run);
        }
        w->W = w_new;
        run->stats->window_used = w->W;
    }
    return VB_OK;
}

/* At a full KV, commit the token the next step would have committed first, as AR commits its
   last sampled token without a forward: the filled slot 0 (checked, in exact mode), else the
   sample of the AR row of the last committed token (last_logits, always current). */
static void wedlm_at_kv_full(vb_decode_run *run) {
    const vb_generate_params *p = &run->params;
    wedlm_state *w = run->state;
    if (!w || run->done || run->n_out >= run->limit) return;
    vb_token t = -1;
    const float *row = run->last_logits;
    bool slot0 = w->n > 0 && w->b.slot[0] != VB_WEDLM_MASK;
    if (slot0 && (!p->wedlm_exact || w->b.checked[0])) {
        t = w->b.slot[0];
        row = NULL; /* its log-probabilities are those of the row it was filled from */
        if (run->lp) run->lp[run->n_out] = w->b.lp[0];
    } else {
        t = vb_decode_sample(run, run->last_logits, p->wedlm_exact ? -1 : w->mask);
    }
    if (t < 0) return;
    vb_decode_record_step(run, 1);
    vb_decode_commit(run, t, row);
}

const vb_decoder_ops vb_decoder_wedlm = {"wedlm", wedlm_resume, wedlm_plan, wedlm_consume,
                                         wedlm_release, wedlm_at_kv_full};
