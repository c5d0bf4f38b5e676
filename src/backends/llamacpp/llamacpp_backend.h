/* llamacpp_backend.h - extras of the llama.cpp backend (`-b llamacpp`) beyond the vb_backend_ops
 * table: llama.cpp's own tokenizer (an independent reference for vibee's) and a description of
 * the linked llama.cpp build. Declared always; defined only when the library is built with
 * VB_HAVE_LLAMACPP (see src/backends/llamacpp/llamacpp.mk and scripts/build_llamacpp.sh). */
#ifndef VB_LLAMACPP_BACKEND_H
#define VB_LLAMACPP_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "vibee.h"

/* Tokenize UTF-8 `text` with llama.cpp's vocabulary of the GGUF file at gguf_path (loaded
 * vocab-only and kept for the next call with the same path; special-token strings in the text
 * are NOT parsed). add_special: let llama.cpp add BOS/EOS as the model asks.
 * Writes at most max ids to out; returns the total number of tokens (may exceed max: call again
 * with a larger buffer) or a negative vb_status (VB_ERR_ARG, VB_ERR_IO when the file cannot be
 * loaded). Thread-safe (serialised by a mutex). */
int vb_llamacpp_tokenize(const char *gguf_path, const char *text, bool add_special, vb_token *out,
                         int max);

/* Static one-line description of the linked llama.cpp, e.g.
 * "llama.cpp b10256 (6c8dcaa) from npm llama.rn@0.12.9, -march=znver3, openmp". */
const char *vb_llamacpp_build_info(void);

/* ggml's own row conversions of the linked llama.cpp (an independent reference for vibee's
 * kernels and quantizer): type ids are GGUF/GGML type numbers. vb_llamacpp_dequantize: n elements
 * of `type` at src into dst (ggml's to_float); vb_llamacpp_quantize: n_rows rows of n_per_row
 * floats into dst with ggml_quantize_chunk (no importance matrix; the reference quantizer of
 * every type that needs none). VB_OK, or VB_ERR_UNSUPPORTED for a type ggml cannot convert
 * that way (or one that needs an importance matrix), VB_ERR_ARG for a bad size. */
int vb_llamacpp_dequantize(uint32_t type, const void *src, float *dst, int64_t n);
int vb_llamacpp_quantize(uint32_t type, const float *src, void *dst, int64_t n_rows,
                         int64_t n_per_row);

#endif
