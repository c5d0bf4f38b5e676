/* cuda_backend.c - the `cuda` backend (vb_backend_cuda): vibee's own GPU forward pass. Weights
 * live on the device as f16 (cuda_model.c); the K/V of every layer live on the device in the
 * paged block layout [n_layer][n_blocks * block_size][kv_dim] f16, while vibee's paged cache
 * (src/kv, kv_dim = 0) keeps the metadata: block tables, positions, ref counts, fork and
 * truncate. A forward appends the batch rows to the metadata, copies a block on the device when
 * the append copied a shared partial block (copy-on-write), uploads the per-row tables once, and
 * runs the layers: cuBLAS GEMMs (f16 in, f32 accumulate), or for up to gemv_rows rows (default 2)
 * an own GEMV with the RMSNorm / SwiGLU before it fused in, and fused
 * QKV-post / attention / activation kernels (cuda_kernels.cu). Backend options (also env
 * VB_CUDA_GRAPH / VB_CUDA_GEMV / VB_CUDA_PDL): graph=0|1 (default 1), gemv=0|1 (default 1),
 * gemv_rows=1..8 (default 2), pdl=0|1 (programmatic dependent launch, default 1). Forwards of
 * the same shape
 * (rows, logit rows) replay a captured CUDA graph. Every CUDA / cuBLAS error becomes
 * VB_ERR_BACKEND with the library's message; the KV is then rolled back (all-or-nothing). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "cuda_kernels.h"
#include "cuda_model.h"
#include "kv/kv_cache.h"
#include "model.h"

#define VB_CUDA_MAX_GRAPHS 96
#define VB_CUDA_GRAPH_MAX_ROWS 64

typedef struct cuda_graph {
    int32_t n_rows, n_logits;
    cudaGraphExec_t exec;
} cuda_graph;

typedef struct cuda_state {
    const vb_model *model;
    char *err;
    vb_cuda_weights w;
    int32_t n_batch_max, block_size, n_blocks, n_seq_max, tables_cap;
    bool use_graph, use_gemv, use_pdl;
    int32_t gemv_rows; /* most rows that take the own GEMV (measured faster than cuBLAS) */
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_workspace;
    /* KV storage: [n_layer][n_blocks * block_size][kv_dim] f16 each */
    vb_half_bits *k_pool, *v_pool;
    size_t layer_kv_elems; /* n_blocks * block_size * kv_dim */
    vb_kv_cache *kvc;
    /* activations, [n_batch_max] rows each */
    float *x;              /* [B][n_embd] residual stream */
    vb_half_bits *xn;      /* [B][n_embd] normed input of a GEMM */
    float *qkv;            /* [B][q_dim + 2 kv_dim] */
    float *q;              /* [B][q_dim] */
    vb_half_bits *attn;    /* [B][q_dim] */
    float *gu;             /* [B][2 n_ff] */
    vb_half_bits *act;     /* [B][n_ff] */
    float *logits;         /* [B][n_vocab] */
    float *attn_part;      /* attention split partials */
    size_t attn_part_floats;
    /* per-forward row metadata: host (pinned) and device copies of the same layout:
       token, pos, ctx_len, table_off, write_slot, logit_rows: [B] each; tables: [tables_cap] */
    int32_t *h_meta, *d_meta;
    size_t meta_ints;
    cuda_graph graphs[VB_CUDA_MAX_GRAPHS];
    int32_t n_graphs;
    /* forward scratch on the host: table_off [n_seq_max]; kv_row [B] each row's index in its
       sequence (vb_kvc_append_batch) */
    int32_t *table_off, *kv_row;
} cuda_state;

/* The launch settings of this context's kernels (pdl: programmatic dependent launch). */
static vb_cuda_stream kstream(const cuda_state *s) {
    vb_cuda_stream v = {s->stream, s->use_pdl ? 1 : 0};
    return v;
}

