/* http_api.h - the OpenAI-compatible JSON layer of `vibee serve` (jansson): parse request bodies
 * of /v1/completions and /v1/chat/completions into native srv_job fields (with the chat
 * template applied), and format responses, stream chunks, model lists and errors. JSON never
 * reaches the engine. */
#ifndef VB_HTTP_API_H
#define VB_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "http_engine.h"

typedef struct api_limits {
    int32_t max_tokens;      /* largest accepted max_tokens */
    int32_t default_tokens;  /* max_tokens when the request gives none (chat) */
    bool chatml;             /* without api_use_chat_template: the built-in ChatML template, else "plain" */
} api_limits;

/* Chat requests render with t (vb_chat_template_for_model; model gives the BOS / EOS texts)
 * from now on; both must outlive the server. Call once before serving. */
void api_use_chat_template(const vb_chat_template *t, const vb_model *model);

/* Parse a request body into job (prompt, params, stop strings) and *stream. Returns 0, or an
 * HTTP status (400) with a message in err and the offending field name in *param (or NULL). */
int api_parse_request(const char *body, size_t len, bool chat, const api_limits *lim, srv_job *job,
                      bool *stream, char *err, size_t err_len, const char **param);

/* Response bodies (malloc'd, NUL-terminated JSON; NULL when out of memory). */
char *api_error_json(const char *message, const char *type, const char *param);
char *api_models_json(const char *model_name, const char *chat_template);
/* The whole non-streaming answer of a finished job. */
char *api_result_json(bool chat, const char *id, long created, const char *model, const char *text,
                      size_t text_len, const char *finish, int n_prompt, int n_generated);
/* One streaming chunk: a text delta (may be empty), and finish (NULL while running). For chat,
 * first adds the assistant role to the delta. */
char *api_chunk_json(bool chat, const char *id, long created, const char *model, const char *text,
                     size_t text_len, const char *finish, bool first);

#endif
