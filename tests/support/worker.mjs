// One Miniflare running the built wasm bundle, with the WeChat API mocked in-process.
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
import { fileURLToPath } from 'node:url';
import { join, relative } from 'node:path';
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { TOKEN, APPID, AES_KEY } from './wechat.mjs';
import { mockWeChat, APPSECRET } from './mock-wechat.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

export const ADMIN_TOKEN = 'test-admin-token';
export const BASE = 'http://worker.test';

export const defaultBindings = {
  WECHAT_TOKEN: TOKEN,
  WECHAT_APPID: APPID,
  WECHAT_ENCODING_AES_KEY: AES_KEY,
  WECHAT_APPSECRET: APPSECRET,
  WECHAT_API_BASE: 'https://api.weixin.qq.com',
  ADMIN_TOKEN,
};

/**
 * Starts the worker. `wechat` answers every outbound fetch (the WeChat API mock);
 * `bindings` override the defaults (a value of `undefined` removes the variable).
 * `buildDir` (absolute, default `<repo>/build`) runs another build of the bundle, e.g. a baseline;
 * `assets: true` serves the static assets too (the operator console, `<buildDir>/assets`) as
 * `wrangler dev` would, with wrangler.toml's [assets] settings (see {@link assetsOptions});
 * without it (the default) only the worker runs, as before.
 * `options` are passed to Miniflare as they are (they win over the defaults here); `worker`
 * options to the worker itself (Miniflare 4's names: converted for miniflare 5), and
 * `extraWorkers` run beside it in the same Miniflare (a second isolate of the same bundle).
 * `persist` (a directory) keeps KV and D1 on disk, so that a worker restarted on it finds them.
 */
export function startWorker({ bindings = {}, wechat, persist, quiet = false, captureLogs = false, buildDir, assets = false, database = true, options = {}, worker = {}, extraWorkers = [] } = {}) {
  const merged = { ...defaultBindings, ...bindings };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const logs = [];
  // workerd's log lines (console.log/error of the worker), one object per line; errors and
  // warnings count as stderr, as miniflare's own handler prints them.
  const keep = ({ level, message }) => {
    const stream = level === 'error' || level === 'warn' ? 'stderr' : 'stdout';
    for (const line of String(message).split('\n')) if (line.trim()) logs.push({ stream, line });
  };
  for (const [where, given] of [['startWorker', { persist, ...options }], ['worker', worker]]) {
    const stale = Object.keys(given).filter((k) => MINIFLARE_4_ONLY.includes(k));
    if (stale.length > 0) throw new Error(`${where}: ${stale.join(', ')} no longer exist in miniflare 5 (see startWorker's doc)`);
  }
  const dir = buildDir ?? join(root, 'build');
  const mf = new Miniflare(convertV4MiniflareOptions({
    // KV and D1 kept on disk under `persist` (a worker restarted on the same state), or in memory.
    ...(persist ? { resourcePersistencePath: persist } : {}),
    cf: false,
    // Benchmarks discard the worker's log lines instead of echoing them through this process.
    // With WORKER_LOG_DIR (make test-integration) every line is also kept on disk, for the check
    // that no line of the whole suite holds a secret (tests/support/no-secrets.mjs).
    handleStructuredLogs: (log) => {
      record(String(log.message));
      if (captureLogs) keep(log);
      else if (!quiet) (log.level === 'error' || log.level === 'warn' ? console.error : console.log)(log.message);
    },
    ...options,
    workers: [
      {
        name: 'worker',
        ...bundle(dir),
        kvNamespaces: ['WECHAT_KV'],
        // The D1 database, its migrations applied before `ready` resolves (`database: false`:
        // a deployment without it).
        ...(database ? { d1Databases: { WECHAT_DB: DATABASE_ID } } : {}),
        bindings: merged,
        outboundService: wechat ?? (async () => new Response('no WeChat here', { status: 599 })),
        ...(assets ? { assets: assetsOptions(join(dir, 'assets')) } : {}),
        ...worker,
      },
      ...extraWorkers,
    ],
  }));
  let started = mf;
  if (database) {
    // `ready` resolves once the migrations are applied. Miniflare's own methods await its
    // `this.ready`, so they run on the Miniflare itself, not through this view of it.
    const ready = mf.ready.then(async (url) => { await applyMigrations(await mf.getD1Database('WECHAT_DB')); return url; });
    // Requests wait for the migrations too, and a worker disposed at once lets them finish first.
    const settled = ready.catch(() => {});
    const dispatchFetch = async (...args) => { await ready; return mf.dispatchFetch(...args); };
    const dispose = async () => { await settled; return mf.dispose(); };
    started = new Proxy(mf, {
      get(target, prop) {
        if (prop === 'ready') return ready;
        if (prop === 'dispatchFetch') return dispatchFetch;
        if (prop === 'dispose') return dispose;
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
      set(target, prop, value) { return Reflect.set(target, prop, value, target); },
    });
  }
  /** With `captureLogs`: every line the worker wrote, `{ stream: 'stdout'|'stderr', line }`. */
  started.logs = logs;
  /** The worker's JSON log lines (request lines and cron lines), parsed. */
  started.logLines = () => logs.flatMap(({ stream, line }) => {
    const start = line.indexOf('{');
    try { return start < 0 ? [] : [{ stream, ...JSON.parse(line.slice(start)) }]; } catch { return []; }
  });
  return started;
}

/**
 * Miniflare 4 options its v5 converter drops without a word: refused here instead. (Persistence
 * is `persist`; logs go through `handleStructuredLogs`; a fake binding through `wrapEntry`.)
 */
const MINIFLARE_4_ONLY = ['kvPersist', 'd1Persist', 'cachePersist', 'handleRuntimeStdio', 'wrappedBindings', 'modulesRules'];

const LOG_DIR = process.env.WORKER_LOG_DIR;
/** Appends a worker's log line to this process's file under WORKER_LOG_DIR (when set). */
const record = LOG_DIR ? (line) => appendFileSync(join(LOG_DIR, `${process.pid}.log`), `${line}\n`) : () => {};

/**
 * Names a secret a test made (an operator token, an account's Token): the suite's log check
 * looks for it too (with WORKER_LOG_DIR; else nothing happens).
 */
export function noteSecret(value) {
  if (LOG_DIR) appendFileSync(join(LOG_DIR, `secrets-${process.pid}.txt`), `${value}\n`);
}

/** The id of the tests' D1 database: workers of one Miniflare bound to it share it. */
export const DATABASE_ID = 'wechat-kf-test-db';

/**
 * Applies `migrations/*.sql` in order to a D1 database as `wrangler d1 migrations apply` does:
 * each file not yet listed in its `d1_migrations` table in one batch (one transaction) with the
 * row that records it, split into statements by wrangler's own splitter. A database kept on
 * disk (`persist`) is migrated once.
 */
export async function applyMigrations(db) {
  const wrangler = createRequire(import.meta.url)('wrangler');
  const dir = join(root, 'migrations');
  await db.prepare(
    'CREATE TABLE IF NOT EXISTS d1_migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)',
  ).run();
  const applied = new Set((await db.prepare('SELECT name FROM d1_migrations').all()).results.map((r) => r.name));
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql') && !applied.has(f)).sort()) {
    const statements = wrangler.unstable_splitSqlQuery(readFileSync(join(dir, file), 'utf8'));
    try {
      await db.batch([...statements.map((sql) => db.prepare(sql)), db.prepare('INSERT INTO d1_migrations (name) VALUES (?)').bind(file)]);
    } catch (e) {
      throw new Error(`migration ${file} failed: ${e.message}`);
    }
  }
}

