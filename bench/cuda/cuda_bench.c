/* cuda_bench.c - measurements of the `cuda` backend, run by scripts/gpu_check.sh on a GPU machine:
 *   1. the device's read bandwidth (a kernel reading a 4 GiB buffer with 16-byte loads) and a
 *      device-to-device copy for comparison;
 *   2. per backend-option variant (graph / own GEMV / programmatic dependent launch): decode tokens/s at batch 1 (single-row
 *      forwards with logits) as a fraction of that bandwidth (weights read per token / time);
 *   3. the cost of a K-row forward on top of a context, K = 1, 2, 4, 8, 16, 32, with logits for
 *      every row (what verify / WeDLM need) and for the last row only.
 *   4. with --decoders: AR / WeDLM / verify through vb_generate on cuda and cpu.
 * Prints a markdown report on stdout. Usage: cuda_bench MODEL.gguf [N_DECODE] [JSON_OUT]
 * Build: cc -Iinclude -Isrc -I$CUDA/include bench/cuda/cuda_bench.c BUILD/libvibee.a (libs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "backends/cuda/cuda_kernels.h"
#include "vibee.h"

#define CHECK_CUDA(call)                                                                      \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "cuda_bench: %s: %s\n", #call, cudaGetErrorString(e_));          \
            return -1.0;                                                                      \
        }                                                                                     \
    } while (0)

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* GB/s of the read probe (copy = 0) or of cudaMemcpy device-to-device, read + write (copy = 1). */
static double bandwidth(int copy) {
    const size_t bytes = (size_t)4 << 30;
    void *buf = NULL, *dst = NULL;
    float *sink = NULL;
    CHECK_CUDA(cudaMalloc(&buf, bytes));
    CHECK_CUDA(cudaMalloc((void **)&sink, 1024 * sizeof(float)));
    if (copy) CHECK_CUDA(cudaMalloc(&dst, bytes / 2));
    CHECK_CUDA(cudaMemset(buf, 0x5a, bytes)); /* not zeros */
    cudaEvent_t a, b;
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
    double t[12];
    for (int i = 0; i < 14; i++) {
        CHECK_CUDA(cudaEventRecord(a, 0));
        if (copy) CHECK_CUDA(cudaMemcpyAsync(dst, buf, bytes / 2, cudaMemcpyDeviceToDevice, 0));
        else CHECK_CUDA(vb_cuda_read_probe(0, buf, (int64_t)bytes, sink, 1024));
        CHECK_CUDA(cudaEventRecord(b, 0));
        CHECK_CUDA(cudaEventSynchronize(b));
        float ms = 0;
        CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
        if (i >= 2) t[i - 2] = ms * 1e-3;
    }
    double s = median(t, 12);
    cudaFree(buf);
    cudaFree(sink);
    if (dst) cudaFree(dst);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return (double)bytes / s / 1e9; /* copy: bytes/2 read + bytes/2 written */
}

static vb_token bench_token(int i, int n_vocab) {
    return (vb_token)((1103515245u * (unsigned)(i + 7) + 12345u) % (unsigned)n_vocab);
}

/* One forward of k rows at positions start.. on seq 0, logits for all rows (all = 1), the last
 * row (0) or none (-1). */
static int forward_rows(vb_context *c, vb_batch *b, int start, int k, int n_vocab, int all) {
    vb_batch_clear(b);
    for (int i = 0; i < k; i++)
        vb_batch_add(b, bench_token(start + i, n_vocab), start + i, 0,
                     all == 1 || (all == 0 && i == k - 1));
    return vb_forward(c, b);
}

