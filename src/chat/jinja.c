/* jinja.c - the Jinja2 subset interpreter of jinja.h: a splitter (template text vs. tags, with
 * Jinja's whitespace control, trim_blocks and lstrip_blocks), an expression tokenizer, a
 * recursive-descent parser following Jinja2's grammar and precedence (parser.py: ternary, or,
 * and, not, comparisons and `in`, + -, ~, * / // %, **, unary, primary, postfix, filters and
 * `is` tests), and a tree-walking renderer over arena-allocated values with Python semantics
 * (truthiness, equality, slicing, repr). Strings carry a per-byte mask: 1 for bytes that came
 * from the caller's data, 0 for template text. All allocation goes through arenas with a cap;
 * steps, time, depth and output are bounded. */
#include "jinja.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../text/utf8.h"
#include "vibee.h"

/* ---------------------------------------------------------------------------------------
 * Arena
 * --------------------------------------------------------------------------------------- */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

typedef struct arena {
    arena_block *head;
    size_t total, limit;
} arena;

static void arena_free(arena *a) {
    arena_block *b = a->head;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* NULL when out of memory or over the limit. */
static void *arena_alloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->total + cap > a->limit) return NULL;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* ---------------------------------------------------------------------------------------
 * Values
 * --------------------------------------------------------------------------------------- */

enum vkind { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_FUNC, V_MACRO };

typedef struct val val;
struct val {
    int kind;
    union {
        int b;
        int64_t i;
        double f;
        struct { const char *s; const uint8_t *m; size_t n; } str; /* m NULL: all template text */
        struct { val **items; size_t n; bool tuple; } list;
        struct { val **keys, **vals; size_t n, cap; bool ns; } dict;
        int func; /* builtin id */
        struct { struct node *def; struct scope *closure; } macro; /* {% macro %} and where it was defined */
    } u;
};

/* ---------------------------------------------------------------------------------------
 * AST
 * --------------------------------------------------------------------------------------- */

enum nkind {
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE, N_MACRO,
    /* expressions */
    N_LIT, N_NAME, N_LIST, N_DICT, N_TUPLE, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER, N_TEST,
    N_BINOP, N_NOT, N_NEG, N_AND, N_OR, N_COND,
};

enum binop { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CAT, OP_EQ, OP_NE, OP_LT,
             OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN };

typedef struct node node;
struct node {
    int kind, line, op;
    node *a, *b, *c;       /* children (meaning per kind) */
    node **list;           /* statements of a body / items / args */
    int n;
    node **list2;          /* else body / kwarg values */
    int n2;
    const char **names;    /* kwarg names / for targets */
    int n_names;
    const char *name;      /* identifier, attribute, filter, test; set: variable */
    const char *attr;      /* set ns.attr */
    val *lit;
    bool negate;           /* `is not` */
};

struct vb_jinja {
    arena mem;
    node **body;
    int n;
    vb_jinja_limits lim;
};

vb_jinja_limits vb_jinja_default_limits(void) {
    vb_jinja_limits l = {1 << 20, 16u << 20, 256u << 20, 50000000, 5.0, 256};
    return l;
}

/* ---------------------------------------------------------------------------------------
 * Errors (parse and render both longjmp to their entry point)
 * --------------------------------------------------------------------------------------- */

typedef struct errctx {
    jmp_buf jb;
    char *err;
    size_t err_len;
    int status;
} errctx;

static _Noreturn void fail(errctx *e, int status, const char *fmt, ...) {
    if (e->err && e->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err, e->err_len, fmt, ap);
        va_end(ap);
    }
    e->status = status;
    longjmp(e->jb, 1);
}

static void *xalloc(arena *a, errctx *e, size_t n) {
    void *p = arena_alloc(a, n);
    if (!p) fail(e, VB_ERR_NOMEM, "chat template: out of memory (limit %zu MiB)", a->limit >> 20);
    memset(p, 0, n);
    return p;
}

/* ---------------------------------------------------------------------------------------
 * Tokenizer of tag contents
 * --------------------------------------------------------------------------------------- */

enum tkind { T_END, T_NAME, T_INT, T_FLOAT, T_STR, T_OP };

typedef struct tok {
    int kind, line;
    const char *s; /* NAME/OP: text; STR: decoded */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct parser {
    errctx *e;
    arena *mem;
    const vb_jinja_limits *lim;
    tok *t;     /* tokens of the current tag */
    int nt, pos;
    int depth;
    bool json;  /* parsing JSON data: null allowed, strings marked as data */
} parser;

static bool tok_is(const tok *t, int kind, const char *s) {
    return t->kind == kind && strlen(s) == t->n && memcmp(t->s, s, t->n) == 0;
}

/* Decode a quoted string with Python / JSON escapes. */
static char *decode_string(parser *p, const char *s, size_t n, int line, size_t *out_n) {
    char *o = xalloc(p->mem, p->e, n + 1);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[w++] = s[i];
            continue;
        }
        char c = s[++i];
        switch (c) {
        case 'n': o[w++] = '\n'; break;
        case 't': o[w++] = '\t'; break;
        case 'r': o[w++] = '\r'; break;
        case 'b': o[w++] = '\b'; break;
        case 'f': o[w++] = '\f'; break;
        case '0': o[w++] = '\0'; break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u':
        case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            if (i + (size_t)nd >= n) fail(p->e, VB_ERR_FORMAT, "line %d: bad \\%c escape", line, c);
            uint32_t cp = 0;
            for (int k = 1; k <= nd; k++) {
                char h = s[i + (size_t)k];
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) fail(p->e, VB_ERR_FORMAT, "line %d: bad \\%c escape", line, c);
                cp = cp * 16 + (uint32_t)d;
            }
            i += (size_t)nd;
            /* a JSON surrogate pair */
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
                uint32_t lo = 0;
                int ok = 1;
                for (int k = 3; k <= 6; k++) {
                    char h = s[i + (size_t)k];
                    int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0) ok = 0;
                    lo = lo * 16 + (uint32_t)(d < 0 ? 0 : d);
                }
                if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
            w += (size_t)vb_utf8_put(cp, o + w);
            break;
        }
        default: /* \\ \' \" \/ and unknown escapes keep the character (Python keeps the backslash) */
            if (c == '\\' || c == '\'' || c == '"' || c == '/') o[w++] = c;
            else {
                o[w++] = '\\';
                o[w++] = c;
            }
        }
    }
    o[w] = 0;
    *out_n = w;
    return o;
}

static const char *k_ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                              ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};

/* Tokenize s[n] into p->t. */
static void tokenize(parser *p, const char *s, size_t n, int line) {
    int cap = 16;
    p->t = xalloc(p->mem, p->e, (size_t)cap * sizeof *p->t);
    p->nt = 0;
    p->pos = 0;
    size_t i = 0;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) {
            if (s[i] == '\n') line++;
            i++;
        }
        if (p->nt + 1 >= cap) {
            tok *nt = xalloc(p->mem, p->e, (size_t)cap * 2 * sizeof *nt);
            memcpy(nt, p->t, (size_t)cap * sizeof *nt);
            p->t = nt;
            cap *= 2;
        }
        tok *t = &p->t[p->nt];
        t->line = line;
        if (i >= n) {
            t->kind = T_END;
            t->s = "";
            t->n = 0;
            return;
        }
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            size_t j = i;
            while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_' ||
                             (s[j] >= '0' && s[j] <= '9')))
                j++;
            t->kind = T_NAME;
            t->s = s + i;
            t->n = j - i;
            i = j;
        } else if (c >= '0' && c <= '9') {
            size_t j = i;
            bool fl = false;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '_')) j++;
            if (j + 1 < n && s[j] == '.' && s[j + 1] >= '0' && s[j + 1] <= '9') {
                fl = true;
                j++;
                while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (k < n && s[k] >= '0' && s[k] <= '9') {
                    fl = true;
                    j = k;
                    while (j < n && s[j] >= '0' && s[j] <= '9') j++;
                }
            }
            char buf[64];
            size_t m = 0;
            for (size_t k = i; k < j && m + 1 < sizeof buf; k++)
                if (s[k] != '_') buf[m++] = s[k];
            buf[m] = 0;
            if (fl) {
                t->kind = T_FLOAT;
                t->f = strtod(buf, NULL);
            } else {
                t->kind = T_INT;
                t->i = strtoll(buf, NULL, 10);
            }
            i = j;
        } else if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c) {
                if (s[j] == '\\') j++;
                if (j < n && s[j] == '\n') line++;
                j++;
            }
            if (j >= n) fail(p->e, VB_ERR_FORMAT, "line %d: unterminated string", t->line);
            t->kind = T_STR;
            t->s = decode_string(p, s + i + 1, j - i - 1, t->line, &t->n);
            i = j + 1;
        } else {
            size_t k;
            for (k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
                size_t l = strlen(k_ops[k]);
                if (i + l <= n && memcmp(s + i, k_ops[k], l) == 0) break;
            }
            if (k == sizeof k_ops / sizeof k_ops[0])
                fail(p->e, VB_ERR_FORMAT, "line %d: unexpected character '%c'", line, c);
            t->kind = T_OP;
            t->s = k_ops[k];
            t->n = strlen(k_ops[k]);
            i += t->n;
        }
        p->nt++;
    }
}

/* ---------------------------------------------------------------------------------------
 * Expression parser
 * --------------------------------------------------------------------------------------- */

static tok *peek(parser *p) { return &p->t[p->pos]; }
static tok *next(parser *p) {
    tok *t = &p->t[p->pos];
    if (t->kind != T_END) p->pos++;
    return t;
}
static bool accept(parser *p, int kind, const char *s) {
    if (tok_is(peek(p), kind, s)) {
        p->pos++;
        return true;
    }
    return false;
}
static void expect(parser *p, int kind, const char *s) {
    if (!accept(p, kind, s)) {
        tok *t = peek(p);
        fail(p->e, VB_ERR_FORMAT, "line %d: expected '%s', found '%.*s'", t->line, s,
             t->kind == T_END ? 5 : (int)(t->n > 40 ? 40 : t->n), t->kind == T_END ? "(end)" : t->s);
    }
}

static node *mk(parser *p, int kind) {
    node *n = xalloc(p->mem, p->e, sizeof *n);
    n->kind = kind;
    n->line = p->t ? peek(p)->line : 0; /* text chunks come before any tag was tokenized */
    return n;
}

static val *mkval(arena *a, errctx *e, int kind) {
    val *v = xalloc(a, e, sizeof *v);
    v->kind = kind;
    return v;
}

static const char *dup_name(parser *p, const tok *t) {
    char *s = xalloc(p->mem, p->e, t->n + 1);
    memcpy(s, t->s, t->n);
    return s;
}

