/* http_api.c - OpenAI-compatible request parsing and response formatting with jansson (see
 * http_api.h). Chat messages become the prompt through the library's chat template renderer
 * (vb_chat_apply: the model's own template when the server passes it, else the built-in ChatML
 * or plain template), with chat_template_kwargs as variables; an exception raised by the template
 * is a 400, and text from messages is marked so it is never parsed as special tokens. Every
 * request field is either implemented, accepted only with the values that need nothing more
 * (logprobs false, best_of = n, response_format text, ...), or refused with a 400 naming it;
 * "model" and "user" are informational. Log-probabilities (chat logprobs + top_logprobs,
 * completions logprobs = alternatives, 0..20) come from the engine (vb_logprobs: the model's
 * distribution, before sampler transforms); echo with logprobs is a 400 naming echo. response_format json_object / json_schema and the
 * extension "grammar" (GBNF) constrain sampling (a grammar per job, vb_generate_params.grammar).
 * tools / tool_choice / parallel_tool_calls: the library's tool-call support (vb_chat_tool_*:
 * the template's format, a grammar of calls for "required" or a named function, the parser of
 * outputs into OpenAI tool_calls).
 * Extensions: top_k, min_p, repeat_penalty, repeat_last_n,
 * ignore_eos, decoder ("ar", "wedlm", "verify": this request's decoder; the result carries
 * {"vibee": {"decoder", "n_forward", "tokens_per_forward"}}). */
#include "http_config.h"
#ifdef VB_HAVE_SERVE

#include "http_api.h"
#include "cli.h"

#include "cli.h" /* cli_json_text: strict UTF-8 into jansson */

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

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
static int chat_prompt(json_t *root, json_t *msgs, const api_limits *lim, sbuf *prompt, uint8_t **user,
                       const char **tool_format, char *err, size_t err_len, const char **param) {
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
    int st = VB_OK;
    if (t) *tool_format = vb_chat_tool_format(t);
    if (t && (json_object_get(data, "tools") || strstr(js, "\"tool_calls\""))) {
        /* OpenAI's shape -> the template's: arguments strings parsed; tools described to
           templates that do not render them */
        char *tv = NULL;
        st = vb_chat_tool_vars(t, js, strlen(js), &tv, err, err_len);
        free(js);
        js = tv;
    }
    vb_chat_prompt cp = {0};
    if (st == VB_OK) st = !t || !js ? VB_ERR_NOMEM
         : g_tmpl && g_tmpl_model ? vb_chat_apply(g_tmpl_model, t, js, strlen(js), true, &cp, err, err_len)
                                   : vb_chat_template_apply(t, js, strlen(js), true, NULL, NULL, &cp, err, err_len);
    free(js);
    vb_chat_template_free(own);
    if (st == VB_OK) {
        sb_add(prompt, cp.text, cp.len);
        /* which bytes came from the messages: never tokenized as special tokens */
        *user = malloc(cp.len ? cp.len : 1);
        if (*user) memcpy(*user, cp.user, cp.len);
        if (prompt->oom || !*user) {
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

/* Fields this server implements; any other field is a 400 naming it. */
static const char *const fields_common[] = {
    "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
    "logit_bias", "presence_penalty", "frequency_penalty", "user", "logprobs",
    /* extensions */
    "top_k", "min_p", "repeat_penalty", "repeat_last_n", "ignore_eos", "decoder", "grammar",
    "response_format", NULL};
static const char *const fields_completion[] = {"prompt", "echo", "best_of", "suffix", "parse_special", NULL};
static const char *const fields_chat[] = {"messages", "max_completion_tokens", "top_logprobs",
                                          "tools", "tool_choice", "parallel_tool_calls", "store",
                                          "chat_template_kwargs", NULL};

static const char *known_field(const char *key, bool chat) {
    const char *const *lists[2] = {fields_common, chat ? fields_chat : fields_completion};
    for (int l = 0; l < 2; l++)
        for (const char *const *f = lists[l]; *f; f++)
            if (!strcmp(*f, key)) return *f;
    return NULL;
}

/* A seed from the kernel's random source (time-based if that fails). */
static uint64_t random_seed(void) {
    uint32_t x;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint32_t)time(NULL) ^ (uint32_t)clock();
    return x;
}

/* A prompt given as token ids: a non-empty array of integers in [0, n_vocab). */
static bool token_array(json_t *a, int32_t n_vocab) {
    if (!json_is_array(a) || json_array_size(a) == 0) return false;
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) return false;
    }
    return true;
}

void api_request_free(srv_engine *e, api_request *req) {
    for (int32_t k = 0; k < req->n_jobs; k++) srv_job_unref(e, req->jobs[k]);
    req->n_jobs = 0;
}

