/* test_chat_template.c - vibee's Jinja chat template renderer against python3-jinja2 configured
 * as Hugging Face transformers configures it (scripts/chat_template_ref.py): the real
 * chat_template texts of Llama 3 / 3.2 / 3.3, Mistral v0.1 / Nemo / Small 3.2, Gemma 2 / 3,
 * Phi-3 / 3.5, Qwen2.5, Granite 3.3, Hermes 3 tool use (recursive macros),
 * Qwen3, SmolLM2, DeepSeek-R1-Distill and ChatML (tests/data/chat_templates) rendered for every
 * conversation of conversations.json, with and without the generation prompt: the same text,
 * or an error on both sides (with the same message for raise_exception). Also: which bytes are
 * marked as user text, limits that fail cleanly, and errors that name the construct. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "test.h"
#include "vibee.h"

#define TDIR "tests/data/chat_templates"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

#ifdef VB_HAVE_JANSSON
#include <jansson.h>
/* The variables as an OpenAI client sends them: every tool call's object arguments as a JSON
   string. NULL when no call has object arguments. */
static char *openai_shaped(const char *data, size_t len) {
    json_t *root = json_loadb(data, len, 0, NULL);
    size_t i, k;
    json_t *m, *c;
    int changed = 0;
    json_array_foreach(json_object_get(root, "messages"), i, m) {
        json_array_foreach(json_object_get(m, "tool_calls"), k, c) {
            json_t *fn = json_object_get(c, "function"), *a = json_object_get(fn, "arguments");
            if (!json_is_object(a)) continue;
            char *text = json_dumps(a, 0);
            json_object_set_new(fn, "arguments", json_string(text));
            free(text);
            changed++;
        }
    }
    char *out = changed ? json_dumps(root, 0) : NULL;
    json_decref(root);
    return out;
}
#endif

