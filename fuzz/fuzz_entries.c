/* fuzz_entries.c - the per-input functions of the fuzz targets (see fuzz_entries.h): GGUF
 * reader, model end to end, tokenizer.json, the cost-cache file and grammars (GBNF, JSON schema). Temporary files (the
 * tokenizer and cost-cache readers take paths) go to a per-process directory under $TMPDIR. */
#include "fuzz_entries.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decode/cost_model.h"
#include "gguf/gguf.h"
#include "grammar/grammar.h"
#include "grammar/token_mask.h"
#include "tokenizer/tokenizer.h"
#include "vibee.h"

static volatile uint8_t sink;

static void touch(const void *p, uint64_t n) {
    if (n == 0) return;
    const uint8_t *b = p;
    sink ^= b[0] ^ b[n - 1];
}

/* ---- GGUF reader ----------------------------------------------------------------------- */

static size_t fixed_size(int vtype) {
    switch (vtype) {
    case VB_GGUF_UINT8: case VB_GGUF_INT8: case VB_GGUF_BOOL: return 1;
    case VB_GGUF_UINT16: case VB_GGUF_INT16: return 2;
    case VB_GGUF_UINT32: case VB_GGUF_INT32: case VB_GGUF_FLOAT32: return 4;
    case VB_GGUF_UINT64: case VB_GGUF_INT64: case VB_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

int vb_fuzz_gguf(const uint8_t *data, size_t size) {
    vb_gguf *g = NULL;
    char err[256];
    if (vb_gguf_open_memory(data, size, &g, err, sizeof err) != VB_OK) return 0;
    char text[128];
    for (int64_t i = 0; i < vb_gguf_n_keys(g); i++) {
        const char *name = vb_gguf_key_name(g, i);
        int type = vb_gguf_key_type(g, i);
        if (!name || vb_gguf_find_key(g, name) != i) __builtin_trap();
        if (vb_gguf_value_to_text(g, i, text, sizeof text) < 0) __builtin_trap();
        int64_t i64;
        uint32_t u32;
        int32_t i32;
        float f;
        bool b;
        (void)vb_gguf_get_i64(g, name, &i64);
        (void)vb_gguf_get_u32(g, name, &u32);
        (void)vb_gguf_get_i32(g, name, &i32);
        (void)vb_gguf_get_f32(g, name, &f);
        (void)vb_gguf_get_bool(g, name, &b);
        const char *s;
        uint64_t len;
        if (vb_gguf_get_str(g, name, &s, &len)) touch(s, len);
        int et;
        uint64_t n;
        const void *arr;
        if (type == VB_GGUF_ARRAY && vb_gguf_get_arr(g, name, &et, &n, &arr)) {
            if (et == VB_GGUF_STRING) {
                for (uint64_t k = 0; k < n; k++) {
                    if (!vb_gguf_get_arr_str(g, name, k, &s, &len)) __builtin_trap();
                    touch(s, len);
                }
                if (vb_gguf_get_arr_str(g, name, n, &s, &len)) __builtin_trap();
            } else if (fixed_size(et)) {
                touch(arr, n * fixed_size(et));
            }
        }
    }
    for (int64_t i = 0; i < vb_gguf_n_tensors(g); i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        if (!t || vb_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        /* data lies in the image, or in the reader's aligned copy of it (odd addresses) */
        const uint8_t *p = t->data;
        if (((uintptr_t)data % 8 == 0) && (p < data || p + t->nbytes > data + size))
            __builtin_trap();
        if ((uintptr_t)p % 8 != 0) __builtin_trap();
        touch(p, t->nbytes);
    }
    vb_gguf_close(g);
    return 0;
}

/* ---- model end to end ------------------------------------------------------------------ */

/* Encodes text, checks every id is in range and detokenizes each one. */
static void tokenize_all(const vb_model *m, const char *text, size_t len, bool special) {
    vb_token ids[256];
    const int32_t n_vocab = vb_model_get_info(m)->n_vocab;
    int n = vb_tokenize(m, text, len, special, special, ids, 256);
    if (n < 0) return;
    if (n > 256) n = 256;
    vb_detok d;
    memset(&d, 0, sizeof d);
    char piece[512];
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab) __builtin_trap();
        int w = vb_detok_push(m, &d, ids[i], piece, sizeof piece);
        if (w >= (int)sizeof piece) __builtin_trap();
    }
}

int vb_fuzz_model(const uint8_t *data, size_t size) {
    vb_model *m = NULL;
    char err[512] = "";
    if (vb_model_load_from_memory(data, size, "fuzz", NULL, &m, err, sizeof err) != VB_OK) {
        if (!err[0]) __builtin_trap(); /* a refusal says why */
        return 0;
    }
    const vb_model_info *info = vb_model_get_info(m);
    if (info->n_vocab <= 0) __builtin_trap();
    if (info->has_tokenizer) {
        static const char text[] = "Hello, world! 123 <|endoftext|> \xe4\xb8\xad\xe6\x96\x87 \xff";
        tokenize_all(m, text, sizeof text - 1, false);
        tokenize_all(m, text, sizeof text - 1, true);
        char buf[64];
        for (vb_token t = 0; t < info->n_vocab && t < 300; t++)
            (void)vb_token_to_bytes(m, t, buf, sizeof buf);
    }
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = 16;
    p.n_seq_max = 2;
    p.n_batch_max = 4;
    p.n_threads = 1;
    p.block_size = 4;
    vb_context *c = NULL;
    if (vb_context_init(m, &p, &c, err, sizeof err) == VB_OK) {
        vb_batch *b = vb_batch_init(4);
        const int32_t nv = info->n_vocab;
        for (int i = 0; i < 3; i++) vb_batch_add(b, (vb_token)((i * 131 + 7) % nv), i, 0, i != 1);
        vb_batch_add(b, (vb_token)(nv - 1), 5, 1, true);
        if (vb_forward(c, b) == VB_OK) {
            for (int i = 0; i < 4; i++) {
                const float *l = vb_get_logits(c, i);
                if ((l == NULL) != (i == 1)) __builtin_trap();
                if (l) touch(l, (uint64_t)nv * sizeof *l);
            }
            /* a second step over the cache, positions going backwards (WeDLM order) */
            vb_batch_clear(b);
            vb_batch_add(b, 0, 4, 0, true);
            vb_batch_add(b, (vb_token)(nv / 2), 3, 0, true);
            if (vb_forward(c, b) == VB_OK) touch(vb_get_logits(c, 1), (uint64_t)nv * sizeof(float));
        }
        vb_batch_free(b);
        vb_context_free(c);
    } else if (!err[0]) {
        __builtin_trap();
    }
    vb_model_free(m);
    return 0;
}

/* ---- files for the path-based readers -------------------------------------------------- */

/* A per-process scratch directory (created once) and the path of name in it. */
static const char *scratch_path(const char *name, char *buf, size_t len) {
    static char dir[256];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/vb_fuzz_%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
        mkdir(dir, 0700);
    }
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}

