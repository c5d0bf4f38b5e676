/* vibee.h - the one public header of libvibee, a transformer inference engine in C.
 *
 * Concepts:
 *   vb_model    a loaded model: hyper-parameters, weights (format-specific), tokenizer.
 *   vb_context  one backend instance over a model: its KV cache (many sequences),
 *               the batch forward (docs/architecture.md), statistics, an error string.
 *   vb_batch    struct-of-arrays batch: token, logical position, sequence id, want_logits.
 *   vb_sampler  greedy / temperature / top-k / top-p / min-p / repetition penalty, seeded.
 *   vb_generate decoders over the forward primitive: AR, WeDLM, draft-and-verify.
 *
 * Status codes: 0 ok, positive = soft condition (e.g. KV cache full), negative = error.
 * The library never exits or aborts on bad input. Every failing call leaves a message
 * in the handle's error string (vb_context_error / the err buffer of vb_model_load).
 *
 * Thread safety: distinct handles may be used from distinct threads; one handle must not
 * be used from two threads at once. A vb_model may be shared read-only by several contexts.
 */
#ifndef VIBEE_H
#define VIBEE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VIBEE_VERSION "0.1.0"

typedef int32_t vb_token; /* token id, 0 <= id < n_vocab */
typedef int32_t vb_pos;   /* logical position (RoPE angle / position-embedding row) */
typedef int32_t vb_seq;   /* sequence id, 0 <= id < n_seq_max */

enum vb_status {
    VB_OK = 0,
    VB_KV_FULL = 1,          /* soft: the KV block pool cannot hold the rows; nothing was changed */
    VB_ERR_ARG = -1,         /* invalid argument (NULL, out of range token/seq/position, bad option) */
    VB_ERR_NOMEM = -2,       /* allocation failed */
    VB_ERR_IO = -3,          /* file could not be opened / read / written */
    VB_ERR_FORMAT = -4,      /* malformed or hostile file contents */
    VB_ERR_UNSUPPORTED = -5, /* valid but not supported (architecture, type, feature) */
    VB_ERR_BACKEND = -6,     /* backend failure (unknown backend, missing optional library, runtime error) */
    VB_ERR_STATE = -7,       /* call not valid in this state */
};

/* Static English name of a status code ("ok", "kv cache full", ...). Never NULL. */
const char *vb_status_str(int status);

/* ------------------------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------------------------ */

typedef struct vb_model vb_model;

typedef struct vb_model_info {
    char arch[32];       /* "gpt2", "llama", "qwen2", "qwen3", "sim" */
    char name[64];       /* general.name or file stem */
    int32_t n_vocab;
    int32_t n_ctx_train; /* trained context length (0 if unknown) */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int64_t n_params;    /* number of weight elements (0 if unknown) */
    int64_t weight_bytes;/* bytes of weights read per token in a decode step (0 if unknown) */
    char weight_type[16];/* dominant weight type: "f32", "f16", "q8_0", ... */
    vb_token bos;        /* -1 when absent */
    vb_token eos;        /* -1 when absent */
    vb_token mask;       /* WeDLM mask token, -1 when absent (tokenizer.ggml.mask_token_id) */
    bool add_bos;        /* tokenizer wants BOS prepended */
    bool has_tokenizer;
} vb_model_info;

typedef struct vb_model_params {
    bool use_mmap;       /* map the file instead of reading it (default true) */
    const char *vocab_path; /* optional GGUF file to take the tokenizer from (NULL: the model's own) */
} vb_model_params;

vb_model_params vb_model_default_params(void);

/* Load a model. `path` is a GGUF file, the literal "sim" (the deterministic simulated
 * model, see vb_sim_params), or a backend-specific path (e.g. an ONNX model directory).
 * On success *out owns the model; free it with vb_model_free. On failure *out is NULL
 * and `err` (if not NULL) receives a message naming the file, the problem and the fix.
 * Returns VB_OK, VB_ERR_IO, VB_ERR_FORMAT, VB_ERR_UNSUPPORTED, VB_ERR_NOMEM, VB_ERR_ARG. */
int vb_model_load(const char *path, const vb_model_params *params, vb_model **out, char *err,
                  size_t err_len);

