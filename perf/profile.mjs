#!/usr/bin/env node
// A CPU profile of a worker in workerd, through the inspector (Chrome DevTools protocol): self
// time by function (JS and wasm; build with WASM_OPT_FLAGS="-Oz -g" to keep wasm names).
//   node perf/profile.mjs [--build DIR | --plain DIR] [--scenario plain|safe|healthz|404] [--n 3000] [--first] [--top 40]
// The inspector makes console.log dearer than it is without it: compare profiles, not totals.
import { WebSocket } from 'undici';
import { startWorker } from '../tests/support/worker.mjs';
import { plainWorker } from './workers.mjs';
import { plainQuery, safePush, fixture } from '../tests/support/wechat.mjs';
import { parseArgs } from 'node:util';
const { values: o } = parseArgs({ options: { build: { type: 'string', default: new URL('../build', import.meta.url).pathname }, scenario: { type: 'string', default: 'plain' }, n: { type: 'string', default: '3000' }, first: { type: 'boolean', default: false }, plain: { type: 'string' }, rules: { type: 'string' }, top: { type: 'string', default: '40' } } });
const port = 9229 + Math.floor(Math.random() * 500);
const mf = o.plain
  ? plainWorker(o.plain, () => {}, { inspectorPort: port })()
  : startWorker({ buildDir: o.build, quiet: true, bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' }, options: { inspectorPort: port } });
const url = (await mf.ready).toString().replace(/\/$/, '');
const list = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
if (o.rules) { const r = await fetch(`${url}/api/rules`, { method: 'PUT', body: (await import('node:fs')).readFileSync(o.rules), headers: { authorization: 'Bearer test-admin-token' } }); if (r.status !== 200) throw new Error(await r.text()); }
const target = list.find((t) => !t.title?.includes('miniflare') && t.webSocketDebuggerUrl) ?? list[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((r) => ws.addEventListener('open', r));
let id = 0; const pending = new Map();
ws.addEventListener('message', (e) => { const m = JSON.parse(e.data); if (m.id && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); } });
const send = (method, params = {}) => new Promise((r) => { const i = ++id; pending.set(i, r); ws.send(JSON.stringify({ id: i, method, params })); });
const text = fixture('messages/text.xml').toString();
const safe = safePush(text);
const reqs = {
  plain: () => fetch(`${url}/wechat?${plainQuery()}`, { method: 'POST', body: text, headers: { 'content-type': 'text/xml' } }),
  safe: () => fetch(`${url}/wechat?${safe.query}`, { method: 'POST', body: safe.body, headers: { 'content-type': 'text/xml' } }),
  healthz: () => fetch(`${url}/healthz`),
  404: () => fetch(`${url}/nope`),
};
const r = reqs[o.scenario];
await send('Profiler.enable');
await send('Profiler.setSamplingInterval', { interval: 20 });
if (!o.first) for (let i = 0; i < 300; i++) await (await r()).arrayBuffer();
await send('Profiler.start');
const n = o.first ? 1 : Number(o.n);
for (let i = 0; i < n; i += 8) await Promise.all(Array.from({ length: Math.min(8, n - i) }, async () => (await r()).arrayBuffer()));
const { result } = await send('Profiler.stop');
const p = result.profile;
const self = new Map(); const total = p.samples.length;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const counts = new Map(); for (const s of p.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
for (const [nid, c] of counts) { const n = byId.get(nid); const cf = n.callFrame; const key = `${cf.functionName || '(anon)'} ${cf.url ? cf.url.split('/').pop() : ''}:${cf.lineNumber}`; self.set(key, (self.get(key) ?? 0) + c); }
const dt = (p.endTime - p.startTime) / 1000;
console.log(`${o.scenario}: ${n} requests, ${total} samples over ${dt.toFixed(0)} ms; idle excluded below`);
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]);
const busy = rows.filter(([k]) => !k.startsWith('(idle)')).reduce((s, [, c]) => s + c, 0);
for (const [k, c] of rows.slice(0, Number(o.top))) console.log(`${(100 * c / total).toFixed(1).padStart(5)}% ${(100 * c / busy).toFixed(1).padStart(5)}%b  ${k}`);
ws.close(); await mf.dispose(); process.exit(0);
