#!/usr/bin/env node
// Several perf/cpu.mjs runs of the same builds (their --json), pooled. On this machine one run's
// rows move by tens of percent (a /healthz or a 404 costs ~30-70 µs above a floor of ~300 µs that
// itself moves by ±40% from slice to slice), so a ratio near a budget is read from several runs:
//
//   node perf/pool.mjs run1.json run2.json ...
//
// Pool runs of one build and the same cpu.mjs settings (the files do not say which commit was
// measured: `config.ours` is a directory). The intervals resample rounds (and isolates) as if
// they were independent, but whole runs drift with the machine, so read the runs' own medians
// beside a pooled figure before calling it under a budget.
//
// - Every scenario: the per-round ratios (ours/JS above the floor, as in cpu.mjs, and the A/A
//   control ours2/ours) of every round of every run, their median with a 95% bootstrap interval,
//   and the spread of the runs' own medians.
// - The first request of a fresh isolate: the per-isolate ratios of every run (each pairs two
//   workers started in the same round), their median with its interval, and the ratio of medians.
import { readFileSync } from 'node:fs';
import { median, medianInterval, firstRequests, aboveFloor } from './stats.mjs';

const files = process.argv.slice(2);
if (!files.length) {
  console.error('usage: node perf/pool.mjs run1.json [run2.json ...]');
  process.exit(2);
}
const runs = files.map((file) => {
  const run = JSON.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(run.rounds) || !Array.isArray(run.firstRounds)) throw new Error(`${file}: not a perf/cpu.mjs --json file`);
  return run;
});
const f2 = (x) => x.toFixed(2);
const span = (xs) => `${f2(Math.min(...xs))}–${f2(Math.max(...xs))}`;
/** Median (95% CI) of `xs`. */
const withInterval = (xs) => {
  const ci = medianInterval(xs);
  return `${f2(median(xs))} (${f2(ci.lo)}–${f2(ci.hi)})`;
};

const builds = [...new Set(runs.map((r) => r.config.ours))];
console.log(`${runs.length} run(s), ${runs.reduce((n, r) => n + r.rounds.length, 0)} rounds; ours: ${builds.join(', ')}`);

console.log('\n| row | rounds | ours/JS: median of per-round ratios (95% CI) | the runs\' medians | A/A ours2/ours (95% CI) |\n|---|---|---|---|---|');
const scenarios = [...new Set(runs.flatMap((r) => Object.keys(r.rounds[0]?.workers.ours.scenarios ?? {})))];
for (const sc of scenarios) {
  const measured = runs.filter((r) => r.rounds.length > 0 && r.rounds.every((rd) => rd.workers.ours.scenarios[sc]?.chunksUs));
  const ratio = (rd, a, b) => aboveFloor(rd, a, sc) / aboveFloor(rd, b, sc);
  const all = measured.flatMap((r) => r.rounds);
  const perRun = measured.map((r) => median(r.rounds.map((rd) => ratio(rd, 'ours', 'js'))));
  console.log(`| ${sc} | ${all.length} | ${withInterval(all.map((rd) => ratio(rd, 'ours', 'js')))} | ${span(perRun)} | ${withInterval(all.map((rd) => ratio(rd, 'ours2', 'ours')))} |`);
}

console.log('\nFirst request of a fresh isolate (ms CPU):\n\n| pair | isolates | median of per-isolate ratios (95% CI) | ratio of medians | medians (ms) |\n|---|---|---|---|---|');
const samples = runs.flatMap((run) =>
  firstRequests(run.rounds, run.firstRounds).map((rd) => Object.fromEntries(Object.entries(rd).map(([id, f]) => [id, f.ms]))));
for (const [a, b] of [['ours', 'js'], ['ours2', 'js'], ['ours2', 'ours'], ['ours', 'compare']]) {
  const pairs = samples.filter((s) => a in s && b in s);
  if (!pairs.length) continue;
  const [ma, mb] = [median(pairs.map((s) => s[a])), median(pairs.map((s) => s[b]))];
  console.log(`| ${a}/${b} | ${pairs.length} | ${withInterval(pairs.map((s) => s[a] / s[b]))} | ${f2(ma / mb)} | ${ma.toFixed(2)} / ${mb.toFixed(2)} |`);
}
