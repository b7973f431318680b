#!/usr/bin/env node
// CPU per request of the Rust worker against a plain JavaScript Worker doing the same job
// (perf/js-worker/, fast-xml-parser + Web Crypto), read from workerd's own CPU counters rather
// than from throughput: each worker runs in its own Miniflare, hence its own workerd process, and
// the CPU that process spent (sum of /proc/<pid>/task/*/schedstat, ns; utime+stime from
// /proc/<pid>/stat as a cross-check, and the fallback without schedstat) around each slice of
// requests is divided by the slice's requests, and an instance's figure in a round is the median
// over its slices. An empty worker (perf/empty-worker/, answers "ok") measured with the same
// requests gives the runtime's floor, which is subtracted: "above floor" is what the worker's own
// code costs (routing, parsing, crypto, the log line, the Rust/JS boundary).
//
//   node perf/cpu.mjs [--ours DIR] [--compare DIR | --compare-rules FILE] [--rounds 5] [--requests 4000] [--warmup 1000]
//                     [--concurrency 8] [--chunks 20] [--first-rounds 24] [--json out.json] [--scenarios plain,safe,healthz,notfound]
//
// --ours is a built bundle directory (build/ layout: worker.mjs, index_bg.wasm; or worker-build's worker/shim.mjs),
// default <repo>/build; --compare adds a second Rust build (e.g. a baseline) as an extra column;
// --compare-rules FILE instead adds this build with the rules document FILE stored (PUT
// /api/rules after start; its first-request figure is then a push with the rules in memory);
// --compare-ledger d1|stub this build with a D1 database bound (the ledger's row of every push,
// written after the reply), where the other columns run without it (see workers.mjs): d1 is
// miniflare's (its SQLite counts here), stub a binding that runs nothing (the worker's own part).
// Every round starts fresh workerd processes, one at a time (the new workerd child of this process
// is the instance's), reads each one's CPU at ready and around its first request, then measures
// every scenario on every instance and disposes them. Worker order alternates between rounds
// (ABBA), and within a scenario the requests go in --chunks slices interleaved across the
// instances, so load elsewhere on the machine falls on all alike. An A/A control (ours started
// twice, as two instances) shows the noise. Medians over rounds with min–max; ratios are the
// median (min–max) of the per-round ratios. A first request is one sample per isolate, and this
// machine's speed moves such a sample by up to 2x, so --first-rounds more rounds (ABBA) start
// every worker once more for its first request alone; the first-request row pools them with the
// main rounds' (a few seconds per round), and its ratios carry a 95% bootstrap interval for the
// median (perf/stats.mjs; perf/pool.mjs pools the rounds and first requests of several runs' --json).
// Before measuring, every Rust build and the JS Worker
// must answer a set of pushes (all message and event fixtures in plain, safe and compatible mode,
// URL checks, refusals) equivalently, with replies that decrypt and verify, or the run stops.
// A default run takes ~6 minutes on 2 cores (~7 with --compare).
import { Pool } from 'undici';
import { parseArgs } from 'node:util';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultBindings } from '../tests/support/worker.mjs';
import { TOKEN, APPID, plainQuery, safePush, fixture, decrypt, sign, field, now } from '../tests/support/wechat.mjs';
import { workerdPids, cpu, cpuDelta, HAS_SCHEDSTAT } from './workerd.mjs';
import { median, medianInterval, firstRequests, aboveFloor, slicesAboveFloor } from './stats.mjs';
import { root, EMPTY_WORKER, bundleJsWorker, plainWorker as startPlain, rustWorker as startRust, scenarios as measuredScenarios } from './workers.mjs';
const { values: o } = parseArgs({
  options: {
    ours: { type: 'string', default: join(root, 'build') },
    compare: { type: 'string' },
    'compare-rules': { type: 'string' },
    // 'd1': miniflare's D1 (its SQLite in the same process); 'stub': a binding that runs nothing.
    'compare-ledger': { type: 'string' },
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '4000' },
    warmup: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '8' },
    chunks: { type: 'string', default: '20' },
    'first-rounds': { type: 'string', default: '24' },
    json: { type: 'string' },
    scenarios: { type: 'string', default: 'plain,safe,healthz,notfound' },
  },
});
const ROUNDS = Number(o.rounds);
const N = Number(o.requests);
const WARMUP = Number(o.warmup);
const CONCURRENCY = Number(o.concurrency);
const CHUNKS = Math.max(1, Math.min(Number(o.chunks), N));
const FIRST_ROUNDS = Number(o['first-rounds']);
if (!Number.isInteger(FIRST_ROUNDS) || FIRST_ROUNDS < 0) throw new Error(`--first-rounds must be a whole number, not ${o['first-rounds']}`);
const oursDir = resolve(o.ours);
// --compare-rules FILE: the compare column is this build with the rules document FILE stored
// (PUT /api/rules right after start), to show what the front desk costs per push.
const compareRules = o['compare-rules'] ? readFileSync(resolve(o['compare-rules']), 'utf8') : undefined;
const compareLedger = o['compare-ledger'];
const compareDir = compareRules || compareLedger ? resolve(o.ours) : o.compare ? resolve(o.compare) : undefined;
for (const d of [oursDir, compareDir].filter(Boolean)) {
  if (!existsSync(join(d, 'worker.mjs')) && !existsSync(join(d, 'worker/shim.mjs'))) throw new Error(`${d} is not a built bundle (no worker.mjs)`);
}