/* Growable node array in the arena. */
typedef struct nvec {
    node **v;
    int n, cap;
} nvec;
static void nvec_push(parser *p, nvec *a, node *x) {
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 8;
        node **nv = xalloc(p->mem, p->e, (size_t)cap * sizeof *nv);
        if (a->n) memcpy(nv, a->v, (size_t)a->n * sizeof *nv);
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static node *parse_expr(parser *p);
static node *parse_or(parser *p);
static node *parse_unary(parser *p, bool with_filter);
static node *parse_primary(parser *p);
static node *parse_postfix(parser *p, node *n);

static void enter(parser *p) {
    if (++p->depth > p->lim->max_depth)
        fail(p->e, VB_ERR_ARG, "line %d: expression nested deeper than %d", peek(p)->line, p->lim->max_depth);
}

/* Call arguments after '(' : positional into list, keyword into names/list2. */
static void parse_args(parser *p, node *call) {
    nvec pos = {0}, kw = {0};
    const char **names = NULL;
    int nn = 0, cap = 0;
    while (!accept(p, T_OP, ")")) {
        if (pos.n + kw.n > 0) expect(p, T_OP, ",");
        if (accept(p, T_OP, ")")) break; /* trailing comma */
        tok *t = peek(p);
        if (t->kind == T_NAME && tok_is(&p->t[p->pos + 1 < p->nt ? p->pos + 1 : p->pos], T_OP, "=")) {
            p->pos += 2;
            if (nn == cap) {
                cap = cap ? cap * 2 : 4;
                const char **nv = xalloc(p->mem, p->e, (size_t)cap * sizeof *nv);
                if (nn) memcpy(nv, names, (size_t)nn * sizeof *nv);
                names = nv;
            }
            names[nn++] = dup_name(p, t);
            nvec_push(p, &kw, parse_expr(p));
        } else {
            if (kw.n) fail(p->e, VB_ERR_FORMAT, "line %d: positional argument after keyword argument", t->line);
            nvec_push(p, &pos, parse_expr(p));
        }
    }
    call->list = pos.v;
    call->n = pos.n;
    call->list2 = kw.v;
    call->n2 = kw.n;
    call->names = names;
    call->n_names = nn;
}

static node *parse_filter_expr(parser *p, node *n) {
    for (;;) {
        if (accept(p, T_OP, "|")) {
            tok *t = next(p);
            if (t->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected a filter name after '|'", t->line);
            node *f = mk(p, N_FILTER);
            f->name = dup_name(p, t);
            /* dotted filter names do not occur in chat templates */
            f->a = n;
            if (accept(p, T_OP, "(")) parse_args(p, f);
            n = f;
        } else if (tok_is(peek(p), T_NAME, "is")) {
            next(p);
            node *f = mk(p, N_TEST);
            f->negate = accept(p, T_NAME, "not");
            tok *t = next(p);
            if (t->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected a test name after 'is'", t->line);
            f->name = dup_name(p, t);
            f->a = n;
            tok *u = peek(p);
            if (accept(p, T_OP, "(")) {
                parse_args(p, f);
            } else if ((u->kind == T_NAME || u->kind == T_STR || u->kind == T_INT || u->kind == T_FLOAT ||
                        tok_is(u, T_OP, "[") || tok_is(u, T_OP, "{")) &&
                       !tok_is(u, T_NAME, "else") && !tok_is(u, T_NAME, "or") && !tok_is(u, T_NAME, "and") &&
                       !tok_is(u, T_NAME, "if")) {
                node *arg = parse_postfix(p, parse_primary(p));
                f->list = xalloc(p->mem, p->e, sizeof *f->list);
                f->list[0] = arg;
                f->n = 1;
            }
            n = f;
        } else if (tok_is(peek(p), T_OP, "(")) {
            next(p);
            node *c = mk(p, N_CALL);
            c->a = n;
            parse_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static node *parse_postfix(parser *p, node *n) {
    for (;;) {
        if (accept(p, T_OP, ".")) {
            tok *t = next(p);
            if (t->kind == T_INT) { /* x.0 is x[0] */
                node *ix = mk(p, N_INDEX);
                ix->a = n;
                ix->b = mk(p, N_LIT);
                ix->b->lit = mkval(p->mem, p->e, V_INT);
                ix->b->lit->u.i = t->i;
                n = ix;
                continue;
            }
            if (t->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected an attribute name after '.'", t->line);
            node *a = mk(p, N_ATTR);
            a->a = n;
            a->name = dup_name(p, t);
            n = a;
        } else if (accept(p, T_OP, "[")) {
            node *lo = NULL, *hi = NULL, *st = NULL;
            bool slice = false;
            if (!tok_is(peek(p), T_OP, ":")) lo = parse_expr(p);
            if (accept(p, T_OP, ":")) {
                slice = true;
                if (!tok_is(peek(p), T_OP, "]") && !tok_is(peek(p), T_OP, ":")) hi = parse_expr(p);
                if (accept(p, T_OP, ":") && !tok_is(peek(p), T_OP, "]")) st = parse_expr(p);
            }
            expect(p, T_OP, "]");
            node *ix = mk(p, slice ? N_SLICE : N_INDEX);
            ix->a = n;
            ix->b = lo;
            ix->c = hi;
            if (slice) {
                ix->list = xalloc(p->mem, p->e, sizeof *ix->list);
                ix->list[0] = st;
            }
            if (!slice && !lo) fail(p->e, VB_ERR_FORMAT, "line %d: empty subscript", ix->line);
            n = ix;
        } else if (accept(p, T_OP, "(")) {
            node *c = mk(p, N_CALL);
            c->a = n;
            parse_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static node *parse_primary(parser *p) {
    enter(p);
    tok *t = next(p);
    node *n;
    if (t->kind == T_NAME) {
        static const struct { const char *s; int kind, b; } lits[] = {
            {"true", V_BOOL, 1}, {"True", V_BOOL, 1}, {"false", V_BOOL, 0}, {"False", V_BOOL, 0},
            {"none", V_NONE, 0}, {"None", V_NONE, 0}};
        for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++)
            if (tok_is(t, T_NAME, lits[k].s)) {
                n = mk(p, N_LIT);
                n->lit = mkval(p->mem, p->e, lits[k].kind);
                n->lit->u.b = lits[k].b;
                p->depth--;
                return n;
            }
        if (p->json && tok_is(t, T_NAME, "null")) {
            n = mk(p, N_LIT);
            n->lit = mkval(p->mem, p->e, V_NONE);
            p->depth--;
            return n;
        }
        n = mk(p, N_NAME);
        n->name = dup_name(p, t);
    } else if (t->kind == T_STR) {
        /* adjacent string literals are concatenated */
        size_t total = t->n;
        int k = p->pos;
        while (p->t[k].kind == T_STR) total += p->t[k++].n;
        char *s = xalloc(p->mem, p->e, total + 1);
        memcpy(s, t->s, t->n);
        size_t w = t->n;
        while (peek(p)->kind == T_STR) {
            tok *u = next(p);
            memcpy(s + w, u->s, u->n);
            w += u->n;
        }
        n = mk(p, N_LIT);
        n->lit = mkval(p->mem, p->e, V_STR);
        n->lit->u.str.s = s;
        n->lit->u.str.n = w;
        if (p->json && w) { /* data strings are marked as such */
            uint8_t *m = xalloc(p->mem, p->e, w);
            memset(m, 1, w);
            n->lit->u.str.m = m;
        }
    } else if (t->kind == T_INT || t->kind == T_FLOAT) {
        n = mk(p, N_LIT);
        n->lit = mkval(p->mem, p->e, t->kind == T_INT ? V_INT : V_FLOAT);
        if (t->kind == T_INT) n->lit->u.i = t->i;
        else n->lit->u.f = t->f;
    } else if (tok_is(t, T_OP, "-") && p->json) { /* negative JSON number */
        n = mk(p, N_NEG);
        n->a = parse_primary(p);
    } else if (tok_is(t, T_OP, "(")) {
        if (accept(p, T_OP, ")")) {
            n = mk(p, N_TUPLE);
        } else {
            node *first = parse_expr(p);
            if (accept(p, T_OP, ")")) {
                n = first;
            } else {
                nvec v = {0};
                nvec_push(p, &v, first);
                while (accept(p, T_OP, ",")) {
                    if (tok_is(peek(p), T_OP, ")")) break;
                    nvec_push(p, &v, parse_expr(p));
                }
                expect(p, T_OP, ")");
                n = mk(p, N_TUPLE);
                n->list = v.v;
                n->n = v.n;
            }
        }
    } else if (tok_is(t, T_OP, "[")) {
        nvec v = {0};
        while (!accept(p, T_OP, "]")) {
            if (v.n) expect(p, T_OP, ",");
            if (accept(p, T_OP, "]")) break;
            nvec_push(p, &v, parse_expr(p));
        }
        n = mk(p, N_LIST);
        n->list = v.v;
        n->n = v.n;
    } else if (tok_is(t, T_OP, "{")) {
        nvec v = {0};
        while (!accept(p, T_OP, "}")) {
            if (v.n) expect(p, T_OP, ",");
            if (accept(p, T_OP, "}")) break;
            nvec_push(p, &v, parse_expr(p));
            expect(p, T_OP, ":");
            nvec_push(p, &v, parse_expr(p));
        }
        n = mk(p, N_DICT);
        n->list = v.v;
        n->n = v.n;
    } else {
        fail(p->e, VB_ERR_FORMAT, "line %d: unexpected '%.*s' in expression", t->line,
             t->kind == T_END ? 5 : (int)(t->n > 40 ? 40 : t->n), t->kind == T_END ? "(end)" : t->s);
    }
    p->depth--;
    return n;
}

static node *parse_unary(parser *p, bool with_filter) {
    enter(p);
    node *n;
    if (accept(p, T_OP, "-")) {
        n = mk(p, N_NEG);
        n->a = parse_unary(p, false);
    } else if (accept(p, T_OP, "+")) {
        n = parse_unary(p, false);
    } else {
        n = parse_postfix(p, parse_primary(p));
    }
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static node *binop(parser *p, int op, node *a, node *b) {
    node *n = mk(p, N_BINOP);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static node *parse_pow(parser *p) {
    node *n = parse_unary(p, true);
    while (accept(p, T_OP, "**")) n = binop(p, OP_POW, n, parse_unary(p, true));
    return n;
}
static node *parse_math2(parser *p) {
    node *n = parse_pow(p);
    for (;;) {
        if (accept(p, T_OP, "*")) n = binop(p, OP_MUL, n, parse_pow(p));
        else if (accept(p, T_OP, "/")) n = binop(p, OP_DIV, n, parse_pow(p));
        else if (accept(p, T_OP, "//")) n = binop(p, OP_FDIV, n, parse_pow(p));
        else if (accept(p, T_OP, "%")) n = binop(p, OP_MOD, n, parse_pow(p));
        else return n;
    }
}
static node *parse_concat(parser *p) {
    node *n = parse_math2(p);
    while (accept(p, T_OP, "~")) n = binop(p, OP_CAT, n, parse_math2(p));
    return n;
}
static node *parse_math1(parser *p) {
    node *n = parse_concat(p);
    for (;;) {
        if (accept(p, T_OP, "+")) n = binop(p, OP_ADD, n, parse_concat(p));
        else if (accept(p, T_OP, "-")) n = binop(p, OP_SUB, n, parse_concat(p));
        else return n;
    }
}
static node *parse_compare(parser *p) {
    node *n = parse_math1(p);
    static const struct { const char *s; int op; } ops[] = {{"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE},
                                                            {">=", OP_GE}, {"<", OP_LT},  {">", OP_GT}};
    for (;;) {
        int op = -1;
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
            if (accept(p, T_OP, ops[k].s)) {
                op = ops[k].op;
                break;
            }
        if (op < 0) {
            if (accept(p, T_NAME, "in")) op = OP_IN;
            else if (tok_is(peek(p), T_NAME, "not") && p->pos + 1 < p->nt && tok_is(&p->t[p->pos + 1], T_NAME, "in")) {
                p->pos += 2;
                op = OP_NOTIN;
            } else {
                return n;
            }
        }
        n = binop(p, op, n, parse_math1(p));
    }
}
static node *parse_not(parser *p) {
    if (accept(p, T_NAME, "not")) {
        enter(p);
        node *n = mk(p, N_NOT);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}
static node *parse_and(parser *p) {
    node *n = parse_not(p);
    while (accept(p, T_NAME, "and")) {
        node *x = mk(p, N_AND);
        x->a = n;
        x->b = parse_not(p);
        n = x;
    }
    return n;
}
static node *parse_or(parser *p) {
    node *n = parse_and(p);
    while (accept(p, T_NAME, "or")) {
        node *x = mk(p, N_OR);
        x->a = n;
        x->b = parse_and(p);
        n = x;
    }
    return n;
}
static node *parse_expr(parser *p) {
    enter(p);
    node *n = parse_or(p);
    if (accept(p, T_NAME, "if")) {
        node *c = mk(p, N_COND);
        c->a = n;
        c->b = parse_or(p);
        if (accept(p, T_NAME, "else")) c->c = parse_expr(p);
        n = c;
    }
    p->depth--;
    return n;
}

/* ---------------------------------------------------------------------------------------
 * Template splitter and statement parser
 * --------------------------------------------------------------------------------------- */

enum ckind { C_TEXT, C_EXPR, C_STMT };

typedef struct chunk {
    int kind, line;
    const char *s; /* TEXT: the text after whitespace control; EXPR/STMT: the tag contents */
    size_t n;
} chunk;

typedef struct splitter {
    chunk *c;
    int n, cap;
} splitter;

static void push_chunk(parser *p, splitter *sp, int kind, int line, const char *s, size_t n) {
    if (sp->n == sp->cap) {
        int cap = sp->cap ? sp->cap * 2 : 64;
        chunk *nc = xalloc(p->mem, p->e, (size_t)cap * sizeof *nc);
        if (sp->n) memcpy(nc, sp->c, (size_t)sp->n * sizeof *nc);
        sp->c = nc;
        sp->cap = cap;
    }
    sp->c[sp->n++] = (chunk){kind, line, s, n};
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Split src into text and tag chunks, applying `{%-`/`-%}` whitespace control and Hugging
 * Face's trim_blocks + lstrip_blocks: the first newline after a block or comment tag is
 * removed, and spaces/tabs from the start of a line to a block or comment tag are removed. */
static void split_template(parser *p, splitter *sp, const char *src, size_t len) {
    size_t pos = 0;
    int line = 1;
    bool strip_next_ws = false, strip_next_nl = false;
    while (pos <= len) {
        /* find the next tag opener */
        size_t t = pos;
        while (t + 1 < len && !(src[t] == '{' && (src[t + 1] == '{' || src[t + 1] == '%' || src[t + 1] == '#'))) t++;
        if (t + 1 >= len) t = len;
        /* the text before it */
        size_t ts = pos, te = t;
        if (strip_next_ws)
            while (ts < te && is_ws(src[ts])) ts++;
        else if (strip_next_nl && ts < te) {
            if (src[ts] == '\n') ts++;
            else if (src[ts] == '\r' && ts + 1 < te && src[ts + 1] == '\n') ts += 2;
        }
        char type = t < len ? src[t + 1] : 0;
        char mod = t + 2 < len ? src[t + 2] : 0;
        if (t < len) {
            if (mod == '-') {
                while (te > ts && is_ws(src[te - 1])) te--;
            } else if ((type == '%' || type == '#') && mod != '+') { /* lstrip_blocks */
                size_t k = te;
                while (k > ts && (src[k - 1] == ' ' || src[k - 1] == '\t')) k--;
                if (k == 0 || src[k - 1] == '\n' || (k == ts && ts > 0 && src[ts - 1] == '\n') ||
                    (k == ts && ts == 0))
                    te = k;
                else if (k == ts && ts > 0 && src[ts - 1] != '\n') {
                    /* text before began after a tag on the same line: no line start here */
                }
            }
        }
        int text_line = line;
        for (size_t k = pos; k < t && k < len; k++) line += src[k] == '\n';
        if (te > ts) push_chunk(p, sp, C_TEXT, text_line, src + ts, te - ts);
        if (t >= len) break;
        /* the tag */
        size_t cs = t + 2 + (mod == '-' || mod == '+' ? 1 : 0), ce = cs;
        bool found = false;
        char close = type == '{' ? '}' : type;
        int depth = 0; /* brackets open inside the tag: "}}" of a nested dict does not close it */
        while (ce + 1 < len) {
            char c = src[ce];
            if (type != '#' && (c == '\'' || c == '"')) { /* skip string literals */
                size_t k = ce + 1;
                while (k < len && src[k] != c) k += src[k] == '\\' ? 2 : 1;
                ce = k + 1;
                continue;
            }
            if (depth == 0 && c == close && src[ce + 1] == '}') {
                found = true;
                break;
            }
            if (type != '#') {
                if (c == '(' || c == '[' || c == '{') depth++;
                else if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
            }
            ce++;
        }
        if (!found) fail(p->e, VB_ERR_FORMAT, "line %d: tag '{%c' is not closed", line, type);
        size_t inner_end = ce;
        bool rstrip = inner_end > cs && src[inner_end - 1] == '-';
        if (rstrip) inner_end--;
        if (type != '#') push_chunk(p, sp, type == '{' ? C_EXPR : C_STMT, line, src + cs, inner_end - cs);
        for (size_t k = t; k < ce + 2; k++) line += src[k] == '\n';
        strip_next_ws = rstrip;
        strip_next_nl = !rstrip && (type == '%' || type == '#');
        pos = ce + 2;
    }
}

typedef struct stmt_parser {
    parser *p;
    splitter *sp;
    int ci;
} stmt_parser;

/* Tokenize chunk ci; returns its first token (the keyword for a statement). */
static tok *load_chunk(stmt_parser *s, int ci) {
    chunk *c = &s->sp->c[ci];
    tokenize(s->p, c->s, c->n, c->line);
    return peek(s->p);
}

static bool kw_in(const tok *t, const char *const *kws) {
    for (int k = 0; kws && kws[k]; k++)
        if (tok_is(t, T_NAME, kws[k])) return true;
    return false;
}

static void end_of_tag(parser *p) {
    tok *t = peek(p);
    if (t->kind != T_END)
        fail(p->e, VB_ERR_FORMAT, "line %d: unexpected '%.*s' at the end of a tag", t->line,
             (int)(t->n > 40 ? 40 : t->n), t->s);
}

static nvec parse_block(stmt_parser *s, const char *const *terms, const char **found);

/* The end of an `if` / `for` statement whose body stopped at the tag `found`: an `else` block
 * into into->list2, then the `endif` / `endfor` (stmt "if" / "for"), or the error naming it. */
static void parse_else_end(stmt_parser *s, const char *found, node *into, const char *stmt, int line) {
    parser *p = s->p;
    const bool is_if = strcmp(stmt, "if") == 0;
    static const char *const end_if[] = {"endif", NULL}, *const end_for[] = {"endfor", NULL};
    const char *const *terms = is_if ? end_if : end_for;
    if (found && strcmp(found, "else") == 0) {
        end_of_tag(p);
        nvec b = parse_block(s, terms, &found);
        into->list2 = b.v;
        into->n2 = b.n;
    }
    if (!found || strcmp(found, terms[0]) != 0)
        fail(p->e, VB_ERR_FORMAT, "line %d: '%s' without '%s'", line, stmt, terms[0]);
    end_of_tag(p);
}

static node *parse_stmt(stmt_parser *s) {
    parser *p = s->p;
    tok *kw = next(p);
    int line = kw->line;
    if (tok_is(kw, T_NAME, "if")) {
        node *n = mk(p, N_IF);
        n->line = line;
        n->a = parse_expr(p);
        end_of_tag(p);
        static const char *const terms[] = {"elif", "else", "endif", NULL};
        const char *found = NULL;
        nvec body = parse_block(s, terms, &found);
        n->list = body.v;
        n->n = body.n;
        node *cur = n;
        while (found && strcmp(found, "elif") == 0) {
            node *e = mk(p, N_IF); /* tokens of the elif tag are loaded */
            e->a = parse_expr(p);
            end_of_tag(p);
            nvec b = parse_block(s, terms, &found);
            e->list = b.v;
            e->n = b.n;
            cur->list2 = xalloc(p->mem, p->e, sizeof *cur->list2);
            cur->list2[0] = e;
            cur->n2 = 1;
            cur = e;
        }
        parse_else_end(s, found, cur, "if", line);
        return n;
    }
    if (tok_is(kw, T_NAME, "for")) {
        node *n = mk(p, N_FOR);
        n->line = line;
        const char **names = xalloc(p->mem, p->e, 4 * sizeof *names);
        int nn = 0;
        bool paren = accept(p, T_OP, "(");
        do {
            tok *t = next(p);
            if (t->kind != T_NAME || nn == 4) fail(p->e, VB_ERR_FORMAT, "line %d: bad loop variable", line);
            names[nn++] = dup_name(p, t);
        } while (accept(p, T_OP, ","));
        if (paren) expect(p, T_OP, ")");
        n->names = names;
        n->n_names = nn;
        expect(p, T_NAME, "in");
        n->a = parse_or(p);
        if (accept(p, T_NAME, "if")) n->b = parse_or(p);
        if (tok_is(peek(p), T_NAME, "recursive"))
            fail(p->e, VB_ERR_UNSUPPORTED, "line %d: recursive loops are not supported", line);
        end_of_tag(p);
        static const char *const terms[] = {"else", "endfor", NULL};
        const char *found = NULL;
        nvec body = parse_block(s, terms, &found);
        n->list = body.v;
        n->n = body.n;
        parse_else_end(s, found, n, "for", line);
        return n;
    }
    if (tok_is(kw, T_NAME, "set")) {
        node *n = mk(p, N_SET);
        n->line = line;
        tok *t = next(p);
        if (t->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected a variable name after 'set'", line);
        n->name = dup_name(p, t);
        if (accept(p, T_OP, ".")) {
            tok *u = next(p);
            if (u->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected an attribute name", line);
            n->attr = dup_name(p, u);
        }
        if (tok_is(peek(p), T_OP, ","))
            fail(p->e, VB_ERR_UNSUPPORTED, "line %d: 'set' of several variables is not supported", line);
        if (!accept(p, T_OP, "=")) { /* {% set x %}...{% endset %}: the rendered body */
            if (n->attr) fail(p->e, VB_ERR_UNSUPPORTED, "line %d: block 'set' of an attribute is not supported", line);
            end_of_tag(p);
            static const char *const terms[] = {"endset", NULL};
            const char *found = NULL;
            nvec body = parse_block(s, terms, &found);
            if (!found) fail(p->e, VB_ERR_FORMAT, "line %d: 'set' block without 'endset'", line);
            end_of_tag(p);
            n->list = body.v;
            n->n = body.n;
            return n;
        }
        n->a = parse_expr(p);
        if (tok_is(peek(p), T_OP, ",")) { /* set x = a, b: a tuple */
            nvec v = {0};
            nvec_push(p, &v, n->a);
            while (accept(p, T_OP, ",")) nvec_push(p, &v, parse_expr(p));
            node *tu = mk(p, N_TUPLE);
            tu->list = v.v;
            tu->n = v.n;
            n->a = tu;
        }
        end_of_tag(p);
        return n;
    }
    if (tok_is(kw, T_NAME, "macro")) {
        node *n = mk(p, N_MACRO);
        n->line = line;
        tok *t = next(p);
        if (t->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected a macro name", line);
        n->name = dup_name(p, t);
        expect(p, T_OP, "(");
        const char **names = NULL;
        node **dflt = NULL;
        int nn = 0, cap = 0;
        while (!accept(p, T_OP, ")")) {
            if (nn) expect(p, T_OP, ",");
            tok *a = next(p);
            if (a->kind != T_NAME) fail(p->e, VB_ERR_FORMAT, "line %d: expected a parameter name", line);
            if (nn == cap) {
                cap = cap ? cap * 2 : 4;
                const char **nv = xalloc(p->mem, p->e, (size_t)cap * sizeof *nv);
                node **dv = xalloc(p->mem, p->e, (size_t)cap * sizeof *dv);
                if (nn) {
                    memcpy(nv, names, (size_t)nn * sizeof *nv);
                    memcpy(dv, dflt, (size_t)nn * sizeof *dv);
                }
                names = nv;
                dflt = dv;
            }
            names[nn] = dup_name(p, a);
            dflt[nn] = accept(p, T_OP, "=") ? parse_expr(p) : NULL;
            nn++;
        }
        end_of_tag(p);
        n->names = names;
        n->n_names = nn;
        n->list2 = dflt;
        n->n2 = nn;
        static const char *const terms[] = {"endmacro", NULL};
        const char *found = NULL;
        nvec body = parse_block(s, terms, &found);
        if (!found) fail(p->e, VB_ERR_FORMAT, "line %d: 'macro' without 'endmacro'", line);
        end_of_tag(p);
        n->list = body.v;
        n->n = body.n;
        return n;
    }
    if (tok_is(kw, T_NAME, "break") || tok_is(kw, T_NAME, "continue")) {
        node *n = mk(p, tok_is(kw, T_NAME, "break") ? N_BREAK : N_CONTINUE);
        n->line = line;
        end_of_tag(p);
        return n;
    }
    if (kw->kind == T_NAME)
        fail(p->e, VB_ERR_UNSUPPORTED, "line %d: '%.*s' is not supported by vibee's chat template renderer "
             "(supported: if/elif/else, for/else, set, macro, break/continue, expressions, filters, tests)",
             line, (int)(kw->n > 40 ? 40 : kw->n), kw->s);
    fail(p->e, VB_ERR_FORMAT, "line %d: a statement tag must start with a keyword", line);
}

/* Statements until a statement tag whose keyword is in terms (its tokens are left loaded and
 * its keyword consumed; *found names it) or the end of the template (*found = NULL). */
static nvec parse_block(stmt_parser *s, const char *const *terms, const char **found) {
    parser *p = s->p;
    nvec out = {0};
    *found = NULL;
    if (++p->depth > p->lim->max_depth) fail(p->e, VB_ERR_ARG, "blocks nested deeper than %d", p->lim->max_depth);
    while (s->ci < s->sp->n) {
        chunk *c = &s->sp->c[s->ci];
        if (c->kind == C_TEXT) {
            node *n = mk(p, N_TEXT);
            n->line = c->line;
            n->lit = mkval(p->mem, p->e, V_STR);
            n->lit->u.str.s = c->s;
            n->lit->u.str.n = c->n;
            nvec_push(p, &out, n);
            s->ci++;
            continue;
        }
        tok *t = load_chunk(s, s->ci);
        s->ci++;
        if (c->kind == C_EXPR) {
            node *n = mk(p, N_OUTPUT);
            n->line = c->line;
            n->a = parse_expr(p);
            end_of_tag(p);
            nvec_push(p, &out, n);
            continue;
        }
        if (tok_is(t, T_NAME, "generation") || tok_is(t, T_NAME, "endgeneration")) continue; /* HF markers */
        if (kw_in(t, terms)) {
            for (int k = 0; terms[k]; k++)
                if (tok_is(t, T_NAME, terms[k])) *found = terms[k];
            next(p);
            p->depth--;
            return out;
        }
        static const char *const stray[] = {"elif", "else", "endif", "endfor", "endset", "endmacro", NULL};
        if (kw_in(t, stray))
            fail(p->e, VB_ERR_FORMAT, "line %d: unexpected '%.*s'", t->line, (int)t->n, t->s);
        nvec_push(p, &out, parse_stmt(s));
    }
    p->depth--;
    return out;
}

/* Split and parse src into t (errors longjmp through p->e). */
static void parse_source(parser *p, vb_jinja *t, const char *src, size_t len) {
    /* the source is kept in the arena: chunks point into it */
    char *copy = xalloc(&t->mem, p->e, len + 1);
    if (len) memcpy(copy, src, len);
    splitter sp = {0};
    split_template(p, &sp, copy, len);
    stmt_parser s = {p, &sp, 0};
    const char *found = NULL;
    nvec body = parse_block(&s, NULL, &found);
    t->body = body.v;
    t->n = body.n;
}

/* parse_source with the error jump set up here. */
static int parse_guarded(vb_jinja *t, const char *src, size_t n, char *err, size_t err_len) {
    errctx e = {.err = err, .err_len = err_len};
    parser p = {.e = &e, .mem = &t->mem, .lim = &t->lim};
    if (setjmp(e.jb)) return e.status;
    parse_source(&p, t, src, n);
    return VB_OK;
}

int vb_jinja_parse(const char *src, size_t len, const vb_jinja_limits *lim, vb_jinja **out, char *err,
                   size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!out || (!src && len)) return VB_ERR_ARG;
    *out = NULL;
    vb_jinja_limits l = lim ? *lim : vb_jinja_default_limits();
    if (len > l.max_template) {
        if (err && err_len)
            snprintf(err, err_len, "chat template is %zu bytes, more than the limit of %zu", len, l.max_template);
        return VB_ERR_ARG;
    }
    /* Jinja drops one newline at the end of the template (keep_trailing_newline=False) */
    const size_t n = len && src[len - 1] == '\n' ? len - (len > 1 && src[len - 2] == '\r' ? 2 : 1) : len;
    vb_jinja *t = calloc(1, sizeof *t);
    if (!t) return VB_ERR_NOMEM;
    t->lim = l;
    t->mem.limit = 64 * (n + 4096) + (1u << 20);
    int st = parse_guarded(t, src, n, err, err_len);
    if (st != VB_OK) {
        vb_jinja_free(t);
        return st;
    }
    *out = t;
    return VB_OK;
}

void vb_jinja_free(vb_jinja *t) {
    if (!t) return;
    arena_free(&t->mem);
    free(t);
}

/* ---------------------------------------------------------------------------------------
 * Renderer state
 * --------------------------------------------------------------------------------------- */

typedef struct scope scope;
struct scope {
    const char **names;
    val **vals;
    int n, cap;
    scope *parent;
};

typedef struct outbuf {
    char *s;
    uint8_t *m;
    size_t n, cap;
} outbuf;

typedef struct render {
    errctx *e;
    arena *mem;
    const vb_jinja_limits *lim;
    int64_t steps;
    double t0;
    int depth;
    outbuf out;
    scope *globals;
    int line; /* of the statement being run, for messages */
} render;

enum builtin_fn { F_RAISE, F_NAMESPACE, F_RANGE, F_STRFTIME, F_DICT };

static val k_undef = {.kind = V_UNDEF};
static val k_none = {.kind = V_NONE};
static val k_true = {.kind = V_BOOL, .u.b = 1};
static val k_false = {.kind = V_BOOL, .u.b = 0};

#define RFAIL(r, ...) fail((r)->e, VB_ERR_STATE, __VA_ARGS__)

/* Monotonic seconds (the renderer's own clock, so that jinja.c stands alone in the fuzz target). */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void step(render *r) {
    if (++r->steps > r->lim->max_steps)
        fail(r->e, VB_ERR_ARG, "chat template: rendering took more than %lld steps", (long long)r->lim->max_steps);
    if ((r->steps & 4095) == 0 && now_seconds() - r->t0 > r->lim->max_seconds)
        fail(r->e, VB_ERR_ARG, "chat template: rendering took more than %.1f s", r->lim->max_seconds);
}

static val *bool_val(int b) { return b ? &k_true : &k_false; }
static val *int_val(render *r, int64_t i) {
    val *v = mkval(r->mem, r->e, V_INT);
    v->u.i = i;
    return v;
}
static val *float_val(render *r, double f) {
    val *v = mkval(r->mem, r->e, V_FLOAT);
    v->u.f = f;
    return v;
}
static val *str_val(render *r, const char *s, const uint8_t *m, size_t n) {
    val *v = mkval(r->mem, r->e, V_STR);
    v->u.str.s = s;
    v->u.str.m = m;
    v->u.str.n = n;
    return v;
}
static val *cstr_val(render *r, const char *s) { return str_val(r, s, NULL, strlen(s)); }

/* String builder in the arena, with the data mask. */
typedef struct sbuild {
    char *s;
    uint8_t *m;
    size_t n, cap;
    bool any;
} sbuild;

static void sb_put(render *r, sbuild *b, const char *s, const uint8_t *m, size_t n) {
    if (n == 0) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 64) + n;
        if (cap > r->lim->max_output + 64) {
            if (b->n + n > r->lim->max_output)
                fail(r->e, VB_ERR_ARG, "chat template: a string grew beyond %zu bytes", r->lim->max_output);
            cap = b->n + n;
        }
        char *ns = xalloc(r->mem, r->e, cap + 1);
        uint8_t *nm = xalloc(r->mem, r->e, cap);
        if (b->n) {
            memcpy(ns, b->s, b->n);
            memcpy(nm, b->m, b->n);
        }
        b->s = ns;
        b->m = nm;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    if (m) {
        memcpy(b->m + b->n, m, n);
        for (size_t i = 0; i < n && !b->any; i++) b->any = m[i] != 0;
    } else {
        memset(b->m + b->n, 0, n);
    }
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_lit(render *r, sbuild *b, const char *s) { sb_put(r, b, s, NULL, strlen(s)); }
static val *sb_done(render *r, sbuild *b) {
    return str_val(r, b->s ? b->s : "", b->any ? b->m : NULL, b->n);
}

static bool str_eq(const val *v, const char *s) {
    return v->kind == V_STR && v->u.str.n == strlen(s) && memcmp(v->u.str.s, s, v->u.str.n) == 0;
}

static const char *kind_name(int k) {
    static const char *names[] = {"undefined", "none", "boolean", "integer", "float", "string", "list", "dict", "function",
                                  "macro"};
    return names[k];
}

/* ---- scopes ---- */

static scope *scope_new(render *r, scope *parent) {
    scope *s = xalloc(r->mem, r->e, sizeof *s);
    s->parent = parent;
    return s;
}
static void scope_set(render *r, scope *s, const char *name, val *v) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 8;
        const char **nn = xalloc(r->mem, r->e, (size_t)cap * sizeof *nn);
        val **nv = xalloc(r->mem, r->e, (size_t)cap * sizeof *nv);
        if (s->n) {
            memcpy(nn, s->names, (size_t)s->n * sizeof *nn);
            memcpy(nv, s->vals, (size_t)s->n * sizeof *nv);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
}
static val *scope_get(scope *s, const char *name) {
    for (; s; s = s->parent)
        for (int i = s->n - 1; i >= 0; i--)
            if (strcmp(s->names[i], name) == 0) return s->vals[i];
    return &k_undef;
}

/* ---- dicts and lists ---- */

static val *dict_new(render *r, bool ns) {
    val *d = mkval(r->mem, r->e, V_DICT);
    d->u.dict.ns = ns;
    return d;
}
static bool val_eq(const val *a, const val *b);
static val *dict_get(const val *d, const val *key) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (val_eq(d->u.dict.keys[i], key)) return d->u.dict.vals[i];
    return NULL;
}
static val *dict_gets(const val *d, const char *key) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (str_eq(d->u.dict.keys[i], key)) return d->u.dict.vals[i];
    return NULL;
}
static void dict_set(render *r, val *d, val *key, val *v) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (val_eq(d->u.dict.keys[i], key)) {
            d->u.dict.vals[i] = v;
            return;
        }
    if (d->u.dict.n == d->u.dict.cap) {
        size_t cap = d->u.dict.cap ? d->u.dict.cap * 2 : 8;
        val **nk = xalloc(r->mem, r->e, cap * sizeof *nk), **nv = xalloc(r->mem, r->e, cap * sizeof *nv);
        if (d->u.dict.n) {
            memcpy(nk, d->u.dict.keys, d->u.dict.n * sizeof *nk);
            memcpy(nv, d->u.dict.vals, d->u.dict.n * sizeof *nv);
        }
        d->u.dict.keys = nk;
        d->u.dict.vals = nv;
        d->u.dict.cap = cap;
    }
    d->u.dict.keys[d->u.dict.n] = key;
    d->u.dict.vals[d->u.dict.n++] = v;
}
static val *list_new(render *r, size_t n) {
    val *l = mkval(r->mem, r->e, V_LIST);
    l->u.list.items = xalloc(r->mem, r->e, (n ? n : 1) * sizeof(val *));
    l->u.list.n = n;
    return l;
}

/* ---- Python semantics ---- */

static bool truthy(const val *v) {
    switch (v->kind) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v->u.b != 0;
    case V_INT: return v->u.i != 0;
    case V_FLOAT: return v->u.f != 0;
    case V_STR: return v->u.str.n > 0;
    case V_LIST: return v->u.list.n > 0;
    case V_DICT: return v->u.dict.n > 0;
    default: return true;
    }
}

static bool is_num(const val *v) { return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL; }
static double num(const val *v) {
    return v->kind == V_FLOAT ? v->u.f : v->kind == V_INT ? (double)v->u.i : (double)v->u.b;
}
/* Integer value; floats are truncated and saturated (NaN is 0), never undefined behaviour. */
static int64_t inum(const val *v) {
    if (v->kind == V_INT) return v->u.i;
    if (v->kind == V_BOOL) return v->u.b;
    double f = v->kind == V_FLOAT ? v->u.f : 0;
    if (!(f == f)) return 0;
    if (f >= 9223372036854775807.0) return INT64_MAX;
    if (f <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)f;
}

static bool val_eq(const val *a, const val *b) {
    if (is_num(a) && is_num(b)) {
        if (a->kind != V_FLOAT && b->kind != V_FLOAT) return inum(a) == inum(b);
        return num(a) == num(b);
    }
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a->u.str.n == b->u.str.n && memcmp(a->u.str.s, b->u.str.s, a->u.str.n) == 0;
    case V_LIST:
        if (a->u.list.n != b->u.list.n) return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!val_eq(a->u.list.items[i], b->u.list.items[i])) return false;
        return true;
    case V_DICT:
        if (a->u.dict.n != b->u.dict.n) return false;
        for (size_t i = 0; i < a->u.dict.n; i++) {
            val *o = dict_get(b, a->u.dict.keys[i]);
            if (!o || !val_eq(a->u.dict.vals[i], o)) return false;
        }
        return true;
    case V_FUNC: return a->u.func == b->u.func;
    case V_MACRO: return a->u.macro.def == b->u.macro.def;
    default: return false;
    }
}

/* Python's repr of a float (shortest round-trip digits; exponent form outside 1e-4..1e16). */
static void float_repr(double f, char *buf, size_t len) {
    if (isnan(f)) { snprintf(buf, len, "nan"); return; }
    if (isinf(f)) { snprintf(buf, len, f > 0 ? "inf" : "-inf"); return; }
    char e[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *p = e + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    size_t w = 0;
    if (neg) buf[w++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            w += (size_t)snprintf(buf + w, len - w, "0.");
            for (int k = 0; k < -exp10 - 1; k++) buf[w++] = '0';
            for (int k = 0; k < nd; k++) buf[w++] = digits[k];
        } else {
            for (int k = 0; k <= exp10; k++) buf[w++] = k < nd ? digits[k] : '0';
            buf[w++] = '.';
            if (nd > exp10 + 1)
                for (int k = exp10 + 1; k < nd; k++) buf[w++] = digits[k];
            else
                buf[w++] = '0';
        }
        buf[w] = 0;
    } else {
        buf[w++] = digits[0];
        if (nd > 1) {
            buf[w++] = '.';
            for (int k = 1; k < nd; k++) buf[w++] = digits[k];
        }
        snprintf(buf + w, len - w, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

static void put_repr(render *r, sbuild *b, const val *v);

/* str(v) appended to b */
static void put_str(render *r, sbuild *b, const val *v) {
    char buf[64];
    switch (v->kind) {
    case V_UNDEF: return;
    case V_NONE: sb_lit(r, b, "None"); return;
    case V_BOOL: sb_lit(r, b, v->u.b ? "True" : "False"); return;
    case V_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->u.i); sb_lit(r, b, buf); return;
    case V_FLOAT: float_repr(v->u.f, buf, sizeof buf); sb_lit(r, b, buf); return;
    case V_STR: sb_put(r, b, v->u.str.s, v->u.str.m, v->u.str.n); return;
    default: put_repr(r, b, v);
    }
}

static void put_repr(render *r, sbuild *b, const val *v) {
    step(r);
    if (++r->depth > r->lim->max_depth) RFAIL(r, "chat template: value nested deeper than %d", r->lim->max_depth);
    switch (v->kind) {
    case V_STR: {
        const char *s = v->u.str.s;
        size_t n = v->u.str.n;
        bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
        char q = has_sq && !has_dq ? '"' : '\'';
        sb_put(r, b, &q, NULL, 1);
        for (size_t i = 0; i < n; i++) {
            char c = s[i];
            const uint8_t *m = v->u.str.m ? v->u.str.m + i : NULL;
            char esc[8];
            if (c == q || c == '\\') { esc[0] = '\\'; esc[1] = c; sb_put(r, b, esc, NULL, 2); }
            else if (c == '\n') sb_lit(r, b, "\\n");
            else if (c == '\r') sb_lit(r, b, "\\r");
            else if (c == '\t') sb_lit(r, b, "\\t");
            else if ((unsigned char)c < 0x20 || c == 0x7f) { snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)c); sb_lit(r, b, esc); }
            else sb_put(r, b, &s[i], m, 1);
        }
        sb_put(r, b, &q, NULL, 1);
        break;
    }
    case V_LIST:
        sb_lit(r, b, v->u.list.tuple ? "(" : "[");
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i) sb_lit(r, b, ", ");
            put_repr(r, b, v->u.list.items[i]);
        }
        sb_lit(r, b, v->u.list.tuple ? (v->u.list.n == 1 ? ",)" : ")") : "]");
        break;
    case V_DICT:
        sb_lit(r, b, "{");
        for (size_t i = 0; i < v->u.dict.n; i++) {
            if (i) sb_lit(r, b, ", ");
            put_repr(r, b, v->u.dict.keys[i]);
            sb_lit(r, b, ": ");
            put_repr(r, b, v->u.dict.vals[i]);
        }
        sb_lit(r, b, "}");
        break;
    case V_FUNC:
    case V_MACRO: sb_lit(r, b, "<function>"); break;
    case V_UNDEF: sb_lit(r, b, "Undefined"); break; /* repr(jinja2.Undefined()) */
    default: put_str(r, b, v);
    }
    r->depth--;
}

static val *to_str(render *r, val *v) {
    if (v->kind == V_STR) return v;
    sbuild b = {0};
    put_str(r, &b, v);
    return sb_done(r, &b);
}

/* Options of json.dumps that transformers' tojson filter passes through. */
typedef struct json_opts {
    int indent;               /* -1: None */
    bool ascii;               /* ensure_ascii (transformers' default: false) */
    bool sort_keys;
    const val *item_sep, *key_sep; /* separators, NULL: json.dumps' defaults */
} json_opts;

static int cmp_order(render *r, val *a, val *b, node *where);

/* json.dumps(v, ...) with transformers' defaults (ensure_ascii=False). */
static void put_json(render *r, sbuild *b, const val *v, const json_opts *o, int level) {
    int indent = o->indent;
    step(r);
    if (++r->depth > r->lim->max_depth) RFAIL(r, "chat template: value nested deeper than %d", r->lim->max_depth);
    char buf[64];
    switch (v->kind) {
    case V_NONE: sb_lit(r, b, "null"); break;
    case V_BOOL: sb_lit(r, b, v->u.b ? "true" : "false"); break;
    case V_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->u.i); sb_lit(r, b, buf); break;
    case V_FLOAT:
        if (isnan(v->u.f)) sb_lit(r, b, "NaN");
        else if (isinf(v->u.f)) sb_lit(r, b, v->u.f > 0 ? "Infinity" : "-Infinity");
        else { float_repr(v->u.f, buf, sizeof buf); sb_lit(r, b, buf); }
        break;
    case V_STR: {
        sb_lit(r, b, "\"");
        for (size_t i = 0; i < v->u.str.n; i++) {
            unsigned char c = (unsigned char)v->u.str.s[i];
            const uint8_t *m = v->u.str.m ? v->u.str.m + i : NULL;
            uint8_t mm[6] = {0};
            if (m) memset(mm, *m, sizeof mm);
            if (c == '"' || c == '\\') { char e2[2] = {'\\', (char)c}; sb_put(r, b, e2, m ? mm : NULL, 2); }
            else if (c == '\n') sb_put(r, b, "\\n", m ? mm : NULL, 2);
            else if (c == '\r') sb_put(r, b, "\\r", m ? mm : NULL, 2);
            else if (c == '\t') sb_put(r, b, "\\t", m ? mm : NULL, 2);
            else if (c == '\b') sb_put(r, b, "\\b", m ? mm : NULL, 2);
            else if (c == '\f') sb_put(r, b, "\\f", m ? mm : NULL, 2);
            else if (c < 0x20) { snprintf(buf, sizeof buf, "\\u%04x", c); sb_put(r, b, buf, m ? mm : NULL, 6); }
            else if (c >= 0x80 && o->ascii) {
                uint32_t cp = 0xFFFD;
                int l = vb_utf8_decode((const unsigned char *)v->u.str.s + i, v->u.str.n - i, &cp);
                if (l <= 0) { l = 1; cp = 0xFFFD; }
                if (cp >= 0x10000) {
                    snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
                    sb_put(r, b, buf, NULL, 12);
                } else {
                    snprintf(buf, sizeof buf, "\\u%04x", cp);
                    sb_put(r, b, buf, NULL, 6);
                }
                if (m) memset(b->m + b->n - (cp >= 0x10000 ? 12 : 6), *m, cp >= 0x10000 ? 12 : 6);
                if (m && *m) b->any = true;
                i += (size_t)l - 1;
            }
            else sb_put(r, b, (const char *)&v->u.str.s[i], m, 1);
        }
        sb_lit(r, b, "\"");
        break;
    }
    case V_LIST:
    case V_DICT: {
        bool is_list = v->kind == V_LIST;
        size_t n = is_list ? v->u.list.n : v->u.dict.n;
        sb_lit(r, b, is_list ? "[" : "{");
        if (n == 0) {
            sb_lit(r, b, is_list ? "]" : "}");
            break;
        }
        size_t *order = xalloc(r->mem, r->e, n * sizeof *order);
        for (size_t i = 0; i < n; i++) order[i] = i;
        if (!is_list && o->sort_keys) /* insertion sort: stable, keys compared as Python does */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && cmp_order(r, v->u.dict.keys[order[j - 1]], v->u.dict.keys[order[j]], NULL) > 0; j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        for (size_t oi = 0; oi < n; oi++) {
            size_t i = order[oi];
            if (oi) {
                if (o->item_sep) sb_put(r, b, o->item_sep->u.str.s, NULL, o->item_sep->u.str.n);
                else sb_lit(r, b, indent >= 0 ? "," : ", ");
            }
            if (indent >= 0) {
                sb_lit(r, b, "\n");
                for (int k = 0; k < indent * (level + 1); k++) sb_lit(r, b, " ");
            }
            if (!is_list) {
                const val *k = v->u.dict.keys[i];
                if (k->kind == V_STR) put_json(r, b, k, o, level + 1);
                else { /* json.dumps turns non-string keys into strings */
                    sbuild kb = {0};
                    if (k->kind == V_BOOL) sb_lit(r, &kb, k->u.b ? "true" : "false");
                    else if (k->kind == V_NONE) sb_lit(r, &kb, "null");
                    else put_str(r, &kb, k);
                    put_json(r, b, sb_done(r, &kb), o, level + 1);
                }
                if (o->key_sep) sb_put(r, b, o->key_sep->u.str.s, NULL, o->key_sep->u.str.n);
                else sb_lit(r, b, ": ");
            }
            put_json(r, b, is_list ? v->u.list.items[i] : v->u.dict.vals[i], o, level + 1);
        }
        if (indent >= 0) {
            sb_lit(r, b, "\n");
            for (int k = 0; k < indent * level; k++) sb_lit(r, b, " ");
        }
        sb_lit(r, b, is_list ? "]" : "}");
        break;
    }
    default: RFAIL(r, "line %d: tojson: %s is not JSON serializable", r->line, kind_name(v->kind));
    }
    r->depth--;
}

/* ---- strings as code points ---- */

/* Byte offsets of the code points of s: off[0..*ncp], off[*ncp] = n. */
static size_t *cp_offsets(render *r, const val *s, size_t *ncp) {
    size_t *off = xalloc(r->mem, r->e, (s->u.str.n + 1) * sizeof *off);
    size_t k = 0;
    for (size_t i = 0; i < s->u.str.n;) {
        off[k++] = i;
        int l = vb_utf8_decode((const unsigned char *)s->u.str.s + i, s->u.str.n - i, NULL);
        i += l > 0 ? (size_t)l : 1;
    }
    off[k] = s->u.str.n;
    *ncp = k;
    return off;
}

static val *substr(render *r, const val *s, size_t a, size_t b) {
    return str_val(r, s->u.str.s + a, s->u.str.m ? s->u.str.m + a : NULL, b - a);
}

static bool in_set(char c, const val *chars) {
    if (!chars) return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    return memchr(chars->u.str.s, c, chars->u.str.n) != NULL;
}

static val *strip(render *r, const val *s, const val *chars, bool left, bool right) {
    size_t a = 0, b = s->u.str.n;
    if (left) while (a < b && in_set(s->u.str.s[a], chars)) a++;
    if (right) while (b > a && in_set(s->u.str.s[b - 1], chars)) b--;
    return substr(r, s, a, b);
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0) return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, n, nn) == 0) return h + i;
    return NULL;
}

static val *case_map(render *r, const val *s, int mode /* 0 lower 1 upper 2 title 3 capitalize */) {
    char *o = xalloc(r->mem, r->e, s->u.str.n + 1);
    bool word_start = true;
    for (size_t i = 0; i < s->u.str.n; i++) {
        char c = s->u.str.s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool up = mode == 1 || (mode == 2 && word_start) || (mode == 3 && i == 0);
        if (alpha) c = up ? (char)(c >= 'a' && c <= 'z' ? c - 32 : c) : (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        o[i] = c;
        word_start = !alpha && !((unsigned char)c >= 0x80);
    }
    return str_val(r, o, s->u.str.m, s->u.str.n);
}

/* ---------------------------------------------------------------------------------------
 * Evaluation
 * --------------------------------------------------------------------------------------- */

static val *eval(render *r, scope *sc, node *n);
struct args;
static val *call_macro(render *r, val *m, const struct args *a, node *where);

/* Items of an iterable (list items, dict keys, string characters); undefined is empty. */
static val **iter_items(render *r, val *v, size_t *n) {
    switch (v->kind) {
    case V_LIST: *n = v->u.list.n; return v->u.list.items;
    case V_DICT: *n = v->u.dict.n; return v->u.dict.keys;
    case V_UNDEF: *n = 0; return NULL;
    case V_STR: {
        size_t ncp;
        size_t *off = cp_offsets(r, v, &ncp);
        val **items = xalloc(r->mem, r->e, (ncp ? ncp : 1) * sizeof *items);
        for (size_t i = 0; i < ncp; i++) items[i] = substr(r, v, off[i], off[i + 1]);
        *n = ncp;
        return items;
    }
    default: RFAIL(r, "line %d: %s is not iterable", r->line, kind_name(v->kind));
    }
}

static int64_t length_of(render *r, val *v) {
    size_t n;
    if (v->kind == V_STR) {
        cp_offsets(r, v, &n);
        return (int64_t)n;
    }
    if (v->kind == V_LIST) return (int64_t)v->u.list.n;
    if (v->kind == V_DICT) return (int64_t)v->u.dict.n;
    if (v->kind == V_UNDEF) return 0;
    RFAIL(r, "line %d: object of type %s has no length", r->line, kind_name(v->kind));
}

static val *get_attr(render *r, val *obj, const char *name, node *where) {
    if (obj->kind == V_UNDEF)
        RFAIL(r, "line %d: undefined value has no attribute '%s'", where->line, name);
    if (obj->kind == V_DICT) {
        val *v = dict_gets(obj, name);
        return v ? v : &k_undef;
    }
    return &k_undef;
}

static val *get_item(render *r, val *obj, val *key, node *where) {
    if (obj->kind == V_UNDEF) RFAIL(r, "line %d: undefined value is not subscriptable", where->line);
    if (obj->kind == V_DICT) {
        val *v = dict_get(obj, key);
        return v ? v : &k_undef;
    }
    if ((obj->kind == V_LIST || obj->kind == V_STR) && (key->kind == V_INT || key->kind == V_BOOL)) {
        int64_t i = inum(key);
        if (obj->kind == V_LIST) {
            int64_t n = (int64_t)obj->u.list.n;
            if (i < 0) i += n;
            return i >= 0 && i < n ? obj->u.list.items[i] : &k_undef;
        }
        size_t ncp;
        size_t *off = cp_offsets(r, obj, &ncp);
        if (i < 0) i += (int64_t)ncp;
        return i >= 0 && i < (int64_t)ncp ? substr(r, obj, off[i], off[i + 1]) : &k_undef;
    }
    if (key->kind == V_STR) return get_attr(r, obj, key->u.str.s, where); /* x['attr'] */
    return &k_undef;
}

/* Python slice indices. */
static void slice_bounds(int64_t n, val *lo, val *hi, val *st, int64_t *a, int64_t *b, int64_t *s) {
    *s = st && st->kind != V_NONE && st->kind != V_UNDEF ? inum(st) : 1;
    bool has_lo = lo && lo->kind != V_NONE && lo->kind != V_UNDEF, has_hi = hi && hi->kind != V_NONE && hi->kind != V_UNDEF;
    if (*s > 0) {
        *a = has_lo ? inum(lo) : 0;
        *b = has_hi ? inum(hi) : n;
        if (*a < 0) *a += n;
        if (*b < 0) *b += n;
        if (*a < 0) *a = 0;
        if (*a > n) *a = n;
        if (*b < 0) *b = 0;
        if (*b > n) *b = n;
    } else {
        *a = has_lo ? inum(lo) : n - 1;
        *b = has_hi ? inum(hi) : -n - 1;
        if (*a < 0) *a += n;
        if (has_hi && *b < 0) *b += n;
        if (!has_hi) *b = -1;
        if (*a < -1) *a = -1;
        if (*a >= n) *a = n - 1;
        if (*b < -1) *b = -1;
        if (*b >= n) *b = n - 1;
    }
}

static val *do_slice(render *r, val *obj, val *lo, val *hi, val *st, node *where) {
    if (st && (st->kind == V_INT) && st->u.i == 0) RFAIL(r, "line %d: slice step cannot be zero", where->line);
    if (obj->kind == V_LIST) {
        int64_t a, b, s;
        slice_bounds((int64_t)obj->u.list.n, lo, hi, st, &a, &b, &s);
        size_t cnt = 0;
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s) cnt++;
        val *l = list_new(r, cnt);
        size_t k = 0;
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s) l->u.list.items[k++] = obj->u.list.items[i];
        return l;
    }
    if (obj->kind == V_STR) {
        size_t ncp;
        size_t *off = cp_offsets(r, obj, &ncp);
        int64_t a, b, s;
        slice_bounds((int64_t)ncp, lo, hi, st, &a, &b, &s);
        if (s == 1) return substr(r, obj, off[a], off[b > a ? b : a]);
        sbuild sb = {0};
        for (int64_t i = a; s > 0 ? i < b : i > b; i += s)
            sb_put(r, &sb, obj->u.str.s + off[i], obj->u.str.m ? obj->u.str.m + off[i] : NULL, off[i + 1] - off[i]);
        return sb_done(r, &sb);
    }
    if (obj->kind == V_UNDEF) RFAIL(r, "line %d: undefined value is not subscriptable", where->line);
    RFAIL(r, "line %d: %s cannot be sliced", where->line, kind_name(obj->kind));
}

static val *concat(render *r, val *a, val *b) {
    sbuild sb = {0};
    put_str(r, &sb, a);
    put_str(r, &sb, b);
    return sb_done(r, &sb);
}

static int cmp_order(render *r, val *a, val *b, node *where) {
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y;
    }
    if (a->kind == V_STR && b->kind == V_STR) {
        size_t n = a->u.str.n < b->u.str.n ? a->u.str.n : b->u.str.n;
        int c = memcmp(a->u.str.s, b->u.str.s, n);
        if (c) return c < 0 ? -1 : 1;
        return a->u.str.n < b->u.str.n ? -1 : a->u.str.n > b->u.str.n;
    }
    RFAIL(r, "line %d: cannot compare %s and %s", where ? where->line : r->line, kind_name(a->kind), kind_name(b->kind));
}

static bool contains(render *r, val *hay, val *needle, node *where) {
    if (hay->kind == V_STR) {
        if (needle->kind != V_STR) RFAIL(r, "line %d: 'in <string>' requires a string on the left", where->line);
        return find_bytes(hay->u.str.s, hay->u.str.n, needle->u.str.s, needle->u.str.n) != NULL;
    }
    if (hay->kind == V_LIST) {
        for (size_t i = 0; i < hay->u.list.n; i++)
            if (val_eq(hay->u.list.items[i], needle)) return true;
        return false;
    }
    if (hay->kind == V_DICT) return dict_get(hay, needle) != NULL;
    if (hay->kind == V_UNDEF) return false; /* Jinja's Undefined iterates as empty */
    RFAIL(r, "line %d: argument of type %s is not iterable", where->line, kind_name(hay->kind));
}

static val *arith(render *r, int op, val *a, val *b, node *where) {
    if (op == OP_CAT) return concat(r, a, b);
    if (op == OP_ADD && a->kind == V_STR && b->kind == V_STR) {
        sbuild sb = {0};
        sb_put(r, &sb, a->u.str.s, a->u.str.m, a->u.str.n);
        sb_put(r, &sb, b->u.str.s, b->u.str.m, b->u.str.n);
        return sb_done(r, &sb);
    }
    if (op == OP_ADD && a->kind == V_LIST && b->kind == V_LIST) {
        val *l = list_new(r, a->u.list.n + b->u.list.n);
        if (a->u.list.n) memcpy(l->u.list.items, a->u.list.items, a->u.list.n * sizeof(val *));
        if (b->u.list.n) memcpy(l->u.list.items + a->u.list.n, b->u.list.items, b->u.list.n * sizeof(val *));
        return l;
    }
    if (op == OP_MUL && a->kind == V_STR && (b->kind == V_INT)) {
        sbuild sb = {0};
        for (int64_t i = 0; i < b->u.i; i++) {
            step(r);
            sb_put(r, &sb, a->u.str.s, a->u.str.m, a->u.str.n);
        }
        return sb_done(r, &sb);
    }
    if (!is_num(a) || !is_num(b)) {
        static const char *sym[] = {"+", "-", "*", "/", "//", "%", "**"};
        RFAIL(r, "line %d: unsupported operand types for %s: %s and %s", where->line, sym[op], kind_name(a->kind),
              kind_name(b->kind));
    }
    bool fl = a->kind == V_FLOAT || b->kind == V_FLOAT;
    if (op == OP_DIV) {
        if (num(b) == 0) RFAIL(r, "line %d: division by zero", where->line);
        return float_val(r, num(a) / num(b));
    }
    if (!fl) {
        int64_t x = inum(a), y = inum(b);
        switch (op) {
        case OP_ADD: return int_val(r, (int64_t)((uint64_t)x + (uint64_t)y));
        case OP_SUB: return int_val(r, (int64_t)((uint64_t)x - (uint64_t)y));
        case OP_MUL: return int_val(r, (int64_t)((uint64_t)x * (uint64_t)y));
        case OP_FDIV:
        case OP_MOD: {
            if (y == 0) RFAIL(r, "line %d: integer division or modulo by zero", where->line);
            if (y == -1) return int_val(r, op == OP_MOD ? 0 : (int64_t)(0 - (uint64_t)x));
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
            return int_val(r, op == OP_MOD ? m : q);
        }
        case OP_POW:
            if (y >= 0) {
                int64_t v = 1;
                for (int64_t k = 0; k < y && k < 64; k++) v = (int64_t)((uint64_t)v * (uint64_t)x);
                return int_val(r, v);
            }
            return float_val(r, pow((double)x, (double)y));
        }
    }
    double x = num(a), y = num(b);
    switch (op) {
    case OP_ADD: return float_val(r, x + y);
    case OP_SUB: return float_val(r, x - y);
    case OP_MUL: return float_val(r, x * y);
    case OP_FDIV:
    case OP_MOD:
        if (y == 0) RFAIL(r, "line %d: float division or modulo by zero", where->line);
        if (op == OP_FDIV) return float_val(r, floor(x / y));
        { double m = fmod(x, y); if (m != 0 && ((m < 0) != (y < 0))) m += y; return float_val(r, m); }
    default: return float_val(r, pow(x, y));
    }
}

/* Evaluated arguments of a call / filter / test node (after the implicit first ones). */
typedef struct args {
    val **pos;
    int npos;
    const char **kw;
    val **kwv;
    int nkw;
} args;

static args eval_args(render *r, scope *sc, node *n) {
    args a = {0};
    a.npos = n->n;
    a.pos = xalloc(r->mem, r->e, ((size_t)n->n + 1) * sizeof *a.pos);
    for (int i = 0; i < n->n; i++) a.pos[i] = eval(r, sc, n->list[i]);
    a.nkw = n->n2;
    a.kw = n->names;
    a.kwv = xalloc(r->mem, r->e, ((size_t)n->n2 + 1) * sizeof *a.kwv);
    for (int i = 0; i < n->n2; i++) a.kwv[i] = eval(r, sc, n->list2[i]);
    return a;
}

/* Argument i by position or by keyword name; NULL when absent. */
static val *arg(const args *a, int i, const char *name) {
    if (i < a->npos) return a->pos[i];
    for (int k = 0; k < a->nkw; k++)
        if (name && strcmp(a->kw[k], name) == 0) return a->kwv[k];
    return NULL;
}

static val *need_str(render *r, val *v, const char *what, node *where) {
    if (!v || v->kind != V_STR) RFAIL(r, "line %d: %s expects a string, got %s", where->line, what, v ? kind_name(v->kind) : "nothing");
    return v;
}

static bool run_test(render *r, const char *name, val *v, const args *a, node *where);

/* Append to a list built with capacity *cap. */
static void list_push(render *r, val *l, size_t *cap, val *x) {
    if (l->u.list.n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        val **ni = xalloc(r->mem, r->e, nc * sizeof *ni);
        if (l->u.list.n) memcpy(ni, l->u.list.items, l->u.list.n * sizeof *ni);
        l->u.list.items = ni;
        *cap = nc;
    }
    l->u.list.items[l->u.list.n++] = x;
}

/* String and dict methods: obj.name(args). */
static val *call_method(render *r, val *obj, const char *name, const args *a, node *where) {
    if (obj->kind == V_STR) {
        if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
            val *chars = arg(a, 0, "chars");
            if (chars && chars->kind == V_NONE) chars = NULL;
            if (chars) need_str(r, chars, name, where);
            return strip(r, obj, chars, name[0] != 'r', name[0] != 'l');
        }
        if (!strcmp(name, "upper")) return case_map(r, obj, 1);
        if (!strcmp(name, "lower")) return case_map(r, obj, 0);
        if (!strcmp(name, "title")) return case_map(r, obj, 2);
        if (!strcmp(name, "capitalize")) {
            val *low = case_map(r, obj, 0);
            return case_map(r, low, 3);
        }
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            val *x = arg(a, 0, NULL);
            if (!x) RFAIL(r, "line %d: %s needs an argument", where->line, name);
            size_t nx = x->kind == V_LIST ? x->u.list.n : 1;
            for (size_t k = 0; k < nx; k++) {
                val *p = need_str(r, x->kind == V_LIST ? x->u.list.items[k] : x, name, where);
                if (p->u.str.n > obj->u.str.n) continue;
                size_t at = name[0] == 's' ? 0 : obj->u.str.n - p->u.str.n;
                if (memcmp(obj->u.str.s + at, p->u.str.s, p->u.str.n) == 0) return &k_true;
            }
            return &k_false;
        }
        if (!strcmp(name, "split")) {
            val *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
            int64_t maxsplit = mx && mx->kind == V_INT ? mx->u.i : -1;
            val *l = list_new(r, 0);
            size_t cap = 0;
            const char *s = obj->u.str.s;
            size_t n = obj->u.str.n, i = 0;
#define PUSH(a_, b_) list_push(r, l, &cap, substr(r, obj, (a_), (b_)))
            if (sep && sep->kind != V_NONE) {
                need_str(r, sep, "split", where);
                if (sep->u.str.n == 0) RFAIL(r, "line %d: split: empty separator", where->line);
                size_t start = 0;
                while (maxsplit != 0) {
                    const char *f = find_bytes(s + start, n - start, sep->u.str.s, sep->u.str.n);
                    if (!f) break;
                    PUSH(start, (size_t)(f - s));
                    start = (size_t)(f - s) + sep->u.str.n;
                    if (maxsplit > 0) maxsplit--;
                }
                PUSH(start, n);
            } else { /* whitespace runs */
                while (i < n) {
                    while (i < n && in_set(s[i], NULL)) i++;
                    if (i >= n) break;
                    if (maxsplit == 0) {
                        size_t e = n;
                        while (e > i && in_set(s[e - 1], NULL)) e--;
                        PUSH(i, e);
                        break;
                    }
                    size_t j = i;
                    while (j < n && !in_set(s[j], NULL)) j++;
                    PUSH(i, j);
                    if (maxsplit > 0) maxsplit--;
                    i = j;
                }
            }
#undef PUSH
            return l;
        }
        if (!strcmp(name, "replace")) {
            val *o = need_str(r, arg(a, 0, "old"), "replace", where), *nw = need_str(r, arg(a, 1, "new"), "replace", where);
            val *cnt = arg(a, 2, "count");
            int64_t count = cnt && cnt->kind == V_INT ? cnt->u.i : -1;
            sbuild sb = {0};
            size_t i = 0, n = obj->u.str.n;
            while (i <= n) {
                const char *f = count != 0 && o->u.str.n ? find_bytes(obj->u.str.s + i, n - i, o->u.str.s, o->u.str.n) : NULL;
                if (!f) break;
                size_t at = (size_t)(f - obj->u.str.s);
                sb_put(r, &sb, obj->u.str.s + i, obj->u.str.m ? obj->u.str.m + i : NULL, at - i);
                sb_put(r, &sb, nw->u.str.s, nw->u.str.m, nw->u.str.n);
                i = at + o->u.str.n;
                if (count > 0) count--;
            }
            sb_put(r, &sb, obj->u.str.s + i, obj->u.str.m ? obj->u.str.m + i : NULL, n - i);
            return sb_done(r, &sb);
        }
        if (!strcmp(name, "join")) {
            val *it = arg(a, 0, NULL);
            if (!it) RFAIL(r, "line %d: join needs an argument", where->line);
            size_t n;
            val **items = iter_items(r, it, &n);
            sbuild sb = {0};
            for (size_t i = 0; i < n; i++) {
                if (i) sb_put(r, &sb, obj->u.str.s, obj->u.str.m, obj->u.str.n);
                put_str(r, &sb, items[i]);
            }
            return sb_done(r, &sb);
        }
        if (!strcmp(name, "find")) {
            val *x = need_str(r, arg(a, 0, NULL), "find", where);
            const char *f = find_bytes(obj->u.str.s, obj->u.str.n, x->u.str.s, x->u.str.n);
            return int_val(r, f ? (int64_t)(f - obj->u.str.s) : -1);
        }
    } else if (obj->kind == V_DICT) {
        if (!strcmp(name, "items") || !strcmp(name, "keys") || !strcmp(name, "values")) {
            size_t n = obj->u.dict.n;
            val *l = list_new(r, n);
            for (size_t i = 0; i < n; i++) {
                if (name[0] == 'k') l->u.list.items[i] = obj->u.dict.keys[i];
                else if (name[0] == 'v') l->u.list.items[i] = obj->u.dict.vals[i];
                else {
                    val *pair = list_new(r, 2);
                    pair->u.list.items[0] = obj->u.dict.keys[i];
                    pair->u.list.items[1] = obj->u.dict.vals[i];
                    l->u.list.items[i] = pair;
                }
            }
            return l;
        }
        if (!strcmp(name, "get")) {
            val *k = arg(a, 0, "key"), *d = arg(a, 1, "default");
            if (!k) RFAIL(r, "line %d: get needs a key", where->line);
            val *v = dict_get(obj, k);
            return v ? v : d ? d : &k_none;
        }
    } else if (obj->kind == V_UNDEF) {
        RFAIL(r, "line %d: undefined value has no method '%s'", where->line, name);
    }
    RFAIL(r, "line %d: %s has no method '%s' in vibee's chat template renderer", where->line, kind_name(obj->kind), name);
}

