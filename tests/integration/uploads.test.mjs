// Uploads and the status report against the built wasm in workerd, WeChat mocked: the multipart
// body WeChat receives, 413 and 415, the retry after a rejected token, and GET /api/status.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, ADMIN_TOKEN, startWithMock } from '../support/worker.mjs';

const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };
/// A 1×1 PNG.
const PNG = Uint8Array.from(Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==', 'base64'));
/// A JPEG's first bytes, then filler: the worker judges the format by the start.
const jpeg = (size) => {
  const bytes = new Uint8Array(size);
  bytes.set([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46]);
  for (let i = 10; i < size; i++) bytes[i] = (i * 31) & 0xff;
  return bytes;
};

let mock;
let mf;
before(async () => ({ mock, mf } = await startWithMock()));
after(async () => { await mf?.dispose(); });
beforeEach(() => { mock.reset(); mock.state.uploads = []; });

const call = (path, init) => mf.dispatchFetch(`${BASE}${path}`, init);
/// A form encoded as a browser sends it (miniflare's dispatchFetch does not take Node's FormData).
async function multipart(form) {
  const encoded = new Request('http://form.test/', { method: 'POST', body: form });
  return { type: encoded.headers.get('content-type'), body: new Uint8Array(await encoded.arrayBuffer()) };
}

test('an image sent as the body reaches WeChat as field media of a multipart body, bytes identical', async () => {
  const res = await call('/api/media?type=image', { method: 'POST', headers: { ...bearer, 'content-type': 'image/png' }, body: PNG });
  assert.equal(res.status, 200);
  const answer = await res.json();
  assert.equal(answer.type, 'image');
  assert.equal(answer.media_id, 'MEDIA_ID_1');
  const [sent] = mock.calls('/cgi-bin/media/upload');
  assert.equal(sent.query.type, 'image');
  assert.equal(sent.query.access_token, mock.state.current.token);
  const [file] = mock.state.uploads;
  assert.deepEqual([file.field, file.filename, file.contentType], ['media', 'media.png', 'image/png']);
  assert.deepEqual(file.bytes, PNG);
});

test('a multipart upload from a browser form is unwrapped and sent on, bytes identical', async () => {
  const bytes = jpeg(200 * 1024);
  const form = new FormData();
  form.append('note', 'ignored');
  form.append('media', new Blob([bytes], { type: 'image/jpeg' }), '头像 "1".jpg');
  const encoded = await multipart(form);
  const res = await call('/api/media?type=image', { method: 'POST', headers: { ...bearer, 'content-type': encoded.type }, body: encoded.body });
  assert.equal(res.status, 200, await res.clone().text());
  const [file] = mock.state.uploads;
  assert.deepEqual([file.field, file.filename, file.contentType], ['media', 'media.jpg', 'image/jpeg']);
  assert.deepEqual(file.bytes, bytes);

  const empty = new FormData();
  empty.append('file', new Blob([bytes]), 'x.jpg');
  const other = await multipart(empty);
  const wrongField = await call('/api/media?type=image', { method: 'POST', headers: { ...bearer, 'content-type': other.type }, body: other.body });
  assert.equal(wrongField.status, 400);
  assert.deepEqual(await wrongField.json(), { error: 'invalid_request', field: 'media', message: 'the multipart body has no file in field media' });
  const garbled = await call('/api/media?type=image', { method: 'POST', headers: { ...bearer, 'content-type': 'multipart/form-data; boundary=zz' }, body: 'not a multipart body' });
  assert.equal(garbled.status, 400);
  assert.deepEqual(await garbled.json(), { error: 'invalid_request', field: 'media', message: 'the multipart body could not be parsed' });
  assert.equal(mock.state.uploads.length, 1);
});

test('an avatar goes to uploadheadimg for the account in the path', async () => {
  const bytes = jpeg(4096);
  const res = await call('/api/kf/accounts/kf2001%40gh_10f6c3c3ac5a/avatar', { method: 'PUT', headers: { ...bearer, 'content-type': 'image/jpeg' }, body: bytes });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { errcode: 0, errmsg: 'ok' });
  const [file] = mock.state.uploads;
  assert.equal(file.kf_account, 'kf2001@gh_10f6c3c3ac5a');
  assert.deepEqual([file.field, file.filename], ['media', 'media.jpg']);
  assert.deepEqual(file.bytes, bytes);
});

