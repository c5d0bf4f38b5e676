/* cuda_kernels.cu - the CUDA kernels of the `cuda` backend (see cuda_kernels.h): embedding,
 * RMSNorm/LayerNorm, post-QKV (bias, q/k norm, RoPE, K/V scatter into the paged cache), paged
 * attention (split over the keys, online softmax, then a combine step), SwiGLU/GELU, bias add,
 * a skinny f16 GEMV for few rows, and a read-bandwidth probe. Every kernel reads the per-forward
 * row metadata from device memory, so a captured CUDA graph stays valid across forwards of the
 * same shape. */
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "cuda_kernels.h"

#define VB_ATTN_THREADS 128

/* Programmatic dependent launch (sm_90; no-ops when the kernel was launched without it): wait
 * until the previous kernel in the stream has finished and its writes are visible, then let the
 * next kernel start launching (it will wait in turn). Every kernel calls pdl_wait before it
 * touches anything a previous kernel wrote, so the chain keeps stream order. */
static __device__ __forceinline__ void pdl_wait_then_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* kernel<<<grid, block, smem, st.stream>>>(args), with the PDL attribute when st.pdl. */
template <typename... KArgs, typename... Args>
static cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                          vb_cuda_stream st, Args... args) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st.stream;
    cfg.attrs = attr;
    cfg.numAttrs = st.pdl ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
    return e != cudaSuccess ? e : cudaGetLastError();
}

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the whole block (blockDim.x multiple of 32, at most 1024); every thread gets it. */
static __device__ float block_sum(float v, float *scratch /* [33] */) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads(); /* scratch may still be read by a previous call */
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < n_warps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    return t;
}

/* ---------------------------------------------------------------- embedding */
__global__ void embed_kernel(const __half *tok_embd, const __half *pos_embd, const int32_t *token,
                             const int32_t *pos, int32_t n_embd, float *x) {
    pdl_wait_then_trigger();
    int r = blockIdx.x;
    const __half *te = tok_embd + (size_t)token[r] * n_embd;
    const __half *pe = pos_embd ? pos_embd + (size_t)pos[r] * n_embd : NULL;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) {
        float v = __half2float(te[i]);
        if (pe) v += __half2float(pe[i]);
        x[(size_t)r * n_embd + i] = v;
    }
}

extern "C" cudaError_t vb_cuda_embed(vb_cuda_stream st, const vb_half_bits *tok_embd,
                                     const vb_half_bits *pos_embd, const vb_cuda_rows *rows,
                                     int32_t n_rows, int32_t n_embd, float *x) {
    return launch(embed_kernel, dim3(n_rows), dim3(256), 0, st, (const __half *)tok_embd,
                  (const __half *)pos_embd, rows->token, rows->pos, n_embd, x);
}

/* ---------------------------------------------------------------- norms */
__global__ void norm_kernel(const float *x, const int32_t *gather, int32_t n, const float *w,
                            const float *b, float eps, int layernorm, __half *out) {
    pdl_wait_then_trigger();
    __shared__ float scratch[33];
    int j = blockIdx.x;
    int src = gather ? gather[j] : j;
    const float *xr = x + (size_t)src * n;
    float mean = 0.0f;
    if (layernorm) {
        float s = 0.0f;
        for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
        mean = block_sum(s, scratch) / (float)n;
    }
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float d = xr[i] - mean;
        ss += d * d;
    }
    float var = block_sum(ss, scratch) / (float)n;
    float scale = rsqrtf(var + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = (xr[i] - mean) * scale * w[i];
        if (b) v += b[i];
        out[(size_t)j * n + i] = __float2half(v);
    }
}

extern "C" cudaError_t vb_cuda_norm(vb_cuda_stream st, const float *x, const int32_t *gather,
                                    int32_t n_out_rows, int32_t n, const float *w, const float *b,
                                    float eps, int layernorm, vb_half_bits *out) {
    if (n_out_rows <= 0) return cudaSuccess;
    return launch(norm_kernel, dim3(n_out_rows), dim3(256), 0, st, x, gather, n, w, b, eps,
                  layernorm, (__half *)out);
}

