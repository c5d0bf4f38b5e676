/* test_tokenizer.c - tokenizer tests. Golden sets (made by scripts/fixtures/tokenizer.sh from
 * independent software): GPT-2 (gpt-3-encoder), Llama 3, Qwen2.5 and a Llama-2-style
 * SentencePiece vocabulary (@lenml/tokenizers), and the shipped WeDLM model against its training tokenizer
 * (scripts/wedlm/bpe.py). Each requires identical ids for every text, and decode(encode(text))
 * == text for the byte-level BPE sets. Unit tests build small tokenizers from arrays: merge
 * priority, special tokens, invalid UTF-8, malformed GGUF metadata, long inputs. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

/* ---- golden files ---- */

typedef struct golden_case {
    char *text; /* bytes */
    size_t len;
    int special;
    int32_t *ids;
    int n_ids;
} golden_case;

static int hexv(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void free_cases(golden_case *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].text);
        free(c[i].ids);
    }
    free(c);
}

/* Parses "hex \t special \t ids" lines; returns the number of cases or -1. */
static int load_golden(const char *path, golden_case **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return -1;
    }
    buf[size] = '\0';
    fclose(f);
    int cap = 64, n = 0;
    golden_case *c = calloc((size_t)cap, sizeof *c);
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == '\0') continue;
        char *t1 = strchr(line, '\t');
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t1 || !t2 || (t1 - line) % 2) goto bad;
        if (n == cap) {
            cap *= 2;
            golden_case *nc = realloc(c, (size_t)cap * sizeof *c);
            if (!nc) goto bad;
            c = nc;
        }
        golden_case *g = &c[n++];
        memset(g, 0, sizeof *g);
        g->len = (size_t)(t1 - line) / 2;
        g->text = malloc(g->len + 1);
        for (size_t i = 0; i < g->len; i++) {
            int hi = hexv(line[2 * i]), lo = hexv(line[2 * i + 1]);
            if (hi < 0 || lo < 0) goto bad;
            g->text[i] = (char)(hi * 16 + lo);
        }
        g->text[g->len] = '\0';
        g->special = atoi(t1 + 1);
        int idcap = 16;
        g->ids = malloc((size_t)idcap * sizeof *g->ids);
        char *p = t2 + 1;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (g->n_ids == idcap) {
                idcap *= 2;
                g->ids = realloc(g->ids, (size_t)idcap * sizeof *g->ids);
            }
            g->ids[g->n_ids++] = (int32_t)v;
            p = end;
        }
    }
    free(buf);
    *out = c;
    return n;
bad:
    free(buf);
    free_cases(c, n);
    return -1;
}

static void show_text(const char *s, size_t len, char *out, size_t out_len) {
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < out_len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n') o += (size_t)snprintf(out + o, out_len - o, "\\n");
        else if (ch == '\t') o += (size_t)snprintf(out + o, out_len - o, "\\t");
        else if (ch < 0x20) o += (size_t)snprintf(out + o, out_len - o, "\\x%02x", ch);
        else out[o++] = (char)ch;
    }
    out[o] = '\0';
}

static vb_tokenizer *open_tok(const char *path, char *err, size_t err_len) {
    vb_gguf *g = NULL;
    if (vb_gguf_open(path, true, &g, err, err_len) != VB_OK) return NULL;
    vb_tokenizer *t = NULL;
    int st = vb_tokenizer_from_gguf(g, &t, err, err_len);
    vb_gguf_close(g); /* the tokenizer keeps copies */
    return st == VB_OK ? t : NULL;
}

/* Encodes every golden text; returns the number of mismatches (details on stderr). */
static int run_golden(vb_tokenizer *t, golden_case *c, int n, bool roundtrip, int *n_checked) {
    int bad = 0;
    size_t cap = 1 << 16;
    vb_token *ids = malloc(cap * sizeof *ids);
    char *dec = malloc(1 << 20);
    for (int i = 0; i < n; i++) {
        int got = vb_tokenizer_encode(t, c[i].text, c[i].len, false, c[i].special != 0, ids,
                                      (int32_t)cap);
        int diff = -1;
        if (got != c[i].n_ids) diff = 0;
        for (int k = 0; diff < 0 && k < got && k < (int)cap; k++)
            if (ids[k] != c[i].ids[k]) diff = k;
        if (got < 0 || got != c[i].n_ids || diff >= 0) {
            int k = 0;
            while (k < got && k < c[i].n_ids && ids[k] == c[i].ids[k]) k++;
            char shown[160];
            show_text(c[i].text, c[i].len, shown, sizeof shown);
            if (bad < 8)
                fprintf(stderr,
                        "    golden #%d \"%s\": %d ids, expected %d; first difference at %d: "
                        "got %d, expected %d\n", i, shown, got, c[i].n_ids, k,
                        k < got ? ids[k] : -1, k < c[i].n_ids ? c[i].ids[k] : -1);
            bad++;
            continue;
        }
        if (roundtrip) {
            size_t o = 0;
            for (int k = 0; k < got; k++) {
                int nb = vb_tokenizer_token_bytes(t, ids[k], dec + o, (1 << 20) - o);
                if (nb < 0 || o + (size_t)nb > (1 << 20)) { o = (size_t)-1; break; }
                o += (size_t)nb;
            }
            if (o != c[i].len || memcmp(dec, c[i].text, c[i].len) != 0) {
                char shown[160];
                show_text(c[i].text, c[i].len, shown, sizeof shown);
                if (bad < 8)
                    fprintf(stderr, "    golden #%d \"%s\": decode(encode(text)) != text\n", i,
                            shown);
                bad++;
            }
        }
        (*n_checked)++;
    }
    free(ids);
    free(dec);
    return bad;
}

