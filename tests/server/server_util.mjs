// server_util.mjs - start `vibee serve -m sim` (or another model) on a free loopback port for the server tests, read
// the bound port from its first stdout line, fetch /metrics as a map, and stop it with SIGTERM; jsRequire
// loads the npm packages pinned in tests/js.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

// require() for the pinned npm packages of tests/js (openai, ajv, ...)
export const jsRequire = createRequire(new URL('../js/package.json', import.meta.url));

export async function startServer(vibee, extraArgs = [], model = 'sim', startMs = 10000) {
  // model null: no -m (the embedded shipped model)
  const args = ['serve', ...(model ? ['-m', model] : []), '--host', '127.0.0.1', '--port', '0', ...extraArgs];
  const proc = spawn(vibee, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start in ${startMs} ms: ` + stderr)), startMs);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited (${code}): ${stderr}`)); });
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    proc, port, base,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode !== null) return proc.exitCode;
      const done = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig)));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const code = await done;
      clearTimeout(t);
      return code;
    },
  };
}

export async function metrics(base) {
  const text = await (await fetch(base + '/metrics')).text();
  const m = {};
  for (const line of text.split('\n')) {
    const mm = line.match(/^([a-z_]+(?:\{[^}]*\})?) ([-0-9.eE+]+)$/);
    if (mm) m[mm[1]] = Number(mm[2]);
  }
  return m;
}

// Wait until the engine has no running or waiting request (cancellations are asynchronous).
export async function settle(base, ms = 5000) {
  const t0 = Date.now();
  let m = await metrics(base);
  while ((m.vibee_requests_running > 0 || m.vibee_requests_waiting > 0 || m.vibee_queue_length > 0) &&
         Date.now() - t0 < ms) {
    await new Promise((r) => setTimeout(r, 50));
    m = await metrics(base);
  }
  return m;
}

let failures = 0;
export function check(cond, what) {
  if (cond) console.log('ok   ' + what);
  else { failures++; console.log('FAIL ' + what); }
}
export function failed() { return failures; }

// The end of a test script that ran one server: stop it (exit 0 expected), clear the script's
// time guard, print the summary and exit (1 on any failure).
export async function finishServerTest(srv, guard) {
  const code = await srv.stop();
  check(code === 0, `server exits 0 on SIGTERM (${code})`);
  clearTimeout(guard);
  console.log(failures ? `${failures} failed` : 'all passed');
  process.exit(failures ? 1 : 0);
}
