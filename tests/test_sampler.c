/* test_sampler.c - sampling: greedy, seeded reproducibility, and empirical frequencies of
 * temperature / top-k / top-p / min-p sampling against the exact distributions computed here
 * independently in double precision; logit_bias and presence / frequency / repetition
 * penalties against OpenAI's published formula (logit - count * frequency - [count > 0] *
 * presence) computed here from a count table. */
#include <math.h>
#include <stdlib.h>

#include "test.h"
#include "vibee.h"

TEST(sampler_greedy_and_banned) {
    vb_sampler_params p = vb_sampler_default_params();
    vb_sampler *s = vb_sampler_init(&p);
    CHECK(s);
    float l[5] = {0.1f, 3.0f, -1.0f, 3.0f, NAN};
    CHECK_EQ_INT(vb_sampler_sample(s, l, 5, NULL, 0, -1), 1); /* first maximum */
    CHECK_EQ_INT(vb_sampler_sample(s, l, 5, NULL, 0, 1), 3);
    vb_token hist[1] = {1};
    p.repeat_penalty = 2.0f;
    vb_sampler *r = vb_sampler_init(&p);
    CHECK_EQ_INT(vb_sampler_sample(r, l, 5, hist, 1, -1), 3);
    CHECK_EQ_INT(vb_sampler_sample(s, NULL, 5, NULL, 0, -1), VB_ERR_ARG);
    /* the greedy fast path (no penalty) and the general path (penalty 1 with no history is
       the fast path; a penalty with history the general one) agree on random rows with ties,
       NaN and -inf entries, and a banned token */
    uint64_t seed = 99;
    float row[300];
    vb_token none[1] = {299};
    for (int it = 0; it < 200; it++) {
        for (int v = 0; v < 300; v++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int k = (int)(seed >> 58);
            row[v] = k == 0 ? NAN : k == 1 ? -INFINITY : (float)((seed >> 40) % 50);
        }
        vb_token banned = (vb_token)(it % 7 == 0 ? -1 : (it * 37) % 300);
        float rp = 1.0f;
        vb_sampler_params q = vb_sampler_default_params();
        q.repeat_penalty = rp + 1.0f; /* general path, but the history token has logit -inf */
        row[299] = -INFINITY;
        vb_sampler *g = vb_sampler_init(&q);
        vb_token fast = vb_sampler_sample(s, row, 300, NULL, 0, banned);
        vb_token slow = vb_sampler_sample(g, row, 300, none, 1, banned);
        CHECKF(fast == slow, "row %d: fast %d vs general %d", it, fast, slow);
        vb_sampler_free(g);
    }
    vb_sampler_free(s);
    vb_sampler_free(r);
    p = vb_sampler_default_params();
    p.top_p = 0.0f;
    CHECK(vb_sampler_init(&p) == NULL);
}

/* exact distribution after temperature, top-k, top-p, min-p (llama.cpp order of truncations) */
static void exact_probs(const float *l, int n, float temp, int top_k, float top_p, float min_p, double *out) {
    int idx[16];
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (l[idx[j]] > l[idx[i]]) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
    int m = top_k > 0 && top_k < n ? top_k : n;
    double z = 0, p[16];
    for (int i = 0; i < m; i++) z += exp((l[idx[i]] - l[idx[0]]) / temp);
    for (int i = 0; i < m; i++) p[i] = exp((l[idx[i]] - l[idx[0]]) / temp) / z;
    double acc = 0;
    for (int i = 0; i < m; i++) { acc += p[i]; if (acc >= top_p) { m = i + 1; break; } }
    int k = 1;
    while (k < m && p[k] >= min_p * p[0]) k++;
    m = k;
    double t = 0;
    for (int i = 0; i < m; i++) t += p[i];
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int i = 0; i < m; i++) out[idx[i]] = p[i] / t;
}

