/* cuda_model.h - the model's weights in device memory for the `cuda` backend: the architecture
 * switches (qwen3, qwen2, llama, gpt2), matrices converted to f16 (F16 copied, F32/BF16 rounded,
 * quantized types dequantized to f16 at upload: the GPU then reads 2 bytes per weight), norm weights
 * and biases as f32, Q/K/V fused into one matrix and gate/up into another so a layer needs four
 * GEMMs. Loaded once from the GGUF tensors of a vb_model. */
#ifndef VB_CUDA_MODEL_H
#define VB_CUDA_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "cuda_kernels.h"
#include "model.h"

typedef struct vb_cuda_layer {
    vb_half_bits *w_qkv;  /* [q_dim + 2 kv_dim][n_embd] rows: q, then k, then v */
    vb_half_bits *w_o;    /* [n_embd][q_dim] */
    vb_half_bits *w_gu;   /* swiglu: [2 n_ff][n_embd] gate rows then up rows; gelu: [n_ff][n_embd] */
    vb_half_bits *w_down; /* [n_embd][n_ff] */
    float *attn_norm, *attn_norm_b; /* [n_embd]; _b gpt2 only */
    float *ffn_norm, *ffn_norm_b;   /* [n_embd] */
    float *b_qkv;         /* [q_dim + 2 kv_dim] or NULL */
    float *b_o;           /* [n_embd] or NULL */
    float *b_up;          /* [n_ff] or NULL (gpt2) */
    float *b_down;        /* [n_embd] or NULL (gpt2) */
    float *q_norm, *k_norm; /* [head_dim] or NULL (qwen3) */
} vb_cuda_layer;

typedef struct vb_cuda_weights {
    int32_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, q_dim, kv_dim;
    int rope;             /* enum vb_cuda_rope */
    bool layernorm;       /* gpt2: LayerNorm with bias; else RMSNorm */
    bool gelu;            /* gpt2: GELU MLP; else SwiGLU */
    float rope_theta, norm_eps;
    vb_half_bits *tok_embd;   /* [n_vocab][n_embd] */
    vb_half_bits *pos_embd;   /* [n_ctx_train][n_embd] or NULL (gpt2) */
    int32_t n_pos_embd;       /* rows of pos_embd */
    vb_half_bits *output;     /* [n_vocab][n_embd]; == tok_embd when tied */
    float *output_norm, *output_norm_b; /* [n_embd] */
    vb_cuda_layer *layers;    /* [n_layer] */
    int64_t bytes;            /* device bytes of all weights */
    int64_t bytes_per_token;  /* bytes read by a 1-row forward (all matrices but the embedding) */
    void **allocs;            /* every cudaMalloc, for free */
    int32_t n_allocs, cap_allocs;
} vb_cuda_weights;

/* Upload the weights of a GGUF model. VB_OK, or VB_ERR_UNSUPPORTED (arch / type / head_dim),
 * VB_ERR_FORMAT (missing tensor, wrong shape), VB_ERR_BACKEND (CUDA error), VB_ERR_NOMEM, with
 * a message in err. On error everything allocated so far is freed. */
int vb_cuda_weights_load(const vb_model *model, vb_cuda_weights *w, char *err);
void vb_cuda_weights_free(vb_cuda_weights *w);

#endif
