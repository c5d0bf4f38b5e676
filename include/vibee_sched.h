/* vibee_sched.h - the batch-inference API of libvibee: a continuous-batching scheduler (in the
 * vLLM manner) over one vb_context. Many requests share the context's paged KV block pool; each
 * vb_sched_step runs ONE vb_forward that carries a row for every decoding request plus chunks
 * of pending prompts (chunked prefill under a per-step token budget), then samples the next
 * token of every request whose rows are all cached.
 *
 *   - Requests join (vb_sched_submit) and leave (finish, vb_sched_cancel) between steps.
 *   - Admission is first come, first served, when a sequence slot and the KV blocks for the
 *     request's prompt are free.
 *   - When the pool runs out during decoding, the most recently admitted request is preempted:
 *     its blocks are freed and it waits at the head of the queue, to re-prefill its prompt and
 *     the tokens generated so far (recompute). Tokens already generated are never changed.
 *   - Prefix sharing: a request whose prompt shares whole KV blocks (block_size tokens) with a
 *     running or cached sequence forks that sequence (vb_kv_fork, copy-on-write) and truncates
 *     the fork to the shared whole-block prefix instead of recomputing it.
 *   - Each request has its own decoder (vb_request_params.decoding.decoder): autoregressive
 *     (one sampler per request; greedy by default), WeDLM streaming parallel decoding (its window
 *     rows ride in the same forward as the other requests' rows), or lossless draft-and-verify
 *     (the pending token plus n-gram or WeDLM-window drafts; row i is sampled exactly as AR would
 *     sample it, a draft is kept while it equals the sampled token, rejected rows truncated).
 *     vb_generate is this engine with one request: a request decodes the same tokens here as
 *     there, alone or among others.
 *
 * Ownership and threads: a vb_sched borrows the context (which must outlive it) and owns the
 * sequences 0..n_seq-1 of that context while it lives; do not use those sequences directly. A
 * vb_sched is not thread-safe: one thread calls every function (the HTTP server gives it one
 * engine thread). Status codes are those of vibee.h; errors leave a message in
 * vb_sched_error(). */
#ifndef VIBEE_SCHED_H
#define VIBEE_SCHED_H

#include "vibee.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vb_sched vb_sched;
typedef int64_t vb_request_id; /* > 0; never reused within one scheduler */

typedef struct vb_sched_params {
    int32_t n_seq;           /* sequence slots used (0 = all sequence ids of the context) */
    int32_t token_budget;    /* most batch rows per step (0 = min(256, the backend's max batch)) */
    int32_t max_waiting;     /* bound of the waiting queue (default 256) */
    int32_t max_requests;    /* bound of requests held: waiting + running + finished but not
                                released (default 1024) */
    bool prefix_sharing;     /* fork shared whole-block prefixes (default true; off when the
                                backend cannot fork) */
    bool prefix_cache;       /* keep the whole blocks of finished requests in free sequence slots
                                for later prefix hits; evicted (LRU) when slots or blocks are
                                needed (default true) */
    int32_t draft_max;       /* lossless draft-and-verify for AR requests: up to this many
                                tokens drafted per step by n-gram lookup in the request's own
                                prompt + output, verified in the same forward (0 = off, default;
                                the same as submitting them with decoder VB_DECODER_VERIFY) */
} vb_sched_params;

vb_sched_params vb_sched_default_params(void);

typedef struct vb_request_params {
    int32_t n_predict;          /* most tokens to generate (default 128; >= 1) */
    vb_sampler_params sampler;  /* default: greedy */
    bool stop_at_eos;           /* finish when the model's EOS is generated (default true); the
                                   EOS token is returned as the last token */
    vb_generate_params decoding; /* the decoder and its settings (default AR): decoder, window,
                                   tau, lambda, mask_token, draft_max, ngram_min, wedlm_* and
                                   n_logprobs are read; n_predict, sampler, stop_at_eos come from
                                   the fields above; seq, on_token and logprobs are ignored;
                                   reuse_kv is vb_generate's (VB_ERR_ARG here) */
} vb_request_params;

vb_request_params vb_request_default_params(void);

enum vb_finish_reason {
    VB_FINISH_NONE = 0,      /* still waiting or running */
    VB_FINISH_LENGTH = 1,    /* n_predict tokens generated */
    VB_FINISH_EOS = 2,       /* EOS generated */
    VB_FINISH_CANCELLED = 3, /* vb_sched_cancel */
    VB_FINISH_KV = 4,        /* the KV pool cannot hold the request even alone (tokens so far kept) */
    VB_FINISH_ERROR = 5,     /* backend error (see vb_sched_error) */
};

/* Static name of a finish reason: "", "length", "stop", "cancelled", "kv_full", "error". */
const char *vb_finish_reason_str(int reason);

/* Create a scheduler over ctx (which must outlive it; its sequences 0..n_seq-1 must be empty).
 * Returns VB_OK, VB_ERR_ARG (bad parameter), VB_ERR_STATE (a sequence is not empty),
 * VB_ERR_NOMEM; on failure *out is NULL and err (if not NULL) receives the reason. */
int vb_sched_init(vb_context *ctx, const vb_sched_params *params, vb_sched **out, char *err,
                  size_t err_len);
/* Free the scheduler, its requests, and every KV sequence it used (NULL is ignored). */
void vb_sched_free(vb_sched *s);
/* Last error message ("" if none). Owned by the scheduler. */
const char *vb_sched_error(const vb_sched *s);

