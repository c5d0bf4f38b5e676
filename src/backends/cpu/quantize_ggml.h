/* quantize_ggml.h - llama.cpp-compatible quantizers (ggml's reference algorithms, no importance
 * matrix) of Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K; see
 * quantize_ggml_template.h. */
#ifndef VB_QUANTIZE_GGML_H
#define VB_QUANTIZE_GGML_H

#include <stdint.h>

/* Quantize n floats (a multiple of the type's block size) into dst. VB_OK, VB_ERR_ARG (n),
 * VB_ERR_UNSUPPORTED (not one of the types above). */
int vb_quantize_ggml_row(uint32_t type, const float *src, void *dst, int64_t n);
/* The two copies it chooses from: compiled with FMA and fused multiply-adds
 * (quantize_ggml_fma.c; only on CPUs with AVX2 + FMA) and plain float (quantize_ggml.c). */
int vb_quantize_ggml_row_fma(uint32_t type, const float *src, void *dst, int64_t n);
int vb_quantize_ggml_row_plain(uint32_t type, const float *src, void *dst, int64_t n);

#endif
