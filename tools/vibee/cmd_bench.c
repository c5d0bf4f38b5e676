/* cmd_bench.c - `vibee bench`: llama-bench-style measurements. For each backend, thread count
 * and depth (-d: tokens of context already in the KV, as llama-bench's -d): prefill speed (a -p
 * token prompt, or the tokens of --prompt-file), decode speed (-n single-token forwards), time to
 * first token (the prompt's prefill, whose last row gives the first token), all medians over -r
 * repetitions; the cost of a K-row forward relative to a 1-row one (--kcost); optionally a
 * decoder's end-to-end tokens/s (--decoder); decode as a fraction of the memory-bandwidth limit
 * measured in the same run (weights read per token / bandwidth); load time and memory (resident
 * set after the runs, and the process's peak). A markdown table by default, one JSON object per
 * configuration with --json. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "backends/cpu/membw.h"
#include "backends/cpu/threadpool.h"
#include "cli.h"
static void usage(void) {
    printf("usage: vibee bench [-m MODEL] [-b BACKEND[,BACKEND...]] [-p N_PROMPT] [-n N_GEN]\n"
           "                   [-d DEPTH[,DEPTH...]] [-t T[,T...]] [-r REPS] [--kcost K[,K...]]\n"
           "                   [--decoder ar|wedlm|verify] [--prompt-file FILE] [--no-bandwidth] [--json]\n"
           "  defaults: -b cpu -p 512 -n 128 -d 0 -t <cores> -r 5. Reports medians; with several backends\n"
           "  each row also gives its decode speed relative to the first backend at the same threads\n"
           "  and depth. -d D: prefill and decode after D tokens already in the KV (llama-bench's -d);\n"
           "  --prompt-file: the file's tokens are the prompt (-p then caps their number); ttft: the\n"
           "  prompt's prefill, whose last row gives the first token; rss: resident memory after the\n"
           "  configuration ran, peak: the process's peak so far. The context is sized to fit the\n"
           "  deepest run unless -c is given. Also takes the model options of vibee run (-c, --kv-type,\n"
           "  --batch-size, ...).\n");
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

/* Time one forward of k rows toks[0..k) (synthetic tokens when toks is NULL) at positions
   start..start+k-1 on seq 0, logits for the last row. */
static int timed_forward(vb_context *ctx, vb_batch *b, const vb_token *toks, int start, int k, int n_vocab,
                         double *sec) {
    vb_batch_clear(b);
    for (int i = 0; i < k; i++)
        vb_batch_add(b, toks ? toks[i] : bench_token(start + i, n_vocab), start + i, 0, i == k - 1);
    double t0 = vb_time_now();
    int st = vb_forward(ctx, b);
    *sec = vb_time_now() - t0;
    return st;
}

/* Prefill n tokens (toks, or synthetic) at positions start.. in chunks of max_batch; seconds. */
static int prefill(vb_context *ctx, vb_batch *b, const vb_token *toks, int start, int n, int max_batch,
                   int n_vocab, double *total) {
    int st = VB_OK;
    *total = 0;
    for (int done = 0; done < n && st == VB_OK; done += max_batch) {
        int k = n - done < max_batch ? n - done : max_batch;
        double sec = 0;
        st = timed_forward(ctx, b, toks ? toks + done : NULL, start + done, k, n_vocab, &sec);
        *total += sec;
    }
    return st;
}

typedef struct bench_result {
    double prefill_tps, decode_tps, ttft_ms, kcost[16], decoder_tps, decoder_tpf;
} bench_result;

