#!/usr/bin/env python3
"""hf_baseline.py - the Hugging Face transformers baseline for vibee's GPU numbers (issue 8).

Runs transformers' eager greedy `generate` on the weights of a qwen3 GGUF (what a user would
otherwise run) and checks its token ids against vibee's. Needs no numpy: the GGUF is read with
struct + torch.frombuffer, and the random model is written from torch tensors via ctypes.

Subcommands:
  inspect      --model M.gguf                     hyper-parameters + GGUF -> HF name mapping
                                                  (pure python: no torch needed)
  make-random  --out M.gguf [--tiny]              random Qwen3-0.6B-shaped F16 GGUF (torch, on the
                                                  GPU when there is one; --tiny: a 2-layer model
                                                  in pure python, for testing the tooling)
  run          --model M.gguf --prompt-ids 1,2,3 [--n 128] [--reps 3] [--vibee-json F.json]
               [--label L] [--out R.jsonl]        load into Qwen3ForCausalLM (fp16, cuda, eager
                                                  attention), time greedy generate (median of
                                                  reps after a warm-up), compare with vibee
  summarize    --vibee V.jsonl --hf H.jsonl       markdown table of both

GGUF -> HF mapping (qwen3): token_embd -> model.embed_tokens, output_norm -> model.norm,
output -> lm_head (absent = tied), blk.N.attn_{q,k,v,output} -> model.layers.N.self_attn.
{q,k,v,o}_proj, attn_{q,k}_norm -> self_attn.{q,k}_norm, attn_norm -> input_layernorm,
ffn_norm -> post_attention_layernorm, ffn_{gate,up,down} -> mlp.{gate,up,down}_proj.
A GGUF matrix with ne = [n_in, n_out] is a row-major [n_out][n_in] array, i.e. PyTorch's
nn.Linear weight as stored. qwen3's RoPE is the NEOX (rotate-half) form HF uses: no permutation.
"""
import argparse
import ctypes
import json
import os
import random
import statistics
import struct
import sys
import time

GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
TYPE_SIZE = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}
TYPE_NAME = {GGML_F32: "f32", GGML_F16: "f16", GGML_BF16: "bf16"}

# GGUF metadata value types
KV_U8, KV_I8, KV_U16, KV_I16, KV_U32, KV_I32, KV_F32, KV_BOOL, KV_STR, KV_ARR, KV_U64, KV_I64, KV_F64 = range(13)
KV_SCALAR = {KV_U8: "<B", KV_I8: "<b", KV_U16: "<H", KV_I16: "<h", KV_U32: "<I", KV_I32: "<i",
             KV_F32: "<f", KV_BOOL: "<?", KV_U64: "<Q", KV_I64: "<q", KV_F64: "<d"}


# ---------------------------------------------------------------------------------------------
# GGUF reading (metadata + tensor table; tensor bytes are sliced out of one buffer)

class GGUF:
    """kv: dict key -> value; tensors: dict name -> (ne list, ggml type, absolute byte offset)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.buf = bytearray(size)  # writable, so torch.frombuffer shares it without warnings
            f.readinto(self.buf)
        self.pos = 0
        if self._take(4) != b"GGUF":
            raise ValueError("%s: not a GGUF file" % path)
        version = self._u("<I")
        if version not in (2, 3):
            raise ValueError("%s: GGUF version %d not supported" % (path, version))
        n_tensors, n_kv = self._u("<Q"), self._u("<Q")
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            self.kv[key] = self._value(self._u("<I"))
        infos = []
        for _ in range(n_tensors):
            name = self._str()
            ne = [self._u("<Q") for _ in range(self._u("<I"))]
            infos.append((name, ne, self._u("<I"), self._u("<Q")))
        align = int(self.kv.get("general.alignment", 32))
        data_start = (self.pos + align - 1) // align * align
        self.tensors = {name: (ne, t, data_start + off) for name, ne, t, off in infos}

    def _take(self, n):
        b = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return b

    def _u(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def _str(self):
        return self._take(self._u("<Q")).decode("utf-8", errors="replace")

    def _value(self, t):
        if t in KV_SCALAR:
            return self._u(KV_SCALAR[t])
        if t == KV_STR:
            return self._str()
        if t == KV_ARR:
            et, n = self._u("<I"), self._u("<Q")
            return [self._value(et) for _ in range(n)]
        raise ValueError("unknown GGUF metadata type %d" % t)

    def tensor(self, name):
        """The tensor as a torch tensor of shape reversed(ne), sharing this file's buffer."""
        import torch
        ne, t, off = self.tensors[name]
        if t not in TYPE_SIZE:
            raise ValueError("%s: ggml type %d not supported here (F32/F16/BF16 only)" % (name, t))
        dt = {GGML_F32: torch.float32, GGML_F16: torch.float16, GGML_BF16: torch.bfloat16}[t]
        n = 1
        for d in ne:
            n *= d
        return torch.frombuffer(self.buf, dtype=dt, count=n, offset=off).view(*reversed(ne))


