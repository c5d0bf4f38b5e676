/* test_kv.c - the paged KV cache: unit cases, a long randomized run of append / fork /
 * truncate / free checked against a plain per-sequence model of the rows (positions, tokens
 * and K/V contents) plus the cache's own invariant checker, and measured waste. */
#include <stdlib.h>
#include <string.h>

#include "../src/kv/kv_cache.h"
#include "test.h"

static vb_kv_cache *make(int32_t n_blocks, int32_t n_seq, int32_t layers, int32_t kv_dim) {
    vb_kv_config cfg = {layers, kv_dim, 16, n_blocks, n_seq, VB_KV_F32};
    vb_kv_cache *c = NULL;
    return vb_kvc_create(&cfg, &c) == VB_OK ? c : NULL;
}

TEST(kv_append_truncate_basic) {
    vb_kv_cache *c = make(8, 2, 1, 4);
    CHECK(c);
    vb_pos pos[40];
    vb_token tok[40];
    for (int i = 0; i < 40; i++) pos[i] = 100 + i, tok[i] = i;
    CHECK_EQ_INT(vb_kvc_append(c, 0, 40, pos, tok), VB_OK);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 0), 40);
    CHECK_EQ_INT(vb_kvc_blocks_free(c), 5);
    CHECK_EQ_INT(vb_kvc_row_pos(c, 0, 37), 137);
    CHECK_EQ_INT(vb_kvc_row_tok(c, 0, 17), 17);
    CHECK_EQ_INT(vb_kvc_truncate(c, 0, 16), VB_OK);
    CHECK_EQ_INT(vb_kvc_blocks_free(c), 7);
    CHECK_EQ_INT(vb_kvc_row_pos(c, 0, 16), -1);
    /* 7 free blocks = 112 rows: 113 do not fit, and nothing changes */
    vb_pos big[113];
    for (int i = 0; i < 113; i++) big[i] = i;
    CHECK_EQ_INT(vb_kvc_append(c, 1, 113, big, NULL), VB_KV_FULL);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 1), 0);
    CHECK_EQ_INT(vb_kvc_append(c, 1, 112, big, NULL), VB_OK);
    CHECK_EQ_INT(vb_kvc_blocks_free(c), 0);
    CHECK_EQ_INT(vb_kvc_append(c, 0, 1, big, NULL), VB_KV_FULL);
    char err[256];
    CHECK(vb_kvc_check(c, err, sizeof err) == VB_OK);
    CHECK_EQ_INT(vb_kvc_append(c, 5, 1, big, NULL), VB_ERR_ARG);
    CHECK_EQ_INT(vb_kvc_truncate(c, -1, 0), VB_ERR_ARG);
    vb_kvc_free(c);
}

TEST(kv_fork_copy_on_write) {
    vb_kv_cache *c = make(16, 3, 2, 3);
    CHECK(c);
    vb_pos pos[20];
    for (int i = 0; i < 20; i++) pos[i] = i;
    CHECK_EQ_INT(vb_kvc_append(c, 0, 20, pos, NULL), VB_OK); /* 1 full + 1 partial block */
    for (int r = 0; r < 20; r++) ((float *)vb_kvc_k_row(c, 1, 0, r))[2] = (float)r;
    CHECK_EQ_INT(vb_kvc_fork(c, 0, 1), VB_OK);
    CHECK_EQ_INT(vb_kvc_blocks_free(c), 14); /* shared, nothing copied yet */
    CHECK_EQ_INT(vb_kvc_fork(c, 0, 1), VB_ERR_STATE);
    vb_pos p2 = 77;
    CHECK_EQ_INT(vb_kvc_append(c, 1, 1, &p2, NULL), VB_OK); /* copies the partial block */
    CHECK_EQ_INT(vb_kvc_blocks_free(c), 13);
    ((float *)vb_kvc_k_row(c, 1, 1, 20))[2] = -1.0f;
    ((float *)vb_kvc_k_row(c, 1, 1, 19))[2] = -2.0f; /* write into the fork's own copy */
    CHECK(((float *)vb_kvc_k_row(c, 1, 0, 19))[2] == 19.0f);
    CHECK(((float *)vb_kvc_k_row(c, 1, 1, 18))[2] == 18.0f); /* copied content */
    CHECK_EQ_INT(vb_kvc_row_pos(c, 1, 20), 77);
    const int32_t *t0 = vb_kvc_block_table(c, 0, NULL), *t1 = vb_kvc_block_table(c, 1, NULL);
    CHECK(t0[0] == t1[0] && t0[1] != t1[1]);
    char err[256];
    CHECKF(vb_kvc_check(c, err, sizeof err) == VB_OK, "%s", err);
    vb_kv_stats st;
    vb_kvc_stats(c, &st);
    CHECK_EQ_INT(st.blocks_used, 3);
    CHECK_EQ_INT(st.tokens_stored, 16 + 4 + 5); /* the shared block counted once */
    CHECK_EQ_INT(vb_kvc_free_seq(c, 0), VB_OK);
    CHECK_EQ_INT(vb_kvc_free_seq(c, 1), VB_OK);
    CHECK_EQ_INT(vb_kvc_blocks_free(c), 16);
    CHECKF(vb_kvc_check(c, err, sizeof err) == VB_OK, "%s", err);
    vb_kvc_free(c);
}

