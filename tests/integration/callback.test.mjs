// The callback against the built wasm in workerd (miniflare): what WeChat sees.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, BASE } from '../support/worker.mjs';
import { TOKEN, sign, decrypt, plainQuery, safePush, field, fixture, now, APPID } from '../support/wechat.mjs';

let mf;
let noKf;
before(async () => {
  mf = startWorker({ bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' } });
  noKf = startWorker({ bindings: { WECHAT_ENCODING_AES_KEY: undefined } });
  await Promise.all([mf.ready, noKf.ready]);
});
after(async () => { await mf?.dispose(); await noKf?.dispose(); });

const post = (w, query, body, headers = {}) =>
  w.dispatchFetch(`${BASE}/wechat?${query}`, { method: 'POST', body, headers: { 'content-type': 'text/xml', ...headers } });

test('URL check answers echostr verbatim only with a valid signature', async () => {
  const ts = String(now());
  const echostr = '5837397749323563137';
  const good = await mf.dispatchFetch(`${BASE}/wechat?signature=${sign(TOKEN, ts, '42')}&timestamp=${ts}&nonce=42&echostr=${echostr}`);
  assert.equal(good.status, 200);
  assert.match(good.headers.get('content-type'), /^text\/plain/);
  assert.equal(await good.text(), echostr);

  const bad = await mf.dispatchFetch(`${BASE}/wechat?signature=${'0'.repeat(40)}&timestamp=${ts}&nonce=42&echostr=${echostr}`);
  assert.equal(bad.status, 403);
  assert.ok(!(await bad.text()).includes(echostr));

  const missing = await mf.dispatchFetch(`${BASE}/wechat?timestamp=${ts}&nonce=42&echostr=${echostr}`);
  assert.equal(missing.status, 400);
  assert.ok(!(await missing.text()).includes(echostr));
});

test('a text message is transferred to customer service with the configured KfAccount', async () => {
  const res = await post(mf, plainQuery(), fixture('messages/text.xml'));
  assert.equal(res.status, 200);
  const xml = await res.text();
  assert.equal(field(xml, 'MsgType'), 'transfer_customer_service');
  assert.equal(field(xml, 'ToUserName'), 'oyORnuP8q7ou2gfYjqLzSIWZf0rs');
  assert.equal(field(xml, 'FromUserName'), 'gh_10f6c3c3ac5a');
  assert.equal(field(xml, 'KfAccount'), 'kf2001@gh_10f6c3c3ac5a');
  assert.ok(Math.abs(Number(field(xml, 'CreateTime')) - now()) <= 5);
  assert.ok(!/>\s+</.test(xml), 'no whitespace between elements');
});

test('without WECHAT_KF_ACCOUNT the transfer has no TransInfo', async () => {
  const xml = await (await post(noKf, plainQuery(), fixture('messages/image.xml'))).text();
  assert.equal(field(xml, 'MsgType'), 'transfer_customer_service');
  assert.ok(!xml.includes('TransInfo'));
});

test('events are acknowledged with success, never transferred', async () => {
  for (const name of ['subscribe', 'click', 'location', 'kf_close_session', 'scancode_push']) {
    const res = await post(mf, plainQuery(), fixture(`events/${name}.xml`));
    assert.equal(res.status, 200, name);
    assert.equal(await res.text(), 'success', name);
  }
});

test('safe mode round trip: encrypted in, encrypted transfer out', async () => {
  const { query, body } = safePush(fixture('messages/text.xml').toString());
  const res = await post(mf, query, body);
  assert.equal(res.status, 200);
  const envelope = await res.text();
  const enc = field(envelope, 'Encrypt');
  const ts = field(envelope, 'TimeStamp');
  const nonce = field(envelope, 'Nonce');
  assert.equal(field(envelope, 'MsgSignature'), sign(TOKEN, ts, nonce, enc));
  const { xml, appid } = decrypt(enc);
  assert.equal(appid, APPID);
  assert.equal(field(xml, 'MsgType'), 'transfer_customer_service');
  assert.equal(field(xml, 'ToUserName'), 'oyORnuP8q7ou2gfYjqLzSIWZf0rs');
  assert.equal(field(xml, 'KfAccount'), 'kf2001@gh_10f6c3c3ac5a');
});

test('compatible mode trusts only the ciphertext', async () => {
  const { query, body } = safePush(fixture('messages/text.xml').toString(), { compatible: true });
  const res = await post(mf, query, body);
  assert.equal(res.status, 200);
  const { xml } = decrypt(field(await res.text(), 'Encrypt'));
  assert.equal(field(xml, 'ToUserName'), 'oyORnuP8q7ou2gfYjqLzSIWZf0rs', 'not the spoofed plaintext sender');
  assert.equal(field(xml, 'MsgType'), 'transfer_customer_service', 'plaintext MsgType=event ignored');
});

test('safe-mode events are acknowledged', async () => {
  const { query, body } = safePush(fixture('events/subscribe.xml').toString());
  const res = await post(mf, query, body);
  assert.equal(await res.text(), 'success');
});

test('a body over 64 KiB is refused with 413, answered rather than reset', async () => {
  const big = '<xml>' + 'a'.repeat(64 * 1024) + '</xml>';
  assert.equal((await post(mf, plainQuery(), big)).status, 413);
  // Larger bodies are drained before the answer (up to 1 MiB), so the client reads the 413.
  for (const size of [140_000, 900_000]) {
    for (let i = 0; i < 10; i++) {
      const res = await post(mf, plainQuery(), 'x'.repeat(size));
      assert.equal(res.status, 413, `${size} bytes`);
      await res.arrayBuffer();
    }
  }
});

test('a chunked body (no Content-Length) over 64 KiB is refused with 413 too', async () => {
  const chunk = new TextEncoder().encode('a'.repeat(16 * 1024));
  const stream = (n) => new ReadableStream({
    start(c) { for (let i = 0; i < n; i++) c.enqueue(chunk); c.close(); },
  });
  const big = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: stream(5), duplex: 'half' });
  assert.equal(big.status, 413);
  await big.arrayBuffer();
  const text = fixture('messages/text.xml');
  const small = await mf.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, {
    method: 'POST', duplex: 'half',
    body: new ReadableStream({ start(c) { c.enqueue(new Uint8Array(text)); c.close(); } }),
  });
  assert.equal(small.status, 200);
  assert.equal(field(await small.text(), 'MsgType'), 'transfer_customer_service');
});

