/* kernels_matmul.c - the optimized matrix product vb_matmul: run-time CPU dispatch (AVX-512
 * VNNI, AVX2/FMA/F16C, portable C), activation quantization into a per-thread scratch buffer
 * that is reused across calls, and the split of W rows across the thread pool. Also the
 * portable path itself: dequantize one W row into floats, then dot it with every X row. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../include/vibee.h"
#include "kernels_internal.h"

/* --------------------------------------------------------------- CPU features, dispatch */

static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static int cpu_level = VB_KLEVEL_PORTABLE; /* best level this CPU supports */
static char cpu_feature_names[160];
static _Atomic int forced_level = -1; /* -1: none */

static void detect_features(void) {
    cpu_feature_names[0] = '\0';
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    struct { const char *name; int on; } f[] = {
        {"avx2", __builtin_cpu_supports("avx2")},
        {"fma", __builtin_cpu_supports("fma")},
        {"f16c", 0}, /* filled below: not every compiler knows the name */
        {"avx512f", __builtin_cpu_supports("avx512f")},
        {"avx512bw", __builtin_cpu_supports("avx512bw")},
        {"avx512vl", __builtin_cpu_supports("avx512vl")},
        {"avx512vnni", __builtin_cpu_supports("avx512vnni")},
        {"avx512bf16", __builtin_cpu_supports("avx512bf16")},
    };
    /* F16C: CPUID leaf 1, ECX bit 29 (AVX2 CPUs all have it, but check). */
    unsigned a = 1, b, c = 0, d;
    __asm__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    f[2].on = (c >> 29) & 1;
    size_t len = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].on) continue;
        int w = snprintf(cpu_feature_names + len, sizeof cpu_feature_names - len, "%s%s",
                         len ? " " : "", f[i].name);
        if (w > 0 && (size_t)w < sizeof cpu_feature_names - len) len += (size_t)w;
    }
    if (f[0].on && f[1].on && f[2].on) {
        cpu_level = VB_KLEVEL_AVX2;
        if (f[3].on && f[4].on && f[5].on && f[6].on) cpu_level = VB_KLEVEL_AVX512;
    }
#endif
}

const char *vb_cpu_features(void) {
    pthread_once(&features_once, detect_features);
    return cpu_feature_names;
}

int vb_kernels_max_level(void) {
    pthread_once(&features_once, detect_features);
    return cpu_level;
}

int vb_kernels_force_level(int level) {
    pthread_once(&features_once, detect_features);
    if (level < 0) {
        atomic_store(&forced_level, -1);
        return cpu_level;
    }
    if (level > cpu_level) level = cpu_level;
    atomic_store(&forced_level, level);
    return level;
}

void vb_kernels_force_portable(bool on) { vb_kernels_force_level(on ? VB_KLEVEL_PORTABLE : -1); }

int vb_kernels_level(void) {
    pthread_once(&features_once, detect_features);
    int f = atomic_load(&forced_level);
    return f >= 0 ? f : cpu_level;
}

const char *vb_kernels_level_name(int level) {
    switch (level) {
    case VB_KLEVEL_AVX512: return "avx512";
    case VB_KLEVEL_AVX2: return "avx2";
    default: return "portable";
    }
}

/* --------------------------------------------------------------- portable path */

