// The database in workerd: D1 (miniflare's local SQLite, the migrations applied by the test
// support as wrangler applies them). Two isolates of the worker share one database, so neither
// isolate's memory can be what runs a push's effects once: the database's row is.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, bundle, BASE, ADMIN_TOKEN, DATABASE_ID, defaultBindings } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';
import { plainQuery } from '../support/wechat.mjs';
import { startWebhook } from '../support/webhook.mjs';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
let mock;
let mf;
let second; // the second isolate: another worker of the same bundle, the same D1 database
let hook;
let hooks; // the webhook's calls

before(async () => {
  hook = await startWebhook();
  hooks = hook.calls;
  mock = mockWeChat();
  const outbound = hook.outbound(mock.handler);
  const bindings = { ...defaultBindings, ALERT_WEBHOOK_URL: hook.url('/hook?key=K') };
  mf = startWorker({
    bindings,
    wechat: outbound,
    captureLogs: true,
    extraWorkers: [{
      name: 'second',
      ...bundle(),
      kvNamespaces: ['WECHAT_KV'],
      d1Databases: { WECHAT_DB: DATABASE_ID },
      bindings,
      outboundService: outbound,
    }],
  });
  await mf.ready;
  second = await mf.getWorker('second');
});
after(async () => {
  await mf?.dispose();
  hook?.close();
});
beforeEach(() => {
  mock.reset();
  hooks.length = 0;
});

const now = () => Math.floor(Date.now() / 1000);
let msgId = 9000;
const text = (openid, content, createTime = now()) =>
  `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
  `<CreateTime>${createTime}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId++}</MsgId></xml>`;
const session = (openid, kf) =>
  `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
  `<CreateTime>${now()}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_create_session]]></Event><KfAccount><![CDATA[${kf}]]></KfAccount></xml>`;
const notices = () => mock.calls('/cgi-bin/message/custom/send').map((c) => JSON.parse(c.body));

/** Both isolates take the rules (each reads them on its first push; the PUT went to one). */
async function putRules(doc) {
  const res = await mf.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify(doc) });
  assert.equal(res.status, 200, await res.clone().text());
  const other = await second.fetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify(doc) });
  assert.equal(other.status, 200);
}

/** The first isolate, as a fetcher like the second. */
const first = () => ({ fetch: (...args) => mf.dispatchFetch(...args) });

/** `n` deliveries of one push through each isolate, all at once. */
async function deliver(xml, n, query = plainQuery()) {
  const send = (target) => target.fetch(`${BASE}/wechat?${query}`, { method: 'POST', body: xml, headers: { 'content-type': 'text/xml' } });
  const replies = await Promise.all([...Array(n)].flatMap(() => [send(first()), send(second)]));
  // (The replies themselves are tested elsewhere; a body through the second worker's fetcher
  // is not always readable twice over miniflare's proxy, so only the status is read.)
  assert.deepEqual([...new Set(replies.map((r) => r.status))], [200]);
}

async function settle(check, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  // Whatever else was coming has had its chance.
  await new Promise((r) => setTimeout(r, 500));
}

const NIGHT = {
  hours: { weekly: {} },
  closed: { action: 'transfer_and_notify', text: '您的消息已收到。', notify_every_secs: 3600 },
  alerts: { on: ['waiting'], every_secs: 600 },
  sessions: { greeting: '您好，我是{nickname}。' },
};

test('one push delivered 100 times at once through two isolates: one notice, one alert', async () => {
  await putRules(NIGHT);
  await deliver(text('oTwice', '在吗'), 50);
  const mine = () => notices().filter((n) => n.touser === 'oTwice');
  await settle(() => mine().length >= 1 && hooks.length >= 1, 'the notice and the alert');
  assert.deepEqual(mine(), [{ touser: 'oTwice', msgtype: 'text', text: { content: '您的消息已收到。' } }]);
  assert.equal(hooks.filter((h) => JSON.stringify(h).includes('oTwice')).length, 1);
});

