/* http_engine.h - the server's engine: ONE thread owns the model, the context and the scheduler
 * (include/vibee_sched.h); HTTP threads hand it jobs (prompt text, limits, sampling) through a
 * bounded queue and read back the generated text. Embedding jobs (token inputs) go through a
 * second queue; the same thread runs them between scheduler steps with vb_embed on a sequence
 * of the context the scheduler does not use (the last one). No JSON here: the HTTP layer (http_server.c,
 * http_api.c) parses requests into srv_job fields and formats the results.
 *
 * Locking: one mutex (engine->mu) guards the queue, every job's output fields and the metrics
 * snapshot; engine->cond is broadcast whenever any job makes progress. */
#ifndef VB_HTTP_ENGINE_H
#define VB_HTTP_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vibee.h"
#include "vibee_sched.h"

#define SRV_MAX_STOP 4

enum srv_job_state {
    SRV_JOB_QUEUED = 0,  /* in the engine's queue */
    SRV_JOB_RUNNING = 1, /* submitted to the scheduler */
    SRV_JOB_DONE = 2,    /* finished (see finish / http_status) */
};

/* The log-probabilities of one generated token whose text is in srv_job.text. */
typedef struct srv_token_lp {
    vb_logprobs v;              /* token, logprob, top alternatives (vb_sched_logprobs) */
    size_t offset;              /* byte offset in text where the token's text starts */
    size_t chars;               /* the same in characters (code points: OpenAI's text_offset) */
} srv_token_lp;

typedef struct srv_job {
    /* input: set by the HTTP thread before srv_engine_submit, then read-only */
    char *prompt;               /* UTF-8 prompt text (chat already templated) */
    size_t prompt_len;
    vb_token *prompt_tokens;    /* [n_prompt_in] owned; when set, used instead of tokenizing prompt */
    int32_t n_prompt_in;
    vb_logit_bias *logit_bias;  /* owned array behind params.sampler.logit_bias (or NULL) */
    vb_grammar *grammar;        /* owned: response_format json_object / json_schema or the
                                   grammar extension (NULL: none); the engine sets
                                   params.decoding.grammar to it */
    vb_request_params params;   /* n_predict = max_tokens, sampler, stop_at_eos */
    char *stop[SRV_MAX_STOP];   /* stop strings (NULL-terminated list, owned) */
    int n_stop;
    uint8_t *prompt_user;       /* [prompt_len] chat: 1 where the byte came from the messages (never
                                   parsed as special tokens); NULL for completions (owned) */
    bool parse_special;         /* completions: recognise special-token text in the prompt */
    bool chat;                  /* stop at the chat template's end-of-turn token too */
    int decoder;                /* enum vb_decoder chosen by the request; -1: the server's */
    double deadline;            /* vb_time_now() limit; the job is cancelled past it */
    int32_t n_logprobs;         /* -1: no log-probabilities; 0..20: alternatives per token */
    /* output: guarded by engine->mu */
    int state;                  /* enum srv_job_state */
    int http_status;            /* 0 while fine; 4xx/5xx when the engine rejected or failed it */
    char error[256];
    const char *finish;         /* "stop", "length", or NULL */
    bool timed_out;
    char *text;                 /* generated text; text_len bytes (NUL-terminated) */
    size_t text_len, text_cap;
    size_t text_stable;         /* bytes that can be sent: a held-back tail may still match a stop string */
    srv_token_lp *lp;           /* [n_lp] with n_logprobs >= 0: every token with text in text (EOS
                                   and the end-of-turn token excluded, tokens cut by a stop string
                                   dropped), in order */
    int32_t n_lp, lp_cap;
    size_t lp_bytes, lp_chars;  /* characters in text[0 .. lp_bytes) (counted as it grows) */
    int32_t n_prompt_tokens;
    int32_t n_generated;
    int decoder_used;           /* enum vb_decoder that ran it */
    int64_t n_forward;          /* forwards that carried its decode rows */
    bool cancel;                /* set by the HTTP thread: the client went away */
    int refs;                   /* HTTP side + engine side; freed at 0 */
    /* engine-private */
    vb_request_id id;
    vb_detok detok;
    size_t stop_max;            /* longest stop string */
    struct srv_job *next;       /* queue link */
} srv_job;

