/* http_api.c - OpenAI-compatible request parsing and response formatting with jansson (see
 * http_api.h). Chat messages become the prompt through the library's chat template renderer
 * (vb_chat_apply: the model's own template when the server passes it, else the built-in ChatML
 * or plain template), with the request's tools and chat_template_kwargs as variables; an
 * exception raised by the template is a 400. Accepted and ignored: model, user, frequency_penalty,
 * presence_penalty, logprobs=false, stream_options. Extensions: top_k, min_p, repeat_penalty,
 * ignore_eos. */
#include "http_config.h"
#ifdef VB_HAVE_SERVE

#include "http_api.h"

#include "cli.h" /* cli_json_text: strict UTF-8 into jansson */

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable string ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *t = realloc(b->p, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->p = t;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* ---- parsing ---- */

#define FAIL(p, ...)                                                                              \
    do {                                                                                          \
        snprintf(err, err_len, __VA_ARGS__);                                                      \
        *param = (p);                                                                             \
        goto fail;                                                                                \
    } while (0)

/* Text of a message content: a string, null, or an array of {"type":"text","text":...} parts. */
static bool content_text(json_t *c, sbuf *out) {
    if (!c || json_is_null(c)) return true;
    if (json_is_string(c)) {
        sb_add(out, json_string_value(c), json_string_length(c));
        return true;
    }
    if (!json_is_array(c)) return false;
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text))
            return false;
        sb_add(out, json_string_value(text), json_string_length(text));
    }
    return true;
}

static const vb_chat_template *g_tmpl; /* set once at start-up, read-only afterwards */
static const vb_model *g_tmpl_model;

void api_use_chat_template(const vb_chat_template *t, const vb_model *model) {
    g_tmpl = t;
    g_tmpl_model = model;
}

/* The prompt of a chat request: messages normalised (role, content as text or null, and the
   tool fields templates read), the request's tools and chat_template_kwargs, rendered by the
   chat template. Returns 0 or an HTTP status with err / *param set. */
static int chat_prompt(json_t *root, json_t *msgs, const api_limits *lim, sbuf *prompt, char *err, size_t err_len,
                       const char **param) {
    static const char *const pass[] = {"tool_calls", "tool_call_id", "name", "reasoning_content", NULL};
    json_t *data = json_object(), *list = json_array();
    int status = 0;
    if (!data || !list) {
        snprintf(err, err_len, "out of memory");
        status = 500;
        goto out;
    }
    json_object_set(data, "messages", list);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            snprintf(err, err_len, "messages[%zu] must be an object with a string 'role'", i);
            *param = "messages";
            status = 400;
            goto out;
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "developer") &&
            strcmp(r, "tool")) {
            snprintf(err, err_len, "messages[%zu].role '%.40s' is not system, developer, user, assistant or tool", i, r);
            *param = "messages";
            status = 400;
            goto out;
        }
        sbuf text = {0};
        json_t *c = json_object_get(m, "content");
        if (!content_text(c, &text)) {
            free(text.p);
            snprintf(err, err_len, "messages[%zu].content must be a string or an array of text parts", i);
            *param = "messages";
            status = 400;
            goto out;
        }
        json_t *nm = json_object();
        json_object_set_new(nm, "role", json_string(r));
        /* an absent content is "", an explicit null stays null (assistant turns with tool_calls) */
        json_object_set_new(nm, "content", c && json_is_null(c) ? json_null() : cli_json_text(text.p ? text.p : "", text.len));
        free(text.p);
        for (int k = 0; pass[k]; k++) {
            json_t *x = json_object_get(m, pass[k]);
            if (x) json_object_set(nm, pass[k], x);
        }
        json_array_append_new(list, nm);
    }
    json_t *tools = json_object_get(root, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            snprintf(err, err_len, "'tools' must be an array");
            *param = "tools";
            status = 400;
            goto out;
        }
        json_object_set(data, "tools", tools);
    }
    json_t *kw = json_object_get(root, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) {
            snprintf(err, err_len, "'chat_template_kwargs' must be an object");
            *param = "chat_template_kwargs";
            status = 400;
            goto out;
        }
        const char *key;
        json_t *val;
        json_object_foreach(kw, key, val) if (strcmp(key, "messages")) json_object_set(data, key, val);
    }
    char *js = json_dumps(data, JSON_COMPACT);
    if (!js) {
        snprintf(err, err_len, "out of memory");
        status = 500;
        goto out;
    }
    vb_chat_template *own = NULL;
    const vb_chat_template *t = g_tmpl;
    char terr[256];
    if (!t && vb_chat_template_for_model(NULL, lim->chatml ? "chatml" : "plain", &own, terr, sizeof terr) == VB_OK)
        t = own;
    vb_chat_prompt cp = {0};
    int st = !t ? VB_ERR_NOMEM
         : g_tmpl && g_tmpl_model ? vb_chat_apply(g_tmpl_model, t, js, strlen(js), true, &cp, err, err_len)
                                   : vb_chat_template_apply(t, js, strlen(js), true, NULL, NULL, &cp, err, err_len);
    free(js);
    vb_chat_template_free(own);
    if (st == VB_OK) {
        sb_add(prompt, cp.text, cp.len);
        if (prompt->oom) {
            snprintf(err, err_len, "out of memory");
            status = 500;
        }
    } else {
        if (st == VB_ERR_NOMEM) snprintf(err, err_len, "out of memory");
        *param = "messages";
        status = st == VB_ERR_NOMEM ? 500 : st == VB_ERR_UNSUPPORTED ? 500 : 400;
    }
    vb_chat_prompt_free(&cp);
