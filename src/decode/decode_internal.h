/* decode_internal.h - what the decoders (ar.c, wedlm.c, verify.c) share with the dispatcher
 * and the engine that runs them (src/sched/sched.c; vb_generate in generate.c is that engine
 * with one request): one request's generation state (parameters, sampler, output and history
 * buffers, statistics), the decoder step-machine interface, the commit rule (stop at n_predict /
 * EOS / callback) and test hooks (an observer that sees every batch, overrides of the caps and
 * the cost table). Decoders talk to the backend only through the public API (vb_get_logits,
 * vb_cost_measure's forwards); the engine owns every forward and KV truncation. */
#ifndef VB_DECODE_INTERNAL_H
#define VB_DECODE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vibee.h"

/* Sees each batch just before it is forwarded (kv_len: rows the sequence holds then). */
typedef void (*vb_decode_observer_fn)(const vb_batch *batch, int32_t kv_len, void *user);

/* Test hooks of vb_generate_hooked. */
typedef struct vb_decode_hooks {
    vb_decode_observer_fn observer;      /* optional: sees every forward, prefill included */
    void *observer_user;
    const vb_backend_caps *caps_override; /* optional: decode as if the backend had these caps
                                             (e.g. physical_causality false on sim) */
    const struct vb_cost_table *cost_override; /* optional: use this cost(K) table instead of
                                                  measuring one (adaptive modes) */
} vb_decode_hooks;

typedef struct vb_decode_run vb_decode_run;

/* A decoder as a per-request step machine, driven by the engine (src/sched/sched.c), which packs
 * the rows of every running request into one forward per step. Between steps the request's KV
 * sequence holds kv_len rows: committed tokens hist[0 .. kv_len); a decoder may keep committed
 * tokens out of the KV (AR and verify: the last one, "pending"), never more than it re-forwards
 * itself. */
typedef struct vb_decoder_ops {
    const char *name;
    /* The KV holds hist[0 .. n_hist) and last_logits predicts position n_hist: after the
     * prefill, and again after a re-prefill (preemption). May commit tokens and time forwards
     * of run->seq (vb_cost_measure). May switch run->ops to another decoder. */
    int (*resume)(vb_decode_run *run);
    /* Add this step's rows to run->batch (sequence run->seq, positions from kv_len, batch rows
     * from row0), at most max_rows (>= 1). retry: the rows planned for this step did not fit
     * the KV; they were removed from the batch: plan fewer, or return 0 to give up. Returns the
     * rows added or a negative status. */
    int32_t (*plan)(vb_decode_run *run, int32_t max_rows, bool retry);
    /* After the forward: read the rows' logits (vb_decode_row_logits), commit tokens, set
     * *kv_keep to the KV rows of the sequence to keep (its other rows are scratch). */
    int (*consume)(vb_decode_run *run, int32_t *kv_keep);
    /* Release the decoder state (ok: the request ended without an error). */
    void (*release)(vb_decode_run *run, bool ok);
    /* Optional: the request stops at a full KV; commit the token(s) the decoder already knows
     * without another forward (AR and verify have committed theirs already). */
    void (*at_kv_full)(vb_decode_run *run);
} vb_decoder_ops;

extern const vb_decoder_ops vb_decoder_ar, vb_decoder_wedlm, vb_decoder_verify;

/* The decoder of an enum vb_decoder (NULL if unknown). */
const vb_decoder_ops *vb_decoder_for(int decoder);

struct vb_decode_run {
    vb_context *ctx;
    vb_generate_params params; /* the request's decoder settings (a copy) */
    const vb_model_info *info;
    vb_backend_caps caps;
    vb_generate_stats *stats;
    vb_sampler *sampler;
    vb_seq seq;
    int32_t n_vocab;
    vb_token eos;             /* -1: none (or stop_at_eos false) */

    vb_token *out;            /* [limit] generated tokens */
    int32_t n_out;
    int32_t limit;            /* tokens this request may generate */
    bool done;                /* a stop condition was met */
    bool in_decode;           /* past the prefill (stats.n_rows_decode counts) */

    vb_token *hist;           /* [n_prompt + limit] prompt then generated (repetition penalty,
                                 n-gram lookup) */
    int32_t n_hist;

