/* json_schema.c - JSON schema -> GBNF (vb_json_schema_to_gbnf, vb_grammar_from_json_schema in
 * vibee.h), in the manner of llama.cpp's json-schema-to-grammar: one rule per schema node,
 * shared primitive rules (string with escapes, number, integer, boolean, null, any value).
 *
 * Objects: the listed properties in schema order, each required one present, each optional one
 * present or not; additionalProperties false unless given as true or a schema (then extra
 * string keys follow the listed ones). Arrays: items, minItems / maxItems. Strings: minLength /
 * maxLength (characters). enum / const: the JSON text of each value (compact). anyOf / oneOf
 * and type lists: alternatives. $ref: local (#/$defs/x, #/definitions/x, #), one rule each,
 * so recursive schemas work. Keywords that would constrain values in ways not enforced
 * (pattern, minimum, maximum, allOf of several, ...) are refused with a message naming them,
 * rather than producing output that does not validate. Annotations (title, description,
 * default, examples, $schema, $id, format) are ignored. Uses jansson (the library is built
 * without this converter when jansson is missing). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

#ifndef VB_HAVE_JANSSON

int vb_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, char *err, size_t err_len) {
    (void)schema;
    (void)len;
    if (gbnf) *gbnf = NULL;
    if (err && err_len) snprintf(err, err_len, "JSON schemas need a library built with jansson");
    return VB_ERR_UNSUPPORTED;
}

#else

#include <jansson.h>

#define MAX_SCHEMA_DEPTH 64
#define MAX_REFS 256

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = true; return; }
    if (b->n + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + (size_t)n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

typedef struct conv {
    json_t *root;
    sbuf out;       /* the rules */
    int n_rules;
    bool prim_value, prim_string, prim_number, prim_integer, prim_object, prim_array;
    const char *ref_path[MAX_REFS]; /* refs seen (their rule is ref<i>) */
    int n_refs;
    char *err;
    size_t err_len;
    bool failed;
} conv;

static int cfail(conv *c, const char *fmt, const char *arg) {
    if (!c->failed) snprintf(c->err, c->err_len, fmt, arg ? arg : "");
    c->failed = true;
    return VB_ERR_ARG;
}

/* Append s as a GBNF literal body (without quotes). */
static void gbnf_escape(sbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') sb_add(b, "\\%c", ch);
        else if (ch == '\n') sb_add(b, "\\n");
        else if (ch == '\r') sb_add(b, "\\r");
        else if (ch == '\t') sb_add(b, "\\t");
        else if (ch < 0x20 || ch == 0x7F) sb_add(b, "\\x%02X", ch);
        else sb_add(b, "%c", ch);
    }
}

/* A JSON value's compact text as a GBNF literal "..." */
static int json_literal(conv *c, sbuf *b, const json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return cfail(c, "JSON schema: cannot encode an enum/const value%s", NULL);
    sb_add(b, "\"");
    gbnf_escape(b, text, strlen(text));
    sb_add(b, "\"");
    free(text);
    return VB_OK;
}


/* Emit the shared primitive rules used. */
static void emit_primitives(conv *c) {
    sbuf *o = &c->out;
    sb_add(o, "space ::= | \" \" | \"\\n\" [ ]{0,8}\n");
    if (c->prim_value || c->prim_string)
        sb_add(o, "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
                  "string ::= \"\\\"\" char* \"\\\"\" space\n");
    if (c->prim_value || c->prim_number || c->prim_integer)
        sb_add(o, "integral ::= \"0\" | [1-9] [0-9]{0,15}\n");
    if (c->prim_value || c->prim_number)
        sb_add(o, "number ::= \"-\"? integral ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? space\n");
    if (c->prim_integer) sb_add(o, "integer ::= \"-\"? integral space\n");
    if (c->prim_value)
        sb_add(o, "value ::= object | array | string | number | boolean | null\n"
                  "object ::= \"{\" space ( string \":\" space value ( \",\" space string \":\" space value )* )? \"}\" space\n"
                  "array ::= \"[\" space ( value ( \",\" space value )* )? \"]\" space\n");
    sb_add(o, "boolean ::= ( \"true\" | \"false\" ) space\nnull ::= \"null\" space\n");
}