test('over the limit is 413 naming it, a wrong type 415 naming the accepted ones; nothing reaches WeChat', async () => {
  const voice = new Uint8Array(2 * 1024 * 1024 + 1);
  voice.set(new TextEncoder().encode('#!AMR\n'));
  const cases = [
    ['/api/media?type=voice', 'POST', 'audio/amr', voice, 413, { error: 'payload_too_large', field: 'media', message: 'voice files may be at most 2 MB (2097152 bytes)', limit_bytes: 2097152 }],
    // Past the largest limit the body is refused before it is read; still the kind's limit.
    ['/api/media?type=video', 'POST', 'video/mp4', new Uint8Array(11 * 1024 * 1024), 413, { error: 'payload_too_large', field: 'media', message: 'video files may be at most 10 MB (10485760 bytes)', limit_bytes: 10485760 }],
    ['/api/media?type=thumb', 'POST', 'image/png', PNG, 415, { error: 'unsupported_media_type', field: 'media', message: 'thumb files must be one of image/jpeg (judged by their content)', accepted: ['image/jpeg'] }],
    ['/api/media?type=image', 'POST', 'image/jpeg', new TextEncoder().encode('<svg onload="alert(1)"/>'), 415, { error: 'unsupported_media_type', field: 'media', message: 'image files must be one of image/jpeg, image/png, image/gif, image/bmp (judged by their content)', accepted: ['image/jpeg', 'image/png', 'image/gif', 'image/bmp'] }],
    ['/api/kf/accounts/kf2001%40gh_10f6c3c3ac5a/avatar', 'PUT', 'image/png', PNG, 415, { error: 'unsupported_media_type', field: 'media', message: 'avatar files must be one of image/jpeg (judged by their content)', accepted: ['image/jpeg'] }],
    ['/api/media?type=document', 'POST', 'image/png', PNG, 400, { error: 'invalid_request', field: 'type', message: 'must be image, voice, video or thumb' }],
  ];
  for (const [path, method, type, body, status, expected] of cases) {
    const res = await call(path, { method, headers: { ...bearer, 'content-type': type }, body });
    assert.equal(res.status, status, path);
    assert.deepEqual(await res.json(), expected, path);
  }
  // Every other admin route keeps its 64 KiB limit.
  const big = await call('/api/messages', { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: 'x'.repeat(65 * 1024) });
  assert.equal(big.status, 413);
  // Without the admin token the body is not even read.
  const anonymous = await call('/api/media?type=image', { method: 'POST', headers: { 'content-type': 'image/png' }, body: PNG });
  assert.equal(anonymous.status, 401);
  assert.equal(mock.state.uploads.length, 0);
  assert.equal(mock.calls('/cgi-bin/media/upload').length, 0);
});

test('an upload far over its limit gets its 413 over a real connection, never a reset', async () => {
  // Over TCP, as a browser or curl sends it (dispatchFetch hides resets), 1.5 to 14 MiB over
  // the image limit; before bodies were drained past 1 MiB over, about one in four was reset.
  const url = await mf.ready;
  const outcomes = [];
  for (const mib of [11.5, 16, 24]) {
    const declared = new Uint8Array(mib * 1024 * 1024);
    for (let i = 0; i < 10; i++) {
      try {
        const res = await fetch(new URL('/api/media?type=image', url), { method: 'POST', headers: { ...bearer, 'content-type': 'image/png' }, body: declared });
        outcomes.push(`${res.status} ${(await res.json()).error}`);
      } catch (e) {
        outcomes.push(`reset: ${e.cause?.code ?? e.message}`);
      }
    }
  }
  assert.deepEqual(outcomes, Array(30).fill('413 payload_too_large'));
  // Streamed without a Content-Length: read up to the limit, the rest drained, then the 413.
  const chunk = new Uint8Array(1024 * 1024);
  const stream = new ReadableStream({ start(c) { for (let i = 0; i < 16; i++) c.enqueue(chunk); c.close(); } });
  const res = await fetch(new URL('/api/media?type=voice', url), { method: 'POST', headers: { ...bearer, 'content-type': 'audio/mpeg' }, body: stream, duplex: 'half' });
  assert.equal(res.status, 413);
  assert.equal((await res.json()).message, 'voice files may be at most 2 MB (2097152 bytes)');
  assert.equal(mock.state.uploads.length, 0);
});

