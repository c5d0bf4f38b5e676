/* cmd_run.c - `vibee run`: generate text from a model with a chosen backend and decoder,
 * streaming tokens to stdout as they are committed (or one JSON object with --json); with -cnv
 * (or `vibee chat`) an interactive chat that reads user turns from stdin and prompts the model
 * through its chat template. Ctrl-C stops the generation and prints the summary (exit 130). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f) {
    vb_generate_params d = vb_generate_default_params();
    fprintf(f,
            "usage: vibee run [options]            generate a continuation of a prompt\n"
            "       vibee chat [options]           interactive chat (= vibee run -cnv)\n"
            "\n"
            "model and backend:\n"
            "  -m, --model MODEL          a GGUF file, an ONNX model directory, or 'sim' (the deterministic\n"
            "                             simulated model); default: the embedded wedlm-py-6m model\n"
            "  -b, --backend NAME         cpu (default for GGUF), sim, llamacpp, onnx, cuda\n"
            "  -t, --threads N            worker threads (default: physical cores; at most 4x the CPUs)\n"
            "  -c, --ctx-size N           KV capacity in tokens (default: trained context, at most 4096)\n"
            "      --batch-size N         most rows in one forward (default 512)\n"
            "      --kv-type f32|f16|q8_0 KV cache element type (default f32; q8_0: cpu, llamacpp)\n"
            "      --block-size N         KV block size in tokens (default 16)\n"
            "      --vocab FILE.gguf      take the tokenizer from another GGUF file\n"
            "      --backend-options K=V,...   --ep cpu|cuda|tensorrt (onnx backend)\n"
            "      --cost-cache FILE|off  measured K-row forward costs (default $VIBEE_COST_CACHE or\n"
            "                             ~/.cache/vibee/cost-tables.tsv)\n"
            "prompt (default: piped or redirected stdin, else an empty prompt that starts from BOS):\n"
            "  -p, --prompt TEXT          the prompt\n"
            "  -f, --file FILE            read the prompt from FILE ('-': stdin)\n"
            "      --prompt-tokens 1,2,3  the prompt as token ids\n"
            "      --no-display-prompt    do not echo the prompt before the generated text\n"
            "      --no-parse-special     special-token strings in the prompt stay plain text (chat\n"
            "                             messages always are; a raw prompt parses them by default)\n"
            "generation:\n"
            "  -n, --n-predict N          tokens to generate (default %d)\n"
            "      --ignore-eos           do not stop at the end-of-sequence token\n"
            "  -r, --reverse-prompt TEXT  stop when the generated text ends with TEXT\n"
            "      --decoder ar|wedlm|verify   decoder (default ar; wedlm for general.architecture wedlm)\n"
            "      --json                 print one JSON object (text, tokens, timings, seed)\n"
            "sampling (default greedy):\n"
            "      --temp T               temperature (default 0 = greedy)\n"
            "      --top-k K              (default 0 = off)      --top-p P   (default 1 = off)\n"
            "      --min-p P              (default 0 = off)\n"
            "      --repeat-penalty R     (default 1 = off)      --repeat-last-n N (default %d)\n"
            "  -s, --seed S               RNG seed (default: random, printed with --json and in the summary)\n"
            "chat (-cnv, --conversation, or vibee chat):\n"
            "  -cnv, --conversation       read user turns from stdin, answer each with the model\n"
            "  -sys, --system TEXT        system prompt\n"
            "      --chat-template NAME|FILE   the model's own template (GGUF tokenizer.chat_template) by\n"
            "                             default; built-ins: chatml, llama3, gemma, phi3, mistral, plain\n"
            "      --no-kv-reuse          re-prefill the whole conversation each turn (default: keep the\n"
            "                             KV of the previous turns and forward only what is new)\n"
            "WeDLM and draft-and-verify:\n"
            "      --window W             (default %d; 0 = choose from measured costs)\n"
            "      --tau T                entropy threshold in nats (default %g)\n"
            "      --lambda L             distance penalty (default %g)\n"
            "      --mask-token ID        (default: the model's)\n"
            "      --draft-max K          (default 0 = auto)\n"
            "      --wedlm-official       the paper's selection rule only\n"
            "      --wedlm-exact          check filled slots against AR (greedy output equals AR greedy)\n"
            "\n"
            "Options also take the form --option=value. Exit status: 0 done, 1 error (e.g. prompt\n"
            "longer than the context), 2 bad usage, 130 interrupted by Ctrl-C.\n",
            d.n_predict, d.sampler.repeat_last_n, d.window, (double)d.tau, (double)d.lambda);
}

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

typedef struct run_out {
    const vb_model *model;
    bool stream;
    bool stop_eog;       /* chat: any end-of-turn token ends the answer */
    const char *reverse; /* -r */
    vb_token eos;
    vb_detok detok;
    char *text; /* generated text, grown */
    size_t len, cap;
    bool stopped_by_reverse;
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

