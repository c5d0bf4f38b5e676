/* bpe.c - byte-level BPE (tokenizer.ggml.model = "gpt2"): the GPT-2 byte <-> unicode alphabet,
 * the pre-tokenizer regexes of GPT-2, Qwen2 and Llama 3 (PCRE2, UTF + UCP, JIT when available),
 * and merging by rank with a binary heap (lowest rank first, leftmost on ties): O(n log n) per
 * pre-token. Invalid UTF-8 never reaches PCRE2: maximal invalid byte runs become their own
 * pre-tokens, so every input byte is encoded and decoding gives the input back. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* Whitespace is Unicode's White_Space property, spelled out: PCRE2's \s also takes U+180E, and
 * the references differ among themselves (Python's regex module and llama.cpp follow
 * White_Space; JavaScript's \s adds U+FEFF and drops U+0085). */
#define WS                                                                                      \
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}" \
    "\\x{3000}"

/* GPT-2's pre-tokenizer (the regex of OpenAI's encoder.py). */
static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|"
    "[" WS "]+(?![^" WS "])|[" WS "]+";
/* Llama 3's pattern with the case-insensitive contraction group spelled out (an inline (?i)
 * would let PCRE2's Unicode case folding match e.g. U+017F for 's'). Qwen2 is the same with
 * single digits instead of runs of up to three. */
static const char PAT_LLAMA3[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|"
    "[" WS "]+(?![^" WS "])|[" WS "]+";
static const char PAT_QWEN2[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|"
    "[" WS "]+(?![^" WS "])|[" WS "]+";
/* SmolLM (llama.cpp's "smollm"; Hugging Face's Digits(individual_digits) then ByteLevel): every
 * digit is a piece of its own, the rest is split by GPT-2's rule. As one regex: a digit ends the
 * text GPT-2's rule sees, so " ?\p{N}+" goes and whitespace before a digit is whitespace at the
 * end of a piece (the lookahead lets a digit end a whitespace run as the end of text does). */
static const char PAT_SMOLLM[] =
    "\\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?[^" WS "\\p{L}\\p{N}]+|"
    "[" WS "]+(?![^" WS "\\p{N}])|[" WS "]+";

static const char *const PRE_PATTERNS[VB_TOKPRE_COUNT] = {
    [VB_TOKPRE_GPT2] = PAT_GPT2,
    [VB_TOKPRE_QWEN2] = PAT_QWEN2,
    [VB_TOKPRE_LLAMA3] = PAT_LLAMA3,
    [VB_TOKPRE_SMOLLM] = PAT_SMOLLM,
};

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. cp_to_byte inverts it (code points < 324). */
static void byte_alphabet(uint32_t byte_to_cp[256], int16_t cp_to_byte[324]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        byte_to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    for (int c = 0; c < 324; c++) cp_to_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (int16_t)b;
}

/* Decoded bytes of every token: normal tokens through the byte alphabet (raw text when a
 * character is outside it), control / user-defined tokens as their text. */
static int build_decoded(vb_tokenizer *t, const int16_t cp_to_byte[324]) {
    size_t total = t->text_off[t->n_vocab];
    t->dec = malloc(total + 1);
    t->dec_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->dec_off);
    if (!t->dec || !t->dec_off) return VB_ERR_NOMEM;
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const unsigned char *s = (const unsigned char *)vb_tok_text(t, id, &len);
        t->dec_off[id] = off;
        bool mapped = t->type[id] != VB_TOKTYPE_CONTROL && t->type[id] != VB_TOKTYPE_USER_DEFINED;
        uint32_t o = off;
        for (size_t i = 0; mapped && i < len;) {
            uint32_t cp;
            int l = vb_utf8_valid_len(s + i, len - i, &cp);
            if (l == 0 || cp >= 324 || cp_to_byte[cp] < 0) {
                mapped = false;
                break;
            }
            t->dec[o++] = (char)cp_to_byte[cp];
            i += (size_t)l;
        }
        if (!mapped) {
            memcpy(t->dec + off, s, len);
            o = off + (uint32_t)len;
        }
        off = o;
    }
    t->dec_off[t->n_vocab] = off;
    return VB_OK;
}

