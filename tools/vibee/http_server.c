/* http_server.c - libmicrohttpd glue of `vibee serve` (see http_server.h): accumulates request
 * bodies under a size limit, routes /v1/completions, /v1/chat/completions, /v1/models, /health and
 * /metrics, waits for jobs of the engine thread (non-streaming) or streams them as server-sent
 * events, and cancels a job whose client has gone (socket closed) so its KV blocks are freed. */
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
#include <sys/socket.h>
#include <time.h>

#include "http_api.h"

typedef struct conn_state {
    char *body;             /* [body_len] request body */
    size_t body_len, body_cap;
    bool responded;         /* a response was queued during upload (413) */
} conn_state;

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

static enum MHD_Result send_body(srv_server *s, struct MHD_Connection *c, unsigned status, char *body,
                                 const char *type) {
    if (!body) {
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}");
        if (!body) return MHD_NO;
    }
    srv_engine_count_http(s->engine, (int)status);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Vibee-Chat-Template", s->chat_template);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_error(srv_server *s, struct MHD_Connection *c, unsigned status, const char *msg,
                                  const char *param) {
    const char *type = status == 404 ? "not_found_error"
                       : status == 503 ? "server_busy"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    return send_body(s, c, status, api_error_json(msg, type, param), "application/json");
}

static void next_request_id(srv_server *s, bool chat, char *id, size_t n) {
    pthread_mutex_lock(&s->engine->mu);
    int64_t k = ++s->next_id;
    pthread_mutex_unlock(&s->engine->mu);
    snprintf(id, n, "%s-%lld", chat ? "chatcmpl" : "cmpl", (long long)k);
}

/* Wait (mu held) until pred or stop; returns false when the client went away or the server stops. */
static bool wait_job(srv_server *s, srv_job *j, int fd, bool until_done) {
    srv_engine *e = s->engine;
    for (;;) {
        if (j->state == SRV_JOB_DONE || (!until_done && j->state != SRV_JOB_QUEUED)) return true;
        if (s->stopping) return false;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->cond, &e->mu, &ts);
        if (j->state != SRV_JOB_DONE && client_gone(fd)) return false;
    }
}

/* ---- /metrics ---- */

static enum MHD_Result send_metrics(srv_server *s, struct MHD_Connection *c) {
    srv_metrics m = srv_engine_metrics(s->engine);
    const vb_sched_stats *t = &m.sched;
    char *buf = malloc(4096);
    if (!buf) return MHD_NO;
    snprintf(buf, 4096,
             "# TYPE vibee_http_requests_total counter\nvibee_http_requests_total %lld\n"
             "vibee_http_errors_total{class=\"4xx\"} %lld\nvibee_http_errors_total{class=\"5xx\"} %lld\n"
             "vibee_requests_submitted_total %lld\nvibee_requests_completed_total %lld\n"
             "vibee_requests_cancelled_total %lld\nvibee_requests_running %d\nvibee_requests_waiting %d\n"
             "vibee_queue_length %d\nvibee_tokens_generated_total %lld\nvibee_tokens_per_second %.3f\n"
             "vibee_decode_tokens_per_second %.3f\nvibee_steps_total %lld\nvibee_batch_rows_max %d\n"
             "vibee_preemptions_total %lld\nvibee_prefix_hits_total %lld\nvibee_prefix_tokens_total %lld\n"
             "vibee_kv_block_size %d\nvibee_kv_blocks_total %d\nvibee_kv_blocks_used %d\nvibee_kv_blocks_free %d\n"
             "vibee_kv_blocks_cached %d\nvibee_kv_cached_prefix_seqs %d\nvibee_kv_blocks_leaked %d\n"
             "vibee_kv_waste %.4f\nvibee_draft_rows_total %lld\nvibee_draft_accepted_total %lld\n",
             (long long)m.http_requests, (long long)m.http_errors_4xx, (long long)m.http_errors_5xx,
             (long long)m.jobs_submitted, (long long)m.jobs_completed, (long long)m.jobs_cancelled, t->n_running,
             t->n_waiting, m.queue_len, (long long)t->n_generated, t->tokens_per_second,
             t->decode_tokens_per_second, (long long)t->n_steps, t->max_batch_rows, (long long)t->n_preemptions,
             (long long)t->n_prefix_hits, (long long)t->n_prefix_tokens, t->kv_block_size, t->kv_blocks_total,
             t->kv_blocks_used, t->kv_blocks_free, t->kv_blocks_cached, t->n_cached_seqs, t->kv_blocks_leaked,
             t->kv_waste, (long long)t->n_draft_rows, (long long)t->n_draft_accepted);
    return send_body(s, c, 200, buf, "text/plain; version=0.0.4");
}

