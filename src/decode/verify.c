/* verify.c - lossless draft-and-verify decoding (DESIGN §4, "lossless relatives").
 *
 * State: the last committed token t is not yet in the KV (as in AR). One step: draft up to k
 * tokens d1..dk, forward [t, d1..dk] at positions L..L+k (L = KV rows); row i predicts position
 * L+i+1. Walk the rows: sample x_i from row i (history = prompt + everything committed so far);
 * if i < k and x_i == d_{i+1}, commit the draft and go on; else commit x_i (the bonus) and stop.
 * Keep the KV rows of t and the accepted drafts, truncate the rest; the bonus is the next t.
 *
 * Lossless: at temperature 0 the sampler is argmax, so every committed token is the greedy
 * token of an exact row: the output equals AR greedy for any model. At temperature > 0 this is
 * speculative sampling with a deterministic draft (q = one-hot at d): accept d with probability
 * p(d), on rejection sample from p restricted to tokens != d; "sample x ~ p, accept iff x == d,
 * else emit x" realises exactly that, so the output distribution equals AR sampling (the random
 * stream differs, so a seeded run does not give the same text as AR).
 *
 * Drafts: n-gram prompt lookup over prompt + generated text (the most recent earlier
 * occurrence of the last n tokens, n = NGRAM_MAX down to ngram_min, proposes what followed it).
 * draft_max = 0: the draft length is chosen per step from cost(K) (measured, then corrected by
 * the timings of this run's own forwards) and the observed acceptance rate; a rate too low for
 * drafting to pay gives k = 0, i.e. plain AR steps; now and then a step drafts one token more
 * than the best choice, to notice when drafting (or drafting more) starts paying.
 *
 * WeDLM-window drafts (draft_max = 0 and the model has a mask token): when prompt lookup finds
 * nothing, the forward also carries m = k + 1 MASK rows after the drafts, at the positions after
 * the bonus token's. If every draft is accepted, those mask rows (which saw the context up to
 * the last draft) propose the next step's drafts (argmax, mask excluded) for the positions after
 * the bonus: the WeDLM window used as a drafter, still verified exactly. Their acceptance rate is
 * tracked apart, and the cost of the extra mask rows is counted when choosing k. */
#include <stdlib.h>
#include <string.h>

#include "decode/cost_model.h"
#include "decode/decode_internal.h"

#define NGRAM_MAX 3
#define ADAPT_MAX_DRAFT 16
#define PROBE_EVERY 8      /* adaptive mode: one draft more than the best every this many steps */
#define ACCEPT_DECAY 0.95  /* forgetting factor of the acceptance statistics */

/* Draft length k in [0, k_max] maximising expected tokens per second when a step with k drafts
 * forwards base_rows + rows_per_draft * k rows (k = 0: a plain AR step of one row); cost(rows)
 * is the measured (or cached) table corrected by this run's own timed forwards. */
static int32_t verify_best_k(const vb_cost_online *vc, double accept_rate, int32_t k_max,
                             int32_t base_rows, int32_t rows_per_draft) {
    int32_t best_k = 0;
    double best_rate = 1.0 / vb_cost_online_seconds(vc, 1);
    for (int32_t k = 1; k <= k_max && base_rows + rows_per_draft * k < VB_COST_TRACKED_ROWS; k++) {
        double rate = vb_cost_expected_tokens(accept_rate, k) /
                      vb_cost_online_seconds(vc, base_rows + rows_per_draft * k);
        if (rate > best_rate * 1.02) { /* prefer the shorter draft unless clearly better */
            best_rate = rate;
            best_k = k;
        }
    }
    return best_k;
}

int32_t vb_verify_ngram_draft(const vb_token *hist, int32_t n_hist, int32_t n_min, int32_t n_max,
                              int32_t k_max, vb_token *draft) {
    if (n_min < 1) n_min = 1;
    for (int32_t n = n_max; n >= n_min; n--) {
        if (n > n_hist - 1) continue;
        const vb_token *suffix = hist + n_hist - n;
        /* candidate starts i: the match hist[i..i+n) must end before the suffix starts */
        for (int32_t i = n_hist - n - 1; i >= 0; i--) {
            if (memcmp(hist + i, suffix, sizeof(vb_token) * (size_t)n) != 0) continue;
            int32_t k = 0;
            while (k < k_max && i + n + k < n_hist) {
                draft[k] = hist[i + n + k];
                k++;
            }
            return k;
        }
    }
    return 0;
}

