/* test_hostile.c - regression tests for hostile model files and API misuse (issue 18): head
 * counts and dimensions whose 32-bit products wrap to the real tensor shapes, hyper-parameters
 * out of range or of the wrong type, mismatches between the keys and the tensors, alignments
 * below the GGUF spec's 8, a model image at a misaligned address, the "n_ctx too large" path
 * of the cpu backend, a batch claiming more rows than it holds, a tokenizer.json with one huge
 * id, and FIFOs given as input paths. Each model here is a tiny
 * random llama written with the library's GGUF writer; a load must fail with VB_ERR_FORMAT and
 * a message naming the offending key, or succeed and give the same logits as an independent
 * path (the same model from an aligned image). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "decode/cost_model.h"
#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"
#include "types.h"
#include "vibee.h"

/* A tiny llama: tensor shapes from the *_rows fields, keys from the key fields (so the two
 * can disagree). */
typedef struct hostile_spec {
    int n_vocab, n_embd, q_rows, kv_rows, n_ff;
    uint32_t head_count, head_count_kv, key_length, rope_dim; /* rope_dim 0: key absent */
    uint32_t alignment;                                        /* 0: writer default */
} hostile_spec;

static const hostile_spec SANE = {16, 32, 32, 16, 32, 4, 2, 8, 8, 0};

static float *filled(int64_t n, float v) {
    float *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; d && i < n; i++) d[i] = v * (float)((i * 7919) % 13 - 6) / 6.0f;
    return d;
}

static int write_llama(const hostile_spec *s, const char *path) {
    vb_gguf_writer *w = vb_gguf_writer_init();
    if (!w) return VB_ERR_NOMEM;
    float *bufs[16] = {0};
    int nb = 0, rc = vb_gguf_writer_set_str(w, "general.architecture", "llama");
#define U32(k, v)                                                                                  \
    if (rc == VB_OK) rc = vb_gguf_writer_set_u32(w, k, v)
    U32("llama.context_length", 64);
    U32("llama.embedding_length", (uint32_t)s->n_embd);
    U32("llama.block_count", 1);
    U32("llama.feed_forward_length", (uint32_t)s->n_ff);
    U32("llama.attention.head_count", s->head_count);
    U32("llama.attention.head_count_kv", s->head_count_kv);
    U32("llama.attention.key_length", s->key_length);
    if (s->rope_dim) U32("llama.rope.dimension_count", s->rope_dim);
    if (s->alignment) U32("general.alignment", s->alignment);
#undef U32
    const struct {
        const char *name;
        int64_t n_in, n_out;
    } T[] = {
        {"token_embd.weight", s->n_embd, s->n_vocab},
        {"output_norm.weight", s->n_embd, 1},
        {"blk.0.attn_norm.weight", s->n_embd, 1},
        {"blk.0.ffn_norm.weight", s->n_embd, 1},
        {"blk.0.attn_q.weight", s->n_embd, s->q_rows},
        {"blk.0.attn_k.weight", s->n_embd, s->kv_rows},
        {"blk.0.attn_v.weight", s->n_embd, s->kv_rows},
        {"blk.0.attn_output.weight", s->q_rows, s->n_embd},
        {"blk.0.ffn_gate.weight", s->n_embd, s->n_ff},
        {"blk.0.ffn_up.weight", s->n_embd, s->n_ff},
        {"blk.0.ffn_down.weight", s->n_ff, s->n_embd},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0] && rc == VB_OK; i++) {
        float *d = bufs[nb++] = filled(T[i].n_in * T[i].n_out, T[i].n_out == 1 ? 1.0f : 0.3f);
        const int64_t ne[2] = {T[i].n_in, T[i].n_out};
        rc = d ? vb_gguf_writer_add_tensor(w, T[i].name, VB_TYPE_F32, T[i].n_out > 1 ? 2 : 1, ne, d)
               : VB_ERR_NOMEM;
    }
    char err[256] = "";
    if (rc == VB_OK) rc = vb_gguf_writer_write(w, path, err, sizeof err);
    if (rc != VB_OK) fprintf(stderr, "    write_llama: %d %s\n", rc, err);
    vb_gguf_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
}

