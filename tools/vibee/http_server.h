/* http_server.h - the HTTP side of `vibee serve` on libmicrohttpd (one thread per connection):
 * routes, body limits, request ids, streaming with server-sent events, client-disconnect
 * detection, /health, /v1/models and Prometheus-style /metrics. */
#ifndef VB_HTTP_SERVER_H
#define VB_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_engine.h"

typedef struct srv_config {
    const char *host;        /* IPv4 address to bind (default 127.0.0.1) */
    int port;                /* 0: any free port (printed) */
    size_t max_body;         /* largest request body in bytes (413 beyond) */
    int32_t max_tokens;      /* largest max_tokens accepted (400 beyond) */
    int32_t default_tokens;  /* chat max_tokens when absent */
    double timeout_s;        /* generation time limit per request (504 / stream ends) */
    unsigned max_connections;
    unsigned idle_timeout_s; /* idle connection timeout */
} srv_config;

typedef struct srv_server {
    struct MHD_Daemon *daemon;
    srv_engine *engine;
    srv_config cfg;
    const char *model_name;
    const char *chat_template; /* "chatml" or "plain" */
    uint16_t port;             /* bound port */
    int64_t next_id;           /* guarded by engine->mu */
    bool stopping;             /* guarded by engine->mu */
} srv_server;

/* Start listening. Returns 0, or -1 with a message in err. */
int srv_server_start(srv_server *s, srv_engine *e, const srv_config *cfg, char *err, size_t err_len);
/* Stop accepting, end open streams, join connection threads. */
void srv_server_stop(srv_server *s);

#endif
