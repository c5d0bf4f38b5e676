/* test_gguf.c - tests of the GGUF reader and writer: writer -> reader round trips for every value
 * type and several tensor types, the writer's exact bytes against a layout built by hand from the
 * GGUF spec, typed-getter coercion, copy_keys, a hostile-file set (truncation at every byte,
 * patched fields, seeded random byte flips) built here from a valid hand-made file, and the facts
 * of the shipped model models/wedlm-py-6m-f16.gguf as read by an independent numpy reader
 * (scripts/wedlm/gguf_load.py read_gguf()). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "test.h"
#include "types.h"
#include "vibee.h"

/* ---- a byte builder for hand-made GGUF images --------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} gbuf;

static void gb_raw(gbuf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void gb_u8(gbuf *b, uint8_t v) { gb_raw(b, &v, 1); }
static void gb_u16(gbuf *b, uint16_t v) { gb_raw(b, &v, 2); } /* little-endian host */
static void gb_u32(gbuf *b, uint32_t v) { gb_raw(b, &v, 4); }
static void gb_u64(gbuf *b, uint64_t v) { gb_raw(b, &v, 8); }
static void gb_str(gbuf *b, const char *s) {
    gb_u64(b, strlen(s));
    gb_raw(b, s, strlen(s));
}
static void gb_key(gbuf *b, const char *name, uint32_t type) {
    gb_str(b, name);
    gb_u32(b, type);
}
static void gb_pad(gbuf *b, size_t align) {
    while (b->len % align) gb_u8(b, 0);
}
static void put64_at(uint8_t *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }
static void put32_at(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }

/* Where the patchable fields of the base image live. */
typedef struct {
    size_t version, n_tensors, n_kv;
    size_t align_type, align_value;
    size_t str_len;       /* length of the value of "s.str" */
    size_t arr_count;     /* count of "a.i32" */
    size_t strs_elem1;    /* length field of "a.strs"[1] */
    size_t key_type_u8;   /* type field of "k.u8" */
    size_t key_name_i8;   /* first byte of the name "k.i8" ('k') */
    size_t tensor_name_b; /* first byte of the name "t.b" */
    size_t ndims_a, ne0_a, ne1_a, type_a, offset_a;
    size_t offset_b, offset_c;
    size_t data_start;
} base_layout;

/* A valid GGUF v3 image using every value type, a nested array and three tensors (f32 [4,2],
 * q8_0 [32], f16 [3]); the last tensor ends exactly at the end of the file. */
static gbuf make_base(base_layout *L) {
    gbuf b = {0};
    gb_raw(&b, "GGUF", 4);
    L->version = b.len;
    gb_u32(&b, 3);
    L->n_tensors = b.len;
    gb_u64(&b, 3);
    L->n_kv = b.len;
    gb_u64(&b, 16);
    gb_key(&b, "general.alignment", VB_GGUF_UINT32);
    L->align_type = b.len - 4;
    L->align_value = b.len;
    gb_u32(&b, 32);
    gb_key(&b, "s.str", VB_GGUF_STRING);
    L->str_len = b.len;
    gb_str(&b, "hello\nworld");
    gb_key(&b, "a.i32", VB_GGUF_ARRAY);
    gb_u32(&b, VB_GGUF_INT32);
    L->arr_count = b.len;
    gb_u64(&b, 3);
    gb_u32(&b, 1);
    gb_u32(&b, (uint32_t)-2);
    gb_u32(&b, 3);
    gb_key(&b, "a.strs", VB_GGUF_ARRAY);
    gb_u32(&b, VB_GGUF_STRING);
    gb_u64(&b, 3);
    gb_str(&b, "x");
    L->strs_elem1 = b.len;
    gb_str(&b, "yy");
    gb_str(&b, "");
    gb_key(&b, "k.u8", VB_GGUF_UINT8);
    L->key_type_u8 = b.len - 4;
    gb_u8(&b, 200);
    L->key_name_i8 = b.len + 8;
    gb_key(&b, "k.i8", VB_GGUF_INT8);
    gb_u8(&b, (uint8_t)-5);
    gb_key(&b, "k.u16", VB_GGUF_UINT16);
    gb_u16(&b, 60000);
    gb_key(&b, "k.i16", VB_GGUF_INT16);
    gb_u16(&b, (uint16_t)-30000);
    gb_key(&b, "k.u32", VB_GGUF_UINT32);
    gb_u32(&b, 4000000000u);
    gb_key(&b, "k.i32", VB_GGUF_INT32);
    gb_u32(&b, (uint32_t)-7);
    gb_key(&b, "k.f32", VB_GGUF_FLOAT32);
    float f = 1.5f;
    gb_raw(&b, &f, 4);
    gb_key(&b, "k.bool", VB_GGUF_BOOL);
    gb_u8(&b, 1);
    gb_key(&b, "k.u64", VB_GGUF_UINT64);
    gb_u64(&b, (uint64_t)1 << 63);
    gb_key(&b, "k.i64", VB_GGUF_INT64);
    gb_u64(&b, (uint64_t)INT64_MIN);
    gb_key(&b, "k.f64", VB_GGUF_FLOAT64);
    double d = 0.1;
    gb_raw(&b, &d, 8);
    gb_key(&b, "n.nested", VB_GGUF_ARRAY); /* [[1, 2], [3]] of uint16 */
    gb_u32(&b, VB_GGUF_ARRAY);
    gb_u64(&b, 2);
    gb_u32(&b, VB_GGUF_UINT16);
    gb_u64(&b, 2);
    gb_u16(&b, 1);
    gb_u16(&b, 2);
    gb_u32(&b, VB_GGUF_UINT16);
    gb_u64(&b, 1);
    gb_u16(&b, 3);
    /* tensors */
    gb_str(&b, "t.a");
    L->ndims_a = b.len;
    gb_u32(&b, 2);
    L->ne0_a = b.len;
    gb_u64(&b, 4);
    L->ne1_a = b.len;
    gb_u64(&b, 2);
    L->type_a = b.len;
    gb_u32(&b, VB_TYPE_F32);
    L->offset_a = b.len;
    gb_u64(&b, 0);
    L->tensor_name_b = b.len + 8;
    gb_str(&b, "t.b");
    gb_u32(&b, 1);
    gb_u64(&b, 32);
    gb_u32(&b, VB_TYPE_Q8_0);
    L->offset_b = b.len;
    gb_u64(&b, 32);
    gb_str(&b, "t.c");
    gb_u32(&b, 1);
    gb_u64(&b, 3);
    gb_u32(&b, VB_TYPE_F16);
    L->offset_c = b.len;
    gb_u64(&b, 96);
    gb_pad(&b, 32);
    L->data_start = b.len;
    for (int i = 0; i < 8; i++) {
        float v = (float)i - 2.5f;
        gb_raw(&b, &v, 4);
    }
    for (int i = 0; i < 34; i++) gb_u8(&b, (uint8_t)(i * 7 + 1));
    while (b.len < L->data_start + 96) gb_u8(&b, 0);
    for (int i = 0; i < 3; i++) gb_u16(&b, vb_f32_to_f16((float)i + 0.5f));
    return b;
}

