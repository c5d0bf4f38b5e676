/* chat_template.c - the public chat template API of vibee.h: a template from the GGUF's
 * tokenizer.chat_template, a file, a built-in name or the fallback (ChatML when <|im_start|> is
 * one token, else "role: content" lines); rendering with the model's BOS/EOS texts through
 * the Jinja interpreter (jinja.c); and tokenization that parses special tokens only in
 * template text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat/jinja.h"
#include "model.h"
#include "tokenizer/tokenizer.h"
#include "vibee.h"

struct vb_chat_template {
    vb_jinja *j;
    char *source;
    char origin[320];
};

/* Built-in templates: the common formats, written as Jinja so that one renderer serves all. */
static const struct { const char *name, *src; } k_builtin[] = {
    {"chatml", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
               "{% endif %}"},
    {"llama3", "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
               "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
               "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"gemma", "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
              "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
              "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
              "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set "
              "role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role "
              "+ '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt "
              "%}{{'<start_of_turn>model\\n'}}{% endif %}"},
    {"phi3", "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
             "{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}"
             "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}"
             "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
             "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"},
    {"mistral", "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % "
                "2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
                "}}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
                "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ "
                "raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"},
    {"plain", "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"},
};

static int make(const char *src, size_t len, const char *origin, vb_chat_template **out, char *err, size_t err_len) {
    vb_chat_template *t = calloc(1, sizeof *t);
    char *copy = malloc(len + 1);
    if (!t || !copy) {
        free(t);
        free(copy);
        if (err && err_len) snprintf(err, err_len, "out of memory");
        return VB_ERR_NOMEM;
    }
    memcpy(copy, src, len);
    copy[len] = 0;
    int st = vb_jinja_parse(src, len, NULL, &t->j, err, err_len);
    if (st != VB_OK) {
        free(copy);
        free(t);
        return st;
    }
    t->source = copy;
    snprintf(t->origin, sizeof t->origin, "%s", origin);
    *out = t;
    return VB_OK;
}

int vb_chat_template_parse(const char *src, size_t len, vb_chat_template **out, char *err, size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!out || (!src && len)) return VB_ERR_ARG;
    *out = NULL;
    return make(src ? src : "", len, "text", out, err, err_len);
}

void vb_chat_template_free(vb_chat_template *t) {
    if (!t) return;
    vb_jinja_free(t->j);
    free(t->source);
    free(t);
}

const char *vb_chat_template_origin(const vb_chat_template *t) { return t ? t->origin : ""; }
const char *vb_chat_template_source(const vb_chat_template *t) { return t ? t->source : ""; }

static int builtin(const char *name, const char *how, vb_chat_template **out, char *err, size_t err_len) {
    for (size_t k = 0; k < sizeof k_builtin / sizeof k_builtin[0]; k++)
        if (strcmp(k_builtin[k].name, name) == 0) {
            char origin[64];
            snprintf(origin, sizeof origin, "%s %s", how, name);
            return make(k_builtin[k].src, strlen(k_builtin[k].src), origin, out, err, err_len);
        }
    return VB_ERR_ARG;
}

/* True when text is exactly one token of the model's vocabulary, parsed as a special token. */
static bool one_special_token(const vb_model *m, const char *text) {
    vb_token t[4];
    return vb_tokenize(m, text, strlen(text), false, true, t, 4) == 1;
}

int vb_chat_template_for_model(const vb_model *m, const char *override, vb_chat_template **out, char *err,
                               size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!out) return VB_ERR_ARG;
    *out = NULL;
    if (override && *override) {
        if (builtin(override, "builtin", out, err, err_len) == VB_OK) return VB_OK;
        struct stat sb;
        if (stat(override, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            if (err && err_len)
                snprintf(err, err_len, "chat template '%s' is neither a built-in name (chatml, llama3, gemma, phi3, "
                         "mistral, plain) nor a readable file", override);
            return VB_ERR_IO;
        }
        if (sb.st_size > (1 << 20)) {
            if (err && err_len) snprintf(err, err_len, "chat template file %s is larger than 1 MiB", override);
            return VB_ERR_ARG;
        }
        FILE *f = fopen(override, "rb");
        char *buf = f ? malloc((size_t)sb.st_size + 1) : NULL;
        size_t n = buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
        if (f) fclose(f);
        if (!buf) {
            if (err && err_len) snprintf(err, err_len, "cannot read chat template file %s", override);
            return f ? VB_ERR_NOMEM : VB_ERR_IO;
        }
        char origin[300], perr[512];
        snprintf(origin, sizeof origin, "file %s", override);
        int st = make(buf, n, origin, out, perr, sizeof perr);
        free(buf);
        if (st != VB_OK && err && err_len) snprintf(err, err_len, "chat template file %s: %s", override, perr);
        return st;
    }
    if (!m) {
        if (err && err_len) snprintf(err, err_len, "no model and no chat template name");
        return VB_ERR_ARG;
    }
    const char *s = NULL;
    uint64_t len = 0;
    if (m->gguf && vb_gguf_get_str(m->gguf, "tokenizer.chat_template", &s, &len) && len > 0) {
        char perr[512];
        int st = make(s, (size_t)len, "gguf", out, perr, sizeof perr);
        if (st != VB_OK && err && err_len) snprintf(err, err_len, "the model's tokenizer.chat_template: %s", perr);
        return st;
    }
    bool chatml = one_special_token(m, "<|im_start|>") && one_special_token(m, "<|im_end|>");
    return builtin(chatml ? "chatml" : "plain", "fallback", out, err, err_len);
}

