/* membw.c - streaming-read bandwidth probe (see membw.h). Each thread sums its slice of the
 * buffer with wide loads into several independent accumulators (AVX2 when the CPU has it,
 * plain 64-bit adds otherwise) so the loads, not the adds, are the limit. */
#include "membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint8_t *buf;  /* [bytes] */
    size_t bytes;  /* multiple of 4096 */
    int fill;      /* 1: write the slice (first touch), 0: read it */
    int use_avx2;
    uint64_t sink[64]; /* per-thread result so the reads are not optimized away */
} membw_task;

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}
#endif

static uint64_t sum_portable(const uint8_t *p, size_t n) {
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) {
        s0 += q[i];
        s1 += q[i + 1];
        s2 += q[i + 2];
        s3 += q[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

static void membw_task_fn(void *arg, int ith, int nth) {
    membw_task *t = arg;
    size_t pages = t->bytes / 4096;
    size_t p0 = pages * (size_t)ith / (size_t)nth, p1 = pages * (size_t)(ith + 1) / (size_t)nth;
    uint8_t *p = t->buf + p0 * 4096;
    size_t n = (p1 - p0) * 4096;
    if (t->fill) {
        memset(p, 1 + ith, n);
        return;
    }
    uint64_t s;
#if defined(__x86_64__)
    if (t->use_avx2) s = sum_avx2(p, n);
    else
#endif
        s = sum_portable(p, n);
    t->sink[ith & 63] += s;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double vb_membw_measure(vb_threadpool *tp, size_t bytes, int reps) {
    bytes = (bytes + 4095) / 4096 * 4096;
    if (bytes == 0) return -1.0;
    membw_task t = {.buf = aligned_alloc(4096, bytes), .bytes = bytes, .fill = 1};
    if (!t.buf) return -1.0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    t.use_avx2 = __builtin_cpu_supports("avx2");
#endif
    vb_threadpool_run(tp, membw_task_fn, &t); /* first touch by the thread that reads */
    t.fill = 0;
    double best = 0.0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        double t0 = now_s();
        vb_threadpool_run(tp, membw_task_fn, &t);
        double dt = now_s() - t0;
        double gbs = (double)bytes / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    volatile uint64_t keep = t.sink[0];
    (void)keep;
    free(t.buf);
    return best;
}