/* Writes spec, loads it and creates a cpu context: the status of the first step that fails
 * (VB_OK if all do); err gets its message. */
static int load_spec(const hostile_spec *s, char *err, size_t err_len) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/vb_test_hostile_%d.gguf", (int)getpid());
    int rc = write_llama(s, path);
    if (rc != VB_OK) return rc;
    vb_model *m = NULL;
    rc = vb_model_load(path, NULL, &m, err, err_len);
    unlink(path);
    if (rc != VB_OK) return rc;
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = 32;
    p.n_threads = 1;
    vb_context *c = NULL;
    rc = vb_context_init(m, &p, &c, err, err_len);
    vb_context_free(c);
    vb_model_free(m);
    return rc;
}

TEST(hostile_sane_model_loads) {
    char err[512] = "";
    int rc = load_spec(&SANE, err, sizeof err);
    CHECKF(rc == VB_OK, "rc %d: %s", rc, err);
}

/* The file: 32128 x 267366 = 2^33 + 256 and 16064 x 267366 = 2^32 + 128, so in 32-bit
 * arithmetic the widths became the real 256 / 128 rows and rope wrote past the q buffer. */
TEST(hostile_head_product_wrap) {
    hostile_spec s = {16, 32, 256, 128, 32, 32128, 16064, 267366, 64, 0};
    char err[512] = "";
    int rc = load_spec(&s, err, sizeof err);
    CHECK_EQ_INT(rc, VB_ERR_FORMAT);
    CHECKF(strstr(err, "llama.attention.key_length"), "message: %s", err);
    /* every factor in range, product above the limit */
    s.key_length = 65536;
    s.head_count = 65536;
    s.head_count_kv = 65536;
    rc = load_spec(&s, err, sizeof err);
    CHECK_EQ_INT(rc, VB_ERR_FORMAT);
    CHECKF(strstr(err, "llama.attention.head_count") && strstr(err, "limit"), "message: %s", err);
}