static void golden_test(const char *name, const char *gguf_path, bool roundtrip) {
    char golden[200], gpath[200], err[200] = "";
    snprintf(golden, sizeof golden, "%s/tokenizer/%s.golden", vbt_fixture_dir(), name);
    if (!gguf_path) {
        snprintf(gpath, sizeof gpath, "%s/tokenizer/%s.gguf", vbt_fixture_dir(), name);
        gguf_path = gpath;
    }
    golden_case *c = NULL;
    int n = load_golden(golden, &c);
    CHECKF(n > 0, "missing or unreadable fixture %s: run `make fixtures` (needs node/npm and "
                  "python3-regex; see scripts/fixtures/tokenizer.sh)", golden);
    vb_tokenizer *t = open_tok(gguf_path, err, sizeof err);
    if (!t) free_cases(c, n);
    CHECKF(t != NULL, "%s: %s (run `make fixtures`)", gguf_path, err);
    int checked = 0;
    int bad = run_golden(t, c, n, roundtrip, &checked);
    vb_tokenizer_free(t);
    free_cases(c, n);
    CHECKF(bad == 0, "%s: %d of %d golden texts differ", name, bad, n);
    CHECK_EQ_INT(checked, n);
}

TEST(tok_golden_gpt2) { golden_test("gpt2", NULL, true); }
TEST(tok_golden_llama3) { golden_test("llama3", NULL, true); }
TEST(tok_golden_llama2_spm) { golden_test("llama2", NULL, false); }
TEST(tok_golden_qwen25) { golden_test("qwen25", NULL, true); }
TEST(tok_golden_smollm) { golden_test("smollm", NULL, true); }
TEST(tok_golden_wedlm_model) { golden_test("wedlm", "models/wedlm-py-6m-f16.gguf", true); }

/* The WeDLM model's metadata: ids, EOG set, BOS handling, decode of specials. */
TEST(tok_wedlm_specials) {
    char err[200] = "";
    vb_tokenizer *t = open_tok("models/wedlm-py-6m-f16.gguf", err, sizeof err);
    CHECKF(t != NULL, "models/wedlm-py-6m-f16.gguf: %s", err);
    int n_vocab = vb_tokenizer_n_vocab(t), mask = vb_tokenizer_mask(t), eos = vb_tokenizer_eos(t);
    bool add_bos = vb_tokenizer_add_bos(t), eog_eos = vb_tokenizer_is_eog(t, eos);
    bool eog_mask = vb_tokenizer_is_eog(t, mask), eog_a = vb_tokenizer_is_eog(t, 'a');
    char buf[32];
    int nb = vb_tokenizer_token_bytes(t, eos, buf, sizeof buf);
    int e1 = vb_tokenizer_token_bytes(t, -1, buf, sizeof buf);
    int e2 = vb_tokenizer_token_bytes(t, n_vocab, buf, sizeof buf);
    vb_token ids[8];
    int n = vb_tokenizer_encode(t, "hi", 2, true, false, ids, 8);
    vb_token bos = vb_tokenizer_bos(t);
    vb_tokenizer_free(t);
    CHECK_EQ_INT(n_vocab, 4096);
    CHECK_EQ_INT(mask, 4095);
    CHECK_EQ_INT(eos, 4094);
    CHECK(eog_eos && !eog_mask && !eog_a);
    CHECK_EQ_INT(nb, 13);
    CHECK(memcmp(buf, "<|endoftext|>", 13) == 0);
    CHECK_EQ_INT(e1, VB_ERR_ARG);
    CHECK_EQ_INT(e2, VB_ERR_ARG);
    CHECK(add_bos);
    CHECK(n >= 2 && ids[0] == bos);
}

