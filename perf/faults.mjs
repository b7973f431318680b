#!/usr/bin/env node
// Fault injection against the built worker in workerd (Miniflare): a faulty WeChat API on a real
// 127.0.0.1 HTTP server (perf/fault-server.mjs), 20 admin calls in a closed loop, a signed callback
// every 500 ms, and workerd's RSS. One fresh Miniflare per scenario.
//
//   node perf/faults.mjs [--build DIR] [--seconds 20] [--only NAME[,NAME]] [--json out.json]
//                        [--concurrency 20] [--transport direct|proxy] [--rss-cap-mb 8192]
//
// --transport direct (default): WECHAT_API_BASE=http://127.0.0.1:<port>, and the worker's fetches
//   leave workerd through Miniflare's default "internet" network service, which allows private
//   addresses (outboundService unset). --transport proxy: outboundService forwards each request to
//   the same server with Node's fetch (the fallback if workerd could not reach 127.0.0.1).
// --rss-cap-mb: workerd is killed (SIGKILL, by its pid) if its RSS passes this, to protect the host.
import { parseArgs } from 'node:util';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startWorker, ADMIN_TOKEN } from '../tests/support/worker.mjs';
import { plainQuery, fixture } from '../tests/support/wechat.mjs';
import { startFaultServer } from './fault-server.mjs';
import { workerdPids, rssKiB, cpuSecs } from './workerd.mjs';
import { Response as MfResponse } from 'miniflare';

const SCENARIOS = [
  { name: 'token-500', fault: 'token-500', endpoint: 'stable', what: 'token endpoint: 500 + HTML body' },
  { name: 'token-garbage', fault: 'token-garbage', endpoint: 'stable', what: 'token endpoint: 200 + garbage/truncated JSON' },
  { name: 'token-reset', fault: 'token-reset', endpoint: 'stable', what: 'token endpoint: connection destroyed, no answer' },
  { name: '40001-stable', fault: 'send-40001', endpoint: 'stable', what: 'custom/send: errcode 40001 forever (stable_token)' },
  { name: '40001-classic', fault: 'send-40001', endpoint: 'classic', what: 'custom/send: errcode 40001 forever (classic token)' },
  { name: 'send-50mb', fault: 'send-50mb', endpoint: 'stable', what: 'custom/send: 200 with a 50 MiB JSON body' },
  { name: 'healthy', fault: 'none', endpoint: 'stable', what: 'control: everything answers normally' },
];

const { values: o } = parseArgs({ options: {
  build: { type: 'string', default: '/work/main/build' },
  seconds: { type: 'string', default: '20' },
  only: { type: 'string' },
  json: { type: 'string' },
  concurrency: { type: 'string', default: '20' },
  transport: { type: 'string', default: 'direct' },
  'rss-cap-mb': { type: 'string', default: '8192' },
  verbose: { type: 'boolean', default: false },
} });
const buildDir = resolve(o.build);
const seconds = Number(o.seconds);
const concurrency = Number(o.concurrency);
const rssCapKiB = Number(o['rss-cap-mb']) * 1024;
if (!['direct', 'proxy'].includes(o.transport)) throw new Error('--transport is direct or proxy');
const CALL_TIMEOUT_MS = 30_000;
const CALLBACK_EVERY_MS = 500;
const WECHAT_CALLBACK_BUDGET_MS = 5_000;

