/* tokenizer.h - tokenizers read from GGUF metadata: byte-level BPE (tokenizer.ggml.model =
 * "gpt2") with the pre-tokenizers of GPT-2, Qwen2 and Llama 3 (tokenizer.ggml.pre), and the
 * SentencePiece-style "llama" model; special tokens; encode and decode. */
#ifndef VB_TOKENIZER_H
#define VB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../gguf/gguf.h"
#include "vibee.h"

typedef struct vb_tokenizer vb_tokenizer;

/* Build from GGUF keys tokenizer.ggml.*. Returns VB_OK, VB_ERR_UNSUPPORTED (no tokenizer or
 * unknown model/pre), VB_ERR_FORMAT (inconsistent arrays), VB_ERR_NOMEM; err explains. The
 * tokenizer copies what it needs: the vb_gguf may be closed afterwards. */
int vb_tokenizer_from_gguf(const vb_gguf *g, vb_tokenizer **out, char *err, size_t err_len);
void vb_tokenizer_free(vb_tokenizer *t);
/* A byte tokenizer (the sim model's): token i < 256 is byte i; tokens 256.. have no text.
 * VB_OK, VB_ERR_ARG (n_vocab < 256) or VB_ERR_NOMEM. */
int vb_tokenizer_bytes(int32_t n_vocab, vb_token eos, vb_token mask, vb_tokenizer **out);
/* Build from a Hugging Face tokenizer.json holding a byte-level BPE model (GPT-2, Qwen2/2.5/3,
 * Llama 3); BOS/EOS from tokenizer_config.json in the same directory when present. Returns
 * VB_OK (err then holds remarks, e.g. "normalizer NFC is not applied", or ""), VB_ERR_IO,
 * VB_ERR_FORMAT (malformed JSON; err names the JSON path), VB_ERR_UNSUPPORTED (other model
 * types, unknown pre-tokenizer), VB_ERR_NOMEM. Implemented in tokenizer_hf.c. */
int vb_tokenizer_from_hf_json(const char *path, vb_tokenizer **out, char *err, size_t err_len);

int32_t vb_tokenizer_n_vocab(const vb_tokenizer *t);
vb_token vb_tokenizer_bos(const vb_tokenizer *t);  /* -1 if none */
vb_token vb_tokenizer_eos(const vb_tokenizer *t);  /* -1 if none */
vb_token vb_tokenizer_mask(const vb_tokenizer *t); /* -1 if none */
bool vb_tokenizer_add_bos(const vb_tokenizer *t);
/* true for control/special tokens that end generation (EOS, EOT, <|im_end|>, ...). */
bool vb_tokenizer_is_eog(const vb_tokenizer *t, vb_token tok);
/* true for control tokens (BOS, EOS, <|im_start|>, masks, ...): their text is markup, not
 * output (constrained sampling never allows them as text). */
bool vb_tokenizer_is_control(const vb_tokenizer *t, vb_token tok);

/* Same contract as vb_tokenize in vibee.h. */
int vb_tokenizer_encode(const vb_tokenizer *t, const char *text, size_t len, bool add_special,
                        bool parse_special, vb_token *out, int32_t max_tokens);
/* Same, recognising a special token only where no byte of it is marked in user[len] (NULL:
 * everywhere): text that came from users never becomes a control token. */
int vb_tokenizer_encode_masked(const vb_tokenizer *t, const char *text, size_t len, bool add_special,
                               bool parse_special, const uint8_t *user, vb_token *out,
                               int32_t max_tokens);
/* Same contract as vb_token_to_bytes in vibee.h. */
int vb_tokenizer_token_bytes(const vb_tokenizer *t, vb_token tok, char *buf, size_t buf_len);

#endif
