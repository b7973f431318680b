#!/usr/bin/env node
// Instructions per request of the Rust worker against the JS Worker, counted by valgrind's
// callgrind in the whole workerd process: a count, not a time, so it is the same from run to run
// on a busy machine, where perf/cpu.mjs's CPU times move by tens of percent. It does not weigh
// what an instruction costs (cache misses, branch mispredictions); CPU time stays the measure the
// budgets are set in, and this is the noise-free view of the same work beside it.
//
//   node perf/instructions.mjs [--ours DIR] [--compare DIR] [--scenarios [first,]notfound,healthz,plain,safe]
//                              [--runs 3] [--requests 400] [--warmup 300] [--json out.json]
//
// `first` (not in the default list) also counts an isolate's first request, a plain push, with the
// compilation it sets off (instrumentation stays on for a second after the answer), before any
// other scenario on the same fresh workerd: cpu.mjs's first-request row as a count (one request,
// not per request), which repeats to within 0.5% where the CPU row needs ~100 isolates to tell
// 0.97 from 1.0. The other scenarios run in a fixed order (plain, safe, healthz, notfound).
//
// Every worker (the empty worker for the floor, the JS Worker, ours and --compare) runs in its own
// workerd under callgrind with instrumentation off. Per scenario, --warmup requests go first, then
// instrumentation is switched on for --requests requests sent one at a time, and the count is
// dumped. One workerd per worker and run, fresh each run; the median over --runs is reported,
// with min–max. The count depends on how far V8 has tiered the code up, which is why the warm-up
// is fixed and the same for every worker. Needs valgrind (Debian: apt-get install valgrind);
// about 10 s per worker and scenario.
import { Pool } from 'undici';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './stats.mjs';
import { root, EMPTY_WORKER, bundleJsWorker, plainWorker, rustWorker, scenarios } from './workers.mjs';
import { processes } from './workerd.mjs';

const { values: o } = parseArgs({
  options: {
    ours: { type: 'string', default: join(root, 'build') },
    compare: { type: 'string' },
    scenarios: { type: 'string', default: 'notfound,healthz,plain,safe' },
    runs: { type: 'string', default: '3' },
    requests: { type: 'string', default: '400' },
    warmup: { type: 'string', default: '300' },
    json: { type: 'string' },
  },
});
const RUNS = Number(o.runs);
const N = Number(o.requests);
const WARMUP = Number(o.warmup);
const wanted = o.scenarios.split(',');
/** How long background work (compilation, the log write) gets to finish under callgrind. */
const SETTLE_MS = 1000;
try {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
} catch {
  throw new Error('valgrind is not installed (Debian: apt-get install valgrind)');
}