static int cuda_fail(cuda_state *s, cudaError_t e, const char *what) {
    return vb_errf(s->err, VB_ERR_BACKEND, "cuda: %s: %s (%s)", what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}
#define CU(st, call)                                                                          \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) return cuda_fail((st), e_, #call);                             \
    } while (0)

static int blas_fail(cuda_state *s, cublasStatus_t b, const char *what) {
    return vb_errf(s->err, VB_ERR_BACKEND, "cuda: %s: %s (%s)", what, cublasGetStatusString(b),
                   cublasGetStatusName(b));
}

/* Offsets of the metadata arrays inside h_meta / d_meta. */
enum { META_TOKEN, META_POS, META_CTX, META_TOFF, META_SLOT, META_LOGIT, META_N };
static int32_t *meta_h(cuda_state *s, int which) { return s->h_meta + (size_t)which * s->n_batch_max; }
static const int32_t *meta_d(cuda_state *s, int which) {
    return s->d_meta + (size_t)which * s->n_batch_max;
}
static int32_t *tables_h(cuda_state *s) { return s->h_meta + (size_t)META_N * s->n_batch_max; }

static vb_cuda_rows rows_desc(cuda_state *s) {
    vb_cuda_rows r = {
        .token = meta_d(s, META_TOKEN), .pos = meta_d(s, META_POS), .ctx_len = meta_d(s, META_CTX),
        .table_off = meta_d(s, META_TOFF), .write_slot = meta_d(s, META_SLOT),
        .tables = s->d_meta + (size_t)META_N * s->n_batch_max,
    };
    return r;
}

/* Y[K][n_out] = X[K][n_in] W^T (+ Y when accumulate), W f16 [n_out][n_in]: the own GEMV for
 * few rows (when enabled), else cuBLAS. */
static int gemm(cuda_state *s, const vb_half_bits *W, int32_t n_in, int32_t n_out,
                const vb_half_bits *X, int32_t K, float *Y, bool accumulate) {
    if (s->use_gemv && K <= s->gemv_rows && vb_cuda_gemv_fits(K, n_in)) {
        vb_cuda_gemv_in in = {.mode = VB_CUDA_IN_F16, .x16 = X};
        CU(s, vb_cuda_gemv(kstream(s), W, n_in, n_out, &in, K, Y, accumulate));
        return VB_OK;
    }
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t b = cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, K, n_in, &alpha, W,
                                    CUDA_R_16F, n_in, X, CUDA_R_16F, n_in, &beta, Y, CUDA_R_32F,
                                    n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (b != CUBLAS_STATUS_SUCCESS) return blas_fail(s, b, "cublasGemmEx");
    return VB_OK;
}

/* Y = RMSNorm(x rows [gather]) * norm_w  W^T: fused into the GEMV where it applies (RMSNorm
 * models, few rows), else a norm kernel into xn and gemm(). n_in = n_embd. */
static int norm_gemm(cuda_state *s, const float *norm_w, const float *norm_b,
                     const int32_t *gather, const vb_half_bits *W, int32_t n_out, int32_t K,
                     float *Y) {
    const vb_cuda_weights *w = &s->w;
    if (s->use_gemv && K <= s->gemv_rows && !w->layernorm && vb_cuda_gemv_fits(K, w->n_embd)) {
        vb_cuda_gemv_in in = {.mode = VB_CUDA_IN_RMSNORM, .x32 = s->x, .gather = gather,
                              .norm_w = norm_w, .eps = w->norm_eps};
        CU(s, vb_cuda_gemv(kstream(s), W, w->n_embd, n_out, &in, K, Y, 0));
        return VB_OK;
    }
    CU(s, vb_cuda_norm(kstream(s), s->x, gather, K, w->n_embd, norm_w, norm_b, w->norm_eps,
                       w->layernorm ? 1 : 0, s->xn));
    return gemm(s, W, w->n_embd, n_out, s->xn, K, Y, false);
}

