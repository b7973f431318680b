// The callback against the built wasm in workerd (miniflare): what WeChat sees.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startWorker, BASE, ADMIN_TOKEN } from '../support/worker.mjs';
import { TOKEN, sign, decrypt, plainQuery, safePush, field, fixture, now, APPID } from '../support/wechat.mjs';

let mf;
let noKf;
before(async () => {
  mf = startWorker({ bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' } });
  noKf = startWorker({ bindings: { WECHAT_ENCODING_AES_KEY: undefined } });
  await Promise.all([mf.ready, noKf.ready]);
});
after(async () => { await mf?.dispose(); await noKf?.dispose(); });

async function waitFor(check, what, ms = 2000) {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

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

test('the URL check applies the timestamp window and echoes only what WeChat sends', async () => {
  const check = async (ts, echostr = '5837397749323563137') => {
    const res = await mf.dispatchFetch(`${BASE}/wechat?signature=${sign(TOKEN, ts, '42')}&timestamp=${ts}&nonce=42&echostr=${echostr}`);
    return [res.status, res.status === 200 ? await res.text() : (await res.json()).error];
  };
  assert.deepEqual(await check(String(now() - 3600)), [403, 'stale_timestamp']);
  assert.deepEqual(await check('abc'), [400, 'invalid_parameter']);
  assert.deepEqual(await check(String(now()), '%3Cscript%3E'), [400, 'invalid_parameter']);
  assert.deepEqual(await check(String(now()), '9'.repeat(129)), [400, 'invalid_parameter']);
});

test('an event is acknowledged whatever the case of its MsgType', async () => {
  const body = fixture('events/subscribe.xml').toString().replace('[event]', '[ EVENT ]');
  const res = await post(mf, plainQuery(), body);
  assert.equal(await res.text(), 'success');
});

test('an unsigned safe-mode push to a deployment without an AES key is a 403, not a 500', async () => {
  const w = startWorker({ bindings: { WECHAT_ENCODING_AES_KEY: undefined }, captureLogs: true });
  try {
    await w.ready;
    const res = await post(w, `encrypt_type=aes&msg_signature=junk&timestamp=${now()}&nonce=1`, '<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>');
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error, 'invalid_signature');
    await waitFor(() => w.logLines().some((l) => l.outcome === 'invalid_signature'), 'the log line');
    assert.ok(!w.logs.some((l) => l.stream === 'stderr'), 'nothing at error level');
  } finally {
    await w.dispose();
  }
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

/// Sends a request's head and the first `sent` bytes of its body over a raw connection, then
/// goes away: a client that gives up mid-upload. `declared`: its Content-Length, or chunked.
async function abandon(url, path, { declared, sent = 10, headers = '' }) {
  const { hostname, port } = new URL(url);
  const length = declared === undefined ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${declared}\r\n`;
  const body = declared === undefined ? `${sent.toString(16)}\r\n${'x'.repeat(sent)}\r\n` : 'x'.repeat(sent);
  await new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(`POST ${path} HTTP/1.1\r\nHost: worker.test\r\nContent-Type: text/xml\r\n${headers}${length}\r\n${body}`);
      setTimeout(() => { socket.destroy(); resolve(); }, 100);
    });
    socket.on('error', resolve);
  });
}

test('a client that goes away mid-body is a client error, logged as one, on any path', async () => {
  const w = startWorker({ captureLogs: true });
  const url = await w.ready;
  try {
    await abandon(url, `/wechat?${plainQuery()}`, { declared: 1000 });
    await abandon(url, `/wechat?${plainQuery()}`, { declared: undefined });
    await abandon(url, '/api/media?type=image', { declared: 5000, headers: `Authorization: Bearer ${ADMIN_TOKEN}\r\n` });
    await abandon(url, '/no-such-path', { declared: 1000 });
    await abandon(url, '/api/status', { declared: 1000 });
    await waitFor(() => w.logLines().length >= 5, 'five log lines');
    const lines = w.logLines().map(({ stream, route, status, outcome }) => [stream, route, status, outcome]);
    const unreadable = 'invalid_request: body: the request body could not be read';
    assert.deepEqual(lines, [
      ['stdout', '/wechat', 400, unreadable],
      ['stdout', '/wechat', 400, unreadable],
      ['stdout', '/api', 400, unreadable],
      ['stdout', 'other', 404, 'not_found'],
      ['stdout', '/api', 401, 'unauthorized'],
    ]);
    assert.ok(!w.logs.some(({ stream }) => stream === 'stderr'), 'nothing at error level');
  } finally {
    await w.dispose();
  }
});

test('a bad or stale signature is refused with 403', async () => {
  const body = fixture('messages/text.xml');
  const wrong = plainQuery().replace(/signature=[0-9a-f]+/, `signature=${'a'.repeat(40)}`);
  assert.equal((await post(mf, wrong, body)).status, 403);
  assert.equal((await post(mf, plainQuery({ timestamp: now() - 3600 }), body)).status, 403);
  assert.equal((await post(mf, plainQuery({ token: 'not-the-token' }), body)).status, 403);
});

test('each bad input gets its exact error, never a 5xx, and the next valid request still works', async () => {
  const w = startWorker({ bindings: { WECHAT_KF_ACCOUNT: 'kf2001@gh_10f6c3c3ac5a' }, captureLogs: true });
  await w.ready;
  const malformed = (reason) => [400, 'malformed_xml', undefined, `malformed_xml: ${reason}`];
  const cases = [
    ['empty.xml', malformed('empty body')],
    ['malformed.xml', malformed('not well-formed XML')],
    ['json_body.json', malformed('text outside the root element')],
    ['missing_msgtype.xml', [400, 'missing_field', 'MsgType', 'missing_field: MsgType']],
    ['missing_fromusername.xml', [400, 'missing_field', 'FromUserName', 'missing_field: FromUserName']],
    ['billion_laughs.xml', malformed('DOCTYPE is not allowed')],
    ['external_entity.xml', malformed('DOCTYPE is not allowed')],
    ['invalid_char_ref.xml', malformed('invalid entity or character reference')],
    ['createtime_non_numeric.xml', [400, 'invalid_field', 'CreateTime', 'invalid_field: CreateTime']],
    ['createtime_overflow.xml', [400, 'invalid_field', 'CreateTime', 'invalid_field: CreateTime']],
    ['msgid_overflow.xml', [400, 'invalid_field', 'MsgId', 'invalid_field: MsgId']],
    ['msgid_non_numeric.xml', [400, 'invalid_field', 'MsgId', 'invalid_field: MsgId']],
    ['non_utf8.xml', malformed('body is not UTF-8')],
  ].map(([f, want]) => [f, plainQuery(), fixture(`bad/${f}`), want]);
  cases.push(['2000-deep', plainQuery(), `<xml>${'<a>'.repeat(2000)}${'</a>'.repeat(2000)}</xml>`, malformed('nesting too deep')]);
  const ts = now();
  const text = fixture('messages/text.xml').toString();
  cases.push(['no signature', `signature=&timestamp=${ts}&nonce=1`, text, [400, 'missing_parameter', 'signature', 'missing_parameter: signature']]);
  for (const sig of ['abc', 'zz'.repeat(20), 'F'.repeat(41)]) {
    cases.push([`signature ${sig}`, `signature=${sig}&timestamp=${ts}&nonce=1`, text, [403, 'invalid_signature', undefined, 'invalid_signature']]);
  }
  const signed = (nonce, timestamp = String(ts)) => `signature=${sign(TOKEN, timestamp, nonce)}&timestamp=${timestamp}&nonce=${encodeURIComponent(nonce)}`;
  cases.push(['nonce with a newline', signed('1\n'), text, [400, 'invalid_parameter', 'nonce', 'invalid_parameter: nonce']]);
  cases.push(['60 KB nonce', signed('1'.repeat(60_000)), text, [400, 'invalid_parameter', 'nonce', 'invalid_parameter: nonce']]);
  cases.push(['timestamp abc', signed('1', 'abc'), text, [400, 'invalid_parameter', 'timestamp', 'invalid_parameter: timestamp']]);
  const decryptFailed = (reason) => [400, 'decrypt_failed', undefined, `decrypt_failed: ${reason}`];
  const safe = safePush(text);
  cases.push(['safe: garbage base64', `timestamp=${ts}&nonce=9&encrypt_type=aes&msg_signature=${sign(TOKEN, String(ts), '9', '%%%')}`,
    '<xml><Encrypt><![CDATA[%%%]]></Encrypt></xml>', decryptFailed('invalid base64')]);
  const enc = field(safe.body, 'Encrypt');
  const cut = enc.slice(0, enc.length - 24);
  cases.push(['safe: truncated', `timestamp=${ts}&nonce=9&encrypt_type=aes&msg_signature=${sign(TOKEN, String(ts), '9', cut)}`,
    `<xml><Encrypt><![CDATA[${cut}]]></Encrypt></xml>`, decryptFailed('ciphertext length is not a multiple of 32')]);
  const other = safePush(text, { appid: 'wx0000000000000000', timestamp: ts });
  cases.push(['safe: wrong appid', other.query, other.body, decryptFailed('appid mismatch')]);
  cases.push(['safe: no Encrypt', `timestamp=${ts}&nonce=9&encrypt_type=aes&msg_signature=${'0'.repeat(40)}`, '<xml><A>1</A></xml>',
    [400, 'missing_field', 'Encrypt', 'missing_field: Encrypt']]);

  try {
    const bodies = new Map();
    for (const [name, query, body, [status, error, fieldName, outcome]] of cases) {
      const res = await post(w, query, body);
      const json = await res.json();
      assert.equal(res.status, status, name);
      assert.equal(json.error, error, name);
      assert.equal(json.field, fieldName, name);
      const raw = JSON.stringify(json);
      assert.ok(!raw.includes('lol') && !raw.includes('passwd') && !raw.includes('1111111111'), `${name} echoes nothing`);
      if (error === 'decrypt_failed') bodies.set(name, raw);
      const ok = await post(w, plainQuery(), fixture('messages/text.xml'));
      assert.equal(ok.status, 200, `valid request after ${name}`);
      await ok.text();
      // The reason is in the log line (and only there).
      await waitFor(() => w.logLines().some((l) => l.outcome === outcome), `${name}: log outcome ${outcome}`);
    }
    assert.equal(new Set(bodies.values()).size, 1, 'every decryption failure answers the same body');
    assert.ok(!w.logLines().some((l) => l.stream === 'stderr'), 'no bad input is logged as a server fault');
  } finally {
    await w.dispose();
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
  // Half-configured outbound API (a secret without the AppID), and a plain-HTTP API base that is
  // not loopback (the AppSecret would cross the network in clear): not ok, names only.
  const half = startWorker({ bindings: { WECHAT_APPID: undefined, WECHAT_ENCODING_AES_KEY: undefined, WECHAT_API_BASE: 'http://api.weixin.qq.com' } });
  try {
    const h3 = await (await half.dispatchFetch(`${BASE}/healthz`)).json();
    assert.equal(h3.ok, false);
    assert.deepEqual(h3.missing, ['WECHAT_APPID']);
    assert.deepEqual(h3.invalid, ['WECHAT_API_BASE']);
    assert.equal(h3.features.outbound_api, false);
  } finally {
    await half.dispose();
  }
});

test('/healthz answered again from the entry is the same answer with its own log line', async () => {
  const w = startWorker({ captureLogs: true });
  try {
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const res = await w.dispatchFetch(`${BASE}/healthz`);
      answers.push([res.status, res.headers.get('content-type'), res.headers.get('cache-control'), await res.text()]);
    }
    assert.deepEqual(answers[1], answers[0]);
    assert.deepEqual(answers[2], answers[0]);
    assert.equal(JSON.parse(answers[0][3]).ok, true);
    const head = await w.dispatchFetch(`${BASE}/healthz`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const until = Date.now() + 3000;
    const lines = () => w.logLines().filter((l) => l.route === '/healthz');
    while (Date.now() < until && lines().length < 4) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(lines().map((l) => `${l.method} ${l.status} ${l.outcome}`), ['GET 200 ok', 'GET 200 ok', 'GET 200 ok', 'HEAD 200 ok']);
  } finally {
    await w.dispose();
  }
});
