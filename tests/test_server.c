/* test_server.c - `vibee serve -m sim` ($VIBEE) over HTTP on loopback: curl-level error handling
 * (bad JSON, wrong types, every unsupported field a 400 naming it, a body over --max-body,
 * unknown route, wrong method) and metrics; the real OpenAI client from npm
 * (tests/server/openai_client.mjs: completions, chat, streaming, greedy text equal to `vibee run`;
 * tests/server/openai_fields.mjs: seeds, logit_bias, penalties, n, echo, token and list prompts,
 * include_usage, refused fields; tests/server/embeddings.mjs: /v1/embeddings against the numpy
 * reference's hidden states; tests/server/logprobs.mjs: logprobs against the numpy reference
 * on a fixture model; tests/server/tool_calls.mjs: tools and tool_choice); a bounded load test
 * from a second process (tests/server/load.mjs: concurrent streams under a small KV pool,
 * abrupt disconnects, malformed requests, no leaked
 * blocks in /metrics afterwards); availability over raw sockets (1,000 idle connections, the
 * per-IP share, slowloris, Expect: 100-continue, chunked 413, graceful SIGTERM, --timeout); and
 * the basics (--api-key, CORS, --alias, /props, /tokenize, /detokenize, the request log, IPv6).
 * Needs curl, node and tests/js/node_modules (scripts/install_deps.sh). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
/* Runs `node tests/server/SCRIPT VIBEE [ARG]` (ajv needed too when needs_ajv) and checks that
 * it ends with "all passed", showing the first FAIL line otherwise. */
static void node_test(const char *script, const char *arg, bool needs_ajv) {
    const char *why = missing_tools();
    CHECKF(!why, "%s", why);
    char probe[256];
    CHECKF(!needs_ajv ||
               (vbt_run_cmd("cd tests/js && node -e \"require('ajv')\" 2>/dev/null && echo yes", probe, sizeof probe) == 0 &&
                strstr(probe, "yes")),
           "ajv missing: run scripts/install_deps.sh (npm install in tests/js)");
    static char out[65536];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 120 node tests/server/%s '%s'%s%s%s 2>&1", script, vbt_vibee_bin(),
             arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    int rc = vbt_run_cmd(cmd, out, sizeof out);
    const char *fail = strstr(out, "FAIL");
    CHECKF(rc == 0 && strstr(out, "all passed"), "%s exit %d: %.400s", script, rc, fail ? fail : out);
}

TEST(server_openai_client) { node_test("openai_client.mjs", NULL, false); }

TEST(server_openai_fields) { node_test("openai_fields.mjs", NULL, false); }

/* response_format json_schema / json_object and the grammar extension on the shipped model,
 * validated with ajv (tests/js/node_modules/ajv, or NODE_PATH). */
TEST(server_structured_output) { node_test("structured_output.mjs", NULL, true); }

/* /v1/embeddings through client.embeddings.create on fixture models against the numpy reference's
 * hidden states (scripts/fixtures/models.sh: <model>.hidden.bin). */
TEST(server_embeddings) { node_test("embeddings.mjs", vbt_fixture_dir(), false); }

/* logprobs / top_logprobs through the OpenAI client on the gpt2-f32 fixture, checked against the
 * numpy reference forward (tests/server/logprobs.mjs). */
TEST(server_logprobs) { node_test("logprobs.mjs", NULL, false); }

/* tools / tool_choice / parallel_tool_calls on the shipped model: calls of the right function
 * whose arguments validate against the tool's schema with ajv, streamed and not, a second turn
 * with tool_calls and a tool result, 400s naming the field (tests/server/tool_calls.mjs). */
TEST(server_tool_calls) { node_test("tool_calls.mjs", NULL, true); }

TEST(server_load_disconnects) { node_test("load.mjs", NULL, false); }

/* ---- curl-level checks against a server started here ---- */

typedef struct server_proc {
    char dir[128];
    int pid;
    int port;
} server_proc;

/* Start `vibee serve ARGS` (on 127.0.0.1 unless ARGS has --host) with stdout and stderr in
   s->dir/out; wait for its "listening on http://HOST:PORT" line. */