// workerd's log lines are dropped (they must not slow this process), except their tail, shown
// when it fails to start.
let lastStderr = '';
const drain = ({ message }) => {
  lastStderr = (lastStderr + message + '\n').slice(-4000);
};

// ---- the JS worker's bundle, as wrangler would build it (esbuild, ESM, not minified) ------------

const tmp = mkdtempSync(join(tmpdir(), 'wechat-cpu-'));
const { bundle: jsBundle, minified: jsMinified } = await bundleJsWorker(join(tmp, 'js'));

// ---- workers ------------------------------------------------------------------------------------

const plainWorker = (dir, extra) => startPlain(dir, drain, extra);
const rustWorker = (dir, _stdio, options) => startRust(dir, drain, options);

// `role` ties a worker to the columns of the table; "ours2" is the A/A control.
const WORKERS = [
  { id: 'empty', label: 'empty worker', start: plainWorker(EMPTY_WORKER) },
  { id: 'ours', label: `ours (${oursDir})`, start: rustWorker(oursDir), kv: true },
  { id: 'ours2', label: 'ours, 2nd instance (A/A)', start: rustWorker(oursDir), kv: true },
  // The JS Worker reads the rules from KV like ours (an isolate's first push, then every 30 s).
  { id: 'js', label: 'JS Worker', start: plainWorker(join(tmp, 'js'), { kvNamespaces: ['WECHAT_KV'] }), kv: true },
  ...(compareDir ? [{
    id: 'compare',
    label: compareRules ? `ours with ${o['compare-rules']} stored` : compareLedger ? `ours with the ledger (${compareLedger === 'stub' ? 'a D1 binding that runs nothing' : "miniflare's D1"})` : `compare (${compareDir})`,
    start: rustWorker(compareDir, drain, { database: compareLedger === 'stub' ? 'stub' : Boolean(compareLedger) }),
    kv: true,
    setup: compareRules && (async (inst) => {
      const res = await fetch(`${inst.url}/api/rules`, { method: 'PUT', body: compareRules, headers: { authorization: `Bearer ${defaultBindings.ADMIN_TOKEN}` } });
      if (res.status !== 200) throw new Error(`PUT /api/rules answered ${res.status}: ${await res.text()}`);
    }),
  }] : []),
];

// ---- workerd's CPU ------------------------------------------------------------------------------