/* Keys that disagree with the tensors: an error naming the key, not a tensor shape later. */
TEST(hostile_keys_against_tensors) {
    const struct {
        hostile_spec s;
        const char *key;
    } cases[] = {
        {{16, 32, 32, 16, 32, 8, 2, 8, 8, 0}, "llama.attention.head_count"},  /* 64 q rows */
        {{16, 32, 32, 16, 32, 4, 4, 8, 8, 0}, "llama.attention.head_count"},  /* 32 kv rows */
        {{16, 32, 32, 16, 32, 4, 2, 16, 8, 0}, "llama.attention.key_length"}, /* 64 q rows */
        {{16, 32, 32, 16, 32, 4, 3, 8, 8, 0}, "llama.attention.head_count_kv"}, /* 4 % 3 */
        {{16, 32, 32, 16, 32, 4, 2, 8, 10, 0}, "llama.rope.dimension_count"}, /* > head_dim */
        {{16, 32, 32, 16, 32, 4, 2, 8, 7, 0}, "llama.rope.dimension_count"},  /* odd */
        {{16, 32, 32, 16, 32, 4, 2, 8, 8, 1}, "general.alignment"},
        {{16, 32, 32, 16, 32, 4, 2, 8, 8, 4}, "general.alignment"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        int rc;
        if (cases[i].s.alignment && cases[i].s.alignment < 8) {
            /* the writer refuses such files: the reader's check is in test_gguf's table, and
             * the writer's refusal is the check here */
            vb_gguf_writer *w = vb_gguf_writer_init();
            rc = vb_gguf_writer_set_u32(w, "general.alignment", cases[i].s.alignment);
            vb_gguf_writer_free(w);
            CHECKF(rc == VB_ERR_ARG, "case %zu: writer accepted alignment %u", i,
                   cases[i].s.alignment);
            continue;
        }
        rc = load_spec(&cases[i].s, err, sizeof err);
        CHECKF(rc == VB_ERR_FORMAT, "case %zu: rc %d (%s)", i, rc, err);
        CHECKF(strstr(err, cases[i].key), "case %zu: message does not name %s: %s", i,
               cases[i].key, err);
    }
}

/* A key of the wrong type or out of range is named (the writer only writes u32 here, so the
 * values are patched into the image). */
TEST(hostile_key_out_of_range) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/vb_test_hostile_r%d.gguf", (int)getpid());
    CHECK(write_llama(&SANE, path) == VB_OK);
    FILE *f = fopen(path, "rb");
    CHECK(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *img = malloc((size_t)n);
    CHECK(img && fread(img, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    unlink(path);
    /* each key's value: name, then type (4 bytes), then the u32 */
    const char *keys[] = {"llama.block_count", "llama.rope.dimension_count",
                          "llama.attention.head_count"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *key = keys[k];
        unsigned char *at = NULL;
        for (long i = 0; i + (long)strlen(key) < n && !at; i++)
            if (memcmp(img + i, key, strlen(key)) == 0) at = img + i + strlen(key);
        CHECKF(at, "%s not found", key);
        unsigned char saved[8];
        memcpy(saved, at, 8);
        const uint32_t values[] = {0x7fffffffu, 0xffffffffu, 5000000};
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
            memcpy(at + 4, &values[i], 4);
            vb_model *m = NULL;
            char err[512] = "";
            int rc = vb_model_load_from_memory(img, (size_t)n, "t", NULL, &m, err, sizeof err);
            vb_model_free(m);
            CHECKF(rc == VB_ERR_FORMAT, "%s = %u: rc %d", key, values[i], rc);
            CHECKF(strstr(err, key) && strstr(err, "out of range"), "message: %s", err);
        }
        const uint32_t f32_type = VB_GGUF_FLOAT32;
        memcpy(at, &f32_type, 4);
        vb_model *m = NULL;
        char err[512] = "";
        int rc = vb_model_load_from_memory(img, (size_t)n, "t", NULL, &m, err, sizeof err);
        vb_model_free(m);
        memcpy(at, saved, 8);
        CHECKF(rc == VB_ERR_FORMAT, "%s as float: rc %d", key, rc);
        CHECKF(strstr(err, key) && strstr(err, "has type float32"), "message: %s", err);
    }
    free(img);
}

static int forward_one(vb_model *m, float *logits_out, char *err, size_t err_len) {
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = 64;
    p.n_threads = 1;
    vb_context *c = NULL;
    int rc = vb_context_init(m, &p, &c, err, err_len);
    if (rc != VB_OK) return rc;
    vb_batch *b = vb_batch_init(4);
    for (int i = 0; i < 3; i++) vb_batch_add(b, (vb_token)(i + 5), i, 0, i == 2);
    rc = vb_forward(c, b);
    if (rc == VB_OK)
        memcpy(logits_out, vb_get_logits(c, 2),
               (size_t)vb_model_get_info(m)->n_vocab * sizeof(float));
    else
        snprintf(err, err_len, "%s", vb_context_error(c));
    vb_batch_free(b);
    vb_context_free(c);
    return rc;
}

/* The shipped model from an image at an odd address: the reader works on an aligned copy, so
 * every element load stays aligned (UBSan would report one that is not), and the logits equal
 * those of the aligned image bit for bit. */
TEST(hostile_misaligned_image) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    CHECK(data && size);
    unsigned char *buf = malloc(size + 1);
    CHECK(buf);
    memcpy(buf + 1, data, size);
    vb_model *a = NULL, *b = NULL;
    char err[512] = "";
    CHECK(vb_model_load_from_memory(data, size, "aligned", NULL, &a, err, sizeof err) == VB_OK);
    int rc = vb_model_load_from_memory(buf + 1, size, "odd", NULL, &b, err, sizeof err);
    CHECKF(rc == VB_OK, "rc %d: %s", rc, err);
    const int n_vocab = vb_model_get_info(a)->n_vocab;
    float *la = malloc((size_t)n_vocab * sizeof *la), *lb = malloc((size_t)n_vocab * sizeof *lb);
    CHECK(la && lb);
    CHECK(forward_one(a, la, err, sizeof err) == VB_OK);
    CHECK(forward_one(b, lb, err, sizeof err) == VB_OK);
    CHECK(memcmp(la, lb, (size_t)n_vocab * sizeof *la) == 0);
    free(la);
    free(lb);
    vb_model_free(a);
    vb_model_free(b);
    free(buf);
}

/* n_ctx = INT32_MAX: a clear error (the message used to read freed memory). */
TEST(hostile_n_ctx_too_large) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    vb_model *m = NULL;
    char err[512] = "";
    CHECK(vb_model_load_from_memory(data, size, "m", NULL, &m, err, sizeof err) == VB_OK);
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = INT32_MAX;
    p.n_seq_max = 7;
    p.n_threads = 1;
    vb_context *c = NULL;
    int rc = vb_context_init(m, &p, &c, err, sizeof err);
    vb_context_free(c);
    vb_model_free(m);
    CHECK_EQ_INT(rc, VB_ERR_ARG);
    CHECKF(strstr(err, "n_ctx 2147483647 with 7 sequences is too large"), "message: %s", err);
}