static int gen(conv *c, const json_t *s, int depth, char *name, size_t name_len);

static void new_name(conv *c, char *name, size_t name_len, const char *hint) {
    snprintf(name, name_len, "%s%d", hint, c->n_rules++);
}

/* Keys this converter understands (others: annotations to ignore, or refused below). */
static bool refused_key(const char *k) {
    static const char *const refused[] = {"pattern", "minimum", "maximum", "exclusiveMinimum",
                                          "exclusiveMaximum", "multipleOf", "not", "if",
                                          "patternProperties", "propertyNames", "minProperties",
                                          "maxProperties", "uniqueItems", "contains",
                                          "prefixItems", "dependentRequired", "dependentSchemas",
                                          "unevaluatedProperties", "unevaluatedItems"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (strcmp(k, refused[i]) == 0) return true;
    return false;
}

static int get_count(conv *c, const json_t *s, const char *key, long long *v, long long dflt) {
    const json_t *x = json_object_get(s, key);
    *v = dflt;
    if (!x) return VB_OK;
    if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > GR_MAX_REPEAT)
        return cfail(c, "JSON schema: '%s' must be an integer in [0, 1000]", key);
    *v = json_integer_value(x);
    return VB_OK;
}

static int gen_object(conv *c, const json_t *s, int depth, sbuf *body) {
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return cfail(c, "JSON schema: 'properties' must be an object%s", NULL);
    if (req && !json_is_array(req)) return cfail(c, "JSON schema: 'required' must be an array%s", NULL);
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return cfail(c, "JSON schema: 'additionalProperties' must be a boolean or a schema%s", NULL);
    /* extra properties: their value rule ("" = none allowed) */
    char extra[64] = "";
    if (!props && (!addl || json_is_true(addl))) {
        c->prim_value = true;
        snprintf(extra, sizeof extra, "value");
    } else if (addl && json_is_true(addl)) {
        c->prim_value = true;
        snprintf(extra, sizeof extra, "value");
    } else if (addl && json_is_object(addl)) {
        if (gen(c, addl, depth + 1, extra, sizeof extra) != VB_OK) return VB_ERR_ARG;
    }
    if (extra[0]) c->prim_string = true;
    /* the listed properties: kv rule names and whether required */
    size_t n = props ? json_object_size(props) : 0;
    if (n > 1000) return cfail(c, "JSON schema: more than %s properties", "1000");
    char(*kv)[64] = calloc(n + 1, sizeof *kv);
    bool *required = calloc(n + 1, sizeof *required);
    if (!kv || !required) {
        free(kv);
        free(required);
        c->out.oom = true;
        return VB_ERR_NOMEM;
    }
    size_t i = 0;
    const char *key;
    const json_t *ps;
    int rc = VB_OK;
    if (props) json_object_foreach((json_t *)props, key, ps) {
        for (size_t r = 0; req && r < json_array_size(req); r++) {
            const json_t *x = json_array_get(req, r);
            if (json_is_string(x) && strcmp(json_string_value(x), key) == 0) required[i] = true;
        }
        char vname[64];
        if ((rc = gen(c, ps, depth + 1, vname, sizeof vname)) != VB_OK) break;
        new_name(c, kv[i], sizeof kv[i], "kv");
        sbuf line = {0};
        /* the key as JSON text, as a GBNF literal */
        json_t *k = json_string(key);
        sb_add(&line, "%s ::= ", kv[i]);
        rc = k ? json_literal(c, &line, k) : VB_ERR_NOMEM;
        json_decref(k);
        sb_add(&line, " space \":\" space %s\n", vname);
        if (line.oom) rc = VB_ERR_NOMEM;
        if (rc == VB_OK) sb_add(&c->out, "%s", line.s);
        free(line.s);
        if (rc != VB_OK) break;
        i++;
    }
    for (size_t r = 0; rc == VB_OK && req && r < json_array_size(req); r++) {
        const json_t *x = json_array_get(req, r);
        if (!json_is_string(x) || !props || !json_object_get(props, json_string_value(x)))
            rc = cfail(c, "JSON schema: 'required' names '%s', which is not in 'properties'",
                       json_is_string(x) ? json_string_value(x) : "(not a string)");
    }
    if (rc == VB_OK) {
        /* T_i: the rest from property i with something before (leading comma); F_i: nothing
           before. T_n / F_n: the extra properties. */
        char base[32];
        new_name(c, base, sizeof base, "obj");
        char xkv[80] = "";
        if (extra[0]) {
            snprintf(xkv, sizeof xkv, "%s-x", base);
            sb_add(&c->out, "%s ::= string \":\" space %s\n", xkv, extra);
            sb_add(&c->out, "%s-t%zu ::= ( \",\" space %s )*\n", base, n, xkv);
            sb_add(&c->out, "%s-f%zu ::= ( %s ( \",\" space %s )* )?\n", base, n, xkv, xkv);
        } else {
            sb_add(&c->out, "%s-t%zu ::= \"\"\n%s-f%zu ::= \"\"\n", base, n, base, n);
        }
        for (size_t k = n; k-- > 0;) {
            if (required[k]) {
                sb_add(&c->out, "%s-t%zu ::= \",\" space %s %s-t%zu\n", base, k, kv[k], base, k + 1);
                sb_add(&c->out, "%s-f%zu ::= %s %s-t%zu\n", base, k, kv[k], base, k + 1);
            } else {
                sb_add(&c->out, "%s-t%zu ::= \",\" space %s %s-t%zu | %s-t%zu\n", base, k, kv[k], base,
                       k + 1, base, k + 1);
                sb_add(&c->out, "%s-f%zu ::= %s %s-t%zu | %s-f%zu\n", base, k, kv[k], base, k + 1,
                       base, k + 1);
            }
        }
        sb_add(body, "\"{\" space %s-f0 \"}\" space", base);
    }
    free(kv);
    free(required);
    return rc;
}

