/* fuzz_entries.h - the functions the libFuzzer targets in fuzz/ call on each input, shared with
 * tests/test_fuzz_corpus.c, which replays the committed corpora (fuzz/corpus/<target>/) through
 * the very same functions in `make test` / `make asan`. Each returns 0; a broken invariant
 * traps (__builtin_trap), and memory errors are the sanitizers' to report. */
#ifndef VB_FUZZ_ENTRIES_H
#define VB_FUZZ_ENTRIES_H

#include <stddef.h>
#include <stdint.h>

/* The GGUF reader: parse, then read every key, string, array element and tensor byte range. */
int vb_fuzz_gguf(const uint8_t *data, size_t size);
/* A model end to end: GGUF reader + model loader (hyper-parameters, tokenizer) + a tiny cpu
 * context (n_ctx 16) + two forwards, with tokenization and detokenization when it has a
 * tokenizer. */
int vb_fuzz_model(const uint8_t *data, size_t size);
/* A Hugging Face tokenizer.json (and, after a line "#config#", its tokenizer_config.json):
 * load, then encode fixed texts and a slice of the input, every id in range, every id's bytes. */
int vb_fuzz_tokenizer_json(const uint8_t *data, size_t size);
/* The cost-cache file: load the key its first line names, store a table under another key
 * (which rewrites the file keeping the other lines), and load that back unchanged. */
int vb_fuzz_cost_cache(const uint8_t *data, size_t size);
/* A grammar: parse as GBNF (match fixed texts and the input byte by byte, step a few tokens over
 * the embedded model's vocabulary: each mask's first token must be accepted), and as a JSON
 * schema (its GBNF must parse, unless left-recursive through $ref, then the same checks). */
int vb_fuzz_grammar(const uint8_t *data, size_t size);

#endif
