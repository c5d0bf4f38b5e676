/* fuzz_chat_template.c - libFuzzer entry point for the chat template interpreter (src/chat/jinja.c):
 * the input is a template, optionally followed by a NUL byte and the JSON data to render it
 * with; parse, then render with small limits (so that slow inputs end quickly), and check that
 * every failure comes with a message and every success with a NUL-terminated text and a mask.
 * Built by `make fuzz-chat`; seeds: tests/data/chat_templates. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja.h"
#include "vibee.h"

static const char k_default_data[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi <|im_end|>\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>ok\", \"tool_calls\": [{\"id\": \"abc123XYZ\", \"type\":"
    " \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5}}}]}, {\"role\": \"tool\", \"content\":"
    " \"r\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *src = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    const char *dj = nul ? (const char *)nul + 1 : k_default_data;
    size_t dlen = nul ? size - tlen - 1 : sizeof k_default_data - 1;
    vb_jinja_limits lim = vb_jinja_default_limits();
    lim.max_steps = 200000;
    lim.max_seconds = 0.5;
    lim.max_output = 1 << 20;
    lim.max_memory = 64u << 20;
    vb_jinja *t = NULL;
    char err[256];
    err[0] = 0;
    int st = vb_jinja_parse(src, tlen, &lim, &t, err, sizeof err);
    if (st != VB_OK) {
        if (t || !err[0]) abort();
        return 0;
    }
    vb_jinja_var vars[3] = {{"bos_token", "<s>", 0}, {"eos_token", "</s>", 0}, {"add_generation_prompt", NULL, 1}};
    char *text = NULL;
    uint8_t *user = NULL;
    size_t len = 0;
    err[0] = 0;
    st = vb_jinja_render(t, dj, dlen, vars, 3, &text, &user, &len, err, sizeof err);
    if (st == VB_OK) {
        if (!text || !user || text[len] != 0) abort();
        for (size_t i = 0; i < len; i++)
            if (user[i] > 1) abort();
    } else if (!err[0] || text || user) {
        abort();
    }
    free(text);
    free(user);
    vb_jinja_free(t);
    return 0;
}
