/* cmd_info.c - `vibee info`: describe a model (architecture, shapes, types, tokenizer, special
 * tokens, size), its tensors by type, its metadata (count, chat template or not) and which of
 * its tensor types the cpu kernels run. */
#include <string.h>

#include "arch.h"
#include "cli.h"
#include "gguf/gguf.h"
#include "types.h"

/* What the GGUF file itself says: tensors per type, keys, chat template. */
typedef struct info_file {
    int64_t n_tensors, n_keys;
    int64_t count[VB_TYPE_COUNT]; /* tensors per type id */
    bool chat_template;
    bool cpu_runs_all;            /* every 2-D tensor type has cpu kernels */
} info_file;

static bool info_file_read(const char *path, info_file *f) {
    memset(f, 0, sizeof *f);
    vb_gguf *g = NULL;
    char err[256];
    size_t size = 0;
    const void *data = path ? NULL : vb_embedded_model(&size);
    int st = path ? vb_gguf_open(path, true, &g, err, sizeof err)
                  : data ? vb_gguf_open_memory(data, size, &g, err, sizeof err) : VB_ERR_ARG;
    if (st != VB_OK) return false;
    f->n_tensors = vb_gguf_n_tensors(g);
    f->n_keys = vb_gguf_n_keys(g);
    f->chat_template = vb_gguf_find_key(g, "tokenizer.chat_template") >= 0;
    f->cpu_runs_all = true;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        if (t->type < VB_TYPE_COUNT) f->count[t->type]++;
        const vb_type_traits *tr = vb_type_get(t->type);
        if (t->n_dims >= 2 && (!tr || !tr->supported)) f->cpu_runs_all = false;
    }
    vb_gguf_close(g);
    return true;
}

int cmd_info(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: vibee info [MODEL | -m MODEL] [--json] [--vocab FILE.gguf]\n"
                   "  MODEL: a GGUF file, an ONNX model directory or 'sim'; default: the embedded model\n"
                   "  --json: one JSON object (shapes, types, special tokens, chat template origin)\n");
            return 0;
        } else if (argv[i][0] != '-' && !mo.model) {
            mo.model = argv[i]; /* the model path as a plain argument */
        } else {
            fprintf(stderr, "vibee info: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    char err[1024];
    vb_model *m = NULL;
    vb_model_params mp = vb_model_default_params();
    mp.vocab_path = mo.vocab;
    int st;
    if (mo.model) {
        st = vb_model_load(mo.model, &mp, &m, err, sizeof err);
    } else {
        size_t size;
        const void *data = vb_embedded_model(&size);
        st = data ? vb_model_load_from_memory(data, size, "wedlm-py-6m-f16 (embedded)", &mp, &m, err, sizeof err)
                  : VB_ERR_ARG;
        if (!data) snprintf(err, sizeof err, "no -m MODEL and no embedded model");
    }
    if (st != VB_OK) {
        fprintf(stderr, "vibee info: %s\n", err);
        return 1;
    }
    const vb_model_info *in = vb_model_get_info(m);
    info_file f;
    bool have_file = info_file_read(mo.model, &f); /* false for -m sim */
    vb_chat_template *tmpl = NULL;
    char terr[256];
    const char *tmpl_origin = vb_chat_template_for_model(m, NULL, &tmpl, terr, sizeof terr) == VB_OK
                                  ? vb_chat_template_origin(tmpl) : "unusable";
    if (json) {
#ifdef VB_HAVE_JANSSON
        json_t *o = json_pack("{s:o, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:s, s:i, s:i, s:i, "
                              "s:b, s:b, s:s}",
                              "name", cli_json_text(in->name, strlen(in->name)), "arch", in->arch, "n_vocab",
                              in->n_vocab, "n_ctx_train", in->n_ctx_train, "n_embd", in->n_embd, "n_layer",
                              in->n_layer, "n_head", in->n_head, "n_head_kv", in->n_head_kv, "head_dim",
                              in->head_dim, "n_ff", in->n_ff, "n_params", (json_int_t)in->n_params, "weight_bytes",
                              (json_int_t)in->weight_bytes, "weight_type", in->weight_type, "bos", in->bos, "eos",
                              in->eos, "mask", in->mask, "add_bos", in->add_bos, "has_tokenizer", in->has_tokenizer,
                              "chat_template", tmpl_origin);
        if (o && have_file) {
            json_t *types = json_object();
            for (int t = 0; t < VB_TYPE_COUNT; t++)
                if (f.count[t]) json_object_set_new(types, vb_type_get((uint32_t)t)->name, json_integer(f.count[t]));
            json_object_set_new(o, "n_tensors", json_integer(f.n_tensors));
            json_object_set_new(o, "tensor_types", types);
            json_object_set_new(o, "n_keys", json_integer(f.n_keys));
            json_object_set_new(o, "cpu_runs_all_types", json_boolean(f.cpu_runs_all));
            json_object_set_new(o, "arch_known", json_boolean(vb_arch_find(in->arch) != NULL));
        }
        cli_json_print(stdout, o);
        fputc('\n', stdout);
#else
        fprintf(stderr, "vibee info: --json needs jansson (apt-get install libjansson-dev)\n");
#endif
    } else {
        printf("model        %s\n", in->name);
        printf("architecture %s\n", in->arch);
        printf("parameters   %.2f M (%s weights, %.1f MiB read per decoded token)\n",
               (double)in->n_params / 1e6, in->weight_type, (double)in->weight_bytes / (1 << 20));
        printf("shape        n_vocab %d, n_embd %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, "
               "n_ff %d, n_ctx_train %d\n",
               in->n_vocab, in->n_embd, in->n_layer, in->n_head, in->n_head_kv, in->head_dim,
               in->n_ff, in->n_ctx_train);
        printf("tokenizer    %s; bos %d, eos %d, mask %d, add_bos %s\n",
               in->has_tokenizer ? "yes" : "none (use --prompt-tokens)", in->bos, in->eos, in->mask,
               in->add_bos ? "yes" : "no");
        if (have_file) {
            printf("tensors      %lld:", (long long)f.n_tensors);
            for (int t = 0, k = 0; t < VB_TYPE_COUNT; t++) {
                if (!f.count[t]) continue;
                const vb_type_traits *tr = vb_type_get((uint32_t)t);
                printf("%s %lld %s%s", k++ ? "," : "", (long long)f.count[t], tr->name,
                       tr->supported ? "" : " (no cpu kernels)");
            }
            printf("\nmetadata     %lld keys\n", (long long)f.n_keys);
            char known[256];
            if (!vb_arch_find(in->arch))
                printf("cpu backend  cannot run this file (architecture '%s' unknown; known: %s)\n",
                       in->arch, vb_arch_list(known, sizeof known));
            else
                printf("cpu backend  %s\n", f.cpu_runs_all ? "has kernels for every matrix type"
                                                             : "cannot run this file (types without cpu kernels above)");
        }
        printf("chat template %s\n", tmpl_origin);
    }
    vb_chat_template_free(tmpl);
    vb_model_free(m);
    return 0;
}
