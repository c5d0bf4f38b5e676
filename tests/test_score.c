/* test_score.c - `vibee score` ($VIBEE) end to end against an independent computation: the mean
 * and per-token NLL (nats/token) of continuation tokens after a prompt on the shipped model,
 * computed at fixture time in float64 numpy from the reference forward scripts/ref_forward.py
 * (scripts/fixtures/score.sh -> $VB_FIXTURES/score/score.jsonl: a greedy continuation (low NLL),
 * arbitrary tokens including the mask id (NLL ~15), a one-token prompt). Both input forms are
 * checked (--json-in with the fixture file itself, and --prompt-tokens/--tokens), within 1e-3
 * nats (measured difference ~1e-5: the CPU backend's f16-weight forward against float64);
 * an off-by-one row, a missing log-softmax term or scoring the prompt would be off by > 0.1.
 * Also: a clear non-zero exit on a token out of range and on missing inputs. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

#define SCORE_TOL 1e-3
#define SCORE_MAX_CASES 8
#define SCORE_MAX_TOKENS 256

/* Numbers of the array "key":[...] in one JSON line (key with a real opening quote); count or -1. */
static int score_json_numbers(const char *js, const char *key, double *vals, int max) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":[", key);
    const char *p = strstr(js, pat);
    if (!p) return -1;
    p += strlen(pat);
    int n = 0;
    while (*p && *p != ']') {
        char *end;
        double v = strtod(p, &end);
        if (end == p) return -1;
        if (n < max) vals[n] = v;
        n++;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static double score_json_number(const char *js, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The string value of "key":"..." (no escapes expected) into buf; 0 if absent. */
static int score_json_string(const char *js, const char *key, char *buf, size_t len) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(js, pat);
    if (!p) return 0;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= len) return 0;
    memcpy(buf, p, (size_t)(e - p));
    buf[e - p] = 0;
    return 1;
}

typedef struct score_case {
    char name[64];
    char model[512];
    int n_prompt, n;
    double prompt[SCORE_MAX_TOKENS], tokens[SCORE_MAX_TOKENS];
    double nll_mean, nll[SCORE_MAX_TOKENS];
} score_case;

/* Reads the fixture lines; returns the number of cases, or -1 with msg filled. */
static int score_load(const char *path, score_case *cases, int max, char *msg, size_t msg_len) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(msg, msg_len, "missing fixture %s: run `make fixtures` (scripts/fixtures/score.sh)", path);
        return -1;
    }
    static char line[65536];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        score_case *c = &cases[n];
        memset(c, 0, sizeof *c);
        if (!score_json_string(line, "name", c->name, sizeof c->name) ||
            !score_json_string(line, "model", c->model, sizeof c->model)) continue;
        c->n_prompt = score_json_numbers(line, "prompt_tokens", c->prompt, SCORE_MAX_TOKENS);
        c->n = score_json_numbers(line, "tokens", c->tokens, SCORE_MAX_TOKENS);
        int nn = score_json_numbers(line, "nll", c->nll, SCORE_MAX_TOKENS);
        c->nll_mean = score_json_number(line, "nll_mean");
        if (c->n_prompt <= 0 || c->n <= 0 || nn != c->n || c->n > SCORE_MAX_TOKENS ||
            c->n_prompt > SCORE_MAX_TOKENS || c->nll_mean != c->nll_mean) {
            snprintf(msg, msg_len, "malformed fixture line %d of %s", n + 1, path);
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    if (n == 0) snprintf(msg, msg_len, "no cases in %s", path);
    return n ? n : -1;
}