TEST(sampler_frequencies_match_exact_distribution) {
    float l[8] = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.7f, 0.0f, 2.2f};
    struct { float temp; int k; float top_p, min_p; } cfg[] = {
        {1.0f, 0, 1.0f, 0.0f}, {0.7f, 3, 1.0f, 0.0f}, {1.3f, 0, 0.8f, 0.0f}, {1.0f, 0, 1.0f, 0.3f}};
    for (int c = 0; c < 4; c++) {
        vb_sampler_params p = vb_sampler_default_params();
        p.temp = cfg[c].temp, p.top_k = cfg[c].k, p.top_p = cfg[c].top_p, p.min_p = cfg[c].min_p;
        p.seed = 1000 + (uint64_t)c;
        vb_sampler *s = vb_sampler_init(&p);
        CHECK(s);
        double ex[8];
        exact_probs(l, 8, p.temp, p.top_k, p.top_p, p.min_p, ex);
        int cnt[8] = {0};
        const int N = 200000;
        for (int i = 0; i < N; i++) {
            vb_token t = vb_sampler_sample(s, l, 8, NULL, 0, -1);
            CHECK(t >= 0 && t < 8);
            cnt[t]++;
        }
        for (int v = 0; v < 8; v++) {
            double f = (double)cnt[v] / N, sd = sqrt(ex[v] * (1 - ex[v]) / N) + 1e-9;
            CHECKF(fabs(f - ex[v]) < 5 * sd + 1e-4, "cfg %d token %d: freq %.5f vs exact %.5f", c, v, f, ex[v]);
        }
        vb_sampler_free(s);
    }
}

TEST(sampler_seed_reproducible) {
    float l[6] = {0.5f, 0.4f, 0.3f, 0.2f, 0.1f, 0.0f};
    vb_sampler_params p = vb_sampler_default_params();
    p.temp = 1.0f;
    p.seed = 7;
    vb_sampler *a = vb_sampler_init(&p), *b = vb_sampler_init(&p);
    p.seed = 8;
    vb_sampler *c = vb_sampler_init(&p);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        vb_token x = vb_sampler_sample(a, l, 6, NULL, 0, -1), y = vb_sampler_sample(b, l, 6, NULL, 0, -1);
        CHECK_EQ_INT(x, y);
        differ += x != vb_sampler_sample(c, l, 6, NULL, 0, -1);
    }
    CHECK(differ > 50);
    vb_sampler_free(a);
    vb_sampler_free(b);
    vb_sampler_free(c);
}

/* The adjusted logits by the documented formulas: bias, then per distinct token of the last
   `last_n` history entries: repeat penalty (divide if > 0, else multiply), then
   - count * freq - presence. Counted with a table, not the sampler's pairwise scan. */
static void penalised_ref(const float *l, int V, const vb_token *h, int nh, int last_n, float rep, float pres,
                          float freq, const vb_logit_bias *b, int nb, double *out) {
    int cnt[64] = {0};
    for (int v = 0; v < V; v++) out[v] = l[v];
    for (int i = 0; i < nb; i++) out[b[i].token] += b[i].bias;
    for (int i = nh > last_n ? nh - last_n : 0; i < nh && last_n > 0; i++) cnt[h[i]]++;
    for (int v = 0; v < V; v++) {
        if (!cnt[v]) continue;
        out[v] = out[v] > 0 ? out[v] / rep : out[v] * rep;
        out[v] -= cnt[v] * (double)freq + pres;
    }
}

