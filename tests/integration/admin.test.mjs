// The admin API and the access_token cache against the built wasm in workerd, WeChat mocked.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWorker, BASE, ADMIN_TOKEN, startWithMock } from '../support/worker.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const openapi = JSON.parse(readFileSync(new URL('../../api/openapi.json', import.meta.url)));

let mock;
let mf;
before(async () => ({ mock, mf } = await startWithMock()));
after(async () => { await mf?.dispose(); });
beforeEach(() => mock.reset());

const api = (path, { method = 'GET', body, headers = auth } = {}) =>
  mf.dispatchFetch(`${BASE}${path}`, { method, headers, body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)) });

const EXAMPLES = {
  text: { touser: 'OPENID', msgtype: 'text', text: { content: 'Hello World 你好 😀 "quoted" \\ </xml>' } },
  image: { touser: 'OPENID', msgtype: 'image', image: { media_id: 'MEDIA_ID' } },
  voice: { touser: 'OPENID', msgtype: 'voice', voice: { media_id: 'MEDIA_ID' } },
  video: { touser: 'OPENID', msgtype: 'video', video: { media_id: 'MEDIA_ID', thumb_media_id: 'MEDIA_ID', title: 'TITLE', description: 'DESCRIPTION' } },
  music: { touser: 'OPENID', msgtype: 'music', music: { title: 'MUSIC_TITLE', description: 'MUSIC_DESCRIPTION', musicurl: 'MUSIC_URL', hqmusicurl: 'HQ_MUSIC_URL', thumb_media_id: 'THUMB_MEDIA_ID' } },
  news: { touser: 'OPENID', msgtype: 'news', news: { articles: [{ title: 'Happy Day', description: 'Is Really A Happy Day', url: 'URL', picurl: 'PIC_URL' }] } },
  mpnews: { touser: 'OPENID', msgtype: 'mpnews', mpnews: { media_id: 'MEDIA_ID' } },
  mpnewsarticle: { touser: 'OPENID', msgtype: 'mpnewsarticle', mpnewsarticle: { article_id: 'ARTICLE_ID' } },
  msgmenu: { touser: 'OPENID', msgtype: 'msgmenu', msgmenu: { head_content: '您对本次服务是否满意呢? ', list: [{ id: '101', content: '满意' }, { id: '102', content: '不满意' }], tail_content: '欢迎再次光临' } },
  wxcard: { touser: 'OPENID', msgtype: 'wxcard', wxcard: { card_id: '123dsdajkasd231jhksad' } },
  miniprogrampage: { touser: 'OPENID', msgtype: 'miniprogrampage', miniprogrampage: { title: 'title', appid: 'appid', pagepath: 'pagepath', thumb_media_id: 'thumb_media_id' } },
};

test('every msgtype reaches WeChat byte for byte, with the token in the query', async () => {
  assert.equal(Object.keys(EXAMPLES).length, 11);
  for (const [type, payload] of Object.entries(EXAMPLES)) {
    for (const body of [JSON.stringify(payload), JSON.stringify({ ...payload, customservice: { kf_account: 'test1@kftest' } }, null, 1)]) {
      mock.reset();
      const res = await api('/api/messages', { method: 'POST', body });
      assert.equal(res.status, 200, type);
      assert.deepEqual(await res.json(), { errcode: 0, errmsg: 'ok' });
      const [sent] = mock.calls('/cgi-bin/message/custom/send');
      assert.equal(sent.body, body, `${type} forwarded unchanged`);
      assert.equal(sent.query.access_token, mock.state.current.token);
    }
  }
});