static val *call_builtin(render *r, int fn, const args *a, node *where) {
    switch (fn) {
    case F_RAISE: {
        val *m = arg(a, 0, NULL);
        sbuild sb = {0};
        if (m) put_str(r, &sb, m);
        fail(r->e, VB_ERR_STATE, "chat template raised an exception: %s", sb.s ? sb.s : "");
    }
    case F_NAMESPACE:
    case F_DICT: {
        val *d = dict_new(r, fn == F_NAMESPACE);
        if (a->npos && a->pos[0]->kind == V_DICT)
            for (size_t i = 0; i < a->pos[0]->u.dict.n; i++) dict_set(r, d, a->pos[0]->u.dict.keys[i], a->pos[0]->u.dict.vals[i]);
        for (int k = 0; k < a->nkw; k++) dict_set(r, d, cstr_val(r, a->kw[k]), a->kwv[k]);
        return d;
    }
    case F_RANGE: {
        int64_t lo = 0, hi, st = 1;
        if (a->npos == 1) hi = inum(a->pos[0]);
        else if (a->npos >= 2) {
            lo = inum(a->pos[0]);
            hi = inum(a->pos[1]);
            if (a->npos >= 3) st = inum(a->pos[2]);
        } else RFAIL(r, "line %d: range needs arguments", where->line);
        if (st == 0) RFAIL(r, "line %d: range step cannot be zero", where->line);
        /* count in unsigned arithmetic: no overflow whatever the bounds */
        uint64_t span = st > 0 ? (hi > lo ? (uint64_t)hi - (uint64_t)lo : 0) : (lo > hi ? (uint64_t)lo - (uint64_t)hi : 0);
        uint64_t ust = st > 0 ? (uint64_t)st : 0 - (uint64_t)st;
        uint64_t ucnt = span / ust + (span % ust != 0);
        if (ucnt > 1000000) RFAIL(r, "line %d: range of %llu items is too large", where->line, (unsigned long long)ucnt);
        int64_t cnt = (int64_t)ucnt;
        val *l = list_new(r, (size_t)cnt);
        for (int64_t i = 0; i < cnt; i++) l->u.list.items[i] = int_val(r, (int64_t)((uint64_t)lo + (uint64_t)i * (uint64_t)st));
        return l;
    }
    case F_STRFTIME: {
        val *f = need_str(r, arg(a, 0, NULL), "strftime_now", where);
        char fmt[128], buf[256];
        snprintf(fmt, sizeof fmt, "%.*s", (int)(f->u.str.n > 127 ? 127 : f->u.str.n), f->u.str.s);
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        size_t n = strftime(buf, sizeof buf, fmt, &tmv);
        buf[n] = 0;
        return str_val(r, strcpy(xalloc(r->mem, r->e, n + 1), buf), NULL, n);
    }
    }
    RFAIL(r, "line %d: not callable", where->line);
}