/* Parse a copy of img[0..n) held in an exactly-sized heap block (ASan sees any overread). */
static int parse_copy(const uint8_t *img, size_t n, vb_gguf **out, char *err, size_t err_len) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, img, n);
    int rc = vb_gguf_open_memory(copy, n, out, err, err_len);
    if (rc == VB_OK) {
        /* the caller's memory must outlive g: keep the copy alive by re-parsing the original */
        vb_gguf_close(*out);
        *out = NULL;
        free(copy);
        return vb_gguf_open_memory(img, n, out, err, err_len);
    }
    free(copy);
    return rc;
}

/* Walks everything a parsed file offers; returns 0 if it is all consistent. */
static int walk_consistent(const vb_gguf *g, const uint8_t *img, size_t size) {
    char text[256];
    for (int64_t i = 0; i < vb_gguf_n_keys(g); i++) {
        const char *name = vb_gguf_key_name(g, i);
        if (!name || vb_gguf_find_key(g, name) != i) return 1;
        int type = vb_gguf_key_type(g, i);
        if (type < 0 || type > VB_GGUF_FLOAT64) return 2;
        int n = vb_gguf_value_to_text(g, i, text, sizeof text);
        if (n < 0 || (size_t)n >= sizeof text || strlen(text) != (size_t)n) return 3;
        int et;
        uint64_t count;
        const void *data;
        if (type == VB_GGUF_ARRAY) {
            if (!vb_gguf_get_arr(g, name, &et, &count, &data)) return 4;
            if (count > size) return 5;
            if (et == VB_GGUF_STRING) {
                for (uint64_t k = 0; k < count; k++) {
                    const char *s;
                    uint64_t len;
                    if (!vb_gguf_get_arr_str(g, name, k, &s, &len)) return 6;
                    if ((const uint8_t *)s < img || (const uint8_t *)s + len > img + size) return 7;
                }
                if (vb_gguf_get_arr_str(g, name, count, NULL, NULL)) return 8;
            }
        } else if (type == VB_GGUF_STRING) {
            const char *s;
            uint64_t len;
            if (!vb_gguf_get_str(g, name, &s, &len)) return 9;
            if ((const uint8_t *)s < img || (const uint8_t *)s + len > img + size) return 10;
        }
    }
    for (int64_t i = 0; i < vb_gguf_n_tensors(g); i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        if (!t || vb_gguf_find_tensor(g, t->name) != t) return 11;
        if (t->n_dims < 1 || t->n_dims > VB_GGUF_MAX_DIMS) return 12;
        int64_t n = 1;
        for (int d = 0; d < VB_GGUF_MAX_DIMS; d++) {
            if (t->ne[d] <= 0 || (d >= t->n_dims && t->ne[d] != 1)) return 13;
            n *= t->ne[d];
        }
        if (n != t->n_elems) return 14;
        if ((uint64_t)vb_type_row_bytes(t->type, t->ne[0]) * (uint64_t)(n / t->ne[0]) != t->nbytes)
            return 15;
        if (t->offset % vb_gguf_alignment(g)) return 16;
        const uint8_t *p = t->data;
        if (p < img || p + t->nbytes > img + size) return 17;
        volatile uint8_t sink = 0;
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
        (void)sink;
    }
    if (vb_gguf_tensor_at(g, vb_gguf_n_tensors(g)) || vb_gguf_key_name(g, -1)) return 18;
    return 0;
}

static const char *tmp_path(const char *tag, char *buf, size_t n) {
    const char *dir = getenv("TMPDIR");
    snprintf(buf, n, "%s/vb_test_gguf_%ld_%s.gguf", dir && *dir ? dir : "/tmp", (long)getpid(), tag);
    return buf;
}

/* ---- the hand-made image itself ------------------------------------------------------------ */

TEST(gguf_base_image_parses) {
    base_layout L;
    gbuf b = make_base(&L);
    vb_gguf *g = NULL;
    char err[256] = "";
    int rc = vb_gguf_open_memory(b.p, b.len, &g, err, sizeof err);
    CHECKF(rc == VB_OK, "rc %d: %s", rc, err);
    CHECK_EQ_INT(vb_gguf_version(g), 3);
    CHECK_EQ_INT(vb_gguf_alignment(g), 32);
    CHECK_EQ_INT(vb_gguf_n_keys(g), 16);
    CHECK_EQ_INT(vb_gguf_n_tensors(g), 3);
    CHECK_EQ_INT(walk_consistent(g, b.p, b.len), 0);
    CHECK(vb_gguf_find_key(g, "k.f64") == 14);
    CHECK(vb_gguf_find_key(g, "k.f6") == -1);
    CHECK(vb_gguf_find_key(g, "nope") == -1);
    CHECK_EQ_INT(vb_gguf_key_type(g, 15), VB_GGUF_ARRAY);
    CHECK_EQ_INT(vb_gguf_key_type(g, 16), -1);

    static const struct { const char *key, *text; } texts[] = {
        {"general.alignment", "32"}, {"s.str", "hello\\nworld"}, {"a.i32", "[int32 x 3]"},
        {"a.strs", "[string x 3]"}, {"k.u8", "200"}, {"k.i8", "-5"}, {"k.u16", "60000"},
        {"k.i16", "-30000"}, {"k.u32", "4000000000"}, {"k.i32", "-7"}, {"k.f32", "1.5"},
        {"k.bool", "true"}, {"k.u64", "9223372036854775808"}, {"k.i64", "-9223372036854775808"},
        {"k.f64", "0.10000000000000001"}, {"n.nested", "[array x 2]"},
    };
    char text[64];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int64_t idx = vb_gguf_find_key(g, texts[i].key);
        CHECKF(idx == (int64_t)i, "%s at %lld", texts[i].key, (long long)idx);
        int n = vb_gguf_value_to_text(g, idx, text, sizeof text);
        CHECKF(n == (int)strlen(texts[i].text) && strcmp(text, texts[i].text) == 0,
               "%s: '%s' (%d) vs '%s'", texts[i].key, text, n, texts[i].text);
    }
    /* truncated text output stays NUL-terminated */
    char tiny[4];
    CHECK_EQ_INT(vb_gguf_value_to_text(g, 1, tiny, sizeof tiny), 3);
    CHECK(strcmp(tiny, "hel") == 0);
    CHECK(vb_gguf_value_to_text(g, 99, text, sizeof text) < 0);
    CHECK(vb_gguf_value_to_text(g, 0, NULL, 4) < 0);

    /* nested array: element type array, data at the first inner header */
    int et;
    uint64_t n;
    const void *data;
    CHECK(vb_gguf_get_arr(g, "n.nested", &et, &n, &data));
    CHECK_EQ_INT(et, VB_GGUF_ARRAY);
    CHECK_EQ_INT(n, 2);
    uint32_t inner_type;
    memcpy(&inner_type, data, 4);
    CHECK_EQ_INT(inner_type, VB_GGUF_UINT16);

    const vb_gguf_tensor *t = vb_gguf_find_tensor(g, "t.b");
    CHECK(t && t->type == VB_TYPE_Q8_0 && t->n_dims == 1 && t->ne[0] == 32 && t->ne[1] == 1);
    CHECK_EQ_INT(t->nbytes, 34);
    CHECK_EQ_INT(t->offset, 32);
    CHECK((const uint8_t *)t->data == b.p + L.data_start + 32);
    t = vb_gguf_find_tensor(g, "t.c");
    CHECK(t && t->nbytes == 6 && (const uint8_t *)t->data + 6 == b.p + b.len);
    uint16_t h;
    memcpy(&h, (const uint8_t *)t->data + 2, 2);
    CHECK(vb_f16_to_f32(h) == 1.5f);
    CHECK(vb_gguf_find_tensor(g, "t.d") == NULL);
    vb_gguf_close(g);
    vb_gguf_close(NULL);

    /* version 2 has the same layout */
    put32_at(b.p, L.version, 2);
    CHECK_EQ_INT(vb_gguf_open_memory(b.p, b.len, &g, NULL, 0), VB_OK);
    CHECK_EQ_INT(vb_gguf_version(g), 2);
    vb_gguf_close(g);
    free(b.p);
}

