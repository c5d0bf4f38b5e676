/* token_mask.c - a grammar over a model's vocabulary (token_mask.h): the byte-sorted token
 * table, the per-state mask by a walk over it that reuses shared prefixes, the mask cache and
 * the advance by a committed token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "grammar/token_mask.h"
#include "model.h"

#define CACHE_ENTRIES 64
#define MAX_STATES 16384        /* interned states before the table is cleared */
#define MAX_TRANSITIONS (1 << 19) /* (the table is sized to the vocabulary, at most this) */

/* Interned matcher states (canonical stacks) and the memo of their byte transitions: walking
 * the token table steps (state id, byte) -> state id, so a state met again (the inside of a
 * JSON string returns to itself after every character) costs a hash lookup per byte. */
typedef struct interner {
    int32_t *data;      /* arena: the states' stack data back to back */
    int64_t n_data, cap_data;
    int64_t *off;       /* [cap] per state: data offset, length, complete flag, hash */
    int32_t *len;
    bool *complete;
    uint64_t *hash;
    int32_t n, cap;
    int32_t *slot;      /* [n_slot] state hash table: id + 1 (0 empty) */
    int32_t n_slot;
    uint64_t *tkey;     /* [n_tslot] transitions: (id << 8 | byte) + 1 (0 empty) */
    int32_t *tval;      /* next id, or -1: the byte is not allowed */
    int32_t n_tslot, n_trans;
} interner;

typedef struct mask_entry {
    uint64_t hash;
    int32_t *key;   /* [n_key] the canonical state */
    int32_t n_key;
    uint32_t *bits; /* [words] */
    bool only_eos;
    bool used;
} mask_entry;

/* The vocabulary as the grammar sees it: candidate tokens (non-empty bytes, not control) sorted
   by their bytes. Built once per model and kept in it (vb_model.token_table). */
struct vb_token_table {
    int32_t n_vocab;
    int32_t n_cand;
    int32_t *order;   /* [n_cand] token ids */
    uint32_t *off;    /* [n_vocab + 1] bytes of token t: bytes[off[t] .. off[t+1]) */
    uint8_t *bytes;
    int32_t *lcp;     /* [n_cand] common prefix length with the previous candidate */
    int32_t max_len;
};

struct vb_grammar_run {
    vb_grammar *g;
    int32_t n_vocab, words;
    vb_token eos;
    /* the model's token table (not owned; aliases of its arrays) */
    int32_t n_cand;
    const int32_t *order;
    const uint32_t *off;
    const uint8_t *bytes;
    const int32_t *lcp;
    int32_t max_len;
    vb_gstate cur;    /* the current state (canonical) */
    interner in;
    int32_t *ids;     /* [max_len + 1] interned states after each prefix length (mask walk) */
    vb_gstate *depth; /* [max_len + 1] states after each prefix length (mask walk) */
    vb_gstate tmp;
    bool finished;    /* EOS accepted */
    bool no_memo;     /* tests: never use the interner */
    mask_entry cache[CACHE_ENTRIES];
    int32_t next_victim;
    const mask_entry *last; /* the last mask returned */
    int64_t n_computed, n_cached;
};

/* Sort entry: the token's first 8 bytes big-endian (zero padded; shorter sorts first on a tie
   through the full comparison), then its id. */
typedef struct sort_key {
    uint64_t prefix;
    int32_t id;
} sort_key;

/* Order of candidate tokens: by bytes, then by id. */
static int cmp_tokens(const void *a, const void *b, void *ctx) {
    const vb_token_table *r = ctx;
    const sort_key *ka = a, *kb = b;
    if (ka->prefix != kb->prefix) return ka->prefix < kb->prefix ? -1 : 1;
    int32_t x = ka->id, y = kb->id;
    uint32_t lx = r->off[x + 1] - r->off[x], ly = r->off[y + 1] - r->off[y];
    int c = memcmp(r->bytes + r->off[x], r->bytes + r->off[y], lx < ly ? lx : ly);
    if (c != 0) return c;
    return lx < ly ? -1 : lx > ly ? 1 : (x < y ? -1 : x > y);
}

void vb_grammar_run_free(vb_grammar_run *r) {
    if (!r) return;
    vb_grammar_free(r->g);
    vb_gstate_free(&r->cur);
    vb_gstate_free(&r->tmp);
    free(r->in.data);
    free(r->in.off);
    free(r->in.len);
    free(r->in.complete);
    free(r->in.hash);
    free(r->in.slot);
    free(r->in.tkey);
    free(r->in.tval);
    free(r->ids);
    if (r->depth)
        for (int32_t i = 0; i <= r->max_len; i++) vb_gstate_free(&r->depth[i]);
    free(r->depth);
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        free(r->cache[i].key);
        free(r->cache[i].bits);
    }
    free(r);
}