TEST(chat_template_goldens_vs_jinja2) {
    FILE *p = popen("python3 scripts/chat_template_ref.py " TDIR " 2>&1", "r");
    CHECK(p);
    size_t cap = 1 << 22, n = 0, r;
    char *buf = malloc(cap);
    CHECK(buf);
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) n += r;
    int st = pclose(p);
    buf[n] = 0;
    CHECKF(st == 0 && n > 0, "python3-jinja2 reference failed (apt-get install python3-jinja2): %.300s", buf);
    int records = 0, ok_records = 0, err_records = 0, openai_records = 0;
    char cur_name[128] = "";
    vb_chat_template *t = NULL;
    size_t pos = 0;
    while (pos < n) {
        char name[128], status[16];
        int ci, add_gen;
        size_t dl, ol;
        char *nl = memchr(buf + pos, '\n', n - pos);
        CHECK(nl);
        *nl = 0;
        CHECKF(sscanf(buf + pos, "@@ %127s %d %d %15s %zu %zu", name, &ci, &add_gen, status, &dl, &ol) == 6,
               "bad record header: %.200s", buf + pos);
        const char *data = nl + 1, *want = nl + 1 + dl;
        pos = (size_t)(want - buf) + ol + 1;
        CHECK(pos <= n + 1);
        if (strcmp(name, cur_name) != 0) {
            vb_chat_template_free(t);
            t = NULL;
            char path[256], err[512];
            snprintf(path, sizeof path, TDIR "/%s", name);
            size_t sl;
            char *src = slurp(path, &sl);
            CHECK(src);
            int pst = vb_chat_template_parse(src, sl, &t, err, sizeof err);
            free(src);
            CHECKF(pst == VB_OK, "%s: parse failed: %s", name, err);
            snprintf(cur_name, sizeof cur_name, "%s", name);
        }
        vb_chat_prompt out;
        char err[512];
        int rs = vb_chat_template_apply(t, data, dl, add_gen, "<|bos|>", "<|eos|>", &out, err, sizeof err);
        records++;
        if (strcmp(status, "ok") == 0) {
            CHECKF(rs == VB_OK, "%s case %d gen %d: vibee failed (%d: %s), jinja2 rendered %.200s", name, ci, add_gen,
                   rs, err, want);
            bool same = out.len == ol && memcmp(out.text, want, ol) == 0;
            if (!same) {
                size_t k = 0;
                while (k < out.len && k < ol && out.text[k] == want[k]) k++;
                CHECKF(same, "%s case %d gen %d: differs at byte %zu:\n vibee : %.120s\n jinja2: %.120s", name, ci,
                       add_gen, k, out.text + (k > 40 ? k - 40 : 0), want + (k > 40 ? k - 40 : 0));
            }
            ok_records++;
            vb_chat_prompt_free(&out);
#ifdef VB_HAVE_JANSSON
            /* the same conversation as an OpenAI client sends it (arguments as JSON strings),
               through vb_chat_tool_vars, renders the same for templates that render tools and
               tool calls themselves (test_tool_calls.c covers the others) */
            const char *src = vb_chat_template_source(t);
            char *oa = strstr(src, "tools") && strstr(src, "tool_calls") ? openai_shaped(data, dl) : NULL;
            if (oa) {
                char *vars = NULL;
                int vs = vb_chat_tool_vars(t, oa, strlen(oa), &vars, err, sizeof err);
                free(oa);
                CHECKF(vs == VB_OK, "%s case %d: vb_chat_tool_vars: %s", name, ci, err);
                rs = vb_chat_template_apply(t, vars, strlen(vars), add_gen, "<|bos|>", "<|eos|>", &out, err, sizeof err);
                free(vars);
                CHECKF(rs == VB_OK, "%s case %d gen %d (OpenAI shape): %s", name, ci, add_gen, err);
                same = out.len == ol && memcmp(out.text, want, ol) == 0;
                vb_chat_prompt_free(&out);
                CHECKF(same, "%s case %d gen %d: the OpenAI-shaped tool_calls render differently", name, ci, add_gen);
                openai_records++;
            }
#endif
        } else {
            CHECKF(rs != VB_OK, "%s case %d gen %d: vibee rendered, jinja2 raised '%.*s'", name, ci, add_gen, (int)ol, want);
            vb_chat_prompt_free(&out);
            /* raise_exception messages are the template's own: they must come through */
            char msg[256];
            snprintf(msg, sizeof msg, "%.*s", (int)(ol < 255 ? ol : 255), want);
            if (strstr(msg, "alternate") || strstr(msg, "not supported") || strstr(msg, "IDs"))
                CHECKF(strstr(err, msg) != NULL, "%s case %d: error '%s' does not carry '%s'", name, ci, err, msg);
            err_records++;
        }
    }
    vb_chat_template_free(t);
    free(buf);
    CHECKF(records >= 150 && ok_records >= 120, "only %d records (%d ok)", records, ok_records);
    printf("    %d renders equal to jinja2, %d errors on both sides, %d with OpenAI-shaped tool_calls\n", ok_records,
           err_records, openai_records);
}

/* Bytes from messages are marked as user text; template text, bos_token and the role markers
 * are not. */
TEST(chat_template_marks_user_bytes) {
    vb_chat_template *t = NULL;
    char err[256];
    const char *src = "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}";
    CHECK(vb_chat_template_parse(src, strlen(src), &t, err, sizeof err) == VB_OK);
    const char *msgs = "[{\"role\":\"user\",\"content\":\"  a<|im_end|>b \"}]";
    vb_chat_prompt p;
    CHECK(vb_chat_template_apply(t, msgs, strlen(msgs), true, "<s>", "</s>", &p, err, sizeof err) == VB_OK);
    const char *want = "<s><|im_start|>user\na<|im_end|>b<|im_end|>\n";
    CHECKF(strcmp(p.text, want) == 0, "got %s", p.text);
    /* marks: <s><|im_start|> template, "user" data, "\n" template, "a<|im_end|>b" data, rest template */
    size_t u0 = strlen("<s><|im_start|>"), u1 = u0 + 4, c0 = u1 + 1, c1 = c0 + strlen("a<|im_end|>b");
    for (size_t i = 0; i < p.len; i++) {
        int want_user = (i >= u0 && i < u1) || (i >= c0 && i < c1);
        CHECKF(p.user[i] == want_user, "byte %zu ('%c') marked %d", i, p.text[i], p.user[i]);
    }
    vb_chat_prompt_free(&p);
    vb_chat_template_free(t);
}

