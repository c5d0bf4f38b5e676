/* cli.h - shared pieces of the vibee command-line tool: option parsing helpers, model and
 * context opening with the embedded default model, JSON string output, and the commands. */
#ifndef VB_CLI_H
#define VB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "vibee.h"

/* Common options of commands that run a model. */
typedef struct cli_model_opts {
    const char *model;     /* -m: path, "sim", or NULL for the embedded default */
    const char *backend;   /* -b */
    const char *vocab;     /* --vocab */
    const char *backend_options; /* --backend-options */
    const char *ep;        /* --ep: ONNX Runtime execution provider (cpu, cuda, tensorrt) */
    int threads;           /* -t */
    int n_ctx;             /* -c */
    int kv_type;           /* --kv-type */
    int block_size;        /* --block-size */
    int n_seq_max;
    int n_batch_max;
    const char *cost_cache; /* --cost-cache FILE|off (NULL: $VIBEE_COST_CACHE or the default) */
} cli_model_opts;

void cli_model_opts_init(cli_model_opts *o);
/* If argv[*i] is one of the common model options, consume it (and its value) and return 1;
 * return 0 if it is not one; -1 (message printed) on a bad value. */
int cli_parse_model_opt(cli_model_opts *o, int argc, char **argv, int *i);
/* Sampling options (--temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n, -s/--seed):
 * like cli_parse_model_opt, 1 consumed (2: it was the seed), 0 not one of them, -1 bad value
 * (message printed). */
int cli_parse_sampler_opt(vb_sampler_params *sp, int argc, char **argv, int *i);
/* Open model + context; prints the error and returns nonzero on failure. */
int cli_open(const cli_model_opts *o, vb_model **model, vb_context **ctx);
/* Value of option argv[*i] (advances *i); prints an error and returns NULL if missing. */
const char *cli_value(int argc, char **argv, int *i);
/* Decoder options shared by run, batch and serve: --decoder ar|wedlm|verify, --window, --tau,
 * --lambda, --draft-max, --mask-token, --wedlm-official, --wedlm-exact. Same returns as
 * cli_parse_sampler_opt. */
int cli_parse_decoder_opt(vb_generate_params *gp, int argc, char **argv, int *i);
/* The one place the default decoder is decided (run, chat, serve): when no --decoder was given
 * (gp->decoder < 0), wedlm for a file whose general.architecture is wedlm (a WeDLM checkpoint)
 * and that has a mask token, else ar. */
void cli_default_decoder(vb_generate_params *gp, const vb_model_info *info);
/* enum vb_decoder of "ar", "wedlm", "verify" (-1: none of them), and back. */
int cli_decoder_from_name(const char *name);
const char *cli_decoder_name(int decoder);
bool cli_parse_int(const char *s, long lo, long hi, long *out);
bool cli_parse_float(const char *s, float *out);
/* Print s (len bytes; ill-formed UTF-8 becomes U+FFFD) as a JSON string literal. */
void cli_json_string(FILE *f, const char *s, size_t len);
#ifdef VB_HAVE_JANSSON
#include <jansson.h>
/* A JSON string of s (ill-formed UTF-8 becomes U+FFFD); NULL when out of memory. */
json_t *cli_json_text(const char *s, size_t len);
/* Write j compactly to f and release it; returns 0 or -1. */
int cli_json_print(FILE *f, json_t *j);
#endif
/* The text of a prompt file ("-": stdin); NULL (message printed) for a directory, a missing or
 * unreadable file. *len receives its length. */
char *cli_read_prompt_file(const char *path, size_t *len);
/* A random seed in [0, 2^31) (so that --seed can repeat the run). */
uint64_t cli_random_seed(void);
/* threads, or 4x the CPU count when larger (with a warning). */
int cli_clamp_threads(int threads);
/* Parse "1,2,3" into a malloc'd array; returns count or -1. */
int cli_parse_int_list(const char *s, int **out);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_score(int argc, char **argv);

#endif
