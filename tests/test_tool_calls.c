/* test_tool_calls.c - tool calls in the chat template's format (src/chat/tool_calls.c): which
 * format each real template of tests/data/chat_templates selects; the parser on hand-written
 * outputs of every format (several calls, text before them, arguments with escapes, the ids
 * Mistral needs; truncated calls, trailing text and non-object arguments are not calls); the
 * streaming bound; the grammar of calls (sentences of every format accepted by the byte matcher
 * and parsed back; wrong names, arguments off the schema, a second call when only one is allowed
 * rejected; unenforceable schemas and bad tools refused naming the tool); and the generic
 * format's rendering of tools and earlier calls. The rendering of OpenAI-shaped tool_calls by
 * the real templates is checked against python3-jinja2 in test_chat_template.c. */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "test.h"
#include "vibee.h"

#ifdef VB_HAVE_JANSSON
#include <jansson.h>


static vb_chat_template *load(const char *file) {
    char path[256];
    snprintf(path, sizeof path, "tests/data/chat_templates/%s", file);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    vb_chat_template *t = NULL;
    char err[256];
    return vb_chat_template_parse(buf, n, &t, err, sizeof err) == VB_OK ? t : NULL;
}

TEST(tool_calls_format_of_templates) {
    static const char *const want[][2] = {
        {"qwen2.5.jinja", "hermes"},       {"qwen3.jinja", "hermes"},        {"hermes3-tool-use.jinja", "hermes"},
        {"llama3.2.jinja", "llama3"},      {"llama3.3.jinja", "llama3"},     {"mistral-nemo.jinja", "mistral"},
        {"mistral-small-3.2.jinja", "mistral-args"}, {"granite3.3.jinja", "granite"}, {"chatml.jinja", "generic"},
        {"deepseek-r1-distill.jinja", "deepseek"}, {"llama3.jinja", "generic"},       {"gemma2.jinja", "generic"},      {"mistral-v0.1.jinja", "generic"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        vb_chat_template *t = load(want[i][0]);
        CHECKF(t, "%s did not load", want[i][0]);
        const char *f = vb_chat_tool_format(t);
        vb_chat_template_free(t);
        CHECKF(!strcmp(f, want[i][1]), "%s: format %s, want %s", want[i][0], f, want[i][1]);
    }
    vb_chat_template *t = NULL;
    CHECK(vb_chat_template_for_model(NULL, "plain", &t, NULL, 0) == VB_OK);
    CHECK(!strcmp(vb_chat_tool_format(t), "generic"));
    vb_chat_template_free(t);
}

/* DeepSeek's markers (fullwidth bars, U+2581 lower blocks) */
#define DS_BEGIN "<\uff5ctool\u2581calls\u2581begin\uff5c>"
#define DS_END "<\uff5ctool\u2581calls\u2581end\uff5c>"
#define DS_OPEN "<\uff5ctool\u2581call\u2581begin\uff5c>function<\uff5ctool\u2581sep\uff5c>"
#define DS_CLOSE "<\uff5ctool\u2581call\u2581end\uff5c>"

/* Parse text; check n calls with the given names and arguments texts and content length. */
typedef struct pcase {
    const char *format, *text;
    int n_calls; /* 0: not calls */
    size_t content_len;
    const char *name[3], *args[3];
} pcase;

TEST(tool_calls_parse_each_format) {
    static const pcase cases[] = {
        {"hermes", "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2.5e1]}}\n</tool_call>\n<tool_call>\n{\"name\": \"t-2\", \"arguments\": {}}\n</tool_call>\n",
         2, 13, {"get_weather", "t-2"}, {"{\"city\": \"Paris\", \"days\": [1, 2.5e1]}", "{}"}},
        {"hermes", "<tool_call>{\"arguments\": {\"s\": \"a\\\"b\\\\c\\n\\u00e9}\"}, \"name\": \"f\"}</tool_call>", 1, 0,
         {"f"}, {"{\"s\": \"a\\\"b\\\\c\\n\\u00e9}\"}"}},
        {"hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"q\\\": 1}\"}\n</tool_call>", 1, 0, {"f"}, {"{\"q\": 1}"}},
        {"generic", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": null}}\n</tool_call>", 1, 0, {"f"}, {"{\"x\": null}"}},
        {"llama3", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", 1, 0, {"get_weather"}, {"{\"city\": \"Paris\"}"}},
        {"llama3", " <|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": true}}\n", 1, 0, {"f"}, {"{\"a\": true}"}},
        {"mistral", "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"q\": [\"]\"]}}]", 2, 0,
         {"a", "b"}, {"{}", "{\"q\": [\"]\"]}"}},
        {"mistral-args", "ok [TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]f[ARGS]{}", 2, 3,
         {"get_weather", "f"}, {"{\"city\": \"Paris\"}", "{}"}},
        {"granite", "<|tool_call|>[{\"name\": \"f\", \"arguments\": {\"a\": [1, 2]}}]", 1, 0, {"f"}, {"{\"a\": [1, 2]}"}},
        {"deepseek", "<think>\nhm\n</think>\n\n" DS_BEGIN DS_OPEN "get_weather\n```json\n{\"city\": \"Paris\"}\n```" DS_CLOSE "\n"
         DS_OPEN "f\n```json\n{}\n```" DS_CLOSE DS_END, 2, 21, {"get_weather", "f"}, {"{\"city\": \"Paris\"}", "{}"}},
        /* not calls: the text is content */
        {"hermes", "no calls here", 0, 0, {0}, {0}},
        {"hermes", "<tool_call>\n{\"name\": \"f\", \"argu", 0, 0, {0}, {0}},                       /* cut */
        {"hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call> and more", 0, 0, {0}, {0}}, /* after */
        {"hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": 5}\n</tool_call>", 0, 0, {0}, {0}}, /* not an object */
        {"hermes", "<tool_call>\n{\"name\": \"f g\", \"arguments\": {}}\n</tool_call>", 0, 0, {0}, {0}}, /* bad name */
        {"llama3", "Hello {\"name\": \"f\", \"parameters\": {}}", 0, 0, {0}, {0}},                 /* not first */
        {"llama3", "{\"name\": \"f\", \"parameters\": {}} {\"name\": \"g\", \"parameters\": {}}", 0, 0, {0}, {0}}, /* one call */
        {"mistral", "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}", 0, 0, {0}, {0}},          /* no ] */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const pcase *p = &cases[c];
        char *calls = NULL;
        size_t cl = 0, n = strlen(p->text);
        CHECK_EQ_INT(vb_chat_tool_parse(p->format, p->text, n, false, &calls, &cl), VB_OK);
        if (!p->n_calls) {
            CHECKF(!calls && cl == n, "case %zu (%s): parsed as calls: %s", c, p->format, calls ? calls : "");
            continue;
        }
        CHECKF(calls, "case %zu (%s): no calls in %s", c, p->format, p->text);
        json_t *arr = json_loads(calls, 0, NULL);
        free(calls);
        CHECKF(json_is_array(arr) && (int)json_array_size(arr) == p->n_calls && cl == p->content_len,
               "case %zu: %zu calls, content %zu", c, json_array_size(arr), cl);
        for (int k = 0; k < p->n_calls; k++) {
            json_t *call = json_array_get(arr, (size_t)k), *fn = json_object_get(call, "function");
            const char *id = json_string_value(json_object_get(call, "id"));
            const char *name = json_string_value(json_object_get(fn, "name"));
            const char *args = json_string_value(json_object_get(fn, "arguments"));
            bool mistral = !strncmp(p->format, "mistral", 7);
            bool id_ok = id && (mistral ? strlen(id) == 9 && strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == 9
                                        : strlen(id) == 29 && !strncmp(id, "call_", 5));
            bool ok = id_ok && !strcmp(json_string_value(json_object_get(call, "type")), "function") && name &&
                      !strcmp(name, p->name[k]) && args && !strcmp(args, p->args[k]);
            if (!ok) json_decref(arr);
            CHECKF(ok, "case %zu call %d: id %s name %s args %s", c, k, id ? id : "-", name ? name : "-", args ? args : "-");
        }
        json_decref(arr);
    }
}

