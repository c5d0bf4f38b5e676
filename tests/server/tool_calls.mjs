// tool_calls.mjs - tools / tool_choice / parallel_tool_calls of `vibee serve` chat completions on the
// shipped model (embedded, no -m; its template is the generic one: vibee describes the tools in
// the system message), through the official npm client: with a named function and with
// "required", for tools whose parameter schemas have nested objects, arrays of objects, enums,
// numbers, strings with escapes, anyOf and $ref, greedy and sampled, streamed (raw chunks and the
// client's own stream accumulator) and not, every call must come back in OpenAI's shape (id,
// type, function.name, function.arguments as a JSON string), name the right function, and its
// arguments must parse and validate against that tool's schema with ajv (an independent
// validator); parallel_tool_calls false gives one call, true one or more; a second turn that
// carries the assistant's tool_calls and the tool's result is accepted and prompts the model with
// more tokens; "none" gives plain content; bad tools / tool_choice / parallel_tool_calls and
// malformed tool_calls in messages get a 400 naming the field.
// Usage: node tool_calls.mjs VIBEE. Prints ok/FAIL lines; exit 1 on failure.
import { jsRequire, startServer, check, failed } from './server_util.mjs';

const OpenAI = jsRequire('openai');
const Ajv = jsRequire('ajv');
const vibee = process.argv[2];

