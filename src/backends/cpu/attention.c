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

int64_t vb_attention_scratch_floats(int32_t max_kv, int32_t head_dim, int32_t group,
                                    int32_t block_size) {
    /* scores [group][max_kv] + one block of converted K or V head rows [block_size][head_dim],
       rounded up to 16 floats */
    return ((int64_t)group * max_kv + (int64_t)block_size * head_dim + 15) / 16 * 16;
}

/* Scores of n_heads query heads against n_k key rows:
 * scores[h * stride + r] = q[h] . k[r] * scale.  q: [n_heads][hd]; k: n_k rows, k_stride apart. */
static void qk_portable(const float *q, int32_t n_heads, int32_t hd, const float *k,
                        int64_t k_stride, int32_t n_k, float scale, float *scores, int64_t stride) {
    for (int32_t r = 0; r < n_k; r++)
        for (int32_t h = 0; h < n_heads; h++)
            scores[h * stride + r] = vb_op_dot(q + (int64_t)h * hd, k + r * k_stride, hd) * scale;
}

/* out[h] += sum_r p[h * stride + r] * v[r] for n_heads output heads.  out: [n_heads][hd];
 * v: n_v rows, v_stride apart. */
static void pv_portable(float *out, int32_t n_heads, int32_t hd, const float *v, int64_t v_stride,
                        int32_t n_v, const float *p, int64_t stride) {
    for (int32_t r = 0; r < n_v; r++)
        for (int32_t h = 0; h < n_heads; h++)
            vb_op_axpy(out + (int64_t)h * hd, p[h * stride + r], v + r * v_stride, hd);
}

static void f16_to_f32_portable(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i++) dst[i] = vb_f16_to_f32(src[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VB_ATTN_HAVE_AVX2 1
/* The same three with AVX2 + FMA + F16C (head_dim a multiple of 8; the caller checks). */
#define VB_AVX2 __attribute__((target("avx2,fma,f16c")))

/* [sum(a0), sum(a1), ..., sum(a7)]: the 8 lane sums of 8 vectors as one vector. */
VB_AVX2 static inline __m256 hsum8_avx2(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4,
                                        __m256 a5, __m256 a6, __m256 a7) {
    const __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    const __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

VB_AVX2 static void qk_avx2(const float *q, int32_t n_heads, int32_t hd, const float *k,
                            int64_t k_stride, int32_t n_k, float scale, float *scores,
                            int64_t stride) {
    const __m256 vscale = _mm256_set1_ps(scale);
    int32_t r = 0;
    /* 8 key rows at a time: 8 independent FMA chains, one horizontal reduction for all 8 */
    for (; r + 8 <= n_k; r += 8) {
        const float *k0 = k + r * k_stride, *k1 = k0 + k_stride, *k2 = k1 + k_stride;
        const float *k3 = k2 + k_stride, *k4 = k3 + k_stride, *k5 = k4 + k_stride;
        const float *k6 = k5 + k_stride, *k7 = k6 + k_stride;
        for (int32_t h = 0; h < n_heads; h++) {
            const float *qh = q + (int64_t)h * hd;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
                   a7 = a0;
            for (int32_t d = 0; d < hd; d += 8) {
                const __m256 qv = _mm256_loadu_ps(qh + d);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + d), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + d), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + d), a3);
                a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k4 + d), a4);
                a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k5 + d), a5);
                a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k6 + d), a6);
                a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k7 + d), a7);
            }
            _mm256_storeu_ps(scores + h * stride + r,
                             _mm256_mul_ps(hsum8_avx2(a0, a1, a2, a3, a4, a5, a6, a7), vscale));
        }
    }
    for (; r < n_k; r++) {
        const float *kr = k + r * k_stride;
        for (int32_t h = 0; h < n_heads; h++) {
            const float *qh = q + (int64_t)h * hd;
            __m256 acc = _mm256_setzero_ps();
            for (int32_t d = 0; d < hd; d += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(kr + d), acc);
            __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
            scores[h * stride + r] = _mm_cvtss_f32(s4) * scale;
        }
    }
}

VB_AVX2 static void pv_avx2(float *out, int32_t n_heads, int32_t hd, const float *v,
                            int64_t v_stride, int32_t n_v, const float *p, int64_t stride) {
    for (int32_t h = 0; h < n_heads; h++) {
        float *oh = out + (int64_t)h * hd;
        const float *ph = p + h * stride;
        /* 64 output floats at a time stay in registers over all n_v rows (8 FMA chains) */
        int32_t d = 0;
        for (; d + 64 <= hd; d += 64) {
            __m256 o0 = _mm256_loadu_ps(oh + d), o1 = _mm256_loadu_ps(oh + d + 8);
            __m256 o2 = _mm256_loadu_ps(oh + d + 16), o3 = _mm256_loadu_ps(oh + d + 24);
            __m256 o4 = _mm256_loadu_ps(oh + d + 32), o5 = _mm256_loadu_ps(oh + d + 40);
            __m256 o6 = _mm256_loadu_ps(oh + d + 48), o7 = _mm256_loadu_ps(oh + d + 56);
            for (int32_t r = 0; r < n_v; r++) {
                const float *vr = v + r * v_stride + d;
                const __m256 pr = _mm256_set1_ps(ph[r]);
                o0 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr), o0);
                o1 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 8), o1);
                o2 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 16), o2);
                o3 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 24), o3);
                o4 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 32), o4);
                o5 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 40), o5);
                o6 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 48), o6);
                o7 = _mm256_fmadd_ps(pr, _mm256_loadu_ps(vr + 56), o7);
            }
            _mm256_storeu_ps(oh + d, o0);
            _mm256_storeu_ps(oh + d + 8, o1);
            _mm256_storeu_ps(oh + d + 16, o2);
            _mm256_storeu_ps(oh + d + 24, o3);
            _mm256_storeu_ps(oh + d + 32, o4);
            _mm256_storeu_ps(oh + d + 40, o5);
            _mm256_storeu_ps(oh + d + 48, o6);
            _mm256_storeu_ps(oh + d + 56, o7);
        }
        for (; d < hd; d += 8) {
            __m256 o = _mm256_loadu_ps(oh + d);
            for (int32_t r = 0; r < n_v; r++)
                o = _mm256_fmadd_ps(_mm256_set1_ps(ph[r]), _mm256_loadu_ps(v + r * v_stride + d),
                                    o);
            _mm256_storeu_ps(oh + d, o);
        }
    }
}

