/* tool_calls.c - tool calls (OpenAI function calling) in the format of a chat template's model
 * family (vb_chat_tool_* in vibee.h): which format a template uses (one table below: Hermes /
 * Qwen <tool_call> tags, Llama 3 JSON, Mistral [TOOL_CALLS] lists and [ARGS], Granite
 * <|tool_call|>, DeepSeek's markers, and a generic format for the other templates); the template
 * variables a template expects from OpenAI-shaped messages (arguments strings parsed into
 * objects; the tools and earlier calls written into the text where the template does not show
 * them); a
 * GBNF grammar whose sentences are calls of the given tools, each call's arguments following
 * its parameters schema (the JSON-schema converter of src/grammar, rules renamed per tool); and
 * a parser of generated text into OpenAI tool_calls with the text before the calls. Uses
 * jansson (without it: VB_ERR_UNSUPPORTED, and text never holds calls). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "vibee.h"

/* One tool-call format. A call is open + {"name": N, args_key: A} + close, or, with mid set,
 * open + N + mid + A + close; calls are joined by sep and wrapped in begin / end. With begin and
 * open both empty a call must start the output (Llama 3). Whitespace around the fixed texts is
 * optional when parsing; the grammar writes them exactly. */
typedef struct tool_format {
    const char *name;
    const char *marker;          /* text in a template that selects the format (NULL: fallback) */
    const char *begin, *end;     /* around all calls */
    const char *open, *close;    /* around each call */
    const char *sep;             /* between calls */
    const char *mid;             /* NULL: a JSON object per call; else between name and arguments */
    const char *args_key;        /* the arguments' key in the JSON object */
    int max_calls;               /* 0: any number */
    int id_len;                  /* ids: 9 alphanumerics (Mistral checks), 0: "call_" + 24 */
    bool args_string;            /* the template adds arguments to text: keep OpenAI's JSON string */
} tool_format;

/* First match wins (Mistral Small 3.2's template also holds "[TOOL_CALLS]"). */
static const tool_format k_formats[] = {
    {"mistral-args", "[ARGS]", "", "", "[TOOL_CALLS]", "", "", "[ARGS]", NULL, 0, 9, false},
    {"mistral", "[TOOL_CALLS]", "[TOOL_CALLS][", "]", "", "", ", ", NULL, "arguments", 0, 9, false},
    {"granite", "<|tool_call|>", "<|tool_call|>[", "]", "", "", ", ", NULL, "arguments", 0, 0, false},
    {"deepseek", "<\uff5ctool\u2581calls\u2581begin\uff5c>", "<\uff5ctool\u2581calls\u2581begin\uff5c>",
     "<\uff5ctool\u2581calls\u2581end\uff5c>", "<\uff5ctool\u2581call\u2581begin\uff5c>function<\uff5ctool\u2581sep\uff5c>",
     "\n```<\uff5ctool\u2581call\u2581end\uff5c>", "\n", "\n```json\n", NULL, 0, 0, true},
    {"hermes", "<tool_call>", "", "", "<tool_call>\n", "\n</tool_call>", "\n", NULL, "arguments", 0, 0, false},
    {"llama3", "\"parameters\": ", "", "", "", "", "", NULL, "parameters", 1, 0, false},
    {"generic", NULL, "", "", "<tool_call>\n", "\n</tool_call>", "\n", NULL, "arguments", 0, 0, false},
};
#define N_FORMATS (sizeof k_formats / sizeof k_formats[0])

/* The text that starts the calls (begin, else open) without surrounding whitespace, into buf. */
static const char *start_text(const tool_format *f, char *buf, size_t len) {
    const char *s = f->begin[0] ? f->begin : f->open;
    while (*s == ' ' || *s == '\n') s++;
    snprintf(buf, len, "%s", s);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\n')) buf[--n] = 0;
    return buf;
}

static const tool_format *format_by_name(const char *name) {
    for (size_t i = 0; name && i < N_FORMATS; i++)
        if (strcmp(k_formats[i].name, name) == 0) return &k_formats[i];
    return &k_formats[N_FORMATS - 1];
}

const char *vb_chat_tool_format(const vb_chat_template *t) {
    const char *src = vb_chat_template_source(t);
    for (size_t i = 0; i + 1 < N_FORMATS; i++)
        if (strstr(src, k_formats[i].marker)) return k_formats[i].name;
    return k_formats[N_FORMATS - 1].name;
}

