// The access_token cache: memory, then KV, then the endpoint; refresh on rejection; cron.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker, BASE, ADMIN_TOKEN } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const TEXT = JSON.stringify({ touser: 'OPENID', msgtype: 'text', text: { content: 'hi' } });
const send = (w) => w.dispatchFetch(`${BASE}/api/messages`, { method: 'POST', headers: auth, body: TEXT });

async function withWorker(opts, fn) {
  const w = startWorker(opts);
  try { await w.ready; return await fn(w); } finally { await w.dispose(); }
}

test('50 concurrent sends with a cold cache make one token request', async () => {
  const mock = mockWeChat({ latencyMs: 50 });
  await withWorker({ wechat: mock.handler }, async (w) => {
    const results = await Promise.all(Array.from({ length: 50 }, () => send(w)));
    assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
    assert.equal(mock.tokenRequests(), 1);
    assert.equal(mock.calls('/cgi-bin/message/custom/send').length, 50);
  });
});

test('the token is stored in KV with an expiry, and a restarted worker reuses it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wechat-kv-'));
  const mock = mockWeChat();
  try {
    await withWorker({ wechat: mock.handler, persist: dir }, async (w) => {
      assert.equal((await send(w)).status, 200);
      const kv = await w.getKVNamespace('WECHAT_KV');
      const { keys } = await kv.list();
      const key = keys.find((k) => k.name === 'access_token:wx5823bf96d3bd56c7');
      assert.ok(key, JSON.stringify(keys));
      const ttl = key.expiration - Date.now() / 1000;
      assert.ok(ttl > 6800 && ttl <= 6900, `expiration_ttl = expires_in - margin, got ${ttl}`);
      const stored = JSON.parse(await kv.get(key.name));
      assert.equal(stored.access_token, mock.state.current.token);
      assert.ok(stored.expires_at > stored.fetched_at);
    });
    assert.equal(mock.tokenRequests(), 1);
    await withWorker({ wechat: mock.handler, persist: dir }, async (w) => {
      for (let i = 0; i < 5; i++) assert.equal((await send(w)).status, 200);
    });
    assert.equal(mock.tokenRequests(), 1, 'the restarted worker read the token from KV');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a token replaced elsewhere (40001) causes one refresh and one retry', async () => {
  const mock = mockWeChat();
  await withWorker({ wechat: mock.handler }, async (w) => {
    assert.equal((await send(w)).status, 200);
    mock.reset();
    // Another system force-refreshed: WeChat's current token is a new one.
    mock.revokeCurrent();
    mock.state.current = null;
    const res = await send(w);
    assert.equal(res.status, 200);
    assert.equal(mock.tokenRequests(), 1, 'one refresh');
    const sends = mock.calls('/cgi-bin/message/custom/send');
    assert.equal(sends.length, 2, 'one retry');
    assert.equal(JSON.parse(mock.calls('/cgi-bin/stable_token')[0].body).force_refresh, false);
    assert.notEqual(sends[0].query.access_token, sends[1].query.access_token);
  });
});

test('a rejected token the stable endpoint still hands out is force-refreshed once, and never loops', async () => {
  const mock = mockWeChat();
  await withWorker({ wechat: mock.handler }, async (w) => {
    assert.equal((await send(w)).status, 200);
    mock.reset();
    mock.on('/cgi-bin/message/custom/send', () => new Response(JSON.stringify({ errcode: 40001, errmsg: 'invalid credential' })));
    assert.equal((await send(w)).status, 200);
    const tokenCalls = mock.calls('/cgi-bin/stable_token').map((c) => JSON.parse(c.body).force_refresh);
    assert.deepEqual(tokenCalls, [false, true]);
    assert.equal(mock.calls('/cgi-bin/message/custom/send').length, 2);

    // Still rejected: the token was fetched after a rejection less than a minute ago, so it is
    // not refreshed again — a clear error, no retry, no token request, no second force.
    mock.reset();
    mock.always('/cgi-bin/message/custom/send', () => new Response(JSON.stringify({ errcode: 40001, errmsg: 'invalid credential' })));
    const res = await send(w);
    assert.equal(res.status, 502);
    assert.equal((await res.json()).errcode, 40001);
    assert.equal(mock.calls('/cgi-bin/message/custom/send').length, 1);
    assert.deepEqual(mock.calls('/cgi-bin/stable_token').map((c) => JSON.parse(c.body).force_refresh), []);
  });
});