let scenarios = SCENARIOS;
if (o.only) {
  const names = o.only.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!SCENARIOS.some((s) => s.name === n)) throw new Error(`unknown scenario ${n}; one of ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  scenarios = SCENARIOS.filter((s) => names.includes(s.name));
}

const adminBody = JSON.stringify({ touser: 'OPENID', msgtype: 'text', text: { content: 'hi' } });
const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const callbackBody = fixture('messages/text.xml');

// ---------------------------------------------------------------------------------------------
// helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** `p`, or `fallback` after `ms` (the timer never keeps the process alive). */
function within(p, ms, fallback) {
  let t;
  return Promise.race([
    Promise.resolve(p).finally(() => clearTimeout(t)),
    new Promise((r) => { t = setTimeout(() => r(fallback), ms); t.unref?.(); }),
  ]);
}
const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const bump = (h, k) => { h[k] = (h[k] ?? 0) + 1; };

const mb = (kib) => (kib == null || Number.isNaN(kib) ? null : Math.round(kib / 1024));

/** Tallies workerd's log lines: the worker's by outcome, and other lines (runtime errors). */
function logTally() {
  const tally = { by_outcome: {}, other_lines: 0, other_samples: [] };
  const read = (line) => {
    const i = line.indexOf('{');
    let parsed = null;
    if (i >= 0) { try { parsed = JSON.parse(line.slice(i)); } catch { /* not ours */ } }
    if (parsed && (parsed.outcome !== undefined || parsed.route !== undefined)) {
      bump(tally.by_outcome, `${parsed.route ?? '?'} ${parsed.status ?? ''} ${parsed.outcome ?? ''}`.trim());
    } else if (parsed && parsed.kf_routing) {
      bump(tally.by_outcome, `kf_routing: ${parsed.kf_routing}`);
    } else if (line.trim()) {
      tally.other_lines += 1;
      const sample = line.replace(/\x1b\[[0-9;]*m/g, '').trim().slice(0, 240);
      if (tally.other_samples.length < 8 && !tally.other_samples.includes(sample)) tally.other_samples.push(sample);
    }
  };
  return { tally, handleStructuredLogs: ({ message }) => String(message).split('\n').forEach(read) };
}

// ---------------------------------------------------------------------------------------------
// one scenario

async function runScenario(sc) {
  const result = {
    scenario: sc.name, what: sc.what, token_endpoint: sc.endpoint, seconds, concurrency, transport: o.transport,
    admin_calls_completed: 0, admin_calls_started: 0, status_histogram: {}, admin_latency_ms: {},
    admin_bytes_max: 0, token_requests: null, api_requests: null, server: null,
    callbacks: { sent: 0, statuses: {}, p50_ms: null, worst_ms: null, over_5s: 0 },
    drain_ms: null, workerd: { pid: null, rss_mb_start: null, rss_mb_peak: null, rss_mb_end: null, cpu_secs: null, alive_at_end: null, killed_at_cap: false },
    log: null, errors: [],
  };
  let server = null;
  let mf = null;
  let sampler = null;
  let pid = null;
  let lagMonitor = null;
  try {
    server = await startFaultServer({ fault: sc.fault });
    const base = `http://127.0.0.1:${server.port}`;
    const { tally, handleStructuredLogs } = logTally();
    result.log = tally;

    const before = new Set(workerdPids());
    mf = startWorker({
      buildDir,
      quiet: true,
      bindings: { WECHAT_API_BASE: base, WECHAT_TOKEN_ENDPOINT: sc.endpoint },
      options: { handleStructuredLogs },
      // direct: no outboundService -> Miniflare's "internet" service (allows private addresses).
      worker: { outboundService: o.transport === 'proxy' ? proxyToServer : undefined },
    });
    const url = await within(mf.ready, 60_000, null);
    if (!url) throw new Error('Miniflare did not become ready within 60 s');
    const fresh = [...workerdPids()].filter((p) => !before.has(p));
    if (fresh.length !== 1) result.errors.push(`expected one new workerd process, found ${fresh.length}: ${fresh.join(',')}`);
    pid = fresh[0] ?? null;
    result.workerd.pid = pid;
    const cpu0 = pid ? cpuSecs(pid) : null;

    // RSS every 100 ms, with a safety cap.
    let peak = 0;
    const rssStart = pid ? rssKiB(pid) : null;
    if (rssStart) peak = rssStart;
    if (pid) {
      sampler = setInterval(() => {
        const r = rssKiB(pid);
        if (r == null) return;
        if (r > peak) peak = r;
        if (r > rssCapKiB && !result.workerd.killed_at_cap) {
          result.workerd.killed_at_cap = true;
          result.errors.push(`workerd RSS ${mb(r)} MB passed --rss-cap-mb; killed pid ${pid}`);
          try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }
      }, 100);
    }

    // The load client's own event-loop lag: large values would mean the client, not the worker,
    // delayed the measured latencies.
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    lagMonitor = lag;
    const apiUrl = new URL('/api/messages', url);
    const admin = [];
    const runStart = performance.now();
    const deadline = runStart + seconds * 1000;
    const perSecond = {}; // admin calls by the second they started in
    const slowStarts = []; // start offsets (s) of admin calls that took over 10 s

    async function adminCall() {
      result.admin_calls_started += 1;
      const t0 = performance.now();
      let status;
      try {
        const res = await fetch(apiUrl, { method: 'POST', headers: adminHeaders, body: adminBody, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
        let n = 0;
        for await (const c of res.body) n += c.length; // streamed: a 50 MB answer is counted, not kept
        if (n > result.admin_bytes_max) result.admin_bytes_max = n;
        status = res.status;
        result.admin_calls_completed += 1;
      } catch (e) {
        status = e?.name === 'TimeoutError' ? 'client-timeout' : `error:${e?.cause?.code ?? e?.name ?? 'unknown'}`;
        noteClientError(result, e);
      }
      const ms = performance.now() - t0;
      admin.push(ms);
      bump(result.status_histogram, status);
      const at = Math.floor((t0 - runStart) / 1000);
      bump(perSecond, at);
      if (ms > 10_000) slowStarts.push(Math.round((t0 - runStart) / 100) / 10);
    }
    async function adminLoop() {
      while (performance.now() < deadline) await adminCall();
    }

    const cbLat = [];
    const callbacks = [];
    async function callbackCall() {
      result.callbacks.sent += 1;
      const t0 = performance.now();
      let status;
      try {
        const res = await fetch(new URL(`/wechat?${plainQuery()}`, url), {
          method: 'POST', headers: { 'content-type': 'text/xml' }, body: callbackBody, signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
        });
        const text = await res.text();
        status = res.status === 200 && text.includes('transfer_customer_service') ? '200' : `${res.status}-unexpected`;
      } catch (e) {
        status = e?.name === 'TimeoutError' ? 'client-timeout' : `error:${e?.cause?.code ?? e?.name ?? 'unknown'}`;
        noteClientError(result, e);
      }
      const ms = performance.now() - t0;
      cbLat.push(ms);
      if (ms > WECHAT_CALLBACK_BUDGET_MS) result.callbacks.over_5s += 1;
      bump(result.callbacks.statuses, status);
    }

    const loops = Array.from({ length: concurrency }, () => adminLoop());
    const ticker = setInterval(() => {
      if (performance.now() < deadline) callbacks.push(callbackCall());
    }, CALLBACK_EVERY_MS);
    callbacks.push(callbackCall());
    await sleep(seconds * 1000);
    clearInterval(ticker);
    const drainStart = performance.now();
    // Every call has a 30 s client timeout; the guard only covers a client that misbehaves.
    const settled = await within(Promise.allSettled([...loops, ...callbacks]).then(() => true), CALL_TIMEOUT_MS + 15_000, false);
    if (!settled) result.errors.push('calls still pending 45 s after the end (client-side guard hit)');
    result.drain_ms = Math.round(performance.now() - drainStart);

    const lat = admin;
    result.admin_latency_ms = { p50: round(pct(lat, 50)), p99: round(pct(lat, 99)), worst: round(lat.length ? Math.max(...lat) : null) };
    result.admin_over_10s = lat.filter((ms) => ms > 10_000).length;
    result.admin_over_10s_started_at_s = slowStarts.sort((a, b) => a - b);
    result.admin_calls_started_per_second = Array.from({ length: Math.ceil(seconds) }, (_, i) => perSecond[i] ?? 0);
    result.callbacks.p50_ms = round(pct(cbLat, 50));
    result.callbacks.worst_ms = round(cbLat.length ? Math.max(...cbLat) : null);

    lagMonitor.disable();
    result.client_event_loop_lag_max_ms = Math.round(lagMonitor.max / 1e6);
    const s = await server.stats();
    result.server = s;
    result.token_requests = s?.token_requests ?? null;
    result.api_requests = s?.api_requests ?? null;

    if (pid) {
      const end = rssKiB(pid);
      result.workerd.alive_at_end = end != null;
      result.workerd.rss_mb_start = mb(rssStart);
      result.workerd.rss_mb_peak = mb(Math.max(peak, end ?? 0));
      result.workerd.rss_mb_end = mb(end);
      const cpu1 = cpuSecs(pid);
      result.workerd.cpu_secs = cpu0 != null && cpu1 != null ? Math.round((cpu1 - cpu0) * 10) / 10 : null;
    }
  } catch (e) {
    result.errors.push(String(e?.stack ?? e));
  } finally {
    if (sampler) clearInterval(sampler);
    lagMonitor?.disable();
    if (mf) {
      const disposed = await within(mf.dispose().then(() => true, (e) => { result.errors.push(`dispose: ${e?.message ?? e}`); return true; }), 20_000, false);
      if (!disposed) {
        result.errors.push('Miniflare dispose took over 20 s; killed workerd');
        if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      }
    }
    if (server) await server.close().catch(() => {});
  }
  return result;
}

/** --transport proxy: Miniflare's outboundService; forwards to the same 127.0.0.1 server with Node's fetch. */
async function proxyToServer(req) {
  const body = ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.from(await req.arrayBuffer());
  const headers = Object.fromEntries([...req.headers].filter(([k]) => !['host', 'content-length', 'connection'].includes(k)));
  const res = await fetch(req.url, { method: req.method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  // Miniflare's Response class is its own undici's: hand it the body as a stream.
  return new MfResponse(res.body, { status: res.status, headers: res.headers });
}

/** Keeps a few distinct client-side error messages (with their cause) for the JSON report. */
function noteClientError(result, e) {
  const msg = `${e?.name}: ${e?.message}${e?.cause ? ` (cause: ${e.cause.code ?? ''} ${e.cause.message ?? e.cause})` : ''}`.slice(0, 300);
  result.client_error_samples ??= [];
  if (result.client_error_samples.length < 5 && !result.client_error_samples.includes(msg)) result.client_error_samples.push(msg);
}

function round(x) { return x == null ? null : Math.round(x); }

// ---------------------------------------------------------------------------------------------
// main

const fmtHist = (h) => Object.entries(h).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}: ${v}`).join(', ') || '—';
const sec = (ms) => (ms == null ? '—' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);

const results = [];
const started = new Date();
const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.error(`faults: build ${buildDir}, ${seconds} s per scenario, ${concurrency} admin workers, transport ${o.transport}, load ${load0}`);
for (const sc of scenarios) {
  const t0 = performance.now();
  console.error(`- ${sc.name}: ${sc.what} ...`);
  const r = await runScenario(sc);
  results.push(r);
  console.error(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${r.admin_calls_completed} admin calls answered, ${fmtHist(r.status_histogram)}; ` +
    `token requests ${r.token_requests}, API requests ${r.api_requests}, worst callback ${sec(r.callbacks.worst_ms)}` +
    (r.errors.length ? `\n  errors: ${r.errors.join(' | ')}` : ''));
  if (o.verbose && r.log) console.error(`  worker log: ${JSON.stringify(r.log.by_outcome)}\n  other lines: ${JSON.stringify(r.log.other_samples)}`);
}