static int server_start(server_proc *s, const char *args) {
    snprintf(s->dir, sizeof s->dir, "/tmp/vb_test_server_XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    char cmd[1024], out[64];
    snprintf(cmd, sizeof cmd, "'%s' serve %s %s --port 0 >%s/out 2>&1 & echo $!", vbt_vibee_bin(), args,
             strstr(args, "--host") ? "" : "--host 127.0.0.1", s->dir);
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
            const char *p = strstr(line, "listening on http://"), *sp = p ? strchr(p + 13, ' ') : NULL; /* URL end */
            if (p && sp) {
                const char *colon = sp;
                while (colon > p && *colon != ':') colon--;
                s->port = atoi(colon + 1);
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
    int started = server_start(&s, "-m sim --max-body 4096 --max-tokens 64 -c 64 --parallel 1");
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
        {"POST", "/v1/completions", "-d '{\"prompt\":[1,\"a\"]}'", 400, "\"param\":\"prompt\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":[1,300]}'", 400, "[0, 258)"},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"frobnicate\":1}'", 400, "\"param\":\"frobnicate\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"logprobs\":21}'", 400, "\"param\":\"logprobs\""},
        {"POST", "/v1/chat/completions", "-d '{\"messages\":[{\"role\":\"user\"}],\"top_logprobs\":3}'", 400, "\"param\":\"top_logprobs\""},
        {"POST", "/v1/chat/completions", "-d '{\"messages\":[{\"role\":\"user\"}],\"tools\":[{}]}'", 400, "\"param\":\"tools\""},
        {"POST", "/v1/chat/completions", "-d '{\"messages\":[{\"role\":\"user\"}],\"echo\":true}'", 400, "\"param\":\"echo\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"suffix\":\"y\"}'", 400, "\"param\":\"suffix\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"best_of\":3}'", 400, "\"param\":\"best_of\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}'", 400,
         "\"param\":\"stream_options\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"logit_bias\":{\"999\":1}}'", 400, "\"param\":\"logit_bias\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"presence_penalty\":3}'", 400, "\"param\":\"presence_penalty\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"n\":0}'", 400, "\"param\":\"n\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":[\"a\",\"b\"],\"n\":40}'", 400, "\"param\":\"n\""},
        /* a prompt longer than the KV pool (-c 64: 4 blocks of 16, plus one per sequence: --parallel 1
           and embeddings' own, 96 tokens): the message does not name library functions */
        {"POST", "/v1/completions", "-d '{\"prompt\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
         "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
         "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}'", 400,
         "\"message\":\"prompt of"},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"stream\":\"yes\"}'", 400, "\"param\":\"stream\""},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"max_tokens\":65}'", 400, "[1, 64]"},
        {"POST", "/v1/completions", "-d '{\"prompt\":\"x\",\"top_p\":0}'", 400, "top_p"},
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

/* --timeout: a generation longer than the limit answers the text so far with finish_reason
   "timeout" (plain), or ends the stream with a "timeout" chunk and [DONE]; its blocks are freed.
   The embedded model on the cpu backend is slow enough to time out. */
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
    CHECKF(status == 200 && strstr(body, "\"finish_reason\":\"timeout\"") && !strstr(body, "\"text\":\"\"") &&
               !strstr(body, "\"completion_tokens\":0,"),
           "status %d: %.300s", status, body);
    CHECKF(dt < 10.0, "the 1 s limit took %.1f s", dt);
    const char *tail = strstr(stream, "\"finish_reason\":\"timeout\"");
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

/* ---- availability: raw sockets from chosen loopback addresses ---- */

/* A TCP connection from src (a 127.x address; NULL: any) to 127.0.0.1:port, or -1. */
static int tcp_from(const char *src, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    if (src) {
        inet_pton(AF_INET, src, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
    }
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read into buf until EOF, `until` appears, or timeout; returns bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *until, double timeout_s) {
    size_t n = 0;
    double end = vb_time_now() + timeout_s;
    buf[0] = 0;
    while (n + 1 < cap) {
        int ms = (int)((end - vb_time_now()) * 1000);
        if (ms <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0) break;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = 0;
        if (until && strstr(buf, until)) break;
    }
    return n;
}

/* True when the server closed fd within timeout_s (EOF or reset). */
static bool closed_within(int fd, double timeout_s) {
    char buf[4096];
    double end = vb_time_now() + timeout_s;
    for (;;) {
        int ms = (int)((end - vb_time_now()) * 1000);
        if (ms <= 0) return false;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0) return false;
        if (recv(fd, buf, sizeof buf, 0) <= 0) return true;
    }
}

/* One whole request (Connection: close) from src; returns the status, -1 when none, with the
   time taken in *secs and the response in resp. */
static int timed_request(const char *src, int port, const char *req, double *secs, char *resp, size_t cap) {
    double t0 = vb_time_now();
    int fd = tcp_from(src, port);
    if (fd < 0) return -1;
    size_t len = strlen(req);
    if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    size_t n = read_until(fd, resp, cap, NULL, 5.0);
    *secs = vb_time_now() - t0;
    close(fd);
    return n > 12 && !strncmp(resp, "HTTP/1.1 ", 9) ? atoi(resp + 9) : -1;
}

static long metric(const server_proc *s, const char *name) {
    int st;
    char body[8192];
    curl(s, "GET", "/metrics", NULL, &st, body, sizeof body);
    const char *p = strstr(body, name);
    return st == 200 && p ? atol(p + strlen(name) + 1) : -1;
}

#define COMPLETION_REQ                                                                                      \
    "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"   \
    "Content-Length: 45\r\n\r\n{\"prompt\":\"hello\",\"max_tokens\":8,\"seed\":1234}"

/* 1,000 idle connections (half of them with a started request) from eight loopback addresses
   are held open, and a normal request from another address is answered within 1 s; 300 more
   from one address get only that address's share (--max-connections-per-ip) and still do not
   lock anyone else out. The open-file limit is raised as needed; where it cannot be, fewer
   connections are opened (the number is in the failure message). */
TEST(server_idle_connections) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 4096 ? 4096 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    int n_idle = rl.rlim_cur >= 1500 ? 1000 : (int)rl.rlim_cur / 2 - 100, n_extra = 300, per_ip = 200;
    CHECKF(n_idle >= 100, "open-file limit %llu is too low for this test", (unsigned long long)rl.rlim_cur);
    if (n_idle < 1000) n_extra = n_idle / 4;
    server_proc s = {0};
    int started = server_start(&s, "-m sim --max-connections 2000 --max-connections-per-ip 200 --idle-timeout 30 "
                                   "--no-request-log");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve did not start");
    int *fds = malloc(sizeof(int) * (size_t)(n_idle + n_extra));
    int n_open = 0;
    for (int i = 0; i < n_idle; i++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.0.%d", 2 + i % 8);
        int fd = tcp_from(src, s.port);
        if (fd < 0) break;
        if (i % 2) send(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\n", 40, MSG_NOSIGNAL);
        fds[n_open++] = fd;
    }
    long held = -1;
    for (int k = 0; k < 50 && held < n_idle; k++) { /* wait for the server to accept them all */
        held = metric(&s, "vibee_http_connections_open");
        if (held < n_idle) usleep(100000);
    }
    char resp[8192];
    double t_norm = 99, t_health = 99;
    int st_norm = timed_request("127.0.0.20", s.port, COMPLETION_REQ, &t_norm, resp, sizeof resp);
    int st_health = timed_request("127.0.0.20", s.port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                  &t_health, resp, sizeof resp);
    /* one address over its share: the connections past it are closed at once */
    int extra_from = n_open;
    for (int i = 0; i < n_extra; i++) {
        int fd = tcp_from("127.0.0.30", s.port);
        if (fd < 0) break;
        fds[n_open++] = fd;
    }
    int refused = 0;
    for (int i = extra_from; i < n_open; i++) refused += closed_within(fds[i], i == extra_from ? 1.0 : 0.01);
    double t_after = 99;
    int st_after = timed_request("127.0.0.21", s.port, COMPLETION_REQ, &t_after, resp, sizeof resp);
    for (int i = 0; i < n_open; i++) close(fds[i]);
    free(fds);
    int stopped = server_stop(&s);
    fprintf(stderr, "    %d idle connections held: completion %.3f s, /health %.3f s; per-IP flood: %d of %d refused, "
            "completion %.3f s\n", (int)held, t_norm, t_health, refused, n_extra, t_after);
    CHECKF(extra_from == n_idle, "opened only %d of %d connections", extra_from, n_idle);
    CHECKF(held >= n_idle, "the server holds %ld of %d idle connections", held, n_idle);
    CHECKF(st_norm == 200 && t_norm < 1.0, "completion with %d idle connections: status %d in %.2f s", n_idle, st_norm,
           t_norm);
    CHECKF(st_health == 200 && t_health < 1.0, "/health: status %d in %.2f s", st_health, t_health);
    CHECKF(refused == n_extra - per_ip, "%d of %d connections over the per-IP share of %d refused", refused, n_extra,
           per_ip);
    CHECKF(st_after == 200 && t_after < 1.0, "completion after the per-IP flood: status %d in %.2f s", st_after, t_after);
    CHECKF(stopped == 0, "the server did not exit on SIGTERM");
}

/* Slowloris: a byte every 0.5 s keeps libmicrohttpd's idle timer fresh, but the request
   deadline (--idle-timeout 2) closes the connection anyway, for headers and for bodies; a
   kept-alive connection that sends nothing is closed too. The reaper counts them. */
TEST(server_slowloris) {
    server_proc s = {0};
    int started = server_start(&s, "-m sim --idle-timeout 2 --no-request-log");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve did not start");
    const char *phases[2] = {"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\": "
                             "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    double lived[2] = {0, 0};
    for (int ph = 0; ph < 2; ph++) {
        int fd = tcp_from(NULL, s.port);
        CHECK(fd >= 0);
        double t0 = vb_time_now();
        size_t head = ph ? (size_t)(strstr(phases[1], "\r\n\r\n") + 4 - phases[1]) : 0;
        if (head) send(fd, phases[1], head, MSG_NOSIGNAL); /* headers at once, then the body trickles */
        for (size_t i = head; phases[ph][i] && vb_time_now() - t0 < 8.0; i++) {
            if (send(fd, phases[ph] + i, 1, MSG_NOSIGNAL) != 1 || closed_within(fd, 0.5)) break;
        }
        lived[ph] = vb_time_now() - t0;
        close(fd);
    }
    /* keep-alive: one request answered, then silence */
    int fd = tcp_from(NULL, s.port);
    CHECK(fd >= 0);
    const char *get = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, get, strlen(get), MSG_NOSIGNAL);
    char buf[2048];
    read_until(fd, buf, sizeof buf, "\"ok\"}", 2.0);
    double t0 = vb_time_now();
    bool closed = closed_within(fd, 5.0);
    double idle = vb_time_now() - t0;
    close(fd);
    long reaped = metric(&s, "vibee_http_connections_reaped_total");
    int stopped = server_stop(&s);
    CHECKF(strstr(buf, "200 OK") != NULL, "keep-alive request: %.100s", buf);
    CHECKF(lived[0] > 1.5 && lived[0] < 3.5, "trickled headers kept the connection %.1f s (limit 2 s)", lived[0]);
    CHECKF(lived[1] > 1.5 && lived[1] < 3.5, "trickled body kept the connection %.1f s (limit 2 s)", lived[1]);
    CHECKF(closed && idle > 1.5 && idle < 3.5, "idle keep-alive connection closed after %.1f s (%d)", idle, closed);
    CHECKF(reaped >= 2, "reaped connections: %ld", reaped);
    CHECKF(stopped == 0, "the server did not exit on SIGTERM");
}

/* Expect: 100-continue gets the interim "100 Continue" before the body is sent; a chunked body
   over --max-body is read and answered 413 with a JSON error (not a dropped connection). */
TEST(server_expect_continue_and_chunked_limit) {
    server_proc s = {0};
    int started = server_start(&s, "-m sim --max-body 1000 --no-request-log");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve did not start");
    char interim[256] = "", final[4096] = "", big[8192] = "";
    int fd = tcp_from(NULL, s.port);
    if (fd >= 0) {
        const char *body = "{\"prompt\":\"hi\",\"max_tokens\":3}";
        char head[256];
        snprintf(head, sizeof head, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: "
                 "100-continue\r\nContent-Length: %zu\r\n\r\n", strlen(body));
        send(fd, head, strlen(head), MSG_NOSIGNAL);
        read_until(fd, interim, sizeof interim, "\r\n\r\n", 3.0);
        send(fd, body, strlen(body), MSG_NOSIGNAL);
        read_until(fd, final, sizeof final, NULL, 5.0);
        close(fd);
    }
    fd = tcp_from(NULL, s.port);
    if (fd >= 0) {
        const char *head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        send(fd, head, strlen(head), MSG_NOSIGNAL);
        char chunk[520];
        snprintf(chunk, sizeof chunk, "1f4\r\n%0500d\r\n", 0);
        for (int i = 0; i < 6; i++) send(fd, chunk, strlen(chunk), MSG_NOSIGNAL); /* 3000 bytes */
        send(fd, "0\r\n\r\n", 5, MSG_NOSIGNAL);
        read_until(fd, big, sizeof big, "}}", 5.0);
        close(fd);
    }
    char refused[4096] = ""; /* announced over the limit: 413 at once, no 100 */
    fd = tcp_from(NULL, s.port);
    if (fd >= 0) {
        const char *head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n";
        send(fd, head, strlen(head), MSG_NOSIGNAL);
        read_until(fd, refused, sizeof refused, "}}", 3.0);
        close(fd);
    }
    int stopped = server_stop(&s);
    CHECKF(!strcmp(interim, "HTTP/1.1 100 Continue\r\n\r\n"), "interim response: '%s'", interim);
    CHECKF(!strncmp(refused, "HTTP/1.1 413", 12), "announced body over the limit: %.200s", refused);
    CHECKF(strstr(final, "HTTP/1.1 200") && strstr(final, "\"completion_tokens\":3"), "final: %.300s", final);
    CHECKF(strstr(big, "HTTP/1.1 413") && strstr(big, "{\"error\":{\"message\":\"request body larger"), "chunked: %.300s",
           big);
    CHECKF(stopped == 0, "the server did not exit on SIGTERM");
}

/* The last cap-1 bytes of a file in buf; true when they contain needle. */
static bool file_has(const char *path, const char *needle, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    buf[0] = 0;
    if (!f) return false;
    if (fseek(f, -(long)(cap - 1), SEEK_END) != 0) rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return strstr(buf, needle) != NULL;
}

/* SIGTERM with requests running (the embedded model, slow on one thread): a short request
   finishes within --shutdown-grace; past it, a stream ends with a finish_reason "abort" chunk and
   [DONE], and a plain request answers 200 with the text so far and finish_reason "abort"; the
   process exits 0. */
TEST(server_graceful_shutdown) {
    server_proc s = {0};
    int started = server_start(&s, "-t 1 --parallel 4 --shutdown-grace 1");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve (embedded model) did not start");
    char cmd[1024], out[64], path[256];
    const char *reqs[3][2] = {
        {"stream", "-N -d '{\"prompt\":\"def f():\",\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true}'"},
        {"plain", "-d '{\"prompt\":\"def g():\",\"max_tokens\":4000,\"ignore_eos\":true}'"},
        {"short", "-d '{\"prompt\":\"x\",\"max_tokens\":2,\"ignore_eos\":true}'"},
    };
    for (int i = 0; i < 3; i++) {
        if (i == 2) { /* the short one once the stream runs */
            snprintf(path, sizeof path, "%s/stream", s.dir);
            char buf[4096];
            for (int k = 0; k < 100 && !file_has(path, "data: ", buf, sizeof buf); k++) usleep(100000);
        }
        snprintf(cmd, sizeof cmd, "(curl -s -m 30 %s -w '\\n%%{http_code}' http://127.0.0.1:%d/v1/completions >%s/%s; "
                 "touch %s/%s.done) >/dev/null 2>&1 &", reqs[i][1], s.port, s.dir, reqs[i][0], s.dir, reqs[i][0]);
        vbt_run_cmd(cmd, out, sizeof out);
    }
    usleep(200000);
    double t0 = vb_time_now();
    kill(s.pid, SIGTERM);
    int gone = 0;
    for (int k = 0; k < 150 && !gone; k++) {
        gone = kill(s.pid, 0) != 0;
        if (!gone) usleep(100000);
    }
    double dt = vb_time_now() - t0;
    static char res[3][65536];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s.done", s.dir, reqs[i][0]);
        for (int k = 0; k < 50 && access(path, F_OK) != 0; k++) usleep(100000);
        snprintf(path, sizeof path, "%s/%s", s.dir, reqs[i][0]);
        file_has(path, "", res[i], sizeof res[i]);
    }
    snprintf(path, sizeof path, "%s/out", s.dir);
    char log[8192];
    file_has(path, "", log, sizeof log);
    server_stop(&s);
    CHECKF(gone && dt < 8.0, "exit after SIGTERM: %d in %.1f s", gone, dt);
    size_t ls = strlen(res[0]);
    const char *abort_chunk = strstr(res[0], "\"finish_reason\":\"abort\"");
    CHECKF(abort_chunk && strstr(abort_chunk, "data: [DONE]\n\n\n200"), "stream tail: %.300s",
           ls > 300 ? res[0] + ls - 300 : res[0]);
    CHECKF(strstr(res[1], "\"finish_reason\":\"abort\"") && strstr(res[1], "\n200") && !strstr(res[1], "\"text\":\"\""),
           "plain: %.300s", res[1]);
    CHECKF(strstr(res[2], "\"finish_reason\":\"length\"") && strstr(res[2], "\n200"), "short: %.300s", res[2]);
    CHECKF(strstr(log, "shutting down"), "log: %.300s", log);
}