static val *apply_filter(render *r, const char *name, val *v, const args *a, node *where) {
    if (!strcmp(name, "trim")) {
        val *chars = arg(a, 0, "chars");
        return strip(r, need_str(r, to_str(r, v), "trim", where), chars && chars->kind == V_STR ? chars : NULL, true, true);
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) return int_val(r, length_of(r, v));
    if (!strcmp(name, "tojson")) {
        val *ind = arg(a, 0, "indent"), *asc = arg(a, 1, "ensure_ascii"), *sep = arg(a, 2, "separators"),
            *sk = arg(a, 3, "sort_keys");
        json_opts o = {ind && ind->kind == V_INT ? (int)(ind->u.i < 0 ? 0 : ind->u.i > 32 ? 32 : ind->u.i) : -1,
                       asc && truthy(asc), sk && truthy(sk), NULL, NULL};
        if (sep && sep->kind == V_LIST && sep->u.list.n == 2 && sep->u.list.items[0]->kind == V_STR &&
            sep->u.list.items[1]->kind == V_STR) {
            o.item_sep = sep->u.list.items[0];
            o.key_sep = sep->u.list.items[1];
        }
        sbuild sb = {0};
        put_json(r, &sb, v, &o, 0);
        return sb_done(r, &sb);
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        val *s = to_str(r, v);
        if (name[0] == 'c') return case_map(r, case_map(r, s, 0), 3);
        return case_map(r, s, name[0] == 'u' ? 1 : name[0] == 'l' ? 0 : 2);
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        val *dflt = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        if (!dflt) dflt = cstr_val(r, "");
        if (v->kind == V_UNDEF || (boolean && truthy(boolean) && !truthy(v))) return dflt;
        return v;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        size_t n;
        val **items = iter_items(r, v, &n);
        if (n == 0) return &k_undef;
        return name[0] == 'f' ? items[0] : items[n - 1];
    }
    if (!strcmp(name, "join")) {
        val *sep = arg(a, 0, "d");
        size_t n;
        val **items = iter_items(r, v, &n);
        sbuild sb = {0};
        for (size_t i = 0; i < n; i++) {
            if (i && sep) put_str(r, &sb, sep);
            put_str(r, &sb, items[i]);
        }
        return sb_done(r, &sb);
    }
    if (!strcmp(name, "string")) return to_str(r, v);
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "int")) {
        if (v->kind == V_STR) {
            char buf[64];
            snprintf(buf, sizeof buf, "%.*s", (int)(v->u.str.n > 63 ? 63 : v->u.str.n), v->u.str.s);
            char *end;
            long long x = strtoll(buf, &end, 10);
            return int_val(r, end != buf && *end == 0 ? x : 0);
        }
        return int_val(r, is_num(v) ? inum(v) : 0);
    }
    if (!strcmp(name, "float")) return float_val(r, is_num(v) ? num(v) : 0.0);
    if (!strcmp(name, "abs")) {
        if (v->kind == V_INT) return int_val(r, v->u.i < 0 ? (int64_t)(0 - (uint64_t)v->u.i) : v->u.i);
        if (is_num(v)) return float_val(r, fabs(num(v)));
        RFAIL(r, "line %d: abs of %s", where->line, kind_name(v->kind));
    }
    if (!strcmp(name, "list")) {
        size_t n;
        val **items = iter_items(r, v, &n);
        val *l = list_new(r, n);
        if (n) memcpy(l->u.list.items, items, n * sizeof *items);
        return l;
    }
    if (!strcmp(name, "reverse")) {
        if (v->kind == V_STR) return do_slice(r, v, NULL, NULL, int_val(r, -1), where);
        size_t n;
        val **items = iter_items(r, v, &n);
        val *l = list_new(r, n);
        for (size_t i = 0; i < n; i++) l->u.list.items[i] = items[n - 1 - i];
        return l;
    }
    if (!strcmp(name, "items")) {
        if (v->kind != V_DICT) RFAIL(r, "line %d: items of %s", where->line, kind_name(v->kind));
        args none = {0};
        return call_method(r, v, "items", &none, where);
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr") || !strcmp(name, "select") || !strcmp(name, "reject")) {
        bool attr = strstr(name, "attr") != NULL;
        bool want = name[0] == 's';
        int base = attr ? 1 : 0;
        val *an = attr ? need_str(r, arg(a, 0, NULL), name, where) : NULL;
        val *tn = arg(a, base, NULL);
        args targs = {0};
        if (a->npos > base + 1) {
            targs.pos = a->pos + base + 1;
            targs.npos = a->npos - base - 1;
        }
        char tname[64] = "";
        if (tn) snprintf(tname, sizeof tname, "%.*s", (int)(need_str(r, tn, name, where)->u.str.n > 63 ? 63 : tn->u.str.n), tn->u.str.s);
        size_t n;
        val **items = iter_items(r, v, &n);
        val *l = list_new(r, n);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            val *x = an ? get_attr(r, items[i], an->u.str.s, where) : items[i];
            bool ok = tn ? run_test(r, tname, x, &targs, where) : truthy(x);
            if (ok == want) l->u.list.items[k++] = items[i];
        }
        l->u.list.n = k;
        return l;
    }
    if (!strcmp(name, "map")) {
        val *at = NULL;
        for (int k = 0; k < a->nkw; k++)
            if (!strcmp(a->kw[k], "attribute")) at = a->kwv[k];
        size_t n;
        val **items = iter_items(r, v, &n);
        val *l = list_new(r, n);
        for (size_t i = 0; i < n; i++) {
            if (at) l->u.list.items[i] = get_attr(r, items[i], need_str(r, at, "map", where)->u.str.s, where);
            else {
                val *fn = need_str(r, arg(a, 0, NULL), "map", where);
                char fname[64];
                snprintf(fname, sizeof fname, "%.*s", (int)(fn->u.str.n > 63 ? 63 : fn->u.str.n), fn->u.str.s);
                args rest = {0};
                l->u.list.items[i] = apply_filter(r, fname, items[i], &rest, where);
            }
        }
        return l;
    }
    if (!strcmp(name, "replace")) {
        val *s = to_str(r, v);
        return call_method(r, s, "replace", a, where);
    }
    if (!strcmp(name, "indent")) {
        val *w = arg(a, 0, "width"), *first = arg(a, 1, "first");
        int64_t width = w && w->kind == V_INT ? w->u.i : 4;
        if (width < 0 || width > 256) width = 4;
        val *s = to_str(r, v);
        sbuild sb = {0};
        char pad[257];
        memset(pad, ' ', (size_t)width);
        if (first && truthy(first)) sb_put(r, &sb, pad, NULL, (size_t)width);
        for (size_t i = 0; i < s->u.str.n; i++) {
            sb_put(r, &sb, s->u.str.s + i, s->u.str.m ? s->u.str.m + i : NULL, 1);
            if (s->u.str.s[i] == '\n' && i + 1 < s->u.str.n && s->u.str.s[i + 1] != '\n') sb_put(r, &sb, pad, NULL, (size_t)width);
        }
        return sb_done(r, &sb);
    }
    fail(r->e, VB_ERR_UNSUPPORTED, "line %d: filter '%s' is not supported by vibee's chat template renderer", where->line, name);
}

