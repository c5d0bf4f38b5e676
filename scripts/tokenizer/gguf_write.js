// gguf_write.js - writes a vocab-only GGUF v3 file (metadata keys, no tensors) for the
// tokenizer fixtures. Values: {type:'str'|'u32'|'i32'|'f32'|'bool', v} or arrays
// {type:'arr_str'|'arr_i32'|'arr_f32', v:[...]}. Little-endian, data section aligned to 32.
'use strict';
const fs = require('fs');

const T = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 };

class Out {
  constructor() { this.parts = []; this.size = 0; }
  push(buf) { this.parts.push(buf); this.size += buf.length; }
  u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); this.push(b); }
  i32(v) { const b = Buffer.alloc(4); b.writeInt32LE(v | 0); this.push(b); }
  f32(v) { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b); }
  u64(v) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  str(s) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
}

function writeGGUF(path, kv) {
  const o = new Out();
  o.push(Buffer.from('GGUF', 'latin1'));
  o.u32(3);            // version
  o.u64(0);            // tensors
  const keys = Object.keys(kv);
  o.u64(keys.length);
  for (const k of keys) {
    const { type, v } = kv[k];
    o.str(k);
    switch (type) {
      case 'str': o.u32(T.STRING); o.str(v); break;
      case 'u32': o.u32(T.UINT32); o.u32(v); break;
      case 'i32': o.u32(T.INT32); o.i32(v); break;
      case 'f32': o.u32(T.FLOAT32); o.f32(v); break;
      case 'bool': o.u32(T.BOOL); o.push(Buffer.from([v ? 1 : 0])); break;
      case 'arr_str': o.u32(T.ARRAY); o.u32(T.STRING); o.u64(v.length); for (const s of v) o.str(s); break;
      case 'arr_i32': {
        o.u32(T.ARRAY); o.u32(T.INT32); o.u64(v.length);
        const b = Buffer.alloc(4 * v.length); v.forEach((x, i) => b.writeInt32LE(x, 4 * i)); o.push(b); break;
      }
      case 'arr_f32': {
        o.u32(T.ARRAY); o.u32(T.FLOAT32); o.u64(v.length);
        const b = Buffer.alloc(4 * v.length); v.forEach((x, i) => b.writeFloatLE(x, 4 * i)); o.push(b); break;
      }
      default: throw new Error('gguf_write: unknown type ' + type + ' for ' + k);
    }
  }
  const pad = (32 - (o.size % 32)) % 32;
  if (pad) o.push(Buffer.alloc(pad));
  fs.writeFileSync(path, Buffer.concat(o.parts));
}

module.exports = { writeGGUF };
