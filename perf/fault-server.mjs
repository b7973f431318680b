// A faulty WeChat API on 127.0.0.1 for perf/faults.mjs: a real node:http server (random port)
// that answers like tests/support/mock-wechat.mjs except where the chosen fault says otherwise.
//
// It runs in a worker thread, so streaming 50 MB bodies does not stall the load client's timers
// (and so closing it is bounded: terminating the thread drops every socket).
//
// Faults (`fault`):
//   none           everything answers normally (the mock's WeChat semantics)
//   token-500      both token endpoints answer 500 with an HTML body
//   token-garbage  both token endpoints answer 200 with garbage / truncated JSON (rotating)
//   token-reset    both token endpoints destroy the socket without answering
//   send-40001     message/custom/send answers {"errcode":40001,...} forever (tokens are fine)
//   send-50mb      message/custom/send answers 200 with a 50 MiB JSON body, streamed in 1 MiB chunks
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';

export const FAULTS = ['none', 'token-500', 'token-garbage', 'token-reset', 'send-40001', 'send-50mb'];
const TOKEN_PATHS = new Set(['/cgi-bin/stable_token', '/cgi-bin/token']);
const SEND_PATH = '/cgi-bin/message/custom/send';
const MiB = 1 << 20;

/**
 * Starts the server in a worker thread. Resolves to
 * `{ port, stats(): Promise<object>, close(): Promise<void> }`.
 */
