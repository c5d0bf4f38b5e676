/* grammar.h - context-free grammars for constrained sampling: a parser of a GBNF subset
 * (llama.cpp's format) compiled to byte-level rules, and a byte matcher over them (a set of
 * pushdown stacks, as llama.cpp's grammar sampler keeps). The public type vb_grammar and its
 * constructors are declared in vibee.h; the matcher below is internal (token_mask.c builds the
 * per-token masks on it, tests drive it byte by byte).
 *
 * Compiled form: every rule is a list of alternatives; an alternative is a run of elements in
 * one array, ended by GR_END. An element is a rule reference (>= 0: the rule id) or a byte set
 * (< 0, != GR_END: set -el-1, a 256-bit bitmap). Character classes are compiled to UTF-8 byte
 * sequences, so the matcher only ever sees bytes. Repetition and grouping become generated
 * rules (X* -> R ::= X R | empty), as in llama.cpp. Left recursion is rejected at compile time,
 * so expanding a stack always terminates. */
#ifndef VB_GRAMMAR_H
#define VB_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vibee.h"

#define GR_END INT32_MIN

/* Bounds that keep hostile grammars from exhausting memory or time. */
#define GR_MAX_TEXT (1 << 20)     /* bytes of GBNF text */
#define GR_MAX_ELEMENTS (1 << 20) /* compiled elements */
#define GR_MAX_RULES (1 << 16)
#define GR_MAX_NEST 64            /* parenthesis nesting while parsing */
#define GR_MAX_REPEAT 1000        /* m and n of X{m,n} */
#define GR_MAX_STACKS 512         /* stacks of one matcher state (JSON grammars need a few) */
#define GR_MAX_DEPTH 1024         /* frames of one stack (deeper nesting is not allowed) */

struct vb_grammar {
    int32_t *el;       /* [n_el] elements: alternatives back to back, each ended by GR_END */
    int32_t n_el;
    int32_t *alt;      /* [n_alt] start of each alternative in el */
    int32_t *rule_alt; /* [n_rules + 1] alternatives of rule r: alt[rule_alt[r] .. rule_alt[r+1]) */
    int32_t n_rules;
    uint32_t (*sets)[8]; /* [n_sets] byte sets, bit b of word b/32 */
    int32_t n_sets;
    int32_t root;
};

/* Copy a compiled grammar (NULL on failure). */
vb_grammar *vb_grammar_clone(const vb_grammar *g);

/* A matcher state: a set of stacks. Each stack is stored as [len, frame_0 .. frame_len-1] in
 * data, frames are element positions (el index), the top (last) one is always a byte set; an
 * empty stack means the input so far is a complete sentence. */
typedef struct vb_gstate {
    int32_t *data;
    int32_t n_data, cap;
    int32_t n_stacks;
    bool overflow; /* GR_MAX_STACKS exceeded: the state is unusable */
    int32_t *hslot; /* [hcap] duplicate check of larger states: stack offsets + 1 (0 = empty) */
    int32_t hcap;
    bool hlive;     /* hslot indexes the current stacks */
    struct vb_gstate *work; /* scratch of vb_gstate_accept / init on this state as output */
} vb_gstate;

void vb_gstate_free(vb_gstate *s);
/* The state before any input (the root rule expanded). VB_OK or VB_ERR_NOMEM / VB_ERR_STATE
 * (too many stacks). */
int vb_gstate_init(const vb_grammar *g, vb_gstate *s);
/* out := the state after byte b from in (out may be empty: b is not allowed). out != in. */
int vb_gstate_accept(const vb_grammar *g, const vb_gstate *in, uint8_t b, vb_gstate *out);
int vb_gstate_copy(vb_gstate *dst, const vb_gstate *src);
/* Some stack is empty: the input so far is a complete sentence. */
bool vb_gstate_complete(const vb_gstate *s);
/* Sort the stacks (a canonical form: equal sets compare equal byte for byte). */
void vb_gstate_canonical(vb_gstate *s);

#endif
