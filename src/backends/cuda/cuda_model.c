/* cuda_model.c - upload of a GGUF model's weights to the GPU for the `cuda` backend (see
 * cuda_model.h): tensor lookup by llama.cpp's names, shape checks against the model info,
 * conversion of every other supported type to f16 through f32 (F16 is copied as is), Q/K/V and
 * gate/up fusion. */
#include "cuda_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "arch.h"
#include "backend.h"
#include "backends/cpu/kernels.h"
#include "types.h"

static int dalloc(vb_cuda_weights *w, size_t bytes, void **out, char *err) {
    if (w->n_allocs == w->cap_allocs) {
        int32_t cap = w->cap_allocs ? 2 * w->cap_allocs : 64;
        void **p = realloc(w->allocs, (size_t)cap * sizeof *p);
        if (!p) return vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory");
        w->allocs = p;
        w->cap_allocs = cap;
    }
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess)
        return vb_errf(err, VB_ERR_BACKEND, "cuda: cudaMalloc(%zu bytes) for weights: %s", bytes,
                       cudaGetErrorString(e));
    w->allocs[w->n_allocs++] = *out;
    w->bytes += (int64_t)bytes;
    return VB_OK;
}

/* Elements [0, n) of tensor t as f32 into dst (quantized types through the CPU kernels'
 * reference dequantization). */
static int tensor_to_f32(const vb_gguf_tensor *t, float *dst, int64_t n, char *err) {
    const vb_type_traits *tr = vb_type_get(t->type);
    if (t->type == VB_TYPE_F32) {
        memcpy(dst, t->data, (size_t)n * 4);
        return VB_OK;
    }
    if (!tr || !tr->supported || n % tr->block_elems != 0)
        return vb_errf(err, VB_ERR_UNSUPPORTED, "cuda: tensor '%s' has unsupported type %s",
                       t->name, tr && tr->name ? tr->name : "unknown");
    vb_dequantize_row(t->type, t->data, dst, n);
    return VB_OK;
}

static const vb_gguf_tensor *find(const vb_model *m, const char *name, int64_t ne0, int64_t ne1,
                                  bool optional, int *status, char *err) {
    *status = VB_OK;
    const vb_gguf_tensor *t = vb_gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (!optional)
            *status = vb_errf(err, VB_ERR_FORMAT, "cuda: model '%s' has no tensor '%s'", m->path,
                              name);
        return NULL;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        *status = vb_errf(err, VB_ERR_FORMAT,
                          "cuda: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                          name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)ne0, (long long)ne1);
        return NULL;
    }
    return t;
}

/* Matrix [ne1][ne0] into dst (device f16, ne1 * ne0 elements). */
static int upload_matrix(const vb_model *m, const char *name, int64_t ne0, int64_t ne1,
                         vb_half_bits *dst, char *err) {
    int st;
    const vb_gguf_tensor *t = find(m, name, ne0, ne1, false, &st, err);
    if (!t) return st;
    int64_t n = ne0 * ne1;
    cudaError_t e;
    if (t->type == VB_TYPE_F16) {
        e = cudaMemcpy(dst, t->data, (size_t)n * 2, cudaMemcpyHostToDevice);
    } else {
        float *f = malloc((size_t)n * sizeof *f);
        uint16_t *h = malloc((size_t)n * sizeof *h);
        if (!f || !h) {
            free(f), free(h);
            return vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory converting '%s'", name);
        }
        st = tensor_to_f32(t, f, n, err);
        if (st == VB_OK)
            for (int64_t i = 0; i < n; i++) h[i] = vb_f32_to_f16(f[i]);
        e = st == VB_OK ? cudaMemcpy(dst, h, (size_t)n * 2, cudaMemcpyHostToDevice) : cudaSuccess;
        free(f), free(h);
        if (st != VB_OK) return st;
    }
    if (e != cudaSuccess)
        return vb_errf(err, VB_ERR_BACKEND, "cuda: uploading '%s': %s", name,
                       cudaGetErrorString(e));
    return VB_OK;
}