    vb_batch *batch;          /* the step's batch (shared by every request of the step) */
    int32_t row0;             /* this request's first row in batch */
    int32_t kv_len;           /* KV rows of seq before this step's rows */
    int32_t batch_rows;       /* rows of the whole forward (all requests) */
    double step_t0;           /* when this step's planning began */
    double forward_seconds;   /* the step's forward */
    float *last_logits;       /* [n_vocab] logits of the last committed row (prediction of the
                                 next position), copied out of the context */

    const vb_decoder_ops *ops;
    void *state;              /* the decoder's own state */
    int64_t n_draft_rows;     /* verify: drafted rows forwarded / accepted */
    int64_t n_draft_accepted;
    const struct vb_cost_table *cost_override; /* optional (tests) */
    struct vb_grammar_run *grammar; /* optional: params.grammar over the vocabulary, in the state
                                       after the committed tokens (src/grammar/token_mask.h) */
    float *masked;            /* [n_vocab] with a grammar: logits with disallowed tokens -inf */
    bool grammar_stop;        /* stopped because the grammar's output is complete */
    vb_logprobs *lp;          /* [limit + 1] with params.n_logprobs >= 0: lp[i] for out[i]
                                 (else NULL) */
};

/* Check a request's decoder settings against the model: VB_OK, or a status and why. */
int vb_decode_check_params(const vb_model_info *info, const vb_generate_params *p, char *why,
                           size_t why_len);

/* Logits of row i of this request's rows in the last forward (NULL: none). */
const float *vb_decode_row_logits(vb_decode_run *run, int32_t i);

/* Append a committed token to out/hist, advance the grammar, call on_token, apply the stop
 * rules (n_predict, EOS, callback, grammar complete with nothing allowed but EOS). Returns false
 * when generation must stop (run->done is then true). Precondition: !run->done, and with a
 * grammar the token was sampled by vb_decode_sample in the current state. row: the raw logits
 * row the token was committed from (its log-probabilities go to run->lp[n_out] when the request
 * asked for them); NULL: the caller has written run->lp[run->n_out] itself (or lp is NULL). */
bool vb_decode_commit(vb_decode_run *run, vb_token token, const float *row);

/* The log-probabilities of `token` and the n_top most likely tokens of the raw logits
 * row[n_vocab] (log-softmax in double; logprobs.c). */
void vb_logprobs_compute(const float *row, int32_t n_vocab, vb_token token, int32_t n_top,
                         vb_logprobs *out);

/* Record one decode step that committed k tokens in the histogram. */
void vb_decode_record_step(vb_decode_run *run, int32_t k);

/* Sample from logits with the run's sampler, history = prompt + generated, never `banned`;
 * with a grammar only among the tokens it allows after the committed ones (the logits are
 * copied and masked; the context's are never modified). Returns the token or < 0 (note set). */
vb_token vb_decode_sample(vb_decode_run *run, const float *logits, vb_token banned);

/* Copy the logits of this request's row i of the last forward into run->last_logits. */
/* Set up run->grammar / run->masked from params.grammar (no grammar: nothing). VB_OK or a
 * status with the reason in why. */
int vb_decode_grammar_init(vb_decode_run *run, char *why, size_t why_len);
/* Free what vb_decode_grammar_init made. */
void vb_decode_grammar_free(vb_decode_run *run);

int vb_decode_keep_logits(vb_decode_run *run, int32_t i);

/* vb_cost_measure on the request's sequence after its committed rows; the forwards it runs are
 * counted in stats->n_forward_measure. */
int vb_decode_measure(vb_decode_run *run, int32_t max_rows, struct vb_cost_table *out);

/* Append to the stats note (printf-style, "; "-separated, truncated to fit). */
void vb_decode_note(vb_decode_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prompt lookup (verify.c): drafts continuing hist[n_hist) from the most recent earlier match
 * of its last n tokens, n = n_max down to n_min. Writes at most k_max tokens; returns how many.
 * The one n-gram drafter of the library. */
int32_t vb_verify_ngram_draft(const vb_token *hist, int32_t n_hist, int32_t n_min, int32_t n_max,
                              int32_t k_max, vb_token *draft);

/* vb_generate with test hooks (NULL: none). */
int vb_generate_hooked(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                       const vb_generate_params *params, vb_token *out, int32_t max_out,
                       int32_t *n_out, vb_generate_stats *stats, const vb_decode_hooks *hooks);

#endif
