// embeddings.mjs - POST /v1/embeddings of `vibee serve` through the official npm client
// (client.embeddings.create) on random-weight fixture models, against the numpy reference:
// scripts/ref_forward.py --hidden-out wrote <model>.hidden.bin, the final hidden states (after the
// output norm) of the fixture's 16 tokens at positions 0..15; pooled here (mean, last, cls) and
// normalised, they must equal what the server answers for those tokens (--pooling mean on qwen3,
// last on gpt2, cls on llama). Also: float, base64 and the client's default (base64 decoded by
// the client) give the same f32 values; several inputs (strings and token arrays) come back in
// order, each equal to a request of its own; a string equals its /tokenize tokens; usage counts
// the tokens; embeddings computed while completions stream equal those computed idle (the engine
// thread serializes them with the scheduler) and no KV block leaks; the 400s name their field
// (dimensions, unknown fields, input too long / empty / malformed, encoding_format); a backend
// without hidden states (sim) answers 501.
// Usage: node embeddings.mjs VIBEE FIXTURE_DIR. Prints ok/FAIL lines; exit 1 on failure.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsRequire, startServer, settle, check, failed } from './server_util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const OpenAI = jsRequire('openai');
const vibee = process.argv[2];
const fixtures = process.argv[3] || 'build/fixtures';

const guard = setTimeout(() => { console.log('FAIL time limit (90 s)'); process.exit(1); }, 90000);

// The reference: tokens of the fixture script and its hidden rows [16][n_embd] (float64 here).
function reference(name) {
  const hdr = JSON.parse(fs.readFileSync(path.join(fixtures, 'models', name + '.json'), 'utf8'));
  const buf = fs.readFileSync(path.join(fixtures, 'models', name + '.hidden.bin'));
  const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const n = hdr.tokens.length, E = f.length / n;
  const rows = [];
  for (let r = 0; r < n; r++) rows.push(Array.from(f.subarray(r * E, (r + 1) * E)));
  return { tokens: hdr.tokens, rows, E };
}
const unit = (v) => { const l = Math.hypot(...v); return v.map((x) => x / l); };
function pooled(ref, pooling) {
  if (pooling === 'last') return unit(ref.rows[ref.rows.length - 1]);
  if (pooling === 'cls') return unit(ref.rows[0]);
  const m = new Array(ref.E).fill(0);
  for (const row of ref.rows) row.forEach((x, d) => { m[d] += x / ref.rows.length; });
  return unit(m);
}
// max_i |a_i - b_i| / max_i |b_i|
const relErr = (a, b) => Math.max(...a.map((x, i) => Math.abs(x - b[i]))) / Math.max(...b.map(Math.abs));
const same = (a, b) => a.length === b.length && a.every((x, i) => Math.fround(x) === Math.fround(b[i]));
const fromBase64 = (s) => { const b = Buffer.from(s, 'base64'); return Array.from(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)); };

async function status400(client, body) {
  try { await client.embeddings.create({ model: 'm', ...body }); return [200, null, '']; }
  catch (e) { return [e.status, e.param ?? e.error?.param, e.message]; }
}