static bool write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

/* ---- tokenizer.json -------------------------------------------------------------------- */

int vb_fuzz_tokenizer_json(const uint8_t *data, size_t size) {
    static const char sep[] = "\n#config#\n";
    char json_path[300], cfg_path[300];
    scratch_path("tokenizer.json", json_path, sizeof json_path);
    scratch_path("tokenizer_config.json", cfg_path, sizeof cfg_path);
    const uint8_t *cut = size >= sizeof sep - 1 ? memmem(data, size, sep, sizeof sep - 1) : NULL;
    const size_t json_len = cut ? (size_t)(cut - data) : size;
    if (!write_file(json_path, data, json_len)) return 0;
    unlink(cfg_path);
    if (cut) {
        const uint8_t *cfg = cut + sizeof sep - 1;
        if (!write_file(cfg_path, cfg, (size_t)(data + size - cfg))) return 0;
    }
    vb_tokenizer *t = NULL;
    char err[512] = "";
    int rc = vb_tokenizer_from_hf_json(json_path, &t, err, sizeof err);
    if (rc != VB_OK) {
        if (t || !err[0]) __builtin_trap();
        return 0;
    }
    const int32_t n_vocab = vb_tokenizer_n_vocab(t);
    if (n_vocab <= 0) __builtin_trap();
    const vb_token special[] = {vb_tokenizer_bos(t), vb_tokenizer_eos(t), vb_tokenizer_mask(t)};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (special[i] < -1 || special[i] >= n_vocab) __builtin_trap();
    static const char fixed[] = "Hello world's 12345 <|endoftext|><|im_start|> \t\n\xe2\x82\xac\xc3";
    const char *texts[2] = {fixed, (const char *)data};
    const size_t lens[2] = {sizeof fixed - 1, json_len < 512 ? json_len : 512};
    vb_token ids[1024];
    char piece[512];
    for (int k = 0; k < 2; k++)
        for (int special_on = 0; special_on < 2; special_on++) {
            int n = vb_tokenizer_encode(t, texts[k], lens[k], special_on, special_on, ids, 1024);
            if (n > 1024) n = 1024;
            for (int i = 0; i < n; i++) {
                if (ids[i] < 0 || ids[i] >= n_vocab) __builtin_trap();
                int w = vb_tokenizer_token_bytes(t, ids[i], piece, sizeof piece);
                if (w < 0) __builtin_trap();
            }
        }
    for (vb_token id = 0; id < n_vocab && id < 4096; id++) {
        (void)vb_tokenizer_token_bytes(t, id, piece, sizeof piece);
        (void)vb_tokenizer_is_eog(t, id);
    }
    vb_tokenizer_free(t);
    return 0;
}

/* ---- cost-cache file ------------------------------------------------------------------- */

static void check_table(const vb_cost_table *t) {
    if (t->n < 1 || t->n > VB_COST_MAX_POINTS) __builtin_trap();
    for (int32_t i = 0; i < t->n; i++) {
        if (t->rows[i] < 1 || (i > 0 && t->rows[i] <= t->rows[i - 1])) __builtin_trap();
        if (!(t->seconds[i] > 0.0 && t->seconds[i] <= 3600.0)) __builtin_trap();
    }
}

