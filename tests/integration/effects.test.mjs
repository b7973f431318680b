// After the reply, in workerd: notices, alerts to a webhook on loopback, session messages, and
// exactly once per push however often WeChat delivers it (tests/integration/database.test.mjs:
// through two isolates at once).
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, BASE, ADMIN_TOKEN } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';
import { plainQuery, field } from '../support/wechat.mjs';
import { startWebhook } from '../support/webhook.mjs';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
let mock;
let mf;
let hook;
let hooks; // the webhook's calls, `{ path, body }`
/** The worker's outbound fetches: the webhook over loopback, WeChat to the in-process mock. */
let outbound;

before(async () => {
  hook = await startWebhook();
  hooks = hook.calls;
  outbound = hook.outbound((req) => mock.handler(req));
  mock = mockWeChat();
  mf = startWorker({
    captureLogs: true,
    bindings: { ALERT_WEBHOOK_URL: hook.url('/hook?key=SECRET-KEY') },
    // WeChat is mocked in-process; the webhook is reached over the loopback network.
    wechat: outbound,
  });
  await mf.ready;
});
after(async () => {
  await mf?.dispose();
  hook?.close();
});
beforeEach(() => {
  mock.reset();
  hooks.length = 0;
});

async function putRules(doc) {
  const res = await mf.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify(doc) });
  assert.equal(res.status, 200, await res.clone().text());
}

async function push(xml, query = plainQuery()) {
  const res = await mf.dispatchFetch(`${BASE}/wechat?${query}`, { method: 'POST', body: xml, headers: { 'content-type': 'text/xml' } });
  assert.equal(res.status, 200);
  return res.text();
}

async function until(check, what, ms = 3000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const now = () => Math.floor(Date.now() / 1000);
let msgId = 5000;
const text = (openid, content, createTime = now()) =>
  `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
  `<CreateTime>${createTime}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId++}</MsgId></xml>`;
const event = (openid, name, kf) =>
  `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
  `<CreateTime>${now()}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[${name}]]></Event><KfAccount><![CDATA[${kf}]]></KfAccount></xml>`;
const notices = () => mock.calls('/cgi-bin/message/custom/send').map((c) => JSON.parse(c.body));

test('a night transfer notifies the user exactly once, however often WeChat delivers the push', async () => {
  // No range on any day: always closed.
  await putRules({ hours: { weekly: {} }, closed: { action: 'transfer_and_notify', text: '您的消息已收到，上班后客服会第一时间回复。' } });
  const xml = text('oNight', '在吗');
  const query = plainQuery();
  for (let delivery = 0; delivery < 3; delivery++) {
    const reply = await push(xml, query);
    assert.equal(field(reply, 'MsgType'), 'transfer_customer_service', `delivery ${delivery + 1} is transferred`);
  }
  await until(() => notices().length >= 1, 'the notice');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(notices(), [{ touser: 'oNight', msgtype: 'text', text: { content: '您的消息已收到，上班后客服会第一时间回复。' } }]);
  await until(() => mf.logLines().filter((l) => l.notes?.includes('effects skipped: already run for this push (a retry)')).length === 2, 'two retries noted');
  const db = await mf.getD1Database('WECHAT_DB');
  const limit = await db.prepare("SELECT until FROM limits WHERE name = 'notice:closed:oNight'").first();
  assert.ok(limit?.until > now(), 'the notice is limited per user and kind');
});

test('a user waiting while nobody is online raises a WeCom alert on the webhook', async () => {
  mock.state.online = [];
  await putRules({ no_agent: { action: 'transfer' }, alerts: { on: ['waiting'], format: 'wecom' } });
  // A fresh look at who is online: wait out the isolate's 30 s list? No: a new worker.
  const w = startWorker({
    bindings: { ALERT_WEBHOOK_URL: hook.url('/hook?key=SECRET-KEY') },
    wechat: outbound,
    captureLogs: true,
  });
  try {
    await w.ready;
    await w.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify({ no_agent: { action: 'transfer' }, alerts: { on: ['waiting'] } }) });
    const res = await w.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: text('oWait', 'hello') });
    assert.equal(field(await res.text(), 'MsgType'), 'transfer_customer_service');
    await until(() => hooks.length === 1, 'the alert');
    assert.equal(hooks[0].path, '/hook?key=SECRET-KEY');
    assert.equal(hooks[0].body.msgtype, 'markdown');
    assert.match(hooks[0].body.markdown.content, /^\*\*有用户在等待客服\*\*\n> 情况：<font color="warning">当前没有客服在线<\/font>\n> 用户：`oWait`\n/);
    assert.ok(!hooks[0].body.markdown.content.includes('hello'), 'no message text without include_text');
    await until(() => w.logLines().some((l) => l.notes?.includes('alert waiting sent')), 'the note');
    assert.ok(!w.logs.some((l) => l.line.includes('SECRET-KEY')), 'the webhook key is never logged');
  } finally {
    await w.dispose();
  }
});

