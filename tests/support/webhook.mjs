// The agents' webhook in the tests: a real HTTP server on 127.0.0.1 that answers like a WeCom
// robot and keeps every call, and the worker's outbound fetches split between it (loopback)
// and the in-process WeChat mock.
import { createServer } from 'node:http';

/**
 * Starts the webhook: `{ url(path), calls, outbound(wechat), close() }`. `calls` holds each call
 * as `{ path, body }` (the JSON body parsed); `outbound(wechat)` is an `outboundService` that
 * sends loopback requests to the webhook and everything else to `wechat` (a handler).
 */
export async function startWebhook() {
  const calls = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      calls.push({ path: req.url, body: JSON.parse(body) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"errcode":0,"errmsg":"ok"}');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const outbound = (wechat) => async (req) => {
    if (new URL(req.url).hostname !== '127.0.0.1') return wechat(req);
    return fetch(req.url, { method: req.method, headers: req.headers, body: await req.text() });
  };
  return {
    calls,
    url: (path) => `http://127.0.0.1:${server.address().port}${path}`,
    outbound,
    close: () => server.close(),
  };
}
