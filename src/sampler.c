/* sampler.c - token sampling: logit bias, repetition / presence / frequency penalties, greedy,
 * temperature, top-k, top-p, min-p, with a seeded xoshiro256** generator, so a fixed seed
 * reproduces the same text. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vibee.h"

struct vb_sampler {
    vb_sampler_params p;
    uint64_t rng[4];
    int32_t cap;
    float *work;   /* [cap] adjusted logits */
    int32_t *idx;  /* [cap] candidate ids sorted by logit */
    vb_logit_bias *bias; /* [p.n_logit_bias] owned copy of p.logit_bias */
};

vb_sampler_params vb_sampler_default_params(void) {
    vb_sampler_params p = {0};
    p.temp = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 42;
    return p;
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

vb_sampler *vb_sampler_init(const vb_sampler_params *params) {
    vb_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = params ? *params : vb_sampler_default_params();
    if (!(s->p.temp >= 0.0f) || s->p.top_k < 0 || !(s->p.top_p > 0.0f && s->p.top_p <= 1.0f) ||
        !(s->p.min_p >= 0.0f && s->p.min_p < 1.0f) || !(s->p.repeat_penalty > 0.0f) ||
        s->p.repeat_last_n < 0 || !isfinite(s->p.presence_penalty) || !isfinite(s->p.frequency_penalty) ||
        s->p.n_logit_bias < 0 || (s->p.n_logit_bias > 0 && !s->p.logit_bias)) {
        free(s);
        return NULL;
    }
    if (s->p.n_logit_bias > 0) {
        s->bias = malloc((size_t)s->p.n_logit_bias * sizeof *s->bias);
        if (!s->bias) {
            free(s);
            return NULL;
        }
        memcpy(s->bias, s->p.logit_bias, (size_t)s->p.n_logit_bias * sizeof *s->bias);
        for (int32_t i = 0; i < s->p.n_logit_bias; i++)
            if (isnan(s->bias[i].bias)) {
                free(s->bias);
                free(s);
                return NULL;
            }
    }
    s->p.logit_bias = s->bias;
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix(&x);
    return s;
}

void vb_sampler_free(vb_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->idx);
    free(s->bias);
    free(s);
}

static int by_logit_desc(const void *a, const void *b, void *key) {
    const float *k = key;
    float x = k[*(const int32_t *)a], y = k[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

vb_token vb_sampler_sample(vb_sampler *s, const float *logits, int32_t n_vocab,
                           const vb_token *history, int32_t n_history, vb_token banned) {
    if (!s || !logits || n_vocab <= 0 || n_history < 0 || (n_history > 0 && !history)) return VB_ERR_ARG;
    if (n_vocab > s->cap) {
        float *w = realloc(s->work, (size_t)n_vocab * sizeof *w);
        if (w) s->work = w;
        int32_t *ix = realloc(s->idx, (size_t)n_vocab * sizeof *ix);
        if (ix) s->idx = ix;
        if (!w || !ix) return VB_ERR_NOMEM;
        s->cap = n_vocab;
    }
    bool penalties = n_history > 0 && s->p.repeat_last_n > 0 &&
                     (s->p.repeat_penalty != 1.0f || s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f);
    if (s->p.temp <= 0.0f && !penalties && s->p.n_logit_bias == 0) {
        /* greedy without a penalty: one pass, no copy (NaN counts as -inf, banned skipped) */
        int32_t best = -1;
        float best_l = -INFINITY;
        for (int32_t v = 0; v < n_vocab; v++)
            if (logits[v] > best_l && v != banned) { /* false for NaN */
                best_l = logits[v];
                best = v;
            }
        return best >= 0 ? best : 0; /* every logit -inf/NaN: token 0, as the general path */
    }
    float *w = s->work;
    memcpy(w, logits, (size_t)n_vocab * sizeof *w);
    for (int32_t v = 0; v < n_vocab; v++)
        if (isnan(w[v])) w[v] = -INFINITY;
    for (int32_t i = 0; i < s->p.n_logit_bias; i++) {
        vb_token t = s->bias[i].token;
        if (t >= 0 && t < n_vocab) w[t] += s->bias[i].bias;
    }
    if (penalties) {
        int32_t from = n_history > s->p.repeat_last_n ? n_history - s->p.repeat_last_n : 0;
        /* each distinct token of the window once (llama.cpp convention): divide (or multiply,
           below 0) by repeat_penalty, then subtract count * frequency + presence */
        for (int32_t i = from; i < n_history; i++) {
            vb_token t = history[i];
            if (t < 0 || t >= n_vocab) continue;
            bool seen = false;
            for (int32_t k = from; k < i && !seen; k++) seen = history[k] == t;
            if (seen) continue;
            int32_t count = 1;
            for (int32_t k = i + 1; k < n_history; k++) count += history[k] == t;
            if (s->p.repeat_penalty != 1.0f)
                w[t] = w[t] > 0 ? w[t] / s->p.repeat_penalty : w[t] * s->p.repeat_penalty;
            w[t] -= (float)count * s->p.frequency_penalty + s->p.presence_penalty;
        }
    }
    if (banned >= 0 && banned < n_vocab) w[banned] = -INFINITY;
    if (s->p.temp <= 0.0f) { /* greedy: first maximum */
        int32_t best = 0;
        for (int32_t v = 1; v < n_vocab; v++)
            if (w[v] > w[best]) best = v;
        return best;
    }
    /* candidates: top-k (or all), sorted by logit */
    int32_t n = n_vocab;
    for (int32_t v = 0; v < n_vocab; v++) s->idx[v] = v;
    qsort_r(s->idx, (size_t)n_vocab, sizeof *s->idx, by_logit_desc, w);
    if (s->p.top_k > 0 && s->p.top_k < n) n = s->p.top_k;
    /* softmax with temperature over the candidates (reuse w as probabilities) */
    float maxl = w[s->idx[0]];
    if (maxl == -INFINITY) return s->idx[0];
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        double e = exp((double)(w[s->idx[i]] - maxl) / s->p.temp);
        w[s->idx[i]] = (float)e;
        sum += e;
    }
    for (int32_t i = 0; i < n; i++) w[s->idx[i]] = (float)(w[s->idx[i]] / sum);
    if (s->p.top_p < 1.0f) { /* smallest prefix with mass >= top_p */
        double acc = 0;
        for (int32_t i = 0; i < n; i++) {
            acc += w[s->idx[i]];
            if (acc >= s->p.top_p) { n = i + 1; break; }
        }
    }
    if (s->p.min_p > 0.0f) {
        float thr = s->p.min_p * w[s->idx[0]];
        int32_t m = 1;
        while (m < n && w[s->idx[m]] >= thr) m++;
        n = m;
    }
    double total = 0;
    for (int32_t i = 0; i < n; i++) total += w[s->idx[i]];
    double r = next_unit(s->rng) * total;
    for (int32_t i = 0; i < n; i++) {
        r -= w[s->idx[i]];
        if (r < 0) return s->idx[i];
    }
    return s->idx[n - 1];
}
