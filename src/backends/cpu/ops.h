/* ops.h - the element-wise and per-row operations of the CPU forward pass
 * (everything except the matrix products, which live in kernels.h, and
 * attention, in attention.h): RMSNorm, LayerNorm, rotary position embedding
 * (llama.cpp's NORM and NEOX pairings), GELU (tanh approximation), SiLU-gated
 * product (SwiGLU), GELU-gated product (GeGLU), softcapping, softmax, bias and residual
 * adds. All buffers are row-major float32; n_rows rows of `n` (or `dim`) floats each. */
#ifndef VB_CPU_OPS_H
#define VB_CPU_OPS_H

#include <stdint.h>

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for each of n_rows rows of n
 * floats (sum of squares in double; AVX-512 / AVX2 paths by vb_kernels_level()).
 * x, y: [n_rows][n] (may alias); w: [n]. */
void vb_op_rmsnorm(const float *x, float *y, const float *w, int64_t n_rows, int64_t n, float eps);

/* y[r] = (x[r] - mean) / sqrt(var + eps) * w + b (biased variance, as
 * torch.nn.LayerNorm). x, y: [n_rows][n] (may alias); w, b: [n] (b may be
 * NULL). */
void vb_op_layernorm(const float *x, float *y, const float *w, const float *b, int64_t n_rows,
                     int64_t n, float eps);

enum vb_rope_kind {
    VB_ROPE_NORM = 0, /* adjacent pairs (2i, 2i+1): llama.cpp LLAMA_ROPE_TYPE_NORM */
    VB_ROPE_NEOX = 1, /* pairs (i, i + n_rot/2):   llama.cpp LLAMA_ROPE_TYPE_NEOX */
};

/* Rotary embedding of n_heads heads of head_dim floats at logical position pos, in place:
 * x: [n_heads][head_dim]. The first n_rot dims of each head are rotated; pair i turns by
 * the angle pos * theta_base^(-2i/n_rot) / freq_factors[i] (freq_factors: [n_rot/2] or NULL).
 * Rotation: (a, b) -> (a cos - b sin, a sin + b cos). */
void vb_op_rope(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, int32_t pos,
                float theta_base, const float *freq_factors, enum vb_rope_kind kind);

/* x[i] = gelu(x[i]), tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void vb_op_gelu_tanh(float *x, int64_t n);

/* gate[i] = gelu(gate[i]) * up[i] (GeGLU, the tanh approximation above).  gate, up: [n]. */
void vb_op_gelu_mul(float *gate, const float *up, int64_t n);

/* x[i] = c tanh(x[i] / c) (logit softcapping), c > 0. */
void vb_op_softcap(float *x, int64_t n, float c);

/* gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).  gate, up: [n]. The AVX-512 /
 * AVX2 paths (by vb_kernels_level()) use the polynomial exp of vb_op_exp. */
void vb_op_silu_mul(float *gate, const float *up, int64_t n);

/* In-place numerically stable softmax of x[n] (max subtracted, sum in double), with the
 * vectorized exp of vb_op_exp at the current kernel level (vb_kernels_level()). */
void vb_op_softmax(float *x, int64_t n);

/* y[i] = exp(x[i]) for n floats (y may equal x). The AVX-512 and AVX2 paths use a polynomial
 * exp (Cody-Waite reduction to |r| <= ln2/2, degree-7 polynomial, two-step 2^k scaling so
 * subnormal results are kept): relative error under 1 ulp (measured 0.93 ulp) for x in
 * [-87.3, 88.7], subnormal results below -87.3 rounded as the final multiply rounds them, 0 below
 * -104 and for -inf, +inf above 88.72, NaN stays NaN. The portable path calls libm expf. */
void vb_op_exp(float *y, const float *x, int64_t n);

/* vb_op_exp / vb_op_softmax at an explicit instruction-set level (enum vb_kernel_level in
 * kernels.h; capped at what the CPU supports), for tests comparing the paths. */
void vb_op_exp_level(int level, float *y, const float *x, int64_t n);
void vb_op_softmax_level(int level, float *x, int64_t n);

/* Softmax numerators for attention, written so that every path of one level gives the same
 * bits for a query whatever the layout: x[i] = exp(x[i] - max) in place, and the returned
 * 1 / sum of those, where the sum is exact up to 2^-60 per term and independent of the order
 * (each term split into two integers of 2^-30 and 2^-60 units, summed as integers).  */
float vb_op_softmax_num_level(int level, float *x, int64_t n);

/* The same for each column of x [n_rows][n_cols] (one softmax per column, down the rows):
 * x[r][c] = exp(x[r][c] - max_r x[r][c]), inv_sum[c] = 1 / sum_r; bit-identical to
 * vb_op_softmax_num_level on each column copied out. Attention uses one column per query and
 * one row per key; a key a query must not see is -inf (exp 0). n_rows >= 1. */
void vb_op_softmax_cols_level(int level, float *x, int64_t n_rows, int64_t n_cols, float *inv_sum);

/* x[r][j] += bias[j] for each of n_rows rows of n.  x: [n_rows][n], bias: [n]. */
void vb_op_add_bias(float *x, const float *bias, int64_t n_rows, int64_t n);

/* y[i] += x[i]. */
void vb_op_add(float *y, const float *x, int64_t n);

/* Dot product of two float vectors. */
float vb_op_dot(const float *a, const float *b, int64_t n);

/* y[i] += a * x[i]. */
void vb_op_axpy(float *y, float a, const float *x, int64_t n);

#endif
