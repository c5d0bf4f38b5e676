// logprobs.mjs - log-probabilities through the official OpenAI client (npm `openai`) against
// `vibee serve` on the gpt2-f32 fixture model: completions (logprobs: k) for the fixture's greedy
// continuation compared with the numpy reference forward (scripts/ref_forward.py on prompt +
// continuation, log-softmax here in float64); streaming equal to the plain answer; chat (logprobs +
// top_logprobs) with bytes that decode to each token's text, sorted alternatives, the same values as
// the completion of the same rendered prompt; the verify decoder giving AR's values; a stop string
// dropping the cut tokens; and 400s naming the field for values out of range and echo + logprobs.
// Usage: node logprobs.mjs VIBEE (fixtures from $VB_FIXTURES or build/fixtures). Prints ok/FAIL lines.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsRequire, startServer, settle, check, finishServerTest } from './server_util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const OpenAI = jsRequire('openai');
const vibee = process.argv[2];
const fixtures = process.env.VB_FIXTURES || 'build/fixtures';
const modelPath = path.join(fixtures, 'models', 'gpt2-f32.gguf');
const TOL = 2e-3;  // f32 engine against the float64 reference (logits within ~1e-4 relative)
const DTOL = 1e-4; // decoders against each other

// The reference: the fixture's greedy continuation and its log-softmax rows.
const fx = JSON.parse(fs.readFileSync(path.join(fixtures, 'models', 'gpt2-f32.json'), 'utf8'));
const prompt = fx.greedy_prompt;
const N = 16;
const greedy = fx.greedy.slice(0, N);
const V = fx.n_vocab;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-logprobs-'));
const all = [...prompt, ...greedy];
execFileSync('/usr/bin/python3', [path.join(here, '..', '..', 'scripts', 'ref_forward.py'), modelPath,
  '--tokens', all.join(','), '--positions', all.map((_, i) => i).join(','), '--out', path.join(tmp, 'ref.bin')],
{ stdio: ['ignore', 'ignore', 'inherit'] });
const raw = fs.readFileSync(path.join(tmp, 'ref.bin'));
fs.rmSync(tmp, { recursive: true, force: true });
const logits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
const refRows = greedy.map((_, i) => { // row prompt.length-1+i predicts greedy[i]
  const row = logits.subarray((prompt.length - 1 + i) * V, (prompt.length + i) * V);
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return Array.from(row, (x) => x - max - Math.log(sum));
});
const near = (a, b, tol) => Math.abs(a - b) <= tol;

