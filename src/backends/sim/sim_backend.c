/* sim_backend.c - the simulated backend "sim": a deterministic pseudo language model that obeys
 * the full forward semantics of DESIGN §3, so decoders and schedulers can be tested exactly
 * without weights.
 *
 * The language: an order-2 Markov chain over printable bytes, next(a, b) = hash(seed, a, b)
 * (a = token at p-1, b = token at p-2; positions < 0 read as a virtual start token). A row at
 * logical position p predicts position p+1, or p itself when its token is MASK (WeDLM's
 * convention). It sees exactly the KV rows physical causality allows (the cached rows of its
 * sequence and the batch rows of its sequence up to itself) and reads them by logical position
 * (non-MASK rows only). To predict position q it takes the nearest known pair (x[j], x[j-1]),
 * j < q, rolls the chain forward through unknown positions, and is confident in proportion:
 * logit of the predicted token = peak / (1 + number of unknown positions on the way). On top,
 * every logit carries noise in [0, 0.5) seeded by an order-free hash of all visible (token,
 * position) rows, so any change in what a row can see changes its logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../backend.h"
#include "../../kv/kv_cache.h"
#include "../../model.h"
#include "sim_model.h"

#define SIM_LOOKBACK 24 /* farthest known pair searched for */

typedef struct sim_state {
    vb_sim_params p;
    vb_kv_cache *kv;
    char *err;
    int32_t max_batch;
    vb_token *known;  /* [window] scratch: token by position offset, -1 unknown */
} sim_state;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* The chain's next token after (a = x[p-1], b = x[p-2]): a printable byte or '\n'. */
static vb_token sim_next(uint64_t seed, vb_token a, vb_token b) {
    uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ULL + (uint64_t)(uint32_t)a * 0x100000001b3ULL +
                       (uint64_t)(uint32_t)b);
    uint32_t k = (uint32_t)(h % 96);
    return k == 95 ? '\n' : (vb_token)(32 + k);
}

static double unit_noise(uint64_t h) { return (double)(mix64(h) >> 11) * (1.0 / 9007199254740992.0); }

static int sim_init(const vb_model *model, const vb_context_params *params, void **state, char *err) {
    if (model->owner != &vb_backend_sim || !model->native)
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "backend sim runs only the simulated model (-m sim), not %s", model->info.name);
    sim_state *s = calloc(1, sizeof *s);
    if (!s) return VB_ERR_NOMEM;
    s->p = *(const vb_sim_params *)model->native;
    s->err = err;
    s->max_batch = params->n_batch_max;
    int32_t n_ctx = params->n_ctx > 0 ? params->n_ctx : 4096;
    vb_kv_config kc = {0};
    kc.block_size = params->block_size;
    kc.n_blocks = vb_kvc_blocks_for_ctx(n_ctx, params->block_size, params->n_seq_max);
    kc.n_seq_max = params->n_seq_max;
    kc.kv_type = VB_KV_F32;
    int st = vb_kvc_create(&kc, &s->kv);
    if (st != VB_OK) {
        free(s);
        return vb_errf(err, st, "sim: cannot create the KV cache (%d blocks)", kc.n_blocks);
    }
    s->known = malloc((SIM_LOOKBACK + 2) * sizeof *s->known);
    if (!s->known) {
        vb_kvc_free(s->kv);
        free(s);
        return VB_ERR_NOMEM;
    }
    *state = s;
    return VB_OK;
}

static void sim_free(void *state) {
    sim_state *s = state;
    if (!s) return;
    vb_kvc_free(s->kv);
    free(s->known);
    free(s);
}

static vb_backend_caps sim_caps(void *state) {
    sim_state *s = state;
    vb_backend_caps c = {true, true, true, s->max_batch};
    return c;
}

