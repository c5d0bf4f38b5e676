/* http_server.c - libmicrohttpd glue of `vibee serve` (see http_server.h): a route table, API
 * key and CORS checks, request bodies accumulated under a size limit (413 also for chunked
 * bodies, after reading them), jobs of the engine thread waited for (non-streaming) or streamed
 * as server-sent events, cancellation of jobs whose client has gone, a reaper thread that
 * closes connections past their request deadline, a request log, graceful shutdown and the
 * chat page at / (tools/vibee/chat_page.html, linked into the binary). */
#include "http_config.h"
#ifdef VB_HAVE_SERVE

#include "http_server.h"
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_api.h"

/* One open connection (the MHD socket context), for the reaper and the log. */
struct srv_conn {
    int fd;
    double deadline;        /* vb_time_now() by which the current request must be received; 0: none */
    bool shut;              /* the reaper shut it down */
    char ip[INET6_ADDRSTRLEN];
    srv_conn *prev, *next;
};

enum route_id { R_PAGE, R_COMPLETIONS, R_CHAT, R_EMBEDDINGS, R_MODELS, R_HEALTH, R_METRICS, R_PROPS, R_TOKENIZE, R_DETOKENIZE };

static const struct route {
    const char *path;
    const char *method; /* the one method it answers (plus OPTIONS for CORS preflight) */
    int id;
    bool open;          /* answered without the API key */
} routes[] = {
    {"/", "GET", R_PAGE, true},           /* the chat page (its requests need the key) */
    {"/index.html", "GET", R_PAGE, true},
    {"/v1/completions", "POST", R_COMPLETIONS, false},
    {"/v1/chat/completions", "POST", R_CHAT, false},
    {"/v1/embeddings", "POST", R_EMBEDDINGS, false},
    {"/v1/models", "GET", R_MODELS, false},
    {"/health", "GET", R_HEALTH, true},
    {"/metrics", "GET", R_METRICS, false},
    {"/props", "GET", R_PROPS, false},
    {"/tokenize", "POST", R_TOKENIZE, false},
    {"/detokenize", "POST", R_DETOKENIZE, false},
};
#define N_ROUTES (int)(sizeof routes / sizeof routes[0])

/* Per request (MHD's con_cls). */
typedef struct conn_state {
    char *body;             /* [body_len] request body */
    size_t body_len, body_cap;
    size_t discarded;       /* bytes dropped once the body went over the limit */
    bool too_big;           /* over --max-body: 413 once the body has been read */
    bool responded;         /* a response was queued at the first call (before the body) */
    bool busy;              /* counted in srv_server.n_busy */
    const struct route *route;
    double t0;
    unsigned status;        /* status sent (for the log) */
    char method[12], path[72], id[48], ip[INET6_ADDRSTRLEN];
    int n_prompt, n_generated;
} conn_state;

/* A request being answered. */
typedef struct rq {
    srv_server *s;
    struct MHD_Connection *c;
    conn_state *cs;
} rq;

/* Past this many bytes of a body already over the limit the connection is closed without an answer. */
#define DISCARD_MAX ((size_t)64 << 20)

/* ---- helpers ---- */

/* True when the peer closed the connection (EOF or error on the socket). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static srv_conn *conn_rec(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Set the connection's request deadline (0: none while a request is being answered). */
static void conn_deadline(srv_server *s, struct MHD_Connection *c, double deadline) {
    srv_conn *r = conn_rec(c);
    if (!r) return;
    pthread_mutex_lock(&s->conn_mu);
    r->deadline = deadline;
    pthread_mutex_unlock(&s->conn_mu);
}

static void timed_wait_100ms(pthread_cond_t *cond, pthread_mutex_t *mu) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cond, mu, &ts);
}

static void add_common_headers(srv_server *s, struct MHD_Response *r) {
    MHD_add_response_header(r, "X-Vibee-Chat-Template", s->chat_template);
    if (s->cfg.cors_origin) MHD_add_response_header(r, "Access-Control-Allow-Origin", s->cfg.cors_origin);
}

