/* ops.h - the element-wise and per-row operations of the CPU forward pass
 * (everything except the matrix products, which live in kernels.h, and
 * attention, in attention.h): RMSNorm, LayerNorm, rotary position embedding
 * (llama.cpp's NORM and NEOX pairings), GELU (tanh approximation), SiLU-gated
 * product (SwiGLU), softmax, bias and residual adds. All buffers are row-major
 * float32; n_rows rows of `n` (or `dim`) floats each. */
#ifndef VB_CPU_OPS_H
#define VB_CPU_OPS_H

#include <stdint.h>

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for each of n_rows rows of n
 * floats. x, y: [n_rows][n] (may alias); w: [n]. */
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

/* gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).  gate, up: [n]. */
void vb_op_silu_mul(float *gate, const float *up, int64_t n);

/* In-place numerically stable softmax of x[n]. */
void vb_op_softmax(float *x, int64_t n);

/* x[r][j] += bias[j] for each of n_rows rows of n.  x: [n_rows][n], bias: [n]. */
void vb_op_add_bias(float *x, const float *bias, int64_t n_rows, int64_t n);

/* y[i] += x[i]. */
void vb_op_add(float *y, const float *x, int64_t n);

/* Dot product of two float vectors. */
float vb_op_dot(const float *a, const float *b, int64_t n);

/* y[i] += a * x[i]. */
void vb_op_axpy(float *y, float a, const float *x, int64_t n);

#endif
