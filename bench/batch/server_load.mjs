// server_load.mjs - load on `vibee serve` from a second process over loopback: C concurrent
// streaming clients (each asks for T tokens with ignore_eos), repeated for each C given; reports
// aggregate tokens/s received by the clients, time to first token, and the server's /metrics
// (preemptions, leaked blocks). Usage:
//   node bench/batch/server_load.mjs VIBEE MODEL "1,4,8,16" T [server args...]
import { startServer, metrics, settle } from '../../tests/server/server_util.mjs';

const [vibee, model, levels = '1,4,8,16', tokens = '32', ...serverArgs] = process.argv.slice(2);
const T = Number(tokens);
const srv = await startServer(vibee, serverArgs, model, 120000);

async function client(i) {
  const t0 = performance.now();
  const r = await fetch(srv.base + '/v1/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: `Client number ${i} asks a question about topic ${i * 7}`, max_tokens: T,
                           temperature: 0, ignore_eos: true, stream: true }),
  });
  const reader = r.body.getReader();
  let first = 0, text = '', buf = '';
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!first) first = performance.now() - t0;
    buf += dec.decode(value, { stream: true });
  }
  for (const ev of buf.split('\n\n')) {
    if (!ev.startsWith('data: {')) continue;
    text += JSON.parse(ev.slice(6)).choices[0].text;
  }
  return { status: r.status, done: buf.includes('data: [DONE]'), ttft: first, ms: performance.now() - t0 };
}

console.log('| clients | tokens each | wall s | aggregate tok/s | mean TTFT ms | all answered |');
console.log('|---:|---:|---:|---:|---:|---|');
for (const c of levels.split(',').map(Number)) {
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: c }, (_, i) => client(i)));
  const wall = (performance.now() - t0) / 1000;
  const ok = res.every((r) => r.status === 200 && r.done);
  const ttft = res.reduce((a, r) => a + r.ttft, 0) / c;
  console.log(`| ${c} | ${T} | ${wall.toFixed(2)} | ${(c * T / wall).toFixed(1)} | ${ttft.toFixed(0)} | ${ok ? 'yes' : 'NO'} |`);
}
const m = await settle(srv.base);
console.log(`\nmetrics after the load: running ${m.vibee_requests_running}, waiting ${m.vibee_requests_waiting}, ` +
            `preemptions ${m.vibee_preemptions_total}, prefix hits ${m.vibee_prefix_hits_total}, ` +
            `KV blocks used ${m.vibee_kv_blocks_used} (cached prefixes ${m.vibee_kv_blocks_cached}), leaked ${m.vibee_kv_blocks_leaked}, ` +
            `max rows/step ${m.vibee_batch_rows_max}, 5xx ${m['vibee_http_errors_total{class="5xx"}']}`);
console.log(`server exit on SIGTERM: ${await srv.stop()}`);