/* ---- typed getters --------------------------------------------------------------------------- */

TEST(gguf_getter_coercion) {
    base_layout L;
    gbuf b = make_base(&L);
    vb_gguf *g = NULL;
    CHECK_EQ_INT(vb_gguf_open_memory(b.p, b.len, &g, NULL, 0), VB_OK);
    static const struct {
        const char *key;
        bool i64_ok, u32_ok, i32_ok;
        int64_t value;
    } ints[] = {
        {"k.u8", true, true, true, 200},
        {"k.i8", true, false, true, -5},
        {"k.u16", true, true, true, 60000},
        {"k.i16", true, false, true, -30000},
        {"k.u32", true, true, false, 4000000000},
        {"k.i32", true, false, true, -7},
        {"k.u64", false, false, false, 0}, /* 2^63 does not fit int64 */
        {"k.i64", true, false, false, INT64_MIN},
        {"general.alignment", true, true, true, 32},
        {"k.f32", false, false, false, 0},
        {"k.bool", false, false, false, 0},
        {"s.str", false, false, false, 0},
        {"a.i32", false, false, false, 0},
        {"missing", false, false, false, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v64 = 12345;
        uint32_t vu = 12345;
        int32_t vi = 12345;
        bool a = vb_gguf_get_i64(g, ints[i].key, &v64);
        bool u = vb_gguf_get_u32(g, ints[i].key, &vu);
        bool s = vb_gguf_get_i32(g, ints[i].key, &vi);
        CHECKF(a == ints[i].i64_ok && u == ints[i].u32_ok && s == ints[i].i32_ok,
               "%s: %d %d %d", ints[i].key, a, u, s);
        CHECKF(a ? v64 == ints[i].value : v64 == 12345, "%s i64 %lld", ints[i].key, (long long)v64);
        CHECKF(u ? (int64_t)vu == ints[i].value : vu == 12345, "%s u32 %u", ints[i].key, vu);
        CHECKF(s ? vi == ints[i].value : vi == 12345, "%s i32 %d", ints[i].key, vi);
    }
    float f = -1;
    CHECK(vb_gguf_get_f32(g, "k.f32", &f) && f == 1.5f);
    CHECK(vb_gguf_get_f32(g, "k.f64", &f) && f == 0.1f);
    f = -1;
    CHECK(!vb_gguf_get_f32(g, "k.u8", &f) && f == -1);
    CHECK(!vb_gguf_get_f32(g, "s.str", &f) && f == -1);
    bool bo = false;
    CHECK(vb_gguf_get_bool(g, "k.bool", &bo) && bo);
    bo = false;
    CHECK(!vb_gguf_get_bool(g, "k.u8", &bo) && !bo);
    const char *s = NULL;
    uint64_t len = 0;
    CHECK(vb_gguf_get_str(g, "s.str", &s, &len) && len == 11 && memcmp(s, "hello\nworld", 11) == 0);
    CHECK(!vb_gguf_get_str(g, "k.u8", &s, &len));
    CHECK(!vb_gguf_get_str(g, "a.strs", &s, &len));
    int et = -1;
    uint64_t n = 0;
    const void *data = NULL;
    CHECK(vb_gguf_get_arr(g, "a.i32", &et, &n, &data) && et == VB_GGUF_INT32 && n == 3);
    int32_t vals[3];
    memcpy(vals, data, sizeof vals);
    CHECK(vals[0] == 1 && vals[1] == -2 && vals[2] == 3);
    CHECK(!vb_gguf_get_arr(g, "s.str", &et, &n, &data));
    CHECK(vb_gguf_get_arr_str(g, "a.strs", 1, &s, &len) && len == 2 && memcmp(s, "yy", 2) == 0);
    CHECK(vb_gguf_get_arr_str(g, "a.strs", 2, &s, &len) && len == 0);
    CHECK(!vb_gguf_get_arr_str(g, "a.strs", 3, &s, &len));
    CHECK(!vb_gguf_get_arr_str(g, "a.i32", 0, &s, &len));
    CHECK(!vb_gguf_get_i64(NULL, "k.u8", NULL));
    CHECK(!vb_gguf_get_i64(g, NULL, &(int64_t){0}));
    vb_gguf_close(g);
    free(b.p);
}

/* ---- writer --------------------------------------------------------------------------------- */

/* The exact bytes of a one-key one-tensor file, laid out by hand from the GGUF v3 spec. */
TEST(gguf_writer_exact_bytes) {
    vb_gguf_writer *w = vb_gguf_writer_init();
    CHECK(w);
    float data[2] = {1.0f, 2.0f};
    int64_t ne[1] = {2};
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "a", 7), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "t", VB_TYPE_F32, 1, ne, data), VB_OK);
    char path[256], err[256] = "";
    tmp_path("exact", path, sizeof path);
    int rc = vb_gguf_writer_write(w, path, err, sizeof err);
    vb_gguf_writer_free(w);
    CHECKF(rc == VB_OK, "%s", err);
    gbuf e = {0};
    gb_raw(&e, "GGUF", 4);
    gb_u32(&e, 3);
    gb_u64(&e, 1);          /* tensors */
    gb_u64(&e, 1);          /* keys */
    gb_key(&e, "a", 4);     /* uint32 */
    gb_u32(&e, 7);
    gb_str(&e, "t");
    gb_u32(&e, 1);          /* n_dims */
    gb_u64(&e, 2);          /* ne[0] */
    gb_u32(&e, 0);          /* f32 */
    gb_u64(&e, 0);          /* offset */
    CHECK_EQ_INT(e.len, 74);
    gb_pad(&e, 32);
    gb_raw(&e, data, 8);
    gb_pad(&e, 32);
    FILE *f = fopen(path, "rb");
    CHECK(f);
    uint8_t got[256];
    size_t n = fread(got, 1, sizeof got, f);
    fclose(f);
    unlink(path);
    CHECK_EQ_INT(n, 128);
    CHECK_EQ_INT(e.len, 128);
    CHECK(memcmp(got, e.p, n) == 0);
    free(e.p);
}

