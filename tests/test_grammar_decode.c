/* test_grammar_decode.c - constrained decoding in the library: JSON schemas compiled to grammars
 * against hand-written JSON texts that must be accepted or rejected, and generation on the
 * shipped model under a grammar with each decoder: every output is a complete sentence of the
 * grammar (checked byte by byte with a fresh matcher), greedy AR, verify and WeDLM (forced to
 * exact mode) give the same tokens, and hostile grammars end in an error, not a crash. The
 * server-level test with an independent JSON schema validator (ajv) is
 * tests/server/structured_output.mjs. */
#include <stdlib.h>
#include <string.h>

#include "decode/decode_internal.h"
#include "grammar/grammar.h"
#include "test.h"


#ifdef VB_HAVE_JANSSON
TEST(grammar_json_schema_accept_reject) {
    static const struct {
        const char *schema;
        const char *accept[6];
        const char *reject[8];
    } S[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
         "\"required\":[\"a\"]}",
         {"{\"a\": 1}", "{\"a\":-20,\"b\":\"x\"}", "{ \"a\" : 0 , \"b\" : \"\\\"q\\\\\\u00e9\" }", "{\"a\":5, \"b\":\"\"}"},
         {"{}", "{\"b\":\"x\"}", "{\"b\":\"x\",\"a\":1}", "{\"a\":1.5}", "{\"a\":01}", "{\"a\":1,\"c\":2}",
          "{\"a\":1,\"b\":\"\\q\"}", "{\"a\":1,\"b\":\"\x01\"}"}},
        {"{\"type\":\"array\",\"items\":{\"enum\":[\"x\",2,null]},\"minItems\":1,\"maxItems\":2}",
         {"[\"x\"]", "[2, null]", "[null,\"x\"]"}, {"[]", "[\"y\"]", "[2,2,2]", "[3]", "[\"x\",]"}},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\"},\"t\":{\"type\":[\"boolean\",\"null\"]},"
         "\"c\":{\"const\":{\"k\":[1]}}},\"required\":[\"n\",\"t\",\"c\"]}",
         {"{\"n\":1.25e-3,\"t\":true,\"c\":{\"k\":[1]}}", "{\"n\":-0,\"t\":null,\"c\":{\"k\":[1]}}"},
         {"{\"n\":1.,\"t\":true,\"c\":{\"k\":[1]}}", "{\"n\":1,\"t\":1,\"c\":{\"k\":[1]}}",
          "{\"n\":1,\"t\":true,\"c\":{\"k\":[2]}}", "{\"n\":.5,\"t\":true,\"c\":{\"k\":[1]}}"}},
        {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
         "\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"]}},"
         "\"$ref\":\"#/$defs/node\"}",
         {"{\"v\":1,\"next\":null}", "{\"v\":1,\"next\":{\"v\":2,\"next\":{\"v\":3,\"next\":null}}}"},
         {"{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2}}"}},
        {"{\"type\":\"object\"}", {"{}", "{\"any\":[1,{\"x\":\"y\"}],\"b\":true}"}, {"[]", "{\"a\"}", "1"}},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", {"\"ab\"", "\"a\\nb\"", "\"\xc3\xa9\xc3\xa9\""},
         {"\"a\"", "\"abcd\""}},
    };
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
        vb_grammar *g = NULL;
        char err[256] = "";
        CHECKF(vb_grammar_from_json_schema(S[i].schema, strlen(S[i].schema), &g, err, sizeof err) == VB_OK,
               "schema %zu: %s", i, err);
        for (int k = 0; k < 6 && S[i].accept[k]; k++) {
            int m = vbt_grammar_matches(g, S[i].accept[k], strlen(S[i].accept[k]));
            if (m != 1) vb_grammar_free(g);
            CHECKF(m == 1, "schema %zu should accept %s (%d)", i, S[i].accept[k], m);
        }
        for (int k = 0; k < 8 && S[i].reject[k]; k++) {
            int m = vbt_grammar_matches(g, S[i].reject[k], strlen(S[i].reject[k]));
            if (m != 0) vb_grammar_free(g);
            CHECKF(m == 0, "schema %zu should reject %s (%d)", i, S[i].reject[k], m);
        }
        vb_grammar_free(g);
    }
    /* refused schemas name what they cannot do */
    static const struct {
        const char *schema, *want;
    } BAD[] = {
        {"{\"type\":\"string\",\"pattern\":\"^a$\"}", "'pattern' is not supported"},
        {"{\"type\":\"integer\",\"minimum\":0}", "'minimum' is not supported"},
        {"{\"type\":\"frob\"}", "unknown type 'frob'"},
        {"{\"$ref\":\"#/$defs/missing\"}", "not found"},
        {"{\"$ref\":\"#\"}", "left recursion"},
        {"[1,2", "invalid JSON"},
        {"{\"type\":\"array\",\"maxItems\":100000}", "[0, 1000]"},
        {"{\"enum\":[]}", "non-empty"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        vb_grammar *g = NULL;
        char err[256] = "";
        int rc = vb_grammar_from_json_schema(BAD[i].schema, strlen(BAD[i].schema), &g, err, sizeof err);
        CHECKF(rc != VB_OK && !g && strstr(err, BAD[i].want), "%s: rc %d, '%s' lacks '%s'", BAD[i].schema, rc,
               err, BAD[i].want);
    }
    /* deep nesting: refused, not a stack overflow */
    char deep[8192];
    size_t n = 0;
    for (int i = 0; i < 500; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"items\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{}");
    for (int i = 0; i < 500; i++) deep[n++] = '}';
    vb_grammar *g = NULL;
    char err[256];
    CHECK(vb_grammar_from_json_schema(deep, n, &g, err, sizeof err) != VB_OK && !g);
}
#endif