/* Same from a caller-owned memory image of a GGUF file; the memory must outlive the model. */
int vb_model_load_from_memory(const void *data, size_t size, const char *name,
                              const vb_model_params *params, vb_model **out, char *err,
                              size_t err_len);

/* The model embedded in the library (models/wedlm-py-6m-f16.gguf), or NULL/size 0 if the
 * build has none. */
const void *vb_embedded_model(size_t *size);

/* Parameters of the simulated model ("sim"): a deterministic pseudo language model. */
typedef struct vb_sim_params {
    int32_t n_vocab;   /* >= 258 (default 258): tokens 0..255 are bytes (the sim model's
                          tokenizer is byte-level), n_vocab-2 is EOS, n_vocab-1 is MASK */
    float peak;        /* logit margin of the preferred token; larger = more peaked (default 8) */
    uint64_t seed;     /* changes the pseudo language (default 1) */
} vb_sim_params;
vb_sim_params vb_sim_default_params(void);
int vb_model_load_sim(const vb_sim_params *params, vb_model **out, char *err, size_t err_len);

void vb_model_free(vb_model *model); /* NULL is ignored */
const vb_model_info *vb_model_get_info(const vb_model *model); /* owned by the model */

/* Metadata lookup (GGUF key) as text, e.g. "general.architecture". Returns bytes written
 * (excluding NUL) or a negative status if the key is absent. */
int vb_model_meta_str(const vb_model *model, const char *key, char *buf, size_t buf_len);

/* ------------------------------------------------------------------------------------------
 * Tokenizer (from the model's GGUF metadata)
 * ------------------------------------------------------------------------------------------ */

/* Encode UTF-8 text. add_special: prepend BOS if the model asks for it. parse_special:
 * recognise special-token strings such as "<|endoftext|>" in the text. Writes at most
 * max_tokens ids; returns the total number of tokens (may exceed max_tokens: call again
 * with a larger buffer) or a negative status. */
int vb_tokenize(const vb_model *model, const char *text, size_t text_len, bool add_special,
                bool parse_special, vb_token *out, int32_t max_tokens);

/* True when `token` ends a turn or a document: EOS, EOT, <|im_end|>, <|eot_id|>, ... */
bool vb_token_is_eog(const vb_model *model, vb_token token);

/* The bytes of one token (byte-level BPE pieces are decoded to raw bytes; may be a partial
 * UTF-8 sequence). Returns the number of bytes (may exceed buf_len: nothing then written
 * beyond buf_len) or a negative status. Not NUL-terminated. */
int vb_token_to_bytes(const vb_model *model, vb_token token, char *buf, size_t buf_len);

/* ------------------------------------------------------------------------------------------
 * Strict UTF-8: every text vibee emits (CLI, JSON, SSE) passes through these.
 * Well-formed means RFC 3629: no overlongs, surrogates, code points above U+10FFFF or stray
 * continuation bytes. Each maximal ill-formed subpart becomes one U+FFFD (Unicode's
 * recommended practice, as Python's errors="replace" and WHATWG decoders do).
 * ------------------------------------------------------------------------------------------ */

/* Copy s[n] into out replacing ill-formed bytes by U+FFFD; NUL-terminates. Returns the length
 * of the whole result (at most 3n); when that is >= out_cap nothing but "" is written (call
 * again with a larger buffer). out may be NULL to measure. */
size_t vb_utf8_sanitize(const char *s, size_t n, char *out, size_t out_cap);

/* Streaming form: bytes arrive in pieces; an incomplete sequence at the end of a piece is held
 * until the next piece completes it (written then) or breaks it (U+FFFD). Zero-initialise. */
typedef struct vb_utf8_stream {
    unsigned char pending[4];
    int n_pending;
} vb_utf8_stream;
/* Feed s[n]; writes the text complete so far to out (NUL-terminated). final: the stream ends,
 * held bytes become U+FFFD. out_cap must be >= 3 * (n + 3) + 1. Returns bytes written or
 * VB_ERR_ARG. */
int vb_utf8_stream_push(vb_utf8_stream *st, const char *s, size_t n, bool final, char *out,
                        size_t out_cap);

/* Streaming detokenizer: feeds tokens, emits only well-formed UTF-8 (vb_utf8_stream_push over
 * the token bytes). Zero-initialise. */