test('other admin routes map to the documented WeChat calls', async () => {
  const cases = [
    ['POST', '/api/typing', { touser: 'o1', command: 'Typing' }, '/cgi-bin/message/custom/typing', { touser: 'o1', command: 'Typing' }],
    ['GET', '/api/kf/accounts', undefined, '/cgi-bin/customservice/getkflist'],
    ['GET', '/api/kf/online', undefined, '/cgi-bin/customservice/getonlinekflist'],
    ['POST', '/api/kf/accounts', { kf_account: 'test1@test', nickname: '客服1' }, '/customservice/kfaccount/add', { kf_account: 'test1@test', nickname: '客服1' }],
    ['PUT', '/api/kf/accounts/test1%40test', { nickname: '客服2' }, '/customservice/kfaccount/update', { kf_account: 'test1@test', nickname: '客服2' }],
    ['DELETE', '/api/kf/accounts/test1@test', undefined, '/customservice/kfaccount/del', { kf_account: 'test1@test' }],
    ['POST', '/api/kf/accounts/test1@test/invite', { invite_wx: 'test_kfwx' }, '/customservice/kfaccount/inviteworker', { kf_account: 'test1@test', invite_wx: 'test_kfwx' }],
    ['POST', '/api/kf/sessions', { kf_account: 'test1@test', openid: 'OPENID' }, '/customservice/kfsession/create', { kf_account: 'test1@test', openid: 'OPENID' }],
    ['DELETE', '/api/kf/sessions', { kf_account: 'test1@test', openid: 'OPENID' }, '/customservice/kfsession/close', { kf_account: 'test1@test', openid: 'OPENID' }],
    ['GET', '/api/kf/sessions?openid=OPENID', undefined, '/customservice/kfsession/getsession'],
    ['GET', '/api/kf/sessions?kf_account=test1%40test', undefined, '/customservice/kfsession/getsessionlist'],
    ['GET', '/api/kf/waitcase', undefined, '/customservice/kfsession/getwaitcase'],
    ['POST', '/api/kf/records', { starttime: 987654321, endtime: 987654999, msgid: 1, number: 10000 }, '/customservice/msgrecord/getmsglist', { starttime: 987654321, endtime: 987654999, msgid: 1, number: 10000 }],
  ];
  for (const [method, path, body, wechatPath, sentBody] of cases) {
    mock.reset();
    const res = await api(path, { method, body });
    assert.equal(res.status, 200, `${method} ${path}: ${await res.clone().text()}`);
    const calls = mock.calls(wechatPath);
    assert.equal(calls.length, 1, `${method} ${path} -> ${wechatPath}`);
    if (sentBody) assert.deepEqual(JSON.parse(calls[0].body), sentBody);
  }
  const [getsession] = (mock.reset(), await api('/api/kf/sessions?openid=o%2B1'), mock.calls('/customservice/kfsession/getsession'));
  assert.equal(getsession.query.openid, 'o+1');
});

test('every route of the OpenAPI description is served', async () => {
  let count = 0;
  for (const [path, ops] of Object.entries(openapi.paths)) {
    for (const method of Object.keys(ops)) {
      const concrete = path.replace('{kf_account}', 'test1@test');
      const noAuth = await api(concrete, { method: method.toUpperCase(), headers: {} });
      assert.equal(noAuth.status, 401, `${method} ${path} without auth`);
      const res = await api(concrete, { method: method.toUpperCase(), body: method === 'get' || method === 'delete' && !path.endsWith('sessions') ? undefined : '{}' });
      assert.ok(![404, 405].includes(res.status), `${method} ${path} served (got ${res.status})`);
      count++;
    }
  }
  assert.equal(count, 31);
});

test('the bearer scheme is matched in any case', async () => {
  for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
    const res = await api('/api/kf/accounts', { headers: { authorization: `${scheme} ${ADMIN_TOKEN}` } });
    assert.equal(res.status, 200, scheme);
  }
});

test('a key given twice is refused with its name, before WeChat', async () => {
  const body = '{"touser":"OPENID","msgtype":"image","image":{"media_id":"M"},"msgtype":"text","text":{"content":"x"}}';
  const res = await api('/api/messages', { method: 'POST', body });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { error: 'invalid_request', field: 'msgtype', message: 'appears twice in the same object' });
  assert.equal(mock.calls('/cgi-bin/message/custom/send').length, 0);
});

