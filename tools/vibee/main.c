/* main.c - the vibee command-line tool: splits --option=value into two arguments, then
 * dispatches to the subcommands. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "vibee %s - transformer inference engine\n\n"
            "usage: vibee <command> [options]   (vibee <command> --help for its options)\n\n"
            "commands:\n"
            "  run       generate text (AR, WeDLM or draft-and-verify decoding); -cnv: interactive chat\n"
            "  chat      interactive chat with the model's chat template (= vibee run -cnv)\n"
            "  info      describe a model file (vibee info MODEL.gguf)\n"
            "  bench     measure prefill/decode speed (llama-bench style)\n"
            "  quantize  rewrite a GGUF model under a llama.cpp preset (q4_k_m, q5_k_s, q8_0, ...)\n"
            "  batch     run a file of prompts with continuous batching\n"
            "  serve     OpenAI-compatible HTTP server (completions, chat, streaming)\n"
            "  score     mean NLL (nats/token) of given continuation tokens after a prompt\n"
            "\nWith no -m, commands use the embedded model wedlm-py-6m-f16. Options also take the form\n"
            "--option=value.\n",
            VIBEE_VERSION);
}

/* Options whose value is free text: a following "--x=y" is that value, not an option. */
static bool takes_text(const char *a) {
    static const char *const opts[] = {"-p", "--prompt", "-r", "--reverse-prompt", "-sys", "--system",
                                       "--system-prompt", "--stop", NULL};
    for (int k = 0; opts[k]; k++)
        if (strcmp(a, opts[k]) == 0) return true;
    return false;
}

/* argv with every --name=value split into --name value (name: letters, digits, '-'); the
   names split off are malloc'd and listed in *owned (NULL-terminated) for free_split. */
static char **split_eq(int argc, char **argv, int *out_argc, char ***owned) {
    char **v = malloc(((size_t)argc * 2 + 1) * sizeof *v);
    char **own = calloc((size_t)argc + 1, sizeof *own);
    if (!v || !own) {
        free(v);
        free(own);
        return NULL;
    }
    int n = 0, no = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        bool opt = i > 0 && a[0] == '-' && a[1] == '-' && eq && eq > a + 2 && !takes_text(argv[i - 1]);
        for (const char *p = a + 2; opt && p < eq; p++)
            opt = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-';
        if (opt) {
            char *name = strndup(a, (size_t)(eq - a));
            if (!name) {
                for (int k = 0; k < no; k++) free(own[k]);
                free(own);
                free(v);
                return NULL;
            }
            own[no++] = name;
            v[n++] = name;
            v[n++] = (char *)eq + 1;
        } else {
            v[n++] = argv[i];
        }
    }
    v[n] = NULL;
    *out_argc = n;
    *owned = own;
    return v;
}

static int run_command(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("vibee %s\n", VIBEE_VERSION);
        return 0;
    }
    static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        {"run", cmd_run},         {"chat", cmd_chat},   {"info", cmd_info},   {"bench", cmd_bench},
        {"quantize", cmd_quantize}, {"batch", cmd_batch}, {"serve", cmd_serve}, {"score", cmd_score}};
    for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
        if (!strcmp(argv[1], cmds[k].name)) return cmds[k].fn(argc - 1, argv + 1);
    fprintf(stderr, "vibee: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

int main(int argc0, char **argv0) {
    int argc;
    char **owned = NULL;
    char **argv = split_eq(argc0, argv0, &argc, &owned);
    if (!argv) {
        fprintf(stderr, "vibee: out of memory\n");
        return 1;
    }
    int rc = run_command(argc, argv);
    for (int k = 0; owned[k]; k++) free(owned[k]);
    free(owned);
    free(argv);
    return rc;
}