int vb_fuzz_cost_cache(const uint8_t *data, size_t size) {
    char path[300];
    scratch_path("cost-tables.tsv", path, sizeof path);
    if (!write_file(path, data, size)) return 0;
    /* the key of the first line (text before its tab), so that its points get parsed */
    char key[256] = "fuzz-key";
    const uint8_t *tab = memchr(data, '\t', size < sizeof key ? size : sizeof key - 1);
    if (tab && tab > data && !memchr(data, '\n', (size_t)(tab - data)) &&
        !memchr(data, 0, (size_t)(tab - data))) {
        memcpy(key, data, (size_t)(tab - data));
        key[tab - data] = 0;
    }
    vb_cost_table t;
    if (vb_cost_file_load(path, key, &t) == VB_OK) check_table(&t);
    const vb_cost_table mine = {.n = 3, .rows = {1, 2, 8}, .seconds = {0.001, 0.0015, 0.25}};
    /* (the reader reads the first MiB only: a bigger file may push the stored line past it) */
    if (size < (1u << 19) && vb_cost_file_store(path, "fuzz|stored", &mine) == VB_OK) {
        vb_cost_table back;
        if (vb_cost_file_load(path, "fuzz|stored", &back) != VB_OK) __builtin_trap();
        if (back.n != mine.n) __builtin_trap();
        for (int32_t i = 0; i < mine.n; i++)
            if (back.rows[i] != mine.rows[i] || back.seconds[i] != mine.seconds[i]) __builtin_trap();
    }
    unlink(path);
    return 0;
}

/* ---- grammars ---------------------------------------------------------------------------- */

/* The input's own bytes and a few fixed texts through the byte matcher. */
static void match_texts(const vb_grammar *g, const uint8_t *data, size_t size) {
    static const char *const texts[] = {"{\"a\": [1, 2.5e3, \"x\\n\"], \"b\": null}", "def f(x):", "\xc3\xa9\xe2\x82\xac"};
    vb_gstate a = {0}, b = {0};
    for (size_t t = 0; t < 4; t++) {
        const uint8_t *s = t < 3 ? (const uint8_t *)texts[t] : data;
        size_t n = t < 3 ? strlen(texts[t]) : (size < 256 ? size : 256);
        if (vb_gstate_init(g, &a) != VB_OK) break;
        for (size_t i = 0; i < n; i++) {
            int rc = vb_gstate_accept(g, &a, s[i], &b);
            if (rc != VB_OK && rc != VB_ERR_STATE && rc != VB_ERR_NOMEM) __builtin_trap();
            if (rc != VB_OK || b.n_stacks == 0) break;
            vb_gstate_copy(&a, &b);
            touch(&a.n_stacks, sizeof a.n_stacks);
        }
    }
    vb_gstate_free(&a);
    vb_gstate_free(&b);
}

/* A few steps over the embedded model's vocabulary: the first allowed token of each mask must
 * be accepted. */
static void mask_steps(const vb_grammar *g) {
    static vb_model *m;
    if (!m) {
        size_t size = 0;
        const void *data = vb_embedded_model(&size);
        char err[128];
        if (!data || vb_model_load_from_memory(data, size, "fuzz", NULL, &m, err, sizeof err) != VB_OK) return;
    }
    vb_grammar_run *r = NULL;
    char err[128];
    if (vb_grammar_run_init(g, m, &r, err, sizeof err) != VB_OK) return;
    int32_t n_vocab = vb_model_get_info(m)->n_vocab;
    for (int step = 0; step < 6; step++) {
        const uint32_t *mask = vb_grammar_run_mask(r);
        if (!mask) break;
        vb_token pick = -1;
        for (vb_token t = 0; t < n_vocab && pick < 0; t++)
            if (mask[t >> 5] >> (t & 31) & 1u) pick = t;
        if (pick < 0) break;
        int rc = vb_grammar_run_accept(r, pick);
        if (rc == VB_ERR_ARG) __builtin_trap(); /* allowed by the mask, refused by accept */
        if (rc != VB_OK || vb_grammar_run_finished(r)) break;
    }
    vb_grammar_run_free(r);
}

int vb_fuzz_grammar(const uint8_t *data, size_t size) {
    vb_grammar *g = NULL;
    char err[256];
    if (vb_grammar_parse((const char *)data, size, &g, err, sizeof err) == VB_OK) {
        match_texts(g, data, size);
        mask_steps(g);
        vb_grammar_free(g);
    } else if (!err[0]) {
        __builtin_trap(); /* every refusal says why */
    }
    char *gbnf = NULL;
    int rc = vb_json_schema_to_gbnf((const char *)data, size, &gbnf, err, sizeof err);
    if (rc == VB_OK) {
        /* the converter's output parses (a schema that refers to itself first is left-recursive) */
        rc = vb_grammar_parse(gbnf, strlen(gbnf), &g, err, sizeof err);
        if (rc != VB_OK && !strstr(err, "left recursion") && rc != VB_ERR_NOMEM) __builtin_trap();
        if (rc == VB_OK) {
            match_texts(g, data, size);
            mask_steps(g);
            vb_grammar_free(g);
        }
        free(gbnf);
    }
    return 0;
}