typedef struct vb_detok {
    vb_utf8_stream utf8;
} vb_detok;
/* Append the text of `token` to out (NUL-terminated, at most out_len-1 bytes, whole
 * characters only; an incomplete trailing sequence waits in d, ill-formed bytes become
 * U+FFFD). out_len >= 784 holds any token (a smaller buffer may cut the text at a
 * character boundary). Returns bytes written or < 0. */
int vb_detok_push(const vb_model *model, vb_detok *d, vb_token token, char *out, size_t out_len);
/* End of the stream: bytes still held (an incomplete sequence) become U+FFFD. */
int vb_detok_flush(vb_detok *d, char *out, size_t out_len);

/* ------------------------------------------------------------------------------------------
 * Chat templates: the model's Jinja chat template (GGUF tokenizer.chat_template) rendered by a
 * bounded interpreter of the Jinja subset chat templates use, as Hugging Face transformers
 * renders it (trim_blocks, lstrip_blocks, raise_exception, tojson, strftime_now, namespace).
 * The rendered prompt remembers which bytes came from the messages: those are tokenized
 * without recognising special tokens, so a user cannot inject <|im_end|> or EOS.
 * ------------------------------------------------------------------------------------------ */

typedef struct vb_chat_template vb_chat_template;

/* Parse template text. Returns VB_OK, VB_ERR_FORMAT (syntax error: line and reason in err),
 * VB_ERR_UNSUPPORTED (a construct outside the subset, named in err), VB_ERR_ARG (larger than
 * 1 MiB), VB_ERR_NOMEM. */
int vb_chat_template_parse(const char *src, size_t len, vb_chat_template **out, char *err,
                           size_t err_len);

/* The chat template of a model. `override` (may be NULL) is a built-in name ("chatml",
 * "llama3", "gemma", "phi3", "mistral", "plain") or a path of a file holding a Jinja
 * template; without it the model's tokenizer.chat_template, else a fallback: ChatML when
 * <|im_start|> and <|im_end|> are single tokens, else "plain" ("role: content" lines).
 * model may be NULL when override is a built-in name. */
int vb_chat_template_for_model(const vb_model *model, const char *override, vb_chat_template **out,
                               char *err, size_t err_len);
void vb_chat_template_free(vb_chat_template *t);
/* Where the template came from ("gguf", "file PATH", "builtin NAME", "fallback NAME") and its
 * source text; both owned by the template. */
const char *vb_chat_template_origin(const vb_chat_template *t);
const char *vb_chat_template_source(const vb_chat_template *t);

typedef struct vb_chat_prompt {
    char *text;    /* rendered prompt, NUL-terminated (malloc'd) */
    uint8_t *user; /* [len]: 1 where the byte came from the messages or tools (malloc'd) */
    size_t len;
} vb_chat_prompt;

/* Render. `json` is a JSON array of messages ({"role": ..., "content": ...}) or a JSON object
 * of template variables ({"messages": [...], "tools": [...], "enable_thinking": false, ...}).
 * bos_token / eos_token (may be NULL: "") are visible to the template as template text.
 * Returns VB_OK; VB_ERR_STATE when the template raised an exception or failed at run time
 * (err says why: e.g. "Conversation roles must alternate ..."); VB_ERR_ARG for bad JSON or a
 * limit hit (16 MiB of output, 50 M steps, 5 s); VB_ERR_UNSUPPORTED; VB_ERR_NOMEM. */
int vb_chat_template_apply(const vb_chat_template *t, const char *json, size_t json_len,
                           bool add_generation_prompt, const char *bos_token, const char *eos_token,
                           vb_chat_prompt *out, char *err, size_t err_len);
/* Same with the model's BOS / EOS token texts. */
int vb_chat_apply(const vb_model *model, const vb_chat_template *t, const char *json,
                  size_t json_len, bool add_generation_prompt, vb_chat_prompt *out, char *err,
                  size_t err_len);
void vb_chat_prompt_free(vb_chat_prompt *p);

/* Tool calls (OpenAI function calling) in the format of a template's model family, chosen from
 * the template text by one table (src/chat/tool_calls.c): "hermes" (<tool_call>\n{"name": N,
 * "arguments": A}\n</tool_call>: Qwen2.5/3, Hermes 3), "llama3" ({"name": N, "parameters": A},
 * one call), "mistral" ([TOOL_CALLS][{"name": N, "arguments": A}, ...]), "mistral-args"
 * ([TOOL_CALLS]N[ARGS]A), "granite" (<|tool_call|>[...]), "deepseek" (its tool-call markers), or
 * "generic" for templates with none of these (the hermes tags).
 * The functions below need a library built with jansson (else VB_ERR_UNSUPPORTED). */
