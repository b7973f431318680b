// What the ledger and effects after the reply add to the reply's latency: pushes to a worker
// without a database and rules that plan no effect (a night-time transfer: "off"), and to a
// worker with the D1 database (the ledger's row of every push) and rules that plan two effects
// (the same transfer plus a notice to the user and a `waiting` alert to the agents: "on"),
// alternating blocks, every push from a new user so every effect really runs. The WeChat mock
// and the webhook answer after --latency-ms, so an effect that held the reply would show as
// that much; D1 is miniflare's local SQLite.
//
// Pushes are sent one at a time, GAP_MS apart (default: long enough for the previous push's
// background work to finish, so that what is timed is the reply itself); --gap-ms 0 sends them
// back to back, where the background work of earlier pushes competes for the same CPU (here
// also the load generator's, which serves the mocks in the same Node process).
//
//   node perf/effects.mjs [--rounds 5] [--per-block 100] [--latency-ms 20] [--gap-ms 60]
import { startWorker, BASE, ADMIN_TOKEN } from '../tests/support/worker.mjs';
import { mockWeChat } from '../tests/support/mock-wechat.mjs';
import { plainQuery } from '../tests/support/wechat.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const ROUNDS = arg('rounds', 5);
const PER_BLOCK = arg('per-block', 100);
const LATENCY_MS = arg('latency-ms', 20);
const GAP_MS = arg('gap-ms', LATENCY_MS * 2 + 20);
const HOOK = 'https://hooks.example.com/cgi-bin/webhook/send?key=BENCH';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
// Always closed: a week without ranges.
const PLAIN = { hours: { weekly: {} }, closed: { action: 'transfer' } };
const EFFECTS = {
  hours: { weekly: {} },
  closed: { action: 'transfer_and_notify', text: '您的消息已收到，上班后客服会第一时间回复。' },
  alerts: { on: ['waiting'] },
};

const mock = mockWeChat();
let hooks = 0;
const delay = (ms) => new Promise((r) => setTimeout(r, ms));
async function outbound(req) {
  if (req.url.startsWith('https://hooks.example.com/')) {
    hooks += 1;
    await delay(LATENCY_MS);
    return new Response('{"errcode":0,"errmsg":"ok"}', { headers: { 'content-type': 'application/json' } });
  }
  if (new URL(req.url).pathname === '/cgi-bin/message/custom/send') await delay(LATENCY_MS);
  return mock.handler(req);
}

const workers = {
  plain: startWorker({ wechat: outbound, quiet: true, database: false, bindings: { ALERT_WEBHOOK_URL: HOOK } }),
  effects: startWorker({ wechat: outbound, quiet: true, bindings: { ALERT_WEBHOOK_URL: HOOK } }),
};
await Promise.all(Object.values(workers).map((w) => w.ready));

let user = 0;
async function push(mf) {
  user += 1;
  const t = Math.floor(Date.now() / 1000);
  const xml = `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oBench${user}]]></FromUserName><CreateTime>${t}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[在吗]]></Content><MsgId>${user}</MsgId></xml>`;
  const started = process.hrtime.bigint();
  const res = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery({ timestamp: t })}`, { method: 'POST', body: xml });
  const text = await res.text();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (res.status !== 200 || !text.includes('transfer_customer_service')) throw new Error(`push answered ${res.status}: ${text}`);
  return ms;
}

async function useRules(mf, doc) {
  const res = await mf.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify(doc) });
  if (res.status !== 200) throw new Error(`rules: ${res.status} ${await res.text()}`);
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const samples = { plain: [], effects: [] };
// Warm up both workers (token fetched, code compiled, rules read).
await useRules(workers.effects, EFFECTS);
await useRules(workers.plain, PLAIN);
for (const mf of Object.values(workers)) for (let i = 0; i < 20; i++) await push(mf);
await delay(LATENCY_MS * 4);
const sendsBefore = mock.calls('/cgi-bin/message/custom/send').length;
const hooksBefore = hooks;
for (let round = 0; round < ROUNDS; round++) {
  // ABBA: the order of the two blocks alternates between rounds.
  const order = round % 2 === 0 ? ['plain', 'effects'] : ['effects', 'plain'];
  for (const kind of order) {
    for (let i = 0; i < PER_BLOCK; i++) {
      samples[kind].push(await push(workers[kind]));
      if (GAP_MS > 0) await delay(GAP_MS);
    }
    // Let the block's background work finish before the next block is timed.
    await delay(LATENCY_MS * 4 + 50);
  }
}
const sends = mock.calls('/cgi-bin/message/custom/send').length - sendsBefore;
const alerts = hooks - hooksBefore;
const rows = await (await workers.effects.getD1Database('WECHAT_DB')).prepare("SELECT count(*) AS n FROM ledger WHERE entry = 'push'").first('n');
await Promise.all(Object.values(workers).map((w) => w.dispose()));

const row = (name, xs) => `| ${name} | ${xs.length} | ${quantile(xs, 0.5).toFixed(2)} | ${quantile(xs, 0.9).toFixed(2)} | ${quantile(xs, 0.99).toFixed(2)} | ${Math.max(...xs).toFixed(2)} |`;
console.log(`Reply latency of a push (miniflare dispatchFetch round trip, ms), two workers in alternating blocks; WeChat's custom/send and the webhook answer after ${LATENCY_MS} ms; pushes ${GAP_MS} ms apart; ${ROUNDS} rounds, ABBA.`);
console.log('');
console.log('| rules | pushes | p50 | p90 | p99 | max |');
console.log('|---|---|---|---|---|---|');
console.log(row('off: no database, no effects (closed: transfer)', samples.plain));
console.log(row('on: the ledger (D1), a notice and a waiting alert (closed: transfer_and_notify, alerts.on: [waiting])', samples.effects));
console.log('');
const added = (q) => quantile(samples.effects, q) - quantile(samples.plain, q);
console.log(`added by the ledger and effects: p50 ${added(0.5).toFixed(2)} ms, p99 ${added(0.99).toFixed(2)} ms`);
console.log(`ledger rows of pushes: ${rows} (every push of the "on" worker, warm-up included)`);
console.log(`effects that ran during the timed blocks: ${sends} notices, ${alerts} alerts (expected ${ROUNDS * PER_BLOCK} each)`);
if (sends !== ROUNDS * PER_BLOCK || alerts !== ROUNDS * PER_BLOCK) {
  console.error('not every effect ran: the figures do not describe the effects path');
  process.exitCode = 1;
}
