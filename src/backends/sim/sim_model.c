/* sim_model.c - the simulated model as the sim backend's own model format (sim_model.h):
 * vb_sim_default_params, vb_model_load_sim and the registry's probe / load slots. */
#include "sim_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../backend.h"
#include "../../model.h"

vb_sim_params vb_sim_default_params(void) {
    vb_sim_params p = {0};
    p.n_vocab = 258;
    p.peak = 8.0f;
    p.seed = 1;
    return p;
}

/* Fill a zeroed model from sim parameters. */
static int sim_fill(const vb_sim_params *p, vb_model *m, char *err, size_t err_len) {
    if (p->n_vocab < 258 || p->n_vocab > (1 << 20) || !(p->peak >= 0.0f && p->peak < 1e4f)) {
        if (err && err_len) snprintf(err, err_len, "sim model: n_vocab must be in [258, 2^20] and peak in [0, 1e4)");
        return VB_ERR_ARG;
    }
    vb_sim_params *own = malloc(sizeof *own);
    if (!own) return VB_ERR_NOMEM;
    *own = *p;
    m->owner = &vb_backend_sim;
    m->native = own;
    vb_model_info *in = &m->info;
    snprintf(in->arch, sizeof in->arch, "sim");
    snprintf(in->name, sizeof in->name, "sim-%d", (int)p->n_vocab);
    snprintf(in->weight_type, sizeof in->weight_type, "none");
    in->n_vocab = p->n_vocab;
    in->n_ctx_train = 1 << 16;
    in->bos = -1;
    in->eos = p->n_vocab - 2;
    in->mask = p->n_vocab - 1;
    int st = vb_tokenizer_bytes(p->n_vocab, in->eos, in->mask, &m->tok);
    if (st != VB_OK) return st;
    in->has_tokenizer = true; /* bytes */
    return VB_OK;
}

int vb_model_load_sim(const vb_sim_params *params, vb_model **out, char *err, size_t err_len) {
    if (!out) return VB_ERR_ARG;
    *out = NULL;
    vb_sim_params p = params ? *params : vb_sim_default_params();
    vb_model *m = calloc(1, sizeof *m);
    if (!m) return VB_ERR_NOMEM;
    int st = sim_fill(&p, m, err, err_len);
    if (st != VB_OK) {
        vb_model_free(m);
        return st;
    }
    *out = m;
    return VB_OK;
}

bool vb_sim_model_probe(const char *path) { return path && strcmp(path, "sim") == 0; }

int vb_sim_model_load(const char *path, const vb_model_params *params, vb_model *model, char *err,
                      size_t err_len) {
    (void)path;
    (void)params;
    vb_sim_params p = vb_sim_default_params();
    return sim_fill(&p, model, err, err_len);
}
