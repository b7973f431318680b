#!/usr/bin/env node
// A user's timeline with a full ledger: 90 days of 10,000 pushes a day (900,000 push rows, and
// an effect row for every tenth push) in miniflare's D1, spread over 5,000 users, then
// GET /api/ledger timed for users with few and with many rows: the first page, a later page
// through its cursor, and a span of one day. The bar: a page in under 50 ms locally.
//
//   node perf/ledger.mjs [--days 90] [--per-day 10000] [--users 5000] [--requests 30]
import { parseArgs } from 'node:util';
import { startWorker, BASE, ADMIN_TOKEN } from '../tests/support/worker.mjs';

const { values: o } = parseArgs({
  options: {
    days: { type: 'string', default: '90' },
    'per-day': { type: 'string', default: '10000' },
    users: { type: 'string', default: '5000' },
    requests: { type: 'string', default: '30' },
  },
});
const [DAYS, PER_DAY, USERS, REQUESTS] = [o.days, o['per-day'], o.users, o.requests].map(Number);
const APPID = 'wx5823bf96d3bd56c7';
const now = Math.floor(Date.now() / 1000);
const start = now - DAYS * 86400;

const mf = startWorker({ quiet: true });
await mf.ready;
const db = await mf.getD1Database('WECHAT_DB');

// Filled by SQLite itself (a recursive CTE per chunk of 100,000 rows; D1 binds JS numbers as
// REAL, so the integers are cast): pushes evenly over the
// days, users drawn round-robin except "oHeavy", who wrote one push in 50 (18,000 rows with the
// defaults).
const total = DAYS * PER_DAY;
const filled = Date.now();
for (let from = 0; from < total; from += 100_000) {
  const to = Math.min(total, from + 100_000) - 1;
  await db.prepare(`
    INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail)
    WITH RECURSIVE n(i) AS (SELECT CAST(?1 AS INTEGER) UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
    SELECT ?3, CASE WHEN i % 50 = 0 THEN 'oHeavy' ELSE 'oUser' || (i % CAST(?4 AS INTEGER)) END,
           CAST(?5 AS INTEGER) + i * 86400 / CAST(?6 AS INTEGER), 'push', 'k' || i, 'text', 'transfer', NULL, NULL FROM n`)
    .bind(from, to, APPID, USERS, start, PER_DAY).run();
  await db.prepare(`
    INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail)
    SELECT appid, openid, at, 'effect', NULL, 'notice_closed', 'sent', NULL, NULL FROM ledger
    WHERE entry = 'push' AND id > ?1 AND id <= ?2 AND id % 10 = 0`).bind(from, to + 1).run();
}
const rows = await db.prepare('SELECT count(*) AS n FROM ledger').first('n');
const heavy = await db.prepare("SELECT count(*) AS n FROM ledger WHERE openid = 'oHeavy'").first('n');
const light = await db.prepare("SELECT count(*) AS n FROM ledger WHERE openid = 'oUser7'").first('n');
console.log(`ledger: ${rows} rows (${total} pushes over ${DAYS} days, ${USERS} users; oHeavy ${heavy} rows), filled in ${((Date.now() - filled) / 1000).toFixed(0)} s`);

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
async function timed(query) {
  const t = process.hrtime.bigint();
  const res = await mf.dispatchFetch(`${BASE}/api/ledger?${query}`, { headers: auth });
  const page = await res.json();
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (res.status !== 200) throw new Error(`${query}: ${res.status} ${JSON.stringify(page)}`);
  return { ms, page };
}
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

const cases = [];
const { page: heavyFirst } = await timed('openid=oHeavy');
cases.push([`a user with ${light} rows: first page`, () => 'openid=oUser7']);
cases.push([`oHeavy (${heavy} rows): first page`, () => 'openid=oHeavy']);
cases.push(['oHeavy: the second page (cursor)', () => `openid=oHeavy&cursor=${encodeURIComponent(heavyFirst.next)}`]);
cases.push(['oHeavy: one day, 45 days ago', () => `openid=oHeavy&from=${now - 45 * 86400}&to=${now - 44 * 86400}`]);
console.log('');
console.log(`| GET /api/ledger (miniflare dispatchFetch round trip, ${REQUESTS} requests each) | rows | p50 ms | p95 ms | max ms |`);
console.log('|---|---|---|---|---|');
let worst = 0;
for (const [label, query] of cases) {
  await timed(query()); // warm
  const ms = [];
  let shown = 0;
  for (let i = 0; i < REQUESTS; i++) {
    const r = await timed(query());
    ms.push(r.ms);
    shown = r.page.rows.length;
  }
  worst = Math.max(worst, quantile(ms, 0.5));
  console.log(`| ${label} | ${shown} | ${quantile(ms, 0.5).toFixed(1)} | ${quantile(ms, 0.95).toFixed(1)} | ${Math.max(...ms).toFixed(1)} |`);
}
await mf.dispose();
console.log(`\nslowest p50: ${worst.toFixed(1)} ms (bar: 50 ms)`);
if (worst >= 50) process.exitCode = 1;
