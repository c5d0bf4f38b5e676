/* cpu_backend.c - vibee's own CPU backend `cpu` (the vb_backend_ops table of backend.h): the
 * batched transformer forward pass of DESIGN §3 over the paged KV cache, for the architectures
 * of src/arch.h (the traits table decides norms, position encoding and FFN kind). All rows of a
 * batch go through each layer together (one matrix-matrix product per weight), each row's K and
 * V are written into its cache slot, attention reads the cache blocks directly (attention.c),
 * and only rows that want logits get the final norm and output matmul (or, for forward_hidden,
 * only the final norm: the hidden states behind vb_embed).
 * KV operations delegate to the paged cache (src/kv). */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../backend.h"
#include "../../kv/kv_cache.h"
#include "../../types.h"
#include "attention.h"
#include "cpu_model.h"
#include "kernels.h"
#include "ops.h"
#include "threadpool.h"

typedef struct cpu_state {
    const vb_model *model;
    vb_cpu_model w;
    vb_kv_cache *kv;
    vb_threadpool *tp;
    char *err; /* the context's VB_ERR_LEN error buffer */
    int32_t n_threads;
    int32_t n_batch_max;
    int32_t n_seq_max;
    int32_t kv_type;
    int32_t max_seq_rows; /* most rows one sequence can hold: n_blocks * block_size */

    /* scratch, allocated once for n_batch_max rows (B) */
    float *x;            /* [B][n_embd] residual stream */
    float *xn;           /* [B][n_embd] normalised input of a sub-layer; also the position
                            row */
    float *q;            /* [B][n_q] */
    float *k;            /* [B][kv_dim] */
    float *v;            /* [B][kv_dim] */
    float *attn;         /* [B][n_q] attention output */
    float *ffn_a;        /* [B][n_ff] up (GELU MLP) / gate (gated FFN) */
    float *ffn_b;        /* [B][n_ff] up (gated FFN) */
    float *attn_scratch; /* [n_threads][attn_stride] */
    int64_t attn_stride;
    int32_t *kv_row;         /* [B] cache row of each batch row in its sequence */
    int32_t *n_kv;           /* [B] rows visible to each batch row (kv_row + 1) */
    vb_seq *row_seq;         /* [B] sequence of each active row (compacted in the last
                                layer) */
} cpu_state;

static void cpu_free(void *state) {
    cpu_state *s = state;
    if (!s) return;
    vb_threadpool_free(s->tp);
    vb_kvc_free(s->kv);
    vb_cpu_model_free(&s->w);
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->attn);
    free(s->ffn_a);
    free(s->ffn_b);
    free(s->attn_scratch);
    free(s->kv_row);
    free(s->n_kv);
    free(s->row_seq);
    free(s);
}

static float *alloc_floats(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    return (int)n;
}

