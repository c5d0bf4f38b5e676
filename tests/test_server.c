/* test_server.c - `vibee serve -m sim` ($VIBEE) over HTTP on loopback: curl-level error handling
 * (bad JSON, wrong types, a body over --max-body, unknown route, wrong method) and metrics; the
 * real OpenAI client from npm (tests/server/openai_client.mjs: completions, chat, streaming,
 * greedy text equal to `vibee run`); and a bounded load test from a second process
 * (tests/server/load.mjs: concurrent streams under a small KV pool, abrupt disconnects, malformed
 * requests, no leaked blocks in /metrics afterwards). Needs curl, node and tests/js/node_modules
 * (scripts/install_deps.sh). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "vibee.h"

static const char *missing_tools(void) {
    static char why[256];
    char out[256];
    why[0] = 0;
    if (vbt_run_cmd("command -v node >/dev/null && command -v curl >/dev/null && echo yes", out, sizeof out) != 0 ||
        !strstr(out, "yes"))
        snprintf(why, sizeof why, "node or curl not found (scripts/install_deps.sh installs them)");
    else if (access("tests/js/node_modules/openai/package.json", R_OK) != 0)
        snprintf(why, sizeof why, "tests/js/node_modules/openai missing: run scripts/install_deps.sh "
                 "(npm install in tests/js)");
    return why[0] ? why : NULL;
}

/* Run one of the node scripts; it prints ok/FAIL lines and "all passed". */
static void run_node(const char *script, char *out, size_t cap, int *rc) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 120 node tests/server/%s '%s' 2>&1", script, vbt_vibee_bin());
    *rc = vbt_run_cmd(cmd, out, cap);
}

TEST(server_openai_client) {
    const char *why = missing_tools();
    CHECKF(!why, "%s", why);
    static char out[65536];
    int rc;
    run_node("openai_client.mjs", out, sizeof out, &rc);
    const char *fail = strstr(out, "FAIL");
    CHECKF(rc == 0 && strstr(out, "all passed"), "openai_client.mjs exit %d: %.400s", rc, fail ? fail : out);
}

TEST(server_load_disconnects) {
    const char *why = missing_tools();
    CHECKF(!why, "%s", why);
    static char out[65536];
    int rc;
    run_node("load.mjs", out, sizeof out, &rc);
    const char *fail = strstr(out, "FAIL");
    CHECKF(rc == 0 && strstr(out, "all passed"), "load.mjs exit %d: %.400s", rc, fail ? fail : out);
}

/* ---- curl-level checks against a server started here ---- */

typedef struct server_proc {
    char dir[128];
    int pid;
    int port;
} server_proc;

static int server_start(server_proc *s, const char *args) {
    snprintf(s->dir, sizeof s->dir, "/tmp/vb_test_server_XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    char cmd[1024], out[64];
    snprintf(cmd, sizeof cmd, "'%s' serve %s --host 127.0.0.1 --port 0 >%s/out 2>&1 & echo $!", vbt_vibee_bin(), args,
             s->dir);
    if (vbt_run_cmd(cmd, out, sizeof out) != 0) return -1;
    s->pid = atoi(out);
    for (int i = 0; i < 100 && s->pid > 0; i++) { /* up to 10 s */
        char path[256], line[512];
        snprintf(path, sizeof path, "%s/out", s->dir);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(line, 1, sizeof line - 1, f);
            line[n] = 0;
            fclose(f);
            const char *p = strstr(line, "listening on http://127.0.0.1:");
            if (p) {
                s->port = atoi(p + strlen("listening on http://127.0.0.1:"));
                return 0;
            }
        }
        usleep(100000);
    }
    return -1;
}

/* SIGTERM, wait up to 10 s; returns 0 when the process is gone. */
static int server_stop(server_proc *s) {
    if (s->pid <= 0) return -1;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (kill(s->pid, 0) != 0) break;
        usleep(100000);
    }
    int gone = kill(s->pid, 0) != 0;
    if (!gone) kill(s->pid, SIGKILL);
    char cmd[256], out[16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    vbt_run_cmd(cmd, out, sizeof out);
    return gone ? 0 : -1;
}

/* curl a request; *status receives the HTTP status, body the response body (its last cap-1 bytes
   when longer). */
