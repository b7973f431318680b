// Medians and their uncertainty, a round's CPU above the floor and cpu.mjs's first-request
// samples: shared by perf/cpu.mjs and perf/pool.mjs.

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** A small seeded generator (mulberry32): the same samples give the same interval on every run. */
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A 95% percentile-bootstrap interval for the median of `xs`: the 2.5th and 97.5th percentiles of
 * the medians of `draws` resamples (with replacement, same size). A first request is one sample
 * per isolate and moves by up to 2x with the machine's speed, so its median ratio is only worth as
 * much as this interval says.
 */
export function medianInterval(xs, draws = 2000, seed = 1) {
  const next = generator(seed);
  const medians = [];
  for (let d = 0; d < draws; d++) {
    const resample = xs.map(() => xs[Math.floor(next() * xs.length)]);
    medians.push(median(resample));
  }
  medians.sort((a, b) => a - b);
  return { lo: medians[Math.floor(draws * 0.025)], hi: medians[Math.ceil(draws * 0.975) - 1] };
}

/**
 * Every first request of a perf/cpu.mjs run, one object per round (worker id -> that isolate's
 * `{ ms, statMs }`): the main rounds' (`rounds[].workers[id].first`), then the extra ones.
 */
export const firstRequests = (rounds, firstRounds) => [
  ...rounds.map((rd) => Object.fromEntries(Object.entries(rd.workers).map(([id, w]) => [id, w.first]))),
  ...firstRounds,
];

/**
 * A worker's slices in one perf/cpu.mjs round, each less the empty worker's slice with the same
 * index (µs per request). Slices with the same index run back to back, so load elsewhere on the
 * machine, which moves a whole slice by up to 2x here, cancels in the pair.
 */
export const slicesAboveFloor = (round, id, sc) => {
  const floor = round.workers.empty.scenarios[sc].chunksUs;
  return round.workers[id].scenarios[sc].chunksUs.map((us, k) => us - floor[k]);
};

/** A worker's CPU above the floor in one perf/cpu.mjs round: the median of its paired slices. */
export const aboveFloor = (round, id, sc) => median(slicesAboveFloor(round, id, sc));
