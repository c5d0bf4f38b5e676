/* sim_model.h - the sim backend's own model format: the simulated model ("-m sim"), whose
 * parameters (vb_sim_params) are the whole model and whose tokenizer is bytes. */
#ifndef VB_SIM_MODEL_H
#define VB_SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "vibee.h"

/* The backend table's model slots: the path "sim" is the default simulated model. */
bool vb_sim_model_probe(const char *path);
int vb_sim_model_load(const char *path, const vb_model_params *params, vb_model *model, char *err,
                      size_t err_len);

#endif
