#!/usr/bin/env python3
"""ref_forward.py - the independent numpy reference forward pass of vibee's architectures (gpt2,
llama, qwen2, qwen3, wedlm, phi3, gemma3) from a GGUF file, in float64 from exactly dequantized weights.

Semantics (DESIGN §3): the input is a sequence of rows (token, logical position) of one sequence;
row t attends to rows 0..t (causal in row order, whatever the positions are); positions only
choose the RoPE angle (llama/qwen) or the position-embedding row (gpt2). Logits for every row.

Conventions (llama.cpp's, on the GGUF tensors as stored; W[n_out][n_in], y = W x):
  llama : RMSNorm, RoPE "normal" (rotates pairs (2i, 2i+1)), SwiGLU, no biases
  qwen2 : as llama with q/k/v biases and RoPE NEOX (pairs (i, i + d/2))
  qwen3 : as llama with per-head RMSNorm of q and k (attn_q_norm/attn_k_norm) before NEOX RoPE,
          head_dim from <arch>.attention.key_length
  wedlm : qwen3 (WeDLM checkpoints; keys under wedlm.*)
  gpt2  : LayerNorm with bias, learned position_embd, fused attn_qkv (+bias; rows = [Q; K; V]),
          biases everywhere, GELU (tanh approximation)
  phi3  : (Phi-3, HF Phi3ForCausalLM) RMSNorm, NEOX RoPE, qkv_proj fused as attn_qkv [Q; K; V],
          gate_up_proj fused as ffn_up [gate; up] (SwiGLU: silu(first half) * second half), no
          biases; LongRoPE: each pair's angle divided by rope_factors_short[i] (the short factors:
          contexts within rope.scaling.original_context_length) and q.k scaled by
          rope.scaling.attn_factor^2 (the factor multiplies cos and sin of both q and k)
  gemma3: (HF Gemma3ForCausalLM, llama.cpp's converter: norm weights stored with the +1) token
          embeddings times sqrt(n_embd), RMSNorm, q/k RMSNorm per head, NEOX RoPE, the attention
          and FFN outputs RMSNormed (post_attention_norm, post_ffw_norm) before their residual
          adds, GeGLU (gelu_tanh(gate) * up); with gemma3.attention.sliding_window W, layer il is
          local unless (il + 1) % 6 == 0: RoPE base 10000 and row t sees only rows t-W+1..t (a
          window in row order, as causality is; llama.cpp's q_pos - k_pos < W for rows at
          consecutive positions); global layers: rope.freq_base, angles divided by a linear
          rope.scaling.factor; final_logit_softcapping c (files without a window): c tanh(l / c)
  RoPE angle of pair i at position p: p * freq_base^(-2i/head_dim). GQA: query head h uses KV
  head h // (n_head / n_head_kv). Attention scale 1/sqrt(head_dim). Output = output.weight or,
  when absent, token_embd.weight (tied).

Library:  m = RefModel(path); logits = m.forward(tokens, positions)   # [n_rows][n_vocab] float64
          h = m.hidden(tokens, positions)   # [n_rows][n_embd] after the output norm (forward = h W_out^T)
          toks, margins = m.greedy(prompt_tokens, prompt_positions, n_steps)
Options to *simulate* a kernel's roundings (for estimating error bounds, never for references):
  m.forward(..., act="ggml") quantizes each matmul input like ggml's CPU kernels do (Q8_0 blocks
  of 32 for Q8_0/Q4_0 weights, Q8_K blocks of 256 for K-quants, f16 for F16, bf16 for BF16);
  kv_f16=True rounds cached K and V to f16.

CLI:  ref_forward.py --selftest   (quantizer round trips, causality, RoPE shift invariance, the
                                   shipped model's documented greedy text)
      ref_forward.py MODEL.gguf --tokens 1,2,3 --positions 0,1,2 --out ref.bin
          [--greedy-prompt 6 --greedy-steps 32]
  writes ref.bin (little-endian f32 [n_rows][n_vocab]) and ref.json (header: model, arch,
  n_rows, n_vocab, tokens, positions, weight type, greedy continuation and its margins).
      ref_forward.py MODEL.gguf --tokens 1,2,3 [--positions 0,1,2] --hidden-out hid.bin
  writes hid.bin: little-endian f32 [n_rows][n_embd], the final hidden states (after the output
  norm, before the output matrix) that embeddings pool (with or without --out).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFReader  # noqa: E402
from gguf_writer import (GGML_BF16, GGML_F16, GGML_IQ4_NL, GGML_IQ4_XS, GGML_Q2_K,  # noqa: E402
                         GGML_Q3_K, GGML_Q4_0, GGML_Q4_1, GGML_Q4_K, GGML_Q5_0, GGML_Q5_1, GGML_Q5_K,
                         GGML_Q6_K, GGML_Q8_0, READ_ONLY_TYPE_NAMES, TYPE_NAMES, f32_to_bf16_bits)

ARCHS = ("gpt2", "llama", "qwen2", "qwen3", "wedlm", "phi3", "gemma3")
GRAPH = {"wedlm": "qwen3"}  # architectures that are another's graph under their own key prefix


def _sim_act(x, wtype):
    """Round matmul input rows x [n][n_in] the way ggml's CPU kernels prepare them for a weight of
    type wtype (simulation only)."""
    if wtype == GGML_F16:
        return x.astype(np.float16).astype(np.float64)
    if wtype == GGML_BF16:
        b = f32_to_bf16_bits(x.astype(np.float32)).astype(np.uint32) << 16
        return b.view(np.float32).astype(np.float64)
    blk = {GGML_Q8_0: 32, GGML_Q4_0: 32, GGML_Q4_1: 32, GGML_Q5_0: 32, GGML_Q5_1: 32, GGML_IQ4_NL: 32,
           GGML_Q2_K: 256, GGML_Q3_K: 256, GGML_Q4_K: 256, GGML_Q5_K: 256, GGML_Q6_K: 256,
           GGML_IQ4_XS: 256}.get(wtype)
    if blk is None or x.shape[-1] % blk:
        return x
    b = x.astype(np.float32).reshape(x.shape[0], -1, blk).astype(np.float64)
    d = np.abs(b).max(axis=2, keepdims=True) / 127.0
    if blk == 32:
        d = d.astype(np.float16).astype(np.float64)  # Q8_0 keeps d as f16
    q = np.rint(np.divide(b, d, out=np.zeros_like(b), where=d > 0))
    return (q * d).reshape(x.shape)


class RefModel:
    def __init__(self, path):
        self.path = path
        g = GGUFReader(path)
        self.g = g
        kv = g.kv
        arch = kv.get("general.architecture")
        if arch not in ARCHS:
            raise ValueError("%s: architecture %r not supported (want one of %s)" % (path, arch, ARCHS))
        self.arch = GRAPH.get(arch, arch)  # the graph; keys are read under the file's own prefix
        self.file_arch = arch
        p = arch + "."
        self.n_layer = int(kv[p + "block_count"])
        self.n_embd = int(kv[p + "embedding_length"])
        self.n_head = int(kv[p + "attention.head_count"])
        self.n_head_kv = int(kv.get(p + "attention.head_count_kv", self.n_head))
        self.head_dim = int(kv.get(p + "attention.key_length", self.n_embd // self.n_head))
        self.n_ff = int(kv[p + "feed_forward_length"])
        self.n_ctx = int(kv.get(p + "context_length", 0))
        self.theta = float(kv.get(p + "rope.freq_base", 10000.0))
        self.attn_factor = float(kv.get(p + "rope.scaling.attn_factor", 1.0)) if arch == "phi3" else 1.0
        if arch == "gpt2":
            self.eps = float(kv.get(p + "attention.layer_norm_epsilon", 1e-5))
        else:
            self.eps = float(kv.get(p + "attention.layer_norm_rms_epsilon", 1e-6))
        if self.n_head % self.n_head_kv:
            raise ValueError("n_head %d is not a multiple of n_head_kv %d" % (self.n_head, self.n_head_kv))
        self.w = {}
        self.wtype = {}
        for name, t in g.tensors.items():
            self.w[name] = g.get(name).astype(np.float64)
            self.wtype[name] = t.type
        self.out_name = "output.weight" if "output.weight" in self.w else "token_embd.weight"
        self.n_vocab = self.w["token_embd.weight"].shape[0]
        self.freq_factors = self.w.get("rope_factors_short.weight")  # phi3 LongRoPE (short)
        self.n_swa, self.softcap = 0, 0.0
        if arch == "gemma3":
            self.n_swa = int(kv.get(p + "attention.sliding_window", 0))
            if kv.get(p + "rope.scaling.type") == "linear" and float(kv.get(p + "rope.scaling.factor", 1.0)) != 1.0:
                self.freq_factors = np.full(self.head_dim // 2, float(kv[p + "rope.scaling.factor"]))
            if not self.n_swa:
                self.softcap = float(kv.get(p + "final_logit_softcapping", 0.0))
        types = [self.wtype[n] for n in self.w if self.w[n].ndim == 2]
        self.weight_type = {**TYPE_NAMES, **READ_ONLY_TYPE_NAMES}.get(max(set(types), key=types.count), "?")

    # ---- building blocks -------------------------------------------------------------------
    def _mm(self, x, name, act):
        """x [n][n_in] -> x W^T (+ bias if <name without .weight>.bias exists) [n][n_out]."""
        if act == "ggml":
            x = _sim_act(x, self.wtype[name])
        y = x @ self.w[name].T
        bias = name[:-len("weight")] + "bias"
        if bias in self.w:
            y = y + self.w[bias]
        return y

    def _rmsnorm(self, x, name):
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps) * self.w[name]

    def _layernorm(self, x, name):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name] + self.w[name[:-len("weight")] + "bias"]

    def _local(self, il):
        """gemma3: whether layer il is a sliding-window (local) layer."""
        return self.n_swa > 0 and (il + 1) % 6 != 0

    def _rope(self, x, pos, local=False):
        """x [n][heads][hd], pos [n] -> rotated copy (normal for llama, NEOX for the others);
        local: a gemma3 sliding-window layer (base 10000, no frequency factors)."""
        hd = self.head_dim
        half = hd // 2
        theta = 10000.0 if local else self.theta
        inv = theta ** (-np.arange(half, dtype=np.float64) * 2.0 / hd)           # [half]
        if self.freq_factors is not None and not local:
            inv = inv / self.freq_factors
        ang = pos.astype(np.float64)[:, None] * inv[None, :]                    # [n][half]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        if self.arch == "llama":
            a, b = x[..., 0::2], x[..., 1::2]
            y[..., 0::2] = a * c - b * s
            y[..., 1::2] = a * s + b * c
        else:
            a, b = x[..., :half], x[..., half:]
            y[..., :half] = a * c - b * s
            y[..., half:] = a * s + b * c
        return y

    def _attention(self, q, k, v, kv_f16, window=0):
        """q [n][H][hd], k/v [n][Hkv][hd] -> [n][H*hd], causal in row order (window > 0: row t
        sees only rows t-window+1..t)."""
        n, H, hd = q.shape
        if kv_f16:
            k = k.astype(np.float16).astype(np.float64)
            v = v.astype(np.float16).astype(np.float64)
        group = H // self.n_head_kv
        mask = np.tril(np.ones((n, n), dtype=bool))
        if window > 0:
            rows = np.arange(n)
            mask &= (rows[:, None] - rows[None, :]) < window
        out = np.zeros((n, H, hd))
        for h in range(H):
            kh = h // group
            sc = (q[:, h, :] @ k[:, kh, :].T) * self.attn_factor ** 2 / math.sqrt(hd)  # [n][n]
            sc = np.where(mask, sc, -np.inf)
            sc = sc - sc.max(axis=1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(axis=1, keepdims=True)
            out[:, h, :] = p @ v[:, kh, :]
        return out.reshape(n, H * hd)

    # ---- the forward pass ------------------------------------------------------------------
    def forward(self, tokens, positions, act=None, kv_f16=False):
        """tokens, positions: int sequences of equal length -> logits [n_rows][n_vocab] float64."""
        lg = self._mm(self.hidden(tokens, positions, act, kv_f16), self.out_name, act)
        if self.softcap > 0:
            lg = self.softcap * np.tanh(lg / self.softcap)
        return lg

    def hidden(self, tokens, positions, act=None, kv_f16=False):
        """The final hidden states (after the output norm) [n_rows][n_embd] float64."""
        tok = np.asarray(tokens, dtype=np.int64)
        pos = np.asarray(positions, dtype=np.int64)
        if tok.shape != pos.shape or tok.ndim != 1:
            raise ValueError("tokens and positions must be 1-D of equal length")
        if tok.min() < 0 or tok.max() >= self.n_vocab:
            raise ValueError("token out of range [0, %d)" % self.n_vocab)
        n = tok.size
        H, Hkv, hd = self.n_head, self.n_head_kv, self.head_dim
        x = self.w["token_embd.weight"][tok]                                     # [n][n_embd]
        if self.arch == "gemma3":
            x = x * math.sqrt(self.n_embd)
        if self.arch == "gpt2":
            if pos.max() >= self.w["position_embd.weight"].shape[0] or pos.min() < 0:
                raise ValueError("position out of range of position_embd")
            x = x + self.w["position_embd.weight"][pos]
        for il in range(self.n_layer):
            b = "blk.%d." % il
            if self.arch in ("gpt2", "phi3"):
                if self.arch == "gpt2":
                    h = self._layernorm(x, b + "attn_norm.weight")
                else:
                    h = self._rmsnorm(x, b + "attn_norm.weight")
                qkv = self._mm(h, b + "attn_qkv.weight", act)                    # [n][(H+2Hkv)*hd]
                e = H * hd
                q = qkv[:, :e].reshape(n, H, hd)
                k = qkv[:, e:e + Hkv * hd].reshape(n, Hkv, hd)
                v = qkv[:, e + Hkv * hd:].reshape(n, Hkv, hd)
                if self.arch == "phi3":
                    q = self._rope(q, pos)
                    k = self._rope(k, pos)
            else:
                h = self._rmsnorm(x, b + "attn_norm.weight")
                q = self._mm(h, b + "attn_q.weight", act).reshape(n, H, hd)
                k = self._mm(h, b + "attn_k.weight", act).reshape(n, Hkv, hd)
                v = self._mm(h, b + "attn_v.weight", act).reshape(n, Hkv, hd)
                if self.arch in ("qwen3", "gemma3"):
                    q = self._rmsnorm(q, b + "attn_q_norm.weight")
                    k = self._rmsnorm(k, b + "attn_k_norm.weight")
                q = self._rope(q, pos, self._local(il))
                k = self._rope(k, pos, self._local(il))
            att = self._attention(q, k, v, kv_f16, self.n_swa if self._local(il) else 0)  # [n][H*hd]
            o = self._mm(att, b + "attn_output.weight", act)
            if self.arch == "gemma3":
                o = self._rmsnorm(o, b + "post_attention_norm.weight")
            x = x + o
            if self.arch == "gpt2":
                h = self._layernorm(x, b + "ffn_norm.weight")
                u = self._mm(h, b + "ffn_up.weight", act)
                u = 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))
                x = x + self._mm(u, b + "ffn_down.weight", act)
            else:
                h = self._rmsnorm(x, b + "ffn_norm.weight")
                if self.arch == "phi3":
                    gu = self._mm(h, b + "ffn_up.weight", act)                   # [n][2*n_ff]
                    gt, u = gu[:, :self.n_ff], gu[:, self.n_ff:]
                else:
                    gt = self._mm(h, b + "ffn_gate.weight", act)
                    u = self._mm(h, b + "ffn_up.weight", act)
                if self.arch == "gemma3":
                    a = 0.5 * gt * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (gt + 0.044715 * gt ** 3)))
                    f = self._mm(a * u, b + "ffn_down.weight", act)
                    x = x + self._rmsnorm(f, b + "post_ffw_norm.weight")
                else:
                    x = x + self._mm(gt / (1.0 + np.exp(-gt)) * u, b + "ffn_down.weight", act)
        if self.arch == "gpt2":
            return self._layernorm(x, "output_norm.weight")
        return self._rmsnorm(x, "output_norm.weight")

    def greedy(self, prompt_tokens, prompt_positions, n_steps, **kw):
        """Greedy continuation: the argmax of the last row is appended at the next position
        (last prompt position + 1, +2, ...). Returns (tokens [n_steps], margins [n_steps]) where
        margin = (top1 - top2 logit) / max|logit| of the step's logits."""
        toks, poss = list(prompt_tokens), list(prompt_positions)
        out, margins = [], []
        for _ in range(n_steps):
            lg = self.forward(toks, poss, **kw)[-1]
            order = np.argsort(-lg, kind="stable")
            margins.append(float((lg[order[0]] - lg[order[1]]) / np.abs(lg).max()))
            t = int(order[0])
            out.append(t)
            toks.append(t)
            poss.append(poss[-1] + 1)
        return out, margins


