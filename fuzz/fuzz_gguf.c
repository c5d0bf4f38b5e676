/* fuzz_gguf.c - libFuzzer entry point for the GGUF reader: parses the input with
 * vb_gguf_open_memory and, when it parses, walks every key (type, text form, string and array
 * getters, every string of string arrays, numeric array bytes) and every tensor (lookup by name,
 * first and last data byte), so that any out-of-bounds offset the parser let through is read and
 * caught by ASan. Built by `make fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf/gguf.h"
#include "vibee.h"

static size_t fixed_size(int vtype) {
    switch (vtype) {
    case VB_GGUF_UINT8: case VB_GGUF_INT8: case VB_GGUF_BOOL: return 1;
    case VB_GGUF_UINT16: case VB_GGUF_INT16: return 2;
    case VB_GGUF_UINT32: case VB_GGUF_INT32: case VB_GGUF_FLOAT32: return 4;
    case VB_GGUF_UINT64: case VB_GGUF_INT64: case VB_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static volatile uint8_t sink;

static void touch(const void *p, uint64_t n) {
    if (n == 0) return;
    const uint8_t *b = p;
    sink ^= b[0] ^ b[n - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
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
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) __builtin_trap();
        touch(p, t->nbytes);
    }
    vb_gguf_close(g);
    return 0;
}