test('a huge WeChat answer is cut off at 1 MiB: 502 at once, nothing buffered', async () => {
  const chunk = new Uint8Array(1 << 20).fill(32);
  mock.on('/cgi-bin/message/custom/send', () => new Response(new ReadableStream({
    pull(c) { if ((this.n = (this.n ?? 0) + 1) > 50) c.close(); else c.enqueue(chunk); },
  }), { headers: { 'content-type': 'application/json' } }));
  const t0 = Date.now();
  const res = await api('/api/messages', { method: 'POST', body: EXAMPLES.text });
  assert.equal(res.status, 502);
  assert.equal((await res.json()).error, 'upstream_error');
  assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms`);
});

test('bad auth is 401 on every route, and the admin API is 404 without ADMIN_TOKEN', async () => {
  for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: ADMIN_TOKEN }, { authorization: `Basic ${ADMIN_TOKEN}` }, { authorization: `Bearer ${ADMIN_TOKEN}x` }]) {
    const res = await api('/api/messages', { method: 'POST', headers, body: JSON.stringify(EXAMPLES.text) });
    assert.equal(res.status, 401, JSON.stringify(headers));
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
  }
  assert.equal(mock.state.requests.length, 0, 'nothing reached WeChat');
  const closed = startWorker({ wechat: mock.handler, bindings: { ADMIN_TOKEN: undefined } });
  try {
    assert.equal((await closed.dispatchFetch(`${BASE}/api/messages`, { method: 'POST', headers: auth, body: '{}' })).status, 404);
    assert.equal((await closed.dispatchFetch(`${BASE}/api/kf/accounts`, { headers: auth })).status, 404);
  } finally {
    await closed.dispose();
  }
});

test('bad JSON and missing fields are refused with 400 naming the field, before WeChat', async () => {
  const cases = [
    ['/api/messages', 'POST', '{"touser":', 'body'],
    ['/api/messages', 'POST', '"text"', 'body'],
    ['/api/messages', 'POST', { msgtype: 'text', text: { content: 'x' } }, 'touser'],
    ['/api/messages', 'POST', { touser: 'o', msgtype: 'sms' }, 'msgtype'],
    ['/api/messages', 'POST', { touser: 'o', msgtype: 'text', text: {} }, 'text.content'],
    ['/api/messages', 'POST', { touser: 'o', msgtype: 'news', news: { articles: [{ title: 'a', url: 'u' }, { title: 'b', url: 'u' }] } }, 'news.articles'],
    ['/api/messages', 'POST', { ...EXAMPLES.text, customservice: { kf_account: 'no-at-sign' } }, 'customservice.kf_account'],
    ['/api/typing', 'POST', { touser: 'o' }, 'command'],
    ['/api/kf/accounts', 'POST', { kf_account: 'a@b' }, 'nickname'],
    ['/api/kf/accounts/a@b', 'PUT', {}, 'nickname'],
    ['/api/kf/accounts/a@b/invite', 'POST', {}, 'invite_wx'],
    ['/api/kf/sessions', 'POST', { openid: 'o' }, 'kf_account'],
    ['/api/kf/sessions', 'GET', undefined, 'openid'],
    ['/api/kf/records', 'POST', { starttime: 1, endtime: 2, msgid: 1 }, 'number'],
  ];
  for (const [path, method, body, field] of cases) {
    const res = await api(path, { method, body });
    assert.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
    assert.equal((await res.json()).field, field, `${method} ${path}`);
  }
  assert.equal(mock.state.requests.length, 0, 'nothing reached WeChat');
  assert.equal((await api('/api/nothing-here')).status, 404);
  const wrongMethod = await api('/api/messages');
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get('allow'), 'POST');
  const patch = await api('/api/kf/accounts/a@b', { method: 'PATCH', body: '{}' });
  assert.equal(patch.headers.get('allow'), 'PUT, DELETE');
});

test('WeChat errors surface as clear, non-2xx errors', async () => {
  const cases = [
    [45015, 409, /48-hour window/],
    [45047, 429, /quota/],
    [43004, 409, /does not follow/],
    [-1, 503, /busy/],
  ];
  for (const [errcode, status, hint] of cases) {
    mock.on('/cgi-bin/message/custom/send', () => new Response(JSON.stringify({ errcode, errmsg: 'from wechat' })));
    const res = await api('/api/messages', { method: 'POST', body: EXAMPLES.text });
    assert.equal(res.status, status, `errcode ${errcode}`);
    const body = await res.json();
    assert.equal(body.errcode, errcode);
    assert.equal(body.errmsg, 'from wechat');
    assert.match(body.hint, hint);
  }
  mock.on('/cgi-bin/message/custom/send', () => new Response('<html>502 Bad Gateway</html>', { status: 500 }));
  const res = await api('/api/messages', { method: 'POST', body: EXAMPLES.text });
  assert.equal(res.status, 502);
  const text = await res.text();
  assert.ok(!text.includes('html') && !text.includes('ACCESS_TOKEN'), text);
});

test('token endpoint errors explain themselves and never leak the secret', async () => {
  const cases = [
    [40164, /whitelist/, /WECHAT_API_BASE/],
    [40013, /WECHAT_APPID/, /AppID/],
    [40125, /WECHAT_APPSECRET/, /AppSecret/],
  ];
  for (const [errcode, hint1, hint2] of cases) {
    const m = mockWeChat();
    m.always('/cgi-bin/stable_token', () => new Response(JSON.stringify({ errcode, errmsg: `err ${errcode}` })));
    const w = startWorker({ wechat: m.handler });
    try {
      const res = await w.dispatchFetch(`${BASE}/api/kf/accounts`, { headers: auth });
      assert.equal(res.status, 502);
      const text = await res.text();
      const body = JSON.parse(text);
      assert.equal(body.errcode, errcode);
      assert.match(body.hint, hint1);
      assert.match(body.hint, hint2);
      assert.ok(!text.includes('test-app-secret'));
      assert.equal(m.calls('/cgi-bin/customservice/getkflist').length, 0);
    } finally {
      await w.dispose();
    }
  }
});

test('a busy token endpoint (-1) is retried once', async () => {
  const m = mockWeChat();
  m.on('/cgi-bin/stable_token', () => new Response(JSON.stringify({ errcode: -1, errmsg: 'system busy' })));
  const w = startWorker({ wechat: m.handler });
  try {
    const res = await w.dispatchFetch(`${BASE}/api/kf/accounts`, { headers: auth });
    assert.equal(res.status, 200);
    assert.equal(m.calls('/cgi-bin/stable_token').length, 2);
  } finally {
    await w.dispose();
  }
});