const guard = setTimeout(() => { console.log('FAIL time limit (240 s)'); process.exit(1); }, 240000);
const srv = await startServer(vibee, ['--parallel', '8'], null);
try {
  const client = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 60000 });
  const ajv = new Ajv({ strict: false });

  const params = {
    get_weather: {
      type: 'object',
      properties: { city: { type: 'string', minLength: 1, maxLength: 16 }, unit: { enum: ['celsius', 'fahrenheit'] }, days: { type: 'integer' } },
      required: ['city', 'unit'],
    },
    create_order: {
      type: 'object',
      properties: {
        customer: {
          type: 'object',
          properties: { name: { type: 'string', maxLength: 12 }, address: { type: 'object', properties: { zip: { type: 'string', minLength: 5, maxLength: 5 } }, required: ['zip'] } },
          required: ['name', 'address'],
        },
        items: {
          type: 'array', minItems: 1, maxItems: 3,
          items: { type: 'object', properties: { sku: { enum: ['a1', 'b2', 'c3'] }, qty: { type: 'integer' } }, required: ['sku', 'qty'] },
        },
        gift: { type: 'boolean' },
      },
      required: ['customer', 'items', 'gift'],
    },
    plot: {
      type: 'object',
      properties: { x: { type: 'number' }, ys: { type: 'array', items: { type: 'number' }, maxItems: 4 }, log: { type: 'boolean' }, none: { type: 'null' } },
      required: ['x', 'ys', 'log', 'none'],
    },
    write_file: {
      type: 'object',
      properties: { path: { type: 'string', maxLength: 24 }, text: { type: 'string', maxLength: 32 }, mode: { const: 'w' } },
      required: ['path', 'text', 'mode'],
    },
    lookup: {
      $defs: { key: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] } },
      type: 'object',
      properties: { q: { anyOf: [{ type: 'integer' }, { type: 'string', maxLength: 8 }] }, key: { $ref: '#/$defs/key' }, tag: { enum: [1, 'two', null] } },
      required: ['q', 'key'],
    },
  };
  const tools = Object.entries(params).map(([name, parameters]) => ({ type: 'function', function: { name, description: `the ${name} function`, parameters } }));
  const validators = Object.fromEntries(Object.entries(params).map(([n, s]) => [n, ajv.compile(s)]));
  const user = {
    get_weather: 'What is the weather in Paris?',
    create_order: 'Order two a1 for Ann, zip 75001.',
    plot: 'Plot y = 2x at x = 1.5.',
    write_file: 'Save "say \\"hi\\"" to C:\\temp\\x.txt',
    lookup: 'Look up key 7.',
  };

  // one call's shape, name and arguments; returns '' or what is wrong
  function bad(call, want) {
    if (!call || call.type !== 'function' || typeof call.id !== 'string' || !call.id.startsWith('call_')) return 'shape ' + JSON.stringify(call);
    if (want && call.function?.name !== want) return `name ${call.function?.name}, want ${want}`;
    const v = validators[call.function?.name];
    if (!v) return 'unknown name ' + call.function?.name;
    let args;
    try { args = JSON.parse(call.function.arguments); } catch (e) { return 'JSON.parse: ' + e.message + ' in ' + call.function.arguments; }
    if (!v(args)) return ajv.errorsText(v.errors) + ' in ' + call.function.arguments;
    return '';
  }
  // a streamed answer, accumulated from raw chunks as OpenAI documents the deltas
  async function streamed(body) {
    const stream = await client.chat.completions.create({ ...body, stream: true });
    const calls = [];
    let content = '', finish = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.delta?.content) content += c.delta.content;
      for (const d of c.delta?.tool_calls ?? []) {
        const t = (calls[d.index] ??= { id: '', type: '', function: { name: '', arguments: '' } });
        if (d.id) t.id = d.id;
        if (d.type) t.type = d.type;
        if (d.function?.name) t.function.name += d.function.name;
        if (d.function?.arguments) t.function.arguments += d.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
    return { content, calls, finish };
  }

  // a named function, for each tool: greedy and sampled, streamed and not
  const settings = [{ temperature: 0 }, { temperature: 1, seed: 5 }];
  const jobs = [];
  for (const name of Object.keys(params))
    for (const s of settings)
      for (const stream of [false, true])
        jobs.push({ name, s, stream });
  const results = await Promise.all(jobs.map(async (j) => {
    const body = {
      model: 'm', messages: [{ role: 'user', content: user[j.name] }], max_tokens: 600, ...j.s, tools,
      tool_choice: { type: 'function', function: { name: j.name } }, parallel_tool_calls: false,
    };
    if (j.stream) return { ...j, ...(await streamed(body)) };
    const r = await client.chat.completions.create(body);
    const m = r.choices[0].message;
    return { ...j, content: m.content, calls: m.tool_calls ?? [], finish: r.choices[0].finish_reason, usage: r.usage };
  }));
  let good = 0;
  for (const r of results) {
    const why = r.calls.length !== 1 ? `${r.calls.length} calls` : bad(r.calls[0], r.name);
    const ok = !why && r.finish === 'tool_calls' && (r.stream ? r.content === '' : r.content === null);
    if (ok) good++;
    else check(false, `${r.name} ${JSON.stringify(r.s)} stream ${r.stream}: finish ${r.finish}, content ${JSON.stringify(r.content)}: ${why}`);
  }
  check(good === results.length, `named function: ${good}/${results.length} answers (5 tools x greedy + seed x stream or not) are one call of that function whose arguments validate`);
  const greedy = results.filter((r) => r.s.temperature === 0);
  check(greedy.every((r) => r.calls[0]?.function.arguments === greedy.find((g) => g.name === r.name && !g.stream).calls[0]?.function.arguments),
        'greedy: streamed and non-streamed arguments are equal');
  const ids = new Set(results.flatMap((r) => r.calls.map((c) => c.id)));
  check(ids.size === results.length, `call ids are unique (${ids.size})`);

  // "required": any of the tools; one call, or with parallel_tool_calls one or more
  let reqGood = 0;
  const reqOut = [];
  for (const [k, name] of Object.keys(params).entries()) {
    const r = await client.chat.completions.create({
      model: 'm', messages: [{ role: 'user', content: user[name] }], max_tokens: 600, temperature: 1, seed: 10 + k, tools,
      tool_choice: 'required', parallel_tool_calls: false,
    });
    const calls = r.choices[0].message.tool_calls ?? [];
    const why = calls.length !== 1 ? `${calls.length} calls` : bad(calls[0], null);
    reqOut.push(calls[0]?.function?.name);
    if (!why && r.choices[0].finish_reason === 'tool_calls') reqGood++;
    else check(false, `required (${name}): ${why} finish ${r.choices[0].finish_reason}`);
  }
  check(reqGood === 5, `required, parallel_tool_calls false: 5/5 answers are one valid call of one of the tools (${reqOut.join(', ')})`);
  const par = await client.chat.completions.create({
    model: 'm', messages: [{ role: 'user', content: user.get_weather }], max_tokens: 300, temperature: 0, tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const pc = par.choices[0].message.tool_calls ?? [];
  const pBad = pc.map((c) => bad(c, 'get_weather')).filter((x) => x);
  check(pc.length >= 1 && !pBad.length && ['tool_calls', 'length'].includes(par.choices[0].finish_reason),
        `parallel_tool_calls true: ${pc.length} calls, all valid (finish ${par.choices[0].finish_reason}) ${pBad[0] ?? ''}`);

  // the client's own stream accumulator (ChatCompletionStream) rebuilds the same message
  const acc = await client.beta.chat.completions.stream({
    model: 'm', messages: [{ role: 'user', content: user.create_order }], max_tokens: 600, temperature: 0, tools,
    tool_choice: { type: 'function', function: { name: 'create_order' } }, parallel_tool_calls: false,
  }).finalChatCompletion();
  const accCall = acc.choices[0].message.tool_calls?.[0];
  const plain = results.find((r) => r.name === 'create_order' && r.s.temperature === 0 && !r.stream);
  check(!bad(accCall, 'create_order') && accCall.function.arguments === plain.calls[0]?.function.arguments && acc.choices[0].finish_reason === 'tool_calls',
        `openai ChatCompletionStream.finalChatCompletion(): the same call (${accCall?.function?.arguments})`);

  // a second turn with the assistant's tool_calls and the tool's result
  const first = results.find((r) => r.name === 'get_weather' && r.s.temperature === 0 && !r.stream);
  const turn2 = [
    { role: 'user', content: user.get_weather },
    { role: 'assistant', content: null, tool_calls: first.calls },
    { role: 'tool', tool_call_id: first.calls[0].id, content: '{"temp": 21.5, "sky": "clear"}' },
    { role: 'user', content: 'And tomorrow?' },
  ];
  const t2 = await client.chat.completions.create({
    model: 'm', messages: turn2, max_tokens: 600, temperature: 0, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } },
    parallel_tool_calls: false,
  });
  check(!bad(t2.choices[0].message.tool_calls?.[0], 'get_weather') && t2.usage.prompt_tokens > first.usage.prompt_tokens + 30,
        `second turn with tool_calls and a tool result: a valid call, prompt ${t2.usage.prompt_tokens} > ${first.usage.prompt_tokens} + 30 tokens`);
  const t2none = await client.chat.completions.create({ model: 'm', messages: turn2, max_tokens: 8, temperature: 0, tools, tool_choice: 'none' });
  check(t2none.choices[0].message.tool_calls === undefined && typeof t2none.choices[0].message.content === 'string' &&
        t2none.choices[0].finish_reason !== 'tool_calls', `tool_choice none: plain content (${JSON.stringify(t2none.choices[0].message.content)})`);
  // "auto": free text; whatever comes back is well formed
  const auto = await client.chat.completions.create({ model: 'm', messages: turn2, max_tokens: 40, temperature: 0, tools });
  const am = auto.choices[0].message;
  check(auto.choices[0].finish_reason === 'tool_calls' ? (am.tool_calls ?? []).every((c) => !bad(c, null))
                                                       : typeof am.content === 'string' && am.tool_calls === undefined,
        `tool_choice auto (default with tools): content or valid calls (${auto.choices[0].finish_reason})`);
  const autoS = await streamed({ model: 'm', messages: turn2, max_tokens: 40, temperature: 0, tools, tool_choice: 'auto' });
  check(autoS.finish === auto.choices[0].finish_reason && autoS.content === (am.content ?? ''),
        'tool_choice auto streamed: the same content and finish');

  // 400s naming the field
  const msgs = [{ role: 'user', content: 'hi' }];
  const badReq = [
    [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: 'a+' } } } } }] }, 'tools', 'pattern'],
    [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { n: { type: 'integer', minimum: 0 } } } } }], tool_choice: 'auto' }, 'tools', 'minimum'],
    [{ tools: [{ type: 'function', function: { name: 'has space' } }] }, 'tools', 'name'],
    [{ tools: [{ type: 'code_interpreter' }] }, 'tools', 'function'],
    [{ tools: { a: 1 } }, 'tools', 'array'],
    [{ tools, tool_choice: 'sometimes' }, 'tool_choice', 'required'],
    [{ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', 'nope'],
    [{ tool_choice: 'required' }, 'tool_choice', 'tools'],
    [{ tools, parallel_tool_calls: 'yes' }, 'parallel_tool_calls', 'boolean'],
    [{ tools, tool_choice: 'required', response_format: { type: 'json_object' } }, 'tool_choice', 'combined'],
    [{ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: 'not json' } }] }] }, 'messages', 'arguments'],
  ];
  for (const [extra, field, word] of badReq) {
    let status = 0, param = null, msg = '';
    try { await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 4, ...extra }); }
    catch (e) { status = e.status; param = e.param ?? e.error?.param; msg = e.message; }
    check(status === 400 && param === field && msg.includes(word), `${JSON.stringify(extra).slice(0, 80)}: 400 naming ${field} (${status} ${param}: ${msg})`);
  }
} catch (e) {
  check(false, 'unexpected error: ' + (e.stack || e));
} finally {
  await srv.stop();
  clearTimeout(guard);
}
if (failed()) process.exit(1);
console.log('all passed');
