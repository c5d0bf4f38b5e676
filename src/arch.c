/* arch.c - the table of architectures (see arch.h). Facts from llama.cpp's graphs and loaders
 * (src/models/<arch>.cpp, llama_model_rope_type) and the published model definitions:
 *   gpt2:  LayerNorm with bias, learned position_embd, fused attn_qkv + bias, GELU MLP, biases on
 *          every projection, output.weight optional (tied to token_embd).
 *   llama: RMSNorm, RoPE NORM (adjacent pairs), SwiGLU, optional output.weight, optional
 *          rope_freqs.weight (Llama 3.1 frequency factors), optional q/k/v/o biases.
 *   qwen2: llama + required q/k/v biases, RoPE NEOX (pairs offset by n_rot/2).
 *   qwen3: RoPE NEOX, attn_q_norm / attn_k_norm (RMSNorm over head_dim per head, before RoPE),
 *          head_dim from <arch>.attention.key_length.
 *   wedlm: WeDLM checkpoints (llama.cpp PR 18731): the qwen3 graph with keys under wedlm.*; the
 *          mask token may be named only by its text in the vocabulary.
 *   phi3:  RMSNorm, RoPE NEOX, attn_qkv fused or separate (no biases), SwiGLU with gate and up fused in one
 *          ffn_up [2 n_ff][n_embd] (gate rows first: ggml_swiglu activates the first half),
 *          optional rope_factors_long/short (LongRoPE), optional output.bias.
 *   gemma3: RMSNorm (weights as stored: the converter already added Gemma's +1), embeddings
 *          scaled by sqrt(n_embd), QK norm, RoPE NEOX, post-attention and post-FFN norms, GeGLU
 *          (GELU tanh of the gate), tied output; with gemma3.attention.sliding_window, five
 *          local layers (RoPE base 10000) to each global one (gemma3.rope.freq_base, linear
 *          rope.scaling.factor); final logit softcap only without sliding window (llama.cpp). */
#include "arch.h"

#include <stdio.h>
#include <string.h>

static const vb_arch ARCHS[] = {
    {.name = "gpt2", .graph = "gpt2", .norm = VB_ARCH_NORM_LAYER, .norm_bias = true,
     .rope = VB_ARCH_ROPE_NONE, .pos_embd = true, .fused_qkv = VB_ARCH_REQUIRED,
     .qkv_bias = VB_ARCH_REQUIRED, .out_bias = VB_ARCH_REQUIRED, .ffn = VB_ARCH_FFN_GELU,
     .ffn_bias = true},
    {.name = "llama", .graph = "llama", .norm = VB_ARCH_NORM_RMS, .rope = VB_ARCH_ROPE_NORM,
     .qkv_bias = VB_ARCH_OPTIONAL, .out_bias = VB_ARCH_OPTIONAL, .ffn = VB_ARCH_FFN_SWIGLU,
     .rope_freqs = true},
    {.name = "qwen2", .graph = "qwen2", .norm = VB_ARCH_NORM_RMS, .rope = VB_ARCH_ROPE_NEOX,
     .qkv_bias = VB_ARCH_REQUIRED, .out_bias = VB_ARCH_OPTIONAL, .ffn = VB_ARCH_FFN_SWIGLU},
    {.name = "qwen3", .graph = "qwen3", .norm = VB_ARCH_NORM_RMS, .rope = VB_ARCH_ROPE_NEOX,
     .qkv_bias = VB_ARCH_OPTIONAL, .out_bias = VB_ARCH_OPTIONAL, .qk_norm = true,
     .ffn = VB_ARCH_FFN_SWIGLU},
    {.name = "wedlm", .graph = "qwen3", .norm = VB_ARCH_NORM_RMS, .rope = VB_ARCH_ROPE_NEOX,
     .qkv_bias = VB_ARCH_OPTIONAL, .out_bias = VB_ARCH_OPTIONAL, .qk_norm = true,
     .ffn = VB_ARCH_FFN_SWIGLU, .mask_from_vocab = true},
    {.name = "phi3", .graph = "phi3", .norm = VB_ARCH_NORM_RMS, .rope = VB_ARCH_ROPE_NEOX,
     .fused_qkv = VB_ARCH_OPTIONAL, .qkv_bias = VB_ARCH_NO, .out_bias = VB_ARCH_NO,
     .ffn = VB_ARCH_FFN_SWIGLU, .fused_gate_up = true, .rope_factors = true},
    {.name = "gemma3", .graph = "gemma3", .norm = VB_ARCH_NORM_RMS, .rope = VB_ARCH_ROPE_NEOX,
     .qkv_bias = VB_ARCH_NO, .out_bias = VB_ARCH_NO, .qk_norm = true, .ffn = VB_ARCH_FFN_GEGLU,
     .embd_scale = true, .post_norms = true, .swa_pattern = 6, .logit_softcap = true},
};

/* WeDLM's tokenizers: the project's own (scripts/wedlm/bpe.py, models/wedlm-py-6m.md) calls it
 * <|mask|>; Qwen-family vocabularies spell it <|MASK|>. */
const char *const vb_arch_mask_texts[] = {"<|mask|>", "<|MASK|>"};
const int vb_arch_n_mask_texts = (int)(sizeof vb_arch_mask_texts / sizeof vb_arch_mask_texts[0]);

const vb_arch *vb_arch_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return &ARCHS[i];
    return NULL;
}

const char *vb_arch_list(char *buf, unsigned long len) {
    size_t used = 0;
    if (len) buf[0] = 0;
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", ARCHS[i].name);
        if (w < 0 || (size_t)w >= len - used) break;
        used += (size_t)w;
    }
    return buf;
}