int api_parse_request(const char *body, size_t len, bool chat, const api_limits *lim, api_request *req,
                      char *err, size_t err_len, const char **param) {
    static _Thread_local char unknown[64]; /* *param for a field name not in the tables */
    json_error_t jerr;
    *param = NULL;
    memset(req, 0, sizeof *req);
    req->chat = chat;
    req->n = 1;
    sbuf prompt = {0};
    uint8_t *user_mask = NULL; /* chat: [prompt.len] 1 where the byte came from the messages */
    bool parse_special = false;
    vb_request_params params = vb_request_default_params();
    vb_logit_bias *bias = NULL;
    int32_t n_bias = 0;
    char *stops[SRV_MAX_STOP] = {0};
    int n_stop = 0;
    json_t *prompts = NULL; /* completions: the "prompt" value */
    char *gbnf = NULL;      /* response_format / grammar as GBNF text */
    const char *gbnf_field = NULL;
    const char *tool_format = "generic"; /* chat: the template's tool-call format */
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root) {
        snprintf(err, err_len, "request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return 400;
    }
    if (!json_is_object(root)) FAIL(NULL, "request body must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (known_field(key, chat)) continue;
        snprintf(unknown, sizeof unknown, "%s", key);
        FAIL(unknown, "'%.60s' is not supported by this server (see docs/serve.md for the supported fields)", key);
    }
    /* prompt / messages */
    if (!chat) {
        v = json_object_get(root, "prompt");
        if (!v) FAIL("prompt", "'prompt' is required");
        bool list_ok = json_is_array(v) && json_array_size(v) > 0;
        if (list_ok && !token_array(v, lim->n_vocab)) { /* else one prompt of token ids */
            size_t i;
            json_t *p;
            json_array_foreach(v, i, p) list_ok = list_ok && (json_is_string(p) || token_array(p, lim->n_vocab));
        }
        if (!json_is_string(v) && !list_ok)
            FAIL("prompt", "'prompt' must be a string, an array of strings, an array of token ids in [0, %d) "
                 "or an array of such arrays", lim->n_vocab);
        prompts = v;
        req->n_prompts = json_is_string(v) || token_array(v, lim->n_vocab) ? 1 : (int32_t)json_array_size(v);
        if (req->n_prompts > API_MAX_CHOICES)
            FAIL("prompt", "at most %d prompts per request", API_MAX_CHOICES);
    } else {
        v = json_object_get(root, "messages");
        if (!v) FAIL("messages", "'messages' is required");
        if (!json_is_array(v) || json_array_size(v) == 0) FAIL("messages", "'messages' must be a non-empty array");
        int cst = chat_prompt(root, v, lim, &prompt, &user_mask, &tool_format, err, err_len, param);
        if (cst) {
            free(prompt.p);
            free(user_mask);
            json_decref(root);
            return cst;
        }
        req->n_prompts = 1;
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
    params.n_predict = (int32_t)max_tokens;
    params.sampler.temp = 1.0f; /* OpenAI's default */
    params.sampler.top_p = 1.0f;
#define NUMBER(name, field, lo, hi, lo_open)                                                      \
    v = json_object_get(root, name);                                                              \
    if (v && !json_is_null(v)) {                                                                  \
        if (!json_is_number(v)) FAIL(name, "'%s' must be a number", name);                       \
        double x = json_number_value(v);                                                          \
        if (!(x >= (lo) && x <= (hi)) || ((lo_open) && x == (lo)))                                \
            FAIL(name, "'%s' must be in %s%g, %g]", name, (lo_open) ? "(" : "[", (double)(lo), (double)(hi)); \
        params.sampler.field = (float)x;                                                          \
    }
    NUMBER("temperature", temp, 0.0, 2.0, false)
    NUMBER("top_p", top_p, 0.0, 1.0, true)
    NUMBER("min_p", min_p, 0.0, 0.999, false)
    NUMBER("repeat_penalty", repeat_penalty, 0.0, 10.0, true)
    NUMBER("presence_penalty", presence_penalty, -2.0, 2.0, false)
    NUMBER("frequency_penalty", frequency_penalty, -2.0, 2.0, false)
#undef NUMBER
#define INTEGER(name, lo, hi, dst)                                                                \
    v = json_object_get(root, name);                                                              \
    if (v && !json_is_null(v)) {                                                                  \
        if (!json_is_integer(v) || json_integer_value(v) < (lo) || json_integer_value(v) > (hi))  \
            FAIL(name, "'%s' must be an integer in [%d, %d]", name, (int)(lo), (int)(hi));        \
        dst = (int32_t)json_integer_value(v);                                                     \
    }
    INTEGER("top_k", 0, 1000000, params.sampler.top_k)
    INTEGER("repeat_last_n", 0, 1 << 20, params.sampler.repeat_last_n)
    INTEGER("n", 1, API_MAX_CHOICES, req->n)
#undef INTEGER
    if (req->n * req->n_prompts > API_MAX_CHOICES)
        FAIL("n", "'n' times the number of prompts must be at most %d", API_MAX_CHOICES);
    req->seed = random_seed(); /* OpenAI and llama.cpp: a random seed unless one is given */
    v = json_object_get(root, "seed");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v)) FAIL("seed", "'seed' must be an integer");
        if (json_integer_value(v) != -1) req->seed = (uint64_t)json_integer_value(v);
    }
    v = json_object_get(root, "logit_bias");
    if (v && !json_is_null(v)) {
        if (!json_is_object(v) || json_object_size(v) > 1024)
            FAIL("logit_bias", "'logit_bias' must be an object of at most 1024 \"token id\": bias pairs");
        bias = calloc(json_object_size(v) + 1, sizeof *bias);
        if (!bias) FAIL(NULL, "out of memory");
        json_t *b;
        json_object_foreach(v, key, b) {
            char *end;
            long id = strtol(key, &end, 10);
            if (!*key || *end || id < 0 || id >= lim->n_vocab)
                FAIL("logit_bias", "'logit_bias' key '%.40s' is not a token id in [0, %d)", key, lim->n_vocab);
            if (!json_is_number(b) || !(json_number_value(b) >= -100 && json_number_value(b) <= 100))
                FAIL("logit_bias", "'logit_bias' values must be numbers in [-100, 100]");
            bias[n_bias++] = (vb_logit_bias){(vb_token)id, (float)json_number_value(b)};
        }
    }
    v = json_object_get(root, "stream");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) FAIL("stream", "'stream' must be a boolean");
        req->stream = json_is_true(v);
    }
    v = json_object_get(root, "stream_options");
    if (v && !json_is_null(v)) {
        if (!req->stream) FAIL("stream_options", "'stream_options' is only allowed with 'stream': true");
        if (!json_is_object(v)) FAIL("stream_options", "'stream_options' must be an object");
        json_t *o;
        json_object_foreach(v, key, o) {
            if (strcmp(key, "include_usage") || !json_is_boolean(o))
                FAIL("stream_options", "'stream_options' supports only 'include_usage' (a boolean)");
            req->include_usage = json_is_true(o);
        }
    }
    v = json_object_get(root, "echo");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) FAIL("echo", "'echo' must be a boolean");
        req->echo = json_is_true(v);
    }
    v = json_object_get(root, "ignore_eos");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) FAIL("ignore_eos", "'ignore_eos' must be a boolean");
        params.stop_at_eos = !json_is_true(v);
    }
    /* log-probabilities: chat "logprobs": true with "top_logprobs" alternatives, completions
       "logprobs": the number of alternatives (both 0..VB_LOGPROBS_MAX) */
    int32_t n_logprobs = -1;
    v = json_object_get(root, "logprobs");
    if (chat) {
        if (v && !json_is_null(v) && !json_is_boolean(v)) FAIL("logprobs", "'logprobs' must be a boolean");
        bool on = v && json_is_true(v);
        json_t *tl = json_object_get(root, "top_logprobs");
        json_int_t k = 0;
        if (tl && !json_is_null(tl)) {
            k = json_is_integer(tl) ? json_integer_value(tl) : -1;
            if (k < 0 || k > VB_LOGPROBS_MAX)
                FAIL("top_logprobs", "'top_logprobs' must be an integer in [0, %d]", VB_LOGPROBS_MAX);
            if (k > 0 && !on) FAIL("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        }
        if (on) n_logprobs = (int32_t)k;
    } else if (v && !json_is_null(v)) {
        json_int_t k = json_is_integer(v) ? json_integer_value(v) : -1;
        if (k < 0 || k > VB_LOGPROBS_MAX)
            FAIL("logprobs", "'logprobs' must be an integer in [0, %d] (alternatives per token)", VB_LOGPROBS_MAX);
        if (req->echo)
            FAIL("echo", "'echo' cannot be combined with 'logprobs': prompt tokens have no log-probabilities here");
        n_logprobs = (int32_t)k;
    }
    req->n_logprobs = n_logprobs;
    v = json_object_get(root, "best_of");
    if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == req->n))
        FAIL("best_of", "'best_of' is not supported by this server (only best_of equal to n)");
    v = json_object_get(root, "suffix");
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
        FAIL("suffix", "'suffix' is not supported by this server");
    /* structured output: response_format json_object / json_schema, or a GBNF grammar; the
       grammar text is compiled once here (a 400 names the field) and again for each job */
    v = json_object_get(root, "response_format");
    if (v && !json_is_null(v)) {
        json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
        const char *type = json_is_string(t) ? json_string_value(t) : "";
        char gerr[256] = "";
        if (!strcmp(type, "text") && json_object_size(v) == 1) {
        } else if (!strcmp(type, "json_object") && json_object_size(v) == 1) {
            static const char any_object[] = "{\"type\": \"object\"}";
            if (vb_json_schema_to_gbnf(any_object, sizeof any_object - 1, &gbnf, gerr, sizeof gerr) != VB_OK)
                FAIL("response_format", "'response_format': %s", gerr);
            gbnf_field = "response_format";
        } else if (!strcmp(type, "json_schema")) {
            json_t *js = json_object_get(v, "json_schema");
            json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
            if (!schema)
                FAIL("response_format", "'response_format' json_schema needs {\"json_schema\": {\"schema\": {...}}}");
            char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!text) FAIL(NULL, "out of memory");
            int st = vb_json_schema_to_gbnf(text, strlen(text), &gbnf, gerr, sizeof gerr);
            free(text);
            if (st != VB_OK) FAIL("response_format", "'response_format': %s", gerr);
            gbnf_field = "response_format";
        } else {
            FAIL("response_format", "'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} "
                 "or {\"type\": \"json_schema\", \"json_schema\": {\"schema\": ...}}");
        }
    }
    v = json_object_get(root, "grammar");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) FAIL("grammar", "'grammar' must be a string (GBNF)");
        if (gbnf) FAIL("grammar", "'grammar' and a JSON 'response_format' cannot be combined");
        gbnf = strdup(json_string_value(v));
        if (!gbnf) FAIL(NULL, "out of memory");
        gbnf_field = "grammar";
    }
    /* tool calls: tools reach the template (chat_prompt); "auto" parses the output for calls in
       the template's format, "required" / a named function constrain it to calls by a grammar
       built from the tools' parameter schemas */
    json_t *tools = json_object_get(root, "tools");
    bool have_tools = json_is_array(tools) && json_array_size(tools) > 0;
    v = json_object_get(root, "parallel_tool_calls");
    if (v && !json_is_null(v) && !json_is_boolean(v)) FAIL("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    req->tool_parallel = !json_is_false(v);
    v = json_object_get(root, "tool_choice");
    const char *choice = have_tools ? "auto" : "none", *only = NULL;
    if (v && !json_is_null(v)) {
        json_t *fn = json_is_object(v) ? json_object_get(v, "function") : NULL;
        json_t *type = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if (json_is_string(v) && (!strcmp(json_string_value(v), "none") || !strcmp(json_string_value(v), "auto") ||
                                  !strcmp(json_string_value(v), "required")))
            choice = json_string_value(v);
        else if (json_is_string(type) && !strcmp(json_string_value(type), "function") && json_is_object(fn) &&
                 json_is_string(json_object_get(fn, "name")))
            choice = "required", only = json_string_value(json_object_get(fn, "name"));
        else
            FAIL("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                 "\"function\": {\"name\": ...}}");
        if (!strcmp(choice, "required") && !have_tools)
            FAIL("tool_choice", "'tool_choice' \"%s\" needs a non-empty 'tools'", only ? "function" : choice);
        bool named = !only;
        size_t i;
        json_t *tl;
        json_array_foreach(tools, i, tl) {
            json_t *nm = json_object_get(json_object_get(tl, "function"), "name");
            named = named || (json_is_string(nm) && !strcmp(json_string_value(nm), only));
        }
        if (!named) FAIL("tool_choice", "'tool_choice' names '%.64s', which is not in 'tools'", only);
    }
    if (have_tools) { /* every tool well formed and its parameters enforceable, even in "auto" */
        char *text = json_dumps(tools, JSON_COMPACT), *tg = NULL, terr[256] = "";
        if (!text) FAIL(NULL, "out of memory");
        int st = vb_chat_tool_grammar(tool_format, text, strlen(text), only, req->tool_parallel, &tg, terr, sizeof terr);
        free(text);
        if (st == VB_ERR_NOMEM) FAIL(NULL, "out of memory");
        if (st != VB_OK) FAIL("tools", "'tools': %s", terr);
        if (!strcmp(choice, "required")) {
            if (gbnf) {
                free(tg);
                FAIL("tool_choice", "'tool_choice' \"required\" or a function cannot be combined with 'grammar' or a "
                     "JSON 'response_format'");
            }
            gbnf = tg;
            gbnf_field = "tools";
        } else {
            free(tg);
        }
        if (strcmp(choice, "none")) req->tool_format = tool_format;
    }
    if (gbnf) {
        vb_grammar *g = NULL;
        char gerr[256] = "";
        int st = vb_grammar_parse(gbnf, strlen(gbnf), &g, gerr, sizeof gerr);
        vb_grammar_free(g);
        if (st != VB_OK) FAIL(gbnf_field, "'%s': %s", gbnf_field, gerr);
    }
    v = json_object_get(root, "store");
    if (v && !json_is_null(v) && !json_is_false(v)) FAIL("store", "'store' is not supported by this server");
    v = json_object_get(root, "user");
    if (v && !json_is_null(v) && !json_is_string(v)) FAIL("user", "'user' must be a string");
    v = json_object_get(root, "model");
    if (v && !json_is_null(v) && !json_is_string(v)) FAIL("model", "'model' must be a string");
    v = json_object_get(root, "parse_special"); /* vibee extension: completions only */
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) FAIL("parse_special", "'parse_special' must be a boolean");
        parse_special = json_is_true(v);
    }
    int decoder = -1; /* vibee extension: this request's decoder (-1: the server's) */
    v = json_object_get(root, "decoder");
    if (v && !json_is_null(v)) {
        decoder = json_is_string(v) ? cli_decoder_from_name(json_string_value(v)) : -1;
        if (decoder < 0) FAIL("decoder", "'decoder' must be \"ar\", \"wedlm\" or \"verify\"");
    }
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
            stops[n_stop] = strdup(json_string_value(s));
            if (!stops[n_stop]) FAIL(NULL, "out of memory");
            n_stop++;
        }
    }
    /* one job per prompt and choice: choice i samples with seed + i */
    for (int32_t p = 0; p < req->n_prompts; p++) {
        json_t *pv = chat ? NULL : json_is_string(prompts) || token_array(prompts, lim->n_vocab) ? prompts
                                                                                                : json_array_get(prompts, (size_t)p);
        for (int32_t i = 0; i < req->n; i++) {
            srv_job *j = srv_job_new();
            if (!j) FAIL(NULL, "out of memory");
            req->jobs[req->n_jobs++] = j;
            j->params = params;
            j->params.sampler.seed = req->seed + (uint64_t)i;
            j->chat = chat;
            j->decoder = decoder;
            j->n_logprobs = n_logprobs;
            if (gbnf && vb_grammar_parse(gbnf, strlen(gbnf), &j->grammar, NULL, 0) != VB_OK)
                FAIL(NULL, "out of memory");
            if (n_bias) {
                j->logit_bias = malloc((size_t)n_bias * sizeof *bias);
                if (!j->logit_bias) FAIL(NULL, "out of memory");
                memcpy(j->logit_bias, bias, (size_t)n_bias * sizeof *bias);
                j->params.sampler.logit_bias = j->logit_bias;
                j->params.sampler.n_logit_bias = n_bias;
            }
            for (int k = 0; k < n_stop; k++) {
                j->stop[k] = strdup(stops[k]);
                if (!j->stop[k]) FAIL(NULL, "out of memory");
                j->n_stop = k + 1;
            }
            if (chat || json_is_string(pv)) {
                const char *t = chat ? (prompt.p ? prompt.p : "") : json_string_value(pv);
                size_t n = chat ? prompt.len : json_string_length(pv);
                j->prompt = malloc(n + 1);
                if (!j->prompt) FAIL(NULL, "out of memory");
                memcpy(j->prompt, t, n);
                j->prompt[n] = 0;
                j->prompt_len = n;
                j->parse_special = parse_special;
                if (chat) {
                    j->prompt_user = malloc(n ? n : 1);
                    if (!j->prompt_user) FAIL(NULL, "out of memory");
                    memcpy(j->prompt_user, user_mask, n);
                }
            } else {
                size_t n = json_array_size(pv);
                j->prompt_tokens = malloc(n * sizeof *j->prompt_tokens);
                if (!j->prompt_tokens) FAIL(NULL, "out of memory");
                for (size_t k = 0; k < n; k++) j->prompt_tokens[k] = (vb_token)json_integer_value(json_array_get(pv, k));
                j->n_prompt_in = (int32_t)n;
            }
        }
    }
    for (int k = 0; k < n_stop; k++) free(stops[k]);
    free(bias);
    free(gbnf);
    free(prompt.p);
    free(user_mask);
    json_decref(root);
    return 0;