static int check_file_roundtrip(const vb_gguf *g, const float *f32data, const uint16_t *f16data,
                                const uint8_t *q8data, const uint8_t *q4kdata) {
    if (vb_gguf_version(g) != 3 || vb_gguf_alignment(g) != 32) return 1;
    uint32_t u;
    int32_t i;
    float f;
    bool b;
    const char *s;
    uint64_t len;
    if (!vb_gguf_get_u32(g, "w.u32", &u) || u != 0xfffffff0u) return 2;
    if (!vb_gguf_get_i32(g, "w.i32", &i) || i != INT32_MIN) return 3;
    if (!vb_gguf_get_f32(g, "w.f32", &f) || f != -0.375f) return 4;
    if (!vb_gguf_get_bool(g, "w.bool", &b) || b) return 5;
    if (!vb_gguf_get_str(g, "w.str", &s, &len) || len != 6 || memcmp(s, "h\xc3\xa9llo", 6)) return 6;
    if (!vb_gguf_get_str(g, "w.empty", &s, &len) || len != 0) return 7;
    /* numeric arrays of every element type: element k holds bytes (k * 37 + type) */
    for (int et = 0; et <= VB_GGUF_FLOAT64; et++) {
        if (et == VB_GGUF_STRING || et == VB_GGUF_ARRAY) continue;
        char key[32];
        snprintf(key, sizeof key, "w.arr%d", et);
        int got_et;
        uint64_t n;
        const void *data;
        if (!vb_gguf_get_arr(g, key, &got_et, &n, &data) || got_et != et || n != 5) return 8;
        const uint8_t *p = data;
        size_t esize = et <= 1 || et == 7 ? 1 : et <= 3 ? 2 : et <= 6 ? 4 : 8;
        for (size_t k = 0; k < 5 * esize; k++)
            if (p[k] != (uint8_t)(k * 37 + (size_t)et)) return 9;
    }
    int et;
    uint64_t n;
    const void *data;
    if (!vb_gguf_get_arr(g, "w.arr_empty", &et, &n, &data) || et != VB_GGUF_FLOAT32 || n != 0) return 10;
    if (!vb_gguf_get_arr(g, "w.strs", &et, &n, &data) || et != VB_GGUF_STRING || n != 4) return 11;
    static const char *const want[4] = {"alpha", "", "a\0b", "\xe2\x96\x81the"};
    static const uint64_t want_len[4] = {5, 0, 3, 6};
    for (uint64_t k = 0; k < 4; k++)
        if (!vb_gguf_get_arr_str(g, "w.strs", k, &s, &len) || len != want_len[k] ||
            memcmp(s, want[k], len) != 0)
            return 12;
    if (vb_gguf_n_tensors(g) != 4) return 13;
    const vb_gguf_tensor *t = vb_gguf_find_tensor(g, "f32.weight");
    if (!t || t->type != VB_TYPE_F32 || t->n_dims != 2 || t->ne[0] != 3 || t->ne[1] != 5 ||
        t->n_elems != 15 || t->nbytes != 60 || memcmp(t->data, f32data, 60))
        return 14;
    t = vb_gguf_find_tensor(g, "f16.weight");
    if (!t || t->type != VB_TYPE_F16 || t->n_dims != 3 || t->ne[2] != 2 || t->ne[3] != 1 ||
        t->nbytes != 2 * 7 * 2 || memcmp(t->data, f16data, t->nbytes))
        return 15;
    t = vb_gguf_find_tensor(g, "q8.weight");
    if (!t || t->type != VB_TYPE_Q8_0 || t->ne[0] != 64 || t->ne[1] != 3 || t->nbytes != 2 * 34 * 3 ||
        memcmp(t->data, q8data, t->nbytes))
        return 16;
    t = vb_gguf_find_tensor(g, "q4k.weight");
    if (!t || t->type != VB_TYPE_Q4_K || t->n_dims != 4 || t->ne[3] != 2 || t->nbytes != 144 * 2 ||
        memcmp(t->data, q4kdata, t->nbytes))
        return 17;
    for (int64_t k = 0; k < vb_gguf_n_tensors(g); k++)
        if (vb_gguf_tensor_at(g, k)->offset % 32) return 18;
    return 0;
}