async function startInstance(w) {
  const before = new Set(workerdPids());
  lastStderr = '';
  const mf = w.start();
  let url;
  try {
    url = (await mf.ready).toString().replace(/\/$/, '');
  } catch (e) {
    process.stderr.write(`${w.id} did not start; workerd said:\n${lastStderr}\n`);
    throw e;
  }
  const fresh = workerdPids().filter((p) => !before.has(p));
  if (fresh.length !== 1) {
    await mf.dispose();
    throw new Error(`expected one new workerd process for ${w.id}, found ${fresh.length} (${fresh.join(', ')})`);
  }
  const pid = fresh[0];
  const ready = cpu(pid);
  const inst = { ...w, mf, url, pid };
  inst.readyNs = ready.ns;
  inst.readyStatNs = ready.statNs;
  // Miniflare simulates KV with a service inside the same workerd, started on first use; in
  // production KV is another service, not the worker's CPU. Start it here, before the first
  // request is measured, so that its cold start is not counted as ours (a read from the
  // harness; its own KV reads then cost what the simulator's warm path costs).
  if (w.kv) await (await mf.getKVNamespace('WECHAT_KV')).get('perf:warm-up');
  await w.setup?.(inst);
  return inst;
}

async function stopInstance(inst) {
  await inst.mf.dispose();
}

/**
 * Runs `fn` with a fresh keep-alive pool to the instance, closed afterwards: a connection left
 * idle while other workers are measured may be closed by workerd just as it is reused.
 * Returns what `fn` returned and the number of connections opened.
 */
async function withPool(inst, fn) {
  const pool = new Pool(inst.url, { connections: CONCURRENCY, pipelining: 1 });
  let connects = 0;
  pool.on('connect', () => { connects++; });
  try {
    return { value: await fn(pool), connects };
  } finally {
    await pool.close();
  }
}

// ---- requests -----------------------------------------------------------------------------------

const XML = { 'content-type': 'text/xml' };
const text = fixture('messages/text.xml').toString();
const scenarios = () => measuredScenarios(o.scenarios.split(','));

async function send(pool, req) {
  const res = await pool.request({ path: req.path, method: req.method, body: req.body, headers: req.headers });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body };
}