fail: /* jobs made so far stay in req for api_request_free */
    for (int k = 0; k < n_stop; k++) free(stops[k]);
    free(bias);
    free(gbnf);
    free(prompt.p);
    free(user_mask);
    json_decref(root);
    return 400;
}

const char *api_public_message(const char *msg) {
    if (strncmp(msg, "vb_", 3) != 0) return msg;
    const char *p = msg + 3;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') p++;
    return p[0] == ':' && p[1] == ' ' ? p + 2 : msg;
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

char *api_result_json(bool chat, const char *id, long created, const char *model, const api_choice *choices,
                      int n_choices, int n_prompt, int n_generated, uint64_t seed) {
    json_t *arr = json_array();
    for (int k = 0; k < n_choices && arr; k++) {
        const api_choice *c = &choices[k];
        json_t *calls = chat && c->tool_calls ? json_loads(c->tool_calls, 0, NULL) : NULL;
        bool blank = true; /* content before the calls: null when only whitespace */
        for (size_t b = 0; calls && b < c->text_len && blank; b++) blank = strchr(" \t\r\n", c->text[b]) != NULL;
        json_t *choice = chat ? json_pack("{s:i, s:{s:s, s:o}, s:n, s:s}", "index", k, "message", "role", "assistant",
                                          "content", calls && blank ? json_null() : cli_json_text(c->text, c->text_len),
                                          "logprobs", "finish_reason",
                                          calls && strcmp(c->finish, "length") ? "tool_calls" : c->finish)
                              : json_pack("{s:o, s:i, s:n, s:s}", "text", cli_json_text(c->text, c->text_len), "index", k,
                                          "logprobs", "finish_reason", c->finish);
        if (calls && choice) json_object_set_new(json_object_get(choice, "message"), "tool_calls", calls);
        else json_decref(calls);
        if (json_array_append_new(arr, choice) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (!arr) return NULL;
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:o, s:{s:i, s:i, s:i}, s:I}", "id", id, "object",
                          chat ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model",
                          model, "choices", arr, "usage", "prompt_tokens", n_prompt, "completion_tokens",
                          n_generated, "total_tokens", n_prompt + n_generated, "seed", (json_int_t)seed));
}