static void emit(run_out *o, const char *buf, int n) {
    if (n <= 0) return;
    text_append(o, buf, (size_t)n);
    if (o->stream) {
        fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
    }
}

static bool on_token(vb_token tok, void *user) {
    run_out *o = user;
    if (g_interrupted) return false;
    if (tok == o->eos || (o->stop_eog && vb_token_is_eog(o->model, tok))) return !o->stop_eog;
    char buf[1024];
    emit(o, buf, vb_detok_push(o->model, &o->detok, tok, buf, sizeof buf));
    if (o->reverse && *o->reverse) {
        size_t rl = strlen(o->reverse);
        if (o->len >= rl && memcmp(o->text + o->len - rl, o->reverse, rl) == 0) {
            o->stopped_by_reverse = true;
            return false;
        }
    }
    return !g_interrupted;
}

static void finish_text(run_out *o) {
    char buf[64];
    emit(o, buf, vb_detok_flush(&o->detok, buf, sizeof buf));
}

/* KV capacity of the context in tokens. */
static int32_t ctx_capacity(const vb_context *ctx) {
    vb_stats s = vb_context_stats(ctx);
    return s.kv.blocks_total * s.kv.block_size;
}

static const char *dec_names[] = {"ar", "wedlm", "verify"};

static void print_summary(vb_context *ctx, const vb_generate_params *gp, const vb_generate_stats *gs, int st,
                          const char *stop) {
    vb_stats cs = vb_context_stats(ctx);
    double prefill_tps = gs->prefill_seconds > 0 ? gs->n_prompt / gs->prefill_seconds : 0;
    double decode_tps = gs->decode_seconds > 0 ? gs->n_generated / gs->decode_seconds : 0;
    fprintf(stderr,
            "\n[vibee] backend %s, decoder %s, seed %llu: prompt %d tokens (%.1f tok/s), generated %d tokens "
            "(%.1f tok/s), %lld decode forwards (%.2f tokens/forward), KV waste %.1f%%%s%s%s%s%s\n",
            vb_context_backend_name(ctx), dec_names[gp->decoder], (unsigned long long)gp->sampler.seed, gs->n_prompt,
            prefill_tps, gs->n_generated, decode_tps, (long long)gs->n_forward_decode, gs->tokens_per_forward,
            100.0 * cs.kv.waste, st == VB_KV_FULL ? " (stopped: KV cache full)" : "", stop ? " (" : "",
            stop ? stop : "", stop ? ")" : "", gs->note[0] ? "; " : "");
    if (gs->note[0]) fprintf(stderr, "%s\n", gs->note);
}

/* Tokenize a raw prompt into *toks; special-token strings are parsed unless told otherwise. */
static int tokenize_text(const vb_model *model, const char *text, bool parse_special, vb_token **toks) {
    size_t len = strlen(text);
    int n = vb_tokenize(model, text, len, true, parse_special, NULL, 0);
    if (n < 0) return n;
    *toks = malloc(((size_t)n + 1) * sizeof **toks);
    if (!*toks) return VB_ERR_NOMEM;
    return vb_tokenize(model, text, len, true, parse_special, *toks, n);
}

