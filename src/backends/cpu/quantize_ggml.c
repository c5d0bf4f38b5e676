/* quantize_ggml.c - the entry point of the llama.cpp-compatible quantizers
 * (quantize_ggml_template.h): the copy compiled with FMA and fused multiply-adds
 * (quantize_ggml_fma.c) where the CPU has AVX2 + FMA, as llama.cpp's native build on such a
 * CPU fuses them; else this file's copy, plain float in source order. */
#define QG_ENTRY vb_quantize_ggml_row_plain
#include "quantize_ggml_template.h"

int vb_quantize_ggml_row(uint32_t type, const float *src, void *dst, int64_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (vb_kernels_max_level() >= VB_KLEVEL_AVX2) return vb_quantize_ggml_row_fma(type, src, dst, n);
#endif
    return vb_quantize_ggml_row_plain(type, src, dst, n);
}
