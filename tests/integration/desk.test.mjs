// The front desk in workerd: the rules API, then each rule end to end on signed pushes.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, BASE, ADMIN_TOKEN, startWithMock } from '../support/worker.mjs';
import { plainQuery, safePush, decrypt, field, fixture, sign, TOKEN } from '../support/wechat.mjs';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
let mock;
let mf;
before(async () => ({ mock, mf } = await startWithMock()));
after(async () => { await mf?.dispose(); });
beforeEach(async () => {
  mock.reset();
  mock.state.online = [{ kf_account: 'kf2001@gh_10f6c3c3ac5a', status: 1, kf_id: '2001', auto_accept: 2, accepted_case: 0 }];
  await putRules({});
});

const api = (method, body) => mf.dispatchFetch(`${BASE}/api/rules`, { method, headers: auth, body: body === undefined ? undefined : JSON.stringify(body) });
async function putRules(doc) {
  const res = await api('PUT', doc);
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

let msgId = 1;
/** A text push from `openid`; answers [MsgType, Content] (decrypted in safe mode), or 'success'. */
async function say(content, { openid = 'oUser1', safe = false } = {}) {
  const xml = `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
    `<CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType>` +
    `<Content><![CDATA[${content}]]></Content><MsgId>${msgId++}</MsgId></xml>`;
  const { query, body } = safe ? safePush(xml) : { query: plainQuery(), body: xml };
  const res = await mf.dispatchFetch(`${BASE}/wechat?${query}`, { method: 'POST', body, headers: { 'content-type': 'text/xml' } });
  assert.equal(res.status, 200);
  let reply = await res.text();
  if (reply === 'success') return 'success';
  if (safe) {
    const env = reply;
    assert.equal(field(env, 'MsgSignature'), sign(TOKEN, field(env, 'TimeStamp'), field(env, 'Nonce'), field(env, 'Encrypt')));
    reply = decrypt(field(env, 'Encrypt')).xml;
  }
  return [field(reply, 'MsgType'), field(reply, 'Content'), reply];
}

/** Weekday key and minutes now at +08:00. */
function chinaNow() {
  const d = new Date(Date.now() + 8 * 3600 * 1000);
  return { day: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'][d.getUTCDay()], minute: d.getUTCHours() * 60 + d.getUTCMinutes(), date: d.toISOString().slice(0, 10) };
}

test('GET shows the defaults, PUT stores and answers the document, DELETE goes back', async () => {
  await api('DELETE');
  let res = await api('GET');
  assert.equal(res.status, 200);
  let body = await res.json();
  assert.equal(body.stored, false);
  assert.deepEqual(body.rules.transfer, { mode: 'all', request_words: [], remember_secs: 1800 });
  const doc = { welcome: '欢迎', keywords: [{ match: 'exact', words: ['hi'], reply: 'hello' }] };
  body = await putRules(doc);
  assert.deepEqual(body, { stored: true, rules: doc });
  body = await (await api('GET')).json();
  assert.deepEqual(body, { stored: true, rules: doc });
  const kv = await mf.getKVNamespace('WECHAT_KV');
  assert.equal(await kv.get('rules:wx5823bf96d3bd56c7'), JSON.stringify(doc));
  body = await (await api('DELETE')).json();
  assert.equal(body.stored, false);
  assert.equal(await kv.get('rules:wx5823bf96d3bd56c7'), null);
  assert.equal((await say('hi'))[0], 'transfer_customer_service', 'the defaults transfer again');
});

test('a bad document is refused with its field and changes nothing', async () => {
  await putRules({ welcome: 'kept' });
  const cases = [
    [{ hours: { weekly: { mon: ['09:00-12:00', '11:00-13:00'] } } }, 'hours.weekly.mon[1]', 'overlaps another range of the same day'],
    [{ hours: { weekly: { tue: ['18:00-09:00'] } } }, 'hours.weekly.tue[0]', 'must end after it starts'],
    [{ keywords: [{ words: ['a'], reply: 'b' }, { match: 'fuzzy', words: ['a'], reply: 'b' }] }, 'keywords[1].match', 'must be exact or contains'],
    [{ welcom: 'typo' }, 'welcom', 'is not a known field'],
    [{ closed: { action: 'reply' } }, 'closed.text', 'is required with this action'],
  ];
  for (const [doc, fieldName, message] of cases) {
    const res = await api('PUT', doc);
    assert.equal(res.status, 400, JSON.stringify(doc));
    assert.deepEqual(await res.json(), { error: 'invalid_request', field: fieldName, message });
  }
  assert.equal((await (await api('GET')).json()).rules.welcome, 'kept');
});

test('the welcome answers a follow, with or without a QR scene', async () => {
  await putRules({ welcome: '感谢关注！回复“人工”联系客服。' });
  for (const event of ['subscribe', 'subscribe_qrscene']) {
    for (const safe of [false, true]) {
      const xml = fixture(`events/${event}.xml`).toString();
      const { query, body } = safe ? safePush(xml) : { query: plainQuery(), body: xml };
      const res = await mf.dispatchFetch(`${BASE}/wechat?${query}`, { method: 'POST', body });
      let reply = await res.text();
      if (safe) reply = decrypt(field(reply, 'Encrypt')).xml;
      assert.equal(field(reply, 'MsgType'), 'text', `${event} safe=${safe}`);
      assert.equal(field(reply, 'Content'), '感谢关注！回复“人工”联系客服。');
      assert.equal(field(reply, 'ToUserName'), 'oyORnuP8q7ou2gfYjqLzSIWZf0rs');
    }
  }
  const click = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: fixture('events/click.xml') });
  assert.equal(await click.text(), 'success', 'other events keep their answer');
});

test('a keyword is answered in place of the transfer, in plain and safe mode', async () => {
  await putRules({ keywords: [
    { match: 'exact', words: ['营业时间', 'hours'], reply: '周一至周五 9:00-18:00' },
    { match: 'contains', words: ['发票'], reply: '开票请访问 https://example.com/invoice ]]> <b>' },
  ] });
  for (const safe of [false, true]) {
    assert.deepEqual((await say('  Hours ', { safe })).slice(0, 2), ['text', '周一至周五 9:00-18:00']);
    const [, content, xml] = await say('我要开发票', { safe });
    assert.equal(content, '开票请访问 https://example.com/invoice ]]> <b>');
    assert.ok(xml.includes(']]]]><![CDATA[>'), 'a ]]> in the reply is split across CDATA sections');
    assert.equal((await say('营业时间？', { safe }))[0], 'transfer_customer_service');
  }
  assert.equal(mock.state.requests.length, 0, 'no WeChat call');
});

test('the on_request gate prompts, then remembers the request across messages', async () => {
  await putRules({ transfer: { mode: 'on_request', request_words: ['人工', '客服'], remember_secs: 1800, prompt: '回复“人工”联系客服。' } });
  assert.deepEqual((await say('你好', { openid: 'oGate' })).slice(0, 2), ['text', '回复“人工”联系客服。']);
  assert.equal((await say('转人工', { openid: 'oGate' }))[0], 'transfer_customer_service');
  // Remembered in the database for every isolate, for remember_secs.
  const db = await mf.getD1Database('WECHAT_DB');
  let until;
  for (let i = 0; i < 50 && !until; i++) {
    until = (await db.prepare("SELECT until FROM requests WHERE openid = 'oGate'").first())?.until;
    if (!until) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(Math.abs(Number(until) - (Date.now() / 1000 + 1800)) < 10, `remembered until ${until}`);
  assert.equal((await say('我的订单到哪了', { openid: 'oGate' }))[0], 'transfer_customer_service', 'the next message is transferred');
  assert.equal((await say('我的订单到哪了', { openid: 'oOther' }))[0], 'text', 'another user still gets the prompt');
});

test('outside office hours the closed reply answers instead of the transfer', async () => {
  const { day, minute, date } = chinaNow();
  // Open today, but in the other half of the day: closed now, whatever the time.
  const range = minute < 720 ? '20:00-24:00' : '00:00-04:00';
  await putRules({ hours: { weekly: { [day]: [range] } }, closed: { action: 'reply', text: '现在是非工作时间' } });
  assert.deepEqual((await say('你好')).slice(0, 2), ['text', '现在是非工作时间']);
  // Today as a closed date, even with the whole day in the weekly hours.
  await putRules({ hours: { weekly: { [day]: ['00:00-24:00'] }, closed_dates: [date] }, closed: { action: 'reply', text: '节假日休息' } });
  assert.deepEqual((await say('你好')).slice(0, 2), ['text', '节假日休息']);
  // An open date wins over both.
  await putRules({ hours: { closed_dates: [date], open_dates: { [date]: ['00:00-24:00'] } }, closed: { action: 'reply', text: 'x' } });
  assert.equal((await say('你好'))[0], 'transfer_customer_service');
  // closed.action transfer (the default): transferred anyway.
  await putRules({ hours: { weekly: {} } });
  assert.equal((await say('你好'))[0], 'transfer_customer_service');
});

test('with nobody online the no-agent reply answers; with the list failing the user is transferred', async () => {
  await putRules({ no_agent: { action: 'reply', text: '客服暂时都不在线，请稍候。' } });
  mock.state.online = [];
  await new Promise((r) => setTimeout(r, 10));
  // A fresh worker: no online list cached.
  const w = startWorker({ wechat: mock.handler });
  try {
    await w.ready;
    await w.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify({ no_agent: { action: 'reply', text: '客服暂时都不在线，请稍候。' } }) });
    const res = await w.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: fixture('messages/text.xml') });
    const xml = await res.text();
    assert.equal(field(xml, 'MsgType'), 'text');
    assert.equal(field(xml, 'Content'), '客服暂时都不在线，请稍候。');
    assert.equal(mock.calls('/cgi-bin/customservice/getonlinekflist').length, 1);
  } finally {
    await w.dispose();
  }
  const failing = startWorker({ wechat: mock.handler });
  try {
    await failing.ready;
    await failing.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify({ no_agent: { action: 'reply', text: 'x' } }) });
    mock.always('/cgi-bin/customservice/getonlinekflist', () => new Response('<html>busy</html>', { status: 502 }));
    const t0 = Date.now();
    const res = await failing.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: fixture('messages/text.xml') });
    assert.equal(field(await res.text(), 'MsgType'), 'transfer_customer_service', 'assume agents are there');
    assert.ok(Date.now() - t0 < 2500, `answered in ${Date.now() - t0} ms`);
  } finally {
    await failing.dispose();
  }
});
