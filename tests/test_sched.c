/* test_sched.c - the continuous-batching scheduler (include/vibee_sched.h) on the deterministic
 * sim backend: every request must get exactly the tokens vb_generate's AR decoder gives it when
 * run alone in a fresh context, whatever the batching, chunking, preemption or prefix sharing;
 * the KV pool must be empty again at the end (no leaked blocks). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "vibee.h"
#include "vibee_sched.h"

#define MAXP 64
#define MAXN 64

typedef struct case_req {
    vb_token prompt[MAXP];
    int32_t n_prompt;
    int32_t n_predict;
    vb_sampler_params sp;
    vb_token ref[MAXN];
    int32_t n_ref;
    vb_request_id id;
    int decoder;     /* enum vb_decoder of the request (the reference is always AR) */
    bool exact;      /* WeDLM: exact mode */
} case_req;

static vb_model *sim_model(void) {
    vb_model *m = NULL;
    vb_sim_params sp = vb_sim_default_params();
    sp.peak = 4.0f; /* flat enough that sampling reads the noise, which sees every visible row */
    char err[256];
    if (vb_model_load_sim(&sp, &m, err, sizeof err) != VB_OK) return NULL;
    return m;
}

static vb_context *sim_ctx(vb_model *m, int32_t n_ctx, int32_t n_seq) {
    vb_context_params cp = vb_context_default_params();
    cp.backend = "sim";
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    vb_context *c = NULL;
    char err[256];
    if (vb_context_init(m, &cp, &c, err, sizeof err) != VB_OK) return NULL;
    return c;
}

/* The reference: vb_generate (AR) alone in a fresh context, EOS not stopping. */
static int reference(vb_model *m, case_req *q) {
    vb_context *c = sim_ctx(m, 1024, 1);
    if (!c) return -1;
    vb_generate_params gp = vb_generate_default_params();
    gp.decoder = VB_DECODER_AR;
    gp.n_predict = q->n_predict;
    gp.sampler = q->sp;
    gp.stop_at_eos = false;
    vb_generate_stats st;
    int rc = vb_generate(c, q->prompt, q->n_prompt, &gp, q->ref, MAXN, &q->n_ref, &st);
    vb_context_free(c);
    return rc;
}

