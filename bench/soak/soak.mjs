// soak.mjs - mixed load on `vibee serve` for a fixed time, from this process over loopback only:
// streaming and plain completions and chats with every decoder, clients that disconnect in the
// middle of a stream, malformed and oversized requests, prompts longer than a sequence's share of
// the KV pool (preemption, kv_full), and a small pool so that the pool runs out. Samples the
// server's RSS (/proc/PID/status VmRSS) every second, and at the end checks: the server is alive,
// /metrics shows no leaked KV block and nothing running, every answer was well-formed (2xx with a
// body that parses, or the expected 4xx), and (under ASan) stderr holds no sanitizer report.
//
//   node bench/soak/soak.mjs VIBEE SECONDS [CLIENTS] [server args...]
// Exit 0 when every check holds. Prints one JSON line of results.
import { startServer, metrics, settle } from '../../tests/server/server_util.mjs';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const [vibee, secondsArg = '60', clientsArg = '8', ...serverArgs] = process.argv.slice(2);
const seconds = Number(secondsArg), clients = Number(clientsArg);
const srv = await startServer(vibee, ['-c', '1024', '--parallel', '4', '--max-tokens', '512', ...serverArgs],
                              process.env.SOAK_MODEL || 'sim', 60000);
const rss = () => {
  try {
    const m = readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) / 1024 : 0;
  } catch { return 0; }
};
const counts = { ok: 0, expected_4xx: 0, unexpected: 0, aborted: 0, streams: 0, kv_full: 0 };
const problems = [];
const rssSamples = [];
const t0 = Date.now();
const deadline = t0 + seconds * 1000;
const sampler = setInterval(() => rssSamples.push(rss()), 1000);
const rnd = (n) => Math.floor(Math.random() * n);
const decoders = ['ar', 'verify', 'wedlm'];
const words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu'.split(' ');
const text = (n) => Array.from({ length: n }, () => words[rnd(words.length)]).join(' ');

async function post(path, body, expect4xx = false) {
  const r = await fetch(srv.base + path, { method: 'POST', headers: { 'content-type': 'application/json' },
                                           body: typeof body === 'string' ? body : JSON.stringify(body) });
  const t = await r.text();
  if (r.status >= 400 && r.status < 500 && expect4xx) { counts.expected_4xx++; return; }
  if (r.status !== 200) { counts.unexpected++; problems.push(`${path} ${r.status}: ${t.slice(0, 160)}`); return; }
  try {
    const j = JSON.parse(t);
    if (j.choices?.[0]?.finish_reason === 'kv_full') counts.kv_full++;
    counts.ok++;
  } catch { counts.unexpected++; problems.push(`${path}: body is not JSON: ${t.slice(0, 120)}`); }
}

async function stream(disconnectAfter) {
  const ctl = new AbortController();
  const r = await fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: ctl.signal,
    body: JSON.stringify({ prompt: text(5 + rnd(30)), max_tokens: 16 + rnd(200), stream: true, ignore_eos: true,
                           decoder: decoders[rnd(3)], temperature: rnd(2) ? 0 : 0.8 }),
  });
  if (r.status !== 200) { counts.unexpected++; problems.push(`stream ${r.status}`); return; }
  const reader = r.body.getReader();
  let got = 0, buf = '';
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    if (disconnectAfter && ++got >= disconnectAfter) { ctl.abort(); counts.aborted++; return; }
  }
  if (!buf.includes('data: [DONE]')) { counts.unexpected++; problems.push('stream without [DONE]'); return; }
  for (const ev of buf.split('\n\n')) {
    if (!ev.startsWith('data: {')) continue;
    try { JSON.parse(ev.slice(6)); } catch { counts.unexpected++; problems.push('stream event is not JSON'); return; }
  }
  counts.streams++;
}

function rawGarbage() {
  return new Promise((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1', () => {
      const junk = ['GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n',
                    'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
                    '\x00\x01\x02 garbage\r\n\r\n'][rnd(3)];
      s.end(junk);
    });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.setTimeout(3000, () => { s.destroy(); resolve(); });
  });
}

async function one() {
  const k = rnd(10);
  try {
    if (k < 3) await stream(0);
    else if (k < 4) await stream(1 + rnd(5));
    else if (k < 6) await post('/v1/completions', { prompt: text(3 + rnd(20)), max_tokens: 8 + rnd(64), seed: rnd(1000),
                                                     decoder: decoders[rnd(3)], temperature: rnd(2) ? 0 : 1 });
    else if (k < 7) await post('/v1/chat/completions', { messages: [{ role: 'user', content: text(8) }], max_tokens: 24 });
    else if (k < 8) await post('/v1/completions', { prompt: text(60 + rnd(90)), max_tokens: 400, ignore_eos: true });
    else if (k < 9) await post('/v1/completions', ['{"prompt": 5}', '{"prompt":"x","temperature":"hot"}', 'not json',
                                                    '{"prompt":"x","unknown_field":1}'][rnd(4)], true);
    else await rawGarbage();
  } catch (e) {
    if (e.name !== 'AbortError') { counts.unexpected++; problems.push('client: ' + e.message); }
  }
}

await Promise.all(Array.from({ length: clients }, async () => { while (Date.now() < deadline) await one(); }));
clearInterval(sampler);
const m = await settle(srv.base, 20000);
const alive = srv.proc.exitCode === null;
const code = await srv.stop();
const stderr = srv.stderr();
const sanitizer = /ERROR: AddressSanitizer|runtime error:|LeakSanitizer/.test(stderr);
const res = {
  seconds, clients, counts, rss_mib_first: rssSamples[0] ?? 0, rss_mib_last: rssSamples.at(-1) ?? 0,
  rss_mib_max: Math.max(0, ...rssSamples), kv_blocks_leaked: m.vibee_kv_blocks_leaked,
  running_at_end: m.vibee_requests_running, alive, exit: code, sanitizer, problems: problems.slice(0, 10),
};
console.log(JSON.stringify(res));
const ok = alive && !sanitizer && counts.unexpected === 0 && m.vibee_kv_blocks_leaked === 0 &&
           m.vibee_requests_running === 0 && counts.ok + counts.streams > 0;
if (!ok && sanitizer) console.error(stderr.slice(-4000));
process.exit(ok ? 0 : 1);
