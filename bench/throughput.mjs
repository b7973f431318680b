#!/usr/bin/env node
// Throughput and p99 of the worker's routes on one local miniflare (workerd), each next to
// GET /healthz measured on the same server in the same run. Prints a table and JSON.
//
//   node bench/throughput.mjs [--duration 10] [--connections 10] [--json out.json]
//
// Loopback only; bounded by --duration per scenario.
import autocannon from 'autocannon';
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { startWorker } from '../tests/support/worker.mjs';
import { plainQuery, safePush, fixture } from '../tests/support/wechat.mjs';
import { mockWeChat } from '../tests/support/mock-wechat.mjs';

const { values: o } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10' },
    json: { type: 'string' },
    only: { type: 'string' },
  },
});
const duration = Number(o.duration);
const connections = Number(o.connections);

const mock = mockWeChat({ latencyMs: 0 });
const mf = startWorker({ wechat: mock.handler, bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' } });
const url = (await mf.ready).toString().replace(/\/$/, '');

function run(title, { floor, ...opts }) {
  return new Promise((resolve, reject) => {
    autocannon({ url: url + opts.path, connections, duration, ...opts, title }, (err, r) => {
      if (err) return reject(err);
      resolve({
        title,
        rps: r.requests.average,
        p99_ms: r.latency.p99,
        non2xx: r.non2xx,
        errors: r.errors + r.timeouts,
      });
    });
  });
}

const text = fixture('messages/text.xml').toString();
const safe = safePush(text);
const scenarios = {
  // Context, not a route: what any POST with this body costs on this machine (answered 405 unread).
  'floor: POST, same body, 405 unread': { method: 'POST', path: '/healthz', body: text, floor: true },
  'POST /wechat plain': { method: 'POST', path: `/wechat?${plainQuery()}`, body: text },
  'POST /wechat safe': { method: 'POST', path: `/wechat?${safe.query}`, body: safe.body },
  'POST /api/messages': {
    method: 'POST',
    path: '/api/messages',
    headers: { authorization: 'Bearer test-admin-token', 'content-type': 'application/json' },
    body: JSON.stringify({ touser: 'oyORnuP8q7ou2gfYjqLzSIWZf0rs', msgtype: 'text', text: { content: '您好' } }),
  },
};

const rows = [];
try {
  // Warm up the isolate (and the token cache) before measuring.
  await run('warmup', { path: '/healthz', duration: 2 });
  for (const [name, opts] of Object.entries(scenarios)) {
    if (o.only && !name.includes(o.only)) continue;
    const base = await run('GET /healthz', { path: '/healthz' });
    const r = await run(name, opts);
    rows.push({ route: name, floor: !!opts.floor, ...r, healthz_rps: base.rps, healthz_p99_ms: base.p99_ms, ratio: r.rps / base.rps });
  }
} finally {
  await mf.dispose();
}
console.log(`connections=${connections} duration=${duration}s per scenario`);
console.log('| route | req/s | p99 ms | /healthz req/s | /healthz p99 ms | ratio | non-2xx |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.route} | ${r.rps.toFixed(0)} | ${r.p99_ms} | ${r.healthz_rps.toFixed(0)} | ${r.healthz_p99_ms} | ${r.ratio.toFixed(2)} | ${r.non2xx} |`);
}
console.log(`token requests during the run: ${mock.tokenRequests()}`);
if (o.json) writeFileSync(o.json, JSON.stringify({ rows, tokenRequests: mock.tokenRequests() }, null, 2));