static int cpu_init(const vb_model *model, const vb_context_params *params, void **state,
                    char *err) {
    *state = NULL;
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return vb_errf(err, VB_ERR_NOMEM, "cpu backend: out of memory");
    s->model = model;
    s->err = err;
    int rc = vb_cpu_model_init(&s->w, model, err);
    if (rc != VB_OK) {
        free(s);
        return rc;
    }
    const vb_cpu_model *w = &s->w;

    s->n_threads = params->n_threads > 0 ? params->n_threads : default_threads();
    s->n_batch_max = params->n_batch_max > 0 ? params->n_batch_max : 512;
    s->n_seq_max = params->n_seq_max > 0 ? params->n_seq_max : 16;
    s->kv_type = params->kv_type;
    const int32_t block_size = params->block_size > 0 ? params->block_size : 16;
    int32_t n_ctx = params->n_ctx;
    if (n_ctx <= 0) n_ctx = w->n_ctx_train > 0 && w->n_ctx_train < 4096 ? w->n_ctx_train : 4096;
    vb_cpu_model_set_ctx(&s->w, n_ctx); /* LongRoPE factors by context length */
    if (s->kv_type != VB_KV_F32 && s->kv_type != VB_KV_F16 && s->kv_type != VB_KV_Q8_0) {
        cpu_free(s);
        return vb_errf(err, VB_ERR_ARG, "cpu backend: kv_type %d is not f32 (0), f16 (1) or q8_0 (2)",
                       params->kv_type);
    }
    if (s->kv_type == VB_KV_Q8_0 && w->head_dim % 32 != 0) { /* Q8_0 blocks must not span heads */
        const int32_t hd = w->head_dim;
        cpu_free(s);
        return vb_errf(err, VB_ERR_UNSUPPORTED, "cpu backend: a q8_0 KV cache needs a head size that is "
                       "a multiple of 32 (this model's is %d): use kv_type f16", hd);
    }

    const int32_t n_blocks = vb_kvc_blocks_for_ctx(n_ctx, block_size, s->n_seq_max);
    if (n_blocks < 0) {
        const int32_t n_seq_max = s->n_seq_max;
        cpu_free(s);
        return vb_errf(err, VB_ERR_ARG, "cpu backend: n_ctx %d with %d sequences is too large",
                       n_ctx, n_seq_max);
    }
    vb_kv_config cfg = {
        .n_layer = w->n_layer,
        .kv_dim = w->kv_dim,
        .block_size = block_size,
        .n_blocks = n_blocks,
        .n_seq_max = s->n_seq_max,
        .kv_type = s->kv_type,
    };
    rc = vb_kvc_create(&cfg, &s->kv);
    if (rc != VB_OK) {
        cpu_free(s);
        return vb_errf(err, rc,
                       "cpu backend: cannot create the KV cache (%d blocks of %d rows x %d "
                       "layers x %d values): %s; try a smaller n_ctx or kv_type f16",
                       cfg.n_blocks, block_size, cfg.n_layer, cfg.kv_dim, vb_status_str(rc));
    }
    s->max_seq_rows = cfg.n_blocks * block_size;

    s->tp = vb_threadpool_create(s->n_threads);
    if (!s->tp) {
        const int32_t n_threads = s->n_threads;
        cpu_free(s);
        return vb_errf(err, VB_ERR_NOMEM, "cpu backend: cannot start %d threads", n_threads);
    }

    const int64_t B = s->n_batch_max;
    s->x = alloc_floats(B * w->n_embd);
    s->xn = alloc_floats(B * w->n_embd);
    s->q = alloc_floats(B * w->n_q);
    s->k = alloc_floats(B * w->kv_dim);
    s->v = alloc_floats(B * w->kv_dim);
    s->attn = alloc_floats(B * w->n_q);
    s->ffn_a = alloc_floats(B * w->n_ff);
    s->ffn_b = alloc_floats(B * w->n_ff);
    s->attn_stride = vb_attention_scratch_floats(s->max_seq_rows, w->head_dim,
                                                 w->n_head / w->n_head_kv, block_size);
    s->attn_scratch = alloc_floats(s->attn_stride * s->n_threads);
    s->kv_row = malloc((size_t)B * sizeof *s->kv_row);
    s->n_kv = malloc((size_t)B * sizeof *s->n_kv);
    s->row_seq = malloc((size_t)B * sizeof *s->row_seq);
    if (!s->x || !s->xn || !s->q || !s->k || !s->v ||
        !s->attn || !s->ffn_a || !s->ffn_b || !s->attn_scratch || !s->kv_row || !s->n_kv ||
        !s->row_seq) {
        cpu_free(s);
        return vb_errf(err, VB_ERR_NOMEM, "cpu backend: out of memory for %lld-row scratch",
                       (long long)B);
    }
    *state = s;
    return VB_OK;
}

static vb_backend_caps cpu_caps(void *state) {
    const cpu_state *s = state;
    vb_backend_caps caps = {
        .physical_causality = true,
        .paged_kv = true,
        .kv_fork = true,
        .max_batch = s->n_batch_max,
    };
    return caps;
}

/* Element-wise work over fewer rows than this stays on the calling thread (not worth waking
 * the workers for; decoding's one row). */
#define ROW_STAGE_MIN_PARALLEL 4

typedef struct {
    float *Y; /* [n_rows][n] */
    const float *bias; /* [n] */
    int64_t n_rows, n;
} bias_task;

static void bias_task_fn(void *arg, int ith, int nth) {
    const bias_task *t = arg;
    const int64_t r0 = t->n_rows * ith / nth, r1 = t->n_rows * (ith + 1) / nth;
    vb_op_add_bias(t->Y + r0 * t->n, t->bias, r1 - r0, t->n);
}

