#!/usr/bin/env python3
"""make_model.py - write a random-weight GGUF model of a real architecture (gpt2, llama, qwen2,
qwen3, wedlm, phi3, gemma3) with llama.cpp's metadata keys and tensor names, for tests and benchmarks.
wedlm is qwen3's tensors under wedlm.* keys, its vocabulary holding <|mask|> (control, id
n_vocab-2) without tokenizer.ggml.mask_token_id; phi3 has a fused attn_qkv [Q; K; V] and a fused
ffn_up [gate; up] (2 n_ff rows), no biases; --rope-factors adds phi3's LongRoPE
rope_factors_long/short.weight, rope.scaling.original_context_length = n_ctx and
rope.scaling.attn_factor. gemma3: qwen3's tensors plus blk.N.post_attention_norm and
post_ffw_norm, GeGLU, gemma3.attention.sliding_window = --sliding-window (0: none, then
--softcap writes final_logit_softcapping), --rope-scale F a linear rope.scaling.factor.

  make_model.py --arch qwen3 --n-layer 2 --n-embd 256 --n-head 4 --n-head-kv 2 --head-dim 64 \
      --n-ff 512 --n-vocab 512 --n-ctx 4096 --type q4_k --output-type q6_k --tied --out m.gguf

Weights: init scaled like a trained model's activations (projections std 1/sqrt(n_in), residual
outputs further divided by sqrt(2*n_layer), norm weights 1 + 0.1*N(0,1), embeddings std
2/sqrt(n_embd) so that tied logits have std ~2): logits are neither flat nor saturated and
attention is not uniform. 2-D tensors use --type (output.weight --output-type if given; a tensor
whose row length does not fit the type's block falls back to q8_0 or f16, as llama.cpp's quantizer
does); 1-D tensors (norms, biases) stay F32.
Vocabulary: a valid byte-level BPE vocab (tokenizer.ggml.model "gpt2", pre "gpt-2" or "qwen2", both
known to llama.cpp, which loads these files): the 256 byte tokens of the
GPT-2 byte alphabet (id = byte value), merged letter pieces up to n_vocab-1, and <|endoftext|>
(BOS = EOS = n_vocab-1). --no-vocab omits the tokenizer metadata.
"""
import argparse
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as W  # noqa: E402
from gguf_writer import (GGML_BF16, GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_K, GGML_Q6_K, GGML_Q8_0,  # noqa: E402
                         GGUF_INT32, GGUF_STRING, TYPE_BLOCK, TYPE_FROM_NAME, TYPE_NAMES, GGUFWriter)

ARCHS = ("gpt2", "llama", "qwen2", "qwen3", "wedlm", "phi3", "gemma3")
# control tokens an architecture's vocabulary carries: WeDLM's mask; Phi-3's (its Llama 2 specials
# and end of turn: llama.cpp looks </s>, <unk>, <s> up by text when general.name says phi3)
SPECIALS = {"wedlm": ("<|mask|>",), "phi3": ("<unk>", "<s>", "</s>", "<|end|>")}
# llama.cpp's general.file_type (enum llama_ftype) for a model whose weights are mostly of a type
FILE_TYPE = {GGML_F32: 0, GGML_F16: 1, GGML_Q4_0: 2, GGML_Q8_0: 7, GGML_Q4_K: 15, GGML_Q6_K: 18,
             GGML_BF16: 32}