TEST(gguf_writer_roundtrip) {
    vb_gguf_writer *w = vb_gguf_writer_init();
    CHECK(w);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "w.u32", 0xfffffff0u), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_i32(w, "w.i32", INT32_MIN), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_f32(w, "w.f32", -0.375f), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_bool(w, "w.bool", false), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_str(w, "w.str", "h\xc3\xa9llo"), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_str(w, "w.empty", ""), VB_OK);
    uint8_t raw[5 * 8];
    for (int et = 0; et <= VB_GGUF_FLOAT64; et++) {
        if (et == VB_GGUF_STRING || et == VB_GGUF_ARRAY) continue;
        for (size_t k = 0; k < sizeof raw; k++) raw[k] = (uint8_t)(k * 37 + (size_t)et);
        char key[32];
        snprintf(key, sizeof key, "w.arr%d", et);
        CHECK_EQ_INT(vb_gguf_writer_set_arr(w, key, et, raw, 5), VB_OK);
    }
    CHECK_EQ_INT(vb_gguf_writer_set_arr(w, "w.arr_empty", VB_GGUF_FLOAT32, NULL, 0), VB_OK);
    const char *strs[4] = {"alpha", "", "a\0b", "\xe2\x96\x81the"};
    uint64_t lens[4] = {5, 0, 3, 6};
    CHECK_EQ_INT(vb_gguf_writer_set_arr_str(w, "w.strs", strs, lens, 4), VB_OK);

    float f32data[15];
    for (int k = 0; k < 15; k++) f32data[k] = (float)k * 0.25f - 1.0f;
    uint16_t f16data[14];
    for (int k = 0; k < 14; k++) f16data[k] = vb_f32_to_f16((float)k / 3.0f);
    uint8_t q8data[2 * 34 * 3], q4kdata[144 * 2];
    for (size_t k = 0; k < sizeof q8data; k++) q8data[k] = (uint8_t)(k * 13);
    for (size_t k = 0; k < sizeof q4kdata; k++) q4kdata[k] = (uint8_t)(k * 29 + 5);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "f32.weight", VB_TYPE_F32, 2, (int64_t[]){3, 5}, f32data), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "f16.weight", VB_TYPE_F16, 3, (int64_t[]){7, 1, 2}, f16data), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "q8.weight", VB_TYPE_Q8_0, 2, (int64_t[]){64, 3}, q8data), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "q4k.weight", VB_TYPE_Q4_K, 4, (int64_t[]){256, 1, 1, 2}, q4kdata), VB_OK);

    char path[256], err[256] = "";
    tmp_path("roundtrip", path, sizeof path);
    int rc = vb_gguf_writer_write(w, path, err, sizeof err);
    vb_gguf_writer_free(w);
    CHECKF(rc == VB_OK, "%s", err);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size % 32 == 0);

    for (int mode = 0; mode < 3; mode++) {
        vb_gguf *g = NULL;
        uint8_t *img = NULL;
        if (mode < 2) {
            rc = vb_gguf_open(path, mode == 0, &g, err, sizeof err);
        } else {
            FILE *f = fopen(path, "rb");
            CHECK(f);
            img = malloc((size_t)st.st_size);
            CHECK(fread(img, 1, (size_t)st.st_size, f) == (size_t)st.st_size);
            fclose(f);
            rc = vb_gguf_open_memory(img, (size_t)st.st_size, &g, err, sizeof err);
            if (rc == VB_OK) CHECK_EQ_INT(walk_consistent(g, img, (size_t)st.st_size), 0);
        }
        CHECKF(rc == VB_OK, "mode %d: %s", mode, err);
        int bad = check_file_roundtrip(g, f32data, f16data, q8data, q4kdata);
        vb_gguf_close(g);
        free(img);
        CHECKF(bad == 0, "mode %d: check %d failed", mode, bad);
    }
    unlink(path);
}

/* copy_keys keeps every type, including those the writer has no setter for (u8, u64, f64, ...)
 * and arrays of arrays, and honours skip[]. */
TEST(gguf_writer_copy_keys) {
    base_layout L;
    gbuf b = make_base(&L);
    vb_gguf *src = NULL;
    CHECK_EQ_INT(vb_gguf_open_memory(b.p, b.len, &src, NULL, 0), VB_OK);
    vb_gguf_writer *w = vb_gguf_writer_init();
    const char *skip[2] = {"k.i16", "general.alignment"};
    CHECK_EQ_INT(vb_gguf_writer_copy_keys(w, src, skip, 2), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "k.u8", 1), VB_ERR_ARG); /* copied already */
    CHECK_EQ_INT(vb_gguf_writer_set_i32(w, "k.i16", 5), VB_OK);      /* was skipped */
    CHECK_EQ_INT(vb_gguf_writer_copy_keys(w, src, NULL, 0), VB_ERR_ARG); /* duplicates */
    const vb_gguf_tensor *t = vb_gguf_find_tensor(src, "t.a");
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), VB_OK);
    char path[256], err[256] = "";
    tmp_path("copy", path, sizeof path);
    int rc = vb_gguf_writer_write(w, path, err, sizeof err);
    vb_gguf_writer_free(w);
    CHECKF(rc == VB_OK, "%s", err);
    vb_gguf *g = NULL;
    rc = vb_gguf_open(path, true, &g, err, sizeof err);
    unlink(path);
    CHECKF(rc == VB_OK, "%s", err);
    CHECK_EQ_INT(vb_gguf_n_keys(g), 15); /* 16 - 2 skipped + k.i16 set again */
    CHECK(vb_gguf_find_key(g, "general.alignment") < 0);
    for (int64_t i = 0; i < vb_gguf_n_keys(src); i++) {
        const char *name = vb_gguf_key_name(src, i);
        if (strcmp(name, "k.i16") == 0 || strcmp(name, "general.alignment") == 0) continue;
        int64_t j = vb_gguf_find_key(g, name);
        CHECKF(j >= 0, "%s missing", name);
        CHECKF(vb_gguf_key_type(g, j) == vb_gguf_key_type(src, i), "%s type", name);
        char a[128], c[128];
        vb_gguf_value_to_text(src, i, a, sizeof a);
        vb_gguf_value_to_text(g, j, c, sizeof c);
        CHECKF(strcmp(a, c) == 0, "%s: %s vs %s", name, a, c);
    }
    int32_t v;
    CHECK(vb_gguf_get_i32(g, "k.i16", &v) && v == 5);
    const char *s;
    uint64_t len;
    CHECK(vb_gguf_get_arr_str(g, "a.strs", 1, &s, &len) && len == 2 && memcmp(s, "yy", 2) == 0);
    int et;
    uint64_t n;
    const void *d1, *d2;
    CHECK(vb_gguf_get_arr(g, "n.nested", &et, &n, &d1) && et == VB_GGUF_ARRAY && n == 2);
    CHECK(vb_gguf_get_arr(src, "n.nested", &et, &n, &d2));
    CHECK(memcmp(d1, d2, 12 + 4 + 12 + 2) == 0);
    const vb_gguf_tensor *t2 = vb_gguf_find_tensor(g, "t.a");
    CHECK(t2 && t2->nbytes == 32 && memcmp(t2->data, t->data, 32) == 0);
    vb_gguf_close(g);
    vb_gguf_close(src);
    free(b.p);
}