test('a bad or stale signature is refused with 403', async () => {
  const body = fixture('messages/text.xml');
  const wrong = plainQuery().replace(/signature=[0-9a-f]+/, `signature=${'a'.repeat(40)}`);
  assert.equal((await post(mf, wrong, body)).status, 403);
  assert.equal((await post(mf, plainQuery({ timestamp: now() - 3600 }), body)).status, 403);
  assert.equal((await post(mf, plainQuery({ token: 'not-the-token' }), body)).status, 403);
});

test('bad inputs get a 4xx, never a 5xx, and the next valid request still works', async () => {
  const files = ['empty.xml', 'malformed.xml', 'json_body.json', 'missing_msgtype.xml', 'missing_fromusername.xml',
    'billion_laughs.xml', 'external_entity.xml', 'invalid_char_ref.xml', 'createtime_non_numeric.xml',
    'createtime_overflow.xml', 'msgid_overflow.xml', 'msgid_non_numeric.xml', 'non_utf8.xml'];
  const cases = files.map((f) => [f, plainQuery(), fixture(`bad/${f}`)]);
  cases.push(['20000-deep', plainQuery(), `<xml>${'<a>'.repeat(20000)}${'</a>'.repeat(20000)}</xml>`]);
  const ts = now();
  for (const sig of ['', 'abc', 'zz'.repeat(20), 'F'.repeat(41)]) {
    cases.push([`signature ${JSON.stringify(sig)}`, `signature=${sig}&timestamp=${ts}&nonce=1`, fixture('messages/text.xml')]);
  }
  const text = fixture('messages/text.xml').toString();
  const safe = safePush(text);
  const garbage = safe.query.replace(/msg_signature=[0-9a-f]+/, `msg_signature=${sign(TOKEN, String(ts), '1320562132', '%%%')}`);
  cases.push(['safe: garbage base64', garbage.replace(/timestamp=\d+/, `timestamp=${ts}`), '<xml><Encrypt><![CDATA[%%%]]></Encrypt></xml>']);
  const enc = field(safe.body, 'Encrypt');
  const cut = enc.slice(0, enc.length - 24);
  cases.push(['safe: truncated', `timestamp=${ts}&nonce=9&encrypt_type=aes&msg_signature=${sign(TOKEN, String(ts), '9', cut)}`,
    `<xml><Encrypt><![CDATA[${cut}]]></Encrypt></xml>`]);
  const other = safePush(text, { appid: 'wx0000000000000000', timestamp: ts });
  cases.push(['safe: wrong appid', other.query, other.body]);
  cases.push(['safe: no Encrypt', `timestamp=${ts}&nonce=9&encrypt_type=aes&msg_signature=${'0'.repeat(40)}`, '<xml><A>1</A></xml>']);

  for (const [name, query, body] of cases) {
    const res = await post(mf, query, body);
    assert.ok(res.status >= 400 && res.status < 500, `${name}: ${res.status}`);
    const text = await res.text();
    assert.ok(!text.includes('lol') && !text.includes('passwd'), `${name} leaks nothing`);
    const ok = await post(mf, plainQuery(), fixture('messages/text.xml'));
    assert.equal(ok.status, 200, `valid request after ${name}`);
    await ok.text();
  }
});

