/* grammar.c - the GBNF parser (a subset of llama.cpp's format), its compilation to byte-level
 * rules, and the byte matcher (a set of pushdown stacks) of grammar.h.
 *
 * Accepted GBNF: rules `name ::= alternatives`; `#` comments; names [A-Za-z0-9_-]+; literals
 * "..." with escapes \n \r \t \\ \" \[ \] \- \/ \xHH \uHHHH \UHHHHHHHH; character classes
 * [...] / [^...] with ranges and the same escapes; `.` (any character); grouping ( ... );
 * alternation |; postfix * + ? {m} {m,} {m,n}. Newlines are whitespace: a rule ends where the
 * next `name ::=` begins. Characters are Unicode code points matched as their UTF-8 bytes. The
 * start rule is `root`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

/* ---------------------------------------------------------------------------------------------
 * Builder: rules as lists of alternatives while parsing
 * --------------------------------------------------------------------------------------------- */

typedef struct ivec {
    int32_t *v;
    int32_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int32_t cap = a->cap ? 2 * a->cap : 8;
        int32_t *v = realloc(a->v, sizeof(int32_t) * (size_t)cap);
        if (!v) return VB_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return VB_OK;
}

typedef struct brule {
    char *name;    /* NULL for generated rules */
    ivec *alts;    /* [n_alts] element sequences */
    int32_t n_alts, cap_alts;
    bool defined;
} brule;

typedef struct builder {
    brule *rules;
    int32_t n_rules, cap_rules;
    uint32_t (*sets)[8];
    int32_t n_sets, cap_sets;
    int64_t n_el;  /* elements so far (bound) */
    const char *s, *end, *text;
    char *err;
    size_t err_len;
    int depth;
    bool failed;
} builder;

static int fail(builder *b, const char *at, const char *fmt, const char *arg) {
    if (!b->failed) {
        int line = 1;
        for (const char *p = b->text; at && p < at && p < b->end; p++) line += *p == '\n';
        char msg[160];
        snprintf(msg, sizeof msg, fmt, arg ? arg : "");
        snprintf(b->err, b->err_len, "grammar line %d: %s", line, msg);
    }
    b->failed = true;
    return VB_ERR_ARG;
}

static int oom(builder *b) {
    if (!b->failed) snprintf(b->err, b->err_len, "grammar: out of memory");
    b->failed = true;
    return VB_ERR_NOMEM;
}

static int32_t new_rule(builder *b, const char *name, size_t len) {
    if (b->n_rules >= GR_MAX_RULES) {
        fail(b, NULL, "more than %s rules (generated ones included)", "65536");
        return -1;
    }
    if (b->n_rules == b->cap_rules) {
        int32_t cap = b->cap_rules ? 2 * b->cap_rules : 32;
        brule *r = realloc(b->rules, sizeof *r * (size_t)cap);
        if (!r) return oom(b), -1;
        b->rules = r;
        b->cap_rules = cap;
    }
    brule *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof *r);
    if (name) {
        r->name = malloc(len + 1);
        if (!r->name) return oom(b), -1;
        memcpy(r->name, name, len);
        r->name[len] = 0;
    }
    return b->n_rules++;
}

static int32_t find_rule(builder *b, const char *name, size_t len) {
    for (int32_t i = 0; i < b->n_rules; i++)
        if (b->rules[i].name && strlen(b->rules[i].name) == len &&
            memcmp(b->rules[i].name, name, len) == 0)
            return i;
    return new_rule(b, name, len);
}

/* Start a new (empty) alternative of rule r; returns it or NULL. */
static ivec *new_alt(builder *b, int32_t r) {
    brule *ru = &b->rules[r];
    if (ru->n_alts == ru->cap_alts) {
        int32_t cap = ru->cap_alts ? 2 * ru->cap_alts : 4;
        ivec *a = realloc(ru->alts, sizeof *a * (size_t)cap);
        if (!a) return oom(b), NULL;
        ru->alts = a;
        ru->cap_alts = cap;
    }
    ivec *a = &ru->alts[ru->n_alts++];
    memset(a, 0, sizeof *a);
    return a;
}

static int push_el(builder *b, ivec *a, int32_t el) {
    if (++b->n_el > GR_MAX_ELEMENTS) return fail(b, NULL, "grammar too large (over %s elements)", "1M");
    return ivec_push(a, el) == VB_OK ? VB_OK : oom(b);
}

/* The element of a byte set (deduplicated). */
static int32_t set_el(builder *b, const uint32_t set[8]) {
    for (int32_t i = 0; i < b->n_sets; i++)
        if (memcmp(b->sets[i], set, sizeof(uint32_t) * 8) == 0) return -i - 1;
    if (b->n_sets == b->cap_sets) {
        int32_t cap = b->cap_sets ? 2 * b->cap_sets : 16;
        uint32_t(*s)[8] = realloc(b->sets, sizeof *s * (size_t)cap);
        if (!s) return oom(b), GR_END;
        b->sets = s;
        b->cap_sets = cap;
    }
    memcpy(b->sets[b->n_sets], set, sizeof(uint32_t) * 8);
    b->n_sets++;
    return -b->n_sets;
}

