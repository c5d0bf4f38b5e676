/* fuzz_cost_cache.c - libFuzzer target of the decoders' cost-cache file:
 * vb_fuzz_cost_cache (fuzz_entries.c) on each input. Built by `make fuzz-build`, run by
 * `make fuzz FUZZ_TARGET=cost_cache`; the corpus is fuzz/corpus/cost_cache/. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return vb_fuzz_cost_cache(data, size); }
