// openai_fields.mjs - the OpenAI request fields of `vibee serve -m sim` through the official npm
// client: random seeds (absent or -1) reported and reproducible, logit_bias, presence and frequency
// penalties, n > 1 as independent requests (choice i = a request with seed + i),
// stream_options.include_usage, echo, prompts as token arrays and lists, and a 400 naming the
// field for everything not implemented (logprobs out of range, a response_format schema it cannot compile, malformed tools, unknown fields).
// Usage: node openai_fields.mjs VIBEE. Prints ok/FAIL lines; exit 1 on failure.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsRequire, startServer, settle, check, finishServerTest } from './server_util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const OpenAI = jsRequire('openai');
const vibee = process.argv[2];

const guard = setTimeout(() => { console.log('FAIL time limit (60 s)'); process.exit(1); }, 60000);
const srv = await startServer(vibee, ['--parallel', '4']);
try {
  const client = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 20000 });
  const complete = (body) => client.completions.create({ model: 'sim', ...body });
  const text = (r, i = 0) => r.choices[i].text;
  const prompt = 'The quick brown fox';

  // seeds: random unless given (absent and -1 alike), reported, and reproducible from the report
  const hot = { prompt, max_tokens: 32, temperature: 2.0 };
  const r1 = await complete(hot), r2 = await complete(hot), r3 = await complete({ ...hot, seed: -1 });
  check(Number.isInteger(r1.seed) && r1.seed !== r2.seed && r3.seed !== r1.seed, `random seeds reported (${r1.seed}, ${r2.seed}, ${r3.seed})`);
  check(text(r1) !== text(r2) || text(r1) !== text(r3), 'unseeded requests sample different texts');
  const again = await complete({ ...hot, seed: r1.seed });
  check(again.seed === r1.seed && text(again) === text(r1), 'the reported seed reproduces the text');

  // logit_bias: +100 on one token makes greedy pick it every step; -100 bans greedy's first token
  const greedy = await complete({ prompt, max_tokens: 8, temperature: 0 });
  const z = await complete({ prompt, max_tokens: 8, temperature: 0, logit_bias: { 90: 100 } });
  check(text(z) === 'ZZZZZZZZ', `logit_bias +100 on token 90 ('Z') gives ${JSON.stringify(text(z))}`);
  const first = text(greedy).codePointAt(0); // sim: token id = byte for ASCII
  const banned = await complete({ prompt, max_tokens: 8, temperature: 0, logit_bias: { [first]: -100 } });
  check(text(banned).codePointAt(0) !== first, `logit_bias -100 bans greedy's first token (${JSON.stringify(text(greedy))} -> ${JSON.stringify(text(banned))})`);

  // penalties against an independent computation: for the first sampled token the window is the
  // prompt, so presence / frequency penalties must equal a logit_bias of -(presence + frequency *
  // count) on each prompt token, counted here (same seeds: the same draws; binary-exact values)
  const ptoks = [97, 98, 99, 97, 98, 99, 97, 90, 97, 120]; // "abcabcaZax": a x4, b x2, c x2, Z, x
  const counts = {};
  for (const t of ptoks) counts[t] = (counts[t] || 0) + 1;
  const firsts = async (extra) => (await complete({ prompt: ptoks, max_tokens: 1, temperature: 2, n: 48, seed: 500, ...extra })).choices.map((c) => c.text).join('');
  const plain = await firsts({});
  for (const [pres, freq] of [[2, 0], [0, 1.5], [-1, 0.5]]) {
    const bias = {};
    for (const [t, c] of Object.entries(counts)) bias[t] = -(pres + freq * c);
    const pen = await firsts({ presence_penalty: pres, frequency_penalty: freq });
    const ref = await firsts({ logit_bias: bias });
    check(pen === ref && pen !== plain, `presence ${pres} / frequency ${freq} equal the computed bias over 48 seeds (${pen.slice(0, 12)}... vs ${plain.slice(0, 12)}...)`);
  }

  // n > 1: choice i equals a single request with seed + i
  const multi = await complete({ prompt, max_tokens: 12, temperature: 1.5, n: 3, seed: 11 });
  const singles = await Promise.all([11, 12, 13].map((seed) => complete({ prompt, max_tokens: 12, temperature: 1.5, seed })));
  check(multi.choices.length === 3 && multi.choices.every((c, i) => c.index === i && c.text === text(singles[i])),
        'n: 3 gives three choices, each equal to a request with seed + index');
  check(multi.usage.completion_tokens === 36 && multi.usage.prompt_tokens === singles[0].usage.prompt_tokens,
        `n: 3 usage counts the prompt once (${JSON.stringify(multi.usage)})`);

  // stream_options.include_usage: a last chunk with usage and no choices
  const st = await complete({ prompt, max_tokens: 10, temperature: 0, stream: true, n: 2, stream_options: { include_usage: true } });
  const per = ['', ''];
  let usage = null, finishes = 0;
  for await (const ch of st) {
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) { per[c.index] += c.text; if (c.finish_reason) finishes++; }
  }
  check(usage && usage.completion_tokens === 20 && usage.total_tokens === 20 + usage.prompt_tokens && finishes === 2,
        `stream include_usage: ${JSON.stringify(usage)}`);
  const greedy10 = await complete({ prompt, max_tokens: 10, temperature: 0 });
  check(per[0] === text(greedy10) && per[1] === text(greedy10), 'both streamed choices equal the plain greedy text');

  // echo: the prompt starts each choice, plain and streamed
  const echo = await complete({ prompt, max_tokens: 8, temperature: 0, echo: true });
  check(text(echo) === prompt + text(greedy), `echo prepends the prompt (${JSON.stringify(text(echo))})`);
  const es = await complete({ prompt, max_tokens: 8, temperature: 0, echo: true, stream: true });
  let esText = '';
  for await (const ch of es) esText += ch.choices[0].text;
  check(esText === text(echo), 'streamed echo equals the plain one');

  // prompts as token ids and lists
  const toks = (await (await fetch(srv.base + '/tokenize', { method: 'POST', body: JSON.stringify({ content: prompt }) })).json()).tokens;
  const byTok = await complete({ prompt: toks, max_tokens: 8, temperature: 0 });
  check(text(byTok) === text(greedy) && byTok.usage.prompt_tokens === toks.length, 'a prompt of token ids answers like its text');
  const echoTok = await complete({ prompt: toks, max_tokens: 8, temperature: 0, echo: true });
  check(text(echoTok) === text(echo), 'echo of a token prompt gives its text');
  const other = await complete({ prompt: 'Hello', max_tokens: 8, temperature: 0 });
  const list = await complete({ prompt: [prompt, 'Hello'], max_tokens: 8, temperature: 0 });
  check(list.choices.length === 2 && text(list, 0) === text(greedy) && text(list, 1) === text(other), 'a list of prompts gives one choice each, in order');
  const listTok = await complete({ prompt: [toks, toks], max_tokens: 8, temperature: 0, n: 2 });
  check(listTok.choices.length === 4 && listTok.choices.every((c) => c.text === text(greedy)), 'a list of token prompts with n: 2 gives four choices');

  // chat: n and a seed report
  const chat = await client.chat.completions.create({ model: 'sim', messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, n: 2, seed: 3 });
  check(chat.choices.length === 2 && chat.seed === 3 && chat.choices[1].index === 1, 'chat n: 2 with the seed reported');

  // everything not implemented: 400 naming the field
  const refused = [
    [{ prompt, logprobs: 21 }, 'logprobs'],
    [{ prompt, best_of: 4 }, 'best_of'],
    [{ prompt, suffix: 'end' }, 'suffix'],
    [{ prompt, frobnicate: true }, 'frobnicate'],
    [{ prompt, frequency_penalty: 2.5 }, 'frequency_penalty'],
    [{ prompt, logit_bias: { 9999: 1 } }, 'logit_bias'],
    [{ prompt, logit_bias: { 5: 101 } }, 'logit_bias'],
    [{ prompt, stream_options: { include_usage: true } }, 'stream_options'],
  ];
  for (const [body, field] of refused) {
    let status = 0, param = null;
    try { await complete(body); } catch (e) { status = e.status; param = e.param ?? e.error?.param; }
    check(status === 400 && param === field, `completions ${field}: 400 naming it (${status} ${param})`);
  }
  const chatRefused = [
    [{ logprobs: 1 }, 'logprobs'],
    [{ top_logprobs: 2 }, 'top_logprobs'],
    [{ response_format: { type: 'json_schema', json_schema: { schema: { type: 'nope' } } } }, 'response_format'],
    [{ tools: [{ type: 'function', function: { name: 'not a name', parameters: {} } }] }, 'tools'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ metadata: { a: 'b' } }, 'metadata'],
    [{ echo: true }, 'echo'],
  ];
  for (const [extra, field] of chatRefused) {
    let status = 0, param = null;
    try { await client.chat.completions.create({ model: 'sim', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra }); }
    catch (e) { status = e.status; param = e.param ?? e.error?.param; }
    check(status === 400 && param === field, `chat ${field}: 400 naming it (${status} ${param})`);
  }
  const ok = await client.chat.completions.create({ model: 'sim', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2,
                                                     logprobs: false, response_format: { type: 'text' }, user: 'u1', store: false });
  check(ok.choices.length === 1, 'values that need nothing more are accepted (logprobs false, response_format text, user, store false)');

  const m = await settle(srv.base);
  check(m.vibee_kv_blocks_leaked === 0 && m.vibee_requests_running === 0, 'metrics: no leaked blocks, nothing running');
  check(m['vibee_http_errors_total{class="5xx"}'] === 0, 'metrics: no 5xx');
} catch (e) {
  check(false, 'unexpected exception: ' + (e.stack || e));
}
await finishServerTest(srv, guard);