/* Y[n_rows][m->n_out] = X[n_rows][m->n_in] * m^T (+ bias, rows split across the pool).
 * x_unchanged: X is the X of the previous linear() (q / k / v, gate / up), see vb_matmul_packed. */
static void linear_x(cpu_state *s, const vb_cpu_mat *m, const float *bias, const float *X,
                     int64_t n_rows, float *Y, bool x_unchanged) {
    if (m->packed) /* weights repacked at load (cpu_model.c): bit-identical over n_rows */
        vb_matmul_packed(s->tp, m->type, m->packed, m->n_in, m->n_out, X, n_rows, Y, x_unchanged);
    else
        vb_matmul(s->tp, m->type, m->data, m->n_in, m->n_out, X, n_rows, Y);
    if (!bias) return;
    bias_task t = {.Y = Y, .bias = bias, .n_rows = n_rows, .n = m->n_out};
    vb_threadpool_run(n_rows >= ROW_STAGE_MIN_PARALLEL ? s->tp : NULL, bias_task_fn, &t);
}

static void linear(cpu_state *s, const vb_cpu_mat *m, const float *bias, const float *X,
                   int64_t n_rows, float *Y) {
    linear_x(s, m, bias, X, n_rows, Y, false);
}

/* Copy rows [r0, r1) of src [n_rows][dim] into the cache rows of layer il (kv_type conversion:
 * F32 as is, F16 rounded, Q8_0 quantized per 32 values). Returns the first row whose cache
 * slot is missing, or -1. */
static int32_t store_kv_rows(const cpu_state *s, int il, const float *src, int32_t r0, int32_t r1,
                             bool is_v) {
    const int32_t dim = s->w.kv_dim;
    static const uint32_t kv_elem_type[] = {[VB_KV_F32] = VB_TYPE_F32, [VB_KV_F16] = VB_TYPE_F16,
                                            [VB_KV_Q8_0] = VB_TYPE_Q8_0};
    for (int32_t i = r0; i < r1; i++) {
        void *dst = is_v ? vb_kvc_v_row(s->kv, il, s->row_seq[i], s->kv_row[i])
                         : vb_kvc_k_row(s->kv, il, s->row_seq[i], s->kv_row[i]);
        if (!dst) return i;
        /* F16: vcvtps2ph where the CPU has it; Q8_0: ggml's reference quantizer */
        vb_quantize_row(kv_elem_type[s->kv_type], src + (int64_t)i * dim, dst, dim);
    }
    return -1;
}

/* Keep only the rows flagged in want (batch order): rows of buf [n_rows][dim]
 * move up. */
static void compact_rows(float *buf, int64_t dim, const int8_t *want, int32_t n_rows) {
    int32_t j = 0;
    for (int32_t i = 0; i < n_rows; i++) {
        if (!want[i]) continue;
        if (j != i) memmove(buf + j * dim, buf + i * dim, (size_t)dim * sizeof(float));
        j++;
    }
}

/* ------------------------------------------------------------ per-row stages, row-parallel */

/* The element-wise and per-row work between the matrix products, one stage per gap, each run
 * over the batch rows split across the pool's threads (a row's arithmetic does not depend on
 * the split, so K-row forwards keep the bits of one-row forwards). */
enum row_stage_kind {
    STAGE_ATTN_NORM, /* xn = attn_norm(x) */
    STAGE_QKV,       /* q/k norm, RoPE at each row's position, K and V into the cache */
    STAGE_ATTN_OUT,  /* [post-attention norm of xn,] x += xn, xn = ffn_norm(x) */
    STAGE_ACT,       /* ffn_a = act(ffn_a) [* ffn_b] */
    STAGE_FFN_OUT,   /* [post-FFN norm of xn,] x += xn */
};

typedef struct {
    cpu_state *s;
    const vb_cpu_layer *L;
    const vb_batch *batch;
    int il;
    enum row_stage_kind kind;
    int32_t n_rows;
    _Atomic int32_t bad_row; /* STAGE_QKV: a row whose cache slot is missing (-1: none) */
} row_stage;

static void norm_rows(const vb_cpu_model *w, const float *x, float *y, const float *g,
                      const float *b, int32_t n_rows) {
    if (w->arch->norm == VB_ARCH_NORM_LAYER)
        vb_op_layernorm(x, y, g, b, n_rows, w->n_embd, w->norm_eps);
    else
        vb_op_rmsnorm(x, y, g, n_rows, w->n_embd, w->norm_eps);
}