void vb_token_table_free(vb_token_table *t) {
    if (!t) return;
    free(t->order);
    free(t->off);
    free(t->bytes);
    free(t->lcp);
    free(t);
}

static vb_token_table *table_build(const vb_model *model) {
    vb_token_table *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_vocab = model->info.n_vocab;
    r->off = malloc(sizeof(uint32_t) * ((size_t)r->n_vocab + 1));
    r->order = malloc(sizeof(int32_t) * (size_t)r->n_vocab + 1);
    r->lcp = malloc(sizeof(int32_t) * (size_t)r->n_vocab + 1);
    size_t total = 0;
    sort_key *keys = NULL;
    if (!r->off || !r->order || !r->lcp) goto fail;
    for (vb_token t = 0; t < r->n_vocab; t++) {
        int n = vb_tokenizer_token_bytes(model->tok, t, NULL, 0);
        if (n < 0 || vb_tokenizer_is_control(model->tok, t)) n = 0;
        total += (size_t)n;
    }
    if (total > UINT32_MAX / 2) goto fail;
    r->bytes = malloc(total + 1);
    if (!r->bytes) goto fail;
    uint32_t o = 0;
    for (vb_token t = 0; t < r->n_vocab; t++) {
        r->off[t] = o;
        int n = vb_tokenizer_token_bytes(model->tok, t, NULL, 0);
        if (n <= 0 || vb_tokenizer_is_control(model->tok, t) || o + (size_t)n > total) continue;
        vb_tokenizer_token_bytes(model->tok, t, (char *)r->bytes + o, (size_t)n);
        o += (uint32_t)n;
        r->order[r->n_cand++] = t;
        if (n > r->max_len) r->max_len = n;
    }
    r->off[r->n_vocab] = o;
    keys = malloc(sizeof *keys * (size_t)(r->n_cand ? r->n_cand : 1));
    if (!keys) goto fail;
    for (int32_t i = 0; i < r->n_cand; i++) {
        vb_token t = r->order[i];
        uint32_t n = r->off[t + 1] - r->off[t];
        uint64_t k = 0;
        for (uint32_t j = 0; j < 8; j++) k = k << 8 | (j < n ? r->bytes[r->off[t] + j] : 0);
        keys[i] = (sort_key){k, t};
    }
    qsort_r(keys, (size_t)r->n_cand, sizeof *keys, cmp_tokens, r);
    for (int32_t i = 0; i < r->n_cand; i++) r->order[i] = keys[i].id;
    free(keys);
    for (int32_t i = 0; i < r->n_cand; i++) {
        int32_t l = 0;
        if (i > 0) {
            int32_t x = r->order[i - 1], y = r->order[i];
            int32_t lx = (int32_t)(r->off[x + 1] - r->off[x]), ly = (int32_t)(r->off[y + 1] - r->off[y]);
            while (l < lx && l < ly && r->bytes[r->off[x] + l] == r->bytes[r->off[y] + l]) l++;
        }
        r->lcp[i] = l;
    }
    return r;
fail:
    vb_token_table_free(r);
    return NULL;
}

/* The model's token table, built on first use and kept in the model (a compare-and-swap
   publishes it: concurrent first uses build twice and keep one). */