int vb_bpe_init(vb_tokenizer *t, const vb_tok_desc *d, char *err, size_t err_len) {
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[324];
    byte_alphabet(byte_to_cp, cp_to_byte);
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = vb_utf8_put(byte_to_cp[b], u);
        t->byte_token[b] = vb_tok_find(t, u, (size_t)l);
    }
    if (d->n_merges < 0 || d->n_merges > INT32_MAX ||
        (d->n_merges > 0 && (!d->merges || !d->merge_lens))) {
        snprintf(err, err_len, "tokenizer.ggml.merges: bad count %lld", (long long)d->n_merges);
        return VB_ERR_FORMAT;
    }
    if (vb_tok_pairmap_init(&t->merges, d->n_merges) != VB_OK) goto nomem;
    char *cat = NULL;
    size_t cat_cap = 0;
    int64_t n_skipped = 0;
    for (int64_t r = 0; r < d->n_merges; r++) {
        const char *m = d->merges[r];
        size_t len = d->merge_lens[r];
        /* "left right": the separator is the first space after the first byte */
        const char *sp = len > 1 && m ? memchr(m + 1, ' ', len - 1) : NULL;
        if (!sp || sp == m + len - 1) {
            free(cat);
            snprintf(err, err_len,
                     "tokenizer.ggml.merges[%lld] = '%.*s' is not of the form 'left right'",
                     (long long)r, (int)(len > 40 ? 40 : len), m ? m : "");
            return VB_ERR_FORMAT;
        }
        size_t ll = (size_t)(sp - m), rl = len - ll - 1;
        int32_t left = vb_tok_find(t, m, ll), right = vb_tok_find(t, sp + 1, rl);
        if (ll + rl > cat_cap) {
            cat_cap = (ll + rl) * 2;
            char *nc = realloc(cat, cat_cap);
            if (!nc) {
                free(cat);
                goto nomem;
            }
            cat = nc;
        }
        memcpy(cat, m, ll);
        memcpy(cat + ll, sp + 1, rl);
        int32_t result = vb_tok_find(t, cat, ll + rl);
        if (left < 0 || right < 0 || result < 0) {
            n_skipped++; /* a merge naming or producing no token can never apply */
            continue;
        }
        vb_tok_pairmap_add(&t->merges, left, right, (int32_t)r, result);
    }
    free(cat);
    if (n_skipped > 0 && !t->note[0])
        snprintf(t->note, sizeof t->note, "%lld merges name tokens not in the vocabulary: ignored",
                 (long long)n_skipped);
    if (build_decoded(t, cp_to_byte) != VB_OK) goto nomem;

    const char *pat = t->pre >= 0 && t->pre < VB_TOKPRE_COUNT ? PRE_PATTERNS[t->pre] : PAT_GPT2;
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                   &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, err_len, "pre-tokenizer regex: %s at %zu", (const char *)msg, (size_t)eo);
        return VB_ERR_UNSUPPORTED;
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
    t->re = re;
    return VB_OK;
nomem:
    snprintf(err, err_len, "tokenizer: out of memory");
    return VB_ERR_NOMEM;
}

void vb_bpe_free(vb_tokenizer *t) {
    if (t && t->re) pcre2_code_free((pcre2_code *)t->re);
    if (t) t->re = NULL;
}

/* ---- merging ---- */

typedef struct heap_entry {
    int32_t rank;  /* merge rank: lower first */
    int32_t left;  /* index of the left symbol: lower first on equal rank */
    int32_t lid, rid;
} heap_entry;

typedef struct bpe_scratch {
    int32_t *id, *prev, *next; /* [cap] per symbol (one per byte of the pre-token) */
    heap_entry *heap;          /* [3 * cap] */
    char *mapped;              /* [2 * cap] the pre-token in the byte alphabet */
    size_t cap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} bpe_scratch;

static bool heap_less(const heap_entry *a, const heap_entry *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

/* Moves h[i] down to its place in the heap h[0..n). */
static void heap_sift_down(heap_entry *h, size_t n, size_t i) {
    heap_entry e = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &e)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
}

static heap_entry heap_pop(heap_entry *h, size_t *n) {
    heap_entry top = h[0];
    h[0] = h[--(*n)];
    if (*n > 0) heap_sift_down(h, *n, 0);
    return top;
}

static int scratch_reserve(bpe_scratch *s, size_t n) {
    if (n <= s->cap) return VB_OK;
    size_t cap = n < 64 ? 64 : n;
    int32_t *id = realloc(s->id, cap * sizeof *id);
    if (id) s->id = id;
    int32_t *prev = realloc(s->prev, cap * sizeof *prev);
    if (prev) s->prev = prev;
    int32_t *next = realloc(s->next, cap * sizeof *next);
    if (next) s->next = next;
    heap_entry *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap) s->heap = heap;
    char *mapped = realloc(s->mapped, 2 * cap);
    if (mapped) s->mapped = mapped;
    if (!id || !prev || !next || !heap || !mapped) return VB_ERR_NOMEM;
    s->cap = cap;
    return VB_OK;
}

static void try_push(const vb_tokenizer *t, bpe_scratch *s, size_t *nh, int32_t left) {
    if (left < 0) return;
    int32_t right = s->next[left];
    if (right < 0) return;
    int32_t result;
    int32_t rank = vb_tok_pairmap_get(&t->merges, s->id[left], s->id[right], &result);
    if (rank < 0) return;
    heap_push(s->heap, nh, (heap_entry){rank, left, s->id[left], s->id[right]});
}

