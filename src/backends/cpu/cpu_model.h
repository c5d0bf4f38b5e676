/* cpu_model.h - the weights of a transformer as the CPU backend sees them:
 * per-architecture hyper-parameters and per-layer views of the GGUF tensors
 * (llama.cpp tensor names), pointing into the model's mapping (only small 1-D
 * vectors stored in F16/BF16 are converted to float once; float matrices of
 * small models also get a copy repacked for multi-row products, see
 * vb_cpu_mat.packed and cpu_model.c). The architecture's traits come from the table of
 * src/arch.h; fused tensors (attn_qkv, a gate+up ffn_up) become views of their row ranges. */
#ifndef VB_CPU_MODEL_H
#define VB_CPU_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../../arch.h"
#include "../../model.h"
#include "ops.h"

/* A weight matrix of n_out rows of n_in elements of `type` (GGUF ne = {n_in,
 * n_out}). */
typedef struct vb_cpu_mat {
    uint32_t type;
    const void *data; /* [n_out][row bytes of n_in], inside the GGUF mapping */
    int64_t n_in;
    int64_t n_out;
    /* Float weights (F32/F16/BF16) of a model small enough (vb_cpu_model_init's rule): a copy
     * repacked for multi-row products, [ceil(n_out / 16)][n_in][16] of `type` (kernels.h
     * vb_pack_weights), owned by the model; NULL: products use `data`. */
    const void *packed;
} vb_cpu_mat;

typedef struct vb_cpu_layer {
    const float *attn_norm, *attn_norm_b; /* [n_embd]; _b only with arch->norm_bias */
    vb_cpu_mat wq, wk, wv;                /* [n_q][n_embd], [kv_dim][n_embd] x 2; with a fused
                                             attn_qkv, views of its rows [Q; K; V] */
    const float *bq, *bk, *bv;            /* biases (arch->qkv_bias; fused: views of its bias) */
    const float *q_norm, *k_norm;         /* arch->qk_norm: [head_dim] */
    vb_cpu_mat wo;                        /* [n_embd][n_q] */
    const float *bo;                      /* [n_embd] (arch->out_bias) */
    const float *ffn_norm, *ffn_norm_b;   /* [n_embd]; _b only with arch->norm_bias */
    vb_cpu_mat ffn_gate;                  /* [n_ff][n_embd] (gated FFNs; with a fused gate+up
                                             ffn_up, a view of its first n_ff rows) */
    vb_cpu_mat ffn_up;                    /* [n_ff][n_embd] (fused: a view of the last n_ff) */
    vb_cpu_mat ffn_down;                  /* [n_embd][n_ff] */
    const float *ffn_up_b, *ffn_down_b;   /* arch->ffn_bias: [n_ff], [n_embd] */
    const float *attn_post_norm, *ffn_post_norm; /* arch->post_norms: [n_embd] */
    bool swa; /* a sliding-window (local) layer: RoPE base rope_theta_swa, no frequency factors */
} vb_cpu_layer;

typedef struct vb_cpu_model {
    const vb_arch *arch; /* the traits of general.architecture (src/arch.h) */
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    int32_t n_q;    /* n_head * head_dim */
    int32_t kv_dim; /* n_head_kv * head_dim */
    int32_t n_rot;  /* rotated dims per head (<arch>.rope.dimension_count, default
                       head_dim) */
    enum vb_rope_kind rope_kind;
    float rope_theta;
    float norm_eps;
    bool use_rope; /* arch->rope != none (false: learned position embedding) */

    vb_cpu_mat tok_embd;                      /* [n_vocab][n_embd] */
    vb_cpu_mat pos_embd;                      /* arch->pos_embd: [n_ctx_train][n_embd] */
    const float *rope_freqs; /* [n_rot/2] frequency factors or NULL: llama's rope_freqs.weight,
                                or phi3's rope_factors_short (rope_factors_long when the
                                context is longer than n_ctx_orig: vb_cpu_model_set_ctx) */
    const float *rope_long, *rope_short; /* phi3 LongRoPE factors [n_rot/2], optional */
    int32_t n_ctx_orig;  /* <arch>.rope.scaling.original_context_length, else n_ctx_train */
    float attn_scale;    /* softmax scale: rope.scaling.attn_factor^2 / sqrt(head_dim) (gemma3
                            27B: 1 / sqrt(n_embd / n_head), as llama.cpp) */
    float rope_theta_swa; /* RoPE base of the sliding-window layers (arch->swa_pattern) */
    int32_t n_swa;        /* <arch>.attention.sliding_window (0: none): a local layer's query
                             row sees the last n_swa rows of its sequence (row order, as
                             causality; llama.cpp: q_pos - k_pos < n_swa, the same for rows at
                             consecutive positions) */
    float embd_scale;     /* token embeddings times this (1, or sqrt(n_embd): arch->embd_scale) */
    float logit_softcap;  /* > 0: logits = c tanh(logits / c) (arch->logit_softcap) */
    const float *output_norm, *output_norm_b; /* [n_embd]; _b only with arch->norm_bias */
    vb_cpu_mat output;     /* [n_vocab][n_embd]: output.weight or tied token_embd */
    const float *output_b; /* optional [n_vocab] */
    vb_cpu_layer *layers;  /* [n_layer] */

    float **owned; /* converted 1-D vectors, freed with the model */
    int32_t n_owned, cap_owned;
    /* The packed copies of the float and small Q8_0 matrices (vb_cpu_mat.packed) in one
     * anonymous mapping
     * of packed_map_bytes (NULL: none); the mapped pages they were made from are released
     * (released_bytes; 0 when the model is not a file mapping), so the copies replace them. */
    void *packed_base;
    int64_t packed_map_bytes;
    int64_t packed_bytes; /* bytes of it in use */
    bool pack_q8_0;       /* Q8_0 matrices are packed too (cpu_model.c VB_PACK_Q8_MAX_BYTES) */
    int64_t released_bytes;
    const struct vb_gguf *gguf; /* the model's file image (pages released after packing) */
} vb_cpu_model;

/* Build the views for model (a GGUF model). err: VB_ERR_LEN buffer. Returns
 * VB_OK, VB_ERR_UNSUPPORTED (architecture or weight type; the message names the
 * tensor and type), VB_ERR_FORMAT (missing or mis-shaped tensor, named),
 * VB_ERR_NOMEM. On error *m is released. */
int vb_cpu_model_init(vb_cpu_model *m, const vb_model *model, char *err);
/* Pick the RoPE frequency factors for a context of n_ctx rows per sequence (LongRoPE: the long
 * factors beyond n_ctx_orig, as llama.cpp picks them). */
void vb_cpu_model_set_ctx(vb_cpu_model *m, int32_t n_ctx);
void vb_cpu_model_free(vb_cpu_model *m);

#endif