static bool run_test(render *r, const char *name, val *v, const args *a, node *where) {
    val *x = arg(a, 0, NULL);
    if (!strcmp(name, "defined")) return v->kind != V_UNDEF;
    if (!strcmp(name, "undefined")) return v->kind == V_UNDEF;
    if (!strcmp(name, "none")) return v->kind == V_NONE;
    if (!strcmp(name, "string")) return v->kind == V_STR;
    if (!strcmp(name, "number")) return v->kind == V_INT || v->kind == V_FLOAT;
    if (!strcmp(name, "integer")) return v->kind == V_INT;
    if (!strcmp(name, "float")) return v->kind == V_FLOAT;
    if (!strcmp(name, "boolean")) return v->kind == V_BOOL;
    if (!strcmp(name, "true")) return v->kind == V_BOOL && v->u.b;
    if (!strcmp(name, "false")) return v->kind == V_BOOL && !v->u.b;
    if (!strcmp(name, "mapping")) return v->kind == V_DICT;
    if (!strcmp(name, "iterable")) return v->kind == V_LIST || v->kind == V_DICT || v->kind == V_STR;
    if (!strcmp(name, "sequence")) return v->kind == V_LIST || v->kind == V_DICT || v->kind == V_STR;
    if (!strcmp(name, "callable")) return v->kind == V_FUNC || v->kind == V_MACRO;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v->kind != V_STR) return false;
        val *m = case_map(r, v, name[0] == 'u');
        return memcmp(m->u.str.s, v->u.str.s, v->u.str.n) == 0;
    }
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") || !strcmp(name, "sameas"))
        return x && val_eq(v, x);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return x && !val_eq(v, x);
    if (!strcmp(name, "even") || !strcmp(name, "odd")) {
        if (v->kind != V_INT) RFAIL(r, "line %d: '%s' test of %s", where->line, name, kind_name(v->kind));
        return ((v->u.i % 2) != 0) == (name[0] == 'o');
    }
    if (!strcmp(name, "divisibleby")) {
        if (!x || !is_num(x) || inum(x) == 0 || v->kind != V_INT) RFAIL(r, "line %d: bad 'divisibleby' test", where->line);
        return inum(x) == -1 || v->u.i % inum(x) == 0;
    }
    if (!strcmp(name, "in")) return x && contains(r, x, v, where);
    if (!strcmp(name, "gt") || !strcmp(name, "lt") || !strcmp(name, "ge") || !strcmp(name, "le")) {
        if (!x) RFAIL(r, "line %d: '%s' test needs an argument", where->line, name);
        int c = cmp_order(r, v, x, where);
        return name[0] == 'g' ? (name[1] == 't' ? c > 0 : c >= 0) : (name[1] == 't' ? c < 0 : c <= 0);
    }
    fail(r->e, VB_ERR_UNSUPPORTED, "line %d: test '%s' is not supported by vibee's chat template renderer", where->line, name);
}