typedef struct verify_state {
    bool started;
    bool adaptive, learn_costs, use_masks;
    int32_t k_cap, n_min;
    vb_token mask;
    vb_cost_online costs;
    vb_token *draft;      /* [k_cap] this step's drafts */
    vb_token *mask_draft; /* [k_cap] drafts proposed by the previous forward's mask rows */
    int32_t n_mask_draft;
    /* decayed counts of drafted tokens accepted / steps with a rejection, per draft source */
    double accepted_sum, rejected_sum, mask_accepted, mask_rejected;
    int64_t steps;
    /* this step */
    int32_t nd, n_masks;
    bool from_masks;
} verify_state;

static void verify_release(vb_decode_run *run, bool ok) {
    verify_state *v = run->state;
    if (!v) return;
    if (ok && v->learn_costs) vb_cost_online_save(run->ctx, &v->costs);
    free(v->draft);
    free(v->mask_draft);
    free(v);
    run->state = NULL;
}

static int verify_start(vb_decode_run *run) {
    const vb_generate_params *p = &run->params;
    verify_state *v = calloc(1, sizeof *v);
    if (!v) return VB_ERR_NOMEM;
    run->state = v;
    int32_t max_rows = run->batch->capacity;
    v->adaptive = p->draft_max == 0;
    v->k_cap = v->adaptive ? ADAPT_MAX_DRAFT : p->draft_max;
    if (v->k_cap > max_rows - 1) v->k_cap = max_rows - 1;
    v->n_min = p->ngram_min > 0 ? p->ngram_min : 1;
    if (v->n_min > NGRAM_MAX) v->n_min = NGRAM_MAX;
    vb_cost_online_init(&v->costs, run->cost_override);
    if (v->adaptive && v->k_cap > 0 && !run->cost_override) {
        int rc = vb_decode_measure(run, 2 * v->k_cap + 2, &v->costs.table);
        if (rc < 0) return rc;
        if (rc == VB_KV_FULL) v->k_cap = 0;
    }
    v->learn_costs = v->adaptive && !run->cost_override;
    if (p->sampler.temp > 0.0f)
        vb_decode_note(run, "temperature > 0: speculative sampling (AR's distribution, not its "
                            "random stream)");
    v->mask = p->mask_token >= 0 ? p->mask_token : run->info->mask;
    v->use_masks = v->adaptive && v->k_cap > 0 && v->mask >= 0 && v->mask < run->n_vocab &&
                   2 * v->k_cap + 2 <= max_rows;
    v->draft = malloc(sizeof(vb_token) * (size_t)(v->k_cap > 0 ? v->k_cap : 1));
    v->mask_draft = malloc(sizeof(vb_token) * (size_t)(v->k_cap > 0 ? v->k_cap : 1));
    if (!v->draft || !v->mask_draft) return VB_ERR_NOMEM;
    v->started = true;
    return VB_OK;
}

/* The first token (and the first after a re-prefill) comes from last_logits. */
static int verify_resume(vb_decode_run *run) {
    verify_state *v = run->state;
    if (!v || !v->started) {
        int rc = verify_start(run);
        if (rc != VB_OK) return rc;
        v = run->state;
    }
    v->n_mask_draft = 0;
    vb_token pending = vb_decode_sample(run, run->last_logits, -1);
    if (pending < 0) {
        vb_decode_note(run, "sampler failed (%d)", (int)pending);
        return VB_ERR_BACKEND;
    }
    vb_decode_record_step(run, 1);
    vb_decode_commit(run, pending, run->last_logits);
    return VB_OK;
}

