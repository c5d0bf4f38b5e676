/* utf8.h - the one strict UTF-8 routine of vibee (RFC 3629 / Unicode 15 §3.9): decoding with
 * overlongs, surrogates, code points above U+10FFFF and stray continuation bytes rejected;
 * sanitizing (each maximal ill-formed subpart becomes U+FFFD, as Unicode recommends and as
 * Python's errors='replace' and WHATWG do); and a streaming form that holds back an incomplete
 * sequence until the next bytes complete or break it. Every text that leaves vibee goes
 * through here (tokenizer pre-tokenization, the detokenizer, JSON, SSE, CLI output). */
#ifndef VB_TEXT_UTF8_H
#define VB_TEXT_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "vibee.h"

/* Decode one sequence at s (n bytes available):
 *   > 0  a well-formed sequence of that many bytes; *cp receives the code point;
 *     0  the n bytes are a proper prefix of a well-formed sequence (more input may complete it);
 *   < 0  ill-formed: -k, where k >= 1 is the length of the maximal subpart to replace by one
 *        U+FFFD. n == 0 returns 0. cp may be NULL. */
int vb_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Length (1..4) of the well-formed sequence at s, 0 when the bytes there are not one
 * (ill-formed or truncated). */
static inline int vb_utf8_valid_len(const unsigned char *s, size_t n, uint32_t *cp) {
    int l = vb_utf8_decode(s, n, cp);
    return l > 0 ? l : 0;
}

/* Writes the UTF-8 encoding of cp (< 0x110000) to out (4 bytes room); returns its length. */
int vb_utf8_put(uint32_t cp, char *out);

#endif
