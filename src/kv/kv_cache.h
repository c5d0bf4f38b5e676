/* kv_cache.h - the paged KV cache (vLLM-style): a block pool allocated once, an O(1) free
 * list, per-sequence block tables, reference counts so forked sequences share blocks and copy
 * a shared partially-filled block when they write to it, and per-row logical position and
 * token. Storage per layer is [n_blocks][block_size][kv_dim] for K and for V (F32, F16, or Q8_0
 * blocks of 32 values along each row), so attention can read rows straight from the blocks. With kv_dim = 0 only the row metadata is kept (the sim
 * backend). */
#ifndef VB_KV_CACHE_H
#define VB_KV_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vibee.h"

typedef struct vb_kv_config {
    int32_t n_layer;    /* layers with K/V storage (0 allowed with kv_dim 0) */
    int32_t kv_dim;     /* n_head_kv * head_dim; 0 = metadata only */
    int32_t block_size; /* rows per block (default 16) */
    int32_t n_blocks;   /* blocks in the pool */
    int32_t n_seq_max;  /* sequence ids 0..n_seq_max-1 */
    int32_t kv_type;    /* enum vb_kv_type */
} vb_kv_config;

typedef struct vb_kv_cache vb_kv_cache;

/* Bytes of `n` values of kv_type (F32 4, F16 2; Q8_0: n / 32 blocks of 34 bytes, n a multiple
   of 32) and of the first `n` values of a row (the offset of value n, n a multiple of 32 for
   Q8_0). */
static inline size_t vb_kvc_row_bytes(int32_t kv_type, int64_t n) {
    return kv_type == VB_KV_Q8_0 ? (size_t)(n / 32) * 34 : (size_t)n * (kv_type == VB_KV_F16 ? 2 : 4);
}

int vb_kvc_create(const vb_kv_config *cfg, vb_kv_cache **out); /* VB_OK / VB_ERR_ARG / VB_ERR_NOMEM */
void vb_kvc_free(vb_kv_cache *c);
const vb_kv_config *vb_kvc_config(const vb_kv_cache *c);

int32_t vb_kvc_seq_len(const vb_kv_cache *c, vb_seq seq); /* < 0 for a bad seq */
/* Append n rows to seq with their positions and tokens (tok may be NULL). Allocates blocks and
 * copies a shared last block before writing into it. All or nothing: VB_KV_FULL leaves the
 * cache unchanged. */
int vb_kvc_append(vb_kv_cache *c, vb_seq seq, int32_t n, const vb_pos *pos, const vb_token *tok);
/* Blocks that appending n rows to seq would take from the free list. */
int32_t vb_kvc_blocks_needed(const vb_kv_cache *c, vb_seq seq, int32_t n);
int32_t vb_kvc_blocks_free(const vb_kv_cache *c);
int vb_kvc_truncate(vb_kv_cache *c, vb_seq seq, int32_t n_keep);
int vb_kvc_fork(vb_kv_cache *c, vb_seq src, vb_seq dst); /* dst must be empty */
int vb_kvc_free_seq(vb_kv_cache *c, vb_seq seq);

/* Block table of seq: block ids for rows [0, seq_len), block j holds rows j*bs..j*bs+bs-1. */
const int32_t *vb_kvc_block_table(const vb_kv_cache *c, vb_seq seq, int32_t *n_blocks);
/* K / V storage of one block in one layer: [block_size][kv_dim] of kv_type elements
   (vb_kvc_row_bytes(kv_type, kv_dim) bytes a row). */
void *vb_kvc_k(const vb_kv_cache *c, int32_t layer, int32_t block);
void *vb_kvc_v(const vb_kv_cache *c, int32_t layer, int32_t block);
/* K / V of row `row` of seq in a layer ([kv_dim] elements); NULL if out of range. */
void *vb_kvc_k_row(const vb_kv_cache *c, int32_t layer, vb_seq seq, int32_t row);
void *vb_kvc_v_row(const vb_kv_cache *c, int32_t layer, vb_seq seq, int32_t row);
/* Row metadata of a block: [block_size] logical positions / tokens. */
const vb_pos *vb_kvc_block_pos(const vb_kv_cache *c, int32_t block);
const vb_token *vb_kvc_block_tok(const vb_kv_cache *c, int32_t block);
/* Metadata of row `row` of seq (row < seq_len). */
vb_pos vb_kvc_row_pos(const vb_kv_cache *c, vb_seq seq, int32_t row);
vb_token vb_kvc_row_tok(const vb_kv_cache *c, vb_seq seq, int32_t row);

void vb_kvc_stats(const vb_kv_cache *c, vb_kv_stats *out);

/* Blocks of the pool of a context of n_ctx rows over n_seq_max sequences (the one formula every
 * backend uses); -1 when out of range. */
int32_t vb_kvc_blocks_for_ctx(int32_t n_ctx, int32_t block_size, int32_t n_seq_max);

/* Called when appending copied a shared partially filled block on write (src -> dst), so a
 * backend with its own copy of the storage (device memory) copies it too. VB_OK or an error. */
typedef int (*vb_kvc_copy_fn)(void *user, int32_t src_block, int32_t dst_block);

/* Append every row of a (validated) batch to its sequence, in batch order, all or nothing:
 * VB_KV_FULL (checked before anything is appended) or any failure leaves every sequence as it
 * was, with a message in msg. kv_row[b->n] receives each row's index in its sequence (its cache
 * slot: vb_kvc_k_row(c, layer, seq, kv_row[i])). The one KV append path of the backends that
 * keep K/V in this pool (cpu, cuda, onnx, sim). */
int vb_kvc_append_batch(vb_kv_cache *c, const vb_batch *b, int32_t *kv_row, vb_kvc_copy_fn on_copy,
                        void *user, char *msg, size_t msg_len);
/* Undo vb_kvc_append_batch for its first n_rows rows (a forward that failed after appending):
 * each sequence back to its length before the batch. */
void vb_kvc_undo_batch(vb_kv_cache *c, const vb_batch *b, const int32_t *kv_row, int32_t n_rows);
/* Check every invariant (ref counts = table references, free list = unreferenced blocks, no
 * block twice on the free list, table sizes match lengths). VB_OK or VB_ERR_STATE with err. */
int vb_kvc_check(const vb_kv_cache *c, char *err, size_t err_len);

#endif
