// Official Accounts in the database, in workerd on D1: the owner adds three (plain, compatible
// and safe mode) beside the default account; each is served at /wechat/{appid} with its own
// Token, also by a second isolate that shares the database; a push signed for another account is
// refused; no response and no log line holds a secret.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, bundle, noteSecret, BASE, ADMIN_TOKEN, DATABASE_ID, defaultBindings } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';
import { wechatPeer, field, now } from '../support/wechat.mjs';

const ACCOUNTS_KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const AES = 'ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut';
const SECRET = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';
const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const ACCOUNTS = [
  { appid: 'wx00000000000000a1', token: 'tokenPlainA1', mode: 'plain' },
  { appid: 'wx00000000000000b2', token: 'tokenCompatB2', mode: 'compatible', aes_key: AES },
  { appid: 'wx00000000000000c3', token: 'tokenSafeC3', mode: 'safe', aes_key: AES },
];

let mock;
let mf;
before(async () => {
  for (const secret of [ACCOUNTS_KEY, AES, SECRET, ...ACCOUNTS.map((a) => a.token)]) noteSecret(secret);
  mock = mockWeChat();
  mf = startWorker({
    wechat: mock.handler,
    captureLogs: true,
    bindings: { ACCOUNTS_KEY },
    // A second isolate of the same bundle on the same database.
    extraWorkers: [{
      name: 'second',
      ...bundle(),
      kvNamespaces: ['WECHAT_KV'],
      d1Databases: { WECHAT_DB: DATABASE_ID },
      bindings: { ...defaultBindings, ACCOUNTS_KEY },
      outboundService: mock.handler,
    }, {
      // A third isolate of the same bundle and database whose ACCOUNTS_KEY is another.
      name: 'rekeyed',
      ...bundle(),
      kvNamespaces: ['WECHAT_KV'],
      d1Databases: { WECHAT_DB: DATABASE_ID },
      bindings: { ...defaultBindings, ACCOUNTS_KEY: 'Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=' },
      outboundService: mock.handler,
    }],
  });
  await mf.ready;
});
after(async () => { await mf?.dispose(); });

const api = (path, init = {}) => mf.dispatchFetch(`${BASE}${path}`, { ...init, headers: { ...auth, ...init.headers } });
const second = async () => mf.getWorker('second');

function text(openid) {
  return `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[${openid}]]></FromUserName>` +
    `<CreateTime>${now()}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content>` +
    `<MsgId>${Math.floor(Math.random() * 1e12)}</MsgId></xml>`;
}

/** A push of a text to `account`'s callback through `via`, signed with `token`. */
async function push(via, account, token = account.token) {
  const peer = wechatPeer({ token, aesKey: account.aes_key ?? null, appid: account.appid });
  const xml = text('oUserX');
  const { query, body } = account.mode === 'plain'
    ? { query: peer.plainQuery(), body: xml }
    : peer.safePush(xml, { compatible: account.mode === 'compatible' });
  const res = await via.fetch(`${BASE}/wechat/${account.appid}?${query}`, { method: 'POST', body, headers: { 'content-type': 'text/xml' } });
  const reply = await res.text();
  return { status: res.status, reply: res.status === 200 && account.mode !== 'plain' ? peer.openReply(reply) : reply };
}

test('the owner adds three accounts; each is served at /wechat/{appid} with its own Token, in both isolates', async () => {
  for (const { appid, token, aes_key } of ACCOUNTS) {
    const res = await api('/api/accounts', { method: 'POST', body: JSON.stringify({ appid, name: `号 ${appid}`, token, aes_key, secret: SECRET }) });
    assert.equal(res.status, 201, await res.clone().text());
    const view = await res.json();
    assert.deepEqual([view.callback_path, view.aes_key_set, view.secret_set], [`/wechat/${appid}`, Boolean(aes_key), true]);
  }
  const duplicate = await api('/api/accounts', { method: 'POST', body: JSON.stringify({ appid: ACCOUNTS[0].appid, name: 'x', token: 'abc' }) });
  assert.equal(duplicate.status, 409);
  const list = await (await api('/api/accounts')).json();
  assert.deepEqual(list.accounts.map((a) => a.appid), ACCOUNTS.map((a) => a.appid));
  const other = await second();
  for (const via of [{ fetch: (url, init) => mf.dispatchFetch(url, init) }, other]) {
    for (const account of ACCOUNTS) {
      const { status, reply } = await push(via, account);
      assert.equal(status, 200, account.mode);
      assert.equal(field(reply, 'MsgType'), 'transfer_customer_service', account.mode);
    }
  }
  // Signed with another account's Token; an unknown or malformed appid.
  assert.equal((await push(other, ACCOUNTS[2], ACCOUNTS[1].token)).status, 403);
  assert.equal((await push(other, { ...ACCOUNTS[0], appid: 'wx00000000000000d4' })).status, 404);
  assert.equal((await push(other, { ...ACCOUNTS[0], appid: 'wx00000000000000D4' })).status, 404);
});

test('a bad account is refused naming its field; removed, its callback answers 404', async () => {
  const res = await api('/api/accounts', { method: 'POST', body: JSON.stringify({ appid: 'wx00000000000000e5', name: 'n', token: 'ab' }) });
  assert.deepEqual([res.status, await res.json()], [400, { error: 'invalid_request', field: 'token', message: 'must be 3 to 32 letters or digits' }]);
  const gone = { appid: 'wx00000000000000f6', token: 'tokenGoneF6', mode: 'plain' };
  assert.equal((await api('/api/accounts', { method: 'POST', body: JSON.stringify({ appid: gone.appid, name: 'n', token: gone.token }) })).status, 201);
  const via = { fetch: (url, init) => mf.dispatchFetch(url, init) };
  assert.equal((await push(via, gone)).status, 200);
  assert.equal((await api(`/api/accounts/${gone.appid}`, { method: 'DELETE' })).status, 204);
  assert.equal((await push(via, gone)).status, 404, 'at once in the isolate that removed it');
});

