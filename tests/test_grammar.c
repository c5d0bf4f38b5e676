/* test_grammar.c - the GBNF parser and byte matcher (src/grammar/grammar.c) against hand-derived
 * accept / reject lists, its error messages on bad grammars, and the token masks
 * (src/grammar/token_mask.c, with and without its state interner) against a brute-force check
 * on the shipped model's vocabulary (each token's bytes fed to a fresh copy of the matcher
 * state). */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "grammar/token_mask.h"
#include "model.h"
#include "test.h"

/* 1: s[0..n) is a sentence of g; 0: not; -1: error (declared in test.h, used by the other
   grammar tests too). */
int vbt_grammar_matches(const vb_grammar *g, const char *s, size_t n) {
    vb_gstate a = {0}, b = {0};
    if (vb_gstate_init(g, &a) != VB_OK) return -1;
    int res = 1;
    for (size_t i = 0; i < n && res == 1; i++) {
        if (vb_gstate_accept(g, &a, (uint8_t)s[i], &b) != VB_OK) res = -1;
        else if (b.n_stacks == 0) res = 0;
        vb_gstate t = a;
        a = b;
        b = t;
    }
    if (res == 1 && !vb_gstate_complete(&a)) res = 0;
    vb_gstate_free(&a);
    vb_gstate_free(&b);
    return res;
}

typedef struct gcase {
    const char *gbnf;
    const char *accept[8];
    const char *reject[8];
} gcase;

/* Accept and reject lists derived by hand from each grammar's definition. */
static const gcase CASES[] = {
    {"root ::= \"ab\" | \"c\"", {"ab", "c"}, {"", "a", "abc", "b", "cc"}},
    {"root ::= [a-c]+ \"!\"", {"a!", "abcabc!", "c!"}, {"!", "ad!", "a", "a!!"}},
    {"root ::= \"x\"* \"y\"?", {"", "x", "xxx", "y", "xxy"}, {"yy", "yx", "z"}},
    {"root ::= ( \"a\" | \"b\" \"c\" )+ # comment\n", {"a", "bc", "abca", "bcbc"}, {"", "b", "ac", "cb"}},
    {"root ::= [^a-z]", {"A", "0", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"},
     {"a", "z", "", "AA", "\xc3", "\xed\xa0\x80"}},
    {"root ::= item (\",\" item)*\nitem ::= [0-9]{1,3}", {"1", "12,345", "0,0,0"},
     {"", "1234", ",1", "1,", "1,,2"}},
    {"root ::= \"\\\"\" ( [^\"\\\\] | \"\\\\\" [\"\\\\nt] )* \"\\\"\"",
     {"\"\"", "\"abc\"", "\"a\\\"b\"", "\"\\n\""}, {"\"", "\"\\x\"", "\"a\"b\"", "abc"}},
    {"root ::= \"a\"{2} \"b\"{1,} \"c\"{0,2}", {"aab", "aabbb", "aabcc"}, {"ab", "aabccc", "aac"}},
    {"root ::= .\nx ::= \"unused\"", {"a", "\xce\xbb", "\n"}, {"", "ab"}},
    {"root ::= [\\x41-\\x43\\u00e9]", {"A", "C", "\xc3\xa9"}, {"D", "\xc3\xa8"}},
    {"root ::= s\ns ::= \"(\" s \")\" s |", {"", "()", "(())()", "((()))"}, {"(", ")", "(()", "())"}},
};

TEST(grammar_accept_reject) {
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        vb_grammar *g = NULL;
        char err[256];
        int rc = vb_grammar_parse(CASES[c].gbnf, strlen(CASES[c].gbnf), &g, err, sizeof err);
        CHECKF(rc == VB_OK, "case %zu: %s", c, err);
        for (int i = 0; i < 8 && CASES[c].accept[i]; i++) {
            int m = vbt_grammar_matches(g, CASES[c].accept[i], strlen(CASES[c].accept[i]));
            if (m != 1) vb_grammar_free(g);
            CHECKF(m == 1, "case %zu should accept '%s' (%d)", c, CASES[c].accept[i], m);
        }
        for (int i = 0; i < 8 && CASES[c].reject[i]; i++) {
            int m = vbt_grammar_matches(g, CASES[c].reject[i], strlen(CASES[c].reject[i]));
            if (m != 0) vb_grammar_free(g);
            CHECKF(m == 0, "case %zu should reject '%s' (%d)", c, CASES[c].reject[i], m);
        }
        vb_grammar_free(g);
    }
}