/* --api-key (401 without or with a wrong key, /health open), CORS (preflight, Allow header,
   Access-Control-Allow-Origin), --alias, /props, /tokenize -> /detokenize round trip, the
   request log, and --host ::1 (IPv6 loopback, where the machine has it). */
TEST(server_basics) {
    server_proc s = {0};
    int started = server_start(&s, "-m sim --api-key sekrit --alias my-model");
    if (started != 0) server_stop(&s);
    CHECKF(started == 0, "vibee serve did not start");
    struct {
        const char *method, *path, *args;
        int status;
        const char *in_body;
    } cases[] = {
        {"POST", "/v1/completions", "-d '{\"prompt\":\"hi\",\"max_tokens\":2}'", 401, "API key"},
        {"POST", "/v1/completions", "-H 'Authorization: Bearer wrong' -d '{\"prompt\":\"hi\"}'", 401, "API key"},
        {"GET", "/v1/models", "-H 'Authorization: Bearer sekritX'", 401, "\"authentication_error\""},
        {"GET", "/health", NULL, 200, "ok"},
        {"POST", "/v1/completions", "-H 'Authorization: Bearer sekrit' -d '{\"prompt\":\"hi\",\"max_tokens\":2}'", 200,
         "\"model\":\"my-model\""},
        {"GET", "/v1/models", "-H 'Authorization: Bearer sekrit'", 200, "\"id\":\"my-model\""},
        {"GET", "/props", "-H 'Authorization: Bearer sekrit'", 200, "\"total_slots\":8"},
        {"POST", "/tokenize", "-H 'Authorization: Bearer sekrit' -d '{\"content\":\"h\\u00e9\",\"with_pieces\":true}'", 200,
         /* bytes of a partial character: U+FFFD */
         "{\"tokens\":[{\"id\":104,\"piece\":\"h\"},{\"id\":195,\"piece\":\"\xef\xbf\xbd\"},{\"id\":169,\"piece\":\"\xef\xbf\xbd\"}]}"},
        {"POST", "/detokenize", "-H 'Authorization: Bearer sekrit' -d '{\"tokens\":[104,195,169]}'", 200,
         "{\"content\":\"h\xc3\xa9\"}"},
        {"POST", "/detokenize", "-H 'Authorization: Bearer sekrit' -d '{\"tokens\":[104,999]}'", 400, "tokens"},
        {"POST", "/tokenize", "-H 'Authorization: Bearer sekrit' -d '{\"content\":\"x\",\"bogus\":1}'", 400, "bogus"},
    };
    int bad = -1, got = 0;
    char body[8192] = "";
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && bad < 0; k++) {
        curl(&s, cases[k].method, cases[k].path, cases[k].args, &got, body, sizeof body);
        if (got != cases[k].status || !strstr(body, cases[k].in_body)) bad = (int)k;
    }
    char cmd[512], pre[4096], m405[4096];
    snprintf(cmd, sizeof cmd, "curl -s -i -m 5 -X OPTIONS -H 'Origin: http://x' -H 'Access-Control-Request-Method: POST' "
             "-H 'Access-Control-Request-Headers: authorization,content-type' http://127.0.0.1:%d/v1/chat/completions",
             s.port);
    vbt_run_cmd(cmd, pre, sizeof pre);
    snprintf(cmd, sizeof cmd, "curl -s -i -m 5 -X PUT http://127.0.0.1:%d/health", s.port);
    vbt_run_cmd(cmd, m405, sizeof m405);
    char path[256], log[16384];
    snprintf(path, sizeof path, "%s/out", s.dir);
    for (int k = 0; k < 30 && !file_has(path, "\"OPTIONS /v1/chat/completions\"", log, sizeof log); k++)
        usleep(100000); /* a line is written once its response has gone out */
    int stopped = server_stop(&s);
    CHECKF(bad < 0, "case %d: status %d, body %.300s", bad, got, body);
    CHECKF(strstr(pre, "HTTP/1.1 204") && strstr(pre, "Access-Control-Allow-Origin: *") &&
               strstr(pre, "Access-Control-Allow-Methods: POST, OPTIONS") &&
               strstr(pre, "Access-Control-Allow-Headers: authorization,content-type") && strstr(pre, "Allow: POST"),
           "preflight: %.400s", pre);
    CHECKF(strstr(m405, "HTTP/1.1 405") && strstr(m405, "Allow: GET, OPTIONS"), "405: %.300s", m405);
    CHECKF(strstr(log, "127.0.0.1 \"POST /v1/completions\" 401 ") &&
               strstr(log, "\"POST /v1/completions\" 200 ") && strstr(log, "completion_tokens=2") &&
               strstr(log, "\"OPTIONS /v1/chat/completions\" 204 "),
           "request log: %.600s", log);
    CHECKF(stopped == 0, "the server did not exit on SIGTERM");
    /* IPv6 loopback */
    if (access("/proc/net/if_inet6", R_OK) == 0) {
        server_proc s6 = {0};
        started = server_start(&s6, "-m sim --host ::1");
        if (started != 0) server_stop(&s6);
        CHECKF(started == 0, "vibee serve --host ::1 did not start");
        char out6[2048];
        snprintf(cmd, sizeof cmd, "curl -s -g -m 5 -d '{\"prompt\":\"hi\",\"max_tokens\":3}' http://[::1]:%d/v1/completions",
                 s6.port);
        vbt_run_cmd(cmd, out6, sizeof out6);
        snprintf(path, sizeof path, "%s/out", s6.dir);
        for (int k = 0; k < 30 && !file_has(path, "\"POST /v1/completions\"", log, sizeof log); k++) usleep(100000);
        stopped = server_stop(&s6);
        CHECKF(strstr(out6, "\"completion_tokens\":3"), "IPv6 answer: %.300s", out6);
        CHECKF(strstr(log, "listening on http://[::1]:") && strstr(log, " ::1 \"POST /v1/completions\" 200"),
               "IPv6 log: %.300s", log);
        CHECKF(stopped == 0, "the IPv6 server did not exit on SIGTERM");
    }
}

/* An open-file limit too low for --max-connections that cannot be raised (hard limit 200): the
   server still starts, says so, and lowers the cap it reports in /props. */
TEST(server_file_limit) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "sh -c 'ulimit -n 200 && exec \"%s\" serve -m sim --host 127.0.0.1 --port 0 "
             "--max-connections 1024 --max-connections-per-ip 0' >/tmp/vb_fd_limit.$$ 2>&1 & pid=$!; "
             "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do "
             "port=$(sed -n 's/.*listening on http:\\/\\/127.0.0.1:\\([0-9]*\\).*/\\1/p' /tmp/vb_fd_limit.$$); "
             "[ -n \"$port\" ] && break; sleep 0.2; done; "
             "curl -s -m 5 http://127.0.0.1:$port/props; echo; kill $pid; wait $pid; echo rc=$?; cat /tmp/vb_fd_limit.$$; "
             "rm -f /tmp/vb_fd_limit.$$", vbt_vibee_bin());
    vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(strstr(out, "\"max_connections\":136,") && strstr(out, "allows 136 connections, not 1024") &&
               strstr(out, "rc=0"),
           "%.600s", out);
}
