/* cmd_score.c - `vibee score`: the model's mean negative log-likelihood (nats/token) of given
 * continuation tokens after a prompt, teacher-forced with the AR (next-token) logits of one causal
 * forward over prompt + continuation and a float64 log-softmax over the whole vocabulary.
 *
 *   nll(i) = -log softmax(logits[row n_prompt-1+i])[tokens[i]]   for i = 0 .. n-1
 *
 * Inputs: --prompt-tokens 1,2,3 --tokens 4,5,6, or --json-in FILE with one JSON object per line
 * holding "prompt_tokens":[...] and "tokens":[...] (the output of `vibee run --json` works as is).
 * Output: one JSON line per input: {"n_prompt":P,"n":N,"nll_sum":S,"nll_mean":M,"nll":[...]}. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(void) {
    fprintf(stderr,
            "usage: vibee score [-m MODEL] [-b BACKEND] [-t THREADS] [-c CTX]\n"
            "                   (--prompt-tokens 1,2,3 --tokens 4,5,6 | --json-in FILE)\n"
            "  Mean negative log-likelihood (nats/token) of the continuation tokens after the prompt\n"
            "  under the model's next-token (AR) distribution. --json-in: one JSON object per line\n"
            "  with \"prompt_tokens\":[...] and \"tokens\":[...] (e.g. lines of `vibee run --json`).\n"
            "  Prints one JSON line per input: n_prompt, n, nll_sum, nll_mean, nll (per token).\n");
}

/* Integer array value of "key":[...] in one JSON object text (the key must be a real key: its
 * opening quote is not escaped). Returns the count (array malloc'd into *out, NULL when empty) or
 * -1 if the key is absent or the array is malformed. */
static int json_int_array(const char *js, const char *key, int **out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    size_t plen = strlen(pat);
    const char *p = js;
    for (;;) {
        p = strstr(p, pat);
        if (!p) return -1;
        if (p == js || p[-1] != '\\') {
            const char *q = p + plen;
            while (*q == ' ' || *q == '\t') q++;
            if (*q == ':') {
                q++;
                while (*q == ' ' || *q == '\t') q++;
                if (*q == '[') {
                    p = q + 1;
                    break;
                }
            }
        }
        p += plen;
    }
    int n = 0, cap = 0, *v = NULL;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p == ']') break;
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < -2147483647L || x > 2147483647L) {
            free(v);
            return -1;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            int *t = realloc(v, (size_t)cap * sizeof *t);
            if (!t) {
                free(v);
                return -1;
            }
            v = t;
        }
        v[n++] = (int)x;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == ',') p++;
        else if (*p != ']') {
            free(v);
            return -1;
        }
    }
    *out = v;
    return n;
}

/* -log softmax(logits)[target] in float64. */
static double token_nll(const float *logits, int n_vocab, int target) {
    double m = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > m) m = logits[i];
    double s = 0;
    for (int i = 0; i < n_vocab; i++) s += exp((double)logits[i] - m);
    return -((double)logits[target] - m - log(s));
}

/* Score tokens[n] after prompt[n_prompt] on sequence 0 of ctx (emptied first) and print the JSON
 * line. Returns 0, or 1 with a message on stderr. */
