// chat_page.mjs - the chat page of `vibee serve` (GET /, tools/vibee/chat_page.html).
//   node chat_page.mjs VIBEE http          headers, body = the repository file, 405, the page
//                                          open while the API needs the key
//   node chat_page.mjs VIBEE browser MODEL the page in headless Chromium (MODEL "sim" or "shipped"),
//                                          driven over the DevTools protocol on a pipe
//                                          (--remote-debugging-pipe: no port, no npm package)
// The browser run types and clicks with real input events: a message without the key shows the
// server's 401 message; with the key (typed into the settings) a throttled answer must grow over
// several updates and end; Enter sends, Shift+Enter does not; each request must carry the system
// prompt, the earlier turns (as shown) and the key; each rendered answer must equal the deltas of
// the stream the browser received (parsed here); with the deterministic sim model also the plain
// answer to the same messages; Stop must end an answer midway; markup in a message stays text.
// Prints ok/FAIL lines and "all passed"; exit 1 on failure, 77 when Chromium is not installed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, check, failed } from './server_util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const pageFile = path.join(here, '..', '..', 'tools', 'vibee', 'chat_page.html');
const [vibee, mode = 'http', modelArg = 'sim'] = process.argv.slice(2);
const KEY = 'page-test-key';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let liveBrowser = null; // killed by the time limit

function findChromium() {
  const names = process.env.VB_CHROMIUM ? [process.env.VB_CHROMIUM]
    : ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome'];
  for (const n of names) {
    if (n.includes('/')) { if (fs.existsSync(n)) return n; continue; }
    for (const dir of (process.env.PATH || '').split(':')) {
      const p = path.join(dir, n);
      try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
    }
  }
  return null;
}

// ---- HTTP checks (no browser) ----

async function httpChecks() {
  const srv = await startServer(vibee, ['--api-key', KEY]);
  try {
    const file = fs.readFileSync(pageFile);
    for (const route of ['/', '/index.html']) {
      const r = await fetch(srv.base + route); // no key: the page itself is open
      const body = Buffer.from(await r.arrayBuffer());
      check(r.status === 200, `GET ${route} without the key: 200 (${r.status})`);
      check(r.headers.get('content-type') === 'text/html; charset=utf-8', `GET ${route}: Content-Type text/html; charset=utf-8`);
      check(body.equals(file), `GET ${route}: the body is tools/vibee/chat_page.html (${body.length} vs ${file.length} bytes)`);
      const csp = r.headers.get('content-security-policy') || '';
      check(/default-src 'none'/.test(csp) && /connect-src 'self'/.test(csp) && !/https?:|\*/.test(csp),
            `GET ${route}: CSP refuses everything but the page itself and this server (${csp})`);
      check(r.headers.get('x-content-type-options') === 'nosniff' && r.headers.get('cache-control') === 'no-cache',
            `GET ${route}: nosniff, Cache-Control no-cache`);
    }
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = await fetch(srv.base + '/', { method, body: method === 'DELETE' ? undefined : 'x' });
      const j = await r.json().catch(() => null);
      check(r.status === 405 && r.headers.get('allow') === 'GET, OPTIONS' && j?.error?.message,
            `${method} /: 405, Allow: GET, OPTIONS, JSON error`);
    }
    const a = await fetch(srv.base + '/v1/chat/completions', { method: 'POST', body: '{"messages":[]}' });
    check(a.status === 401, `the API still needs the key (${a.status})`);
    const nf = await fetch(srv.base + '/index.htm');
    check(nf.status === 404, 'GET /index.htm: 404');
    const page = file.toString('utf8');
    check(!/\b(src|href)\s*=\s*"(https?:)?\/\//i.test(page) && !/@import|url\(/i.test(page),
          'the page references nothing outside itself');
  } finally {
    await srv.stop();
  }
}

// ---- the DevTools protocol over --remote-debugging-pipe (fd 3: commands in, fd 4: out; NUL-separated JSON) ----