/* One /v1/embeddings request: its inputs already tokenized. The HTTP thread owns it (frees it
   with srv_embed_job_free once done is set); the engine fills the output. */
typedef struct srv_embed_job {
    /* input: set before srv_engine_embed, then read-only */
    int32_t n_inputs;
    vb_token **tokens;          /* [n_inputs] arrays of n_tokens[i] ids (owned) */
    int32_t *n_tokens;          /* [n_inputs] */
    int32_t pooling;            /* enum vb_pooling; vectors are normalised to unit length */
    float *out;                 /* [n_inputs][n_embd], allocated by srv_embed_job_new */
    /* output: guarded by engine->mu */
    bool done;
    int http_status;            /* 0: fine; else 4xx/5xx with error */
    char error[256];
    /* engine-private */
    int32_t n_done;             /* inputs embedded so far (a job waits when the KV pool is full) */
    struct srv_embed_job *next;
} srv_embed_job;

typedef struct srv_metrics {
    int64_t http_requests;      /* requests received (all routes) */
    int64_t http_errors_4xx;
    int64_t http_errors_5xx;
    int64_t jobs_submitted;
    int64_t jobs_completed;
    int64_t jobs_cancelled;     /* client gone or timed out */
    int64_t embed_inputs;       /* embedding inputs computed */
    int64_t embed_waits;        /* engine passes an embedding job spent waiting for KV blocks */
    int32_t queue_len;          /* jobs waiting for the engine thread */
    vb_sched_stats sched;       /* snapshot after the last step */
} srv_metrics;

typedef struct srv_engine {
    vb_model *model;
    vb_context *ctx;
    vb_sched *sched;
    vb_generate_params decoding; /* the server's default decoder and its settings */
    const vb_model_info *info;
    bool chatml;                /* the vocabulary has <|im_start|> / <|im_end|> */
    vb_token im_end;            /* ChatML end-of-turn token or -1 */
    int32_t max_queue;          /* bound of the submit queue */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* progress on any job / new work */
    bool stopping;
    srv_job *queue_head, *queue_tail;
    int32_t queue_len;
    srv_job **active;           /* [max_active] jobs submitted to the scheduler */
    int32_t n_active, max_active;
    srv_metrics metrics;
    srv_embed_job *embed_head, *embed_tail; /* embedding jobs waiting for the engine thread */
    vb_seq embed_seq;           /* the context's sequence for embeddings (not the scheduler's) */
} srv_engine;

/* Take ownership of model + ctx, make the scheduler (draft_max: see vb_sched_params) and start
   the engine thread. The scheduler gets every sequence of ctx but the last (embeddings'), so ctx
   needs at least 2. */
int srv_engine_start(srv_engine *e, vb_model *model, vb_context *ctx, int32_t max_queue,
                     const vb_generate_params *decoding, char *err, size_t err_len);
/* Stop the thread, fail the remaining jobs, free everything. */
void srv_engine_stop(srv_engine *e);

srv_job *srv_job_new(void);
/* Drop one reference (the HTTP side calls it once; the engine once); frees at 0. Takes mu. */
void srv_job_unref(srv_engine *e, srv_job *job);
/* Queue a job (the engine takes its reference). Returns 0, or 503 when the queue is full or the
   engine is stopping. */
int srv_engine_submit(srv_engine *e, srv_job *job);
/* Ask the engine to cancel a job (client disconnected). Takes mu. */
void srv_engine_cancel(srv_engine *e, srv_job *job);
/* A job for n_inputs inputs of n_embd values each (tokens filled in by the caller); NULL when out
   of memory. */
srv_embed_job *srv_embed_job_new(int32_t n_inputs, int32_t n_embd);
void srv_embed_job_free(srv_embed_job *j);
/* Run an embedding job on the engine thread and wait for it (takes mu). Returns 0 (job->done;
   http_status says how it went), or 503 when the engine is stopping. */
int srv_engine_embed(srv_engine *e, srv_embed_job *job);
/* Copy of the metrics (takes mu). */
srv_metrics srv_engine_metrics(srv_engine *e);
/* Count an HTTP request / error (takes mu). */
void srv_engine_count_http(srv_engine *e, int status);

#endif