#ifdef VB_HAVE_JANSSON
static int print_json(const vb_model_info *info, vb_context *ctx, const vb_generate_params *gp, const vb_token *ptoks,
                      int n_prompt, const vb_token *out, int n_out, const run_out *ro, const vb_generate_stats *gs,
                      const char *stop) {
    vb_stats cs = vb_context_stats(ctx);
    json_t *o = json_object(), *pt = json_array(), *tk = json_array(), *hist = json_array();
    if (!o || !pt || !tk || !hist) return -1;
    for (int i = 0; i < n_prompt; i++) json_array_append_new(pt, json_integer(ptoks[i]));
    for (int i = 0; i < n_out; i++) json_array_append_new(tk, json_integer(out[i]));
    int last = 0;
    for (int k = 0; k < VB_HIST_MAX; k++)
        if (gs->commit_hist[k]) last = k;
    for (int k = 0; k <= last; k++) json_array_append_new(hist, json_integer(gs->commit_hist[k]));
    json_object_set_new(o, "model", cli_json_text(info->name, strlen(info->name)));
    json_object_set_new(o, "backend", json_string(vb_context_backend_name(ctx)));
    json_object_set_new(o, "decoder", json_string(dec_names[gp->decoder]));
    json_object_set_new(o, "seed", json_integer((json_int_t)gp->sampler.seed));
    json_object_set_new(o, "prompt_tokens", pt);
    json_object_set_new(o, "tokens", tk);
    json_object_set_new(o, "text", cli_json_text(ro->text ? ro->text : "", ro->len));
    json_object_set_new(o, "n_prompt", json_integer(gs->n_prompt));
    json_object_set_new(o, "n_generated", json_integer(gs->n_generated));
    json_object_set_new(o, "n_forward", json_integer(gs->n_forward));
    json_object_set_new(o, "n_forward_decode", json_integer(gs->n_forward_decode));
    json_object_set_new(o, "n_forward_measure", json_integer(gs->n_forward_measure));
    json_object_set_new(o, "tokens_per_forward", json_real(gs->tokens_per_forward));
    json_object_set_new(o, "prefill_tok_s", json_real(gs->prefill_seconds > 0 ? gs->n_prompt / gs->prefill_seconds : 0));
    json_object_set_new(o, "decode_tok_s", json_real(gs->decode_seconds > 0 ? gs->n_generated / gs->decode_seconds : 0));
    json_object_set_new(o, "prefill_seconds", json_real(gs->prefill_seconds));
    json_object_set_new(o, "decode_seconds", json_real(gs->decode_seconds));
    json_object_set_new(o, "window", json_integer(gs->window_used));
    json_object_set_new(o, "kv_waste", json_real(cs.kv.waste));
    json_object_set_new(o, "kv_blocks_used", json_integer(cs.kv.blocks_used));
    json_object_set_new(o, "stop", json_string(stop));
    json_object_set_new(o, "commit_hist", hist);
    json_object_set_new(o, "note", cli_json_text(gs->note, strlen(gs->note)));
    int rc = cli_json_print(stdout, o);
    fputc('\n', stdout);
    return rc;
}
#endif

typedef struct run_args {
    cli_model_opts mo;
    vb_generate_params gp;
    const char *prompt, *prompt_file, *prompt_tokens, *reverse, *system, *chat_template;
    bool json, conversation, display_prompt, seed_given, no_parse_special, no_kv_reuse;
} run_args;

/* Parse the options of run / chat; returns -1 to continue, else the exit status. */
static int parse_args(run_args *a, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v;
        int r = cli_parse_model_opt(&a->mo, argc, argv, &i);
        if (r == 0) {
            r = cli_parse_sampler_opt(&a->gp.sampler, argc, argv, &i);
            if (r == 2) a->seed_given = true;
        }
        if (r == 0) r = cli_parse_decoder_opt(&a->gp, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        long x;
#define NEED_INT(lo, hi) \
    if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, lo, hi, &x)) { \
        fprintf(stderr, "vibee run: %s expects an integer in [%ld, %ld]\n", s, (long)(lo), (long)(hi)); \
        return 2; \
    }
#define NEED_STR(dst) \
    if (!((dst) = cli_value(argc, argv, &i))) return 2;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(s, "-p") || !strcmp(s, "--prompt")) { NEED_STR(a->prompt) }
        else if (!strcmp(s, "-f") || !strcmp(s, "--file")) { NEED_STR(a->prompt_file) }
        else if (!strcmp(s, "--prompt-tokens")) { NEED_STR(a->prompt_tokens) }
        else if (!strcmp(s, "-r") || !strcmp(s, "--reverse-prompt")) { NEED_STR(a->reverse) }
        else if (!strcmp(s, "-sys") || !strcmp(s, "--system") || !strcmp(s, "--system-prompt")) { NEED_STR(a->system) }
        else if (!strcmp(s, "--chat-template")) { NEED_STR(a->chat_template) }
        else if (!strcmp(s, "-cnv") || !strcmp(s, "--conversation")) a->conversation = true;
        else if (!strcmp(s, "--no-display-prompt")) a->display_prompt = false;
        else if (!strcmp(s, "--no-parse-special")) a->no_parse_special = true;
        else if (!strcmp(s, "--no-kv-reuse")) a->no_kv_reuse = true;
        else if (!strcmp(s, "--json")) a->json = true;
        else if (!strcmp(s, "--ignore-eos")) a->gp.stop_at_eos = false;
        else if (!strcmp(s, "-n") || !strcmp(s, "--n-predict")) { NEED_INT(0, 1 << 24); a->gp.n_predict = (int)x; }
        else {
            fprintf(stderr, "vibee run: unknown option '%s' (see vibee run --help)\n", s);
            return 2;
        }
