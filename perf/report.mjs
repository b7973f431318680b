#!/usr/bin/env node
// `make bench`: every figure in one table a reader can compare across commits, and the budgets.
//   core (native, divan): ns per message, plain and safe mode, per message type
//   CPU per request in workerd against a plain JS Worker (perf/cpu.mjs): above the runtime's
//              floor, first request of a fresh isolate, bundle gzip
//   miniflare: req/s and p99 of POST /wechat (plain, safe) and POST /api/messages, each next to
//              GET /healthz on the same server in the same run
//   bundle: raw and gzip, from `wrangler deploy --dry-run`
//   token requests made during the send benchmark
// Exit status 1 when a budget is missed. Assumes `make build` ran (the Makefile does it).
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BUDGET = {
  bundleGzipKiB: 160,
  corePlainUs: 5,
  // (No throughput budget against GET /healthz any more: the entry replays the health report
  // without calling the core, so it is no longer a request of the same kind. The CPU budgets
  // against the JS Worker are the ones that count; the throughput table is kept for reading.)
  // CPU above the floor against the JS Worker (per-round median of the ratio).
  cpu: { plain: 0.6, safe: 0.7, healthz: 1.0, notfound: 1.0 },
  firstRequest: 1.1,
  // A 2,000-character text against the fullest rules (5,411 "contains" words), CPU above the
  // floor, over the same text against the defaults (issue 23.4).
  keywordsFullOverDefaults: 1.5,
};
const root = new URL('..', import.meta.url).pathname;
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) { process.stderr.write(r.stdout + r.stderr); throw new Error(`${cmd} ${args.join(' ')} failed`); }
  return r.stdout;
};

// 1. Core. divan prints a tree: a group's header (`├─ plain`) has no figures, its rows are
// indented below it; a bench without arguments is a row of its own at the top level.
const toNs = (v, unit) => Number(v) * ({ ns: 1, 'µs': 1e3, us: 1e3, ms: 1e6, s: 1e9 }[unit]);
const core = {}; // message type -> { plain, safe }
const other = {}; // 'group/name' or 'name' -> median ns (the desk's decisions, serve, duplicate keys)
let group = null;
const FIGURE = '([\\d.]+) (ns|µs|ms)';
for (const line of run('cargo', ['bench', '-p', 'kf-core', '--bench', 'core']).split('\n')) {
  const top = line.match(/^[├╰]─ (\S+)/);
  const row = line.match(new RegExp(`[├╰]─ (\\S+)\\s+${FIGURE}\\s+│\\s+${FIGURE}\\s+│\\s+${FIGURE}`));
  if (top && !row) { group = top[1]; continue; }
  if (!row) continue;
  const [name, fastest, median] = [row[1], toNs(row[2], row[3]), toNs(row[6], row[7])];
  if (top) { group = null; other[name] = median; continue; }
  if (group === 'plain' || group === 'safe') (core[name] ??= {})[group] = { fastest, median };
  else other[`${group}/${name}`] = median;
}

// BENCH_REUSE=<dir>: the workerd runs of an earlier `make bench` (its cpu.json, keywords.json,
// tp.json) instead of new ones: the report again, e.g. after the core's benchmarks changed.
const reuse = process.env.BENCH_REUSE;
const dir = reuse ?? mkdtempSync(join(tmpdir(), 'wechat-bench-'));

// 2. CPU per request against the JS Worker. The first-request budget is checked on 80 extra
// isolates per worker (89 in all with the 9 rounds' own): with cpu.mjs's default 24 (29 in all
// with 5 rounds), the median ratio's 95% interval was 0.97–1.10 in one run, too wide to tell
// 0.97 from 1.0; with 80, 0.93–0.99.
// 9 rounds rather than cpu.mjs's 5: a /healthz costs ~30 µs above a ~300 µs floor, and one
// round's ratio for it ranged 0.27–2.29 in a run whose pooled ratio was 0.61, and a run's median
// (5 to 7 rounds) was 1.37 and 1.03 in 2 of 7 runs of one build, 0.61–0.77 in the others.
const cpuTable = reuse
  ? run('node', ['perf/pool.mjs', join(dir, 'cpu.json')])
  : run('node', ['perf/cpu.mjs', '--rounds', '9', '--first-rounds', '80', '--json', join(dir, 'cpu.json')]);
const cpu = JSON.parse(readFileSync(join(dir, 'cpu.json'), 'utf8')).summary;

// 2b. The keyword matcher's cost: the 2,000-character text with the defaults (ours) and with the
// fullest rules stored (the compare column), in the same rounds.
if (!reuse) run('node', ['perf/cpu.mjs', '--rounds', '5', '--first-rounds', '0', '--scenarios', 'long',
  '--compare-rules', 'tests/fixtures/rules/most-words.json', '--json', join(dir, 'keywords.json')]);
const keywords = JSON.parse(readFileSync(join(dir, 'keywords.json'), 'utf8')).summary;
// oursOverCompare is defaults / fullest; the budget is the other way round.
const fullOverDefaults = 1 / keywords.ratios.long.oursOverCompare.median;
const keywordUs = { defaults: keywords.above.long.ours.median, full: keywords.above.long.compare.median };

