/* cmd_run.c - `vibee run`: generate text from a model with a chosen backend and decoder,
 * streaming tokens to stdout as they are committed (or one JSON object with --json). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage(void) {
    fprintf(stderr,
            "usage: vibee run [-m MODEL] [-b BACKEND] [-p TEXT | -f FILE | --prompt-tokens 1,2,3]\n"
            "                 [-n N] [-t THREADS] [-c CTX] [--decoder ar|wedlm|verify] [--json]\n"
            "                 [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
            "                 [--repeat-last-n N] [--seed S] [--ignore-eos]\n"
            "                 [--window W] [--tau T] [--lambda L] [--mask-token ID] [--draft-max K]\n"
            "                 [--wedlm-official] [--wedlm-exact]\n"
            "                 [--kv-type f32|f16] [--block-size B] [--vocab FILE.gguf]\n"
            "                 [--cost-cache FILE|off]\n"
            "                 [--backend-options k=v,...] [--ep cpu|cuda|tensorrt]  (onnx backend)\n"
            "  MODEL: a GGUF file, or 'sim' (the deterministic simulated model); default: the\n"
            "         embedded wedlm-py-6m model. BACKEND: cpu (default), sim, llamacpp, onnx, cuda.\n"
            "  WeDLM defaults: --window 16 --tau 0.4 --lambda 0.02; verify: --draft-max 0. --window 0 / --draft-max 0 choose\n"
            "  from the measured cost of K-token forwards. --wedlm-official: the paper's selection rule\n"
            "  only (no d0-AR fill of the leftmost mask, no leftmost fallback when no mask is under tau).\n"
            "  --wedlm-exact: every filled slot is checked against the AR row before it when it is\n"
            "  committed (lossless: greedy output equals AR greedy for any --tau).\n"
            "  The measured cost of K-row forwards (adaptive modes) is kept in --cost-cache FILE\n"
            "  (default $VIBEE_COST_CACHE or ~/.cache/vibee/cost-tables.tsv; off: none).\n");
}

typedef struct run_out {
    const vb_model *model;
    vb_token eos; /* not printed: it ends generation */
    bool stream;
    vb_detok detok;
    char *text;      /* generated text, grown */
    size_t len, cap;
} run_out;

static void text_append(run_out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->cap ? o->cap * 2 : 256) + n;
        char *t = realloc(o->text, cap);
        if (!t) return;
        o->text = t;
        o->cap = cap;
    }
    memcpy(o->text + o->len, s, n);
    o->len += n;
    o->text[o->len] = 0;
}

static bool on_token(vb_token tok, void *user) {
    run_out *o = user;
    if (tok == o->eos) return true;
    char buf[512];
    int n = vb_detok_push(o->model, &o->detok, tok, buf, sizeof buf);
    if (n > 0) {
        text_append(o, buf, (size_t)n);
        if (o->stream) {
            fwrite(buf, 1, (size_t)n, stdout);
            fflush(stdout);
        }
    }
    return true;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) { free(buf); buf = NULL; }
            else buf = t;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    return buf;
}

int cmd_run(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    vb_generate_params gp = vb_generate_default_params();
    const char *prompt = NULL, *prompt_file = NULL, *prompt_tokens = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r == 0) r = cli_parse_sampler_opt(&gp.sampler, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        long x;
        float f;
#define NEED_INT(lo, hi) \
    if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, lo, hi, &x)) { \
        fprintf(stderr, "vibee run: %s expects an integer in [%ld, %ld]\n", a, (long)(lo), (long)(hi)); \
        return 2; \
    }