static int score_one(vb_context *ctx, int n_vocab, int n_batch_max, const int *prompt, int n_prompt,
                     const int *tokens, int n) {
    if (n_prompt < 1) {
        fprintf(stderr, "vibee score: the prompt needs at least one token (the first continuation token is "
                        "predicted from the last prompt token)\n");
        return 1;
    }
    for (int i = 0; i < n_prompt + n; i++) {
        int t = i < n_prompt ? prompt[i] : tokens[i - n_prompt];
        if (t < 0 || t >= n_vocab) {
            fprintf(stderr, "vibee score: token %d out of range [0, %d)\n", t, n_vocab);
            return 1;
        }
    }
    double *nll = calloc((size_t)n + 1, sizeof *nll); /* [n] */
    vb_batch *b = vb_batch_init(n_batch_max);
    int rc = 1;
    if (!nll || !b) {
        fprintf(stderr, "vibee score: out of memory\n");
        goto done;
    }
    vb_kv_free_seq(ctx, 0);
    /* rows fed: the prompt and all but the last continuation token (never an input) */
    int total = n > 0 ? n_prompt + n - 1 : 0;
    for (int start = 0; start < total; start += n_batch_max) {
        int end = start + n_batch_max < total ? start + n_batch_max : total;
        vb_batch_clear(b);
        for (int r = start; r < end; r++) {
            int t = r < n_prompt ? prompt[r] : tokens[r - n_prompt];
            vb_batch_add(b, t, r, 0, r >= n_prompt - 1);
        }
        int st = vb_forward(ctx, b);
        if (st != VB_OK) {
            fprintf(stderr, "vibee score: forward failed: %s%s%s\n", vb_status_str(st),
                    vb_context_error(ctx)[0] ? ": " : "", vb_context_error(ctx));
            if (st == VB_KV_FULL) fprintf(stderr, "vibee score: %d tokens do not fit; raise -c\n", total);
            goto done;
        }
        for (int r = start; r < end; r++) {
            if (r < n_prompt - 1) continue;
            const float *lg = vb_get_logits(ctx, r - start);
            if (!lg) {
                fprintf(stderr, "vibee score: no logits for row %d\n", r);
                goto done;
            }
            int i = r - (n_prompt - 1);
            nll[i] = token_nll(lg, n_vocab, tokens[i]);
        }
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += nll[i];
    printf("{\"n_prompt\":%d,\"n\":%d,\"nll_sum\":%.6f,\"nll_mean\":%.6f,\"nll\":[", n_prompt, n, sum,
           n > 0 ? sum / n : 0.0);
    for (int i = 0; i < n; i++) printf("%s%.5f", i ? "," : "", nll[i]);
    printf("]}\n");
    fflush(stdout);
    rc = 0;
done:
    vb_kv_free_seq(ctx, 0);
    vb_batch_free(b);
    free(nll);
    return rc;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) {
                free(buf);
                buf = NULL;
            } else
                buf = t;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

int cmd_score(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    const char *prompt_arg = NULL, *tokens_arg = NULL, *json_in = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--prompt-tokens")) {
            if (!(prompt_arg = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tokens")) {
            if (!(tokens_arg = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--json-in")) {
            if (!(json_in = cli_value(argc, argv, &i))) return 2;
        } else {
            fprintf(stderr, "vibee score: unknown option '%s' (see vibee score --help)\n", a);
            return 2;
        }
    }
    if (!json_in && (!prompt_arg || !tokens_arg)) {
        fprintf(stderr, "vibee score: give --prompt-tokens and --tokens, or --json-in FILE\n");
        usage();
        return 2;
    }
    int *prompt = NULL, *tokens = NULL;
    int n_prompt = 0, n = 0;
    char *text = NULL;
    if (!json_in) {
        n_prompt = cli_parse_int_list(prompt_arg, &prompt);
        n = cli_parse_int_list(tokens_arg, &tokens);
        if (n_prompt < 0 || n < 0) {
            fprintf(stderr, "vibee score: --prompt-tokens and --tokens expect comma-separated integers\n");
            free(prompt);
            free(tokens);
            return 2;
        }
    } else if (!(text = read_text_file(json_in))) {
        fprintf(stderr, "vibee score: cannot read %s\n", json_in);
        return 1;
    }
    vb_model *model = NULL;
    vb_context *ctx = NULL;
    if (cli_open(&mo, &model, &ctx)) {
        free(prompt);
        free(tokens);
        free(text);
        return 1;
    }
    const vb_model_info *info = vb_model_get_info(model);
    int n_batch_max = vb_context_caps(ctx).max_batch;
    if (n_batch_max <= 0 || n_batch_max > mo.n_batch_max) n_batch_max = mo.n_batch_max;
    if (n_batch_max <= 0) n_batch_max = 1;
    int rc = 0;
    if (!json_in) {
        rc = score_one(ctx, info->n_vocab, n_batch_max, prompt, n_prompt, tokens, n);
    } else {
        int line_no = 0, n_scored = 0;
        for (char *line = text; line && *line && rc == 0;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            line_no++;
            const char *q = line;
            while (*q == ' ' || *q == '\t' || *q == '\r') q++;
            if (*q) {
                int *pt = NULL, *tk = NULL;
                int np = json_int_array(line, "prompt_tokens", &pt);
                int nt = json_int_array(line, "tokens", &tk);
                if (np < 0 || nt < 0) {
                    fprintf(stderr, "vibee score: %s line %d: no \"prompt_tokens\":[...] and \"tokens\":[...]\n",
                            json_in, line_no);
                    rc = 1;
                } else {
                    rc = score_one(ctx, info->n_vocab, n_batch_max, pt, np, tk, nt);
                    n_scored++;
                }
                free(pt);
                free(tk);
            }
            line = nl ? nl + 1 : NULL;
        }
        if (rc == 0 && n_scored == 0) {
            fprintf(stderr, "vibee score: %s holds no JSON lines\n", json_in);
            rc = 1;
        }
    }
    free(prompt);
    free(tokens);
    free(text);
    vb_context_free(ctx);
    vb_model_free(model);
    return rc;
}