static float dot_f32(const float *a, const float *b, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void mm_rows_portable(const vb_mm_args *a, int64_t o0, int64_t o1) {
    float *w = NULL; /* [n_in] one dequantized W row */
    if (a->type != VB_TYPE_F32) {
        w = malloc((size_t)a->n_in * sizeof(float));
        if (!w) { /* out of memory: fall back to one element at a time */
            float wf[VB_QK_K];
            const vb_type_traits *t = vb_type_get(a->type);
            int64_t be = t->block_elems, bb = t->block_bytes;
            int64_t step = be > 1 ? be : VB_QK_K;
            for (int64_t o = o0; o < o1; o++)
                for (int64_t r = 0; r < a->n_rows; r++) a->Y[r * a->n_out + o] = 0.0f;
            for (int64_t o = o0; o < o1; o++) {
                const uint8_t *wrow = a->W + o * a->row_bytes;
                for (int64_t i = 0; i < a->n_in; i += step) {
                    int64_t m = a->n_in - i < step ? a->n_in - i : step;
                    vb_dequantize_row(a->type, wrow + i / be * bb, wf, m);
                    for (int64_t r = 0; r < a->n_rows; r++)
                        a->Y[r * a->n_out + o] += dot_f32(wf, a->X + r * a->n_in + i, m);
                }
            }
            return;
        }
    }
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *wrow = a->W + o * a->row_bytes;
        const float *wf = (const float *)wrow;
        if (w) {
            vb_dequantize_row(a->type, wrow, w, a->n_in);
            wf = w;
        }
        for (int64_t r = 0; r < a->n_rows; r++)
            a->Y[r * a->n_out + o] = dot_f32(wf, a->X + r * a->n_in, a->n_in);
    }
    free(w);
}

/* --------------------------------------------------------------- per-thread X8 scratch */

/* One buffer per calling thread, grown on demand, freed when the thread exits (main thread:
 * stays reachable through the thread-local pointer until exit). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local void *scratch_buf;
static _Thread_local size_t scratch_cap;

static void scratch_key_init(void) { pthread_key_create(&scratch_key, free); }

static void *scratch_get(size_t bytes) {
    if (bytes <= scratch_cap) return scratch_buf;
    pthread_once(&scratch_once, scratch_key_init);
    free(scratch_buf);
    scratch_cap = 0;
    scratch_buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    pthread_setspecific(scratch_key, scratch_buf);
    if (scratch_buf) scratch_cap = bytes;
    return scratch_buf;
}

/* --------------------------------------------------------------- lane layout of X8 */

void vb_x8_to_lanes(vb_mm_args *a) {
    const vb_x8 *x8 = &a->x8;
    vb_x8_lanes *xl = &a->xl;
    const int D = xl->D, G = 16 / D, S = 8 / D;
    const int64_t nb = x8->nb;
    for (int64_t g = 0; g < xl->n_groups; g++)
        for (int64_t b = 0; b < nb; b++) {
            int8_t *q = xl->q + (g * nb + b) * 64 * S; /* [S][16 lanes][4] */
            float *d = xl->d + (g * nb + b) * 16;      /* [16] */
            float *sl = xl->s + (g * nb + b) * 16;     /* [16] */
            float *s16 = xl->s16 + (g * nb + b) * 32;  /* [2][16] */
            for (int l = 0; l < 16; l++) {
                int64_t row = g * G + l / D;
                if (row >= a->n_rows) {
                    for (int st = 0; st < S; st++) memset(q + 64 * st + 4 * l, 0, 4);
                    d[l] = sl[l] = s16[l] = s16[16 + l] = 0.0f;
                    continue;
                }
                const int8_t *src = x8->q + row * x8->n_in + 32 * b; /* [32] */
                for (int st = 0; st < S; st++) memcpy(q + 64 * st + 4 * l, src + 4 * (st * D + l % D), 4);
                d[l] = x8->d[row * nb + b];
                sl[l] = x8->dsum[row * nb + b];
                s16[l] = x8->dsum16[row * 2 * nb + 2 * b];
                s16[16 + l] = x8->dsum16[row * 2 * nb + 2 * b + 1];
            }
        }
}

/* --------------------------------------------------------------- threaded product */

typedef struct {
    vb_mm_args *args;
    int level;
} mm_task;

static void mm_rows(const vb_mm_args *a, int level, int64_t o0, int64_t o1) {
    if (o0 >= o1) return;
    if (level == VB_KLEVEL_AVX512) vb_mm_rows_avx512(a, o0, o1);
    else if (level == VB_KLEVEL_AVX2) vb_mm_rows_avx2(a, o0, o1);
    else mm_rows_portable(a, o0, o1);
}