static void row_stage_run(row_stage *st, int32_t r0, int32_t r1) {
    cpu_state *s = st->s;
    const vb_cpu_model *w = &s->w;
    const vb_cpu_layer *L = st->L;
    const int64_t E = w->n_embd, n = r1 - r0;
    if (n <= 0) return;
    float *x = s->x + r0 * E, *xn = s->xn + r0 * E;
    switch (st->kind) {
    case STAGE_ATTN_NORM: norm_rows(w, x, xn, L->attn_norm, L->attn_norm_b, (int32_t)n); break;
    case STAGE_QKV: {
        float *q = s->q + r0 * w->n_q, *k = s->k + r0 * w->kv_dim;
        if (L->q_norm) {
            vb_op_rmsnorm(q, q, L->q_norm, n * w->n_head, w->head_dim, w->norm_eps);
            vb_op_rmsnorm(k, k, L->k_norm, n * w->n_head_kv, w->head_dim, w->norm_eps);
        }
        const float theta = L->swa ? w->rope_theta_swa : w->rope_theta; /* local layers: own base */
        const float *freqs = L->swa ? NULL : w->rope_freqs;
        for (int32_t i = r0; i < r1 && w->use_rope; i++) {
            const int32_t pos = st->batch->pos[i];
            vb_op_rope(s->q + (int64_t)i * w->n_q, w->n_head, w->head_dim, w->n_rot, pos, theta,
                       freqs, w->rope_kind);
            vb_op_rope(s->k + (int64_t)i * w->kv_dim, w->n_head_kv, w->head_dim, w->n_rot, pos,
                       theta, freqs, w->rope_kind);
        }
        int32_t bad = store_kv_rows(s, st->il, s->k, r0, r1, false);
        if (bad < 0) bad = store_kv_rows(s, st->il, s->v, r0, r1, true);
        if (bad >= 0) {
            int32_t none = -1;
            atomic_compare_exchange_strong(&st->bad_row, &none, bad);
        }
        break;
    }
    case STAGE_ATTN_OUT:
        if (L->attn_post_norm) vb_op_rmsnorm(xn, xn, L->attn_post_norm, n, E, w->norm_eps);
        vb_op_add(x, xn, n * E);
        norm_rows(w, x, xn, L->ffn_norm, L->ffn_norm_b, (int32_t)n);
        break;
    case STAGE_ACT: {
        const int64_t F = w->n_ff;
        float *a = s->ffn_a + r0 * F, *b = s->ffn_b + r0 * F;
        if (w->arch->ffn == VB_ARCH_FFN_GELU) vb_op_gelu_tanh(a, n * F);
        else if (w->arch->ffn == VB_ARCH_FFN_GEGLU) vb_op_gelu_mul(a, b, n * F);
        else vb_op_silu_mul(a, b, n * F);
        break;
    }
    case STAGE_FFN_OUT:
        if (L->ffn_post_norm) vb_op_rmsnorm(xn, xn, L->ffn_post_norm, n, E, w->norm_eps);
        vb_op_add(x, xn, n * E);
        break;
    }
}

static void row_stage_task(void *arg, int ith, int nth) {
    row_stage *st = arg;
    const int64_t n = st->n_rows;
    row_stage_run(st, (int32_t)(n * ith / nth), (int32_t)(n * (ith + 1) / nth));
}

/* Run one stage over rows [0, n_rows): on the pool from ROW_STAGE_MIN_PARALLEL rows.
 * Returns the stage's missing cache row (STAGE_QKV) or -1. */
static int32_t run_rows(cpu_state *s, const vb_cpu_layer *L, const vb_batch *batch, int il,
                        enum row_stage_kind kind, int32_t n_rows) {
    row_stage st = {.s = s, .L = L, .batch = batch, .il = il, .kind = kind, .n_rows = n_rows};
    atomic_init(&st.bad_row, -1);
    if (n_rows >= ROW_STAGE_MIN_PARALLEL) vb_threadpool_run(s->tp, row_stage_task, &st);
    else row_stage_run(&st, 0, n_rows);
    return atomic_load(&st.bad_row);
}

