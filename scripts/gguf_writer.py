#!/usr/bin/env python3
"""gguf_writer.py - a numpy GGUF v3 writer with quantizers for ggml's F32, F16, BF16, Q8_0, Q4_0,
Q4_K and Q6_K tensor types (the exact ggml block layouts; see gguf_reader.py for the dequantizers).

File layout (GGUF v3, all little-endian):
  "GGUF" u32 version=3, u64 n_tensors, u64 n_kv,
  n_kv x [string key, u32 value_type, value], n_tensors x [string name, u32 n_dims,
  u64 ne[n_dims] (ne[0] fastest varying), u32 ggml_type, u64 offset], zero padding to
  general.alignment (default 32), tensor data (each tensor at an aligned offset).
A numpy array of shape [..., n1, n0] is written with ne = [n0, n1, ...], so a weight matrix
W[n_out][n_in] (y = W x) has ne = [n_in, n_out] as llama.cpp expects.

Block layouts (bytes per block):
  Q8_0 (34/32):  f16 d; int8 qs[32]                     x = d * q
  Q4_0 (18/32):  f16 d; u8 qs[16] (lo nibble = element j, hi nibble = element j+16)  x = d*(q-8)
  Q4_K (144/256): f16 d, f16 dmin, u8 scales[12] (8 six-bit scales + 8 six-bit mins), u8 qs[128]
                 sub-block s (32 elements): x = d*sc[s]*q - dmin*m[s]
  Q6_K (210/256): u8 ql[128], u8 qh[64], int8 scales[16], f16 d; x = d*scales[e/16]*(q-32)
The quantizers below are simple (min/max based) but produce valid blocks of those layouts;
exactness of the *format* is what matters: the reference dequantizes the file exactly.

Usage as a library:
    w = GGUFWriter(); w.add_string("general.architecture", "llama"); w.add_u32(...)
    w.add_tensor("token_embd.weight", np_array_2d, GGML_Q8_0); w.write("m.gguf")
"""
import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32

# GGUF metadata value types
(GGUF_UINT8, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL,
 GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64, GGUF_FLOAT64) = range(13)

# ggml tensor types (ggml numbering)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K, GGML_BF16 = 0, 1, 2, 8, 12, 14, 30
# types this writer cannot quantize to but gguf_reader.py dequantizes (files from `vibee quantize`
# or llama.cpp)
GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q2_K, GGML_Q3_K, GGML_Q5_K = 3, 6, 7, 10, 11, 13
GGML_IQ4_NL, GGML_IQ4_XS = 20, 23

TYPE_NAMES = {GGML_F32: "f32", GGML_F16: "f16", GGML_BF16: "bf16", GGML_Q8_0: "q8_0",
              GGML_Q4_0: "q4_0", GGML_Q4_K: "q4_k", GGML_Q6_K: "q6_k"}
TYPE_FROM_NAME = {v: k for k, v in TYPE_NAMES.items()}
READ_ONLY_TYPE_NAMES = {GGML_Q4_1: "q4_1", GGML_Q5_0: "q5_0", GGML_Q5_1: "q5_1", GGML_Q2_K: "q2_k",
                        GGML_Q3_K: "q3_k", GGML_Q5_K: "q5_k", GGML_IQ4_NL: "iq4_nl", GGML_IQ4_XS: "iq4_xs"}
# (elements per block, bytes per block)
TYPE_BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_Q8_0: (32, 34),
              GGML_Q4_0: (32, 18), GGML_Q4_K: (256, 144), GGML_Q6_K: (256, 210),
              GGML_Q4_1: (32, 20), GGML_Q5_0: (32, 22), GGML_Q5_1: (32, 24), GGML_Q2_K: (256, 84),
              GGML_Q3_K: (256, 110), GGML_Q5_K: (256, 176), GGML_IQ4_NL: (32, 18), GGML_IQ4_XS: (256, 136)}

_SCALAR_FMT = {GGUF_UINT8: "B", GGUF_INT8: "b", GGUF_UINT16: "H", GGUF_INT16: "h",
               GGUF_UINT32: "I", GGUF_INT32: "i", GGUF_FLOAT32: "f", GGUF_BOOL: "?",
               GGUF_UINT64: "Q", GGUF_INT64: "q", GGUF_FLOAT64: "d"}