char *api_add_decoding(char *result_json, const char *decoder, long long n_forward, int n_generated) {
    json_t *root = result_json ? json_loads(result_json, JSON_ALLOW_NUL, NULL) : NULL; /* text may hold U+0000 */
    free(result_json);
    if (!root) return NULL;
    json_object_set_new(root, "vibee",
                        json_pack("{s:s, s:I, s:f}", "decoder", decoder, "n_forward", (json_int_t)n_forward,
                                  "tokens_per_forward",
                                  n_forward > 0 ? (double)n_generated / (double)n_forward : 0.0));
    return dump(root);
}

char *api_chunk_json(bool chat, const char *id, long created, const char *model, int index, const char *text,
                     size_t text_len, const char *finish, bool first) {
    json_t *choice;
    if (chat) {
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (text_len || !finish) json_object_set_new(delta, "content", cli_json_text(text, text_len));
        choice = json_pack("{s:i, s:o, s:n, s:s?}", "index", index, "delta", delta, "logprobs", "finish_reason", finish);
    } else {
        choice = json_pack("{s:o, s:i, s:n, s:s?}", "text", cli_json_text(text, text_len), "index", index, "logprobs",
                           "finish_reason", finish);
    }
    if (choice && !finish) json_object_set_new(choice, "finish_reason", json_null());
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", choice));
}