const char *vb_chat_tool_format(const vb_chat_template *t);
/* Template variables (a JSON object with "messages", "tools", ...) in OpenAI's shape -> what the
 * template expects (*out malloc'd JSON): tool_calls[].function.arguments JSON strings parsed
 * into objects (except for "deepseek", whose template concatenates them); for a template that
 * never reads `tools`, the tools and the call format added to the system message; for one that
 * never reads `tool_calls`, earlier assistant calls written into their content in the format.
 * VB_ERR_ARG (err) for malformed tool_calls. */
int vb_chat_tool_vars(const vb_chat_template *t, const char *json, size_t len, char **out, char *err,
                      size_t err_len);
/* GBNF (malloc'd) whose sentences are calls of `tools` (a JSON array of {"type": "function",
 * "function": {"name", "description", "parameters"}}) in `format`: only the function named
 * `only` when not NULL (every tool is checked all the same); one or more calls when parallel
 * (and the format allows several), else
 * one; each call's arguments follow its parameters schema (vb_json_schema_to_gbnf). VB_ERR_ARG
 * with err naming the tool for a bad tool or a schema the converter refuses. */
int vb_chat_tool_grammar(const char *format, const char *tools, size_t len, const char *only, bool parallel,
                         char **gbnf, char *err, size_t err_len);
/* Generated text -> *calls: a JSON array (malloc'd) [{"id", "type": "function", "function":
 * {"name", "arguments": JSON text}}], NULL when the text is not calls in `format` (then all of
 * it is content); *content_len: the bytes before the calls. Only whitespace may follow them,
 * unless `cut` (the text ended at a token limit): then the complete calls before an unfinished
 * one count. */
int vb_chat_tool_parse(const char *format, const char *text, size_t len, bool cut, char **calls, size_t *content_len);
/* While streaming: the leading bytes of text that no call in `format` can be part of. */
size_t vb_chat_tool_content_len(const char *format, const char *text, size_t len);

/* Tokenize text recognising special-token strings only where no byte of them is marked in
 * user[text_len] (user NULL: everywhere, as vb_tokenize with parse_special). Same return
 * contract as vb_tokenize. */
int vb_tokenize_masked(const vb_model *model, const char *text, size_t text_len, bool add_special,
                       const uint8_t *user, vb_token *out, int32_t max_tokens);
/* Tokenize a rendered chat prompt: special tokens only in template text, BOS prepended when
 * the model asks for it and the template did not already put it first. */
int vb_tokenize_chat(const vb_model *model, const vb_chat_prompt *p, vb_token *out,
                     int32_t max_tokens);

/* ------------------------------------------------------------------------------------------
 * Contexts, batches, the forward primitive and KV operations
 * ------------------------------------------------------------------------------------------ */

typedef struct vb_context vb_context;

/* KV cache element types. Q8_0 (llama.cpp's -ctk q8_0 -ctv q8_0): blocks of 32 values with one
 * f16 scale, 34 bytes for 32 values (0.27x F32); the cpu and llamacpp backends store it, and on
 * the cpu backend the head size must be a multiple of 32. */
enum vb_kv_type { VB_KV_F32 = 0, VB_KV_F16 = 1, VB_KV_Q8_0 = 2 };

typedef struct vb_context_params {
    const char *backend;  /* "cpu", "sim", "llamacpp", "onnx", "cuda"; NULL = by model format
                             (sim model: "sim", ONNX model: "onnx", GGUF: "cpu") */
    int32_t n_threads;    /* 0 = number of physical cores */
    int32_t n_ctx;        /* KV capacity in tokens over all sequences (0 = model's trained
                             context, at most 4096) */
    int32_t n_seq_max;    /* number of sequence ids (default 16) */
    int32_t n_batch_max;  /* most rows in one forward (default 512) */
    int32_t block_size;   /* KV block size in tokens (default 16) */
    int32_t kv_type;      /* enum vb_kv_type (default VB_KV_F32) */
    const char *backend_options; /* backend-specific "key=value,..." (NULL = none) */
    const char *cost_cache_path; /* text file that keeps the decoders' measured cost of K-row
                                    forwards across processes, keyed by model, backend, threads
                                    and build (NULL = keep it in the context only). A missing,
                                    unreadable or malformed file is ignored; writes replace the
                                    file atomically (write + rename). The CLI passes
                                    $VIBEE_COST_CACHE or ~/.cache/vibee/cost-tables.tsv */
} vb_context_params;