/* Llama 3: EOG from the control-token names and eot_token_id; BOS prepended on request. */
TEST(tok_llama3_eog_bos) {
    char path[200], err[200] = "";
    snprintf(path, sizeof path, "%s/tokenizer/llama3.gguf", vbt_fixture_dir());
    vb_tokenizer *t = open_tok(path, err, sizeof err);
    CHECKF(t != NULL, "%s: %s (run `make fixtures`)", path, err);
    bool eot = vb_tokenizer_is_eog(t, 128009), eot_text = vb_tokenizer_is_eog(t, 128001);
    bool bos_eog = vb_tokenizer_is_eog(t, 128000), hello = vb_tokenizer_is_eog(t, 9906);
    vb_token ids[4];
    int n = vb_tokenizer_encode(t, "Hello", 5, true, true, ids, 4);
    int n0 = vb_tokenizer_encode(t, "<|eot_id|>", 10, false, false, ids + 2, 2);
    vb_tokenizer_free(t);
    CHECK(eot && eot_text && !bos_eog && !hello);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ids[0], 128000);
    CHECK_EQ_INT(ids[1], 9906);
    CHECK(n0 > 1); /* parse_special off: the text is plain text, several tokens */
}

/* An older Llama 3 conversion without tokenizer.ggml.add_bos_token: BOS is still prepended (as
 * llama.cpp does for the llama-bpe pre-tokenizer); GPT-2 and SmolLM vocabularies add none. */
TEST(tok_llama3_bos_without_the_key) {
    char path[200], err[200] = "";
    snprintf(path, sizeof path, "%s/tokenizer/llama3-nobos.gguf", vbt_fixture_dir());
    vb_tokenizer *t = open_tok(path, err, sizeof err);
    CHECKF(t != NULL, "%s: %s (run `make fixtures`)", path, err);
    if (!t) return;
    vb_token ids[4];
    int n = vb_tokenizer_encode(t, "Hello", 5, true, true, ids, 4);
    vb_tokenizer_free(t);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ids[0], 128000);
    CHECK_EQ_INT(ids[1], 9906);
    snprintf(path, sizeof path, "%s/tokenizer/smollm.gguf", vbt_fixture_dir());
    t = open_tok(path, err, sizeof err);
    CHECKF(t != NULL, "%s: %s (run `make fixtures`)", path, err);
    if (!t) return;
    n = vb_tokenizer_encode(t, "Hello", 5, true, true, ids, 4);
    vb_tokenizer_free(t);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ids[0], 15496);
}

/* ---- small tokenizers built from arrays ---- */

/* Byte-level BPE over the 256 byte tokens plus merged tokens (texts in the GPT-2 alphabet). */
static vb_tokenizer *tiny_bpe_pre(const char *pre, const char *const *extra, int n_extra,
                                  const char *const *merges, int n_merges,
                                  const int32_t *extra_types, int *status, char *err,
                                  size_t err_len) {
    enum { MAXV = 300 };
    static char bytes_text[256][4];
    const char *tokens[MAXV];
    size_t lens[MAXV];
    int32_t types[MAXV];
    int n = 0;
    int k = 0;
    for (int b = 0; b < 256; b++) { /* GPT-2 byte alphabet */
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)(256 + k++);
        int l = vb_utf8_put(cp, bytes_text[b]);
        tokens[n] = bytes_text[b];
        lens[n] = (size_t)l;
        types[n++] = VB_TOKTYPE_NORMAL;
    }
    for (int i = 0; i < n_extra; i++) {
        tokens[n] = extra[i];
        lens[n] = strlen(extra[i]);
        types[n++] = extra_types ? extra_types[i] : VB_TOKTYPE_NORMAL;
    }
    size_t mlens[64];
    for (int i = 0; i < n_merges; i++) mlens[i] = strlen(merges[i]);
    vb_tok_desc d = {0};
    d.model = "gpt2";
    d.model_len = 4;
    d.pre = pre;
    d.pre_len = pre ? strlen(pre) : 0;
    d.n_vocab = n;
    d.tokens = tokens;
    d.token_lens = lens;
    d.token_types = types;
    d.n_merges = n_merges;
    d.merges = merges;
    d.merge_lens = mlens;
    d.bos = d.eos = d.unk = d.mask = d.eot = d.eom = -1;
    d.add_bos = d.add_eos = d.add_space_prefix = -1;
    vb_tokenizer *t = NULL;
    *status = vb_tokenizer_from_desc(&d, &t, err, err_len);
    return t;
}

static vb_tokenizer *tiny_bpe(const char *const *extra, int n_extra, const char *const *merges,
                              int n_merges, const int32_t *extra_types, int *status, char *err,
                              size_t err_len) {
    return tiny_bpe_pre("gpt2", extra, n_extra, merges, n_merges, extra_types, status, err,
                        err_len);
}