/* A log-probability for JSON: -inf (a token the model rules out) as -9999, as OpenAI does. */
static json_t *lp_real(float x) { return json_real(isfinite(x) ? (double)x : -9999.0); }

/* The text of one token (strict UTF-8: a partial character becomes U+FFFD) and, when bytes is
   not NULL, its raw bytes as an array of integers. */
static json_t *token_text(const vb_model *model, vb_token t, json_t **bytes) {
    char piece[256];
    int b = vb_token_to_bytes(model, t, piece, sizeof piece);
    if (b < 0) b = 0;
    if (b > (int)sizeof piece) b = (int)sizeof piece;
    if (bytes) {
        *bytes = json_array();
        for (int i = 0; i < b && *bytes; i++) json_array_append_new(*bytes, json_integer((unsigned char)piece[i]));
    }
    return cli_json_text(piece, (size_t)b);
}

/* The logprobs object of tokens lp[n]: chat {"content": [{token, logprob, bytes, top_logprobs:
   [{token, logprob, bytes}]}], "refusal": null}; completions {tokens, token_logprobs,
   top_logprobs: [{text: logprob}], text_offset (in characters, as OpenAI)}. */
static json_t *logprobs_json(bool chat, const vb_model *model, const srv_token_lp *lp, int32_t n, size_t offset_base) {
    if (chat) {
        json_t *content = json_array();
        for (int32_t i = 0; i < n && content; i++) {
            json_t *top = json_array(), *bytes = NULL;
            for (int32_t k = 0; k < lp[i].v.n_top && top; k++) {
                json_t *tb = NULL, *tt = token_text(model, lp[i].v.top[k].token, &tb);
                json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", tt, "logprob",
                                                     lp_real(lp[i].v.top[k].logprob), "bytes", tb));
            }
            json_t *tt = token_text(model, lp[i].v.token, &bytes);
            json_array_append_new(content, json_pack("{s:o, s:o, s:o, s:o}", "token", tt, "logprob",
                                                     lp_real(lp[i].v.logprob), "bytes", bytes, "top_logprobs", top));
        }
        return json_pack("{s:o, s:n}", "content", content, "refusal");
    }
    json_t *tokens = json_array(), *values = json_array(), *tops = json_array(), *offsets = json_array();
    for (int32_t i = 0; i < n; i++) {
        json_array_append_new(tokens, token_text(model, lp[i].v.token, NULL));
        json_array_append_new(values, lp_real(lp[i].v.logprob));
        json_t *top = json_object();
        for (int32_t k = 0; k < lp[i].v.n_top && top; k++) { /* tokens of the same text: the likelier */
            json_t *tt = token_text(model, lp[i].v.top[k].token, NULL);
            const char *key = tt ? json_string_value(tt) : NULL;
            if (key && !json_object_get(top, key)) json_object_set_new(top, key, lp_real(lp[i].v.top[k].logprob));
            json_decref(tt);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offsets, json_integer((json_int_t)(offset_base + lp[i].chars)));
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", values, "top_logprobs", tops,
                     "text_offset", offsets);
}

