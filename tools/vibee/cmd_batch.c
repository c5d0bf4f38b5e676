/* cmd_batch.c - `vibee batch`: run a file of prompts (one per line) through the continuous-batching
 * scheduler (include/vibee_sched.h) with up to --parallel sequences at once, then print every
 * completion in input order (or one JSON object with --json), and the scheduler's statistics on
 * stderr. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vibee_sched.h"

static void usage(void) {
    fprintf(stderr,
            "usage: vibee batch [-m MODEL] -f PROMPTS.txt [-n N] [--parallel P] [--json]\n"
            "                   [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
            "                   [--seed S] [--ignore-eos] [--token-budget B] [--no-prefix-sharing]\n"
            "                   [--decoder ar|wedlm|verify] [--window W] [--tau T] [--lambda L]\n"
            "                   [--draft-max K] [--wedlm-exact] [--wedlm-official]\n"
            "                   [-b BACKEND] [-t THREADS] [-c CTX] [--kv-type f32|f16|q8_0] [--block-size B]\n"
            "  PROMPTS.txt: one prompt per line (empty lines are skipped; '-': stdin).\n"
            "  -n N: tokens to generate per prompt (default 64). --parallel P: sequences decoded\n"
            "  together (default 4). -c CTX: KV capacity in tokens over all sequences. Requests\n"
            "  sharing whole 16-token prompt blocks share their KV (disable: --no-prefix-sharing).\n"
            "  With --seed S, prompt i samples with seed S+i. --draft-max K: lossless draft-and-verify\n"
            "  (up to K tokens per step drafted by n-gram lookup, same output as plain AR). --decoder: the\n"
            "  decoder of every prompt (default ar, wedlm for a wedlm file; the options as in vibee\n"
            "  run): WeDLM windows and drafts ride in the same forwards as the other sequences' rows.\n");
}

typedef struct batch_item {
    char *prompt;          /* line text (points into the file buffer) */
    vb_token *toks;        /* [n_toks] */
    int32_t n_toks;
    vb_request_id id;
    bool submitted;
    int finish;
    char *text;            /* completion, grown */
    size_t len, cap;
    vb_detok detok;
    int32_t n_generated;
    int64_t n_forward_decode; /* forwards that carried its decode rows */
} batch_item;

static void item_append(batch_item *it, const char *s, size_t n) {
    if (it->len + n + 1 > it->cap) {
        size_t cap = (it->cap ? it->cap * 2 : 256) + n;
        char *t = realloc(it->text, cap);
        if (!t) return;
        it->text = t;
        it->cap = cap;
    }
    memcpy(it->text + it->len, s, n);
    it->len += n;
    it->text[it->len] = 0;
}

/* Collect the new tokens of one request into its text. */
static void drain(vb_sched *s, const vb_model *model, batch_item *it, vb_token eos) {
    vb_token toks[64];
    int32_t n;
    while ((n = vb_sched_poll(s, it->id, toks, 64, &it->finish)) > 0) {
        for (int32_t k = 0; k < n; k++) {
            it->n_generated++;
            if (toks[k] == eos && it->finish == VB_FINISH_EOS) continue; /* the EOS has no text */
            char buf[256];
            int w = vb_detok_push(model, &it->detok, toks[k], buf, sizeof buf);
            if (w > 0) item_append(it, buf, (size_t)w);
        }
    }
}

