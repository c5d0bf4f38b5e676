#!/usr/bin/env python3
"""gguf_reader.py - a numpy GGUF (v2/v3) reader with dequantizers for F32, F16, BF16, Q8_0, Q4_0,
Q4_K and Q6_K (ggml's block layouts, described in gguf_writer.py) and Q4_1, Q5_0, Q5_1, IQ4_NL,
Q2_K, Q3_K, Q5_K, IQ4_XS (layouts of ggml-common.h, restated at each dequantizer below).

    g = GGUFReader("model.gguf")
    g.kv["general.architecture"]        -> "qwen3"
    g.tensors["blk.0.attn_q.weight"]    -> TensorInfo(name, ne, type, offset)
    g.get("blk.0.attn_q.weight")        -> float32 numpy array, shape reversed(ne) ([n_out][n_in])

CLI: gguf_reader.py FILE  prints the metadata (arrays abbreviated) and the tensor table.
"""
import struct
import sys
from collections import namedtuple

import numpy as np

from gguf_writer import (GGML_BF16, GGML_F16, GGML_F32, GGML_IQ4_NL, GGML_IQ4_XS, GGML_Q2_K, GGML_Q3_K,
                         GGML_Q4_0, GGML_Q4_1, GGML_Q4_K, GGML_Q5_0, GGML_Q5_1, GGML_Q5_K, GGML_Q6_K,
                         GGML_Q8_0, GGUF_ARRAY, GGUF_STRING, READ_ONLY_TYPE_NAMES, TYPE_BLOCK, TYPE_NAMES,
                         _SCALAR_FMT)

TensorInfo = namedtuple("TensorInfo", "name ne type offset")


def _f16(u8pairs):
    """[..., 2] uint8 -> float32 of the little-endian half."""
    return np.ascontiguousarray(u8pairs).view("<f2")[..., 0].astype(np.float32)


def dequantize_q8_0(raw):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = _f16(b[:, 0:2])
    q = b[:, 2:34].view(np.int8).astype(np.float32)
    return (d[:, None] * q).reshape(-1)


def dequantize_q4_0(raw):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = _f16(b[:, 0:2])
    qs = b[:, 2:18]
    lo = (qs & 0x0F).astype(np.int32) - 8   # elements 0..15
    hi = (qs >> 4).astype(np.int32) - 8     # elements 16..31
    return (d[:, None] * np.concatenate([lo, hi], axis=1).astype(np.float32)).reshape(-1)


def _scale_min_k4(j, s):
    """6-bit scale and min of sub-block j from the 12 packed bytes s [nb][12] (ggml layout)."""
    s = s.astype(np.int32)
    if j < 4:
        return s[:, j] & 63, s[:, j + 4] & 63
    sc = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
    m = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, m


def dequantize_q4_k(raw):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 144)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    dmin = _f16(b[:, 2:4])
    scales = b[:, 4:16]
    qs = b[:, 16:144].reshape(nb, 4, 32)
    y = np.zeros((nb, 256), dtype=np.float32)
    for c in range(4):  # 64-element chunk c uses sub-blocks 2c (low nibbles) and 2c+1 (high)
        sc1, m1 = _scale_min_k4(2 * c, scales)
        sc2, m2 = _scale_min_k4(2 * c + 1, scales)
        lo = (qs[:, c, :] & 0xF).astype(np.float32)
        hi = (qs[:, c, :] >> 4).astype(np.float32)
        y[:, 64 * c:64 * c + 32] = (d * sc1)[:, None] * lo - (dmin * m1)[:, None]
        y[:, 64 * c + 32:64 * c + 64] = (d * sc2)[:, None] * hi - (dmin * m2)[:, None]
    return y.reshape(-1)