/* ---------------------------------------------------------------- post-QKV */
/* grid (n_rows, n_head + 2 n_head_kv), block head_dim threads (<= 1024). */
__global__ void qkv_post_kernel(vb_cuda_qkv_params p, const float *qkv, vb_cuda_rows rows,
                                float *q, __half *k_cache, __half *v_cache) {
    pdl_wait_then_trigger();
    __shared__ float scratch[33];
    __shared__ float vals[1024];
    const int hd = p.head_dim, r = blockIdx.x, unit = blockIdx.y, i = threadIdx.x;
    const bool active = i < hd; /* blockDim is hd rounded up to a warp */
    const int q_dim = p.n_head * hd, kv_dim = p.n_head_kv * hd;
    int kind, head; /* 0 q, 1 k, 2 v */
    if (unit < p.n_head) { kind = 0; head = unit; }
    else if (unit < p.n_head + p.n_head_kv) { kind = 1; head = unit - p.n_head; }
    else { kind = 2; head = unit - p.n_head - p.n_head_kv; }
    int col = (kind == 0 ? 0 : kind == 1 ? q_dim : q_dim + kv_dim) + head * hd + i;
    float v = active ? qkv[(size_t)r * (q_dim + 2 * kv_dim) + col] : 0.0f;
    if (p.bias && active) v += p.bias[col];
    const float *nw = kind == 0 ? p.q_norm : kind == 1 ? p.k_norm : NULL;
    if (nw) { /* uniform per block: kind is per block */
        float ss = block_sum(v * v, scratch);
        v = active ? v * rsqrtf(ss / (float)hd + p.norm_eps) * nw[i] : 0.0f;
    }
    if (kind < 2 && p.rope != VB_CUDA_ROPE_NONE) {
        vals[i] = v;
        __syncthreads();
        const double pos = (double)rows.pos[r];
        int j, partner;
        bool first;
        if (p.rope == VB_CUDA_ROPE_NEOX) {
            int half = hd / 2;
            j = i < half ? i : i - half;
            first = i < half;
            partner = first ? i + half : i - half;
        } else {
            j = i / 2;
            first = (i & 1) == 0;
            partner = first ? i + 1 : i - 1;
        }
        double freq = pow((double)p.rope_theta, -2.0 * (double)j / (double)hd);
        double s, c;
        sincos(pos * freq, &s, &c);
        float other = active ? vals[partner] : 0.0f;
        float x0 = first ? v : other, x1 = first ? other : v;
        v = first ? (float)(x0 * c - x1 * s) : (float)(x0 * s + x1 * c);
    }
    if (!active) return;
    if (kind == 0) {
        q[(size_t)r * q_dim + head * hd + i] = v;
    } else {
        size_t off = (size_t)rows.write_slot[r] * kv_dim + head * hd + i;
        (kind == 1 ? k_cache : v_cache)[off] = __float2half(v);
    }
}

extern "C" cudaError_t vb_cuda_qkv_post(vb_cuda_stream st, const vb_cuda_qkv_params *p,
                                        const float *qkv, const vb_cuda_rows *rows,
                                        int32_t n_rows, float *q, vb_half_bits *k_cache,
                                        vb_half_bits *v_cache) {
    if (p->head_dim > 1024 || p->head_dim % 2 != 0) return cudaErrorInvalidValue;
    if (n_rows <= 0) return cudaSuccess;
    dim3 grid(n_rows, p->n_head + 2 * p->n_head_kv);
    return launch(qkv_post_kernel, grid, dim3((p->head_dim + 31) / 32 * 32), 0, st, *p, qkv,
                  *rows, q, (__half *)k_cache, (__half *)v_cache);
}

/* ---------------------------------------------------------------- attention */
/* Partial attention over one split of the keys. grid (n_head, n_rows, n_split), block 128.
 * A group of G lanes (G = the power of two >= head_dim / 8) handles one key at a time, 8 elements
 * per lane (one 16-byte load of K and one of V; lanes past head_dim idle); the block's 128 / G
 * groups stride over the split's keys, each keeping an online softmax; the groups are merged
 * through shared memory into one partial (acc[hd], max, sum) at part[(row, head, split)][hd + 2]. */