/* A text cut at the token limit: the complete calls before the unfinished one count. */
TEST(tool_calls_parse_cut_text) {
    const char *t = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", \"argu";
    char *calls = NULL;
    size_t cl = 0;
    CHECK_EQ_INT(vb_chat_tool_parse("hermes", t, strlen(t), false, &calls, &cl), VB_OK);
    CHECK(!calls && cl == strlen(t));
    CHECK_EQ_INT(vb_chat_tool_parse("hermes", t, strlen(t), true, &calls, &cl), VB_OK);
    CHECKF(calls && cl == 0 && strstr(calls, "\"arguments\":\"{\\\"a\\\": 1}\""),
           "%s", calls ? calls : "(none)");
    json_t *arr = json_loads(calls, 0, NULL);
    free(calls);
    CHECK_EQ_INT(json_array_size(arr), 1);
    json_decref(arr);
    const char *none = "<tool_call>\n{\"name\": \"f\", \"argu";
    CHECK_EQ_INT(vb_chat_tool_parse("hermes", none, strlen(none), true, &calls, &cl), VB_OK);
    CHECK(!calls && cl == strlen(none));
}

TEST(tool_calls_stream_bound) {
    CHECK_EQ_INT(vb_chat_tool_content_len("hermes", "abc <tool", 9), 4);
    CHECK_EQ_INT(vb_chat_tool_content_len("hermes", "abc <", 5), 4);
    CHECK_EQ_INT(vb_chat_tool_content_len("hermes", "abc <b>", 7), 7);
    CHECK_EQ_INT(vb_chat_tool_content_len("hermes", "x<tool_call>\n{", 14), 1);
    CHECK_EQ_INT(vb_chat_tool_content_len("hermes", "x<tool_call>{", 13), 1);
    CHECK_EQ_INT(vb_chat_tool_content_len("mistral", "hi [TOOL_", 9), 3);
    CHECK_EQ_INT(vb_chat_tool_content_len("llama3", "  {\"na", 6), 0);
    CHECK_EQ_INT(vb_chat_tool_content_len("llama3", "Hello", 5), 5);
    CHECK_EQ_INT(vb_chat_tool_content_len("llama3", "", 0), 0);
}

