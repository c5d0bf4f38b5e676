/* quantize.h - model quantization as llama.cpp's `llama-quantize` does it without an importance
 * matrix: its presets (q4_0 .. q6_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, iq4_nl, iq4_xs, q8_0, f16, bf16,
 * f32), its per-tensor rules (which tensors stay, which get more bits: output, attn_v,
 * ffn_down, attn_output by layer), its fallbacks for rows that are not a multiple of the block
 * size, and its general.file_type numbering. Used by `vibee quantize`. */
#ifndef VB_QUANTIZE_H
#define VB_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

typedef struct vb_quant_preset {
    const char *name;      /* "q4_k_m" (matched case-insensitively) */
    uint32_t ftype;        /* llama.cpp's LLAMA_FTYPE_* number, written as general.file_type */
    uint32_t default_type; /* vb_type of most matrices */
} vb_quant_preset;

/* Preset by name (any case; "q4_k" etc. are llama.cpp's aliases of the _M presets); NULL if
 * unknown. vb_quant_preset_names: the accepted names, comma-separated, for messages. */
const vb_quant_preset *vb_quant_preset_find(const char *name);
const char *vb_quant_preset_names(void);

/* The type llama.cpp's rules give each tensor of g under preset p (in file order): types[i] for
 * tensor i (its own type where it is not quantized). VB_OK, VB_ERR_NOMEM, VB_ERR_FORMAT. */
int vb_quant_plan(const vb_gguf *g, const vb_quant_preset *p, uint32_t *types, char *err, size_t err_len);

/* Quantize the GGUF at in into out under preset p. allow_requantize: a tensor stored in a
 * quantized type may be converted (from its dequantized values), else that is an error (as in
 * llama.cpp). progress (may be NULL) is called after each tensor. VB_OK or a negative status
 * with err set. */
int vb_quantize_file(const char *in, const char *out, const vb_quant_preset *p, bool allow_requantize,
                     void (*progress)(int64_t done, int64_t total, void *user), void *user, char *err,
                     size_t err_len);

#endif