template <int G>
__global__ void __launch_bounds__(VB_ATTN_THREADS)
    attn_partial_kernel(const float *q, const __half *k_cache, const __half *v_cache,
                        vb_cuda_rows rows, int32_t n_head, int32_t n_head_kv, int32_t hd,
                        int32_t block_size, float *part) {
    pdl_wait_then_trigger();
    constexpr int NG = VB_ATTN_THREADS / G; /* groups per block */
    __shared__ float sm_m[NG], sm_l[NG];
    __shared__ float sm_acc[NG][G * 8];
    const int h = blockIdx.x, r = blockIdx.y, split = blockIdx.z, n_split = gridDim.z;
    const int kvh = h / (n_head / n_head_kv);
    const int kv_dim = n_head_kv * hd;
    const int g = threadIdx.x / G, lg = threadIdx.x % G; /* group, lane within group */
    const bool lane_on = lg * 8 < hd;
    const int ctx = rows.ctx_len[r];
    const int32_t *table = rows.tables + rows.table_off[r];
    const int chunk = (ctx + n_split - 1) / n_split;
    const int t_begin = split * chunk;
    const int t_end = min(ctx, t_begin + chunk);

    const float scale = rsqrtf((float)hd);
    float qv[8];
    const float *qr = q + ((size_t)r * n_head + h) * hd + lg * 8;
#pragma unroll
    for (int e = 0; e < 8; e++) qv[e] = lane_on ? qr[e] * scale : 0.0f;

    float m = -INFINITY, l = 0.0f, acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = 0.0f;

    /* The trip count is the same for every thread of the block, so the group shuffles below
       always run with the whole warp; a group past the end skips only the update. */
    for (int base = t_begin; base < t_end; base += NG) {
        const int t = base + g;
        const bool valid = t < t_end;
        uint4 kraw = make_uint4(0, 0, 0, 0), vraw = make_uint4(0, 0, 0, 0);
        if (valid && lane_on) {
            int blk = table[t / block_size];
            size_t off = ((size_t)blk * block_size + t % block_size) * kv_dim + kvh * hd + lg * 8;
            kraw = *(const uint4 *)(k_cache + off);
            vraw = *(const uint4 *)(v_cache + off);
        }
        const __half2 *k2 = (const __half2 *)&kraw;
        const __half2 *v2 = (const __half2 *)&vraw;
        float s = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float2 kf = __half22float2(k2[e]);
            s += qv[2 * e] * kf.x + qv[2 * e + 1] * kf.y;
        }
#pragma unroll
        for (int o = G / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (valid) {
            float m_new = fmaxf(m, s);
            float corr = __expf(m - m_new); /* m = -inf the first time: 0 */
            float pexp = __expf(s - m_new);
            l = l * corr + pexp;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float2 vf = __half22float2(v2[e]);
                acc[2 * e] = acc[2 * e] * corr + pexp * vf.x;
                acc[2 * e + 1] = acc[2 * e + 1] * corr + pexp * vf.y;
            }
            m = m_new;
        }
    }
    if (lg == 0) { sm_m[g] = m; sm_l[g] = l; }
#pragma unroll
    for (int e = 0; e < 8; e++) sm_acc[g][lg * 8 + e] = acc[e];
    __syncthreads();
    float *out = part + (((size_t)r * n_head + h) * n_split + split) * (hd + 2);
    float M = -INFINITY;
    for (int j = 0; j < NG; j++) M = fmaxf(M, sm_m[j]);
    for (int i = threadIdx.x; i < hd; i += VB_ATTN_THREADS) {
        float a = 0.0f, L = 0.0f;
        if (M != -INFINITY) {
#pragma unroll 4
            for (int j = 0; j < NG; j++) {
                float w = sm_m[j] == -INFINITY ? 0.0f : __expf(sm_m[j] - M);
                a += sm_acc[j][i] * w;
                L += sm_l[j] * w;
            }
        }
        out[i] = a;
        if (i == 0) { out[hd] = M; out[hd + 1] = L; }
    }
}

/* grid (n_head, n_rows), block HD threads: merge the splits, normalise, write f16. */
__global__ void attn_combine_kernel(const float *part, int32_t n_head, int32_t hd,
                                    int32_t n_split, __half *out) {
    pdl_wait_then_trigger();
    const int h = blockIdx.x, r = blockIdx.y, i = threadIdx.x;
    const float *p = part + ((size_t)r * n_head + h) * n_split * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, p[s * (hd + 2) + hd]);
    float a = 0.0f, L = 0.0f;
    for (int s = 0; s < n_split; s++) {
        float ms = p[s * (hd + 2) + hd];
        if (ms == -INFINITY) continue;
        float w = __expf(ms - M);
        a += p[s * (hd + 2) + i] * w;
        L += p[s * (hd + 2) + hd + 1] * w;
    }
    out[((size_t)r * n_head + h) * hd + i] = __float2half(L > 0.0f ? a / L : 0.0f);
}