TEST(gguf_writer_errors) {
    vb_gguf_writer *w = vb_gguf_writer_init();
    uint8_t data[4096] = {0};
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "k", 1), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_str(w, "k", "dup"), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "", 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(NULL, "x", 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_str(w, "x", NULL), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_arr(w, "x", VB_GGUF_STRING, data, 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_arr(w, "x", VB_GGUF_ARRAY, data, 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_arr(w, "x", 13, data, 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_arr(w, "x", VB_GGUF_UINT8, NULL, 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_arr_str(w, "x", NULL, NULL, 1), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "general.alignment", 48), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "general.alignment", 0), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_i32(w, "general.alignment", -64), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_set_f32(w, "general.alignment", 64), VB_ERR_ARG);
    int64_t ne[4] = {32, 2, 1, 1};
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "t", VB_TYPE_Q8_0, 2, ne, data), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "t", VB_TYPE_F32, 1, ne, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", VB_TYPE_F32, 0, ne, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", VB_TYPE_F32, 5, ne, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", 4, 1, ne, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", VB_TYPE_Q8_0, 1, (int64_t[]){33}, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", VB_TYPE_F32, 2, (int64_t[]){4, 0}, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", VB_TYPE_F32, 2, (int64_t[]){INT64_MAX / 2, 4}, data), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "u", VB_TYPE_F32, 1, ne, NULL), VB_ERR_ARG);
    char err[256] = "";
    CHECK_EQ_INT(vb_gguf_writer_write(w, "/nonexistent-dir/x.gguf", err, sizeof err), VB_ERR_IO);
    CHECKF(strstr(err, "/nonexistent-dir/x.gguf") != NULL, "%s", err);
    CHECK_EQ_INT(vb_gguf_writer_write(w, "/nonexistent-dir/x.gguf", NULL, 0), VB_ERR_IO);

    /* a caller-set alignment is honoured by both writer and reader */
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "general.alignment", 64), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "v", VB_TYPE_F32, 1, (int64_t[]){3}, data), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "z", VB_TYPE_F32, 1, (int64_t[]){1}, data), VB_OK);
    char path[256];
    tmp_path("align64", path, sizeof path);
    CHECK_EQ_INT(vb_gguf_writer_write(w, path, err, sizeof err), VB_OK);
    vb_gguf_writer_free(w);
    vb_gguf *g = NULL;
    int rc = vb_gguf_open(path, false, &g, err, sizeof err);
    unlink(path);
    CHECKF(rc == VB_OK, "%s", err);
    CHECK_EQ_INT(vb_gguf_alignment(g), 64);
    CHECK_EQ_INT(vb_gguf_find_tensor(g, "v")->offset, 128);
    CHECK_EQ_INT(vb_gguf_find_tensor(g, "z")->offset, 192);
    CHECK(((uintptr_t)vb_gguf_find_tensor(g, "z")->data & 63) == 0); /* read buffer is page aligned */
    vb_gguf_close(g);
}

TEST(gguf_open_errors) {
    vb_gguf *g = (vb_gguf *)1;
    char err[256] = "";
    CHECK_EQ_INT(vb_gguf_open("/nonexistent/model.gguf", true, &g, err, sizeof err), VB_ERR_IO);
    CHECK(g == NULL);
    CHECKF(strstr(err, "/nonexistent/model.gguf") != NULL, "%s", err);
    CHECK_EQ_INT(vb_gguf_open("/tmp", false, &g, NULL, 0), VB_ERR_IO);
    CHECK_EQ_INT(vb_gguf_open(NULL, false, &g, NULL, 0), VB_ERR_ARG);
    CHECK_EQ_INT(vb_gguf_open_memory(NULL, 0, &g, err, sizeof err), VB_ERR_FORMAT);
    char path[256];
    tmp_path("empty", path, sizeof path);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fclose(f);
    CHECK_EQ_INT(vb_gguf_open(path, true, &g, err, sizeof err), VB_ERR_FORMAT);
    CHECK_EQ_INT(vb_gguf_open(path, false, &g, err, sizeof err), VB_ERR_FORMAT);
    unlink(path);
    CHECKF(strstr(err, "magic") != NULL, "%s", err);
}

/* ---- hostile files ------------------------------------------------------------------------- */

TEST(gguf_hostile_truncation) {
    base_layout L;
    gbuf b = make_base(&L);
    char err[256];
    for (size_t n = 0; n < b.len; n++) {
        vb_gguf *g = NULL;
        err[0] = '\0';
        int rc = parse_copy(b.p, n, &g, n % 2 ? err : NULL, n % 2 ? sizeof err : 0);
        CHECKF(rc == VB_ERR_FORMAT && g == NULL, "truncated at %zu of %zu: rc %d", n, b.len, rc);
        CHECKF(n % 2 == 0 || (strncmp(err, "gguf: ", 6) == 0 && strlen(err) > 20), "at %zu: '%s'", n, err);
    }
    free(b.p);
}

/* One patched field and the message fragment its error must contain. */
static int expect_error(const uint8_t *img, size_t len, const char *fragment, char *got, size_t got_len) {
    vb_gguf *g = NULL;
    got[0] = '\0';
    int rc = parse_copy(img, len, &g, got, got_len);
    vb_gguf_close(g);
    if (rc != VB_ERR_FORMAT) return 1;
    if (!strstr(got, fragment)) return 2;
    vb_gguf *g2 = NULL; /* NULL err buffer: same result */
    rc = parse_copy(img, len, &g2, NULL, 0);
    vb_gguf_close(g2);
    if (rc != VB_ERR_FORMAT) return 3;
    return 0;
}

