/* tokenizer_gguf.c - vb_tokenizer_from_gguf: reads the tokenizer.ggml.* keys (model, pre,
 * tokens, token_type, scores, merges, special ids, add_bos/eos, add_space_prefix), checks their
 * types and that the per-token arrays have one entry per token, and builds the tokenizer
 * through vb_tokenizer_from_desc. A WeDLM file without mask_token_id gets its mask token by
 * text (arch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../arch.h"
#include "tok_internal.h"

static int gguf_fail(char *err, size_t err_len, int status, const char *msg, const char *key) {
    if (err && err_len) snprintf(err, err_len, "%s: %s", key, msg);
    return status;
}

/* A string array as (pointer, length) lists. */
static int read_str_array(const vb_gguf *g, const char *key, uint64_t max_n, const char ***strs,
                          size_t **lens, uint64_t *n, char *err, size_t err_len) {
    int et;
    const void *data;
    *strs = NULL;
    *lens = NULL;
    *n = 0;
    if (!vb_gguf_get_arr(g, key, &et, n, &data)) return VB_OK; /* absent */
    if (et != VB_GGUF_STRING)
        return gguf_fail(err, err_len, VB_ERR_FORMAT, "not an array of strings", key);
    if (*n > max_n) return gguf_fail(err, err_len, VB_ERR_FORMAT, "too many entries", key);
    *strs = malloc((*n ? *n : 1) * sizeof **strs);
    *lens = malloc((*n ? *n : 1) * sizeof **lens);
    if (!*strs || !*lens) return gguf_fail(err, err_len, VB_ERR_NOMEM, "out of memory", key);
    for (uint64_t i = 0; i < *n; i++) {
        const char *s;
        uint64_t l;
        if (!vb_gguf_get_arr_str(g, key, i, &s, &l) || l > (1u << 20))
            return gguf_fail(err, err_len, VB_ERR_FORMAT, "unreadable or oversized string", key);
        (*strs)[i] = s;
        (*lens)[i] = (size_t)l;
    }
    return VB_OK;
}

static int32_t opt_id(const vb_gguf *g, const char *key) {
    int64_t v;
    if (!vb_gguf_get_i64(g, key, &v) || v < 0 || v > INT32_MAX) return -1;
    return (int32_t)v;
}

static int opt_bool(const vb_gguf *g, const char *key) {
    bool b;
    return vb_gguf_get_bool(g, key, &b) ? (int)b : -1;
}

/* An architecture whose files may name the WeDLM mask token only in the vocabulary (arch.h
 * mask_from_vocab): the first token whose text is one of vb_arch_mask_texts; else -1. */
static int32_t mask_from_vocab(const vb_gguf *g, const char **tokens, const size_t *lens,
                               uint64_t n_tok) {
    const char *s;
    uint64_t len;
    char name[64];
    if (!vb_gguf_get_str(g, "general.architecture", &s, &len) || len >= sizeof name) return -1;
    memcpy(name, s, len);
    name[len] = 0;
    const vb_arch *a = vb_arch_find(name);
    if (!a || !a->mask_from_vocab) return -1;
    for (int k = 0; k < vb_arch_n_mask_texts; k++) {
        const size_t n = strlen(vb_arch_mask_texts[k]);
        for (uint64_t i = 0; i < n_tok; i++)
            if (lens[i] == n && memcmp(tokens[i], vb_arch_mask_texts[k], n) == 0) return (int32_t)i;
    }
    return -1;
}

int vb_tokenizer_from_gguf(const vb_gguf *g, vb_tokenizer **out, char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!g || !out) return VB_ERR_ARG;
    *out = NULL;
    vb_tok_desc d;
    memset(&d, 0, sizeof d);
    uint64_t ml = 0, pl = 0;
    if (!vb_gguf_get_str(g, "tokenizer.ggml.model", &d.model, &ml))
        return gguf_fail(err, err_len, VB_ERR_UNSUPPORTED, "absent: the file has no tokenizer",
                         "tokenizer.ggml.model");
    d.model_len = (size_t)ml;
    if (!vb_gguf_get_str(g, "tokenizer.ggml.pre", &d.pre, &pl)) d.pre = NULL;
    d.pre_len = (size_t)pl;

    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    uint64_t n_tok = 0, n_merges = 0;
    int st = read_str_array(g, "tokenizer.ggml.tokens", 1u << 24, &tokens, &token_lens, &n_tok,
                            err, err_len);
    if (st != VB_OK) goto done;
    if (n_tok == 0) {
        st = gguf_fail(err, err_len, VB_ERR_FORMAT, "absent or empty", "tokenizer.ggml.tokens");
        goto done;
    }
    d.n_vocab = (int32_t)n_tok;
    d.tokens = tokens;
    d.token_lens = token_lens;

    int et;
    uint64_t n;
    const void *data;
    if (vb_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data)) {
        if (n != n_tok || (et != VB_GGUF_INT32 && et != VB_GGUF_UINT32)) {
            st = gguf_fail(err, err_len, VB_ERR_FORMAT,
                           "must be an int32 array with one entry per token",
                           "tokenizer.ggml.token_type");
            goto done;
        }
        types = malloc(n * sizeof *types);
        if (!types) { st = VB_ERR_NOMEM; goto done; }
        memcpy(types, data, n * sizeof *types); /* little-endian host assumed, as everywhere */
        d.token_types = types;
    }
    if (vb_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n, &data)) {
        if (n != n_tok || et != VB_GGUF_FLOAT32) {
            st = gguf_fail(err, err_len, VB_ERR_FORMAT,
                           "must be a float32 array with one entry per token",
                           "tokenizer.ggml.scores");
            goto done;
        }
        scores = malloc(n * sizeof *scores);
        if (!scores) { st = VB_ERR_NOMEM; goto done; }
        memcpy(scores, data, n * sizeof *scores);
        d.scores = scores;
    }
    st = read_str_array(g, "tokenizer.ggml.merges", 1u << 26, &merges, &merge_lens, &n_merges, err,
                        err_len);
    if (st != VB_OK) goto done;
    d.n_merges = (int64_t)n_merges;
    d.merges = merges;
    d.merge_lens = merge_lens;

    d.bos = opt_id(g, "tokenizer.ggml.bos_token_id");
    d.eos = opt_id(g, "tokenizer.ggml.eos_token_id");
    d.unk = opt_id(g, "tokenizer.ggml.unknown_token_id");
    d.mask = opt_id(g, "tokenizer.ggml.mask_token_id");
    if (d.mask < 0) d.mask = mask_from_vocab(g, tokens, token_lens, n_tok);
    d.eot = opt_id(g, "tokenizer.ggml.eot_token_id");
    d.eom = opt_id(g, "tokenizer.ggml.eom_token_id");
    d.add_bos = opt_bool(g, "tokenizer.ggml.add_bos_token");
    d.add_eos = opt_bool(g, "tokenizer.ggml.add_eos_token");
    d.add_space_prefix = opt_bool(g, "tokenizer.ggml.add_space_prefix");
    st = vb_tokenizer_from_desc(&d, out, err, err_len);
done:
    if (st == VB_ERR_NOMEM && err && err_len && !err[0])
        snprintf(err, err_len, "tokenizer: out of memory");
    free(tokens);
    free(token_lens);
    free(merges);
    free(merge_lens);
    free(types);
    free(scores);
    return st;
}