/* Splits of the keys per (row, head): enough blocks to fill the chip when rows are few. */
static int attn_splits(int32_t n_rows, int32_t n_head) {
    int units = n_rows * n_head;
    int s = (264 + units - 1) / units; /* about two blocks per SM on a 132-SM part */
    return s < 1 ? 1 : s > 32 ? 32 : s;
}

extern "C" size_t vb_cuda_attention_scratch_floats(int32_t n_rows_max, int32_t n_head,
                                                   int32_t head_dim) {
    size_t worst = 0;
    for (int32_t n = 1; n <= n_rows_max; n++) {
        size_t need = (size_t)n * n_head * attn_splits(n, n_head) * (head_dim + 2);
        if (need > worst) worst = need;
    }
    return worst;
}

extern "C" cudaError_t vb_cuda_attention(vb_cuda_stream st, const float *q,
                                         const vb_half_bits *k_cache, const vb_half_bits *v_cache,
                                         const vb_cuda_rows *rows, int32_t n_rows, int32_t n_head,
                                         int32_t n_head_kv, int32_t head_dim, int32_t block_size,
                                         float *part, size_t part_floats, vb_half_bits *out) {
    if (n_rows <= 0) return cudaSuccess;
    int n_split = attn_splits(n_rows, n_head);
    if (!part || (size_t)n_rows * n_head * n_split * (head_dim + 2) > part_floats)
        return cudaErrorInvalidValue;
    dim3 grid(n_head, n_rows, n_split);
    const __half *kc = (const __half *)k_cache, *vc = (const __half *)v_cache;
    vb_cuda_rows rw = *rows;
    const int lanes = (head_dim + 7) / 8;
    if (head_dim % 8 != 0 || lanes > 32) return cudaErrorInvalidValue;
    cudaError_t e;
#define VB_ATTN_LAUNCH(G_)                                                                    \
    e = launch(attn_partial_kernel<G_>, grid, dim3(VB_ATTN_THREADS), 0, st, q, kc, vc, rw,      \
               n_head, n_head_kv, head_dim, block_size, part)
    if (lanes <= 2) VB_ATTN_LAUNCH(2);
    else if (lanes <= 4) VB_ATTN_LAUNCH(4);
    else if (lanes <= 8) VB_ATTN_LAUNCH(8);
    else if (lanes <= 16) VB_ATTN_LAUNCH(16);
    else VB_ATTN_LAUNCH(32);
#undef VB_ATTN_LAUNCH
    if (e != cudaSuccess) return e;
    return launch(attn_combine_kernel, dim3(n_head, n_rows), dim3(head_dim), 0, st,
                  (const float *)part, n_head, head_dim, n_split, (__half *)out);
}

/* ---------------------------------------------------------------- activations */
__global__ void swiglu_kernel(const float *gu, int32_t n_ff, __half *out) {
    pdl_wait_then_trigger();
    int r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_ff; i += gridDim.x * blockDim.x) {
        float g = gu[(size_t)r * 2 * n_ff + i], u = gu[(size_t)r * 2 * n_ff + n_ff + i];
        out[(size_t)r * n_ff + i] = __float2half(g / (1.0f + __expf(-g)) * u);
    }
}

extern "C" cudaError_t vb_cuda_swiglu(vb_cuda_stream st, const float *gu, int32_t n_rows,
                                      int32_t n_ff, vb_half_bits *out) {
    if (n_rows <= 0) return cudaSuccess;
    dim3 grid((n_ff + 255) / 256, n_rows);
    return launch(swiglu_kernel, grid, dim3(256), 0, st, gu, n_ff, (__half *)out);
}

__global__ void gelu_kernel(const float *x, const float *b, int32_t n, __half *out) {
    pdl_wait_then_trigger();
    int r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = x[(size_t)r * n + i] + (b ? b[i] : 0.0f);
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        float y = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        out[(size_t)r * n + i] = __float2half(y);
    }
}

extern "C" cudaError_t vb_cuda_gelu(vb_cuda_stream st, const float *x, const float *b,
                                    int32_t n_rows, int32_t n, vb_half_bits *out) {
    if (n_rows <= 0) return cudaSuccess;
    dim3 grid((n + 255) / 256, n_rows);
    return launch(gelu_kernel, grid, dim3(256), 0, st, x, b, n, (__half *)out);
}