/* Bytes surely not part of a call: before the first place a call (begin or open) starts or
 * may start once more text comes. */
size_t vb_chat_tool_content_len(const char *format, const char *text, size_t len) {
    const tool_format *f = format_by_name(format);
    char buf[64];
    const char *start = start_text(f, buf, sizeof buf);
    if (!text) return 0;
    if (!start[0]) { /* the call is the whole output: content only when it does not open with '{' */
        size_t i = 0;
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) i++;
        return i < len && text[i] != '{' && text[i] != '<' ? len : 0;
    }
    size_t sl = strlen(start);
    for (size_t i = 0; i < len; i++) {
        size_t n = len - i < sl ? len - i : sl;
        if (memcmp(text + i, start, n) == 0) return i; /* a start, or a prefix of one at the end */
    }
    return len;
}

#ifndef VB_HAVE_JANSSON

int vb_chat_tool_vars(const vb_chat_template *t, const char *json, size_t len, char **out, char *err,
                      size_t err_len) {
    (void)t, (void)json, (void)len;
    if (out) *out = NULL;
    if (err && err_len) snprintf(err, err_len, "tool calls need a library built with jansson");
    return VB_ERR_UNSUPPORTED;
}
int vb_chat_tool_grammar(const char *format, const char *tools, size_t len, const char *only, bool parallel,
                         char **gbnf, char *err, size_t err_len) {
    (void)format, (void)tools, (void)len, (void)only, (void)parallel;
    if (gbnf) *gbnf = NULL;
    if (err && err_len) snprintf(err, err_len, "tool calls need a library built with jansson");
    return VB_ERR_UNSUPPORTED;
}
int vb_chat_tool_parse(const char *format, const char *text, size_t len, bool cut, char **calls, size_t *content_len) {
    (void)format, (void)text, (void)cut;
    if (calls) *calls = NULL;
    if (content_len) *content_len = len;
    return VB_ERR_UNSUPPORTED;
}

#else

#include <jansson.h>

/* ---- a growable string ---- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* s as a GBNF literal "..." */
static void sb_lit(sbuf *b, const char *s) {
    sb_str(b, "\"");
    for (; *s; s++) {
        char e[8];
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') snprintf(e, sizeof e, "\\%c", c);
        else if (c == '\n') snprintf(e, sizeof e, "\\n");
        else if (c < 0x20) snprintf(e, sizeof e, "\\x%02X", c);
        else snprintf(e, sizeof e, "%c", c);
        sb_str(b, e);
    }
    sb_str(b, "\"");
}