vb_context_params vb_context_default_params(void);

/* Create a context (a backend instance) over a model. The model must outlive the context.
 * On failure *out is NULL and err receives the reason (e.g. unknown backend, missing
 * optional library and how to install it). */
int vb_context_init(vb_model *model, const vb_context_params *params, vb_context **out,
                    char *err, size_t err_len);
void vb_context_free(vb_context *ctx); /* NULL is ignored */

/* Last error message of this context ("" if none). Owned by the context. */
const char *vb_context_error(const vb_context *ctx);
const vb_model *vb_context_model(const vb_context *ctx);

typedef struct vb_backend_caps {
    bool physical_causality; /* attention is causal in physical row order (docs/architecture.md); if false
                                the backend masks by logical position and rejects batches
                                whose positions go backwards */
    bool paged_kv;           /* the backend's K/V live in vibee's paged block cache */
    bool kv_fork;            /* vb_kv_fork is supported */
    int32_t max_batch;       /* most rows per forward */
} vb_backend_caps;

const char *vb_context_backend_name(const vb_context *ctx);
vb_backend_caps vb_context_caps(const vb_context *ctx);
/* Number of sequence ids of the context (n_seq_max; 0 for NULL). */
int32_t vb_context_n_seq(const vb_context *ctx);
/* Free blocks of the context's paged KV pool (-1: the backend keeps its own KV, e.g. llamacpp). */
int32_t vb_kv_blocks_free(const vb_context *ctx);

/* A struct-of-arrays batch. Rows are appended to each sequence's KV in array order. */
typedef struct vb_batch {
    int32_t n;             /* number of rows in use */
    int32_t capacity;      /* allocated rows */
    vb_token *token;       /* [capacity] */
    vb_pos *pos;           /* [capacity] logical positions */
    vb_seq *seq;           /* [capacity] */
    int8_t *want_logits;   /* [capacity] nonzero: return logits for this row */
} vb_batch;

/* Allocate a batch with room for `capacity` rows (n = 0). Returns NULL on failure. */
vb_batch *vb_batch_init(int32_t capacity);
void vb_batch_free(vb_batch *batch);
/* Append one row; returns VB_OK or VB_ERR_ARG when full. */
int vb_batch_add(vb_batch *batch, vb_token token, vb_pos pos, vb_seq seq, bool want_logits);
static inline void vb_batch_clear(vb_batch *batch) { batch->n = 0; }

/* The forward primitive (docs/architecture.md). For every sequence, rows are appended to its KV after
 * the rows already there, in the batch's order; row t attends to every KV row of its sequence
 * already cached and to the batch rows of its sequence up to and including itself, whatever
 * their logical positions. Logits are produced for rows with want_logits.
 * Returns VB_OK; VB_KV_FULL (soft: no sequence changed); VB_ERR_ARG (bad token, seq,
 * position or size; no sequence changed); other errors with vb_context_error set. */
int vb_forward(vb_context *ctx, const vb_batch *batch);

/* Logits of batch row i of the last forward ([n_vocab] floats, owned by the context, valid
 * until the next forward), or NULL if row i did not ask for logits. */
const float *vb_get_logits(const vb_context *ctx, int32_t i);

/* KV operations. */
int32_t vb_kv_seq_len(const vb_context *ctx, vb_seq seq); /* rows held, or < 0 on bad seq */
int vb_kv_truncate(vb_context *ctx, vb_seq seq, int32_t n_keep); /* drop rows n_keep.. */
int vb_kv_fork(vb_context *ctx, vb_seq src, vb_seq dst);          /* dst := copy-on-write copy of src (dst must be empty) */
int vb_kv_free_seq(vb_context *ctx, vb_seq seq);                  /* drop all rows of seq */

