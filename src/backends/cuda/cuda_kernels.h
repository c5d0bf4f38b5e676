/* cuda_kernels.h - the CUDA kernels of the `cuda` backend behind a C interface: embedding lookup,
 * RMSNorm / LayerNorm (f32 in, f16 out, optional row gather), the post-QKV step (bias, per-head
 * q/k RMSNorm, RoPE, scatter of K/V rows into the paged device cache), paged attention with an
 * online softmax (one thread block per (row, head)), SwiGLU / GELU, bias add, a device block copy
 * and a bandwidth probe. Every launcher enqueues on its stream and returns the launch status,
 * never synchronizes. Shapes are row-major, rows = batch rows. */
#ifndef VB_CUDA_KERNELS_H
#define VB_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t vb_half_bits; /* IEEE half stored as bits on the host side */

/* Where a launcher enqueues: the stream, and whether the kernel may start early by programmatic
 * dependent launch (pdl, sm_90): it then waits for the previous kernel's results on the device
 * (griddepcontrol.wait) and only prefetches read-only weights before that. */
typedef struct vb_cuda_stream {
    cudaStream_t stream;
    int pdl;
} vb_cuda_stream;

enum vb_cuda_rope { VB_CUDA_ROPE_NONE = 0, VB_CUDA_ROPE_NORMAL = 1, VB_CUDA_ROPE_NEOX = 2 };

/* Per-row metadata of one forward, in device memory (uploaded once per forward). */
typedef struct vb_cuda_rows {
    const int32_t *token;      /* [n_rows] */
    const int32_t *pos;        /* [n_rows] logical positions */
    const int32_t *ctx_len;    /* [n_rows] KV rows visible to the row (itself included) */
    const int32_t *table_off;  /* [n_rows] offset of the row's sequence block table in tables */
    const int32_t *write_slot; /* [n_rows] block * block_size + slot where the row's K/V go */
    const int32_t *tables;     /* concatenated block tables */
} vb_cuda_rows;

/* x[r][n_embd] = tok_embd[token[r]] (+ pos_embd[pos[r]] when pos_embd != NULL). */
cudaError_t vb_cuda_embed(vb_cuda_stream st, const vb_half_bits *tok_embd,
                          const vb_half_bits *pos_embd, const vb_cuda_rows *rows, int32_t n_rows,
                          int32_t n_embd, float *x);

/* out[j][n] = norm(x[src_row(j)]) * w (+ b), src_row(j) = gather ? gather[j] : j.
 * layernorm = 0: RMSNorm, 1: LayerNorm (mean removed, bias b may be NULL). */
cudaError_t vb_cuda_norm(vb_cuda_stream st, const float *x, const int32_t *gather,
                         int32_t n_out_rows, int32_t n, const float *w, const float *b, float eps,
                         int layernorm, vb_half_bits *out);

typedef struct vb_cuda_qkv_params {
    int32_t n_head, n_head_kv, head_dim;
    const float *bias;    /* [q_dim + 2 kv_dim] or NULL */
    const float *q_norm;  /* [head_dim] or NULL (qwen3) */
    const float *k_norm;  /* [head_dim] or NULL */
    float norm_eps;
    int rope;             /* enum vb_cuda_rope */
    float rope_theta;
    int32_t block_size;
} vb_cuda_qkv_params;

/* qkv [n_rows][q_dim + 2 kv_dim] f32 (GEMM output) -> q [n_rows][q_dim] f32 (biased, normed,
 * rotated); k, v rows (rotated k) written as f16 into k_cache / v_cache at write_slot:
 * cache layout of one layer [n_blocks * block_size][kv_dim]. */
cudaError_t vb_cuda_qkv_post(vb_cuda_stream st, const vb_cuda_qkv_params *p, const float *qkv,
                             const vb_cuda_rows *rows, int32_t n_rows, float *q,
                             vb_half_bits *k_cache, vb_half_bits *v_cache);