/* Queue a request. The prompt (1..capacity tokens, each < n_vocab) is copied. params NULL:
 * defaults. Returns VB_OK and *id; VB_ERR_ARG (bad prompt or parameters; also a prompt longer
 * than the KV pool); VB_ERR_STATE when the waiting queue or the request table is full (soft for
 * a server: try again later); VB_ERR_NOMEM. */
int vb_sched_submit(vb_sched *s, const vb_token *prompt, int32_t n_prompt,
                    const vb_request_params *params, vb_request_id *id);

/* Run one step: admit, preempt if needed, one vb_forward, sample. Returns VB_OK (also when
 * there was nothing to do) or a negative status when the backend failed (the requests of
 * that step then finish with VB_FINISH_ERROR; the scheduler stays usable). */
int vb_sched_step(vb_sched *s);
/* True when no request is waiting or running. */
bool vb_sched_idle(const vb_sched *s);

/* Copy up to max_out tokens generated since the previous poll of this request into out and
 * return their number (0..max_out; call again while it returns max_out), or VB_ERR_ARG for an
 * unknown id. *finish (may be NULL) receives the request's enum vb_finish_reason; once it is
 * not VB_FINISH_NONE and a poll returned 0, every token has been delivered. */
int32_t vb_sched_poll(vb_sched *s, vb_request_id id, vb_token *out, int32_t max_out, int *finish);
/* All tokens generated so far (owned by the scheduler, valid until the next step, cancel or
 * release); *n receives their number. NULL for an unknown id. */
const vb_token *vb_sched_tokens(const vb_sched *s, vb_request_id id, int32_t *n);

/* With decoding.n_logprobs >= 0: the log-probabilities of every token generated so far, entry i
 * for token i of vb_sched_tokens (owned by the scheduler, valid until the next step, cancel or
 * release); *n receives their number. NULL for an unknown id or a request that did not ask. */
const vb_logprobs *vb_sched_logprobs(const vb_sched *s, vb_request_id id, int32_t *n);

/* The request's decoding statistics so far (vb_generate_stats: forwards, rows, tokens per
 * forward, commit histogram, window/draft length used, note). VB_OK or VB_ERR_ARG. */
int vb_sched_request_stats(const vb_sched *s, vb_request_id id, vb_generate_stats *out);

/* Cancel a waiting or running request: its KV sequence is freed now; it finishes with
 * VB_FINISH_CANCELLED (no-op for a finished one). VB_OK or VB_ERR_ARG for an unknown id. */
int vb_sched_cancel(vb_sched *s, vb_request_id id);
/* Forget a request (cancels it first if it is not finished). VB_OK or VB_ERR_ARG. */
int vb_sched_release(vb_sched *s, vb_request_id id);
/* Drop every cached prefix sequence (frees their blocks). */
void vb_sched_clear_cache(vb_sched *s);

typedef struct vb_sched_stats {
    int32_t n_running;          /* requests holding a sequence slot */
    int32_t n_waiting;          /* queued, including preempted ones */
    int32_t n_finished;         /* finished but not released */
    int32_t n_cached_seqs;      /* slots holding a cached prefix of a finished request */
    int64_t n_submitted;
    int64_t n_completed;        /* finished by length or EOS */
    int64_t n_cancelled;
    int64_t n_failed;           /* finished with VB_FINISH_KV or VB_FINISH_ERROR */
    int64_t n_preemptions;
    int64_t n_prefix_hits;      /* admissions that forked a shared prefix */
    int64_t n_prefix_tokens;    /* prompt rows taken from shared blocks instead of computed */
    int64_t n_steps;            /* forwards run */
    int64_t n_rows;             /* batch rows forwarded */
    int64_t n_prefill_rows;     /* rows of prompts (and recomputed tokens) */
    int64_t n_decode_rows;      /* one-row-per-request decode rows */
    int64_t n_generated;        /* tokens sampled */
    int64_t n_draft_rows;       /* drafted tokens forwarded (draft_max > 0) */
    int64_t n_draft_accepted;   /* drafted tokens that equalled the sampled token */
    double step_seconds;        /* wall time inside vb_sched_step */
    double tokens_per_second;   /* n_generated / step_seconds (0 before any step) */
    double decode_seconds;      /* wall time of steps that carried decode rows only */
    int64_t decode_tokens;      /* tokens sampled in those steps */
    double decode_tokens_per_second; /* decode_tokens / decode_seconds: aggregate decode speed */
    int32_t max_batch_rows;     /* largest batch of a step */
    /* KV block pool (from vb_context_stats) */
    int32_t kv_block_size;
    int32_t kv_blocks_total;
    int32_t kv_blocks_used;
    int32_t kv_blocks_free;
    double kv_waste;            /* allocated but empty slots / allocated slots */
    int32_t kv_blocks_cached;   /* blocks held by cached prefix slots (shared ones counted per slot) */
    int32_t kv_blocks_leaked;   /* blocks in use beyond what the scheduler's live sequences can
                                   hold, plus rows held by slots it thinks are free (must be 0) */
} vb_sched_stats;

vb_sched_stats vb_sched_get_stats(const vb_sched *s);

#ifdef __cplusplus
}
#endif
#endif /* VIBEE_SCHED_H */
