// A local mock of the WeChat API: the token endpoints (stable and classic, with WeChat's
// semantics) and the customer-service APIs. Used as miniflare's outboundService in tests and
// benchmarks (one agent, one user waiting: what the tests assert on), and as a real HTTP server
// on 127.0.0.1 for `make dev` with a live-looking account ({@link liveAccount}):
//
//   node tests/support/mock-wechat.mjs [port=8788]
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { week } from './seed.mjs';

export const APPSECRET = 'test-app-secret';

/**
 * What a console shows for a small account in the middle of a working day, as `mockWeChat`'s
 * state: three agents (two online, one of them busy), a short queue, a few open sessions and the
 * last hour's chat records. Times are relative to the moment they are read (getters), so the
 * queue's waits read 40 s, 3 min and 7 min however long `make mock` has been running.
 */
export function liveAccount(clock = () => Date.now()) {
  const ago = (seconds) => Math.floor(clock() / 1000) - seconds;
  const waiting = (openid, seconds) => ({ openid, get latest_time() { return ago(seconds); } });
  const session = (kf_account, openid, seconds) => ({ kf_account, openid, get createtime() { return ago(seconds); } });
  const record = (openid, opercode, text, seconds, worker = '') => ({ openid, opercode, text, worker, get time() { return ago(seconds); } });
  const [xiao, jie, li] = ['kf2001@gh_10f6c3c3ac5a', 'kf2002@gh_10f6c3c3ac5a', 'kf2003@gh_10f6c3c3ac5a'];
  return {
    accounts: [
      { kf_account: xiao, kf_nick: '小客服', kf_id: '2001', kf_headimgurl: '' },
      { kf_account: jie, kf_nick: '阿杰', kf_id: '2002', kf_headimgurl: '' },
      { kf_account: li, kf_nick: '莉莉', kf_id: '2003', kf_headimgurl: '' },
    ],
    online: [
      { kf_account: xiao, status: 1, kf_id: '2001', auto_accept: 3, accepted_case: 1 },
      { kf_account: jie, status: 1, kf_id: '2002', auto_accept: 3, accepted_case: 3 },
    ],
    waitcase: [waiting('oDemoUser4', 420), waiting('oDemoUser5', 180), waiting('oDemoUser6', 40)],
    sessions: [session(xiao, 'oDemoUser1', 900), session(jie, 'oDemoUser2', 1500), session(jie, 'oDemoUser3', 600)],
    records: [
      record('oDemoUser1', 2001, '你好，我想开发票', 960),
      record('oDemoUser1', 1001, '', 900, xiao),
      record('oDemoUser1', 2002, '您好，请把抬头和税号发给我', 880, xiao),
      record('oDemoUser2', 2001, '订单一直没有发货', 1560),
      record('oDemoUser2', 1001, '', 1500, jie),
      record('oDemoUser2', 2002, '我帮您查一下物流', 1440, jie),
      record('oDemoUser3', 2001, '怎么修改收货地址？', 640),
      record('oDemoUser3', 1001, '', 600, jie),
      // The agents' first messages of the week `make dev` seeds (the same hours, the same rows).
      ...week(ago(0)).records,
    ],
  };
}