static int gen_array(conv *c, const json_t *s, int depth, sbuf *body) {
    const json_t *items = json_object_get(s, "items");
    char item[64];
    if (!items || json_is_true(items)) {
        c->prim_value = true;
        snprintf(item, sizeof item, "value");
    } else if (json_is_object(items)) {
        if (gen(c, items, depth + 1, item, sizeof item) != VB_OK) return VB_ERR_ARG;
    } else {
        return cfail(c, "JSON schema: 'items' must be a schema (tuples are not supported)%s", NULL);
    }
    long long lo, hi;
    if (get_count(c, s, "minItems", &lo, 0) != VB_OK || get_count(c, s, "maxItems", &hi, -1) != VB_OK)
        return VB_ERR_ARG;
    if (hi >= 0 && hi < lo) return cfail(c, "JSON schema: maxItems < minItems%s", NULL);
    sb_add(body, "\"[\" space ");
    if (hi == 0) {
        sb_add(body, "\"]\" space");
        return VB_OK;
    }
    /* first item, then the rest with commas: {lo-1, hi-1} */
    const char *open = lo == 0 ? "( " : "";
    sb_add(body, "%s%s ( \",\" space %s )", open, item, item);
    long long rlo = lo > 0 ? lo - 1 : 0;
    if (hi < 0) sb_add(body, "{%lld,}", rlo);
    else sb_add(body, "{%lld,%lld}", rlo, hi - 1);
    sb_add(body, "%s \"]\" space", lo == 0 ? " )?" : "");
    return VB_OK;
}