static int fail(char *err, size_t err_len, int st, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t err_len, int st, const char *fmt, ...) {
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* OpenAI's rule for function names: [a-zA-Z0-9_-]{1,64}. */
static bool good_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

/* The function object of tools[i] ({"type": "function", "function": {...}}), or NULL with err. */
static json_t *tool_function(json_t *tool, size_t i, char *err, size_t err_len) {
    json_t *type = json_object_get(tool, "type"), *fn = json_object_get(tool, "function");
    json_t *name = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
    if (!json_is_object(tool) || !json_is_string(type) || strcmp(json_string_value(type), "function") ||
        !json_is_object(fn)) {
        fail(err, err_len, 0, "tools[%zu] must be {\"type\": \"function\", \"function\": {\"name\": ...}}", i);
        return NULL;
    }
    if (!json_is_string(name) || !good_name(json_string_value(name))) {
        fail(err, err_len, 0, "tools[%zu].function.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -", i);
        return NULL;
    }
    if (params && !json_is_null(params) && !json_is_object(params)) {
        fail(err, err_len, 0, "tools[%zu].function.parameters must be a JSON schema object", i);
        return NULL;
    }
    json_t *d = json_object_get(fn, "description");
    if (d && !json_is_null(d) && !json_is_string(d)) {
        fail(err, err_len, 0, "tools[%zu].function.description must be a string", i);
        return NULL;
    }
    return fn;
}

/* ---- template variables ---- */

/* One call as the format writes it (the generic format's earlier turns). */
static void write_call(sbuf *b, const tool_format *f, const char *name, json_t *args) {
    char *a = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
    sb_str(b, f->open);
    if (f->mid) {
        sb_str(b, name);
        sb_str(b, f->mid);
        sb_str(b, a ? a : "{}");
    } else {
        json_t *o = json_pack("{s:s, s:O}", "name", name, f->args_key, args);
        char *t = o ? json_dumps(o, JSON_ENCODE_ANY) : NULL; /* {"name": "x", "arguments": {...}} */
        if (!t) b->oom = true;
        else sb_str(b, t);
        free(t);
        json_decref(o);
    }
    sb_str(b, f->close);
    free(a);
}

int vb_chat_tool_vars(const vb_chat_template *t, const char *json, size_t len, char **out, char *err,
                      size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!t || !out || (!json && len)) return VB_ERR_ARG;
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json ? json : "", len, 0, &je);
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_object(root) || !json_is_array(msgs)) {
        json_decref(root);
        return fail(err, err_len, VB_ERR_ARG, "template variables must be an object with a 'messages' array");
    }
    const tool_format *f = format_by_name(vb_chat_tool_format(t));
    /* what the template renders itself: the tool list, earlier calls */
    bool reads_tools = strstr(vb_chat_template_source(t), "tools") != NULL;
    bool reads_calls = strstr(vb_chat_template_source(t), "tool_calls") != NULL;
    int st = VB_OK;
    sbuf text = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *calls = json_object_get(m, "tool_calls");
        if (!calls || json_is_null(calls)) continue;
        if (!json_is_array(calls)) {
            st = fail(err, err_len, VB_ERR_ARG, "messages[%zu].tool_calls must be an array", i);
            break;
        }
        size_t k;
        json_t *c;
        text.n = 0;
        json_array_foreach(calls, k, c) {
            json_t *fn = json_object_get(c, "function");
            json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
            if (!json_is_string(name) || (args && !json_is_string(args) && !json_is_object(args))) {
                st = fail(err, err_len, VB_ERR_ARG,
                          "messages[%zu].tool_calls[%zu] must be {\"function\": {\"name\": ..., \"arguments\": ...}}", i, k);
                break;
            }
            /* templates expect the arguments as an object (Hugging Face's convention): parse the
               JSON string OpenAI sends */
            if (json_is_string(args) && !f->args_string) {
                json_t *parsed = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
                if (!json_is_object(parsed)) {
                    json_decref(parsed);
                    st = fail(err, err_len, VB_ERR_ARG,
                              "messages[%zu].tool_calls[%zu].function.arguments is not a JSON object", i, k);
                    break;
                }
                json_object_set_new(fn, "arguments", parsed);
                args = parsed;
            }
            if (!reads_calls) {
                sb_str(&text, k ? f->sep : f->begin);
                json_t *none = args ? NULL : json_object();
                write_call(&text, f, json_string_value(name), args ? args : none);
                json_decref(none);
            }
        }
        if (st != VB_OK) break;
        if (!reads_calls && json_array_size(calls)) sb_str(&text, f->end);
        if (!reads_calls && text.n) { /* the calls become the turn's text */
            json_t *c0 = json_object_get(m, "content");
            sbuf both = {0};
            if (json_is_string(c0) && json_string_length(c0)) {
                sb_put(&both, json_string_value(c0), json_string_length(c0));
                sb_str(&both, "\n");
            }
            sb_put(&both, text.s, text.n);
            json_object_set_new(m, "content", json_stringn(both.s ? both.s : "", both.n));
            if (both.oom) st = VB_ERR_NOMEM;
            free(both.s);
        }
    }
    /* a template without tools: the tools and how to call them open the system message */
    json_t *tools = json_object_get(root, "tools");
    if (st == VB_OK && !reads_tools && json_is_array(tools) && json_array_size(tools)) {
        sbuf sys = {0};
        sb_str(&sys, "You can call these functions (their parameters as JSON schemas):\n<tools>\n");
        json_t *tool;
        json_array_foreach(tools, i, tool) {
            char *d = json_dumps(tool, JSON_ENCODE_ANY);
            if (!d) sys.oom = true;
            else sb_str(&sys, d), sb_str(&sys, "\n");
            free(d);
        }
        sb_str(&sys, "</tools>\nTo call a function, answer with ");
        sb_str(&sys, f->begin);
        sb_str(&sys, f->open);
        if (f->mid) {
            sb_str(&sys, "<function name>");
            sb_str(&sys, f->mid);
            sb_str(&sys, "<arguments object>");
        } else {
            sb_str(&sys, "{\"name\": <function name>, \"");
            sb_str(&sys, f->args_key);
            sb_str(&sys, "\": <arguments object>}");
        }
        sb_str(&sys, f->close);
        sb_str(&sys, f->end);
        json_t *first = json_array_get(msgs, 0);
        json_t *role = json_object_get(first, "role"), *content = json_object_get(first, "content");
        if (json_is_string(role) && !strcmp(json_string_value(role), "system") && json_is_string(content)) {
            sbuf both = {0};
            sb_put(&both, json_string_value(content), json_string_length(content));
            if (both.n) sb_str(&both, "\n\n");
            sb_put(&both, sys.s ? sys.s : "", sys.n);
            json_object_set_new(first, "content", json_stringn(both.s ? both.s : "", both.n));
            if (both.oom) st = VB_ERR_NOMEM;
            free(both.s);
        } else {
            json_array_insert_new(msgs, 0, json_pack("{s:s, s:s%}", "role", "system", "content", sys.s ? sys.s : "", sys.n));
        }
        if (sys.oom) st = VB_ERR_NOMEM;
        free(sys.s);
    }
    if (text.oom) st = VB_ERR_NOMEM;
    free(text.s);
    if (st == VB_OK) {
        *out = json_dumps(root, JSON_COMPACT);
        if (!*out) st = fail(err, err_len, VB_ERR_NOMEM, "out of memory");
    }
    json_decref(root);
    return st;
}