def _gguf_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _f16_bits(x):
    """float array -> uint16 IEEE half bits (round to nearest even)."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).view(np.uint16)


def _f16_round(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def _round_away(x):
    """C roundf: halves away from zero (numpy's rint rounds halves to even)."""
    return np.trunc(x + np.copysign(0.5, x))


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def quantize_q8_0(x):
    """x [n_rows][n] float (n % 32 == 0) -> bytes of n_rows*n/32 block_q8_0."""
    b = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = amax / 127.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    q = np.clip(_round_away(b * inv[:, None]), -128, 127).astype(np.int8)
    out = np.zeros((b.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = _f16_bits(d).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    out[:, 2:34] = q.view(np.uint8)
    return out.tobytes()


def quantize_q4_0(x):
    """x [n_rows][n] float (n % 32 == 0) -> bytes of block_q4_0 (ggml's reference rule:
    d = (value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)))."""
    b = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    idx = np.abs(b).argmax(axis=1)
    vmax = b[np.arange(b.shape[0]), idx]
    d = vmax / -8.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.trunc(b * inv[:, None] + 8.5), 0, 15).astype(np.uint8)
    out = np.zeros((b.shape[0], 18), dtype=np.uint8)
    out[:, 0:2] = _f16_bits(d).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    out[:, 2:18] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def quantize_q4_k(x):
    """x [n_rows][n] float (n % 256 == 0) -> bytes of block_q4_K. Per 32-element sub-block an
    asymmetric 4-bit grid (scale = range/15, min = -min(0, min x)), the 8 scales and 8 mins
    quantized to 6 bits against the super-block d and dmin."""
    b = np.asarray(x, dtype=np.float64).reshape(-1, 8, 32)
    nb = b.shape[0]
    mn = np.minimum(b.min(axis=2), 0.0)                  # [nb][8]
    mx = b.max(axis=2)
    scale = (mx - mn) / 15.0
    minv = -mn                                           # >= 0
    d = _f16_round(scale.max(axis=1) / 63.0).astype(np.float64)     # [nb]
    dmin = _f16_round(minv.max(axis=1) / 63.0).astype(np.float64)
    ls = np.clip(np.rint(np.divide(scale, d[:, None], out=np.zeros_like(scale),
                                   where=d[:, None] > 0)), 0, 63).astype(np.int64)
    lm = np.clip(np.ceil(np.divide(minv, dmin[:, None], out=np.zeros_like(minv),
                                   where=dmin[:, None] > 0) - 1e-9), 0, 63).astype(np.int64)
    d1 = d[:, None] * ls                                 # effective sub-block scale
    m1 = dmin[:, None] * lm                              # effective sub-block min
    q = np.rint(np.divide(b + m1[:, :, None], d1[:, :, None], out=np.zeros_like(b),
                          where=d1[:, :, None] > 0))
    q = np.clip(q, 0, 15).astype(np.uint8)               # [nb][8][32]
    scales = np.zeros((nb, 12), dtype=np.uint8)
    for j in range(8):
        s, m = ls[:, j], lm[:, j]
        if j < 4:
            scales[:, j] |= (s & 63).astype(np.uint8)
            scales[:, j + 4] |= (m & 63).astype(np.uint8)
        else:
            scales[:, j + 4] |= ((s & 0xF) | ((m & 0xF) << 4)).astype(np.uint8)
            scales[:, j - 4] |= ((s >> 4) << 6).astype(np.uint8)
            scales[:, j] |= ((m >> 4) << 6).astype(np.uint8)
    qs = np.zeros((nb, 4, 32), dtype=np.uint8)
    for c in range(4):  # 64-element chunk c: sub-block 2c in low nibbles, 2c+1 in high nibbles
        qs[:, c, :] = q[:, 2 * c, :] | (q[:, 2 * c + 1, :] << 4)
    out = np.zeros((nb, 144), dtype=np.uint8)
    out[:, 0:2] = _f16_bits(d).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    out[:, 2:4] = _f16_bits(dmin).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    out[:, 4:16] = scales
    out[:, 16:144] = qs.reshape(nb, 128)
    return out.tobytes()


def quantize_q6_k(x):
    """x [n_rows][n] float (n % 256 == 0) -> bytes of block_q6_K. Per 16-element sub-block a
    symmetric 6-bit grid (scale = max|x|/31), the 16 scales as int8 against the super-block d."""
    b = np.asarray(x, dtype=np.float64).reshape(-1, 16, 16)
    nb = b.shape[0]
    s = np.abs(b).max(axis=2) / 31.0                     # [nb][16]
    d = _f16_round(s.max(axis=1) / 127.0).astype(np.float64)
    sc = np.clip(np.rint(np.divide(s, d[:, None], out=np.zeros_like(s), where=d[:, None] > 0)),
                 -128, 127).astype(np.int64)
    eff = d[:, None] * sc
    q = np.rint(np.divide(b, eff[:, :, None], out=np.zeros_like(b), where=eff[:, :, None] != 0))
    L = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(nb, 256)
    ql = np.zeros((nb, 128), dtype=np.uint8)
    qh = np.zeros((nb, 64), dtype=np.uint8)
    for h in range(2):  # two halves of 128 elements
        e = L[:, 128 * h:128 * h + 128]
        a0, a1, a2, a3 = e[:, 0:32], e[:, 32:64], e[:, 64:96], e[:, 96:128]
        ql[:, 64 * h:64 * h + 32] = (a0 & 0xF) | ((a2 & 0xF) << 4)
        ql[:, 64 * h + 32:64 * h + 64] = (a1 & 0xF) | ((a3 & 0xF) << 4)
        qh[:, 32 * h:32 * h + 32] = (a0 >> 4) | ((a1 >> 4) << 2) | ((a2 >> 4) << 4) | ((a3 >> 4) << 6)
    out = np.zeros((nb, 210), dtype=np.uint8)
    out[:, 0:128] = ql
    out[:, 128:192] = qh
    out[:, 192:208] = sc.astype(np.int8).view(np.uint8)
    out[:, 208:210] = _f16_bits(d).reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    return out.tobytes()


def quantize(arr, gtype):
    """arr: float array, last dim = ne[0] -> raw bytes in ggml type gtype."""
    arr = np.asarray(arr)
    be, _ = TYPE_BLOCK[gtype]
    if arr.shape[-1] % be:
        raise ValueError("row length %d is not a multiple of %s's block size %d"
                         % (arr.shape[-1], TYPE_NAMES[gtype], be))
    if gtype == GGML_F32:
        return np.ascontiguousarray(arr, dtype="<f4").tobytes()
    if gtype == GGML_F16:
        return np.ascontiguousarray(arr, dtype="<f2").tobytes()
    if gtype == GGML_BF16:
        return f32_to_bf16_bits(arr).astype("<u2").tobytes()
    flat = arr.reshape(-1, arr.shape[-1])
    fn = {GGML_Q8_0: quantize_q8_0, GGML_Q4_0: quantize_q4_0, GGML_Q4_K: quantize_q4_k,
          GGML_Q6_K: quantize_q6_k}[gtype]
    step = max(1, (1 << 20) // flat.shape[1])  # about 1M elements at a time bounds the temporaries
    return b"".join(fn(flat[i:i + step]) for i in range(0, flat.shape[0], step))


class GGUFWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file."""

    def __init__(self, alignment=DEFAULT_ALIGNMENT):
        self.alignment = alignment
        self.kv = []       # encoded key/value records
        self.keys = set()
        self.tensors = []  # (name, ne list, ggml type, bytes)

    def add(self, key, vtype, value):
        if key in self.keys:
            raise ValueError("duplicate key " + key)
        self.keys.add(key)
        rec = _gguf_string(key) + struct.pack("<I", vtype)
        if vtype == GGUF_ARRAY:
            etype, items = value
            rec += struct.pack("<IQ", etype, len(items))
            if etype == GGUF_STRING:
                rec += b"".join(_gguf_string(i) for i in items)
            else:
                rec += struct.pack("<%d%s" % (len(items), _SCALAR_FMT[etype]), *items)
        elif vtype == GGUF_STRING:
            rec += _gguf_string(value)
        else:
            rec += struct.pack("<" + _SCALAR_FMT[vtype], value)
        self.kv.append(rec)

    def add_string(self, key, v): self.add(key, GGUF_STRING, v)
    def add_u32(self, key, v): self.add(key, GGUF_UINT32, int(v))
    def add_i32(self, key, v): self.add(key, GGUF_INT32, int(v))
    def add_f32(self, key, v): self.add(key, GGUF_FLOAT32, float(v))
    def add_bool(self, key, v): self.add(key, GGUF_BOOL, bool(v))
    def add_array(self, key, etype, items): self.add(key, GGUF_ARRAY, (etype, list(items)))

    def add_tensor(self, name, arr, gtype):
        """arr: numpy array [..., ne1, ne0] (float); stored as ggml type gtype."""
        arr = np.asarray(arr)
        self.add_tensor_raw(name, list(reversed(arr.shape)), gtype, quantize(arr, gtype))

    def add_tensor_raw(self, name, ne, gtype, data):
        if any(t[0] == name for t in self.tensors):
            raise ValueError("duplicate tensor " + name)
        self.tensors.append((name, list(ne), gtype, bytes(data)))

    def write(self, path):
        if "general.alignment" not in self.keys and self.alignment != DEFAULT_ALIGNMENT:
            self.add_u32("general.alignment", self.alignment)
        a = self.alignment
        infos, offsets, off = [], [], 0
        for name, ne, gtype, data in self.tensors:
            off = (off + a - 1) // a * a
            offsets.append(off)
            infos.append(_gguf_string(name) + struct.pack("<I", len(ne)) +
                         struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", gtype, off))
            off += len(data)
        with open(path, "wb") as f:
            f.write(GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv)))
            for rec in self.kv:
                f.write(rec)
            for rec in infos:
                f.write(rec)
            f.write(b"\0" * ((a - f.tell() % a) % a))
            base = f.tell()
            for (_, _, _, data), o in zip(self.tensors, offsets):
                f.write(b"\0" * (o - (f.tell() - base)))
                f.write(data)
