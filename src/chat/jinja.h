/* jinja.h - a bounded interpreter for the subset of Jinja2 that chat templates use (the
 * tokenizer.chat_template of Llama 3, Mistral, Gemma, Phi-3, Qwen2.5/3, SmolLM2, DeepSeek ...),
 * rendering the way Hugging Face transformers does (trim_blocks, lstrip_blocks, loop controls,
 * raise_exception, tojson with ensure_ascii=False, strftime_now, macros, block set). Every byte
 * of the output is marked as coming from the template text or from the caller's data (message
 * contents, roles, tools), so that special tokens can be parsed only where the template put them. Bounded:
 * template size, parse depth, evaluation steps, wall time, memory and output size; failures
 * return a status and a message naming the construct and the line. */
#ifndef VB_CHAT_JINJA_H
#define VB_CHAT_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vb_jinja vb_jinja;

typedef struct vb_jinja_limits {
    size_t max_template;   /* bytes of template source (default 1 MiB) */
    size_t max_output;     /* bytes of rendered text (default 16 MiB) */
    size_t max_memory;     /* bytes the renderer may allocate (default 256 MiB) */
    int64_t max_steps;     /* evaluation steps (default 50 M) */
    double max_seconds;    /* wall time of one render (default 5 s) */
    int max_depth;         /* nesting of expressions and blocks (default 256) */
} vb_jinja_limits;

vb_jinja_limits vb_jinja_default_limits(void);

/* Parse a template. Returns VB_OK, VB_ERR_FORMAT (syntax error), VB_ERR_UNSUPPORTED (a
 * construct outside the subset, named in err), VB_ERR_ARG (too large), VB_ERR_NOMEM. */
int vb_jinja_parse(const char *src, size_t len, const vb_jinja_limits *lim, vb_jinja **out,
                   char *err, size_t err_len);
void vb_jinja_free(vb_jinja *t);

/* Variables of one render: JSON object text whose members become variables whose strings are
 * marked as data (user = 1), plus plain strings marked as template text (user = 0). */
typedef struct vb_jinja_var {
    const char *name;
    const char *str;   /* a string variable (template-side, e.g. bos_token), or NULL */
    int boolean;       /* when str is NULL: -1 none, 0 false, 1 true */
} vb_jinja_var;

/* Render. data_json: a JSON object (may be NULL) whose members are variables marked as data.
 * *text (malloc'd, NUL-terminated) and *user (malloc'd, [*len] bytes, 1 where the byte came
 * from data) receive the result. Returns VB_OK; VB_ERR_ARG (bad JSON, or a step / time /
 * output limit hit: err names it); VB_ERR_STATE (raise_exception, or a runtime error in the
 * template: err says which); VB_ERR_UNSUPPORTED (a filter or test outside the subset);
 * VB_ERR_NOMEM (also the memory limit). */
int vb_jinja_render(const vb_jinja *t, const char *data_json, size_t data_len,
                    const vb_jinja_var *vars, int n_vars, char **text, uint8_t **user,
                    size_t *len, char *err, size_t err_len);

#endif