/** `count` requests at CONCURRENCY in flight; counts answers with an unexpected status. */
async function load(pool, inst, req, count) {
  let next = 0;
  let wrong = 0;
  const lane = async () => {
    while (next < count) {
      next++;
      const res = await pool.request({ path: req.path, method: req.method, body: req.body, headers: req.headers });
      await res.body.dump({ limit: 1 << 20 });
      if (inst.id !== 'empty' && res.statusCode !== req.status) wrong++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return wrong;
}

const SETTLE_MS = 20;
/**
 * One scenario on every instance. The N requests per instance are sent in CHUNKS interleaved
 * across the instances (A B C, C B A, ...), so a burst of load elsewhere on the machine falls on
 * every worker alike. Each workerd's CPU is read before and after each of its chunks (an idle
 * workerd spends no CPU: measured 0 µs/s, so work a request leaves behind, like the log write,
 * lands in the next reading), and the instance's figure is the median over its chunks: a GC or
 * a burst of host load in one chunk does not move it.
 */
async function measureAll(instances, req) {
  const pools = instances.map((inst) => {
    const pool = new Pool(inst.url, { connections: CONCURRENCY, pipelining: 1 });
    const p = { inst, pool, connects: 0, wrong: 0, wallNs: 0, chunks: [], ns: 0, statNs: 0, vanished: 0 };
    pool.on('connect', () => { p.connects++; });
    return p;
  });
  try {
    for (const p of pools) await load(p.pool, p.inst, req, WARMUP);
    await sleep(SETTLE_MS);
    for (let k = 0; k < CHUNKS; k++) {
      const size = Math.floor((N * (k + 1)) / CHUNKS) - Math.floor((N * k) / CHUNKS);
      for (const p of k % 2 === 0 ? pools : [...pools].reverse()) {
        const before = cpu(p.inst.pid);
        const t0 = process.hrtime.bigint();
        p.wrong += await load(p.pool, p.inst, req, size);
        p.wallNs += Number(process.hrtime.bigint() - t0);
        const d = cpuDelta(before, cpu(p.inst.pid));
        p.chunks.push(d.ns / size / 1e3);
        p.ns += d.ns;
        p.statNs += d.statNs;
        p.vanished += d.vanished;
      }
    }
  } finally {
    for (const p of pools) await p.pool.close();
  }
  const out = {};
  for (const p of pools) {
    if (p.wrong) throw new Error(`${p.inst.id} answered ${p.wrong} of ${N} ${req.label} with a status other than ${req.status}`);
    out[p.inst.id] = {
      us: median(p.chunks), meanUs: p.ns / N / 1e3, statUs: p.statNs / N / 1e3, chunksUs: p.chunks,
      vanishedThreads: p.vanished, rps: N / (p.wallNs / 1e9), connects: p.connects,
    };
  }
  return out;
}

/** CPU of the first request of a fresh isolate, right after `await mf.ready` (a plain push). */
async function firstRequest(inst) {
  const req = scenarios()[0];
  const a = cpu(inst.pid);
  const { value: res } = await withPool(inst, (pool) => send(pool, req));
  if (inst.id !== 'empty' && res.status !== 200) throw new Error(`${inst.id}: first request answered ${res.status}`);
  await sleep(100); // background work the request set off (compilation, log write)
  const d = cpuDelta(a, cpu(inst.pid));
  return { ms: d.ns / 1e6, statMs: d.statNs / 1e6 };
}

// ---- self-check: every worker answers every push equivalently -----------------------------------

const pad32 = (xml) => { const n = 20 + Buffer.byteLength(xml) + APPID.length; return 32 - (n % 32); };

/** A reply reduced to what must agree between workers (CreateTime, random prefix, nonce differ). */
function normalize(res, { encrypted }) {
  const type = (res.headers['content-type'] ?? '').split(';')[0];
  let xml = res.body;
  const out = { status: res.status, type };
  if (encrypted && res.status === 200 && type !== 'text/plain') {
    const enc = field(xml, 'Encrypt');
    const ts = field(xml, 'TimeStamp');
    const nonce = field(xml, 'Nonce');
    if (sign(TOKEN, ts, nonce, enc) !== field(xml, 'MsgSignature')) throw new Error('reply MsgSignature does not verify');
    if (Math.abs(Number(ts) - now()) > 60) throw new Error('reply TimeStamp is not now');
    const inner = decrypt(enc);
    if (inner.appid !== APPID) throw new Error(`reply appid ${inner.appid}`);
    xml = inner.xml;
    out.encryptedReply = true;
  }
  if (res.status === 200 && type === 'text/plain') {
    out.reply = xml; // "success", or the URL check's echostr
  } else if (res.status === 200) {
    const createTime = Number(field(xml, 'CreateTime'));
    if (!(Math.abs(createTime - now()) <= 60)) throw new Error(`reply CreateTime ${createTime} is not now`);
    out.reply = ['ToUserName', 'FromUserName', 'MsgType', 'KfAccount'].map((f) => `${f}=${field(xml, f)}`).join(' ');
    if (!/^<xml>[\s\S]*<\/xml>$/.test(xml.trim())) throw new Error('reply is not an <xml> document');
  } else {
    try { out.error = JSON.parse(res.body).error; } catch { out.error = `non-JSON: ${res.body.slice(0, 40)}`; }
  }
  return out;
}

async function selfCheck(instances) {
  const cases = [];
  for (const dir of ['messages', 'events']) {
    for (const f of readdirSync(new URL(`../tests/fixtures/${dir}/`, import.meta.url)).sort()) {
      const xml = fixture(`${dir}/${f}`).toString();
      cases.push({ name: `${dir}/${f} plain`, req: { method: 'POST', path: `/wechat?${plainQuery()}`, body: xml, headers: XML }, encrypted: false });
      const safe = safePush(xml);
      cases.push({ name: `${dir}/${f} safe (pad ${pad32(xml)})`, req: { method: 'POST', path: `/wechat?${safe.query}`, body: safe.body, headers: XML }, encrypted: true, pad: pad32(xml) });
      const compat = safePush(xml, { compatible: true });
      cases.push({ name: `${dir}/${f} compatible`, req: { method: 'POST', path: `/wechat?${compat.query}`, body: compat.body, headers: XML }, encrypted: true });
    }
  }
  const ts = String(now());
  const good = `signature=${sign(TOKEN, ts, '42')}&timestamp=${ts}&nonce=42`;
  cases.push(
    { name: 'URL check', req: { method: 'GET', path: `/wechat?${good}&echostr=hello123` }, expect: 'hello123' },
    { name: 'URL check, bad signature', req: { method: 'GET', path: `/wechat?signature=${'0'.repeat(40)}&timestamp=${ts}&nonce=42&echostr=x` } },
    { name: 'URL check, missing echostr', req: { method: 'GET', path: `/wechat?${good}` } },
    { name: 'plain, stale timestamp', req: { method: 'POST', path: `/wechat?${plainQuery({ timestamp: now() - 400 })}`, body: text, headers: XML } },
    { name: 'safe, wrong appid', req: { method: 'POST', path: `/wechat?${safePush(text, { appid: 'wx0000000000000000' }).query}`, body: safePush(text, { appid: 'wx0000000000000000' }).body, headers: XML }, encrypted: true },
    { name: 'safe, tampered msg_signature', req: { method: 'POST', path: `/wechat?${safePush(text).query.replace(/msg_signature=[0-9a-f]/, 'msg_signature=x')}`, body: safePush(text).body, headers: XML }, encrypted: true },
    { name: 'plain, malformed XML', req: { method: 'POST', path: `/wechat?${plainQuery()}`, body: fixture('bad/malformed.xml').toString(), headers: XML } },
    { name: 'plain, DOCTYPE', req: { method: 'POST', path: `/wechat?${plainQuery()}`, body: fixture('bad/billion_laughs.xml').toString(), headers: XML } },
    { name: 'plain, missing MsgType', req: { method: 'POST', path: `/wechat?${plainQuery()}`, body: fixture('bad/missing_msgtype.xml').toString(), headers: XML } },
    { name: '404', req: { method: 'GET', path: '/nope' } },
    { name: 'PUT /wechat', req: { method: 'PUT', path: '/wechat', body: 'x' } },
  );
  const pads = cases.filter((c) => c.pad).map((c) => c.pad);
  if (!pads.some((p) => p > 16) || !pads.some((p) => p <= 16)) throw new Error('self-check lacks a pad above and at most 16');
  // A build with rules stored answers differently by design: it is not checked against the others.
  const rust = instances.filter((i) => i.id !== 'empty' && !(i.id === 'compare' && compareRules));
  const mismatches = [];
  for (const c of cases) {
    const got = {};
    for (const inst of rust) {
      let res;
      try {
        res = (await withPool(inst, (pool) => send(pool, c.req))).value;
      } catch (e) {
        throw new Error(`self-check, ${c.name}: ${inst.id}: ${e.message}`);
      }
      try {
        got[inst.id] = normalize(res, c);
      } catch (e) {
        throw new Error(`self-check, ${c.name}: ${inst.id}: ${e.message}; it answered ${res.status} ${res.body.slice(0, 300)}`);
      }
      if (c.expect !== undefined && (res.body !== c.expect || res.status !== 200)) mismatches.push(`${c.name}: ${inst.id} answered ${res.status} ${res.body.slice(0, 40)}`);
    }
    const ref = JSON.stringify(got.ours);
    for (const [id, v] of Object.entries(got)) {
      if (JSON.stringify(v) !== ref) mismatches.push(`${c.name}: ours ${ref} vs ${id} ${JSON.stringify(v)}`);
    }
  }
  // /healthz: same features.
  const h = {};
  for (const inst of rust) {
    const { value: res } = await withPool(inst, (pool) => send(pool, { method: 'GET', path: '/healthz' }));
    const j = JSON.parse(res.body);
    h[inst.id] = JSON.stringify({ status: res.status, callback: j.features.callback, safe_mode: j.features.safe_mode, kf_targeting: j.features.kf_targeting });
  }
  for (const [id, v] of Object.entries(h)) if (v !== h.ours) mismatches.push(`/healthz: ours ${h.ours} vs ${id} ${v}`);
  if (mismatches.length) throw new Error(`self-check failed:\n  ${mismatches.join('\n  ')}`);
  return cases.length + 1;
}

// ---- bundle sizes -------------------------------------------------------------------------------

function gzipOfDir(dir) {
  let raw = 0;
  let gz = 0;
  const walk = (d) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      // Static assets (the console) are uploaded beside the Worker, not as part of it.
      if (statSync(p).isDirectory()) { if (e !== 'assets') walk(p); }
      else if (/\.(js|mjs|wasm)$/.test(e)) {
        const b = readFileSync(p);
        raw += b.length;
        gz += gzipSync(b, { level: 9 }).length;
      }
    }
  };
  walk(dir);
  return { raw, gzip: gz };
}

