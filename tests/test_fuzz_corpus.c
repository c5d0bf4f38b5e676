/* test_fuzz_corpus.c - replays every committed fuzz corpus file (fuzz/corpus/<target>/, and
 * tests/data/gguf/ for the reader) through the same per-input function the libFuzzer target
 * calls (fuzz/fuzz_entries.c), so `make test` and `make asan` re-run every input the fuzzers
 * kept, including the ones that once crashed. A broken invariant traps; under `make asan` a
 * memory error or undefined behaviour aborts. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/fuzz_entries.h"
#include "test.h"

/* Calls fn on every regular file of dir; returns how many, or -1 if dir cannot be read. */
static int replay_dir(const char *dir, int (*fn)(const uint8_t *, size_t)) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        /* a fresh, exactly sized buffer, as libFuzzer passes it (ASan sees any over-read) */
        uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
        if (buf && fread(buf, 1, (size_t)size, f) == (size_t)size) {
            fn(buf, (size_t)size);
            n++;
        }
        free(buf);
        fclose(f);
    }
    closedir(d);
    return n;
}

static const struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
    int min_files; /* the committed corpus is at least this large */
} TARGETS[] = {
    {"gguf", vb_fuzz_gguf, 4},
    {"model", vb_fuzz_model, 8},
    {"tokenizer_json", vb_fuzz_tokenizer_json, 8},
    {"cost_cache", vb_fuzz_cost_cache, 8},
    {"grammar", vb_fuzz_grammar, 10},
};

TEST(fuzz_corpus_replay) {
    for (size_t i = 0; i < sizeof TARGETS / sizeof TARGETS[0]; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "fuzz/corpus/%s", TARGETS[i].name);
        int n = replay_dir(dir, TARGETS[i].fn);
        if (strcmp(TARGETS[i].name, "gguf") == 0) {
            int extra = replay_dir("tests/data/gguf", TARGETS[i].fn);
            n = (n < 0 ? 0 : n) + (extra < 0 ? 0 : extra);
        }
        CHECKF(n >= TARGETS[i].min_files, "%s: %d corpus files replayed, expected >= %d", dir, n,
               TARGETS[i].min_files);
        fprintf(stderr, "    %-16s %4d inputs replayed\n", TARGETS[i].name, n);
    }
}