/* Q, K, V projections of the normalised rows xn[n_rows], then STAGE_QKV. */
static int project_qkv(cpu_state *s, const vb_cpu_layer *L, const vb_batch *batch, int il,
                       int32_t n_rows) {
    linear(s, &L->wq, L->bq, s->xn, n_rows, s->q);
    linear_x(s, &L->wk, L->bk, s->xn, n_rows, s->k, true);
    linear_x(s, &L->wv, L->bv, s->xn, n_rows, s->v, true);
    const int32_t bad = run_rows(s, L, batch, il, STAGE_QKV, n_rows);
    if (bad >= 0)
        return vb_errf(s->err, VB_ERR_BACKEND,
                       "cpu backend: KV row %d of sequence %d missing in layer %d",
                       s->kv_row[bad], s->row_seq[bad], il);
    return VB_OK;
}

/* Feed-forward of xn[n_rows] added into the residual x. */
static void feed_forward(cpu_state *s, const vb_cpu_layer *L, int il, int32_t n_rows) {
    const vb_cpu_model *w = &s->w;
    if (w->arch->ffn == VB_ARCH_FFN_GELU) {
        linear(s, &L->ffn_up, L->ffn_up_b, s->xn, n_rows, s->ffn_a);
    } else {
        linear(s, &L->ffn_gate, NULL, s->xn, n_rows, s->ffn_a);
        linear_x(s, &L->ffn_up, NULL, s->xn, n_rows, s->ffn_b, true);
    }
    run_rows(s, L, NULL, il, STAGE_ACT, n_rows);
    /* down projection into xn (free now), then [post-FFN norm and] the residual add */
    linear(s, &L->ffn_down, L->ffn_down_b, s->ffn_a, n_rows, s->xn);
    run_rows(s, L, NULL, il, STAGE_FFN_OUT, n_rows);
}

/* The layers and the output head over batch rows already appended to the cache: out gets
 * [rows with want_logits][n_vocab] logits, or with hidden [rows with want_logits][n_embd] final
 * normalised hidden states (the output matrix skipped). */
static int compute(cpu_state *s, const vb_batch *batch, float *out, bool hidden) {
    const vb_cpu_model *w = &s->w;
    const int32_t n = batch->n;
    const int64_t E = w->n_embd;

    /* embeddings: x[i] = token_embd[token[i]] (+ position_embd[pos[i]] for learned positions) */
    for (int32_t i = 0; i < n; i++) {
        vb_get_row(w->tok_embd.type, w->tok_embd.data, E, batch->token[i], s->x + i * E);
        if (w->embd_scale != 1.0f)
            for (int64_t j = 0; j < E; j++) s->x[i * E + j] *= w->embd_scale;
        if (w->arch->pos_embd) {
            vb_get_row(w->pos_embd.type, w->pos_embd.data, E, batch->pos[i], s->xn);
            vb_op_add(s->x + i * E, s->xn, E);
        }
    }

    int32_t n_want = 0;
    for (int32_t i = 0; i < n; i++) n_want += batch->want_logits[i] != 0;

    int32_t n_rows = n; /* active rows; only logit rows stay after the last layer's K/V */
    for (int il = 0; il < w->n_layer; il++) {
        const vb_cpu_layer *L = &w->layers[il];
        run_rows(s, L, batch, il, STAGE_ATTN_NORM, n_rows);
        const int rc = project_qkv(s, L, batch, il, n_rows);
        if (rc != VB_OK) return rc;

        if (il == w->n_layer - 1 && n_want < n_rows) {
            /* the last layer's output matters only for rows with logits */
            if (n_want == 0) return VB_OK;
            compact_rows(s->q, w->n_q, batch->want_logits, n_rows);
            compact_rows(s->x, E, batch->want_logits, n_rows);
            int32_t j = 0;
            for (int32_t i = 0; i < n_rows; i++) {
                if (!batch->want_logits[i]) continue;
                s->row_seq[j] = s->row_seq[i];
                s->n_kv[j] = s->n_kv[i];
                j++;
            }
            n_rows = n_want;
        }

        vb_attn_args a = {
            .kv = s->kv,
            .layer = il,
            .n_rows = n_rows,
            .q = s->q,
            .out = s->attn,
            .seq = s->row_seq,
            .n_kv = s->n_kv,
            .n_head = w->n_head,
            .n_head_kv = w->n_head_kv,
            .head_dim = w->head_dim,
            .kv_type = s->kv_type,
            .use_avx2 = vb_kernels_level() >= VB_KLEVEL_AVX2,
            .scale = w->attn_scale,
            .window = L->swa ? w->n_swa : 0, /* sliding-window (local) layer */
            .scratch = s->attn_scratch,
            .scratch_stride = s->attn_stride,
        };
        vb_attention(s->tp, &a);
        linear(s, &L->wo, L->bo, s->attn, n_rows, s->xn);
        run_rows(s, L, NULL, il, STAGE_ATTN_OUT, n_rows);
        feed_forward(s, L, il, n_rows);
    }
    if (n_want == 0) return VB_OK;
    /* here n_rows == n_want: the last layer kept only the logit rows (in batch order) */
    norm_rows(w, s->x, hidden ? out : s->xn, w->output_norm, w->output_norm_b, n_rows);
    if (!hidden) {
        linear(s, &w->output, w->output_b, s->xn, n_rows, out);
        if (w->logit_softcap > 0.0f) vb_op_softcap(out, (int64_t)n_rows * w->n_vocab, w->logit_softcap);
    }
    return VB_OK;
}