/* Scratch floats vb_cuda_attention needs for up to n_rows_max rows (split partials). */
size_t vb_cuda_attention_scratch_floats(int32_t n_rows_max, int32_t n_head, int32_t head_dim);
/* out[r][h*head_dim..] = softmax(q[r][h] . K[rows 0..ctx_len[r]) / sqrt(hd)) V, K/V read
 * through the row's block table; q f32 [n_rows][n_head * head_dim] (not yet scaled), out f16
 * [n_rows][n_head * head_dim]. part: scratch of part_floats floats. head_dim a multiple of 8, <= 256. */
cudaError_t vb_cuda_attention(vb_cuda_stream st, const float *q, const vb_half_bits *k_cache,
                              const vb_half_bits *v_cache, const vb_cuda_rows *rows,
                              int32_t n_rows, int32_t n_head, int32_t n_head_kv,
                              int32_t head_dim, int32_t block_size, float *part,
                              size_t part_floats, vb_half_bits *out);

/* out[r][n_ff] = silu(gu[r][0..n_ff)) * gu[r][n_ff..2 n_ff)   (gu f32 [n_rows][2 n_ff]). */
cudaError_t vb_cuda_swiglu(vb_cuda_stream st, const float *gu, int32_t n_rows, int32_t n_ff,
                           vb_half_bits *out);
/* out[r][n] = gelu_tanh(x[r][n] + b[n]) (b may be NULL). */
cudaError_t vb_cuda_gelu(vb_cuda_stream st, const float *x, const float *b, int32_t n_rows,
                         int32_t n, vb_half_bits *out);
/* y[r][n] += b[n]. */
cudaError_t vb_cuda_add_bias(vb_cuda_stream st, float *y, const float *b, int32_t n_rows,
                             int32_t n);
/* dst[i] = (half) src[i] for n elements. */
cudaError_t vb_cuda_f32_to_f16(cudaStream_t stream, const float *src, vb_half_bits *dst,
                               int64_t n);

/* Read n_bytes (multiple of 16) of buf with 16-byte loads; sink gets one value per block. */
cudaError_t vb_cuda_read_probe(cudaStream_t stream, const void *buf, int64_t n_bytes,
                               float *sink, int32_t n_sink);

/* Own skinny GEMM for few rows (decode, short verify windows), with the step before it fused:
 * the block first builds the f16 input rows in shared memory from
 *   VB_CUDA_IN_F16:     x16 [n_rows][n_in] as is;
 *   VB_CUDA_IN_RMSNORM: RMSNorm(x32[src]) * norm_w, src = gather ? gather[r] : r (x32 rows n_in);
 *   VB_CUDA_IN_SWIGLU:  silu(x32[r][i]) * x32[r][n_in + i]  (x32 [n_rows][2 n_in], gate | up);
 * then y[r][o] (+)= sum_i W[o][i] in[r][i], one warp per output row, 16-byte weight loads.
 * W f16 [n_out][n_in]; n_rows <= VB_CUDA_GEMV_MAX_ROWS, n_in % 8 == 0 and
 * n_rows * n_in <= VB_CUDA_GEMV_MAX_IN (vb_cuda_gemv_fits). */
enum { VB_CUDA_IN_F16 = 0, VB_CUDA_IN_RMSNORM = 1, VB_CUDA_IN_SWIGLU = 2 };
#define VB_CUDA_GEMV_MAX_ROWS 8
#define VB_CUDA_GEMV_MAX_IN (48 * 1024) /* elements of shared f16 input (96 KiB) */
typedef struct vb_cuda_gemv_in {
    int mode;                /* VB_CUDA_IN_* */
    const vb_half_bits *x16; /* F16 input */
    const float *x32;        /* RMSNORM / SWIGLU input */
    const int32_t *gather;   /* RMSNORM: source row per input row, or NULL */
    const float *norm_w;     /* RMSNORM: [n_in] */
    float eps;
} vb_cuda_gemv_in;
int vb_cuda_gemv_fits(int32_t n_rows, int32_t n_in);
cudaError_t vb_cuda_gemv(vb_cuda_stream st, const vb_half_bits *W, int32_t n_in, int32_t n_out,
                         const vb_cuda_gemv_in *in, int32_t n_rows, float *y, int accumulate);
/* One-time kernel attributes (the GEMV's shared-memory limit); call before any launch. */
cudaError_t vb_cuda_kernels_init(void);

#ifdef __cplusplus
}
#endif
#endif
