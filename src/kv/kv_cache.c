/* kv_cache.c - the paged KV cache: block pool allocated once, O(1) free list (a stack of block
 * ids), per-sequence block tables, reference counts for copy-on-write sharing between forks,
 * and per-row logical positions and tokens. See kv_cache.h for the contract. */
#include "kv_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kv_seq {
    int32_t len;      /* rows held */
    int32_t n_blocks; /* == ceil(len / block_size) */
    int32_t *table;   /* [n_blocks_pool] block ids; first n_blocks used */
} kv_seq;

struct vb_kv_cache {
    vb_kv_config cfg;
    size_t row_bytes;   /* kv_dim * element size */
    size_t block_bytes; /* block_size * row_bytes */
    uint8_t *k;         /* [n_layer][n_blocks][block_size][kv_dim] */
    uint8_t *v;         /* [n_layer][n_blocks][block_size][kv_dim] */
    vb_pos *pos;        /* [n_blocks][block_size] */
    vb_token *tok;      /* [n_blocks][block_size] */
    int32_t *ref;       /* [n_blocks] number of sequences referencing the block */
    int32_t *free_ids;  /* [n_blocks] stack of free block ids */
    int32_t n_free;
    int32_t *scratch;   /* [n_blocks] for stats / checks */
    int32_t *seq_rows;  /* [n_seq_max] batch appends: rows per sequence, then its old length */
    kv_seq *seqs;       /* [n_seq_max] */
};

static int32_t ceil_div(int32_t a, int32_t b) { return (a + b - 1) / b; }

int vb_kvc_create(const vb_kv_config *cfg, vb_kv_cache **out) {
    if (!out) return VB_ERR_ARG;
    *out = NULL;
    if (!cfg || cfg->block_size < 1 || cfg->n_blocks < 1 || cfg->n_seq_max < 1 ||
        cfg->kv_dim < 0 || cfg->n_layer < 0 ||
        (cfg->kv_type != VB_KV_F32 && cfg->kv_type != VB_KV_F16 && cfg->kv_type != VB_KV_Q8_0) ||
        (cfg->kv_type == VB_KV_Q8_0 && cfg->kv_dim % 32 != 0))
        return VB_ERR_ARG;
    vb_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return VB_ERR_NOMEM;
    c->cfg = *cfg;
    c->row_bytes = vb_kvc_row_bytes(cfg->kv_type, cfg->kv_dim);
    c->block_bytes = c->row_bytes * (size_t)cfg->block_size;
    size_t nb = (size_t)cfg->n_blocks, slots = nb * (size_t)cfg->block_size;
    size_t kv_bytes = c->block_bytes * nb * (size_t)cfg->n_layer;
    if (kv_bytes > 0) {
        c->k = malloc(kv_bytes);
        c->v = malloc(kv_bytes);
    }
    c->pos = calloc(slots, sizeof *c->pos);
    c->tok = calloc(slots, sizeof *c->tok);
    c->ref = calloc(nb, sizeof *c->ref);
    c->free_ids = malloc(nb * sizeof *c->free_ids);
    c->scratch = malloc(nb * sizeof *c->scratch);
    c->seqs = calloc((size_t)cfg->n_seq_max, sizeof *c->seqs);
    c->seq_rows = calloc((size_t)cfg->n_seq_max, sizeof *c->seq_rows);
    int ok = c->pos && c->tok && c->ref && c->free_ids && c->scratch && c->seqs && c->seq_rows &&
             (kv_bytes == 0 || (c->k && c->v));
    for (int32_t s = 0; ok && s < cfg->n_seq_max; s++) {
        c->seqs[s].table = malloc(nb * sizeof(int32_t));
        ok = c->seqs[s].table != NULL;
    }
    if (!ok) {
        vb_kvc_free(c);
        return VB_ERR_NOMEM;
    }
    /* Stack with block 0 on top so allocation order is 0, 1, 2, ... */
    for (int32_t i = 0; i < cfg->n_blocks; i++) c->free_ids[i] = cfg->n_blocks - 1 - i;
    c->n_free = cfg->n_blocks;
    *out = c;
    return VB_OK;
}

