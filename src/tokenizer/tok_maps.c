/* tok_maps.c - the tokenizer's two hash maps: token text -> id (open addressing over the token
 * arena, FNV-1a) and merge pair (left id, right id) -> (rank, merged id). */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n && c < (1u << 30)) c <<= 1;
    return c;
}

int vb_tok_strmap_init(vb_tok_strmap *m, const vb_tokenizer *t) {
    m->cap = pow2_at_least((uint64_t)t->n_vocab * 2 + 1);
    m->slots = malloc((size_t)m->cap * sizeof *m->slots);
    if (!m->slots) return VB_ERR_NOMEM;
    memset(m->slots, 0xff, (size_t)m->cap * sizeof *m->slots); /* all -1 */
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *s = vb_tok_text(t, id, &len);
        uint32_t i = hash_bytes(s, len) & (m->cap - 1);
        bool dup = false;
        while (m->slots[i] >= 0) {
            size_t l2;
            const char *s2 = vb_tok_text(t, m->slots[i], &l2);
            if (l2 == len && memcmp(s, s2, len) == 0) {
                dup = true; /* the first id keeps the text */
                break;
            }
            i = (i + 1) & (m->cap - 1);
        }
        if (!dup) m->slots[i] = id;
    }
    return VB_OK;
}

void vb_tok_strmap_free(vb_tok_strmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

int32_t vb_tok_find(const vb_tokenizer *t, const char *s, size_t len) {
    const vb_tok_strmap *m = &t->vocab;
    if (!m->slots) return -1;
    uint32_t i = hash_bytes(s, len) & (m->cap - 1);
    while (m->slots[i] >= 0) {
        size_t l2;
        const char *s2 = vb_tok_text(t, m->slots[i], &l2);
        if (l2 == len && memcmp(s, s2, len) == 0) return m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

static uint32_t hash_pair(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ull;
    key ^= key >> 33;
    return (uint32_t)key;
}

int vb_tok_pairmap_init(vb_tok_pairmap *m, int64_t n_expected) {
    m->cap = pow2_at_least((uint64_t)(n_expected > 0 ? n_expected : 1) * 2 + 1);
    m->keys = calloc(m->cap, sizeof *m->keys);
    m->rank = malloc((size_t)m->cap * sizeof *m->rank);
    m->result = malloc((size_t)m->cap * sizeof *m->result);
    if (!m->keys || !m->rank || !m->result) {
        vb_tok_pairmap_free(m);
        return VB_ERR_NOMEM;
    }
    return VB_OK;
}

void vb_tok_pairmap_free(vb_tok_pairmap *m) {
    free(m->keys);
    free(m->rank);
    free(m->result);
    memset(m, 0, sizeof *m);
}

void vb_tok_pairmap_add(vb_tok_pairmap *m, int32_t left, int32_t right, int32_t rank,
                        int32_t result) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint32_t i = hash_pair(key) & (m->cap - 1);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) return;
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->rank[i] = rank;
    m->result[i] = result;
}

int32_t vb_tok_pairmap_get(const vb_tok_pairmap *m, int32_t left, int32_t right, int32_t *result) {
    if (!m->keys || left < 0 || right < 0) return -1;
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint32_t i = hash_pair(key) & (m->cap - 1);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            *result = m->result[i];
            return m->rank[i];
        }
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}
