#!/usr/bin/env node
// GET /api/stats at real sizes: 90 days of 10,000 pushes a day in miniflare's D1 (2,500
// conversations a day over 5,000 users and 5 agents: a transfer, the session's start, its first
// response, its close; a notice for one in ten), folded by the cron as in production, then a
// 30-day report by day and a 92-day report by hour timed, with the hourly rows each reads. The
// issue's bar: a 30-day daily report in under 200 ms locally.
//
//   node perf/service-levels.mjs [--days 90] [--per-day 10000] [--users 5000] [--requests 30]
import { parseArgs } from 'node:util';
import { startWorker, BASE, ADMIN_TOKEN } from '../tests/support/worker.mjs';
import { startTracked, cpu, cpuDelta } from './workerd.mjs';

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

const { mf, pid } = await startTracked(() => startWorker({ quiet: true }));
const db = await mf.getD1Database('WECHAT_DB');

// Filled by SQLite itself (a recursive CTE per chunk; D1 binds JS numbers as REAL, so the
// integers are cast). Conversation c starts at start + c × 86,400 / (PER_DAY / 4): the user's
// transfer, the session 30 s to 10 min later, its first response 5 s to 2 min after that, its
// close 5 to 20 minutes after the start.
const conversations = DAYS * PER_DAY / 4;
const filled = Date.now();
const kinds = [
  ["'text'", "'transfer'", 'NULL', 't', 'NULL'],
  ["'event:kf_create_session'", "'success'", 'agent', 't + 30 + (c * 7919) % 570', 'NULL'],
  ["'first_response'", "'seen'", 'agent', 't + 30 + (c * 7919) % 570', 'CAST(t + 30 + (c * 7919) % 570 + 5 + (c * 31) % 115 AS TEXT)'],
  ["'event:kf_close_session'", "'success'", 'agent', 't + 330 + (c * 7919) % 570 + (c * 13) % 900', 'NULL'],
];
for (let from = 0; from < conversations; from += 20_000) {
  const before = await db.prepare('SELECT coalesce(max(id), 0) AS n FROM ledger').first('n');
  const to = Math.min(conversations, from + 20_000) - 1;
  // The four rows of each conversation, written in time order as the worker writes them.
  const selects = kinds.map(([what, outcome, kf, at, detail]) =>
    `SELECT ?3 AS appid, 'oUser' || (c % CAST(?4 AS INTEGER)) AS openid, ${at} AS at, 'push' AS entry, ${what} || c AS push_key, ` +
    `${what} AS what, ${outcome} AS outcome, ${kf} AS kf_account, ${detail} AS detail FROM x`);
  await db.prepare(`
    INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail)
    WITH RECURSIVE n(c) AS (SELECT CAST(?1 AS INTEGER) UNION ALL SELECT c + 1 FROM n WHERE c < ?2),
    x AS (SELECT c, CAST(?5 AS INTEGER) + c * 86400 / CAST(?6 AS INTEGER) AS t,
                 'kf200' || (c % 5) || '@gh_1' AS agent FROM n)
    SELECT * FROM (${selects.join(' UNION ALL ')}) ORDER BY at`)
    .bind(from, to, APPID, USERS, start, PER_DAY / 4).run();
  await db.prepare(`
    INSERT INTO ledger (appid, openid, at, entry, push_key, what, outcome, kf_account, detail)
    SELECT appid, openid, at, 'effect', NULL, 'notice_closed', 'sent', NULL, NULL FROM ledger
    WHERE id > ?1 AND what = 'text' AND id % 10 = 0`).bind(before).run();
}
const rows = await db.prepare('SELECT count(*) AS n FROM ledger').first('n');
console.log(`ledger: ${rows} rows (${DAYS} days × ${PER_DAY} pushes, ${USERS} users, 5 agents), filled in ${((Date.now() - filled) / 1000).toFixed(0)} s`);