void vb_kvc_free(vb_kv_cache *c) {
    if (!c) return;
    if (c->seqs)
        for (int32_t s = 0; s < c->cfg.n_seq_max; s++) free(c->seqs[s].table);
    free(c->seqs);
    free(c->k);
    free(c->v);
    free(c->pos);
    free(c->tok);
    free(c->ref);
    free(c->free_ids);
    free(c->scratch);
    free(c->seq_rows);
    free(c);
}

const vb_kv_config *vb_kvc_config(const vb_kv_cache *c) { return &c->cfg; }

static kv_seq *get_seq(const vb_kv_cache *c, vb_seq seq) {
    if (!c || seq < 0 || seq >= c->cfg.n_seq_max) return NULL;
    return &c->seqs[seq];
}

int32_t vb_kvc_seq_len(const vb_kv_cache *c, vb_seq seq) {
    kv_seq *s = get_seq(c, seq);
    return s ? s->len : VB_ERR_ARG;
}

int32_t vb_kvc_blocks_free(const vb_kv_cache *c) { return c->n_free; }

static int32_t block_pop(vb_kv_cache *c) {
    int32_t b = c->free_ids[--c->n_free];
    c->ref[b] = 1;
    return b;
}

static void block_release(vb_kv_cache *c, int32_t b) {
    if (--c->ref[b] == 0) c->free_ids[c->n_free++] = b;
}

int32_t vb_kvc_blocks_needed(const vb_kv_cache *c, vb_seq seq, int32_t n) {
    kv_seq *s = get_seq(c, seq);
    if (!s || n < 0) return VB_ERR_ARG;
    if (n == 0) return 0;
    int32_t bs = c->cfg.block_size;
    int32_t need = ceil_div(s->len + n, bs) - s->n_blocks;
    /* writing into a shared, partially filled last block copies it first */
    if (s->len % bs != 0 && c->ref[s->table[s->n_blocks - 1]] > 1) need++;
    return need;
}

/* Copy the first n_rows rows (all layers + metadata) of block src into block dst. */
static void block_copy_rows(vb_kv_cache *c, int32_t dst, int32_t src, int32_t n_rows) {
    size_t bs = (size_t)c->cfg.block_size;
    memcpy(c->pos + (size_t)dst * bs, c->pos + (size_t)src * bs, (size_t)n_rows * sizeof *c->pos);
    memcpy(c->tok + (size_t)dst * bs, c->tok + (size_t)src * bs, (size_t)n_rows * sizeof *c->tok);
    for (int32_t l = 0; l < c->cfg.n_layer && c->row_bytes > 0; l++) {
        memcpy(vb_kvc_k(c, l, dst), vb_kvc_k(c, l, src), (size_t)n_rows * c->row_bytes);
        memcpy(vb_kvc_v(c, l, dst), vb_kvc_v(c, l, src), (size_t)n_rows * c->row_bytes);
    }
}

int vb_kvc_append(vb_kv_cache *c, vb_seq seq, int32_t n, const vb_pos *pos, const vb_token *tok) {
    kv_seq *s = get_seq(c, seq);
    if (!s || n < 0 || (n > 0 && !pos)) return VB_ERR_ARG;
    if (n == 0) return VB_OK;
    int32_t need = vb_kvc_blocks_needed(c, seq, n);
    if (need > c->n_free) return VB_KV_FULL;
    int32_t bs = c->cfg.block_size;
    if (s->len % bs != 0) {
        int32_t last = s->table[s->n_blocks - 1];
        if (c->ref[last] > 1) { /* copy-on-write of the shared partial block */
            int32_t fresh = block_pop(c);
            block_copy_rows(c, fresh, last, s->len % bs);
            c->ref[last]--;
            s->table[s->n_blocks - 1] = fresh;
        }
    }
    while (s->n_blocks < ceil_div(s->len + n, bs)) s->table[s->n_blocks++] = block_pop(c);
    for (int32_t i = 0; i < n; i++) {
        int32_t row = s->len + i;
        size_t slot = (size_t)s->table[row / bs] * (size_t)bs + (size_t)(row % bs);
        c->pos[slot] = pos[i];
        c->tok[slot] = tok ? tok[i] : -1;
    }
    s->len += n;
    return VB_OK;
}