export function mockWeChat({ appid = 'wx5823bf96d3bd56c7', secret = APPSECRET, latencyMs = 0, expiresIn = 7200, live = false } = {}) {
  const state = {
    requests: [],
    tokenRequests: 0,
    issued: 0,
    current: null, // { token, expiresAt }
    revoked: new Set(),
    overrides: new Map(), // path -> [fn, ...] (each used once) or fn (always)
    online: [
      { kf_account: 'kf2001@gh_10f6c3c3ac5a', status: 1, kf_id: '2001', auto_accept: 2, accepted_case: 1 },
    ],
    /** getkflist; add, update and del change it (so a console can see its own changes). */
    accounts: [
      { kf_account: 'kf2001@gh_10f6c3c3ac5a', kf_nick: '小客服', kf_id: '2001', kf_headimgurl: 'http://mmbiz.qpic.cn/x/0' },
    ],
    /** Every file uploaded (media/upload and uploadheadimg): { path, type, kf_account, field, filename, contentType, bytes }. */
    uploads: [],
    /** getwaitcase; kfsession/create takes the user out of it. */
    waitcase: [{ latest_time: 123456789, openid: 'OPENID' }],
    /** Open sessions, { kf_account, openid, createtime }: getsession(list) read them, create and close change them. */
    sessions: [],
    /** getmsglist's records, { openid, opercode, text, time, worker }, answered by time range and msgid (1-based). */
    records: [],
    latencyMs,
    ...(live ? liveAccount() : {}),
  };

  const json = (obj, status = 200) =>
    new Response(JSON.stringify(obj), { status, headers: { 'content-type': 'application/json; charset=utf-8' } });
  const ok = () => json({ errcode: 0, errmsg: 'ok' });

  function issue() {
    state.issued += 1;
    state.current = { token: `ACCESS_TOKEN_${state.issued}_${'x'.repeat(100)}`, expiresAt: Date.now() + expiresIn * 1000 };
    return state.current;
  }
  const validToken = (t) => !!state.current && t === state.current.token && !state.revoked.has(t) && Date.now() < state.current.expiresAt;

  const routes = {
    'GET /cgi-bin/customservice/getkflist': () => json({ kf_list: state.accounts }),
    'GET /cgi-bin/customservice/getonlinekflist': () => json({ kf_online_list: state.online }),
    'POST /cgi-bin/message/custom/send': ok,
    'POST /cgi-bin/message/custom/typing': ok,
    'POST /customservice/kfaccount/add': (e) => {
      const { kf_account, nickname } = JSON.parse(e.body);
      if (state.accounts.some((a) => a.kf_account === kf_account)) return json({ errcode: 61452, errmsg: 'invalid kf_account' });
      state.accounts.push({ kf_account, kf_nick: nickname, kf_id: String(2000 + state.accounts.length + 1), kf_headimgurl: '' });
      return ok();
    },
    'POST /customservice/kfaccount/update': (e) => {
      const { kf_account, nickname } = JSON.parse(e.body);
      const a = state.accounts.find((x) => x.kf_account === kf_account);
      if (!a) return json({ errcode: 61452, errmsg: 'invalid kf_account' });
      a.kf_nick = nickname;
      return ok();
    },
    'POST /customservice/kfaccount/del': (e) => {
      const { kf_account } = JSON.parse(e.body);
      const before = state.accounts.length;
      state.accounts = state.accounts.filter((a) => a.kf_account !== kf_account);
      return state.accounts.length < before ? ok() : json({ errcode: 61452, errmsg: 'invalid kf_account' });
    },
    'POST /cgi-bin/media/upload': (e) => {
      const file = e.file;
      if (!file) return json({ errcode: 41005, errmsg: 'media data missing' });
      state.uploads.push({ path: e.path, type: e.query.type, ...file });
      return json({ type: e.query.type, media_id: `MEDIA_ID_${state.uploads.length}`, created_at: Math.floor(Date.now() / 1000) });
    },
    'POST /customservice/kfaccount/uploadheadimg': (e) => {
      const file = e.file;
      if (!file) return json({ errcode: 41005, errmsg: 'media data missing' });
      const a = state.accounts.find((x) => x.kf_account === e.query.kf_account);
      if (!a) return json({ errcode: 61452, errmsg: 'invalid kf_account' });
      state.uploads.push({ path: e.path, kf_account: e.query.kf_account, ...file });
      // WeChat hands out http:// URLs on mmbiz.qpic.cn.
      a.kf_headimgurl = `http://mmbiz.qpic.cn/mmbiz_jpg/headimg${state.uploads.length}/0`;
      return ok();
    },
    'POST /customservice/kfaccount/inviteworker': (e) => {
      const { kf_account, invite_wx } = JSON.parse(e.body);
      const a = state.accounts.find((x) => x.kf_account === kf_account);
      if (a) Object.assign(a, { invite_wx, invite_expire_time: Math.floor(Date.now() / 1000) + 7 * 86400, invite_status: 'waiting' });
      return ok();
    },
    'POST /customservice/kfsession/create': (e) => {
      const { kf_account, openid } = JSON.parse(e.body);
      if (state.sessions.some((x) => x.openid === openid)) return json({ errcode: 65414, errmsg: 'user is being served by another kf' });
      state.waitcase = state.waitcase.filter((w) => w.openid !== openid);
      state.sessions.push({ kf_account, openid, createtime: Math.floor(Date.now() / 1000) });
      return ok();
    },
    'POST /customservice/kfsession/close': (e) => {
      const { kf_account, openid } = JSON.parse(e.body);
      const before = state.sessions.length;
      state.sessions = state.sessions.filter((x) => !(x.openid === openid && x.kf_account === kf_account));
      return state.sessions.length < before ? ok() : json({ errcode: 65413, errmsg: 'no session for this user' });
    },
    'GET /customservice/kfsession/getsession': (e) => {
      const found = state.sessions.find((x) => x.openid === e.query.openid);
      return json({ errcode: 0, errmsg: 'ok', kf_account: found?.kf_account ?? '', createtime: found?.createtime ?? 0 });
    },
    'GET /customservice/kfsession/getsessionlist': (e) => json({
      sessionlist: state.sessions.filter((x) => x.kf_account === e.query.kf_account).map(({ createtime, openid }) => ({ createtime, openid })),
    }),
    'GET /customservice/kfsession/getwaitcase': () => json({ count: state.waitcase.length, waitcaselist: state.waitcase }),
    'POST /customservice/msgrecord/getmsglist': (e) => {
      const { starttime, endtime, msgid, number } = JSON.parse(e.body);
      const inRange = state.records.filter((r) => r.time >= starttime && r.time <= endtime);
      const page = inRange.slice(msgid - 1, msgid - 1 + number);
      return json({ recordlist: page, number: page.length, msgid: msgid + page.length });
    },
  };

  async function handler(request) {
    const url = new URL(request.url);
    const multipart = (request.headers.get('content-type') ?? '').startsWith('multipart/form-data');
    let body = '';
    let file;
    if (multipart) {
      // WeChat's upload APIs: one file part (the field name is checked by the route: `media`).
      const form = await request.formData();
      for (const [field, value] of form) {
        if (typeof value !== 'string') {
          file = { field, filename: value.name, contentType: value.type, bytes: new Uint8Array(await value.arrayBuffer()) };
          break;
        }
      }
      if (file && file.field !== 'media') file = undefined;
    } else if (request.method !== 'GET') {
      body = await request.text();
    }
    const entry = { method: request.method, path: url.pathname, query: Object.fromEntries(url.searchParams), body, file, at: Date.now() };
    state.requests.push(entry);
    if (state.latencyMs) await new Promise((r) => setTimeout(r, state.latencyMs));

    const override = state.overrides.get(url.pathname);
    if (override) {
      const fn = Array.isArray(override) ? override.shift() : override;
      if (Array.isArray(override) && override.length === 0) state.overrides.delete(url.pathname);
      if (fn) {
        const res = await fn(entry, state);
        if (res) return res;
      }
    }

    if (url.pathname === '/cgi-bin/stable_token' && request.method === 'POST') {
      state.tokenRequests += 1;
      let p;
      try { p = JSON.parse(body); } catch { return json({ errcode: 47001, errmsg: 'data format error' }); }
      if (p.appid !== appid) return json({ errcode: 40013, errmsg: 'invalid appid' });
      if (p.secret !== secret) return json({ errcode: 40125, errmsg: 'invalid appsecret' });
      const t = p.force_refresh || !state.current || Date.now() >= state.current.expiresAt ? issue() : state.current;
      return json({ access_token: t.token, expires_in: Math.floor((t.expiresAt - Date.now()) / 1000) });
    }
    if (url.pathname === '/cgi-bin/token' && request.method === 'GET') {
      state.tokenRequests += 1;
      if (url.searchParams.get('appid') !== appid) return json({ errcode: 40013, errmsg: 'invalid appid' });
      if (url.searchParams.get('secret') !== secret) return json({ errcode: 40125, errmsg: 'invalid appsecret' });
      const t = issue();
      return json({ access_token: t.token, expires_in: expiresIn });
    }
    const route = routes[`${request.method} ${url.pathname}`];
    if (!route) return json({ errcode: 404, errmsg: `mock has no ${request.method} ${url.pathname}` }, 404);
    if (!validToken(url.searchParams.get('access_token'))) return json({ errcode: 40001, errmsg: 'invalid credential, access_token is invalid or not latest' });
    if (request.method === 'POST' && body && !multipart) {
      try { JSON.parse(body); } catch { return json({ errcode: 47001, errmsg: 'data format error' }); }
    }
    return route(entry);
  }

  return {
    handler,
    state,
    /** Calls to the token endpoints so far. */
    tokenRequests: () => state.tokenRequests,
    /** Requests to `path` so far. */
    calls: (path) => state.requests.filter((r) => r.path === path),
    /** Answer the next requests to `path` with `fns` (one each), or always with one function. */
    on(path, ...fns) { state.overrides.set(path, fns.length === 1 && fns[0].always ? fns[0] : fns); },
    always(path, fn) { state.overrides.set(path, fn); },
    /** WeChat invalidates the current token (e.g. another system force-refreshed it). */
    revokeCurrent() { if (state.current) state.revoked.add(state.current.token); },
    reset() { state.requests = []; state.tokenRequests = 0; state.overrides.clear(); },
  };
}

// Run as a program: serve the mock on 127.0.0.1 for `make dev`.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const port = Number(process.argv[2] ?? 8788);
  const mock = mockWeChat({ secret: process.env.WECHAT_APPSECRET ?? 'dev-app-secret', live: true });
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const request = new Request(`http://127.0.0.1${req.url}`, {
      method: req.method, headers: req.headers, body: ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks),
    });
    const r = await mock.handler(request);
    res.writeHead(r.status, Object.fromEntries(r.headers));
    res.end(Buffer.from(await r.arrayBuffer()));
    console.log(`${req.method} ${req.url.replace(/access_token=[^&]+/, 'access_token=…')} -> ${r.status}`);
  });
  // Port 0: any free port; the line names the one taken.
  server.listen(port, '127.0.0.1', () => console.log(`mock WeChat API on http://127.0.0.1:${server.address().port}`));
}