static uint64_t rng_next(uint64_t *x) {
    *x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = *x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Requests with prompts of `common` shared tokens then random ones. */
static void make_cases(case_req *q, int n, int common, uint64_t seed) {
    uint64_t x = seed;
    vb_token shared[MAXP];
    for (int i = 0; i < MAXP; i++) shared[i] = 32 + (vb_token)(rng_next(&x) % 95);
    for (int k = 0; k < n; k++) {
        memset(&q[k], 0, sizeof q[k]);
        q[k].n_prompt = common + 1 + (int32_t)(rng_next(&x) % (uint64_t)(MAXP - common - 1));
        for (int i = 0; i < q[k].n_prompt; i++)
            q[k].prompt[i] = i < common ? shared[i] : 32 + (vb_token)(rng_next(&x) % 95);
        q[k].n_predict = 8 + (int32_t)(rng_next(&x) % (MAXN - 8));
        q[k].sp = vb_sampler_default_params();
        if (k % 2) { /* sampled: these tokens depend on every KV row the request sees */
            q[k].sp.temp = 1.2f;
            q[k].sp.seed = seed + (uint64_t)k;
        }
    }
}

/* Run all requests through a scheduler (submitting `first` at once and one more per step), poll
   them as a client would, compare with the references. Returns 0 or the failing request + 1. */
static int run_and_compare(vb_sched *s, case_req *q, int n, int first, char *why, size_t why_len) {
    vb_token got[MAXN][MAXN];
    int32_t n_got[MAXN] = {0};
    int finish[MAXN] = {0};
    int submitted = 0;
    for (int guard = 0; guard < 100000; guard++) {
        int want = guard == 0 ? first : submitted + 1;
        while (submitted < n && submitted < want) {
            vb_request_params rp = vb_request_default_params();
            rp.n_predict = q[submitted].n_predict;
            rp.sampler = q[submitted].sp;
            rp.stop_at_eos = false;
            rp.decoding.decoder = q[submitted].decoder;
            rp.decoding.wedlm_exact = q[submitted].exact;
            rp.decoding.window = 4;
            rp.decoding.draft_max = submitted % 2 ? 4 : 0; /* 0: adaptive, measures cost(K) */
            rp.decoding.tau = 100.0f; /* exact mode: every mask filled, every fill checked */
            int rc = vb_sched_submit(s, q[submitted].prompt, q[submitted].n_prompt, &rp, &q[submitted].id);
            if (rc != VB_OK) {
                snprintf(why, why_len, "submit %d: %s", submitted, vb_sched_error(s));
                return submitted + 1;
            }
            submitted++;
        }
        int rc = vb_sched_step(s);
        if (rc != VB_OK) {
            snprintf(why, why_len, "step: %s", vb_sched_error(s));
            return 1;
        }
        for (int k = 0; k < submitted; k++) {
            if (finish[k]) continue;
            int32_t got_now = vb_sched_poll(s, q[k].id, got[k] + n_got[k], MAXN - n_got[k], &finish[k]);
            if (got_now < 0) {
                snprintf(why, why_len, "poll %d failed", k);
                return k + 1;
            }
            n_got[k] += got_now;
        }
        if (submitted == n && vb_sched_idle(s)) break;
    }
    for (int k = 0; k < n; k++) {
        int32_t more = vb_sched_poll(s, q[k].id, got[k] + n_got[k], MAXN - n_got[k], &finish[k]);
        if (more > 0) n_got[k] += more;
        if (finish[k] != VB_FINISH_LENGTH || n_got[k] != q[k].n_ref ||
            memcmp(got[k], q[k].ref, (size_t)n_got[k] * sizeof(vb_token)) != 0) {
            int32_t at = 0;
            while (at < n_got[k] && at < q[k].n_ref && got[k][at] == q[k].ref[at]) at++;
            snprintf(why, why_len, "request %d: finish %s, %d tokens vs %d alone, first difference at %d",
                     k, vb_finish_reason_str(finish[k]), n_got[k], q[k].n_ref, at);
            return k + 1;
        }
        vb_sched_release(s, q[k].id);
    }
    return 0;
}

/* One scheduler with parameters sp over c: run_and_compare(q[0..n), first), its statistics at the
 * end (st) and after vb_sched_clear_cache (st2, may be NULL), then freed; frees c too.
 * Returns run_and_compare's result (why: the reason), or -1 if the scheduler did not start. */
static int sched_round(vb_context *c, const vb_sched_params *sp, case_req *q, int n, int first,
                       vb_sched_stats *st, vb_sched_stats *st2, char *why, size_t why_len) {
    vb_sched *s = NULL;
    int bad = -1;
    if (vb_sched_init(c, sp, &s, why, why_len) == VB_OK) {
        bad = run_and_compare(s, q, n, first, why, why_len);
        *st = vb_sched_get_stats(s);
        vb_sched_clear_cache(s);
        if (st2) *st2 = vb_sched_get_stats(s);
        vb_sched_free(s);
    }
    vb_context_free(c);
    return bad;
}

/* One scheduler with default parameters over c running q[0], then q[1] after it finished:
 * the statistics after each (st1, st2); frees the scheduler and c. Returns as sched_round. */
static int sched_two_in_turn(vb_context *c, case_req *q, vb_sched_stats *st1, vb_sched_stats *st2,
                             char *why, size_t why_len) {
    vb_sched *s = NULL;
    int bad = -1;
    if (vb_sched_init(c, NULL, &s, why, why_len) == VB_OK) {
        bad = run_and_compare(s, q, 1, 1, why, why_len);
        *st1 = vb_sched_get_stats(s);
        if (!bad) bad = run_and_compare(s, q + 1, 1, 1, why, why_len);
        *st2 = vb_sched_get_stats(s);
        vb_sched_free(s);
    }
    vb_context_free(c);
    return bad;
}

TEST(sched_concurrent_equals_alone) {
    vb_model *m = sim_model();
    CHECK(m);
    case_req q[12];
    make_cases(q, 12, 0, 7);
    for (int k = 0; k < 12; k++) {
        if (k % 4 == 3) q[k].sp.top_k = 20;
        CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    }
    vb_context *c = sim_ctx(m, 4096, 8);
    CHECK(c);
    vb_sched_params sp = vb_sched_default_params();
    sp.token_budget = 24; /* forces chunked prefill next to decode rows */
    sp.prefix_sharing = false;
    vb_sched *s = NULL;
    char err[256];
    CHECK_EQ_INT(vb_sched_init(c, &sp, &s, err, sizeof err), VB_OK);
    char why[256] = "";
    int bad = run_and_compare(s, q, 12, 5, why, sizeof why);
    vb_sched_stats st = vb_sched_get_stats(s);
    vb_sched_free(s);
    vb_stats cs = vb_context_stats(c);
    vb_context_free(c);
    vb_model_free(m);
    CHECKF(bad == 0, "%s", why);
    CHECKF(st.max_batch_rows > 1 && st.max_batch_rows <= 24, "max batch rows %d", st.max_batch_rows);
    CHECKF(st.n_steps < st.n_generated, "batching: %lld steps for %lld tokens", (long long)st.n_steps,
           (long long)st.n_generated);
    CHECK_EQ_INT(st.n_completed, 12);
    CHECK_EQ_INT(st.kv_blocks_leaked, 0);
    CHECK_EQ_INT(cs.kv.blocks_used, 0);
}

TEST(sched_preemption_tiny_pool) {
    vb_model *m = sim_model();
    CHECK(m);
    case_req q[8];
    make_cases(q, 8, 0, 99);
    for (int k = 0; k < 8; k++) CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    /* sim pool: n_ctx/16 + n_seq blocks = 8 + 4 = 12 blocks = 192 rows for 4 sequences of up to
       127 rows each */
    vb_context *c = sim_ctx(m, 128, 4);
    CHECK(c);
    vb_sched_params sp = vb_sched_default_params();
    sp.token_budget = 16;
    char why[256] = "";
    vb_sched_stats st, st2;
    int bad = sched_round(c, &sp, q, 8, 8, &st, &st2, why, sizeof why);
    vb_model_free(m);
    CHECKF(bad == 0, "%s", why);
    CHECKF(st.n_preemptions > 0, "the tiny pool caused no preemption (%lld)", (long long)st.n_preemptions);
    CHECK_EQ_INT(st.kv_blocks_leaked, 0);
    CHECK_EQ_INT(st2.kv_blocks_used, 0);
    CHECK_EQ_INT(st2.n_running + st2.n_waiting, 0);
}

TEST(sched_prefix_sharing) {
    vb_model *m = sim_model();
    CHECK(m);
    case_req q[10];
    make_cases(q, 10, 40, 1234); /* 40 shared tokens = 2 whole blocks + 8 */
    for (int k = 0; k < 10; k++) CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    int64_t prefill_rows[3], hits[3];
    for (int sharing = 0; sharing < 3; sharing++) { /* off; on with one arrival per step; on, all at once */
        vb_context *c = sim_ctx(m, 4096, 6);
        CHECK(c);
        vb_sched_params sp = vb_sched_default_params();
        sp.prefix_sharing = sharing > 0;
        sp.token_budget = 32;
        char why[256] = "";
        vb_sched_stats st, st2;
        int bad = sched_round(c, &sp, q, 10, sharing == 2 ? 10 : 1, &st, &st2, why, sizeof why);
        CHECKF(bad == 0, "sharing %d: %s", sharing, why);
        CHECK_EQ_INT(st.kv_blocks_leaked, 0);
        CHECK_EQ_INT(st2.kv_blocks_used, 0);
        prefill_rows[sharing] = st.n_prefill_rows;
        hits[sharing] = st.n_prefix_hits;
    }
    vb_model_free(m);
    CHECK_EQ_INT(hits[0], 0);
    CHECKF(hits[1] >= 9, "prefix hits %lld", (long long)hits[1]);
    CHECKF(hits[2] >= 9, "prefix hits when all arrive together %lld", (long long)hits[2]);
    for (int k = 1; k < 3; k++)
        CHECKF(prefill_rows[k] + 9 * 32 <= prefill_rows[0], "prefill rows with sharing %lld, without %lld",
               (long long)prefill_rows[k], (long long)prefill_rows[0]);
}

TEST(sched_prefix_cache_after_finish) {
    vb_model *m = sim_model();
    CHECK(m);
    case_req q[2];
    make_cases(q, 2, 48, 77);
    for (int k = 0; k < 2; k++) CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    vb_context *c = sim_ctx(m, 1024, 2);
    CHECK(c);
    char why[256] = "";
    vb_sched_stats st1, st2;
    int bad = sched_two_in_turn(c, q, &st1, &st2, why, sizeof why);
    vb_model_free(m);
    CHECKF(bad == 0, "%s", why);
    CHECK_EQ_INT(st1.n_cached_seqs, 1);
    CHECK_EQ_INT(st2.n_prefix_hits, 1);
    CHECK(st2.n_prefix_tokens >= 48);
}

TEST(sched_cancel_frees_blocks) {
    vb_model *m = sim_model();
    CHECK(m);
    vb_context *c = sim_ctx(m, 1024, 2);
    CHECK(c);
    vb_sched_params sp = vb_sched_default_params();
    sp.prefix_cache = false;
    vb_sched *s = NULL;
    CHECK_EQ_INT(vb_sched_init(c, &sp, &s, NULL, 0), VB_OK);
    vb_token prompt[40];
    for (int i = 0; i < 40; i++) prompt[i] = 'a' + i % 26;
    vb_request_params rp = vb_request_default_params();
    rp.n_predict = 1000;
    rp.stop_at_eos = false;
    vb_request_id id[3];
    for (int k = 0; k < 3; k++) {
        prompt[0] = 'A' + k;
        CHECK_EQ_INT(vb_sched_submit(s, prompt, 40, &rp, &id[k]), VB_OK);
    }
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(vb_sched_step(s), VB_OK);
    vb_sched_stats st = vb_sched_get_stats(s);
    CHECK_EQ_INT(st.n_running, 2);
    CHECK_EQ_INT(st.n_waiting, 1);
    int32_t used_before = st.kv_blocks_used;
    CHECK_EQ_INT(vb_sched_cancel(s, id[0]), VB_OK); /* running */
    CHECK_EQ_INT(vb_sched_cancel(s, id[2]), VB_OK); /* waiting */
    st = vb_sched_get_stats(s);
    CHECKF(st.kv_blocks_used < used_before, "blocks %d -> %d", used_before, st.kv_blocks_used);
    CHECK_EQ_INT(st.n_running, 1);
    CHECK_EQ_INT(st.n_waiting, 0);
    int fin = 0;
    vb_token buf[64];
    CHECK(vb_sched_poll(s, id[0], buf, 64, &fin) >= 0);
    CHECK_EQ_INT(fin, VB_FINISH_CANCELLED);
    CHECK_EQ_INT(vb_sched_release(s, id[1]), VB_OK); /* release cancels a running one */
    st = vb_sched_get_stats(s);
    CHECK_EQ_INT(st.kv_blocks_used, 0);
    CHECK_EQ_INT(st.kv_blocks_leaked, 0);
    CHECK(vb_sched_idle(s));
    CHECK_EQ_INT(vb_sched_cancel(s, 999), VB_ERR_ARG);
    vb_sched_free(s);
    vb_context_free(c);
    vb_model_free(m);
}

TEST(sched_bad_requests) {
    vb_model *m = sim_model();
    CHECK(m);
    vb_context *c = sim_ctx(m, 64, 2);
    CHECK(c);
    vb_sched_params sp = vb_sched_default_params();
    sp.max_waiting = 2;
    vb_sched *s = NULL;
    CHECK_EQ_INT(vb_sched_init(c, &sp, &s, NULL, 0), VB_OK);
    vb_token ok[2] = {'h', 'i'}, bad[2] = {'h', 9999};
    vb_request_id id;
    vb_request_params rp = vb_request_default_params();
    CHECK_EQ_INT(vb_sched_submit(s, ok, 0, &rp, &id), VB_ERR_ARG);
    CHECK_EQ_INT(vb_sched_submit(s, bad, 2, &rp, &id), VB_ERR_ARG);
    rp.n_predict = 0;
    CHECK_EQ_INT(vb_sched_submit(s, ok, 2, &rp, &id), VB_ERR_ARG);
    rp = vb_request_default_params();
    rp.sampler.top_p = 2.0f;
    CHECK_EQ_INT(vb_sched_submit(s, ok, 2, &rp, &id), VB_ERR_ARG);
    rp = vb_request_default_params();
    vb_token big[200];
    for (int i = 0; i < 200; i++) big[i] = 'x';
    CHECK_EQ_INT(vb_sched_submit(s, big, 200, &rp, &id), VB_ERR_ARG); /* > pool of 96 rows */
    CHECK_EQ_INT(vb_sched_submit(s, ok, 2, &rp, &id), VB_OK);
    CHECK_EQ_INT(vb_sched_submit(s, ok, 2, &rp, &id), VB_OK);
    CHECK_EQ_INT(vb_sched_submit(s, ok, 2, &rp, &id), VB_ERR_STATE); /* queue bound */
    CHECK(strstr(vb_sched_error(s), "queue full") != NULL);
    /* a request that outgrows the pool alone finishes with kv_full, keeping its tokens */
    rp.n_predict = 500;
    rp.stop_at_eos = false;
    vb_sched_free(s);
    CHECK_EQ_INT(vb_sched_init(c, &sp, &s, NULL, 0), VB_OK);
    CHECK_EQ_INT(vb_sched_submit(s, ok, 2, &rp, &id), VB_OK);
    for (int i = 0; i < 1000 && !vb_sched_idle(s); i++) CHECK_EQ_INT(vb_sched_step(s), VB_OK);
    int fin = 0;
    int32_t n = 0;
    vb_sched_poll(s, id, NULL, 0, &fin);
    vb_sched_tokens(s, id, &n);
    CHECK_EQ_INT(fin, VB_FINISH_KV);
    CHECKF(n >= 90 && n < 500, "generated %d before the pool ran out", n);
    vb_sched_clear_cache(s);
    CHECK_EQ_INT(vb_sched_get_stats(s).kv_blocks_used, 0);
    vb_sched_free(s);
    vb_context_free(c);
    vb_model_free(m);
}

TEST(sched_draft_verify_exact) {
    vb_model *m = sim_model();
    CHECK(m);
    /* prompts whose continuation repeats earlier text (so n-gram drafts get accepted): T + T[0..2]
       where T is the model's own greedy text, whose next token is T[2] again */
    case_req q[8];
    make_cases(q, 8, 0, 4242);
    for (int k = 0; k < 8; k++) {
        q[k].n_predict = 24 + 3 * k;
        q[k].sp = vb_sampler_default_params();
        CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
        int32_t len = q[k].n_ref < MAXP - 2 ? q[k].n_ref : MAXP - 2;
        memcpy(q[k].prompt, q[k].ref, (size_t)len * sizeof(vb_token));
        q[k].prompt[len] = q[k].ref[0];
        q[k].prompt[len + 1] = q[k].ref[1];
        q[k].n_prompt = len + 2;
        q[k].n_predict = 40;
        if (k % 2) { /* sampled: the random stream must be consumed exactly as AR consumes it */
            q[k].sp.temp = k == 7 ? 1.5f : 0.3f;
            q[k].sp.seed = 900 + (uint64_t)k;
        }
        CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    }
    for (int pool = 0; pool < 2; pool++) {
        vb_context *c = sim_ctx(m, pool ? 96 : 4096, 4);
        CHECK(c);
        vb_sched_params sp = vb_sched_default_params();
        sp.token_budget = 16;
        sp.draft_max = 6;
        char why[256] = "";
        vb_sched_stats st, st2;
        int bad = sched_round(c, &sp, q, 8, 8, &st, &st2, why, sizeof why);
        CHECKF(bad == 0, "pool %d: %s", pool, why);
        CHECKF(st.n_draft_accepted * 3 > st.n_generated, "pool %d: %lld drafts accepted of %lld forwarded for %lld tokens",
               pool, (long long)st.n_draft_accepted, (long long)st.n_draft_rows, (long long)st.n_generated);
        CHECKF(st.n_steps * 2 < st.n_generated, "pool %d: %lld steps for %lld tokens", pool, (long long)st.n_steps,
               (long long)st.n_generated);
        if (pool) CHECKF(st.n_preemptions > 0, "the small pool caused no preemption");
        CHECK_EQ_INT(st.kv_blocks_leaked, 0);
        CHECK_EQ_INT(st2.kv_blocks_used, 0);
    }
    vb_model_free(m);
}

/* ---- `vibee batch` ($VIBEE) against `vibee run` (vb_generate, no scheduler) ---- */

/* The JSON string literal after `key` (escaped as written) copied into out; false if absent. */
static bool json_literal(const char *js, const char *key, char *out, size_t cap) {
    const char *p = strstr(js, key);
    if (!p) return false;
    p = strchr(p + strlen(key), '"');
    if (!p) return false;
    size_t n = 0;
    for (p++; *p && *p != '"' && n + 2 < cap; p++) {
        if (*p == '\\') out[n++] = *p++;
        out[n++] = *p;
    }
    out[n] = 0;
    return *p == '"';
}

TEST(batch_cli_matches_run) {
    const char *vibee = vbt_vibee_bin();
    const char *prompts[] = {"hello world", "The same prefix, the same prefix, the same prefix: one",
                             "The same prefix, the same prefix, the same prefix: two", "x", "another line"};
    const int n = 5;
    char path[] = "/tmp/vb_batch_prompts_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f);
    for (int k = 0; k < n; k++) fprintf(f, "%s\n%s", prompts[k], k == 1 ? "\n" : ""); /* an empty line is skipped */
    fclose(f);
    static char out[1 << 16], one[1 << 14];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' batch -m sim -f %s -n 40 --parallel 3 --token-budget 8 --draft-max 3 --json 2>/dev/null", vibee, path);
    int st = vbt_run_cmd(cmd, out, sizeof out);
    unlink(path);
    CHECKF(st == 0, "vibee batch failed (%d): %.300s", st, out);
    CHECKF(strstr(out, "\"kv_blocks_leaked\": 0"), "stats: %.300s", strstr(out, "\"stats\"") ? strstr(out, "\"stats\"") : out);
    const char *at = out;
    for (int k = 0; k < n; k++) {
        char key[32], got[4096], want[4096];
        snprintf(key, sizeof key, "{\"index\": %d,", k);
        at = strstr(at, key);
        CHECKF(at, "no completion %d in %.300s", k, out);
        CHECK(json_literal(at, "\"text\":", got, sizeof got));
        snprintf(cmd, sizeof cmd, "'%s' run -m sim -p '%s' -n 40 --json 2>/dev/null", vibee, prompts[k]);
        CHECK_EQ_INT(vbt_run_cmd(cmd, one, sizeof one), 0);
        CHECK(json_literal(one, "\"text\":", want, sizeof want));
        CHECKF(strcmp(got, want) == 0, "prompt %d: batch \"%s\" vs run \"%s\"", k, got, want);
    }
    snprintf(cmd, sizeof cmd, "'%s' batch -m sim 2>&1", vibee);
    st = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(st != 0 && strstr(out, "-f FILE"), "no -f: status %d, %.200s", st, out);
}

/* The livelock of issue 18: a finished request's cached prefix is the best prefix source of the
   head of the queue, but keeping it leaves too few free blocks for the rest of that prompt. The
   scheduler must drop (or stop sharing) that source instead of waiting for blocks forever. */
TEST(sched_prefix_source_cannot_block_head) {
    vb_model *m = sim_model();
    CHECK(m);
    case_req q[2];
    make_cases(q, 2, 48, 91);
    q[0].n_prompt = 40;
    q[0].n_predict = 60; /* finishes with 99 KV rows: 6 whole blocks stay cached */
    q[1].n_prompt = 60;  /* shares 32 rows (2 blocks) with it, needs 2 more blocks */
    q[1].n_predict = 4;
    for (int i = 0; i < 40; i++) q[1].prompt[i] = q[0].prompt[i];
    for (int k = 0; k < 2; k++) CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    vb_context *c = sim_ctx(m, 80, 2);
    CHECK(c);
    CHECK_EQ_INT(vb_context_stats(c).kv.blocks_total, 7); /* the geometry this test relies on */
    char why[256] = "";
    vb_sched_stats st1, st2;
    int bad = sched_two_in_turn(c, q, &st1, &st2, why, sizeof why);
    vb_model_free(m);
    CHECK_EQ_INT(st1.n_cached_seqs, 1);
    CHECK_EQ_INT(st1.kv_blocks_used, 6);
    CHECKF(bad == 0, "%s", why);
    CHECK_EQ_INT(st2.kv_blocks_leaked, 0);
}

/* A request that the pool cannot hold alone (prompt + generated tokens) finishes as kv_full with
   the tokens it got, never as "length". */
TEST(sched_kv_full_is_not_length) {
    vb_model *m = sim_model();
    CHECK(m);
    case_req q[1];
    make_cases(q, 1, 0, 5);
    q[0].n_prompt = 20;
    q[0].n_predict = 64;
    vb_context *c = sim_ctx(m, 48, 1); /* 3 + 1 blocks: 64 rows */
    CHECK(c);
    vb_sched *s = NULL;
    CHECK_EQ_INT(vb_sched_init(c, NULL, &s, NULL, 0), VB_OK);
    vb_request_params rp = vb_request_default_params();
    rp.n_predict = q[0].n_predict;
    rp.stop_at_eos = false;
    vb_request_id id;
    CHECK_EQ_INT(vb_sched_submit(s, q[0].prompt, q[0].n_prompt, &rp, &id), VB_OK);
    for (int guard = 0; guard < 1000 && !vb_sched_idle(s); guard++) CHECK_EQ_INT(vb_sched_step(s), VB_OK);
    vb_token got[MAXN];
    int finish = 0;
    int32_t n = vb_sched_poll(s, id, got, MAXN, &finish);
    vb_sched_free(s);
    vb_context_free(c);
    vb_model_free(m);
    CHECK_EQ_INT(finish, VB_FINISH_KV);
    CHECK(n > 0 && n < 64);
}

/* One engine: lossless decoders (verify, WeDLM exact) running beside AR requests in the same
   forwards give every request exactly its tokens from AR alone, with chunked prefill, preemption
   in a tiny pool and prefix sharing (sched_draft_verify_exact covers accepted drafts). */
TEST(sched_mixed_decoders_equal_alone) {
    vb_model *m = sim_model();
    CHECK(m);
    enum { N = 9 };
    case_req q[N];
    make_cases(q, N, 32, 4242);
    for (int k = 0; k < N; k++) {
        q[k].sp = vb_sampler_default_params(); /* greedy: verify and exact equal AR greedy */
        q[k].decoder = k % 3 == 0 ? VB_DECODER_AR : k % 3 == 1 ? VB_DECODER_VERIFY : VB_DECODER_WEDLM;
        q[k].exact = q[k].decoder == VB_DECODER_WEDLM;
        CHECK_EQ_INT(reference(m, &q[k]), VB_OK);
    }
    static const int32_t pools[] = {1024, 160};
    for (int pi = 0; pi < 2; pi++) {
        vb_context *c = sim_ctx(m, pools[pi], 4);
        CHECK(c);
        vb_sched_params sp = vb_sched_default_params();
        sp.token_budget = 24;
        char why[256] = "";
        vb_sched_stats st;
        int bad = sched_round(c, &sp, q, N, 3, &st, NULL, why, sizeof why);
        CHECKF(bad == 0, "pool %d: %s", pools[pi], why);
        CHECK_EQ_INT(st.kv_blocks_leaked, 0);
        if (pi == 1) CHECK(st.n_preemptions > 0);
        if (pi == 0) CHECK(st.n_prefix_hits > 0);
    }
    vb_model_free(m);
}
