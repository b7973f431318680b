// Capacity-aware transfer: WECHAT_KF_ROUTING=online targets an account with free capacity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, BASE } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';
import { plainQuery, fixture, field } from '../support/wechat.mjs';

const ACCOUNTS = 'a@gh_1,b@gh_1,c@gh_1';
const kf = (kf_account, status, auto_accept, accepted_case) => ({ kf_account, status, kf_id: '1', auto_accept, accepted_case });

async function transfer(online, { routing = 'online', hang = false } = {}) {
  const mock = mockWeChat();
  mock.state.online = online;
  if (hang) mock.always('/cgi-bin/customservice/getonlinekflist', () => new Promise(() => {}));
  const w = startWorker({ wechat: mock.handler, bindings: { WECHAT_KF_ACCOUNT: ACCOUNTS, WECHAT_KF_ROUTING: routing } });
  try {
    await w.ready;
    const push = async () => {
      const t0 = Date.now();
      const res = await w.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: fixture('messages/text.xml') });
      assert.equal(res.status, 200);
      const xml = await res.text();
      assert.equal(field(xml, 'MsgType'), 'transfer_customer_service');
      return { kf: field(xml, 'KfAccount'), ms: Date.now() - t0 };
    };
    const first = await push();
    const second = await push();
    return { first, second, listCalls: mock.calls('/cgi-bin/customservice/getonlinekflist').length };
  } finally {
    await w.dispose();
  }
}

test('online routing picks the first listed account that is online with free capacity', async () => {
  const r = await transfer([kf('a@gh_1', 0, 5, 0), kf('b@gh_1', 1, 3, 1), kf('c@gh_1', 1, 3, 0)]);
  assert.equal(r.first.kf, 'b@gh_1');
  assert.equal(r.second.kf, 'b@gh_1');
  assert.equal(r.listCalls, 1, 'the list is cached between transfers');
});

test('online routing skips full, offline and auto-accept-off accounts, else transfers untargeted', async () => {
  const r = await transfer([kf('a@gh_1', 1, 2, 2), kf('b@gh_1', 0, 5, 0), kf('c@gh_1', 1, 0, 0), kf('z@gh_1', 1, 9, 0)]);
  assert.equal(r.first.kf, undefined);
});

test('a hanging online list never delays a transfer past the budget', async () => {
  const r = await transfer([kf('a@gh_1', 1, 5, 0)], { hang: true });
  assert.equal(r.first.kf, undefined, 'untargeted fallback');
  assert.ok(r.first.ms < 2500, `first transfer took ${r.first.ms} ms (budget 1500 ms)`);
  assert.equal(r.second.kf, undefined);
  assert.ok(r.second.ms < 500, `the next transfer skips the failing lookup (${r.second.ms} ms)`);
  assert.equal(r.listCalls, 1);
});

test('static routing targets the first listed account without any lookup', async () => {
  const r = await transfer([], { routing: 'static' });
  assert.equal(r.first.kf, 'a@gh_1');
  assert.equal(r.listCalls, 0);
});

/** `n` pushes, `concurrency` at a time. */
async function pushes(w, n, concurrency) {
  let next = 0;
  const one = async () => {
    while (next < n) {
      next++;
      const res = await w.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: fixture('messages/text.xml') });
      assert.equal(res.status, 200);
      await res.text();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, one));
}

test('300 pushes at concurrency 20 with nothing cached look the online list up once', async () => {
  const mock = mockWeChat();
  mock.state.online = [kf('b@gh_1', 1, 9, 1)];
  const answer = mock.handler;
  // A list that takes a moment to arrive, as WeChat's does: every push of the first wave needs it.
  const w = startWorker({
    wechat: async (req) => {
      if (new URL(req.url).pathname.endsWith('getonlinekflist')) await new Promise((r) => setTimeout(r, 100));
      return answer(req);
    },
    bindings: { WECHAT_KF_ACCOUNT: ACCOUNTS, WECHAT_KF_ROUTING: 'online' },
  });
  try {
    await w.ready;
    await pushes(w, 300, 20);
    assert.equal(mock.calls('/cgi-bin/customservice/getonlinekflist').length, 1);
  } finally {
    await w.dispose();
  }
});