const rows = results.map((r) => [
  r.scenario,
  r.admin_calls_completed,
  fmtHist(r.status_histogram),
  r.token_requests ?? '—',
  r.api_requests ?? '—',
  sec(r.admin_latency_ms.p50),
  `${sec(r.admin_latency_ms.worst)}${r.admin_over_10s ? ` (${r.admin_over_10s} over 10 s)` : ''}`,
  sec(r.drain_ms),
  `${fmtHist(r.callbacks.statuses)}${r.callbacks.over_5s ? ` (${r.callbacks.over_5s} over 5 s)` : ''}`,
  sec(r.callbacks.worst_ms),
  `${r.workerd.rss_mb_start ?? '—'} / ${r.workerd.rss_mb_peak ?? '—'} / ${r.workerd.rss_mb_end ?? '—'}${r.workerd.killed_at_cap ? ' (killed at cap)' : r.workerd.alive_at_end === false ? ' (workerd gone)' : ''}`,
  r.workerd.cpu_secs ?? '—',
]);
const header = ['scenario', 'admin done', 'admin statuses', 'token reqs', 'API reqs', 'admin p50', 'admin worst', 'drain', 'callbacks', 'callback worst', 'workerd RSS MB start / peak / end', 'workerd CPU s'];
const table = [
  `| ${header.join(' | ')} |`,
  `|${header.map(() => '---').join('|')}|`,
  ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');
console.log(`\nFault injection: ${buildDir}, ${seconds} s per scenario, ${concurrency} concurrent admin calls (closed loop), ` +
  `a signed callback every ${CALLBACK_EVERY_MS} ms; WeChat API mock on 127.0.0.1 (${o.transport})\n`);
console.log(table);
console.log('\n"admin done": calls answered with an HTTP status; the statuses also count client-side failures ' +
  '(client-timeout after 30 s, error:<code> for a reset or closed connection). "drain": time from the end of the scenario ' +
  'until the last in-flight call finished. "callbacks": signed text pushes, 200 = the transfer reply arrived.');
for (const r of results) {
  const s = r.server;
  const extra = [];
  if (s?.force_refresh_requests) extra.push(`${s.force_refresh_requests} force_refresh`);
  if (s?.tokens_issued) extra.push(`${s.tokens_issued} token(s) issued`);
  if (s?.resets) extra.push(`${s.resets} resets`);
  if (s?.big_bodies_started) extra.push(`50 MiB bodies: ${s.big_bodies_started} started, ${s.big_bodies_finished} finished, ${s.big_bodies_aborted} aborted by workerd, ${Math.round(s.big_bytes_sent / 1048576)} MiB sent`);
  if (r.admin_over_10s) {
    const at = r.admin_over_10s_started_at_s ?? [];
    extra.push(`the ${r.admin_over_10s} admin call(s) over 10 s started at ${at[0]}–${at[at.length - 1]} s; admin calls started per second: ${(r.admin_calls_started_per_second ?? []).join(' ')}`);
  }
  if (r.admin_bytes_max > 100_000) extra.push(`largest admin answer ${Math.round(r.admin_bytes_max / 1048576)} MiB`);
  if (r.client_event_loop_lag_max_ms > 200) extra.push(`load client event-loop lag up to ${r.client_event_loop_lag_max_ms} ms (part of the measured latencies is the client's)`);
  if (r.log?.other_lines) extra.push(`${r.log.other_lines} runtime log line(s), e.g. ${JSON.stringify(r.log.other_samples.slice(0, 3))}`);
  if (r.errors.length) extra.push(`errors: ${r.errors.join(' | ')}`);
  if (extra.length) console.log(`- ${r.scenario}: ${extra.join('; ')}`);
}
if (o.json) {
  writeFileSync(o.json, JSON.stringify({
    build: buildDir, seconds, concurrency, transport: o.transport, started: started.toISOString(),
    loadavg_start: load0, loadavg_end: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '), results,
  }, null, 2));
  console.error(`wrote ${o.json}`);
}
// Undici keeps idle sockets to the disposed workers; nothing else should be left.
process.exit(0);