test('files are told from text that starts with the same bytes', async () => {
  const html = new TextEncoder().encode('<html><body><script>alert(1)</script></body></html>');
  const after = (head) => Uint8Array.from([...head, ...html]);
  // A 1×1 24-bit bitmap (BITMAPINFOHEADER) and two frames of MPEG 1 layer III at 128 kbit/s.
  const bmp = new Uint8Array(58);
  const view = new DataView(bmp.buffer);
  bmp.set([0x42, 0x4d]);
  [[2, 58], [10, 54], [14, 40], [18, 1], [22, 1]].forEach(([at, v]) => view.setUint32(at, v, true));
  [[26, 1], [28, 24]].forEach(([at, v]) => view.setUint16(at, v, true));
  const mp3 = new Uint8Array(2 * 417);
  mp3.set([0xff, 0xfb, 0x90, 0x64]);
  mp3.set([0xff, 0xfb, 0x90, 0x64], 417);
  const upload = async (kind, type, body) => {
    const res = await call(`/api/media?type=${kind}`, { method: 'POST', headers: { ...bearer, 'content-type': type }, body });
    return [res.status, (await res.json()).error ?? 'ok'];
  };
  assert.deepEqual(await upload('image', 'image/bmp', after([0x42, 0x4d])), [415, 'unsupported_media_type']);
  assert.deepEqual(await upload('voice', 'audio/mpeg', after([0xff, 0xfb])), [415, 'unsupported_media_type']);
  assert.deepEqual(await upload('voice', 'audio/mpeg', after([0xff, 0xfb, 0x90, 0x64])), [415, 'unsupported_media_type']);
  assert.equal(mock.state.uploads.length, 0);
  assert.deepEqual(await upload('image', 'image/bmp', bmp), [200, 'ok']);
  assert.deepEqual(await upload('voice', 'audio/mpeg', mp3), [200, 'ok']);
  assert.deepEqual(mock.state.uploads.map((u) => u.filename), ['media.bmp', 'media.mp3']);
});

test('a token WeChat rejects is refreshed once and the same bytes are uploaded again', async () => {
  assert.equal((await call('/api/kf/accounts', { headers: bearer })).status, 200);
  mock.reset();
  // Another system force-refreshed: WeChat's current token is a new one.
  mock.revokeCurrent();
  mock.state.current = null;
  const bytes = jpeg(300 * 1024);
  const res = await call('/api/media?type=image', { method: 'POST', headers: { ...bearer, 'content-type': 'image/jpeg' }, body: bytes });
  assert.equal(res.status, 200);
  const attempts = mock.calls('/cgi-bin/media/upload');
  assert.equal(attempts.length, 2, 'one upload, one retry');
  assert.notEqual(attempts[0].query.access_token, attempts[1].query.access_token);
  assert.equal(mock.tokenRequests(), 1);
  assert.equal(mock.state.uploads.length, 1, 'the mock stores what it accepted');
  assert.deepEqual(attempts[0].file.bytes, bytes);
  assert.deepEqual(attempts[1].file.bytes, bytes);
});

test('GET /api/status reports the token, the online list and the rules, never the token itself', async () => {
  const before = await (await call('/api/status', { headers: bearer })).json();
  assert.deepEqual(Object.keys(before), ['token', 'online', 'rules', 'now']);
  assert.equal((await call('/api/kf/accounts', { headers: bearer })).status, 200);
  const res = await call('/api/status', { headers: bearer });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.ok(!text.includes(mock.state.current.token), 'never the token');
  const status = JSON.parse(text);
  assert.equal(status.token.cached, true);
  assert.ok(status.token.expires_in > 7000 && status.token.expires_in <= 7200, text);
  assert.ok(Math.abs(status.token.fetched_at - Date.now() / 1000) < 60, text);
  assert.deepEqual(status.rules, { stored: false, age_secs: status.rules.age_secs });
  assert.equal((await call('/api/status', { method: 'POST', headers: bearer })).status, 405);
});
