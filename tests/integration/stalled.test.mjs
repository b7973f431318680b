// A KV namespace and a D1 database whose reads take 7 s, in workerd: the reply never waits on
// them past 1 s, the documented fallback answers, and the log line says so. (WeChat gives up
// after 5 s.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, wrapEntry, BASE, ADMIN_TOKEN } from '../support/worker.mjs';
import { plainQuery, field } from '../support/wechat.mjs';

/// The worker under test, entered through a module that hands it a KV namespace and a D1
/// database whose reads answer after READ_DELAY_MS (in the isolate's memory; writes succeed at
/// once). The D1 class keeps its name: the worker crate recognises a D1 binding by it.
const READ_DELAY_MS = 7000;
const STALLED_ENTRY = `
import worker from './worker.mjs';
const delay = () => new Promise((resolve) => setTimeout(resolve, ${READ_DELAY_MS}));
const values = new Map();
const kv = {
  async get(key) { await delay(); return values.get(key) ?? null; },
  async put(key, value) { values.set(key, value); },
  async delete(key) { values.delete(key); },
};
class Statement {
  bind() { return this; }
  async all() { await delay(); return { success: true, results: [], meta: {} }; }
  async run() { return { success: true, results: [], meta: { changes: 1 } }; }
}
class D1Database {
  prepare() { return new Statement(); }
  async batch(statements) { return Promise.all(statements.map((s) => s.run())); }
}
const db = new D1Database();
const stalled = (env) => ({ ...env, WECHAT_KV: kv, WECHAT_DB: db });
export default {
  fetch: (request, env, ctx) => worker.fetch(request, stalled(env), ctx),
  scheduled: (controller, env, ctx) => worker.scheduled(controller, stalled(env), ctx),
};`;

let mf;
before(async () => {
  mf = startWorker({ captureLogs: true, database: false, worker: { kvNamespaces: [], ...wrapEntry(STALLED_ENTRY) } });
  await mf.ready;
});
after(async () => { await mf?.dispose(); });

const now = () => Math.floor(Date.now() / 1000);
let msgId = 9000;
const text = (openid, content) =>
  `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
  `<CreateTime>${now()}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId++}</MsgId></xml>`;

async function push(xml) {
  const started = Date.now();
  const res = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: xml, headers: { 'content-type': 'text/xml' } });
  assert.equal(res.status, 200);
  return { xml: await res.text(), ms: Date.now() - started };
}

async function lineFor(outcome) {
  const end = Date.now() + 3000;
  for (;;) {
    const line = mf.logLines().find((l) => l.outcome === outcome && l.notes);
    if (line) return line;
    if (Date.now() > end) assert.fail(`no log line for ${outcome}: ${JSON.stringify(mf.logLines())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("an isolate's first push is answered within about a second while KV reads take 7 s", async () => {
  const { xml, ms } = await push(text('oStalled1', '你好'));
  assert.equal(field(xml, 'MsgType'), 'transfer_customer_service');
  assert.ok(ms >= 900 && ms < 2500, `answered after ${ms} ms`);
  const line = await lineFor('transfer text');
  assert.deepEqual(line.notes, ['rules read over 1000 ms: using the defaults']);
});

test('with the 转人工 gate on, a user the isolate does not remember gets the prompt within about a second', async () => {
  // The rules go into KV through this isolate, which keeps them: only the user's read (in the
  // database) stalls.
  const rules = { transfer: { mode: 'on_request', request_words: ['人工'], prompt: '回复“人工”联系客服' } };
  const put = await mf.dispatchFetch(`${BASE}/api/rules`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(rules),
  });
  assert.equal(put.status, 200);
  const { xml, ms } = await push(text('oStalled2', '你好'));
  assert.deepEqual([field(xml, 'MsgType'), field(xml, 'Content')], ['text', '回复“人工”联系客服']);
  assert.ok(ms >= 900 && ms < 2500, `answered after ${ms} ms`);
  const line = await lineFor('reply text by prompt');
  assert.deepEqual(line.notes, ['transfer request read over 1000 ms: taken as not asked']);
});