static void curl(const server_proc *s, const char *method, const char *path, const char *data_arg, int *status,
                 char *body, size_t cap) {
    char cmd[1024];
    size_t out_cap = 1 << 20;
    char *out = malloc(out_cap);
    *status = 0;
    body[0] = 0;
    if (!out) return;
    snprintf(cmd, sizeof cmd, "curl -s -m 20 -X %s %s -w '\\n%%{http_code}' http://127.0.0.1:%d%s", method,
             data_arg ? data_arg : "", s->port, path);
    vbt_run_cmd(cmd, out, out_cap);
    char *nl = strrchr(out, '\n');
    *status = nl ? atoi(nl + 1) : 0;
    if (nl) *nl = 0;
    size_t len = strlen(out);
    snprintf(body, cap, "%s", len >= cap ? out + len - (cap - 1) : out);
    free(out);
}

TEST(server_curl_errors_and_metrics) {
    char out[256];
    CHECKF(vbt_run_cmd("command -v curl >/dev/null && echo yes", out, sizeof out) == 0 && strstr(out, "yes"),
           "curl not found (scripts/install_deps.sh)");
    server_proc s = {0};
    int started = server_start(&s, "-m sim --max-body 4096 --max-tokens 64");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve did not start (is the build missing libmicrohttpd/jansson?)");
    struct {
        const char *method, *path, *data;
        int status;
        const char *in_body;
    } cases[] = {
        {"GET", "/health", NULL, 200, "\"ok\""},
        {"GET", "/v1/models", NULL, 200, "\"sim-258\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"hello\",\"max_tokens\":8,\"temperature\":0}'", 200,
         "\"completion_tokens\":8"},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"hello\",'", 400, "not valid JSON"},
        {"POST", "/v1/completions", "-d '{\"prompt\":[1,2]}'", 400, "\"param\":\"prompt\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"stream\":\"yes\"}'", 400, "\"param\":\"stream\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"max_tokens\":65}'", 400, "[1, 64]"},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"top_p\":0}'", 400, "top_p"},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"n\":2}'", 400, "\"param\":\"n\""},
        {"POST", "/v1/chat/completions", "-d '{\"messages\":[{\"role\":\"user\"}]}'", 200, "\"role\":\"assistant\""},
        {"POST", "/v1/chat/completions", "-d '{\"messages\":\"hi\"}'", 400, "\"param\":\"messages\""},
        {"GET", "/v1/nowhere", NULL, 404, "unknown route"},
        {"DELETE", "/health", NULL, 405, "use GET"},
        {"GET", "/v1/chat/completions", NULL, 405, "use POST"},
    };
    int bad = -1, got = 0;
    char body[8192] = "";
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && bad < 0; k++) {
        curl(&s, cases[k].method, cases[k].path, cases[k].data, &got, body, sizeof body);
        if (got != cases[k].status || !strstr(body, cases[k].in_body)) bad = (int)k;
        if (got >= 400 && !strstr(body, "{\"error\":{\"message\":")) bad = (int)k;
    }
    /* a body over --max-body sent for real (not just announced) */
    char cmd[512];
    int big_status = 0;
    if (bad < 0) {
        snprintf(cmd, sizeof cmd, "head -c 20000 /dev/zero | tr '\\0' 'a' | curl -s -m 20 -o /dev/null -w '%%{http_code}' "
                 "--data-binary @- http://127.0.0.1:%d/v1/completions", s.port);
        vbt_run_cmd(cmd, out, sizeof out);
        big_status = atoi(out);
    }
    int m_status = 0;
    char metrics[8192] = "";
    curl(&s, "GET", "/metrics", NULL, &m_status, metrics, sizeof metrics);
    int stopped = server_stop(&s);
    CHECKF(bad < 0, "case %d: status %d, body %.300s", bad, got, body);
    CHECK_EQ_INT(big_status, 413);
    CHECK_EQ_INT(m_status, 200);
    const char *want[] = {"vibee_requests_running 0\n", "vibee_requests_waiting 0\n", "vibee_kv_blocks_leaked 0\n",
                          "vibee_requests_completed_total 2\n", "vibee_kv_blocks_total ", "vibee_tokens_per_second ",
                          "vibee_preemptions_total 0\n"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        CHECKF(strstr(metrics, want[k]), "metrics lack '%s': %.600s", want[k], metrics);
    CHECKF(stopped == 0, "the server did not exit on SIGTERM");
}

/* --timeout: a generation longer than the limit ends with 504 (plain) or an error event (stream),
   and its blocks are freed. The embedded model on the cpu backend is slow enough to time out. */