test('a session opened, delivered 100 times at once through two isolates: one greeting', async () => {
  await putRules(NIGHT);
  await deliver(session('oSession', 'kf2001@gh_10f6c3c3ac5a'), 50);
  const mine = () => notices().filter((n) => n.touser === 'oSession');
  await settle(() => mine().length >= 1, 'the greeting');
  assert.deepEqual(mine(), [{ touser: 'oSession', msgtype: 'text', text: { content: '您好，我是小客服。' }, customservice: { kf_account: 'kf2001@gh_10f6c3c3ac5a' } }]);
});

test('ten messages of one user at once through two isolates: one notice, one alert', async () => {
  await putRules(NIGHT);
  const send = (target, i) => target.fetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: text('oBurst', `消息 ${i}`), headers: { 'content-type': 'text/xml' } });
  const replies = await Promise.all([...Array(10)].map((_, i) => send(i % 2 ? second : first(), i)));
  assert.deepEqual([...new Set(replies.map((r) => r.status))], [200]);
  const mine = () => notices().filter((n) => n.touser === 'oBurst');
  const alerts = () => hooks.filter((h) => JSON.stringify(h).includes('oBurst'));
  await settle(() => mine().length >= 1 && alerts().length >= 1, 'the notice and the alert');
  assert.equal(mine().length, 1);
  assert.equal(alerts().length, 1);
});

test("the ledger shows a user's timeline, newest first, and refuses bad input naming the field", async () => {
  await putRules(NIGHT);
  const at = now() - 100;
  for (let i = 0; i < 3; i++) {
    const res = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: text('oLedger', '在吗', at + i) });
    await res.text();
  }
  const ledger = (query) => mf.dispatchFetch(`${BASE}/api/ledger?${query}`, { headers: auth });
  // The rows are written after each reply: three pushes and six effects.
  let page;
  const end = Date.now() + 5000;
  do {
    page = await (await ledger('openid=oLedger')).json();
  } while (page.rows.length < 9 && Date.now() < end);
  // Newest first: the pushes by their CreateTime; their effects (each push's work after its
  // reply, which may finish in any order) at the time they ran.
  assert.deepEqual(page.rows.filter((r) => r.entry === 'push').map((r) => [r.at - at, r.what, r.outcome, r.detail]), [
    [2, 'text', 'transfer', 'closed'],
    [1, 'text', 'transfer', 'closed'],
    [0, 'text', 'transfer', 'closed'],
  ]);
  assert.deepEqual(page.rows.filter((r) => r.entry === 'effect').map((r) => `${r.what} ${r.outcome}`).sort(), [
    'alert_waiting sent', 'alert_waiting skipped', 'alert_waiting skipped',
    'notice_closed sent', 'notice_closed skipped', 'notice_closed skipped',
  ]);
  const ats = page.rows.map((r) => r.at);
  assert.deepEqual(ats, [...ats].sort((a, b) => b - a), 'newest first');
  assert.equal(page.next, null);
  assert.ok(!JSON.stringify(page).includes('在吗'), 'never message text');
  for (const [query, field] of [['', 'openid'], ['openid=o%3Cx%3E', 'openid'], ['openid=oLedger&from=x', 'from'], ['openid=oLedger&from=100&to=99', 'to'], ['openid=oLedger&cursor=forged.cursor', 'cursor']]) {
    const res = await ledger(query);
    assert.equal(res.status, 400, query);
    assert.equal((await res.json()).field, field, query);
  }
  assert.equal((await mf.dispatchFetch(`${BASE}/api/ledger?openid=oLedger`)).status, 401);
});

test('without WECHAT_DB: pushes are transferred, rules that need the database are refused, /healthz says so', async () => {
  const w = startWorker({ database: false, wechat: mock.handler });
  try {
    await w.ready;
    const res = await w.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: text('oNoDb', 'hi') });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /transfer_customer_service/);
    const put = await w.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify({ closed: { action: 'transfer_and_notify', text: 'x' } }) });
    assert.equal(put.status, 400);
    assert.deepEqual(await put.json(), { error: 'invalid_request', field: 'closed.action', message: 'needs the database (WECHAT_DB)' });
    const health = await (await w.dispatchFetch(`${BASE}/healthz`)).json();
    assert.deepEqual([health.missing, health.features.database], [['WECHAT_DB'], false]);
  } finally {
    await w.dispose();
  }
});
