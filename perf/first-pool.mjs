#!/usr/bin/env node
// The first request of a fresh isolate, pooled over several perf/cpu.mjs runs (their --json): one
// sample per isolate is noisy (this machine's speed moves it by up to 2x), so runs of the same
// builds are worth combining before reading a ratio close to 1.
//
//   node perf/first-pool.mjs run1.json run2.json ...
//
// For each pair of workers present in every run: the median of the per-isolate ratios (each
// ratio pairs two workers started in the same round) with its 95% bootstrap interval, and the
// ratio of the two medians.
import { readFileSync } from 'node:fs';
import { median, medianInterval, firstRequests } from './stats.mjs';

const files = process.argv.slice(2);
if (!files.length) {
  console.error('usage: node perf/first-pool.mjs run1.json [run2.json ...]');
  process.exit(2);
}
/** Every isolate's first-request CPU in one run, worker id -> ms, one object per round. */
function firsts(file) {
  const run = JSON.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(run.rounds) || !Array.isArray(run.firstRounds)) throw new Error(`${file}: not a perf/cpu.mjs --json file`);
  const samples = firstRequests(run.rounds, run.firstRounds).map((rd) => Object.fromEntries(Object.entries(rd).map(([id, f]) => [id, f.ms])));
  return { builds: run.config, samples };
}
const runs = files.map(firsts);
const samples = runs.flatMap((r) => r.samples);
const f2 = (x) => x.toFixed(3);
console.log(`${samples.length} rounds from ${files.length} run(s); ours: ${[...new Set(runs.map((r) => r.builds.ours))].join(', ')}`);
console.log('\n| pair | isolates | median of per-isolate ratios (95% CI) | ratio of medians | medians (ms) |\n|---|---|---|---|---|');
for (const [a, b] of [['ours', 'js'], ['ours2', 'js'], ['ours2', 'ours'], ['ours', 'compare']]) {
  const pairs = samples.filter((s) => a in s && b in s);
  if (!pairs.length) continue;
  const ratios = pairs.map((s) => s[a] / s[b]);
  const ci = medianInterval(ratios);
  const [ma, mb] = [median(pairs.map((s) => s[a])), median(pairs.map((s) => s[b]))];
  console.log(`| ${a}/${b} | ${pairs.length} | ${f2(median(ratios))} (${f2(ci.lo)}–${f2(ci.hi)}) | ${f2(ma / mb)} | ${ma.toFixed(2)} / ${mb.toFixed(2)} |`);
}
