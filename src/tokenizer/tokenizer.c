/* tokenizer.c - the vb_tokenizer object: built from a vb_tok_desc (token texts, types, scores,
 * merges, special ids), the accessors, special-token splitting in encode (then byte-level BPE
 * in bpe.c or SentencePiece in spm.c per plain-text fragment), and token -> bytes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define VB_TOK_MAX_VOCAB (1 << 24)

static int tok_fail(char *err, size_t err_len, int status, const char *fmt, ...) {
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return status;
}

static bool str_is(const char *s, size_t len, const char *lit) {
    return s && strlen(lit) == len && memcmp(s, lit, len) == 0;
}

void vb_tokenizer_free(vb_tokenizer *t) {
    if (!t) return;
    vb_bpe_free(t);
    vb_tok_strmap_free(&t->vocab);
    vb_tok_pairmap_free(&t->merges);
    free(t->text);
    free(t->text_off);
    free(t->dec);
    free(t->dec_off);
    free(t->type);
    free(t->score);
    free(t->special);
    free(t->eog);
    free(t);
}

/* Special tokens (control / user-defined, non-empty text) grouped by first byte, longest first,
 * so that encode finds the longest special token starting at a position. */
typedef struct special_key {
    uint32_t first; /* first byte of the text */
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

static int build_specials(vb_tokenizer *t) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == VB_TOKTYPE_CONTROL || t->type[i] == VB_TOKTYPE_USER_DEFINED) &&
            t->text_off[i + 1] > t->text_off[i])
            n++;
    special_key *keys = malloc(((size_t)n + 1) * sizeof *keys);
    t->special = malloc(((size_t)n + 1) * sizeof *t->special);
    if (!keys || !t->special) {
        free(keys);
        return VB_ERR_NOMEM;
    }
    n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == VB_TOKTYPE_CONTROL || t->type[i] == VB_TOKTYPE_USER_DEFINED) &&
            t->text_off[i + 1] > t->text_off[i])
            keys[n++] = (special_key){(unsigned char)t->text[t->text_off[i]],
                                      t->text_off[i + 1] - t->text_off[i], i};
    qsort(keys, (size_t)n, sizeof *keys, cmp_special);
    for (int32_t k = 0; k < n; k++) t->special[k] = keys[k].id;
    t->n_special = n;
    int32_t k = 0;
    for (uint32_t b = 0; b < 256; b++) {
        t->special_first[b] = k;
        while (k < n && keys[k].first == b) k++;
    }
    t->special_first[256] = n;
    free(keys);
    return VB_OK;
}

static bool is_eog_text(const char *s, size_t len) {
    static const char *const names[] = {"<|endoftext|>", "<|im_end|>", "<|eot_id|>",
                                        "<|end_of_text|>", "</s>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (str_is(s, len, names[i])) return true;
    return false;
}

static int32_t valid_id(const vb_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? id : -1;
}

/* The pre-tokenizers of byte-level BPE vocabularies, by the tokenizer.ggml.pre names llama.cpp's
 * converter writes (several names share one rule), with what llama.cpp does for each: whether a
 * whole pre-token found in the vocabulary skips the merges, and whether BOS is prepended when the
 * file has no tokenizer.ggml.add_bos_token. The regex of each rule is in bpe.c. */
typedef struct pre_entry {
    const char *names; /* NUL-separated, ending with an empty name */
    enum vb_tok_pre pre;
    bool ignore_merges, add_bos;
} pre_entry;

static const pre_entry PRE_TABLE[] = {
    {"gpt2\0gpt-2\0phi-2\0", VB_TOKPRE_GPT2, false, false},
    {"qwen2\0deepseek-r1-qwen\0megrez\0", VB_TOKPRE_QWEN2, false, false},
    {"llama-bpe\0llama3\0llama-v3\0falcon3\0pixtral\0", VB_TOKPRE_LLAMA3, true, true},
    {"smollm\0", VB_TOKPRE_SMOLLM, false, false},
};

static const pre_entry *find_pre(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof PRE_TABLE / sizeof PRE_TABLE[0]; i++)
        for (const char *n = PRE_TABLE[i].names; *n; n += strlen(n) + 1)
            if (str_is(name, len, n)) return &PRE_TABLE[i];
    return NULL;
}