static int alloc_matrix(vb_cuda_weights *w, int64_t rows, int64_t cols, vb_half_bits **out,
                        char *err) {
    return dalloc(w, (size_t)(rows * cols) * 2, (void **)out, err);
}

/* f32 vector of n elements into *out (device, allocated here); absent optional: *out = NULL.
 * With dst_off >= 0 the vector goes into an existing device array at that element offset. */
static int upload_vector(vb_cuda_weights *w, const vb_model *m, const char *name, int64_t n,
                         bool optional, float **out, char *err) {
    int st;
    const vb_gguf_tensor *t = find(m, name, n, 1, optional, &st, err);
    if (!t) {
        *out = NULL;
        return st;
    }
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory");
    st = tensor_to_f32(t, h, n, err);
    if (st == VB_OK) st = dalloc(w, (size_t)n * 4, (void **)out, err);
    if (st == VB_OK) {
        cudaError_t e = cudaMemcpy(*out, h, (size_t)n * 4, cudaMemcpyHostToDevice);
        if (e != cudaSuccess)
            st = vb_errf(err, VB_ERR_BACKEND, "cuda: uploading '%s': %s", name,
                         cudaGetErrorString(e));
    }
    free(h);
    return st;
}

/* Fused bias of q, k, v (any present): [q_dim + 2 kv_dim], zeros where absent. */
static int upload_qkv_bias(vb_cuda_weights *w, const vb_model *m, int il, char *err) {
    const char *parts[3] = {"attn_q", "attn_k", "attn_v"};
    int64_t sizes[3] = {w->q_dim, w->kv_dim, w->kv_dim};
    int64_t total = w->q_dim + 2 * (int64_t)w->kv_dim, off = 0;
    float *h = NULL;
    int st = VB_OK;
    for (int p = 0; p < 3 && st == VB_OK; off += sizes[p], p++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.bias", il, parts[p]);
        const vb_gguf_tensor *t = find(m, name, sizes[p], 1, true, &st, err);
        if (!t) continue;
        if (!h && !(h = calloc((size_t)total, sizeof *h)))
            return vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory");
        st = tensor_to_f32(t, h + off, sizes[p], err);
    }
    if (st == VB_OK && h) {
        st = dalloc(w, (size_t)total * 4, (void **)&w->layers[il].b_qkv, err);
        cudaError_t e = st == VB_OK ? cudaMemcpy(w->layers[il].b_qkv, h, (size_t)total * 4,
                                                 cudaMemcpyHostToDevice)
                                    : cudaSuccess;
        if (e != cudaSuccess)
            st = vb_errf(err, VB_ERR_BACKEND, "cuda: uploading qkv bias: %s",
                         cudaGetErrorString(e));
    }
    free(h);
    return st;
}