#undef NEED_INT
#undef NEED_STR
    }
    return -1;
}

/* Interactive chat: user turns from stdin, answers through the chat template. */
static int chat_loop(run_args *a, vb_model *model, vb_context *ctx) {
#ifndef VB_HAVE_JANSSON
    (void)a; (void)model; (void)ctx;
    fprintf(stderr, "vibee chat: this build has no jansson (apt-get install libjansson-dev)\n");
    return 1;
#else
    char err[1024];
    vb_chat_template *tmpl = NULL;
    int st = vb_chat_template_for_model(model, a->chat_template, &tmpl, err, sizeof err);
    if (st != VB_OK) {
        fprintf(stderr, "vibee chat: %s%s\n", err,
                a->chat_template ? "" : " (--chat-template chatml|llama3|gemma|phi3|mistral|plain|FILE overrides it)");
        return 1;
    }
    bool tty = isatty(0);
    if (tty) fprintf(stderr, "[vibee] chat template: %s. Type a message and press Enter; Ctrl-D or Ctrl-C at the prompt ends.\n",
                     vb_chat_template_origin(tmpl));
    json_t *msgs = json_array();
    if (a->system && *a->system)
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "system", "content", cli_json_text(a->system, strlen(a->system))));
    int32_t cap = ctx_capacity(ctx);
    char *line = NULL;
    size_t line_cap = 0;
    int rc = 0, turns = 0;
    vb_generate_stats total = {0};
    /* the tokens whose KV the sequence holds: the last prompt and its committed answer */
    vb_token *kv_toks = NULL;
    int32_t n_kv_toks = 0;
    for (;;) {
        if (tty) {
            fputs("\n> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) {
            if (g_interrupted) rc = 130;
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "user", "content", cli_json_text(line, (size_t)n)));
        char *js = json_dumps(msgs, JSON_COMPACT);
        vb_chat_prompt cp;
        st = js ? vb_chat_apply(model, tmpl, js, strlen(js), true, &cp, err, sizeof err) : VB_ERR_NOMEM;
        free(js);
        if (st != VB_OK) {
            fprintf(stderr, "vibee chat: %s\n", st == VB_ERR_NOMEM ? "out of memory" : err);
            json_array_remove(msgs, json_array_size(msgs) - 1);
            rc = 1;
            continue;
        }
        int nt = vb_tokenize_chat(model, &cp, NULL, 0);
        vb_token *toks = nt >= 0 ? malloc(((size_t)nt + 1) * sizeof *toks) : NULL;
        if (toks) nt = vb_tokenize_chat(model, &cp, toks, nt);
        vb_chat_prompt_free(&cp);
        if (nt < 0 || !toks) {
            fprintf(stderr, "vibee chat: cannot tokenize the conversation: %s\n", vb_status_str(nt < 0 ? nt : VB_ERR_NOMEM));
            free(toks);
            json_array_remove(msgs, json_array_size(msgs) - 1);
            rc = 1;
            continue;
        }
        if (nt >= cap) {
            fprintf(stderr, "vibee chat: the conversation is too long (%d tokens; the context holds %d: raise -c)\n", nt, cap);
            free(toks);
            json_array_remove(msgs, json_array_size(msgs) - 1);
            rc = 1;
            break;
        }
        run_out ro = {.model = model, .stream = true, .stop_eog = true, .reverse = a->reverse, .eos = -1};
        vb_generate_params gp = a->gp;
        gp.on_token = on_token;
        gp.user = &ro;
        gp.stop_at_eos = false; /* on_token ends the turn at any end-of-turn token */
        if (gp.n_predict > cap - nt) gp.n_predict = cap - nt;
        vb_token *out = malloc(((size_t)gp.n_predict + 1) * sizeof *out);
        /* keep the KV of the longest common prefix of what the sequence holds and the new
           conversation (at least one prompt row is forwarded, for its logits) */
        int32_t keep = 0;
        while (!a->no_kv_reuse && keep < n_kv_toks && keep < nt - 1 && kv_toks[keep] == toks[keep]) keep++;
        if (keep == 0 || vb_kv_seq_len(ctx, gp.seq) != n_kv_toks || vb_kv_truncate(ctx, gp.seq, keep) != VB_OK) {
            vb_kv_free_seq(ctx, gp.seq);
            keep = 0;
        }
        gp.reuse_kv = keep > 0;
        vb_generate_stats gs;
        int32_t n_out = 0;
        g_interrupted = 0;
        st = out ? vb_generate(ctx, toks, nt, &gp, out, gp.n_predict, &n_out, &gs) : VB_ERR_NOMEM;
        finish_text(&ro);
        /* what the sequence now holds: the prompt and the committed answer (after a full KV the
           last token may be missing: then the next turn starts afresh) */
        vb_token *held = st >= 0 && out ? realloc(toks, ((size_t)nt + (size_t)n_out + 1) * sizeof *toks) : NULL;
        if (held) {
            memcpy(held + nt, out, (size_t)n_out * sizeof *out);
            toks = held;
            free(kv_toks);
            kv_toks = toks;
            n_kv_toks = nt + n_out;
            toks = NULL;
        } else {
            n_kv_toks = 0;
        }
        free(out);
        free(toks);
        fputc('\n', stdout);
        fflush(stdout);
        if (st < 0) {
            fprintf(stderr, "vibee chat: generation failed: %s: %s\n", vb_status_str(st), vb_context_error(ctx));
            free(ro.text);
            rc = 1;
            break;
        }
        json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "assistant", "content",
                                              cli_json_text(ro.text ? ro.text : "", ro.len)));
        free(ro.text);
        turns++;
        total.n_prompt += gs.n_prompt - gs.n_prompt_reused;
        total.n_prompt_reused += gs.n_prompt_reused;
        total.n_generated += gs.n_generated;
        total.prefill_seconds += gs.prefill_seconds;
        total.decode_seconds += gs.decode_seconds;
        g_interrupted = 0; /* Ctrl-C during an answer stops that answer only */
    }
    free(line);
    free(kv_toks);
    json_decref(msgs);
    vb_chat_template_free(tmpl);
    fprintf(stderr, "\n[vibee] chat: %d turns, %d prompt tokens (%.1f tok/s; %d more reused from the KV), "
            "%d generated tokens (%.1f tok/s), seed %llu\n",
            turns, total.n_prompt, total.prefill_seconds > 0 ? total.n_prompt / total.prefill_seconds : 0,
            total.n_prompt_reused,
            total.n_generated, total.decode_seconds > 0 ? total.n_generated / total.decode_seconds : 0,
            (unsigned long long)a->gp.sampler.seed);
    return rc;
