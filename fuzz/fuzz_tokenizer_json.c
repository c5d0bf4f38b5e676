/* fuzz_tokenizer_json.c - libFuzzer target of a Hugging Face tokenizer.json (+ tokenizer_config.json):
 * vb_fuzz_tokenizer_json (fuzz_entries.c) on each input. Built by `make fuzz-build`, run by
 * `make fuzz FUZZ_TARGET=tokenizer_json`; the corpus is fuzz/corpus/tokenizer_json/. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return vb_fuzz_tokenizer_json(data, size); }
