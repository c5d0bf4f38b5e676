/* cmd_bench.c - `vibee bench`: llama-bench-style measurements. For each backend and thread
 * count: prefill speed (a -p token prompt), decode speed (-n single-token forwards), both as
 * medians over -r repetitions; the cost of a K-row forward relative to a 1-row one (--kcost);
 * optionally a decoder's end-to-end tokens/s (--decoder); and decode as a fraction of the
 * memory-bandwidth limit measured in the same run (weights read per token / bandwidth).
 * A markdown table by default, one JSON object per configuration with --json. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cpu/membw.h"
#include "backends/cpu/threadpool.h"
#include "cli.h"

static void usage(void) {
    fprintf(stderr,
            "usage: vibee bench [-m MODEL] [-b BACKEND[,BACKEND...]] [-p N_PROMPT] [-n N_GEN]\n"
            "                   [-t T[,T...]] [-r REPS] [--kcost K[,K...]] [--decoder ar|wedlm|verify]\n"
            "                   [--prompt-file FILE] [--no-bandwidth] [--json]\n"
            "  defaults: -b cpu -p 512 -n 128 -t <cores> -r 5. Reports medians; with several backends\n"
            "  each row also gives its decode speed relative to the first backend.\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* pseudo-random but fixed token ids in [0, n_vocab) */
static vb_token bench_token(int i, int n_vocab) { return (vb_token)((1103515245u * (unsigned)(i + 7) + 12345u) % (unsigned)n_vocab); }

/* Time one forward of k rows (positions start..start+k-1) on seq 0, logits for the last row. */
static int timed_forward(vb_context *ctx, vb_batch *b, int start, int k, int n_vocab, double *sec) {
    vb_batch_clear(b);
    for (int i = 0; i < k; i++) vb_batch_add(b, bench_token(start + i, n_vocab), start + i, 0, i == k - 1);
    double t0 = vb_time_now();
    int st = vb_forward(ctx, b);
    *sec = vb_time_now() - t0;
    return st;
}

typedef struct bench_result {
    double prefill_tps, decode_tps, kcost[16], decoder_tps, decoder_tpf;
} bench_result;

static int run_config(vb_context *ctx, int n_prompt, int n_gen, int reps, const int *ks, int n_ks,
                      int decoder, bench_result *res) {
    const vb_model_info *info = vb_model_get_info(vb_context_model(ctx));
    int n_vocab = info->n_vocab, max_batch = vb_context_caps(ctx).max_batch;
    vb_batch *b = vb_batch_init(max_batch);
    double *tp = calloc((size_t)reps, sizeof *tp), *td = calloc((size_t)reps, sizeof *td);
    int st = b && tp && td ? VB_OK : VB_ERR_NOMEM;
    memset(res, 0, sizeof *res);
    /* warm-up: one short forward */
    double sec;
    if (st == VB_OK) st = timed_forward(ctx, b, 0, 1, n_vocab, &sec);
    vb_kv_free_seq(ctx, 0);
    for (int r = 0; r < reps && st == VB_OK; r++) {
        double total = 0;
        for (int done = 0; done < n_prompt && st == VB_OK; done += max_batch) {
            int k = n_prompt - done < max_batch ? n_prompt - done : max_batch;
            st = timed_forward(ctx, b, done, k, n_vocab, &sec);
            total += sec;
        }
        tp[r] = n_prompt > 0 && total > 0 ? n_prompt / total : 0;
        vb_kv_free_seq(ctx, 0);
        /* decode: n_gen single-row forwards after a 1-token context (as llama-bench's tg) */
        total = 0;
        for (int i = 0; i < n_gen && st == VB_OK; i++) {
            st = timed_forward(ctx, b, i, 1, n_vocab, &sec);
            total += sec;
        }
        td[r] = n_gen > 0 && total > 0 ? n_gen / total : 0;
        vb_kv_free_seq(ctx, 0);
    }
    if (st == VB_OK) {
        res->prefill_tps = median(tp, reps);
        res->decode_tps = median(td, reps);
    }
    /* cost(K): a K-row forward on top of a 64-row context, relative to a 1-row forward */
    if (st == VB_OK && n_ks > 0) {
        int ctx_rows = 64 < max_batch ? 64 : max_batch;
        st = timed_forward(ctx, b, 0, ctx_rows, n_vocab, &sec);
        /* the 1-row baseline is timed alternately with each K (tp: [reps] 1-row times, td: [reps]
           K-row times), so a slow stretch of a shared machine hits both sides of the ratio */
        for (int j = 0; j < n_ks && st == VB_OK; j++) {
            int k = ks[j] < max_batch ? ks[j] : max_batch;
            for (int r = 0; r < reps && st == VB_OK; r++) {
                st = timed_forward(ctx, b, ctx_rows, 1, n_vocab, &tp[r]);
                vb_kv_truncate(ctx, 0, ctx_rows);
                if (st == VB_OK) st = timed_forward(ctx, b, ctx_rows, k, n_vocab, &td[r]);
                vb_kv_truncate(ctx, 0, ctx_rows);
            }
            double base = median(tp, reps), m = median(td, reps);
            res->kcost[j] = base > 0 ? m / base : 0;
        }
        vb_kv_free_seq(ctx, 0);
    }
    if (st == VB_OK && decoder >= 0) {
        const int n = n_gen > 0 ? n_gen : 64;
        vb_token *prompt = malloc((size_t)(n_prompt > 0 ? n_prompt : 1) * sizeof *prompt);
        vb_token *out = malloc((size_t)n * sizeof *out);
        int np = n_prompt > 0 ? n_prompt : 1;
        for (int i = 0; i < np && prompt; i++) prompt[i] = bench_token(i, n_vocab);
        for (int r = 0; r < reps && prompt && out && st >= 0; r++) {
            vb_generate_params gp = vb_generate_default_params();
            gp.decoder = decoder;
            gp.n_predict = n;
            gp.stop_at_eos = false;
            vb_generate_stats gs;
            int32_t n_out = 0;
            st = vb_generate(ctx, prompt, np, &gp, out, n, &n_out, &gs);
            td[r] = gs.decode_seconds > 0 ? gs.n_generated / gs.decode_seconds : 0;
            res->decoder_tpf = gs.tokens_per_forward;
            vb_kv_free_seq(ctx, 0);
        }
        if (st >= 0) res->decoder_tps = median(td, reps);
        free(prompt);
        free(out);
    }
    free(tp);
    free(td);
    vb_batch_free(b);
    return st < 0 ? st : VB_OK;
}

