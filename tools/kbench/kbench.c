/* kbench.c - timing tool for the CPU kernels (not built by default, not a test):
 * memory bandwidth of a streaming read with 1 and 2 threads, then for a few matrix shapes and
 * types the time of vb_matmul with 1 X row (decode) as effective GB/s of weight read, and the
 * cost ratio of 16 rows to 1 row. Weights are cycled through copies totalling > 256 MiB so
 * every call streams them from DRAM, as a decode step does, not from the L3.
 *
 *   make BUILD=build-kernels build-kernels/libvibee.a
 *   cc -O2 -Iinclude -Isrc tools/kbench/kbench.c build-kernels/libvibee.a -lm -lpcre2-8 \
 *      -pthread -o build-kernels/kbench
 *   build-kernels/kbench [portable|avx2|avx512|auto] [threads, e.g. 1,2,4] [hot]
 * ("hot": one weight copy that stays in cache, to see the compute cost alone)
 *   build-kernels/kbench rows [level] [threads] [reps] [types, e.g. q8_0,q4_0,f16]
 * (multi-row cost: for the shapes of a 0.5-1.5B model incl. a 151936-row output head, the
 *  median over `reps` of the time per call with K = 1, 2, 4, 8, 16, 32 X rows and K / 1 ratios;
 *  1 thread: CPU time of the calling thread, more threads: wall time; weights cycled through
 *  copies > 256 MiB as in decode)
 *   build-kernels/kbench one n_in n_out type K calls [level]
 * (one product, weights hot: thread CPU time and cycles per (W row, block, X row), the clock
 *  estimated from a dependent-add chain, for machines where perf has no counters)
 * (or without the library: cc -O2 -static -Iinclude -Isrc tools/kbench/kbench.c src/types.c
 *  src/backends/cpu/{kernels_quant,kernels_matmul,kernels_avx2,kernels_avx512,threadpool,membw}.c
 *  -lm -pthread). With one thread, "cpu us" is the thread's CPU time per call (immune to
 * preemption on a shared machine; wall time is the other column).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vibee.h"
#include "backends/cpu/kernels.h"
#include "backends/cpu/membw.h"
#include "backends/cpu/threadpool.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 8388608.0f - 1.0f;
}

/* Best-of-3 mean seconds per call (wall, and CPU time of the calling thread) over `calls`
 * calls cycling through n_copies weight copies. */
static double time_matmul(vb_threadpool *tp, uint32_t type, const uint8_t *Wall, size_t mat_bytes,
                          int n_copies, int64_t n_in, int64_t n_out, const float *X, int64_t n_rows,
                          float *Y, int calls, double *cpu_best) {
    double best = 1e30;
    *cpu_best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s(), c0 = cpu_s();
        for (int c = 0; c < calls; c++)
            vb_matmul(tp, type, Wall + (size_t)(c % n_copies) * mat_bytes, n_in, n_out, X, n_rows, Y);
        double dt = (now_s() - t0) / calls, dc = (cpu_s() - c0) / calls;
        if (dt < best) best = dt;
        if (dc < *cpu_best) *cpu_best = dc;
    }
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over reps of the per-call time (thread CPU time if use_cpu, else wall) of `calls`
 * calls cycling through n_copies weight copies. */