#define NEED_FLOAT() \
    if (!(v = cli_value(argc, argv, &i)) || !cli_parse_float(v, &f)) { \
        fprintf(stderr, "vibee run: %s expects a number\n", a); \
        return 2; \
    }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!(prompt = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(prompt_file = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--prompt-tokens")) { if (!(prompt_tokens = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--ignore-eos")) gp.stop_at_eos = false;
        else if (!strcmp(a, "--wedlm-official")) gp.wedlm_d0_ar = gp.wedlm_leftmost_fallback = false;
        else if (!strcmp(a, "--wedlm-exact")) gp.wedlm_exact = true;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { NEED_INT(0, 1 << 24); gp.n_predict = (int)x; }
        else if (!strcmp(a, "--window")) { NEED_INT(0, 256); gp.window = (int)x; }
        else if (!strcmp(a, "--draft-max")) { NEED_INT(0, 256); gp.draft_max = (int)x; }
        else if (!strcmp(a, "--mask-token")) { NEED_INT(0, 1 << 24); gp.mask_token = (int)x; }
        else if (!strcmp(a, "--tau")) { NEED_FLOAT(); gp.tau = f; }
        else if (!strcmp(a, "--lambda")) { NEED_FLOAT(); gp.lambda = f; }
        else if (!strcmp(a, "--decoder")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            if (!strcmp(v, "ar")) gp.decoder = VB_DECODER_AR;
            else if (!strcmp(v, "wedlm")) gp.decoder = VB_DECODER_WEDLM;
            else if (!strcmp(v, "verify")) gp.decoder = VB_DECODER_VERIFY;
            else { fprintf(stderr, "vibee run: --decoder expects ar, wedlm or verify\n"); return 2; }
        } else {
            fprintf(stderr, "vibee run: unknown option '%s' (see vibee run --help)\n", a);
            return 2;
        }
