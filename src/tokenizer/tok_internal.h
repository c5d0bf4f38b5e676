/* tok_internal.h - what the tokenizer's files share: the vb_tokenizer struct, the description a
 * tokenizer is built from (filled from GGUF keys by tokenizer_gguf.c, or directly by tests),
 * the string->id and pair->merge hash maps, UTF-8 helpers, and the per-model encoders
 * (bpe.c: byte-level BPE, spm.c: SentencePiece-style). Not part of any public contract. */
#ifndef VB_TOK_INTERNAL_H
#define VB_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"
#include "../text/utf8.h"

/* GGUF token types (tokenizer.ggml.token_type). */
enum vb_tok_type {
    VB_TOKTYPE_UNDEFINED = 0,
    VB_TOKTYPE_NORMAL = 1,
    VB_TOKTYPE_UNKNOWN = 2,
    VB_TOKTYPE_CONTROL = 3,
    VB_TOKTYPE_USER_DEFINED = 4,
    VB_TOKTYPE_UNUSED = 5,
    VB_TOKTYPE_BYTE = 6,
};

enum vb_tok_model { VB_TOKMODEL_BPE = 0, VB_TOKMODEL_SPM = 1, VB_TOKMODEL_BYTES = 2 };
enum vb_tok_pre { VB_TOKPRE_GPT2 = 0, VB_TOKPRE_QWEN2 = 1, VB_TOKPRE_LLAMA3 = 2, VB_TOKPRE_SMOLLM = 3, VB_TOKPRE_COUNT };

/* Everything a tokenizer is built from. Strings are (pointer, length), not NUL-terminated;
 * optional arrays may be NULL. Ids < 0 mean "absent". */
typedef struct vb_tok_desc {
    const char *model; size_t model_len;  /* "gpt2" or "llama" */
    const char *pre; size_t pre_len;      /* NULL: absent */
    int32_t n_vocab;
    const char *const *tokens;            /* [n_vocab] */
    const size_t *token_lens;             /* [n_vocab] */
    const int32_t *token_types;           /* [n_vocab] or NULL (all normal) */
    const float *scores;                  /* [n_vocab] or NULL (all 0) */
    int64_t n_merges;
    const char *const *merges;            /* [n_merges] "left right" */
    const size_t *merge_lens;             /* [n_merges] */
    int32_t bos, eos, unk, mask, eot, eom;
    int add_bos;          /* -1: absent (model default), 0/1 */
    int add_eos;          /* -1: absent, 0/1 */
    int add_space_prefix; /* -1: absent (default true for "llama"), 0/1 */
} vb_tok_desc;

/* Open-addressing hash from a byte string to a token id; keys live in the tokenizer's arena. */
typedef struct vb_tok_strmap {
    int32_t *slots; /* [cap] token id or -1 */
    uint32_t cap;   /* power of two */
} vb_tok_strmap;

/* Open-addressing hash from a token-id pair to its merge (rank, result id). */
typedef struct vb_tok_pairmap {
    uint64_t *keys;   /* [cap] (left << 32 | right) + 1; 0 = empty */
    int32_t *rank;    /* [cap] */
    int32_t *result;  /* [cap] */
    uint32_t cap;
} vb_tok_pairmap;

struct vb_tokenizer {
    enum vb_tok_model model;
    enum vb_tok_pre pre;
    int32_t n_vocab;
    char *text;          /* arena: every token's text, back to back */
    uint32_t *text_off;  /* [n_vocab + 1] token i is text[text_off[i] .. text_off[i+1]) */
    char *dec;           /* arena: every token's decoded bytes (what token_bytes returns) */
    uint32_t *dec_off;   /* [n_vocab + 1] */
    int32_t *type;       /* [n_vocab] enum vb_tok_type */
    float *score;        /* [n_vocab] (SPM merge priority: higher first) */
    vb_tok_strmap vocab; /* token text -> id (first id wins on duplicates) */
    vb_tok_pairmap merges;
    int32_t byte_token[256]; /* BPE: token of each byte's GPT-2 char; SPM: <0xNN>; -1 none */
    int32_t *special;    /* [n_special] control/user-defined ids by first byte, longest first */
    int32_t n_special;
    int32_t special_first[257]; /* special[special_first[b] .. special_first[b+1]) start with b */
    int32_t bos, eos, unk, mask, eot, eom;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    bool *eog;           /* [n_vocab] ends generation */
    void *re;            /* pcre2_code_8 * (BPE pre-tokenizer) */
    char note[192];      /* a remark about how the tokenizer was built ("" if none) */
};

/* Collects output ids: writes the first `max` into out, counts all of them. */
typedef struct vb_tok_out {
    vb_token *out;
    int64_t max;
    int64_t n;
} vb_tok_out;

static inline void vb_tok_emit(vb_tok_out *o, int32_t id) {
    if (o->n < o->max) o->out[o->n] = id;
    o->n++;
}

static inline const char *vb_tok_text(const vb_tokenizer *t, int32_t id, size_t *len) {
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text + t->text_off[id];
}

/* ---- tok_maps.c ---- */
int vb_tok_strmap_init(vb_tok_strmap *m, const vb_tokenizer *t); /* VB_OK / VB_ERR_NOMEM */
void vb_tok_strmap_free(vb_tok_strmap *m);
int32_t vb_tok_find(const vb_tokenizer *t, const char *s, size_t len); /* -1 if absent */
int vb_tok_pairmap_init(vb_tok_pairmap *m, int64_t n_expected);
void vb_tok_pairmap_free(vb_tok_pairmap *m);
/* Adds (left, right) -> (rank, result) unless the pair is already there (first rank wins). */
void vb_tok_pairmap_add(vb_tok_pairmap *m, int32_t left, int32_t right, int32_t rank,
                        int32_t result);
/* Rank of the merge (left, right), -1 if none; *result receives the merged token. */
int32_t vb_tok_pairmap_get(const vb_tok_pairmap *m, int32_t left, int32_t right, int32_t *result);

/* ---- tokenizer.c ---- */
/* Build from a description (the GGUF loader and the tests use it). Same status codes as
 * vb_tokenizer_from_gguf. */
int vb_tokenizer_from_desc(const vb_tok_desc *d, vb_tokenizer **out, char *err, size_t err_len);
/* The remark left while building (e.g. "tokenizer.ggml.pre absent: using gpt2"), "" if none. */
const char *vb_tokenizer_note(const vb_tokenizer *t);

/* ---- bpe.c ---- */
/* Setup for byte-level BPE: byte tokens, merges, decoded bytes, the pre-tokenizer regex. */
int vb_bpe_init(vb_tokenizer *t, const vb_tok_desc *d, char *err, size_t err_len);
void vb_bpe_free(vb_tokenizer *t);
/* Encode a fragment of plain text (no special tokens inside). Returns VB_OK or < 0. */
int vb_bpe_encode(const vb_tokenizer *t, const char *text, size_t len, vb_tok_out *o);

/* ---- spm.c ---- */
int vb_spm_init(vb_tokenizer *t, char *err, size_t err_len);
/* Encode a fragment; prefix_space: prepend U+2581 when add_space_prefix is on. */
int vb_spm_encode(const vb_tokenizer *t, const char *text, size_t len, bool prefix_space,
                  vb_tok_out *o);

#endif