static int load_layer(vb_cuda_weights *w, const vb_model *m, int il, char *err) {
    vb_cuda_layer *L = &w->layers[il];
    const int64_t E = w->n_embd, Q = w->q_dim, KV = w->kv_dim, F = w->n_ff;
    char name[96];
    int st;
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, il), name)
#define TRY(x) do { if ((st = (x)) != VB_OK) return st; } while (0)
    TRY(alloc_matrix(w, Q + 2 * KV, E, &L->w_qkv, err));
    if (w->layernorm) { /* gpt2: fused attn_qkv */
        TRY(upload_matrix(m, NAME("attn_qkv.weight"), E, Q + 2 * KV, L->w_qkv, err));
        TRY(upload_vector(w, m, NAME("attn_qkv.bias"), Q + 2 * KV, true, &L->b_qkv, err));
    } else {
        TRY(upload_matrix(m, NAME("attn_q.weight"), E, Q, L->w_qkv, err));
        TRY(upload_matrix(m, NAME("attn_k.weight"), E, KV, L->w_qkv + Q * E, err));
        TRY(upload_matrix(m, NAME("attn_v.weight"), E, KV, L->w_qkv + (Q + KV) * E, err));
        TRY(upload_qkv_bias(w, m, il, err));
    }
    TRY(alloc_matrix(w, E, Q, &L->w_o, err));
    TRY(upload_matrix(m, NAME("attn_output.weight"), Q, E, L->w_o, err));
    TRY(upload_vector(w, m, NAME("attn_output.bias"), E, true, &L->b_o, err));
    TRY(upload_vector(w, m, NAME("attn_norm.weight"), E, false, &L->attn_norm, err));
    TRY(upload_vector(w, m, NAME("attn_norm.bias"), E, true, &L->attn_norm_b, err));
    TRY(upload_vector(w, m, NAME("ffn_norm.weight"), E, false, &L->ffn_norm, err));
    TRY(upload_vector(w, m, NAME("ffn_norm.bias"), E, true, &L->ffn_norm_b, err));
    TRY(upload_vector(w, m, NAME("attn_q_norm.weight"), w->head_dim, true, &L->q_norm, err));
    TRY(upload_vector(w, m, NAME("attn_k_norm.weight"), w->head_dim, true, &L->k_norm, err));
    if (w->gelu) {
        TRY(alloc_matrix(w, F, E, &L->w_gu, err));
        TRY(upload_matrix(m, NAME("ffn_up.weight"), E, F, L->w_gu, err));
        TRY(upload_vector(w, m, NAME("ffn_up.bias"), F, true, &L->b_up, err));
    } else {
        TRY(alloc_matrix(w, 2 * F, E, &L->w_gu, err));
        TRY(upload_matrix(m, NAME("ffn_gate.weight"), E, F, L->w_gu, err));
        TRY(upload_matrix(m, NAME("ffn_up.weight"), E, F, L->w_gu + F * E, err));
    }
    TRY(alloc_matrix(w, E, F, &L->w_down, err));
    TRY(upload_matrix(m, NAME("ffn_down.weight"), F, E, L->w_down, err));
    TRY(upload_vector(w, m, NAME("ffn_down.bias"), E, true, &L->b_down, err));
    w->bytes_per_token += 2 * ((Q + 2 * KV) * E + E * Q + (w->gelu ? 1 : 2) * F * E + E * F);
#undef NAME
#undef TRY
    return VB_OK;
}