const guard = setTimeout(() => { console.log('FAIL time limit (60 s)'); process.exit(1); }, 60000);
const srv = await startServer(vibee, ['--parallel', '2'], modelPath);
try {
  const client = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
  const detok = async (id) => (await (await fetch(srv.base + '/detokenize', { method: 'POST', body: JSON.stringify({ tokens: [id] }) })).json()).content;
  const greedyText = await Promise.all(greedy.map(detok));

  // completions: values against the reference
  const base = { model: 'm', prompt, max_tokens: N, temperature: 0, ignore_eos: true };
  const c = await client.completions.create({ ...base, logprobs: 5 });
  const lp = c.choices[0].logprobs;
  check(lp && lp.tokens.length === N && lp.token_logprobs.length === N && lp.top_logprobs.length === N && lp.text_offset.length === N,
    `completion logprobs has ${N} entries per list`);
  check(lp.tokens.every((t, i) => t === greedyText[i]), 'the tokens are the reference greedy continuation');
  let worst = 0;
  for (let i = 0; i < N; i++) worst = Math.max(worst, Math.abs(lp.token_logprobs[i] - refRows[i][greedy[i]]));
  check(worst <= TOL, `token_logprobs equal the numpy reference's (worst ${worst.toExponential(2)})`);
  let topOk = true;
  for (let i = 0; i < N; i++) {
    const refTop = [...refRows[i]].sort((a, b) => b - a).slice(0, 5);
    const vals = Object.values(lp.top_logprobs[i]);
    topOk &&= vals.length >= 1 && vals.length <= 5 && near(Math.max(...vals), lp.token_logprobs[i], 1e-6) &&
      vals.every((v) => refTop.some((r) => near(v, r, TOL)));
  }
  check(topOk, 'top_logprobs: at most 5 per token, the greedy token the likeliest, values among the reference top 5');
  const chars = Array.from(c.choices[0].text);
  check(lp.text_offset[0] === 0 && lp.text_offset.every((o, i) => i === 0 || o >= lp.text_offset[i - 1]) &&
    lp.tokens.every((t, i) => t.includes('\ufffd') || chars.slice(lp.text_offset[i], lp.text_offset[i] + Array.from(t).length).join('') === t),
    'text_offset: characters where each whole token stands in the text');

  // streaming: the same values, chunk by chunk
  const s = await client.completions.create({ ...base, logprobs: 5, stream: true });
  const st = { tokens: [], token_logprobs: [], text_offset: [] };
  let withLp = 0;
  for await (const ch of s) {
    const l = ch.choices[0]?.logprobs;
    if (!l) continue;
    withLp++;
    st.tokens.push(...l.tokens); st.token_logprobs.push(...l.token_logprobs); st.text_offset.push(...l.text_offset);
  }
  // how many chunks carry the tokens depends on timing (a fast machine can finish all N before
  // the first write); what must hold is that the chunks' lists, joined, are the plain ones
  check(withLp >= 1 && JSON.stringify(st.tokens) === JSON.stringify(lp.tokens) &&
    JSON.stringify(st.token_logprobs) === JSON.stringify(lp.token_logprobs) &&
    JSON.stringify(st.text_offset) === JSON.stringify(lp.text_offset), `streamed completion logprobs equal the plain ones (${withLp} chunks)`);

  // the verify decoder (vibee extension) commits the same tokens with the same values
  const v = await client.completions.create({ ...base, logprobs: 5, decoder: 'verify' });
  const vl = v.choices[0].logprobs;
  check(JSON.stringify(vl.tokens) === JSON.stringify(lp.tokens) && vl.token_logprobs.every((x, i) => near(x, lp.token_logprobs[i], DTOL)),
    'decoder verify: the same tokens and logprobs as AR');

  // a stop string: tokens after the cut are dropped
  const text = c.choices[0].text;
  const stop = chars.slice(6, 8).join('');
  const cut = text.indexOf(stop);
  const sc = await client.completions.create({ ...base, logprobs: 1, stop: [stop] });
  const sl = sc.choices[0].logprobs;
  check(sc.choices[0].text === text.slice(0, cut) && sl.tokens.length < N &&
    sl.text_offset.every((o) => o < Array.from(sc.choices[0].text).length) &&
    JSON.stringify(sl.token_logprobs) === JSON.stringify(lp.token_logprobs.slice(0, sl.tokens.length)),
  `stop ${JSON.stringify(stop)}: the tokens before the cut only (${sl.tokens.length})`);

  // chat: OpenAI's content list
  const messages = [{ role: 'user', content: 'hello there' }];
  const chat = await client.chat.completions.create({ model: 'm', messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3 });
  const content = chat.choices[0].logprobs?.content ?? [];
  const eos = chat.choices[0].finish_reason === 'stop' ? 1 : 0;
  check(content.length === chat.usage.completion_tokens - eos && content.length > 0, `chat logprobs.content has one entry per token (${content.length})`);
  check(content.every((e) => Buffer.from(e.bytes).toString('utf8') === e.token &&
    e.top_logprobs.every((t) => Buffer.from(t.bytes).toString('utf8') === t.token)),
  'chat: each token is its bytes as UTF-8 (U+FFFD for a partial character)');
  check(content.map((e) => e.token).join('') === chat.choices[0].message.content ||
    content.some((e) => e.token.includes('\ufffd')), 'chat: the tokens make the message');
  check(content.every((e) => e.top_logprobs.length === 3 && near(e.top_logprobs[0].logprob, e.logprob, 1e-6) &&
    e.top_logprobs.every((t, k) => k === 0 || t.logprob <= e.top_logprobs[k - 1].logprob) &&
    e.top_logprobs.reduce((a, t) => a + Math.exp(t.logprob), 0) <= 1 + 1e-6 && e.logprob <= 0),
  'chat: 3 alternatives, sorted, the greedy token first, probabilities summing to <= 1');
  const same = await client.completions.create({ model: 'm', prompt: 'user: hello there\nassistant:', max_tokens: 12, temperature: 0, logprobs: 3 });
  check(JSON.stringify(same.choices[0].logprobs.token_logprobs.slice(0, content.length)) === JSON.stringify(content.map((e) => e.logprob)),
    'chat: the same values as the completion of the rendered prompt');
  const cs = await client.chat.completions.create({ model: 'm', messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
  const streamed = [];
  for await (const ch of cs) streamed.push(...(ch.choices[0]?.logprobs?.content ?? []));
  check(JSON.stringify(streamed) === JSON.stringify(content), 'streamed chat logprobs equal the plain ones');
  const bare = await client.chat.completions.create({ model: 'm', messages, max_tokens: 4, temperature: 0, logprobs: true });
  check(bare.choices[0].logprobs.content.every((e, i) => e.top_logprobs.length === 0 && e.logprob === content[i].logprob),
    'chat logprobs without top_logprobs: no alternatives, the same values');
  const off = await client.chat.completions.create({ model: 'm', messages, max_tokens: 4, temperature: 0 });
  check(off.choices[0].logprobs === null, 'chat without logprobs: logprobs null');

  // values out of range: 400 naming the field
  const bad = [
    [() => client.completions.create({ ...base, logprobs: 21 }), 'logprobs'],
    [() => client.completions.create({ ...base, logprobs: -1 }), 'logprobs'],
    [() => client.completions.create({ ...base, logprobs: true }), 'logprobs'],
    [() => client.completions.create({ ...base, logprobs: 1, echo: true }), 'echo'],
    [() => client.chat.completions.create({ model: 'm', messages, logprobs: 'yes' }), 'logprobs'],
    [() => client.chat.completions.create({ model: 'm', messages, logprobs: true, top_logprobs: 21 }), 'top_logprobs'],
    [() => client.chat.completions.create({ model: 'm', messages, logprobs: true, top_logprobs: -1 }), 'top_logprobs'],
    [() => client.chat.completions.create({ model: 'm', messages, top_logprobs: 2 }), 'top_logprobs'],
  ];
  for (const [call, field] of bad) {
    let status = 0, param = null;
    try { await call(); } catch (e) { status = e.status; param = e.param ?? e.error?.param; }
    check(status === 400 && param === field, `400 naming ${field} (${status} ${param})`);
  }
  const m = await settle(srv.base);
  check(m.vibee_kv_blocks_leaked === 0 && m['vibee_http_errors_total{class="5xx"}'] === 0, 'metrics: no leaked blocks, no 5xx');
} catch (e) {
  check(false, 'unexpected exception: ' + (e.stack || e));
}
await finishServerTest(srv, guard);