test('a retried identical push gets the same answer', async () => {
  const query = plainQuery();
  const body = fixture('messages/voice_recognition.xml');
  const a = await (await post(mf, query, body)).text();
  const b = await (await post(mf, query, body)).text();
  assert.equal(field(a, 'MsgType'), field(b, 'MsgType'));
  assert.equal(field(a, 'ToUserName'), field(b, 'ToUserName'));
});

test('unknown paths 404, other methods on /wechat 405', async () => {
  assert.equal((await mf.dispatchFetch(`${BASE}/nope`)).status, 404);
  assert.equal((await mf.dispatchFetch(`${BASE}/`)).status, 404);
  const put = await mf.dispatchFetch(`${BASE}/wechat`, { method: 'PUT', body: 'x' });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get('allow'), 'GET, POST');
  assert.equal((await mf.dispatchFetch(`${BASE}/wechat`, { method: 'DELETE' })).status, 405);
});

test('/healthz reports features and missing variables without secrets', async () => {
  const res = await mf.dispatchFetch(`${BASE}/healthz`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const h = JSON.parse(text);
  assert.equal(h.features.callback, true);
  assert.equal(h.features.safe_mode, true);
  assert.ok(!text.includes(TOKEN) && !text.includes('abcdefghij') && !text.includes('test-app-secret'));

  const bare = startWorker({ bindings: { WECHAT_TOKEN: undefined, WECHAT_ENCODING_AES_KEY: 'short' } });
  try {
    const h2 = await (await bare.dispatchFetch(`${BASE}/healthz`)).json();
    assert.equal(h2.ok, false);
    assert.deepEqual(h2.missing, ['WECHAT_TOKEN']);
    assert.deepEqual(h2.invalid, ['WECHAT_ENCODING_AES_KEY']);
    // Misconfigured: a generic 500 that names nothing.
    const res2 = await bare.dispatchFetch(`${BASE}/wechat?${plainQuery()}`, { method: 'POST', body: fixture('messages/text.xml') });
    assert.equal(res2.status, 500);
    const body = await res2.text();
    assert.ok(!body.includes('WECHAT_') && !body.includes('short'), body);
  } finally {
    await bare.dispose();
  }
});
