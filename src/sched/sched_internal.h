/* sched_internal.h - the scheduler's private state (include/vibee_sched.h is the API): requests,
 * sequence slots and the counters behind vb_sched_stats. */
#ifndef VB_SCHED_INTERNAL_H
#define VB_SCHED_INTERNAL_H

#include "vibee.h"
#include "vibee_sched.h"
#include "decode/decode_internal.h"

enum req_state { REQ_WAITING = 0, REQ_RUNNING = 1, REQ_FINISHED = 2 };

typedef struct sched_req {
    vb_request_id id;
    int state;              /* enum req_state */
    int finish;             /* enum vb_finish_reason */
    int rc;                 /* VB_FINISH_ERROR: the status */
    int32_t n_prompt;
    bool ctx_limited;       /* run.limit was cut by the model's context length */
    vb_decode_run run;      /* decoder state; run.hist = prompt + generated tokens,
                               run.out = generated tokens, run.kv_len = n_cached */
    vb_generate_stats stats;
    bool decoding;          /* the prompt (and every committed token the decoder needs) is in
                               the KV and the decoder drives the rows */
    vb_seq seq;             /* slot while running, else -1 */
    int32_t n_cached;       /* rows of run.hist held by the KV sequence */
    int32_t n_polled;       /* generated tokens handed out by vb_sched_poll */
    int32_t batch_first;    /* this step's rows: batch rows batch_first .. +batch_n */
    int32_t batch_n;
} sched_req;

enum slot_kind { SLOT_FREE = 0, SLOT_RUNNING = 1, SLOT_CACHED = 2 };

typedef struct seq_slot {
    int kind;               /* enum slot_kind */
    sched_req *req;         /* SLOT_RUNNING */
    vb_token *toks;         /* SLOT_CACHED: [n] tokens of the cached rows */
    int32_t n;              /* SLOT_CACHED: rows (a multiple of the block size) */
    int64_t lru;            /* SLOT_CACHED: last use */
} seq_slot;

/* How vb_generate runs the engine with one request (vb_sched_init_engine). */
typedef struct vb_engine_opts {
    vb_seq seq_base;          /* slot q is KV sequence seq_base + q */
    bool keep_kv;             /* a finished request leaves its KV as it is, every committed token
                                 forwarded (one more forward without logits if needed), and the
                                 scheduler never frees its sequences */
    bool single;              /* one request: a forward that finds the KV full asks the decoder
                                 for fewer rows before giving up; no prompt-size check */
    const vb_decode_hooks *hooks; /* optional test hooks */
    int32_t n_reuse;          /* single: sequence seq_base already holds the KV of the prompt's
                                 first n_reuse tokens (vb_generate_params.reuse_kv) */
} vb_engine_opts;

int vb_sched_init_engine(vb_context *ctx, const vb_sched_params *params, const vb_engine_opts *opts,
                         vb_sched **out, char *err, size_t err_len);
/* The request's generation state (NULL for an unknown id). */
sched_req *vb_sched_find(const vb_sched *s, vb_request_id id);
/* Queue a request with full decoder settings (gen->n_predict, sampler, stop_at_eos, on_token
   and the decoder's settings are read, gen->seq is not); max_out > 0 caps the tokens generated
   (vb_generate's output buffer). */
int vb_sched_submit_gen(vb_sched *s, const vb_token *prompt, int32_t n_prompt,
                        const vb_generate_params *gen, int32_t max_out, vb_request_id *id);

struct vb_sched {
    vb_context *ctx;
    vb_sched_params p;
    vb_engine_opts o;
    vb_backend_caps caps;
    int32_t n_vocab;
    vb_token eos;
    int32_t n_ctx_train;
    bool paged;             /* the context reports a block pool */
    int32_t block_size;
    seq_slot *slots;        /* [p.n_seq], slot q is KV sequence q */
    sched_req **reqs;       /* [p.max_requests] every request held */
    int32_t n_reqs;
    sched_req **waiting;    /* [p.max_waiting + p.n_seq] FCFS queue (preempted ones at the head) */
    int32_t n_waiting;
    sched_req **running;    /* [p.n_seq] in admission order (the newest is preempted first) */
    int32_t n_running;
    vb_batch *batch;        /* [p.token_budget] rows of one step */
    int32_t reserved;       /* blocks planned by the step being built */
    vb_request_id next_id;
    int64_t clock;          /* LRU clock of cached slots */
    /* counters */
    int64_t n_submitted, n_completed, n_cancelled, n_failed, n_preemptions;
    int64_t n_prefix_hits, n_prefix_tokens, n_steps, n_rows, n_prefill_rows, n_decode_rows;
    int64_t n_generated, n_draft_rows, n_draft_accepted;
    int32_t max_batch_rows;
    double step_seconds;
    double decode_seconds;
    int64_t decode_tokens;
    char err[512];
};

#endif