TEST(grammar_errors) {
    static const struct {
        const char *gbnf, *want;
    } BAD[] = {
        {"root ::= a\na ::= a \"x\"", "left recursion"},
        {"root ::= (\"x\"?)*", "left recursion"},
        {"root ::= b", "'b' is used but not defined"},
        {"a ::= \"x\"", "no rule 'root'"},
        {"root ::= \"abc", "unterminated literal"},
        {"root ::= [a-", "unterminated character class"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"x\"{5,2}", "n < m"},
        {"root ::= \"x\"{100000}", "over 1000"},
        {"root ::= ( \"x\"", "expected ')'"},
        {"root ::= [z-a]", "range end below"},
        {"root := \"x\"", "expected '::='"},
        {"root ::= \"\\uD800\"", "not a Unicode character"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        vb_grammar *g = NULL;
        char err[256] = "";
        int rc = vb_grammar_parse(BAD[i].gbnf, strlen(BAD[i].gbnf), &g, err, sizeof err);
        CHECKF(rc == VB_ERR_ARG && !g, "'%s' should fail (%d)", BAD[i].gbnf, rc);
        CHECKF(strstr(err, BAD[i].want), "'%s': message '%s' lacks '%s'", BAD[i].gbnf, err,
               BAD[i].want);
    }
    /* deep nesting and huge inputs are refused, never a crash */
    char deep[400];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 100; i++) deep[n++] = '(';
    deep[n] = 0;
    vb_grammar *g = NULL;
    char err[256];
    CHECK(vb_grammar_parse(deep, n, &g, err, sizeof err) == VB_ERR_ARG);
    CHECK(strstr(err, "nested too deeply"));
}

static int load_shipped(vb_model **m) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    char err[256];
    return vb_model_load_from_memory(data, size, "wedlm-py-6m", NULL, m, err, sizeof err);
}

/* The mask of the current state vs. each token's bytes through a copy of the state. */
static int brute_force_check(const vb_grammar *g, const vb_model *m, const char *prefix, bool memo,
                             char *why, size_t why_len) {
    vb_grammar_run *run = NULL;
    char err[256];
    if (vb_grammar_run_init(g, m, &run, err, sizeof err) != VB_OK) {
        snprintf(why, why_len, "init: %s", err);
        return -1;
    }
    if (!memo) vb_grammar_run_no_memo(run);
    /* walk the prefix token by token (tokenized as the model would) */
    vb_token toks[256];
    int nt = prefix[0] ? vb_tokenize(m, prefix, strlen(prefix), false, false, toks, 256) : 0;
    for (int i = 0; i < nt; i++)
        if (vb_grammar_run_accept(run, toks[i]) != VB_OK) {
            snprintf(why, why_len, "prefix token %d not accepted", i);
            vb_grammar_run_free(run);
            return -1;
        }
    const uint32_t *mask = vb_grammar_run_mask(run);
    vb_gstate st = {0}, a = {0}, b = {0};
    vb_gstate_init(g, &st);
    for (size_t i = 0; prefix[i]; i++) {
        vb_gstate_accept(g, &st, (uint8_t)prefix[i], &a);
        vb_gstate_copy(&st, &a);
    }
    int bad = 0, n_allowed = 0;
    int32_t n_vocab = vb_model_get_info(m)->n_vocab;
    for (vb_token t = 0; t < n_vocab && mask; t++) {
        char bytes[256];
        int n = vb_token_to_bytes(m, t, bytes, sizeof bytes);
        bool want;
        if (t == vb_model_get_info(m)->eos) want = vb_gstate_complete(&st);
        else if (n <= 0 || n > (int)sizeof bytes || vb_tokenizer_is_control(m->tok, t)) want = false;
        else {
            vb_gstate_copy(&a, &st);
            want = true;
            for (int i = 0; i < n && want; i++) {
                vb_gstate_accept(g, &a, (uint8_t)bytes[i], &b);
                want = b.n_stacks > 0;
                vb_gstate_copy(&a, &b);
            }
        }
        bool got = mask[t >> 5] >> (t & 31) & 1u;
        n_allowed += got;
        if (got != want && bad++ == 0) snprintf(why, why_len, "token %d: mask %d, brute force %d", t, got, want);
    }
    if (!mask) snprintf(why, why_len, "no mask");
    vb_gstate_free(&st);
    vb_gstate_free(&a);
    vb_gstate_free(&b);
    vb_grammar_run_free(run);
    return !mask || bad ? -1 : n_allowed;
}

TEST(grammar_token_mask_brute_force) {
    vb_model *m = NULL;
    CHECK(load_shipped(&m) == VB_OK);
    static const struct {
        const char *gbnf, *prefixes[4];
    } G[] = {
        {"root ::= \"def \" [a-z_]+ \"(\" [a-z, ]* \"):\"", {"", "def ", "def ma", "def main(a, "}},
        {"root ::= \"{\" ws \"\\\"k\\\"\" ws \":\" ws [0-9]+ ws \"}\"\nws ::= [ \\n]*",
         {"", "{", "{ \"k\":", "{\"k\": 12"}},
        {"root ::= [^\"]* \"\\\"\"", {"", "abc", "import os\n"}},
    };
    for (size_t i = 0; i < sizeof G / sizeof G[0]; i++) {
        vb_grammar *g = NULL;
        char err[256];
        CHECKF(vb_grammar_parse(G[i].gbnf, strlen(G[i].gbnf), &g, err, sizeof err) == VB_OK, "%s", err);
        for (int k = 0; k < 4 && G[i].prefixes[k]; k++)
            for (int memo = 0; memo < 2; memo++) {
                char why[256] = "";
                int n = brute_force_check(g, m, G[i].prefixes[k], memo, why, sizeof why);
                if (n <= 0) vb_grammar_free(g);
                CHECKF(n > 0, "grammar %zu prefix '%s' memo %d: %s (%d allowed)", i, G[i].prefixes[k], memo, why, n);
            }
        vb_grammar_free(g);
    }
    vb_model_free(m);
}