int vb_tokenizer_from_desc(const vb_tok_desc *d, vb_tokenizer **out, char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!d || !out) return tok_fail(err, err_len, VB_ERR_ARG, "tokenizer: NULL argument");
    *out = NULL;
    enum vb_tok_model model;
    if (str_is(d->model, d->model_len, "gpt2"))
        model = VB_TOKMODEL_BPE;
    else if (str_is(d->model, d->model_len, "llama"))
        model = VB_TOKMODEL_SPM;
    else
        return tok_fail(err, err_len, VB_ERR_UNSUPPORTED,
                        "tokenizer.ggml.model '%.*s' is not supported (supported: gpt2, llama)",
                        (int)(d->model_len > 64 ? 64 : d->model_len), d->model ? d->model : "");
    const pre_entry *pe = &PRE_TABLE[0]; /* GPT-2 */
    const char *note = "";
    if (model == VB_TOKMODEL_BPE) {
        if (!d->pre || str_is(d->pre, d->pre_len, "default")) {
            note = "tokenizer.ggml.pre absent or 'default': using the GPT-2 pre-tokenizer";
        } else if (!(pe = find_pre(d->pre, d->pre_len))) {
            return tok_fail(err, err_len, VB_ERR_UNSUPPORTED,
                            "tokenizer.ggml.pre '%.*s' is not supported (supported: gpt2/gpt-2/phi-2, "
                            "qwen2/deepseek-r1-qwen/megrez, llama-bpe/llama3/llama-v3/falcon3/pixtral, "
                            "smollm, default)",
                            (int)(d->pre_len > 64 ? 64 : d->pre_len), d->pre);
        }
    }
    enum vb_tok_pre pre = pe->pre;
    if (d->n_vocab <= 0 || d->n_vocab > VB_TOK_MAX_VOCAB || !d->tokens || !d->token_lens)
        return tok_fail(err, err_len, VB_ERR_FORMAT,
                        "tokenizer.ggml.tokens: %d tokens (expected 1..%d)", (int)d->n_vocab,
                        VB_TOK_MAX_VOCAB);

    vb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return tok_fail(err, err_len, VB_ERR_NOMEM, "tokenizer: out of memory");
    t->model = model;
    t->pre = pre;
    t->n_vocab = d->n_vocab;
    snprintf(t->note, sizeof t->note, "%s", note);
    int st = VB_ERR_NOMEM;

    /* token texts into one arena */
    uint64_t total = 0;
    for (int32_t i = 0; i < d->n_vocab; i++) {
        if (!d->tokens[i] && d->token_lens[i]) {
            st = tok_fail(err, err_len, VB_ERR_FORMAT, "tokenizer.ggml.tokens[%d] missing", (int)i);
            goto fail;
        }
        total += d->token_lens[i];
    }
    if (total > 0xFFFFFFF0u) {
        st = tok_fail(err, err_len, VB_ERR_FORMAT, "tokenizer.ggml.tokens: texts too large");
        goto fail;
    }
    size_t nv = (uint32_t)d->n_vocab; /* 1 .. VB_TOK_MAX_VOCAB, checked above */
    t->text = malloc(total + 1);
    t->text_off = malloc((nv + 1) * sizeof *t->text_off);
    t->type = malloc(nv * sizeof *t->type);
    t->score = malloc(nv * sizeof *t->score);
    t->eog = calloc(nv, sizeof *t->eog);
    if (!t->text || !t->text_off || !t->type || !t->score || !t->eog) goto nomem;
    uint32_t off = 0;
    for (int32_t i = 0; i < d->n_vocab; i++) {
        t->text_off[i] = off;
        if (d->token_lens[i]) memcpy(t->text + off, d->tokens[i], d->token_lens[i]);
        off += (uint32_t)d->token_lens[i];
        int32_t ty = d->token_types ? d->token_types[i] : VB_TOKTYPE_NORMAL;
        if (ty < 0 || ty > VB_TOKTYPE_BYTE) {
            st = tok_fail(err, err_len, VB_ERR_FORMAT,
                          "tokenizer.ggml.token_type[%d] = %d is not a token type (0..6)", (int)i,
                          (int)ty);
            goto fail;
        }
        t->type[i] = ty;
        t->score[i] = d->scores ? d->scores[i] : 0.0f;
    }
    t->text_off[d->n_vocab] = off;
    t->text[off] = '\0';
    if (vb_tok_strmap_init(&t->vocab, t) != VB_OK) goto nomem;

    /* special ids */
    t->bos = valid_id(t, d->bos);
    t->eos = valid_id(t, d->eos);
    t->unk = valid_id(t, d->unk);
    t->mask = valid_id(t, d->mask);
    t->eot = valid_id(t, d->eot);
    t->eom = valid_id(t, d->eom);
    if (model == VB_TOKMODEL_SPM) { /* SentencePiece conventions when the keys are absent */
        if (d->bos < 0 && t->n_vocab > 1) t->bos = 1;
        if (d->eos < 0 && t->n_vocab > 2) t->eos = 2;
        if (d->unk < 0) t->unk = 0;
    }
    /* without tokenizer.ggml.add_bos_token: SentencePiece and the Llama 3 family prepend BOS (older
       Llama 3 conversions lack the key), other byte-level BPE vocabularies do not */
    t->add_bos = d->add_bos >= 0 ? d->add_bos != 0 : model == VB_TOKMODEL_SPM || (model == VB_TOKMODEL_BPE && pe->add_bos);
    t->add_eos = d->add_eos > 0;
    t->add_space_prefix =
        d->add_space_prefix >= 0 ? d->add_space_prefix != 0 : model == VB_TOKMODEL_SPM;
    t->ignore_merges = model == VB_TOKMODEL_BPE && pe->ignore_merges;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len;
        const char *s = vb_tok_text(t, i, &len);
        if (t->type[i] == VB_TOKTYPE_CONTROL && is_eog_text(s, len)) t->eog[i] = true;
    }
    if (t->eos >= 0) t->eog[t->eos] = true;
    if (t->eot >= 0) t->eog[t->eot] = true;
    if (t->eom >= 0) t->eog[t->eom] = true;
    if (build_specials(t) != VB_OK) goto nomem;

    st = model == VB_TOKMODEL_BPE ? vb_bpe_init(t, d, err, err_len) : vb_spm_init(t, err, err_len);
    if (st != VB_OK) goto fail;
    *out = t;
    if (err && err_len) snprintf(err, err_len, "%s", t->note);
    return VB_OK;