def dequantize_q6_k(raw):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 210)
    nb = b.shape[0]
    ql = b[:, 0:128].astype(np.int32)
    qh = b[:, 128:192].astype(np.int32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(b[:, 208:210])
    y = np.zeros((nb, 256), dtype=np.float32)
    for h in range(2):  # halves of 128 elements: ql advances by 64, qh by 32, scales by 8
        L = ql[:, 64 * h:64 * h + 64]
        H = qh[:, 32 * h:32 * h + 32]
        q1 = ((L[:, 0:32] & 0xF) | (((H >> 0) & 3) << 4)) - 32
        q2 = ((L[:, 32:64] & 0xF) | (((H >> 2) & 3) << 4)) - 32
        q3 = ((L[:, 0:32] >> 4) | (((H >> 4) & 3) << 4)) - 32
        q4 = ((L[:, 32:64] >> 4) | (((H >> 6) & 3) << 4)) - 32
        q = np.concatenate([q1, q2, q3, q4], axis=1).astype(np.float32)   # [nb][128]
        s = np.repeat(sc[:, 8 * h:8 * h + 8], 16, axis=1)                   # scale of element e: e/16
        y[:, 128 * h:128 * h + 128] = d[:, None] * s * q
    return y.reshape(-1)


def _nibbles(qs):
    """[nb][16] bytes -> [nb][32] ints: low nibbles (elements 0..15), then high (16..31)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _qh_bits(qh4):
    """[nb][4] bytes of a little-endian uint32 -> [nb][32] its bits 0..31."""
    u = np.ascontiguousarray(qh4).view("<u4")[:, 0].astype(np.uint64)
    return ((u[:, None] >> np.arange(32, dtype=np.uint64)) & 1).astype(np.int32)


def dequantize_q4_1(raw):
    """block_q4_1: f16 d, f16 m, 16 bytes of nibbles; x = d * q + m."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 20)
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    return (d[:, None] * _nibbles(b[:, 4:20]).astype(np.float32) + m[:, None]).reshape(-1)


def dequantize_q5_0(raw):
    """block_q5_0: f16 d, uint32 qh (bit i: 5th bit of element i), 16 bytes of nibbles;
    x = d * (q - 16)."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 22)
    d = _f16(b[:, 0:2])
    q = _nibbles(b[:, 6:22]) | (_qh_bits(b[:, 2:6]) << 4)
    return (d[:, None] * (q - 16).astype(np.float32)).reshape(-1)


def dequantize_q5_1(raw):
    """block_q5_1: f16 d, f16 m, uint32 qh, 16 bytes of nibbles; x = d * q + m."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 24)
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    q = _nibbles(b[:, 8:24]) | (_qh_bits(b[:, 4:8]) << 4)
    return (d[:, None] * q.astype(np.float32) + m[:, None]).reshape(-1)


KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                         dtype=np.float32)