int vb_cuda_weights_load(const vb_model *m, vb_cuda_weights *w, char *err) {
    memset(w, 0, sizeof *w);
    const vb_model_info *in = &m->info;
    if (m->owner || !m->gguf)
        return vb_errf(err, VB_ERR_UNSUPPORTED, "cuda: the cuda backend needs a GGUF model");
    /* the traits of src/arch.h this backend's kernels implement: LayerNorm+GELU MLP with a
       fused attn_qkv (gpt2's graph) or RMSNorm+SwiGLU with separate projections (llama, qwen2,
       qwen3, wedlm); not yet phi3's fused gate+up / LongRoPE or gemma3's extra norms, GeGLU and
       sliding windows */
    const vb_arch *a = vb_arch_find(in->arch);
    const bool gpt2_graph = a && a->norm == VB_ARCH_NORM_LAYER && a->ffn == VB_ARCH_FFN_GELU &&
                            a->fused_qkv == VB_ARCH_REQUIRED && a->pos_embd;
    const bool llama_graph = a && a->norm == VB_ARCH_NORM_RMS && a->ffn == VB_ARCH_FFN_SWIGLU &&
                             a->fused_qkv == VB_ARCH_NO && !a->pos_embd;
    if (!a || !(gpt2_graph || llama_graph) || a->fused_gate_up || a->rope_factors ||
        a->embd_scale || a->post_norms || a->swa_pattern > 0)
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "cuda: architecture '%s' is not supported (gpt2, llama, qwen2, qwen3, "
                       "wedlm)", in->arch);
    w->rope = a->rope == VB_ARCH_ROPE_NONE   ? VB_CUDA_ROPE_NONE
              : a->rope == VB_ARCH_ROPE_NORM ? VB_CUDA_ROPE_NORMAL
                                             : VB_CUDA_ROPE_NEOX;
    w->layernorm = a->norm == VB_ARCH_NORM_LAYER;
    w->gelu = a->ffn == VB_ARCH_FFN_GELU;
    w->n_embd = in->n_embd, w->n_layer = in->n_layer, w->n_head = in->n_head;
    w->n_head_kv = in->n_head_kv > 0 ? in->n_head_kv : in->n_head;
    w->head_dim = in->head_dim > 0 ? in->head_dim : (in->n_head ? in->n_embd / in->n_head : 0);
    w->n_ff = in->n_ff, w->n_vocab = in->n_vocab;
    w->q_dim = w->n_head * w->head_dim, w->kv_dim = w->n_head_kv * w->head_dim;
    w->rope_theta = m->rope_theta > 0 ? m->rope_theta : 10000.0f;
    w->norm_eps = m->norm_eps > 0 ? m->norm_eps : 1e-6f;
    int hd = w->head_dim;
    if (w->n_embd <= 0 || w->n_layer <= 0 || w->n_head <= 0 || w->n_ff <= 0 || w->n_vocab <= 0 ||
        w->n_head % w->n_head_kv != 0)
        return vb_errf(err, VB_ERR_FORMAT, "cuda: bad hyper-parameters in '%s'", m->path);
    if (hd % 8 != 0 || hd > 256)
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "cuda: head_dim %d not supported (a multiple of 8, at most 256)", hd);
    if (w->n_embd % 8 || w->q_dim % 8 || w->n_ff % 8)
        return vb_errf(err, VB_ERR_UNSUPPORTED, "cuda: n_embd, q_dim and n_ff must be multiples of 8");
    w->layers = calloc((size_t)w->n_layer, sizeof *w->layers);
    if (!w->layers) return vb_errf(err, VB_ERR_NOMEM, "cuda: out of host memory");

    int st;
    const int64_t E = w->n_embd, V = w->n_vocab;
    if ((st = alloc_matrix(w, V, E, &w->tok_embd, err)) != VB_OK ||
        (st = upload_matrix(m, "token_embd.weight", E, V, w->tok_embd, err)) != VB_OK)
        goto fail;
    if (w->layernorm) {
        const vb_gguf_tensor *t = vb_gguf_find_tensor(m->gguf, "position_embd.weight");
        if (!t || t->ne[0] != E) {
            st = vb_errf(err, VB_ERR_FORMAT, "cuda: gpt2 model without position_embd.weight");
            goto fail;
        }
        w->n_pos_embd = (int32_t)t->ne[1];
        if ((st = alloc_matrix(w, w->n_pos_embd, E, &w->pos_embd, err)) != VB_OK ||
            (st = upload_matrix(m, "position_embd.weight", E, w->n_pos_embd, w->pos_embd, err)))
            goto fail;
    }
    for (int il = 0; il < w->n_layer; il++)
        if ((st = load_layer(w, m, il, err)) != VB_OK) goto fail;
    if ((st = upload_vector(w, m, "output_norm.weight", E, false, &w->output_norm, err)) ||
        (st = upload_vector(w, m, "output_norm.bias", E, true, &w->output_norm_b, err)))
        goto fail;
    if (vb_gguf_find_tensor(m->gguf, "output.weight")) {
        if ((st = alloc_matrix(w, V, E, &w->output, err)) != VB_OK ||
            (st = upload_matrix(m, "output.weight", E, V, w->output, err)) != VB_OK)
            goto fail;
    } else {
        w->output = w->tok_embd; /* tied embeddings */
    }
    w->bytes_per_token += 2 * V * E;
    return VB_OK;
fail:
    vb_cuda_weights_free(w);
    return st;
}

void vb_cuda_weights_free(vb_cuda_weights *w) {
    if (!w) return;
    for (int32_t i = 0; i < w->n_allocs; i++) cudaFree(w->allocs[i]);
    free(w->allocs);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