/* Enqueue the whole forward of K rows (metadata already on the device), logits of the
 * n_logits rows listed in META_LOGIT into s->logits. */
static int enqueue_forward(cuda_state *s, int32_t K, int32_t n_logits) {
    const vb_cuda_weights *w = &s->w;
    const int32_t E = w->n_embd, F = w->n_ff, QKV = w->q_dim + 2 * w->kv_dim;
    vb_cuda_rows rows = rows_desc(s);
    const vb_cuda_stream st = kstream(s), first = {s->stream, 0};
    int rc;
    /* the first kernel follows the metadata upload: plain stream order */
    CU(s, vb_cuda_embed(first, w->tok_embd, w->pos_embd, &rows, K, E, s->x));
    vb_cuda_qkv_params qp = {
        .n_head = w->n_head, .n_head_kv = w->n_head_kv, .head_dim = w->head_dim,
        .norm_eps = w->norm_eps, .rope = w->rope, .rope_theta = w->rope_theta,
        .block_size = s->block_size,
    };
    for (int il = 0; il < w->n_layer; il++) {
        const vb_cuda_layer *L = &w->layers[il];
        vb_half_bits *kc = s->k_pool + (size_t)il * s->layer_kv_elems;
        vb_half_bits *vc = s->v_pool + (size_t)il * s->layer_kv_elems;
        if ((rc = norm_gemm(s, L->attn_norm, L->attn_norm_b, NULL, L->w_qkv, QKV, K, s->qkv)))
            return rc;
        qp.bias = L->b_qkv, qp.q_norm = L->q_norm, qp.k_norm = L->k_norm;
        CU(s, vb_cuda_qkv_post(st, &qp, s->qkv, &rows, K, s->q, kc, vc));
        CU(s, vb_cuda_attention(st, s->q, kc, vc, &rows, K, w->n_head, w->n_head_kv, w->head_dim,
                                s->block_size, s->attn_part, s->attn_part_floats, s->attn));
        if ((rc = gemm(s, L->w_o, w->q_dim, E, s->attn, K, s->x, true)) != VB_OK) return rc;
        if (L->b_o) CU(s, vb_cuda_add_bias(st, s->x, L->b_o, K, E));
        if (w->gelu) {
            if ((rc = norm_gemm(s, L->ffn_norm, L->ffn_norm_b, NULL, L->w_gu, F, K, s->gu)))
                return rc;
            CU(s, vb_cuda_gelu(st, s->gu, L->b_up, K, F, s->act));
            if ((rc = gemm(s, L->w_down, F, E, s->act, K, s->x, true)) != VB_OK) return rc;
        } else {
            if ((rc = norm_gemm(s, L->ffn_norm, NULL, NULL, L->w_gu, 2 * F, K, s->gu))) return rc;
            if (s->use_gemv && K <= s->gemv_rows && vb_cuda_gemv_fits(K, F)) { /* SwiGLU fused into the GEMV */
                vb_cuda_gemv_in in = {.mode = VB_CUDA_IN_SWIGLU, .x32 = s->gu};
                CU(s, vb_cuda_gemv(st, L->w_down, F, E, &in, K, s->x, 1));
            } else {
                CU(s, vb_cuda_swiglu(st, s->gu, K, F, s->act));
                if ((rc = gemm(s, L->w_down, F, E, s->act, K, s->x, true)) != VB_OK) return rc;
            }
        }
        if (L->b_down) CU(s, vb_cuda_add_bias(st, s->x, L->b_down, K, E));
    }
    if (n_logits > 0 &&
        (rc = norm_gemm(s, w->output_norm, w->output_norm_b, meta_d(s, META_LOGIT), w->output,
                        w->n_vocab, n_logits, s->logits)) != VB_OK)
        return rc;
    return VB_OK;
}

/* Run the forward through a captured graph of this shape. The first forward of a shape runs
 * plainly (it also lets cuBLAS and the driver finish their lazy setup outside a capture); the
 * second captures the graph, and later ones replay it. */