TEST(gguf_hostile_fields) {
    base_layout L;
    gbuf base = make_base(&L);
    struct {
        const char *name;
        size_t off;
        int width; /* 1, 4 or 8 bytes */
        uint64_t value;
        const char *fragment;
    } cases[] = {
        {"bad magic", 0, 1, 'X', "bad magic"},
        {"version 1", L.version, 4, 1, "version 1 is not supported"},
        {"version 99", L.version, 4, 99, "unsupported version 99"},
        {"big-endian", L.version, 4, 0x03000000, "big-endian"},
        {"huge key count", L.n_kv, 8, UINT64_MAX, "key count"},
        {"huge tensor count", L.n_tensors, 8, (uint64_t)1 << 40, "tensor count"},
        {"extra key", L.n_kv, 8, 17, "gguf: "},
        {"huge string", L.str_len, 8, (uint64_t)1 << 62, "string length 4611686018427387904"},
        {"huge string 2", L.str_len, 8, UINT64_MAX, "exceeds"},
        {"huge key name", 24, 8, UINT64_MAX - 3, "exceeds"},
        {"empty key name", 24, 8, 0, "empty"},
        {"huge array count", L.arr_count, 8, (uint64_t)1 << 61, "a.i32': array of 2305843009213693952"},
        {"array count wrap", L.arr_count, 8, (uint64_t)1 << 62, "exceeds"},
        {"huge string in array", L.strs_elem1, 8, (uint64_t)1 << 40, "a.strs"},
        {"unknown value type", L.key_type_u8, 4, 13, "unknown value type 13"},
        {"duplicate key", L.key_name_i8 + 2, 1, 'u', "duplicate key 'k.u8'"},
        {"duplicate tensor", L.tensor_name_b + 2, 1, 'a', "duplicate tensor name 't.a'"},
        {"alignment 0", L.align_value, 4, 0, "not a power of two of at least 8"},
        {"alignment 1", L.align_value, 4, 1, "general.alignment = 1 is not a power of two of at least 8"},
        {"alignment 4", L.align_value, 4, 4, "general.alignment = 4 is not"},
        {"alignment 48", L.align_value, 4, 48, "general.alignment = 48"},
        {"alignment as float", L.align_type, 4, VB_GGUF_FLOAT32, "general.alignment' has type float32"},
        {"n_dims 0", L.ndims_a, 4, 0, "tensor 't.a': n_dims = 0"},
        {"n_dims 5", L.ndims_a, 4, 5, "n_dims = 5"},
        {"ne 0", L.ne1_a, 8, 0, "ne[1] = 0"},
        {"ne negative", L.ne0_a, 8, (uint64_t)1 << 63, "out of range"},
        {"unknown type 4", L.type_a, 4, 4, "unknown tensor type 4"},
        {"unknown type 999", L.type_a, 4, 999, "unknown tensor type 999"},
        {"block multiple", L.type_a, 4, VB_TYPE_Q8_0, "not a multiple of the q8_0 block size 32"},
        {"misaligned offset", L.offset_b, 8, 33, "not a multiple of the alignment 32"},
        {"offset past end", L.offset_c, 8, 128, "t.c': data [offset"},
        {"offset far past end", L.offset_c, 8, (uint64_t)1 << 40, "extends past end of file"},
        {"offset wraps", L.offset_c, 8, UINT64_MAX - 31, "extends past end of file"},
        {"overlap a-b", L.offset_b, 8, 0, "overlap"},
        {"overlap b-c", L.offset_c, 8, 64, "overlap"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *img = malloc(base.len);
        memcpy(img, base.p, base.len);
        if (cases[i].width == 1) img[cases[i].off] = (uint8_t)cases[i].value;
        else if (cases[i].width == 4) put32_at(img, cases[i].off, (uint32_t)cases[i].value);
        else put64_at(img, cases[i].off, cases[i].value);
        int bad = expect_error(img, base.len, cases[i].fragment, err, sizeof err);
        free(img);
        CHECKF(bad == 0, "%s: failure %d, message '%s'", cases[i].name, bad, err);
    }
    /* dimension product overflow: t.a ne = [2^32, 2^32] */
    uint8_t *img = malloc(base.len);
    memcpy(img, base.p, base.len);
    put64_at(img, L.ne0_a, (uint64_t)1 << 32);
    put64_at(img, L.ne1_a, (uint64_t)1 << 32);
    int bad = expect_error(img, base.len, "element count overflows", err, sizeof err);
    CHECKF(bad == 0, "product overflow: %d '%s'", bad, err);
    /* byte size overflow: f32 [2^61] */
    put64_at(img, L.ne0_a, (uint64_t)1 << 61);
    put64_at(img, L.ne1_a, 1);
    bad = expect_error(img, base.len, "byte size overflows", err, sizeof err);
    CHECKF(bad == 0, "byte overflow: %d '%s'", bad, err);
    free(img);
    free(base.p);
}

/* Arrays of arrays nest at most 8 deep. */
static gbuf make_nested(int depth) {
    gbuf b = {0};
    gb_raw(&b, "GGUF", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 0);
    gb_u64(&b, 1);
    gb_key(&b, "deep", VB_GGUF_ARRAY);
    for (int i = 1; i < depth; i++) {
        gb_u32(&b, VB_GGUF_ARRAY);
        gb_u64(&b, 1);
    }
    gb_u32(&b, VB_GGUF_STRING);
    gb_u64(&b, 1);
    gb_str(&b, "leaf");
    return b;
}

TEST(gguf_hostile_nesting) {
    char err[256];
    for (int depth = 1; depth <= 12; depth++) {
        gbuf b = make_nested(depth);
        vb_gguf *g = NULL;
        int rc = parse_copy(b.p, b.len, &g, err, sizeof err);
        if (depth <= 8) {
            CHECKF(rc == VB_OK, "depth %d: %s", depth, err);
            CHECK_EQ_INT(walk_consistent(g, b.p, b.len), 0);
            CHECK_EQ_INT(vb_gguf_key_type(g, 0), VB_GGUF_ARRAY);
        } else {
            CHECKF(rc == VB_ERR_FORMAT && strstr(err, "nested deeper"), "depth %d: %d %s", depth, rc, err);
        }
        vb_gguf_close(g);
        free(b.p);
    }
}

static uint64_t xorshift64(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

TEST(gguf_hostile_random_flips) {
    base_layout L;
    gbuf base = make_base(&L);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int n_ok = 0, n_err = 0;
    char err[256];
    uint8_t *img = malloc(base.len);
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(img, base.p, base.len);
        int flips = 1 + (int)(xorshift64(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            uint64_t r = xorshift64(&seed);
            size_t pos = (size_t)(r % L.data_start); /* the header, where the structure lives */
            if (iter % 2) img[pos] = (uint8_t)(r >> 32);
            else img[pos] ^= (uint8_t)(1u << ((r >> 32) % 8));
        }
        vb_gguf *g = NULL;
        int rc = vb_gguf_open_memory(img, base.len, &g, err, sizeof err);
        if (rc == VB_OK) {
            n_ok++;
            int bad = walk_consistent(g, img, base.len);
            vb_gguf_close(g);
            CHECKF(bad == 0, "iteration %d: inconsistent parse (%d)", iter, bad);
        } else {
            n_err++;
            CHECKF(rc == VB_ERR_FORMAT && g == NULL && strncmp(err, "gguf: ", 6) == 0,
                   "iteration %d: rc %d '%s'", iter, rc, err);
        }
    }
    free(img);
    free(base.p);
    CHECKF(n_ok > 100 && n_err > 100, "ok %d, errors %d", n_ok, n_err); /* both paths exercised */
}

/* ---- the shipped model ----------------------------------------------------------------------- */

/* Facts checked against scripts/wedlm/gguf_load.py read_gguf() (an independent numpy reader). */
TEST(gguf_wedlm_model) {
    const char *path = "models/wedlm-py-6m-f16.gguf";
    for (int use_mmap = 0; use_mmap < 2; use_mmap++) {
        vb_gguf *g = NULL;
        char err[256] = "";
        int rc = vb_gguf_open(path, use_mmap, &g, err, sizeof err);
        CHECKF(rc == VB_OK, "%s", err);
        CHECK_EQ_INT(vb_gguf_version(g), 3);
        CHECK_EQ_INT(vb_gguf_alignment(g), 32);
        CHECK_EQ_INT(vb_gguf_n_keys(g), 25);
        CHECK_EQ_INT(vb_gguf_n_tensors(g), 68);
        const char *s;
        uint64_t len;
        CHECK(vb_gguf_get_str(g, "general.architecture", &s, &len) && len == 5 && !memcmp(s, "qwen3", 5));
        uint32_t u;
        CHECK(vb_gguf_get_u32(g, "qwen3.block_count", &u) && u == 6);
        CHECK(vb_gguf_get_u32(g, "tokenizer.ggml.mask_token_id", &u) && u == 4095);
        CHECK(vb_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u) && u == 4094);
        CHECK(vb_gguf_get_u32(g, "qwen3.embedding_length", &u) && u == 256);
        float f;
        uint32_t bits;
        CHECK(vb_gguf_get_f32(g, "qwen3.attention.layer_norm_rms_epsilon", &f));
        memcpy(&bits, &f, 4);
        CHECK_EQ_INT(bits, 0x358637bd);
        bool b;
        CHECK(vb_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) && b);
        int et;
        uint64_t n;
        const void *data;
        CHECK(vb_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data) && et == VB_GGUF_STRING && n == 4096);
        CHECK(vb_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 0, &s, &len) && len == 2 && !memcmp(s, "\xc4\x80", 2));
        CHECK(vb_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 4095, &s, &len) && len == 8 && !memcmp(s, "<|mask|>", 8));
        CHECK(vb_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n, &data) && n == 3838);
        CHECK(vb_gguf_get_arr_str(g, "tokenizer.ggml.merges", 0, &s, &len) && len == 5 && !memcmp(s, "\xc4\xa0 \xc4\xa0", 5));
        CHECK(vb_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n, &data) && et == VB_GGUF_INT32 && n == 4096);
        int32_t tt;
        memcpy(&tt, (const uint8_t *)data + 4 * 4095, 4);
        CHECK_EQ_INT(tt, 3);
        const vb_gguf_tensor *t = vb_gguf_find_tensor(g, "token_embd.weight");
        CHECK(t && t->type == VB_TYPE_F16 && t->n_dims == 2 && t->ne[0] == 256 && t->ne[1] == 4096);
        CHECK_EQ_INT(t->nbytes, 256 * 4096 * 2);
        CHECK_EQ_INT(t->offset, 0);
        static const float first[4] = {-0.1712646484375f, 0.1781005859375f, -0.06170654296875f, 0.20166015625f};
        for (int i = 0; i < 4; i++) {
            uint16_t h;
            memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
            CHECKF(vb_f16_to_f32(h) == first[i], "token_embd[0][%d] = %g", i, vb_f16_to_f32(h));
        }
        t = vb_gguf_find_tensor(g, "output_norm.weight");
        CHECK(t && t->type == VB_TYPE_F32 && t->n_dims == 1 && t->ne[0] == 256 && t->offset == 2097152);
        memcpy(&f, t->data, 4);
        CHECK(f == 2.0625f);
        CHECK(vb_gguf_find_tensor(g, "blk.5.ffn_down.weight") != NULL);
        char text[64];
        CHECK(vb_gguf_value_to_text(g, vb_gguf_find_key(g, "general.name"), text, sizeof text) == 13);
        CHECK(strcmp(text, "wedlm-tiny-A2") == 0);
        vb_gguf_close(g);
    }
}