static const vb_token_table *table_for(const vb_model *model) {
    vb_model *m = (vb_model *)model; /* the table is a cache, not part of the model's value */
    vb_token_table *t = __atomic_load_n(&m->token_table, __ATOMIC_ACQUIRE);
    if (t) return t;
    vb_token_table *mine = table_build(model);
    if (!mine) return NULL;
    vb_token_table *expected = NULL;
    if (__atomic_compare_exchange_n(&m->token_table, &expected, mine, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return mine;
    vb_token_table_free(mine);
    return expected;
}

int vb_grammar_run_init(const vb_grammar *g, const vb_model *model, vb_grammar_run **out,
                        char *err, size_t err_len) {
    *out = NULL;
    if (!g || !model) return VB_ERR_ARG;
    if (!model->tok) {
        snprintf(err, err_len, "grammar: the model has no tokenizer");
        return VB_ERR_UNSUPPORTED;
    }
    vb_grammar_run *r = calloc(1, sizeof *r);
    if (!r) return VB_ERR_NOMEM;
    int rc = VB_ERR_NOMEM;
    r->g = vb_grammar_clone(g);
    r->n_vocab = model->info.n_vocab;
    r->words = (r->n_vocab + 31) / 32;
    r->eos = model->info.eos;
    const vb_token_table *t = table_for(model);
    if (!r->g || !t) goto fail;
    r->n_cand = t->n_cand;
    r->order = t->order;
    r->off = t->off;
    r->bytes = t->bytes;
    r->lcp = t->lcp;
    r->max_len = t->max_len;
    r->depth = calloc((size_t)r->max_len + 1, sizeof *r->depth);
    r->ids = calloc((size_t)r->max_len + 1, sizeof *r->ids);
    if (!r->depth || !r->ids) goto fail;
    rc = vb_gstate_init(r->g, &r->cur);
    if (rc != VB_OK) {
        if (rc == VB_ERR_STATE) snprintf(err, err_len, "grammar: too ambiguous (over %d stacks)", GR_MAX_STACKS);
        goto fail;
    }
    vb_gstate_canonical(&r->cur);
    *out = r;
    return VB_OK;
fail:
    if (rc == VB_ERR_NOMEM) snprintf(err, err_len, "grammar: out of memory");
    vb_grammar_run_free(r);
    return rc;
}

static uint64_t state_hash(const vb_gstate *s) {
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i < s->n_data; i++) {
        h ^= (uint32_t)s->data[i];
        h *= 1099511628211ull;
    }
    return h;
}


/* ---- interner ---- */

static void interner_clear(interner *in) {
    in->n = 0;
    in->n_data = 0;
    in->n_trans = 0;
    if (in->slot) memset(in->slot, 0, sizeof(int32_t) * (size_t)in->n_slot);
    if (in->tkey) memset(in->tkey, 0, sizeof(uint64_t) * (size_t)in->n_tslot);
}

static int interner_alloc(interner *in, int32_t n_cand) {
    if (in->slot) return VB_OK;
    in->cap = MAX_STATES;
    in->n_slot = 2 * MAX_STATES;
    in->n_tslot = 8192; /* about 4 transitions per candidate token, at most 2 MAX_TRANSITIONS */
    while (in->n_tslot < 8 * n_cand && in->n_tslot < 2 * MAX_TRANSITIONS) in->n_tslot *= 2;
    in->off = malloc(sizeof(int64_t) * (size_t)in->cap);
    in->len = malloc(sizeof(int32_t) * (size_t)in->cap);
    in->complete = malloc(sizeof(bool) * (size_t)in->cap);
    in->hash = malloc(sizeof(uint64_t) * (size_t)in->cap);
    in->slot = calloc((size_t)in->n_slot, sizeof(int32_t));
    in->tkey = calloc((size_t)in->n_tslot, sizeof(uint64_t));
    in->tval = malloc(sizeof(int32_t) * (size_t)in->n_tslot);
    return in->off && in->len && in->complete && in->hash && in->slot && in->tkey && in->tval ? VB_OK
                                                                                               : VB_ERR_NOMEM;
}

/* The id of canonical state s (added if new). VB_ERR_STATE: the table is full. */
static int32_t intern(interner *in, const vb_gstate *s) {
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i < s->n_data; i++) h = (h ^ (uint32_t)s->data[i]) * 1099511628211ull;
    uint32_t mask = (uint32_t)in->n_slot - 1, i = (uint32_t)h & mask;
    for (; in->slot[i]; i = (i + 1) & mask) {
        int32_t id = in->slot[i] - 1;
        if (in->hash[id] == h && in->len[id] == s->n_data &&
            memcmp(in->data + in->off[id], s->data, sizeof(int32_t) * (size_t)s->n_data) == 0)
            return id;
    }
    if (in->n >= in->cap) return VB_ERR_STATE;
    if (in->n_data + s->n_data > in->cap_data) {
        int64_t cap = in->cap_data ? in->cap_data : 4096;
        while (cap < in->n_data + s->n_data) cap *= 2;
        if (cap > (int64_t)1 << 26) return VB_ERR_STATE; /* 256 MiB of stacks: start over */
        int32_t *d = realloc(in->data, sizeof(int32_t) * (size_t)cap);
        if (!d) return VB_ERR_NOMEM;
        in->data = d;
        in->cap_data = cap;
    }
    int32_t id = in->n++;
    in->off[id] = in->n_data;
    in->len[id] = s->n_data;
    in->hash[id] = h;
    in->complete[id] = vb_gstate_complete(s);
    if (s->n_data) memcpy(in->data + in->n_data, s->data, sizeof(int32_t) * (size_t)s->n_data);
    in->n_data += s->n_data;
    in->slot[i] = id + 1;
    return id;
}