VB_AVX2 static void f16_to_f32_avx2(const uint16_t *src, float *dst, int32_t n) {
    for (int32_t i = 0; i < n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
}
#endif

typedef struct attn_fns {
    void (*qk)(const float *q, int32_t n_heads, int32_t hd, const float *k, int64_t k_stride,
               int32_t n_k, float scale, float *scores, int64_t stride);
    void (*pv)(float *out, int32_t n_heads, int32_t hd, const float *v, int64_t v_stride,
               int32_t n_v, const float *p, int64_t stride);
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

/* Rows [0, n) of head `kv_head` of a cache block of kv_type elements, as float rows *stride
 * apart: a pointer into the block (F32, stride kv_dim) or converted into tmp (F16, stride
 * head_dim).  tmp: [block_size][head_dim]. */
static const float *kv_block_rows(const void *block, int32_t n, int32_t kv_dim, int32_t kv_head,
                                  int32_t head_dim, const vb_attn_args *a, const attn_fns *f,
                                  float *tmp, int64_t *stride) {
    const int64_t off = (int64_t)kv_head * head_dim;
    if (a->kv_type == VB_KV_F32) {
        *stride = kv_dim;
        return (const float *)block + off;
    }
    for (int32_t r = 0; r < n; r++)
        f->f16_to_f32((const uint16_t *)block + off + (int64_t)r * kv_dim,
                      tmp + (int64_t)r * head_dim, head_dim);
    *stride = head_dim;
    return tmp;
}

/* Query heads [head0, head0 + n_heads) of row `row`, all reading KV head kv_head. */
static void attend_heads(const vb_attn_args *a, const attn_fns *f, int32_t row, int32_t kv_head,
                         int32_t head0, int32_t n_heads, float *scratch) {
    const vb_kv_config *cfg = vb_kvc_config(a->kv);
    const int32_t bs = cfg->block_size, kv_dim = cfg->kv_dim, hd = a->head_dim;
    const int32_t n_kv = a->n_kv[row];
    float *scores = scratch;                        /* [n_heads][n_kv] */
    float *tmp = scratch + (int64_t)n_heads * n_kv; /* [block_size][head_dim] */
    const float *q = a->q + (int64_t)row * a->n_head * hd + (int64_t)head0 * hd; /* [n_heads][hd] */
    float *out = a->out + (int64_t)row * a->n_head * hd + (int64_t)head0 * hd;   /* [n_heads][hd] */

    int32_t n_blocks = 0;
    int64_t stride = 0;
    const int32_t *table = vb_kvc_block_table(a->kv, a->seq[row], &n_blocks);
    for (int32_t j = 0; j < n_kv; j += bs) {
        const int32_t n_in_block = n_kv - j < bs ? n_kv - j : bs;
        const float *k = kv_block_rows(vb_kvc_k(a->kv, a->layer, table[j / bs]), n_in_block, kv_dim,
                                       kv_head, hd, a, f, tmp, &stride);
        f->qk(q, n_heads, hd, k, stride, n_in_block, a->scale, scores + j, n_kv);
    }
    for (int32_t h = 0; h < n_heads; h++) vb_op_softmax(scores + (int64_t)h * n_kv, n_kv);
    memset(out, 0, (size_t)n_heads * (size_t)hd * sizeof *out);
    for (int32_t j = 0; j < n_kv; j += bs) {
        const int32_t n_in_block = n_kv - j < bs ? n_kv - j : bs;
        const float *v = kv_block_rows(vb_kvc_v(a->kv, a->layer, table[j / bs]), n_in_block, kv_dim,
                                       kv_head, hd, a, f, tmp, &stride);
        f->pv(out, n_heads, hd, v, stride, n_in_block, scores + j, n_kv);
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
    const int64_t units_per_kv_head = (int64_t)a->n_rows * t->splits;
    const int64_t total = (int64_t)a->n_head_kv * units_per_kv_head;
    const int64_t begin = total * ith / nth, end = total * (ith + 1) / nth;
    float *scratch = a->scratch + (int64_t)ith * a->scratch_stride;
    const attn_fns f = pick_fns(a);
    /* KV head outermost: consecutive units read the same KV head's rows, which stay in cache */
    for (int64_t u = begin; u < end; u++) {
        const int32_t kv_head = (int32_t)(u / units_per_kv_head);
        const int32_t rem = (int32_t)(u % units_per_kv_head);
        const int32_t row = rem / t->splits;
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