char *api_add_logprobs(char *json, bool chat, const vb_model *model, int index, const srv_token_lp *lp, int32_t n,
                       size_t offset_base) {
    json_t *root = json ? json_loads(json, JSON_ALLOW_NUL, NULL) : NULL; /* text may hold U+0000 */
    free(json);
    if (!root) return NULL;
    json_t *choices = json_object_get(root, "choices"), *c;
    size_t i;
    json_array_foreach(choices, i, c) {
        if (json_integer_value(json_object_get(c, "index")) != index) continue;
        json_t *o = logprobs_json(chat, model, lp, n, offset_base);
        if (!o) {
            json_decref(root);
            return NULL;
        }
        json_object_set_new(c, "logprobs", o);
    }
    return dump(root);
}

char *api_tool_calls(const api_request *req, const char *text, size_t len, bool cut, size_t *content_len) {
    char *calls = NULL;
    *content_len = len;
    if (!req->tool_format || vb_chat_tool_parse(req->tool_format, text, len, cut, &calls, content_len) != VB_OK || !calls)
        return NULL;
    if (req->tool_parallel) return calls;
    json_t *arr = json_loads(calls, 0, NULL); /* parallel_tool_calls false: the first call only */
    free(calls);
    while (json_array_size(arr) > 1) json_array_remove(arr, json_array_size(arr) - 1);
    return dump(arr);
}

size_t api_tool_content_len(const api_request *req, const char *text, size_t len) {
    return req->tool_format ? vb_chat_tool_content_len(req->tool_format, text, len) : len;
}

char *api_tool_calls_chunk_json(const char *id, long created, const char *model, int index, const char *calls,
                                bool first) {
    json_t *arr = json_loads(calls, 0, NULL);
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) json_object_set_new(c, "index", json_integer((json_int_t)i));
    json_t *delta = json_pack("{s:o}", "tool_calls", arr ? arr : json_array());
    if (delta && first) json_object_set_new(delta, "role", json_string("assistant"));
    json_t *choice = json_pack("{s:i, s:o, s:n, s:n}", "index", index, "delta", delta, "logprobs", "finish_reason");
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object", "chat.completion.chunk", "created",
                          (json_int_t)created, "model", model, "choices", choice));
}

char *api_usage_chunk_json(bool chat, const char *id, long created, const char *model, int n_prompt,
                           int n_generated) {
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[], s:{s:i, s:i, s:i}}", "id", id, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", "usage", "prompt_tokens", n_prompt, "completion_tokens",
                          n_generated, "total_tokens", n_prompt + n_generated));
}

/* ---- /v1/embeddings ---- */

static const char *const fields_embeddings[] = {"input", "model", "encoding_format", "dimensions", "user", NULL};

/* Token ids of one input (a string, tokenized, or an array of ids) into job->tokens[i]. Returns 0,
   or 400 / 500 with err set. */
static int embed_input(const vb_model *model, json_t *in, srv_embed_job *job, int32_t i, char *err, size_t err_len) {
    int32_t n = json_is_string(in) ? vb_tokenize(model, json_string_value(in), json_string_length(in), true, false, NULL, 0)
                                   : (int32_t)json_array_size(in);
    if (n < 0) {
        snprintf(err, err_len, "input %d cannot be tokenized: %s", (int)i, vb_status_str(n));
        return 400;
    }
    if (n == 0 || (json_is_string(in) && json_string_length(in) == 0)) { /* not a BOS-only embedding */
        snprintf(err, err_len, "input %d is empty (it has no tokens)", (int)i);
        return 400;
    }
    vb_token *t = malloc((size_t)n * sizeof *t);
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return 500;
    }
    if (json_is_string(in)) n = vb_tokenize(model, json_string_value(in), json_string_length(in), true, false, t, n);
    else
        for (int32_t k = 0; k < n; k++) t[k] = (vb_token)json_integer_value(json_array_get(in, (size_t)k));
    job->tokens[i] = t;
    job->n_tokens[i] = n;
    return 0;
}

