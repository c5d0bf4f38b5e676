/* cmd_quantize.c - `vibee quantize IN OUT TYPE`: rewrite a GGUF model with its 2-D weight
 * matrices converted to TYPE (q8_0, q4_0, f16, bf16, f32); 1-D tensors (norms, biases) and
 * matrices whose rows do not fit TYPE's block size stay as they are. Metadata is copied, with
 * general.file_type updated. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/cpu/kernels.h"
#include "cli.h"
#include "gguf/gguf.h"
#include "types.h"

int cmd_quantize(int argc, char **argv) {
    if (argc != 4 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: vibee quantize IN.gguf OUT.gguf TYPE   (TYPE: q8_0, q4_0, f16, bf16, f32)\n");
        return argc == 2 ? 0 : 2;
    }
    const char *in = argv[1], *out = argv[2], *tname = argv[3];
    int type = vb_type_from_name(tname);
    if (type != VB_TYPE_Q8_0 && type != VB_TYPE_Q4_0 && type != VB_TYPE_F16 && type != VB_TYPE_BF16 &&
        type != VB_TYPE_F32) {
        fprintf(stderr, "vibee quantize: target type '%s' not supported (q8_0, q4_0, f16, bf16, f32)\n", tname);
        return 2;
    }
    char err[1024];
    vb_gguf *g = NULL;
    if (vb_gguf_open(in, true, &g, err, sizeof err) != VB_OK) {
        fprintf(stderr, "vibee quantize: %s\n", err);
        return 1;
    }
    int rc = 1;
    int64_t nt = vb_gguf_n_tensors(g);
    void **bufs = calloc((size_t)(nt > 0 ? nt : 1), sizeof *bufs);
    vb_gguf_writer *w = vb_gguf_writer_init();
    const char *skip[] = {"general.file_type"};
    if (!bufs || !w || vb_gguf_writer_copy_keys(w, g, skip, 1) != VB_OK) {
        fprintf(stderr, "vibee quantize: out of memory copying metadata\n");
        goto done;
    }
    /* llama.cpp's LLAMA_FTYPE numbering */
    uint32_t ftype = type == VB_TYPE_F32 ? 0 : type == VB_TYPE_F16 ? 1 : type == VB_TYPE_Q4_0 ? 2
                   : type == VB_TYPE_Q8_0 ? 7 : 32;
    vb_gguf_writer_set_u32(w, "general.file_type", ftype);
    int64_t n_conv = 0;
    bool tty = isatty(2);
    for (int64_t i = 0; i < nt; i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        const vb_type_traits *tt = vb_type_get((uint32_t)type);
        bool convert = t->n_dims == 2 && t->type != (uint32_t)type && t->ne[0] % tt->block_elems == 0 &&
                       vb_type_get(t->type) && vb_type_get(t->type)->supported;
        const void *data = t->data;
        uint32_t out_type = t->type;
        if (convert) {
            int64_t rows = t->n_elems / t->ne[0], rb = vb_type_row_bytes((uint32_t)type, t->ne[0]);
            float *row = malloc((size_t)t->ne[0] * sizeof *row);
            bufs[i] = malloc((size_t)(rb * rows));
            if (!row || !bufs[i]) {
                free(row);
                fprintf(stderr, "vibee quantize: out of memory for tensor %s\n", t->name);
                goto done;
            }
            int64_t in_rb = vb_type_row_bytes(t->type, t->ne[0]);
            for (int64_t r = 0; r < rows; r++) {
                vb_dequantize_row(t->type, (const char *)t->data + r * in_rb, row, t->ne[0]);
                vb_quantize_row((uint32_t)type, row, (char *)bufs[i] + r * rb, t->ne[0]);
            }
            free(row);
            data = bufs[i];
            out_type = (uint32_t)type;
            n_conv++;
        }
        if (vb_gguf_writer_add_tensor(w, t->name, out_type, t->n_dims, t->ne, data) != VB_OK) {
            fprintf(stderr, "vibee quantize: cannot add tensor %s\n", t->name);
            goto done;
        }
        if (tty) fprintf(stderr, "\rquantize: %lld/%lld tensors", (long long)i + 1, (long long)nt);
    }
    if (tty) fprintf(stderr, "\n");
    if (vb_gguf_writer_write(w, out, err, sizeof err) != VB_OK) {
        fprintf(stderr, "vibee quantize: %s\n", err);
        goto done;
    }
    fprintf(stderr, "vibee quantize: wrote %s (%lld of %lld tensors converted to %s)\n", out,
            (long long)n_conv, (long long)nt, tname);
    rc = 0;
done:
    for (int64_t i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    vb_gguf_writer_free(w);
    vb_gguf_close(g);
    return rc;
}
