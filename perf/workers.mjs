// The workers perf/cpu.mjs and perf/instructions.mjs measure, started the same way in both: the
// JS Worker (perf/js-worker/, bundled as wrangler would), the empty worker (the runtime's floor)
// and Rust builds, each in its own Miniflare (its own workerd process), and the requests measured.
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import * as esbuild from 'esbuild';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorker, wrapEntry, defaultBindings, COMPATIBILITY_DATE } from '../tests/support/worker.mjs';
import { plainQuery, safePush, fixture } from '../tests/support/wechat.mjs';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const KF = 'kf2001@gh_10f6c3c3ac5a';
export const bindings = { ...defaultBindings, WECHAT_KF_ACCOUNT: KF };
export const EMPTY_WORKER = join(root, 'perf/empty-worker');

/**
 * Bundles the JS Worker into `<dir>/worker.mjs` as wrangler would (esbuild, ESM, not minified);
 * answers the bundle's bytes and the minified bundle's, for its size.
 */
export async function bundleJsWorker(dir) {
  const options = {
    entryPoints: [join(root, 'perf/js-worker/worker.mjs')],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    target: 'es2022',
    logLevel: 'warning',
  };
  await esbuild.build({ ...options, outfile: join(dir, 'worker.mjs') });
  const minified = (await esbuild.build({ ...options, minify: true, write: false })).outputFiles[0].contents;
  return { bundle: readFileSync(join(dir, 'worker.mjs')), minified };
}

/**
 * A start function for a plain JS worker in `dir` (worker.mjs), with the measured bindings;
 * `logs` receives workerd's log lines (`{ level, message }`).
 */
export const plainWorker = (dir, logs, extra = {}) => () => new Miniflare(convertV4MiniflareOptions({
  modules: [{ type: 'ESModule', path: join(dir, 'worker.mjs') }],
  modulesRoot: dir,
  compatibilityDate: COMPATIBILITY_DATE,
  bindings,
  cf: false,
  handleStructuredLogs: logs,
  ...extra,
}));

/**
 * A start function for a Rust build in `dir` (build/ layout). Without the D1 database by
 * default: miniflare's D1 runs its SQLite in the same workerd process, so its work would count
 * as the worker's CPU, where in production it is the database's (`database: true` measures the
 * ledger's cost as it runs here).
 */
export const rustWorker = (dir, logs, { database = false } = {}) => () =>
  database === 'stub'
    ? startWorker({
      buildDir: dir,
      database: false,
      bindings: { WECHAT_KF_ACCOUNT: KF },
      options: { handleStructuredLogs: logs },
      worker: wrapEntry(D1_STUB, dir),
    })
    : startWorker({ buildDir: dir, database, bindings: { WECHAT_KF_ACCOUNT: KF }, options: { handleStructuredLogs: logs } });

/**
 * A D1 binding that runs nothing: every statement "changes one row" at once. With it the worker
 * pays for issuing its statements (binding them, the calls, the answers) but not for a database
 * engine, which in production is D1's, not the worker's CPU. (The class name is what the worker
 * crate recognises a D1 binding by.) The worker is entered through this module, which hands it the
 * stub.
 */
const D1_STUB = `
import worker from './worker.mjs';
class Statement {
  bind() { return this; }
  async run() { return { success: true, results: [], meta: { changes: 1, rows_read: 0, rows_written: 2 } }; }
  async all() { return { success: true, results: [], meta: {} }; }
}
class D1Database {
  prepare() { return new Statement(); }
  async batch(statements) { return Promise.all(statements.map((s) => s.run())); }
}
const db = new D1Database();
export default {
  fetch: (request, env, ctx) => worker.fetch(request, { ...env, WECHAT_DB: db }, ctx),
  scheduled: (controller, env, ctx) => worker.scheduled(controller, { ...env, WECHAT_DB: db }, ctx),
};`;

const XML = { 'content-type': 'text/xml' };
const text = fixture('messages/text.xml').toString();
/** A text message of 2,000 characters that no keyword of the benchmarks' rules matches. */
const long = text.replace(/<Content>.*<\/Content>/, `<Content><![CDATA[${'我想咨询一下订单的物流情况，请问什么时候能到？'.repeat(100).slice(0, 2000)}]]></Content>`);
/**
 * The measured requests, rebuilt every round so timestamps stay inside the 300 s window: those
 * whose id is in `wanted`, and always the first (a plain push, also the first request's).
 */
export function scenarios(wanted) {
  const safe = safePush(text);
  return [
    { id: 'plain', label: 'POST /wechat plain text', method: 'POST', path: `/wechat?${plainQuery()}`, body: text, headers: XML, status: 200 },
    { id: 'safe', label: 'POST /wechat safe text', method: 'POST', path: `/wechat?${safe.query}`, body: safe.body, headers: XML, status: 200 },
    { id: 'healthz', label: 'GET /healthz', method: 'GET', path: '/healthz', status: 200 },
    { id: 'notfound', label: 'GET /nope (404)', method: 'GET', path: '/nope', status: 404 },
    { id: 'long', label: 'POST /wechat plain, 2,000-character text', method: 'POST', path: `/wechat?${plainQuery()}`, body: long, headers: XML, status: 200 },
  ].filter((sc, i) => i === 0 || wanted.includes(sc.id));
}
