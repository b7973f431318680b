// GET /api/stats in workerd over D1: the fold's SQL (json_each, the claim that makes two folds
// one) as D1 runs it, a hand-made day whose figures are worked out in crates/core/tests/stats.rs,
// the CSV as a spreadsheet receives it, real pushes reaching the report, and bad input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, BASE, ADMIN_TOKEN, defaultBindings } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';
import { plainQuery } from '../support/wechat.mjs';
import { insertRows } from '../support/seed.mjs';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const APPID = defaultBindings.WECHAT_APPID;
const KF1 = 'kf2001@gh_1';
const KF2 = 'kf2002@gh_1';
const H = 3600;
const M = 60;
let mf;
let db;

/** Local (+08:00) midnight `days` days before today's. */
const midnight = (days) => {
  const now = Math.floor(Date.now() / 1000);
  const local = now + 8 * H;
  return local - (local % 86400) - 8 * H - days * 86400;
};
// The day of crates/core/tests/stats.rs, three days ago (Monday there), and the next day.
const MON = midnight(3);
const TUE = MON + 86400;

before(async () => {
  mf = startWorker({ wechat: mockWeChat().handler });
  await mf.ready;
  db = await mf.getD1Database('WECHAT_DB');
  const rows = [];
  const push = (openid, at, what, outcome, kf_account = null, detail = null) =>
    rows.push({ appid: APPID, openid, at, entry: 'push', push_key: `${openid}|${at}|${what}`, what, outcome, kf_account, detail });
  const effect = (openid, at, what, outcome) =>
    rows.push({ appid: APPID, openid, at, entry: 'effect', push_key: null, what, outcome, kf_account: null, detail: null });
  push('u1', MON + 9 * H, 'text', 'transfer');
  push('u1', MON + 9 * H + M, 'text', 'transfer');
  push('u1', MON + 9 * H + 2 * M, 'event:kf_create_session', 'success', KF1);
  push('u2', MON + 9 * H + 10 * M, 'text', 'transfer');
  push('u2', MON + 9 * H + 25 * M, 'event:kf_create_session', 'success', KF1);
  push('u1', MON + 9 * H + 30 * M, 'event:kf_switch_session', 'success', KF2, KF1);
  push('u1', MON + 9 * H + 40 * M, 'event:kf_close_session', 'success', KF2);
  push('u2', MON + 10 * H + 5 * M, 'event:kf_close_session', 'success', KF1);
  push('u5', MON + 8 * H, 'event:subscribe', 'welcome');
  push('u4', MON + 14 * H, 'text', 'transfer', null, 'no_agent');
  effect('u4', MON + 14 * H, 'alert_waiting', 'skipped');
  push('u4', MON + 14 * H + 5 * M, 'text', 'keyword');
  push('u5', MON + 20 * H, 'text', 'closed');
  effect('u5', MON + 20 * H, 'notice_no_agent', 'failed');
  push('u3', MON + 23 * H + 55 * M, 'text', 'transfer', null, 'closed');
  effect('u3', MON + 23 * H + 55 * M, 'notice_closed', 'sent');
  effect('u3', MON + 23 * H + 55 * M, 'alert_waiting', 'sent');
  push('u3', TUE + 4 * M, 'event:kf_create_session', 'success', KF2);
  push('u3', TUE + 20 * M, 'event:kf_close_session', 'success', KF2);
  await insertRows(db, rows);
});
after(async () => {
  await mf?.dispose();
});

const stats = (query) => mf.dispatchFetch(`${BASE}/api/stats?${query}`, { headers: auth });