TEST(sampler_bias_and_penalties_greedy) {
    enum { V = 40 };
    srand(1234);
    int changed = 0;
    for (int c = 0; c < 2000; c++) {
        float l[V];
        vb_token h[120];
        vb_logit_bias b[4];
        for (int v = 0; v < V; v++) l[v] = (float)(rand() % 2000 - 1000) / 250.0f;
        int nh = rand() % 120, nb = rand() % 4;
        for (int i = 0; i < nh; i++) h[i] = rand() % 12; /* few distinct tokens: repeats */
        for (int i = 0; i < nb; i++) b[i] = (vb_logit_bias){rand() % V, (float)(rand() % 400 - 200) / 20.0f};
        vb_sampler_params p = vb_sampler_default_params();
        p.repeat_last_n = rand() % 80;
        p.repeat_penalty = c % 3 ? 1.0f : 1.0f + (float)(rand() % 100) / 100.0f;
        p.presence_penalty = (float)(rand() % 400 - 200) / 100.0f;
        p.frequency_penalty = (float)(rand() % 400 - 200) / 100.0f;
        p.logit_bias = b;
        p.n_logit_bias = nb;
        vb_sampler *s = vb_sampler_init(&p);
        CHECK(s != NULL);
        double ref[V];
        penalised_ref(l, V, h, nh, p.repeat_last_n, p.repeat_penalty, p.presence_penalty, p.frequency_penalty, b, nb,
                      ref);
        int best = 0, plain = 0;
        for (int v = 1; v < V; v++) {
            if (ref[v] > ref[best]) best = v;
            if (l[v] > l[plain]) plain = v;
        }
        /* skip near ties, where float vs double rounding may pick either */
        bool tie = false;
        for (int v = 0; v < V; v++) tie |= v != best && fabs(ref[v] - ref[best]) < 1e-4;
        vb_token t = vb_sampler_sample(s, l, V, h, nh, -1);
        vb_sampler_free(s);
        if (tie) continue;
        changed += best != plain;
        CHECKF(t == best, "case %d: sampled %d, formula gives %d", c, t, best);
    }
    CHECKF(changed > 200, "only %d cases where bias/penalties changed the argmax", changed);
    /* invalid values are refused */
    vb_sampler_params p = vb_sampler_default_params();
    p.presence_penalty = NAN;
    CHECK(vb_sampler_init(&p) == NULL);
    p = vb_sampler_default_params();
    p.n_logit_bias = 1;
    CHECK(vb_sampler_init(&p) == NULL);
}

/* Sampled frequencies with temperature 0.8 equal softmax of the formula's logits; the bias
   array is copied (changing it after init has no effect). */
TEST(sampler_bias_and_penalties_distribution) {
    enum { V = 6, N = 60000 };
    float l[V] = {1.0f, 0.8f, 0.5f, 0.2f, -0.3f, 0.0f};
    vb_token h[7] = {0, 0, 0, 1, 2, 2, 5};
    vb_logit_bias b[2] = {{3, 1.5f}, {4, -100.0f}};
    vb_sampler_params p = vb_sampler_default_params();
    p.temp = 0.8f;
    p.seed = 99;
    p.presence_penalty = 0.4f;
    p.frequency_penalty = 0.3f;
    p.logit_bias = b;
    p.n_logit_bias = 2;
    vb_sampler *s = vb_sampler_init(&p);
    CHECK(s != NULL);
    double ref[V], ex[V], sum = 0;
    penalised_ref(l, V, h, 7, 64, 1.0f, 0.4f, 0.3f, b, 2, ref);
    b[0].bias = -50.0f; /* after init: must not matter (copied) */
    for (int v = 0; v < V; v++) sum += ex[v] = exp(ref[v] / 0.8);
    for (int v = 0; v < V; v++) ex[v] /= sum;
    int cnt[V] = {0};
    for (int i = 0; i < N; i++) {
        vb_token t = vb_sampler_sample(s, l, V, h, 7, -1);
        CHECK(t >= 0 && t < V);
        cnt[t]++;
    }
    vb_sampler_free(s);
    CHECK_EQ_INT(cnt[4], 0); /* -100 bans */
    for (int v = 0; v < V; v++) {
        double f = (double)cnt[v] / N, sd = sqrt(ex[v] * (1 - ex[v]) / N) + 1e-9;
        CHECKF(fabs(f - ex[v]) < 5 * sd + 1e-4, "token %d: freq %.5f vs exact %.5f", v, f, ex[v]);
    }
}