int cmd_bench(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    mo.n_seq_max = 1;
    const char *backends = "cpu", *threads_s = NULL, *kcost_s = NULL;
    long n_prompt = 512, n_gen = 128, reps = 5;
    int decoder = -1;
    bool json = false, bandwidth = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-b") || !strcmp(a, "--backend")) { if (!(backends = cli_value(argc, argv, &i))) return 2; continue; }
        if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!(threads_s = cli_value(argc, argv, &i))) return 2; continue; }
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--no-bandwidth")) bandwidth = false;
        else if (!strcmp(a, "--kcost")) { if (!(kcost_s = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-r")) {
            long x;
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a[1] == 'r' ? 1 : 0, 1 << 20, &x)) {
                fprintf(stderr, "vibee bench: %s expects a non-negative integer\n", a);
                return 2;
            }
            if (a[1] == 'p') n_prompt = x; else if (a[1] == 'n') n_gen = x; else reps = x;
        } else if (!strcmp(a, "--decoder")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            decoder = !strcmp(v, "ar") ? VB_DECODER_AR : !strcmp(v, "wedlm") ? VB_DECODER_WEDLM
                    : !strcmp(v, "verify") ? VB_DECODER_VERIFY : -2;
            if (decoder == -2) { fprintf(stderr, "vibee bench: --decoder expects ar, wedlm or verify\n"); return 2; }
        } else {
            fprintf(stderr, "vibee bench: unknown option '%s' (see vibee bench --help)\n", a);
            return 2;
        }
    }
    int *threads = NULL, n_threads;
    if (threads_s) n_threads = cli_parse_int_list(threads_s, &threads);
    else {
        threads = malloc(sizeof *threads);
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads[0] = nc > 0 ? (int)nc : 1;
        n_threads = 1;
    }
    int *ks = NULL, n_ks = 0;
    if (kcost_s && (n_ks = cli_parse_int_list(kcost_s, &ks)) < 0) {
        fprintf(stderr, "vibee bench: --kcost expects a list like 1,2,4,8,16\n");
        return 2;
    }
    if (n_ks > 16) n_ks = 16;
    if (n_threads <= 0) {
        fprintf(stderr, "vibee bench: -t expects a list like 1,2\n");
        return 2;
    }
    char *blist = strdup(backends), *save = NULL;
    double first_decode[64] = {0}; /* per thread-count index: decode t/s of the first backend */
    bool header = false;
    int rc = 0, bi = 0;
    for (char *be = strtok_r(blist, ",", &save); be; be = strtok_r(NULL, ",", &save), bi++) {
        for (int ti = 0; ti < n_threads && ti < 64; ti++) {
            cli_model_opts o = mo;
            o.backend = be;
            o.threads = threads[ti];
            vb_model *model = NULL;
            vb_context *ctx = NULL;
            if (cli_open(&o, &model, &ctx)) { rc = 1; continue; }
            const vb_model_info *info = vb_model_get_info(model);
            double bw = 0;
            if (bandwidth && strcmp(be, "cuda") != 0) {
                vb_threadpool *tp = vb_threadpool_create(threads[ti] > 0 ? threads[ti] : 1);
                /* best of 10 passes (~15 ms each): on a shared machine best-of-3 often misses every
                   quiet window, and a low limit shows up as a fraction above 100% */
                bw = vb_membw_measure(tp, (size_t)512 << 20, 10);
                vb_threadpool_free(tp);
            }
            bench_result res;
            int st = run_config(ctx, (int)n_prompt, (int)n_gen, (int)reps, ks, n_ks, decoder, &res);
            if (st != VB_OK) {
                fprintf(stderr, "vibee bench: backend %s failed: %s: %s\n", be, vb_status_str(st), vb_context_error(ctx));
                rc = 1;
            } else {
                if (bi == 0) first_decode[ti] = res.decode_tps;
                double ratio = first_decode[ti] > 0 ? res.decode_tps / first_decode[ti] : 0;
                double limit = bw > 0 && info->weight_bytes > 0 ? bw * 1e9 / (double)info->weight_bytes : 0;
                if (json) {
                    printf("{\"model\":");
                    cli_json_string(stdout, info->name, strlen(info->name));
                    printf(",\"weight_type\":\"%s\",\"weight_bytes\":%lld,\"backend\":\"%s\",\"threads\":%d,"
                           "\"n_prompt\":%ld,\"n_gen\":%ld,\"reps\":%ld,\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f,"
                           "\"decode_vs_first_backend\":%.4f,\"bandwidth_gb_s\":%.2f,\"decode_limit_tok_s\":%.3f,"
                           "\"bandwidth_fraction\":%.4f",
                           info->weight_type, (long long)info->weight_bytes, be, threads[ti], n_prompt, n_gen,
                           reps, res.prefill_tps, res.decode_tps, ratio, bw, limit,
                           limit > 0 ? res.decode_tps / limit : 0);
                    if (n_ks) {
                        printf(",\"kcost\":{");
                        for (int j = 0; j < n_ks; j++) printf("%s\"%d\":%.4f", j ? "," : "", ks[j], res.kcost[j]);
                        printf("}");
                    }
                    if (decoder >= 0) printf(",\"decoder_tok_s\":%.3f,\"decoder_tokens_per_forward\":%.4f", res.decoder_tps, res.decoder_tpf);
                    printf("}\n");
                } else {
                    if (!header) {
                        printf("| model | type | MiB | backend | threads | pp%ld t/s | tg%ld t/s | tg vs first | BW GB/s | tg/limit |%s%s\n",
                               n_prompt, n_gen, n_ks ? " cost(K)/cost(1) |" : "", decoder >= 0 ? " decoder t/s | tok/fwd |" : "");
                        printf("|---|---|---|---|---|---|---|---|---|---|%s%s\n", n_ks ? "---|" : "", decoder >= 0 ? "---|---|" : "");
                        header = true;
                    }
                    printf("| %s | %s | %.1f | %s | %d | %.2f | %.2f | %.3f | %.1f | %.1f%% |", info->name,
                           info->weight_type, (double)info->weight_bytes / (1 << 20), be, threads[ti],
                           res.prefill_tps, res.decode_tps, ratio, bw, limit > 0 ? 100 * res.decode_tps / limit : 0);
                    if (n_ks) {
                        printf(" ");
                        for (int j = 0; j < n_ks; j++) printf("%s%d:%.2f", j ? " " : "", ks[j], res.kcost[j]);
                        printf(" |");
                    }
                    if (decoder >= 0) printf(" %.2f | %.2f |", res.decoder_tps, res.decoder_tpf);
                    printf("\n");
                }
                fflush(stdout);
            }
            vb_context_free(ctx);
            vb_model_free(model);
        }
    }
    free(blist);
    free(threads);
    free(ks);
    return rc;
}
