// load.mjs - a bounded load test of `vibee serve -m sim` from a second process on loopback: many
// concurrent streaming clients (each must get every chunk and [DONE], text equal to its plain
// answer), abrupt disconnects mid-stream and before the answer, malformed HTTP and JSON, a
// too-large body, unknown routes; afterwards /metrics must show nothing running and no leaked KV
// blocks, and the server must still answer. Usage: node load.mjs VIBEE [clients]. Exit 1 on failure.
import net from 'node:net';
import { startServer, metrics, settle, check, finishServerTest } from './server_util.mjs';

const vibee = process.argv[2];
const CLIENTS = Number(process.argv[3] || 32);
const guard = setTimeout(() => { console.log('FAIL time limit (60 s)'); process.exit(1); }, 60000);

// Raw HTTP over a socket: returns {status, body} or rejects; `abortAfter` bytes: destroy the socket.
function raw(port, text, { abortAfter = -1, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const t = setTimeout(() => { sock.destroy(); reject(new Error('raw request timed out')); }, timeoutMs);
    sock.on('connect', () => sock.write(text));
    sock.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (abortAfter >= 0 && got.length > abortAfter) { clearTimeout(t); sock.destroy(); resolve({ aborted: true }); }
    });
    sock.on('error', (e) => { clearTimeout(t); resolve({ error: e.code, data: got.toString() }); });
    sock.on('close', () => {
      clearTimeout(t);
      const s = got.toString('latin1');
      const m = s.match(/^HTTP\/1\.[01] (\d+)/);
      resolve({ status: m ? Number(m[1]) : 0, body: s.slice(s.indexOf('\r\n\r\n') + 4) });
    });
  });
}

function post(path, body, extra = '') {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n${extra}` +
         `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

async function streamText(base, prompt, n) {
  const r = await fetch(base + '/v1/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: n, temperature: 0, stream: true, ignore_eos: true }),
  });
  if (r.status !== 200) return { status: r.status };
  const body = await r.text();
  const events = body.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  const done = events.at(-1) === '[DONE]';
  let text = '', finish = null;
  for (const e of events.slice(0, -1)) { const j = JSON.parse(e); text += j.choices[0].text; finish = j.choices[0].finish_reason ?? finish; }
  return { status: 200, done, text, finish };
}

// -c 512: a small KV pool (40 blocks of 16 rows with sim) so the streams preempt each other
const srv = await startServer(vibee, ['--parallel', '8', '-c', '512', '--max-body', '65536', '--max-queue', '256']);
const port = srv.port;
try {
  // references, one at a time
  const prompts = Array.from({ length: CLIENTS }, (_, i) => `client ${i} says ${'abcdefghij'.slice(0, i % 10)}`);
  const lens = prompts.map((_, i) => 40 + (i % 7) * 30);
  const ref = [];
  for (let i = 0; i < CLIENTS; i++) {
    const r = await fetch(srv.base + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: prompts[i], max_tokens: lens[i], temperature: 0, ignore_eos: true }) });
    ref.push((await r.json()).choices[0].text);
  }
  // everything at once: streams, disconnects, garbage
  const t0 = Date.now();
  const streams = prompts.map((p, i) => streamText(srv.base, p, lens[i]));
  const longBody = JSON.stringify({ prompt: 'long', max_tokens: 3000, stream: true, ignore_eos: true });
  const aborts = [];
  for (let i = 0; i < 12; i++) aborts.push(raw(port, post('/v1/completions', longBody), { abortAfter: 200 + i * 50 }));
  for (let i = 0; i < 4; i++) { // disconnect while a non-streaming answer is being generated
    const b = JSON.stringify({ prompt: 'gone ' + i, max_tokens: 3000, ignore_eos: true });
    aborts.push(new Promise((resolve) => { const s = net.connect(port, '127.0.0.1', () => { s.write(post('/v1/completions', b)); setTimeout(() => { s.destroy(); resolve({ aborted: true }); }, 5); }); s.on('error', () => resolve({})); }));
  }
  const bad = await Promise.all([
    raw(port, post('/v1/completions', '{"prompt": "x", "max_tokens": 5')),                 // truncated JSON
    raw(port, post('/v1/completions', '[1,2,3]')),                                          // not an object
    raw(port, post('/v1/completions', '{"prompt": 42}')),                                   // wrong type
    raw(port, post('/v1/completions', '{"prompt": "x", "max_tokens": "ten"}')),              // wrong type
    raw(port, post('/v1/completions', '{"prompt": "x", "temperature": -1}')),                // out of range
    raw(port, post('/v1/completions', '{"prompt": "x", "max_tokens": 100000000}')),          // over the limit
    raw(port, post('/v1/chat/completions', '{"messages": []}')),                            // empty
    raw(port, post('/v1/chat/completions', '{"messages": [{"role": "wizard", "content": "x"}]}')),
    raw(port, post('/v1/completions', JSON.stringify({ prompt: 'x'.repeat(70000) }))),      // body > --max-body
    raw(port, 'GET /v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),          // unknown route
    raw(port, 'GET /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),       // wrong method
    raw(port, 'BLAH\r\n\r\n'),                                                                // not HTTP
    raw(port, post('/v1/completions', '\u0000\u0001garbage')),
  ]);
  const wantBad = [400, 400, 400, 400, 400, 400, 400, 400, 413, 404, 405, -1, 400];
  for (let i = 0; i < bad.length; i++) {
    const b = bad[i];
    if (wantBad[i] < 0) { check(!b.status || b.status === 400, `garbage request line is refused (${b.status})`); continue; }
    let parsed = null;
    try { parsed = JSON.parse(b.body); } catch { /* checked below */ }
    check(b.status === wantBad[i] && parsed && parsed.error && typeof parsed.error.message === 'string',
          `malformed request ${i} -> ${wantBad[i]} with a JSON error (${b.status} ${(b.body || '').slice(0, 90)})`);
  }
  const results = await Promise.all(streams);
  await Promise.all(aborts);
  const okStreams = results.filter((r, i) => r.status === 200 && r.done && r.text === ref[i] && r.finish === 'length').length;
  check(okStreams === CLIENTS, `${okStreams}/${CLIENTS} concurrent streams complete, each equal to its one-at-a-time answer (${Date.now() - t0} ms)`);
  const m = await settle(srv.base);
  check(m.vibee_requests_running === 0 && m.vibee_requests_waiting === 0, 'nothing left running or waiting after the disconnects');
  check(m.vibee_kv_blocks_leaked === 0, `no leaked KV blocks (used ${m.vibee_kv_blocks_used}, cached prefixes ${m.vibee_kv_blocks_cached})`);
  check(m.vibee_kv_blocks_used <= m.vibee_kv_blocks_cached, 'every used block belongs to a cached prefix when idle');
  check(m.vibee_requests_cancelled_total >= 12, `disconnects cancelled their requests (${m.vibee_requests_cancelled_total})`);
  check(m.vibee_tokens_generated_total > 0 && m.vibee_steps_total > 0, 'metrics count tokens and steps');
  const h = await fetch(srv.base + '/health');
  check(h.status === 200, 'server still healthy');
  console.log(`load: ${CLIENTS} streams, 16 disconnects, ${bad.length} malformed; max batch rows ${m.vibee_batch_rows_max}, preemptions ${m.vibee_preemptions_total}, prefix hits ${m.vibee_prefix_hits_total}`);
} catch (e) {
  check(false, 'unexpected exception: ' + (e.stack || e));
}
await finishServerTest(srv, guard);