/* One pre-token (raw bytes) -> ids. */
static int bpe_word(const vb_tokenizer *t, bpe_scratch *s, const unsigned char *w, size_t n,
                    vb_tok_out *o) {
    if (n == 0) return VB_OK;
    if (n == 1) {
        int32_t id = t->byte_token[w[0]] >= 0 ? t->byte_token[w[0]] : t->unk;
        if (id >= 0) vb_tok_emit(o, id);
        return VB_OK;
    }
    if (scratch_reserve(s, n) != VB_OK) return VB_ERR_NOMEM;
    if (t->ignore_merges) { /* Llama 3: a pre-token that is a token is taken whole */
        size_t ml = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l;
            int32_t bt = t->byte_token[w[i]];
            if (bt < 0) { ml = 0; break; }
            const char *bs = vb_tok_text(t, bt, &l);
            memcpy(s->mapped + ml, bs, l); /* byte chars are at most 2 bytes */
            ml += l;
        }
        int32_t whole = ml ? vb_tok_find(t, s->mapped, ml) : -1;
        if (whole >= 0) {
            vb_tok_emit(o, whole);
            return VB_OK;
        }
    }
    for (size_t i = 0; i < n; i++) {
        s->id[i] = t->byte_token[w[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0; /* initial pairs are in position order: sift down once (O(n) heapify) */
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t result;
        int32_t rank = vb_tok_pairmap_get(&t->merges, s->id[i], s->id[i + 1], &result);
        if (rank >= 0) s->heap[nh++] = (heap_entry){rank, (int32_t)i, s->id[i], s->id[i + 1]};
    }
    for (size_t i = nh / 2; i-- > 0;) heap_sift_down(s->heap, nh, i);
    while (nh > 0) {
        heap_entry e = heap_pop(s->heap, &nh);
        int32_t l = e.left, r = s->next[l];
        if (s->id[l] != e.lid || r < 0 || s->id[r] != e.rid) continue; /* stale */
        int32_t result;
        if (vb_tok_pairmap_get(&t->merges, e.lid, e.rid, &result) < 0) continue;
        s->id[l] = result;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0) s->prev[s->next[r]] = l;
        s->id[r] = -2; /* merged away */
        try_push(t, s, &nh, s->prev[l]);
        try_push(t, s, &nh, l);
    }
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        int32_t id = s->id[i] >= 0 ? s->id[i] : t->unk;
        if (id >= 0) vb_tok_emit(o, id);
    }
    return VB_OK;
}

/* A valid UTF-8 run: split with the pre-tokenizer regex, BPE each piece. Text between matches
 * (none for the shipped patterns) is kept as a piece of its own. */
static int pretokenize_run(const vb_tokenizer *t, bpe_scratch *s, const char *run, size_t n,
                           vb_tok_out *o) {
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match((const pcre2_code *)t->re, (PCRE2_SPTR)run, n, off,
                             PCRE2_NO_UTF_CHECK, s->md, s->mctx);
        size_t ms, me;
        if (rc == PCRE2_ERROR_NOMATCH) {
            ms = me = n;
        } else if (rc < 0) {
            /* a PCRE2 resource limit (only on pathological multi-megabyte runs): the rest of
             * the run becomes one piece, so encoding still succeeds and round-trips */
            ms = off;
            me = n;
        } else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            ms = ov[0];
            me = ov[1];
            if (ms < off || me < ms || me > n) return VB_ERR_UNSUPPORTED;
            if (me == ms) { /* empty match: step one character */
                uint32_t cp;
                const unsigned char *at = (const unsigned char *)run + ms;
                int l = ms < n ? vb_utf8_valid_len(at, n - ms, &cp) : 0;
                me = ms + (size_t)(l > 0 ? l : 1);
                if (me > n) me = n;
            }
        }
        int st = bpe_word(t, s, (const unsigned char *)run + off, ms - off, o);
        if (st == VB_OK) st = bpe_word(t, s, (const unsigned char *)run + ms, me - ms, o);
        if (st != VB_OK) return st;
        off = me;
    }
    return VB_OK;
}

int vb_bpe_encode(const vb_tokenizer *t, const char *text, size_t len, vb_tok_out *o) {
    bpe_scratch s = {0};
    int st = VB_OK;
    s.md = pcre2_match_data_create_from_pattern((const pcre2_code *)t->re, NULL);
    s.mctx = pcre2_match_context_create(NULL);
    s.jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!s.md || !s.mctx) {
        st = VB_ERR_NOMEM;
        goto done;
    }
    if (s.jit) pcre2_jit_stack_assign(s.mctx, NULL, s.jit);
    pcre2_set_match_limit(s.mctx, UINT32_MAX); /* backtracking over long whitespace runs */
    const unsigned char *u = (const unsigned char *)text;
    size_t pos = 0;
    while (pos < len && st == VB_OK) {
        size_t run = pos;
        uint32_t cp;
        int l;
        while (pos < len && (l = vb_utf8_valid_len(u + pos, len - pos, &cp)) > 0) pos += (size_t)l;
        if (pos > run) st = pretokenize_run(t, &s, text + run, pos - run, o);
        size_t bad = pos;
        while (pos < len && vb_utf8_valid_len(u + pos, len - pos, &cp) == 0) pos++;
        if (pos > bad && st == VB_OK) st = bpe_word(t, &s, u + bad, pos - bad, o);
    }
done:
    if (s.jit) pcre2_jit_stack_free(s.jit);
    if (s.mctx) pcre2_match_context_free(s.mctx);
    if (s.md) pcre2_match_data_free(s.md);
    free(s.id);
    free(s.prev);
    free(s.next);
    free(s.heap);
    free(s.mapped);
    return st;
}