typedef struct shipped {
    vb_model *m;
    vb_context *ctx;
} shipped;

static int open_shipped(shipped *s) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    char err[256];
    if (vb_model_load_from_memory(data, size, "wedlm-py-6m", NULL, &s->m, err, sizeof err) != VB_OK) return -1;
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_ctx = 1024;
    cp.n_seq_max = 1;
    cp.n_threads = 2;
    return vb_context_init(s->m, &cp, &s->ctx, err, sizeof err);
}

static void close_shipped(shipped *s) {
    vb_context_free(s->ctx);
    vb_model_free(s->m);
}

/* Generate under g; the text of the output (EOS dropped) into text. */
static int gen_text(shipped *s, const char *prompt_text, vb_generate_params p, vb_token *out, int32_t *n_out,
                    char *text, size_t cap, vb_generate_stats *st) {
    vb_token prompt[128];
    int32_t np = vb_tokenize(s->m, prompt_text, strlen(prompt_text), true, false, prompt, 128);
    if (np <= 0 || np > 128) return -1;
    vb_kv_free_seq(s->ctx, 0);
    int rc = vb_generate(s->ctx, prompt, np, &p, out, 600, n_out, st);
    size_t w = 0;
    for (int32_t i = 0; i < *n_out; i++) {
        if (out[i] == vb_model_get_info(s->m)->eos) continue;
        char b[64];
        int k = vb_token_to_bytes(s->m, out[i], b, sizeof b);
        for (int j = 0; j < k && j < (int)sizeof b && w + 1 < cap; j++) text[w++] = b[j];
    }
    text[w] = 0;
    return rc;
}