def hparams(g):
    """Qwen3 hyper-parameters from the GGUF metadata (a dict of Qwen3Config arguments)."""
    arch = g.kv.get("general.architecture")
    if arch != "qwen3":
        raise ValueError("architecture %r: only qwen3 maps onto Qwen3ForCausalLM here" % arch)
    p = "qwen3."
    n_embd = int(g.kv[p + "embedding_length"])
    n_head = int(g.kv[p + "attention.head_count"])
    return dict(
        vocab_size=int(g.tensors["token_embd.weight"][0][1]),
        hidden_size=n_embd,
        intermediate_size=int(g.kv[p + "feed_forward_length"]),
        num_hidden_layers=int(g.kv[p + "block_count"]),
        num_attention_heads=n_head,
        num_key_value_heads=int(g.kv.get(p + "attention.head_count_kv", n_head)),
        head_dim=int(g.kv.get(p + "attention.key_length", n_embd // n_head)),
        max_position_embeddings=int(g.kv.get(p + "context_length", 4096)),
        rms_norm_eps=float(g.kv.get(p + "attention.layer_norm_rms_epsilon", 1e-6)),
        rope_theta=float(g.kv.get(p + "rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in g.tensors,
    )


LAYER_MAP = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
             "attn_k_norm": "self_attn.k_norm", "attn_norm": "input_layernorm",
             "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name):
    """GGUF tensor name -> transformers Qwen3ForCausalLM state-dict name (ValueError if unknown)."""
    top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    if gguf_name in top:
        return top[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in LAYER_MAP:
        return "model.layers.%s.%s.%s" % (parts[1], LAYER_MAP[parts[2]], parts[3])
    raise ValueError("no transformers name for GGUF tensor %s" % gguf_name)


def cmd_inspect(a):
    g = GGUF(a.model)
    print(json.dumps(hparams(g), indent=1))
    for name, (ne, t, _) in sorted(g.tensors.items()):
        print("%-28s ne=%-14s %-4s -> %s %s" % (name, ne, TYPE_NAME.get(t, t), hf_name(name),
                                               list(reversed(ne))))


# ---------------------------------------------------------------------------------------------
# GGUF writing (random model)

def write_gguf(path, kvs, tensors):
    """kvs: [(key, kv type, value)]; tensors: [(name, ne, ggml type, bytes-producing callable)]."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for key, t, v in kvs:
        head += s(key) + struct.pack("<I", t) + (s(v) if t == KV_STR else struct.pack(KV_SCALAR[t], v))
    offs, off = [], 0
    for name, ne, t, _ in tensors:
        n = 1
        for d in ne:
            n *= d
        offs.append(off)
        head += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", t, off)
        off = (off + n * TYPE_SIZE[t] + 31) // 32 * 32
    head += b"\0" * ((-len(head)) % 32)
    with open(path, "wb") as f:
        f.write(head)
        for (name, ne, t, make), o in zip(tensors, offs):
            data = make()
            f.write(data)
            f.write(b"\0" * ((-len(data)) % 32))


def cmd_make_random(a):
    if a.tiny:
        L, E, H, Hkv, hd, F, V = 2, 64, 4, 2, 16, 128, 512
    else:  # Qwen3-0.6B shape
        L, E, H, Hkv, hd, F, V = 28, 1024, 16, 8, 128, 3072, 151936
    use_torch = not a.tiny
    if use_torch:
        import torch
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        gen = torch.Generator(device=dev).manual_seed(a.seed)

    def normal(n_out, n_in, std, scale_one=False):
        if use_torch:
            x = torch.randn((n_out, n_in), generator=gen, device=dev, dtype=torch.float32) * std
            if scale_one:
                x += 1.0
            t = (x.half() if n_out > 1 else x).contiguous().cpu()
            return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())
        rng = random.Random(a.seed + n_out * 7 + n_in)
        vals = [rng.gauss(1.0 if scale_one else 0.0, std) for _ in range(n_out * n_in)]
        return struct.pack("<%d%s" % (len(vals), "e" if n_out > 1 else "f"), *vals)

    def mat(name, n_out, n_in, std=None):
        sd = std if std is not None else n_in ** -0.5
        return (name, [n_in, n_out], GGML_F16, lambda: normal(n_out, n_in, sd))

    def vec(name, n):
        return (name, [n], GGML_F32, lambda: normal(1, n, 0.1, scale_one=True))

    res = (2.0 * L) ** -0.5
    tensors = [mat("token_embd.weight", V, E, 2.0 * E ** -0.5), vec("output_norm.weight", E)]
    for il in range(L):
        b = "blk.%d." % il
        tensors += [vec(b + "attn_norm.weight", E), mat(b + "attn_q.weight", H * hd, E),
                    mat(b + "attn_k.weight", Hkv * hd, E), mat(b + "attn_v.weight", Hkv * hd, E),
                    vec(b + "attn_q_norm.weight", hd), vec(b + "attn_k_norm.weight", hd),
                    mat(b + "attn_output.weight", E, H * hd, (H * hd) ** -0.5 * res),
                    vec(b + "ffn_norm.weight", E), mat(b + "ffn_gate.weight", F, E),
                    mat(b + "ffn_up.weight", F, E), mat(b + "ffn_down.weight", E, F, F ** -0.5 * res)]
    p = "qwen3."
    kvs = [("general.architecture", KV_STR, "qwen3"),
           ("general.name", KV_STR, "qwen3-0.6b-random" if not a.tiny else "qwen3-tiny-random"),
           ("general.file_type", KV_U32, 1), ("general.alignment", KV_U32, 32),
           (p + "context_length", KV_U32, 4096), (p + "embedding_length", KV_U32, E),
           (p + "block_count", KV_U32, L), (p + "feed_forward_length", KV_U32, F),
           (p + "attention.head_count", KV_U32, H), (p + "attention.head_count_kv", KV_U32, Hkv),
           (p + "attention.layer_norm_rms_epsilon", KV_F32, 1e-6), (p + "rope.freq_base", KV_F32, 1e6),
           (p + "rope.dimension_count", KV_U32, hd), (p + "attention.key_length", KV_U32, hd),
           (p + "attention.value_length", KV_U32, hd)]
    t0 = time.time()
    write_gguf(a.out, kvs, tensors)
    print("wrote %s (%.1f MB, %d layers, %.1f s)" % (a.out, os.path.getsize(a.out) / 1e6, L, time.time() - t0))


# ---------------------------------------------------------------------------------------------
# transformers baseline

def build_hf_model(g, torch):
    import transformers
    from transformers import Qwen3Config, Qwen3ForCausalLM
    hp = hparams(g)
    theta = hp.pop("rope_theta")
    cfg, errors = None, []
    for extra in ({"rope_parameters": {"rope_type": "default", "rope_theta": theta}, "attn_implementation": "eager"},
                  {"rope_parameters": {"rope_type": "default", "rope_theta": theta}},
                  {"rope_theta": theta, "attn_implementation": "eager"}, {"rope_theta": theta}):
        try:  # transformers >= 5 keeps RoPE settings in rope_parameters, 4.x in rope_theta
            cfg = Qwen3Config(**hp, **extra)
            break
        except Exception as e:  # noqa: BLE001 (version differences)
            errors.append("%s: %s" % (sorted(extra), e))
    if cfg is None:
        raise RuntimeError("Qwen3Config refused every argument set: %s" % errors)
    try:
        cfg._attn_implementation = "eager"
    except Exception as e:  # noqa: BLE001
        print("hf_baseline: cannot set _attn_implementation: %s" % e)
    cfg.use_sliding_window = False
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(cfg)
    model.half()  # fp16 weights and norms, as from_pretrained(dtype=torch.float16) gives
    if getattr(model.config, "_attn_implementation", None) != "eager":
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
        else:
            model.config._attn_implementation = "eager"
    if getattr(model.config, "_attn_implementation", None) != "eager":
        raise RuntimeError("attention implementation is %r, not eager" % model.config._attn_implementation)
    sd = {hf_name(n): g.tensor(n) for n in g.tensors}
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or res.unexpected_keys:
        raise RuntimeError("state dict mismatch: missing %s unexpected %s" % (missing, res.unexpected_keys))
    if cfg.tie_word_embeddings and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        model.lm_head.weight = model.model.embed_tokens.weight
    model.eval()
    for c in (model.config, model.generation_config):  # vibee --ignore-eos: no EOS stop, no EOS mask
        c.eos_token_id = None
    # RoPE: inverse frequencies theta^(-2i/d) in f32 (as from_pretrained keeps them; .half() above
    # rounded them, and a config spelling this transformers version ignores would change theta)
    d = hp["head_dim"]
    want = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rot = model.model.rotary_emb
    rope_err = float((rot.inv_freq.double().cpu() - want).abs().max() / want.abs().max())
    print("hf_baseline: RoPE inv_freq as built: max relative error %.3g (set to the f32 values)" % rope_err)
    rot.inv_freq = want.float().cuda()
    if hasattr(rot, "original_inv_freq"):
        rot.original_inv_freq = rot.inv_freq.clone()
    if float(getattr(rot, "attention_scaling", 1.0)) != 1.0:
        raise RuntimeError("RoPE attention_scaling %s != 1" % rot.attention_scaling)
    info = {"transformers": transformers.__version__, "torch": torch.__version__,
            "attn_implementation": getattr(model.config, "_attn_implementation", "?"),
            "rope_inv_freq_rel_err": rope_err, "params": sum(p.numel() for p in model.parameters()),
            "tied": cfg.tie_word_embeddings, "dtype": str(next(model.parameters()).dtype)}
    return model, info


def cmd_run(a):
    import torch
    from transformers import GenerationConfig
    if not torch.cuda.is_available():
        print("hf_baseline: no CUDA device: skipping the transformers baseline")
        return 0
    g = GGUF(a.model)
    t0 = time.time()
    model, info = build_hf_model(g, torch)
    info["load_s"] = round(time.time() - t0, 2)
    print("hf model:", json.dumps(info))
    ids = [int(x) for x in a.prompt_ids.split(",") if x]
    inp = torch.tensor([ids], device="cuda")
    mask = torch.ones_like(inp)

    def gen(n):
        gc = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                              use_cache=True, eos_token_id=None, bos_token_id=None, pad_token_id=0,
                              temperature=None, top_p=None, top_k=None)
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(inp, attention_mask=mask, generation_config=gc)
        torch.cuda.synchronize()
        return time.perf_counter() - t, out[0, len(ids):].tolist()

    gen(a.n)  # warm-up (cuBLAS handles, caches)
    times, toks = [], None
    for _ in range(a.reps):
        dt, toks = gen(a.n)
        times.append(dt)
    t1 = [gen(1)[0] for _ in range(a.reps)]  # prefill + first token
    med, med1 = statistics.median(times), statistics.median(t1)
    r = dict(label=a.label, model=os.path.basename(a.model), n_prompt=len(ids), n_new=len(toks),
             times_s=[round(x, 4) for x in times], median_s=round(med, 4),
             tok_s=round(len(toks) / med, 1),
             decode_tok_s=round((len(toks) - 1) / (med - med1), 1) if med > med1 else None,
             first_token_s=round(med1, 4), tokens=toks, **info)
    print("hf  tokens:", toks)
    if a.vibee_json and os.path.exists(a.vibee_json):
        with open(a.vibee_json) as f:
            v = json.loads(f.read().strip().splitlines()[-1])
        vt = v.get("tokens", [])
        print("vibee tokens:", vt)
        n_same = 0
        for x, y in zip(toks, vt):
            if x != y:
                break
            n_same += 1
        r.update(vibee_backend=v.get("backend"), vibee_decoder=v.get("decoder"),
                 same_as_vibee=(toks == vt), common_prefix=n_same, vibee_tokens=vt)
        print("same as vibee (%s/%s): %s (first %d of %d equal)" % (v.get("backend"), v.get("decoder"),
                                                                  toks == vt, n_same, len(toks)))
    print("hf: %d new tokens, median %.4f s -> %.1f tok/s (decode only %s tok/s; prefill+1 %.4f s)"
          % (len(toks), med, r["tok_s"], r["decode_tok_s"], med1))
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(r) + "\n")
    return 0


def cmd_summarize(a):
    def load(p):
        rows = []
        if p and os.path.exists(p):
            with open(p) as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("{"):
                        try:
                            rows.append(json.loads(line))
                        except ValueError:
                            pass
        return rows
    vib, hf = load(a.vibee), load(a.hf)
    groups = {}
    for r in vib:
        groups.setdefault((r.get("_label", "?"), r.get("backend"), r.get("decoder")), []).append(r)
    print("| model | engine | decoder | runs | decode tok/s (median) | overall tok/s | tokens/forward | tokens |")
    print("|---|---|---|---|---|---|---|---|")
    ar_tokens = {}
    for (label, be, dec), rs in sorted(groups.items()):
        dec_tps = statistics.median(r.get("decode_tok_s", 0) for r in rs)
        tot = statistics.median(r["n_generated"] / max(1e-9, r["prefill_seconds"] + r["decode_seconds"])
                                for r in rs)
        toks = rs[-1].get("tokens", [])
        if dec == "ar":
            ar_tokens[(label, be)] = toks
        same = ""
        if dec != "ar" and (label, be) in ar_tokens:
            same = " (same as AR: %s)" % (toks == ar_tokens[(label, be)])
        print("| %s | vibee %s | %s | %d | %.1f | %.1f | %.2f | %d%s |" % (
            label, be, dec, len(rs), dec_tps, tot, rs[-1].get("tokens_per_forward", 0), len(toks), same))
    for r in hf:
        print("| %s | HF transformers %s eager (%s) | greedy generate | %d | %s | %.1f | 1.00 | %d (same as vibee %s/%s: %s, common prefix %s) |" % (
            r.get("label"), r.get("transformers"), r.get("dtype"), len(r.get("times_s", [])),
            r.get("decode_tok_s"), r.get("tok_s", 0), r.get("n_new", 0), r.get("vibee_backend"),
            r.get("vibee_decoder"), r.get("same_as_vibee"), r.get("common_prefix")))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inspect")
    p.add_argument("--model", required=True)
    p = sub.add_parser("make-random")
    p.add_argument("--out", required=True)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--seed", type=int, default=1234)
    p = sub.add_parser("run")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt-ids", required=True)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--vibee-json", default="")
    p.add_argument("--label", default="")
    p.add_argument("--out", default="")
    p = sub.add_parser("summarize")
    p.add_argument("--vibee", default="")
    p.add_argument("--hf", default="")
    a = ap.parse_args()
    return {"inspect": cmd_inspect, "make-random": cmd_make_random, "run": cmd_run,
            "summarize": cmd_summarize}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