TEST(server_timeout) {
    char out[256];
    CHECKF(vbt_run_cmd("command -v curl >/dev/null && echo yes", out, sizeof out) == 0 && strstr(out, "yes"),
           "curl not found (scripts/install_deps.sh)");
    server_proc s = {0};
    int started = server_start(&s, "--timeout 1 -t 1 --parallel 2");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve (embedded model) did not start");
    int status = 0, m_status = 0;
    char body[8192], stream[8192], metrics[8192];
    double t0 = vb_time_now();
    curl(&s, "POST", "/v1/completions", "-d '{\"prompt\":\"def f():\",\"max_tokens\":4000,\"ignore_eos\":true}'",
         &status, body, sizeof body);
    double dt = vb_time_now() - t0;
    int st_status = 0;
    curl(&s, "POST", "/v1/completions",
         "-N -d '{\"prompt\":\"def f():\",\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true}'", &st_status,
         stream, sizeof stream);
    usleep(300000);
    curl(&s, "GET", "/metrics", NULL, &m_status, metrics, sizeof metrics);
    int stopped = server_stop(&s);
    CHECKF(status == 504 && strstr(body, "timed out"), "status %d: %.300s", status, body);
    CHECKF(dt < 10.0, "the 1 s limit took %.1f s", dt);
    const char *tail = strstr(stream, "timed out");
    CHECKF(st_status == 200 && tail && strstr(tail, "data: [DONE]"), "stream %d: %.300s", st_status,
           strlen(stream) > 300 ? stream + strlen(stream) - 300 : stream);
    CHECKF(strstr(metrics, "vibee_requests_cancelled_total 2\n") && strstr(metrics, "vibee_kv_blocks_leaked 0\n") &&
               strstr(metrics, "vibee_requests_running 0\n"),
           "metrics: %.500s", metrics);
    CHECKF(stopped == 0, "the server did not exit on SIGTERM");
}

/* One engine: `serve --decoder` sets the default, the body field "decoder" picks one per
   request; three concurrent greedy requests with AR, verify (the default) and WeDLM exact get
   the same text, and each reports the decoder that ran it. */
TEST(server_decoders_concurrent) {
    char out[256];
    CHECKF(vbt_run_cmd("command -v curl >/dev/null && echo yes", out, sizeof out) == 0 && strstr(out, "yes"),
           "curl not found (scripts/install_deps.sh)");
    server_proc s = {0};
    int started = server_start(&s, "-t 1 --parallel 4 --decoder verify --wedlm-exact --window 4 --tau 100");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve (embedded model) did not start");
    static const char *decoders[] = {"ar", NULL, "wedlm"};
    char cmd[4096];
    size_t used = 0;
    for (int k = 0; k < 3; k++) {
        char field[64] = "";
        if (decoders[k]) snprintf(field, sizeof field, ",\"decoder\":\"%s\"", decoders[k]);
        used += (size_t)snprintf(cmd + used, sizeof cmd - used,
                                 "curl -s -m 60 http://127.0.0.1:%d/v1/completions -d '{\"prompt\":\"def "
                                 "add(a, b):\",\"max_tokens\":48,\"temperature\":0,\"ignore_eos\":true%s}' "
                                 ">%s/r%d & ",
                                 s.port, field, s.dir, k);
    }
    snprintf(cmd + used, sizeof cmd - used, "wait; cat %s/r0; echo; cat %s/r1; echo; cat %s/r2", s.dir, s.dir,
             s.dir);
    static char res[1 << 16];
    vbt_run_cmd(cmd, res, sizeof res);
    server_stop(&s);
    char *line[3] = {res, NULL, NULL};
    for (int k = 1; k < 3 && line[k - 1]; k++) {
        char *nl = strchr(line[k - 1], '\n');
        if (nl) {
            *nl = 0;
            line[k] = nl + 1;
        }
    }
    const char *want_dec[] = {"\"decoder\":\"ar\"", "\"decoder\":\"verify\"", "\"decoder\":\"wedlm\""};
    for (int k = 0; k < 3; k++) {
        CHECKF(line[k] && strstr(line[k], "\"text\":\"") && strstr(line[k], want_dec[k]), "response %d: %.300s", k,
               line[k] ? line[k] : "(none)");
    }
    const char *t0 = strstr(line[0], "\"text\":\""), *e0 = strstr(t0, "\",\"index\"");
    CHECK(e0);
    for (int k = 1; k < 3; k++) {
        const char *tk = strstr(line[k], "\"text\":\"");
        CHECKF(strncmp(t0, tk, (size_t)(e0 - t0 + 10)) == 0, "decoder %d text differs from AR: %.200s vs %.200s", k,
               tk, t0);
    }
}
