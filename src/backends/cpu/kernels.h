/* kernels.h - CPU compute kernels for every supported weight type: row dequantization,
 * quantization (Q8_0, Q4_0 from f32), and the matrix products of a forward pass,
 * Y[n_rows][n_out] = X[n_rows][n_in] * W^T with W stored as n_out rows of n_in elements of
 * `type` (GGUF layout: ne[0] = n_in). A naive reference path (vb_matmul_ref) and an optimized
 * path (AVX2/FMA, AVX-512 VNNI/BF16 when the CPU has them; runtime dispatch; portable C
 * fallback) that multiplies many rows at once so K rows cost far less than K matvecs. */
#ifndef VB_KERNELS_H
#define VB_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../types.h"
#include "threadpool.h"

/* dst[n] = dequantized src row of n elements (n multiple of the block size). */
void vb_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Quantize n floats into dst (type Q8_0, Q4_0, F16, BF16 or F32; also Q4_K and Q6_K with a
 * simpler quantizer than ggml's). VB_OK, VB_ERR_UNSUPPORTED, or VB_ERR_ARG (n not a multiple
 * of the block size). */
int vb_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* Reference: straightforward dequantize-and-dot in double-free float; single thread. */
void vb_matmul_ref(uint32_t type, const void *W, int64_t n_in, int64_t n_out, const float *X,
                   int64_t n_rows, float *Y);
/* Optimized, multithreaded over tp (may be NULL). Same result up to rounding (and, for
 * quantized W, up to the quantization of X to 8 bits where the kernel does that).
 * Thread-safe across calling threads (each keeps its own scratch for the quantized X,
 * about 3 * n_rows * n_in bytes, reused by later calls); one tp serves one caller at a time. */
void vb_matmul(vb_threadpool *tp, uint32_t type, const void *W, int64_t n_in, int64_t n_out,
               const float *X, int64_t n_rows, float *Y);

/* Row lookup (embedding): dst[n] = row r of a [n_rows][n] matrix of `type`. */
void vb_get_row(uint32_t type, const void *W, int64_t n, int64_t r, float *dst);

/* Names of the CPU features the dispatcher uses ("avx2 fma f16c avx512f avx512vnni ..."). */
const char *vb_cpu_features(void);
/* Force the portable path (for tests comparing paths). */
void vb_kernels_force_portable(bool on);

/* Instruction-set levels of the optimized path (added by the kernels engineer). */
enum vb_kernel_level {
    VB_KLEVEL_PORTABLE = 0,
    VB_KLEVEL_AVX2 = 1,   /* AVX2 + FMA + F16C */
    VB_KLEVEL_AVX512 = 2, /* AVX-512 F/BW/VL + VNNI (with AVX2/FMA/F16C) */
};
/* Force a level for vb_matmul (capped at what the CPU has; -1 = automatic again); returns
 * the level now in force. Process-wide: for tests and benchmarks, not while products run. */
int vb_kernels_force_level(int level);
int vb_kernels_level(void);     /* level vb_matmul uses now */
int vb_kernels_max_level(void); /* best level this CPU supports */
const char *vb_kernels_level_name(int level); /* "portable", "avx2", "avx512" */

/* Packed float weights (added for K-row forwards of F32 / F16 / BF16 models). W (n_out rows
 * of n_in elements of `type`, GGUF layout) is repacked once into blocks of VB_PACK_LANES
 * output rows interleaved per input element, in the same element type:
 *   packed[b][i][l] = W[b * VB_PACK_LANES + l][i]   (rows past n_out are zero)
 * so a product needs no horizontal sums: one vector of 16 outputs accumulates
 * broadcast(X[r][i]) * packed[b][i][0..16) for i = 0..n_in-1, and each W vector loaded serves
 * several X rows. Every output is one fused multiply-add chain in i order, whatever the row
 * count, tile or thread split: a K-row product gives each row exactly the bits of a one-row
 * product (on every level; the portable path uses fmaf and so matches the SIMD paths too). */
#define VB_PACK_LANES 16
/* Q8_0 weights (n_in a multiple of 32) are packed per 16 output rows and 32-element input
 * block k as 512 bytes of quants, [8 dwords][16 rows][4 bytes] made unsigned (q + 128), for
 * one vpdpbusd per dword against a broadcast X dword; then the 16 F16 scales of every block
 * (32 bytes each) after all the quants of the output block. Each output accumulates
 * dot_k * (dw_k * dx_k) in one fused chain over k, dot_k the exact integer dot of the
 * weights with the X8 activations (kernels_internal.h), so the row-count independence above
 * holds too. */
#define VB_PACK_Q8_BLOCK_BYTES (VB_PACK_LANES * 32 + VB_PACK_LANES * 2)
/* True for the types the packed layout supports (F32, F16, BF16, Q8_0). */
bool vb_packed_supported(uint32_t type);
/* True if packing `type` is worth it on this CPU (Q8_0: AVX-512 VNNI; floats: always). */
bool vb_packed_pays(uint32_t type);
/* Bytes of the packed copy of an [n_out][n_in] matrix of `type` (0 if unsupported). */
size_t vb_packed_bytes(uint32_t type, int64_t n_in, int64_t n_out);
/* Repack W (aligned to its element size) into dst (vb_packed_bytes(...) bytes, 64-byte
 * aligned for speed). VB_OK, VB_ERR_UNSUPPORTED or VB_ERR_ARG. */
int vb_pack_weights(uint32_t type, const void *W, int64_t n_in, int64_t n_out, void *dst);
/* Y[n_rows][n_out] = X[n_rows][n_in] * W^T with W packed by vb_pack_weights; multithreaded
 * over tp (may be NULL), output blocks split across threads. x_unchanged: X (same pointer and
 * shape) holds the values it held in this thread's previous product, as for the q, k and v
 * projections of one normed X; Q8_0 then reuses that product's quantized activations if no
 * other product quantized anything since (else it quantizes again: the flag is only a hint). */
void vb_matmul_packed(vb_threadpool *tp, uint32_t type, const void *packed, int64_t n_in,
                      int64_t n_out, const float *X, int64_t n_rows, float *Y, bool x_unchanged);

#endif