/* prompt: [n_prompt] tokens of --prompt-file, or NULL for synthetic ones. */
static int run_config(vb_context *ctx, const vb_token *prompt, int n_prompt, int n_gen, int depth, int reps,
                      const int *ks, int n_ks, int decoder, bench_result *res) {
    const vb_model_info *info = vb_model_get_info(vb_context_model(ctx));
    int n_vocab = info->n_vocab, max_batch = vb_context_caps(ctx).max_batch;
    vb_batch *b = vb_batch_init(max_batch);
    double *tp = calloc((size_t)reps, sizeof *tp), *td = calloc((size_t)reps, sizeof *td);
    double *tt = calloc((size_t)reps, sizeof *tt);
    int st = b && tp && td && tt ? VB_OK : VB_ERR_NOMEM;
    memset(res, 0, sizeof *res);
    /* warm-up: one short forward */
    double sec;
    if (st == VB_OK) st = timed_forward(ctx, b, NULL, 0, 1, n_vocab, &sec);
    vb_kv_free_seq(ctx, 0);
    /* the context the runs start from: depth synthetic tokens (untimed) */
    if (st == VB_OK && depth > 0) st = prefill(ctx, b, NULL, 0, depth, max_batch, n_vocab, &sec);
    for (int r = 0; r < reps && st == VB_OK; r++) {
        double total = 0;
        st = prefill(ctx, b, prompt, depth, n_prompt, max_batch, n_vocab, &total);
        tp[r] = n_prompt > 0 && total > 0 ? n_prompt / total : 0;
        tt[r] = total * 1e3;
        vb_kv_truncate(ctx, 0, depth);
        /* decode: n_gen single-row forwards after the depth context (llama-bench's tg after -d) */
        total = 0;
        for (int i = 0; i < n_gen && st == VB_OK; i++) {
            st = timed_forward(ctx, b, NULL, depth + i, 1, n_vocab, &sec);
            total += sec;
        }
        td[r] = n_gen > 0 && total > 0 ? n_gen / total : 0;
        vb_kv_truncate(ctx, 0, depth);
    }
    if (st == VB_OK) {
        res->prefill_tps = median(tp, reps);
        res->decode_tps = median(td, reps);
        res->ttft_ms = n_prompt > 0 ? median(tt, reps) : 0;
    }
    /* cost(K): a K-row forward on top of the depth context plus 64 rows, relative to a 1-row one */
    if (st == VB_OK && n_ks > 0) {
        int ctx_rows = 64 < max_batch ? 64 : max_batch;
        st = timed_forward(ctx, b, NULL, depth, ctx_rows, n_vocab, &sec);
        ctx_rows += depth;
        /* the 1-row baseline is timed alternately with each K (tp: [reps] 1-row times, td: [reps]
           K-row times), so a slow stretch of a shared machine hits both sides of the ratio */
        for (int j = 0; j < n_ks && st == VB_OK; j++) {
            int k = ks[j] < max_batch ? ks[j] : max_batch;
            for (int r = 0; r < reps && st == VB_OK; r++) {
                st = timed_forward(ctx, b, NULL, ctx_rows, 1, n_vocab, &tp[r]);
                vb_kv_truncate(ctx, 0, ctx_rows);
                if (st == VB_OK) st = timed_forward(ctx, b, NULL, ctx_rows, k, n_vocab, &td[r]);
                vb_kv_truncate(ctx, 0, ctx_rows);
            }
            double base = median(tp, reps), m = median(td, reps);
            res->kcost[j] = base > 0 ? m / base : 0;
        }
    }
    vb_kv_free_seq(ctx, 0);
    if (st == VB_OK && decoder >= 0) { /* from an empty sequence: the prompt is depth + n_prompt tokens */
        const int n = n_gen > 0 ? n_gen : 64;
        int np = depth + n_prompt > 0 ? depth + n_prompt : 1;
        vb_token *p = malloc((size_t)np * sizeof *p);
        vb_token *out = malloc((size_t)n * sizeof *out);
        for (int i = 0; i < np && p; i++)
            p[i] = prompt && i >= depth ? prompt[i - depth] : bench_token(i, n_vocab);
        for (int r = 0; r < reps && p && out && st == VB_OK; r++) {
            vb_generate_params gp = vb_generate_default_params();
            gp.decoder = decoder;
            gp.n_predict = n;
            gp.stop_at_eos = false;
            vb_generate_stats gs;
            int32_t n_out = 0;
            st = vb_generate(ctx, p, np, &gp, out, n, &n_out, &gs);
            td[r] = gs.decode_seconds > 0 ? gs.n_generated / gs.decode_seconds : 0;
            res->decoder_tpf = gs.tokens_per_forward;
            vb_kv_free_seq(ctx, 0);
        }
        if (st == VB_OK) res->decoder_tps = median(td, reps);
        if (!p || !out) st = VB_ERR_NOMEM;
        free(p);
        free(out);
    }
    free(tp);
    free(td);
    free(tt);
    vb_batch_free(b);
    return st; /* VB_KV_FULL too: a run that did not fit measured nothing */
}

