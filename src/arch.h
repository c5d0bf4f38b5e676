/* arch.h - the transformer architectures vibee runs from GGUF files, as one table of traits
 * (arch.c): for each value of general.architecture, how its graph differs from the others
 * (norm, RoPE pairing, position embeddings, Q/K/V and FFN tensor layout, biases, QK norm,
 * output head, extra norms). Backends read the traits instead of testing names; the hyper-
 * parameters themselves are read under the file's own prefix (<general.architecture>.*). */
#ifndef VB_ARCH_H
#define VB_ARCH_H

#include <stdbool.h>

enum vb_arch_norm { VB_ARCH_NORM_LAYER = 0, VB_ARCH_NORM_RMS = 1 };
enum vb_arch_rope { VB_ARCH_ROPE_NONE = 0, VB_ARCH_ROPE_NORM = 1, VB_ARCH_ROPE_NEOX = 2 };
/* the feed-forward: up -> GELU(tanh) -> down (gpt2), or gated: act(gate) * up -> down with
 * act = SiLU (SwiGLU) or GELU(tanh) (GeGLU) */
enum vb_arch_ffn { VB_ARCH_FFN_GELU = 0, VB_ARCH_FFN_SWIGLU = 1, VB_ARCH_FFN_GEGLU = 2 };
/* whether a group of tensors must be present, may be, or is never read */
enum vb_arch_need { VB_ARCH_NO = 0, VB_ARCH_OPTIONAL = 1, VB_ARCH_REQUIRED = 2 };

typedef struct vb_arch {
    const char *name;   /* general.architecture */
    const char *graph;  /* the llama.cpp graph it runs as (e.g. wedlm: qwen3), for messages */
    enum vb_arch_norm norm;
    bool norm_bias;     /* LayerNorm weights come with .bias (attn_norm, ffn_norm, output_norm) */
    enum vb_arch_rope rope;
    bool pos_embd;      /* learned position_embd.weight added to the token embedding */
    enum vb_arch_need fused_qkv; /* blk.N.attn_qkv.weight [n_q + 2 kv_dim][n_embd], rows Q;K;V
                                    (OPTIONAL: else attn_q/k/v) */
    enum vb_arch_need qkv_bias;  /* attn_q/k/v.bias (or attn_qkv.bias when fused) */
    enum vb_arch_need out_bias;  /* attn_output.bias */
    bool qk_norm;       /* attn_q_norm / attn_k_norm: RMSNorm over head_dim per head, before RoPE */
    enum vb_arch_ffn ffn;
    bool fused_gate_up; /* blk.N.ffn_up.weight [2 n_ff][n_embd]: gate rows first, then up */
    bool ffn_bias;      /* ffn_up.bias and ffn_down.bias (required) */
    bool rope_freqs;    /* optional rope_freqs.weight [n_rot/2] (Llama 3.1 frequency factors) */
    bool rope_factors;  /* optional rope_factors_long/short.weight (Phi-3 LongRoPE) */
    bool mask_from_vocab; /* no tokenizer.ggml.mask_token_id: the WeDLM mask token by its text */
    bool embd_scale;    /* token embeddings multiplied by sqrt(n_embd) */
    bool post_norms;    /* RMSNorm of the attention and FFN outputs before their residual adds
                           (blk.N.post_attention_norm, blk.N.post_ffw_norm) */
    int swa_pattern;    /* > 0 with <arch>.attention.sliding_window: every swa_pattern-th layer
                           is global, the others sliding-window (local) layers, which use RoPE
                           base 10000 and no frequency scaling */
    bool logit_softcap; /* <arch>.final_logit_softcapping c > 0 (files without sliding window):
                           logits = c tanh(logits / c) */
} vb_arch;

/* The traits of general.architecture `name`; NULL if vibee does not know it. */
const vb_arch *vb_arch_find(const char *name);

/* "gpt2, llama, ..." (every known name) into buf, for messages; returns buf. */
const char *vb_arch_list(char *buf, unsigned long len);

/* The vocabulary texts a WeDLM mask token goes by, tried in order (mask_from_vocab), and the
 * number of them. */
extern const char *const vb_arch_mask_texts[];
extern const int vb_arch_n_mask_texts;

#endif
