/* http_api.h - the OpenAI-compatible JSON layer of `vibee serve` (jansson): parse request bodies
 * of /v1/completions and /v1/chat/completions into native srv_job fields (with the chat
 * template applied; one job per prompt and choice) and of /v1/embeddings into a srv_embed_job
 * (inputs tokenized), refuse every field it does not implement with a 400 naming it, and format
 * responses, stream chunks, embeddings, model lists, /tokenize, /detokenize, /props and errors.
 * JSON never reaches the engine. */
#ifndef VB_HTTP_API_H
#define VB_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "http_engine.h"

#define API_MAX_CHOICES 64 /* prompts x n per request */

typedef struct api_limits {
    int32_t max_tokens;      /* largest accepted max_tokens */
    int32_t default_tokens;  /* max_tokens when the request gives none (chat) */
    bool chatml;             /* without api_use_chat_template: the built-in ChatML template, else "plain" */
    int32_t n_vocab;         /* token ids (prompts, logit_bias) must be below it */
} api_limits;

/* Chat requests render with t (vb_chat_template_for_model; model gives the BOS / EOS texts)
 * from now on; both must outlive the server. Call once before serving. */
void api_use_chat_template(const vb_chat_template *t, const vb_model *model);

/* A parsed completion request: jobs[k] answers prompt k / n with choice index k. */
typedef struct api_request {
    bool chat;
    bool stream;
    bool include_usage;      /* stream_options.include_usage: a last chunk with usage */
    bool echo;               /* completions: the prompt text starts each choice */
    int32_t n_logprobs;      /* -1: no log-probabilities; else alternatives per token (0..20) */
    int32_t n;               /* choices per prompt */
    int32_t n_prompts;
    int32_t n_jobs;          /* n_prompts * n */
    srv_job *jobs[API_MAX_CHOICES];
    uint64_t seed;           /* seed of choice 0 of each prompt (choice i: seed + i) */
    const char *tool_format; /* chat with tools and tool_choice not "none": outputs are parsed for
                                calls in this format (vb_chat_tool_format); NULL: plain text */
    bool tool_parallel;      /* parallel_tool_calls (default true): else at most one call */
} api_request;

/* Parse a request body into req (jobs ready for srv_engine_submit). Returns 0, or an HTTP
 * status (400) with a message in err and the offending field name in *param (or NULL). Call
 * api_request_free afterwards in both cases. */
int api_parse_request(const char *body, size_t len, bool chat, const api_limits *lim, api_request *req,
                      char *err, size_t err_len, const char **param);
/* Drop the HTTP side's reference of every job. */
void api_request_free(srv_engine *e, api_request *req);

/* A message for clients: a library message without its leading "vb_function: " part. */
const char *api_public_message(const char *msg);

/* One choice of a finished request. */
typedef struct api_choice {
    const char *text;
    size_t text_len;
    const char *finish;      /* "stop", "length", "timeout", "abort" */
    const char *tool_calls;  /* chat: a JSON array of OpenAI tool_calls (api_tool_calls; text is then
                                the content before them, finish "tool_calls"), or NULL */
} api_choice;

/* Response bodies (malloc'd, NUL-terminated JSON; NULL when out of memory). */
char *api_error_json(const char *message, const char *type, const char *param);
char *api_models_json(const char *model_name, const char *chat_template);
/* The whole non-streaming answer. */
char *api_result_json(bool chat, const char *id, long created, const char *model, const api_choice *choices,
                      int n_choices, int n_prompt, int n_generated, uint64_t seed);
/* Add the vibee extension object {"decoder", "n_forward", "tokens_per_forward"} to a result
 * (takes and frees result_json; NULL on failure). */
char *api_add_decoding(char *result_json, const char *decoder, long long n_forward, int n_generated);
/* One streaming chunk of choice `index`: a text delta (may be empty), and finish (NULL while
 * running). For chat, first adds the assistant role to the delta. */
char *api_chunk_json(bool chat, const char *id, long created, const char *model, int index, const char *text,
                     size_t text_len, const char *finish, bool first);
/* Set choice `index`'s "logprobs" in a result or chunk (takes and frees json; NULL on failure)
 * to the OpenAI object of tokens lp[n]: chat {content: [{token, logprob, bytes, top_logprobs}],
 * refusal}, completions {tokens, token_logprobs, top_logprobs, text_offset} (offsets in
 * characters, + offset_base). Token texts are strict UTF-8 (a partial character becomes U+FFFD; chat's bytes
 * keep the raw bytes); a log-probability of -inf is written as -9999. */
char *api_add_logprobs(char *json, bool chat, const vb_model *model, int index, const srv_token_lp *lp, int32_t n,
                       size_t offset_base);
/* Tool calls of a finished choice's text when req->tool_format is set: a JSON array (malloc'd;
 * only the first call unless req->tool_parallel) or NULL, and the bytes of text before them.
 * cut: the choice ended at max_tokens (the complete calls before an unfinished one count; the
 * finish reason stays "length"). */
char *api_tool_calls(const api_request *req, const char *text, size_t len, bool cut, size_t *content_len);
/* While streaming: the leading bytes of text that can go out as content (all without tools). */
size_t api_tool_content_len(const api_request *req, const char *text, size_t len);
/* A stream chunk with a choice's tool calls (calls: as api_tool_calls gives them), each with its
 * index, id, type and function {name, arguments}. */
char *api_tool_calls_chunk_json(const char *id, long created, const char *model, int index, const char *calls,
                                bool first);
/* The last chunk of a stream with stream_options.include_usage: no choices, usage counts. */
char *api_usage_chunk_json(bool chat, const char *id, long created, const char *model, int n_prompt,
                           int n_generated);

/* /v1/embeddings {"input", "model", "encoding_format", "dimensions", "user"}: input is a string,
 * an array of strings, an array of token ids or an array of such arrays (mixed allowed; at most
 * API_MAX_EMBED_INPUTS); strings are tokenized with the model's BOS when it wants one, never
 * parsing special tokens. dimensions must equal n_embd. Returns 0 with *job (pooling set) and
 * *base64, or an HTTP status (400) with err and the offending field in *param (*job NULL). */
#define API_MAX_EMBED_INPUTS 2048
int api_parse_embeddings(const vb_model *model, int32_t pooling, const char *body, size_t len,
                         srv_embed_job **job, bool *base64, char *err, size_t err_len, const char **param);
/* The answer to a finished job: {"object": "list", "data": [{"object": "embedding", "index",
 * "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}; an embedding is an array of
 * numbers or, with base64, the base64 text of its little-endian f32 values. NULL when out of memory. */
char *api_embeddings_json(const srv_embed_job *job, int32_t n_embd, bool base64, const char *model);

/* /tokenize {"content", "add_special" (false), "parse_special" (true), "with_pieces" (false)}
 * and /detokenize {"tokens"}: the answer body in *out; returns the HTTP status (200 or 400
 * with an error body). */
int api_tokenize(const vb_model *model, const char *body, size_t len, char **out);
int api_detokenize(const vb_model *model, const char *body, size_t len, char **out);

/* /props: model, chat template, slots, defaults and limits. */
typedef struct api_props {
    const char *model_name;
    const char *chat_template;
    int32_t total_slots;
    int32_t n_vocab;
    int32_t kv_tokens;       /* KV pool capacity in tokens */
    int32_t max_tokens, default_tokens;
    size_t max_body;
    double timeout_s;
    unsigned max_connections, max_connections_per_ip, idle_timeout_s;
    bool api_key;            /* --api-key is set */
} api_props;
char *api_props_json(const api_props *p);

#endif
