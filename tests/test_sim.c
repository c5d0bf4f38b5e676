/* test_sim.c - the forward primitive through the context layer on the sim backend: batching
 * equivalences (K rows = K single rows, two sequences together = apart), physical-order
 * causality (later rows never change earlier ones; earlier rows always matter), reordered
 * logical positions, truncate / fork, KV full and bad input leaving everything intact. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vibee.h"

typedef struct { vb_model *m; vb_context *c; vb_batch *b; int32_t V; } sim_env;

static int env_open(sim_env *e, int32_t n_ctx, int32_t n_batch) {
    memset(e, 0, sizeof *e);
    char err[256];
    if (vb_model_load("sim", NULL, &e->m, err, sizeof err) != VB_OK) return 0;
    vb_context_params p = vb_context_default_params();
    p.backend = "sim";
    p.n_ctx = n_ctx;
    p.n_seq_max = 4;
    p.n_batch_max = n_batch;
    if (vb_context_init(e->m, &p, &e->c, err, sizeof err) != VB_OK) return 0;
    e->b = vb_batch_init(n_batch);
    e->V = vb_model_get_info(e->m)->n_vocab;
    return e->b != NULL;
}

static void env_close(sim_env *e) {
    vb_batch_free(e->b);
    vb_context_free(e->c);
    vb_model_free(e->m);
}

/* forward rows [tok, pos] of seq one at a time, logits of each into out[n][V] */
static int run_single(sim_env *e, vb_seq seq, const vb_token *tok, const vb_pos *pos, int n, float *out) {
    for (int i = 0; i < n; i++) {
        vb_batch_clear(e->b);
        vb_batch_add(e->b, tok[i], pos[i], seq, true);
        if (vb_forward(e->c, e->b) != VB_OK) return 0;
        memcpy(out + (size_t)i * e->V, vb_get_logits(e->c, 0), (size_t)e->V * sizeof(float));
    }
    return 1;
}

static const vb_token TOK[12] = {'d', 'e', 'f', ' ', 'm', 'a', 'i', 'n', '(', ')', ':', '\n'};

TEST(sim_k_rows_equal_single_rows) {
    sim_env e;
    CHECK(env_open(&e, 256, 32));
    vb_pos pos[12];
    for (int i = 0; i < 12; i++) pos[i] = i;
    float *one = malloc(12 * (size_t)e.V * sizeof(float));
    CHECK(run_single(&e, 0, TOK, pos, 12, one));
    vb_batch_clear(e.b);
    for (int i = 0; i < 12; i++) vb_batch_add(e.b, TOK[i], pos[i], 1, true);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    for (int i = 0; i < 12; i++)
        CHECKF(memcmp(vb_get_logits(e.c, i), one + (size_t)i * e.V, (size_t)e.V * 4) == 0, "row %d differs", i);
    /* two sequences interleaved in one batch equal each alone */
    vb_kv_free_seq(e.c, 0);
    vb_kv_free_seq(e.c, 1);
    vb_batch_clear(e.b);
    for (int i = 0; i < 12; i++) {
        vb_batch_add(e.b, TOK[i], pos[i], 0, true);
        vb_batch_add(e.b, TOK[11 - i], pos[i], 2, true);
    }
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    for (int i = 0; i < 12; i++)
        CHECK(memcmp(vb_get_logits(e.c, 2 * i), one + (size_t)i * e.V, (size_t)e.V * 4) == 0);
    CHECK_EQ_INT(vb_kv_seq_len(e.c, 0), 12);
    CHECK_EQ_INT(vb_kv_seq_len(e.c, 2), 12);
    free(one);
    env_close(&e);
}

