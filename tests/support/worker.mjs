// One Miniflare running the built wasm bundle, with the WeChat API mocked in-process.
import { Miniflare } from 'miniflare';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { TOKEN, APPID, AES_KEY } from './wechat.mjs';
import { mockWeChat } from './mock-wechat.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

export const ADMIN_TOKEN = 'test-admin-token';
export const BASE = 'http://worker.test';

export const defaultBindings = {
  WECHAT_TOKEN: TOKEN,
  WECHAT_APPID: APPID,
  WECHAT_ENCODING_AES_KEY: AES_KEY,
  WECHAT_APPSECRET: 'test-app-secret',
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
 * options to the worker itself, and `extraWorkers` run beside it in the same Miniflare (a
 * wrapped binding's module, a second isolate of the same bundle).
 */
export function startWorker({ bindings = {}, wechat, kvPersist, quiet = false, captureLogs = false, buildDir, assets = false, database = true, options = {}, worker = {}, extraWorkers = [] } = {}) {
  const merged = { ...defaultBindings, ...bindings };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const logs = [];
  const capture = (stream, name) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop();
      for (const line of lines) if (line.trim()) logs.push({ stream: name, line });
    });
  };
  const dir = buildDir ?? join(root, 'build');
  const mf = new Miniflare({
    kvPersist: kvPersist ?? false,
    cf: false,
    // Benchmarks discard the worker's log lines instead of echoing them through this process.
    ...(quiet ? { handleRuntimeStdio: (stdout, stderr) => { stdout.resume(); stderr.resume(); } } : {}),
    ...(captureLogs ? { handleRuntimeStdio: (stdout, stderr) => { capture(stdout, 'stdout'); capture(stderr, 'stderr'); } } : {}),
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
  });
  let started = mf;
  if (database) {
    // `ready` resolves once the migrations are applied. Miniflare's own methods await its
    // `this.ready`, so they run on the Miniflare itself, not through this view of it.
    const ready = mf.ready.then(async (url) => { await applyMigrations(await mf.getD1Database('WECHAT_DB')); return url; });
    started = new Proxy(mf, {
      get(target, prop) {
        if (prop === 'ready') return ready;
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

/** The id of the tests' D1 database: workers of one Miniflare bound to it share it. */
export const DATABASE_ID = 'wechat-kf-test-db';

/**
 * Applies `migrations/*.sql` in order to a D1 database, each file in one batch (one
 * transaction, as wrangler applies them), split into statements by wrangler's own splitter.
 */
export async function applyMigrations(db) {
  const wrangler = createRequire(import.meta.url)('wrangler');
  const dir = join(root, 'migrations');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    const statements = wrangler.unstable_splitSqlQuery(readFileSync(join(dir, file), 'utf8'));
    try {
      await db.batch(statements.map((sql) => db.prepare(sql)));
    } catch (e) {
      throw new Error(`migration ${file} failed: ${e.message}`);
    }
  }
}

/** The worker options that run the bundle built in `dir` (the same for a second isolate of it). */
export function bundle(dir = join(root, 'build')) {
  return {
    rootPath: dir,
    // build/worker.mjs; a baseline built by worker-build has worker/shim.mjs.
    scriptPath: existsSync(join(dir, 'worker.mjs')) ? 'worker.mjs' : 'worker/shim.mjs',
    modulesRoot: '.',
    modules: true,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js', '**/*.mjs'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-04-20',
  };
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