/* Merge priority: lowest rank first, leftmost on ties; the result differs from greedy
 * left-to-right merging. */
TEST(tok_bpe_merge_order) {
    const char *extra[] = {"ab", "bc", "abc", "<|x|>"};
    const int32_t types[] = {1, 1, 1, VB_TOKTYPE_CONTROL};
    const char *merges[] = {"b c", "a b", "a bc"};
    int st;
    char err[128];
    vb_tokenizer *t = tiny_bpe(extra, 4, merges, 3, types, &st, err, sizeof err);
    CHECKF(t != NULL, "build: %d %s", st, err);
    vb_token ids[16];
    int n1 = vb_tokenizer_encode(t, "abc", 3, false, false, ids, 16);
    vb_token a1 = ids[0];
    int n2 = vb_tokenizer_encode(t, "abab", 4, false, false, ids + 1, 15); /* "ab" "ab" */
    vb_token a2 = ids[1], a3 = ids[2];
    int n3 = vb_tokenizer_encode(t, "a<|x|>b", 7, false, true, ids, 16);
    vb_token s0 = ids[0], s1 = ids[1], s2 = ids[2];
    int n4 = vb_tokenizer_encode(t, "a<|x|>b", 7, false, false, ids, 16);
    int n5 = vb_tokenizer_encode(t, "abcabc", 6, false, false, ids, 1); /* short buffer */
    vb_tokenizer_free(t);
    CHECK_EQ_INT(n1, 1);
    CHECK_EQ_INT(a1, 258); /* "abc" via "b c" then "a bc" */
    CHECK_EQ_INT(n2, 2);
    CHECK(a2 == 256 && a3 == 256);
    CHECK_EQ_INT(n3, 3);
    CHECK(s0 == 'a' && s1 == 259 && s2 == 'b');
    CHECK(n4 > 3);
    CHECK_EQ_INT(n5, 2); /* the total is returned even when it does not fit */
}

/* Invalid UTF-8 and NUL bytes: no crash, every byte encoded, decoding gives the input back. */
TEST(tok_bpe_invalid_utf8_roundtrip) {
    int st;
    char err[128];
    vb_tokenizer *t = tiny_bpe(NULL, 0, NULL, 0, NULL, &st, err, sizeof err);
    CHECKF(t != NULL, "build: %d %s", st, err);
    static const char inputs[][16] = {"\xff\xfe", "a\xc3(b", "\xed\xa0\x80x", "\xf4\x90\x80\x80",
                                      "x\xe2\x82", "\xc0\xaf \x80", "a\0b c"};
    static const size_t lens[] = {2, 4, 4, 4, 3, 4, 5};
    int bad = -1;
    for (int i = 0; i < 7 && bad < 0; i++) {
        vb_token ids[32];
        int n = vb_tokenizer_encode(t, inputs[i], lens[i], false, false, ids, 32);
        char dec[64];
        size_t o = 0;
        for (int k = 0; k < n && n <= 32; k++) {
            int nb = vb_tokenizer_token_bytes(t, ids[k], dec + o, sizeof dec - o);
            if (nb < 0) break;
            o += (size_t)nb;
        }
        if (n != (int)lens[i] || o != lens[i] || memcmp(dec, inputs[i], lens[i]) != 0) bad = i;
    }
    vb_tokenizer_free(t);
    CHECKF(bad < 0, "input %d did not round-trip", bad);
}

TEST(tok_bad_arguments) {
    int st;
    char err[128];
    vb_tokenizer *t = tiny_bpe(NULL, 0, NULL, 0, NULL, &st, err, sizeof err);
    CHECKF(t != NULL, "build: %d %s", st, err);
    vb_token ids[4];
    int a = vb_tokenizer_encode(t, NULL, 3, false, false, ids, 4);
    int b = vb_tokenizer_encode(t, "abc", 3, false, false, NULL, 4);
    int c = vb_tokenizer_encode(t, "abc", 3, false, false, ids, -1);
    int d = vb_tokenizer_encode(t, "abc", 3, false, false, NULL, 0); /* count only */
    int e = vb_tokenizer_encode(t, "", 0, true, false, ids, 4);      /* no BOS defined */
    char buf[4];
    int f = vb_tokenizer_token_bytes(t, 256, buf, sizeof buf);
    vb_tokenizer_free(t);
    CHECK_EQ_INT(a, VB_ERR_ARG);
    CHECK_EQ_INT(b, VB_ERR_ARG);
    CHECK_EQ_INT(c, VB_ERR_ARG);
    CHECK_EQ_INT(d, 3);
    CHECK_EQ_INT(e, 0);
    CHECK_EQ_INT(f, VB_ERR_ARG);
}