/* Queue a response; extra is an optional header pair list {name, value, ..., NULL}. */
static enum MHD_Result reply(rq *q, unsigned status, char *body, const char *type, const char *const *extra) {
    srv_server *s = q->s;
    if (!body) {
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
        if (!body) return MHD_NO;
    }
    srv_engine_count_http(s->engine, (int)status);
    q->cs->status = status;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (type) MHD_add_response_header(r, "Content-Type", type);
    add_common_headers(s, r);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    for (int i = 0; extra && extra[i]; i += 2) MHD_add_response_header(r, extra[i], extra[i + 1]);
    enum MHD_Result ok = MHD_queue_response(q->c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_error_h(rq *q, unsigned status, const char *msg, const char *param,
                                     const char *const *extra) {
    const char *type = status == 401   ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 503 ? "server_busy"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    return reply(q, status, api_error_json(api_public_message(msg), type, param), "application/json", extra);
}

static enum MHD_Result reply_error(rq *q, unsigned status, const char *msg, const char *param) {
    return reply_error_h(q, status, msg, param, NULL);
}

static void next_request_id(srv_server *s, bool chat, char *id, size_t n) {
    pthread_mutex_lock(&s->engine->mu);
    int64_t k = ++s->next_id;
    pthread_mutex_unlock(&s->engine->mu);
    snprintf(id, n, "%s-%lld", chat ? "chatcmpl" : "cmpl", (long long)k);
}

/* The prompt text of a job for echo (malloc'd; token prompts detokenized). */
static char *prompt_text(const vb_model *model, const srv_job *j, size_t *len) {
    if (j->prompt) {
        char *t = malloc(j->prompt_len + 1);
        if (t) memcpy(t, j->prompt, j->prompt_len + 1);
        *len = t ? j->prompt_len : 0;
        return t;
    }
    size_t cap = 64 + (size_t)j->n_prompt_in * 16, n = 0;
    char *t = malloc(cap);
    vb_detok d = {0};
    for (int32_t i = 0; t && i < j->n_prompt_in; i++) {
        char piece[256];
        int w = vb_detok_push(model, &d, j->prompt_tokens[i], piece, sizeof piece);
        if (w <= 0) continue;
        if (n + (size_t)w + 1 > cap) {
            char *u = realloc(t, cap = (cap + (size_t)w) * 2);
            if (!u) {
                free(t);
                t = NULL;
                break;
            }
            t = u;
        }
        memcpy(t + n, piece, (size_t)w);
        n += (size_t)w;
    }
    if (t) t[n] = 0;
    *len = n;
    return t;
}

/* Why a finished job stopped, as reported to the client. */
static const char *finish_reason(const srv_job *j) {
    return j->timed_out ? "timeout" : j->cancel ? "abort" : j->finish ? j->finish : "length";
}

/* ---- /metrics ---- */

static enum MHD_Result send_metrics(rq *q) {
    srv_server *s = q->s;
    srv_metrics m = srv_engine_metrics(s->engine);
    const vb_sched_stats *t = &m.sched;
    pthread_mutex_lock(&s->conn_mu);
    int n_open = s->n_open;
    long long n_reaped = (long long)s->n_reaped;
    pthread_mutex_unlock(&s->conn_mu);
    char *buf = malloc(4096);
    if (!buf) return MHD_NO;
    snprintf(buf, 4096,
             "# TYPE vibee_http_requests_total counter\nvibee_http_requests_total %lld\n"
             "vibee_http_errors_total{class=\"4xx\"} %lld\nvibee_http_errors_total{class=\"5xx\"} %lld\n"
             "vibee_http_connections_open %d\nvibee_http_connections_reaped_total %lld\n"
             "vibee_requests_submitted_total %lld\nvibee_requests_completed_total %lld\n"
             "vibee_requests_cancelled_total %lld\nvibee_requests_running %d\nvibee_requests_waiting %d\n"
             "vibee_queue_length %d\nvibee_tokens_generated_total %lld\nvibee_tokens_per_second %.3f\n"
             "vibee_decode_tokens_per_second %.3f\nvibee_steps_total %lld\nvibee_batch_rows_max %d\n"
             "vibee_preemptions_total %lld\nvibee_prefix_hits_total %lld\nvibee_prefix_tokens_total %lld\n"
             "vibee_kv_block_size %d\nvibee_kv_blocks_total %d\nvibee_kv_blocks_used %d\nvibee_kv_blocks_free %d\n"
             "vibee_kv_blocks_cached %d\nvibee_kv_cached_prefix_seqs %d\nvibee_kv_blocks_leaked %d\n"
             "vibee_kv_waste %.4f\nvibee_draft_rows_total %lld\nvibee_draft_accepted_total %lld\n",
             (long long)m.http_requests, (long long)m.http_errors_4xx, (long long)m.http_errors_5xx, n_open, n_reaped,
             (long long)m.jobs_submitted, (long long)m.jobs_completed, (long long)m.jobs_cancelled, t->n_running,
             t->n_waiting, m.queue_len, (long long)t->n_generated, t->tokens_per_second,
             t->decode_tokens_per_second, (long long)t->n_steps, t->max_batch_rows, (long long)t->n_preemptions,
             (long long)t->n_prefix_hits, (long long)t->n_prefix_tokens, t->kv_block_size, t->kv_blocks_total,
             t->kv_blocks_used, t->kv_blocks_free, t->kv_blocks_cached, t->n_cached_seqs, t->kv_blocks_leaked,
             t->kv_waste, (long long)t->n_draft_rows, (long long)t->n_draft_accepted);
    size_t used = strlen(buf);
    snprintf(buf + used, 4096 - used, "vibee_embedding_inputs_total %lld\nvibee_embedding_waits_total %lld\n",
             (long long)m.embed_inputs, (long long)m.embed_waits);
    return reply(q, 200, buf, "text/plain; version=0.0.4", NULL);
}

static enum MHD_Result send_props(rq *q) {
    srv_server *s = q->s;
    srv_metrics m = srv_engine_metrics(s->engine);
    api_props p = {s->model_name,
                   s->chat_template,
                   s->engine->max_active - s->engine->max_queue,
                   s->engine->info->n_vocab,
                   m.sched.kv_blocks_total * m.sched.kv_block_size,
                   s->cfg.max_tokens,
                   s->cfg.default_tokens,
                   s->cfg.max_body,
                   s->cfg.timeout_s,
                   s->cfg.max_connections,
                   s->cfg.max_connections_per_ip,
                   s->cfg.idle_timeout_s,
                   s->cfg.api_key != NULL};
    return reply(q, 200, api_props_json(&p), "application/json", NULL);
}

/* ---- the chat page ---- */

/* tools/vibee/chat_page.html, linked in by the Makefile (src/embedded_model.S), NUL-terminated. */
extern const char srv_chat_page_data[], srv_chat_page_end[];

/* The page's inline script and style are its own; everything else is refused, and it may talk
   only to this server. no-cache: a browser revalidates, so a new binary's page is seen at once. */
static enum MHD_Result send_chat_page(rq *q) {
    static const char *const headers[] = {
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options", "nosniff",
        "Referrer-Policy", "no-referrer",
        "Cache-Control", "no-cache",
        NULL};
    size_t n = (size_t)(srv_chat_page_end - srv_chat_page_data);
    char *page = malloc(n + 1);
    if (page) {
        memcpy(page, srv_chat_page_data, n);
        page[n] = 0;
    }
    return reply(q, 200, page, "text/html; charset=utf-8", headers);
}

/* ---- streaming ---- */

typedef struct stream_ctx {
    srv_server *s;
    api_request req;
    int fd;
    char id[48];
    long created;
    size_t sent[API_MAX_CHOICES];  /* bytes of job->text turned into chunks */
    bool first[API_MAX_CHOICES];   /* no chunk of this choice yet (chat: role in the delta) */
    bool fin[API_MAX_CHOICES];     /* final chunk of this choice formatted */
    int32_t sent_lp[API_MAX_CHOICES]; /* entries of job->lp sent (logprobs) */
    int n_fin;
    bool ended;                    /* [DONE] formatted */
    conn_state *cs;
    char *out;                     /* pending SSE bytes */
    size_t out_len, out_off, out_cap;
} stream_ctx;

static void out_add(stream_ctx *x, const char *s, size_t n) {
    if (x->out_len + n > x->out_cap) {
        size_t cap = (x->out_cap ? x->out_cap * 2 : 1024) + n;
        char *t = realloc(x->out, cap);
        if (!t) return;
        x->out = t;
        x->out_cap = cap;
    }
    memcpy(x->out + x->out_len, s, n);
    x->out_len += n;
}

static void out_event(stream_ctx *x, char *json) {
    if (!json) return;
    out_add(x, "data: ", 6);
    out_add(x, json, strlen(json));
    out_add(x, "\n\n", 2);
    free(json);
}

static void cancel_jobs(srv_engine *e, api_request *req) { /* mu held */
    for (int32_t k = 0; k < req->n_jobs; k++)
        if (req->jobs[k]->state != SRV_JOB_DONE) req->jobs[k]->cancel = true;
    pthread_cond_broadcast(&e->cond);
}

/* Usage over the jobs (mu held): prompt tokens once per prompt, generated tokens of every choice. */
static void usage(const api_request *req, int *n_prompt, int *n_generated) {
    *n_prompt = *n_generated = 0;
    for (int32_t k = 0; k < req->n_jobs; k++) {
        if (k % req->n == 0) *n_prompt += req->jobs[k]->n_prompt_tokens;
        *n_generated += req->jobs[k]->n_generated;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *x = cls;
    srv_engine *e = x->s->engine;
    api_request *req = &x->req;
    const char *model = x->s->model_name;
    if (x->out_off == x->out_len) {
        x->out_len = x->out_off = 0;
        if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        char *delta[API_MAX_CHOICES] = {0};
        size_t n_delta[API_MAX_CHOICES] = {0};
        const char *finish[API_MAX_CHOICES] = {0};
        srv_token_lp *lps[API_MAX_CHOICES] = {0}; /* log-probabilities of this round's tokens */
        int32_t n_lps[API_MAX_CHOICES] = {0};
        char error[API_MAX_CHOICES][256];
        pthread_mutex_lock(&e->mu);
        for (;;) {
            bool ready = false;
            for (int32_t k = 0; k < req->n_jobs && !ready; k++) { /* with tools, text a call may start in waits */
                srv_job *j = req->jobs[k];
                ready = !x->fin[k] && (api_tool_content_len(req, j->text, j->text_stable) > x->sent[k] ||
                                       j->state == SRV_JOB_DONE);
            }
            if (ready) break;
            if (x->s->stopping) cancel_jobs(e, req); /* grace over: end with finish_reason "abort" */
            timed_wait_100ms(&e->cond, &e->mu);
            if (client_gone(x->fd)) {
                cancel_jobs(e, req);
                pthread_mutex_unlock(&e->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        char *calls[API_MAX_CHOICES] = {0}; /* tool calls of a finished choice */
        for (int32_t k = 0; k < req->n_jobs; k++) {
            srv_job *j = req->jobs[k];
            if (x->fin[k]) continue;
            size_t upto = j->text_stable;
            if (req->tool_format && j->state == SRV_JOB_DONE && !j->http_status)
                calls[k] = api_tool_calls(req, j->text, j->text_stable, !strcmp(finish_reason(j), "length"), &upto);
            else
                upto = api_tool_content_len(req, j->text, j->text_stable);
            size_t n = upto > x->sent[k] ? upto - x->sent[k] : 0;
            if (n && (delta[k] = malloc(n))) {
                memcpy(delta[k], j->text + x->sent[k], n);
                n_delta[k] = n;
            }
            x->sent[k] += n;
            bool ends = j->state == SRV_JOB_DONE && (x->sent[k] >= j->text_stable || calls[k]);
            /* the tokens whose text starts in what was sent (at the end: all the rest, but not
               those of tool calls, which are not content) */
            int32_t lp_upto = x->sent_lp[k];
            while (lp_upto < j->n_lp && ((ends && !calls[k]) || j->lp[lp_upto].offset < x->sent[k])) lp_upto++;
            if (lp_upto > x->sent_lp[k] && (lps[k] = malloc((size_t)(lp_upto - x->sent_lp[k]) * sizeof *lps[k]))) {
                n_lps[k] = lp_upto - x->sent_lp[k];
                memcpy(lps[k], j->lp + x->sent_lp[k], (size_t)n_lps[k] * sizeof *lps[k]);
            }
            x->sent_lp[k] = lp_upto;
            if (ends) {
                finish[k] = j->http_status ? NULL
                          : calls[k] && strcmp(finish_reason(j), "length") ? "tool_calls" : finish_reason(j);
                snprintf(error[k], sizeof error[k], "%s", j->http_status ? j->error : "");
                x->fin[k] = true;
                x->n_fin++;
            }
        }
        bool all = x->n_fin == req->n_jobs;
        int n_prompt = 0, n_generated = 0;
        if (all) usage(req, &n_prompt, &n_generated);
        pthread_mutex_unlock(&e->mu);
        for (int32_t k = 0; k < req->n_jobs; k++) {
            bool had_delta = delta[k] != NULL;
            if (delta[k]) {
                char *ch = api_chunk_json(req->chat, x->id, x->created, model, k, delta[k], n_delta[k], NULL,
                                          x->first[k]);
                if (lps[k]) ch = api_add_logprobs(ch, req->chat, e->model, k, lps[k], n_lps[k], 0);
                out_event(x, ch);
                x->first[k] = false;
                free(delta[k]);
            }
            if (calls[k]) { /* each call whole, in one delta */
                out_event(x, api_tool_calls_chunk_json(x->id, x->created, model, k, calls[k], x->first[k]));
                x->first[k] = false;
                free(calls[k]);
            }
            if (finish[k]) {
                char *ch = api_chunk_json(req->chat, x->id, x->created, model, k, "", 0, finish[k], x->first[k]);
                if (lps[k] && !had_delta) ch = api_add_logprobs(ch, req->chat, e->model, k, lps[k], n_lps[k], 0);
                out_event(x, ch);
                x->first[k] = false;
            } else if (x->fin[k] && error[k][0]) {
                out_event(x, api_error_json(api_public_message(error[k]), "server_error", NULL));
                error[k][0] = 0;
            }
            free(lps[k]);
        }
        if (all) {
            if (req->include_usage)
                out_event(x, api_usage_chunk_json(req->chat, x->id, x->created, model, n_prompt, n_generated));
            out_add(x, "data: [DONE]\n\n", 14);
            x->ended = true;
            x->cs->n_prompt = n_prompt;
            x->cs->n_generated = n_generated;
        }
        if (x->out_len == 0) return x->ended ? MHD_CONTENT_READER_END_OF_STREAM : 0;
    }
    size_t n = x->out_len - x->out_off;
    if (n > max) n = max;
    memcpy(buf, x->out + x->out_off, n);
    x->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *x = cls;
    srv_engine *e = x->s->engine;
    pthread_mutex_lock(&e->mu);
    cancel_jobs(e, &x->req); /* no-op for finished jobs */
    pthread_mutex_unlock(&e->mu);
    api_request_free(e, &x->req);
    free(x->out);
    free(x);
}

/* ---- completions ---- */

static enum MHD_Result handle_completion(rq *q, bool chat) {
    srv_server *s = q->s;
    srv_engine *e = s->engine;
    conn_state *cs = q->cs;
    api_limits lim = {s->cfg.max_tokens, s->cfg.default_tokens, e->chatml, e->info->n_vocab};
    api_request req;
    char err[320];
    const char *param = NULL;
    int st = api_parse_request(cs->body ? cs->body : "", cs->body_len, chat, &lim, &req, err, sizeof err, &param);
    if (st) {
        api_request_free(e, &req);
        return reply_error(q, (unsigned)st, err, param);
    }
    double deadline = vb_time_now() + s->cfg.timeout_s;
    for (int32_t k = 0; k < req.n_jobs; k++) {
        req.jobs[k]->deadline = deadline;
        if (srv_engine_submit(e, req.jobs[k]) != 0) {
            pthread_mutex_lock(&e->mu);
            cancel_jobs(e, &req); /* those submitted so far */
            pthread_mutex_unlock(&e->mu);
            api_request_free(e, &req);
            return reply_error(q, 503, "server busy: the request queue is full, retry later", NULL);
        }
    }
    int fd = conn_fd(q->c);
    next_request_id(s, chat, cs->id, sizeof cs->id);
    long created = (long)time(NULL);
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)req.seed);
    const char *seed_header[] = {"X-Vibee-Seed", seed, NULL};
    pthread_mutex_lock(&e->mu);
    cs->busy = true;
    s->n_busy++;
    if (!req.stream) {
        bool all_done = false;
        while (!all_done) {
            all_done = true;
            for (int32_t k = 0; k < req.n_jobs; k++) all_done = all_done && req.jobs[k]->state == SRV_JOB_DONE;
            if (all_done) break;
            if (s->stopping) cancel_jobs(e, &req); /* grace over: answer with the text so far */
            timed_wait_100ms(&e->cond, &e->mu);
            if (client_gone(fd)) {
                cancel_jobs(e, &req);
                pthread_mutex_unlock(&e->mu);
                api_request_free(e, &req);
                return MHD_NO; /* the client is gone: close */
            }
        }
        unsigned status = 200;
        char msg[300] = "";
        api_choice choices[API_MAX_CHOICES];
        char *echo[API_MAX_CHOICES] = {0};
        for (int32_t k = 0; k < req.n_jobs; k++) {
            srv_job *j = req.jobs[k];
            if (j->http_status && status == 200) {
                status = (unsigned)j->http_status;
                snprintf(msg, sizeof msg, "%s", j->error);
            }
            choices[k] = (api_choice){j->text ? j->text : "", j->text_len, finish_reason(j), NULL};
        }
        usage(&req, &cs->n_prompt, &cs->n_generated);
        pthread_mutex_unlock(&e->mu); /* jobs are done: their fields no longer change */
        char *calls[API_MAX_CHOICES] = {0}; /* tool calls; the text before them stays content */
        for (int32_t k = 0; k < req.n_jobs && status == 200 && req.tool_format; k++)
            if ((calls[k] = api_tool_calls(&req, choices[k].text, choices[k].text_len, !strcmp(choices[k].finish, "length"),
                                           &choices[k].text_len)))
                choices[k].tool_calls = calls[k];
        char *body = NULL;
        if (status == 200) {
            for (int32_t k = 0; k < req.n_jobs && req.echo; k++) {
                size_t pl;
                char *p = prompt_text(e->model, req.jobs[k], &pl);
                echo[k] = p ? realloc(p, pl + choices[k].text_len + 1) : NULL;
                if (!echo[k]) {
                    free(p);
                    status = 500;
                    snprintf(msg, sizeof msg, "out of memory");
                    break;
                }
                memcpy(echo[k] + pl, choices[k].text, choices[k].text_len);
                echo[k][pl + choices[k].text_len] = 0;
                choices[k].text = echo[k];
                choices[k].text_len += pl;
            }
        }
        if (status == 200) {
            body = api_result_json(chat, cs->id, created, s->model_name, choices, req.n_jobs, cs->n_prompt,
                                   cs->n_generated, req.seed);
            for (int32_t k = 0; k < req.n_jobs && req.n_logprobs >= 0; k++) {
                int32_t n_lp = req.jobs[k]->n_lp; /* with tool calls: the content's tokens only */
                while (calls[k] && n_lp > 0 && req.jobs[k]->lp[n_lp - 1].offset >= choices[k].text_len) n_lp--;
                body = api_add_logprobs(body, chat, e->model, k, req.jobs[k]->lp, n_lp, 0);
            }
            long long n_forward = 0; /* the jobs are done: these fields no longer change */
            for (int32_t k = 0; k < req.n_jobs; k++) n_forward += req.jobs[k]->n_forward;
            if (body)
                body = api_add_decoding(body, cli_decoder_name(req.jobs[0]->decoder_used), n_forward,
                                        cs->n_generated);
        }
        for (int32_t k = 0; k < req.n_jobs; k++) free(echo[k]), free(calls[k]);
        api_request_free(e, &req);
        if (status != 200) return reply_error(q, status, msg, NULL);
        return reply(q, 200, body, "application/json", seed_header);
    }
    pthread_mutex_unlock(&e->mu);
    stream_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        pthread_mutex_lock(&e->mu);
        cancel_jobs(e, &req);
        pthread_mutex_unlock(&e->mu);
        api_request_free(e, &req);
        return reply_error(q, 500, "out of memory", NULL);
    }
    x->s = s;
    x->req = req;
    x->fd = fd;
    x->cs = cs;
    x->created = created;
    snprintf(x->id, sizeof x->id, "%s", cs->id);
    for (int32_t k = 0; k < req.n_jobs; k++) {
        x->first[k] = true;
        if (req.echo) { /* the prompt opens each choice */
            size_t pl;
            char *p = prompt_text(e->model, req.jobs[k], &pl);
            if (p && pl) {
                out_event(x, api_chunk_json(chat, x->id, created, s->model_name, k, p, pl, NULL, true));
                x->first[k] = false;
            }
            free(p);
        }
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, x, stream_free);
    if (!r) {
        stream_free(x);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Vibee-Seed", seed);
    add_common_headers(s, r);
    srv_engine_count_http(e, 200);
    cs->status = 200;
    enum MHD_Result ok = MHD_queue_response(q->c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- embeddings ---- */

/* /v1/embeddings: parse and tokenize here, embed on the engine thread (serialized with the
   scheduler's steps), answer when all inputs are done. */
static enum MHD_Result handle_embeddings(rq *q) {
    srv_server *s = q->s;
    srv_engine *e = s->engine;
    conn_state *cs = q->cs;
    srv_embed_job *job = NULL;
    bool base64 = false;
    char err[320];
    const char *param = NULL;
    int st = api_parse_embeddings(e->model, s->cfg.pooling, cs->body ? cs->body : "", cs->body_len, &job, &base64, err,
                                  sizeof err, &param);
    if (st) return reply_error(q, (unsigned)st, err, param);
    pthread_mutex_lock(&e->mu);
    cs->busy = true; /* graceful shutdown waits for it */
    s->n_busy++;
    pthread_mutex_unlock(&e->mu);
    st = srv_engine_embed(e, job); /* job->done afterwards: its fields no longer change */
    char *body = NULL;
    if (st) snprintf(err, sizeof err, "server shutting down");
    else if (job->http_status) {
        st = job->http_status;
        snprintf(err, sizeof err, "%s", job->error);
    } else {
        for (int32_t k = 0; k < job->n_inputs; k++) cs->n_prompt += job->n_tokens[k];
        body = api_embeddings_json(job, e->info->n_embd, base64, s->model_name);
    }
    srv_embed_job_free(job);
    if (st) return reply_error(q, (unsigned)st, err, st == 400 ? "input" : NULL);
    return reply(q, 200, body, "application/json", NULL);
}

/* ---- dispatch ---- */

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static bool authorized(srv_server *s, struct MHD_Connection *c) {
    if (!s->cfg.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t n = strlen(h), m = strlen(s->cfg.api_key);
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(h[i] ^ s->cfg.api_key[i % (m ? m : 1)]);
    return diff == 0;
}

static enum MHD_Result first_call(rq *q, const char *url, const char *method) {
    srv_server *s = q->s;
    conn_state *cs = q->cs;
    const struct route *rt = NULL;
    for (int i = 0; i < N_ROUTES && !rt; i++)
        if (!strcmp(url, routes[i].path)) rt = &routes[i];
    cs->route = rt;
    if (!rt) {
        char msg[400];
        snprintf(msg, sizeof msg, "unknown route %.64s %.64s (routes: GET /, POST /v1/completions, POST /v1/chat/completions, "
                 "POST /v1/embeddings, GET /v1/models, GET /health, GET /metrics, GET /props, POST /tokenize, POST /detokenize)", method, url);
        cs->responded = true;
        return reply_error(q, 404, msg, NULL);
    }
    char allow[32];
    snprintf(allow, sizeof allow, "%s, OPTIONS", rt->method);
    if (!strcmp(method, "OPTIONS")) { /* CORS preflight */
        const char *req_headers = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
        const char *cors[] = {"Allow", allow,
                              "Access-Control-Allow-Methods", allow,
                              "Access-Control-Allow-Headers", req_headers ? req_headers : "Authorization, Content-Type",
                              "Access-Control-Max-Age", "86400",
                              NULL};
        const char *plain[] = {"Allow", allow, NULL};
        cs->responded = true;
        return reply(q, 204, strdup(""), NULL, s->cfg.cors_origin ? cors : plain);
    }
    if (strcmp(method, rt->method) != 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "use %s for this route", rt->method);
        const char *extra[] = {"Allow", allow, NULL};
        cs->responded = true;
        return reply_error_h(q, 405, msg, NULL, extra);
    }
    if (!rt->open && !authorized(s, q->c)) {
        const char *extra[] = {"WWW-Authenticate", "Bearer", NULL};
        cs->responded = true;
        return reply_error_h(q, 401, "missing or wrong API key: send 'Authorization: Bearer KEY'", NULL, extra);
    }
    pthread_mutex_lock(&s->engine->mu);
    bool draining = s->draining;
    pthread_mutex_unlock(&s->engine->mu);
    if (draining && rt->id != R_HEALTH && rt->id != R_METRICS) {
        const char *extra[] = {"Connection", "close", NULL};
        cs->responded = true;
        return reply_error_h(q, 503, "server shutting down", NULL, extra);
    }
    const char *cl = MHD_lookup_connection_value(q->c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body larger than the server limit of %zu bytes", s->cfg.max_body);
        cs->responded = true;
        return reply_error(q, 413, msg, NULL);
    }
    return MHD_YES; /* no response yet: libmicrohttpd sends "100 Continue" when the client expects it */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)version;
    srv_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) { /* the headers are in */
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        cs->t0 = vb_time_now();
        snprintf(cs->method, sizeof cs->method, "%s", method);
        snprintf(cs->path, sizeof cs->path, "%s", url);
        srv_conn *r = conn_rec(c);
        snprintf(cs->ip, sizeof cs->ip, "%s", r ? r->ip : "?");
        rq q = {s, c, cs};
        return first_call(&q, url, method);
    }
    if (*upload_size) {
        if (!cs->responded && !cs->too_big && cs->body_len + *upload_size > s->cfg.max_body) {
            cs->too_big = true; /* a chunked body: read it to the end, then answer 413 */
            free(cs->body);
            cs->body = NULL;
            cs->body_len = cs->body_cap = 0;
        }
        if (cs->too_big) {
            cs->discarded += *upload_size;
            if (cs->discarded > DISCARD_MAX) return MHD_NO;
        } else if (!cs->responded) {
            if (cs->body_len + *upload_size + 1 > cs->body_cap) {
                size_t cap = (cs->body_len + *upload_size + 1) * 2;
                char *t = realloc(cs->body, cap);
                if (!t) return MHD_NO;
                cs->body = t;
                cs->body_cap = cap;
            }
            memcpy(cs->body + cs->body_len, upload_data, *upload_size);
            cs->body_len += *upload_size;
            cs->body[cs->body_len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->responded) return MHD_YES;
    conn_deadline(s, c, 0); /* the whole request is in: no deadline while it is answered */
    rq q = {s, c, cs};
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body larger than the server limit of %zu bytes", s->cfg.max_body);
        return reply_error(&q, 413, msg, NULL);
    }
    const char *body = cs->body ? cs->body : "";
    char *out = NULL;
    int st;
    switch (cs->route->id) {
    case R_PAGE: return send_chat_page(&q);
    case R_COMPLETIONS: return handle_completion(&q, false);
    case R_CHAT: return handle_completion(&q, true);
    case R_EMBEDDINGS: return handle_embeddings(&q);
    case R_HEALTH: return reply(&q, 200, strdup("{\"status\":\"ok\"}"), "application/json", NULL);
    case R_METRICS: return send_metrics(&q);
    case R_PROPS: return send_props(&q);
    case R_MODELS: return reply(&q, 200, api_models_json(s->model_name, s->chat_template), "application/json", NULL);
    case R_TOKENIZE:
        st = api_tokenize(s->engine->model, body, cs->body_len, &out);
        return reply(&q, (unsigned)st, out, "application/json", NULL);
    case R_DETOKENIZE:
        st = api_detokenize(s->engine->model, body, cs->body_len, &out);
        return reply(&q, (unsigned)st, out, "application/json", NULL);
    }
    return MHD_NO;
}

/* A request ended (answered, or the connection closed): log it, then give the connection a
   fresh deadline for its next request. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    srv_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    if (s->cfg.log_requests) {
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        char extra[128] = "";
        if (cs->id[0])
            snprintf(extra, sizeof extra, " id=%s prompt_tokens=%d completion_tokens=%d", cs->id, cs->n_prompt,
                     cs->n_generated);
        fprintf(stderr, "vibee serve: %s %s \"%s %s\" %u %.1f ms%s%s\n", when, cs->ip, cs->method, cs->path,
                cs->status, (vb_time_now() - cs->t0) * 1e3, extra,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    }
    if (cs->busy) {
        pthread_mutex_lock(&s->engine->mu);
        s->n_busy--;
        pthread_mutex_unlock(&s->engine->mu);
    }
    conn_deadline(s, c, vb_time_now() + s->cfg.idle_timeout_s);
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* Track connections for the reaper: opened with a deadline for their first request. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    srv_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_conn *r = calloc(1, sizeof *r);
        if (!r) return;
        r->fd = conn_fd(c);
        r->deadline = vb_time_now() + s->cfg.idle_timeout_s;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;
        snprintf(r->ip, sizeof r->ip, "?");
        if (sa && sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->ip, sizeof r->ip);
        else if (sa && sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->ip, sizeof r->ip);
        pthread_mutex_lock(&s->conn_mu);
        r->next = s->conns;
        if (s->conns) s->conns->prev = r;
        s->conns = r;
        s->n_open++;
        pthread_mutex_unlock(&s->conn_mu);
        *socket_context = r;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        srv_conn *r = *socket_context; /* called before libmicrohttpd closes the socket */
        pthread_mutex_lock(&s->conn_mu);
        if (r->prev) r->prev->next = r->next;
        else s->conns = r->next;
        if (r->next) r->next->prev = r->prev;
        s->n_open--;
        pthread_mutex_unlock(&s->conn_mu);
        free(r);
        *socket_context = NULL;
    }
}

/* Every 200 ms: shut down connections past their request deadline. Trickling a byte at a time
   resets libmicrohttpd's idle timer but not this deadline. shutdown() (not close) leaves the
   descriptor to libmicrohttpd, whose thread then sees EOF and closes it. */
static void *reaper_main(void *arg) {
    srv_server *s = arg;
    pthread_mutex_lock(&s->conn_mu);
    while (!s->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->conn_cond, &s->conn_mu, &ts);
        double now = vb_time_now();
        for (srv_conn *r = s->conns; r; r = r->next)
            if (r->deadline > 0 && now > r->deadline && !r->shut && r->fd >= 0) {
                shutdown(r->fd, SHUT_RDWR);
                r->shut = true;
                s->n_reaped++;
            }
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

/* Raise the open-file limit for max_connections sockets (+64 for everything else); lower
   max_connections when the hard limit does not allow it. */
static void fit_file_limit(srv_config *cfg) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t need = (rlim_t)cfg->max_connections + 64;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        unsigned fit = rl.rlim_cur > 96 ? (unsigned)(rl.rlim_cur - 64) : 32;
        fprintf(stderr, "vibee serve: the open-file limit (%llu) allows %u connections, not %u: "
                "--max-connections lowered (raise it with ulimit -n)\n", (unsigned long long)rl.rlim_cur, fit,
                cfg->max_connections);
        cfg->max_connections = fit;
    }
}

int srv_server_start(srv_server *s, srv_engine *e, const srv_config *cfg, char *err, size_t err_len) {
    s->engine = e;
    s->cfg = *cfg;
    s->chat_template = e->chatml ? "chatml" : "plain";
    s->model_name = cfg->alias ? cfg->alias : e->info->name;
    fit_file_limit(&s->cfg);
    const char *host = cfg->host && strcmp(cfg->host, "localhost") != 0 ? cfg->host : "127.0.0.1";
    struct sockaddr_in sa4;
    struct sockaddr_in6 sa6;
    memset(&sa4, 0, sizeof sa4);
    memset(&sa6, 0, sizeof sa6);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    struct sockaddr *sa;
    if (inet_pton(AF_INET, host, &sa4.sin_addr) == 1) {
        sa4.sin_family = AF_INET;
        sa4.sin_port = htons((uint16_t)cfg->port);
        sa = (struct sockaddr *)&sa4;
    } else if (inet_pton(AF_INET6, host, &sa6.sin6_addr) == 1) {
        sa6.sin6_family = AF_INET6;
        sa6.sin6_port = htons((uint16_t)cfg->port);
        sa = (struct sockaddr *)&sa6;
        flags |= IN6_IS_ADDR_UNSPECIFIED(&sa6.sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    } else {
        snprintf(err, err_len, "--host %s is not an IPv4 or IPv6 address", cfg->host);
        return -1;
    }
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_cond_init(&s->conn_cond, NULL);
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_CONNECTION_LIMIT,
        s->cfg.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_timeout_s, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)2 << 20, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, err_len, "cannot listen on %s port %d (%s): is the port in use?", host, cfg->port,
                 strerror(errno));
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : (uint16_t)cfg->port;
    snprintf(s->url, sizeof s->url, sa->sa_family == AF_INET6 ? "http://[%s]:%u" : "http://%s:%u", host,
             (unsigned)s->port);
    if (pthread_create(&s->reaper, NULL, reaper_main, s) == 0) s->reaper_started = true;
    return 0;
}

/* Wait (up to seconds) until no completion request is being answered. */
static void wait_idle(srv_server *s, double seconds) {
    double until = vb_time_now() + seconds;
    pthread_mutex_lock(&s->engine->mu);
    while (s->n_busy > 0 && vb_time_now() < until) timed_wait_100ms(&s->engine->cond, &s->engine->mu);
    pthread_mutex_unlock(&s->engine->mu);
}

void srv_server_stop(srv_server *s) {
    if (!s->daemon) return;
    srv_engine *e = s->engine;
    pthread_mutex_lock(&e->mu);
    s->draining = true; /* new requests: 503 */
    pthread_mutex_unlock(&e->mu);
    int lfd = MHD_quiesce_daemon(s->daemon); /* no new connections */
    if (lfd >= 0) close(lfd);
    wait_idle(s, s->cfg.shutdown_grace_s);
    pthread_mutex_lock(&e->mu);
    s->stopping = true; /* the rest end now: final chunks, partial texts */
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
    wait_idle(s, 5.0);
    if (s->reaper_started) {
        pthread_mutex_lock(&s->conn_mu);
        s->reaper_stop = true;
        pthread_cond_broadcast(&s->conn_cond);
        pthread_mutex_unlock(&s->conn_mu);
        pthread_join(s->reaper, NULL);
        s->reaper_started = false;
    }
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}

#else
typedef int vb_http_server_unused; /* built without the server (see cmd_serve.c) */
#endif
