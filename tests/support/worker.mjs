// One Miniflare running the built wasm bundle, with the WeChat API mocked in-process.
import { Miniflare } from 'miniflare';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
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
export function startWorker({ bindings = {}, wechat, kvPersist, quiet = false, captureLogs = false, buildDir, assets = false, options = {}, worker = {}, extraWorkers = [] } = {}) {
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
        bindings: merged,
        outboundService: wechat ?? (async () => new Response('no WeChat here', { status: 599 })),
        ...(assets ? { assets: assetsOptions(join(dir, 'assets')) } : {}),
        ...worker,
      },
      ...extraWorkers,
    ],
  });
  /** With `captureLogs`: every line the worker wrote, `{ stream: 'stdout'|'stderr', line }`. */
  mf.logs = logs;
  /** The worker's JSON log lines (request lines and cron lines), parsed. */
  mf.logLines = () => logs.flatMap(({ stream, line }) => {
    const start = line.indexOf('{');
    try { return start < 0 ? [] : [{ stream, ...JSON.parse(line.slice(start)) }]; } catch { return []; }
  });
  return mf;
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