static int run_graph(cuda_state *s, int32_t K, int32_t n_logits) {
    cuda_graph *g = NULL;
    for (int32_t i = 0; i < s->n_graphs && !g; i++)
        if (s->graphs[i].n_rows == K && s->graphs[i].n_logits == n_logits) g = &s->graphs[i];
    if (g && g->exec) {
        CU(s, cudaGraphLaunch(g->exec, s->stream));
        return VB_OK;
    }
    if (!g) { /* first time: remember the shape, run plainly */
        if (s->n_graphs < VB_CUDA_MAX_GRAPHS && K <= VB_CUDA_GRAPH_MAX_ROWS)
            s->graphs[s->n_graphs++] = (cuda_graph){K, n_logits, NULL};
        return enqueue_forward(s, K, n_logits);
    }
    CU(s, cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal));
    int rc = enqueue_forward(s, K, n_logits);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(s->stream, &graph);
    if (rc != VB_OK) {
        if (graph) cudaGraphDestroy(graph);
        return rc;
    }
    if (e != cudaSuccess) return cuda_fail(s, e, "cudaStreamEndCapture");
    cudaGraphExec_t exec = NULL;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(s, e, "cudaGraphInstantiate");
    g->exec = exec;
    CU(s, cudaGraphLaunch(exec, s->stream));
    return VB_OK;
}

/* ------------------------------------------------------------------ init / free */

static void cuda_free(void *state) {
    cuda_state *s = state;
    if (!s) return;
    if (s->stream) cudaStreamSynchronize(s->stream);
    for (int32_t i = 0; i < s->n_graphs; i++)
        if (s->graphs[i].exec) cudaGraphExecDestroy(s->graphs[i].exec);
    if (s->blas) cublasDestroy(s->blas);
    void *dev[] = {s->blas_workspace, s->k_pool, s->v_pool, s->x, s->xn, s->qkv, s->q, s->attn,
                   s->gu, s->act, s->logits, s->attn_part, s->d_meta};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) cudaFree(dev[i]);
    if (s->h_meta) cudaFreeHost(s->h_meta);
    if (s->stream) cudaStreamDestroy(s->stream);
    vb_cuda_weights_free(&s->w);
    vb_kvc_free(s->kvc);
    free(s->table_off), free(s->kv_row);
    free(s);
}

static bool option_on(const char *opts, const char *key, bool dflt) {
    if (!opts) return dflt;
    size_t n = strlen(key);
    for (const char *p = opts; (p = strstr(p, key)) != NULL; p += n) {
        if ((p == opts || p[-1] == ',') && p[n] == '=') return p[n + 1] != '0';
    }
    return dflt;
}

static int option_int(const char *opts, const char *key, int dflt) {
    if (!opts) return dflt;
    size_t n = strlen(key);
    for (const char *p = opts; (p = strstr(p, key)) != NULL; p += n)
        if ((p == opts || p[-1] == ',') && p[n] == '=') return atoi(p + n + 1);
    return dflt;
}

static int dmalloc(cuda_state *s, void **p, size_t bytes, const char *what) {
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        *p = NULL;
        return vb_errf(s->err, VB_ERR_BACKEND, "cuda: cudaMalloc(%zu bytes) for %s: %s", bytes,
                       what, cudaGetErrorString(e));
    }
    return VB_OK;
}

