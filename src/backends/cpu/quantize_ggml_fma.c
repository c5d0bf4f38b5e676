/* quantize_ggml_fma.c - the quantizers of quantize_ggml_template.h compiled the way
 * llama.cpp's default native build compiles ggml on an x86-64 CPU with AVX2 + FMA: the
 * Makefile adds -O2 -mavx2 -mfma -mf16c -ffp-contract=fast -mtune=native for this file (measured:
 * the plain copy's Q5_K blocks differed from llama.cpp's in 56 of 192, Q2_K 22, Q4_K 9, IQ4_NL 4
 * of 1536; with FMA but another -mtune still 1 Q4_K block; with these flags none, every type).
 * Called by vb_quantize_ggml_row only on CPUs that have AVX2 and FMA. */
#define QG_ENTRY vb_quantize_ggml_row_fma
#include "quantize_ggml_template.h"
