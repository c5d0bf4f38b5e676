/* fuzz_grammar.c - libFuzzer target of the grammar parser, matcher, token masks and the JSON
 * schema converter: vb_fuzz_grammar (fuzz_entries.c) on each input. Built by `make fuzz-build`,
 * run by `make fuzz FUZZ_TARGET=grammar`; the corpus is fuzz/corpus/grammar/. */
#include "fuzz_entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return vb_fuzz_grammar(data, size); }