out:
    json_decref(list);
    json_decref(data);
    return status;
}

int api_parse_request(const char *body, size_t len, bool chat, const api_limits *lim, srv_job *job,
                      bool *stream, char *err, size_t err_len, const char **param) {
    json_error_t jerr;
    *param = NULL;
    *stream = false;
    sbuf prompt = {0};
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(err, err_len, "request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return 400;
    }
    if (!json_is_object(root)) FAIL(NULL, "request body must be a JSON object");
    json_t *v;
    /* prompt / messages */
    if (!chat) {
        v = json_object_get(root, "prompt");
        if (json_is_array(v) && json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)))
            v = json_array_get(v, 0);
        if (!v) FAIL("prompt", "'prompt' is required");
        if (!json_is_string(v)) FAIL("prompt", "'prompt' must be a string (or an array of one string)");
        sb_add(&prompt, json_string_value(v), json_string_length(v));
    } else {
        v = json_object_get(root, "messages");
        if (!v) FAIL("messages", "'messages' is required");
        if (!json_is_array(v) || json_array_size(v) == 0) FAIL("messages", "'messages' must be a non-empty array");
        int cst = chat_prompt(root, v, lim, &prompt, err, err_len, param);
        if (cst) {
            free(prompt.p);
            json_decref(root);
            return cst;
        }
    }
    if (prompt.oom) FAIL(NULL, "out of memory");
    /* limits and sampling */
    json_int_t max_tokens = chat ? lim->default_tokens : 16;
    v = json_object_get(root, chat && json_object_get(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) FAIL("max_tokens", "'max_tokens' must be an integer");
        max_tokens = json_integer_value(v);
        if (max_tokens < 1 || max_tokens > lim->max_tokens)
            FAIL("max_tokens", "'max_tokens' must be in [1, %d] (this server's limit)", lim->max_tokens);
    }
    job->params.n_predict = (int32_t)max_tokens;
    job->params.sampler.temp = 1.0f; /* OpenAI's default */
    job->params.sampler.top_p = 1.0f;
#define NUMBER(name, field, lo, hi, lo_open)                                                      \
    v = json_object_get(root, name);                                                              \
    if (v && !json_is_null(v)) {                                                                  \
        if (!json_is_number(v)) FAIL(name, "'%s' must be a number", name);                       \
        double x = json_number_value(v);                                                          \
        if (!(x >= (lo) && x <= (hi)) || ((lo_open) && x == (lo)))                                \
            FAIL(name, "'%s' must be in %s%g, %g]", name, (lo_open) ? "(" : "[", (double)(lo), (double)(hi)); \
        job->params.sampler.field = (float)x;                                                     \
    }
    NUMBER("temperature", temp, 0.0, 2.0, false)
    NUMBER("top_p", top_p, 0.0, 1.0, true)
    NUMBER("min_p", min_p, 0.0, 0.999, false)
    NUMBER("repeat_penalty", repeat_penalty, 0.0, 10.0, true)