static int run_variant(vb_model *m, const char *opts, int n_decode, double bw_read,
                       FILE *json) {
    const vb_model_info *info = vb_model_get_info(m);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cuda";
    cp.backend_options = opts;
    cp.n_ctx = 2048;
    cp.n_seq_max = 4;
    cp.n_batch_max = 128;
    cp.kv_type = VB_KV_F16;
    vb_context *c = NULL;
    char err[512];
    double t0 = vb_time_now();
    if (vb_context_init(m, &cp, &c, err, sizeof err) != VB_OK) {
        fprintf(stderr, "cuda_bench: %s\n", err);
        return 1;
    }
    double t_load = vb_time_now() - t0;
    vb_batch *b = vb_batch_init(128);
    const int n_prompt = 64, nv = info->n_vocab;
    /* prefill (twice: the first captures graphs / warms up cuBLAS) */
    double t_prefill = 0;
    for (int rep = 0; rep < 2; rep++) {
        vb_kv_free_seq(c, 0);
        t0 = vb_time_now();
        if (forward_rows(c, b, 0, n_prompt, nv, 0) != VB_OK) goto fail;
        t_prefill = vb_time_now() - t0;
    }
    /* decode: single rows with logits; first 8 are warm-up */
    double *dt = malloc((size_t)n_decode * sizeof *dt);
    int pos = n_prompt;
    for (int i = 0; i < n_decode + 8; i++, pos++) {
        t0 = vb_time_now();
        if (forward_rows(c, b, pos, 1, nv, 1) != VB_OK) {
            free(dt);
            goto fail;
        }
        if (i >= 8) dt[i - 8] = vb_time_now() - t0;
    }
    double t_tok = median(dt, n_decode);
    free(dt);
    double bytes = (double)info->weight_bytes;
    double frac = bytes / t_tok / 1e9 / bw_read;
    printf("| %-16s | %7.1f | %7.3f | %8.0f | %5.1f%% | %5.2f s |\n", opts, 1.0 / t_tok,
           t_tok * 1e3, n_prompt / t_prefill, 100.0 * frac, t_load);
    fprintf(json,
            "{\"variant\":\"%s\",\"decode_tok_s\":%.2f,\"ms_per_token\":%.4f,\"prefill_tok_s\":%.1f,"
            "\"weight_bytes\":%lld,\"bw_read_GBs\":%.1f,\"fraction_of_bw\":%.4f",
            opts, 1.0 / t_tok, t_tok * 1e3, n_prompt / t_prefill, (long long)info->weight_bytes,
            bw_read, frac);
    /* cost of K rows on top of the current context (pos rows), rolled back after each */
    static const int ks[] = {1, 2, 4, 8, 16, 32};
    double base_all = 0, base_last = 0;
    printf("\n  K-row forward at context %d (%s): ms with logits for all rows / last row only, "
           "and relative to K=1\n", pos, opts);
    fprintf(json, ",\"kcost\":[");
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        int k = ks[ki];
        double ta[20], tl[20];
        for (int all = 0; all < 2; all++) {
            for (int rep = 0; rep < 23; rep++) {
                t0 = vb_time_now();
                if (forward_rows(c, b, pos, k, nv, all) != VB_OK) goto fail;
                double t = vb_time_now() - t0;
                vb_kv_truncate(c, 0, pos);
                if (rep >= 3) (all ? ta : tl)[rep - 3] = t;
            }
        }
        double ma = median(ta, 20), ml = median(tl, 20);
        if (k == 1) base_all = ma, base_last = ml;
        printf("  K=%2d: %7.3f ms (x%.2f) | %7.3f ms (x%.2f)\n", k, ma * 1e3, ma / base_all,
               ml * 1e3, ml / base_last);
        fprintf(json, "%s{\"k\":%d,\"ms_all_logits\":%.4f,\"ms_last_logits\":%.4f}",
                ki ? "," : "", k, ma * 1e3, ml * 1e3);
    }
    fprintf(json, "]");
    {   /* K = 1 without logits: the output head and the logits download left out */
        double tn[20];
        for (int rep = 0; rep < 23; rep++) {
            t0 = vb_time_now();
            if (forward_rows(c, b, pos, 1, nv, -1) != VB_OK) goto fail;
            double t = vb_time_now() - t0;
            vb_kv_truncate(c, 0, pos);
            if (rep >= 3) tn[rep - 3] = t;
        }
        double mn = median(tn, 20);
        printf("  K= 1 without logits: %7.3f ms\n", mn * 1e3);
        fprintf(json, ",\"ms_k1_no_logits\":%.4f", mn * 1e3);
    }
    fprintf(json, "}\n");
    printf("\n");
    vb_batch_free(b);
    vb_context_free(c);
    return 0;
fail:
    fprintf(stderr, "cuda_bench: forward failed: %s\n", vb_context_error(c));
    vb_batch_free(b);
    vb_context_free(c);
    return 1;
}

/* AR, WeDLM and verify decoding of the same prompt on backends cuda and cpu (library API, so it
 * works where the CLI does not build): decode tokens/s, tokens per forward, and whether the
 * output equals the backend's AR output and cuda's AR equals cpu's. */
