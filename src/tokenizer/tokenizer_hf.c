/* tokenizer_hf.c - vb_tokenizer_from_hf_json: reads a Hugging Face tokenizer.json holding a
 * byte-level BPE model (GPT-2, Qwen2/Qwen2.5/Qwen3, Llama 3, SmolLM): model.vocab, model.merges ("a b"
 * strings or [a, b] pairs), added_tokens, the pre-tokenizer (recognised by its Split regex or
 * as a lone ByteLevel = GPT-2, or Digits + ByteLevel = SmolLM), the normalizer (NFC is noted, not applied), and BOS/EOS from the
 * tokenizer_config.json next to it (else from well-known added tokens). Builds the tokenizer
 * through vb_tokenizer_from_desc, like the GGUF path. Parsed with jansson: the build defines
 * VB_HAVE_JANSSON and links -ljansson; without them vb_tokenizer_from_hf_json only reports
 * VB_ERR_UNSUPPORTED. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "tok_internal.h"

#ifndef VB_HAVE_JANSSON
int vb_tokenizer_from_hf_json(const char *path, vb_tokenizer **out, char *err, size_t err_len) {
    (void)path;
    if (out) *out = NULL;
    if (err && err_len)
        snprintf(err, err_len, "tokenizer.json: vibee was built without jansson "
                               "(VB_HAVE_JANSSON, -ljansson)");
    return VB_ERR_UNSUPPORTED;
}
#else
#include <jansson.h>

#define HF_MAX_VOCAB (1 << 24)
#define HF_MAX_FILE_BYTES ((int64_t)1 << 30) /* tokenizer.json; the largest known are ~35 MB */
#define HF_MAX_CONFIG_BYTES ((int64_t)16 << 20) /* tokenizer_config.json */
/* Ids no token names get placeholders; a vocabulary may have at most this many more ids than
 * entries (+ its entry count), so a lone huge id cannot make the loader allocate for millions. */
#define HF_MAX_HOLES 4096

static int hf_fail(char *err, size_t err_len, int status, const char *fmt, ...) {
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* The Split regexes of the known pre-tokenizers, exactly as tokenizer.json spells them. */
static const char HF_PAT_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char HF_PAT_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char HF_PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static bool type_is(json_t *obj, const char *type) {
    json_t *t = json_object_get(obj, "type");
    return json_is_string(t) && strcmp(json_string_value(t), type) == 0;
}

/* A ByteLevel pre-tokenizer must not add a prefix space (none of the supported ones do). */
static int check_byte_level(json_t *bl, const char *where, char *err, size_t err_len) {
    json_t *aps = json_object_get(bl, "add_prefix_space");
    if (aps && !json_is_boolean(aps))
        return hf_fail(err, err_len, VB_ERR_FORMAT, "%s.add_prefix_space: not a boolean", where);
    if (json_is_true(aps))
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                       "%s.add_prefix_space = true is not supported", where);
    return VB_OK;
}