let srv = null;
try {
  // --pooling mean (default) on qwen3-f32: the reference, the three encodings, several inputs, errors
  const refQ = reference('qwen3-f32');
  srv = await startServer(vibee, ['--parallel', '2'], path.join(fixtures, 'models', 'qwen3-f32.gguf'));
  const client = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
  const fl = await client.embeddings.create({ model: 'qwen3-f32', input: refQ.tokens, encoding_format: 'float' });
  const v = fl.data[0].embedding;
  const want = pooled(refQ, 'mean');
  check(fl.object === 'list' && fl.data.length === 1 && fl.data[0].object === 'embedding' && fl.data[0].index === 0 &&
        fl.model === 'qwen3-f32' && fl.usage.prompt_tokens === 16 && fl.usage.total_tokens === 16,
        `response shape and usage (${JSON.stringify({ ...fl, data: '...' })})`);
  const e = relErr(v, want);
  check(v.length === refQ.E && e < 1e-4, `mean pooling equals the pooled numpy reference (rel err ${e.toExponential(2)})`);
  check(Math.abs(Math.hypot(...v) - 1) < 1e-5, `unit length (${Math.hypot(...v)})`);
  const b64 = await client.embeddings.create({ model: 'qwen3-f32', input: refQ.tokens, encoding_format: 'base64' });
  check(typeof b64.data[0].embedding === 'string' && same(fromBase64(b64.data[0].embedding), v),
        'base64: the little-endian f32 bytes of the float answer');
  const dflt = await client.embeddings.create({ model: 'qwen3-f32', input: refQ.tokens }); // the client asks for base64
  check(Array.isArray(dflt.data[0].embedding) && same(dflt.data[0].embedding, v), 'the client default (base64, decoded) equals float');

  // several inputs: in order, each equal to a request of its own; a string = its /tokenize tokens
  const inputs = ['The quick brown fox', refQ.tokens.slice(0, 5), 'jumps over the lazy dog again and again', [7]];
  const many = await client.embeddings.create({ model: 'qwen3-f32', input: inputs, encoding_format: 'float', user: 'u1' });
  const singles = await Promise.all(inputs.map((input) => client.embeddings.create({ model: 'qwen3-f32', input, encoding_format: 'float' })));
  check(many.data.length === 4 && many.data.every((d, i) => d.index === i && same(d.embedding, singles[i].data[0].embedding)),
        'four inputs come back in order, each equal to its own request');
  const tok = await (await fetch(srv.base + '/tokenize', { method: 'POST', body: JSON.stringify({ content: inputs[0], add_special: true, parse_special: false }) })).json();
  const byTokens = await client.embeddings.create({ model: 'qwen3-f32', input: tok.tokens, encoding_format: 'float' });
  check(same(byTokens.data[0].embedding, singles[0].data[0].embedding), `a string equals its tokens (${tok.tokens.length} tokens)`);
  const nTok = tok.tokens.length + 5 + singles[2].usage.prompt_tokens + 1;
  check(many.usage.prompt_tokens === nTok && many.usage.total_tokens === nTok, `usage counts every input's tokens (${many.usage.prompt_tokens} = ${nTok})`);
  check(!same(singles[0].data[0].embedding, singles[2].data[0].embedding), 'different texts give different vectors');
  const forty = await client.embeddings.create({ model: 'qwen3-f32', input: Array(40).fill(refQ.tokens), encoding_format: 'float' });
  check(forty.data.length === 40 && forty.data.every((d, i) => d.index === i && same(d.embedding, v)) && forty.usage.prompt_tokens === 640,
        '40 inputs (640 tokens: two engine passes of at most 512) each equal the single answer');
  const strs = await client.embeddings.create({ model: 'qwen3-f32', input: ['a', 'b'], encoding_format: 'float' });
  check(strs.data.length === 2 && strs.data[1].index === 1, 'an array of strings');
  const lists = await client.embeddings.create({ model: 'qwen3-f32', input: [[1, 2], [3]], encoding_format: 'float', dimensions: refQ.E });
  check(lists.data.length === 2 && lists.usage.prompt_tokens === 3, 'an array of token arrays; dimensions equal to the width is accepted');

  // while completions stream: the same vectors (no race with the scheduler), nothing leaks
  // (each stream has sent a chunk before the embeddings and still runs after them: the KV pool
  // of 512 tokens is shared, so an embedding may also wait for blocks)
  const streams = await Promise.all(Array.from({ length: 3 }, (_, i) => client.completions.create(
    { model: 'm', prompt: 'abc'.repeat(i + 1), max_tokens: 400, temperature: 0, ignore_eos: true, stream: true })));
  const iters = streams.map((st) => st[Symbol.asyncIterator]());
  await Promise.all(iters.map((it) => it.next()));
  const busy = await Promise.all(Array.from({ length: 8 }, () => client.embeddings.create({ model: 'm', input: refQ.tokens, encoding_format: 'float' })));
  const during = await (await fetch(srv.base + '/metrics')).text();
  const running = Number((during.match(/^vibee_requests_running (\d+)/m) || [])[1]);
  let chunks = 0;
  for (const it of iters) for (let r = await it.next(); !r.done; r = await it.next()) chunks++;
  check(busy.every((r) => same(r.data[0].embedding, v)) && running > 0,
        `8 embeddings among 3 running completions (${running} still running after them, ${chunks} chunks later) equal the idle one`);
  const m = await settle(srv.base);
  check(m.vibee_kv_blocks_leaked === 0 && m.vibee_requests_running === 0 && m.vibee_embedding_inputs_total >= 20,
        `metrics: no leaked blocks, ${m.vibee_embedding_inputs_total} embedding inputs`);

  // 400s naming the field
  const long = Array.from({ length: 600 }, (_, i) => i % 300); // the model's context is 512
  const refused = [
    [{ input: 'x', dimensions: 32 }, 'dimensions'],
    [{ input: 'x', foo: 1 }, 'foo'],
    [{ input: 'x', encoding_format: 'int8' }, 'encoding_format'],
    [{ input: long }, 'input'],
    [{ input: [] }, 'input'],
    [{ input: '' }, 'input'],
    [{ input: [5, 300] }, 'input'],
    [{ input: [['a']] }, 'input'],
    [{ input: 'x', user: 5 }, 'user'],
  ];
  for (const [body, field] of refused) {
    const [st, param, msg] = await status400(client, body);
    check(st === 400 && param === field, `${JSON.stringify(body).slice(0, 50)}: 400 naming '${field}' (${st} ${param}: ${msg.slice(0, 90)})`);
  }
  const m2 = await settle(srv.base);
  check(m2['vibee_http_errors_total{class="5xx"}'] === 0, 'metrics: no 5xx');
  check(await srv.stop() === 0, 'server exits 0 on SIGTERM');
  srv = null;

  // an input the KV pool cannot take while requests run waits for their blocks (-c 256: 19 blocks
  // of 16; two running requests hold 3 each from their 40-token prompts and grow until the pool
  // or their context is full, so they hold blocks for hundreds of steps; the input needs 16)
  srv = await startServer(vibee, ['--parallel', '2', '-c', '256'], path.join(fixtures, 'models', 'qwen3-f32.gguf'));
  const cw = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
  const big = Array.from({ length: 256 }, (_, i) => (i * 37) % 300);
  const idle = await cw.embeddings.create({ model: 'm', input: big, encoding_format: 'float' });
  const holders = await Promise.all(['abcd', 'wxyz'].map((p) => cw.completions.create(
    { model: 'm', prompt: p.repeat(10), max_tokens: 400, temperature: 0, ignore_eos: true, stream: true })));
  const hit = holders.map((st) => st[Symbol.asyncIterator]());
  await Promise.all(hit.map((it) => it.next()));
  const waited = await cw.embeddings.create({ model: 'm', input: big, encoding_format: 'float' });
  for (const it of hit) while (!(await it.next()).done);
  const mw = await settle(srv.base);
  check(same(waited.data[0].embedding, idle.data[0].embedding) && mw.vibee_embedding_waits_total > 0 && mw.vibee_kv_blocks_leaked === 0,
        `a 256-token input waits for the running requests' KV blocks (${mw.vibee_embedding_waits_total} waits), then equals the idle answer`);
  check(await srv.stop() === 0, 'server exits 0');
  srv = null;

  // --pooling last (gpt2) and cls (llama) against the reference
  for (const [name, pooling] of [['gpt2-f32', 'last'], ['llama-f32', 'cls']]) {
    const ref = reference(name);
    srv = await startServer(vibee, ['--parallel', '1', '--pooling', pooling], path.join(fixtures, 'models', name + '.gguf'));
    const c = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
    const r = await c.embeddings.create({ model: name, input: ref.tokens, encoding_format: 'float' });
    const err = relErr(r.data[0].embedding, pooled(ref, pooling));
    check(err < 1e-4, `--pooling ${pooling} on ${name} equals the reference's ${pooling} row, normalised (rel err ${err.toExponential(2)})`);
    check(await srv.stop() === 0, `${name} server exits 0`);
    srv = null;
  }

  // a backend without hidden states
  srv = await startServer(vibee, ['--parallel', '1']);
  const cs = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
  const [st, , msg] = await status400(cs, { input: 'hello' });
  check(st === 501 && /hidden states/.test(msg), `sim backend: 501 (${st}: ${msg.slice(0, 100)})`);
} catch (e) {
  check(false, 'unexpected exception: ' + (e.stack || e));
} finally {
  if (srv) check(await srv.stop() === 0, 'server exits 0 on SIGTERM');
  clearTimeout(guard);
}
console.log(failed() ? `${failed()} failed` : 'all passed');
process.exit(failed() ? 1 : 0);