TEST(sim_physical_causality) {
    sim_env e;
    CHECK(env_open(&e, 256, 32));
    vb_pos pos[12];
    for (int i = 0; i < 12; i++) pos[i] = i;
    /* rows after row 5 never change row 5's logits, whatever they hold */
    float *ref = malloc(12 * (size_t)e.V * sizeof(float));
    CHECK(run_single(&e, 0, TOK, pos, 6, ref));
    vb_batch_clear(e.b);
    for (int i = 0; i < 12; i++) vb_batch_add(e.b, i < 6 ? TOK[i] : 'z', i < 6 ? pos[i] : 3, 1, true);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    CHECK(memcmp(vb_get_logits(e.c, 5), ref + 5 * (size_t)e.V, (size_t)e.V * 4) == 0);
    /* ...but changing an earlier row (token or position) changes them */
    vb_batch_clear(e.b);
    for (int i = 0; i < 6; i++) vb_batch_add(e.b, i == 1 ? 'E' : TOK[i], pos[i], 2, true);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    CHECK(memcmp(vb_get_logits(e.c, 5), ref + 5 * (size_t)e.V, (size_t)e.V * 4) != 0);
    vb_batch_clear(e.b);
    for (int i = 0; i < 6; i++) vb_batch_add(e.b, TOK[i], i == 1 ? 40 : pos[i], 3, true);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    CHECK(memcmp(vb_get_logits(e.c, 5), ref + 5 * (size_t)e.V, (size_t)e.V * 4) != 0);
    free(ref);
    env_close(&e);
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

TEST(sim_masks_and_reordered_positions) {
    /* The chain is the greedy AR continuation; a MASK at position p predicts p, with the
       margin falling with the number of unknown positions before it; filled slots placed
       physically first with later logical positions are read by position. */
    sim_env e;
    CHECK(env_open(&e, 256, 32));
    const int32_t MASK = vb_model_get_info(e.m)->mask;
    CHECK(MASK == e.V - 1);
    vb_token chain[10];
    vb_pos pos[10];
    for (int i = 0; i < 4; i++) chain[i] = TOK[i], pos[i] = i;
    for (int i = 4; i < 10; i++) pos[i] = i;
    float *l = malloc(10 * (size_t)e.V * sizeof(float));
    CHECK(run_single(&e, 0, chain, pos, 4, l));
    for (int i = 4; i < 10; i++) { /* greedy AR */
        chain[i] = argmax(l + (size_t)(i - 1) * e.V, e.V);
        CHECK(run_single(&e, 0, chain + i, pos + i, 1, l + (size_t)i * e.V));
    }
    /* prefix 0..3 then window: filled slot pos 6 physically first, then masks at 4, 5, 7 */
    vb_batch_clear(e.b);
    for (int i = 0; i < 4; i++) vb_batch_add(e.b, chain[i], i, 1, false);
    vb_batch_add(e.b, chain[6], 6, 1, true);
    vb_batch_add(e.b, MASK, 4, 1, true);
    vb_batch_add(e.b, MASK, 5, 1, true);
    vb_batch_add(e.b, MASK, 7, 1, true);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    const float *m4 = vb_get_logits(e.c, 5), *m5 = vb_get_logits(e.c, 6), *m7 = vb_get_logits(e.c, 7);
    CHECK_EQ_INT(argmax(m4, e.V), chain[4]);
    CHECK_EQ_INT(argmax(m5, e.V), chain[5]);
    CHECK_EQ_INT(argmax(m7, e.V), chain[7]);
    /* margins: pos 4 (0 unknown before) > pos 5 (1 unknown) */
    float base4 = m4[chain[4]] - m4['\t'], base5 = m5[chain[5]] - m5['\t'];
    CHECK(base4 > base5 + 2.0f);
    CHECK(vb_get_logits(e.c, 3) == NULL); /* no logits asked for row 3 */
    free(l);
    env_close(&e);
}

TEST(sim_truncate_fork_reproduce) {
    sim_env e;
    CHECK(env_open(&e, 256, 32));
    vb_pos pos[12];
    for (int i = 0; i < 12; i++) pos[i] = i;
    float *a = malloc(12 * (size_t)e.V * sizeof(float)), *b = malloc(12 * (size_t)e.V * sizeof(float));
    CHECK(run_single(&e, 0, TOK, pos, 12, a));
    CHECK_EQ_INT(vb_kv_truncate(e.c, 0, 7), VB_OK);
    CHECK(run_single(&e, 0, TOK + 7, pos + 7, 5, b));
    CHECK(memcmp(a + 7 * (size_t)e.V, b, 5 * (size_t)e.V * 4) == 0);
    CHECK_EQ_INT(vb_kv_truncate(e.c, 0, 3), VB_OK);
    CHECK_EQ_INT(vb_kv_fork(e.c, 0, 1), VB_OK);
    CHECK_EQ_INT(vb_kv_fork(e.c, 0, 1), VB_ERR_STATE);
    CHECK(run_single(&e, 1, TOK + 3, pos + 3, 9, b));
    CHECK(memcmp(a + 3 * (size_t)e.V, b, 9 * (size_t)e.V * 4) == 0);
    CHECK(run_single(&e, 0, TOK + 3, pos + 3, 4, b)); /* original unaffected by the fork's writes */
    CHECK(memcmp(a + 3 * (size_t)e.V, b, 4 * (size_t)e.V * 4) == 0);
    vb_stats st = vb_context_stats(e.c);
    CHECK(st.kv.blocks_used >= 2 && st.n_forward == 12 + 5 + 9 + 4);
    free(a);
    free(b);
    env_close(&e);
}

TEST(sim_kv_full_and_bad_input_keep_state) {
    sim_env e;
    CHECK(env_open(&e, 32, 64)); /* 2 blocks + 4 headroom = 6 blocks = 96 rows */
    vb_batch_clear(e.b);
    for (int i = 0; i < 40; i++) vb_batch_add(e.b, 'a' + i % 26, i, 0, i == 39);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    vb_batch_clear(e.b);
    for (int i = 0; i < 30; i++) vb_batch_add(e.b, 'a', i, 1, false);
    for (int i = 0; i < 30; i++) vb_batch_add(e.b, 'b', 40 + i, 0, false);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_KV_FULL);
    CHECK_EQ_INT(vb_kv_seq_len(e.c, 0), 40);
    CHECK_EQ_INT(vb_kv_seq_len(e.c, 1), 0);
    CHECK(strstr(vb_context_error(e.c), "full") != NULL);
    struct { vb_token t; vb_pos p; vb_seq s; } bad[] = {{-1, 0, 0}, {e.V, 0, 0}, {1, -1, 0}, {1, 0, 4}, {1, 0, -1}};
    for (int k = 0; k < 5; k++) {
        vb_batch_clear(e.b);
        vb_batch_add(e.b, 'x', 40, 0, true);
        vb_batch_add(e.b, bad[k].t, bad[k].p, bad[k].s, true);
        CHECK_EQ_INT(vb_forward(e.c, e.b), VB_ERR_ARG);
        CHECK(vb_context_error(e.c)[0] != 0);
        CHECK_EQ_INT(vb_kv_seq_len(e.c, 0), 40);
    }
    vb_batch *big = vb_batch_init(65);
    for (int i = 0; i < 65; i++) vb_batch_add(big, 1, i, 2, false);
    CHECK_EQ_INT(vb_forward(e.c, big), VB_ERR_ARG); /* over the batch limit */
    vb_batch_free(big);
    CHECK_EQ_INT(vb_forward(e.c, NULL), VB_ERR_ARG);
    CHECK_EQ_INT(vb_kv_truncate(e.c, 9, 0), VB_ERR_ARG);
    CHECK_EQ_INT(vb_kv_truncate(e.c, 0, -2), VB_ERR_ARG);
    CHECK_EQ_INT(vb_kv_fork(e.c, 0, 0), VB_ERR_ARG);
    /* still usable */
    vb_batch_clear(e.b);
    vb_batch_add(e.b, 'x', 40, 0, true);
    CHECK_EQ_INT(vb_forward(e.c, e.b), VB_OK);
    CHECK_EQ_INT(vb_kv_seq_len(e.c, 0), 41);
    env_close(&e);
}

TEST(context_rejects_bad_params_and_backends) {
    vb_model *m = NULL;
    char err[256];
    CHECK_EQ_INT(vb_model_load("sim", NULL, &m, err, sizeof err), VB_OK);
    vb_context *c = NULL;
    vb_context_params p = vb_context_default_params();
    p.backend = "nosuch";
    CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_BACKEND);
    CHECK(c == NULL && strstr(err, "nosuch") && strstr(err, "sim"));
    p = vb_context_default_params();
    p.backend = "sim";
    p.block_size = 0;
    CHECK_EQ_INT(vb_context_init(m, &p, &c, err, sizeof err), VB_ERR_ARG);
    p = vb_context_default_params();
    p.backend = "cpu"; /* the cpu backend cannot run the sim model */
    CHECK(vb_context_init(m, &p, &c, err, sizeof err) < 0);
    CHECK(c == NULL);
    vb_model *m2 = (vb_model *)1;
    CHECK_EQ_INT(vb_model_load("/nonexistent/model.gguf", NULL, &m2, err, sizeof err) < 0, 1);
    CHECK(m2 == NULL && strstr(err, "/nonexistent/model.gguf") != NULL);
    vb_model_free(m);
}