/* The state after byte b from state id: its id, -1 (b not allowed) or a status < -1. */
static int32_t step(vb_grammar_run *r, int32_t id, uint8_t b) {
    interner *in = &r->in;
    uint64_t key = ((uint64_t)id << 8 | b) + 1;
    uint32_t mask = (uint32_t)in->n_tslot - 1, i = (uint32_t)(key * 0x9E3779B97F4A7C15ull >> 32) & mask;
    for (; in->tkey[i]; i = (i + 1) & mask)
        if (in->tkey[i] == key) return in->tval[i];
    if (in->n_trans >= in->n_tslot / 2) return VB_ERR_STATE;
    /* materialise the state, advance it, intern the result */
    vb_gstate *src = &r->tmp;
    src->n_data = 0;
    src->n_stacks = 0;
    src->overflow = false;
    src->hlive = false;
    if (src->cap < in->len[id]) {
        int32_t *d = realloc(src->data, sizeof(int32_t) * (size_t)in->len[id]);
        if (!d) return VB_ERR_NOMEM;
        src->data = d;
        src->cap = in->len[id];
    }
    if (in->len[id]) memcpy(src->data, in->data + in->off[id], sizeof(int32_t) * (size_t)in->len[id]);
    src->n_data = in->len[id];
    for (int32_t o = 0; o < src->n_data; o += src->data[o] + 1) src->n_stacks++;
    vb_gstate *dst = &r->depth[0];
    int rc = vb_gstate_accept(r->g, src, b, dst);
    if (rc != VB_OK) return rc < -1 ? rc : VB_ERR_STATE;
    int32_t next = -1;
    if (dst->n_stacks > 0) {
        vb_gstate_canonical(dst);
        next = intern(in, dst);
        if (next < 0) return next;
    }
    in->tkey[i] = key;
    in->tval[i] = next;
    in->n_trans++;
    return next;
}

/* compute_mask through the interner; VB_ERR_STATE when its tables fill up (then the caller
   clears them and retries, or computes without them). */
static int compute_mask_memo(vb_grammar_run *r, mask_entry *e) {
    int rc = interner_alloc(&r->in, r->n_cand);
    if (rc != VB_OK) return rc;
    int32_t cur = intern(&r->in, &r->cur);
    if (cur < 0) return cur;
    memset(e->bits, 0, sizeof(uint32_t) * (size_t)r->words);
    r->ids[0] = cur;
    int32_t computed = 0, dead = INT32_MAX;
    bool any = false;
    for (int32_t i = 0; i < r->n_cand; i++) {
        vb_token t = r->order[i];
        int32_t l = r->lcp[i];
        if (l >= dead) continue;
        dead = INT32_MAX;
        int32_t len = (int32_t)(r->off[t + 1] - r->off[t]);
        const uint8_t *b = r->bytes + r->off[t];
        int32_t d = l < computed ? l : computed;
        while (d < len) {
            int32_t next = step(r, r->ids[d], b[d]);
            if (next < -1) return next;
            d++;
            if (next < 0) {
                dead = d;
                break;
            }
            r->ids[d] = next;
        }
        computed = d;
        if (dead == INT32_MAX) {
            e->bits[t >> 5] |= 1u << (t & 31);
            any = true;
        }
    }
    e->only_eos = !any;
    if (r->eos >= 0 && r->eos < r->n_vocab && r->in.complete[cur]) e->bits[r->eos >> 5] |= 1u << (r->eos & 31);
    return VB_OK;
}

/* Compute the mask of r->cur into e->bits without the interner (its tables too small for this
   grammar). */