TEST(tok_malformed_merges) {
    const char *extra[] = {"ab"};
    const char *m1[] = {"ab"};     /* no separator */
    const char *m2[] = {"a "};     /* empty right part */
    const char *m3[] = {"a b", "zz qq"}; /* second names no tokens: ignored, with a note */
    int st;
    char err[128] = "";
    vb_tokenizer *t = tiny_bpe(extra, 1, m1, 1, NULL, &st, err, sizeof err);
    CHECK(t == NULL && st == VB_ERR_FORMAT && strstr(err, "merges") != NULL);
    t = tiny_bpe(extra, 1, m2, 1, NULL, &st, err, sizeof err);
    CHECK(t == NULL && st == VB_ERR_FORMAT);
    t = tiny_bpe(extra, 1, m3, 2, NULL, &st, err, sizeof err);
    CHECKF(t != NULL, "build: %d %s", st, err);
    bool noted = strstr(vb_tokenizer_note(t), "merges") != NULL;
    vb_tokenizer_free(t);
    CHECK(noted);
}

/* GGUF metadata with inconsistent arrays -> VB_ERR_FORMAT; no tokenizer -> UNSUPPORTED. */
static int tok_from_written(vb_gguf_writer *w, char *err, size_t err_len) {
    char path[] = "/tmp/vbtok_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -100;
    close(fd);
    int st = vb_gguf_writer_write(w, path, err, err_len);
    vb_gguf_writer_free(w);
    if (st != VB_OK) { unlink(path); return -101; }
    vb_gguf *g = NULL;
    st = vb_gguf_open(path, false, &g, err, err_len);
    unlink(path);
    if (st != VB_OK) return -102;
    vb_tokenizer *t = NULL;
    st = vb_tokenizer_from_gguf(g, &t, err, err_len);
    vb_tokenizer_free(t);
    vb_gguf_close(g);
    return st;
}

TEST(tok_gguf_inconsistent_arrays) {
    const char *toks[] = {"a", "b", "ab"};
    const uint64_t lens[] = {1, 1, 2};
    const int32_t types2[] = {1, 1};
    const float scores3[] = {0, 0, -1};
    char err[200] = "";
    /* token_type shorter than tokens */
    vb_gguf_writer *w = vb_gguf_writer_init();
    CHECK(w != NULL);
    vb_gguf_writer_set_str(w, "general.architecture", "llama");
    vb_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    vb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 3);
    vb_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", VB_GGUF_INT32, types2, 2);
    vb_gguf_writer_set_arr(w, "tokenizer.ggml.scores", VB_GGUF_FLOAT32, scores3, 3);
    int st1 = tok_from_written(w, err, sizeof err);
    bool named = strstr(err, "token_type") != NULL;
    /* scores of the wrong type */
    w = vb_gguf_writer_init();
    vb_gguf_writer_set_str(w, "general.architecture", "llama");
    vb_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    vb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 3);
    vb_gguf_writer_set_arr(w, "tokenizer.ggml.scores", VB_GGUF_INT32, types2, 2);
    int st2 = tok_from_written(w, err, sizeof err);
    /* merges that are not strings */
    w = vb_gguf_writer_init();
    vb_gguf_writer_set_str(w, "general.architecture", "gpt2");
    vb_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    vb_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2");
    vb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 3);
    vb_gguf_writer_set_arr(w, "tokenizer.ggml.merges", VB_GGUF_INT32, types2, 2);
    int st3 = tok_from_written(w, err, sizeof err);
    /* unknown model, unknown pre, no tokenizer at all */
    w = vb_gguf_writer_init();
    vb_gguf_writer_set_str(w, "tokenizer.ggml.model", "t5");
    vb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 3);
    int st4 = tok_from_written(w, err, sizeof err);
    w = vb_gguf_writer_init();
    vb_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    vb_gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre");
    vb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, lens, 3);
    int st5 = tok_from_written(w, err, sizeof err);
    w = vb_gguf_writer_init();
    vb_gguf_writer_set_str(w, "general.architecture", "llama");
    int st6 = tok_from_written(w, err, sizeof err);
    CHECK_EQ_INT(st1, VB_ERR_FORMAT);
    CHECK(named);
    CHECK_EQ_INT(st2, VB_ERR_FORMAT);
    CHECK_EQ_INT(st3, VB_ERR_FORMAT);
    CHECK_EQ_INT(st4, VB_ERR_UNSUPPORTED);
    CHECK_EQ_INT(st5, VB_ERR_UNSUPPORTED);
    CHECK_EQ_INT(st6, VB_ERR_UNSUPPORTED);
}

