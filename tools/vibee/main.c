/* main.c - the vibee command-line tool: dispatches to the subcommands. */
#include <string.h>

#include "cli.h"

static void usage(void) {
    fprintf(stderr,
            "vibee %s - transformer inference engine\n\n"
            "usage: vibee <command> [options]   (vibee <command> --help for its options)\n\n"
            "commands:\n"
            "  run       generate text (AR, WeDLM or draft-and-verify decoding)\n"
            "  info      describe a model file\n"
            "  bench     measure prefill/decode speed (llama-bench style)\n"
            "  quantize  rewrite a GGUF model under a llama.cpp preset (q4_k_m, q5_k_s, q8_0, ...)\n"
            "  batch     run a file of prompts with continuous batching\n"
            "  serve     OpenAI-compatible HTTP server (completions, chat, streaming)\n"
            "  score     mean NLL (nats/token) of given continuation tokens after a prompt\n"
            "\nWith no -m, commands use the embedded model wedlm-py-6m-f16.\n",
            VIBEE_VERSION);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vibee %s\n", VIBEE_VERSION);
        return 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "batch")) return cmd_batch(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "score")) return cmd_score(argc - 1, argv + 1);
    fprintf(stderr, "vibee: unknown command '%s'\n\n", cmd);
    usage();
    return 2;
}
