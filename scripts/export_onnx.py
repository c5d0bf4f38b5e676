#!/usr/bin/env python3
"""export_onnx.py - build an ONNX decoder graph with past key/values (Hugging Face optimum's layout)
from the weights of a GGUF file the project writes (scripts/make_model.py), so the same model runs
on vibee's `cpu` backend (the GGUF) and on its `onnx` backend (ONNX Runtime). gpt2 and qwen3
(llama/qwen2 work too: they are qwen3 without the q/k norms, llama with interleaved RoPE).

  export_onnx.py model.gguf --out model.onnx [--dtype f32|f16] [--opset 17]

Graph interface (optimum names, looked up by name by the backend):
  inputs   input_ids       int64 [batch, sequence_length]
           attention_mask  int64 [batch, past_sequence_length + sequence_length] (1 = attend)
           position_ids    int64 [batch, sequence_length]  (RoPE angle / position-embedding row;
                           --no-position-ids leaves it out: positions are then the row indices)
           past_key_values.{i}.key / .value  [batch, n_head_kv, past_sequence_length, head_dim]
  outputs  logits          [batch, sequence_length, n_vocab]
           present.{i}.key / .value          [batch, n_head_kv, total_sequence_length, head_dim]
The causal mask is built from ROW ORDER (new row r sees the past rows and new rows 0..r), not from
position_ids: this is vibee's physical-order causality (DESIGN section 3), also when positions go
backwards. --dtype f16 stores f16 weights, f16 past/present and f16 logits (arithmetic in f32 inside
the graph, which ORT's CPU provider supports for every op used here).
Needs only Debian's python3-onnx (opset <= 17) and python3-numpy.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reader import GGUFReader  # noqa: E402

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover
    sys.exit("export_onnx.py: python3-onnx is missing (apt-get install -y python3-onnx)")

ARCHS = ("gpt2", "llama", "qwen2", "qwen3")


class GraphBuilder:
    """Collects nodes and initializers; every op returns its (unique) output name."""

    def __init__(self, wdtype):
        self.nodes, self.inits, self.n = [], [], 0
        self.wdtype = wdtype  # numpy dtype of stored weights

    def name(self, hint):
        self.n += 1
        return "%s_%d" % (hint, self.n)

    def op(self, op_type, inputs, hint=None, n_out=1, **attrs):
        outs = [self.name(hint or op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value, hint="c", dtype=None):
        arr = np.asarray(value, dtype=dtype)
        nm = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, nm))
        return nm

    def weight(self, arr, hint):
        """A weight stored as wdtype; returns an f32 view (a Cast ORT folds at load for f16)."""
        nm = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr.astype(self.wdtype)), nm))
        if self.wdtype == np.float32:
            return nm
        return self.op("Cast", [nm], hint + "_f32", to=TensorProto.FLOAT)


def build(path, dtype, opset, position_ids=True):
    g = GGUFReader(path)
    kv = g.kv
    arch = kv.get("general.architecture")
    if arch not in ARCHS:
        raise SystemExit("%s: architecture %r not supported (want one of %s)" % (path, arch, ARCHS))
    p = arch + "."
    L = int(kv[p + "block_count"])
    E = int(kv[p + "embedding_length"])
    H = int(kv[p + "attention.head_count"])
    Hkv = int(kv.get(p + "attention.head_count_kv", H))
    hd = int(kv.get(p + "attention.key_length", E // H))
    theta = float(kv.get(p + "rope.freq_base", 10000.0))
    if arch == "gpt2":
        eps = float(kv.get(p + "attention.layer_norm_epsilon", 1e-5))
    else:
        eps = float(kv.get(p + "attention.layer_norm_rms_epsilon", 1e-6))
    grp = H // Hkv
    W = lambda name: g.get(name).astype(np.float32)  # noqa: E731  [n_out][n_in] or [n]
    emb = W("token_embd.weight")                       # [V][E]
    V = emb.shape[0]
    io_type = TensorProto.FLOAT if dtype == "f32" else TensorProto.FLOAT16
    b = GraphBuilder(np.float32 if dtype == "f32" else np.float16)

    # ---- graph inputs ----------------------------------------------------------------------
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_sequence_length"]),
    ]
    if position_ids:
        inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence_length"]))
    for i in range(L):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info("past_key_values.%d.%s" % (i, kind), io_type,
                                                        ["batch", Hkv, "past_sequence_length", hd]))
    outputs = [helper.make_tensor_value_info("logits", io_type, ["batch", "sequence_length", V])]
    for i in range(L):
        for kind in ("key", "value"):
            outputs.append(helper.make_tensor_value_info("present.%d.%s" % (i, kind), io_type,
                                                         ["batch", Hkv, "total_sequence_length", hd]))

    i64 = lambda v: b.const(v, "i64", np.int64)  # noqa: E731

    # ---- the causal mask from row order: new row r (0-based) sees key columns 0..P+r --------
    past_shape = b.op("Shape", ["past_key_values.0.key"], "past_shape")
    P = b.op("Gather", [past_shape, i64(2)], "P", axis=0)                        # scalar
    ids_shape = b.op("Shape", ["input_ids"], "ids_shape")
    S = b.op("Gather", [ids_shape, i64(1)], "S", axis=0)                         # scalar
    T = b.op("Add", [P, S], "T")
    rows = b.op("Range", [P, T, i64(1)], "rows")                                 # [S] = P..T-1
    cols = b.op("Range", [i64(0), T, i64(1)], "cols")                            # [T]
    causal = b.op("LessOrEqual", [b.op("Unsqueeze", [cols, i64([0])]),
                                  b.op("Unsqueeze", [rows, i64([1])])], "causal")  # [S][T]
    am = b.op("Cast", ["attention_mask"], "am_bool", to=TensorProto.BOOL)       # [B][T]
    am = b.op("Unsqueeze", [am, i64([1, 2, 3])], "am5")                          # [B][1][1][1][T]
    allowed = b.op("And", [causal, am], "allowed")                               # [B][1][1][S][T]
    mask_bias = b.op("Where", [allowed, b.const(np.float32(0.0)), b.const(np.float32(-1e9))],
                     "mask_bias")
    # without a position_ids input (like some optimum exports) the positions are the row indices
    pos_ids = "position_ids" if position_ids else b.op("Unsqueeze", [rows, i64([0])], "row_pos")

    # ---- embeddings ------------------------------------------------------------------------
    x = b.op("Gather", [b.weight(emb, "token_embd"), "input_ids"], "x", axis=0)  # [B][S][E]
    if arch == "gpt2":
        pe = b.op("Gather", [b.weight(W("position_embd.weight"), "position_embd"), pos_ids],
                  "pe", axis=0)
        x = b.op("Add", [x, pe], "x")
    else:
        half = hd // 2
        inv = (theta ** (-np.arange(half, dtype=np.float64) * 2.0 / hd)).astype(np.float32)  # [half]
        posf = b.op("Cast", [pos_ids], "posf", to=TensorProto.FLOAT)               # [B][S]
        ang = b.op("Mul", [b.op("Unsqueeze", [posf, i64([2])]), b.const(inv, "inv_freq")], "ang")
        cos, sin = b.op("Cos", [ang], "cos"), b.op("Sin", [ang], "sin")                  # [B][S][half]
        if arch == "llama":  # interleaved pairs (x0,x1),(x2,x3)...: repeat each angle twice
            cos2 = b.op("Reshape", [b.op("Concat", [b.op("Unsqueeze", [cos, i64([3])])] * 2, axis=3),
                                    i64([0, 0, hd])])
            sin2 = b.op("Reshape", [b.op("Concat", [b.op("Unsqueeze", [sin, i64([3])])] * 2, axis=3),
                                    i64([0, 0, hd])])
        else:  # NEOX halves
            cos2 = b.op("Concat", [cos, cos], axis=2)
            sin2 = b.op("Concat", [sin, sin], axis=2)
        rope_cos = b.op("Unsqueeze", [cos2, i64([2])], "rope_cos")                 # [B][S][1][hd]
        rope_sin = b.op("Unsqueeze", [sin2, i64([2])], "rope_sin")

    def rope(t):
        """t [B][S][heads][hd] rotated by position."""
        if arch == "llama":
            pairs = b.op("Reshape", [t, i64([0, 0, 0, half, 2])])
            a, c = b.op("Split", [pairs, i64([1, 1])], n_out=2, axis=4)
            rot = b.op("Reshape", [b.op("Concat", [b.op("Neg", [c]), a], axis=4), i64([0, 0, 0, hd])])
        else:
            a, c = b.op("Split", [t, i64([half, half])], n_out=2, axis=3)
            rot = b.op("Concat", [b.op("Neg", [c]), a], axis=3)
        return b.op("Add", [b.op("Mul", [t, rope_cos]), b.op("Mul", [rot, rope_sin])])

    def layernorm(t, name):
        return b.op("LayerNormalization", [t, b.weight(W(name + ".weight"), name),
                                           b.weight(W(name + ".bias"), name + "_b")],
                    name, axis=-1, epsilon=eps)

    def rmsnorm(t, wname):
        ms = b.op("ReduceMean", [b.op("Mul", [t, t])], axes=[-1], keepdims=1)
        inv_rms = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [ms, b.const(np.float32(eps))])])])
        return b.op("Mul", [b.op("Mul", [t, inv_rms]), b.weight(W(wname), wname.replace(".", "_"))])

    def linear(t, wmat, bias, hint):
        """t [..][n_in] @ wmat^T (wmat [n_out][n_in]) + bias."""
        y = b.op("MatMul", [t, b.weight(wmat.T, hint)], hint)
        if bias is not None:
            y = b.op("Add", [y, b.weight(bias, hint + "_b")])
        return y

    def opt(name):
        return W(name) if name in g.tensors else None

    scale = b.const(np.float32(1.0 / math.sqrt(hd)), "scale")
    for il in range(L):
        pre = "blk.%d." % il
        if arch == "gpt2":
            h = layernorm(x, pre + "attn_norm")
            wqkv, bqkv = W(pre + "attn_qkv.weight"), W(pre + "attn_qkv.bias")
            q = linear(h, wqkv[:E], bqkv[:E], "q%d" % il)
            k = linear(h, wqkv[E:E + Hkv * hd], bqkv[E:E + Hkv * hd], "k%d" % il)
            v = linear(h, wqkv[E + Hkv * hd:], bqkv[E + Hkv * hd:], "v%d" % il)
            q = b.op("Reshape", [q, i64([0, 0, H, hd])])                          # [B][S][H][hd]
            k = b.op("Reshape", [k, i64([0, 0, Hkv, hd])])
        else:
            h = rmsnorm(x, pre + "attn_norm.weight")
            q = linear(h, W(pre + "attn_q.weight"), opt(pre + "attn_q.bias"), "q%d" % il)
            k = linear(h, W(pre + "attn_k.weight"), opt(pre + "attn_k.bias"), "k%d" % il)
            v = linear(h, W(pre + "attn_v.weight"), opt(pre + "attn_v.bias"), "v%d" % il)
            q = b.op("Reshape", [q, i64([0, 0, H, hd])])
            k = b.op("Reshape", [k, i64([0, 0, Hkv, hd])])
            if arch == "qwen3":
                q = rmsnorm(q, pre + "attn_q_norm.weight")
                k = rmsnorm(k, pre + "attn_k_norm.weight")
            q = rope(q)
            k = rope(k)
        v = b.op("Reshape", [v, i64([0, 0, Hkv, hd])])
        q = b.op("Transpose", [q], perm=[0, 2, 1, 3])                               # [B][H][S][hd]
        k_new = b.op("Transpose", [k], perm=[0, 2, 1, 3])                           # [B][Hkv][S][hd]
        v_new = b.op("Transpose", [v], perm=[0, 2, 1, 3])
        pk, pv = "past_key_values.%d.key" % il, "past_key_values.%d.value" % il
        if dtype == "f16":
            pk = b.op("Cast", [pk], to=TensorProto.FLOAT)
            pv = b.op("Cast", [pv], to=TensorProto.FLOAT)
        k_all = b.op("Concat", [pk, k_new], "k_all", axis=2)                       # [B][Hkv][T][hd]
        v_all = b.op("Concat", [pv, v_new], "v_all", axis=2)
        for kind, t in (("key", k_all), ("value", v_all)):
            outn = "present.%d.%s" % (il, kind)
            if dtype == "f16":
                b.nodes.append(helper.make_node("Cast", [t], [outn], to=TensorProto.FLOAT16,
                                                name=b.name("n_present")))
            else:
                b.nodes.append(helper.make_node("Identity", [t], [outn], name=b.name("n_present")))
        # grouped-query attention: query heads [B][Hkv][grp][S][hd] against [B][Hkv][1][T][hd]
        q5 = b.op("Reshape", [b.op("Mul", [q, scale]), i64([0, Hkv, grp, -1, hd])])
        k5t = b.op("Transpose", [b.op("Unsqueeze", [k_all, i64([2])])], perm=[0, 1, 2, 4, 3])
        v5 = b.op("Unsqueeze", [v_all, i64([2])])
        scores = b.op("Add", [b.op("MatMul", [q5, k5t]), mask_bias], "scores")     # [B][Hkv][grp][S][T]
        probs = b.op("Softmax", [scores], "probs", axis=-1)
        att = b.op("MatMul", [probs, v5], "att")                                    # [B][Hkv][grp][S][hd]
        att = b.op("Transpose", [b.op("Reshape", [att, i64([0, H, -1, hd])])], perm=[0, 2, 1, 3])
        att = b.op("Reshape", [att, i64([0, 0, H * hd])])                           # [B][S][H*hd]
        x = b.op("Add", [x, linear(att, W(pre + "attn_output.weight"), opt(pre + "attn_output.bias"),
                                   "o%d" % il)], "x")
        if arch == "gpt2":
            h = layernorm(x, pre + "ffn_norm")
            u = linear(h, W(pre + "ffn_up.weight"), W(pre + "ffn_up.bias"), "up%d" % il)
            u3 = b.op("Mul", [b.op("Mul", [u, u]), u])
            inner = b.op("Mul", [b.op("Add", [u, b.op("Mul", [u3, b.const(np.float32(0.044715))])]),
                                 b.const(np.float32(math.sqrt(2.0 / math.pi)))])
            gelu = b.op("Mul", [b.op("Mul", [u, b.const(np.float32(0.5))]),
                                b.op("Add", [b.op("Tanh", [inner]), b.const(np.float32(1.0))])])
            f = linear(gelu, W(pre + "ffn_down.weight"), W(pre + "ffn_down.bias"), "down%d" % il)
        else:
            h = rmsnorm(x, pre + "ffn_norm.weight")
            gt = linear(h, W(pre + "ffn_gate.weight"), None, "gate%d" % il)
            up = linear(h, W(pre + "ffn_up.weight"), None, "up%d" % il)
            silu = b.op("Mul", [gt, b.op("Sigmoid", [gt])])
            f = linear(b.op("Mul", [silu, up]), W(pre + "ffn_down.weight"), None, "down%d" % il)
        x = b.op("Add", [x, f], "x")
    if arch == "gpt2":
        x = layernorm(x, "output_norm")
    else:
        x = rmsnorm(x, "output_norm.weight")
    head = W("output.weight") if "output.weight" in g.tensors else emb
    logits = linear(x, head, opt("output.bias"), "lm_head")
    if dtype == "f16":
        b.nodes.append(helper.make_node("Cast", [logits], ["logits"], to=TensorProto.FLOAT16, name="n_logits"))
    else:
        b.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="n_logits"))

    graph = helper.make_graph(b.nodes, "vibee_%s_decoder" % arch, inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="vibee export_onnx.py")
    model.ir_version = 8  # ORT >= 1.14 reads IR 8; keeps the file loadable by older runtimes too
    meta = {"vibee.arch": arch, "vibee.source": os.path.basename(path), "vibee.dtype": dtype}
    for key, val in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, val
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16"))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-check", action="store_true", help="skip onnx.checker (large models)")
    ap.add_argument("--no-position-ids", action="store_true",
                    help="no position_ids input: positions are the row indices (past + 0, 1, ...)")
    a = ap.parse_args()
    model = build(a.gguf, a.dtype, a.opset, position_ids=not a.no_position_ids)
    if not a.no_check:
        onnx.checker.check_model(model)
    size = model.ByteSize()
    if size > (1 << 31) - (1 << 24):  # protobuf's 2 GB limit: weights go to a side file
        onnx.save_model(model, a.out, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(a.out) + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, a.out)
    print("export_onnx: wrote %s (%s, %.1f MB)" % (a.out, a.dtype, size / 1e6))


if __name__ == "__main__":
    main()
