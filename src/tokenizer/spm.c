/* spm.c - the SentencePiece-style "llama" tokenizer: spaces become U+2581 (with one prepended
 * when add_space_prefix), the text starts as one symbol per UTF-8 character, and the adjacent
 * pair whose concatenation is the highest-scoring token is merged first (leftmost on equal
 * scores), with a binary heap: O(n log n). Symbols that are not tokens fall back to the byte
 * tokens <0xNN> (or <unk>). Decoding maps U+2581 to a space and <0xNN> to its byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Byte value of a "<0xNN>" token text, -1 otherwise. */
static int byte_token_value(const char *s, size_t len) {
    if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* A token merges / matches plain text unless it is a control or unknown token. */
static bool mergeable(const vb_tokenizer *t, int32_t id) {
    return id >= 0 && t->type[id] != VB_TOKTYPE_CONTROL && t->type[id] != VB_TOKTYPE_UNKNOWN;
}

int vb_spm_init(vb_tokenizer *t, char *err, size_t err_len) {
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_token[b] = vb_tok_find(t, name, 6);
    }
    size_t total = t->text_off[t->n_vocab];
    t->dec = malloc(total + 1);
    t->dec_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->dec_off);
    if (!t->dec || !t->dec_off) {
        snprintf(err, err_len, "tokenizer: out of memory");
        return VB_ERR_NOMEM;
    }
    uint32_t off = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t len;
        const char *s = vb_tok_text(t, id, &len);
        t->dec_off[id] = off;
        int bv = t->type[id] == VB_TOKTYPE_BYTE ? byte_token_value(s, len) : -1;
        if (bv >= 0) {
            t->dec[off++] = (char)bv;
        } else if (t->type[id] == VB_TOKTYPE_CONTROL) {
            memcpy(t->dec + off, s, len);
            off += (uint32_t)len;
        } else {
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && memcmp(s + i, SPACE_MARK, 3) == 0) {
                    t->dec[off++] = ' ';
                    i += 3;
                } else {
                    t->dec[off++] = s[i++];
                }
            }
        }
    }
    t->dec_off[t->n_vocab] = off;
    return VB_OK;
}

typedef struct spm_bigram {
    float score;   /* higher first */
    int32_t left;  /* lower first on equal score */
    int32_t size;  /* bytes of left + right when pushed (stale check) */
    int32_t id;
} spm_bigram;

static bool bigram_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(spm_bigram *h, size_t *n, spm_bigram e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static spm_bigram heap_pop(spm_bigram *h, size_t *n) {
    spm_bigram top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && bigram_before(&h[c + 1], &h[c])) c++;
        if (!bigram_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

typedef struct spm_state {
    const char *buf;  /* normalized text */
    int32_t *start;   /* [n_sym] byte offset of each symbol */
    int32_t *len;     /* [n_sym] bytes; 0 = merged away */
    int32_t *prev, *next;
    spm_bigram *heap; /* [3 * n_sym] */
    size_t nh;
} spm_state;

static void try_bigram(const vb_tokenizer *t, spm_state *s, int32_t left) {
    if (left < 0) return;
    int32_t right = s->next[left];
    if (right < 0) return;
    int32_t size = s->len[left] + s->len[right];
    int32_t id = vb_tok_find(t, s->buf + s->start[left], (size_t)size);
    if (!mergeable(t, id)) return;
    heap_push(s->heap, &s->nh, (spm_bigram){t->score[id], left, size, id});
}

int vb_spm_encode(const vb_tokenizer *t, const char *text, size_t len, bool prefix_space,
                  vb_tok_out *o) {
    /* normalize: optional leading U+2581, every ' ' -> U+2581 */
    size_t cap = 3 * len + 3;
    char *buf = malloc(cap);
    int32_t *arrays = malloc(4 * (len + 1) * sizeof *arrays);
    spm_bigram *heap = malloc(3 * (len + 1) * sizeof *heap);
    if (!buf || !arrays || !heap) {
        free(buf);
        free(arrays);
        free(heap);
        return VB_ERR_NOMEM;
    }
    size_t bl = 0;
    if (prefix_space && t->add_space_prefix) {
        memcpy(buf, SPACE_MARK, 3);
        bl = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + bl, SPACE_MARK, 3);
            bl += 3;
        } else {
            buf[bl++] = text[i];
        }
    }
    spm_state s = {buf, arrays, arrays + (len + 1), arrays + 2 * (len + 1), arrays + 3 * (len + 1),
                   heap, 0};
    /* one symbol per character (an invalid byte is a symbol of its own) */
    int32_t n = 0;
    for (size_t i = 0; i < bl;) {
        uint32_t cp;
        int l = vb_utf8_valid_len((const unsigned char *)buf + i, bl - i, &cp);
        if (l == 0) l = 1;
        s.start[n] = (int32_t)i;
        s.len[n] = l;
        s.prev[n] = n - 1;
        s.next[n] = -1;
        if (n > 0) s.next[n - 1] = n;
        n++;
        i += (size_t)l;
    }
    for (int32_t i = 0; i + 1 < n; i++) try_bigram(t, &s, i);
    while (s.nh > 0) {
        spm_bigram b = heap_pop(s.heap, &s.nh);
        int32_t l = b.left, r = s.next[l];
        if (s.len[l] == 0 || r < 0 || s.len[l] + s.len[r] != b.size) continue; /* stale */
        s.len[l] = b.size;
        s.len[r] = 0;
        s.next[l] = s.next[r];
        if (s.next[r] >= 0) s.prev[s.next[r]] = l;
        try_bigram(t, &s, s.prev[l]);
        try_bigram(t, &s, l);
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = s.next[i]) {
        int32_t id = vb_tok_find(t, buf + s.start[i], (size_t)s.len[i]);
        if (mergeable(t, id)) {
            vb_tok_emit(o, id);
            continue;
        }
        for (int32_t k = 0; k < s.len[i]; k++) { /* byte fallback */
            int32_t bt = t->byte_token[(unsigned char)buf[s.start[i] + k]];
            if (bt < 0) bt = t->unk;
            if (bt >= 0) vb_tok_emit(o, bt);
            if (bt == t->unk) break; /* one <unk> per unknown character */
        }
    }
    free(buf);
    free(arrays);
    free(heap);
    return VB_OK;
}