static double median_call(vb_threadpool *tp, uint32_t type, const uint8_t *Wall, size_t mat_bytes,
                          int n_copies, int64_t n_in, int64_t n_out, const float *X, int64_t n_rows,
                          float *Y, int calls, int reps, int use_cpu) {
    double t[64];
    if (reps > 64) reps = 64;
    vb_matmul(tp, type, Wall, n_in, n_out, X, n_rows, Y); /* warm the scratch */
    for (int rep = 0; rep < reps; rep++) {
        double t0 = use_cpu ? cpu_s() : now_s();
        for (int c = 0; c < calls; c++)
            vb_matmul(tp, type, Wall + (size_t)(c % n_copies) * mat_bytes, n_in, n_out, X, n_rows, Y);
        t[rep] = ((use_cpu ? cpu_s() : now_s()) - t0) / calls;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

static int bench_rows(int argc, char **argv) {
    int n_threads = argc > 3 ? atoi(argv[3]) : 1, reps = argc > 4 ? atoi(argv[4]) : 5;
    const char *type_list = argc > 5 ? argv[5] : "q8_0,q4_0,f16,q4_k,q6_k";
    if (n_threads < 1) n_threads = 1;
    if (reps < 1) reps = 1;
    vb_threadpool *tp = n_threads > 1 ? vb_threadpool_create(n_threads) : NULL;
    const struct { int64_t n_in, n_out; } shapes[] = {
        {1024, 3072}, {3072, 1024}, {896, 4864}, {1024, 151936}};
    const struct { const char *name; uint32_t type; } types[] = {
        {"q8_0", VB_TYPE_Q8_0}, {"q4_0", VB_TYPE_Q4_0}, {"f16", VB_TYPE_F16},
        {"q4_k", VB_TYPE_Q4_K}, {"q6_k", VB_TYPE_Q6_K}};
    const int64_t ks[] = {1, 2, 4, 8, 16, 32};
    enum { NK = sizeof ks / sizeof ks[0] };
    printf("kernel path %s, %d thread(s), %s, median of %d\n", vb_kernels_level_name(vb_kernels_level()),
           n_threads, n_threads > 1 ? "wall time" : "thread CPU time", reps);
    printf("| shape | type | K=1 us | K=2 | K=4 | K=8 | K=16 | K=32 | (ratio to K=1) |\n|---|---|---|---|---|---|---|---|---|\n");
    unsigned seed = 7;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n_in = shapes[s].n_in, n_out = shapes[s].n_out;
        float *X = malloc((size_t)(32 * n_in) * sizeof(float)), *Y = malloc((size_t)(32 * n_out) * sizeof(float));
        float *wf = malloc((size_t)n_in * sizeof(float));
        if (!X || !Y || !wf) return 1;
        for (int64_t i = 0; i < 32 * n_in; i++) X[i] = frand(&seed);
        for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++) {
            if (!strstr(type_list, types[ty].name)) continue;
            uint32_t type = types[ty].type;
            int64_t rb = vb_type_row_bytes(type, n_in);
            if (rb < 0) continue;
            size_t mat_bytes = (size_t)(rb * n_out);
            int n_copies = (int)(((size_t)256 << 20) / mat_bytes) + 1;
            uint8_t *Wall = malloc(mat_bytes * (size_t)n_copies);
            if (!Wall) return 1;
            for (int64_t o = 0; o < n_out; o++) {
                for (int64_t i = 0; i < n_in; i++) wf[i] = frand(&seed);
                vb_quantize_row(type, wf, Wall + o * rb, n_in);
            }
            for (int c = 1; c < n_copies; c++) memcpy(Wall + c * mat_bytes, Wall, mat_bytes);
            double t[NK];
            for (int k = 0; k < NK; k++) {
                int calls = n_copies < 4 ? 4 : n_copies;
                t[k] = median_call(tp, type, Wall, mat_bytes, n_copies, n_in, n_out, X, ks[k], Y, calls,
                                   reps, n_threads == 1);
            }
            printf("| %lldx%lld | %s | %.0f |", (long long)n_in, (long long)n_out, types[ty].name, t[0] * 1e6);
            for (int k = 1; k < NK; k++) printf(" %.0f (%.2fx) |", t[k] * 1e6, t[k] / t[0]);
            printf("\n");
            fflush(stdout);
            free(Wall);
        }
        free(X), free(Y), free(wf);
    }
    vb_threadpool_free(tp);
    return 0;
}

/* Clock estimate (GHz) from a chain of dependent adds (1 cycle each), in thread CPU time:
 * converts times to cycles where perf's counters are not available (VMs). */