static int run_batch(void *state, const vb_batch *batch, float *out, bool hidden) {
    cpu_state *s = state;
    const vb_cpu_model *w = &s->w;
    const int32_t n = batch->n;
    if (n == 0) return VB_OK;
    if (n < 0 || n > s->n_batch_max)
        return vb_errf(s->err, VB_ERR_ARG, "cpu backend: batch of %d rows (at most %d)", n,
                       s->n_batch_max);
    for (int32_t i = 0; i < n; i++) {
        if (batch->seq[i] < 0 || batch->seq[i] >= s->n_seq_max)
            return vb_errf(s->err, VB_ERR_ARG, "cpu backend: row %d: sequence %d out of range", i,
                           batch->seq[i]);
        if (batch->token[i] < 0 || batch->token[i] >= w->n_vocab)
            return vb_errf(s->err, VB_ERR_ARG, "cpu backend: row %d: token %d out of range", i,
                           batch->token[i]);
        if (batch->pos[i] < 0)
            return vb_errf(s->err, VB_ERR_ARG, "cpu backend: row %d: negative position %d", i,
                           batch->pos[i]);
        if (w->arch->pos_embd && batch->pos[i] >= w->n_ctx_train)
            return vb_errf(s->err, VB_ERR_ARG,
                           "cpu backend: row %d: position %d is beyond the %s model's %d "
                           "learned positions (position_embd); keep positions below %d",
                           i, batch->pos[i], w->arch->name, w->n_ctx_train, w->n_ctx_train);
    }

    /* every row into its sequence's cache slot, all or nothing */
    char msg[160];
    int arc = vb_kvc_append_batch(s->kv, batch, s->kv_row, NULL, NULL, msg, sizeof msg);
    if (arc != VB_OK) return vb_errf(s->err, arc, "cpu backend: %s", msg);
    for (int32_t i = 0; i < n; i++) {
        s->row_seq[i] = batch->seq[i];
        s->n_kv[i] = s->kv_row[i] + 1;
    }

    /* (compute may compact row_seq; the batch itself still names every row's sequence) */
    const int rc = compute(s, batch, out, hidden);
    if (rc != VB_OK) vb_kvc_undo_batch(s->kv, batch, s->kv_row, n);
    return rc;
}

static int cpu_forward(void *state, const vb_batch *batch, float *logits) {
    return run_batch(state, batch, logits, false);
}

static int cpu_forward_hidden(void *state, const vb_batch *batch, float *hidden) {
    return run_batch(state, batch, hidden, true);
}

static struct vb_kv_cache *cpu_paged_kv(void *state) { return ((cpu_state *)state)->kv; }

const vb_backend_ops vb_backend_cpu = {
    .version = VB_BACKEND_VERSION,
    .name = "cpu",
    .runs_gguf = true,
    .kv_q8_0 = true,
    .init = cpu_init,
    .free = cpu_free,
    .caps = cpu_caps,
    .forward = cpu_forward,
    .paged_kv = cpu_paged_kv,
    .forward_hidden = cpu_forward_hidden,
};