/* Rows: [pending, drafts, masks]. A retry (full KV) forwards the pending token alone. */
static int32_t verify_plan(vb_decode_run *run, int32_t max_rows, bool retry) {
    verify_state *v = run->state;
    if (retry) {
        if (v->nd + v->n_masks == 0) return 0;
        v->nd = v->n_masks = 0;
    } else {
        /* choose the draft length and draft */
        int32_t remaining = run->limit - run->n_out; /* tokens still to commit (>= 1) */
        int32_t k_cap = v->k_cap < max_rows - 1 ? v->k_cap : max_rows - 1;
        int32_t k = k_cap;
        if (v->adaptive && k_cap > 0) {
            double a = (v->accepted_sum + 1.0) / (v->accepted_sum + v->rejected_sum + 2.0);
            k = verify_best_k(&v->costs, a, k_cap, 1, 1);
            /* explore one draft longer now and then, so its cost gets observed too */
            if (v->steps % PROBE_EVERY == PROBE_EVERY - 1 && k < k_cap) k++;
        }
        if (k > remaining - 1) k = remaining - 1; /* the bonus token is always one more */
        int32_t nd = k > 0 ? vb_verify_ngram_draft(run->hist, run->n_hist, v->n_min, NGRAM_MAX, k,
                                                   v->draft)
                           : 0;
        v->from_masks = false;
        v->n_masks = 0;
        if (nd == 0 && v->use_masks && 2 * k_cap + 2 <= max_rows) {
            /* window drafts: rows per step = 1 + k drafts + k + 1 masks */
            double a = (v->mask_accepted + 0.6) / (v->mask_accepted + v->mask_rejected + 2.0);
            int32_t km = verify_best_k(&v->costs, a, k_cap, 2, 2);
            if (km > remaining - 1) km = remaining - 1;
            /* drafts carried from the last forward's masks (at least one, so that a probe's
               masks are measured), and new masks when window drafting pays or to probe */
            int32_t use = km > 0 ? km : 1;
            nd = v->n_mask_draft < use ? v->n_mask_draft : use;
            if (nd > remaining - 1) nd = remaining - 1;
            if (nd < 0) nd = 0;
            memcpy(v->draft, v->mask_draft, sizeof(vb_token) * (size_t)nd);
            v->from_masks = true;
            if (km == 0 && v->steps % PROBE_EVERY == PROBE_EVERY - 1 && remaining > 2) km = 1;
            v->n_masks = km > 0 ? km + 1 : 0;
        }
        v->n_mask_draft = 0;
        v->nd = nd;
        if (nd > run->stats->window_used) run->stats->window_used = nd;
    }
    int32_t L = run->kv_len;
    vb_batch_add(run->batch, run->hist[run->n_hist - 1], L, run->seq, true);
    for (int32_t i = 0; i < v->nd; i++)
        vb_batch_add(run->batch, v->draft[i], L + 1 + i, run->seq, true);
    for (int32_t i = 0; i < v->n_masks; i++)
        vb_batch_add(run->batch, v->mask, L + 1 + v->nd + i, run->seq, true);
    return 1 + v->nd + v->n_masks;
}

/* Walk the rows: accept drafts while the sampled token agrees, then the bonus. */
static int verify_consume(vb_decode_run *run, int32_t *kv_keep) {
    verify_state *v = run->state;
    int32_t nd = v->nd;
    if (v->learn_costs) vb_cost_online_observe(&v->costs, run->batch_rows, run->forward_seconds);
    v->steps++;
    int32_t n_accepted = 0, n_commit = 0;
    *kv_keep = run->kv_len + 1;
    for (int32_t i = 0; i <= nd; i++) {
        const float *lg = vb_decode_row_logits(run, i);
        if (!lg) {
            vb_decode_note(run, "backend returned no logits for row %d", (int)i);
            return VB_ERR_BACKEND;
        }
        vb_token x = vb_decode_sample(run, lg, -1);
        if (x < 0) {
            vb_decode_note(run, "sampler failed (%d)", (int)x);
            return VB_ERR_BACKEND;
        }
        bool agrees = i < nd && x == v->draft[i];
        bool go_on = vb_decode_commit(run, x, lg);
        n_commit++;
        if (agrees) n_accepted++;
        if (!agrees || !go_on) break; /* an accepted draft that ended generation is in the KV */
    }
    run->n_draft_rows += nd;
    run->n_draft_accepted += n_accepted;
    vb_decode_record_step(run, n_commit);
    if (v->from_masks) {
        if (nd > 0) {
            v->mask_accepted = v->mask_accepted * ACCEPT_DECAY + n_accepted;
            v->mask_rejected = v->mask_rejected * ACCEPT_DECAY + (n_accepted < nd ? 1.0 : 0.0);
        }
    } else {
        v->accepted_sum = v->accepted_sum * ACCEPT_DECAY + n_accepted;
        v->rejected_sum = v->rejected_sum * ACCEPT_DECAY + (n_accepted < nd ? 1.0 : 0.0);
    }
    /* all drafts accepted: mask rows 2.. (positions after the bonus) draft the next step */
    if (v->n_masks > 1 && n_accepted == nd && !run->done) {
        for (int32_t i = 1; i < v->n_masks; i++) {
            const float *lg = vb_decode_row_logits(run, 1 + nd + i);
            if (!lg) break;
            vb_token best = -1;
            for (int32_t t = 0; t < run->n_vocab; t++)
                if (t != v->mask && (best < 0 || lg[t] > lg[best])) best = t;
            v->mask_draft[v->n_mask_draft++] = best;
        }
    }
    /* rows kept: pending + accepted drafts (the bonus is not in the KV yet) */
    *kv_keep = run->kv_len + 1 + n_accepted;
    return VB_OK;
}

const vb_decoder_ops vb_decoder_verify = {"verify", verify_resume, verify_plan, verify_consume,
                                          verify_release, NULL};
