// What effects after the reply add to the reply's latency (issue 10's figure): pushes answered
// with rules that plan no effect (a night-time transfer) and with rules that plan two (the same
// transfer plus a notice to the user and a `waiting` alert to the agents), alternating blocks in
// one workerd, every push from a new user so every effect really runs. The WeChat mock and the
// webhook answer after WEBHOOK_MS, so an effect that held the reply would show as that much.
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

const mf = startWorker({ wechat: outbound, quiet: true, bindings: { ALERT_WEBHOOK_URL: HOOK } });
await mf.ready;

let user = 0;
async function push() {
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

async function useRules(doc) {
  const res = await mf.dispatchFetch(`${BASE}/api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify(doc) });
  if (res.status !== 200) throw new Error(`rules: ${res.status} ${await res.text()}`);
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const samples = { plain: [], effects: [] };
// Warm up both paths (token fetched, code compiled).
await useRules(EFFECTS);
for (let i = 0; i < 20; i++) await push();
await useRules(PLAIN);
for (let i = 0; i < 20; i++) await push();
await delay(LATENCY_MS * 4);
const sendsBefore = mock.calls('/cgi-bin/message/custom/send').length;
const hooksBefore = hooks;
for (let round = 0; round < ROUNDS; round++) {
  // ABBA: the order of the two blocks alternates between rounds.
  const order = round % 2 === 0 ? ['plain', 'effects'] : ['effects', 'plain'];
  for (const kind of order) {
    await useRules(kind === 'plain' ? PLAIN : EFFECTS);
    for (let i = 0; i < PER_BLOCK; i++) {
      samples[kind].push(await push());
      if (GAP_MS > 0) await delay(GAP_MS);
    }
    // Let the block's background work finish before the next block is timed.
    await delay(LATENCY_MS * 4 + 50);
  }
}
const sends = mock.calls('/cgi-bin/message/custom/send').length - sendsBefore;
const alerts = hooks - hooksBefore;
await mf.dispose();

const row = (name, xs) => `| ${name} | ${xs.length} | ${quantile(xs, 0.5).toFixed(2)} | ${quantile(xs, 0.9).toFixed(2)} | ${quantile(xs, 0.99).toFixed(2)} | ${Math.max(...xs).toFixed(2)} |`;
console.log(`Reply latency of a push in one workerd (miniflare dispatchFetch round trip, ms); WeChat's custom/send and the webhook answer after ${LATENCY_MS} ms; pushes ${GAP_MS} ms apart; ${ROUNDS} rounds, ABBA.`);
console.log('');
console.log('| rules | pushes | p50 | p90 | p99 | max |');
console.log('|---|---|---|---|---|---|');
console.log(row('no effects (closed: transfer)', samples.plain));
console.log(row('notice + waiting alert (closed: transfer_and_notify, alerts.on: [waiting])', samples.effects));
console.log('');
const added = (q) => quantile(samples.effects, q) - quantile(samples.plain, q);
console.log(`added by effects: p50 ${added(0.5).toFixed(2)} ms, p99 ${added(0.99).toFixed(2)} ms`);
console.log(`effects that ran during the timed blocks: ${sends} notices, ${alerts} alerts (expected ${ROUNDS * PER_BLOCK} each)`);
if (sends !== ROUNDS * PER_BLOCK || alerts !== ROUNDS * PER_BLOCK) {
  console.error('not every effect ran: the figures do not describe the effects path');
  process.exitCode = 1;
}