nomem:
    st = tok_fail(err, err_len, VB_ERR_NOMEM, "tokenizer: out of memory");
fail:
    vb_tokenizer_free(t);
    return st;
}

const char *vb_tokenizer_note(const vb_tokenizer *t) { return t ? t->note : ""; }
int vb_tokenizer_bytes(int32_t n_vocab, vb_token eos, vb_token mask, vb_tokenizer **out) {
    *out = NULL;
    if (n_vocab < 256) return VB_ERR_ARG;
    vb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return VB_ERR_NOMEM;
    t->model = VB_TOKMODEL_BYTES;
    t->n_vocab = n_vocab;
    t->text = malloc(256);
    t->dec = malloc(256);
    t->text_off = malloc(sizeof(uint32_t) * ((size_t)n_vocab + 1));
    t->dec_off = malloc(sizeof(uint32_t) * ((size_t)n_vocab + 1));
    t->eog = calloc((size_t)n_vocab, sizeof *t->eog);
    if (!t->text || !t->dec || !t->text_off || !t->dec_off || !t->eog) {
        vb_tokenizer_free(t);
        return VB_ERR_NOMEM;
    }
    for (int32_t i = 0; i <= n_vocab; i++) t->text_off[i] = t->dec_off[i] = (uint32_t)(i < 256 ? i : 256);
    for (int i = 0; i < 256; i++) t->text[i] = t->dec[i] = (char)i;
    t->bos = t->unk = t->eot = t->eom = -1;
    t->eos = eos >= 0 && eos < n_vocab ? eos : -1;
    t->mask = mask >= 0 && mask < n_vocab ? mask : -1;
    if (t->eos >= 0) t->eog[t->eos] = true;
    for (int b = 0; b < 256; b++) t->byte_token[b] = b;
    *out = t;
    return VB_OK;
}

int32_t vb_tokenizer_n_vocab(const vb_tokenizer *t) { return t ? t->n_vocab : 0; }
vb_token vb_tokenizer_bos(const vb_tokenizer *t) { return t ? t->bos : -1; }
vb_token vb_tokenizer_eos(const vb_tokenizer *t) { return t ? t->eos : -1; }
vb_token vb_tokenizer_mask(const vb_tokenizer *t) { return t ? t->mask : -1; }
bool vb_tokenizer_add_bos(const vb_tokenizer *t) { return t && t->add_bos && t->bos >= 0; }