static int compute_mask_plain(vb_grammar_run *r, mask_entry *e) {
    memset(e->bits, 0, sizeof(uint32_t) * (size_t)r->words);
    if (r->finished) {
        e->only_eos = true;
        return VB_OK;
    }
    int rc = vb_gstate_copy(&r->depth[0], &r->cur);
    if (rc != VB_OK) return rc;
    int32_t computed = 0, dead = INT32_MAX;
    bool any = false;
    for (int32_t i = 0; i < r->n_cand; i++) {
        vb_token t = r->order[i];
        int32_t l = r->lcp[i];
        if (l >= dead) continue; /* starts with a prefix the grammar rejects */
        dead = INT32_MAX;
        int32_t len = (int32_t)(r->off[t + 1] - r->off[t]);
        const uint8_t *b = r->bytes + r->off[t];
        int32_t d = l < computed ? l : computed;
        while (d < len) {
            rc = vb_gstate_accept(r->g, &r->depth[d], b[d], &r->depth[d + 1]);
            if (rc != VB_OK) return rc;
            d++;
            if (r->depth[d].n_stacks == 0) {
                dead = d;
                break;
            }
        }
        computed = d;
        if (dead == INT32_MAX) {
            e->bits[t >> 5] |= 1u << (t & 31);
            any = true;
        }
    }
    e->only_eos = !any;
    if (r->eos >= 0 && r->eos < r->n_vocab && vb_gstate_complete(&r->cur))
        e->bits[r->eos >> 5] |= 1u << (r->eos & 31);
    return VB_OK;
}

const uint32_t *vb_grammar_run_mask(vb_grammar_run *r) {
    uint64_t h = r->finished ? 0 : state_hash(&r->cur);
    int32_t nk = r->finished ? -1 : r->cur.n_data;
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        mask_entry *e = &r->cache[i];
        if (e->used && e->hash == h && e->n_key == nk &&
            (nk <= 0 || memcmp(e->key, r->cur.data, sizeof(int32_t) * (size_t)nk) == 0)) {
            r->n_cached++;
            r->last = e;
            return e->bits;
        }
    }
    mask_entry *e = &r->cache[r->next_victim];
    r->next_victim = (r->next_victim + 1) % CACHE_ENTRIES;
    e->used = false;
    if (!e->bits && !(e->bits = malloc(sizeof(uint32_t) * (size_t)r->words))) return NULL;
    int32_t *key = realloc(e->key, sizeof(int32_t) * (size_t)(nk > 0 ? nk : 1));
    if (!key) return NULL;
    e->key = key;
    if (nk > 0) memcpy(e->key, r->cur.data, sizeof(int32_t) * (size_t)nk);
    e->n_key = nk;
    e->hash = h;
    int rc = VB_ERR_STATE;
    if (!r->finished && !r->no_memo) {
        rc = compute_mask_memo(r, e);
        if (rc == VB_ERR_STATE) { /* tables full: start them over once */
            interner_clear(&r->in);
            rc = compute_mask_memo(r, e);
        }
    }
    if (rc == VB_ERR_STATE || r->finished) rc = compute_mask_plain(r, e);
    if (rc != VB_OK) return NULL;
    e->used = true;
    r->n_computed++;
    r->last = e;
    return e->bits;
}

bool vb_grammar_run_only_eos(const vb_grammar_run *r) { return r->last && r->last->only_eos; }

int vb_grammar_run_accept(vb_grammar_run *r, vb_token token) {
    if (token < 0 || token >= r->n_vocab || r->finished) return VB_ERR_ARG;
    r->last = NULL;
    if (token == r->eos) {
        if (!vb_gstate_complete(&r->cur)) return VB_ERR_ARG;
        r->finished = true;
        return VB_OK;
    }
    int32_t len = (int32_t)(r->off[token + 1] - r->off[token]);
    if (len == 0) return VB_ERR_ARG; /* control or empty tokens are never grammar text */
    int rc = vb_gstate_copy(&r->tmp, &r->cur);
    for (int32_t i = 0; i < len && rc == VB_OK; i++) {
        rc = vb_gstate_accept(r->g, &r->tmp, r->bytes[r->off[token] + i], &r->depth[0]);
        if (rc == VB_OK) rc = vb_gstate_copy(&r->tmp, &r->depth[0]);
        if (rc == VB_OK && r->tmp.n_stacks == 0) rc = VB_ERR_ARG;
    }
    if (rc != VB_OK) return rc;
    vb_gstate_canonical(&r->tmp);
    vb_gstate swap = r->cur;
    r->cur = r->tmp;
    r->tmp = swap;
    return VB_OK;
}

bool vb_grammar_run_complete(const vb_grammar_run *r) {
    return r->finished || vb_gstate_complete(&r->cur);
}

bool vb_grammar_run_finished(const vb_grammar_run *r) { return r->finished; }

void vb_grammar_run_no_memo(vb_grammar_run *r) { r->no_memo = true; }

void vb_grammar_run_counts(const vb_grammar_run *r, int64_t *computed, int64_t *cached) {
    if (computed) *computed = r->n_computed;
    if (cached) *cached = r->n_cached;
}