int vb_kvc_truncate(vb_kv_cache *c, vb_seq seq, int32_t n_keep) {
    kv_seq *s = get_seq(c, seq);
    if (!s || n_keep < 0) return VB_ERR_ARG;
    if (n_keep >= s->len) return VB_OK;
    int32_t keep_blocks = ceil_div(n_keep, c->cfg.block_size);
    while (s->n_blocks > keep_blocks) block_release(c, s->table[--s->n_blocks]);
    s->len = n_keep;
    return VB_OK;
}

int vb_kvc_fork(vb_kv_cache *c, vb_seq src, vb_seq dst) {
    kv_seq *a = get_seq(c, src), *b = get_seq(c, dst);
    if (!a || !b || src == dst) return VB_ERR_ARG;
    if (b->len != 0) return VB_ERR_STATE;
    for (int32_t j = 0; j < a->n_blocks; j++) {
        b->table[j] = a->table[j];
        c->ref[a->table[j]]++;
    }
    b->n_blocks = a->n_blocks;
    b->len = a->len;
    return VB_OK;
}

int vb_kvc_free_seq(vb_kv_cache *c, vb_seq seq) { return vb_kvc_truncate(c, seq, 0); }

const int32_t *vb_kvc_block_table(const vb_kv_cache *c, vb_seq seq, int32_t *n_blocks) {
    kv_seq *s = get_seq(c, seq);
    if (n_blocks) *n_blocks = s ? s->n_blocks : 0;
    return s ? s->table : NULL;
}

void *vb_kvc_k(const vb_kv_cache *c, int32_t layer, int32_t block) {
    return c->k + ((size_t)layer * (size_t)c->cfg.n_blocks + (size_t)block) * c->block_bytes;
}

void *vb_kvc_v(const vb_kv_cache *c, int32_t layer, int32_t block) {
    return c->v + ((size_t)layer * (size_t)c->cfg.n_blocks + (size_t)block) * c->block_bytes;
}

static int32_t row_slot(const vb_kv_cache *c, vb_seq seq, int32_t row, int32_t *block) {
    kv_seq *s = get_seq(c, seq);
    if (!s || row < 0 || row >= s->len) return -1;
    *block = s->table[row / c->cfg.block_size];
    return row % c->cfg.block_size;
}

void *vb_kvc_k_row(const vb_kv_cache *c, int32_t layer, vb_seq seq, int32_t row) {
    int32_t b, slot = row_slot(c, seq, row, &b);
    if (slot < 0 || layer < 0 || layer >= c->cfg.n_layer || !c->k) return NULL;
    return (uint8_t *)vb_kvc_k(c, layer, b) + (size_t)slot * c->row_bytes;
}

void *vb_kvc_v_row(const vb_kv_cache *c, int32_t layer, vb_seq seq, int32_t row) {
    int32_t b, slot = row_slot(c, seq, row, &b);
    if (slot < 0 || layer < 0 || layer >= c->cfg.n_layer || !c->v) return NULL;
    return (uint8_t *)vb_kvc_v(c, layer, b) + (size_t)slot * c->row_bytes;
}

const vb_pos *vb_kvc_block_pos(const vb_kv_cache *c, int32_t block) {
    return c->pos + (size_t)block * (size_t)c->cfg.block_size;
}