int vb_chat_template_apply(const vb_chat_template *t, const char *json, size_t json_len, bool add_generation_prompt,
                           const char *bos_token, const char *eos_token, vb_chat_prompt *out, char *err,
                           size_t err_len) {
    if (err && err_len) err[0] = 0;
    if (!t || !out || (!json && json_len)) return VB_ERR_ARG;
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < json_len && (json[i] == ' ' || json[i] == '\n' || json[i] == '\t' || json[i] == '\r')) i++;
    char *wrapped = NULL;
    const char *data = json;
    size_t data_len = json_len;
    if (i < json_len && json[i] == '[') { /* a bare array of messages */
        static const char pre[] = "{\"messages\": ";
        wrapped = malloc(sizeof pre + json_len + 2);
        if (!wrapped) return VB_ERR_NOMEM;
        memcpy(wrapped, pre, sizeof pre - 1);
        memcpy(wrapped + sizeof pre - 1, json, json_len);
        wrapped[sizeof pre - 1 + json_len] = '}';
        data = wrapped;
        data_len = sizeof pre + json_len;
    }
    vb_jinja_var vars[3] = {{"bos_token", bos_token ? bos_token : "", 0},
                            {"eos_token", eos_token ? eos_token : "", 0},
                            {"add_generation_prompt", NULL, add_generation_prompt ? 1 : 0}};
    int st = vb_jinja_render(t->j, data, data_len, vars, 3, &out->text, &out->user, &out->len, err, err_len);
    free(wrapped);
    return st;
}

/* Text of a special token, or "" (sim model, none). */
static void token_text(const vb_model *m, vb_token tok, char *buf, size_t len) {
    buf[0] = 0;
    if (tok < 0 || !m->tok) return;
    int n = vb_token_to_bytes(m, tok, buf, len - 1);
    if (n < 0 || (size_t)n >= len) n = 0;
    buf[n] = 0;
}

int vb_chat_apply(const vb_model *m, const vb_chat_template *t, const char *json, size_t json_len,
                  bool add_generation_prompt, vb_chat_prompt *out, char *err, size_t err_len) {
    if (!m) return VB_ERR_ARG;
    const vb_model_info *in = vb_model_get_info(m);
    char bos[128], eos[128];
    token_text(m, in->bos, bos, sizeof bos);
    token_text(m, in->eos, eos, sizeof eos);
    return vb_chat_template_apply(t, json, json_len, add_generation_prompt, bos, eos, out, err, err_len);
}

void vb_chat_prompt_free(vb_chat_prompt *p) {
    if (!p) return;
    free(p->text);
    free(p->user);
    memset(p, 0, sizeof *p);
}

int vb_tokenize_masked(const vb_model *m, const char *text, size_t text_len, bool add_special, const uint8_t *user,
                       vb_token *out, int32_t max_tokens) {
    if (!m || (!text && text_len) || max_tokens < 0 || (!out && max_tokens > 0)) return VB_ERR_ARG;
    if (!m->tok) return vb_tokenize(m, text, text_len, add_special, true, out, max_tokens); /* sim: bytes */
    return vb_tokenizer_encode_masked(m->tok, text, text_len, add_special, true, user, out, max_tokens);
}

int vb_tokenize_chat(const vb_model *m, const vb_chat_prompt *p, vb_token *out, int32_t max_tokens) {
    if (!m || !p || (!p->text && p->len) || max_tokens < 0 || (!out && max_tokens > 0)) return VB_ERR_ARG;
    int n = vb_tokenize_masked(m, p->text, p->len, false, p->user, NULL, 0);
    if (n < 0) return n;
    vb_token *tmp = malloc(((size_t)n + 1) * sizeof *tmp);
    if (!tmp) return VB_ERR_NOMEM;
    n = vb_tokenize_masked(m, p->text, p->len, false, p->user, tmp, n);
    const vb_model_info *in = vb_model_get_info(m);
    bool bos = in->add_bos && in->bos >= 0 && (n == 0 || tmp[0] != in->bos);
    int total = n + (bos ? 1 : 0);
    int w = 0;
    if (bos && w < max_tokens) out[w++] = in->bos;
    for (int i = 0; i < n && w < max_tokens; i++) out[w++] = tmp[i];
    free(tmp);
    return total;
}