static const char k_tools[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"weather\", \"parameters\": "
    "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"maxLength\": 8}, \"unit\": {\"enum\": "
    "[\"c\", \"f\"]}}, \"required\": [\"city\", \"unit\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"add\", \"parameters\": {\"type\": \"object\", \"properties\": "
    "{\"xs\": {\"type\": \"array\", \"items\": {\"type\": \"number\"}, \"maxItems\": 3}}, \"required\": [\"xs\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"ping\"}}]";

static vb_grammar *tool_grammar(const char *format, const char *only, bool parallel) {
    char *gbnf = NULL, err[256];
    if (vb_chat_tool_grammar(format, k_tools, strlen(k_tools), only, parallel, &gbnf, err, sizeof err) != VB_OK) {
        fprintf(stderr, "    grammar: %s\n", err);
        return NULL;
    }
    vb_grammar *g = NULL;
    int st = vb_grammar_parse(gbnf, strlen(gbnf), &g, err, sizeof err);
    if (st != VB_OK) fprintf(stderr, "    gbnf: %s\n%s\n", err, gbnf);
    free(gbnf);
    return g;
}

/* Every sentence is accepted and parses back to calls; the rejects are not sentences. */
TEST(tool_calls_grammar_each_format) {
    static const struct {
        const char *format, *only;
        bool parallel;
        const char *accept[3], *reject[4];
    } cases[] = {
        {"hermes", NULL, true,
         {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa\\\"ris\", \"unit\": \"c\"}}\n</tool_call>",
          "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"xs\": [1, -2.5]}}\n</tool_call>\n<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>"},
         {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"k\"}}\n</tool_call>",
          "<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>",
          "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"xs\": [1, 2, 3, 4]}}\n</tool_call>",
          "hello"}},
        {"hermes", "add", false,
         {"<tool_call>\n{\"name\": \"add\", \"arguments\": {\"xs\": []}}\n</tool_call>"},
         {"<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>",
          "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"xs\": []}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"xs\": []}}\n</tool_call>"}},
        {"llama3", NULL, true,
         {"{\"name\": \"ping\", \"parameters\": {}}", "{\"name\": \"add\", \"parameters\": {\"xs\": [7]}}"},
         {"{\"name\": \"ping\", \"parameters\": {}}{\"name\": \"ping\", \"parameters\": {}}",
          "{\"name\": \"ping\", \"arguments\": {}}"}},
        {"mistral", NULL, true,
         {"[TOOL_CALLS][{\"name\": \"ping\", \"arguments\": {}}, {\"name\": \"add\", \"arguments\": {\"xs\": [0]}}]"},
         {"[TOOL_CALLS][]", "[TOOL_CALLS]{\"name\": \"ping\", \"arguments\": {}}"}},
        {"mistral-args", NULL, true,
         {"[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Rome\", \"unit\": \"f\"}[TOOL_CALLS]ping[ARGS]{}"},
         {"[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Rome\"}"}},
        {"deepseek", NULL, true,
         {DS_BEGIN DS_OPEN "ping\n```json\n{}\n```" DS_CLOSE "\n" DS_OPEN "add\n```json\n{\"xs\": [1]}\n```" DS_CLOSE DS_END},
         {DS_BEGIN DS_OPEN "ping\n```json\n{}\n```" DS_CLOSE}},
        {"granite", "ping", true, {"<|tool_call|>[{\"name\": \"ping\", \"arguments\": {}}]"},
         {"<|tool_call|>[{\"name\": \"add\", \"arguments\": {\"xs\": []}}]"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        vb_grammar *g = tool_grammar(cases[c].format, cases[c].only, cases[c].parallel);
        CHECKF(g, "case %zu (%s): no grammar", c, cases[c].format);
        for (int k = 0; k < 3 && cases[c].accept[k]; k++) {
            const char *s = cases[c].accept[k];
            int m = vbt_grammar_matches(g, s, strlen(s));
            char *calls = NULL;
            size_t cl;
            vb_chat_tool_parse(cases[c].format, s, strlen(s), false, &calls, &cl);
            bool ok = m == 1 && calls && cl == 0;
            free(calls);
            if (!ok) vb_grammar_free(g);
            CHECKF(ok, "case %zu (%s): %s: matches %d, parsed %d", c, cases[c].format, s, m, calls != NULL);
        }
        for (int k = 0; k < 4 && cases[c].reject[k]; k++) {
            int m = vbt_grammar_matches(g, cases[c].reject[k], strlen(cases[c].reject[k]));
            if (m != 0) vb_grammar_free(g);
            CHECKF(m == 0, "case %zu (%s): accepted %s", c, cases[c].format, cases[c].reject[k]);
        }
        vb_grammar_free(g);
    }
}

TEST(tool_calls_grammar_refusals) {
    static const struct { const char *tools, *only, *words[2]; } bad[] = {
        {"[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"string\", \"pattern\": \"a+\"}}}]",
         NULL, {"tools[0]", "pattern"}},
        {"[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, {\"type\": \"function\", \"function\": {\"name\": \"g\", "
         "\"parameters\": {\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\", \"minimum\": 0}}}}}]",
         NULL, {"tools[1] (g)", "minimum"}},
        {"[{\"type\": \"function\", \"function\": {\"name\": \"bad name\"}}]", NULL, {"tools[0].function.name", "a-z"}},
        {"[{\"type\": \"code\"}]", NULL, {"tools[0]", "function"}},
        {"[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": 3}}]", NULL, {"parameters", "schema"}},
        {"[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", "g", {"no tool is named", "'g'"}},
        /* a tool not chosen is checked all the same */
        {"[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, {\"type\": \"function\", \"function\": {\"name\": \"g\", "
         "\"parameters\": {\"type\": \"string\", \"pattern\": \"x\"}}}]", "f", {"tools[1] (g)", "pattern"}},
        {"[]", NULL, {"non-empty", "tools"}},
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        char *gbnf = NULL, err[256] = "";
        int st = vb_chat_tool_grammar("hermes", bad[c].tools, strlen(bad[c].tools), bad[c].only, true, &gbnf, err, sizeof err);
        free(gbnf);
        CHECKF(st == VB_ERR_ARG && strstr(err, bad[c].words[0]) && strstr(err, bad[c].words[1]), "case %zu: %d %s", c, st, err);
    }
}

/* A template that never reads `tools` (ChatML): the tools and the format open the system
 * message, and an earlier call is written in the format into its turn. */
/* vars (OpenAI-shaped messages and tools) through vb_chat_tool_vars and then template t (freed
   here): the rendered text (malloc'd), or NULL with the reason on stderr. */
static char *render_with_tools(vb_chat_template *t, const char *vars, bool add_gen, const char *bos, const char *eos) {
    char *out = NULL, err[256] = "no template";
    int st = t ? vb_chat_tool_vars(t, vars, strlen(vars), &out, err, sizeof err) : VB_ERR_ARG;
    vb_chat_prompt p = {0};
    if (st == VB_OK) st = vb_chat_template_apply(t, out, strlen(out), add_gen, bos, eos, &p, err, sizeof err);
    free(out);
    vb_chat_template_free(t);
    if (st != VB_OK) {
        fprintf(stderr, "    render: %s\n", err);
        return NULL;
    }
    char *text = strdup(p.text);
    vb_chat_prompt_free(&p);
    return text;
}

TEST(tool_calls_generic_rendering) {
    vb_chat_template *t = NULL;
    CHECK(vb_chat_template_for_model(NULL, "chatml", &t, NULL, 0) == VB_OK);
    const char *vars =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": null, "
        "\"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"arguments\": \"{\\\"city\\\":\\\"Paris\\\"}\"}}]}, {\"role\": \"tool\", \"tool_call_id\": \"call_1\", "
        "\"content\": \"21 C\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"parameters\": {\"type\": \"object\"}}}]}";
    char *text = render_with_tools(t, vars, true, "", "");
    CHECK(text);
    const char *want =
        "<|im_start|>system\nYou can call these functions (their parameters as JSON schemas):\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}\n"
        "</tools>\nTo call a function, answer with <tool_call>\n{\"name\": <function name>, \"arguments\": <arguments "
        "object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>tool\n"
        "21 C<|im_end|>\n<|im_start|>assistant\n";
    bool same = !strcmp(text, want);
    if (!same) fprintf(stderr, "    got:\n%s\n", text);
    free(text);
    CHECK(same);
    /* malformed tool_calls are refused */
    char *out = NULL, err[256];
    int st;
    const char *bad = "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
                      "\"arguments\": \"[1]\"}}]}]}";
    CHECK(vb_chat_template_for_model(NULL, "chatml", &t, NULL, 0) == VB_OK);
    st = vb_chat_tool_vars(t, bad, strlen(bad), &out, err, sizeof err);
    vb_chat_template_free(t);
    CHECKF(st == VB_ERR_ARG && strstr(err, "arguments"), "%d %s", st, err);
}

/* DeepSeek-R1-Distill adds the arguments to its text: they stay OpenAI's JSON string; the
 * template never reads `tools`, so they open the system prompt. */
TEST(tool_calls_deepseek_rendering) {
    vb_chat_template *t = load("deepseek-r1-distill.jinja");
    CHECK(t);
    const char *vars =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": null, "
        "\"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"arguments\": \"{\\\"city\\\":\\\"Paris\\\"}\"}}]}], \"tools\": [{\"type\": \"function\", \"function\": "
        "{\"name\": \"get_weather\"}}]}";
    char *text = render_with_tools(t, vars, false, "<s>", "</s>");
    CHECK(text);
    bool ok = strstr(text, DS_OPEN "get_weather\n```json\n{\"city\":\"Paris\"}\n```" DS_CLOSE) &&
              strstr(text, "To call a function, answer with " DS_BEGIN DS_OPEN "<function name>\n```json\n") &&
              strstr(text, "\"name\": \"get_weather\"");
    if (!ok) fprintf(stderr, "    got:\n%s\n", text);
    free(text);
    CHECK(ok);
}

/* Granite 3.3's template shows only an assistant turn's content: the calls are written into it
 * in Granite's format, so the model sees what it called. */
TEST(tool_calls_granite_rendering) {
    vb_chat_template *t = load("granite3.3.jinja");
    CHECK(t);
    const char *vars =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": \"assistant\", \"content\": null, "
        "\"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"arguments\": \"{\\\"city\\\":\\\"Paris\\\"}\"}}, {\"id\": \"call_2\", \"type\": \"function\", "
        "\"function\": {\"name\": \"ping\", \"arguments\": \"{}\"}}]}, {\"role\": \"tool\", \"content\": \"21 C\"}], "
        "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}]}";
    char *text = render_with_tools(t, vars, true, "", "");
    CHECK(text);
    bool ok = strstr(text, "<|start_of_role|>assistant<|end_of_role|><|tool_call|>[{\"name\": \"get_weather\", "
                             "\"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"ping\", \"arguments\": {}}]<|end_of_text|>") != NULL;
    if (!ok) fprintf(stderr, "    got:\n%s\n", text);
    free(text);
    CHECK(ok);
}

#endif /* VB_HAVE_JANSSON */