#endif
}

static int run_main(int argc, char **argv, bool chat) {
    run_args a = {0};
    cli_model_opts_init(&a.mo);
    a.gp = vb_generate_default_params();
    a.gp.decoder = -1; /* not given: cli_default_decoder once the model is open */
    a.display_prompt = true;
    a.conversation = chat;
    int prc = parse_args(&a, argc, argv);
    if (prc >= 0) return prc;
    if (!a.seed_given) a.gp.sampler.seed = cli_random_seed();
    vb_sampler *probe = vb_sampler_init(&a.gp.sampler);
    if (!probe) {
        fprintf(stderr, "vibee run: invalid sampling options (temp >= 0, 0 < top-p <= 1, 0 <= min-p < 1, repeat-penalty > 0)\n");
        return 2;
    }
    vb_sampler_free(probe);
#ifndef VB_HAVE_JANSSON
    if (a.json) {
        fprintf(stderr, "vibee run: --json needs jansson (apt-get install libjansson-dev, then rebuild)\n");
        return 2;
    }
#endif
    if (a.conversation && (a.prompt || a.prompt_file || a.prompt_tokens || a.json)) {
        fprintf(stderr, "vibee run: -cnv reads the conversation from stdin: -p, -f, --prompt-tokens and --json do not apply\n");
        return 2;
    }
    char *file_text = NULL;
    if (!a.conversation) {
        if (a.prompt_file) {
            if (!(file_text = cli_read_prompt_file(a.prompt_file, NULL))) return 1;
        } else if (!a.prompt && !a.prompt_tokens && !isatty(0)) { /* piped or redirected stdin */
            struct stat sb;
            bool use = false;
            if (fstat(0, &sb) == 0 && S_ISREG(sb.st_mode)) {
                use = true;
            } else if (S_ISFIFO(sb.st_mode)) {
                /* a pipe that stays silent (a harness holding it open) is not a prompt: wait for
                   data or end of input a moment; -f - waits for as long as it takes */
                struct pollfd pfd = {0, POLLIN, 0};
                use = poll(&pfd, 1, 500) > 0;
                if (!use) fprintf(stderr, "vibee run: nothing on stdin within 0.5 s: no prompt (-f - waits for stdin)\n");
            }
            if (use && !(file_text = cli_read_prompt_file("-", NULL))) return 1;
        }
        if (file_text) a.prompt = file_text;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a read at the chat prompt returns */
    sigaction(SIGINT, &sa, NULL);
    vb_model *model = NULL;
    vb_context *ctx = NULL;
    if (cli_open(&a.mo, &model, &ctx)) {
        free(file_text);
        return 1;
    }
    cli_default_decoder(&a.gp, vb_model_get_info(model));
    int rc = 1;
    if (a.conversation) {
        rc = chat_loop(&a, model, ctx);
        vb_context_free(ctx);
        vb_model_free(model);
        return rc;
    }
    const vb_model_info *info = vb_model_get_info(model);
    vb_token *ptoks = NULL, *out = NULL;
    int n_prompt = 0;
    if (a.prompt_tokens) {
        int *ids = NULL;
        n_prompt = cli_parse_int_list(a.prompt_tokens, &ids);
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
        n_prompt = tokenize_text(model, a.prompt ? a.prompt : "", !a.no_parse_special, &ptoks);
        if (n_prompt < 0) {
            fprintf(stderr, "vibee run: cannot tokenize the prompt: %s (model has %s tokenizer; use --prompt-tokens or --vocab)\n",
                    vb_status_str(n_prompt), info->has_tokenizer ? "a" : "no");
            goto done;
        }
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
    int32_t cap = ctx_capacity(ctx);
    if (n_prompt >= cap) {
        fprintf(stderr, "vibee run: prompt is too long (%d tokens; the context holds %d and needs room to generate: "
                "raise -c or shorten the prompt)\n", n_prompt, cap);
        goto done;
    }
    run_out ro = {.model = model, .stream = !a.json, .reverse = a.reverse, .eos = info->eos};
    vb_generate_params gp = a.gp;
    gp.on_token = on_token;
    gp.user = &ro;
    out = malloc(((size_t)gp.n_predict + 1) * sizeof *out);
    if (!out) goto done;
    if (!a.json && a.display_prompt && a.prompt && !a.prompt_tokens) {
        char *clean = malloc(3 * strlen(a.prompt) + 1);
        if (clean) {
            vb_utf8_sanitize(a.prompt, strlen(a.prompt), clean, 3 * strlen(a.prompt) + 1);
            fputs(clean, stdout);
            free(clean);
        }
        fflush(stdout);
    }
    vb_generate_stats gs;
    int32_t n_out = 0;
    int st = vb_generate(ctx, ptoks, n_prompt, &gp, out, gp.n_predict, &n_out, &gs);
    finish_text(&ro);
    if (st < 0) {
        fprintf(stderr, "\nvibee run: generation failed: %s: %s%s%s\n", vb_status_str(st), vb_context_error(ctx),
                vb_context_error(ctx)[0] && gs.note[0] ? "; " : "", gs.note);
        free(ro.text);
        goto done;
    }
    const char *stop = g_interrupted ? "interrupted" : st == VB_KV_FULL ? "kv_full" : ro.stopped_by_reverse ? "reverse_prompt" : "done";
#ifdef VB_HAVE_JANSSON
    if (a.json) {
        if (print_json(info, ctx, &a.gp, ptoks, n_prompt, out, n_out, &ro, &gs, stop) != 0) {
            free(ro.text);
            goto done;
        }
    } else
#endif
    {
        printf("\n");
        fflush(stdout);
        print_summary(ctx, &a.gp, &gs, st, g_interrupted ? "interrupted" : NULL);
    }
    free(ro.text);
    rc = g_interrupted ? 130 : 0;
done:
    free(out);
    free(ptoks);
    free(file_text);
    vb_context_free(ctx);
    vb_model_free(model);
    return rc;
}

int cmd_run(int argc, char **argv) { return run_main(argc, argv, false); }
int cmd_chat(int argc, char **argv) { return run_main(argc, argv, true); }
