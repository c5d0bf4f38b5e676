/* test_utf8.c - the one strict UTF-8 routine (src/text/utf8.c, vb_utf8_* in vibee.h) against
 * Python's decoder (bytes.decode("utf-8", "replace"): Unicode's maximal-subpart replacement,
 * an independent implementation) on random byte strings biased to the hard cases; the
 * streaming form equal to the one-shot form for every way of cutting the input; the
 * detokenizer on a model whose tokens are single bytes (the sim model: arbitrary byte
 * tokens); and the regressions of issue 15: `vibee run --json` and the server's
 * /v1/completions (plain and streamed) with sampled invalid bytes stay valid UTF-8 / JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vibee.h"

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Bytes that exercise every row of Unicode's table of well-formed sequences. */
static unsigned char pick_byte(uint64_t *s) {
    static const unsigned char hard[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
                                         0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3,
                                         0xF4, 0xF5, 0xF7, 0xF8, 0xFB, 0xFC, 0xFE, 0xFF};
    uint64_t r = rng_next(s);
    return (r & 3) ? hard[(r >> 8) % sizeof hard] : (unsigned char)(r >> 16);
}

#define N_CASES 3000

TEST(utf8_sanitize_equals_python) {
    char path[] = "/tmp/vb_utf8_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f);
    static unsigned char in[N_CASES][24];
    static int len[N_CASES];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int c = 0; c < N_CASES; c++) {
        len[c] = (int)(rng_next(&s) % 24);
        for (int i = 0; i < len[c]; i++) {
            in[c][i] = pick_byte(&s);
            fprintf(f, "%02x", in[c][i]);
        }
        fputc('\n', f);
    }
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import sys\nfor l in open(sys.argv[1]): "
             "print(bytes.fromhex(l.strip()).decode(\"utf-8\", \"replace\").encode(\"utf-8\").hex())' %s",
             path);
    static char out[N_CASES * 160];
    int rc = vbt_run_cmd(cmd, out, sizeof out);
    remove(path);
    CHECKF(rc == 0, "python3 failed");
    char *line = out;
    for (int c = 0; c < N_CASES; c++) {
        char *nl = strchr(line, '\n');
        CHECK(nl);
        *nl = 0;
        char want[200];
        size_t wn = strlen(line) / 2;
        for (size_t i = 0; i < wn; i++) {
            unsigned v;
            sscanf(line + 2 * i, "%2x", &v);
            want[i] = (char)v;
        }
        char got[200];
        size_t need = vb_utf8_sanitize((const char *)in[c], (size_t)len[c], got, sizeof got);
        CHECKF(need == wn && memcmp(got, want, wn) == 0, "case %d (%d bytes): vibee %zu bytes, python %zu", c,
               len[c], need, wn);
        CHECK(vb_utf8_sanitize((const char *)in[c], (size_t)len[c], NULL, 0) == need);
        /* streaming, cut at every pair of points: the same text */
        for (int a = 0; a <= len[c]; a += 3) {
            for (int b = a; b <= len[c]; b += 2) {
                vb_utf8_stream st = {0};
                char buf[256], acc[256];
                size_t an = 0;
                int cuts[3] = {a, b, len[c]}, prev = 0;
                for (int k = 0; k < 3; k++) {
                    int w = vb_utf8_stream_push(&st, (const char *)in[c] + prev, (size_t)(cuts[k] - prev), false, buf, sizeof buf);
                    CHECK(w >= 0);
                    memcpy(acc + an, buf, (size_t)w);
                    an += (size_t)w;
                    prev = cuts[k];
                }
                int w = vb_utf8_stream_push(&st, NULL, 0, true, buf, sizeof buf);
                CHECK(w >= 0);
                memcpy(acc + an, buf, (size_t)w);
                an += (size_t)w;
                CHECKF(an == wn && memcmp(acc, want, wn) == 0, "case %d cut at %d,%d: streamed text differs", c, a, b);
            }
        }
        line = nl + 1;
    }
}

/* The detokenizer over byte tokens: everything it emits is valid UTF-8, nothing is lost. */
TEST(utf8_detok_byte_tokens) {
    vb_model *m = NULL;
    char err[256];
    vb_sim_params sp = vb_sim_default_params();
    CHECK(vb_model_load_sim(&sp, &m, err, sizeof err) == VB_OK);
    uint64_t s = 12345;
    for (int c = 0; c < 500; c++) {
        unsigned char bytes[40];
        int n = (int)(rng_next(&s) % 40);
        vb_detok d = {0};
        char acc[512], buf[1024];
        size_t an = 0;
        for (int i = 0; i < n; i++) {
            bytes[i] = pick_byte(&s);
            int w = vb_detok_push(m, &d, bytes[i], buf, sizeof buf);
            CHECK(w >= 0);
            memcpy(acc + an, buf, (size_t)w);
            an += (size_t)w;
        }
        int w = vb_detok_flush(&d, buf, sizeof buf);
        CHECK(w >= 0);
        memcpy(acc + an, buf, (size_t)w);
        an += (size_t)w;
        char want[512];
        size_t wn = vb_utf8_sanitize((const char *)bytes, (size_t)n, want, sizeof want);
        CHECKF(an == wn && memcmp(acc, want, wn) == 0, "case %d: detokenized text differs from the sanitized bytes", c);
    }
    vb_model_free(m);
}