def max_rel_err(a, b):
    """Per row max|a-b| / max|b|, the max over rows."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float((np.abs(a - b).max(axis=1) / np.abs(b).max(axis=1)).max())


def write_reference(model, tokens, positions, out_bin, greedy_prompt=0, greedy_steps=0, extra=None):
    """Write logits of (tokens, positions) to out_bin (f32 LE) and the JSON header beside it
    (out_bin with .bin replaced by .json). Returns the header dict."""
    lg = model.forward(tokens, positions)
    with open(out_bin, "wb") as f:
        f.write(lg.astype("<f4").tobytes())
    hdr = dict(model=os.path.basename(model.path), arch=model.file_arch, weight_type=model.weight_type,
               n_rows=len(tokens), n_vocab=model.n_vocab, tokens=[int(t) for t in tokens],
               positions=[int(p) for p in positions])
    if greedy_steps:
        gp_tok, gp_pos = list(tokens[:greedy_prompt]), list(positions[:greedy_prompt])
        g, m = model.greedy(gp_tok, gp_pos, greedy_steps)
        hdr.update(greedy_prompt=[int(t) for t in gp_tok], greedy_prompt_positions=[int(p) for p in gp_pos],
                   greedy=g, greedy_margin=[float("%.6g" % x) for x in m])
    # what a ggml-style kernel's roundings alone would cost (8-bit / f16 / bf16 matmul inputs per
    # weight type, f16 K/V): documents how much of a tolerance is rounding, not error
    hdr.update(sim_err_kvf16=float("%.3g" % max_rel_err(model.forward(tokens, positions, kv_f16=True), lg)),
               sim_err_ggml=float("%.3g" % max_rel_err(model.forward(tokens, positions, act="ggml",
                                                                     kv_f16=True), lg)))
    if extra:
        hdr.update(extra)
    json_path = out_bin[:-4] + ".json" if out_bin.endswith(".bin") else out_bin + ".json"
    with open(json_path, "w") as f:
        json.dump(hdr, f)
        f.write("\n")
    return hdr


def selftest():
    """Checks of the quantizers and the reference that need no other software. Raises on failure."""
    import argparse as _ap
    import tempfile
    import gguf_writer as W
    from gguf_reader import dequantize
    from make_model import build
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    x[3, :40] = 0.0                     # an all-zero block must survive
    bounds = {W.GGML_F32: 0.0, W.GGML_F16: 1e-3, W.GGML_BF16: 5e-3, W.GGML_Q8_0: 1e-2,
              W.GGML_Q6_K: 3e-2, W.GGML_Q4_0: 0.12, W.GGML_Q4_K: 0.12}
    for t, bound in bounds.items():
        raw = W.quantize(x, t)
        be, bb = W.TYPE_BLOCK[t]
        assert len(raw) == x.size // be * bb, "%s: wrong byte count" % W.TYPE_NAMES[t]
        y = dequantize(raw, t, x.size).reshape(x.shape)
        err = float(np.sqrt(((y - x) ** 2).mean() / (x ** 2).mean()))
        assert err <= bound, "%s: relative rms error %.3g > %.3g" % (W.TYPE_NAMES[t], err, bound)
        assert np.all(y[3, :32] == 0.0), "%s: zero block not zero" % W.TYPE_NAMES[t]
    tok = [5, 77, 130, 9, 260, 31, 31, 200, 11, 42]
    pos = [0, 1, 2, 3, 4, 5, 8, 6, 7, 9]
    with tempfile.TemporaryDirectory() as td:
        for arch in ARCHS:
            path = os.path.join(td, arch + ".gguf")
            a = _ap.Namespace(arch=arch, n_layer=2, n_embd=64, n_head=4, n_head_kv=2 if arch != "gpt2" else 0,
                              head_dim=32 if arch in ("qwen3", "wedlm", "gemma3") else 0, n_ff=96, n_vocab=300, n_ctx=256,
                              type="f32", output_type="", tied=arch in ("qwen3", "gpt2"),
                              rope_theta=10000.0, eps=None, seed=7, name="", no_vocab=False, out=path,
                              rope_factors=arch == "phi3")
            build(a).write(path)
            m = RefModel(path)
            full = m.forward(tok, pos)
            part = m.forward(tok[:6], pos[:6])
            assert np.allclose(full[:6], part, rtol=0, atol=1e-12), arch + ": later rows changed earlier logits"
            shifted = m.forward(tok, [p + 100 for p in pos])
            moved = max_rel_err(shifted, full)
            if arch == "gpt2":
                assert moved > 1e-3, "gpt2: position embeddings have no effect"
            else:  # RoPE scores depend on position differences only
                assert moved < 1e-9, "%s: logits not invariant under a shift of all positions (%.3g)" % (arch, moved)
                swapped = m.forward(tok, pos[:6] + [pos[7], pos[6]] + pos[8:])
                assert max_rel_err(swapped[7:], full[7:]) > 1e-4, arch + ": positions have no effect"
            assert np.all(np.abs(full).max(1) > 1.0), arch + ": degenerate (flat) logits"
            hid = m.hidden(tok, pos)
            assert hid.shape == (len(tok), m.n_embd), arch + ": hidden states have the wrong shape"
    # The shipped trained model's documented greedy example (models/wedlm-py-6m.md), qwen3 path:
    # BOS + the prompt "import os\nimport sys\n\ndef main(" as encoded by scripts/wedlm/bpe.py
    # (with python3-regex) -> 'env):\n    """Return a path to a path ...'.
    shipped = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "wedlm-py-6m-f16.gguf")
    if os.path.exists(shipped):
        from make_model import byte_alphabet
        m = RefModel(shipped)
        ids = [4094, 925, 995, 10, 925, 1308, 270, 329, 588, 260, 40]
        g, _ = m.greedy(ids, list(range(len(ids))), 12)
        to_byte = {c: b for b, c in enumerate(byte_alphabet())}
        vocab = m.g.kv["tokenizer.ggml.tokens"]
        prompt = bytes(to_byte[c] for i in ids[1:] for c in vocab[i]).decode("utf-8")
        assert prompt == "import os\nimport sys\n\ndef main(", "prompt ids decode to %r" % prompt
        text = bytes(to_byte[c] for i in g for c in vocab[i]).decode("utf-8", errors="replace")
        want = 'env):\n    """Return a path to a path'
        assert text.startswith(want), "shipped model greedy %r does not start with %r" % (text, want)
    print("selftest: ok")