/* Writes the fuzz seed corpus when VB_GGUF_WRITE_SEEDS names a directory (tests/data/gguf). */
TEST(gguf_write_fuzz_seeds) {
    const char *dir = getenv("VB_GGUF_WRITE_SEEDS");
    if (!dir || !*dir) return;
    char path[512];
    base_layout L;
    gbuf b = make_base(&L);
    snprintf(path, sizeof path, "%s/all_types_v3.gguf", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f);
    fwrite(b.p, 1, b.len, f);
    fclose(f);
    put32_at(b.p, L.version, 2);
    snprintf(path, sizeof path, "%s/all_types_v2.gguf", dir);
    f = fopen(path, "wb");
    CHECK(f);
    fwrite(b.p, 1, b.len, f);
    fclose(f);
    free(b.p);
    b = make_nested(4);
    snprintf(path, sizeof path, "%s/nested_arrays.gguf", dir);
    f = fopen(path, "wb");
    CHECK(f);
    fwrite(b.p, 1, b.len, f);
    fclose(f);
    free(b.p);
    vb_gguf_writer *w = vb_gguf_writer_init();
    const char *strs[3] = {"a", "bb", "<|mask|>"};
    uint16_t h[64] = {0};
    uint8_t q[2 * 34] = {0};
    CHECK_EQ_INT(vb_gguf_writer_set_str(w, "general.architecture", "qwen3"), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_u32(w, "qwen3.block_count", 1), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_f32(w, "qwen3.rope.freq_base", 10000.0f), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, 3), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", VB_GGUF_INT32, (int32_t[]){1, 1, 3}, 3), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "token_embd.weight", VB_TYPE_F16, 2, (int64_t[]){16, 4}, h), VB_OK);
    CHECK_EQ_INT(vb_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", VB_TYPE_Q8_0, 2, (int64_t[]){32, 2}, q), VB_OK);
    snprintf(path, sizeof path, "%s/writer_small.gguf", dir);
    char err[256];
    int rc = vb_gguf_writer_write(w, path, err, sizeof err);
    vb_gguf_writer_free(w);
    CHECKF(rc == VB_OK, "%s", err);
}

/* vb_gguf_release_pages: a file mapping gives its whole pages back and reads the same bytes
 * afterwards (from the file); a malloc'd copy and caller memory are left alone. */
TEST(gguf_release_pages_keeps_bytes) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/models/gpt2-f32.gguf", vbt_fixture_dir());
    for (int mode = 0; mode < 3; mode++) { /* mmap, read copy, caller memory */
        vb_gguf *g = NULL, *file = NULL;
        int rc = vb_gguf_open(path, mode == 0, &file, err, sizeof err);
        CHECKF(rc == VB_OK, "%s", err);
        if (rc != VB_OK) return;
        g = file;
        void *image = NULL;
        if (mode == 2) { /* caller memory: a private copy of the file */
            FILE *f = fopen(path, "rb");
            CHECK(f);
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            rewind(f);
            image = malloc((size_t)n);
            CHECK(image && fread(image, 1, (size_t)n, f) == (size_t)n);
            fclose(f);
            CHECK_EQ_INT(vb_gguf_open_memory(image, (size_t)n, &g, err, sizeof err), VB_OK);
        }
        size_t released = 0;
        for (int64_t i = 0; i < vb_gguf_n_tensors(g); i++) {
            const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
            void *copy = malloc(t->nbytes);
            CHECK(copy);
            memcpy(copy, t->data, t->nbytes);
            released += vb_gguf_release_pages(g, t->data, t->nbytes);
            CHECKF(memcmp(copy, t->data, t->nbytes) == 0, "mode %d: tensor %s changed", mode, t->name);
            free(copy);
        }
        CHECK_EQ_INT(vb_gguf_release_pages(g, (const char *)path, 4096), 0); /* not its memory */
        if (mode == 0) CHECKF(released > 0, "a mapped file released no page");
        else CHECKF(released == 0, "mode %d released %zu bytes of memory it does not map", mode, released);
        if (g != file) vb_gguf_close(g);
        vb_gguf_close(file);
        free(image);
    }
}
