#!/usr/bin/env node
// A push's CPU with 1 and with 1,000 Official Accounts in the database: three workers, each its
// own workerd process with its own D1 (miniflare's SQLite, in the same process, so a push's
// ledger row counts as CPU in all three alike): "one" (1 account), "many" (the same account
// among 1,000), and "one2" (1 account again: the A/A control). Every round sends the same signed
// plain-text pushes to /wechat/{appid} of each worker in ABBA order and reads each workerd's CPU
// around them; the table gives the per-round medians and the ratios many/one and one2/one.
//
//   node perf/accounts.mjs [--rounds 7] [--pushes 1500] [--warmup 300] [--concurrency 8]
import { parseArgs } from 'node:util';
import { startWorker, ADMIN_TOKEN } from '../tests/support/worker.mjs';
import { wechatPeer } from '../tests/support/wechat.mjs';
import { startTracked, cpu, cpuDelta } from './workerd.mjs';
import { median } from './stats.mjs';

const { values: o } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    pushes: { type: 'string', default: '1500' },
    warmup: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
  },
});
const [ROUNDS, PUSHES, WARMUP, CONCURRENCY] = [o.rounds, o.pushes, o.warmup, o.concurrency].map(Number);
const ACCOUNTS_KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const APPID = 'wx0000000000000500';
const TOKEN = 'perfToken500';
const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

/** A worker with the measured account and `others` more rows in its accounts table. */
async function worker(others) {
  const w = await startTracked(() => startWorker({ quiet: true, bindings: { ACCOUNTS_KEY, WECHAT_KF_ACCOUNT: 'kf2001@gh_1' } }));
  const res = await w.mf.dispatchFetch(`${w.url}/api/accounts`, {
    method: 'POST',
    headers: auth,
    body: JSON.stringify({ appid: APPID, name: '测量', token: TOKEN, kf_accounts: ['kf2001@gh_1'] }),
  });
  if (res.status !== 201) throw new Error(`account: ${res.status} ${await res.text()}`);
  if (others > 0) {
    // The other accounts' rows, filled by SQLite (their sealed secrets are the measured one's:
    // never opened here).
    const db = await w.mf.getD1Database('WECHAT_DB');
    await db.prepare(`
      INSERT INTO accounts (appid, name, sealed, settings, created, updated)
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
      SELECT 'wx' || printf('%016x', i + 4096), 'other ' || i, sealed, settings, created, updated
      FROM n, accounts WHERE accounts.appid = ?2`).bind(others, APPID).run();
    const count = await db.prepare('SELECT count(*) AS n FROM accounts').first('n');
    if (count !== others + 1) throw new Error(`expected ${others + 1} accounts, found ${count}`);
  }
  return w;
}

const peer = wechatPeer({ token: TOKEN, aesKey: null, appid: APPID });
let msgId = 1;
/** `n` pushes, `CONCURRENCY` at a time, each a new message; throws on any non-200. */
async function pushes(w, n) {
  let next = 0;
  const one = async () => {
    while (next < n) {
      next++;
      const id = msgId++;
      const xml = `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser${id % 97}]]></FromUserName>` +
        `<CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType>` +
        `<Content><![CDATA[你好]]></Content><MsgId>${id}</MsgId></xml>`;
      const res = await fetch(`${w.url}/wechat/${APPID}?${peer.plainQuery()}`, { method: 'POST', body: xml });
      const reply = await res.text();
      if (res.status !== 200 || !reply.includes('transfer_customer_service')) throw new Error(`push: ${res.status} ${reply}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, one));
}

const workers = { one: await worker(0), many: await worker(999), one2: await worker(0) };
const ids = Object.keys(workers);
for (const id of ids) await pushes(workers[id], WARMUP);
const perPush = Object.fromEntries(ids.map((id) => [id, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? ids : [...ids].reverse();
  for (const id of order) {
    const w = workers[id];
    const before = cpu(w.pid);
    await pushes(w, PUSHES);
    // The ledger rows are written after the replies: let them finish inside the reading.
    await new Promise((r) => setTimeout(r, 200));
    perPush[id].push(cpuDelta(before, cpu(w.pid)).ns / PUSHES / 1000);
  }
  console.error(`round ${round + 1}/${ROUNDS}`);
}
for (const w of Object.values(workers)) await w.mf.dispose();

const fmt = (x) => x.toFixed(1);
const ratio = (a, b) => perPush[a].map((x, i) => x / perPush[b][i]);
console.log(`\nCPU per push to /wechat/{appid} (µs, whole workerd process, ${ROUNDS} rounds × ${PUSHES} pushes, concurrency ${CONCURRENCY}; median (min–max))\n`);
console.log('| worker | accounts in the database | µs per push | ratio to "one" (per round) |');
console.log('|---|---|---|---|');
for (const [id, n] of [['one', 1], ['many', 1000], ['one2', 1]]) {
  const xs = perPush[id];
  const r = ratio(id, 'one');
  console.log(`| ${id} | ${n} | ${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}) | ${id === 'one' ? '—' : `${median(r).toFixed(3)} (${Math.min(...r).toFixed(3)}–${Math.max(...r).toFixed(3)})`} |`);
}