static double ghz_estimate(void) {
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        unsigned long long x = 0, n = 50000000ull;
        double c0 = cpu_s();
        for (unsigned long long i = 0; i < n; i++) __asm__ volatile("add $1, %0" : "+r"(x));
        double g = (double)n / (cpu_s() - c0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

/* One product repeated, weights hot (in cache), thread CPU time and cycles per (W row,
 * block, X row): kbench one n_in n_out type K calls [portable|avx2|avx512]. */
static int bench_one(int argc, char **argv) {
    if (argc < 7) return 1;
    if (argc > 7) vb_kernels_force_level(strcmp(argv[7], "portable") == 0 ? 0 : strcmp(argv[7], "avx2") == 0 ? 1 : 2);
    int64_t n_in = atoll(argv[2]), n_out = atoll(argv[3]), K = atoll(argv[5]);
    int calls = atoi(argv[6]);
    int t_id = vb_type_from_name(argv[4]); /* any type with kernels */
    if (t_id < 0 || !vb_type_get((uint32_t)t_id)->supported) {
        fprintf(stderr, "unknown type %s\n", argv[4]);
        return 1;
    }
    uint32_t type = (uint32_t)t_id;
    int64_t rb = vb_type_row_bytes(type, n_in);
    if (rb < 0 || K < 1) return 1;
    unsigned seed = 3;
    float *X = malloc((size_t)(K * n_in) * sizeof(float)), *Y = malloc((size_t)(K * n_out) * sizeof(float));
    float *wf = malloc((size_t)n_in * sizeof(float));
    uint8_t *W = malloc((size_t)(rb * n_out));
    if (!X || !Y || !wf || !W) return 1;
    for (int64_t i = 0; i < K * n_in; i++) X[i] = frand(&seed);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) wf[i] = frand(&seed);
        if (vb_quantize_row(type, wf, W + o * rb, n_in) == VB_ERR_UNSUPPORTED) /* no quantizer: */
            for (int64_t i = 0; i < rb; i++) W[o * rb + i] = (uint8_t)(rand() & 0x3B); /* finite f16s */
    }
    double ghz = ghz_estimate(), best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double c0 = cpu_s();
        for (int c = 0; c < calls; c++) vb_matmul(NULL, type, W, n_in, n_out, X, K, Y);
        double t = (cpu_s() - c0) / calls;
        if (t < best) best = t;
    }
    int64_t bs = vb_type_get(type)->block_elems;
    printf("%s %lldx%lld K=%lld: %.1f us per call (best of 5, thread CPU), ~%.2f GHz, %.2f cycles per (W row, block, X row)\n",
           argv[4], (long long)n_in, (long long)n_out, (long long)K, best * 1e6, ghz,
           best * ghz * 1e9 / ((double)n_out * (double)(n_in / bs) * (double)K));
    free(X), free(Y), free(wf), free(W);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "one") == 0) return bench_one(argc, argv);
    if (argc > 1 && strcmp(argv[1], "rows") == 0) {
        if (argc > 2 && strcmp(argv[2], "auto") != 0)
            vb_kernels_force_level(strcmp(argv[2], "portable") == 0 ? 0 : strcmp(argv[2], "avx2") == 0 ? 1 : 2);
        return bench_rows(argc, argv);
    }
    if (argc > 1 && strcmp(argv[1], "auto") != 0) {
        int lev = strcmp(argv[1], "portable") == 0 ? 0 : strcmp(argv[1], "avx2") == 0 ? 1 : 2;
        vb_kernels_force_level(lev);
    }
    int threads[8] = {1, 2}, n_tp = 2;
    int hot = argc > 3 && strcmp(argv[3], "hot") == 0; /* weights stay in cache: compute cost */
    if (argc > 2) {
        n_tp = 0;
        for (char *p = argv[2]; *p && n_tp < 8;) {
            threads[n_tp++] = (int)strtol(p, &p, 10);
            if (*p == ',') p++;
        }
    }
    printf("cpu features: %s\nkernel path: %s\n", vb_cpu_features(),
           vb_kernels_level_name(vb_kernels_level()));

    vb_threadpool *tps[8];
    for (int t = 0; t < n_tp; t++) {
        tps[t] = vb_threadpool_create(threads[t]);
        if (!tps[t]) return 1;
        printf("membw %d thread(s): %.1f GB/s (512 MiB streaming read, best of 5)\n", threads[t],
               vb_membw_measure(tps[t], (size_t)512 << 20, 5));
    }

    const struct { int64_t n_in, n_out; } shapes[] = {{896, 4864}, {4864, 896}, {1024, 3072}, {3072, 1024}};
    const uint32_t types[] = {VB_TYPE_Q8_0, VB_TYPE_Q4_0, VB_TYPE_F16, VB_TYPE_Q4_K, VB_TYPE_Q6_K};
    printf("\n| shape (n_in x n_out) | type | threads | 1-row us | GB/s | 1-row cpu us | 16-row us | 16-row cpu us | t16/t1 |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    unsigned seed = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n_in = shapes[s].n_in, n_out = shapes[s].n_out;
        float *X = malloc((size_t)(16 * n_in) * sizeof(float)), *Y = malloc((size_t)(16 * n_out) * sizeof(float));
        float *wf = malloc((size_t)n_in * sizeof(float));
        for (int64_t i = 0; i < 16 * n_in; i++) X[i] = frand(&seed);
        for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++) {
            uint32_t type = types[ty];
            int64_t rb = vb_type_row_bytes(type, n_in);
            if (rb < 0) continue; /* n_in not a multiple of this type's block */
            size_t mat_bytes = (size_t)(rb * n_out);
            int n_copies = hot ? 1 : (int)(((size_t)256 << 20) / mat_bytes) + 1;
            int calls = hot ? 200 : n_copies;
            uint8_t *Wall = malloc(mat_bytes * (size_t)n_copies);
            if (!Wall) return 1;
            for (int64_t o = 0; o < n_out; o++) {
                for (int64_t i = 0; i < n_in; i++) wf[i] = frand(&seed);
                vb_quantize_row(type, wf, Wall + o * rb, n_in);
            }
            for (int c = 1; c < n_copies; c++) memcpy(Wall + c * mat_bytes, Wall, mat_bytes);
            for (int t = 0; t < n_tp; t++) {
                double c1, c16;
                double t1 = time_matmul(tps[t], type, Wall, mat_bytes, n_copies, n_in, n_out, X, 1, Y,
                                        calls, &c1);
                double t16 = time_matmul(tps[t], type, Wall, mat_bytes, n_copies, n_in, n_out, X, 16, Y,
                                         calls / 4 + 1, &c16);
                printf("| %lldx%lld | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |\n", (long long)n_in,
                       (long long)n_out, vb_type_get(type)->name, threads[t], t1 * 1e6,
                       mat_bytes / t1 / 1e9, c1 * 1e6, t16 * 1e6, c16 * 1e6, t16 / t1);
                fflush(stdout);
            }
            free(Wall);
        }
        free(X), free(Y), free(wf);
    }
    for (int t = 0; t < n_tp; t++) vb_threadpool_free(tps[t]);
    return 0;
}