test('a fresh token that is rejected too is retried exactly once, never looped', async () => {
  const mock = mockWeChat();
  // The classic endpoint issues a new token on every call.
  await withWorker({ wechat: mock.handler, bindings: { WECHAT_TOKEN_ENDPOINT: 'classic' } }, async (w) => {
    assert.equal((await send(w)).status, 200);
    mock.reset();
    mock.always('/cgi-bin/message/custom/send', () => new Response(JSON.stringify({ errcode: 42001, errmsg: 'access_token expired' })));
    const res = await send(w);
    assert.equal(res.status, 502);
    assert.match((await res.json()).hint, /rejected even after one refresh/);
    assert.equal(mock.calls('/cgi-bin/message/custom/send').length, 2);
    assert.equal(mock.tokenRequests(), 1);
  });
});

test('the classic endpoint is used when configured', async () => {
  const mock = mockWeChat();
  await withWorker({ wechat: mock.handler, bindings: { WECHAT_TOKEN_ENDPOINT: 'classic' } }, async (w) => {
    assert.equal((await send(w)).status, 200);
    const [call] = mock.calls('/cgi-bin/token');
    assert.equal(call.method, 'GET');
    assert.equal(call.query.grant_type, 'client_credential');
    assert.equal(mock.calls('/cgi-bin/stable_token').length, 0);
  });
});

test('the cron trigger fills and refreshes the KV token; user calls then never wait for it', async () => {
  const mock = mockWeChat();
  await withWorker({ wechat: mock.handler }, async (w) => {
    const worker = await w.getWorker();
    await worker.scheduled({ cron: '*/5 * * * *' });
    assert.equal(mock.tokenRequests(), 1);
    const kv = await w.getKVNamespace('WECHAT_KV');
    assert.ok(await kv.get('access_token:wx5823bf96d3bd56c7'));
    await worker.scheduled({ cron: '*/5 * * * *' });
    assert.equal(mock.tokenRequests(), 1, 'a fresh token is left alone');
    // A token close to its end is refreshed ahead of time.
    const now = Math.floor(Date.now() / 1000);
    await kv.put('access_token:wx5823bf96d3bd56c7', JSON.stringify({ access_token: 'OLD', expires_at: now + 600, fetched_at: now - 6600 }));
    await worker.scheduled({ cron: '*/5 * * * *' });
    assert.equal(mock.tokenRequests(), 2);
    assert.notEqual(JSON.parse(await kv.get('access_token:wx5823bf96d3bd56c7')).access_token, 'OLD');
    assert.equal((await send(w)).status, 200);
    assert.equal(mock.tokenRequests(), 2);
  });
});

test('tokens, the AppSecret and message text never appear in responses or logs (stdout and stderr)', async () => {
  const mock = mockWeChat();
  const secretText = 'CONFIDENTIAL-订单-4411';
  await withWorker({ wechat: mock.handler, captureLogs: true }, async (w) => {
    const bodies = [];
    const sendText = JSON.stringify({ touser: 'OPENID', msgtype: 'text', text: { content: secretText } });
    const res = await w.dispatchFetch(`${BASE}/api/messages`, { method: 'POST', headers: auth, body: sendText });
    assert.equal(res.status, 200);
    bodies.push(await res.text());
    bodies.push(await (await w.dispatchFetch(`${BASE}/healthz`)).text());
    // A 5xx goes to stderr: WeChat's token endpoint rejecting the AppSecret.
    mock.revokeCurrent();
    mock.state.current = null;
    mock.always('/cgi-bin/stable_token', () => new Response(JSON.stringify({ errcode: 40125, errmsg: 'invalid appsecret' })));
    const failed = await w.dispatchFetch(`${BASE}/api/messages`, { method: 'POST', headers: auth, body: sendText });
    assert.equal(failed.status, 502);
    bodies.push(await failed.text());
    await w.getWorker().then((worker) => worker.scheduled({ cron: '*/5 * * * *' }));
    // Every expected line arrived, on the expected stream.
    const lines = () => w.logLines();
    const until = Date.now() + 3000;
    while (Date.now() < until && !(lines().length >= 4 && lines().some((l) => l.stream === 'stderr'))) await new Promise((r) => setTimeout(r, 20));
    const seen = lines().map((l) => `${l.stream} ${l.status ?? l.cron} ${l.outcome}`);
    assert.ok(seen.includes('stdout 200 /cgi-bin/message/custom/send'), seen.join('\n'));
    assert.ok(seen.includes('stdout 200 ok'), seen.join('\n'));
    assert.ok(seen.some((l) => l.startsWith('stderr 502 wechat_error: errcode 40125')), seen.join('\n'));
    assert.ok(seen.some((l) => l.startsWith('stdout access_token')), seen.join('\n'));
    const everything = [...bodies, ...w.logs.map((l) => l.line)].join('\n');
    for (const [what, secret] of [['token', 'ACCESS_TOKEN_'], ['AppSecret', 'test-app-secret'], ['admin token', ADMIN_TOKEN], ['message text', secretText], ['message text', 'CONFIDENTIAL']]) {
      assert.ok(!everything.includes(secret), `no ${what} in responses or logs`);
    }
  });
});
