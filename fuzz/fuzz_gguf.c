/* fuzz_gguf.c - libFuzzer target of the GGUF reader: vb_fuzz_gguf (fuzz_entries.c) on each
 * input. Built by `make fuzz-build`, run by `make fuzz FUZZ_TARGET=gguf`. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return vb_fuzz_gguf(data, size); }