static val *eval(render *r, scope *sc, node *n) {
    step(r);
    if (++r->depth > r->lim->max_depth) RFAIL(r, "line %d: evaluation nested deeper than %d", n->line, r->lim->max_depth);
    val *res;
    switch (n->kind) {
    case N_LIT: res = n->lit; break;
    case N_NAME: res = scope_get(sc, n->name); break;
    case N_LIST:
    case N_TUPLE: {
        res = list_new(r, (size_t)n->n);
        res->u.list.tuple = n->kind == N_TUPLE;
        for (int i = 0; i < n->n; i++) res->u.list.items[i] = eval(r, sc, n->list[i]);
        break;
    }
    case N_DICT: {
        res = dict_new(r, false);
        for (int i = 0; i + 1 < n->n; i += 2) dict_set(r, res, eval(r, sc, n->list[i]), eval(r, sc, n->list[i + 1]));
        break;
    }
    case N_ATTR: {
        val *o = eval(r, sc, n->a);
        if (o->kind == V_UNDEF && n->a->kind == N_NAME)
            RFAIL(r, "line %d: '%s' is undefined", n->line, n->a->name);
        res = get_attr(r, o, n->name, n);
        break;
    }
    case N_INDEX: {
        val *o = eval(r, sc, n->a);
        if (o->kind == V_UNDEF && n->a->kind == N_NAME)
            RFAIL(r, "line %d: '%s' is undefined", n->line, n->a->name);
        res = get_item(r, o, eval(r, sc, n->b), n);
        break;
    }
    case N_SLICE: {
        val *o = eval(r, sc, n->a);
        val *lo = n->b ? eval(r, sc, n->b) : NULL, *hi = n->c ? eval(r, sc, n->c) : NULL;
        val *st = n->list && n->list[0] ? eval(r, sc, n->list[0]) : NULL;
        res = do_slice(r, o, lo, hi, st, n);
        break;
    }
    case N_CALL: {
        args a = eval_args(r, sc, n);
        if (n->a->kind == N_ATTR) {
            val *o = eval(r, sc, n->a->a);
            val *f = o->kind == V_DICT ? dict_gets(o, n->a->name) : NULL;
            if (f && f->kind == V_FUNC) res = call_builtin(r, f->u.func, &a, n);
            else res = call_method(r, o, n->a->name, &a, n);
        } else {
            val *f = eval(r, sc, n->a);
            if (f->kind == V_MACRO) {
                res = call_macro(r, f, &a, n);
                break;
            }
            if (f->kind != V_FUNC) {
                if (n->a->kind == N_NAME)
                    RFAIL(r, "line %d: '%s' is %s, not a function", n->line, n->a->name,
                          f->kind == V_UNDEF ? "undefined" : kind_name(f->kind));
                RFAIL(r, "line %d: %s is not callable", n->line, kind_name(f->kind));
            }
            res = call_builtin(r, f->u.func, &a, n);
        }
        break;
    }
    case N_FILTER: {
        val *v = eval(r, sc, n->a);
        args a = eval_args(r, sc, n);
        res = apply_filter(r, n->name, v, &a, n);
        break;
    }
    case N_TEST: {
        val *v = eval(r, sc, n->a);
        args a = eval_args(r, sc, n);
        bool t = run_test(r, n->name, v, &a, n);
        res = bool_val(n->negate ? !t : t);
        break;
    }
    case N_BINOP: {
        val *a = eval(r, sc, n->a), *b = eval(r, sc, n->b);
        switch (n->op) {
        case OP_EQ: res = bool_val(val_eq(a, b)); break;
        case OP_NE: res = bool_val(!val_eq(a, b)); break;
        case OP_LT: res = bool_val(cmp_order(r, a, b, n) < 0); break;
        case OP_GT: res = bool_val(cmp_order(r, a, b, n) > 0); break;
        case OP_LE: res = bool_val(cmp_order(r, a, b, n) <= 0); break;
        case OP_GE: res = bool_val(cmp_order(r, a, b, n) >= 0); break;
        case OP_IN: res = bool_val(contains(r, b, a, n)); break;
        case OP_NOTIN: res = bool_val(!contains(r, b, a, n)); break;
        default:
            if (n->op != OP_CAT && (a->kind == V_UNDEF || b->kind == V_UNDEF))
                RFAIL(r, "line %d: arithmetic on an undefined value", n->line);
            res = arith(r, n->op, a, b, n);
        }
        break;
    }
    case N_NOT: res = bool_val(!truthy(eval(r, sc, n->a))); break;
    case N_NEG: {
        val *v = eval(r, sc, n->a);
        if (v->kind == V_INT) res = int_val(r, (int64_t)(0 - (uint64_t)v->u.i));
        else if (is_num(v)) res = float_val(r, -num(v));
        else RFAIL(r, "line %d: bad operand type for unary -: %s", n->line, kind_name(v->kind));
        break;
    }
    case N_AND: {
        val *a = eval(r, sc, n->a);
        res = truthy(a) ? eval(r, sc, n->b) : a;
        break;
    }
    case N_OR: {
        val *a = eval(r, sc, n->a);
        res = truthy(a) ? a : eval(r, sc, n->b);
        break;
    }
    case N_COND: res = truthy(eval(r, sc, n->b)) ? eval(r, sc, n->a) : n->c ? eval(r, sc, n->c) : &k_undef; break;
    default: RFAIL(r, "line %d: internal: bad expression node", n->line);
    }
    r->depth--;
    return res;
}