static int gen_type(conv *c, const json_t *s, const char *type, int depth, sbuf *body) {
    if (strcmp(type, "object") == 0) return gen_object(c, s, depth, body);
    if (strcmp(type, "array") == 0) return gen_array(c, s, depth, body);
    if (strcmp(type, "string") == 0) {
        long long lo, hi;
        if (get_count(c, s, "minLength", &lo, 0) != VB_OK || get_count(c, s, "maxLength", &hi, -1) != VB_OK)
            return VB_ERR_ARG;
        if (hi >= 0 && hi < lo) return cfail(c, "JSON schema: maxLength < minLength%s", NULL);
        c->prim_string = true;
        if (lo == 0 && hi < 0) sb_add(body, "string");
        else if (hi < 0) sb_add(body, "\"\\\"\" char{%lld,} \"\\\"\" space", lo);
        else sb_add(body, "\"\\\"\" char{%lld,%lld} \"\\\"\" space", lo, hi);
        return VB_OK;
    }
    if (strcmp(type, "number") == 0) { c->prim_number = true; sb_add(body, "number"); return VB_OK; }
    if (strcmp(type, "integer") == 0) { c->prim_integer = true; sb_add(body, "integer"); return VB_OK; }
    if (strcmp(type, "boolean") == 0) { sb_add(body, "boolean"); return VB_OK; }
    if (strcmp(type, "null") == 0) { sb_add(body, "null"); return VB_OK; }
    return cfail(c, "JSON schema: unknown type '%s'", type);
}

/* The rule of a local $ref (generated once; recursion refers to the same rule). */
static int gen_ref(conv *c, const char *ref, int depth, char *name, size_t name_len) {
    for (int i = 0; i < c->n_refs; i++)
        if (strcmp(c->ref_path[i], ref) == 0) {
            snprintf(name, name_len, "ref%d", i);
            return VB_OK;
        }
    if (c->n_refs >= MAX_REFS) return cfail(c, "JSON schema: more than %s $refs", "256");
    const json_t *target = NULL;
    if (strcmp(ref, "#") == 0) target = c->root;
    else if (strncmp(ref, "#/$defs/", 8) == 0)
        target = json_object_get(json_object_get(c->root, "$defs"), ref + 8);
    else if (strncmp(ref, "#/definitions/", 14) == 0)
        target = json_object_get(json_object_get(c->root, "definitions"), ref + 14);
    if (!target) return cfail(c, "JSON schema: $ref '%s' not found (only local #/$defs/.. refs)", ref);
    int id = c->n_refs++;
    c->ref_path[id] = ref;
    snprintf(name, name_len, "ref%d", id);
    char inner[64];
    if (gen(c, target, depth + 1, inner, sizeof inner) != VB_OK) return VB_ERR_ARG;
    sb_add(&c->out, "ref%d ::= %s\n", id, inner);
    return VB_OK;
}