/* ---- streaming ---- */

typedef struct stream_ctx {
    srv_server *s;
    srv_job *job;
    int fd;
    char id[48];
    long created;
    bool chat;
    bool first;
    bool ended;            /* [DONE] formatted */
    size_t sent;           /* bytes of job->text turned into chunks */
    char *out;             /* pending SSE bytes */
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

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *x = cls;
    srv_engine *e = x->s->engine;
    if (x->out_off == x->out_len) {
        x->out_len = x->out_off = 0;
        if (x->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&e->mu);
        srv_job *j = x->job;
        for (;;) {
            if (j->text_stable > x->sent || j->state == SRV_JOB_DONE) break;
            if (x->s->stopping) {
                pthread_mutex_unlock(&e->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cond, &e->mu, &ts);
            if (client_gone(x->fd)) {
                j->cancel = true;
                pthread_mutex_unlock(&e->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        size_t n = j->text_stable > x->sent ? j->text_stable - x->sent : 0;
        char *delta = n ? malloc(n) : NULL;
        if (delta) memcpy(delta, j->text + x->sent, n);
        x->sent += n;
        bool done = j->state == SRV_JOB_DONE && x->sent >= j->text_stable;
        int status = j->http_status;
        bool timed_out = j->timed_out;
        const char *finish = j->finish;
        char error[256];
        snprintf(error, sizeof error, "%s", j->error);
        pthread_mutex_unlock(&e->mu);
        const char *model = x->s->model_name;
        if (delta) {
            out_event(x, api_chunk_json(x->chat, x->id, x->created, model, delta, n, NULL, x->first));
            x->first = false;
            free(delta);
        }
        if (done) {
            if (status || timed_out)
                out_event(x, api_error_json(timed_out ? "generation timed out" : error, "server_error", NULL));
            else
                out_event(x, api_chunk_json(x->chat, x->id, x->created, model, "", 0, finish ? finish : "length",
                                            x->first));
            out_add(x, "data: [DONE]\n\n", 14);
            x->ended = true;
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
    srv_engine_cancel(x->s->engine, x->job); /* no-op for a finished job */
    srv_job_unref(x->s->engine, x->job);
    free(x->out);
    free(x);
}

/* ---- completions ---- */

static enum MHD_Result handle_completion(srv_server *s, struct MHD_Connection *c, conn_state *cs, bool chat) {
    srv_engine *e = s->engine;
    srv_job *j = srv_job_new();
    if (!j) return send_error(s, c, 500, "out of memory", NULL);
    api_limits lim = {s->cfg.max_tokens, s->cfg.default_tokens, e->chatml};
    bool stream = false;
    char err[320];
    const char *param = NULL;
    int st = api_parse_request(cs->body ? cs->body : "", cs->body_len, chat, &lim, j, &stream, err, sizeof err, &param);
    if (st) {
        srv_job_unref(e, j);
        return send_error(s, c, (unsigned)st, err, param);
    }
    j->deadline = vb_time_now() + s->cfg.timeout_s;
    if (srv_engine_submit(e, j) != 0) {
        srv_job_unref(e, j);
        return send_error(s, c, 503, "server busy: the request queue is full, retry later", NULL);
    }
    int fd = conn_fd(c);
    char id[48];
    next_request_id(s, chat, id, sizeof id);
    long created = (long)time(NULL);
    pthread_mutex_lock(&e->mu);
    bool alive = wait_job(s, j, fd, !stream); /* streams start once admitted */
    if (!alive) {
        j->cancel = true;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->mu);
        srv_job_unref(e, j);
        return MHD_NO; /* the client is gone: close */
    }
    if (j->state == SRV_JOB_DONE && (j->http_status || j->timed_out || !stream)) {
        unsigned status = j->http_status ? (unsigned)j->http_status : j->timed_out ? 504 : 200;
        char *body = status == 200 ? api_result_json(chat, id, created, s->model_name, j->text ? j->text : "",
                                                     j->text_len, j->finish ? j->finish : "length",
                                                     j->n_prompt_tokens, j->n_generated)
                                   : NULL;
        if (body) body = api_add_decoding(body, cli_decoder_name(j->decoder_used), (long long)j->n_forward, j->n_generated);
        char msg[300];
        snprintf(msg, sizeof msg, "%s", j->timed_out ? "generation timed out (server limit --timeout)" : j->error);
        pthread_mutex_unlock(&e->mu);
        srv_job_unref(e, j);
        if (status != 200) return send_error(s, c, status, msg, NULL);
        return send_body(s, c, 200, body, "application/json");
    }
    pthread_mutex_unlock(&e->mu);
    stream_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        srv_engine_cancel(e, j);
        srv_job_unref(e, j);
        return send_error(s, c, 500, "out of memory", NULL);
    }
    x->s = s;
    x->job = j;
    x->fd = fd;
    x->chat = chat;
    x->first = true;
    x->created = created;
    snprintf(x->id, sizeof x->id, "%s", id);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, x, stream_free);
    if (!r) {
        stream_free(x);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Vibee-Chat-Template", s->chat_template);
    srv_engine_count_http(e, 200);
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* ---- dispatch ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)version;
    srv_server *s = cls;
    conn_state *cs = *con_cls;
    bool post = strcmp(method, "POST") == 0;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (post && cl && strtoull(cl, NULL, 10) > s->cfg.max_body) {
            cs->responded = true;
            char msg[128];
            snprintf(msg, sizeof msg, "request body larger than the server limit of %zu bytes", s->cfg.max_body);
            return send_error(s, c, 413, msg, NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->responded) {
            if (cs->body_len + *upload_size > s->cfg.max_body) {
                cs->responded = true;
                char msg[128];
                snprintf(msg, sizeof msg, "request body larger than the server limit of %zu bytes", s->cfg.max_body);
                *upload_size = 0;
                return send_error(s, c, 413, msg, NULL);
            }
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
    bool get = strcmp(method, "GET") == 0;
    bool is_completion = strcmp(url, "/v1/completions") == 0, is_chat = strcmp(url, "/v1/chat/completions") == 0;
    if (is_completion || is_chat) {
        if (!post) return send_error(s, c, 405, "use POST for this route", NULL);
        return handle_completion(s, c, cs, is_chat);
    }
    if (strcmp(url, "/health") == 0 || strcmp(url, "/v1/models") == 0 || strcmp(url, "/metrics") == 0) {
        if (!get) return send_error(s, c, 405, "use GET for this route", NULL);
        if (url[1] == 'h') return send_body(s, c, 200, strdup("{\"status\":\"ok\"}"), "application/json");
        if (url[1] == 'm') return send_metrics(s, c);
        return send_body(s, c, 200, api_models_json(s->model_name, s->chat_template), "application/json");
    }
    char msg[320];
    snprintf(msg, sizeof msg, "unknown route %.64s %.64s (routes: POST /v1/completions, POST "
             "/v1/chat/completions, GET /v1/models, /health, /metrics)", method, url);
    return send_error(s, c, 404, msg, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

int srv_server_start(srv_server *s, srv_engine *e, const srv_config *cfg, char *err, size_t err_len) {
    s->engine = e;
    s->cfg = *cfg;
    s->chat_template = e->chatml ? "chatml" : "plain";
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->port);
    const char *host = cfg->host && strcmp(cfg->host, "localhost") != 0 ? cfg->host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, err_len, "--host %s is not an IPv4 address", cfg->host);
        return -1;
    }
    s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG,
                                 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                                 cfg->idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, err_len, "cannot listen on %s:%d (%s): is the port in use?", host, cfg->port, strerror(errno));
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : (uint16_t)cfg->port;
    return 0;
}

void srv_server_stop(srv_server *s) {
    if (!s->daemon) return;
    pthread_mutex_lock(&s->engine->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->engine->cond);
    pthread_mutex_unlock(&s->engine->mu);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}

#else
typedef int vb_http_server_unused; /* built without the server (see cmd_serve.c) */
#endif
