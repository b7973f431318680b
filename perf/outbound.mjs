#!/usr/bin/env node
// Outbound figures: token requests per 1,000 sends across worker restarts (same KV), and the
// latency a send adds over the mock WeChat API's own latency.
//
//   node perf/outbound.mjs [--sends 1000] [--restarts 5] [--mock-latency 50] [--json out.json]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker, BASE, ADMIN_TOKEN } from '../tests/support/worker.mjs';
import { mockWeChat } from '../tests/support/mock-wechat.mjs';

const { values: o } = parseArgs({ options: {
  sends: { type: 'string', default: '1000' }, restarts: { type: 'string', default: '5' },
  'mock-latency': { type: 'string', default: '50' }, json: { type: 'string' },
} });
const sends = Number(o.sends);
const restarts = Number(o.restarts);
const latency = Number(o['mock-latency']);
const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const body = JSON.stringify({ touser: 'OPENID', msgtype: 'text', text: { content: '您好，您的订单已发货' } });
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };

// 1. Token requests per `sends` sends spread over `restarts` fresh workers sharing one KV.
const dir = mkdtempSync(join(tmpdir(), 'wechat-bench-kv-'));
const mock = mockWeChat();
let ok = 0;
try {
  for (let r = 0; r < restarts; r++) {
    const w = startWorker({ wechat: mock.handler, persist: dir });
    await w.ready;
    const per = Math.ceil(sends / restarts);
    for (let i = 0; i < per; i += 20) {
      const batch = await Promise.all(Array.from({ length: Math.min(20, per - i) }, () =>
        w.dispatchFetch(`${BASE}/api/messages`, { method: 'POST', headers: auth, body }).then(async (res) => { await res.arrayBuffer(); return res.status; })));
      ok += batch.filter((s) => s === 200).length;
    }
    await w.dispose();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const tokenRequests = mock.tokenRequests();

// 2. Added latency: sequential sends with a warm token against a mock that takes `latency` ms.
const slow = mockWeChat({ latencyMs: latency });
const w = startWorker({ wechat: slow.handler });
await w.ready;
const samples = [];
const health = [];
try {
  for (let i = 0; i < 220; i++) {
    const t0 = performance.now();
    await (await w.dispatchFetch(`${BASE}/healthz`)).arrayBuffer();
    if (i >= 20) health.push(performance.now() - t0);
  }
  for (let i = 0; i < 220; i++) {
    const t0 = performance.now();
    const res = await w.dispatchFetch(`${BASE}/api/messages`, { method: 'POST', headers: auth, body });
    await res.arrayBuffer();
    if (i >= 20) samples.push(performance.now() - t0); // first 20: warm-up (token fetch, JIT)
  }
} finally {
  await w.dispose();
}
const added = samples.map((s) => s - latency);
const result = {
  sends: ok, restarts, token_requests: tokenRequests, token_requests_per_1000_sends: (tokenRequests * 1000) / ok,
  mock_latency_ms: latency, added_latency_p50_ms: pct(added, 50), added_latency_p99_ms: pct(added, 99),
  healthz_round_trip_p50_ms: pct(health, 50),
};
console.log(`sends ${ok} across ${restarts} restarts (shared KV): ${tokenRequests} token request(s) -> ${result.token_requests_per_1000_sends.toFixed(2)} per 1,000 sends`);
console.log(`send latency over the mock's ${latency} ms: p50 +${result.added_latency_p50_ms.toFixed(1)} ms, p99 +${result.added_latency_p99_ms.toFixed(1)} ms (${samples.length} sequential sends)`);
console.log(`for scale, a GET /healthz round trip on the same worker (no outbound call): p50 ${result.healthz_round_trip_p50_ms.toFixed(1)} ms`);
if (o.json) writeFileSync(o.json, JSON.stringify(result, null, 2));