/* Plain model of one sequence: its rows' (pos, tok, k value). */
typedef struct { int32_t len; vb_pos pos[600]; vb_token tok[600]; float k[600]; } model_seq;

static uint64_t rng_state = 12345;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33) % n;
}

TEST(kv_randomized_invariants) {
    enum { NSEQ = 6, NB = 40, DIM = 2 };
    vb_kv_cache *c = make(NB, NSEQ, 1, DIM);
    CHECK(c);
    static model_seq ref[NSEQ];
    memset(ref, 0, sizeof ref);
    char err[256];
    int n_full = 0;
    for (int step = 0; step < 20000; step++) {
        int op = (int)rnd(100);
        vb_seq s = (vb_seq)rnd(NSEQ);
        if (op < 55) { /* append 1..40 rows */
            int32_t n = 1 + (int32_t)rnd(40);
            if (ref[s].len + n > 600) continue;
            vb_pos pos[40];
            vb_token tok[40];
            for (int i = 0; i < n; i++) pos[i] = (vb_pos)rnd(5000), tok[i] = (vb_token)rnd(1000);
            int32_t need = vb_kvc_blocks_needed(c, s, n), free_before = vb_kvc_blocks_free(c);
            int st = vb_kvc_append(c, s, n, pos, tok);
            CHECK_EQ_INT(st == VB_KV_FULL, need > free_before);
            if (st == VB_KV_FULL) {
                CHECK_EQ_INT(vb_kvc_blocks_free(c), free_before);
                n_full++;
                continue;
            }
            CHECK_EQ_INT(vb_kvc_blocks_free(c), free_before - need);
            CHECK_EQ_INT(st, VB_OK);
            for (int i = 0; i < n; i++) {
                int32_t r = ref[s].len + i;
                ref[s].pos[r] = pos[i];
                ref[s].tok[r] = tok[i];
                ref[s].k[r] = (float)rnd(1u << 20);
                float *kr = vb_kvc_k_row(c, 0, s, r);
                CHECK(kr);
                kr[0] = ref[s].k[r];
            }
            ref[s].len += n;
        } else if (op < 75) { /* truncate */
            int32_t keep = ref[s].len ? (int32_t)rnd((uint32_t)ref[s].len + 1) : 0;
            CHECK_EQ_INT(vb_kvc_truncate(c, s, keep), VB_OK);
            ref[s].len = keep;
        } else if (op < 90) { /* fork into an empty sequence */
            vb_seq d = (vb_seq)rnd(NSEQ);
            if (d == s || ref[d].len != 0) continue;
            CHECK_EQ_INT(vb_kvc_fork(c, s, d), VB_OK);
            ref[d] = ref[s];
        } else {
            CHECK_EQ_INT(vb_kvc_free_seq(c, s), VB_OK);
            ref[s].len = 0;
        }
        CHECKF(vb_kvc_check(c, err, sizeof err) == VB_OK, "step %d: %s", step, err);
        if (step % 97 == 0) { /* full content comparison */
            for (vb_seq q = 0; q < NSEQ; q++) {
                CHECK_EQ_INT(vb_kvc_seq_len(c, q), ref[q].len);
                for (int32_t r = 0; r < ref[q].len; r++) {
                    CHECKF(vb_kvc_row_pos(c, q, r) == ref[q].pos[r], "step %d seq %d row %d pos", step, q, r);
                    CHECKF(vb_kvc_row_tok(c, q, r) == ref[q].tok[r], "step %d seq %d row %d tok", step, q, r);
                    CHECKF(((float *)vb_kvc_k_row(c, 0, q, r))[0] == ref[q].k[r],
                           "step %d seq %d row %d: K content changed by a write elsewhere", step, q, r);
                }
            }
        }
    }
    CHECK(n_full > 0); /* the run did reach the full pool */
    vb_kvc_free(c);
}