test('no response and no log line holds an account secret', async () => {
  const answers = await Promise.all(['/api/accounts', ...ACCOUNTS.map((a) => `/api/accounts/${a.appid}`), '/healthz'].map(async (p) => (await api(p)).text()));
  const logs = mf.logs.map((l) => l.line).join('\n');
  for (const secret of [ACCOUNTS_KEY, AES, SECRET, ...ACCOUNTS.map((a) => a.token)]) {
    for (const answer of answers) assert.ok(!answer.includes(secret), `${secret} in an answer`);
    assert.ok(!logs.includes(secret), `${secret} in the log`);
  }
  const db = await mf.getD1Database('WECHAT_DB');
  const rows = JSON.stringify((await db.prepare('SELECT * FROM accounts').all()).results);
  for (const secret of [AES, SECRET, ...ACCOUNTS.map((a) => a.token)]) assert.ok(!rows.includes(secret), `${secret} in the table`);
});

test("an operator token reaches its account's routes only, and is refused once revoked", async () => {
  const [a, b] = ACCOUNTS;
  const issued = await api(`/api/accounts/${a.appid}/tokens`, { method: 'POST', body: JSON.stringify({ name: '小王' }) });
  assert.equal(issued.status, 201);
  const { id, token } = await issued.json();
  noteSecret(token);
  const as = (path, init = {}) => mf.dispatchFetch(`${BASE}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
  assert.equal((await as(`/api/accounts/${a.appid}/rules`, { method: 'PUT', body: '{"welcome":"欢迎关注 A"}' })).status, 200);
  assert.equal((await (await as(`/api/accounts/${a.appid}/rules`)).json()).rules.welcome, '欢迎关注 A');
  // WeChat's API with its own AppID (the mock knows only the environment's: 40013).
  const asked = await as(`/api/accounts/${a.appid}/kf/accounts`);
  assert.deepEqual([asked.status, (await asked.json()).errcode], [502, 40013]);
  const request = mock.state.requests.filter((r) => r.path === '/cgi-bin/stable_token').at(-1);
  assert.equal(JSON.parse(request.body).appid, a.appid);
  for (const [path, status] of [[`/api/accounts/${b.appid}/rules`, 404], ['/api/rules', 404], ['/api/accounts', 403], [`/api/accounts/${a.appid}/tokens`, 403]]) {
    assert.equal((await as(path)).status, status, path);
  }
  const listed = await (await api(`/api/accounts/${a.appid}/tokens`)).json();
  assert.deepEqual(listed.tokens.map((t) => [t.id, t.name]), [[id, '小王']]);
  assert.ok(!JSON.stringify(listed).includes(token.slice(21)), 'the token is shown once');
  assert.equal((await api(`/api/accounts/${a.appid}/tokens/${id}`, { method: 'DELETE' })).status, 204);
  assert.equal((await as(`/api/accounts/${a.appid}/rules`)).status, 401);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!mf.logs.map((l) => l.line).join('\n').includes(token.slice(21)), 'never logged');
});

test('secrets sealed under another key fail that account alone, with one log line naming it', async () => {
  const rekeyed = await mf.getWorker('rekeyed');
  const account = ACCOUNTS[0];
  const peer = wechatPeer({ token: account.token, aesKey: null, appid: account.appid });
  const res = await rekeyed.fetch(`${BASE}/wechat/${account.appid}?${peer.plainQuery()}`, { method: 'POST', body: text('oUserK') });
  assert.equal(res.status, 500);
  await new Promise((r) => setTimeout(r, 100));
  const lines = mf.logLines().filter((l) => l.route === '/wechat/{appid}' && l.status === 500);
  assert.equal(lines.length, 1);
  assert.deepEqual(lines[0].notes, [`account ${account.appid}: its secrets do not open with ACCOUNTS_KEY`]);
  // The other accounts (sealed under their key) are served by the isolates that have it.
  assert.equal((await push({ fetch: (url, init) => mf.dispatchFetch(url, init) }, ACCOUNTS[1])).status, 200);
});

test('a deployment of database accounts only; without ACCOUNTS_KEY nothing is kept and the answer names it', async () => {
  const only = startWorker({
    wechat: mock.handler,
    bindings: { ACCOUNTS_KEY, WECHAT_TOKEN: undefined, WECHAT_APPID: undefined, WECHAT_ENCODING_AES_KEY: undefined, WECHAT_APPSECRET: undefined },
  });
  const none = startWorker({ wechat: mock.handler, bindings: { ACCOUNTS_KEY: undefined } });
  try {
    await Promise.all([only.ready, none.ready]);
    const health = await (await only.dispatchFetch(`${BASE}/healthz`)).json();
    assert.deepEqual([health.ok, health.features.callback, health.features.accounts], [true, false, true]);
    assert.equal((await only.dispatchFetch(`${BASE}/wechat?echostr=1`)).status, 404);
    const refused = await none.dispatchFetch(`${BASE}/api/accounts`, { method: 'POST', headers: auth, body: JSON.stringify({ appid: 'wx00000000000000e7', name: 'n', token: 'abc' }) });
    assert.deepEqual([refused.status, (await refused.json()).field], [503, 'ACCOUNTS_KEY']);
  } finally {
    await Promise.all([only.dispose(), none.dispose()]);
  }
});
