/* cmd_quantize.c - `vibee quantize [--allow-requantize] IN.gguf OUT.gguf PRESET`: rewrite a GGUF
 * model under one of llama.cpp's presets (q4_k_m, q5_k_s, q8_0, f16, ...; any case) with its
 * per-tensor rules and fallbacks (src/quantize.c); metadata copied, general.file_type set.
 * Progress on stderr when it is a terminal. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "quantize.h"

static void usage(void) {
    fprintf(stderr, "usage: vibee quantize [--allow-requantize] IN.gguf OUT.gguf PRESET\n  PRESET: %s\n",
            vb_quant_preset_names());
}

static void progress(int64_t done, int64_t total, void *user) {
    (void)user;
    fprintf(stderr, "\rquantize: %lld/%lld tensors", (long long)done, (long long)total);
    if (done == total) fprintf(stderr, "\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3];
    int n_pos = 0;
    bool allow_requantize = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        }
        if (!strcmp(argv[i], "--allow-requantize")) allow_requantize = true;
        else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "vibee quantize: unknown option '%s'\n", argv[i]);
            usage();
            return 2;
        } else if (n_pos < 3) pos[n_pos++] = argv[i];
        else {
            fprintf(stderr, "vibee quantize: too many arguments\n");
            usage();
            return 2;
        }
    }
    if (n_pos != 3) {
        fprintf(stderr, "vibee quantize: expected IN.gguf OUT.gguf PRESET\n");
        usage();
        return 2;
    }
    const vb_quant_preset *p = vb_quant_preset_find(pos[2]);
    if (!p) {
        fprintf(stderr, "vibee quantize: unknown preset '%s' (%s)\n", pos[2], vb_quant_preset_names());
        return 2;
    }
    char err[1024];
    int rc = vb_quantize_file(pos[0], pos[1], p, allow_requantize, isatty(2) ? progress : NULL, NULL, err,
                              sizeof err);
    if (rc != 0) {
        bool own = !strncmp(err, "quantize: ", 10); /* the library's own messages say so */
        fprintf(stderr, "vibee %s%s\n", own ? "" : "quantize: ", err);
        return 1;
    }
    fprintf(stderr, "vibee quantize: wrote %s (%s)\n", pos[1], p->name);
    return 0;
}