const vb_token *vb_kvc_block_tok(const vb_kv_cache *c, int32_t block) {
    return c->tok + (size_t)block * (size_t)c->cfg.block_size;
}

vb_pos vb_kvc_row_pos(const vb_kv_cache *c, vb_seq seq, int32_t row) {
    int32_t b, slot = row_slot(c, seq, row, &b);
    return slot < 0 ? -1 : vb_kvc_block_pos(c, b)[slot];
}

vb_token vb_kvc_row_tok(const vb_kv_cache *c, vb_seq seq, int32_t row) {
    int32_t b, slot = row_slot(c, seq, row, &b);
    return slot < 0 ? -1 : vb_kvc_block_tok(c, b)[slot];
}

void vb_kvc_stats(const vb_kv_cache *c, vb_kv_stats *out) {
    memset(out, 0, sizeof *out);
    int32_t bs = c->cfg.block_size;
    out->block_size = bs;
    out->blocks_total = c->cfg.n_blocks;
    out->blocks_used = c->cfg.n_blocks - c->n_free;
    /* rows stored per block = the largest fill any referencing sequence gives it */
    memset(c->scratch, 0, (size_t)c->cfg.n_blocks * sizeof *c->scratch);
    for (int32_t s = 0; s < c->cfg.n_seq_max; s++) {
        const kv_seq *q = &c->seqs[s];
        if (q->len > 0) out->n_seq_active++;
        for (int32_t j = 0; j < q->n_blocks; j++) {
            int32_t fill = q->len - j * bs < bs ? q->len - j * bs : bs;
            if (fill > c->scratch[q->table[j]]) c->scratch[q->table[j]] = fill;
        }
    }
    for (int32_t b = 0; b < c->cfg.n_blocks; b++) out->tokens_stored += c->scratch[b];
    out->slots_allocated = (int64_t)out->blocks_used * bs;
    size_t per_block = 2 * c->block_bytes * (size_t)c->cfg.n_layer +
                       (size_t)bs * (sizeof(vb_pos) + sizeof(vb_token));
    out->bytes_total = (int64_t)(per_block * (size_t)c->cfg.n_blocks);
    out->bytes_used = (int64_t)(per_block * (size_t)out->blocks_used);
    out->waste = out->slots_allocated
                     ? (double)(out->slots_allocated - out->tokens_stored) / (double)out->slots_allocated
                     : 0.0;
}

int vb_kvc_check(const vb_kv_cache *c, char *err, size_t err_len) {
#define FAIL(...)                                        \
    do {                                                 \
        if (err && err_len) snprintf(err, err_len, __VA_ARGS__); \
        return VB_ERR_STATE;                             \
    } while (0)
    int32_t nb = c->cfg.n_blocks, bs = c->cfg.block_size;
    memset(c->scratch, 0, (size_t)nb * sizeof *c->scratch);
    for (int32_t s = 0; s < c->cfg.n_seq_max; s++) {
        const kv_seq *q = &c->seqs[s];
        if (q->len < 0 || q->n_blocks != ceil_div(q->len, bs))
            FAIL("seq %d: len %d but %d blocks", s, q->len, q->n_blocks);
        for (int32_t j = 0; j < q->n_blocks; j++) {
            int32_t b = q->table[j];
            if (b < 0 || b >= nb) FAIL("seq %d: block table[%d] = %d out of range", s, j, b);
            for (int32_t k = 0; k < j; k++)
                if (q->table[k] == b) FAIL("seq %d: block %d appears twice", s, b);
            c->scratch[b]++;
        }
    }
    int32_t unreferenced = 0;
    for (int32_t b = 0; b < nb; b++) {
        if (c->scratch[b] != c->ref[b])
            FAIL("block %d: ref count %d but %d table references", b, c->ref[b], c->scratch[b]);
        if (c->ref[b] == 0) unreferenced++;
    }
    if (unreferenced != c->n_free)
        FAIL("free list holds %d blocks but %d are unreferenced", c->n_free, unreferenced);
    for (int32_t i = 0; i < c->n_free; i++) {
        int32_t b = c->free_ids[i];
        if (b < 0 || b >= nb || c->ref[b] != 0) FAIL("free list entry %d: block %d is in use", i, b);
        if (c->scratch[b] == -1) FAIL("block %d is on the free list twice", b);
        c->scratch[b] = -1;
    }
    return VB_OK;
#undef FAIL
}