static int32_t byte_range_el(builder *b, unsigned lo, unsigned hi) {
    uint32_t set[8] = {0};
    for (unsigned c = lo; c <= hi; c++) set[c >> 5] |= 1u << (c & 31);
    return set_el(b, set);
}

static int utf8_encode(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | (cp >> 6)); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Code point ranges -> UTF-8 byte-range sequences (each an alternative of rule r), the
 * one-byte ones merged into one set. */
typedef struct cp_class {
    uint32_t ascii[8]; /* one-byte members */
    builder *b;
    int32_t rule;      /* alternatives for the multi-byte sequences (-1: none yet) */
} cp_class;

static int class_add_seq(cp_class *c, uint32_t lo, uint32_t hi) {
    uint8_t a[4], z[4];
    int n = utf8_encode(lo, a);
    utf8_encode(hi, z);
    if (n == 1) {
        for (uint32_t x = lo; x <= hi; x++) c->ascii[x >> 5] |= 1u << (x & 31);
        return VB_OK;
    }
    if (c->rule < 0 && (c->rule = new_rule(c->b, NULL, 0)) < 0) return VB_ERR_ARG;
    ivec *alt = new_alt(c->b, c->rule);
    if (!alt) return VB_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int32_t el = byte_range_el(c->b, a[i], z[i]);
        if (el == GR_END || push_el(c->b, alt, el) != VB_OK) return VB_ERR_ARG;
    }
    return VB_OK;
}

/* Split [lo, hi] into ranges whose UTF-8 encodings are products of byte ranges. */
static int class_add_range(cp_class *c, uint32_t lo, uint32_t hi) {
    if (lo > hi) return VB_OK;
    if (lo <= 0xDFFF && hi >= 0xD800) { /* surrogates are not characters */
        int rc = lo < 0xD800 ? class_add_range(c, lo, 0xD7FF) : VB_OK;
        if (rc == VB_OK && hi > 0xDFFF) rc = class_add_range(c, 0xE000, hi);
        return rc;
    }
    static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= bounds[i] && hi > bounds[i]) {
            int rc = class_add_range(c, lo, bounds[i]);
            return rc == VB_OK ? class_add_range(c, bounds[i] + 1, hi) : rc;
        }
    if (hi < 0x80) return class_add_seq(c, lo, hi);
    for (int i = 1; i < 4; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                int rc = class_add_range(c, lo, lo | m);
                return rc == VB_OK ? class_add_range(c, (lo | m) + 1, hi) : rc;
            }
            if ((hi & m) != m) {
                int rc = class_add_range(c, lo, (hi & ~m) - 1);
                return rc == VB_OK ? class_add_range(c, hi & ~m, hi) : rc;
            }
        }
    }
    return class_add_seq(c, lo, hi);
}

/* Append the class (code point ranges [pairs of lo, hi], sorted or not) to alt: one set element
 * if every member is one byte, else a reference to a generated rule. */
static int emit_class(builder *b, ivec *alt, const uint32_t *ranges, int n_ranges, bool negate) {
    /* normalise: sort + merge, then complement if negated */
    uint32_t *r = malloc(sizeof(uint32_t) * 2 * ((size_t)n_ranges + 1));
    if (!r) return oom(b);
    if (n_ranges) memcpy(r, ranges, sizeof(uint32_t) * 2 * (size_t)n_ranges);
    for (int i = 1; i < n_ranges; i++) /* insertion sort by lo (classes are short) */
        for (int j = i; j > 0 && r[2 * j] < r[2 * j - 2]; j--) {
            uint32_t t0 = r[2 * j], t1 = r[2 * j + 1];
            r[2 * j] = r[2 * j - 2];
            r[2 * j + 1] = r[2 * j - 1];
            r[2 * j - 2] = t0;
            r[2 * j - 1] = t1;
        }
    int m = 0;
    for (int i = 0; i < n_ranges; i++) {
        if (m > 0 && r[2 * i] <= r[2 * m - 1] + 1) {
            if (r[2 * i + 1] > r[2 * m - 1]) r[2 * m - 1] = r[2 * i + 1];
        } else {
            r[2 * m] = r[2 * i];
            r[2 * m + 1] = r[2 * i + 1];
            m++;
        }
    }
    cp_class c = {{0}, b, -1};
    int rc = VB_OK;
    if (negate) {
        uint32_t next = 0;
        for (int i = 0; i < m && rc == VB_OK; i++) {
            if (r[2 * i] > next) rc = class_add_range(&c, next, r[2 * i] - 1);
            next = r[2 * i + 1] + 1;
        }
        if (rc == VB_OK && next <= 0x10FFFF) rc = class_add_range(&c, next, 0x10FFFF);
    } else {
        for (int i = 0; i < m && rc == VB_OK; i++) rc = class_add_range(&c, r[2 * i], r[2 * i + 1]);
    }
    free(r);
    if (rc != VB_OK || b->failed) return b->failed ? VB_ERR_ARG : rc;
    bool any_ascii = false;
    for (int i = 0; i < 8; i++) any_ascii |= c.ascii[i] != 0;
    if (c.rule < 0) {
        if (!any_ascii) return fail(b, b->s, "empty character class%s", NULL);
        int32_t el = set_el(b, c.ascii);
        return el == GR_END ? VB_ERR_NOMEM : push_el(b, alt, el);
    }
    if (any_ascii) {
        ivec *a = new_alt(b, c.rule);
        int32_t el = a ? set_el(b, c.ascii) : GR_END;
        if (el == GR_END || push_el(b, a, el) != VB_OK) return VB_ERR_ARG;
    }
    return push_el(b, alt, c.rule);
}