/* ---------------------------------------------------------------------------------------
 * Statements
 * --------------------------------------------------------------------------------------- */

enum flow { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE };

static void emit(render *r, const val *v) {
    sbuild tmp = {0};
    const char *s;
    const uint8_t *m;
    size_t n;
    if (v->kind == V_STR) {
        s = v->u.str.s;
        m = v->u.str.m;
        n = v->u.str.n;
    } else {
        put_str(r, &tmp, v);
        s = tmp.s ? tmp.s : "";
        m = tmp.any ? tmp.m : NULL;
        n = tmp.n;
    }
    if (n == 0) return;
    outbuf *o = &r->out;
    if (o->n + n > r->lim->max_output)
        fail(r->e, VB_ERR_ARG, "chat template: rendered prompt is longer than %zu bytes", r->lim->max_output);
    if (o->n + n + 1 > o->cap) {
        size_t cap = (o->cap ? o->cap * 2 : 4096) + n;
        char *ns = realloc(o->s, cap + 1);
        if (!ns) fail(r->e, VB_ERR_NOMEM, "chat template: out of memory");
        o->s = ns;
        uint8_t *nm = realloc(o->m, cap + 1);
        if (!nm) fail(r->e, VB_ERR_NOMEM, "chat template: out of memory");
        o->m = nm;
        o->cap = cap;
    }
    memcpy(o->s + o->n, s, n);
    if (m) memcpy(o->m + o->n, m, n);
    else memset(o->m + o->n, 0, n);
    o->n += n;
}