static int run_decoders(const char *path) {
    vb_model *m = NULL;
    char err[512];
    vb_model_params mp = vb_model_default_params();
    if (vb_model_load(path, &mp, &m, err, sizeof err) != VB_OK) {
        fprintf(stderr, "cuda_bench: %s\n", err);
        return 1;
    }
    const char *text = "import os\nimport sys\n\ndef main(";
    vb_token prompt[64], out[2][3][256];
    int n_prompt = vb_tokenize(m, text, strlen(text), true, false, prompt, 64), n_out[2][3] = {{0}};
    const char *backends[2] = {"cuda", "cpu"}, *decs[3] = {"ar", "wedlm", "verify"};
    printf("decoders on %s, prompt %d tokens, 200 new tokens, greedy:\n\n", path, n_prompt);
    printf("| backend | decoder | decode tok/s | tokens/forward | generated | same as AR |\n");
    printf("|---|---|---|---|---|---|\n");
    for (int bi = 0; bi < 2; bi++) {
        for (int d = 0; d < 3; d++) {
            vb_context_params cp = vb_context_default_params();
            cp.backend = backends[bi];
            cp.n_ctx = 512;
            cp.n_threads = 8;
            vb_context *c = NULL;
            if (vb_context_init(m, &cp, &c, err, sizeof err) != VB_OK) {
                printf("| %s | %s | failed: %s | | | |\n", backends[bi], decs[d], err);
                continue;
            }
            vb_generate_params gp = vb_generate_default_params();
            gp.decoder = d == 0 ? VB_DECODER_AR : d == 1 ? VB_DECODER_WEDLM : VB_DECODER_VERIFY;
            gp.n_predict = 200;
            gp.stop_at_eos = false;
            vb_generate_stats gs;
            memset(&gs, 0, sizeof gs);
            int st = vb_generate(c, prompt, n_prompt, &gp, out[bi][d], 256, &n_out[bi][d], &gs);
            int same = n_out[bi][d] == n_out[bi][0] &&
                       !memcmp(out[bi][d], out[bi][0], (size_t)n_out[bi][d] * sizeof(vb_token));
            if (st < 0)
                printf("| %s | %s | failed: %s | | | |\n", backends[bi], decs[d], vb_context_error(c));
            else
                printf("| %s | %s | %.1f | %.2f | %d | %s |\n", backends[bi], decs[d],
                       gs.decode_seconds > 0 ? gs.n_generated / gs.decode_seconds : 0.0,
                       gs.tokens_per_forward, gs.n_generated, same ? "yes" : "no");
            vb_context_free(c);
        }
    }
    int equal = n_out[0][0] == n_out[1][0] &&
                !memcmp(out[0][0], out[1][0], (size_t)n_out[0][0] * sizeof(vb_token));
    printf("\ncuda AR output equals cpu AR output: %s (%d tokens)\n", equal ? "yes" : "no",
           n_out[0][0]);
    vb_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cuda_bench MODEL.gguf [N_DECODE] [JSON_OUT]\n"
                        "       cuda_bench --decoders MODEL.gguf\n");
        return 2;
    }
    if (!strcmp(argv[1], "--decoders")) return argc > 2 ? run_decoders(argv[2]) : 2;
    int n_decode = argc > 2 ? atoi(argv[2]) : 128;
    if (n_decode < 8) n_decode = 8;
    FILE *json = fopen(argc > 3 ? argv[3] : "/dev/null", "w");
    if (!json) return 2;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        fprintf(stderr, "cuda_bench: no CUDA device\n");
        return 1;
    }
    double bw_read = bandwidth(0), bw_copy = bandwidth(1);
    printf("device: %s, %d SMs, %.0f MiB; read probe %.0f GB/s, device-to-device copy %.0f GB/s "
           "(read + write)\n", prop.name, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / 1048576.0, bw_read, bw_copy);
    fprintf(json, "{\"device\":\"%s\",\"bw_read_GBs\":%.1f,\"bw_copy_GBs\":%.1f}\n", prop.name,
            bw_read, bw_copy);
    vb_model *m = NULL;
    char err[512];
    vb_model_params mp = vb_model_default_params();
    if (vb_model_load(argv[1], &mp, &m, err, sizeof err) != VB_OK) {
        fprintf(stderr, "cuda_bench: %s\n", err);
        return 1;
    }
    const vb_model_info *in = vb_model_get_info(m);
    printf("model: %s (%s, %s), %d layers, n_embd %d, %lld params, %.1f MB of weights read per "
           "token\n\n", argv[1], in->arch, in->weight_type, in->n_layer, in->n_embd,
           (long long)in->n_params, in->weight_bytes / 1e6);
    printf("| variant          | tok/s   | ms/tok  | prefill  | of BW  | load    |\n");
    printf("|------------------|---------|---------|----------|--------|---------|\n");
    const char *variants[] = {"graph=1,gemv=1,pdl=1", "gemv_rows=8,pdl=1", "gemv=0,pdl=1",
                              "graph=1,gemv=1,pdl=0", "graph=0,gemv=0,pdl=0"};
    int rc = 0;
    for (int v = 0; v < 5; v++) rc |= run_variant(m, variants[v], n_decode, bw_read, json);
    vb_model_free(m);
    fclose(json);
    return rc;
}