/* Logits of the row `row` of seq (already appended) into out[n_vocab]. */
static void sim_row_logits(sim_state *s, vb_seq seq, int32_t row, float *out) {
    const int32_t V = s->p.n_vocab;
    const vb_token mask = V - 1, eos = V - 2;
    vb_token tok = vb_kvc_row_tok(s->kv, seq, row);
    vb_pos p = vb_kvc_row_pos(s->kv, seq, row);
    vb_pos q = tok == mask ? p : p + 1; /* position this row predicts */
    /* known[k] = token at position q-1-k (k = 0..SIM_LOOKBACK), from visible non-mask rows;
       when several rows share a position the latest visible one wins. */
    int32_t W = SIM_LOOKBACK + 1;
    for (int32_t k = 0; k < W; k++) s->known[k] = (q - 1 - k < 0) ? -2 : -1; /* -2 = start */
    uint64_t vis = 0;
    for (int32_t r = 0; r <= row; r++) {
        vb_token t = vb_kvc_row_tok(s->kv, seq, r);
        vb_pos rp = vb_kvc_row_pos(s->kv, seq, r);
        vis += mix64(((uint64_t)(uint32_t)t << 32) ^ (uint64_t)(uint32_t)rp ^ 0x5851f42d4c957f2dULL);
        int32_t k = q - 1 - rp;
        if (t != mask && k >= 0 && k < W) s->known[k] = t;
    }
    /* nearest known pair (x[q-1-k], x[q-2-k]); unknown count on the way = positions q-1..q-k
       that are not known */
    int32_t j = -1;
    for (int32_t k = 0; k + 1 < W; k++)
        if (s->known[k] != -1 && s->known[k + 1] != -1) { j = k; break; }
    float peak_eff = 0.0f;
    vb_token pred = -1;
    if (j >= 0) {
        vb_token a = s->known[j], b = s->known[j + 1]; /* x[q-1-j], x[q-2-j] */
        int unknown = 0;
        for (int32_t k = j - 1; k >= -1; k--) {         /* roll forward to position q */
            vb_token nx = sim_next(s->p.seed, a, b);
            if (k >= 0 && s->known[k] != -1) nx = s->known[k];
            else unknown++;
            b = a;
            a = nx;
        }
        pred = a;
        peak_eff = s->p.peak / (float)unknown; /* unknown >= 1: the target itself */
    }
    for (int32_t v = 0; v < V; v++)
        out[v] = (float)(0.5 * unit_noise(vis * 0x2545f4914f6cdd1dULL + (uint64_t)v));
    out[mask] -= 8.0f;
    out[eos] -= 4.0f;
    if (pred >= 0) out[pred] += peak_eff;
}

static int sim_forward(void *state, const vb_batch *b, float *logits) {
    sim_state *s = state;
    const int32_t V = s->p.n_vocab;
    int32_t *row_of = malloc((size_t)(b->n > 0 ? b->n : 1) * sizeof *row_of); /* [n] KV row */
    if (!row_of) return vb_errf(s->err, VB_ERR_NOMEM, "sim: out of memory");
    char msg[160];
    int st = vb_kvc_append_batch(s->kv, b, row_of, NULL, NULL, msg, sizeof msg);
    if (st != VB_OK) {
        free(row_of);
        return vb_errf(s->err, st, "sim: %s", msg);
    }
    int32_t k = 0;
    for (int32_t i = 0; i < b->n; i++)
        if (b->want_logits[i]) sim_row_logits(s, b->seq[i], row_of[i], logits + (size_t)(k++) * (size_t)V);
    free(row_of);
    return VB_OK;
}


static struct vb_kv_cache *sim_paged_kv(void *state) { return ((sim_state *)state)->kv; }

const vb_backend_ops vb_backend_sim = {
    .version = VB_BACKEND_VERSION,
    .name = "sim",
    .runs_gguf = false,
    .model_probe = vb_sim_model_probe,
    .model_load = vb_sim_model_load,
    .init = sim_init,
    .free = sim_free,
    .caps = sim_caps,
    .forward = sim_forward,
    .paged_kv = sim_paged_kv,
};