__global__ void add_bias_kernel(float *y, const float *b, int32_t n) {
    pdl_wait_then_trigger();
    int r = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[(size_t)r * n + i] += b[i];
}

extern "C" cudaError_t vb_cuda_add_bias(vb_cuda_stream st, float *y, const float *b,
                                        int32_t n_rows, int32_t n) {
    if (n_rows <= 0) return cudaSuccess;
    dim3 grid((n + 255) / 256, n_rows);
    return launch(add_bias_kernel, grid, dim3(256), 0, st, y, b, n);
}

__global__ void f32_to_f16_kernel(const float *src, __half *dst, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2half(src[i]);
}

extern "C" cudaError_t vb_cuda_f32_to_f16(cudaStream_t stream, const float *src,
                                          vb_half_bits *dst, int64_t n) {
    if (n <= 0) return cudaSuccess;
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    f32_to_f16_kernel<<<(unsigned)blocks, 256, 0, stream>>>(src, (__half *)dst, n);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------- bandwidth probe */
__global__ void read_probe_kernel(const uint4 *buf, int64_t n16, float *sink, int32_t n_sink) {
    uint32_t x = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint4 v = buf[i];
        x ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (x == 0x12345678u) sink[blockIdx.x % n_sink] = (float)x; /* keeps the loads alive */
}

extern "C" cudaError_t vb_cuda_read_probe(cudaStream_t stream, const void *buf, int64_t n_bytes,
                                          float *sink, int32_t n_sink) {
    int dev = 0, sms = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    read_probe_kernel<<<sms * 8, 512, 0, stream>>>((const uint4 *)buf, n_bytes / 16, sink,
                                                   n_sink);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------- skinny GEMV */
/* Prologue: the block writes its NR f16 input rows to shared memory; then each warp takes output
 * rows o = blockIdx.x * warps + warp, stepping by the whole grid, and strides over the row in
 * 16-byte chunks (8 halves) with UNROLL independent weight loads in flight; the NR input rows
 * share every weight load. */
template <int NR>
__global__ void __launch_bounds__(256)
    gemv_kernel(const __half *W, int32_t n_in, int32_t n_out, vb_cuda_gemv_in in, float *y,
                int accumulate) {
    extern __shared__ __align__(16) unsigned char gemv_smem[];
    __half *xs = (__half *)gemv_smem; /* [NR][n_in] */
    __shared__ float scratch[33];
    constexpr int UNROLL = 4;
    const int tid = threadIdx.x, nt = blockDim.x;
    {   /* before waiting on the previous kernel: pull this warp's first weight row into L2 */
        const int o = blockIdx.x * (nt / 32) + tid / 32;
        if (o < n_out) {
            const char *row = (const char *)(W + (size_t)o * n_in);
            for (int off = (tid & 31) * 128; off < n_in * 2; off += 32 * 128)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(row + off));
        }
    }
    pdl_wait_then_trigger();
    if (in.mode == VB_CUDA_IN_F16) {
        const uint4 *src = (const uint4 *)in.x16;
        uint4 *dst = (uint4 *)xs;
        for (int i = tid; i < NR * n_in / 8; i += nt) dst[i] = src[i];
    } else if (in.mode == VB_CUDA_IN_RMSNORM) {
        for (int r = 0; r < NR; r++) {
            const float *xr = in.x32 + (size_t)(in.gather ? in.gather[r] : r) * n_in;
            float ss = 0.0f;
            for (int i = tid; i < n_in; i += nt) ss += xr[i] * xr[i];
            float scale = rsqrtf(block_sum(ss, scratch) / (float)n_in + in.eps);
            for (int i = tid; i < n_in; i += nt)
                xs[r * n_in + i] = __float2half(xr[i] * scale * in.norm_w[i]);
        }
    } else {
        for (int idx = tid; idx < NR * n_in; idx += nt) {
            int r = idx / n_in, i = idx - r * n_in;
            float g = in.x32[(size_t)r * 2 * n_in + i], u = in.x32[(size_t)r * 2 * n_in + n_in + i];
            xs[idx] = __float2half(g / (1.0f + __expf(-g)) * u);
        }
    }
    __syncthreads();
    const int warps = nt / 32, lane = tid & 31;
    const int n16 = n_in / 8;
    for (int o = blockIdx.x * warps + tid / 32; o < n_out; o += gridDim.x * warps) {
        const uint4 *wr = (const uint4 *)(W + (size_t)o * n_in);
        float acc[NR];
#pragma unroll
        for (int r = 0; r < NR; r++) acc[r] = 0.0f;
        int c = lane;
        for (; c + 32 * (UNROLL - 1) < n16; c += 32 * UNROLL) {
            uint4 wv[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; u++) wv[u] = __ldg(wr + c + 32 * u);
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                const __half2 *w2 = (const __half2 *)&wv[u];
#pragma unroll
                for (int r = 0; r < NR; r++) {
                    uint4 xv = ((const uint4 *)(xs + r * n_in))[c + 32 * u];
                    const __half2 *x2 = (const __half2 *)&xv;
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float2 wf = __half22float2(w2[e]), xf = __half22float2(x2[e]);
                        acc[r] += wf.x * xf.x + wf.y * xf.y;
                    }
                }
            }
        }
        for (; c < n16; c += 32) {
            uint4 wv = __ldg(wr + c);
            const __half2 *w2 = (const __half2 *)&wv;
#pragma unroll
            for (int r = 0; r < NR; r++) {
                uint4 xv = ((const uint4 *)(xs + r * n_in))[c];
                const __half2 *x2 = (const __half2 *)&xv;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float2 wf = __half22float2(w2[e]), xf = __half22float2(x2[e]);
                    acc[r] += wf.x * xf.x + wf.y * xf.y;
                }
            }
        }
