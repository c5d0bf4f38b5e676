// openai_client.mjs - `vibee serve -m sim` driven by the real OpenAI client library (npm `openai`,
// pinned in tests/js/package.json): completions and chat, plain and streaming, stop strings, seeded
// sampling, models, a 400 error; greedy text must equal `vibee run` (vb_generate, no scheduler) on
// the same prompt. Usage: node openai_client.mjs VIBEE. Prints ok/FAIL lines; exit 1 on failure.
import { execFileSync } from 'node:child_process';
import { jsRequire, startServer, settle, check, finishServerTest } from './server_util.mjs';

const OpenAI = jsRequire('openai');
const vibee = process.argv[2];

function runText(prompt, n) { // the same greedy generation through `vibee run`
  const out = execFileSync(vibee, ['run', '-m', 'sim', '-p', prompt, '-n', String(n), '--json'],
                           { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out).text;
}

const guard = setTimeout(() => { console.log('FAIL time limit (60 s)'); process.exit(1); }, 60000);
// --draft-max 4: lossless draft-and-verify in the scheduler; greedy text must still equal vibee run (AR)
const srv = await startServer(vibee, ['--parallel', '4', '--draft-max', '4']);
try {
  const client = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === 'sim-258', 'models.list gives the loaded model');

  const prompt = 'The quick brown fox';
  const c = await client.completions.create({ model: 'sim', prompt, max_tokens: 24, temperature: 0 });
  check(c.object === 'text_completion' && c.choices[0].finish_reason === 'length', 'completion object, finish length');
  check(c.usage.completion_tokens === 24 && c.usage.prompt_tokens === prompt.length, 'completion usage counts');
  const ref = runText(prompt, 24);
  check(c.choices[0].text === ref, `greedy completion equals vibee run (${JSON.stringify(c.choices[0].text)} vs ${JSON.stringify(ref)})`);

  const s = await client.completions.create({ model: 'sim', prompt, max_tokens: 24, temperature: 0, stream: true });
  let streamed = '', finish = null, chunks = 0;
  for await (const ch of s) { streamed += ch.choices[0].text; finish = ch.choices[0].finish_reason ?? finish; chunks++; }
  check(streamed === c.choices[0].text && finish === 'length' && chunks >= 2, `streamed completion equals the plain one (${chunks} chunks)`);

  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }];
  const raw = await client.chat.completions.create({ model: 'sim', messages, max_tokens: 20, temperature: 0 }).asResponse();
  check(/plain/.test(raw.headers.get('x-vibee-chat-template') || ''), 'chat template header: plain (the sim vocabulary has no <|im_start|>)');
  const chat = await raw.json();
  const msg = chat.choices[0].message;
  check(chat.object === 'chat.completion' && msg.role === 'assistant' && typeof msg.content === 'string', 'chat completion object');
  const chatRef = runText('system: Be brief.\nuser: Hello there\nassistant:', 20);
  check(msg.content === chatRef, 'greedy chat equals vibee run on the templated prompt');

  const cs = await client.chat.completions.create({ model: 'sim', messages, max_tokens: 20, temperature: 0, stream: true });
  let content = '', role = null, cfinish = null;
  for await (const ch of cs) {
    const d = ch.choices[0].delta;
    if (d.role) role = d.role;
    if (d.content) content += d.content;
    cfinish = ch.choices[0].finish_reason ?? cfinish;
  }
  check(role === 'assistant' && content === msg.content && cfinish === 'length', 'streamed chat equals the plain chat');

  const text = c.choices[0].text;
  const stop = text.slice(8, 11);
  const cut = text.indexOf(stop);
  const st = await client.completions.create({ model: 'sim', prompt, max_tokens: 24, temperature: 0, stop: [stop] });
  check(st.choices[0].text === text.slice(0, cut) && st.choices[0].finish_reason === 'stop', `stop string ${JSON.stringify(stop)} cuts the text`);
  const sst = await client.completions.create({ model: 'sim', prompt, max_tokens: 24, temperature: 0, stop: stop, stream: true });
  let sstText = '';
  for await (const ch of sst) sstText += ch.choices[0].text;
  check(sstText === text.slice(0, cut), 'streamed text never passes a stop string');

  const a = await client.completions.create({ model: 'sim', prompt, max_tokens: 16, temperature: 0.9, seed: 7 });
  const b = await client.completions.create({ model: 'sim', prompt, max_tokens: 16, temperature: 0.9, seed: 7 });
  check(a.choices[0].text === b.choices[0].text, 'a fixed seed samples the same text twice');

  let status = 0, message = '';
  try { await client.completions.create({ model: 'sim', prompt, max_tokens: 0 }); } catch (e) { status = e.status; message = e.message; }
  check(status === 400 && /max_tokens/.test(message), `max_tokens 0 is a 400 naming the field (${status} ${message})`);

  // concurrent requests through the client: each equals its own sequential answer
  const prompts = ['alpha', 'beta gamma', 'delta epsilon zeta', 'eta', 'theta iota kappa lambda', 'mu'];
  const seq = [];
  for (const p of prompts) seq.push((await client.completions.create({ model: 'sim', prompt: p, max_tokens: 30, temperature: 0 })).choices[0].text);
  const par = await Promise.all(prompts.map((p) => client.completions.create({ model: 'sim', prompt: p, max_tokens: 30, temperature: 0 })));
  check(par.every((r, i) => r.choices[0].text === seq[i]), 'concurrent answers equal sequential ones');

  const m = await settle(srv.base);
  check(m.vibee_kv_blocks_leaked === 0 && m.vibee_requests_running === 0, 'metrics: no leaked blocks, nothing running');
  check(m['vibee_http_errors_total{class="5xx"}'] === 0, 'metrics: no 5xx');
} catch (e) {
  check(false, 'unexpected exception: ' + (e.stack || e));
}
await finishServerTest(srv, guard);