/* ---- the grammar of calls ---- */

/* GBNF text with every rule name prefixed (names start with a letter; literals, classes,
   comments and repetition counts are copied as they are). */
static void prefix_rules(sbuf *b, const char *g, const char *prefix) {
    for (const char *p = g; *p;) {
        if (*p == '"' || *p == '[') { /* "literal" or [class], with backslash escapes */
            char close = *p == '"' ? '"' : ']';
            const char *q = p + 1;
            while (*q && *q != close) q += q[0] == '\\' && q[1] ? 2 : 1;
            if (*q) q++;
            sb_put(b, p, (size_t)(q - p));
            p = q;
        } else if (*p == '#') {
            const char *q = strchr(p, '\n');
            if (!q) q = p + strlen(p);
            sb_put(b, p, (size_t)(q - p));
            p = q;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) {
            const char *q = p;
            while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '-' ||
                   *q == '_')
                q++;
            sb_str(b, prefix);
            sb_put(b, p, (size_t)(q - p));
            p = q;
        } else if (*p >= '0' && *p <= '9') { /* counts in {m,n} */
            const char *q = p;
            while (*q >= '0' && *q <= '9') q++;
            sb_put(b, p, (size_t)(q - p));
            p = q;
        } else {
            sb_put(b, p, 1);
            p++;
        }
    }
}