#pragma unroll
        for (int r = 0; r < NR; r++) {
            float s = warp_sum(acc[r]);
            if (lane == 0) {
                float *dst = y + (size_t)r * n_out + o;
                *dst = accumulate ? *dst + s : s;
            }
        }
    }
}

extern "C" int vb_cuda_gemv_fits(int32_t n_rows, int32_t n_in) {
    return n_rows >= 1 && n_rows <= VB_CUDA_GEMV_MAX_ROWS && n_in % 8 == 0 &&
           (int64_t)n_rows * n_in <= VB_CUDA_GEMV_MAX_IN;
}

/* Blocks of the GEMV grid: 4 per SM of the current device (set by vb_cuda_kernels_init; the
 * only module state, a property of the device). */
static int g_gemv_blocks = 0;

extern "C" cudaError_t vb_cuda_kernels_init(void) {
    const int bytes = VB_CUDA_GEMV_MAX_IN * 2;
    cudaError_t e = cudaSuccess;
#define VB_GEMV_ATTR(N)                                                                       \
    if (e == cudaSuccess)                                                                     \
        e = cudaFuncSetAttribute(gemv_kernel<N>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
    VB_GEMV_ATTR(1); VB_GEMV_ATTR(2); VB_GEMV_ATTR(3); VB_GEMV_ATTR(4);
    VB_GEMV_ATTR(5); VB_GEMV_ATTR(6); VB_GEMV_ATTR(7); VB_GEMV_ATTR(8);
#undef VB_GEMV_ATTR
    int dev = 0, sms = 0;
    if (e == cudaSuccess) e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) g_gemv_blocks = sms * 4;
    return e;
}

extern "C" cudaError_t vb_cuda_gemv(vb_cuda_stream st, const vb_half_bits *W, int32_t n_in,
                                    int32_t n_out, const vb_cuda_gemv_in *in, int32_t n_rows,
                                    float *y, int accumulate) {
    if (!vb_cuda_gemv_fits(n_rows, n_in) || g_gemv_blocks <= 0) return cudaErrorInvalidValue;
    const int threads = 256, wpb = threads / 32;
    int blocks = (n_out + wpb - 1) / wpb;
    if (blocks > g_gemv_blocks) blocks = g_gemv_blocks;
    size_t smem = (size_t)n_rows * n_in * 2;
    const __half *w = (const __half *)W;
    cudaError_t e = cudaSuccess;
    switch (n_rows) {
#define VB_GEMV_CASE(N)                                                                       \
    case N:                                                                                   \
        e = launch(gemv_kernel<N>, dim3(blocks), dim3(threads), smem, st, w, n_in, n_out, *in, \
                   y, accumulate);                                                             \
        break
        VB_GEMV_CASE(1); VB_GEMV_CASE(2); VB_GEMV_CASE(3); VB_GEMV_CASE(4);
        VB_GEMV_CASE(5); VB_GEMV_CASE(6); VB_GEMV_CASE(7); VB_GEMV_CASE(8);
#undef VB_GEMV_CASE
    default: return cudaErrorInvalidValue;
    }
    return e;
}