/** wrangler.toml's compatibility_date: the tests run the worker as it is deployed. */
export const COMPATIBILITY_DATE = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(readFileSync(join(root, 'wrangler.toml'), 'utf8'))?.[1];

/** The worker options that run the bundle built in `dir` (the same for a second isolate of it). */
export function bundle(dir = join(root, 'build')) {
  // build/worker.mjs; a baseline built by worker-build has worker/shim.mjs.
  const main = existsSync(join(dir, 'worker.mjs')) ? 'worker.mjs' : 'worker/shim.mjs';
  // Every module of the bundle, the entry first, each named by its path under `dir`
  // (JavaScript as ES modules, wasm compiled); the static assets are not modules.
  const files = readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => !f.startsWith('assets') && /\.(m?js|wasm)$/.test(f) && f !== main);
  return {
    modulesRoot: dir,
    modules: [main, ...files].map((f) => ({ type: f.endsWith('.wasm') ? 'CompiledWasm' : 'ESModule', path: join(dir, f) })),
    compatibilityDate: COMPATIBILITY_DATE,
  };
}

/**
 * The worker options that run the bundle in `dir` entered through `source`, an ES module that
 * imports the worker (`./worker.mjs`) and hands it other bindings (a slow KV namespace, a D1
 * database that runs nothing): how the tests give the worker a binding miniflare cannot make.
 */
export function wrapEntry(source, dir = join(root, 'build')) {
  const { modules, ...rest } = bundle(dir);
  // The bundle's own entry (worker.mjs, or a worker-build baseline's worker/shim.mjs).
  const main = relative(dir, modules[0].path);
  const contents = source.replaceAll("'./worker.mjs'", `'./${main}'`);
  return { ...rest, modules: [{ type: 'ESModule', path: join(dir, 'wrapped-entry.mjs'), contents }, ...modules] };
}

/**
 * Miniflare's `assets` option for the static assets in `directory`, made by wrangler itself from
 * wrangler.toml's [assets] (html_handling, not_found_handling, run_worker_first → the router's
 * static routing), exactly what `wrangler dev` gives miniflare. Miniflare reads `_headers` (and
 * `_redirects`) from the directory itself, with the same parser as wrangler (workers-shared).
 * Wrangler is loaded only here (about a second).
 */
export function assetsOptions(directory) {
  const wrangler = createRequire(import.meta.url)('wrangler');
  const { workerOptions } = wrangler.unstable_getMiniflareWorkerOptions(join(root, 'wrangler.toml'));
  if (!workerOptions.assets) throw new Error('wrangler.toml has no [assets] section');
  return { ...workerOptions.assets, directory };
}

/** A worker whose WeChat API is a fresh mock (`mock-wechat.mjs`), once ready: `{ mock, mf }`. */
export async function startWithMock(options = {}) {
  const mock = mockWeChat();
  const mf = startWorker({ wechat: mock.handler, ...options });
  await mf.ready;
  return { mock, mf };
}