typedef struct vb_kv_stats {
    int32_t block_size;
    int32_t blocks_total;
    int32_t blocks_used;      /* blocks referenced by at least one sequence */
    int64_t tokens_stored;    /* rows over all sequences, shared rows counted once */
    int64_t slots_allocated;  /* blocks_used * block_size */
    int64_t bytes_total;      /* bytes of the block pool */
    int64_t bytes_used;       /* bytes of used blocks */
    double waste;             /* (slots_allocated - tokens_stored) / slots_allocated, 0 if none */
    int32_t n_seq_active;
} vb_kv_stats;

typedef struct vb_stats {
    int64_t n_forward;        /* forwards run */
    int64_t n_rows;           /* batch rows processed */
    int64_t n_logit_rows;     /* rows with logits produced */
    double forward_seconds;   /* wall time spent in forward */
    vb_kv_stats kv;
} vb_stats;

vb_stats vb_context_stats(const vb_context *ctx);
void vb_context_reset_stats(vb_context *ctx);

/* ------------------------------------------------------------------------------------------
 * Embeddings: the model's final hidden states (after the output norm, before the output
 * matrix) of a whole input, pooled as llama.cpp's --pooling does
 * ------------------------------------------------------------------------------------------ */

enum vb_pooling {
    VB_POOLING_NONE = 0, /* every token's hidden state: out is [n_tokens][n_embd] */
    VB_POOLING_MEAN = 1, /* the mean over the tokens: out is [n_embd] */
    VB_POOLING_CLS = 2,  /* the first token's (in a causal model it sees only itself) */
    VB_POOLING_LAST = 3, /* the last token's (the one that has seen the whole input) */
};

typedef struct vb_embed_params {
    int32_t pooling; /* enum vb_pooling (default VB_POOLING_MEAN) */
    bool normalize;  /* scale each output vector to unit Euclidean length (default true) */
    vb_seq seq;      /* the sequence to run in, which must be empty and is emptied again
                        afterwards; -1 = the first empty one (default) */
} vb_embed_params;

vb_embed_params vb_embed_default_params(void);

/* Run tokens[n_tokens] at positions 0..n_tokens-1 on one sequence (in chunks of the backend's
 * batch limit) and write the pooled hidden states to out[out_len]; the sequence's KV rows are
 * released before returning, whatever happened. params NULL: defaults. Returns VB_OK;
 * VB_ERR_UNSUPPORTED when the backend cannot return hidden states (only cpu can);
 * VB_ERR_ARG (empty input, bad pooling, out too small, input longer than the model's trained
 * context or the whole KV cache); VB_ERR_STATE (no empty sequence, or params->seq not empty);
 * VB_KV_FULL (soft: the KV pool has too few free blocks now); other errors of vb_forward. */
int vb_embed(vb_context *ctx, const vb_token *tokens, int32_t n_tokens, const vb_embed_params *params,
             float *out, int64_t out_len);

/* ------------------------------------------------------------------------------------------
 * Sampling
 * ------------------------------------------------------------------------------------------ */

/* An additive bias on one token's logit (OpenAI's logit_bias). */
typedef struct vb_logit_bias {
    vb_token token;
    float bias;
} vb_logit_bias;

typedef struct vb_sampler_params {
    float temp;            /* 0 = greedy (default 0) */
    int32_t top_k;         /* 0 = off */
    float top_p;           /* 1 = off */
    float min_p;           /* 0 = off */
    float repeat_penalty;  /* 1 = off */
    int32_t repeat_last_n; /* window of recent tokens the penalties look at (default 64) */
    uint64_t seed;         /* RNG seed (default 42) */
    /* OpenAI-style penalties over the same window: logit -= count * frequency_penalty +
       (count > 0) * presence_penalty, count = occurrences of the token in the window */
    float presence_penalty;  /* 0 = off */
    float frequency_penalty; /* 0 = off */
    const vb_logit_bias *logit_bias; /* [n_logit_bias] added to the logits before anything
                                        else; copied by vb_sampler_init (may be NULL) */
    int32_t n_logit_bias;
} vb_sampler_params;

vb_sampler_params vb_sampler_default_params(void);

typedef struct vb_sampler vb_sampler;
vb_sampler *vb_sampler_init(const vb_sampler_params *params); /* NULL on failure */
void vb_sampler_free(vb_sampler *s);
/* Choose a token from logits[n_vocab]. `history` (may be NULL) feeds the repetition penalty.
 * `banned` (may be -1) is never chosen. Does not modify logits. Returns the token or < 0. */