int vb_chat_tool_grammar(const char *format, const char *tools, size_t len, const char *only, bool parallel,
                         char **gbnf, char *err, size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!gbnf || (!tools && len)) return VB_ERR_ARG;
    *gbnf = NULL;
    const tool_format *f = format_by_name(format);
    json_t *root = json_loadb(tools ? tools : "", len, 0, NULL);
    if (!json_is_array(root) || json_array_size(root) == 0) {
        json_decref(root);
        return fail(err, err_len, VB_ERR_ARG, "tools must be a non-empty array");
    }
    sbuf g = {0}, call = {0};
    int st = VB_OK, n_alt = 0;
    size_t i;
    json_t *tool;
    json_array_foreach(root, i, tool) {
        json_t *fn = tool_function(tool, i, err, err_len);
        if (!fn) {
            st = VB_ERR_ARG;
            break;
        }
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *params = json_object_get(fn, "parameters");
        char *schema = params && !json_is_null(params) ? json_dumps(params, JSON_COMPACT)
                                                       : strdup("{\"type\": \"object\", \"properties\": {}}");
        char *sg = NULL, serr[256] = "";
        st = schema ? vb_json_schema_to_gbnf(schema, strlen(schema), &sg, serr, sizeof serr) : VB_ERR_NOMEM;
        free(schema);
        if (st != VB_OK) {
            fail(err, err_len, st, "tools[%zu] (%s) parameters: %s", i, name, serr[0] ? serr : "out of memory");
            break;
        }
        if (only && strcmp(only, name)) { /* checked, not offered */
            free(sg);
            continue;
        }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        prefix_rules(&g, sg, prefix);
        free(sg);
        /* this tool's call */
        sb_str(&call, n_alt++ ? " | " : "");
        sb_str(&call, "( ");
        if (f->mid) {
            sb_lit(&call, name);
            sb_str(&call, " ");
            sb_lit(&call, f->mid);
        } else {
            sbuf head = {0};
            sb_str(&head, "{\"name\": \"");
            sb_str(&head, name);
            sb_str(&head, "\", \"");
            sb_str(&head, f->args_key);
            sb_str(&head, "\": ");
            sb_lit(&call, head.s ? head.s : "");
            if (head.oom) call.oom = true;
            free(head.s);
        }
        sb_str(&call, " ");
        sb_str(&call, prefix);
        sb_str(&call, "root");
        if (!f->mid) sb_str(&call, " \"}\"");
        sb_str(&call, " )");
    }
    if (st == VB_OK && n_alt == 0)
        st = fail(err, err_len, VB_ERR_ARG, "no tool is named '%s'", only ? only : "");
    if (st == VB_OK) {
        sb_str(&g, "tc-call ::= ");
        sb_lit(&g, f->open);
        sb_str(&g, " ( ");
        sb_put(&g, call.s, call.n);
        sb_str(&g, " ) ");
        sb_lit(&g, f->close);
        sb_str(&g, "\nroot ::= ");
        sb_lit(&g, f->begin);
        sb_str(&g, " tc-call ");
        if (parallel && f->max_calls != 1) {
            sb_str(&g, "( ");
            sb_lit(&g, f->sep);
            sb_str(&g, " tc-call )* ");
        }
        sb_lit(&g, f->end);
        sb_str(&g, "\n");
        if (g.oom || call.oom) st = fail(err, err_len, VB_ERR_NOMEM, "out of memory");
    }
    free(call.s);
    json_decref(root);
    if (st != VB_OK) {
        free(g.s);
        return st;
    }
    *gbnf = g.s;
    return VB_OK;
}

/* ---- parsing ---- */

static size_t skip_ws(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
    return i;
}

/* Match fixed text `want` at s[*i] ignoring whitespace around it; empty matches always. */
static bool expect(const char *s, size_t n, size_t *i, const char *want) {
    while (*want == ' ' || *want == '\n') want++;
    size_t w = strlen(want);
    while (w && (want[w - 1] == ' ' || want[w - 1] == '\n')) w--;
    size_t j = skip_ws(s, *i, n);
    if (w == 0) return true;
    if (n - j < w || memcmp(s + j, want, w)) return false;
    *i = skip_ws(s, j + w, n);
    return true;
}

/* One JSON value at s[*i]: decoded (or NULL), with its exact text span. */
static json_t *json_at(const char *s, size_t n, size_t *i, size_t *start, size_t *end) {
    size_t j = skip_ws(s, *i, n);
    json_error_t je;
    json_t *v = json_loadb(s + j, n - j, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
    if (!v) return NULL;
    *start = j;
    *end = j + (size_t)je.position;
    *i = *end;
    return v;
}

static void random_id(char *out, int len) {
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char r[32];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        static unsigned counter;
        unsigned x = (unsigned)time(NULL) * 2654435761u + __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        for (size_t k = 0; k < sizeof r; k++) r[k] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    }
    int p = 0;
    if (len == 0) {
        memcpy(out, "call_", 5);
        p = 5;
        len = 29;
    }
    for (int k = 0; p < len; k++) out[p++] = al[r[k] % (sizeof al - 1)];
    out[p] = 0;
}

/* The arguments' text: an object's exact text, or the text a JSON string holds when it is an
   object's. NULL when neither. */
static char *args_text(const char *s, json_t *v, size_t a0, size_t a1) {
    if (json_is_object(v)) return strndup(s + a0, a1 - a0);
    if (json_is_string(v)) {
        json_t *o = json_loadb(json_string_value(v), json_string_length(v), 0, NULL);
        bool ok = json_is_object(o);
        json_decref(o);
        return ok ? strndup(json_string_value(v), json_string_length(v)) : NULL;
    }
    return NULL;
}