def dequantize_iq4_nl(raw):
    """block_iq4_nl: f16 d, 16 bytes of nibbles indexing kvalues_iq4nl; x = d * kvalues[q]."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = _f16(b[:, 0:2])
    return (d[:, None] * KVALUES_IQ4NL[_nibbles(b[:, 2:18])]).reshape(-1)


def dequantize_iq4_xs(raw):
    """block_iq4_xs: f16 d, uint16 scales_h, 4 bytes scales_l, 128 bytes qs; sub-block j of 32:
    scale ls = (4 bits of scales_l[j/2] at 4*(j%2)) | (2 bits of scales_h at 2j) << 4, its 16 qs
    bytes qs[16j..] as IQ4_NL; x = d * (ls - 32) * kvalues[q]."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 136)
    nb = b.shape[0]
    d = _f16(b[:, 0:2])
    sh = b[:, 2:4].copy().view("<u2")[:, 0].astype(np.int32)
    sl = b[:, 4:8].astype(np.int32)
    y = np.zeros((nb, 256), dtype=np.float32)
    for j in range(8):
        ls = ((sl[:, j // 2] >> (4 * (j % 2))) & 0xF) | (((sh >> (2 * j)) & 3) << 4)
        q = _nibbles(b[:, 8 + 16 * j:8 + 16 * j + 16])
        y[:, 32 * j:32 * j + 32] = (d * (ls - 32).astype(np.float32))[:, None] * KVALUES_IQ4NL[q]
    return y.reshape(-1)


def dequantize_q2_k(raw):
    """block_q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes qs, f16 d, f16 dmin.
    Elements 128 h + 32 j + l (h < 2, j < 4, l < 32) are bits 2j..2j+1 of qs[32 h + l]; element e
    uses scale byte e / 16. x = d * sc * q - dmin * m."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 84)
    nb = b.shape[0]
    sc = b[:, 0:16].astype(np.int32)
    qs = b[:, 16:80].astype(np.int32)
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    q = np.zeros((nb, 256), dtype=np.int32)
    for h in range(2):
        for j in range(4):
            q[:, 128 * h + 32 * j:128 * h + 32 * j + 32] = (qs[:, 32 * h:32 * h + 32] >> (2 * j)) & 3
    s = np.repeat(sc, 16, axis=1)
    y = (d[:, None] * (s & 0xF).astype(np.float32)) * q.astype(np.float32) - dmin[:, None] * (s >> 4).astype(np.float32)
    return y.reshape(-1)


def dequantize_q3_k(raw):
    """block_q3_K: hmask[32], qs[64], scales[12], f16 d. Element e = 128 h + 32 j + l: 2 low bits
    as Q2_K, high bit = bit (4 h + j) of hmask[l], q = low - (high ? 0 : 4). 16 scales of 6 bits
    minus 32, scale e / 16 for element e: scale i has the low nibble of byte i (i < 8) or the high
    nibble of byte i - 8 (i >= 8) as its low 4 bits, bits 2 (i / 4) and 2 (i / 4) + 1 of byte
    8 + i % 4 as its top 2. x = d * (scale - 32) * q."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 110)
    nb = b.shape[0]
    hm = b[:, 0:32].astype(np.int32)
    qs = b[:, 32:96].astype(np.int32)
    sb = b[:, 96:108].astype(np.int32)
    d = _f16(b[:, 108:110])
    sc = np.zeros((nb, 16), dtype=np.int32)
    for i in range(16):
        low = (sb[:, i] & 0xF) if i < 8 else (sb[:, i - 8] >> 4)
        high = (sb[:, 8 + i % 4] >> (2 * (i // 4))) & 3
        sc[:, i] = (low | (high << 4)) - 32
    q = np.zeros((nb, 256), dtype=np.int32)
    for h in range(2):
        for j in range(4):
            lo = (qs[:, 32 * h:32 * h + 32] >> (2 * j)) & 3
            hi = (hm >> (4 * h + j)) & 1
            q[:, 128 * h + 32 * j:128 * h + 32 * j + 32] = lo - 4 * (1 - hi)
    y = (d[:, None] * np.repeat(sc, 16, axis=1).astype(np.float32)) * q.astype(np.float32)
    return y.reshape(-1)


def dequantize_q5_k(raw):
    """block_q5_K: f16 d, f16 dmin, 12 scale bytes (as Q4_K), qh[32], qs[128]. Sub-block j of 32:
    low 4 bits from qs[32 (j/2) + l] (low nibble for even j, high for odd), 5th bit = bit j of
    qh[l]; x = d * sc_j * q - dmin * m_j."""
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 176)
    nb = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    scales = b[:, 4:16]
    qh = b[:, 16:48].astype(np.int32)
    qs = b[:, 48:176].astype(np.int32)
    y = np.zeros((nb, 256), dtype=np.float32)
    for j in range(8):
        sc, m = _scale_min_k4(j, scales)
        c = qs[:, 32 * (j // 2):32 * (j // 2) + 32]
        q = ((c >> 4) if j % 2 else (c & 0xF)) | (((qh >> j) & 1) << 4)
        y[:, 32 * j:32 * j + 32] = (d * sc)[:, None] * q.astype(np.float32) - (dmin * m)[:, None]
    return y.reshape(-1)


_DEQUANT = {GGML_Q8_0: dequantize_q8_0, GGML_Q4_0: dequantize_q4_0, GGML_Q4_K: dequantize_q4_k,
            GGML_Q6_K: dequantize_q6_k, GGML_Q4_1: dequantize_q4_1, GGML_Q5_0: dequantize_q5_0,
            GGML_Q5_1: dequantize_q5_1, GGML_IQ4_NL: dequantize_iq4_nl, GGML_IQ4_XS: dequantize_iq4_xs,
            GGML_Q2_K: dequantize_q2_k, GGML_Q3_K: dequantize_q3_k, GGML_Q5_K: dequantize_q5_k}


def dequantize(raw, gtype, n_elems):
    """raw bytes of n_elems elements of ggml type gtype -> float32 [n_elems]."""
    if gtype == GGML_F32:
        y = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif gtype == GGML_F16:
        y = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif gtype == GGML_BF16:
        y = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif gtype in _DEQUANT:
        y = _DEQUANT[gtype](raw)
    else:
        raise ValueError("unsupported ggml type %d" % gtype)
    if y.size != n_elems:
        raise ValueError("tensor data holds %d elements, expected %d" % (y.size, n_elems))
    return y


class GGUFReader:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        self.path = path
        self.pos = 0
        if self._take(4) != b"GGUF":
            raise ValueError("%s: not a GGUF file (bad magic)" % path)
        (self.version,) = self._unpack("<I")
        if self.version not in (2, 3):
            raise ValueError("%s: unsupported GGUF version %d" % (path, self.version))
        n_tensors, n_kv = self._unpack("<QQ")
        self.kv = {}
        self.kv_types = {}
        for _ in range(n_kv):
            key = self._string()
            (vtype,) = self._unpack("<I")
            self.kv[key] = self._value(vtype)
            self.kv_types[key] = vtype
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = self._unpack("<I")
            ne = list(self._unpack("<%dQ" % n_dims))
            gtype, off = self._unpack("<IQ")
            self.tensors[name] = TensorInfo(name, ne, gtype, off)
        align = int(self.kv.get("general.alignment", 32))
        self.data_offset = (self.pos + align - 1) // align * align

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("%s: truncated file" % self.path)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def _unpack(self, fmt):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))

    def _string(self):
        (n,) = self._unpack("<Q")
        return self._take(n).decode("utf-8", errors="surrogateescape")

    def _value(self, vtype):
        if vtype == GGUF_STRING:
            return self._string()
        if vtype == GGUF_ARRAY:
            etype, n = self._unpack("<IQ")
            if etype == GGUF_STRING:
                return [self._string() for _ in range(n)]
            fmt = _SCALAR_FMT[etype]
            return list(self._unpack("<%d%s" % (n, fmt)))
        (v,) = self._unpack("<" + _SCALAR_FMT[vtype])
        return v

    def raw(self, name):
        t = self.tensors[name]
        n = int(np.prod(t.ne))
        be, bb = TYPE_BLOCK[t.type]
        nbytes = n // be * bb
        start = self.data_offset + t.offset
        if start + nbytes > len(self.data):
            raise ValueError("%s: tensor %s runs past the end of the file" % (self.path, name))
        return self.data[start:start + nbytes]

    def get(self, name):
        """Dequantized float32 array of shape reversed(ne)."""
        t = self.tensors[name]
        n = int(np.prod(t.ne))
        return dequantize(self.raw(name), t.type, n).reshape(list(reversed(t.ne)))


def main():
    g = GGUFReader(sys.argv[1])
    print("GGUF v%d, %d keys, %d tensors" % (g.version, len(g.kv), len(g.tensors)))
    for k, v in g.kv.items():
        if isinstance(v, list) and len(v) > 8:
            v = "[%d items: %s ...]" % (len(v), ", ".join(repr(x) for x in v[:4]))
        print("  %-45s %s" % (k, v))
    for t in g.tensors.values():
        print("  %-32s %-6s %s" % (t.name, TYPE_NAMES.get(t.type, READ_ONLY_TYPE_NAMES.get(t.type, t.type)), t.ne))


if __name__ == "__main__":
    main()