vb_token vb_sampler_sample(vb_sampler *s, const float *logits, int32_t n_vocab,
                           const vb_token *history, int32_t n_history, vb_token banned);

/* ------------------------------------------------------------------------------------------
 * Generation (decoders over the forward primitive)
 * ------------------------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------------------------
 * Grammars (constrained sampling)
 * ------------------------------------------------------------------------------------------ */

/* A compiled context-free grammar. Given in vb_generate_params.grammar, every sampled token must
 * keep the output a prefix of a sentence of the grammar: tokens that cannot are masked out of
 * the logits at each step (the run copies the grammar; it may be freed after the submit). EOS
 * is allowed only where the output is a complete sentence, control tokens never; generation
 * stops (finish "stop") once the output is complete and nothing can follow. Every decoder obeys
 * it: AR and verify sample each committed token from a masked row (drafts are checked exactly);
 * WeDLM switches to exact mode (every fill checked against the masked AR row). */
typedef struct vb_grammar vb_grammar;

/* Parse a grammar in GBNF (llama.cpp's format; subset: rules `name ::= ...`, "literals" with
 * escapes, [character classes] and [^negated], `.`, ( groups ), |, postfix * + ? {m} {m,}
 * {m,n}, # comments; the start rule is `root`). Left-recursive rules are rejected. Returns
 * VB_OK, VB_ERR_ARG (err says what and which line) or VB_ERR_NOMEM. */
int vb_grammar_parse(const char *gbnf, size_t len, vb_grammar **out, char *err, size_t err_len);

/* A JSON schema (JSON text) as GBNF text (malloc'd, NUL-terminated; free with free()). Supports
 * type object (properties, required, additionalProperties: false unless given as true or a
 * schema), array (items, minItems, maxItems), string (minLength, maxLength), number, integer,
 * boolean, null, type lists, enum, const, anyOf / oneOf, local $ref (#/$defs/..,
 * #/definitions/..), nested. Whitespace between tokens: at most one space or newline run.
 * VB_ERR_UNSUPPORTED when the library was built without jansson. */
int vb_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, char *err, size_t err_len);
/* vb_json_schema_to_gbnf then vb_grammar_parse. */
int vb_grammar_from_json_schema(const char *schema, size_t len, vb_grammar **out, char *err,
                                size_t err_len);
void vb_grammar_free(vb_grammar *g); /* NULL is ignored */

enum vb_decoder { VB_DECODER_AR = 0, VB_DECODER_WEDLM = 1, VB_DECODER_VERIFY = 2 };

/* Called for each committed token in order; return false to stop generation. */
typedef bool (*vb_token_callback)(vb_token token, void *user);

#define VB_HIST_MAX 33

/* Log-probabilities of one committed token (vb_generate_params.n_logprobs >= 0), from the
 * log-softmax of the raw logits row the token was committed from, in double: temperature 1 and
 * before logit_bias, penalties, top-k / top-p / min-p and grammar masks, i.e. the model's own
 * distribution, as OpenAI reports it (NaN logits count as -inf). The row: AR and verify, the row
 * the token was sampled from; WeDLM, the window row the slot was filled from, or in exact mode
 * the AR row that checked it (the same row AR would have used). */
#define VB_LOGPROBS_MAX 20
typedef struct vb_token_logprob {
    vb_token token;
    float logprob;
} vb_token_logprob;
typedef struct vb_logprobs {
    vb_token token;      /* the committed token */
    float logprob;       /* its log-probability (-inf if its logit is -inf or NaN) */
    int32_t n_top;       /* entries in top: n_logprobs (fewer only for a smaller vocabulary) */
    vb_token_logprob top[VB_LOGPROBS_MAX]; /* the most likely tokens, logprob descending (ties:
                                              lower id first); may or may not hold `token` */
} vb_logprobs;

