/* sched_internal.h - the scheduler's private state (include/vibee_sched.h is the API): requests,
 * sequence slots and the counters behind vb_sched_stats. */
#ifndef VB_SCHED_INTERNAL_H
#define VB_SCHED_INTERNAL_H

#include "vibee.h"
#include "vibee_sched.h"

enum req_state { REQ_WAITING = 0, REQ_RUNNING = 1, REQ_FINISHED = 2 };

typedef struct sched_req {
    vb_request_id id;
    int state;              /* enum req_state */
    int finish;             /* enum vb_finish_reason */
    vb_token *toks;         /* [cap] prompt tokens, then generated tokens */
    int32_t n_prompt;
    int32_t n_tok;          /* tokens in toks */
    int32_t cap;            /* n_prompt + n_predict (clamped to the model's context) */
    bool stop_at_eos;
    vb_sampler *sampler;
    vb_seq seq;             /* slot while running, else -1 */
    int32_t n_cached;       /* rows of toks held by the KV sequence */
    int32_t n_polled;       /* generated tokens handed out by vb_sched_poll */
    int32_t batch_first;    /* this step's rows: batch rows batch_first .. +batch_n */
    int32_t batch_n;
    int32_t n_draft;        /* drafted tokens in this step's rows (stored at toks[n_tok ..)) */
} sched_req;

enum slot_kind { SLOT_FREE = 0, SLOT_RUNNING = 1, SLOT_CACHED = 2 };

typedef struct seq_slot {
    int kind;               /* enum slot_kind */
    sched_req *req;         /* SLOT_RUNNING */
    vb_token *toks;         /* SLOT_CACHED: [n] tokens of the cached rows */
    int32_t n;              /* SLOT_CACHED: rows (a multiple of the block size) */
    int64_t lru;            /* SLOT_CACHED: last use */
} seq_slot;

struct vb_sched {
    vb_context *ctx;
    vb_sched_params p;
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