static int cuda_init(const vb_model *model, const vb_context_params *params, void **state,
                     char *err) {
    *state = NULL;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0)
        return vb_errf(err, VB_ERR_BACKEND, "cuda: no CUDA device available (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    if ((e = vb_cuda_kernels_init()) != cudaSuccess)
        return vb_errf(err, VB_ERR_BACKEND, "cuda: kernel setup: %s", cudaGetErrorString(e));
    cuda_state *s = calloc(1, sizeof *s);
    if (!s) return vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory");
    s->model = model;
    s->err = err;
    int rc = vb_cuda_weights_load(model, &s->w, err);
    if (rc != VB_OK) {
        free(s);
        return rc;
    }
    const vb_cuda_weights *w = &s->w;
    int32_t n_ctx = params->n_ctx;
    if (n_ctx <= 0) n_ctx = model->info.n_ctx_train > 0 ? model->info.n_ctx_train : 4096;
    if (n_ctx > 4096 && params->n_ctx <= 0) n_ctx = 4096;
    s->block_size = params->block_size > 0 ? params->block_size : 16;
    s->n_seq_max = params->n_seq_max > 0 ? params->n_seq_max : 16;
    s->n_batch_max = params->n_batch_max > 0 ? params->n_batch_max : 512;
    s->n_blocks = vb_kvc_blocks_for_ctx(n_ctx, s->block_size, s->n_seq_max);
    s->tables_cap = s->n_seq_max * s->n_blocks;
    s->use_graph = option_on(params->backend_options, "graph", true);
    s->use_gemv = option_on(params->backend_options, "gemv", true);
    if (getenv("VB_CUDA_GRAPH")) s->use_graph = atoi(getenv("VB_CUDA_GRAPH")) != 0;
    if (getenv("VB_CUDA_GEMV")) s->use_gemv = atoi(getenv("VB_CUDA_GEMV")) != 0;
    s->use_pdl = option_on(params->backend_options, "pdl", true);
    /* H200, Qwen3-0.6B shape: the own GEMV beats cuBLAS at 1-2 rows, loses from 4 rows on */
    s->gemv_rows = option_int(params->backend_options, "gemv_rows", 2);
    if (s->gemv_rows < 1 || s->gemv_rows > VB_CUDA_GEMV_MAX_ROWS) s->gemv_rows = 2;
    if (getenv("VB_CUDA_PDL")) s->use_pdl = atoi(getenv("VB_CUDA_PDL")) != 0;

    vb_kv_config kc = {.n_layer = w->n_layer, .kv_dim = 0, .block_size = s->block_size,
                       .n_blocks = s->n_blocks, .n_seq_max = s->n_seq_max,
                       .kv_type = VB_KV_F16};
    if ((rc = vb_kvc_create(&kc, &s->kvc)) != VB_OK) {
        vb_errf(err, rc, "cuda: cannot create the KV block table (%s)", vb_status_str(rc));
        goto fail;
    }
    const size_t B = (size_t)s->n_batch_max, ns = (size_t)s->n_seq_max;
    s->table_off = calloc(ns, sizeof(int32_t)), s->kv_row = calloc(B, sizeof(int32_t));
    if (!s->table_off || !s->kv_row) {
        rc = vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory");
        goto fail;
    }
    s->layer_kv_elems = (size_t)s->n_blocks * s->block_size * w->kv_dim;
    const size_t kv_bytes = (size_t)w->n_layer * s->layer_kv_elems * 2;
    const size_t E = w->n_embd, QKV = w->q_dim + 2 * (size_t)w->kv_dim, F = w->n_ff;
    s->attn_part_floats = vb_cuda_attention_scratch_floats(s->n_batch_max, w->n_head, w->head_dim);
    s->meta_ints = META_N * B + (size_t)s->tables_cap;
    if ((rc = dmalloc(s, (void **)&s->k_pool, kv_bytes, "K cache")) ||
        (rc = dmalloc(s, (void **)&s->v_pool, kv_bytes, "V cache")) ||
        (rc = dmalloc(s, (void **)&s->x, B * E * 4, "activations")) ||
        (rc = dmalloc(s, (void **)&s->xn, B * E * 2, "activations")) ||
        (rc = dmalloc(s, (void **)&s->qkv, B * QKV * 4, "activations")) ||
        (rc = dmalloc(s, (void **)&s->q, B * w->q_dim * 4, "activations")) ||
        (rc = dmalloc(s, (void **)&s->attn, B * w->q_dim * 2, "activations")) ||
        (rc = dmalloc(s, (void **)&s->gu, B * 2 * F * 4, "activations")) ||
        (rc = dmalloc(s, (void **)&s->act, B * F * 2, "activations")) ||
        (rc = dmalloc(s, (void **)&s->logits, B * w->n_vocab * 4, "logits")) ||
        (rc = dmalloc(s, (void **)&s->attn_part, s->attn_part_floats * 4, "attention")) ||
        (rc = dmalloc(s, (void **)&s->d_meta, s->meta_ints * 4, "row metadata")) ||
        (rc = dmalloc(s, &s->blas_workspace, 32u << 20, "cuBLAS workspace")))
        goto fail;
    if ((e = cudaMallocHost((void **)&s->h_meta, s->meta_ints * 4)) != cudaSuccess) {
        rc = cuda_fail(s, e, "cudaMallocHost");
        goto fail;
    }
    if ((e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        rc = cuda_fail(s, e, "cudaStreamCreate");
        goto fail;
    }
    /* Zero the K/V so that no row ever holds NaN garbage (rows are written before being read,
       this only makes a bug show as a wrong number rather than NaN). */
    if ((e = cudaMemsetAsync(s->k_pool, 0, kv_bytes, s->stream)) != cudaSuccess ||
        (e = cudaMemsetAsync(s->v_pool, 0, kv_bytes, s->stream)) != cudaSuccess ||
        (e = cudaStreamSynchronize(s->stream)) != cudaSuccess) {
        rc = cuda_fail(s, e, "clearing the KV cache");
        goto fail;
    }
    cublasStatus_t bs = cublasCreate(&s->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(s->blas, s->stream);
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = cublasSetWorkspace(s->blas, s->blas_workspace, 32u << 20);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        rc = blas_fail(s, bs, "cublas setup");
        goto fail;
    }
    *state = s;
    return VB_OK;
fail:
    cuda_free(s);
    return rc;
}

static vb_backend_caps cuda_caps(void *state) {
    cuda_state *s = state;
    vb_backend_caps c = {.physical_causality = true, .paged_kv = true, .kv_fork = true,
                         .max_batch = s->n_batch_max};
    return c;
}

/* ------------------------------------------------------------------ forward */

/* Copy block src to dst in every layer's K and V (copy-on-write done by the metadata). */
static int copy_block(cuda_state *s, int32_t src, int32_t dst) {
    const size_t blk = (size_t)s->block_size * s->w.kv_dim;
    for (int il = 0; il < s->w.n_layer; il++) {
        size_t base = (size_t)il * s->layer_kv_elems;
        CU(s, cudaMemcpyAsync(s->k_pool + base + (size_t)dst * blk,
                              s->k_pool + base + (size_t)src * blk, blk * 2,
                              cudaMemcpyDeviceToDevice, s->stream));
        CU(s, cudaMemcpyAsync(s->v_pool + base + (size_t)dst * blk,
                              s->v_pool + base + (size_t)src * blk, blk * 2,
                              cudaMemcpyDeviceToDevice, s->stream));
    }
    return VB_OK;
}

/* vb_kvc_copy_fn: a shared partial block was copied on write: copy its device rows too. */
static int copy_block_cb(void *user, int32_t src, int32_t dst) { return copy_block(user, src, dst); }

static void rollback(cuda_state *s, const vb_batch *b) { vb_kvc_undo_batch(s->kvc, b, s->kv_row, b->n); }

static int cuda_forward(void *state, const vb_batch *b, float *logits) {
    cuda_state *s = state;
    const int32_t K = b->n, bs = s->block_size;
    if (K <= 0) return VB_OK;
    if (K > s->n_batch_max)
        return vb_errf(s->err, VB_ERR_ARG, "cuda: batch of %d rows exceeds n_batch_max %d", K,
                       s->n_batch_max);
    if (s->w.pos_embd)
        for (int32_t i = 0; i < K; i++)
            if (b->pos[i] < 0 || b->pos[i] >= s->w.n_pos_embd)
                return vb_errf(s->err, VB_ERR_ARG,
                               "cuda: position %d outside the model's %d position embeddings",
                               b->pos[i], s->w.n_pos_embd);
    /* every row into its sequence (block metadata on the host), all or nothing */
    char msg[160];
    int rc = vb_kvc_append_batch(s->kvc, b, s->kv_row, copy_block_cb, s, msg, sizeof msg);
    if (rc != VB_OK) return vb_errf(s->err, rc, "cuda: %s", msg);
    /* per-row metadata and block tables */
    int32_t *tok = meta_h(s, META_TOKEN), *pos = meta_h(s, META_POS), *ctx = meta_h(s, META_CTX);
    int32_t *toff = meta_h(s, META_TOFF), *slot = meta_h(s, META_SLOT);
    int32_t *lrow = meta_h(s, META_LOGIT), *tables = tables_h(s);
    int32_t n_tables = 0, n_logits = 0;
    for (int32_t i = 0; i < K; i++) s->table_off[b->seq[i]] = -1;
    for (int32_t i = 0; i < K; i++) {
        vb_seq q = b->seq[i];
        int32_t nb = 0;
        const int32_t *tab = vb_kvc_block_table(s->kvc, q, &nb);
        if (s->table_off[q] < 0) {
            if (n_tables + nb > s->tables_cap) {
                rollback(s, b);
                return vb_errf(s->err, VB_ERR_STATE, "cuda: block tables overflow");
            }
            memcpy(tables + n_tables, tab, (size_t)nb * sizeof *tab);
            s->table_off[q] = n_tables;
            n_tables += nb;
        }
        int32_t r = s->kv_row[i];
        tok[i] = b->token[i];
        pos[i] = b->pos[i];
        ctx[i] = r + 1;
        toff[i] = s->table_off[q];
        slot[i] = tab[r / bs] * bs + r % bs;
        if (b->want_logits[i]) lrow[n_logits++] = i;
    }
    size_t bytes = ((size_t)META_N * s->n_batch_max + (size_t)n_tables) * 4;
    cudaError_t e = cudaMemcpyAsync(s->d_meta, s->h_meta, bytes, cudaMemcpyHostToDevice,
                                    s->stream);
    if (e != cudaSuccess) rc = cuda_fail(s, e, "uploading the batch");
    if (rc == VB_OK)
        rc = s->use_graph ? run_graph(s, K, n_logits) : enqueue_forward(s, K, n_logits);
    if (rc == VB_OK && n_logits > 0 && logits) {
        e = cudaMemcpyAsync(logits, s->logits, (size_t)n_logits * s->w.n_vocab * 4,
                            cudaMemcpyDeviceToHost, s->stream);
        if (e != cudaSuccess) rc = cuda_fail(s, e, "downloading logits");
    }
    if (rc == VB_OK && (e = cudaStreamSynchronize(s->stream)) != cudaSuccess)
        rc = cuda_fail(s, e, "forward");
    if (rc != VB_OK) {
        cudaStreamSynchronize(s->stream);
        cudaGetLastError(); /* clear a sticky launch error where possible */
        rollback(s, b);
    }
    return rc;
}

/* ------------------------------------------------------------------ KV operations */

static struct vb_kv_cache *cuda_paged_kv(void *state) { return ((cuda_state *)state)->kvc; }

const vb_backend_ops vb_backend_cuda = {
    .version = VB_BACKEND_VERSION,
    .name = "cuda",
    .runs_gguf = true,
    .init = cuda_init,
    .free = cuda_free,
    .caps = cuda_caps,
    .forward = cuda_forward,
    .paged_kv = cuda_paged_kv,
};