#undef NUMBER
    v = json_object_get(root, "top_k");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
            FAIL("top_k", "'top_k' must be a non-negative integer");
        job->params.sampler.top_k = (int32_t)json_integer_value(v);
    }
    v = json_object_get(root, "seed");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) FAIL("seed", "'seed' must be an integer");
        job->params.sampler.seed = (uint64_t)json_integer_value(v);
    }
    v = json_object_get(root, "n");
    if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
        FAIL("n", "only 'n': 1 is supported");
    v = json_object_get(root, "stream");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) FAIL("stream", "'stream' must be a boolean");
        *stream = json_is_true(v);
    }
    v = json_object_get(root, "ignore_eos");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) FAIL("ignore_eos", "'ignore_eos' must be a boolean");
        job->params.stop_at_eos = !json_is_true(v);
    }
    v = json_object_get(root, "model");
    if (v && !json_is_null(v) && !json_is_string(v)) FAIL("model", "'model' must be a string");
    v = json_object_get(root, "stop");
    if (v && !json_is_null(v)) {
        json_t *one = json_is_string(v) ? v : NULL;
        size_t n = one ? 1 : json_is_array(v) ? json_array_size(v) : 0;
        if ((!one && !json_is_array(v)) || n > SRV_MAX_STOP)
            FAIL("stop", "'stop' must be a string or an array of at most %d strings", SRV_MAX_STOP);
        for (size_t i = 0; i < n; i++) {
            json_t *s = one ? one : json_array_get(v, i);
            if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > 64)
                FAIL("stop", "'stop' entries must be strings of 1 to 64 bytes");
            job->stop[job->n_stop] = strdup(json_string_value(s));
            if (!job->stop[job->n_stop]) FAIL(NULL, "out of memory");
            job->n_stop++;
        }
    }
    job->chat = chat;
    job->prompt = prompt.p ? prompt.p : strdup("");
    job->prompt_len = prompt.len;
    json_decref(root);
    return 0;
fail:
    free(prompt.p);
    json_decref(root);
    return 400;
}

/* ---- formatting ---- */

static char *dump(json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

char *api_error_json(const char *message, const char *type, const char *param) {
    return dump(json_pack("{s:{s:s, s:s, s:s?, s:n}}", "error", "message", message, "type", type, "param",
                          param, "code"));
}

char *api_models_json(const char *model_name, const char *chat_template) {
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:i, s:s, s:s}]}", "object", "list", "data", "id", model_name,
                          "object", "model", "created", 0, "owned_by", "vibee", "chat_template", chat_template));
}

char *api_result_json(bool chat, const char *id, long created, const char *model, const char *text,
                      size_t text_len, const char *finish, int n_prompt, int n_generated) {
    json_t *choice = chat ? json_pack("{s:i, s:{s:s, s:o}, s:s}", "index", 0, "message", "role", "assistant",
                                      "content", cli_json_text(text, text_len), "finish_reason", finish)
                          : json_pack("{s:o, s:i, s:n, s:s}", "text", cli_json_text(text, text_len), "index", 0,
                                      "logprobs", "finish_reason", finish);
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:i, s:i, s:i}}", "id", id, "object",
                          chat ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model",
                          model, "choices", choice, "usage", "prompt_tokens", n_prompt, "completion_tokens",
                          n_generated, "total_tokens", n_prompt + n_generated));
}

char *api_chunk_json(bool chat, const char *id, long created, const char *model, const char *text,
                     size_t text_len, const char *finish, bool first) {
    json_t *choice;
    if (chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (text_len || !finish) json_object_set_new(delta, "content", cli_json_text(text, text_len));
        choice = json_pack("{s:i, s:o, s:s?}", "index", 0, "delta", delta, "finish_reason", finish);
        if (choice && !finish) json_object_set_new(choice, "finish_reason", json_null());
    } else {
        choice = json_pack("{s:o, s:i, s:n, s:s?}", "text", cli_json_text(text, text_len), "index", 0, "logprobs",
                           "finish_reason", finish);
        if (choice && !finish) json_object_set_new(choice, "finish_reason", json_null());
    }
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", choice));
}

#else
typedef int vb_http_api_unused; /* built without the server (see cmd_serve.c) */
#endif