def _ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("--selftest", action="store_true", help="check quantizers and reference, then exit")
    ap.add_argument("--tokens", default="", help="comma-separated token ids")
    ap.add_argument("--positions", default="", help="comma-separated positions (default 0..n-1)")
    ap.add_argument("--out", default="", help="logits file (.bin); the header goes to .json beside it")
    ap.add_argument("--hidden-out", default="", help="final hidden states file (f32 [n_rows][n_embd])")
    ap.add_argument("--greedy-prompt", type=int, default=0, help="rows of the script used as greedy prompt")
    ap.add_argument("--greedy-steps", type=int, default=0)
    a = ap.parse_args()
    if a.selftest:
        selftest()
        return
    if not (a.model and a.tokens and (a.out or a.hidden_out)):
        ap.error("MODEL, --tokens and --out or --hidden-out are required")
    toks = _ints(a.tokens)
    poss = _ints(a.positions) if a.positions else list(range(len(toks)))
    if len(poss) != len(toks):
        ap.error("--tokens and --positions differ in length")
    m = RefModel(a.model)
    if a.out:
        hdr = write_reference(m, toks, poss, a.out, a.greedy_prompt, a.greedy_steps)
        print("wrote %s: %d rows x %d logits" % (a.out, hdr["n_rows"], hdr["n_vocab"]))
    if a.hidden_out:
        with open(a.hidden_out, "wb") as f:
            f.write(m.hidden(toks, poss).astype("<f4").tobytes())
        print("wrote %s: %d rows x %d hidden values" % (a.hidden_out, len(toks), m.n_embd))


if __name__ == "__main__":
    main()
