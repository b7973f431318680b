#!/usr/bin/env node
// Throughput and p99 of the worker's routes on one local miniflare (workerd), each compared with
// GET /healthz on the same server in the same run. The machine is small (2 cores shared by the
// load client, workerd and this process), so a single run of each is noisy (±15% seen): each
// route is measured in ROUNDS alternating rounds (healthz, route, healthz, route, ...) and the
// ratio reported is the median of the per-round ratios.
//
//   node perf/throughput.mjs [--rounds 5] [--seconds 4] [--connections 10] [--client wrk|autocannon] [--json out.json]
//
// The client is wrk when installed (a C client leaves more CPU to workerd), else autocannon.
// Loopback only; every run is bounded by --seconds.
import autocannon from 'autocannon';
import { spawn, spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker } from '../tests/support/worker.mjs';
import { plainQuery, safePush, fixture } from '../tests/support/wechat.mjs';
import { mockWeChat } from '../tests/support/mock-wechat.mjs';

const { values: o } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '4' },
    connections: { type: 'string', default: '10' },
    client: { type: 'string' },
    json: { type: 'string' },
    only: { type: 'string' },
  },
});
const rounds = Number(o.rounds);
const seconds = Number(o.seconds);
const connections = Number(o.connections);
const client = o.client ?? (spawnSync('wrk', ['--version']).error ? 'autocannon' : 'wrk');

const mock = mockWeChat({ latencyMs: 0 });
const mf = startWorker({ wechat: mock.handler, bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' }, quiet: true });
const url = (await mf.ready).toString().replace(/\/$/, '');
const dir = mkdtempSync(join(tmpdir(), 'wechat-tp-'));

/** One load run: { rps, p99_ms, non2xx, errors }. Never blocks this process (it drains workerd's logs). */
function load({ path, method = 'GET', body, headers = {} }, duration = seconds) {
  if (client === 'autocannon') {
    return new Promise((resolve, reject) => {
      autocannon({ url: url + path, connections, duration, method, body, headers }, (err, r) =>
        err ? reject(err) : resolve({ rps: r.requests.average, p99_ms: r.latency.p99, non2xx: r.non2xx, errors: r.errors + r.timeouts }));
    });
  }
  const args = ['-t1', `-c${connections}`, `-d${duration}s`, '--latency'];
  if (method !== 'GET') {
    const script = join(dir, `${Math.random().toString(36).slice(2)}.lua`);
    const hdrs = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}\n`).join('');
    writeFileSync(script, `wrk.method = "${method}"\nwrk.body = [==[${body}]==]\n${hdrs}`);
    args.push('-s', script);
  }
  return new Promise((resolve, reject) => {
    const p = spawn('wrk', [...args, url + path]);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('close', () => {
      const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? NaN);
      const p99 = out.match(/\s99%\s+([\d.]+)(us|ms|s)/);
      const p99_ms = p99 ? Number(p99[1]) * { us: 0.001, ms: 1, s: 1000 }[p99[2]] : NaN;
      const non2xx = Number(out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
      const socket = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
      const errors = socket ? socket.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
      resolve({ rps, p99_ms, non2xx, errors });
    });
  });
}

const text = fixture('messages/text.xml').toString();
const safe = safePush(text);
const xml = { 'content-type': 'text/xml' };
const scenarios = {
  // Context, not a route: what any POST with this body costs here (body read, answered 405).
  'floor: POST with the same body, 405': { method: 'POST', path: '/healthz', body: text, headers: xml, floor: true },
  'POST /wechat plain': { method: 'POST', path: `/wechat?${plainQuery()}`, body: text, headers: xml },
  'POST /wechat safe': { method: 'POST', path: `/wechat?${safe.query}`, body: safe.body, headers: xml },
  'POST /api/messages': {
    method: 'POST',
    path: '/api/messages',
    headers: { authorization: 'Bearer test-admin-token', 'content-type': 'application/json' },
    body: JSON.stringify({ touser: 'oyORnuP8q7ou2gfYjqLzSIWZf0rs', msgtype: 'text', text: { content: '您好' } }),
  },
};

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const rows = [];
try {
  await load({ path: '/healthz' }, 2); // warm-up
  for (const [name, { floor, ...scenario }] of Object.entries(scenarios)) {
    if (o.only && !name.includes(o.only)) continue;
    const base = [];
    const run = [];
    for (let i = 0; i < rounds; i++) {
      base.push(await load({ path: '/healthz' }));
      run.push(await load(scenario));
    }
    const ratios = run.map((r, i) => r.rps / base[i].rps);
    rows.push({
      route: name,
      floor: !!floor,
      rps: median(run.map((r) => r.rps)),
      p99_ms: median(run.map((r) => r.p99_ms)),
      healthz_rps: median(base.map((r) => r.rps)),
      healthz_p99_ms: median(base.map((r) => r.p99_ms)),
      ratio: median(ratios),
      ratio_min: Math.min(...ratios),
      ratio_max: Math.max(...ratios),
      non2xx: run.reduce((n, r) => n + r.non2xx, 0),
      errors: run.reduce((n, r) => n + r.errors, 0),
    });
  }
} finally {
  await mf.dispose();
}
console.log(`client=${client} connections=${connections} rounds=${rounds} x ${seconds}s per route (medians)`);
console.log('| route | req/s | p99 ms | /healthz req/s | /healthz p99 ms | ratio (min–max) | non-2xx | errors |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.route} | ${r.rps.toFixed(0)} | ${r.p99_ms.toFixed(1)} | ${r.healthz_rps.toFixed(0)} | ${r.healthz_p99_ms.toFixed(1)} | ${r.ratio.toFixed(2)} (${r.ratio_min.toFixed(2)}–${r.ratio_max.toFixed(2)}) | ${r.floor ? '(405 expected)' : r.non2xx} | ${r.errors} |`);
}
console.log(`token requests during the run: ${mock.tokenRequests()}`);
if (o.json) writeFileSync(o.json, JSON.stringify({ client, rows, tokenRequests: mock.tokenRequests() }, null, 2));