/* Strict check of a text: valid UTF-8 and valid JSON (python3, strict decoder). */
#define PY_CHECK_JSON \
    "python3 -c 'import json,sys\nb=sys.stdin.buffer.read()\nj=json.loads(b.decode(\"utf-8\"))\n" \
    "print(\"valid\", len(j[\"text\"]))'"

TEST(utf8_cli_run_json_regression) {
    char cmd[1024], out[4096];
    /* issue 15: sampled bytes 0xf5 / 0xc0 reached stdout as they were */
    snprintf(cmd, sizeof cmd, "'%s' run -m sim -p x -n 80 --temp 2 --seed 5 --ignore-eos --json </dev/null 2>/dev/null | " PY_CHECK_JSON,
             vbt_vibee_bin());
    CHECKF(vbt_run_cmd(cmd, out, sizeof out) == 0 && strstr(out, "valid"), "vibee run --json is not valid UTF-8 JSON: %s", out);
    /* the streamed text is valid UTF-8 as well */
    snprintf(cmd, sizeof cmd,
             "'%s' run -m sim -p x -n 80 --temp 2 --seed 5 --ignore-eos </dev/null 2>/dev/null | "
             "python3 -c 'import sys\nsys.stdin.buffer.read().decode(\"utf-8\")\nprint(\"valid\")'",
             vbt_vibee_bin());
    CHECKF(vbt_run_cmd(cmd, out, sizeof out) == 0 && strstr(out, "valid"), "vibee run output is not UTF-8: %s", out);
    /* vibee batch --json: the same sampled bytes in every completion */
    snprintf(cmd, sizeof cmd,
             "f=$(mktemp); printf 'x\\ny\\n' >$f; '%s' batch -m sim -f $f -n 80 --temp 2 --seed 5 --ignore-eos --json "
             "</dev/null 2>/dev/null | python3 -c 'import json,sys\njson.loads(sys.stdin.buffer.read().decode(\"utf-8\"))\n"
             "print(\"valid\")'; rm -f $f",
             vbt_vibee_bin());
    CHECKF(vbt_run_cmd(cmd, out, sizeof out) == 0 && strstr(out, "valid"), "vibee batch --json is not valid UTF-8 JSON: %s", out);
}

TEST(utf8_server_completions_regression) {
    char out[8192], cmd[4096];
    CHECKF(vbt_run_cmd("command -v curl >/dev/null && echo yes", out, sizeof out) == 0 && strstr(out, "yes"),
           "curl not found (scripts/install_deps.sh)");
    /* one shell: start the server on a free port, ask plain and streamed, compare, stop */
    snprintf(cmd, sizeof cmd,
             "d=$(mktemp -d); '%s' serve -m sim --host 127.0.0.1 --port 0 >$d/log 2>&1 & pid=$!; port=; "
             "for i in $(seq 100); do port=$(sed 2>/dev/null -n 's/.*listening on http:\\/\\/127.0.0.1:\\([0-9]*\\).*/\\1/p' $d/log); "
             "[ -n \"$port\" ] && break; sleep 0.1; done; "
             "body='{\"prompt\":\"x\",\"max_tokens\":80,\"temperature\":2,\"seed\":5,\"ignore_eos\":true}'; "
             "code=$(curl -s -m 30 -o $d/plain -w '%%{http_code}' -H 'Content-Type: application/json' -d \"$body\" "
             "http://127.0.0.1:$port/v1/completions); "
             "curl -s -N -m 30 -o $d/stream -H 'Content-Type: application/json' "
             "-d '{\"prompt\":\"x\",\"max_tokens\":80,\"temperature\":2,\"seed\":5,\"ignore_eos\":true,\"stream\":true}' "
             "http://127.0.0.1:$port/v1/completions; kill $pid; wait $pid 2>/dev/null; echo \"status $code\"; "
             "python3 -c 'import json,sys\n"
             "p=json.loads(open(sys.argv[1],\"rb\").read().decode(\"utf-8\"))[\"choices\"][0][\"text\"]\n"
             "s=\"\"\n"
             "for l in open(sys.argv[2],\"rb\").read().decode(\"utf-8\").splitlines():\n"
             "  if l.startswith(\"data: \") and l != \"data: [DONE]\": s += json.loads(l[6:])[\"choices\"][0][\"text\"]\n"
             "print(\"plain\", len(p), \"stream\", len(s), \"equal\" if p == s else \"DIFFERENT\")' $d/plain $d/stream; "
             "rm -rf $d",
             vbt_vibee_bin());
    int rc = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "status 200") && strstr(out, " equal"), "server: %s", out);
}