TEST(kv_waste_under_5_percent) {
    /* a mix of sequence lengths >= 150 tokens, as a serving workload holds them */
    enum { NSEQ = 64 };
    vb_kv_cache *c = make(4096, NSEQ, 0, 0);
    CHECK(c);
    static vb_pos pos[2048];
    for (int i = 0; i < 2048; i++) pos[i] = i;
    rng_state = 777;
    for (vb_seq s = 0; s < NSEQ; s++) CHECK_EQ_INT(vb_kvc_append(c, s, 150 + (int32_t)rnd(850), pos, NULL), VB_OK);
    vb_kv_stats st;
    vb_kvc_stats(c, &st);
    printf("    kv waste: %lld tokens in %d blocks of 16, waste %.2f%%\n", (long long)st.tokens_stored,
           st.blocks_used, 100.0 * st.waste);
    CHECK(st.waste < 0.05);
    CHECK(st.waste > 0.0);
    CHECK_EQ_INT(st.n_seq_active, NSEQ);
    vb_kvc_free(c);
}

typedef struct copy_log {
    int n;
    int32_t src[8], dst[8];
} copy_log;

static int log_copy(void *user, int32_t src, int32_t dst) {
    copy_log *l = user;
    if (l->n < 8) l->src[l->n] = src, l->dst[l->n] = dst;
    l->n++;
    return VB_OK;
}

/* The one batch append path: rows of interleaved sequences numbered in batch order, all or
   nothing at a full pool, undo back to the lengths before the batch, a copy-on-write of a
   shared partial block reported once. */
TEST(kv_append_batch_all_or_nothing) {
    vb_kv_cache *c = make(6, 3, 1, 4);
    CHECK(c);
    CHECK_EQ_INT(vb_kvc_blocks_for_ctx(64, 16, 2), 6);
    CHECK_EQ_INT(vb_kvc_blocks_for_ctx(0x7fffffff, 16, 4), -1);
    vb_batch *b = vb_batch_init(64);
    CHECK(b);
    for (int i = 0; i < 20; i++) vb_batch_add(b, 100 + i, i / 2, i % 2, false); /* seqs 0,1,0,1.. */
    int32_t row[64];
    char msg[160];
    CHECK_EQ_INT(vb_kvc_append_batch(c, b, row, NULL, NULL, msg, sizeof msg), VB_OK);
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(row[i], i / 2);
    CHECK_EQ_INT(vb_kvc_row_tok(c, 1, 9), 119);
    /* fork seq 0 (10 rows: a shared partial block) into 2; appending to 2 copies that block */
    CHECK_EQ_INT(vb_kvc_fork(c, 0, 2), VB_OK);
    vb_batch_clear(b);
    vb_batch_add(b, 7, 10, 2, false);
    vb_batch_add(b, 8, 11, 2, false);
    copy_log log = {0};
    CHECK_EQ_INT(vb_kvc_append_batch(c, b, row, log_copy, &log, msg, sizeof msg), VB_OK);
    CHECK_EQ_INT(log.n, 1);
    CHECK(log.src[0] != log.dst[0]);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 0), 10);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 2), 12);
    /* more rows than the pool holds: VB_KV_FULL before anything is appended */
    int32_t free_before = vb_kvc_blocks_free(c);
    vb_batch_clear(b);
    for (int i = 0; i < 60; i++) vb_batch_add(b, 1, 10 + i, i % 2, false);
    CHECK_EQ_INT(vb_kvc_append_batch(c, b, row, NULL, NULL, msg, sizeof msg), VB_KV_FULL);
    CHECK(strstr(msg, "KV cache full") != NULL);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 0), 10);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 1), 10);
    CHECK_EQ_INT(vb_kvc_blocks_free(c), free_before);
    /* a forward that failed after appending: undo restores every sequence */
    vb_batch_clear(b);
    for (int i = 0; i < 6; i++) vb_batch_add(b, 1, 12 + i, i % 3, false);
    CHECK_EQ_INT(vb_kvc_append_batch(c, b, row, NULL, NULL, msg, sizeof msg), VB_OK);
    vb_kvc_undo_batch(c, b, row, b->n);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 0), 10);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 1), 10);
    CHECK_EQ_INT(vb_kvc_seq_len(c, 2), 12);
    CHECK(vb_kvc_check(c, msg, sizeof msg) == VB_OK);
    vb_batch_free(b);
    vb_kvc_free(c);
}