/* ---------------------------------------------------------------------------------------------
 * Parser
 * --------------------------------------------------------------------------------------------- */

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static void skip_ws(builder *b) {
    while (b->s < b->end) {
        char c = *b->s;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') b->s++;
        else if (c == '#')
            while (b->s < b->end && *b->s != '\n') b->s++;
        else break;
    }
}

static size_t name_len(const builder *b, const char *p) {
    size_t n = 0;
    while (p + n < b->end && is_name_char(p[n])) n++;
    return n;
}

/* At `name ::=`? (the start of the next rule) */
static bool at_rule_start(builder *b) {
    size_t n = name_len(b, b->s);
    if (n == 0) return false;
    const char *save = b->s;
    b->s += n;
    skip_ws(b);
    bool yes = b->end - b->s >= 3 && memcmp(b->s, "::=", 3) == 0;
    b->s = save;
    return yes;
}

static int hex_digits(builder *b, int n, uint32_t *cp) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        if (b->s >= b->end) return fail(b, b->s, "truncated escape%s", NULL);
        char c = *b->s++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return fail(b, b->s, "bad hex digit in escape%s", NULL);
        v = v * 16 + (uint32_t)d;
    }
    *cp = v;
    return VB_OK;
}

/* One character of a literal or class (escapes and UTF-8 decoded) into *cp. */
static int parse_char(builder *b, uint32_t *cp) {
    if (b->s >= b->end) return fail(b, b->s, "unexpected end of grammar%s", NULL);
    unsigned char c = (unsigned char)*b->s;
    if (c == '\\') {
        b->s++;
        if (b->s >= b->end) return fail(b, b->s, "truncated escape%s", NULL);
        char e = *b->s++;
        int rc = VB_OK;
        switch (e) {
        case 'n': *cp = '\n'; break;
        case 'r': *cp = '\r'; break;
        case 't': *cp = '\t'; break;
        case '\\': case '"': case '[': case ']': case '-': case '/': case '\'': case '^':
            *cp = (uint32_t)e;
            break;
        case 'x': rc = hex_digits(b, 2, cp); break;
        case 'u': rc = hex_digits(b, 4, cp); break;
        case 'U': rc = hex_digits(b, 8, cp); break;
        default: return fail(b, b->s, "unknown escape%s", NULL);
        }
        if (rc != VB_OK) return rc;
        if (*cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
            return fail(b, b->s, "escape is not a Unicode character%s", NULL);
        return VB_OK;
    }
    /* a UTF-8 sequence */
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || b->end - b->s < n) return fail(b, b->s, "invalid UTF-8 in grammar%s", NULL);
    uint32_t v = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int i = 1; i < n; i++) {
        unsigned char d = (unsigned char)b->s[i];
        if ((d & 0xC0) != 0x80) return fail(b, b->s, "invalid UTF-8 in grammar%s", NULL);
        v = (v << 6) | (d & 0x3Fu);
    }
    if (v > 0x10FFFF) return fail(b, b->s, "invalid UTF-8 in grammar%s", NULL);
    b->s += n;
    *cp = v;
    return VB_OK;
}

static int parse_alternates(builder *b, int32_t rule);

/* One item (without postfix) appended to a fresh element list *item. */
static int parse_item(builder *b, ivec *item) {
    char c = *b->s;
    if (c == '"') {
        b->s++;
        while (b->s < b->end && *b->s != '"') {
            uint32_t cp;
            if (parse_char(b, &cp) != VB_OK) return VB_ERR_ARG;
            uint8_t u[4];
            int n = utf8_encode(cp, u);
            for (int i = 0; i < n; i++) {
                int32_t el = byte_range_el(b, u[i], u[i]);
                if (el == GR_END || push_el(b, item, el) != VB_OK) return VB_ERR_ARG;
            }
        }
        if (b->s >= b->end) return fail(b, b->s, "unterminated literal%s", NULL);
        b->s++;
        return VB_OK;
    }
    if (c == '[') {
        b->s++;
        bool negate = b->s < b->end && *b->s == '^';
        if (negate) b->s++;
        uint32_t *ranges = NULL;
        int n = 0, cap = 0;
        while (b->s < b->end && *b->s != ']') {
            uint32_t lo, hi;
            if (parse_char(b, &lo) != VB_OK) { free(ranges); return VB_ERR_ARG; }
            hi = lo;
            if (b->end - b->s >= 2 && b->s[0] == '-' && b->s[1] != ']') {
                b->s++;
                if (parse_char(b, &hi) != VB_OK) { free(ranges); return VB_ERR_ARG; }
                if (hi < lo) { free(ranges); return fail(b, b->s, "range end below its start%s", NULL); }
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 8;
                uint32_t *r = realloc(ranges, sizeof(uint32_t) * 2 * (size_t)cap);
                if (!r) { free(ranges); return oom(b); }
                ranges = r;
            }
            ranges[2 * n] = lo;
            ranges[2 * n + 1] = hi;
            n++;
        }
        if (b->s >= b->end) { free(ranges); return fail(b, b->s, "unterminated character class%s", NULL); }
        b->s++;
        int rc = emit_class(b, item, ranges, n, negate);
        free(ranges);
        return rc;
    }
    if (c == '.') {
        b->s++;
        uint32_t all[2] = {0, 0x10FFFF};
        return emit_class(b, item, all, 1, false);
    }
    if (c == '(') {
        if (++b->depth > GR_MAX_NEST) return fail(b, b->s, "parentheses nested too deeply%s", NULL);
        b->s++;
        int32_t r = new_rule(b, NULL, 0);
        if (r < 0 || parse_alternates(b, r) != VB_OK) return VB_ERR_ARG;
        skip_ws(b);
        if (b->s >= b->end || *b->s != ')') return fail(b, b->s, "expected ')'%s", NULL);
        b->s++;
        b->depth--;
        return push_el(b, item, r);
    }
    size_t n = name_len(b, b->s);
    if (n == 0) return fail(b, b->s, "unexpected character '%s'", (char[2]){c, 0});
    int32_t r = find_rule(b, b->s, n);
    b->s += n;
    return r < 0 ? VB_ERR_ARG : push_el(b, item, r);
}

