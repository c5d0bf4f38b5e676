/* fuzz_model.c - libFuzzer target of a model end to end (GGUF reader, loader, cpu forward):
 * vb_fuzz_model (fuzz_entries.c) on each input. Built by `make fuzz-build`, run by
 * `make fuzz FUZZ_TARGET=model`; the corpus is fuzz/corpus/model/. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return vb_fuzz_model(data, size); }