bool vb_tokenizer_is_eog(const vb_tokenizer *t, vb_token tok) {
    return t && tok >= 0 && tok < t->n_vocab && t->eog[tok];
}

bool vb_tokenizer_is_control(const vb_tokenizer *t, vb_token tok) {
    return t && tok >= 0 && tok < t->n_vocab && t->type && t->type[tok] == VB_TOKTYPE_CONTROL;
}

/* Longest special token starting at text[pos], -1 if none. */
static int32_t match_special(const vb_tokenizer *t, const char *text, size_t len, size_t pos) {
    unsigned char b = (unsigned char)text[pos];
    for (int32_t k = t->special_first[b]; k < t->special_first[b + 1]; k++) {
        size_t sl;
        const char *s = vb_tok_text(t, t->special[k], &sl);
        if (sl <= len - pos && memcmp(text + pos, s, sl) == 0) return t->special[k];
    }
    return -1;
}

static int encode_fragment(const vb_tokenizer *t, const char *s, size_t len, vb_tok_out *o) {
    if (len == 0) return VB_OK;
    if (t->model == VB_TOKMODEL_BPE) return vb_bpe_encode(t, s, len, o);
    if (t->model == VB_TOKMODEL_BYTES) {
        for (size_t i = 0; i < len; i++) vb_tok_emit(o, (unsigned char)s[i]);
        return VB_OK;
    }
    return vb_spm_encode(t, s, len, true, o);
}

/* True when no byte of text[pos, pos + n) is marked as user text. */
static bool template_text(const uint8_t *user, size_t pos, size_t n) {
    if (!user) return true;
    for (size_t i = 0; i < n; i++)
        if (user[pos + i]) return false;
    return true;
}

int vb_tokenizer_encode_masked(const vb_tokenizer *t, const char *text, size_t len, bool add_special,
                               bool parse_special, const uint8_t *user, vb_token *out,
                               int32_t max_tokens) {
    if (!t || (!text && len) || max_tokens < 0 || (!out && max_tokens > 0)) return VB_ERR_ARG;
    if (len > (size_t)INT32_MAX / 4) return VB_ERR_ARG; /* keeps every offset in int32 */
    vb_tok_out o = {out, max_tokens, 0};
    if (add_special && t->add_bos && t->bos >= 0) vb_tok_emit(&o, t->bos);
    /* Every plain-text fragment starts the text or follows a special token, so SentencePiece
     * prefixes each one with U+2581 (as llama.cpp and Hugging Face tokenizers do). */
    size_t start = 0;
    if (parse_special && t->n_special > 0) {
        for (size_t pos = 0; pos < len; pos++) {
            int32_t sp = match_special(t, text, len, pos);
            if (sp < 0 || !template_text(user, pos, t->text_off[sp + 1] - t->text_off[sp])) continue;
            int st = encode_fragment(t, text + start, pos - start, &o);
            if (st != VB_OK) return st;
            vb_tok_emit(&o, sp);
            pos += t->text_off[sp + 1] - t->text_off[sp];
            start = pos;
            pos--; /* the loop increments */
        }
    }
    int st = encode_fragment(t, text + start, len - start, &o);
    if (st != VB_OK) return st;
    if (add_special && t->add_eos && t->eos >= 0) vb_tok_emit(&o, t->eos);
    if (o.n > INT32_MAX) return VB_ERR_ARG;
    return (int)o.n;
}

int vb_tokenizer_encode(const vb_tokenizer *t, const char *text, size_t len, bool add_special,
                        bool parse_special, vb_token *out, int32_t max_tokens) {
    return vb_tokenizer_encode_masked(t, text, len, add_special, parse_special, NULL, out, max_tokens);
}

int vb_tokenizer_token_bytes(const vb_tokenizer *t, vb_token tok, char *buf, size_t buf_len) {
    if (!t || tok < 0 || tok >= t->n_vocab || (!buf && buf_len)) return VB_ERR_ARG;
    size_t n = t->dec_off[tok + 1] - t->dec_off[tok];
    if (n > (size_t)INT32_MAX) return VB_ERR_FORMAT;
    if (buf_len) memcpy(buf, t->dec + t->dec_off[tok], n < buf_len ? n : buf_len);
    return (int)n;
}