test('the hand-made day: every figure as worked out natively, folded by D1', async () => {
  const res = await stats(`from=${MON}&to=${TUE + 86399}&bucket=day`);
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
  const report = await res.json();
  assert.equal(report.timezone, '+08:00');
  const [monday, tuesday] = report.buckets;
  assert.equal(monday.start, MON);
  assert.deepEqual(
    [monday.pushes, monday.messages, monday.users, monday.users_transferred, monday.after_hours, monday.episodes, monday.unanswered, monday.never_answered],
    [13, 7, 5, 4, 2, 4, 2, 2],
  );
  assert.deepEqual(monday.queue_wait_secs, { count: 3, median: 540, p90: 900, max: 900 });
  assert.deepEqual(monday.session_secs, { count: 2, median: 2280, p90: 2400, max: 2400 });
  assert.deepEqual(monday.first_response_secs, { count: 0, median: null, p90: null, max: null });
  assert.deepEqual([monday.sessions, monday.switches], [2, 1]);
  assert.deepEqual(monday.notices, { sent: 1, skipped: 0, failed: 1 });
  assert.deepEqual(monday.alerts, { sent: 1, skipped: 1, failed: 0 });
  assert.deepEqual(Object.keys(monday.agents), [KF1, KF2]);
  assert.deepEqual(monday.agents[KF1].queue_wait_secs, { count: 2, median: 120, p90: 900, max: 900 });
  assert.equal(monday.agents[KF1].pushes, null);
  assert.deepEqual([tuesday.start, tuesday.pushes, tuesday.sessions], [TUE, 2, 1]);
  assert.deepEqual(tuesday.session_secs, { count: 1, median: 960, p90: 960, max: 960 });
  assert.equal(report.totals.pushes, 15);
});

test('the CSV: a BOM, Chinese headers, local times, a download name', async () => {
  const res = await stats(`from=${MON}&to=${TUE + 86399}&format=csv`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/csv; charset=utf-8');
  assert.equal(res.headers.get('content-disposition'), `attachment; filename="stats-${MON}-${TUE + 86399}.csv"`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  assert.deepEqual([...bytes.slice(0, 3)], [0xef, 0xbb, 0xbf]);
  const lines = new TextDecoder().decode(bytes.slice(3)).split('\r\n');
  assert.match(lines[0], /^时段开始,客服账号,推送数,用户消息数,用户数,转人工用户数,/);
  const date = new Date((MON + 8 * H) * 1000).toISOString().slice(0, 10);
  assert.equal(lines[1], `${date} 00:00,全部,13,7,5,4,2,540,900,900,,,,2280,2400,2400,2,1,4,2,2,1,0,1,1,1,0`);
});

test('real pushes reach the report, and reports at once fold each row once', async () => {
  const today = midnight(0);
  const now = Math.floor(Date.now() / 1000);
  const xml = (body) => `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oStats]]></FromUserName><CreateTime>${now}</CreateTime>${body}</xml>`;
  const pushes = [
    xml('<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[人工]]></Content><MsgId>77001</MsgId>'),
    xml('<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_create_session]]></Event><KfAccount><![CDATA[kf2001@gh_10f6c3c3ac5a]]></KfAccount>'),
  ];
  for (const body of pushes) {
    const res = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body });
    assert.equal(res.status, 200);
    await res.text();
  }
  // The rows are written after the replies.
  let report;
  const end = Date.now() + 5000;
  do {
    const answers = await Promise.all([0, 1, 2, 3].map(() => stats(`from=${today}&to=${now + 60}`)));
    for (const a of answers) assert.equal(a.status, 200);
    report = await answers[0].json();
  } while (report.totals.sessions < 1 && Date.now() < end);
  assert.deepEqual([report.totals.pushes, report.totals.users, report.totals.sessions], [2, 1, 1]);
  assert.equal(report.totals.queue_wait_secs.count, 1);
  assert.equal(report.totals.agents['kf2001@gh_10f6c3c3ac5a'].sessions, 1);
  const again = await (await stats(`from=${today}&to=${now + 60}&bucket=hour`)).json();
  assert.equal(again.totals.pushes, 2);
});

test('bad queries are a 400 naming the field', async () => {
  for (const [query, field, message] of [
    ['bucket=week', 'bucket', 'must be hour or day'],
    [`from=${TUE}&to=${MON}`, 'to', 'must not be before from'],
    [`from=${MON}&to=${MON + 93 * 86400}&bucket=hour`, 'to', 'must be at most 92 days after from by hour'],
    ['format=pdf', 'format', 'must be json or csv'],
  ]) {
    const res = await stats(query);
    assert.equal(res.status, 400, query);
    const body = await res.json();
    assert.deepEqual([body.field, body.message], [field, message], query);
  }
  const res = await mf.dispatchFetch(`${BASE}/api/stats`);
  assert.equal(res.status, 401);
});
