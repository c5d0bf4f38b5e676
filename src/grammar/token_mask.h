/* token_mask.h - a grammar applied to a model's vocabulary: one request's matcher state, the
 * set of tokens allowed in it (a bitmap over the vocabulary) and the advance by a committed
 * token. The decoders' sampling and commit points (src/decode/generate.c) use it.
 *
 * Masks are computed over the tokens sorted by their bytes (a table built once per model and
 * kept in it): consecutive tokens share prefixes,
 * so the matcher states after each prefix are reused (a trie walked in order), and a prefix
 * that dies rejects every token that starts with it at once. Matcher states are interned and
 * their byte transitions memoised, so a walk costs a hash lookup per trie byte once its states
 * are known (the inside of a JSON string returns to the same state after each character). A
 * state's mask is cached too, so a state seen again (after a comma, inside a string) costs a
 * lookup. */
#ifndef VB_TOKEN_MASK_H
#define VB_TOKEN_MASK_H

#include <stdbool.h>
#include <stdint.h>

#include "vibee.h"

typedef struct vb_grammar_run vb_grammar_run;
typedef struct vb_token_table vb_token_table;

/* Free a model's token table (vb_model_free calls it). */
void vb_token_table_free(vb_token_table *t);

/* The grammar (copied) over the model's vocabulary, in its start state. VB_OK, VB_ERR_ARG /
 * VB_ERR_UNSUPPORTED (no tokenizer) / VB_ERR_NOMEM / VB_ERR_STATE (err says why). */
int vb_grammar_run_init(const vb_grammar *g, const vb_model *model, vb_grammar_run **out,
                        char *err, size_t err_len);
void vb_grammar_run_free(vb_grammar_run *r);

/* Allowed tokens in the current state: bit t of word t/32, [(n_vocab + 31) / 32] words, owned
 * by r, valid until the next call. EOS (the model's) is allowed where the output is complete.
 * NULL: the state is too large to match (GR_MAX_STACKS) or out of memory. */
const uint32_t *vb_grammar_run_mask(vb_grammar_run *r);
/* The mask has no token at all except possibly EOS. Call after vb_grammar_run_mask. */
bool vb_grammar_run_only_eos(const vb_grammar_run *r);
/* Advance by a token (its bytes). VB_OK; VB_ERR_ARG if the grammar does not allow it (the
 * state is then unchanged); VB_ERR_STATE / VB_ERR_NOMEM. Accepting EOS finishes the run. */
int vb_grammar_run_accept(vb_grammar_run *r, vb_token token);
/* The output so far is a complete sentence (or EOS was accepted). */
bool vb_grammar_run_complete(const vb_grammar_run *r);
/* EOS was accepted. */
bool vb_grammar_run_finished(const vb_grammar_run *r);

/* Compute masks without the state interner from now on (tests: the path taken when a
 * grammar's states overflow the interner's tables). */
void vb_grammar_run_no_memo(vb_grammar_run *r);

/* Statistics: masks computed / served from the cache. */
void vb_grammar_run_counts(const vb_grammar_run *r, int64_t *computed, int64_t *cached);

#endif
