/* cmd_serve.c - `vibee serve`: an OpenAI-compatible HTTP server (POST /v1/completions,
 * POST /v1/chat/completions with or without streaming, POST /v1/embeddings, GET /v1/models, /health, /metrics,
 * /props, POST /tokenize, /detokenize) over
 * the continuous-batching scheduler. One engine thread owns the model (http_engine.c); HTTP runs
 * on libmicrohttpd (http_server.c) and JSON on jansson (http_api.c). Built when their headers
 * are installed (http_config.h); otherwise the command explains how to get it. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "http_config.h"

#ifdef VB_HAVE_SERVE
#include "http_api.h"
#include "http_engine.h"
#include "http_server.h"
#endif

static void usage(void) {
    fprintf(stderr,
            "usage: vibee serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--parallel N]\n"
            "                   [-c CTX] [-b BACKEND] [-t THREADS] [--kv-type f32|f16|q8_0]\n"
            "                   [--max-body BYTES] [--max-tokens N] [--timeout SECONDS]\n"
            "                   [--max-queue N] [--max-connections N] [--max-connections-per-ip N]\n"
            "                   [--idle-timeout SECONDS] [--shutdown-grace SECONDS]\n"
            "                   [--decoder ar|wedlm|verify] [--window W] [--tau T] [--lambda L]\n"
            "                   [--draft-max K] [--wedlm-exact] [--wedlm-official]\n"
            "                   [--api-key KEY] [--alias NAME] [--cors-origin ORIGIN|off] [--no-request-log]\n"
            "                   [--chat-template NAME|FILE] [--pooling mean|last|cls]\n"
            "  Routes: POST /v1/completions, POST /v1/chat/completions (\"stream\": true gives\n"
            "  server-sent events ending with data: [DONE]), POST /v1/embeddings, GET /v1/models,\n"
            "  /health, /metrics, /props, POST /tokenize, /detokenize.\n"
            "  --pooling: how /v1/embeddings pools the final hidden states of an input (default mean;\n"
            "  last = the last token's, cls = the first token's), normalised to unit length; cpu only.\n"
            "  --host takes an IPv4 or IPv6 address (:: = both).\n"
            "  --port 0 picks a free port; the address is printed on stdout as\n"
            "  'vibee serve: listening on http://HOST:PORT'. --parallel N: sequences decoded\n"
            "  together (default 8). Limits (defaults): --max-body 1048576, --max-tokens 4096,\n"
            "  --timeout 600 (then finish_reason \"timeout\" with the text so far), --max-queue 64,\n"
            "  --max-connections 1024, --max-connections-per-ip 256 (0 = no limit), --idle-timeout 60\n"
            "  (each request, headers and body, must arrive within it; bytes trickled in do not\n"
            "  extend it), --shutdown-grace 5 (SIGTERM: running requests get that long, then end\n"
            "  with finish_reason \"abort\"). --api-key KEY (or $VIBEE_API_KEY): every route but\n"
            "  /health needs 'Authorization: Bearer KEY'. --alias NAME: the model name reported.\n"
            "  --cors-origin (default *): Access-Control-Allow-Origin. Chat template: ChatML when\n"
            "  the vocabulary has <|im_start|>, else 'role: content' lines (header\n"
            "  X-Vibee-Chat-Template says which). temperature defaults to 1 as in OpenAI's API.\n"
            "  --decoder: the server's default decoder (default ar, wedlm for general.architecture wedlm;\n"
            "  options as in vibee run); a request\n"
            "  picks its own with the body field \"decoder\" (docs/serve.md). --draft-max K alone:\n"
            "  lossless draft-and-verify (n-gram drafts, same output as AR).\n");
}

#ifdef VB_HAVE_SERVE
static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}
#endif

int cmd_serve(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    mo.n_seq_max = 8;
#ifdef VB_HAVE_SERVE
    srv_config cfg = {.host = "127.0.0.1",
                      .port = 8080,
                      .max_body = 1 << 20,
                      .max_tokens = 4096,
                      .default_tokens = 256,
                      .timeout_s = 600.0,
                      .max_connections = 1024,
                      .max_connections_per_ip = 256,
                      .idle_timeout_s = 60,
                      .shutdown_grace_s = 5.0,
                      .api_key = getenv("VIBEE_API_KEY"),
                      .cors_origin = "*",
                      .log_requests = true,
                      .pooling = VB_POOLING_MEAN};
    long max_queue = 64;
    vb_generate_params decoding = vb_generate_default_params();
    decoding.draft_max = -1; /* not given */
    decoding.decoder = -1;   /* not given: cli_default_decoder once the model is open */
    const char *chat_template = NULL; /* --chat-template NAME|FILE */
#endif
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
#ifdef VB_HAVE_SERVE
        if (r == 0) r = cli_parse_decoder_opt(&decoding, argc, argv, &i);
#endif
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
#ifdef VB_HAVE_SERVE
        const char *v;
        long x;
