// The workerd processes this node process started (one per Miniflare instance), and their CPU
// and memory, read from /proc: shared by perf/cpu.mjs and perf/faults.mjs.
import { readFileSync, readdirSync } from 'node:fs';

const CLK_TCK = 100; // USER_HZ on Linux
const readText = (p) => { try { return readFileSync(p, 'utf8'); } catch { return undefined; } };

/** pid -> { ppid, comm } for every process. */
export function processes() {
  const out = new Map();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const s = readText(`/proc/${e}/stat`);
    if (!s) continue;
    const close = s.lastIndexOf(')');
    const comm = s.slice(s.indexOf('(') + 1, close);
    const ppid = Number(s.slice(close + 2).split(' ')[1]);
    out.set(Number(e), { ppid, comm });
  }
  return out;
}

/** The workerd processes descending from this node process. */
export function workerdPids() {
  const procs = processes();
  const mine = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, p] of procs) if (!mine.has(pid) && mine.has(p.ppid)) { mine.add(pid); grew = true; }
  }
  return [...mine].filter((pid) => {
    if (pid === process.pid) return false;
    if (procs.get(pid)?.comm === 'workerd') return true;
    return (readText(`/proc/${pid}/cmdline`) ?? '').split('\0')[0].endsWith('workerd');
  });
}

/** Starts `start()` (a Miniflare) and finds the one workerd process it added: `{ mf, url, pid }`. */
export async function startTracked(start) {
  const before = new Set(workerdPids());
  const mf = start();
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const fresh = workerdPids().filter((p) => !before.has(p));
  if (fresh.length !== 1) {
    await mf.dispose();
    throw new Error(`expected one new workerd process, found ${fresh.length} (${fresh.join(', ')})`);
  }
  return { mf, url, pid: fresh[0] };
}

export const HAS_SCHEDSTAT = readText(`/proc/${process.pid}/schedstat`) !== undefined;

/** CPU of a process: per-thread ns on CPU (schedstat) and utime+stime (stat). */
export function cpu(pid) {
  const threads = new Map();
  if (HAS_SCHEDSTAT) {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const s = readText(`/proc/${pid}/task/${t}/schedstat`);
      if (s) threads.set(t, Number(s.split(' ')[0]));
    }
  }
  const stat = readText(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After ')': state(3) ppid(4) ... utime(14) stime(15) -> indices 11 and 12 here.
  const statNs = (Number(f[11]) + Number(f[12])) * (1e9 / CLK_TCK);
  let ns = 0;
  for (const v of threads.values()) ns += v;
  return { threads, ns: HAS_SCHEDSTAT ? ns : statNs, statNs, at: process.hrtime.bigint() };
}

/** CPU ns spent between two readings; threads that exited in between are counted as 0 and flagged. */
export function cpuDelta(a, b) {
  if (!HAS_SCHEDSTAT) return { ns: b.statNs - a.statNs, statNs: b.statNs - a.statNs, vanished: 0 };
  let ns = 0;
  let vanished = 0;
  for (const [t, v] of b.threads) ns += v - (a.threads.get(t) ?? 0);
  for (const t of a.threads.keys()) if (!b.threads.has(t)) vanished++;
  return { ns, statNs: b.statNs - a.statNs, vanished };
}

/** utime + stime of `pid` in seconds, or null when it is gone. */
export function cpuSecs(pid) {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return null;
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Resident memory of `pid` in KiB, or null when it is gone. */
export function rssKiB(pid) {
  const status = readText(`/proc/${pid}/status`);
  return status ? Number(/^VmRSS:\s*(\d+)\s*kB$/m.exec(status)?.[1] ?? NaN) : null;
}