int cmd_batch(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_init(&mo);
    mo.n_seq_max = 4;
    const char *file = NULL;
    bool json = false;
    vb_request_params rp = vb_request_default_params();
    rp.n_predict = 64;
    vb_sched_params sp = vb_sched_default_params();
    bool seeded = false;
    rp.decoding.draft_max = -1; /* not given */
    rp.decoding.decoder = -1;   /* not given: cli_default_decoder once the model is open */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_parse_model_opt(&mo, argc, argv, &i);
        if (r == 0 && (r = cli_parse_sampler_opt(&rp.sampler, argc, argv, &i)) == 2) seeded = true;
        if (r == 0) r = cli_parse_decoder_opt(&rp.decoding, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        long x;
#define NEED_INT(lo, hi)                                                                           \
    if (!(v = cli_value(argc, argv, &i)) || !cli_parse_int(v, lo, hi, &x)) {                       \
        fprintf(stderr, "vibee batch: %s expects an integer in [%ld, %ld]\n", a, (long)(lo), (long)(hi)); \
        return 2;                                                                                  \
    }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(file = cli_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--ignore-eos")) rp.stop_at_eos = false;
        else if (!strcmp(a, "--no-prefix-sharing")) sp.prefix_sharing = false;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { NEED_INT(1, 1 << 24); rp.n_predict = (int)x; }
        else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) { NEED_INT(1, 4096); mo.n_seq_max = (int)x; }
        else if (!strcmp(a, "--token-budget")) { NEED_INT(1, 65536); sp.token_budget = (int)x; }
        else {
            fprintf(stderr, "vibee batch: unknown option '%s' (see vibee batch --help)\n", a);
            return 2;
        }
#undef NEED_INT
    }
    if (!file) {
        fprintf(stderr, "vibee batch: give a prompt file with -f FILE (one prompt per line)\n");
        return 2;
    }
    vb_sampler *probe = vb_sampler_init(&rp.sampler);
    if (!probe) {
        fprintf(stderr, "vibee batch: invalid sampling options (temp >= 0, 0 < top-p <= 1, 0 <= min-p < 1, repeat-penalty > 0)\n");
        return 2;
    }
    vb_sampler_free(probe);
    size_t flen = 0;
    char *ftext = cli_read_prompt_file(file, &flen); /* prints why it cannot */
    if (!ftext) return 1;
    /* split lines */
    int n_items = 0;
    for (size_t i = 0; i < flen; i++) n_items += ftext[i] == '\n';
    n_items++;
    batch_item *items = calloc((size_t)n_items, sizeof *items);
    if (!items) {
        free(ftext);
        return 1;
    }
    int n = 0;
    for (char *line = ftext, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (l) items[n++].prompt = line;
    }
    if (n == 0) {
        fprintf(stderr, "vibee batch: %s has no prompts (one per line)\n", file);
        free(items);
        free(ftext);
        return 1;
    }
    vb_model *model = NULL;
    vb_context *ctx = NULL;
    vb_sched *sched = NULL;
    int rc = 1;
    if (cli_open(&mo, &model, &ctx)) goto done;
    cli_default_decoder(&rp.decoding, vb_model_get_info(model));
    /* --draft-max K alone: AR prompts drafted and verified (as before --decoder existed) */
    if (rp.decoding.draft_max > 0 && rp.decoding.decoder == VB_DECODER_AR) rp.decoding.decoder = VB_DECODER_VERIFY;
    if (rp.decoding.draft_max < 0) rp.decoding.draft_max = 0;
    const vb_model_info *info = vb_model_get_info(model);
    for (int k = 0; k < n; k++) {
        batch_item *it = &items[k];
        size_t l = strlen(it->prompt);
        int32_t cnt = vb_tokenize(model, it->prompt, l, true, true, NULL, 0);
        if (cnt < 0) {
            fprintf(stderr, "vibee batch: line %d: cannot tokenize: %s (the model has %s tokenizer)\n", k + 1,
                    vb_status_str(cnt), info->has_tokenizer ? "a" : "no");
            goto done;
        }
        it->toks = malloc(((size_t)cnt + 1) * sizeof *it->toks);
        if (!it->toks) goto done;
        it->n_toks = vb_tokenize(model, it->prompt, l, true, true, it->toks, cnt);
        if (it->n_toks == 0) {
            vb_token start = info->bos >= 0 ? info->bos : info->eos;
            if (start < 0) {
                fprintf(stderr, "vibee batch: line %d tokenizes to nothing and the model has no BOS/EOS\n", k + 1);
                goto done;
            }
            it->toks[0] = start;
            it->n_toks = 1;
        }
    }
    char err[512];
    sp.max_waiting = n < 65536 ? n : 65536;
    sp.max_requests = sp.max_waiting + mo.n_seq_max;
    if (vb_sched_init(ctx, &sp, &sched, err, sizeof err) != VB_OK) {
        fprintf(stderr, "vibee batch: %s\n", err);
        goto done;
    }
    double t0 = vb_time_now();
    int next = 0, done_count = 0;
    uint64_t seed0 = rp.sampler.seed;
    double waste_sum = 0.0;
    int64_t waste_steps = 0;
    int32_t blocks_peak = 0;
    while (done_count < n) {
        while (next < n) { /* keep the queue fed; submit fails softly when it is full */
            vb_request_params r = rp;
            if (seeded) r.sampler.seed = seed0 + (uint64_t)next;
            int st = vb_sched_submit(sched, items[next].toks, items[next].n_toks, &r, &items[next].id);
            if (st == VB_ERR_STATE) break;
            if (st != VB_OK) {
                fprintf(stderr, "vibee batch: line %d: %s\n", next + 1, vb_sched_error(sched));
                goto done;
            }
            items[next++].submitted = true;
        }
        int st = vb_sched_step(sched);
        if (st != VB_OK) fprintf(stderr, "vibee batch: %s\n", vb_sched_error(sched));
        vb_sched_stats now = vb_sched_get_stats(sched);
        if (now.n_running > 0) { /* KV use while requests run */
            waste_sum += now.kv_waste;
            waste_steps++;
            if (now.kv_blocks_used > blocks_peak) blocks_peak = now.kv_blocks_used;
        }
        for (int k = 0; k < next; k++) {
            batch_item *it = &items[k];
            if (!it->submitted) continue;
            drain(sched, model, it, info->eos);
            if (it->finish != VB_FINISH_NONE) {
                drain(sched, model, it, info->eos);
                vb_generate_stats gs;
                if (vb_sched_request_stats(sched, it->id, &gs) == VB_OK) it->n_forward_decode = gs.n_forward_decode;
                vb_sched_release(sched, it->id);
                it->submitted = false;
                done_count++;
            }
        }
    }
    double wall = vb_time_now() - t0;
    vb_sched_stats st = vb_sched_get_stats(sched);
    int failed = 0;
    for (int k = 0; k < n; k++) failed += items[k].finish == VB_FINISH_KV || items[k].finish == VB_FINISH_ERROR;
    if (json) {
        printf("{\"model\": ");
        cli_json_string(stdout, info->name, strlen(info->name));
        printf(", \"backend\": \"%s\", \"decoder\": \"%s\", \"parallel\": %d, \"completions\": [",
               vb_context_backend_name(ctx), cli_decoder_name(rp.decoding.decoder), mo.n_seq_max);
        for (int k = 0; k < n; k++) {
            batch_item *it = &items[k];
            printf("%s\n  {\"index\": %d, \"prompt\": ", k ? "," : "", k);
            cli_json_string(stdout, it->prompt, strlen(it->prompt));
            printf(", \"text\": ");
            cli_json_string(stdout, it->text ? it->text : "", it->len);
            printf(", \"n_prompt\": %d, \"n_generated\": %d, \"finish_reason\": \"%s\", "
                   "\"n_forward\": %lld, \"tokens_per_forward\": %.3f}", it->n_toks, it->n_generated,
                   vb_finish_reason_str(it->finish), (long long)it->n_forward_decode,
                   it->n_forward_decode > 0 ? (double)it->n_generated / (double)it->n_forward_decode : 0.0);
        }
        printf("\n], \"stats\": {\"wall_seconds\": %.4f, \"steps\": %lld, \"rows\": %lld, \"prefill_rows\": %lld, "
               "\"decode_rows\": %lld, \"generated\": %lld, \"tokens_per_second\": %.3f, "
               "\"decode_tokens_per_second\": %.3f, \"preemptions\": %lld, \"prefix_hits\": %lld, "
               "\"prefix_tokens\": %lld, \"max_batch_rows\": %d, \"kv_blocks_total\": %d, "
               "\"kv_blocks_peak\": %d, \"kv_waste_mean\": %.4f, \"kv_blocks_leaked\": %d, "
               "\"step_seconds\": %.4f, \"forward_seconds\": %.4f, \"draft_rows\": %lld, \"draft_accepted\": %lld}}\n",
               wall, (long long)st.n_steps, (long long)st.n_rows, (long long)st.n_prefill_rows,
               (long long)st.n_decode_rows, (long long)st.n_generated, st.tokens_per_second,
               st.decode_tokens_per_second, (long long)st.n_preemptions, (long long)st.n_prefix_hits,
               (long long)st.n_prefix_tokens, st.max_batch_rows, st.kv_blocks_total, blocks_peak,
               waste_steps ? waste_sum / (double)waste_steps : 0.0, st.kv_blocks_leaked, st.step_seconds,
               vb_context_stats(ctx).forward_seconds, (long long)st.n_draft_rows, (long long)st.n_draft_accepted);
    } else {
        for (int k = 0; k < n; k++) {
            batch_item *it = &items[k];
            printf("--- [%d] %s (%d tokens, %s)\n%s%s", k, it->prompt, it->n_generated,
                   vb_finish_reason_str(it->finish), it->prompt, it->text ? it->text : "");
            printf("\n");
        }
    }
    fprintf(stderr,
            "vibee batch: %d prompts, %lld tokens in %.3f s (%.2f tok/s; decode-only steps %.2f tok/s), "
            "%lld steps, %lld preemptions, %lld prefix hits (%lld rows shared), backend %s, decoder %s, parallel %d\n",
            n, (long long)st.n_generated, wall, wall > 0 ? (double)st.n_generated / wall : 0.0,
            st.decode_tokens_per_second, (long long)st.n_steps, (long long)st.n_preemptions,
            (long long)st.n_prefix_hits, (long long)st.n_prefix_tokens, vb_context_backend_name(ctx),
            cli_decoder_name(rp.decoding.decoder), mo.n_seq_max);
    rc = failed ? 1 : 0;
    if (failed) fprintf(stderr, "vibee batch: %d prompts did not finish (KV pool too small: raise -c)\n", failed);
done:
    vb_sched_free(sched);
    vb_context_free(ctx);
    vb_model_free(model);
    for (int k = 0; k < n_items; k++) {
        free(items[k].toks);
        free(items[k].text);
    }
    free(items);
    free(ftext);
    return rc;
}
