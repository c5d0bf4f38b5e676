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
 * draft_max = 0: the draft length is chosen per step from the measured cost(K) and the observed
 * acceptance rate; a rate too low for drafting to pay gives k = 0, i.e. plain AR steps, with a
 * 1-token probe now and then to notice when drafting starts paying. */
#include <stdlib.h>
#include <string.h>

#include "decode/cost_model.h"
#include "decode/decode_internal.h"

#define NGRAM_MAX 3
#define ADAPT_MAX_DRAFT 16
#define PROBE_EVERY 16     /* adaptive mode at k = 0: a 1-token draft every this many steps */
#define ACCEPT_DECAY 0.95  /* forgetting factor of the acceptance statistics */

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

int vb_decode_verify(vb_decode_run *run) {
    const vb_generate_params *p = run->params;
    int32_t max_rows = run->batch->capacity;
    bool adaptive = p->draft_max == 0;
    int32_t k_cap = adaptive ? ADAPT_MAX_DRAFT : p->draft_max;
    if (k_cap > max_rows - 1) k_cap = max_rows - 1;
    int32_t n_min = p->ngram_min > 0 ? p->ngram_min : 1;
    if (n_min > NGRAM_MAX) n_min = NGRAM_MAX;

    vb_cost_table costs;
    memset(&costs, 0, sizeof costs);
    if (adaptive && k_cap > 0) {
        int rc = vb_cost_measure(run->ctx, run->seq, run->hist[run->n_hist - 1], k_cap + 1, &costs);
        if (rc < 0) return rc;
        if (rc == VB_KV_FULL) k_cap = 0;
    }
    vb_token *draft = malloc(sizeof(vb_token) * (size_t)(k_cap > 0 ? k_cap : 1));
    if (!draft) return VB_ERR_NOMEM;

    double accepted_sum = 0.0, rejected_sum = 0.0; /* decayed counts of drafted tokens */
    int64_t steps = 0;
    int rc = VB_OK;

    /* the first token comes from the prefill logits */
    vb_token pending = vb_decode_sample(run, run->last_logits, -1);
    if (pending < 0) {
        free(draft);
        vb_decode_note(run, "sampler failed (%d)", (int)pending);
        return VB_ERR_BACKEND;
    }
    vb_decode_record_step(run, 1);
    bool pending_in_kv = false;
    vb_decode_commit(run, pending);

    while (!run->done) {
        /* choose the draft length and draft */
        int32_t remaining = run->limit - run->n_out; /* tokens still to commit (>= 1) */
        int32_t k = k_cap;
        if (adaptive && k_cap > 0) {
            double a = (accepted_sum + 1.0) / (accepted_sum + rejected_sum + 2.0);
            k = vb_cost_best_draft(&costs, a, k_cap);
            if (k == 0 && steps % PROBE_EVERY == PROBE_EVERY - 1) k = 1;
        }
        if (k > remaining - 1) k = remaining - 1; /* the bonus token is always one more */
        int32_t nd = k > 0 ? vb_verify_ngram_draft(run->hist, run->n_hist, n_min, NGRAM_MAX, k,
                                                   draft)
                           : 0;
        if (nd > run->stats->window_used) run->stats->window_used = nd;

        /* forward [pending, drafts]; a full KV retries without drafts */
        int32_t L = vb_kv_seq_len(run->ctx, run->seq);
        for (;;) {
            vb_batch_clear(run->batch);
            vb_batch_add(run->batch, pending, L, run->seq, true);
            for (int32_t i = 0; i < nd; i++) vb_batch_add(run->batch, draft[i], L + 1 + i, run->seq, true);
            rc = vb_decode_forward(run);
            if (rc != VB_KV_FULL || nd == 0) break;
            nd = 0;
        }
        if (rc != VB_OK) break; /* VB_KV_FULL: pending stays committed, not cached */
        steps++;

        /* walk the rows: accept drafts while the sampled token agrees, then the bonus */
        int32_t n_accepted = 0, n_commit = 0;
        pending_in_kv = true;
        for (int32_t i = 0; i <= nd; i++) {
            const float *lg = vb_get_logits(run->ctx, i);
            if (!lg) {
                rc = VB_ERR_BACKEND;
                vb_decode_note(run, "backend returned no logits for row %d", (int)i);
                goto out;
            }
            vb_token x = vb_decode_sample(run, lg, -1);
            if (x < 0) {
                rc = VB_ERR_BACKEND;
                vb_decode_note(run, "sampler failed (%d)", (int)x);
                goto out;
            }
            bool agrees = i < nd && x == draft[i];
            bool go_on = vb_decode_commit(run, x);
            n_commit++;
            if (agrees) n_accepted++;
            if (!agrees) {
                pending = x;
                pending_in_kv = false;
                break;
            }
            if (!go_on) break; /* an accepted draft ended generation: it is in the KV */
        }
        vb_decode_record_step(run, n_commit);
        accepted_sum = accepted_sum * ACCEPT_DECAY + n_accepted;
        rejected_sum = rejected_sum * ACCEPT_DECAY + (n_accepted < nd ? 1.0 : 0.0);
        /* rows kept: pending + accepted drafts (the bonus is not in the KV yet) */
        vb_kv_truncate(run->ctx, run->seq, L + 1 + n_accepted);
    }
    if (rc == VB_OK && !pending_in_kv) rc = vb_decode_flush(run, pending);
out:
    free(draft);
    return rc;
}