/* A batch whose n exceeds its capacity is refused before any row is read. */
TEST(hostile_batch_over_capacity) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    vb_model *m = NULL;
    char err[512] = "";
    CHECK(vb_model_load_from_memory(data, size, "m", NULL, &m, err, sizeof err) == VB_OK);
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = 64;
    p.n_threads = 1;
    vb_context *c = NULL;
    CHECK(vb_context_init(m, &p, &c, err, sizeof err) == VB_OK);
    vb_batch *b = vb_batch_init(2);
    vb_batch_add(b, 1, 0, 0, true);
    vb_batch_add(b, 2, 1, 0, true);
    b->n = 40; /* rows 2..39 were never allocated */
    int rc = vb_forward(c, b);
    const bool named = strstr(vb_context_error(c), "room for 2") != NULL;
    b->n = 2;
    vb_batch_free(b);
    vb_context_free(c);
    vb_model_free(m);
    CHECK_EQ_INT(rc, VB_ERR_ARG);
    CHECK(named);
}

/* ---- resource limits and special files ----------------------------------------------------- */

#ifdef VB_HAVE_JANSSON
/* One id of 16777215 among three entries used to allocate placeholders for every id below it
 * (2 GB, 27 s); now refused before allocating, naming the id. */
TEST(hostile_tokenizer_huge_id) {
    const char *docs[] = {
        "{\"version\":\"1.0\",\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"added_tokens\":[],"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":16777215},"
        "\"merges\":[\"a b\"]}}",
        "{\"version\":\"1.0\",\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
        "\"added_tokens\":[{\"id\":16777215,\"content\":\"<x>\",\"special\":true}],"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}",
    };
    char path[128];
    snprintf(path, sizeof path, "/tmp/vb_test_hostile_tok_%d.json", (int)getpid());
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        FILE *f = fopen(path, "wb");
        CHECK(f);
        fputs(docs[i], f);
        fclose(f);
        vb_tokenizer *t = NULL;
        char err[512] = "";
        int rc = vb_tokenizer_from_hf_json(path, &t, err, sizeof err);
        vb_tokenizer_free(t);
        unlink(path);
        CHECKF(rc == VB_ERR_FORMAT, "doc %zu: rc %d (%s)", i, rc, err);
        CHECKF(strstr(err, "16777215"), "doc %zu: %s", i, err);
    }
}
#endif

/* FIFOs given as model, tokenizer.json or cost-cache paths are refused at once (opening one
 * for reading used to wait for a writer forever). Run in a child so that a hang fails the
 * test instead of stopping the runner. */
TEST(hostile_fifo_paths) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/vb_test_hostile_fifo_%d", (int)getpid());
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char err[512];
        vb_model *m = NULL;
        vb_cost_table t;
        int code = 0;
        if (vb_model_load(path, NULL, &m, err, sizeof err) != VB_ERR_IO) code |= 1;
        if (vb_cost_file_load(path, "key", &t) != VB_ERR_IO) code |= 2;
#ifdef VB_HAVE_JANSSON
        vb_tokenizer *tok = NULL;
        if (vb_tokenizer_from_hf_json(path, &tok, err, sizeof err) != VB_ERR_IO ||
            !strstr(err, "not a regular file"))
            code |= 4;
#endif
        _exit(code);
    }
    CHECK(pid > 0);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 1000 && done == 0; i++) { /* up to 10 s */
        done = waitpid(pid, &status, WNOHANG);
        if (done == 0) usleep(10000);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    unlink(path);
    CHECKF(done == pid, "opening a FIFO blocked");
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
}