#undef NEED_INT
#undef NEED_FLOAT
    }
    vb_sampler *probe = vb_sampler_init(&gp.sampler);
    if (!probe) {
        fprintf(stderr, "vibee run: invalid sampling options (temp >= 0, 0 < top-p <= 1, 0 <= min-p < 1, repeat-penalty > 0)\n");
        return 2;
    }
    vb_sampler_free(probe);
    char *file_text = NULL;
    if (prompt_file && !(file_text = read_file(prompt_file))) {
        fprintf(stderr, "vibee run: cannot read prompt file %s\n", prompt_file);
        return 1;
    }
    if (file_text) prompt = file_text;
    vb_model *model = NULL;
    vb_context *ctx = NULL;
    if (cli_open(&mo, &model, &ctx)) {
        free(file_text);
        return 1;
    }
    const vb_model_info *info = vb_model_get_info(model);
    int rc = 1;
    vb_token *ptoks = NULL, *out = NULL;
    int n_prompt = 0;
    if (prompt_tokens) {
        int *ids = NULL;
        n_prompt = cli_parse_int_list(prompt_tokens, &ids);
        if (n_prompt < 0) {
            fprintf(stderr, "vibee run: --prompt-tokens expects comma-separated integers\n");
            goto done;
        }
        ptoks = (vb_token *)ids;
        for (int i = 0; i < n_prompt; i++)
            if (ptoks[i] < 0 || ptoks[i] >= info->n_vocab) {
                fprintf(stderr, "vibee run: prompt token %d out of range [0, %d)\n", ptoks[i], info->n_vocab);
                goto done;
            }
    } else {
        const char *text = prompt ? prompt : "";
        size_t len = strlen(text);
        n_prompt = vb_tokenize(model, text, len, true, true, NULL, 0);
        if (n_prompt < 0) {
            fprintf(stderr, "vibee run: cannot tokenize the prompt: %s (model has %s tokenizer; use --prompt-tokens or --vocab)\n",
                    vb_status_str(n_prompt), info->has_tokenizer ? "a" : "no");
            goto done;
        }
        ptoks = malloc(((size_t)n_prompt + 1) * sizeof *ptoks);
        if (!ptoks) goto done;
        n_prompt = vb_tokenize(model, text, len, true, true, ptoks, n_prompt);
    }
    if (n_prompt == 0) { /* start from BOS (or EOS, the usual document separator) */
        vb_token start = info->bos >= 0 ? info->bos : info->eos;
        if (start < 0) {
            fprintf(stderr, "vibee run: empty prompt and the model has no BOS/EOS token to start from\n");
            goto done;
        }
        free(ptoks);
        ptoks = malloc(sizeof *ptoks);
        if (!ptoks) goto done;
        ptoks[0] = start;
        n_prompt = 1;
    }
    run_out ro = {0};
    ro.model = model;
    ro.eos = info->eos;
    ro.stream = !json;
    gp.on_token = on_token;
    gp.user = &ro;
    out = malloc(((size_t)gp.n_predict + 1) * sizeof *out);
    if (!out) goto done;
    if (!json && prompt && !prompt_tokens) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    vb_generate_stats gs;
    int32_t n_out = 0;
    int st = vb_generate(ctx, ptoks, n_prompt, &gp, out, gp.n_predict, &n_out, &gs);
    if (st < 0) {
        fprintf(stderr, "\nvibee run: generation failed: %s: %s%s%s\n", vb_status_str(st), vb_context_error(ctx),
                vb_context_error(ctx)[0] && gs.note[0] ? "; " : "", gs.note);
        free(ro.text);
        goto done;
    }
    static const char *dec_names[] = {"ar", "wedlm", "verify"};
    vb_stats cs = vb_context_stats(ctx);
    double prefill_tps = gs.prefill_seconds > 0 ? gs.n_prompt / gs.prefill_seconds : 0;
    double decode_tps = gs.decode_seconds > 0 ? gs.n_generated / gs.decode_seconds : 0;
    if (json) {
        printf("{\"model\":");
        cli_json_string(stdout, info->name, strlen(info->name));
        printf(",\"backend\":\"%s\",\"decoder\":\"%s\",\"prompt_tokens\":[", vb_context_backend_name(ctx),
               dec_names[gp.decoder]);
        for (int i = 0; i < n_prompt; i++) printf("%s%d", i ? "," : "", ptoks[i]);
        printf("],\"tokens\":[");
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? "," : "", out[i]);
        printf("],\"text\":");
        cli_json_string(stdout, ro.text ? ro.text : "", ro.len);
        printf(",\"n_prompt\":%d,\"n_generated\":%d,\"n_forward\":%lld,\"n_forward_decode\":%lld,"
               "\"tokens_per_forward\":%.4f,\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f,"
               "\"prefill_seconds\":%.6f,\"decode_seconds\":%.6f,\"window\":%d,\"kv_waste\":%.5f,"
               "\"kv_blocks_used\":%d,\"stop\":\"%s\",\"commit_hist\":[",
               gs.n_prompt, gs.n_generated, (long long)gs.n_forward, (long long)gs.n_forward_decode,
               gs.tokens_per_forward, prefill_tps, decode_tps, gs.prefill_seconds, gs.decode_seconds,
               gs.window_used, cs.kv.waste, cs.kv.blocks_used, st == VB_KV_FULL ? "kv_full" : "done");
        int last = 0;
        for (int k = 0; k < VB_HIST_MAX; k++)
            if (gs.commit_hist[k]) last = k;
        for (int k = 0; k <= last; k++) printf("%s%lld", k ? "," : "", (long long)gs.commit_hist[k]);
        printf("],\"note\":");
        cli_json_string(stdout, gs.note, strlen(gs.note));
        printf("}\n");
    } else {
        printf("\n");
        fprintf(stderr,
                "\n[vibee] backend %s, decoder %s: prompt %d tokens (%.1f tok/s), generated %d tokens "
                "(%.1f tok/s), %lld decode forwards (%.2f tokens/forward), KV waste %.1f%%%s%s%s\n",
                vb_context_backend_name(ctx), dec_names[gp.decoder], gs.n_prompt, prefill_tps,
                gs.n_generated, decode_tps, (long long)gs.n_forward_decode, gs.tokens_per_forward,
                100.0 * cs.kv.waste, st == VB_KV_FULL ? " (stopped: KV cache full)" : "",
                gs.note[0] ? "; " : "", gs.note);
    }
    free(ro.text);
    rc = 0;
done:
    free(out);
    free(ptoks);
    free(file_text);
    vb_context_free(ctx);
    vb_model_free(model);
    return rc;
}