/* Generate the rule of schema s; its name into name. */
static int gen(conv *c, const json_t *s, int depth, char *name, size_t name_len) {
    if (c->failed) return VB_ERR_ARG;
    if (depth > MAX_SCHEMA_DEPTH) return cfail(c, "JSON schema nested more than %s levels", "64");
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        c->prim_value = true;
        snprintf(name, name_len, "value");
        return VB_OK;
    }
    if (!json_is_object(s)) return cfail(c, "JSON schema: a schema must be an object or true%s", NULL);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        if (refused_key(key)) return cfail(c, "JSON schema: '%s' is not supported", key);
    }
    const json_t *ref = json_object_get(s, "$ref");
    if (ref) {
        if (!json_is_string(ref)) return cfail(c, "JSON schema: $ref must be a string%s", NULL);
        return gen_ref(c, json_string_value(ref), depth, name, name_len);
    }
    sbuf body = {0};
    int rc = VB_OK;
    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    const json_t *any = json_object_get(s, "anyOf");
    if (!any) any = json_object_get(s, "oneOf");
    const json_t *all = json_object_get(s, "allOf");
    const json_t *type = json_object_get(s, "type");
    if (all) {
        if (!json_is_array(all) || json_array_size(all) != 1)
            rc = cfail(c, "JSON schema: 'allOf' is supported with one schema only%s", NULL);
        else {
            char sub[64];
            rc = gen(c, json_array_get(all, 0), depth + 1, sub, sizeof sub);
            sb_add(&body, "%s", sub);
        }
    } else if (cn) {
        rc = json_literal(c, &body, cn);
        sb_add(&body, " space");
    } else if (en) {
        if (!json_is_array(en) || json_array_size(en) == 0)
            rc = cfail(c, "JSON schema: 'enum' must be a non-empty array%s", NULL);
        sb_add(&body, "( ");
        for (size_t i = 0; rc == VB_OK && i < json_array_size(en); i++) {
            if (i) sb_add(&body, " | ");
            rc = json_literal(c, &body, json_array_get(en, i));
        }
        sb_add(&body, " ) space");
    } else if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            rc = cfail(c, "JSON schema: 'anyOf' / 'oneOf' must be a non-empty array%s", NULL);
        for (size_t i = 0; rc == VB_OK && i < json_array_size(any); i++) {
            char sub[64];
            rc = gen(c, json_array_get(any, i), depth + 1, sub, sizeof sub);
            sb_add(&body, "%s%s", i ? " | " : "", sub);
        }
    } else if (json_is_string(type)) {
        rc = gen_type(c, s, json_string_value(type), depth, &body);
    } else if (json_is_array(type) && json_array_size(type) > 0) {
        for (size_t i = 0; rc == VB_OK && i < json_array_size(type); i++) {
            const json_t *t = json_array_get(type, i);
            if (!json_is_string(t)) rc = cfail(c, "JSON schema: 'type' entries must be strings%s", NULL);
            else {
                sbuf alt = {0};
                rc = gen_type(c, s, json_string_value(t), depth, &alt);
                sb_add(&body, "%s( %s )", i ? " | " : "", alt.s ? alt.s : "");
                free(alt.s);
            }
        }
    } else if (type) {
        rc = cfail(c, "JSON schema: 'type' must be a string or an array of strings%s", NULL);
    } else if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties")) {
        rc = gen_object(c, s, depth, &body);
    } else if (json_object_get(s, "items")) {
        rc = gen_array(c, s, depth, &body);
    } else {
        c->prim_value = true;
        sb_add(&body, "value");
    }
    if (body.oom) rc = VB_ERR_NOMEM;
    if (rc == VB_OK) {
        new_name(c, name, name_len, "s");
        sb_add(&c->out, "%s ::= %s\n", name, body.s);
    }
    free(body.s);
    if (c->out.n > GR_MAX_TEXT) return cfail(c, "JSON schema: grammar too large%s", NULL);
    return rc;
}

int vb_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, char *err, size_t err_len) {
    char dummy[8];
    if (!err || err_len == 0) {
        err = dummy;
        err_len = sizeof dummy;
    }
    err[0] = 0;
    if (!gbnf || (!schema && len)) return VB_ERR_ARG;
    *gbnf = NULL;
    json_error_t je;
    json_t *root = json_loadb(schema ? schema : "", len, JSON_DECODE_ANY, &je);
    if (!root) {
        snprintf(err, err_len, "JSON schema: invalid JSON (%s at line %d)", je.text, je.line);
        return VB_ERR_ARG;
    }
    conv c = {0};
    c.root = root;
    c.err = err;
    c.err_len = err_len;
    char top[64];
    int rc = gen(&c, root, 0, top, sizeof top);
    if (rc == VB_OK) {
        sb_add(&c.out, "root ::= %s\n", top);
        emit_primitives(&c);
        if (c.out.oom) rc = VB_ERR_NOMEM;
    }
    json_decref(root);
    if (rc != VB_OK) {
        free(c.out.s);
        if (rc == VB_ERR_NOMEM && !err[0]) snprintf(err, err_len, "JSON schema: out of memory");
        return rc;
    }
    *gbnf = c.out.s;
    return VB_OK;
}

#endif /* VB_HAVE_JANSSON */

int vb_grammar_from_json_schema(const char *schema, size_t len, vb_grammar **out, char *err,
                                size_t err_len) {
    if (out) *out = NULL;
    char *gbnf = NULL;
    int rc = vb_json_schema_to_gbnf(schema, len, &gbnf, err, err_len);
    if (rc != VB_OK) return rc;
    rc = vb_grammar_parse(gbnf, strlen(gbnf), out, err, err_len);
    free(gbnf);
    return rc;
}