/* Compare one output line of vibee score with a case. */
static int score_compare(const score_case *c, const char *line, char *msg, size_t msg_len) {
    double got[SCORE_MAX_TOKENS];
    int n = score_json_numbers(line, "nll", got, SCORE_MAX_TOKENS);
    double mean = score_json_number(line, "nll_mean");
    if (n != c->n || (int)score_json_number(line, "n_prompt") != c->n_prompt) {
        snprintf(msg, msg_len, "%s: output has %d tokens (want %d): %.200s", c->name, n, c->n, line);
        return 0;
    }
    if (!(fabs(mean - c->nll_mean) <= SCORE_TOL)) {
        snprintf(msg, msg_len, "%s: mean NLL %.6f, reference %.6f", c->name, mean, c->nll_mean);
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - c->nll[i]) <= SCORE_TOL)) {
            snprintf(msg, msg_len, "%s: token %d NLL %.6f, reference %.6f", c->name, i, got[i], c->nll[i]);
            return 0;
        }
    return 1;
}

static void score_list(char *buf, size_t len, const double *v, int n) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n && o + 16 < len; i++) o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? "," : "", (int)v[i]);
}

TEST(score_matches_numpy_reference) {
    static score_case cases[SCORE_MAX_CASES];
    char path[512], msg[512];
    snprintf(path, sizeof path, "%s/score/score.jsonl", vbt_fixture_dir());
    int nc = score_load(path, cases, SCORE_MAX_CASES, msg, sizeof msg);
    CHECKF(nc > 0, "%s", msg);
    /* --json-in: the fixture file itself (its extra keys are ignored) */
    static char out[1 << 16], cmd[4096];
    snprintf(cmd, sizeof cmd, "%s score -m '%s' -t 1 --json-in '%s' 2>/dev/null", vbt_vibee_bin(), cases[0].model, path);
    CHECK_EQ_INT(vbt_run_cmd(cmd, out, sizeof out), 0);
    char *line = out;
    for (int k = 0; k < nc; k++) {
        char *nl = strchr(line, '\n');
        CHECKF(nl, "vibee score printed %d lines, want %d: %.300s", k, nc, out);
        *nl = 0;
        CHECKF(score_compare(&cases[k], line, msg, sizeof msg), "--json-in: %s", msg);
        line = nl + 1;
    }
    /* --prompt-tokens / --tokens, every case */
    for (int k = 0; k < nc; k++) {
        char pl[2048], tl[2048];
        score_list(pl, sizeof pl, cases[k].prompt, cases[k].n_prompt);
        score_list(tl, sizeof tl, cases[k].tokens, cases[k].n);
        snprintf(cmd, sizeof cmd, "%s score -m '%s' -t 1 --prompt-tokens %s --tokens %s 2>/dev/null", vbt_vibee_bin(),
                 cases[k].model, pl, tl);
        CHECK_EQ_INT(vbt_run_cmd(cmd, out, sizeof out), 0);
        CHECKF(score_compare(&cases[k], out, msg, sizeof msg), "--tokens: %s", msg);
    }
}

TEST(score_rejects_bad_input) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "%s score -m sim --prompt-tokens 1,2 --tokens 3,99999 2>/dev/null", vbt_vibee_bin());
    CHECK(vbt_run_cmd(cmd, out, sizeof out) != 0);
    snprintf(cmd, sizeof cmd, "%s score -m sim --prompt-tokens 1,2 2>/dev/null", vbt_vibee_bin());
    CHECK_EQ_INT(vbt_run_cmd(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s score -m sim --json-in /nonexistent/score.jsonl 2>/dev/null", vbt_vibee_bin());
    CHECK(vbt_run_cmd(cmd, out, sizeof out) != 0);
    /* scoring works on any model (the sim model here): a finite, non-negative mean NLL */
    snprintf(cmd, sizeof cmd, "%s score -m sim --prompt-tokens 104,101 --tokens 108,108,111 2>/dev/null", vbt_vibee_bin());
    CHECK_EQ_INT(vbt_run_cmd(cmd, out, sizeof out), 0);
    double mean = score_json_number(out, "nll_mean");
    CHECKF(mean == mean && mean >= 0, "sim NLL %f: %s", mean, out);
}
