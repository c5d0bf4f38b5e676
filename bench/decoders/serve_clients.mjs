// serve_clients.mjs - C concurrent streaming clients against one `vibee serve` (loopback), each
// sending requests back to back for the decoders given, in interleaved rounds (every decoder once
// per round, all clients on the same decoder at a time, chosen with the "decoder" body field):
// aggregate generated tokens/s, and p50 / p99 of request latency and time to first token.
//   node bench/decoders/serve_clients.mjs VIBEE CLIENTS TOKENS ROUNDS "ar,verify" [server args...]
import { startServer } from '../../tests/server/server_util.mjs';
import { readFileSync } from 'node:fs';

const [vibee, clientsArg = '16', tokensArg = '64', roundsArg = '3', decs = 'ar,verify', ...serverArgs] =
  process.argv.slice(2);
const C = Number(clientsArg), T = Number(tokensArg), R = Number(roundsArg);
const prompts = readFileSync(new URL('../wedlm/prompts_code.txt', import.meta.url), 'utf8').trim().split('\n')
  .slice(0, 16).map((l) => JSON.parse(l));
const srv = await startServer(vibee, ['--parallel', String(C), ...serverArgs], process.env.MODEL || 'models/wedlm-py-6m-f16.gguf', 60000);

async function one(decoder, i) {
  const t0 = performance.now();
  const r = await fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: prompts[i % prompts.length], max_tokens: T, temperature: 0, ignore_eos: true,
                           stream: true, decoder, stream_options: { include_usage: true } }),
  });
  const reader = r.body.getReader();
  let first = 0, buf = '';
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!first) first = performance.now() - t0;
    buf += dec.decode(value, { stream: true });
  }
  let tokens = 0;
  for (const ev of buf.split('\n\n')) {
    if (!ev.startsWith('data: {')) continue;
    const j = JSON.parse(ev.slice(6));
    if (j.usage) tokens = j.usage.completion_tokens;
  }
  return { ms: performance.now() - t0, ttft: first, tokens };
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const res = {};
for (let round = 0; round < R; round++) {
  for (const d of decs.split(',')) {
    const t0 = performance.now();
    const per = await Promise.all(Array.from({ length: C }, async (_, c) => [await one(d, c), await one(d, c + C)]));
    const wall = (performance.now() - t0) / 1000;
    const flat = per.flat();
    (res[d] ??= []).push({ tok_s: flat.reduce((a, x) => a + x.tokens, 0) / wall, lat: flat.map((x) => x.ms),
                           ttft: flat.map((x) => x.ttft) });
  }
}
await srv.stop();
console.log(`| decoder | clients | aggregate tok/s (median of ${R}) | vs ar | latency p50 / p99 (ms) | TTFT p50 / p99 (ms) |`);
console.log('|---|---:|---:|---:|---:|---:|');
const med = (a) => pct(a, 0.5);
const arTps = res.ar ? med(res.ar.map((x) => x.tok_s)) : 0;
for (const [d, rs] of Object.entries(res)) {
  const lat = rs.flatMap((x) => x.lat), ttft = rs.flatMap((x) => x.ttft), tps = med(rs.map((x) => x.tok_s));
  console.log(`| ${d} | ${C} | ${tps.toFixed(1)} | ${arTps ? (tps / arTps).toFixed(2) + 'x' : ''} | ` +
              `${med(lat).toFixed(0)} / ${pct(lat, 0.99).toFixed(0)} | ${med(ttft).toFixed(0)} / ${pct(ttft, 0.99).toFixed(0)} |`);
}