// Miniflare runs MINIFLARE_WORKERD_PATH in place of workerd: a script that runs workerd under
// callgrind, writing its counts into `tmp`.
const tmp = mkdtempSync(join(tmpdir(), 'wechat-instr-'));
const workerd = createRequire(import.meta.url)('workerd').default;
const wrapper = join(tmp, 'workerd-callgrind.sh');
writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file --callgrind-out-file=${tmp}/callgrind.%p -q ${workerd} "$@"\n`);
chmodSync(wrapper, 0o755);
process.env.MINIFLARE_WORKERD_PATH = wrapper;

await bundleJsWorker(join(tmp, 'js'));
const quiet = () => {};
const WORKERS = [
  { id: 'empty', start: plainWorker(EMPTY_WORKER, quiet) },
  { id: 'js', start: plainWorker(join(tmp, 'js'), quiet, { kvNamespaces: ['WECHAT_KV'] }), kv: true },
  { id: 'ours', start: rustWorker(resolve(o.ours), quiet), kv: true },
  ...(o.compare ? [{ id: 'compare', start: rustWorker(resolve(o.compare), quiet), kv: true }] : []),
];

/** The pid of the callgrind process this node process started last (the new workerd). */
function callgrindPid(before) {
  const mine = [...processes()].filter(([pid, p]) => !before.has(pid) && p.comm.startsWith('callgrind'));
  if (mine.length !== 1) throw new Error(`expected one new callgrind process, found ${mine.length}`);
  return mine[0][0];
}

/** Instructions counted in the dump files of `pid` written since `seen`. */
function dumped(pid, seen) {
  let total = 0;
  for (const f of readdirSync(tmp)) {
    if (!f.startsWith(`callgrind.${pid}.`) || seen.has(f)) continue;
    seen.add(f);
    const m = readFileSync(join(tmp, f), 'utf8').match(/^totals: (\d+)/m);
    if (m) total += Number(m[1]);
  }
  return total;
}

async function measure(w) {
  const before = new Set(processes().keys());
  const mf = w.start();
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const pid = callgrindPid(before);
  const control = (arg) => execFileSync('callgrind_control', [arg, String(pid)], { stdio: 'ignore' });
  const pool = new Pool(url, { connections: 1, pipelining: 1 });
  const seen = new Set();
  const out = {};
  try {
    if (wanted.includes('first')) {
      // The isolate's first request (a plain push), counted with the compilation it sets off:
      // instrumentation stays on while background work settles. The KV simulator is started
      // first, as in perf/cpu.mjs: in production KV is another service.
      if (w.kv) await (await mf.getKVNamespace('WECHAT_KV')).get('perf:warm-up');
      await sleep(SETTLE_MS);
      const [push] = scenarios(['plain']);
      control('--instr=on');
      const res = await pool.request({ path: push.path, method: push.method, body: push.body, headers: push.headers });
      await res.body.arrayBuffer();
      if (w.id !== 'empty' && res.statusCode !== push.status) throw new Error(`${w.id} first: status ${res.statusCode}, expected ${push.status}`);
      await sleep(SETTLE_MS);
      control('--instr=off');
      control('--dump=first');
      out.first = dumped(pid, seen);
    }
    for (const sc of scenarios(wanted)) {
      if (!wanted.includes(sc.id)) continue;
      const send = async (count) => {
        for (let i = 0; i < count; i++) {
          const request = async () => {
            const res = await pool.request({ path: sc.path, method: sc.method, body: sc.body, headers: sc.headers });
            await res.body.arrayBuffer();
            return res;
          };
          // workerd may close a keep-alive connection between requests: one retry, on a new one.
          const res = await request().catch((e) => (e.code === 'UND_ERR_SOCKET' ? request() : Promise.reject(e)));
          if (w.id !== 'empty' && res.statusCode !== sc.status) throw new Error(`${w.id} ${sc.id}: status ${res.statusCode}, expected ${sc.status}`);
        }
      };
      await send(WARMUP);
      control('--instr=on');
      await send(N);
      control('--instr=off');
      control(`--dump=${sc.id}`);
      out[sc.id] = dumped(pid, seen) / N;
    }
  } finally {
    await pool.close();
    await mf.dispose();
  }
  return out;
}

const results = Object.fromEntries(WORKERS.map((w) => [w.id, Object.fromEntries(wanted.map((s) => [s, []]))]));
for (let run = 0; run < RUNS; run++) {
  const order = run % 2 === 0 ? WORKERS : [...WORKERS].reverse();
  for (const w of order) {
    const counts = await measure(w);
    for (const [s, n] of Object.entries(counts)) results[w.id][s].push(n);
    process.stderr.write(`run ${run + 1}/${RUNS} ${w.id}: ${Object.entries(counts).map(([s, n]) => `${s} ${Math.round(n)}`).join(', ')}\n`);
  }
}
rmSync(tmp, { recursive: true, force: true });

const k = (n) => (n / 1000).toFixed(1);
const span = (xs) => `${k(median(xs))} (${k(Math.min(...xs))}–${k(Math.max(...xs))})`;
const summary = {};
console.log(`\nthousands of instructions per request, whole workerd process (median of ${RUNS} runs, min–max); ${WARMUP} warm-up, ${N} counted` +
  (wanted.includes('first') ? '; first: the one first request, with what it compiles' : ''));
console.log(['scenario', 'empty (floor)', 'JS Worker', 'ours', ...(o.compare ? ['compare'] : []), 'ours/JS above floor', ...(o.compare ? ['ours/compare above floor'] : [])].join(' | '));
for (const s of wanted) {
  const floor = median(results.empty[s]);
  const above = (id) => median(results[id][s]) - floor;
  const row = { floor, js: above('js'), ours: above('ours'), ...(o.compare ? { compare: above('compare') } : {}) };
  row.oursOverJs = row.ours / row.js;
  if (o.compare) row.oursOverCompare = row.ours / row.compare;
  summary[s] = { ...row, runs: Object.fromEntries(WORKERS.map((w) => [w.id, results[w.id][s]])) };
  console.log([s, span(results.empty[s]), `${span(results.js[s])}; +${k(row.js)}`, `${span(results.ours[s])}; +${k(row.ours)}`,
    ...(o.compare ? [`${span(results.compare[s])}; +${k(row.compare)}`] : []), row.oursOverJs.toFixed(2), ...(o.compare ? [row.oursOverCompare.toFixed(2)] : [])].join(' | '));
}
if (o.json) writeFileSync(o.json, JSON.stringify({ runs: RUNS, requests: N, warmup: WARMUP, summary }, null, 2));
