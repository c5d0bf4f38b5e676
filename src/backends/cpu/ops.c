/* ops.c - per-row operations of the CPU forward pass: normalisations, rotary embedding,
 * activations, softmax, adds (see ops.h). Plain C; the dot/axpy helpers use GCC/Clang vector
 * extensions so that they vectorise without -ffast-math. */
#include "ops.h"

#include <math.h>
#include <string.h>

typedef float vb_f32x8 __attribute__((vector_size(32)));

float vb_op_dot(const float *a, const float *b, int64_t n) {
    vb_f32x8 acc0 = {0}, acc1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vb_f32x8 a0, a1, b0, b1;
        memcpy(&a0, a + i, sizeof a0);
        memcpy(&a1, a + i + 8, sizeof a1);
        memcpy(&b0, b + i, sizeof b0);
        memcpy(&b1, b + i + 8, sizeof b1);
        acc0 += a0 * b0;
        acc1 += a1 * b1;
    }
    acc0 += acc1;
    float sum = 0.0f;
    for (int k = 0; k < 8; k++) sum += acc0[k];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void vb_op_axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    vb_f32x8 av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) {
        vb_f32x8 xv, yv;
        memcpy(&xv, x + i, sizeof xv);
        memcpy(&yv, y + i, sizeof yv);
        yv += av * xv;
        memcpy(y + i, &yv, sizeof yv);
    }
    for (; i < n; i++) y[i] += a * x[i];
}

void vb_op_rmsnorm(const float *x, float *y, const float *w, int64_t n_rows, int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum_sq = 0.0;
        for (int64_t i = 0; i < n; i++) sum_sq += (double)xr[i] * xr[i];
        const float scale = (float)(1.0 / sqrt(sum_sq / (double)n + (double)eps));
        for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * scale * w[i];
    }
}

void vb_op_layernorm(const float *x, float *y, const float *w, const float *b, int64_t n_rows,
                     int64_t n, float eps) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += xr[i];
        const double mean = sum / (double)n;
        double var = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double d = xr[i] - mean;
            var += d * d;
        }
        var /= (double)n;
        const float scale = (float)(1.0 / sqrt(var + (double)eps));
        const float mean_f = (float)mean;
        for (int64_t i = 0; i < n; i++) {
            const float v = (xr[i] - mean_f) * scale * w[i];
            yr[i] = b ? v + b[i] : v;
        }
    }
}

#define VB_ROPE_MAX_PAIRS 512

void vb_op_rope(float *x, int32_t n_heads, int32_t head_dim, int32_t n_rot, int32_t pos,
                float theta_base, const float *freq_factors, enum vb_rope_kind kind) {
    const int32_t n_pairs = n_rot / 2;
    float cos_t[VB_ROPE_MAX_PAIRS];                          /* [n_pairs] */
    float sin_t[VB_ROPE_MAX_PAIRS];                          /* [n_pairs] */
    if (n_pairs > VB_ROPE_MAX_PAIRS || n_pairs <= 0) return; /* callers check n_rot at load */
    for (int32_t i = 0; i < n_pairs; i++) {
        double angle = (double)pos * pow((double)theta_base, -2.0 * (double)i / (double)n_rot);
        if (freq_factors) angle /= (double)freq_factors[i];
        cos_t[i] = (float)cos(angle);
        sin_t[i] = (float)sin(angle);
    }
    for (int32_t h = 0; h < n_heads; h++) {
        float *xh = x + (int64_t)h * head_dim;
        for (int32_t i = 0; i < n_pairs; i++) {
            const int32_t ia = kind == VB_ROPE_NEOX ? i : 2 * i;
            const int32_t ib = kind == VB_ROPE_NEOX ? i + n_pairs : 2 * i + 1;
            const float a = xh[ia], b = xh[ib];
            xh[ia] = a * cos_t[i] - b * sin_t[i];
            xh[ib] = a * sin_t[i] + b * cos_t[i];
        }
    }
}

void vb_op_gelu_tanh(float *x, int64_t n) {
    const float sqrt_2_over_pi = 0.79788456080286535588f;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(sqrt_2_over_pi * (v + 0.044715f * v * v * v)));
    }
}

void vb_op_silu_mul(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void vb_op_softmax(float *x, int64_t n) {
    if (n <= 0) return;
    float max = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void vb_op_add_bias(float *x, const float *bias, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) vb_op_add(x + r * n, bias, n);
}

void vb_op_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