/* X8 rows [r0, r1) in C, with the operations of vb_x8_quantize (kernels_simd_template.h) in
 * the same order: amax, d = amax / 127, q = round-half-even(x * (127 / amax)) saturated to
 * int8, the sums in integers. Used by the portable level of the packed Q8_0 product, so that
 * its results equal the SIMD levels' bit for bit. */
static void x8_quantize_portable(const vb_mm_args *a, int64_t r0, int64_t r1) {
    const vb_x8 *x8 = &a->x8;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = a->X + r * a->n_in; /* [n_in] */
        int8_t *q = x8->q + r * x8->n_in;
        for (int64_t b = 0; b < x8->nb; b++) {
            const float *xb = x + 32 * b;
            float amax = 0.0f;
            for (int i = 0; i < 32; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
            float db = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
            int64_t half[2] = {0, 0};
            for (int i = 0; i < 32; i++) {
                float v = xb[i] * id;
                /* cvtps2dq: out of range and NaN give INT32_MIN, which saturates to -128 */
                long qi = v >= -2147483648.0f && v < 2147483648.0f ? lrintf(v) : INT32_MIN;
                half[i / 16] += qi;
                q[32 * b + i] = (int8_t)(qi < -128 ? -128 : qi > 127 ? 127 : qi);
            }
            int64_t sum = half[0] + half[1];
            x8->d[r * x8->nb + b] = db;
            x8->dsum[r * x8->nb + b] = db * (float)sum;
            x8->dsum16[r * 2 * x8->nb + 2 * b] = db * (float)half[0];
            x8->dsum16[r * 2 * x8->nb + 2 * b + 1] = db * (float)half[1];
            x8->isum[r * x8->nb + b] = (int32_t)sum;
        }
    }
}

static void x8_quantize(const vb_mm_args *a, int level, int64_t r0, int64_t r1) {
    if (level == VB_KLEVEL_AVX512) vb_x8_quantize_avx512(a, r0, r1);
    else if (level == VB_KLEVEL_AVX2) vb_x8_quantize_avx2(a, r0, r1);
    else x8_quantize_portable(a, r0, r1);
}

static void mm_task_fn(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int64_t n = t->args->n_out;
    mm_rows(t->args, t->level, n * ith / nth, n * (ith + 1) / nth);
}

static void x8_task_fn(void *arg, int ith, int nth) {
    const mm_task *t = arg;
    int64_t n = t->args->n_rows;
    x8_quantize(t->args, t->level, n * ith / nth, n * (ith + 1) / nth);
}

/* What this thread's scratch buffer holds (vb_x8_prepare): the activations of X for this
 * shape, level and caller kind; valid until the next vb_x8_prepare on the thread. */
static _Thread_local struct {
    bool valid;
    const float *X;
    int64_t n_rows, n_in;
    int level;
    uint32_t kind;
    size_t extra_bytes;
} scratch_holds;