/* Maps pre_tokenizer to a pre-tokenizer name of vb_tokenizer_from_desc. */
static int detect_pre(json_t *root, const char **pre, char *err, size_t err_len) {
    json_t *p = json_object_get(root, "pre_tokenizer");
    if (!p || json_is_null(p))
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                       "pre_tokenizer: absent (only byte-level BPE pre-tokenizers are supported)");
    if (!json_is_object(p) || !json_is_string(json_object_get(p, "type")))
        return hf_fail(err, err_len, VB_ERR_FORMAT, "pre_tokenizer: not an object with a type");
    if (type_is(p, "ByteLevel")) { /* GPT-2: the ByteLevel pre-tokenizer with its own regex */
        json_t *ur = json_object_get(p, "use_regex");
        if (ur && !json_is_boolean(ur))
            return hf_fail(err, err_len, VB_ERR_FORMAT, "pre_tokenizer.use_regex: not a boolean");
        if (json_is_false(ur))
            return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                           "pre_tokenizer: ByteLevel without its regex is not supported");
        int st = check_byte_level(p, "pre_tokenizer", err, err_len);
        if (st != VB_OK) return st;
        *pre = "gpt2";
        return VB_OK;
    }
    if (!type_is(p, "Sequence"))
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED, "pre_tokenizer.type '%s' is not supported",
                       json_string_value(json_object_get(p, "type")));
    json_t *seq = json_object_get(p, "pretokenizers");
    if (!json_is_array(seq))
        return hf_fail(err, err_len, VB_ERR_FORMAT, "pre_tokenizer.pretokenizers: not an array");
    /* expected: [Split{Regex, Isolated, invert false}, ByteLevel{use_regex false}] */
    if (json_array_size(seq) != 2)
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                       "pre_tokenizer.pretokenizers: %zu entries (supported: Split + ByteLevel, "
                       "Digits + ByteLevel)",
                       json_array_size(seq));
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    if (!json_is_object(split) || !json_is_object(bl))
        return hf_fail(err, err_len, VB_ERR_FORMAT,
                       "pre_tokenizer.pretokenizers[]: entries are not objects");
    /* SmolLM: [Digits{individual_digits}, ByteLevel{use_regex}] */
    if (type_is(split, "Digits") && type_is(bl, "ByteLevel")) {
        if (!json_is_true(json_object_get(split, "individual_digits")) ||
            json_is_false(json_object_get(bl, "use_regex")))
            return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                           "pre_tokenizer: Digits + ByteLevel is supported with individual_digits "
                           "true and the ByteLevel regex (SmolLM's)");
        int st = check_byte_level(bl, "pre_tokenizer.pretokenizers[1]", err, err_len);
        if (st != VB_OK) return st;
        *pre = "smollm";
        return VB_OK;
    }
    if (!type_is(split, "Split") || !type_is(bl, "ByteLevel"))
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                       "pre_tokenizer.pretokenizers: not [Split, ByteLevel]");
    int st = check_byte_level(bl, "pre_tokenizer.pretokenizers[1]", err, err_len);
    if (st != VB_OK) return st;
    json_t *pat = json_object_get(split, "pattern");
    json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
    if (!json_is_string(re))
        return hf_fail(err, err_len, json_is_object(pat) ? VB_ERR_UNSUPPORTED : VB_ERR_FORMAT,
                       "pre_tokenizer.pretokenizers[0].pattern.Regex: %s",
                       json_is_object(pat) ? "absent (only regex splits are supported)"
                                           : "pattern is not an object");
    json_t *beh = json_object_get(split, "behavior");
    json_t *inv = json_object_get(split, "invert");
    if ((beh && !(json_is_string(beh) && strcmp(json_string_value(beh), "Isolated") == 0)) ||
        json_is_true(inv))
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                       "pre_tokenizer.pretokenizers[0]: only behavior Isolated, invert false");
    const char *r = json_string_value(re);
    if (strcmp(r, HF_PAT_LLAMA3) == 0) *pre = "llama3";
    else if (strcmp(r, HF_PAT_QWEN2) == 0) *pre = "qwen2";
    else if (strcmp(r, HF_PAT_GPT2) == 0) *pre = "gpt2";
    else
        return hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                       "pre_tokenizer.pretokenizers[0].pattern.Regex '%.60s...' is not a known "
                       "pre-tokenizer (known: GPT-2, Qwen2, Llama 3)", r);
    return VB_OK;
}

/* Reads tokenizer_config.json in the directory of path (NULL if absent or unreadable). */
static json_t *load_config(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
    static const char name[] = "tokenizer_config.json";
    char *cfg_path = malloc(dir_len + sizeof name);
    if (!cfg_path) return NULL;
    memcpy(cfg_path, path, dir_len);
    memcpy(cfg_path + dir_len, name, sizeof name);
    json_error_t jerr;
    FILE *f = vb_fopen_regular(cfg_path, HF_MAX_CONFIG_BYTES);
    free(cfg_path);
    if (!f) return NULL;
    json_t *cfg = json_loadf(f, 0, &jerr);
    fclose(f);
    if (cfg && !json_is_object(cfg)) {
        json_decref(cfg);
        cfg = NULL;
    }
    return cfg;
}

/* Id of the token whose text is s (linear over tokens: used for a handful of names). */
static int32_t find_token(const char *const *tokens, const size_t *lens, int32_t n, const char *s) {
    size_t len = strlen(s);
    for (int32_t i = n - 1; i >= 0; i--) /* added tokens live at the end */
        if (lens[i] == len && tokens[i] && memcmp(tokens[i], s, len) == 0) return i;
    return -1;
}