int api_parse_embeddings(const vb_model *model, int32_t pooling, const char *body, size_t len,
                         srv_embed_job **job, bool *base64, char *err, size_t err_len, const char **param) {
    static _Thread_local char unknown[64]; /* *param for a field name not in the table */
    const vb_model_info *info = vb_model_get_info(model);
    *job = NULL;
    *base64 = false;
    *param = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr), *v;
    int status = 400;
    if (!root) {
        snprintf(err, err_len, "request body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return 400;
    }
    if (!json_is_object(root)) FAIL(NULL, "request body must be a JSON object");
    const char *key;
    json_object_foreach(root, key, v) {
        bool known = false;
        for (const char *const *f = fields_embeddings; *f && !known; f++) known = !strcmp(*f, key);
        if (known) continue;
        snprintf(unknown, sizeof unknown, "%s", key);
        FAIL(unknown, "'%.60s' is not supported by /v1/embeddings (see docs/serve.md for the supported fields)", key);
    }
    v = json_object_get(root, "model");
    if (v && !json_is_null(v) && !json_is_string(v)) FAIL("model", "'model' must be a string");
    v = json_object_get(root, "user");
    if (v && !json_is_null(v) && !json_is_string(v)) FAIL("user", "'user' must be a string");
    v = json_object_get(root, "encoding_format");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || (strcmp(json_string_value(v), "float") && strcmp(json_string_value(v), "base64")))
            FAIL("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
        *base64 = !strcmp(json_string_value(v), "base64");
    }
    v = json_object_get(root, "dimensions");
    if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == info->n_embd))
        FAIL("dimensions", "'dimensions' must be %d, this model's embedding width (no truncation)", (int)info->n_embd);
    json_t *in = json_object_get(root, "input");
    if (!in) FAIL("input", "'input' is required");
    /* one input (a string, or token ids) or a non-empty array of inputs */
    bool one = json_is_string(in) || token_array(in, info->n_vocab);
    bool list_ok = !one && json_is_array(in) && json_array_size(in) > 0;
    size_t i;
    json_t *x;
    json_array_foreach(list_ok ? in : NULL, i, x) list_ok = list_ok && (json_is_string(x) || token_array(x, info->n_vocab));
    if (!one && !list_ok)
        FAIL("input", "'input' must be a string, an array of strings, an array of token ids in [0, %d) or an "
             "array of such arrays", (int)info->n_vocab);
    int32_t n_in = one ? 1 : (int32_t)json_array_size(in);
    if (n_in > API_MAX_EMBED_INPUTS) FAIL("input", "at most %d inputs per request", API_MAX_EMBED_INPUTS);
    *job = srv_embed_job_new(n_in, info->n_embd);
    if (!*job) {
        status = 500;
        FAIL(NULL, "out of memory");
    }
    (*job)->pooling = pooling;
    for (int32_t k = 0; k < n_in; k++) {
        int st = embed_input(model, one ? in : json_array_get(in, (size_t)k), *job, k, err, err_len);
        if (st) {
            status = st;
            *param = st == 400 ? "input" : NULL;
            goto fail;
        }
    }
    json_decref(root);
    return 0;
fail:
    srv_embed_job_free(*job);
    *job = NULL;
    json_decref(root);
    return status;
}

/* RFC 4648 base64 of b[n] (malloc'd, NUL-terminated; NULL when out of memory). */
static char *base64_encode(const unsigned char *b, size_t n) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *o++ = alphabet[w >> 18 & 63];
        *o++ = alphabet[w >> 12 & 63];
        *o++ = i + 1 < n ? alphabet[w >> 6 & 63] : '=';
        *o++ = i + 2 < n ? alphabet[w & 63] : '=';
    }
    *o = 0;
    return out;
}