/* ---- the one batch append path of every backend that keeps K/V in this pool ---- */

int32_t vb_kvc_blocks_for_ctx(int32_t n_ctx, int32_t block_size, int32_t n_seq_max) {
    if (n_ctx < 0 || block_size < 1 || n_seq_max < 1) return -1;
    /* every sequence may hold one partially filled block beside n_ctx rows of whole blocks */
    int64_t n = ((int64_t)n_ctx + block_size - 1) / block_size + n_seq_max;
    return n * block_size > INT32_MAX ? -1 : (int32_t)n;
}

int vb_kvc_append_batch(vb_kv_cache *c, const vb_batch *b, int32_t *kv_row, vb_kvc_copy_fn on_copy,
                        void *user, char *msg, size_t msg_len) {
    if (!c || !b || !kv_row) return VB_ERR_ARG;
    const int32_t bs = c->cfg.block_size;
    for (int32_t i = 0; i < b->n; i++) c->seq_rows[b->seq[i]] = 0;
    for (int32_t i = 0; i < b->n; i++) c->seq_rows[b->seq[i]]++;
    int64_t need = 0;
    for (int32_t i = 0; i < b->n; i++) { /* each sequence once: its count is zeroed after use */
        vb_seq q = b->seq[i];
        if (c->seq_rows[q] > 0) need += vb_kvc_blocks_needed(c, q, c->seq_rows[q]);
        c->seq_rows[q] = 0;
    }
    if (need > c->n_free) {
        if (msg && msg_len)
            snprintf(msg, msg_len, "KV cache full (%lld blocks needed, %d free)", (long long)need,
                     c->n_free);
        return VB_KV_FULL;
    }
    int rc = VB_OK;
    int32_t i = 0;
    for (; i < b->n && rc == VB_OK; i++) {
        vb_seq q = b->seq[i];
        kv_seq *sq = &c->seqs[q];
        int32_t len = sq->len;
        int32_t shared = len % bs != 0 ? sq->table[len / bs] : -1; /* a partial last block */
        kv_row[i] = len;
        rc = vb_kvc_append(c, q, 1, &b->pos[i], &b->token[i]);
        if (rc == VB_OK && shared >= 0 && sq->table[len / bs] != shared && on_copy)
            rc = on_copy(user, shared, sq->table[len / bs]); /* copied on write: mirror it */
    }
    if (rc != VB_OK) {
        vb_kvc_undo_batch(c, b, kv_row, i);
        if (msg && msg_len) snprintf(msg, msg_len, "KV append failed: %s", vb_status_str(rc));
    }
    return rc;
}

void vb_kvc_undo_batch(vb_kv_cache *c, const vb_batch *b, const int32_t *kv_row, int32_t n_rows) {
    if (!c || !b || !kv_row) return;
    if (n_rows > b->n) n_rows = b->n;
    for (int32_t i = 0; i < n_rows; i++) c->seq_rows[b->seq[i]] = INT32_MAX;
    for (int32_t i = 0; i < n_rows; i++)
        if (kv_row[i] < c->seq_rows[b->seq[i]]) c->seq_rows[b->seq[i]] = kv_row[i];
    for (int32_t i = 0; i < n_rows; i++) {
        vb_seq q = b->seq[i];
        if (c->seq_rows[q] == INT32_MAX) continue;
        vb_kvc_truncate(c, q, c->seq_rows[q]); /* its length before the batch */
        c->seq_rows[q] = INT32_MAX;
    }
}