/* Long inputs stay fast (merging is O(n log n), not O(n^2) per pre-token). */
TEST(tok_long_inputs) {
    char path[200], err[200] = "";
    snprintf(path, sizeof path, "%s/tokenizer/gpt2.gguf", vbt_fixture_dir());
    vb_tokenizer *t = open_tok(path, err, sizeof err);
    CHECKF(t != NULL, "%s: %s (run `make fixtures`)", path, err);
    size_t n = 400000;
    char *text = malloc(n);
    vb_token *ids = malloc(n * sizeof *ids);
    int counts[5] = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(text, 'a', n); /* one 400 KB pre-token */
    counts[0] = vb_tokenizer_encode(t, text, n, false, false, ids, (int32_t)n);
    memset(text, ' ', n); /* one 400 KB whitespace run */
    counts[1] = vb_tokenizer_encode(t, text, n, false, false, ids, (int32_t)n);
    for (size_t i = 0; i < n; i++) text[i] = (char)(0x80 + i % 64); /* all invalid UTF-8 */
    counts[2] = vb_tokenizer_encode(t, text, n, false, false, ids, (int32_t)n);
    vb_tokenizer_free(t);
    snprintf(path, sizeof path, "%s/tokenizer/llama2.gguf", vbt_fixture_dir());
    t = open_tok(path, err, sizeof err);
    bool spm_ok = t != NULL;
    if (t) { /* SentencePiece: one 400 KB symbol chain */
        memset(text, 'a', n);
        counts[3] = vb_tokenizer_encode(t, text, n, false, false, ids, (int32_t)n);
        for (size_t i = 0; i < n; i++) text[i] = "ab c\xc3\xa9 "[i % 7];
        counts[4] = vb_tokenizer_encode(t, text, n, false, false, ids, (int32_t)n);
        vb_tokenizer_free(t);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    free(text);
    free(ids);
    CHECKF(spm_ok, "%s: %s (run `make fixtures`)", path, err);
    CHECKF(counts[0] > 0 && counts[1] > 0 && counts[2] > 0 && counts[3] > 0 && counts[4] > 0,
           "counts %d %d %d %d %d", counts[0], counts[1], counts[2], counts[3], counts[4]);
    CHECKF(dt < 5.0, "2 MB took %.2f s", dt);
}

/* SentencePiece: score order, space prefix, byte fallback, decode of U+2581 and <0xNN>. */
TEST(tok_spm_small) {
    /* 0 <unk>, 1 <s>, 2 </s>, 3..5 bytes <0x41> <0xC3> <0xA9>, then pieces */
    const char *tokens[] = {"<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "<0xA9>",
                            "\xE2\x96\x81", "a", "b", "c", "ab", "bc", "\xE2\x96\x81" "a", "abc"};
    const int32_t types[] = {2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1};
    const float scores[] = {0, 0, 0, 0, 0, 0, -1, -2, -2, -2, -5, -3, -4, -6};
    size_t lens[14];
    for (int i = 0; i < 14; i++) lens[i] = strlen(tokens[i]);
    vb_tok_desc d = {0};
    d.model = "llama";
    d.model_len = 5;
    d.n_vocab = 14;
    d.tokens = tokens;
    d.token_lens = lens;
    d.token_types = types;
    d.scores = scores;
    d.bos = d.eos = d.unk = d.mask = d.eot = d.eom = -1;
    d.add_bos = d.add_eos = d.add_space_prefix = -1;
    vb_tokenizer *t = NULL;
    char err[128];
    int st = vb_tokenizer_from_desc(&d, &t, err, sizeof err);
    CHECKF(st == VB_OK, "build: %d %s", st, err);
    vb_token ids[16];
    /* "abc" -> "▁" "a" "b" "c": "bc" (-3) first, then "▁a" (-4) beats "a"+"bc" (-6) */
    int n = vb_tokenizer_encode(t, "abc", 3, true, false, ids, 16);
    int expect1[] = {1, 12, 11};
    bool ok1 = n == 3 && memcmp(ids, expect1, sizeof expect1) == 0;
    /* é (C3 A9) is no piece: byte fallback; 'Z' has no byte token: <unk> */
    n = vb_tokenizer_encode(t, "\xC3\xA9Z", 3, false, false, ids, 16);
    int expect2[] = {6, 4, 5, 0};
    bool ok2 = n == 4 && memcmp(ids, expect2, sizeof expect2) == 0;
    char buf[8];
    int b1 = vb_tokenizer_token_bytes(t, 12, buf, sizeof buf);
    bool ok3 = b1 == 2 && buf[0] == ' ' && buf[1] == 'a';
    int b2 = vb_tokenizer_token_bytes(t, 4, buf, sizeof buf);
    bool ok4 = b2 == 1 && (unsigned char)buf[0] == 0xC3;
    bool eog = vb_tokenizer_is_eog(t, 2) && !vb_tokenizer_is_eog(t, 1);
    vb_tokenizer_free(t);
    CHECK(ok1);
    CHECK(ok2);
    CHECK(ok3);
    CHECK(ok4);
    CHECK(eog);
}

/* Random bytes (mostly broken UTF-8, special-token fragments, spaces): ids stay in range, the
 * count is consistent, and byte-level BPE decodes back to the exact input. */
static void random_bytes_check(const char *name, const char *gguf_path, bool roundtrip) {
    char gpath[200], err[200] = "";
    if (!gguf_path) {
        snprintf(gpath, sizeof gpath, "%s/tokenizer/%s.gguf", vbt_fixture_dir(), name);
        gguf_path = gpath;
    }
    vb_tokenizer *t = open_tok(gguf_path, err, sizeof err);
    CHECKF(t != NULL, "%s: %s (run `make fixtures`)", gguf_path, err);
    static const char *frags[] = {"<|", "|>", "<s>", "</s>", "<|endoftext|>", "<|eot_id|>", " ",
                                  "\n", "\xe2\x96\x81", "\xc3", "\xa9", "\xf0\x9f", "'s", "12"};
    uint32_t rng = 12345;
    int bad = -1, n_vocab = vb_tokenizer_n_vocab(t);
    char text[256], dec[4096];
    vb_token ids[512];
    for (int iter = 0; iter < 300 && bad < 0; iter++) {
        size_t len = 0;
        rng = rng * 1664525u + 1013904223u;
        size_t target = (rng >> 8) % 200;
        while (len < target) {
            rng = rng * 1664525u + 1013904223u;
            if ((rng >> 28) < 5) {
                const char *f = frags[(rng >> 8) % (sizeof frags / sizeof frags[0])];
                size_t fl = strlen(f);
                if (len + fl > sizeof text) break;
                memcpy(text + len, f, fl);
                len += fl;
            } else {
                text[len++] = (char)(rng >> 16);
            }
        }
        bool special = iter & 1;
        int n = vb_tokenizer_encode(t, text, len, true, special, ids, 512);
        if (n < 0 || n > 512) { bad = iter; break; }
        size_t o = 0;
        int first = vb_tokenizer_add_bos(t) ? 1 : 0;
        for (int k = 0; k < n; k++) {
            if (ids[k] < 0 || ids[k] >= n_vocab) { bad = iter; break; }
            if (k < first) continue;
            int nb = vb_tokenizer_token_bytes(t, ids[k], dec + o, sizeof dec - o);
            if (nb < 0 || o + (size_t)nb > sizeof dec) { bad = iter; break; }
            o += (size_t)nb;
        }
        if (bad < 0 && roundtrip && !special && (o != len || memcmp(dec, text, len) != 0))
            bad = iter;
    }
    vb_tokenizer_free(t);
    CHECKF(bad < 0, "%s: random input %d failed", name, bad);
}

TEST(tok_random_bytes_gpt2) { random_bytes_check("gpt2", NULL, true); }
TEST(tok_random_bytes_llama3) { random_bytes_check("llama3", NULL, true); }
TEST(tok_random_bytes_qwen25) { random_bytes_check("qwen25", NULL, true); }
TEST(tok_random_bytes_llama2_spm) { random_bytes_check("llama2", NULL, false); }
TEST(tok_random_bytes_wedlm) { random_bytes_check("wedlm", "models/wedlm-py-6m-f16.gguf", true); }

/* tokenizer.ggml.pre picks the regex: Qwen2 splits digits one by one, Llama 3 in runs of up to
 * three; an absent pre means GPT-2 with a note. */
TEST(tok_pre_selection) {
    const char *extra[] = {"12", "123", "45"};
    const char *merges[] = {"1 2", "12 3", "4 5"};
    int st;
    char err[128];
    vb_token ids[8];
    vb_tokenizer *q = tiny_bpe_pre("qwen2", extra, 3, merges, 3, NULL, &st, err, sizeof err);
    CHECKF(q != NULL, "qwen2: %d %s", st, err);
    int nq = vb_tokenizer_encode(q, "12345", 5, false, false, ids, 8);
    vb_tokenizer_free(q);
    vb_tokenizer *l = tiny_bpe_pre("llama-bpe", extra, 3, merges, 3, NULL, &st, err, sizeof err);
    CHECKF(l != NULL, "llama-bpe: %d %s", st, err);
    int nl = vb_tokenizer_encode(l, "12345", 5, false, false, ids, 8);
    bool l_ok = nl == 2 && ids[0] == 257 && ids[1] == 258;
    vb_tokenizer_free(l);
    vb_tokenizer *g = tiny_bpe_pre(NULL, extra, 3, merges, 3, NULL, &st, err, sizeof err);
    CHECKF(g != NULL, "absent pre: %d %s", st, err);
    bool noted = strstr(vb_tokenizer_note(g), "pre") != NULL && strstr(err, "pre") != NULL;
    vb_tokenizer_free(g);
    CHECK_EQ_INT(nq, 5);
    CHECK(l_ok);
    CHECK(noted);
}

/* Encoding is read-only on the tokenizer: threads sharing one give the same ids. */
typedef struct tok_thread_arg {
    const vb_tokenizer *t;
    const char *text;
    vb_token ids[4096];
    int n;
} tok_thread_arg;

static void *tok_thread(void *p) {
    tok_thread_arg *a = p;
    for (int rep = 0; rep < 20; rep++)
        a->n = vb_tokenizer_encode(a->t, a->text, strlen(a->text), true, true, a->ids, 4096);
    return NULL;
}

TEST(tok_threads_share_tokenizer) {
    char err[200] = "";
    vb_tokenizer *t = open_tok("models/wedlm-py-6m-f16.gguf", err, sizeof err);
    CHECKF(t != NULL, "models/wedlm-py-6m-f16.gguf: %s", err);
    static const char text[] =
        "def main(argv):\n    for i in range(10):\n        print(i, 'caf\xc3\xa9')<|endoftext|>\n";
    static tok_thread_arg args[4];
    pthread_t th[4];
    int started = 0;
    for (int i = 0; i < 4; i++) {
        args[i].t = t;
        args[i].text = text;
        if (pthread_create(&th[i], NULL, tok_thread, &args[i]) == 0) started++;
        else break;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    vb_token ref[4096];
    int n = vb_tokenizer_encode(t, text, strlen(text), true, true, ref, 4096);
    vb_tokenizer_free(t);
    CHECK_EQ_INT(started, 4);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(args[i].n, n);
        CHECK(memcmp(args[i].ids, ref, (size_t)n * sizeof *ref) == 0);
    }
}

/* A model whose tokenizer cannot be built does not load silently without one: the error names
 * the reason (an unsupported pre-tokenizer); a model with no tokenizer keys loads on token ids. */
static int rewrite_fixture(const char *src_path, const char *dst_path, const char *const *skip, int n_skip,
                           const char *pre) {
    vb_gguf *src = NULL;
    if (vb_gguf_open(src_path, true, &src, NULL, 0) != VB_OK) return -1;
    vb_gguf_writer *w = vb_gguf_writer_init();
    int rc = w ? vb_gguf_writer_copy_keys(w, src, skip, n_skip) : VB_ERR_NOMEM;
    if (rc == VB_OK && pre) rc = vb_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    for (int64_t i = 0; rc == VB_OK && i < vb_gguf_n_tensors(src); i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(src, i);
        rc = vb_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    if (rc == VB_OK) rc = vb_gguf_writer_write(w, dst_path, NULL, 0);
    vb_gguf_writer_free(w);
    vb_gguf_close(src);
    return rc;
}

TEST(tok_unbuildable_tokenizer_is_a_load_error) {
    char src[256], dst[256], err[256] = "";
    snprintf(src, sizeof src, "%s/models/gpt2-f32.gguf", vbt_fixture_dir());
    snprintf(dst, sizeof dst, "/tmp/vb_tok_pre_%d.gguf", (int)getpid());
    const char *skip_pre[] = {"tokenizer.ggml.pre"};
    CHECK_EQ_INT(rewrite_fixture(src, dst, skip_pre, 1, "tekken"), VB_OK);
    vb_model *m = NULL;
    int rc = vb_model_load(dst, NULL, &m, err, sizeof err);
    CHECKF(rc == VB_ERR_UNSUPPORTED && strstr(err, "tekken") && strstr(err, "tokenizer"), "rc %d: %s", rc, err);
    CHECK(m == NULL);
    /* no tokenizer keys at all: loads, token ids only */
    vb_gguf *g = NULL;
    CHECK_EQ_INT(vb_gguf_open(src, true, &g, NULL, 0), VB_OK);
    const char *skip[64];
    int n_skip = 0;
    for (int64_t i = 0; i < vb_gguf_n_keys(g) && n_skip < 64; i++)
        if (!strncmp(vb_gguf_key_name(g, i), "tokenizer.", 10)) skip[n_skip++] = vb_gguf_key_name(g, i);
    CHECK_EQ_INT(rewrite_fixture(src, dst, skip, n_skip, NULL), VB_OK);
    vb_gguf_close(g);
    rc = vb_model_load(dst, NULL, &m, err, sizeof err);
    unlink(dst);
    CHECKF(rc == VB_OK, "no tokenizer keys: %s", err);
    if (rc == VB_OK) {
        CHECK(!vb_model_get_info(m)->has_tokenizer);
        vb_model_free(m);
    }
}