export async function startFaultServer({ fault = 'none', bigBodyMiB = 50, startTimeoutMs = 10_000 } = {}) {
  if (!FAULTS.includes(fault)) throw new Error(`unknown fault ${fault}`);
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { fault, bigBodyMiB } });
  worker.unref();
  let nextId = 1;
  const pending = new Map();
  let dead = null;
  worker.on('message', (m) => {
    if (m.type === 'stats' && pending.has(m.id)) { pending.get(m.id)(m.stats); pending.delete(m.id); }
  });
  const failAll = (err) => {
    dead = err;
    for (const resolve of pending.values()) resolve(null);
    pending.clear();
  };
  worker.on('error', failAll);
  worker.on('exit', () => failAll(dead ?? new Error('fault server thread exited')));

  const port = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('fault server did not start')), startTimeoutMs);
    worker.once('message', (m) => { clearTimeout(t); if (m.type === 'listening') resolve(m.port); else reject(new Error(String(m.error))); });
    worker.once('error', (e) => { clearTimeout(t); reject(e); });
  });

  return {
    port,
    /** Counters so far (null if the thread is gone or does not answer within 5 s). */
    stats() {
      if (dead) return Promise.resolve(null);
      const id = nextId++;
      return new Promise((resolve) => {
        const t = setTimeout(() => { pending.delete(id); resolve(null); }, 5000);
        pending.set(id, (s) => { clearTimeout(t); resolve(s); });
        worker.postMessage({ type: 'stats', id });
      });
    },
    /** Stops the server; terminating the thread closes every socket. Bounded by 5 s. */
    async close() {
      worker.postMessage({ type: 'close' });
      await Promise.race([new Promise((r) => worker.once('exit', r)), new Promise((r) => setTimeout(r, 1000))]);
      await Promise.race([worker.terminate().catch(() => {}), new Promise((r) => setTimeout(r, 4000))]);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The thread: the server itself.
if (!isMainThread && workerData?.fault) {
  const { mockWeChat } = await import('../tests/support/mock-wechat.mjs');
  const { fault, bigBodyMiB } = workerData;
  const mock = mockWeChat();
  const stats = {
    fault,
    token_requests: 0, // both token endpoints, faulted or not
    stable_token_requests: 0,
    classic_token_requests: 0,
    force_refresh_requests: 0,
    api_requests: 0, // everything else
    send_requests: 0,
    tokens_issued: 0,
    resets: 0,
    big_bodies_started: 0,
    big_bodies_finished: 0,
    big_bodies_aborted: 0, // the worker closed the connection before the end
    big_bytes_sent: 0,
    max_concurrent: 0,
  };
  let concurrent = 0;
  let garbage = 0;

  const html = '<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>' +
    '<body><center><h1>500 Internal Server Error</h1></center><hr><center>nginx</center></body></html>\n';
  // Rotating garbage for the 200 answers of token-garbage.
  const garbageBodies = [
    '{"access_token":"ACCESS_TOKEN_trunc', // truncated mid-string
    '{"access_token":"ACCESS_TOKEN_1","expires_in":72', // truncated mid-number
    '\u0000\u00ff\u00fe garbage \u0001\u0002',
    '', // empty 200
    '<html><body>ok</body></html>',
    '[1,2,3]',
  ];

  const readBody = async (req) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    return Buffer.concat(chunks);
  };
  const send = (res, status, type, body) => {
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const waitDrainOrClose = (res) => new Promise((resolve) => {
    const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
    res.on('drain', done);
    res.on('close', done);
  });

  async function bigBody(res) {
    stats.big_bodies_started += 1;
    const head = Buffer.from('{"errcode":0,"errmsg":"ok","padding":"');
    const tail = Buffer.from('"}');
    const chunk = Buffer.alloc(MiB, 0x20); // spaces inside a JSON string: valid JSON overall
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': head.length + bigBodyMiB * MiB + tail.length,
    });
    res.write(head);
    for (let i = 0; i < bigBodyMiB; i++) {
      if (res.destroyed) { stats.big_bodies_aborted += 1; return; }
      stats.big_bytes_sent += chunk.length;
      if (!res.write(chunk)) await waitDrainOrClose(res);
    }
    if (res.destroyed) { stats.big_bodies_aborted += 1; return; }
    res.end(tail);
    stats.big_bodies_finished += 1;
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://127.0.0.1');
    const isToken = TOKEN_PATHS.has(url.pathname);
    if (isToken) {
      stats.token_requests += 1;
      if (url.pathname === '/cgi-bin/token') stats.classic_token_requests += 1;
      else stats.stable_token_requests += 1;
    } else {
      stats.api_requests += 1;
      if (url.pathname === SEND_PATH) stats.send_requests += 1;
    }

    if (isToken && fault === 'token-reset') {
      stats.resets += 1;
      req.socket.destroy();
      return;
    }
    const body = ['GET', 'HEAD'].includes(req.method) ? Buffer.alloc(0) : await readBody(req);
    if (isToken && /"force_refresh"\s*:\s*true/.test(body.toString())) stats.force_refresh_requests += 1;
    if (isToken && fault === 'token-500') return send(res, 500, 'text/html; charset=utf-8', html);
    if (isToken && fault === 'token-garbage') {
      return send(res, 200, 'application/json; charset=utf-8', garbageBodies[garbage++ % garbageBodies.length]);
    }
    if (url.pathname === SEND_PATH && fault === 'send-40001') {
      return send(res, 200, 'application/json; charset=utf-8',
        JSON.stringify({ errcode: 40001, errmsg: 'invalid credential, access_token is invalid or not latest rid: 0-0-0' }));
    }
    if (url.pathname === SEND_PATH && fault === 'send-50mb') return bigBody(res);

    // Normal answer: the mock's WeChat semantics.
    const issuedBefore = mock.state.issued;
    const request = new Request(`http://127.0.0.1${req.url}`, {
      method: req.method, headers: req.headers, body: ['GET', 'HEAD'].includes(req.method) ? undefined : body,
    });
    const r = await mock.handler(request);
    stats.tokens_issued += mock.state.issued - issuedBefore;
    mock.state.requests.length = 0; // the mock keeps every request; we only need counters
    send(res, r.status, r.headers.get('content-type') ?? 'application/json', Buffer.from(await r.arrayBuffer()));
  }

  const server = createServer((req, res) => {
    concurrent += 1;
    stats.max_concurrent = Math.max(stats.max_concurrent, concurrent);
    let counted = true;
    const done = () => { if (counted) { counted = false; concurrent -= 1; } };
    res.on('close', done);
    req.on('error', () => {});
    res.on('error', () => {});
    handle(req, res).catch(() => { if (!res.destroyed) res.destroy(); });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(0, '127.0.0.1', () => parentPort.postMessage({ type: 'listening', port: server.address().port }));
  server.on('error', (e) => parentPort.postMessage({ type: 'error', error: String(e) }));

  parentPort.on('message', (m) => {
    if (m.type === 'stats') parentPort.postMessage({ type: 'stats', id: m.id, stats: { ...stats } });
    if (m.type === 'close') {
      server.closeAllConnections();
      server.close(() => process.exit(0));
    }
  });
}