TEST(chat_template_errors_and_limits) {
    char err[512];
    vb_chat_template *t = NULL;
    /* unsupported constructs are named */
    const char *inc = "{% include 'other.jinja' %}";
    CHECK_EQ_INT(vb_chat_template_parse(inc, strlen(inc), &t, err, sizeof err), VB_ERR_UNSUPPORTED);
    CHECKF(strstr(err, "include"), "err: %s", err);
    /* endless macro recursion stops at the depth limit */
    const char *rec = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    CHECK_EQ_INT(vb_chat_template_parse(rec, strlen(rec), &t, err, sizeof err), VB_OK);
    vb_chat_prompt rp;
    CHECK_EQ_INT(vb_chat_template_apply(t, "[]", 2, true, NULL, NULL, &rp, err, sizeof err), VB_ERR_STATE);
    CHECKF(strstr(err, "deeper"), "err: %s", err);
    vb_chat_template_free(t);
    const char *bad = "{% if x %}no end";
    CHECK_EQ_INT(vb_chat_template_parse(bad, strlen(bad), &t, err, sizeof err), VB_ERR_FORMAT);
    CHECKF(strstr(err, "endif"), "err: %s", err);
    const char *unclosed = "{{ 'a' ";
    CHECK_EQ_INT(vb_chat_template_parse(unclosed, strlen(unclosed), &t, err, sizeof err), VB_ERR_FORMAT);
    /* too deep */
    char deep[4096];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++) deep[k++] = ')';
    k += (size_t)snprintf(deep + k, sizeof deep - k, " }}");
    CHECK(vb_chat_template_parse(deep, k, &t, err, sizeof err) == VB_ERR_ARG);
    /* too large */
    size_t big = (1 << 20) + 1;
    char *huge = malloc(big);
    CHECK(huge);
    memset(huge, 'x', big);
    CHECK_EQ_INT(vb_chat_template_parse(huge, big, &t, err, sizeof err), VB_ERR_ARG);
    free(huge);
    /* endless work is stopped: 1000^3 iterations */
    const char *loop = "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}";
    CHECK_EQ_INT(vb_chat_template_parse(loop, strlen(loop), &t, err, sizeof err), VB_OK);
    vb_chat_prompt p;
    double t0 = vb_time_now();
    int ls = vb_chat_template_apply(t, "[]", 2, true, NULL, NULL, &p, err, sizeof err);
    CHECKF(ls == VB_ERR_ARG || ls == VB_ERR_NOMEM, "status %d: %s", ls, err);
    CHECKF(vb_time_now() - t0 < 30, "took %.1f s", vb_time_now() - t0);
    vb_chat_template_free(t);
    /* output growth is bounded (string doubling) */
    const char *grow = "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}";
    CHECK_EQ_INT(vb_chat_template_parse(grow, strlen(grow), &t, err, sizeof err), VB_OK);
    int rs = vb_chat_template_apply(t, "[]", 2, true, NULL, NULL, &p, err, sizeof err);
    CHECKF(rs == VB_ERR_ARG || rs == VB_ERR_NOMEM, "status %d: %s", rs, err);
    vb_chat_template_free(t);
    /* numeric edges are defined behaviour (UBSan in make asan): huge floats as indices, ranges
       and steps near INT64 limits, abs and modulo of the smallest integer */
    static const char *const edges[] = {
        "{{ [1, 2, 3][1e300:] }}{{ [1, 2, 3][-1e300] }}{{ 'abc'[:1e19] }}",
        "{{ range(-9223372036854775807, 9223372036854775807, 4611686018427387904) | list }}",
        "{{ range(9223372036854775807) | length }}",
        "{{ (-9223372036854775807 - 1) | abs }} {{ (-9223372036854775807 - 1) % -1 }} {{ (-9223372036854775807 - 1) // -1 }}",
        "{{ (-9223372036854775807 - 1) is divisibleby(-1) }} {{ 9223372036854775807 + 1 }} {{ 2 ** 200 }} {{ 1e308 * 10 }}",
        "{{ 'x' * 9223372036854775807 }}", "{{ 1e300 | int }} {{ (0.0 / 1) | int }}"};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        CHECK_EQ_INT(vb_chat_template_parse(edges[k], strlen(edges[k]), &t, err, sizeof err), VB_OK);
        int es = vb_chat_template_apply(t, "[]", 2, true, NULL, NULL, &p, err, sizeof err);
        if (es == VB_OK) vb_chat_prompt_free(&p);
        else CHECKF(err[0], "edge %zu: status %d without a message", k, es);
        vb_chat_template_free(t);
    }
    /* raise_exception reaches the caller */
    const char *raise = "{{ raise_exception('no system please') }}";
    CHECK_EQ_INT(vb_chat_template_parse(raise, strlen(raise), &t, err, sizeof err), VB_OK);
    CHECK_EQ_INT(vb_chat_template_apply(t, "[]", 2, true, NULL, NULL, &p, err, sizeof err), VB_ERR_STATE);
    CHECKF(strstr(err, "no system please"), "err: %s", err);
    /* bad JSON */
    CHECK_EQ_INT(vb_chat_template_apply(t, "[{\"role\": }]", 12, true, NULL, NULL, &p, err, sizeof err), VB_ERR_ARG);
    vb_chat_template_free(t);
}

