/* mask_bench.c - cost of constrained sampling's token masks (src/grammar/token_mask.c): a JSON
 * schema's grammar walked along the tokens of a JSON text that fits it, timing for each token the
 * mask of the current state and the advance by the token, with the state interner (the default)
 * and without it; also the per-request setup (the first request of a model builds its byte-sorted
 * token table, later ones reuse it). Only the model's tokenizer is used (no forward).
 * Build and run: bench/grammar/run.sh (links build/libvibee.so). Usage: mask_bench [MODEL.gguf]
 * (default: the embedded shipped model). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/token_mask.h"
#include "vibee.h"

static const char SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"required\":[\"name\",\"age\",\"tags\"]}";
static const char TEXT[] =
    "{\"name\": \"John Smith the third of his name\", \"age\": 42, \"tags\": [\"alpha\", \"beta\", \"gamma delta\"]}";

/* One walk; returns 0 and fills the timings (ms). */
static int walk(const vb_model *m, const vb_grammar *g, bool memo, double *init_ms, double *mean_ms,
                double *worst_ms, int *n_tok) {
    vb_token toks[512];
    int nt = vb_tokenize(m, TEXT, strlen(TEXT), false, false, toks, 512);
    char err[256];
    vb_grammar_run *r = NULL;
    double t0 = vb_time_now();
    if (vb_grammar_run_init(g, m, &r, err, sizeof err) != VB_OK) {
        fprintf(stderr, "init: %s\n", err);
        return -1;
    }
    *init_ms = 1e3 * (vb_time_now() - t0);
    if (!memo) vb_grammar_run_no_memo(r);
    double worst = 0, t1 = vb_time_now();
    for (int i = 0; i < nt; i++) {
        double a = vb_time_now();
        const uint32_t *mask = vb_grammar_run_mask(r);
        double b = vb_time_now();
        if (b - a > worst) worst = b - a;
        if (!mask || !(mask[toks[i] >> 5] >> (toks[i] & 31) & 1u) || vb_grammar_run_accept(r, toks[i]) != VB_OK) {
            fprintf(stderr, "token %d of the text not allowed\n", i);
            vb_grammar_run_free(r);
            return -1;
        }
    }
    *mean_ms = 1e3 * (vb_time_now() - t1) / nt;
    *worst_ms = 1e3 * worst;
    *n_tok = nt;
    vb_grammar_run_free(r);
    return 0;
}

int main(int argc, char **argv) {
    vb_model *m = NULL;
    char err[256];
    size_t size = 0;
    const void *data = argc > 1 ? NULL : vb_embedded_model(&size);
    int rc = data ? vb_model_load_from_memory(data, size, "embedded", NULL, &m, err, sizeof err)
                  : vb_model_load(argv[1], NULL, &m, err, sizeof err);
    if (rc != VB_OK) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    vb_grammar *g = NULL;
    if (vb_grammar_from_json_schema(SCHEMA, sizeof SCHEMA - 1, &g, err, sizeof err) != VB_OK) {
        fprintf(stderr, "schema: %s\n", err);
        return 1;
    }
    const char *name = argc > 1 ? argv[1] : "embedded";
    for (int k = 0; k < 3; k++) { /* first request (builds the table), then with and without memo */
        bool memo = k != 2;
        double init, mean, worst;
        int nt;
        if (walk(m, g, memo, &init, &mean, &worst, &nt) != 0) return 1;
        printf("| %s | %d | %s | %s | %.2f | %.3f | %.2f |\n", name, vb_model_get_info(m)->n_vocab,
               k == 0 ? "first" : "later", memo ? "yes" : "no", init, mean, worst);
    }
    vb_grammar_free(g);
    vb_model_free(m);
    return 0;
}