int vb_x8_prepare(vb_threadpool *tp, vb_mm_args *a, int level, uint32_t kind, size_t extra_bytes,
                  bool reuse, uint8_t **extra, bool *reused) {
    const int64_t n_rows = a->n_rows, n_in = a->n_in, nb = n_in / 32;
    size_t q_bytes = ((size_t)(n_rows * n_in) + 63) / 64 * 64;
    size_t f_bytes = (size_t)(n_rows * nb) * sizeof(float);
    /* q, d, dsum, dsum16 (2 f_bytes), isum (as many bytes as d), then the caller's bytes */
    size_t extra_at = (q_bytes + 5 * f_bytes + 63) / 64 * 64; /* 64-byte loads: aligned */
    const bool same = reuse && scratch_holds.valid && scratch_holds.X == a->X &&
                      scratch_holds.n_rows == n_rows && scratch_holds.n_in == n_in &&
                      scratch_holds.level == level && scratch_holds.kind == kind &&
                      scratch_holds.extra_bytes == extra_bytes;
    scratch_holds.valid = false;
    uint8_t *buf = scratch_get(extra_at + extra_bytes);
    if (!buf) return VB_ERR_NOMEM;
    a->x8 = (vb_x8){.q = (int8_t *)buf, .d = (float *)(buf + q_bytes),
                    .dsum = (float *)(buf + q_bytes + f_bytes),
                    .dsum16 = (float *)(buf + q_bytes + 2 * f_bytes),
                    .isum = (int32_t *)(buf + q_bytes + 4 * f_bytes), .n_in = n_in, .nb = nb};
    if (!same) {
        mm_task task = {a, level};
        if (tp && n_rows >= 8) vb_threadpool_run(tp, x8_task_fn, &task);
        else x8_quantize(a, level, 0, n_rows);
    }
    scratch_holds.valid = true;
    scratch_holds.X = a->X;
    scratch_holds.n_rows = n_rows;
    scratch_holds.n_in = n_in;
    scratch_holds.level = level;
    scratch_holds.kind = kind;
    scratch_holds.extra_bytes = extra_bytes;
    if (extra) *extra = buf + extra_at;
    if (reused) *reused = same;
    return VB_OK;
}

void vb_matmul(vb_threadpool *tp, uint32_t type, const void *W, int64_t n_in, int64_t n_out,
               const float *X, int64_t n_rows, float *Y) {
    int64_t row_bytes = vb_type_row_bytes(type, n_in);
    const vb_type_traits *tr = vb_type_get(type);
    if (row_bytes < 0 || !tr || !tr->supported || n_out <= 0 || n_rows <= 0) {
        if (n_rows > 0 && n_out > 0) memset(Y, 0, (size_t)(n_rows * n_out) * sizeof(float));
        return;
    }
    vb_mm_args a = {.type = type, .W = W, .row_bytes = row_bytes, .n_in = n_in, .n_out = n_out,
                    .X = X, .n_rows = n_rows, .Y = Y};
    int level = vb_kernels_level();
    mm_task task = {&a, level};

    /* Small products are not worth waking the workers for. */
    if (n_rows * n_out * n_in < 32768) tp = NULL;

    if (level != VB_KLEVEL_PORTABLE && vb_type_uses_x8(type)) {
        int64_t nb = n_in / 32;
        /* the lane layout (AVX-512, the types with lane kernels, several rows): groups of 16 / D rows */
        int use_lanes = level == VB_KLEVEL_AVX512 && vb_lanes_min_rows(type) > 0 &&
                        n_rows >= vb_lanes_min_rows(type);
        int lanes_d = vb_lanes_d(n_rows);
        int64_t n_groups = (n_rows + 16 / lanes_d - 1) / (16 / lanes_d);
        size_t lq_bytes = use_lanes ? (size_t)(n_groups * nb) * 512 / (size_t)lanes_d : 0;
        size_t lf_bytes = use_lanes ? (size_t)(n_groups * nb) * 16 * sizeof(float) : 0;
        uint8_t *lbuf = NULL; /* lane q, lane d, lane s, lane s16 (2 lf_bytes) */
        if (vb_x8_prepare(tp, &a, level, type, lq_bytes + 4 * lf_bytes, false, &lbuf, NULL) != VB_OK) {
            /* no memory for the activations: the portable path needs none of it */
            task.level = VB_KLEVEL_PORTABLE;
            vb_threadpool_run(tp, mm_task_fn, &task);
            return;
        }
        if (use_lanes) {
            a.xl = (vb_x8_lanes){.q = (int8_t *)lbuf, .d = (float *)(lbuf + lq_bytes),
                                 .s = (float *)(lbuf + lq_bytes + lf_bytes),
                                 .s16 = (float *)(lbuf + lq_bytes + 2 * lf_bytes), .D = lanes_d,
                                 .n_groups = n_groups};
            vb_x8_to_lanes(&a);
        }
    }
    vb_threadpool_run(tp, mm_task_fn, &task);
}
