/* attention.c - attention over the paged KV cache (see attention.h). The unit of work is one
 * query row and a group of query heads that share one KV head (GQA), so each cached K and V row
 * is read (and, for an F16 cache, converted) once per group instead of once per query head.
 * Two passes: scores q.k * scale for every visible cached row, read block by block through the
 * block table, and a stable softmax per head; then the probability-weighted sum of the V rows.
 * When there are fewer (row, KV head) pairs than threads (single-row decode with few KV heads),
 * the groups are split into single query heads so that every thread has work. The inner
 * products have a portable path (vector extensions) and an AVX2/FMA/F16C path, chosen per call
 * (vb_attn_args.use_avx2). */
#include "attention.h"

#include <string.h>

#include "../../types.h"
#include "ops.h"

int64_t vb_attention_scratch_floats(int32_t max_kv, int32_t head_dim, int32_t group) {
    /* scores [group][max_kv] + converted K or V head row [head_dim], rounded up to 16 floats */
    return ((int64_t)group * max_kv + head_dim + 15) / 16 * 16;
}

/* Scores of n_heads query heads against one key row: scores[h * stride] = q[h] . k * scale.
 * q: [n_heads][hd]. */
static void qk_portable(const float *q, int32_t n_heads, int32_t hd, const float *k, float scale,
                        float *scores, int64_t stride) {
    for (int32_t h = 0; h < n_heads; h++)
        scores[h * stride] = vb_op_dot(q + (int64_t)h * hd, k, hd) * scale;
}

/* out[h] += p[h * stride] * v for n_heads output heads.  out: [n_heads][hd]. */
static void pv_portable(float *out, int32_t n_heads, int32_t hd, const float *v, const float *p,
                        int64_t stride) {
    for (int32_t h = 0; h < n_heads; h++) vb_op_axpy(out + (int64_t)h * hd, p[h * stride], v, hd);
}

