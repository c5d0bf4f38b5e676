/* decode_internal.h - what the decoders (ar.c, wedlm.c, verify.c) share with the dispatcher
 * (generate.c): one generation run (context, parameters, sampler, output and history buffers,
 * statistics), the forward wrapper, the commit rule (stop at n_predict / EOS / callback) and
 * test hooks (an observer that sees every batch, overrides of the caps and the cost table).
 * Decoders talk to the backend only through the public API (vb_forward, vb_get_logits,
 * vb_kv_truncate, vb_kv_seq_len). */
#ifndef VB_DECODE_INTERNAL_H
#define VB_DECODE_INTERNAL_H

#include <stdbool.h>
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

typedef struct vb_decode_run {
    vb_context *ctx;
    const vb_generate_params *params;
    const vb_model_info *info;
    vb_backend_caps caps;
    vb_generate_stats *stats;
    vb_sampler *sampler;
    vb_seq seq;
    int32_t n_vocab;
    vb_token eos;             /* -1: none (or stop_at_eos false) */

    vb_token *out;            /* [max_out] caller's buffer of generated tokens */
    int32_t n_out;
    int32_t limit;            /* min(n_predict, max_out) */
    bool done;                /* a stop condition was met */
    bool in_decode;           /* past the prefill (stats.n_rows_decode counts) */

    vb_token *hist;           /* [n_prompt + limit] prompt then generated (repetition penalty,
                                 n-gram lookup) */
    int32_t n_hist;

    vb_batch *batch;          /* [caps.max_batch rows] scratch batch */
    float *last_logits;       /* [n_vocab] logits of the last committed row (prediction of the
                                 next position), copied out of the context */

    vb_decode_observer_fn observer; /* optional (tests) */
    void *observer_user;
    const struct vb_cost_table *cost_override; /* optional (tests) */
} vb_decode_run;

/* Forward of run->batch: counts forwards/rows in the stats, calls the observer first. */
int vb_decode_forward(vb_decode_run *run);

/* Append a committed token to out/hist, call on_token, apply the stop rules. Returns false
 * when generation must stop (run->done is then true). Precondition: !run->done. */
bool vb_decode_commit(vb_decode_run *run, vb_token token);

/* Record one decode step that committed k tokens in the histogram. */
void vb_decode_record_step(vb_decode_run *run, int32_t k);

/* Sample from logits with the run's sampler, history = prompt + generated, never `banned`. */
vb_token vb_decode_sample(vb_decode_run *run, const float *logits, vb_token banned);

/* Copy the logits of batch row i of the last forward into run->last_logits. */
int vb_decode_keep_logits(vb_decode_run *run, int32_t row);

/* Forward one committed token that is not yet in the KV (no logits), so that the sequence
 * holds the prompt and every committed token when vb_generate returns. */
int vb_decode_flush(vb_decode_run *run, vb_token token);

/* Append to the stats note (printf-style, "; "-separated, truncated to fit). */
void vb_decode_note(vb_decode_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The decoders. Entered after the prefill: the sequence holds the prompt and run->last_logits
 * holds the prediction for the first generated position. Return VB_OK, VB_KV_FULL or an error. */
int vb_decode_ar(vb_decode_run *run);
int vb_decode_wedlm(vb_decode_run *run);
int vb_decode_verify(vb_decode_run *run);

/* Prompt lookup (verify.c): drafts continuing hist[n_hist) from the most recent earlier match
 * of its last n tokens, n = n_max down to n_min. Writes at most k_max tokens; returns how many. */
int32_t vb_verify_ngram_draft(const vb_token *hist, int32_t n_hist, int32_t n_min, int32_t n_max,
                              int32_t k_max, vb_token *draft);

/* vb_generate with test hooks (NULL: none). */
int vb_generate_hooked(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                       const vb_generate_params *params, vb_token *out, int32_t max_out,
                       int32_t *n_out, vb_generate_stats *stats, const vb_decode_hooks *hooks);

#endif