/* A rule holding the item as its only alternative (for postfix operators). */
static int32_t item_rule(builder *b, const ivec *item) {
    if (item->n == 1 && item->v[0] >= 0) return item->v[0];
    int32_t r = new_rule(b, NULL, 0);
    ivec *a = r >= 0 ? new_alt(b, r) : NULL;
    if (!a) return -1;
    for (int32_t i = 0; i < item->n; i++)
        if (push_el(b, a, item->v[i]) != VB_OK) return -1;
    return r;
}

/* R ::= X R | empty  (star) or R ::= X R | X  (plus); returns R. */
static int32_t repeat_rule(builder *b, int32_t x, bool plus) {
    int32_t r = new_rule(b, NULL, 0);
    if (r < 0) return -1;
    ivec *a = new_alt(b, r);
    if (!a || push_el(b, a, x) != VB_OK || push_el(b, a, r) != VB_OK) return -1;
    a = new_alt(b, r);
    if (!a || (plus && push_el(b, a, x) != VB_OK)) return -1;
    return r;
}

static int parse_uint(builder *b, int *v) {
    if (b->s >= b->end || *b->s < '0' || *b->s > '9') return fail(b, b->s, "expected a number%s", NULL);
    long x = 0;
    while (b->s < b->end && *b->s >= '0' && *b->s <= '9') {
        x = x * 10 + (*b->s++ - '0');
        if (x > GR_MAX_REPEAT) return fail(b, b->s, "repetition count over %s", "1000");
    }
    *v = (int)x;
    return VB_OK;
}

/* Append item with its postfix operator (if any) to alt. */
static int apply_postfix(builder *b, ivec *alt, ivec *item) {
    skip_ws(b);
    char c = b->s < b->end ? *b->s : 0;
    if (c != '*' && c != '+' && c != '?' && c != '{') {
        for (int32_t i = 0; i < item->n; i++)
            if (push_el(b, alt, item->v[i]) != VB_OK) return VB_ERR_ARG;
        return VB_OK;
    }
    b->s++;
    int32_t x = item_rule(b, item);
    if (x < 0) return VB_ERR_ARG;
    if (c == '*' || c == '+') {
        int32_t r = repeat_rule(b, x, c == '+');
        return r < 0 ? VB_ERR_ARG : push_el(b, alt, r);
    }
    if (c == '?') {
        int32_t r = new_rule(b, NULL, 0);
        ivec *a = r >= 0 ? new_alt(b, r) : NULL;
        if (!a || push_el(b, a, x) != VB_OK || !new_alt(b, r)) return VB_ERR_ARG;
        return push_el(b, alt, r);
    }
    /* {m}, {m,}, {m,n} */
    int m, n;
    skip_ws(b);
    if (parse_uint(b, &m) != VB_OK) return VB_ERR_ARG;
    skip_ws(b);
    bool open = false;
    n = m;
    if (b->s < b->end && *b->s == ',') {
        b->s++;
        skip_ws(b);
        if (b->s < b->end && *b->s == '}') open = true;
        else if (parse_uint(b, &n) != VB_OK) return VB_ERR_ARG;
        skip_ws(b);
    }
    if (b->s >= b->end || *b->s != '}') return fail(b, b->s, "expected '}'%s", NULL);
    b->s++;
    if (!open && n < m) return fail(b, b->s, "repetition {m,n} with n < m%s", NULL);
    for (int i = 0; i < m; i++)
        if (push_el(b, alt, x) != VB_OK) return VB_ERR_ARG;
    if (open) {
        int32_t r = repeat_rule(b, x, false);
        return r < 0 ? VB_ERR_ARG : push_el(b, alt, r);
    }
    /* n - m optional copies, nested: opt_k ::= x opt_{k-1} | empty */
    int32_t tail = -1;
    for (int i = 0; i < n - m; i++) {
        int32_t r = new_rule(b, NULL, 0);
        ivec *a = r >= 0 ? new_alt(b, r) : NULL;
        if (!a || push_el(b, a, x) != VB_OK || (tail >= 0 && push_el(b, a, tail) != VB_OK) ||
            !new_alt(b, r))
            return VB_ERR_ARG;
        tail = r;
    }
    return tail >= 0 ? push_el(b, alt, tail) : VB_OK;
}

