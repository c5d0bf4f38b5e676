/* attention.h - scaled dot-product attention of a batch of query rows over the paged KV cache
 * (DESIGN §3): query row i of sequence seq[i] attends to the first n_kv[i] cached rows of its
 * sequence (the rows cached before the batch plus the batch rows of that sequence up to and
 * including itself, already written; of a sliding-window layer only the last `window` of them), reading K and V straight from the cache blocks through
 * the sequence's block table (no copy or transpose of the context). Grouped-query attention:
 * query head h reads KV head h / (n_head / n_head_kv). Work is split into tiles (KV heads,
 * consecutive rows of one sequence, their query heads) so that each K/V row is read once per
 * tile, and each tile's rows into chunks with a partial softmax per chunk and one log-sum-exp
 * combine (flash-decoding), split across threads when tiles are few; portable, AVX2 and
 * AVX-512 paths (see attention.c). A row's result is bit-identical whatever batch it is in and
 * whatever the thread count. */
#ifndef VB_CPU_ATTENTION_H
#define VB_CPU_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "../../kv/kv_cache.h"
#include "threadpool.h"

typedef struct vb_attn_args {
    const vb_kv_cache *kv;
    int32_t layer;
    int32_t n_rows;
    const float *q;      /* [n_rows][n_head * head_dim] (RoPE applied) */
    float *out;          /* [n_rows][n_head * head_dim] */
    const vb_seq *seq;   /* [n_rows] sequence of each row */
    const int32_t *n_kv; /* [n_rows] cached rows visible to each row (>= 1) */
    int32_t n_head, n_head_kv, head_dim;
    int32_t kv_type;        /* enum vb_kv_type of the cache */
    bool use_avx2;          /* SIMD paths allowed (the CPU has AVX2/FMA/F16C); AVX-512 is used
                               when also vb_kernels_level() >= VB_KLEVEL_AVX512 */
    float scale;            /* softmax scale, 1/sqrt(head_dim) */
    int32_t window;         /* > 0: a sliding-window layer: row i sees only the last `window`
                               of its rows, [n_kv[i] - window, n_kv[i]) (in row order, as
                               causality is); 0: all n_kv[i] */
    float *scratch;         /* [n_threads][vb_attention_scratch_floats(...)] */
    int64_t scratch_stride; /* floats per thread in scratch */
} vb_attn_args;

/* Floats of scratch one thread needs for sequences of up to max_kv rows, with `group` query
 * heads per KV head (n_head / n_head_kv) and cache blocks of block_size rows: a fixed working
 * part plus room for partial results of split tiles (proportional to max_kv; with less, tiles
 * are not split and each runs whole on one thread). */
int64_t vb_attention_scratch_floats(int32_t max_kv, int32_t head_dim, int32_t group,
                                    int32_t block_size);

/* Run the attention of all rows and heads; tp may be NULL (single thread). */
void vb_attention(vb_threadpool *tp, const vb_attn_args *args);

#endif
