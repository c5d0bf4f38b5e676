/* utf8.c - strict UTF-8 decoding, sanitizing and streaming (see utf8.h): the one routine every
 * text leaving vibee goes through. The lead-byte table follows Unicode 15 Table 3-7
 * (well-formed byte sequences): the second byte's range depends on the lead byte. */
#include "utf8.h"

#include <string.h>

/* Sequence length and allowed range of the second byte, per lead byte class. */
typedef struct lead_class {
    uint8_t len;      /* 0: never a lead byte */
    uint8_t lo, hi;   /* range of the second byte */
} lead_class;

static lead_class lead_of(unsigned c) {
    if (c < 0x80) return (lead_class){1, 0, 0};
    if (c < 0xC2) return (lead_class){0, 0, 0}; /* continuation or overlong 2-byte lead */
    if (c < 0xE0) return (lead_class){2, 0x80, 0xBF};
    if (c == 0xE0) return (lead_class){3, 0xA0, 0xBF}; /* no overlongs */
    if (c == 0xED) return (lead_class){3, 0x80, 0x9F}; /* no surrogates */
    if (c < 0xF0) return (lead_class){3, 0x80, 0xBF};
    if (c == 0xF0) return (lead_class){4, 0x90, 0xBF}; /* no overlongs */
    if (c < 0xF4) return (lead_class){4, 0x80, 0xBF};
    if (c == 0xF4) return (lead_class){4, 0x80, 0x8F}; /* <= U+10FFFF */
    return (lead_class){0, 0, 0};
}

int vb_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    lead_class lc = lead_of(c);
    if (lc.len == 0) return -1;
    if (lc.len == 1) {
        if (cp) *cp = c;
        return 1;
    }
    /* bytes after the lead: the second in [lo, hi], the others in [80, BF] */
    for (size_t k = 1; k < lc.len; k++) {
        if (k >= n) return 0; /* a proper prefix so far */
        unsigned b = s[k];
        unsigned lo = k == 1 ? lc.lo : 0x80, hi = k == 1 ? lc.hi : 0xBF;
        if (b < lo || b > hi) return -(int)k; /* the maximal subpart ends before b */
    }
    uint32_t v = c & (0x7Fu >> lc.len);
    for (size_t k = 1; k < lc.len; k++) v = (v << 6) | (s[k] & 0x3Fu);
    if (cp) *cp = v;
    return lc.len;
}

int vb_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char k_replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* Sanitize s[n] into out (room for 3n bytes); returns the bytes written. With hold, an
 * incomplete sequence at the end is not written: *held receives its length. */
static size_t sanitize(const unsigned char *s, size_t n, char *out, int hold, size_t *held) {
    size_t w = 0, i = 0;
    if (held) *held = 0;
    while (i < n) {
        int l = vb_utf8_decode(s + i, n - i, NULL);
        if (l > 0) {
            memcpy(out + w, s + i, (size_t)l);
            w += (size_t)l;
            i += (size_t)l;
        } else if (l == 0 && hold) { /* incomplete at the end: wait for more bytes */
            *held = n - i;
            break;
        } else { /* ill-formed, or incomplete at the end of the text */
            memcpy(out + w, k_replacement, 3);
            w += 3;
            i += l < 0 ? (size_t)-l : n - i;
        }
    }
    return w;
}

size_t vb_utf8_sanitize(const char *s, size_t n, char *out, size_t out_cap) {
    const unsigned char *u = (const unsigned char *)s;
    size_t need = 0;
    for (size_t i = 0; i < n;) {
        int l = vb_utf8_decode(u + i, n - i, NULL);
        if (l > 0) {
            need += (size_t)l;
            i += (size_t)l;
        } else {
            need += 3;
            i += l < 0 ? (size_t)-l : n - i;
        }
    }
    if (out && out_cap > need) {
        sanitize(u, n, out, 0, NULL);
        out[need] = 0;
    } else if (out && out_cap) {
        out[0] = 0;
    }
    return need;
}

int vb_utf8_stream_push(vb_utf8_stream *st, const char *s, size_t n, bool final, char *out,
                        size_t out_cap) {
    if (!st || (!s && n) || !out || st->n_pending < 0 || st->n_pending > 3) return VB_ERR_ARG;
    if (n > ((size_t)INT32_MAX - 16) / 3 || out_cap < 3 * (n + 3) + 1) return VB_ERR_ARG;
    if (!s) s = ""; /* n == 0 */
    /* the held bytes first: complete them with the head of s, or replace them */
    size_t w = 0, used = 0;
    while (st->n_pending > 0) {
        unsigned char buf[4];
        size_t np = (size_t)st->n_pending, take = n - used < 4 - np ? n - used : 4 - np;
        memcpy(buf, st->pending, np);
        if (take) memcpy(buf + np, s + used, take);
        int l = vb_utf8_decode(buf, np + take, NULL);
        if (l == 0 && !final) { /* still incomplete (all of s was taken) */
            memcpy(st->pending, buf, np + take);
            st->n_pending = (int)(np + take);
            out[w] = 0;
            return (int)w;
        }
        if (l > 0) {
            memcpy(out + w, buf, (size_t)l);
            w += (size_t)l;
            used += (size_t)l - np;
            st->n_pending = 0;
        } else { /* replace the maximal subpart; bytes of it that came from s are consumed */
            size_t k = l < 0 ? (size_t)-l : np + take;
            memcpy(out + w, k_replacement, 3);
            w += 3;
            if (k >= np) {
                used += k - np;
                st->n_pending = 0;
            } else { /* k < np: the rest of the held bytes are examined again */
                memmove(st->pending, st->pending + k, np - k);
                st->n_pending = (int)(np - k);
            }
        }
    }
    size_t held = 0;
    w += sanitize((const unsigned char *)s + used, n - used, out + w, !final, &held);
    if (held) {
        memcpy(st->pending, s + n - held, held);
        st->n_pending = (int)held;
    }
    out[w] = 0;
    return (int)w;
}