typedef struct vb_generate_params {
    int32_t decoder;          /* enum vb_decoder */
    int32_t n_predict;        /* tokens to generate (default 128) */
    vb_seq seq;               /* sequence id to use (default 0; must be empty unless reuse_kv) */
    bool reuse_kv;            /* vb_generate only: the rows seq already holds are the KV of
                                 prompt[0 .. rows) (the caller keeps them in step, e.g. a chat
                                 truncates the sequence to the common prefix of the previous and
                                 the new prompt with vb_kv_truncate); only prompt[rows ..) is
                                 forwarded. rows must be < n_prompt (default false) */
    vb_sampler_params sampler;
    bool stop_at_eos;         /* stop when EOS is committed (default true) */
    /* WeDLM */
    int32_t window;           /* W (default 16; 0 = choose from measured cost(K)) */
    float tau;                /* entropy threshold in nats (default 0.4) */
    float lambda;             /* distance penalty per slot (default 0.02) */
    vb_token mask_token;      /* -1 = from the model */
    /* draft-and-verify */
    int32_t draft_max;        /* most drafted tokens per verify forward (default 0 = auto: the
                                 length maximising expected tokens/s from the measured cost(K)
                                 and the observed acceptance) */
    int32_t ngram_min;        /* shortest n-gram matched for prompt lookup (default 2) */
    vb_token_callback on_token; /* optional */
    void *user;
    const vb_grammar *grammar; /* optional: constrain the output (see vb_grammar; NULL = none) */
    /* WeDLM variants (not in the official engine; see models/wedlm-py-6m.md) */
    bool wedlm_d0_ar;             /* score and fill the leftmost mask from the AR logits row of the
                                     last committed token (default true) */
    bool wedlm_leftmost_fallback; /* no mask under tau: fill the leftmost mask instead of the best
                                     score (default true). A step still commits nothing when
                                     some mask other than the leftmost qualifies and the leftmost
                                     stays a mask; only prefix-only backends (llama.cpp) commit
                                     >= 1 token per step */
    bool wedlm_exact;             /* check every filled slot against the AR row of the token
                                     before it when that row is forwarded (the next step), as
                                     draft-and-verify does: commit only tokens that row would
                                     have sampled, replace the first that is not and re-mask
                                     the slots after it. Greedy output then equals AR greedy for
                                     any tau (default false) */
    /* log-probabilities (vb_logprobs): computed only when asked, one pass over the vocabulary
       per committed token */
    int32_t n_logprobs;       /* -1: off (default); 0: each committed token's own; 1..20
                                 (VB_LOGPROBS_MAX): also that many top alternatives */
    vb_logprobs *logprobs;    /* vb_generate only: optional [max_out] output, entry i for out[i]
                                 (with n_logprobs >= 0); the scheduler has vb_sched_logprobs */
} vb_generate_params;

vb_generate_params vb_generate_default_params(void);

typedef struct vb_generate_stats {
    int32_t n_prompt;
    int32_t n_prompt_reused;    /* of them, rows found in the sequence (reuse_kv), not forwarded */
    int32_t n_generated;
    int64_t n_forward;          /* all forwards (prefill + decode) */
    int64_t n_forward_decode;   /* forwards after prefill */
    int64_t n_forward_measure;  /* forwards spent timing cost(K) for the adaptive modes (not in
                                   n_forward; 0 when the table came from the cost cache) */
    int64_t n_rows_decode;      /* batch rows in decode forwards */
    double prefill_seconds;
    double decode_seconds;
    double tokens_per_forward;  /* n_generated / n_forward_decode */
    int64_t commit_hist[VB_HIST_MAX]; /* [k] = decode steps that committed k tokens (k >= 32 in last) */
    int32_t window_used;        /* WeDLM window / verify draft length actually used */
    char note[128];             /* fallback taken, e.g. "backend masks by position: ..." */
} vb_generate_stats;

/* Generate after prompt[n_prompt] into out[max_out] (generated tokens only) using the
 * context's sequence params->seq, which must be empty (or, with params->reuse_kv, hold the KV of
 * a prefix of the prompt); the sequence keeps the prompt and the committed tokens afterwards
 * (after a failed prefill, only the rows it held before). Returns VB_OK (also when stopped by EOS or callback),
 * VB_KV_FULL (context ran out; tokens so far are kept and counted in stats), or an error.
 * *n_out receives the number of generated tokens. */
int vb_generate(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                const vb_generate_params *params, vb_token *out, int32_t max_out,
                int32_t *n_out, vb_generate_stats *stats);

/* Wall-clock seconds from a monotonic clock (for benchmarks). */
double vb_time_now(void);

#ifdef __cplusplus
}
#endif
#endif /* VIBEE_H */