static int exec_body(render *r, scope *sc, node **body, int n);

/* Render body in scope sc into a string value (macro calls, block set). */
static val *capture(render *r, scope *sc, node **body, int n) {
    size_t start = r->out.n; /* rendered at the end of the output, then taken back */
    exec_body(r, sc, body, n);
    sbuild sb = {0};
    if (r->out.n > start) sb_put(r, &sb, r->out.s + start, r->out.m + start, r->out.n - start);
    r->out.n = start;
    return sb_done(r, &sb);
}

static val *call_macro(render *r, val *m, const args *a, node *where) {
    node *def = m->u.macro.def;
    if (a->npos > def->n_names)
        RFAIL(r, "line %d: macro '%s' takes %d arguments, %d given", where->line, def->name, def->n_names, a->npos);
    scope *ms = scope_new(r, m->u.macro.closure);
    for (int i = 0; i < def->n_names; i++) {
        val *v = arg(a, i, def->names[i]);
        if (!v) v = def->list2[i] ? eval(r, ms, def->list2[i]) : &k_undef;
        scope_set(r, ms, def->names[i], v);
    }
    return capture(r, ms, def->list, def->n);
}

static void bind_targets(render *r, scope *sc, node *f, val *item) {
    if (f->n_names == 1) {
        scope_set(r, sc, f->names[0], item);
        return;
    }
    size_t n;
    val **parts = iter_items(r, item, &n);
    if ((int)n != f->n_names)
        RFAIL(r, "line %d: cannot unpack %zu values into %d loop variables", f->line, n, f->n_names);
    for (int k = 0; k < f->n_names; k++) scope_set(r, sc, f->names[k], parts[k]);
}

static int exec_for(render *r, scope *sc, node *f) {
    val *seq = eval(r, sc, f->a);
    size_t n;
    val **items = iter_items(r, seq, &n);
    if (f->b) { /* for x in xs if cond: filter first, as Jinja does (loop.length counts the kept items) */
        val **kept = xalloc(r->mem, r->e, (n ? n : 1) * sizeof *kept);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            scope *fs = scope_new(r, sc);
            bind_targets(r, fs, f, items[i]);
            if (truthy(eval(r, fs, f->b))) kept[k++] = items[i];
        }
        items = kept;
        n = k;
    }
    if (n == 0) return f->n2 ? exec_body(r, sc, f->list2, f->n2) : FLOW_NORMAL;
    for (size_t i = 0; i < n; i++) {
        scope *ls = scope_new(r, sc); /* each iteration gets its own scope, as in Jinja */
        val *loop = dict_new(r, false);
        dict_set(r, loop, cstr_val(r, "index"), int_val(r, (int64_t)i + 1));
        dict_set(r, loop, cstr_val(r, "index0"), int_val(r, (int64_t)i));
        dict_set(r, loop, cstr_val(r, "revindex"), int_val(r, (int64_t)(n - i)));
        dict_set(r, loop, cstr_val(r, "revindex0"), int_val(r, (int64_t)(n - i - 1)));
        dict_set(r, loop, cstr_val(r, "first"), bool_val(i == 0));
        dict_set(r, loop, cstr_val(r, "last"), bool_val(i + 1 == n));
        dict_set(r, loop, cstr_val(r, "length"), int_val(r, (int64_t)n));
        dict_set(r, loop, cstr_val(r, "previtem"), i > 0 ? items[i - 1] : &k_undef);
        dict_set(r, loop, cstr_val(r, "nextitem"), i + 1 < n ? items[i + 1] : &k_undef);
        scope_set(r, ls, "loop", loop);
        bind_targets(r, ls, f, items[i]);
        int fl = exec_body(r, ls, f->list, f->n);
        if (fl == FLOW_BREAK) break;
    }
    return FLOW_NORMAL;
}

static int exec_body(render *r, scope *sc, node **body, int n) {
    if (++r->depth > r->lim->max_depth) RFAIL(r, "blocks nested deeper than %d", r->lim->max_depth);
    int flow = FLOW_NORMAL;
    for (int i = 0; i < n && flow == FLOW_NORMAL; i++) {
        node *s = body[i];
        step(r);
        r->line = s->line;
        switch (s->kind) {
        case N_TEXT: emit(r, s->lit); break;
        case N_OUTPUT: emit(r, eval(r, sc, s->a)); break;
        case N_IF:
            if (truthy(eval(r, sc, s->a))) flow = exec_body(r, sc, s->list, s->n);
            else flow = exec_body(r, sc, s->list2, s->n2);
            break;
        case N_FOR: flow = exec_for(r, sc, s); break;
        case N_MACRO: {
            val *m = mkval(r->mem, r->e, V_MACRO);
            m->u.macro.def = s;
            m->u.macro.closure = sc;
            scope_set(r, sc, s->name, m);
            break;
        }
        case N_SET: {
            val *v = s->a ? eval(r, sc, s->a) : capture(r, scope_new(r, sc), s->list, s->n);
            if (s->attr) {
                val *ns = scope_get(sc, s->name);
                if (ns->kind != V_DICT || !ns->u.dict.ns)
                    RFAIL(r, "line %d: cannot set attribute '%s' of '%s': it is not a namespace()", s->line, s->attr, s->name);
                dict_set(r, ns, cstr_val(r, s->attr), v);
            } else {
                scope_set(r, sc, s->name, v);
            }
            break;
        }
        case N_BREAK: flow = FLOW_BREAK; break;
        case N_CONTINUE: flow = FLOW_CONTINUE; break;
        default: RFAIL(r, "line %d: internal: bad statement node", s->line);
        }
    }
    r->depth--;
    return flow;
}

/* ---------------------------------------------------------------------------------------
 * Entry point
 * --------------------------------------------------------------------------------------- */

int vb_jinja_render(const vb_jinja *t, const char *data_json, size_t data_len, const vb_jinja_var *vars,
                    int n_vars, char **text, uint8_t **user, size_t *len, char *err, size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!t || !text || !user || !len || (!data_json && data_len) || (n_vars && !vars)) return VB_ERR_ARG;
    *text = NULL;
    *user = NULL;
    *len = 0;
    arena mem = {.limit = t->lim.max_memory};
    errctx e = {.err = err, .err_len = err_len};
    render r = {.e = &e, .mem = &mem, .lim = &t->lim, .t0 = now_seconds()};
    if (setjmp(e.jb)) {
        arena_free(&mem);
        free(r.out.s);
        free(r.out.m);
        return e.status;
    }
    scope *g = scope_new(&r, NULL);
    static const struct { const char *name; int fn; } fns[] = {
        {"raise_exception", F_RAISE}, {"namespace", F_NAMESPACE}, {"range", F_RANGE},
        {"strftime_now", F_STRFTIME}, {"dict", F_DICT}};
    for (size_t k = 0; k < sizeof fns / sizeof fns[0]; k++) {
        val *f = mkval(&mem, &e, V_FUNC);
        f->u.func = fns[k].fn;
        scope_set(&r, g, fns[k].name, f);
    }
    for (int k = 0; k < n_vars; k++) {
        if (!vars[k].name) continue;
        val *v = vars[k].str ? cstr_val(&r, vars[k].str)
                             : vars[k].boolean < 0 ? &k_none : bool_val(vars[k].boolean);
        scope_set(&r, g, vars[k].name, v);
    }
    if (data_json && data_len) {
        /* JSON data through the expression parser in JSON mode (strings marked as data) */
        errctx pe = {.err = err, .err_len = err_len};
        parser p = {.e = &pe, .mem = &mem, .lim = &t->lim, .json = true};
        if (setjmp(pe.jb)) {
            arena_free(&mem);
            if (pe.status == VB_ERR_FORMAT) pe.status = VB_ERR_ARG;
            if (err && err_len) {
                char tmp[256];
                snprintf(tmp, sizeof tmp, "%s", err);
                snprintf(err, err_len, "chat messages are not valid JSON: %s", tmp);
            }
            return pe.status;
        }
        tokenize(&p, data_json, data_len, 1);
        node *root = parse_expr(&p);
        if (peek(&p)->kind != T_END) fail(&pe, VB_ERR_FORMAT, "trailing characters");
        if (root->kind != N_DICT) fail(&pe, VB_ERR_FORMAT, "expected a JSON object of variables");
        val *d = eval(&r, g, root);
        for (size_t i = 0; i < d->u.dict.n; i++) {
            val *k = d->u.dict.keys[i];
            if (k->kind != V_STR) continue;
            char *name = xalloc(&mem, &e, k->u.str.n + 1);
            memcpy(name, k->u.str.s, k->u.str.n);
            scope_set(&r, g, name, d->u.dict.vals[i]);
        }
    }
    r.globals = g;
    exec_body(&r, scope_new(&r, g), t->body, t->n);
    arena_free(&mem);
    if (!r.out.s) {
        r.out.s = malloc(1);
        r.out.m = malloc(1);
        if (!r.out.s || !r.out.m) {
            free(r.out.s);
            free(r.out.m);
            return VB_ERR_NOMEM;
        }
    }
    r.out.s[r.out.n] = 0;
    *text = r.out.s;
    *user = r.out.m;
    *len = r.out.n;
    return VB_OK;
}