// ---- the run ------------------------------------------------------------------------------------


const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), values: xs });

const started = Date.now();
const rounds = [];
/** The extra first-request rounds: worker id → { ms, statMs }. */
const firstRounds = [];
let checked = 0;
try {
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? WORKERS : [...WORKERS].reverse();
    const round = { order: order.map((w) => w.id), workers: {} };
    const instances = [];
    try {
      for (const w of order) {
        const inst = await startInstance(w);
        instances.push(inst);
        await sleep(100); // startup's trailing background work
        const first = await firstRequest(inst);
        round.workers[w.id] = { pid: inst.pid, readyMs: inst.readyNs / 1e6, readyStatMs: inst.readyStatNs / 1e6, first, scenarios: {} };
      }
      if (r === 0) checked = await selfCheck(instances);
      for (const sc of scenarios()) {
        const got = await measureAll(instances, sc);
        for (const inst of instances) round.workers[inst.id].scenarios[sc.id] = got[inst.id];
      }
    } finally {
      for (const inst of instances) await stopInstance(inst);
    }
    rounds.push(round);
    process.stderr.write(`round ${r + 1}/${ROUNDS} done (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  }
  for (let r = 0; r < FIRST_ROUNDS; r++) {
    const order = (ROUNDS + r) % 2 === 0 ? WORKERS : [...WORKERS].reverse();
    const round = {};
    for (const w of order) {
      const inst = await startInstance(w);
      try {
        await sleep(100);
        round[w.id] = await firstRequest(inst);
      } finally {
        await stopInstance(inst);
      }
    }
    firstRounds.push(round);
  }
  if (FIRST_ROUNDS > 0) process.stderr.write(`${FIRST_ROUNDS} first-request rounds done (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// ---- report -------------------------------------------------------------------------------------

const ids = WORKERS.map((w) => w.id);
const SCEN = scenarios().map(({ id, label }) => ({ id, label }));
/** The median of every paired slice difference of every round: the steadiest single figure. */
const pooled = (id, sc) => median(rounds.flatMap((rd) => slicesAboveFloor(rd, id, sc)));
const summary = { floor: {}, above: {}, pooled: {}, absolute: {}, ratios: {}, aa: {}, first: {}, ready: {}, bundle: {} };
for (const { id: sc } of SCEN) {
  summary.floor[sc] = stats(rounds.map((rd) => rd.workers.empty.scenarios[sc].us));
  summary.above[sc] = {};
  summary.absolute[sc] = {};
  for (const id of ids) {
    summary.absolute[sc][id] = stats(rounds.map((rd) => rd.workers[id].scenarios[sc].us));
    if (id !== 'empty') summary.above[sc][id] = stats(rounds.map((rd) => aboveFloor(rd, id, sc)));
  }
  summary.pooled[sc] = Object.fromEntries(ids.filter((id) => id !== 'empty').map((id) => [id, pooled(id, sc)]));
  summary.ratios[sc] = {
    oursOverJs: stats(rounds.map((rd) => aboveFloor(rd, 'ours', sc) / aboveFloor(rd, 'js', sc))),
    pooledOursOverJs: summary.pooled[sc].ours / summary.pooled[sc].js,
  };
  if (compareDir) summary.ratios[sc].oursOverCompare = stats(rounds.map((rd) => aboveFloor(rd, 'ours', sc) / aboveFloor(rd, 'compare', sc)));
  summary.aa[sc] = stats(rounds.map((rd) => aboveFloor(rd, 'ours2', sc) / aboveFloor(rd, 'ours', sc)));
}
/** Every round's first request of each worker: the main rounds', then the extra ones. */
const firsts = firstRequests(rounds, firstRounds);
for (const id of ids) {
  summary.first[id] = stats(firsts.map((f) => f[id].ms));
  summary.ready[id] = stats(rounds.map((rd) => rd.workers[id].readyMs));
}
/** Per-isolate ratios with a 95% bootstrap interval for their median. */
const ratioStats = (xs) => ({ ...stats(xs), interval: medianInterval(xs) });
summary.ratios.first = {
  oursOverJs: ratioStats(firsts.map((f) => f.ours.ms / f.js.ms)),
  aa: ratioStats(firsts.map((f) => f.ours2.ms / f.ours.ms)),
};
summary.ratios.ready = { oursOverJs: stats(rounds.map((rd) => rd.workers.ours.readyMs / rd.workers.js.readyMs)) };
if (compareDir) {
  summary.ratios.first.oursOverCompare = ratioStats(firsts.map((f) => f.ours.ms / f.compare.ms));
  summary.ratios.ready.oursOverCompare = stats(rounds.map((rd) => rd.workers.ours.readyMs / rd.workers.compare.readyMs));
}
summary.bundle.ours = gzipOfDir(oursDir);
if (compareDir) summary.bundle.compare = gzipOfDir(compareDir);
summary.bundle.js = {
  raw: jsBundle.length,
  gzip: gzipSync(jsBundle, { level: 9 }).length,
  minifiedRaw: jsMinified.length,
  minifiedGzip: gzipSync(jsMinified, { level: 9 }).length,
};

const f1 = (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1));
const f2 = (x) => x.toFixed(2);
const cell = (s, fmt = f1) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})${s.interval ? `; 95% CI ${fmt(s.interval.lo)}–${fmt(s.interval.hi)}` : ''}`;
const header = ['CPU per request (µs)', 'ours', 'JS Worker', ...(compareDir ? ['compare'] : []), 'ratio ours/JS: per-round median (min–max); pooled', ...(compareDir ? ['ratio ours/compare'] : [])];
const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
const row = (label, ours, js, cmp, ratio, ratioCmp) => lines.push(`| ${[label, ours, js, ...(compareDir ? [cmp] : []), ratio, ...(compareDir ? [ratioCmp ?? '—'] : [])].join(' | ')} |`);
const fl = SCEN.map(({ id }) => f1(summary.floor[id].median)).join(' · ');
row(`floor: empty worker, absolute (${SCEN.map(({ id }) => id).join(' · ')})`, fl, fl, fl, '—', '—');
for (const { id, label } of SCEN) {
  const a = summary.above[id];
  row(`${label}, above floor`, cell(a.ours), cell(a.js), compareDir ? cell(a.compare) : '', `${cell(summary.ratios[id].oursOverJs, f2)}; ${f2(summary.ratios[id].pooledOursOverJs)}`, compareDir ? cell(summary.ratios[id].oursOverCompare, f2) : undefined);
}
for (const { id } of SCEN.filter(({ id }) => id === 'plain' || id === 'safe')) {
  row(`A/A control: ${id} above floor, ours vs ours (2nd instance; ratio = 2nd/1st)`, cell(summary.above[id].ours), cell(summary.above[id].ours2), '', cell(summary.aa[id], f2), '—');
}
row(`first request of a fresh isolate (ms CPU, ${firsts.length} isolates each; empty worker ${f1(summary.first.empty.median)})`, cell(summary.first.ours, f2), cell(summary.first.js, f2), compareDir ? cell(summary.first.compare, f2) : '', cell(summary.ratios.first.oursOverJs, f2), compareDir ? cell(summary.ratios.first.oursOverCompare, f2) : undefined);
row('A/A control: first request, ours vs ours (2nd instance; ratio = 2nd/1st)', cell(summary.first.ours, f2), cell(summary.first.ours2, f2), '', cell(summary.ratios.first.aa, f2), '—');
row(`spawn → ready, workerd total (ms CPU; empty worker ${f1(summary.ready.empty.median)})`, cell(summary.ready.ours), cell(summary.ready.js), compareDir ? cell(summary.ready.compare) : '', cell(summary.ratios.ready.oursOverJs, f2), compareDir ? cell(summary.ratios.ready.oursOverCompare, f2) : undefined);
const kib = (b) => (b / 1024).toFixed(1);
row('bundle gzip -9 (KiB; JS: esbuild, not minified / minified)', kib(summary.bundle.ours.gzip), `${kib(summary.bundle.js.gzip)} / ${kib(summary.bundle.js.minifiedGzip)}`, compareDir ? kib(summary.bundle.compare.gzip) : '', (summary.bundle.ours.gzip / summary.bundle.js.gzip).toFixed(2), compareDir ? (summary.bundle.ours.gzip / summary.bundle.compare.gzip).toFixed(2) : undefined);

const vanished = rounds.flatMap((rd) => Object.values(rd.workers).flatMap((w) => Object.values(w.scenarios).map((s) => s.vanishedThreads))).reduce((a, b) => a + b, 0);
const maxConnects = Math.max(...rounds.flatMap((rd) => Object.values(rd.workers).flatMap((w) => Object.values(w.scenarios).map((s) => s.connects))));
console.log(`${ROUNDS} rounds × ${N} requests (after ${WARMUP} warm-up) per scenario and worker, concurrency ${CONCURRENCY}; ` +
  `CPU from ${HAS_SCHEDSTAT ? '/proc/<pid>/task/*/schedstat' : '/proc/<pid>/stat utime+stime'} of each workerd, median of ${CHUNKS} slices per round; medians over rounds (min–max). ` +
  `Self-check: ${checked} pushes answered equivalently by ${ids.filter((i) => i !== 'empty').join(', ')}. ` +
  `${Math.round((Date.now() - started) / 1000)} s.`);
console.log();
console.log(lines.join('\n'));
if (vanished) console.log(`\nnote: ${vanished} workerd threads exited inside a measured window (their CPU there is not counted)`);
if (maxConnects > CONCURRENCY) console.log(`\nnote: up to ${maxConnects} connections opened for one measurement (${CONCURRENCY} expected): keep-alive did not hold`);
if (o.json) {
  writeFileSync(o.json, JSON.stringify({
    config: { ours: oursDir, compare: compareDir ?? null, rounds: ROUNDS, firstRounds: FIRST_ROUNDS, requests: N, warmup: WARMUP, concurrency: CONCURRENCY, cpuSource: HAS_SCHEDSTAT ? 'schedstat' : 'stat' },
    workers: WORKERS.map(({ id, label }) => ({ id, label })),
    scenarios: SCEN,
    summary,
    rounds,
    firstRounds,
    selfCheckCases: checked,
    seconds: (Date.now() - started) / 1000,
  }, null, 2));
}