test('the cron raises a queue alert from the wait list', async () => {
  await putRules({ alerts: { on: ['queue'], format: 'json', queue_threshold: 5, wait_secs: 600 } });
  // The mock's one user has waited since 1973: longer than wait_secs.
  const worker = await mf.getWorker();
  await worker.scheduled({ cron: '*/5 * * * *' });
  await until(() => hooks.length === 1, 'the queue alert');
  const { event: name, appid, count, longest_wait_secs: longest } = hooks[0].body;
  assert.deepEqual([name, appid, count], ['queue', 'wx5823bf96d3bd56c7', 1]);
  assert.ok(longest > 600, `${longest}`);
  await worker.scheduled({ cron: '*/5 * * * *' });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(hooks.length, 1, 'at most one per every_secs');
});

test('an agent greets the user with their nickname and says goodbye', async () => {
  await putRules({ sessions: { greeting: '您好，我是客服{nickname}，很高兴为您服务。', farewell: '感谢您的咨询，祝您生活愉快！' } });
  assert.equal(await push(event('oSess', 'kf_create_session', 'kf2001@gh_10f6c3c3ac5a')), 'success');
  await until(() => notices().length === 1, 'the greeting');
  assert.deepEqual(notices()[0], { touser: 'oSess', msgtype: 'text', text: { content: '您好，我是客服小客服，很高兴为您服务。' }, customservice: { kf_account: 'kf2001@gh_10f6c3c3ac5a' } });
  assert.equal(await push(event('oSess', 'kf_close_session', 'kf2001@gh_10f6c3c3ac5a')), 'success');
  await until(() => notices().length === 2, 'the farewell');
  assert.deepEqual(notices()[1], { touser: 'oSess', msgtype: 'text', text: { content: '感谢您的咨询，祝您生活愉快！' }, customservice: { kf_account: 'kf2001@gh_10f6c3c3ac5a' } });
});

test('50 sessions starting at concurrency 10 look the agents up once', async () => {
  const fresh = mockWeChat();
  const answer = fresh.handler;
  const w = startWorker({
    captureLogs: true,
    wechat: async (req) => {
      // The agent list takes a moment to arrive: every greeting of the first wave needs it.
      if (new URL(req.url).pathname.endsWith('getkflist')) await new Promise((r) => setTimeout(r, 100));
      return answer(req);
    },
  });
  try {
    await w.ready;
    const put = await w.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify({ sessions: { greeting: '您好，我是{nickname}' } }) });
    assert.equal(put.status, 200);
    let next = 0;
    const one = async () => {
      while (next < 50) {
        const i = next++;
        const res = await w.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: event(`oMany${i}`, 'kf_create_session', 'kf2001@gh_10f6c3c3ac5a'), headers: { 'content-type': 'text/xml' } });
        assert.equal(await res.text(), 'success');
      }
    };
    await Promise.all(Array.from({ length: 10 }, one));
    await until(() => fresh.calls('/cgi-bin/message/custom/send').length === 50, 'the 50 greetings');
    assert.equal(fresh.calls('/cgi-bin/customservice/getkflist').length, 1);
  } finally {
    await w.dispose();
  }
});

test('rules with alerts are refused without a webhook', async () => {
  const w = startWorker({ wechat: mock.handler });
  try {
    const res = await w.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify({ alerts: { on: ['queue'] } }) });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { error: 'invalid_request', field: 'alerts', message: 'needs ALERT_WEBHOOK_URL' });
  } finally {
    await w.dispose();
  }
});