/* bos_token / eos_token of tokenizer_config.json: a string, {"content": ...}, or null. */
static const char *config_token(json_t *cfg, const char *key) {
    json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* add_bos from post_processor: a TemplateProcessing (alone or in a Sequence) whose "single"
 * template starts with a SpecialToken. -1 if no template. */
static int template_adds_bos(json_t *pp) {
    if (!json_is_object(pp)) return -1;
    if (type_is(pp, "Sequence")) {
        json_t *procs = json_object_get(pp, "processors");
        size_t i;
        json_t *e;
        int r = -1;
        json_array_foreach(procs, i, e) {
            int x = template_adds_bos(e);
            if (x >= 0) r = x;
        }
        return r;
    }
    if (!type_is(pp, "TemplateProcessing")) return -1;
    json_t *first = json_array_get(json_object_get(pp, "single"), 0);
    return json_is_object(first) && json_object_get(first, "SpecialToken") ? 1 : 0;
}

int vb_tokenizer_from_hf_json(const char *path, vb_tokenizer **out, char *err, size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!path || !out) return hf_fail(err, err_len, VB_ERR_ARG, "tokenizer.json: NULL argument");
    *out = NULL;
    FILE *f = vb_fopen_regular(path, HF_MAX_FILE_BYTES);
    if (!f)
        return hf_fail(err, err_len, VB_ERR_IO, "%s: cannot open: %s", path,
                       errno == EINVAL  ? "not a regular file"
                       : errno == EFBIG ? "larger than the 1 GiB limit"
                                        : strerror(errno));
    json_error_t jerr;
    json_t *root = json_loadf(f, JSON_ALLOW_NUL, &jerr);
    fclose(f);
    if (!root)
        return hf_fail(err, err_len, VB_ERR_FORMAT, "%s: not valid JSON (line %d: %s)", path,
                       jerr.line, jerr.text);

    int st = VB_ERR_NOMEM;
    json_t *cfg = NULL;
    const char **tokens = NULL;   /* [n_vocab] pointers into root (or holes) */
    size_t *token_lens = NULL;    /* [n_vocab] */
    int32_t *types = NULL;        /* [n_vocab] */
    const char **merges = NULL;   /* [n_merges] */
    size_t *merge_lens = NULL;    /* [n_merges] */
    char *pair_arena = NULL;      /* "a b" texts of [a, b] merges */
    char *hole_arena = NULL;      /* placeholder texts of ids no token names */
    char note[256] = "";

    if (!json_is_object(root)) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "%s: the top level is not an object", path);
        goto done;
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "model: %s", model ? "not an object" : "absent");
        goto done;
    }
    json_t *mtype = json_object_get(model, "type");
    if (mtype && !json_is_string(mtype)) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "model.type: not a string");
        goto done;
    }
    if (mtype && strcmp(json_string_value(mtype), "BPE") != 0) {
        st = hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                     "model.type '%s' is not supported (supported: BPE)", json_string_value(mtype));
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab");
    json_t *jmerges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "model.vocab: %s",
                     vocab ? "not an object" : "absent");
        goto done;
    }
    if (!json_is_array(jmerges)) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "model.merges: %s",
                     jmerges ? "not an array" : "absent");
        goto done;
    }
    if (added && !json_is_null(added) && !json_is_array(added)) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "added_tokens: not an array");
        goto done;
    }
    json_t *bf = json_object_get(model, "byte_fallback");
    if (json_is_true(bf)) {
        st = hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                     "model.byte_fallback = true (SentencePiece-style BPE) is not supported");
        goto done;
    }

    const char *pre = NULL;
    st = detect_pre(root, &pre, err, err_len);
    if (st != VB_OK) goto done;
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        if (!json_is_object(norm)) {
            st = hf_fail(err, err_len, VB_ERR_FORMAT, "normalizer: not an object");
            goto done;
        }
        if (!type_is(norm, "NFC")) {
            json_t *nt = json_object_get(norm, "type");
            st = hf_fail(err, err_len, VB_ERR_UNSUPPORTED, "normalizer.type '%s' is not supported",
                         json_is_string(nt) ? json_string_value(nt) : "?");
            goto done;
        }
        snprintf(note, sizeof note, "normalizer NFC is not applied (input is used as given)");
    }

    /* ---- vocabulary size: the largest id + 1 ---- */
    int64_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= HF_MAX_VOCAB) {
            st = hf_fail(err, err_len, VB_ERR_FORMAT,
                         "model.vocab[\"%.40s\"]: not an id in 0..%d", key, HF_MAX_VOCAB - 1);
            goto done;
        }
        if (json_integer_value(val) + 1 > n) n = json_integer_value(val) + 1;
    }
    size_t n_added = json_is_array(added) ? json_array_size(added) : 0;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= HF_MAX_VOCAB || !json_is_string(content)) {
            st = hf_fail(err, err_len, VB_ERR_FORMAT,
                         "added_tokens[%zu]: needs an integer id in 0..%d and a string content", i,
                         HF_MAX_VOCAB - 1);
            goto done;
        }
        json_t *sp = json_object_get(a, "special");
        if (sp && !json_is_boolean(sp)) {
            st = hf_fail(err, err_len, VB_ERR_FORMAT, "added_tokens[%zu].special: not a boolean", i);
            goto done;
        }
        if (json_integer_value(id) + 1 > n) n = json_integer_value(id) + 1;
    }
    if (n == 0) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT, "model.vocab: empty");
        goto done;
    }
    const int64_t n_entries = (int64_t)json_object_size(vocab) + (int64_t)n_added;
    if (n > 2 * n_entries + HF_MAX_HOLES) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT,
                     "model.vocab / added_tokens: the largest id, %lld, is far beyond the %lld "
                     "entries (ids up to %lld allowed)",
                     (long long)(n - 1), (long long)n_entries,
                     (long long)(2 * n_entries + HF_MAX_HOLES - 1));
        goto done;
    }

    /* ---- tokens by id ---- */
    tokens = calloc((size_t)n, sizeof *tokens);
    token_lens = calloc((size_t)n, sizeof *token_lens);
    types = calloc((size_t)n, sizeof *types);
    if (!tokens || !token_lens || !types) goto nomem;
    json_object_foreach(vocab, key, val) {
        int64_t id = json_integer_value(val);
        if (tokens[id]) {
            st = hf_fail(err, err_len, VB_ERR_FORMAT,
                         "model.vocab[\"%.40s\"]: id %lld is also given to \"%.40s\"", key,
                         (long long)id, tokens[id]);
            goto done;
        }
        tokens[id] = key;
        token_lens[id] = strlen(key); /* object keys cannot hold NUL in jansson */
        types[id] = VB_TOKTYPE_NORMAL;
    }
    for (size_t i = 0; i < n_added; i++) { /* added tokens take their id (as in HF) */
        json_t *a = json_array_get(added, i);
        int64_t id = json_integer_value(json_object_get(a, "id"));
        json_t *content = json_object_get(a, "content");
        tokens[id] = json_string_value(content);
        token_lens[id] = json_string_length(content);
        types[id] = json_is_true(json_object_get(a, "special")) ? VB_TOKTYPE_CONTROL
                                                                : VB_TOKTYPE_USER_DEFINED;
    }
    int64_t n_holes = 0, first_hole = -1;
    for (int64_t i = 0; i < n; i++)
        if (!tokens[i]) {
            if (first_hole < 0) first_hole = i;
            n_holes++;
        }
    if (n_holes) { /* ids no token names: placeholders "<|vb_unused_ID|>", type unused */
        hole_arena = malloc((size_t)n_holes * 32);
        if (!hole_arena) goto nomem;
        char *h = hole_arena;
        for (int64_t i = 0; i < n; i++) {
            if (tokens[i]) continue;
            int len = snprintf(h, 32, "<|vb_unused_%lld|>", (long long)i);
            tokens[i] = h;
            token_lens[i] = (size_t)len;
            types[i] = VB_TOKTYPE_UNUSED;
            h += 32;
        }
        size_t nl = strlen(note);
        snprintf(note + nl, sizeof note - nl, "%s%lld ids name no token (first %lld): placeholders",
                 nl ? "; " : "", (long long)n_holes, (long long)first_hole);
    }

    /* ---- merges ---- */
    size_t n_merges = json_array_size(jmerges);
    merges = calloc(n_merges ? n_merges : 1, sizeof *merges);
    merge_lens = calloc(n_merges ? n_merges : 1, sizeof *merge_lens);
    if (!merges || !merge_lens) goto nomem;
    size_t pair_bytes = 0;
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(jmerges, i);
        if (json_is_string(m)) {
            merges[i] = json_string_value(m);
            merge_lens[i] = json_string_length(m);
            size_t ml = merge_lens[i];
            const char *sp = ml > 1 ? memchr(merges[i] + 1, ' ', ml - 1) : NULL;
            if (!sp || sp == merges[i] + ml - 1) {
                st = hf_fail(err, err_len, VB_ERR_FORMAT,
                             "model.merges[%zu] = \"%.40s\" is not of the form \"left right\"",
                             i, merges[i]);
                goto done;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *l = json_array_get(m, 0);
            if (memchr(json_string_value(l), ' ', json_string_length(l))) {
                st = hf_fail(err, err_len, VB_ERR_UNSUPPORTED,
                             "model.merges[%zu]: a left part containing a space is not supported",
                             i);
                goto done;
            }
            pair_bytes += json_string_length(l) + 1 + json_string_length(json_array_get(m, 1));
        } else {
            st = hf_fail(err, err_len, VB_ERR_FORMAT,
                         "model.merges[%zu]: neither a \"left right\" string nor a [left, right] "
                         "pair of strings", i);
            goto done;
        }
    }
    if (pair_bytes) {
        pair_arena = malloc(pair_bytes);
        if (!pair_arena) goto nomem;
        char *p = pair_arena;
        for (size_t i = 0; i < n_merges; i++) {
            json_t *m = json_array_get(jmerges, i);
            if (!json_is_array(m)) continue;
            json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            merges[i] = p;
            memcpy(p, json_string_value(l), json_string_length(l));
            p += json_string_length(l);
            *p++ = ' ';
            memcpy(p, json_string_value(r), json_string_length(r));
            p += json_string_length(r);
            merge_lens[i] = (size_t)(p - merges[i]);
        }
    }

    /* ---- special ids and add_bos ---- */
    cfg = load_config(path);
    int32_t n32 = (int32_t)n;
    int32_t bos = -1, eos = -1;
    const char *bos_name = config_token(cfg, "bos_token");
    const char *eos_name = config_token(cfg, "eos_token");
    if (bos_name) bos = find_token(tokens, token_lens, n32, bos_name);
    if (eos_name) eos = find_token(tokens, token_lens, n32, eos_name);
    if (bos_name && bos < 0) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT,
                     "tokenizer_config.json bos_token \"%.40s\" is not a token", bos_name);
        goto done;
    }
    if (eos_name && eos < 0) {
        st = hf_fail(err, err_len, VB_ERR_FORMAT,
                     "tokenizer_config.json eos_token \"%.40s\" is not a token", eos_name);
        goto done;
    }
    if (!cfg) { /* conventions of the supported families */
        bos = find_token(tokens, token_lens, n32, "<|begin_of_text|>");
        if (bos < 0 && strcmp(pre, "gpt2") == 0)
            bos = find_token(tokens, token_lens, n32, "<|endoftext|>");
        eos = find_token(tokens, token_lens, n32, "<|end_of_text|>");
        if (eos < 0) eos = find_token(tokens, token_lens, n32, "<|endoftext|>");
        if (eos < 0) eos = find_token(tokens, token_lens, n32, "<|im_end|>");
    }
    int add_bos = -1;
    json_t *cab = cfg ? json_object_get(cfg, "add_bos_token") : NULL;
    if (json_is_boolean(cab)) add_bos = json_is_true(cab);
    if (add_bos < 0) add_bos = template_adds_bos(json_object_get(root, "post_processor"));
    if (add_bos < 0) /* Llama 3 prepends <|begin_of_text|>; GPT-2 and Qwen2 add nothing */
        add_bos = strcmp(pre, "llama3") == 0 && bos >= 0;
    if (add_bos && bos < 0) add_bos = 0;

    vb_tok_desc d;
    memset(&d, 0, sizeof d);
    d.model = "gpt2";
    d.model_len = 4;
    d.pre = pre;
    d.pre_len = strlen(pre);
    d.n_vocab = n32;
    d.tokens = tokens;
    d.token_lens = token_lens;
    d.token_types = types;
    d.n_merges = (int64_t)n_merges;
    d.merges = merges;
    d.merge_lens = merge_lens;
    d.bos = bos;
    d.eos = eos;
    d.unk = d.mask = d.eom = -1;
    d.eot = find_token(tokens, token_lens, n32, "<|eot_id|>");
    if (d.eot < 0) d.eot = find_token(tokens, token_lens, n32, "<|im_end|>");
    if (d.eot >= 0 && types[d.eot] != VB_TOKTYPE_CONTROL) d.eot = -1;
    d.add_bos = add_bos;
    d.add_eos = 0;
    d.add_space_prefix = 0;
    st = vb_tokenizer_from_desc(&d, out, err, err_len);
    if (st == VB_OK && note[0]) {
        vb_tokenizer *t = *out;
        size_t nl = strlen(t->note);
        snprintf(t->note + nl, sizeof t->note - nl, "%s%s", nl ? "; " : "", note);
        if (err && err_len) snprintf(err, err_len, "%s", t->note);
    }
    goto done;
nomem:
    st = hf_fail(err, err_len, VB_ERR_NOMEM, "tokenizer.json: out of memory");
done:
    free(tokens);
    free(token_lens);
    free(types);
    free(merges);
    free(merge_lens);
    free(pair_arena);
    free(hole_arena);
    json_decref(cfg);
    json_decref(root);
    return st;
}
#endif /* VB_HAVE_JANSSON */
