/* http_server.h - the HTTP side of `vibee serve` on libmicrohttpd (one thread per connection,
 * poll): routes, API key, CORS, body limits, request ids, streaming with server-sent events,
 * client-disconnect detection, connection caps (total and per client IP), a deadline per
 * request that trickled bytes cannot extend (slowloris), a request log, graceful shutdown,
 * /v1/embeddings, /health, /v1/models, /props, /tokenize, /detokenize, Prometheus-style /metrics
 * and a chat page at / (tools/vibee/chat_page.html). */
#ifndef VB_HTTP_SERVER_H
#define VB_HTTP_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_engine.h"

typedef struct srv_config {
    const char *host;        /* IPv4 or IPv6 address to bind (default 127.0.0.1; "::" = both) */
    int port;                /* 0: any free port (printed) */
    size_t max_body;         /* largest request body in bytes (413 beyond) */
    int32_t max_tokens;      /* largest max_tokens accepted (400 beyond) */
    int32_t default_tokens;  /* chat max_tokens when absent */
    double timeout_s;        /* generation time limit per request (finish_reason "timeout") */
    unsigned max_connections;
    unsigned max_connections_per_ip; /* 0: no per-IP limit */
    unsigned idle_timeout_s; /* a connection must deliver each whole request (headers + body)
                                within this many seconds of becoming ready for it */
    double shutdown_grace_s; /* SIGTERM: time running requests get to finish */
    const char *api_key;     /* NULL: no authentication */
    const char *cors_origin; /* Access-Control-Allow-Origin value; NULL: no CORS headers */
    const char *alias;       /* model name reported (NULL: the model's name) */
    bool log_requests;       /* one line per request on stderr */
    int32_t pooling;         /* /v1/embeddings: enum vb_pooling (mean, cls or last) */
} srv_config;

typedef struct srv_conn srv_conn;

typedef struct srv_server {
    struct MHD_Daemon *daemon;
    srv_engine *engine;
    srv_config cfg;
    const char *model_name;
    const char *chat_template; /* where the chat template came from (vb_chat_template_origin) */
    uint16_t port;             /* bound port */
    char url[96];              /* http://HOST:PORT */
    int64_t next_id;           /* guarded by engine->mu */
    bool draining;             /* shutting down: no new work (guarded by engine->mu) */
    bool stopping;             /* grace over: running requests end now (guarded by engine->mu) */
    int n_busy;                /* completion requests not yet answered in full (engine->mu) */
    /* connections (conn_mu): the deadline reaper closes those past their request deadline */
    pthread_mutex_t conn_mu;
    pthread_cond_t conn_cond;
    srv_conn *conns;
    int n_open;
    int64_t n_reaped;
    bool reaper_stop;
    pthread_t reaper;
    bool reaper_started;
} srv_server;

/* Start listening (adjusts cfg->max_connections down when the open-file limit cannot be raised
   enough, with a warning). Returns 0, or -1 with a message in err. */
int srv_server_start(srv_server *s, srv_engine *e, const srv_config *cfg, char *err, size_t err_len);
/* Stop accepting, let running requests finish for the grace period, end the rest (streams get
   a final chunk and [DONE]), join connection threads. */
void srv_server_stop(srv_server *s);

#endif