TEST(grammar_decoders_shipped_model) {
    shipped s = {0};
    CHECK(open_shipped(&s) == VB_OK);
    static const char *const GRAMMARS[] = {
        /* JSON-ish with repetition (verify's n-gram drafts get accepted), nesting and numbers */
        "root ::= \"{\" ws \"\\\"xs\\\": [\" num (\", \" num){2,5} \"], \\\"ok\\\": \" (\"true\" | \"false\") ws \"}\"\n"
        "num ::= \"-\"? [0-9]{1,3}\nws ::= [ ]?",
        "root ::= (\"import \" [a-z]{1,8} \"\\n\"){2,4} \"def \" [a-z_]{1,10} \"():\"",
    };
    static const char *const PROMPTS[] = {"data = ", "#!/usr/bin/env python3\n"};
    for (size_t gi = 0; gi < 2; gi++) {
        vb_grammar *g = NULL;
        char err[256];
        CHECKF(vb_grammar_parse(GRAMMARS[gi], strlen(GRAMMARS[gi]), &g, err, sizeof err) == VB_OK, "%s", err);
        static vb_token ref[600], out[600];
        static char ref_text[4096], text[4096];
        int32_t n_ref = 0, n_out = 0;
        vb_generate_stats st;
        vb_generate_params p = vb_generate_default_params();
        p.n_predict = 500;
        p.grammar = g;
        int rc = gen_text(&s, PROMPTS[gi], p, ref, &n_ref, ref_text, sizeof ref_text, &st);
        if (rc != VB_OK) vb_grammar_free(g);
        CHECKF(rc == VB_OK, "AR: %d (%s)", rc, st.note);
        int ok = vbt_grammar_matches(g, ref_text, strlen(ref_text));
        if (ok != 1 || n_ref >= 500) vb_grammar_free(g);
        CHECKF(ok == 1 && n_ref < 500, "grammar %zu AR greedy output not a complete sentence: '%s'", gi, ref_text);
        /* the same greedy tokens from verify (fixed and adaptive drafts) and WeDLM (exact forced) */
        struct { int decoder; int32_t draft_max, window; float tau; } D[] = {
            {VB_DECODER_VERIFY, 4, 0, 0}, {VB_DECODER_VERIFY, 0, 0, 0},
            {VB_DECODER_WEDLM, 0, 8, 0.4f}, {VB_DECODER_WEDLM, 0, 4, 100.0f}};
        for (size_t d = 0; d < sizeof D / sizeof D[0]; d++) {
            vb_generate_params q = p;
            q.decoder = D[d].decoder;
            q.draft_max = D[d].draft_max;
            q.window = D[d].window;
            if (D[d].tau > 0) q.tau = D[d].tau;
            rc = gen_text(&s, PROMPTS[gi], q, out, &n_out, text, sizeof text, &st);
            bool same = rc == VB_OK && n_out == n_ref && memcmp(out, ref, sizeof(vb_token) * (size_t)n_ref) == 0;
            if (!same) vb_grammar_free(g);
            CHECKF(same, "grammar %zu decoder %d variant %zu: rc %d, '%s' vs AR '%s' (%s)", gi, D[d].decoder, d, rc,
                   text, ref_text, st.note);
            if (D[d].decoder == VB_DECODER_WEDLM && !strstr(st.note, "exact mode")) vb_grammar_free(g);
            CHECKF(D[d].decoder != VB_DECODER_WEDLM || strstr(st.note, "exact mode"), "note: %s", st.note);
        }
        /* sampled: every decoder's output is a complete sentence */
        for (int decoder = 0; decoder < 3; decoder++)
            for (uint64_t seed = 1; seed <= 3; seed++) {
                vb_generate_params q = p;
                q.decoder = decoder;
                q.window = 8;
                q.sampler.temp = 1.0f;
                q.sampler.seed = seed;
                rc = gen_text(&s, PROMPTS[gi], q, out, &n_out, text, sizeof text, &st);
                ok = rc == VB_OK ? vbt_grammar_matches(g, text, strlen(text)) : -2;
                if (ok != 1) vb_grammar_free(g);
                CHECKF(ok == 1 && n_out < 500, "grammar %zu decoder %d seed %d: %d '%s' (%s)", gi, decoder, (int)seed,
                       ok, text, st.note);
            }
        vb_grammar_free(g);
    }
    close_shipped(&s);
}

TEST(grammar_hostile) {
    shipped s = {0};
    CHECK(open_shipped(&s) == VB_OK);
    /* 600 distinct stacks after the first byte: more than GR_MAX_STACKS */
    size_t cap = 32768, n = 0;
    char *text = malloc(cap);
    CHECK(text);
    n += (size_t)snprintf(text + n, cap - n, "root ::= \"a\" x0");
    for (int i = 1; i < 600; i++) n += (size_t)snprintf(text + n, cap - n, " | \"a\" x%d", i);
    for (int i = 0; i < 600; i++) n += (size_t)snprintf(text + n, cap - n, "\nx%d ::= \"b\"", i);
    vb_grammar *g = NULL;
    char err[256];
    int rc = vb_grammar_parse(text, n, &g, err, sizeof err);
    free(text);
    CHECKF(rc == VB_OK, "%s", err);
    vb_token prompt[1] = {vb_model_get_info(s.m)->bos}, out[8];
    vb_generate_params p = vb_generate_default_params();
    p.grammar = g;
    p.n_predict = 4;
    int32_t n_out = 0;
    vb_generate_stats st;
    vb_kv_free_seq(s.ctx, 0);
    rc = vb_generate(s.ctx, prompt, 1, &p, out, 8, &n_out, &st);
    vb_grammar_free(g);
    CHECKF(rc != VB_OK && strstr(st.note, "grammar"), "rc %d note '%s'", rc, st.note);
    /* a grammar whose only sentence is empty: stops at once (EOS allowed, nothing else) */
    CHECK(vb_grammar_parse("root ::= \"\"", 11, &g, err, sizeof err) == VB_OK);
    p.grammar = g;
    vb_kv_free_seq(s.ctx, 0);
    rc = vb_generate(s.ctx, prompt, 1, &p, out, 8, &n_out, &st);
    vb_grammar_free(g);
    CHECKF(rc == VB_OK && n_out == 1 && out[0] == vb_model_get_info(s.m)->eos, "rc %d n_out %d", rc, n_out);
    close_shipped(&s);
}
