// structured_output.mjs - response_format json_schema / json_object and the grammar extension of
// `vibee serve` on the shipped model (embedded, no -m), through the official npm client: for a set
// of schemas (nested objects, arrays of objects, enums, numbers, strings with escapes, optional
// properties, anyOf, $ref) and each decoder (ar, verify, wedlm: forced to exact mode by the
// grammar), greedy and sampled with seeds, every output must finish ("stop"), parse as JSON and
// validate against its schema with ajv (an independent validator); greedy outputs of the three
// decoders must be equal (constrained decoding stays lossless). A GBNF grammar's outputs must
// match an equivalent regular expression; bad schemas and grammars get a 400 naming the field.
// Usage: node structured_output.mjs VIBEE. Prints ok/FAIL lines; exit 1 on failure.
import { jsRequire, startServer, check, failed } from './server_util.mjs';

const OpenAI = jsRequire('openai');
const Ajv = jsRequire('ajv');
const vibee = process.argv[2];

const guard = setTimeout(() => { console.log('FAIL time limit (240 s)'); process.exit(1); }, 240000);
const srv = await startServer(vibee, ['--parallel', '8'], null);
try {
  const client = new OpenAI({ apiKey: 'none', baseURL: srv.base + '/v1', maxRetries: 0, timeout: 60000 });
  const ajv = new Ajv({ strict: false });

  const schemas = {
    person: {
      type: 'object',
      properties: {
        name: { type: 'string', maxLength: 16 },
        age: { type: 'integer' },
        address: {
          type: 'object',
          properties: { city: { type: 'string', minLength: 1, maxLength: 12 }, zip: { type: 'string', minLength: 5, maxLength: 5 } },
          required: ['city', 'zip'],
        },
      },
      required: ['name', 'age', 'address'],
    },
    order: {
      type: 'object',
      properties: {
        items: {
          type: 'array', minItems: 1, maxItems: 3,
          items: { type: 'object', properties: { kind: { enum: ['apple', 'pear', 'fig'] }, count: { type: 'integer' } }, required: ['kind', 'count'] },
        },
        paid: { type: 'boolean' },
        note: { type: ['string', 'null'], maxLength: 10 },
      },
      required: ['items', 'paid'],
    },
    numbers: {
      type: 'object',
      properties: { x: { type: 'number' }, y: { type: 'number' }, flags: { type: 'array', items: { type: 'boolean' }, maxItems: 4 }, none: { type: 'null' } },
      required: ['x', 'y', 'flags', 'none'],
    },
    escapes: {
      type: 'object',
      properties: { path: { type: 'string', maxLength: 24 }, quote: { type: 'string', maxLength: 24 }, version: { const: 'v1' } },
      required: ['path', 'quote', 'version'],
    },
    variants: {
      $defs: { leaf: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] } },
      type: 'object',
      properties: { a: { anyOf: [{ type: 'integer' }, { type: 'string', maxLength: 6 }] }, b: { $ref: '#/$defs/leaf' }, c: { enum: [1, 'two', null, true] } },
      required: ['a', 'c'],
    },
  };
  const prompts = {
    person: 'person = ',
    order: 'order = ',
    numbers: 'point = ',
    escapes: 'paths = {"path": "C:\\\\temp\\\\x", "quote": "say \\"hi\\""}\nother = ',
    variants: 'data = ',
  };
  const decoders = ['ar', 'verify', 'wedlm'];
  const settings = [{ temperature: 0 }, { temperature: 1, seed: 1 }, { temperature: 1, seed: 2 }, { temperature: 1.2, seed: 3 }];

  const jobs = [];
  for (const [name, schema] of Object.entries(schemas))
    for (const decoder of decoders)
      for (const s of settings)
        jobs.push({ name, schema, decoder, s });
  const results = await Promise.all(jobs.map(async (j) => {
    const r = await client.completions.create({
      model: 'm', prompt: prompts[j.name], max_tokens: 1000, ...j.s, decoder: j.decoder,
      response_format: { type: 'json_schema', json_schema: { name: j.name, schema: j.schema } },
    });
    return { ...j, text: r.choices[0].text, finish: r.choices[0].finish_reason, used: r.vibee?.decoder };
  }));
  let valid = 0;
  for (const r of results) {
    let parsed, err = '';
    try { parsed = JSON.parse(r.text); } catch (e) { err = 'JSON.parse: ' + e.message; }
    const validate = ajv.compile(r.schema);
    const ok = !err && validate(parsed);
    if (!err && !ok) err = ajv.errorsText(validate.errors);
    if (ok && r.finish === 'stop') valid++;
    else check(false, `${r.name} ${r.decoder} ${JSON.stringify(r.s)}: finish ${r.finish}, ${err} in ${JSON.stringify(r.text)}`);
  }
  check(valid === results.length, `${valid}/${results.length} outputs (5 schemas x 3 decoders x greedy + 3 seeds) finish, parse and validate with ajv`);
  for (const name of Object.keys(schemas)) {
    const greedy = results.filter((r) => r.name === name && r.s.temperature === 0);
    check(greedy.every((r) => r.text === greedy[0].text && r.used === r.decoder),
          `${name}: greedy ar, verify and wedlm outputs are equal (${JSON.stringify(greedy[0].text)})`);
  }
  const sampled = new Set(results.filter((r) => r.name === 'order' && r.decoder === 'ar').map((r) => r.text));
  check(sampled.size >= 3, `sampling with different seeds gives different valid outputs (${sampled.size} distinct of 4)`);

  // chat completions with json_schema, and json_object (any object)
  const chat = await client.chat.completions.create({
    model: 'm', messages: [{ role: 'user', content: 'a person please' }], max_tokens: 1000, temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: schemas.person } },
  });
  const chatText = chat.choices[0].message.content;
  let chatOk = false;
  try { chatOk = ajv.validate(schemas.person, JSON.parse(chatText)); } catch { chatOk = false; }
  check(chatOk && chat.choices[0].finish_reason === 'stop', `chat completion with json_schema validates (${JSON.stringify(chatText)})`);
  let objOk = 0;
  for (const seed of [1, 2, 3, 4]) {
    const r = await client.completions.create({ model: 'm', prompt: 'x = ', max_tokens: 400, temperature: 0.7, seed, response_format: { type: 'json_object' } });
    const c = r.choices[0];
    // an unbounded grammar: a finished output must be one JSON object; a cut one a prefix of one
    if (c.finish_reason === 'stop') {
      try { const v = JSON.parse(c.text); if (v && typeof v === 'object' && !Array.isArray(v)) objOk++; } catch { /* counted as failure */ }
    } else if (c.text.trimStart().startsWith('{')) objOk++;
  }
  check(objOk === 4, `json_object: every output is a JSON object (or, cut by max_tokens, starts one) (${objOk}/4)`);

  // the grammar extension: outputs match an equivalent regular expression
  const gbnf = 'root ::= "def " name "(" args? "):" \nname ::= [a-z_] [a-z_0-9]{0,11}\nargs ::= name ( ", " name ){0,3}';
  const re = /^def [a-z_][a-z_0-9]{0,11}\((?:[a-z_][a-z_0-9]{0,11}(?:, [a-z_][a-z_0-9]{0,11}){0,3})?\):$/;
  let gOk = 0;
  const gOut = [];
  for (const decoder of decoders)
    for (const s of settings) {
      const r = await client.completions.create({ model: 'm', prompt: 'import os\n\n', max_tokens: 200, ...s, decoder, grammar: gbnf });
      gOut.push(r.choices[0].text);
      if (re.test(r.choices[0].text) && r.choices[0].finish_reason === 'stop') gOk++;
    }
  check(gOk === decoders.length * settings.length, `grammar: ${gOk}/${decoders.length * settings.length} outputs match the regex (${JSON.stringify(gOut.slice(0, 2))})`);

  // 400s naming the field
  const bad = [
    [{ response_format: { type: 'json_schema', json_schema: { schema: { type: 'string', pattern: 'a+' } } } }, 'response_format', 'pattern'],
    [{ response_format: { type: 'json_schema', json_schema: { schema: { type: 'object', required: ['q'], properties: {} } } } }, 'response_format', 'required'],
    [{ response_format: { type: 'json_schema' } }, 'response_format', 'json_schema'],
    [{ response_format: { type: 'yaml' } }, 'response_format', 'json_object'],
    [{ grammar: 'root ::= root "x"' }, 'grammar', 'left recursion'],
    [{ grammar: 'root ::= "unterminated' }, 'grammar', 'unterminated'],
    [{ grammar: 42 }, 'grammar', 'string'],
    [{ grammar: 'root ::= "a"', response_format: { type: 'json_object' } }, 'grammar', 'combined'],
  ];
  for (const [extra, field, word] of bad) {
    let status = 0, param = null, msg = '';
    try { await client.completions.create({ model: 'm', prompt: 'x', max_tokens: 4, ...extra }); }
    catch (e) { status = e.status; param = e.param ?? e.error?.param; msg = e.message; }
    check(status === 400 && param === field && msg.includes(word), `${JSON.stringify(extra).slice(0, 70)}: 400 naming ${field} (${status} ${param}: ${msg})`);
  }
} catch (e) {
  check(false, 'unexpected error: ' + (e.stack || e));
} finally {
  await srv.stop();
  clearTimeout(guard);
}
if (failed()) process.exit(1);
console.log('all passed');