/* Resident memory now (MiB, /proc/self/statm) and the process's peak (MiB, getrusage). */
static void memory_mib(double *rss, double *peak) {
    *rss = *peak = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f && fscanf(f, "%ld %ld", &size, &resident) == 2) *rss = (double)resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
    if (f) fclose(f);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) *peak = (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
    if (*peak < *rss) *peak = *rss; /* the kernel updates its high-water mark lazily */
}

#ifdef VB_HAVE_JANSSON
static void print_json(const vb_model_info *info, const char *backend, int threads, int depth, int n_prompt,
                       long n_gen, long reps, const bench_result *res, double ratio, double bw, double limit,
                       double load_ms, double rss, double peak, const int *ks, int n_ks, int decoder) {
    json_t *o = json_object();
    json_object_set_new(o, "model", cli_json_text(info->name, strlen(info->name)));
    json_object_set_new(o, "weight_type", json_string(info->weight_type));
    json_object_set_new(o, "weight_bytes", json_integer(info->weight_bytes));
    json_object_set_new(o, "backend", cli_json_text(backend, strlen(backend)));
    json_object_set_new(o, "threads", json_integer(threads));
    json_object_set_new(o, "depth", json_integer(depth));
    json_object_set_new(o, "n_prompt", json_integer(n_prompt));
    json_object_set_new(o, "n_gen", json_integer(n_gen));
    json_object_set_new(o, "reps", json_integer(reps));
    json_object_set_new(o, "prefill_tok_s", json_real(res->prefill_tps));
    json_object_set_new(o, "decode_tok_s", json_real(res->decode_tps));
    json_object_set_new(o, "ttft_ms", json_real(res->ttft_ms));
    json_object_set_new(o, "decode_vs_first_backend", json_real(ratio));
    json_object_set_new(o, "bandwidth_gb_s", json_real(bw));
    json_object_set_new(o, "decode_limit_tok_s", json_real(limit));
    json_object_set_new(o, "bandwidth_fraction", json_real(limit > 0 ? res->decode_tps / limit : 0));
    json_object_set_new(o, "load_ms", json_real(load_ms));
    json_object_set_new(o, "rss_mib", json_real(rss));
    json_object_set_new(o, "peak_rss_mib", json_real(peak));
    if (n_ks) {
        json_t *k = json_object();
        for (int j = 0; j < n_ks; j++) {
            char key[16];
            snprintf(key, sizeof key, "%d", ks[j]);
            json_object_set_new(k, key, json_real(res->kcost[j]));
        }
        json_object_set_new(o, "kcost", k);
    }
    if (decoder >= 0) {
        json_object_set_new(o, "decoder_tok_s", json_real(res->decoder_tps));
        json_object_set_new(o, "decoder_tokens_per_forward", json_real(res->decoder_tpf));
    }
    cli_json_print(stdout, o);
    fputc('\n', stdout);
}
#endif