class Browser {
  constructor(exe) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb_chat_page_'));
    const args = ['--headless=new', '--remote-debugging-pipe', `--user-data-dir=${this.dir}`, '--no-first-run',
                  '--no-default-browser-check', '--disable-gpu', '--disable-dev-shm-usage', '--disable-extensions',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--mute-audio',
                  '--window-size=1000,800'];
    // --no-sandbox: Chromium refuses to run as root with its sandbox, and containers often lack the
    // user namespaces it needs; the browser opens only the page under test on loopback.
    args.push('--no-sandbox', 'about:blank');
    this.proc = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    liveBrowser = this.proc;
    this.stderr = '';
    this.proc.stderr.on('data', (d) => { if (this.stderr.length < 20000) this.stderr += d; });
    this.exited = new Promise((r) => this.proc.on('exit', r));
    this.next = 0;
    this.pending = new Map();
    this.handlers = new Set();
    let buf = Buffer.alloc(0);
    this.proc.stdio[4].on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (let i; (i = buf.indexOf(0)) >= 0; buf = buf.subarray(i + 1)) this.#dispatch(JSON.parse(buf.subarray(0, i)));
    });
    this.proc.on('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error('chromium exited: ' + this.stderr.slice(-800)));
      this.pending.clear();
    });
  }

  #dispatch(m) {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (!p) return;
      if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
      else p.resolve(m.result);
    } else {
      for (const h of this.handlers) h(m);
    }
  }

  send(method, params = {}, sessionId = this.session) {
    const id = ++this.next;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.proc.stdio[3].write(JSON.stringify(msg) + '\0');
    });
  }

  on(handler) { this.handlers.add(handler); }

  // Attach to the first page with a flat session; later sends go to it.
  async attach() {
    const { targetInfos } = await this.send('Target.getTargets', {}, null);
    const page = targetInfos.find((t) => t.type === 'page');
    const { sessionId } = await this.send('Target.attachToTarget', { targetId: page.targetId, flatten: true }, null);
    this.session = sessionId;
  }

  async eval(expression) {
    const r = await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error('page: ' + (r.exceptionDetails.exception?.description || r.exceptionDetails.text));
    return r.result.value;
  }

  async until(expression, ms, what) {
    const t0 = Date.now();
    for (;;) {
      const v = await this.eval(expression);
      if (v) return v;
      if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await sleep(15);
    }
  }

  // A real mouse click at the middle of the element.
  async click(selector) {
    const r = await this.eval(`(() => { const e = document.querySelector(${JSON.stringify(selector)});
      e.scrollIntoView({block: 'center'}); const b = e.getBoundingClientRect();
      return {x: b.left + b.width / 2, y: b.top + b.height / 2}; })()`);
    const base = { x: r.x, y: r.y, button: 'left', clickCount: 1 };
    await this.send('Input.dispatchMouseEvent', { ...base, type: 'mouseMoved', button: 'none', clickCount: 0 });
    await this.send('Input.dispatchMouseEvent', { ...base, type: 'mousePressed' });
    await this.send('Input.dispatchMouseEvent', { ...base, type: 'mouseReleased' });
  }

  async type(selector, text) {
    await this.click(selector);
    await this.send('Input.insertText', { text });
  }

  async enter(shift = false) {
    const k = { key: 'Enter', code: 'Enter', windowsVirtualKeyCode: 13, nativeVirtualKeyCode: 13, modifiers: shift ? 8 : 0 };
    await this.send('Input.dispatchKeyEvent', { ...k, type: 'keyDown', text: '\r', unmodifiedText: '\r' });
    await this.send('Input.dispatchKeyEvent', { ...k, type: 'keyUp' });
  }

  async close() {
    try { await Promise.race([this.send('Browser.close', {}, null), sleep(3000)]); } catch { /* exited */ }
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// A loopback proxy in front of the server. With pace.ms 0 it passes every byte on unchanged.
// With pace.ms > 0 it cuts each chunk's delta into pieces of 3 characters, each its own event
// (the same stream to a client: deltas concatenate), and holds each event for pace.ms: an
// answer then arrives over seconds in many events, whatever the model's speed (the sim model
// writes 48 tokens before the server's first read, i.e. one delta). A client that goes away
// ends the upstream request too.
function splitEvent(event) {
  const m = event.match(/^data: (\{.*\})\n\n$/s);
  const c = m && JSON.parse(m[1]);
  const content = c?.choices?.[0]?.delta?.content;
  if (!content || c.choices[0].finish_reason) return [event];
  const chars = [...content], out = [];
  for (let i = 0; i < chars.length; i += 3) {
    const piece = structuredClone(c);
    piece.choices[0].delta = i ? { content: chars.slice(i, i + 3).join('') }
                               : { ...c.choices[0].delta, content: chars.slice(0, 3).join('') };
    out.push('data: ' + JSON.stringify(piece) + '\n\n');
  }
  return out;
}

function pacingProxy(target, pace) {
  const server = http.createServer((req, res) => {
    const up = http.request(target + req.url, { method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      if (!/event-stream/.test(ur.headers['content-type'] || '')) { ur.pipe(res); return; }
      let buf = '', chain = Promise.resolve();
      ur.setEncoding('utf8');
      ur.on('data', (d) => {
        buf += d;
        for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) {
          for (const event of pace.ms ? splitEvent(buf.slice(0, i + 2)) : [buf.slice(0, i + 2)])
            chain = chain.then(() => (pace.ms ? sleep(pace.ms) : null)).then(() => { if (!res.destroyed) res.write(event); });
        }
      });
      ur.on('end', () => { chain = chain.then(() => res.end(buf)); });
    });
    up.on('error', () => res.destroy());
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// The assistant text of an SSE body (what the page should have rendered), parsed independently.
function sseText(body) {
  let text = '', done = false, finish = null, events = 0;
  for (const event of body.split(/\r?\n\r?\n/)) {
    const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
    if (!data) continue;
    if (data === '[DONE]') { done = true; continue; }
    const c = JSON.parse(data);
    text += c.choices?.[0]?.delta?.content ?? '';
    finish = c.choices?.[0]?.finish_reason ?? finish;
    events++;
  }
  return { text, done, finish, events };
}

async function browserChecks(exe) {
  const shipped = modelArg === 'shipped';
  const maxTokens = 48;
  const srv = await startServer(vibee, ['--api-key', KEY], shipped ? null : 'sim');
  const pace = { ms: 0 };
  const proxy = await pacingProxy(srv.base, pace);
  const base = `http://127.0.0.1:${proxy.address().port}`;
  const b = new Browser(exe);
  try {
    await b.attach();
    const problems = [];   // console errors, CSP violations, uncaught exceptions
    const requests = [];   // the page's POST /v1/chat/completions: {id, body, headers, response}
    b.on((m) => {
      if (m.method === 'Runtime.exceptionThrown') problems.push('exception: ' + JSON.stringify(m.params.exceptionDetails).slice(0, 300));
      if (m.method === 'Runtime.consoleAPICalled' && m.params.type === 'error') problems.push('console.error: ' + JSON.stringify(m.params.args).slice(0, 300));
      if (m.method === 'Log.entryAdded' && m.params.entry.level === 'error' && !/status of 401/.test(m.params.entry.text))
        problems.push('log: ' + m.params.entry.text.slice(0, 300));
      if (m.method === 'Network.requestWillBeSent' && m.params.request.method === 'POST' &&
          m.params.request.url.endsWith('/v1/chat/completions'))
        requests.push({ id: m.params.requestId, body: JSON.parse(m.params.request.postData), headers: m.params.request.headers });
      if (m.method === 'Network.loadingFinished') {
        const r = requests.find((q) => q.id === m.params.requestId);
        if (r) r.finished = true;
      }
    });
    for (const d of ['Page', 'Runtime', 'Network', 'Log']) await b.send(d + '.enable');
    const loaded = new Promise((r) => b.on((m) => { if (m.method === 'Page.loadEventFired') r(); }));
    await b.send('Page.navigate', { url: base + '/' });
    await loaded;
    check(await b.eval('document.title') === 'vibee chat', 'the page loads in headless Chromium');
    // Every change of an answer's text, with its state, for the growth check.
    await b.eval(`window.__updates = []; new MutationObserver(() => {
        const all = document.querySelectorAll('.msg.assistant');
        const m = all[all.length - 1];
        if (m) window.__updates.push({n: all.length, len: m.querySelector('.text').textContent.length, state: m.dataset.state || ''});
      }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true, attributes: true}); true`);

    const msgs = () => b.eval(`[...document.querySelectorAll('.msg')].map((m) => ({role: m.classList.contains('user') ? 'user' : 'assistant',
        text: m.querySelector('.text').textContent, note: m.querySelector('.note').textContent, state: m.dataset.state || ''}))`);
    const lastState = `(() => { const a = document.querySelectorAll('.msg.assistant'); return a.length ? a[a.length - 1].dataset.state : ''; })()`;
    const waitEnd = (n, ms = 30000) => b.until(`document.querySelectorAll('.msg.assistant').length === ${n} && ${lastState} !== 'streaming' && ${lastState}`, ms, `answer ${n} to end`);
    const bodyOf = async (r) => {
      const t0 = Date.now();
      while (!r.finished && Date.now() - t0 < 10000) await sleep(20);
      const { body, base64Encoded } = await b.send('Network.getResponseBody', { requestId: r.id });
      if (base64Encoded) return Buffer.from(body, 'base64').toString('utf8');
      // text/event-stream carries no charset: DevTools gives the bytes as Latin-1 characters (SSE is UTF-8)
      return /[^\x00-\xff]/.test(body) ? body : Buffer.from(body, 'latin1').toString('utf8');
    };

    // 1. No key yet: the server's 401 message is shown and the text comes back to the box.
    await b.type('#input', 'hello');
    await b.click('#send');
    await waitEnd(1);
    let m = await msgs();
    check(m.length === 2 && m[1].state === 'error' && /missing or wrong API key/.test(m[1].note),
          `without the key: the server's 401 message is shown (${JSON.stringify(m[1]?.note)})`);
    check(await b.eval(`document.getElementById('input').value`) === 'hello' && await b.eval(`document.getElementById('settings-box').open`),
          'the text is back in the box, the settings are open');

    // 2. Key, system prompt, temperature 0, max tokens; Shift+Enter adds a line, sends nothing.
    await b.type('#api-key', KEY);
    await b.type('#system', 'Answer briefly.');
    await b.eval(`document.getElementById('temperature').value = ''; document.getElementById('max-tokens').value = ''; true`);
    await b.type('#temperature', '0');
    await b.type('#max-tokens', String(maxTokens));
    const modelId = (await (await fetch(srv.base + '/v1/models', { headers: { Authorization: 'Bearer ' + KEY } })).json()).data[0].id;
    await b.until(`document.getElementById('model').textContent === ${JSON.stringify(modelId)}`, 5000, 'the model name');
    check(true, `with the key typed in, the header shows the model (${modelId})`);
    await b.click('#input');
    await b.eval(`const i = document.getElementById('input'); i.selectionStart = i.selectionEnd = i.value.length; true`);
    await b.enter(true);
    await b.send('Input.insertText', { text: 'there' });
    await sleep(100);
    check(await b.eval(`document.getElementById('input').value`) === 'hello\nthere' && requests.length === 1,
          'Shift+Enter adds a new line and sends nothing');

    // 3. Send (click), the answer paced (3 characters per 20 ms): it grows, then ends.
    pace.ms = 20;
    await b.click('#send');
    await b.until(`${lastState} === 'streaming'`, 5000, 'answer 2 to start');
    const moments = [];
    while (await b.eval(lastState) === 'streaming') {
      moments.push(await b.eval(`(() => { const a = document.querySelectorAll('.msg.assistant .text'); return a[a.length - 1].textContent.length; })()`));
      await sleep(100);
    }
    await waitEnd(2);
    m = await msgs();
    const a1 = m[3];
    const ups = (await b.eval('window.__updates')).filter((u) => u.n === 2 && u.state === 'streaming').map((u) => u.len);
    const growth = [...new Set(ups)].filter((n) => n > 0);
    check(a1.state === 'done' && a1.text.length > 0, `answer 1 ends (${a1.text.length} chars, note ${JSON.stringify(a1.note)})`);
    check(growth.length >= 3 && growth.every((n, i) => i === 0 || n > growth[i - 1]) && growth[0] < a1.text.length,
          `answer 1 grows over ${growth.length} updates while streaming (lengths ${growth.slice(0, 8).join(',')}${growth.length > 8 ? ',...' : ''}; sampled ${moments.slice(0, 10).join(',')})`);
    check(m[2].text === 'hello\nthere', 'the user message is shown as typed');
    const r1 = requests[1];
    check(r1 && r1.body.stream === true && r1.body.temperature === 0 && r1.body.max_tokens === maxTokens &&
          r1.headers.Authorization === 'Bearer ' + KEY,
          'request 1: stream, temperature 0, max_tokens, Authorization: Bearer KEY');
    check(JSON.stringify(r1?.body.messages) === JSON.stringify([{ role: 'system', content: 'Answer briefly.' },
                                                                 { role: 'user', content: 'hello\nthere' }]),
          'request 1: the system prompt and the message (the failed turn is not kept)');
    const s1 = sseText(await bodyOf(r1));
    check(s1.done && s1.text === a1.text, `answer 1 shown = the deltas of the stream received (${s1.text.length} chars)` +
          (s1.text === a1.text ? '' : `: ${JSON.stringify(a1.text)} vs ${JSON.stringify(s1.text)}`));
    const direct = async (messages) => {
      const r = await fetch(srv.base + '/v1/chat/completions', {
        method: 'POST', headers: { Authorization: 'Bearer ' + KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ messages, temperature: 0, max_tokens: maxTokens }) });
      return (await r.json()).choices[0].message.content;
    };
    const note1 = { length: 'cut at max tokens', stop: '' }[s1.finish] ?? 'finish: ' + s1.finish;
    check(a1.note === note1, `answer 1's note tells the finish reason ${s1.finish} (${JSON.stringify(a1.note)})`);
    if (!shipped) check(a1.text === await direct(r1.body.messages), 'answer 1 = the plain answer to the same messages (sim, greedy)');

    // 4. Enter sends; the request carries the conversation; markup stays text.
    pace.ms = 0;
    const hostile = 'and <img src=x onerror="window.__pwned=1"><b>bold</b>?';
    await b.type('#input', hostile);
    await b.enter();
    await waitEnd(3);
    m = await msgs();
    const r2 = requests[2];
    const expect2 = [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: 'hello\nthere' },
                     { role: 'assistant', content: a1.text }, { role: 'user', content: hostile }];
    check(r2 && JSON.stringify(r2.body.messages) === JSON.stringify(expect2), 'Enter sends; request 2 carries system, turn 1 (as shown) and the new message');
    check(m[4].text === hostile && await b.eval(`document.querySelectorAll('#messages img, #messages b').length === 0 && window.__pwned === undefined`),
          'markup in a message is shown as text (no element, no script)');
    const s2 = sseText(await bodyOf(r2));
    check(m[5].state === 'done' && s2.done && s2.text === m[5].text, `answer 2 shown = the deltas of its stream, unpaced (${s2.text.length} chars in ${s2.events} events)`);
    if (!shipped) check(m[5].text === await direct(expect2), 'answer 2 = the plain answer to the same conversation (sim, greedy)');

    // 5. Stop midway (slow stream): the answer keeps what came, the page is ready again.
    pace.ms = 100;
    await b.type('#input', 'more');
    await b.click('#send');
    await b.until(`(() => { const a = document.querySelectorAll('.msg.assistant .text'); return a.length === 4 && a[3].textContent.length > 0; })()`,
                  10000, 'answer 3 to begin');
    await b.click('#stop');
    await waitEnd(4);
    pace.ms = 0;
    m = await msgs();
    const a3 = m[7];
    const full3 = shipped ? null : await direct(requests[3].body.messages);
    check(a3.state === 'stopped' && a3.text.length > 0 && (shipped || (full3.startsWith(a3.text) && a3.text.length < full3.length)),
          `Stop ends the answer midway (${a3.text.length}${full3 ? ' of ' + full3.length : ''} chars kept)`);
    check(await b.eval(`!document.getElementById('send').disabled && document.getElementById('stop').disabled`), 'after Stop: Send on, Stop off');
    await b.type('#input', 'go on');
    await b.enter();
    await waitEnd(5);
    const r4 = requests[4];
    check(r4 && r4.body.messages.length === 8 && r4.body.messages[6].role === 'assistant' && r4.body.messages[6].content === a3.text,
          'the next request carries the stopped answer as shown');

    if (process.env.VB_CHAT_PAGE_SCREENSHOT) { // a look at the page for people: PNG of the conversation so far
      const { data } = await b.send('Page.captureScreenshot', { format: 'png' });
      fs.writeFileSync(process.env.VB_CHAT_PAGE_SCREENSHOT, Buffer.from(data, 'base64'));
    }

    // 6. New chat forgets the conversation.
    await b.click('#new-chat');
    check(await b.eval(`document.querySelectorAll('.msg').length`) === 0, 'New chat empties the list');
    await b.type('#input', 'fresh');
    await b.enter();
    await waitEnd(1);
    check(JSON.stringify(requests[5]?.body.messages) === JSON.stringify([{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: 'fresh' }]),
          'after New chat the request has no earlier turns');
    check(problems.length === 0, `no console errors, CSP violations or exceptions (${problems.slice(0, 3).join(' | ')})`);
  } finally {
    await b.close();
    proxy.close();
    await srv.stop();
  }
}

const guard = setTimeout(() => {
  console.log('FAIL time limit (90 s)');
  if (liveBrowser) liveBrowser.kill('SIGKILL');
  process.exit(1);
}, 90000);
try {
  if (mode === 'http') await httpChecks();
  else {
    const exe = findChromium();
    if (!exe) {
      console.log('SKIP chromium not found (scripts/install_deps.sh installs the Debian package chromium; VB_CHROMIUM=PATH names one)');
      process.exit(77);
    }
    await browserChecks(exe);
  }
} catch (e) {
  check(false, 'unexpected error: ' + (e.stack || e));
}
clearTimeout(guard);
if (failed()) process.exit(1);
console.log('all passed');