/* Mutated templates and data (bytes flipped, inserted, deleted, tags duplicated) never crash:
 * every call returns a status (run under `make asan` for the sanitizers' view). */
TEST(chat_template_mutations_fail_cleanly) {
    static const char *names[] = {"qwen3.jinja", "llama3.2.jinja", "mistral-nemo.jinja", "gemma2.jinja",
                                  "deepseek-r1-distill.jinja", "qwen2.5.jinja"};
    size_t cl;
    char *conv = slurp(TDIR "/conversations.json", &cl);
    CHECK(conv);
    /* the "vars" object of the tools case, as data */
    const char *vars = strstr(conv, "\"tools, a tool call and its result\"");
    CHECK(vars);
    vars = strstr(vars, "\"vars\": ") + 8;
    int depth = 0;
    const char *e = vars;
    do {
        depth += *e == '{';
        depth -= *e == '}';
        e++;
    } while (depth > 0 && *e);
    size_t dl = (size_t)(e - vars);
    uint64_t s = 88172645463325252ull;
    int rendered = 0, failed = 0;
    static const char *frags[] = {"{%", "%}", "{{", "}}", "{%-", "-%}", "(", ")", "[", "]", "'", "\"", "|", ".", "~",
                                  " if ", " else ", " for ", " in ", "endfor", "endif", "loop.", "namespace(", "[::-1]",
                                  "tojson", "\\", "{#", "#}", "**", "//"};
    for (size_t ti = 0; ti < sizeof names / sizeof names[0]; ti++) {
        char path[256];
        snprintf(path, sizeof path, TDIR "/%s", names[ti]);
        size_t sl;
        char *src = slurp(path, &sl);
        CHECK(src);
        char *buf = malloc(sl + 4096), *data = malloc(dl + 256);
        CHECK(buf && data);
        for (int it = 0; it < 2000; it++) {
            memcpy(buf, src, sl);
            size_t n = sl;
            memcpy(data, vars, dl);
            size_t dn = dl;
            int edits = 1 + (int)((s >> 7) % 4);
            for (int k = 0; k < edits; k++) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                size_t at = (size_t)(s >> 11) % (n ? n : 1);
                switch ((s >> 3) % 4) {
                case 0: buf[at] = (char)(s >> 40); break;
                case 1: if (n > 1) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;
                default: {
                    const char *f = frags[(s >> 20) % (sizeof frags / sizeof frags[0])];
                    size_t fl = strlen(f);
                    if (n + fl < sl + 4096) { memmove(buf + at + fl, buf + at, n - at); memcpy(buf + at, f, fl); n += fl; }
                }
                }
            }
            if (it % 3 == 0) { /* mutate the data too */
                size_t at = (size_t)(s >> 17) % dn;
                data[at] = "{}[]\",:0a\\"[(s >> 33) % 10];
            }
            vb_chat_template *t = NULL;
            char err[256];
            int st = vb_chat_template_parse(buf, n, &t, err, sizeof err);
            if (st != VB_OK) {
                CHECK(t == NULL && err[0]);
                failed++;
                continue;
            }
            vb_chat_prompt p;
            st = vb_chat_template_apply(t, data, dn, it & 1, "<s>", "</s>", &p, err, sizeof err);
            if (st == VB_OK) {
                rendered++;
                CHECK(p.text && p.text[p.len] == 0);
                vb_chat_prompt_free(&p);
            } else {
                CHECK(err[0]);
                failed++;
            }
            vb_chat_template_free(t);
        }
        free(buf);
        free(data);
        free(src);
    }
    free(conv);
    CHECKF(rendered > 50 && failed > 50, "rendered %d, failed %d", rendered, failed);
}

