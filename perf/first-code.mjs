#!/usr/bin/env node
// How much wasm code an isolate's first request makes V8 compile: a figure that, unlike CPU on
// a shared machine, does not move between runs. V8 compiles a wasm function on its first call,
// so the first request of a fresh isolate pays for every function it reaches (perf/cpu.mjs
// measures the CPU; this says where that part of it goes).
//
//   node perf/first-code.mjs [--top 25] [--scenarios plain,safe,healthz,notfound]
//
// Builds this tree with function names (scripts/build.sh with BUILD_OUT and "-Oz -g", so the
// functions are those of the real build; WASM_OPT_FLAGS=... replaces -Oz to compare settings), lets wasm-opt's --log-execution pass report every
// function entered, and for each scenario starts a fresh workerd, sends the one request and lists
// the functions it entered that module start-up had not: how many and their code bytes. The
// instrumented build is for this measurement only.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startWorker } from '../tests/support/worker.mjs';
import { plainQuery, safePush, fixture } from '../tests/support/wechat.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: o } = parseArgs({
  options: { top: { type: 'string', default: '25' }, scenarios: { type: 'string', default: 'plain,safe,healthz,notfound' } },
});
const FEATURES = ['bulk-memory', 'nontrapping-float-to-int', 'reference-types', 'multivalue', 'sign-ext', 'mutable-globals'].map((f) => `--enable-${f}`);
const bin = (name) => join(root, 'node_modules/.bin', name);

const tmp = mkdtempSync(join(tmpdir(), 'wechat-first-code-'));
const named = join(tmp, 'named');
const logged = join(tmp, 'logged');
try {
  execFileSync('bash', ['scripts/build.sh'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, BUILD_OUT: named, WASM_OPT_FLAGS: `${process.env.WASM_OPT_FLAGS ?? '-Oz'} -g` } });
  cpSync(named, logged, { recursive: true });
  execFileSync(bin('wasm-opt'), [...FEATURES, '-g', '--log-execution', join(named, 'index_bg.wasm'), '-o', join(logged, 'index_bg.wasm')]);
  const ids = logIds(execFileSync(bin('wasm-dis'), [...FEATURES, join(logged, 'index_bg.wasm')], { maxBuffer: 1 << 28 }).toString());
  instrumentEntry(join(logged, 'worker.mjs'));
  const sizes = functionSizes(readFileSync(join(named, 'index_bg.wasm')));

  const text = fixture('messages/text.xml').toString();
  const requests = {
    plain: (url) => fetch(`${url}/wechat?${plainQuery()}`, { method: 'POST', body: text }),
    safe: (url) => { const s = safePush(text); return fetch(`${url}/wechat?${s.query}`, { method: 'POST', body: s.body }); },
    healthz: (url) => fetch(`${url}/healthz`),
    notfound: (url) => fetch(`${url}/nope`),
  };
  const rows = [];
  for (const id of o.scenarios.split(',')) {
    const mf = startWorker({ buildDir: logged, quiet: true, bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' } });
    try {
      const url = (await mf.ready).toString().replace(/\/$/, '');
      const entered = async () => new Set((await (await fetch(`${url}/__entered`)).json()).map((i) => ids.get(i)));
      const startup = await entered();
      const res = await requests[id](url);
      await res.arrayBuffer();
      const fresh = [...(await entered())].filter((f) => !startup.has(f)).map((f) => [sizes.get(f) ?? 0, f]).sort((a, b) => b[0] - a[0]);
      const bytes = fresh.reduce((t, [s]) => t + s, 0);
      rows.push([id, res.status, fresh.length, bytes]);
      console.log(`\n${id} (${res.status}): ${fresh.length} functions compiled on first call, ${bytes} B of code; the largest:`);
      for (const [s, f] of fresh.slice(0, Number(o.top))) console.log(`${String(s).padStart(7)}  ${f}`);
    } finally {
      await mf.dispose();
    }
  }
  let total = 0;
  for (const s of sizes.values()) total += s;
  console.log(`\n| first request | status | functions compiled | code bytes (of ${total} in the module) |\n|---|---|---|---|`);
  for (const [id, status, n, bytes] of rows) console.log(`| ${id} | ${status} | ${n} | ${bytes} |`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

/** log id -> function name, from the instrumented module's text: each id is logged by one function. */
function logIds(wat) {
  const imported = /\(import "[^"]*" "log_execution" \(func \$(\S+)/.exec(wat)?.[1];
  if (!imported) throw new Error('wasm-opt --log-execution added no log_execution import');
  const out = new Map();
  let current;
  const lines = wat.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    const func = /^\(func \$("(?:[^"\\]|\\.)*"|[^\s()]+)/.exec(line);
    if (func) current = func[1].replace(/^"|"$/g, '');
    else if (line === `(call $${imported}`) {
      const id = /^\(i32\.const (\d+)\)/.exec(lines[i + 1]?.trim() ?? '');
      if (id) out.set(Number(id[1]), current);
    }
  }
  return out;
}

/** The built entry, with the log import answered and the functions entered served at /__entered. */
function instrumentEntry(path) {
  let js = readFileSync(path, 'utf8');
  const instance = /new WebAssembly\.Instance\((\w+),(\w+)\(\)\)/g;
  if (!instance.test(js)) throw new Error('no wasm instantiation found in the built entry');
  js = js.replace(instance, (_, mod, imports) =>
    `new WebAssembly.Instance(${mod},(()=>{const o=${imports}();for(const m of Object.values(o))m.log_execution=(i)=>{(globalThis.__entered??=new Set).add(i)};return o})())`);
  const exp = /export\{(\w+) as default\};/.exec(js);
  if (!exp) throw new Error('no default export found in the built entry');
  js = js.replace(exp[0], `export default{fetch(r,e,c){if(new URL(r.url).pathname==="/__entered"){const s=[...(globalThis.__entered??[])];globalThis.__entered=new Set;return new Response(JSON.stringify(s))}return ${exp[1]}.fetch(r,e,c)},scheduled:${exp[1]}.scheduled};`);
  writeFileSync(path, js);
}

/** Function name -> body bytes, from the code section and the name section. */
function functionSizes(b) {
  let p = 8;
  const leb = () => { let r = 0; let s = 0; let x; do { x = b[p++]; r |= (x & 0x7f) << s; s += 7; } while (x & 0x80); return r >>> 0; };
  const skipLimits = () => { const flags = leb(); leb(); if (flags & 1) leb(); };
  let imports = 0;
  const bodies = [];
  const names = new Map();
  while (p < b.length) {
    const id = b[p++];
    const end = leb() + p;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        for (let field = 0; field < 2; field++) { const len = leb(); p += len; } // module and field names
        const kind = b[p++];
        if (kind === 0) { leb(); imports++; } else if (kind === 1) { p++; skipLimits(); } else if (kind === 2) skipLimits(); else if (kind === 3) p += 2;
      }
    } else if (id === 10) {
      for (let n = leb(); n > 0; n--) { const size = leb(); bodies.push(size); p += size; }
    } else if (id === 0) {
      const len = leb();
      if (b.subarray(p, p + len).toString() === 'name') {
        p += len;
        while (p < end) {
          const sub = b[p++];
          const subEnd = leb() + p;
          if (sub === 1) for (let n = leb(); n > 0; n--) { const idx = leb(); const l = leb(); names.set(idx, b.subarray(p, p + l).toString()); p += l; }
          p = subEnd;
        }
      }
    }
    p = end;
  }
  return new Map(bodies.map((size, i) => [names.get(i + imports) ?? `${i + imports}`, size]));
}