def byte_alphabet():
    """GPT-2's byte -> printable unicode character mapping, as a list indexed by byte value."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def make_vocab(n_vocab, specials=()):
    """(tokens, token_types, merges) of a small valid byte-level BPE vocabulary; the control
    tokens `specials` come just before the last one, <|endoftext|>."""
    if n_vocab < 257:
        raise ValueError("a vocabulary needs n_vocab >= 257 (256 bytes + <|endoftext|>)")
    tokens = byte_alphabet()
    have = set(tokens)
    merges = []
    letters = [c for c in "etaoinsrhldcumfpgwybvkxjqz"]
    lefts = letters + ["\u0120"]  # U+0120 'Ġ' is the byte alphabet's space
    i = 0
    n_pieces = n_vocab - 1 - len(specials)
    while len(tokens) < n_pieces:
        left = lefts[i]
        i += 1
        for c in letters:
            if len(tokens) >= n_pieces:
                break
            piece = left + c
            if piece not in have:
                have.add(piece)
                tokens.append(piece)
                merges.append(left + " " + c)
                lefts.append(piece)
    types = [1] * len(tokens)  # 1 normal, 3 control
    tokens += list(specials)
    types += [3] * len(specials)
    tokens.append("<|endoftext|>")
    types.append(3)
    return tokens, types, merges


def choose_type(gtype, n_in):
    """The type a 2-D tensor with rows of n_in elements gets (llama.cpp-style fallback)."""
    if n_in % TYPE_BLOCK[gtype][0] == 0:
        return gtype
    if n_in % 32 == 0 and gtype in (GGML_Q4_K, GGML_Q6_K):
        return GGML_Q8_0
    return GGML_F16


def build(a):
    """Returns a GGUFWriter holding the model described by the argparse namespace a."""
    arch = a.arch
    rng = np.random.default_rng(a.seed if a.seed is not None else zlib.crc32(os.path.basename(a.out).encode()))
    E, L, V, F = a.n_embd, a.n_layer, a.n_vocab, a.n_ff
    H = a.n_head
    Hkv = H if arch == "gpt2" else (a.n_head_kv or H)
    qwen3 = arch in ("qwen3", "wedlm", "gemma3")  # head_dim from --head-dim, q/k norms
    if qwen3:
        hd = a.head_dim or E // H
    else:
        if E % H:
            raise ValueError("n_embd %d must be a multiple of n_head %d for %s" % (E, H, arch))
        hd = E // H
        if a.head_dim and a.head_dim != hd:
            raise ValueError("--head-dim applies to qwen3/wedlm/gemma3 only (%s uses n_embd/n_head)" % arch)
    if H % Hkv:
        raise ValueError("n_head %d must be a multiple of n_head_kv %d" % (H, Hkv))
    if arch != "gpt2" and hd % 2:
        raise ValueError("head_dim must be even for RoPE")
    wtype = TYPE_FROM_NAME[a.type]
    otype = TYPE_FROM_NAME[a.output_type] if a.output_type else wtype
    tied = a.tied

    w = GGUFWriter()
    p = arch + "."
    w.add_string("general.architecture", arch)
    w.add_string("general.name", a.name or os.path.splitext(os.path.basename(a.out))[0])
    w.add_u32("general.file_type", FILE_TYPE[wtype])
    w.add_u32("general.alignment", 32)
    w.add_u32(p + "context_length", a.n_ctx)
    w.add_u32(p + "embedding_length", E)
    w.add_u32(p + "block_count", L)
    w.add_u32(p + "feed_forward_length", F)
    w.add_u32(p + "attention.head_count", H)
    w.add_u32(p + "attention.head_count_kv", Hkv)
    if arch == "gpt2":
        w.add_f32(p + "attention.layer_norm_epsilon", a.eps if a.eps is not None else 1e-5)
    else:
        w.add_f32(p + "attention.layer_norm_rms_epsilon", a.eps if a.eps is not None else 1e-6)
        w.add_f32(p + "rope.freq_base", a.rope_theta)
        w.add_u32(p + "rope.dimension_count", hd)
    if qwen3:
        w.add_u32(p + "attention.key_length", hd)
        w.add_u32(p + "attention.value_length", hd)
    if not a.no_vocab:
        tokens, types, merges = make_vocab(V, SPECIALS.get(arch, ()))
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_string("tokenizer.ggml.pre", "gpt-2" if arch in ("gpt2", "llama", "phi3") else "qwen2")
        w.add_array("tokenizer.ggml.tokens", GGUF_STRING, tokens)
        w.add_array("tokenizer.ggml.token_type", GGUF_INT32, types)
        w.add_array("tokenizer.ggml.merges", GGUF_STRING, merges)
        w.add_u32("tokenizer.ggml.bos_token_id", V - 1)
        w.add_u32("tokenizer.ggml.eos_token_id", V - 1)
        w.add_bool("tokenizer.ggml.add_bos_token", False)

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def mat(name, n_out, n_in, std=None, gtype=None):
        gt = choose_type(gtype if gtype is not None else wtype, n_in)
        if gt != (gtype if gtype is not None else wtype):
            print("  %s: rows of %d do not fit %s, stored as %s" % (name, n_in, TYPE_NAMES[wtype], TYPE_NAMES[gt]))
        sd = std if std is not None else n_in ** -0.5
        step = max(1, (1 << 22) // n_in)  # rows per chunk: large models never hold float64 copies
        data = b"".join(W.quantize(normal((min(step, n_out - r), n_in), sd), gt) for r in range(0, n_out, step))
        w.add_tensor_raw(name, [n_in, n_out], gt, data)

    def vec(name, n, kind):
        v = 1.0 + 0.1 * rng.standard_normal(n) if kind == "scale" else 0.1 * rng.standard_normal(n)
        w.add_tensor(name, v.astype(np.float32), GGML_F32)

    if arch == "gemma3":
        if getattr(a, "sliding_window", 0):
            w.add_u32(p + "attention.sliding_window", a.sliding_window)
        elif getattr(a, "softcap", 0.0):
            w.add_f32(p + "final_logit_softcapping", a.softcap)
        if getattr(a, "rope_scale", 0.0):
            w.add_string(p + "rope.scaling.type", "linear")
            w.add_f32(p + "rope.scaling.factor", a.rope_scale)
    rope_factors = getattr(a, "rope_factors", False)
    if rope_factors:
        if arch != "phi3":
            raise ValueError("--rope-factors applies to phi3 only")
        w.add_u32(p + "rope.scaling.original_context_length", a.n_ctx)
        w.add_f32(p + "rope.scaling.attn_factor", 1.1)

    res_scale = (2.0 * L) ** -0.5
    mat("token_embd.weight", V, E, std=2.0 * E ** -0.5)
    if arch == "gpt2":
        mat("position_embd.weight", a.n_ctx, E, std=1.0 * E ** -0.5)
    vec("output_norm.weight", E, "scale")
    if arch == "gpt2":
        vec("output_norm.bias", E, "bias")
    if not tied:
        mat("output.weight", V, E, std=2.0 * E ** -0.5, gtype=otype)
    for il in range(L):
        b = "blk.%d." % il
        vec(b + "attn_norm.weight", E, "scale")
        if arch == "gpt2":
            vec(b + "attn_norm.bias", E, "bias")
            mat(b + "attn_qkv.weight", 3 * E, E)
            vec(b + "attn_qkv.bias", 3 * E, "bias")
            mat(b + "attn_output.weight", E, E, std=E ** -0.5 * res_scale)
            vec(b + "attn_output.bias", E, "bias")
            vec(b + "ffn_norm.weight", E, "scale")
            vec(b + "ffn_norm.bias", E, "bias")
            mat(b + "ffn_up.weight", F, E)
            vec(b + "ffn_up.bias", F, "bias")
            mat(b + "ffn_down.weight", E, F, std=F ** -0.5 * res_scale)
            vec(b + "ffn_down.bias", E, "bias")
            continue
        if arch == "phi3":
            if il == 0 and rope_factors:  # LongRoPE factors (llama.cpp reads layer 0's)
                w.add_tensor("rope_factors_long.weight", (1.0 + 4.0 * rng.random(hd // 2)).astype(np.float32), GGML_F32)
                w.add_tensor("rope_factors_short.weight", (1.0 + 0.5 * rng.random(hd // 2)).astype(np.float32), GGML_F32)
            mat(b + "attn_qkv.weight", (H + 2 * Hkv) * hd, E)
            mat(b + "attn_output.weight", E, H * hd, std=(H * hd) ** -0.5 * res_scale)
            vec(b + "ffn_norm.weight", E, "scale")
            mat(b + "ffn_up.weight", 2 * F, E)  # [gate; up]
            mat(b + "ffn_down.weight", E, F, std=F ** -0.5 * res_scale)
            continue
        mat(b + "attn_q.weight", H * hd, E)
        mat(b + "attn_k.weight", Hkv * hd, E)
        mat(b + "attn_v.weight", Hkv * hd, E)
        if arch == "qwen2":
            vec(b + "attn_q.bias", H * hd, "bias")
            vec(b + "attn_k.bias", Hkv * hd, "bias")
            vec(b + "attn_v.bias", Hkv * hd, "bias")
        if qwen3:
            vec(b + "attn_q_norm.weight", hd, "scale")
            vec(b + "attn_k_norm.weight", hd, "scale")
        mat(b + "attn_output.weight", E, H * hd, std=(H * hd) ** -0.5 * res_scale)
        if arch == "gemma3":
            vec(b + "post_attention_norm.weight", E, "scale")
            vec(b + "post_ffw_norm.weight", E, "scale")
        vec(b + "ffn_norm.weight", E, "scale")
        mat(b + "ffn_gate.weight", F, E)
        mat(b + "ffn_up.weight", F, E)
        mat(b + "ffn_down.weight", E, F, std=F ** -0.5 * res_scale)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-head-kv", type=int, default=0, help="0 = n_head (gpt2 always n_head)")
    ap.add_argument("--head-dim", type=int, default=0, help="qwen3/wedlm only; 0 = n_embd/n_head")
    ap.add_argument("--n-ff", type=int, default=128)
    ap.add_argument("--n-vocab", type=int, default=320)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--type", default="f32", choices=sorted(TYPE_FROM_NAME))
    ap.add_argument("--output-type", default="", choices=[""] + sorted(TYPE_FROM_NAME),
                    help="type of output.weight (default --type)")
    ap.add_argument("--tied", action="store_true", help="no output.weight: the LM head is token_embd")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rope-factors", action="store_true", help="phi3: LongRoPE factor tensors")
    ap.add_argument("--sliding-window", type=int, default=0, help="gemma3: attention.sliding_window")
    ap.add_argument("--softcap", type=float, default=0.0, help="gemma3 without window: final_logit_softcapping")
    ap.add_argument("--rope-scale", type=float, default=0.0, help="gemma3: linear rope.scaling.factor")
    ap.add_argument("--eps", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None, help="default: derived from --out's name")
    ap.add_argument("--name", default="")
    ap.add_argument("--no-vocab", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    w = build(a)
    w.write(a.out)
    print("wrote %s (%.2f MB, %s %s)" % (a.out, os.path.getsize(a.out) / 1e6, a.arch, a.type))


if __name__ == "__main__":
    main()