/* One call at s[*i] (after open): name and arguments text (malloc'd) or false. */
static bool parse_call(const tool_format *f, const char *s, size_t n, size_t *i, char **name, char **args) {
    *name = *args = NULL;
    size_t a0 = 0, a1 = 0;
    if (f->mid) {
        size_t j = skip_ws(s, *i, n), k = j;
        while (k < n && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') || (s[k] >= '0' && s[k] <= '9') ||
                         s[k] == '_' || s[k] == '-'))
            k++;
        if (k == j) return false;
        size_t p = k;
        if (!expect(s, n, &p, f->mid)) return false;
        json_t *v = json_at(s, n, &p, &a0, &a1);
        char *a = args_text(s, v, a0, a1);
        json_decref(v);
        if (!a) return false;
        *name = strndup(s + j, k - j);
        *args = a;
        *i = p;
        return *name != NULL;
    }
    /* {"name": N, "arguments" (or "parameters"): A}: walk the object for the exact span of A */
    size_t p = skip_ws(s, *i, n);
    if (p >= n || s[p] != '{') return false;
    p++;
    bool ok = true;
    for (bool first = true;; first = false) {
        p = skip_ws(s, p, n);
        if (p < n && s[p] == '}') {
            p++;
            break;
        }
        if (!first && !expect(s, n, &p, ",")) { ok = false; break; }
        size_t k0, k1, v0, v1;
        json_t *key = json_at(s, n, &p, &k0, &k1);
        if (!json_is_string(key) || !expect(s, n, &p, ":")) {
            json_decref(key);
            ok = false;
            break;
        }
        json_t *val = json_at(s, n, &p, &v0, &v1);
        const char *k = json_string_value(key);
        if (val && !strcmp(k, "name") && json_is_string(val) && !*name) *name = strdup(json_string_value(val));
        else if (val && (!strcmp(k, f->args_key) || !strcmp(k, "arguments") || !strcmp(k, "parameters")) && !*args)
            *args = args_text(s, val, v0, v1);
        json_decref(key);
        if (!val) { ok = false; break; }
        json_decref(val);
    }
    if (!ok || !*name || !*args || !good_name(*name)) {
        free(*name);
        free(*args);
        *name = *args = NULL;
        return false;
    }
    *i = p;
    return true;
}

int vb_chat_tool_parse(const char *format, const char *text, size_t len, bool cut, char **calls, size_t *content_len) {
    if (!calls || !content_len || (!text && len)) return VB_ERR_ARG;
    *calls = NULL;
    *content_len = len;
    const tool_format *f = format_by_name(format);
    /* where the calls start: the first begin / open text, else (Llama 3) the output itself */
    size_t start, i;
    char buf[64];
    const char *first = start_text(f, buf, sizeof buf);
    if (first[0]) {
        const char *hit = len ? memmem(text, len, first, strlen(first)) : NULL;
        if (!hit) return VB_OK;
        start = i = (size_t)(hit - text);
    } else {
        start = 0;
        i = skip_ws(text, 0, len);
        if (len - i >= 14 && !memcmp(text + i, "<|python_tag|>", 14)) i += 14; /* Llama 3.1 */
        if (skip_ws(text, i, len) >= len || text[skip_ws(text, i, len)] != '{') return VB_OK;
    }
    json_t *arr = json_array();
    if (!arr || !expect(text, len, &i, f->begin)) {
        json_decref(arr);
        return arr ? VB_OK : VB_ERR_NOMEM;
    }
    for (int k = 0; !f->max_calls || k < f->max_calls; k++) {
        size_t save = i;
        char *name, *args;
        if ((k && !expect(text, len, &i, f->sep)) || !expect(text, len, &i, f->open) ||
            !parse_call(f, text, len, &i, &name, &args)) {
            i = save;
            break;
        }
        if (!expect(text, len, &i, f->close)) {
            free(name);
            free(args);
            i = save;
            break;
        }
        char id[40];
        random_id(id, f->id_len);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function",
                                             "name", name, "arguments", args));
        free(name);
        free(args);
    }
    /* after the calls: the end text, then nothing but whitespace (or, in a cut text, anything);
       else the text holds no call */
    int st = VB_OK;
    if (json_array_size(arr) > 0 && (cut || (expect(text, len, &i, f->end) && skip_ws(text, i, len) == len))) {
        *calls = json_dumps(arr, JSON_COMPACT);
        if (*calls) *content_len = start;
        else st = VB_ERR_NOMEM;
    }
    json_decref(arr);
    return st;
}

#endif /* VB_HAVE_JANSSON */