// 3. Throughput (miniflare), 4. token requests.
if (!reuse) run('node', ['perf/throughput.mjs', '--json', join(dir, 'tp.json')]);
const tp = JSON.parse(readFileSync(join(dir, 'tp.json'), 'utf8'));

// 5. Bundle.
const size = Object.fromEntries(run('bash', ['scripts/bundle-size.sh'], { env: { ...process.env, BUNDLE_BUDGET_KIB: '100000' } })
  .split('\n').map((l) => l.split(' ')).filter((p) => p.length === 2));
// A size that could not be read must not pass the budget as 0 KiB.
if (!(Number(size.bundle_gzip_kib) > 0)) throw new Error('scripts/bundle-size.sh printed no bundle size');

// Report.
const us = (ns) => (ns / 1000).toFixed(2);
console.log('\n## Core: verify + parse + render per message (native, divan median; fastest in brackets), µs\n');
console.log('| message | plain | safe |\n|---|---|---|');
for (const [name, r] of Object.entries(core)) {
  console.log(`| ${name} | ${us(r.plain.median)} (${us(r.plain.fastest)}) | ${us(r.safe.median)} (${us(r.safe.fastest)}) |`);
}
console.log('\n## Other core benchmarks (native, divan median), µs\n');
for (const [name, ns] of Object.entries(other)) console.log(`- ${name}: ${us(ns)}`);
console.log('\n## CPU per request in workerd, against a plain JS Worker (perf/cpu.mjs)\n');
console.log(cpuTable.trim());
console.log(`\n(Every round's figures: ${join(dir, 'cpu.json')}; \`node perf/pool.mjs\` pools several runs.)`);
console.log(`\n## Keywords: a 2,000-character text, CPU above the floor (perf/cpu.mjs --scenarios long, 5 rounds)\n`);
console.log(`defaults ${keywordUs.defaults.toFixed(1)} µs · fullest rules (tests/fixtures/rules/most-words.json) ${keywordUs.full.toFixed(1)} µs · ratio ${fullOverDefaults.toFixed(2)} (${join(dir, 'keywords.json')})`);
console.log(`\n## Local miniflare (workerd), ${tp.client}, each route against GET /healthz in alternating rounds (medians)\n`);
console.log('| route | req/s | p99 ms | /healthz req/s | /healthz p99 ms | ratio (min–max) |\n|---|---|---|---|---|---|');
for (const r of tp.rows) {
  console.log(`| ${r.route} | ${r.rps.toFixed(0)} | ${r.p99_ms.toFixed(1)} | ${r.healthz_rps.toFixed(0)} | ${r.healthz_p99_ms.toFixed(1)} | ${r.ratio.toFixed(2)} (${r.ratio_min.toFixed(2)}–${r.ratio_max.toFixed(2)}) |`);
}
console.log(`\ntoken requests during the send benchmark: ${tp.tokenRequests}`);
console.log(`\n## Bundle (wrangler deploy --dry-run)\n\nraw ${size.bundle_raw_bytes} B, gzip ${size.bundle_gzip_bytes} B (${size.bundle_gzip_kib} KiB), wasm ${size.wasm_raw_bytes} B`);

const worstPlain = Math.max(...Object.values(core).map((r) => r.plain.median));
const checks = [
  [`bundle gzip <= ${BUDGET.bundleGzipKiB} KiB`, Number(size.bundle_gzip_kib) <= BUDGET.bundleGzipKiB, `${size.bundle_gzip_kib} KiB`],
  [`core plain mode <= ${BUDGET.corePlainUs} µs/message (slowest type, median)`, worstPlain / 1000 <= BUDGET.corePlainUs, `${us(worstPlain)} µs`],
  ...Object.entries(BUDGET.cpu).map(([sc, max]) => [`CPU above floor, ${sc} <= ${max}x the JS Worker (per-round median)`,
    cpu.ratios[sc].oursOverJs.median <= max, `${cpu.ratios[sc].oursOverJs.median.toFixed(2)}x (pooled ${cpu.ratios[sc].pooledOursOverJs.toFixed(2)}x)`]),
  [`first request of a fresh isolate <= ${BUDGET.firstRequest}x the JS Worker's CPU`, cpu.ratios.first.oursOverJs.median <= BUDGET.firstRequest,
    `${cpu.ratios.first.oursOverJs.median.toFixed(2)}x (95% CI ${cpu.ratios.first.oursOverJs.interval.lo.toFixed(2)}–${cpu.ratios.first.oursOverJs.interval.hi.toFixed(2)})`],
  [`2,000-character text: fullest rules <= ${BUDGET.keywordsFullOverDefaults}x the defaults (CPU above floor)`, fullOverDefaults <= BUDGET.keywordsFullOverDefaults, `${fullOverDefaults.toFixed(2)}x`],
  ['no non-2xx answers or errors under load', tp.rows.every((r) => r.floor || (r.non2xx === 0 && r.errors === 0)),
    tp.rows.filter((r) => !r.floor).map((r) => r.non2xx + r.errors).join('/')],
];
console.log('\n## Budgets\n\n| budget | measured | |\n|---|---|---|');
for (const [name, ok, got] of checks) console.log(`| ${name} | ${got} | ${ok ? 'ok' : 'MISSED'} |`);
process.exit(checks.every((c) => c[1]) ? 0 : 1);