/* One embedding as JSON: numbers, or base64 of the little-endian f32 bytes. */
static json_t *embedding_value(const float *v, int32_t n, bool base64) {
    if (!base64) {
        json_t *a = json_array();
        for (int32_t d = 0; a && d < n; d++)
            if (json_array_append_new(a, json_real((double)v[d])) != 0) {
                json_decref(a);
                a = NULL;
            }
        return a;
    }
    unsigned char *bytes = malloc((size_t)n * 4);
    if (!bytes) return NULL;
    for (int32_t d = 0; d < n; d++) {
        uint32_t u;
        memcpy(&u, &v[d], 4);
        for (int k = 0; k < 4; k++) bytes[(size_t)d * 4 + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    char *text = base64_encode(bytes, (size_t)n * 4);
    free(bytes);
    json_t *s = text ? json_string(text) : NULL;
    free(text);
    return s;
}

char *api_embeddings_json(const srv_embed_job *job, int32_t n_embd, bool base64, const char *model) {
    json_t *data = json_array();
    long long n_tokens = 0;
    for (int32_t k = 0; data && k < job->n_inputs; k++) {
        n_tokens += job->n_tokens[k];
        json_t *e = embedding_value(job->out + (size_t)k * (size_t)n_embd, n_embd, base64);
        json_t *item = e ? json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", (int)k, "embedding", e) : NULL;
        if (!item || json_array_append_new(data, item) != 0) {
            json_decref(data);
            data = NULL;
        }
    }
    if (!data) return NULL;
    json_t *root = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", model, "usage",
                             "prompt_tokens", (json_int_t)n_tokens, "total_tokens", (json_int_t)n_tokens);
    /* 9 significant digits give every f32 back exactly */
    char *s = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(root);
    return s;
}

/* ---- /tokenize, /detokenize, /props ---- */

static int reply_error(char **out, const char *msg, const char *param) {
    *out = api_error_json(msg, "invalid_request_error", param);
    return 400;
}

/* Optional boolean field: false when bad (message in *out). */
static bool opt_bool(json_t *root, const char *name, bool *dst, char **out, int *status) {
    json_t *v = json_object_get(root, name);
    if (!v || json_is_null(v)) return true;
    if (json_is_boolean(v)) {
        *dst = json_is_true(v);
        return true;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "'%s' must be a boolean", name);
    *status = reply_error(out, msg, name);
    return false;
}

int api_tokenize(const vb_model *model, const char *body, size_t len, char **out) {
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *content = json_object_get(root, "content");
    const char *key;
    json_t *v;
    int status = 200;
    bool add_special = false, parse_special = true, with_pieces = false;
    if (!json_is_object(root) || !json_is_string(content)) {
        json_decref(root);
        return reply_error(out, "the body must be a JSON object with a string 'content'", "content");
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "content") && strcmp(key, "add_special") && strcmp(key, "parse_special") &&
            strcmp(key, "with_pieces")) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%.60s' is not supported by /tokenize", key);
            status = reply_error(out, msg, NULL);
            json_decref(root);
            return status;
        }
    }
    if (!opt_bool(root, "add_special", &add_special, out, &status) ||
        !opt_bool(root, "parse_special", &parse_special, out, &status) ||
        !opt_bool(root, "with_pieces", &with_pieces, out, &status)) {
        json_decref(root);
        return status;
    }
    const char *text = json_string_value(content);
    size_t n_text = json_string_length(content);
    int32_t n = vb_tokenize(model, text, n_text, add_special, parse_special, NULL, 0);
    vb_token *toks = n >= 0 ? malloc(((size_t)n + 1) * sizeof *toks) : NULL;
    if (toks) n = vb_tokenize(model, text, n_text, add_special, parse_special, toks, n);
    json_t *arr = toks && n >= 0 ? json_array() : NULL;
    for (int32_t i = 0; arr && i < n; i++) {
        json_t *item = json_integer(toks[i]);
        if (with_pieces) {
            char piece[256];
            int b = vb_token_to_bytes(model, toks[i], piece, sizeof piece);
            if (b < 0) b = 0;
            if (b > (int)sizeof piece) b = (int)sizeof piece;
            item = json_pack("{s:o, s:o}", "id", item, "piece", cli_json_text(piece, (size_t)b));
        }
        json_array_append_new(arr, item);
    }
    free(toks);
    json_decref(root);
    if (!arr) {
        *out = api_error_json(n < 0 ? vb_status_str(n) : "out of memory", "server_error", NULL);
        return n < 0 ? 400 : 500;
    }
    *out = dump(json_pack("{s:o}", "tokens", arr));
    return 200;
}

int api_detokenize(const vb_model *model, const char *body, size_t len, char **out) {
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *tokens = json_object_get(root, "tokens");
    int32_t n_vocab = vb_model_get_info(model)->n_vocab;
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(tokens) ||
        (json_array_size(tokens) > 0 && !token_array(tokens, n_vocab))) {
        json_decref(root);
        char msg[160];
        snprintf(msg, sizeof msg, "the body must be {\"tokens\": [ids in [0, %d)]}", n_vocab);
        return reply_error(out, msg, "tokens");
    }
    sbuf text = {0};
    vb_detok d = {0};
    size_t i;
    json_t *t;
    json_array_foreach(tokens, i, t) {
        char piece[256];
        int w = vb_detok_push(model, &d, (vb_token)json_integer_value(t), piece, sizeof piece);
        if (w > 0) sb_add(&text, piece, (size_t)w);
    }
    char tail[16];
    int w = vb_detok_flush(&d, tail, sizeof tail); /* a trailing partial character: U+FFFD */
    if (w > 0) sb_add(&text, tail, (size_t)w);
    json_decref(root);
    if (text.oom) {
        free(text.p);
        *out = api_error_json("out of memory", "server_error", NULL);
        return 500;
    }
    *out = dump(json_pack("{s:o}", "content", cli_json_text(text.p ? text.p : "", text.len)));
    free(text.p);
    return 200;
}

char *api_props_json(const api_props *p) {
    return dump(json_pack("{s:s, s:s, s:i, s:i, s:i, s:{s:f, s:f, s:i, s:i, s:f, s:f, s:f, s:f}, "
                          "s:{s:i, s:I, s:f, s:i, s:i, s:i, s:b}}",
                          "model", p->model_name, "chat_template", p->chat_template, "total_slots", p->total_slots,
                          "n_vocab", p->n_vocab, "kv_tokens", p->kv_tokens, "default_generation_settings",
                          "temperature", 1.0, "top_p", 1.0, "top_k", 0, "max_tokens", p->default_tokens, "min_p", 0.0,
                          "repeat_penalty", 1.0, "presence_penalty", 0.0, "frequency_penalty", 0.0, "limits",
                          "max_tokens", p->max_tokens, "max_body", (json_int_t)p->max_body, "timeout_s", p->timeout_s,
                          "max_connections", (int)p->max_connections, "max_connections_per_ip",
                          (int)p->max_connections_per_ip, "idle_timeout_s", (int)p->idle_timeout_s, "api_key",
                          p->api_key));
}

#else
typedef int vb_http_api_unused; /* built without the server (see cmd_serve.c) */
#endif