static int parse_sequence(builder *b, ivec *alt) {
    for (;;) {
        skip_ws(b);
        if (b->s >= b->end) return VB_OK;
        char c = *b->s;
        if (c == '|' || c == ')') return VB_OK;
        if (at_rule_start(b)) return VB_OK;
        ivec item = {0};
        int rc = parse_item(b, &item);
        if (rc == VB_OK) rc = apply_postfix(b, alt, &item);
        free(item.v);
        if (rc != VB_OK) return rc;
    }
}

static int parse_alternates(builder *b, int32_t rule) {
    for (;;) {
        ivec *alt = new_alt(b, rule);
        if (!alt) return VB_ERR_NOMEM;
        /* parse into a local list: the rule's alternative array may move while parsing */
        ivec seq = {0};
        int rc = parse_sequence(b, &seq);
        alt = &b->rules[rule].alts[b->rules[rule].n_alts - 1];
        *alt = seq;
        if (rc != VB_OK) return rc;
        skip_ws(b);
        if (b->s < b->end && *b->s == '|') {
            b->s++;
            continue;
        }
        return VB_OK;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Checks and flattening
 * --------------------------------------------------------------------------------------------- */

/* Rule r can derive the empty string. */
static void compute_nullable(const builder *b, bool *nullable) {
    memset(nullable, 0, (size_t)b->n_rules);
    for (bool changed = true; changed;) {
        changed = false;
        for (int32_t r = 0; r < b->n_rules; r++) {
            if (nullable[r]) continue;
            for (int32_t a = 0; a < b->rules[r].n_alts && !nullable[r]; a++) {
                const ivec *al = &b->rules[r].alts[a];
                bool all = true;
                for (int32_t i = 0; i < al->n && all; i++) all = al->v[i] >= 0 && nullable[al->v[i]];
                if (all) nullable[r] = changed = true;
            }
        }
    }
}

/* Depth-first search for a cycle among "r can start with rule q" edges. color: 0 new, 1 on
 * the path, 2 done. Iterative (hostile grammars may chain many rules). */
static int32_t find_left_cycle(const builder *b, const bool *nullable) {
    int32_t n = b->n_rules;
    uint8_t *color = calloc((size_t)n, 1);
    int32_t *stack_r = malloc(sizeof(int32_t) * (size_t)n);
    int32_t *stack_a = malloc(sizeof(int32_t) * (size_t)n); /* next (alt, index) packed below */
    int32_t *stack_i = malloc(sizeof(int32_t) * (size_t)n);
    int32_t found = -2;
    if (!color || !stack_r || !stack_a || !stack_i) goto done;
    found = -1;
    for (int32_t s = 0; s < n && found < 0; s++) {
        if (color[s]) continue;
        int32_t sp = 0;
        stack_r[0] = s;
        stack_a[0] = 0;
        stack_i[0] = 0;
        color[s] = 1;
        while (sp >= 0 && found < 0) {
            int32_t r = stack_r[sp];
            const brule *ru = &b->rules[r];
            int32_t next = -1;
            /* advance the (alt, index) cursor to the next leftmost-reachable rule reference */
            while (stack_a[sp] < ru->n_alts) {
                const ivec *al = &ru->alts[stack_a[sp]];
                int32_t i = stack_i[sp];
                if (i < al->n && al->v[i] >= 0) {
                    next = al->v[i];
                    stack_i[sp] = nullable[next] ? i + 1 : al->n; /* after it only if nullable */
                    break;
                }
                stack_a[sp]++;
                stack_i[sp] = 0;
            }
            if (next < 0) {
                color[r] = 2;
                sp--;
                continue;
            }
            if (color[next] == 1) found = next;
            else if (color[next] == 0) {
                color[next] = 1;
                sp++;
                stack_r[sp] = next;
                stack_a[sp] = 0;
                stack_i[sp] = 0;
            }
        }
    }
done:
    free(color);
    free(stack_r);
    free(stack_a);
    free(stack_i);
    return found;
}

static void builder_free(builder *b) {
    for (int32_t r = 0; r < b->n_rules; r++) {
        for (int32_t a = 0; a < b->rules[r].n_alts; a++) free(b->rules[r].alts[a].v);
        free(b->rules[r].alts);
        free(b->rules[r].name);
    }
    free(b->rules);
    free(b->sets);
}

static int flatten(builder *b, int32_t root, vb_grammar **out) {
    vb_grammar *g = calloc(1, sizeof *g);
    if (!g) return VB_ERR_NOMEM;
    int64_t n_alt = 0, n_el = 0;
    for (int32_t r = 0; r < b->n_rules; r++) {
        n_alt += b->rules[r].n_alts;
        for (int32_t a = 0; a < b->rules[r].n_alts; a++) n_el += b->rules[r].alts[a].n + 1;
    }
    g->el = malloc(sizeof(int32_t) * (size_t)(n_el + 1));
    g->alt = malloc(sizeof(int32_t) * (size_t)(n_alt + 1));
    g->rule_alt = malloc(sizeof(int32_t) * (size_t)(b->n_rules + 1));
    g->sets = malloc(sizeof *g->sets * (size_t)(b->n_sets + 1));
    if (!g->el || !g->alt || !g->rule_alt || !g->sets) {
        vb_grammar_free(g);
        return VB_ERR_NOMEM;
    }
    int32_t ie = 0, ia = 0;
    for (int32_t r = 0; r < b->n_rules; r++) {
        g->rule_alt[r] = ia;
        for (int32_t a = 0; a < b->rules[r].n_alts; a++) {
            g->alt[ia++] = ie;
            const ivec *al = &b->rules[r].alts[a];
            for (int32_t i = 0; i < al->n; i++) g->el[ie++] = al->v[i];
            g->el[ie++] = GR_END;
        }
    }
    g->rule_alt[b->n_rules] = ia;
    g->n_el = ie;
    g->n_rules = b->n_rules;
    if (b->n_sets) memcpy(g->sets, b->sets, sizeof *g->sets * (size_t)b->n_sets);
    g->n_sets = b->n_sets;
    g->root = root;
    *out = g;
    return VB_OK;
}

int vb_grammar_parse(const char *text, size_t len, vb_grammar **out, char *err, size_t err_len) {
    char dummy[8];
    if (!err || err_len == 0) {
        err = dummy;
        err_len = sizeof dummy;
    }
    err[0] = 0;
    if (!out) return VB_ERR_ARG;
    *out = NULL;
    if (!text && len) return VB_ERR_ARG;
    if (len > GR_MAX_TEXT) {
        snprintf(err, err_len, "grammar too large (%zu bytes; at most %d)", len, GR_MAX_TEXT);
        return VB_ERR_ARG;
    }
    builder b = {0};
    b.s = b.text = text ? text : "";
    b.end = b.s + len;
    b.err = err;
    b.err_len = err_len;
    int rc = VB_OK;
    for (;;) {
        skip_ws(&b);
        if (b.s >= b.end) break;
        size_t n = name_len(&b, b.s);
        if (n == 0) {
            rc = fail(&b, b.s, "expected a rule name%s", NULL);
            break;
        }
        int32_t r = find_rule(&b, b.s, n);
        if (r < 0) { rc = VB_ERR_ARG; break; }
        if (b.rules[r].defined) {
            rc = fail(&b, b.s, "rule '%s' defined twice", b.rules[r].name);
            break;
        }
        b.rules[r].defined = true;
        b.s += n;
        skip_ws(&b);
        if (b.end - b.s < 3 || memcmp(b.s, "::=", 3) != 0) {
            rc = fail(&b, b.s, "expected '::=' after the rule name%s", NULL);
            break;
        }
        b.s += 3;
        if ((rc = parse_alternates(&b, r)) != VB_OK) break;
        skip_ws(&b);
        if (b.s < b.end && !at_rule_start(&b)) {
            rc = fail(&b, b.s, "unexpected '%s'", (char[2]){*b.s, 0});
            break;
        }
    }
    int32_t root = -1;
    for (int32_t r = 0; rc == VB_OK && r < b.n_rules; r++) {
        if (b.rules[r].name && !b.rules[r].defined) {
            snprintf(err, err_len, "grammar: rule '%s' is used but not defined", b.rules[r].name);
            rc = VB_ERR_ARG;
        }
        if (b.rules[r].name && strcmp(b.rules[r].name, "root") == 0) root = r;
    }
    if (rc == VB_OK && root < 0) {
        snprintf(err, err_len, "grammar: no rule 'root'");
        rc = VB_ERR_ARG;
    }
    if (rc == VB_OK) {
        bool *nullable = malloc((size_t)b.n_rules + 1);
        if (!nullable) rc = VB_ERR_NOMEM;
        else {
            compute_nullable(&b, nullable);
            int32_t cyc = find_left_cycle(&b, nullable);
            if (cyc == -2) rc = VB_ERR_NOMEM;
            else if (cyc >= 0) {
                /* name the user's rule if the cycle runs through a generated one */
                snprintf(err, err_len,
                         "grammar: left recursion through rule '%s' (a rule that can begin with "
                         "itself, or a repetition of something that can be empty)",
                         b.rules[cyc].name ? b.rules[cyc].name : "(a group or repetition)");
                rc = VB_ERR_ARG;
            }
            free(nullable);
        }
    }
    if (rc == VB_OK) rc = flatten(&b, root, out);
    if (rc == VB_ERR_NOMEM && !err[0]) snprintf(err, err_len, "grammar: out of memory");
    builder_free(&b);
    return rc;
}

void vb_grammar_free(vb_grammar *g) {
    if (!g) return;
    free(g->el);
    free(g->alt);
    free(g->rule_alt);
    free(g->sets);
    free(g);
}

vb_grammar *vb_grammar_clone(const vb_grammar *g) {
    if (!g) return NULL;
    vb_grammar *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *g;
    int32_t n_alt = g->rule_alt[g->n_rules];
    c->el = malloc(sizeof(int32_t) * (size_t)(g->n_el + 1));
    c->alt = malloc(sizeof(int32_t) * (size_t)(n_alt + 1));
    c->rule_alt = malloc(sizeof(int32_t) * (size_t)(g->n_rules + 1));
    c->sets = malloc(sizeof *c->sets * (size_t)(g->n_sets + 1));
    if (!c->el || !c->alt || !c->rule_alt || !c->sets) {
        vb_grammar_free(c);
        return NULL;
    }
    memcpy(c->el, g->el, sizeof(int32_t) * (size_t)g->n_el);
    memcpy(c->alt, g->alt, sizeof(int32_t) * (size_t)n_alt);
    memcpy(c->rule_alt, g->rule_alt, sizeof(int32_t) * (size_t)(g->n_rules + 1));
    memcpy(c->sets, g->sets, sizeof *c->sets * (size_t)g->n_sets);
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * Matcher: sets of stacks
 * --------------------------------------------------------------------------------------------- */

void vb_gstate_free(vb_gstate *s) {
    if (s->work) {
        vb_gstate_free(s->work);
        free(s->work);
    }
    free(s->data);
    free(s->hslot);
    memset(s, 0, sizeof *s);
}

static void gstate_clear(vb_gstate *s) {
    s->n_data = 0;
    s->n_stacks = 0;
    s->overflow = false;
    s->hlive = false;
}

static int gstate_reserve(vb_gstate *s, int32_t extra) {
    if (s->n_data + extra <= s->cap) return VB_OK;
    int32_t cap = s->cap ? s->cap : 64;
    while (cap < s->n_data + extra) cap *= 2;
    int32_t *d = realloc(s->data, sizeof(int32_t) * (size_t)cap);
    if (!d) return VB_ERR_NOMEM;
    s->data = d;
    s->cap = cap;
    return VB_OK;
}

int vb_gstate_copy(vb_gstate *dst, const vb_gstate *src) {
    gstate_clear(dst);
    if (gstate_reserve(dst, src->n_data) != VB_OK) return VB_ERR_NOMEM;
    if (src->n_data) memcpy(dst->data, src->data, sizeof(int32_t) * (size_t)src->n_data);
    dst->n_data = src->n_data;
    dst->n_stacks = src->n_stacks;
    dst->overflow = src->overflow;
    dst->hlive = false;
    return VB_OK;
}

static uint32_t stack_hash(const int32_t *frames, int32_t n) {
    uint32_t h = 2166136261u ^ (uint32_t)n;
    for (int32_t i = 0; i < n; i++) h = (h ^ (uint32_t)frames[i]) * 16777619u;
    return h;
}

/* Insert the stack at offset off into the hash index (it must not be there). */
static void hash_insert(vb_gstate *s, int32_t off) {
    uint32_t mask = (uint32_t)s->hcap - 1, i = stack_hash(s->data + off + 1, s->data[off]) & mask;
    while (s->hslot[i]) i = (i + 1) & mask;
    s->hslot[i] = off + 1;
}

/* Index every stack of s (a table of at least 4 slots per stack). */
static int hash_rebuild(vb_gstate *s) {
    int32_t cap = 64;
    while (cap < 4 * (s->n_stacks + 1)) cap *= 2;
    if (cap > s->hcap) {
        int32_t *h = realloc(s->hslot, sizeof(int32_t) * (size_t)cap);
        if (!h) return VB_ERR_NOMEM;
        s->hslot = h;
        s->hcap = cap;
    }
    memset(s->hslot, 0, sizeof(int32_t) * (size_t)s->hcap);
    for (int32_t off = 0; off < s->n_data; off += s->data[off] + 1) hash_insert(s, off);
    s->hlive = true;
    return VB_OK;
}

/* Add stack frames[0..n) to s unless it is there already: a linear check while the state is
 * small (most are), a hash index beyond. */
static int gstate_add(vb_gstate *s, const int32_t *frames, int32_t n) {
    if (s->n_stacks < 8) {
        for (int32_t off = 0; off < s->n_data; off += s->data[off] + 1)
            if (s->data[off] == n && (n == 0 || memcmp(s->data + off + 1, frames, sizeof(int32_t) * (size_t)n) == 0))
                return VB_OK;
    } else {
        if ((!s->hlive || 4 * (s->n_stacks + 1) > s->hcap) && hash_rebuild(s) != VB_OK)
            return VB_ERR_NOMEM;
        uint32_t mask = (uint32_t)s->hcap - 1, i = stack_hash(frames, n) & mask;
        for (; s->hslot[i]; i = (i + 1) & mask) {
            int32_t off = s->hslot[i] - 1;
            if (s->data[off] == n && (n == 0 || memcmp(s->data + off + 1, frames, sizeof(int32_t) * (size_t)n) == 0))
                return VB_OK;
        }
    }
    if (s->n_stacks >= GR_MAX_STACKS) {
        s->overflow = true;
        return VB_ERR_STATE;
    }
    if (gstate_reserve(s, n + 1) != VB_OK) return VB_ERR_NOMEM;
    int32_t off = s->n_data;
    s->data[off] = n;
    if (n) memcpy(s->data + off + 1, frames, sizeof(int32_t) * (size_t)n);
    s->n_data += n + 1;
    s->n_stacks++;
    if (s->hlive) hash_insert(s, off);
    return VB_OK;
}

/* Expand the stack frames[0..n) until its top is a byte set (or it is empty) and add every
 * result to out. Work list of partial stacks in `work` (a scratch state). Terminates: no left
 * recursion, so every chain of expansions without consuming input is finite; stacks deeper
 * than GR_MAX_DEPTH are dropped (the grammar then does not allow that much nesting). */
static int expand(const vb_grammar *g, const int32_t *frames, int32_t n, vb_gstate *out,
                  vb_gstate *work) {
    /* the work list is a LIFO of stacks stored as [frames.., len] */
    int32_t st[GR_MAX_DEPTH + 2];
    if (n > GR_MAX_DEPTH) return VB_OK;
    gstate_clear(work);
    if (gstate_reserve(work, n + 1) != VB_OK) return VB_ERR_NOMEM;
    memcpy(work->data, frames, sizeof(int32_t) * (size_t)n);
    work->data[n] = n;
    work->n_data = n + 1;
    int64_t budget = 64 * GR_MAX_STACKS; /* expansions of one call */
    while (work->n_data > 0) {
        int32_t len = work->data[work->n_data - 1];
        work->n_data -= len + 1;
        memcpy(st, work->data + work->n_data, sizeof(int32_t) * (size_t)len);
        if (len == 0 || g->el[st[len - 1]] < 0) {
            int rc = gstate_add(out, st, len);
            if (rc != VB_OK) return rc;
            continue;
        }
        if (--budget < 0) {
            out->overflow = true;
            return VB_ERR_STATE;
        }
        int32_t p = st[len - 1], r = g->el[p];
        for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
            int32_t k = len - 1;
            if (g->el[p + 1] != GR_END) st[k++] = p + 1; /* the continuation after r */
            if (g->el[g->alt[a]] != GR_END) st[k++] = g->alt[a];
            if (k <= GR_MAX_DEPTH) {
                if (gstate_reserve(work, k + 1) != VB_OK) return VB_ERR_NOMEM;
                memcpy(work->data + work->n_data, st, sizeof(int32_t) * (size_t)k);
                work->data[work->n_data + k] = k;
                work->n_data += k + 1;
            }
            st[len - 1] = p; /* restore for the next alternative */
        }
    }
    return VB_OK;
}

int vb_gstate_init(const vb_grammar *g, vb_gstate *s) {
    gstate_clear(s);
    /* a virtual frame for `root`: the root's alternatives, each as a stack */
    if (!s->work && !(s->work = calloc(1, sizeof *s->work))) return VB_ERR_NOMEM;
    int rc = VB_OK;
    for (int32_t a = g->rule_alt[g->root]; a < g->rule_alt[g->root + 1] && rc == VB_OK; a++) {
        int32_t p = g->alt[a];
        rc = g->el[p] == GR_END ? gstate_add(s, NULL, 0) : expand(g, &p, 1, s, s->work);
    }
    return rc;
}

int vb_gstate_accept(const vb_grammar *g, const vb_gstate *in, uint8_t byte, vb_gstate *out) {
    gstate_clear(out);
    if (in->overflow) {
        out->overflow = true;
        return VB_ERR_STATE;
    }
    if (!out->work && !(out->work = calloc(1, sizeof *out->work))) return VB_ERR_NOMEM;
    int rc = VB_OK;
    for (int32_t off = 0; off < in->n_data && rc == VB_OK; off += in->data[off] + 1) {
        int32_t n = in->data[off];
        if (n == 0) continue;
        const int32_t *st = in->data + off + 1;
        int32_t p = st[n - 1];
        int32_t set = -g->el[p] - 1;
        if (!(g->sets[set][byte >> 5] >> (byte & 31) & 1u)) continue;
        /* pop the set; push its continuation */
        int32_t nx[GR_MAX_DEPTH + 1];
        memcpy(nx, st, sizeof(int32_t) * (size_t)(n - 1));
        int32_t k = n - 1;
        if (g->el[p + 1] != GR_END) nx[k++] = p + 1;
        rc = expand(g, nx, k, out, out->work);
    }
    return rc;
}

bool vb_gstate_complete(const vb_gstate *s) {
    for (int32_t off = 0; off < s->n_data; off += s->data[off] + 1)
        if (s->data[off] == 0) return true;
    return false;
}

static int cmp_stack(const int32_t *a, const int32_t *b) {
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    for (int32_t i = 1; i <= a[0]; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

void vb_gstate_canonical(vb_gstate *s) {
    if (s->n_stacks < 2) return;
    /* insertion sort of stack offsets, then rewrite */
    int32_t *offs = malloc(sizeof(int32_t) * (size_t)s->n_stacks);
    int32_t *tmp = malloc(sizeof(int32_t) * (size_t)s->n_data);
    if (!offs || !tmp) {
        free(offs);
        free(tmp);
        return; /* still a valid state, only not canonical */
    }
    int32_t n = 0;
    for (int32_t off = 0; off < s->n_data; off += s->data[off] + 1) {
        int32_t j = n++;
        while (j > 0 && cmp_stack(s->data + offs[j - 1], s->data + off) > 0) {
            offs[j] = offs[j - 1];
            j--;
        }
        offs[j] = off;
    }
    int32_t w = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t len = s->data[offs[i]] + 1;
        memcpy(tmp + w, s->data + offs[i], sizeof(int32_t) * (size_t)len);
        w += len;
    }
    memcpy(s->data, tmp, sizeof(int32_t) * (size_t)w);
    s->hlive = false;
    free(offs);
    free(tmp);
}