int cmd_bench(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    mo.n_seq_max = 1;
    const char *backends = "cpu", *threads_s = NULL, *kcost_s = NULL, *depth_s = NULL, *prompt_file = NULL;
    long n_prompt = 512, n_gen = 128, reps = 5;
    bool prompt_given = false;
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
        else if (!strcmp(a, "-d") || !strcmp(a, "--n-depth")) { if (!(depth_s = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--prompt-file")) { if (!(prompt_file = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-r")) {
            long x;
            if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, a[1] == 'r' ? 1 : 0, 1 << 20, &x)) {
                fprintf(stderr, "vibee bench: %s expects a%s integer\n", a, a[1] == 'r' ? " positive" : " non-negative");
                return 2;
            }
            if (a[1] == 'p') { n_prompt = x; prompt_given = true; }
            else if (a[1] == 'n') n_gen = x;
            else reps = x;
        } else if (!strcmp(a, "--decoder")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            decoder = cli_decoder_from_name(v);
            if (decoder < 0) { fprintf(stderr, "vibee bench: --decoder expects ar, wedlm or verify\n"); return 2; }
        } else {
            fprintf(stderr, "vibee bench: unknown option '%s' (see vibee bench --help)\n", a);
            return 2;
        }
    }
#ifndef VB_HAVE_JANSSON
    if (json) {
        fprintf(stderr, "vibee bench: --json needs jansson (apt-get install libjansson-dev, then rebuild)\n");
        return 2;
    }