#define NEED_INT(lo, hi)                                                                           \
    if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, lo, hi, &x)) {                       \
        fprintf(stderr, "vibee serve: %s expects an integer in [%ld, %ld]\n", a, (long)(lo), (long)(hi)); \
        return 2;                                                                                  \
    }
        if (!strcmp(a, "--host")) { if (!(cfg.host = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--port")) { NEED_INT(0, 65535); cfg.port = (int)x; }
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) { NEED_INT(1, 4095); mo.n_seq_max = (int)x; }
        else if (!strcmp(a, "--max-body")) { NEED_INT(64, 1L << 30); cfg.max_body = (size_t)x; }
        else if (!strcmp(a, "--max-tokens")) { NEED_INT(1, 1 << 24); cfg.max_tokens = (int32_t)x; }
        else if (!strcmp(a, "--timeout")) { NEED_INT(1, 86400); cfg.timeout_s = (double)x; }
        else if (!strcmp(a, "--max-queue")) { NEED_INT(1, 65536); max_queue = x; }
        else if (!strcmp(a, "--max-connections")) { NEED_INT(1, 100000); cfg.max_connections = (unsigned)x; }
        else if (!strcmp(a, "--max-connections-per-ip")) { NEED_INT(0, 100000); cfg.max_connections_per_ip = (unsigned)x; }
        else if (!strcmp(a, "--shutdown-grace")) { NEED_INT(0, 3600); cfg.shutdown_grace_s = (double)x; }
        else if (!strcmp(a, "--api-key")) { if (!(cfg.api_key = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--alias")) { if (!(cfg.alias = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--chat-template")) { if (!(chat_template = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--cors-origin")) {
            if (!(cfg.cors_origin = cli_value(argc, argv, &i))) return 2;
            if (!strcmp(cfg.cors_origin, "off")) cfg.cors_origin = NULL;
        }
        else if (!strcmp(a, "--no-request-log")) cfg.log_requests = false;
        else if (!strcmp(a, "--pooling")) {
            static const struct { const char *name; int32_t pooling; } poolings[] = {
                {"mean", VB_POOLING_MEAN}, {"last", VB_POOLING_LAST}, {"cls", VB_POOLING_CLS}};
            if (!(v = cli_value(argc, argv, &i))) return 2;
            int k = 0;
            while (k < 3 && strcmp(v, poolings[k].name)) k++;
            if (k == 3) {
                fprintf(stderr, "vibee serve: --pooling expects mean, last or cls, not '%s'\n", v);
                return 2;
            }
            cfg.pooling = poolings[k].pooling;
        }
        else if (!strcmp(a, "--idle-timeout")) { NEED_INT(1, 86400); cfg.idle_timeout_s = (unsigned)x; }
        else {
            fprintf(stderr, "vibee serve: unknown option '%s' (see vibee serve --help)\n", a);
            return 2;
        }
#undef NEED_INT
#endif
    }
#ifndef VB_HAVE_SERVE
    fprintf(stderr, "vibee serve: this vibee was built without the HTTP server. Install\n"
                    "  apt-get install -y libmicrohttpd-dev libjansson-dev\n"
                    "and rebuild (the Makefile links -lmicrohttpd -ljansson)\n");
    return 3;
#else
    if (cfg.default_tokens > cfg.max_tokens) cfg.default_tokens = cfg.max_tokens;
    if (cfg.api_key && !cfg.api_key[0]) cfg.api_key = NULL;
    vb_model *model = NULL;
    vb_context *ctx = NULL;
    mo.n_seq_max++; /* one more sequence than --parallel: embeddings' own (srv_engine_start) */
    if (cli_open(&mo, &model, &ctx)) return 1;
    cli_default_decoder(&decoding, vb_model_get_info(model));
    static srv_engine engine;
    static srv_server server;
    char err[512];
    /* --draft-max K alone: AR requests drafted and verified (as before --decoder existed) */
    if (decoding.draft_max > 0 && decoding.decoder == VB_DECODER_AR) decoding.decoder = VB_DECODER_VERIFY;
    if (decoding.draft_max < 0) decoding.draft_max = 0;
    if (srv_engine_start(&engine, model, ctx, (int32_t)max_queue, &decoding, err, sizeof err) != VB_OK) {
        fprintf(stderr, "vibee serve: %s\n", err);
        srv_engine_stop(&engine);
        return 1;
    }
    /* chat requests: the model's own template (tokenizer.chat_template), or --chat-template */
    vb_chat_template *tmpl = NULL;
    if (vb_chat_template_for_model(model, chat_template, &tmpl, err, sizeof err) != VB_OK) {
        fprintf(stderr, "vibee serve: chat template: %s\n", err);
        srv_engine_stop(&engine);
        return 1;
    }
    api_use_chat_template(tmpl, model);
    signal(SIGPIPE, SIG_IGN);
    if (srv_server_start(&server, &engine, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "vibee serve: %s\n", err);
        srv_engine_stop(&engine);
        vb_chat_template_free(tmpl);
        return 1;
    }
    server.chat_template = vb_chat_template_origin(tmpl);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("vibee serve: listening on %s (model %s, backend %s, parallel %d, chat template %s%s)\n", server.url,
           server.model_name, vb_context_backend_name(ctx), mo.n_seq_max - 1, server.chat_template,
           cfg.api_key ? ", API key required" : "");
    fflush(stdout);
    while (!g_stop) sleep(1); /* a signal ends the sleep early */
    fprintf(stderr, "vibee serve: shutting down\n");
    srv_server_stop(&server);
    srv_engine_stop(&engine);
    vb_chat_template_free(tmpl);
    return 0;
#endif
}