// The cron folds it, 10,000 rows a run, as every five minutes in production.
const worker = await mf.getWorker();
const folding = Date.now();
let runs = 0;
for (;;) {
  const left = await db.prepare('SELECT count(*) AS n FROM ledger WHERE id > coalesce((SELECT max(last_id) FROM stats_folds), 0)').first('n');
  if (left === 0) break;
  await worker.scheduled({ cron: '*/5 * * * *' });
  runs += 1;
}
const hours = await db.prepare('SELECT count(*) AS n, sum(length(users) + length(waits) + length(first_responses) + length(session_secs)) AS bytes FROM stats_hours').first();
console.log(`folded by ${runs} cron runs in ${((Date.now() - folding) / 1000).toFixed(0)} s: ${hours.n} hourly rows, ${(hours.bytes / 1e6).toFixed(1)} MB of lists`);

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
async function timed(query) {
  const t = process.hrtime.bigint();
  const res = await mf.dispatchFetch(`${BASE}/api/stats?${query}`, { headers: auth });
  const body = await res.text();
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (res.status !== 200) throw new Error(`${query}: ${res.status} ${body}`);
  return { ms, bytes: body.length, report: query.includes('csv') ? null : JSON.parse(body) };
}
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
// The rows the report's statement reads: the range's hours from the start of from's day.
const read = async (from, to, kf = null) => db.prepare("SELECT count(*) AS n FROM stats_hours WHERE appid = ?1 AND hour >= ?2 AND hour <= ?3 AND (?4 IS NULL OR kf_account = '' OR kf_account = ?4)")
  .bind(APPID, from - ((from + 8 * 3600) % 86400), to, kf).first('n');

const cases = [
  ['30 days by day', `from=${now - 30 * 86400}&to=${now}&bucket=day`, now - 30 * 86400],
  ['30 days by day, CSV', `from=${now - 30 * 86400}&to=${now}&bucket=day&format=csv`, now - 30 * 86400],
  ['7 days by day, one agent', `from=${now - 7 * 86400}&to=${now}&bucket=day&kf_account=kf2001@gh_1`, now - 7 * 86400, 'kf2001@gh_1'],
  ['92 days by hour', `from=${now - 92 * 86400}&to=${now}&bucket=hour`, now - 92 * 86400 + (now % 3600)],
];
console.log('');
console.log(`| GET /api/stats (miniflare dispatchFetch round trip, ${REQUESTS} requests each) | hourly rows read | answer KB | p50 ms | p95 ms | max ms | workerd CPU ms per report |`);
console.log('|---|---|---|---|---|---|---|');
let worst = 0;
for (const [label, query, from, kf] of cases) {
  const first = await timed(query); // warm
  const ms = [];
  // The workerd process's CPU: the worker's and the in-process SQLite's (D1's, in production).
  const before = cpu(pid);
  for (let i = 0; i < REQUESTS; i++) ms.push((await timed(query)).ms);
  const cpuMs = cpuDelta(before, cpu(pid)).ns / REQUESTS / 1e6;
  const p50 = quantile(ms, 0.5);
  if (label === '30 days by day') worst = p50;
  if (first.report && label === '30 days by day') {
    const t = first.report.totals;
    console.error(`(30 days: ${t.pushes} pushes, ${t.users} users, ${t.sessions} sessions, queue wait median ${t.queue_wait_secs.median} s, first response median ${t.first_response_secs.median} s)`);
  }
  console.log(`| ${label} | ${await read(from, now, kf)} | ${(first.bytes / 1024).toFixed(0)} | ${p50.toFixed(1)} | ${quantile(ms, 0.95).toFixed(1)} | ${Math.max(...ms).toFixed(1)} | ${cpuMs.toFixed(1)} |`);
}
console.log('');
console.log(`30 days by day: p50 ${worst.toFixed(1)} ms (bar: 200 ms) ${worst < 200 ? 'ok' : 'MISSED'}`);
await mf.dispose();