#endif
    int *threads = NULL, n_threads;
    if (threads_s) n_threads = cli_parse_int_list(threads_s, &threads);
    else {
        threads = malloc(sizeof *threads);
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads[0] = nc > 0 ? (int)nc : 1;
        n_threads = 1;
    }
    if (n_threads <= 0) {
        fprintf(stderr, "vibee bench: -t expects a list like 1,2\n");
        return 2;
    }
    int *ks = NULL, n_ks = 0;
    if (kcost_s && (n_ks = cli_parse_int_list(kcost_s, &ks)) < 0) {
        fprintf(stderr, "vibee bench: --kcost expects a list like 1,2,4,8,16\n");
        free(threads);
        return 2;
    }
    if (n_ks > 16) n_ks = 16;
    int *depths = NULL, n_depths = 1;
    if (depth_s) n_depths = cli_parse_int_list(depth_s, &depths);
    else if ((depths = calloc(1, sizeof *depths))) n_depths = 1;
    int max_depth = 0;
    for (int j = 0; j < n_depths; j++) {
        if (depths[j] < 0) n_depths = -1;
        if (n_depths < 0) break;
        if (depths[j] > max_depth) max_depth = depths[j];
    }
    if (n_depths <= 0) {
        fprintf(stderr, "vibee bench: -d expects a list of non-negative depths like 0,1024,4096\n");
        free(threads);
        free(ks);
        return 2;
    }
    char *prompt_text = NULL;
    size_t prompt_len = 0;
    if (prompt_file && !(prompt_text = cli_read_prompt_file(prompt_file, &prompt_len))) {
        free(threads);
        free(ks);
        free(depths);
        return 1;
    }
    char *blist = strdup(backends), *save = NULL;
    double first_decode[64][16] = {{0}}; /* [thread-count index][depth index]: the first backend's decode t/s */
    bool header = false;
    int rc = 0, bi = 0;
    for (char *be = strtok_r(blist, ",", &save); be; be = strtok_r(NULL, ",", &save), bi++) {
        for (int ti = 0; ti < n_threads && ti < 64; ti++) {
            cli_model_opts o = mo;
            o.backend = be;
            o.threads = threads[ti];
            vb_model *model = NULL;
            vb_context *ctx = NULL;
            /* the deepest run needs depth + max(prompt, generated) rows (+ 64 + K for --kcost) */
            int max_k = 0;
            for (int j = 0; j < n_ks; j++) max_k = ks[j] > max_k ? ks[j] : max_k;
            long need = max_depth + (n_prompt > n_gen ? n_prompt : n_gen) + (n_ks ? 64 + max_k : 0) + 1;
            if (prompt_text) need = max_depth + (prompt_given ? n_prompt : (long)prompt_len + 2) + n_gen + 1;
            if (o.n_ctx == 0) o.n_ctx = need > 1 << 24 ? 1 << 24 : (int)need; /* -c not given: what the runs need */
            double t_load = vb_time_now();
            if (cli_open(&o, &model, &ctx)) { rc = 1; continue; }
            double load_ms = (vb_time_now() - t_load) * 1e3;
            const vb_model_info *info = vb_model_get_info(model);
            /* the prompt: the file's tokens (at most -p of them when -p is given), or synthetic */
            vb_token *ptoks = NULL;
            int np = (int)n_prompt;
            if (prompt_text) {
                int nt = vb_tokenize(model, prompt_text, prompt_len, true, false, NULL, 0);
                ptoks = nt > 0 ? malloc((size_t)nt * sizeof *ptoks) : NULL;
                if (!ptoks || vb_tokenize(model, prompt_text, prompt_len, true, false, ptoks, nt) != nt) {
                    fprintf(stderr, "vibee bench: cannot tokenize %s: %s\n", prompt_file, nt <= 0 ? "empty prompt" : "out of memory");
                    free(ptoks);
                    vb_context_free(ctx);
                    vb_model_free(model);
                    rc = 1;
                    continue;
                }
                np = prompt_given && n_prompt < nt ? (int)n_prompt : nt;
            }
            double bw = 0;
            if (bandwidth && strcmp(be, "cuda") != 0) {
                vb_threadpool *tp = vb_threadpool_create(threads[ti] > 0 ? threads[ti] : 1);
                /* best of 10 passes (~15 ms each): on a shared machine best-of-3 often misses every
                   quiet window, and a low limit shows up as a fraction above 100% */
                bw = vb_membw_measure(tp, (size_t)512 << 20, 10);
                vb_threadpool_free(tp);
            }
            for (int di = 0; di < n_depths; di++) {
                bench_result res;
                int st = run_config(ctx, ptoks, np, (int)n_gen, depths[di], (int)reps, ks, n_ks, decoder, &res);
                if (st != VB_OK) {
                    fprintf(stderr, "vibee bench: backend %s, depth %d failed: %s: %s\n", be, depths[di],
                            vb_status_str(st), vb_context_error(ctx));
                    rc = 1;
                    continue;
                }
                double rss, peak;
                memory_mib(&rss, &peak);
                if (bi == 0 && di < 16) first_decode[ti][di] = res.decode_tps;
                double first = di < 16 ? first_decode[ti][di] : 0;
                double ratio = first > 0 ? res.decode_tps / first : 0;
                double limit = bw > 0 && info->weight_bytes > 0 ? bw * 1e9 / (double)info->weight_bytes : 0;
                if (json) {
#ifdef VB_HAVE_JANSSON
                    print_json(info, be, threads[ti], depths[di], np, n_gen, reps, &res, ratio, bw, limit, load_ms,
                               rss, peak, ks, n_ks, decoder);
#endif
                } else {
                    if (!header) {
                        printf("| model | type | MiB | backend | threads | depth | pp%d t/s | tg%ld t/s | ttft ms | tg vs first |"
                               " BW GB/s | tg/limit | RSS MiB |%s%s\n",
                               np, n_gen, n_ks ? " cost(K)/cost(1) |" : "", decoder >= 0 ? " decoder t/s | tok/fwd |" : "");
                        printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|%s%s\n", n_ks ? "---|" : "",
                               decoder >= 0 ? "---|---|" : "");
                        header = true;
                    }
                    printf("| %s | %s | %.1f | %s | %d | %d | %.2f | %.2f | %.1f | %.3f | %.1f | %.1f%% | %.0f |", info->name,
                           info->weight_type, (double)info->weight_bytes / (1 << 20), be, threads[ti], depths[di],
                           res.prefill_tps, res.decode_tps, res.ttft_ms, ratio, bw,
                           limit > 0 ? 100 * res.decode_tps / limit : 0, rss);
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
            free(ptoks);
            vb_context_free(ctx);
            vb_model_free(model);
        }
    }
    free(blist);
    free(threads);
    free(ks);
    free(depths);
    free(prompt_text);
    return rc;
}