/* A GGUF's tokenizer.chat_template is the model's template: the real Qwen2.5 vocabulary with
 * Qwen2.5's template written into a copy of its GGUF; `vibee info` names it, and it renders with
 * the vocabulary's BOS/EOS texts exactly as the template parsed from text does. */
TEST(chat_template_from_gguf_metadata) {
    char src_path[512], dst_path[] = "/tmp/vb_chat_tmpl_XXXXXX", err[512];
    snprintf(src_path, sizeof src_path, "%s/tokenizer/qwen25.gguf", vbt_fixture_dir());
    vb_gguf *g = NULL;
    CHECKF(vb_gguf_open(src_path, false, &g, err, sizeof err) == VB_OK, "%s (make fixtures)", err);
    size_t tl;
    char *tmpl_text = slurp(TDIR "/qwen2.5.jinja", &tl);
    CHECK(tmpl_text);
    vb_gguf_writer *w = vb_gguf_writer_init();
    CHECK(w);
    static const char *const skip[] = {"tokenizer.chat_template"};
    CHECK(vb_gguf_writer_copy_keys(w, g, skip, 1) == VB_OK);
    CHECK(vb_gguf_writer_set_str(w, "tokenizer.chat_template", tmpl_text) == VB_OK);
    int fd = mkstemp(dst_path);
    CHECK(fd >= 0);
    close(fd);
    CHECKF(vb_gguf_writer_write(w, dst_path, err, sizeof err) == VB_OK, "%s", err);
    vb_gguf_writer_free(w);
    vb_gguf_close(g);
    vb_model *m = NULL;
    vb_model_params mp = vb_model_default_params();
    int st = vb_model_load(dst_path, &mp, &m, err, sizeof err);
    CHECKF(st == VB_OK, "%s", err);
    vb_chat_template *from_gguf = NULL, *from_text = NULL;
    CHECK(vb_chat_template_for_model(m, NULL, &from_gguf, err, sizeof err) == VB_OK);
    CHECKF(strcmp(vb_chat_template_origin(from_gguf), "gguf") == 0, "origin %s", vb_chat_template_origin(from_gguf));
    CHECK(strcmp(vb_chat_template_source(from_gguf), tmpl_text) == 0);
    CHECK(vb_chat_template_parse(tmpl_text, tl, &from_text, err, sizeof err) == VB_OK);
    const char *msgs = "[{\"role\":\"user\",\"content\":\"hi\"}]";
    vb_chat_prompt a, b;
    CHECK(vb_chat_apply(m, from_gguf, msgs, strlen(msgs), true, &a, err, sizeof err) == VB_OK);
    CHECK(vb_chat_template_apply(from_text, msgs, strlen(msgs), true, "<|endoftext|>", "<|im_end|>", &b, err, sizeof err) == VB_OK);
    CHECKF(a.len == b.len && memcmp(a.text, b.text, a.len) == 0, "gguf %s vs text %s", a.text, b.text);
    CHECK(strstr(a.text, "You are Qwen, created by Alibaba Cloud"));
    vb_chat_prompt_free(&a);
    vb_chat_prompt_free(&b);
    /* an override wins over the GGUF's */
    vb_chat_template *over = NULL;
    CHECK(vb_chat_template_for_model(m, "llama3", &over, err, sizeof err) == VB_OK);
    CHECK(strcmp(vb_chat_template_origin(over), "builtin llama3") == 0);
    vb_chat_template_free(over);
    vb_chat_template_free(from_gguf);
    vb_chat_template_free(from_text);
    vb_model_free(m);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "'%s' info '%s' 2>&1", vbt_vibee_bin(), dst_path);
    vbt_run_cmd(cmd, out, sizeof out);
    remove(dst_path);
    free(tmpl_text);
    CHECKF(strstr(out, "chat template gguf"), "vibee info: %s", out);
}