static void f16_to_f32_portable(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i++) dst[i] = vb_f16_to_f32(src[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VB_ATTN_HAVE_AVX2 1
/* The same three with AVX2 + FMA + F16C (head_dim a multiple of 8; the caller checks). */
#define VB_AVX2 __attribute__((target("avx2,fma,f16c")))

VB_AVX2 static void qk_avx2(const float *q, int32_t n_heads, int32_t hd, const float *k,
                            float scale, float *scores, int64_t stride) {
    for (int32_t h = 0; h < n_heads; h++) {
        const float *qh = q + (int64_t)h * hd;
        __m256 acc = _mm256_setzero_ps();
        for (int32_t d = 0; d < hd; d += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(k + d), acc);
        __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        s4 = _mm_hadd_ps(s4, s4);
        s4 = _mm_hadd_ps(s4, s4);
        scores[h * stride] = _mm_cvtss_f32(s4) * scale;
    }
}

VB_AVX2 static void pv_avx2(float *out, int32_t n_heads, int32_t hd, const float *v, const float *p,
                            int64_t stride) {
    for (int32_t h = 0; h < n_heads; h++) {
        float *oh = out + (int64_t)h * hd;
        const __m256 ph = _mm256_set1_ps(p[h * stride]);
        for (int32_t d = 0; d < hd; d += 8)
            _mm256_storeu_ps(oh + d,
                             _mm256_fmadd_ps(ph, _mm256_loadu_ps(v + d), _mm256_loadu_ps(oh + d)));
    }
}

VB_AVX2 static void f16_to_f32_avx2(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
}
#endif

typedef struct attn_fns {
    void (*qk)(const float *q, int32_t n_heads, int32_t hd, const float *k, float scale,
               float *scores, int64_t stride);
    void (*pv)(float *out, int32_t n_heads, int32_t hd, const float *v, const float *p,
               int64_t stride);
    void (*f16_to_f32)(const uint16_t *src, float *dst, int32_t n);
} attn_fns;

static attn_fns pick_fns(const vb_attn_args *a) {
    attn_fns f = {qk_portable, pv_portable, f16_to_f32_portable};
#ifdef VB_ATTN_HAVE_AVX2
    if (a->use_avx2 && a->head_dim % 8 == 0) f = (attn_fns){qk_avx2, pv_avx2, f16_to_f32_avx2};
#else
    (void)a;
#endif
    return f;
}

/* Head `kv_head` of row `r` of a cache block of kv_type elements, as float: either a pointer
 * into the block (F32) or converted into tmp (F16). */
static const float *kv_head_row(const void *block, int32_t r, int32_t kv_dim, int32_t kv_head,
                                int32_t head_dim, const vb_attn_args *a, const attn_fns *f,
                                float *tmp) {
    const int64_t off = (int64_t)r * kv_dim + (int64_t)kv_head * head_dim;
    if (a->kv_type == VB_KV_F32) return (const float *)block + off;
    f->f16_to_f32((const uint16_t *)block + off, tmp, head_dim);
    return tmp;
}

/* Query heads [head0, head0 + n_heads) of row `row`, all reading KV head kv_head. */
static void attend_heads(const vb_attn_args *a, const attn_fns *f, int32_t row, int32_t kv_head,
                         int32_t head0, int32_t n_heads, float *scratch) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, kv_dim = cfg->kv_dim, hd = a->head_dim;
    const int32_t n_kv = a->n_kv[row];
    float *scores = scratch;                        /* [n_heads][n_kv] */
    float *tmp = scratch + (int64_t)n_heads * n_kv; /* [head_dim] */
    const float *q = a->q + (int64_t)row * a->n_head * hd + (int64_t)head0 * hd; /* [n_heads][hd] */
    float *out = a->out + (int64_t)row * a->n_head * hd + (int64_t)head0 * hd;   /* [n_heads][hd] */

    int32_t n_blocks = 0;
    const int32_t *table = vb_kvc_block_table(a->kv, a->seq[row], &n_blocks);
    for (int32_t j = 0; j < n_kv; j += bs) {
        const void *kblock = vb_kvc_k(a->kv, a->layer, table[j / bs]);
        const int32_t n_in_block = n_kv - j < bs ? n_kv - j : bs;
        for (int32_t r = 0; r < n_in_block; r++) {
            const float *k = kv_head_row(kblock, r, kv_dim, kv_head, hd, a, f, tmp);
            f->qk(q, n_heads, hd, k, a->scale, scores + j + r, n_kv);
        }
    }
    for (int32_t h = 0; h < n_heads; h++) vb_op_softmax(scores + (int64_t)h * n_kv, n_kv);
    memset(out, 0, (size_t)n_heads * (size_t)hd * sizeof *out);
    for (int32_t j = 0; j < n_kv; j += bs) {
        const void *vblock = vb_kvc_v(a->kv, a->layer, table[j / bs]);
        const int32_t n_in_block = n_kv - j < bs ? n_kv - j : bs;
        for (int32_t r = 0; r < n_in_block; r++) {
            const float *v = kv_head_row(vblock, r, kv_dim, kv_head, hd, a, f, tmp);
            f->pv(out, n_heads, hd, v, scores + j + r, n_kv);
        }
    }
}

typedef struct attn_task {
    const vb_attn_args *args;
    int32_t splits; /* units per KV-head group: 1 (whole group) or group (single heads) */
} attn_task;

static void attention_task(void *arg, int ith, int nth) {
    const attn_task *t = arg;
    const vb_attn_args *a = t->args;
    const int32_t group = a->n_head / a->n_head_kv;
    const int32_t heads_per_unit = group / t->splits;
    const int64_t units_per_row = (int64_t)a->n_head_kv * t->splits;
    const int64_t total = (int64_t)a->n_rows * units_per_row;
    const int64_t begin = total * ith / nth, end = total * (ith + 1) / nth;
    float *scratch = a->scratch + (int64_t)ith * a->scratch_stride;
    const attn_fns f = pick_fns(a);
    for (int64_t u = begin; u < end; u++) {
        const int32_t row = (int32_t)(u / units_per_row);
        const int32_t rem = (int32_t)(u % units_per_row);
        const int32_t kv_head = rem / t->splits;
        const int32_t head0 = kv_head * group + (rem % t->splits) * heads_per_unit;
        attend_heads(a, &f, row, kv_head, head0, heads_per_unit, scratch);
    }
}

void vb_attention(vb_threadpool *tp, const vb_attn_args *args) {
    const int nth = tp ? vb_threadpool_size(tp) : 1;
    const int32_t group = args->n_head / args->n_head_kv;
    attn_task t = {
        .args = args,
        .splits = (int64_t)args->n_rows * args->n_head_kv >= nth ? 1 : group,
    };
    vb_threadpool_run(tp, attention_task, &t);
}
