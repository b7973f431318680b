// The operator console in a real browser: Chromium (Debian's package, driven by playwright-core)
// against the built worker and its static assets in miniflare, the WeChat API mocked. Logs in
// with a wrong then the right token, goes through every page, checks what the mock received,
// saves a screenshot of every page at 375 and 1280 px (artifacts/console/), and fails on any page
// error or console error. Prints the console's gzip size and the overview's time to interactive.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { startWorker, ADMIN_TOKEN, defaultBindings } from '../support/worker.mjs';
import { week, insertRows } from '../support/seed.mjs';
import { mockWeChat } from '../support/mock-wechat.mjs';
import { plainQuery } from '../support/wechat.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const shots = join(root, 'artifacts', 'console');
const KF = 'kf2001@gh_10f6c3c3ac5a';
const XSS_NICK = '<img src=x onerror="window.__xss=1">坏人';
const started = Date.now();

/** Chromium: CHROME_PATH, else Debian's `chromium` on the PATH (scripts/setup.sh installs it). */
function chromePath() {
  if (process.env.CHROME_PATH) {
    if (!existsSync(process.env.CHROME_PATH)) throw new Error(`CHROME_PATH=${process.env.CHROME_PATH} does not exist`);
    return process.env.CHROME_PATH;
  }
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    } catch { /* next */ }
  }
  throw new Error('No Chromium found for the browser test: install Debian\'s "chromium" package (apt-get install chromium; scripts/setup.sh does it as root) or set CHROME_PATH to a Chromium or Chrome binary.');
}

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
/** Accounts kept in the database: the 账号 page and the switcher. */
const ACCOUNTS_KEY = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const LOGIN_LABEL = '令牌（ADMIN_TOKEN 或公众号的运营令牌）';
let mock;
let mf;
let base;
let browser;
let context;
let page;
const problems = []; // page errors and console errors
/**
 * The error answers a step provokes on purpose, `"401 /api/status"`: Chromium logs each failed
 * response as a console error ("Failed to load resource"), and only these are let through, once
 * each.
 */
const expectedFailures = [];
const expectFailure = (status, path) => expectedFailures.push(`${status} ${path}`);
const external = []; // requests that tried to leave the machine
const avatarLoads = [];
let jpeg;
let png;

before(async () => {
  mock = mockWeChat();
  const now = Math.floor(Date.now() / 1000);
  mock.state.accounts.push({ kf_account: 'kf2003@gh_10f6c3c3ac5a', kf_nick: XSS_NICK, kf_id: '2003', kf_headimgurl: '' });
  mock.state.waitcase = [
    { latest_time: now - 8 * 60, openid: 'oUserA' },
    { latest_time: now - 95, openid: 'oUserB' },
  ];
  mock.state.records = [
    { openid: 'oUserA', opercode: 2001, text: '你好，我想开发票', time: now - 3000, worker: '' },
    { openid: 'oUserA', opercode: 1001, text: '', time: now - 2990, worker: KF },
    { openid: 'oUserA', opercode: 2002, text: '您好，请把抬头和税号发给我', time: now - 2950, worker: KF },
    { openid: 'oUserB', opercode: 2001, text: '<script>window.__xss=2</script>在吗', time: now - 1200, worker: '' },
  ];
  // A webhook (never called here) so that rules with alerts can be saved.
  mf = startWorker({ wechat: mock.handler, assets: true, quiet: true, bindings: { ALERT_WEBHOOK_URL: 'http://127.0.0.1:9/hook', ACCOUNTS_KEY }, options: { host: '127.0.0.1', port: 0 } });
  base = String(await mf.ready);
  browser = await chromium.launch({ executablePath: chromePath(), args: ['--lang=zh-CN'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  context.setDefaultTimeout(10_000);
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(base)) return route.continue();
    // Avatars: WeChat's image host, answered here with a real image (the CSP must allow it).
    if (/^https:\/\/[a-z0-9.-]+\.qpic\.cn\//.test(url)) {
      avatarLoads.push(url);
      return route.fulfill({ status: 200, contentType: 'image/png', body: png });
    }
    external.push(url);
    return route.abort();
  });
  // Real image files, made by the browser itself: a JPEG (the avatar) and a PNG (a message).
  const maker = await context.newPage();
  const [j, p] = await maker.evaluate(async () => {
    const c = document.createElement('canvas');
    c.width = 64; c.height = 64;
    const g = c.getContext('2d');
    g.fillStyle = '#07a35a'; g.fillRect(0, 0, 64, 64);
    g.fillStyle = '#fff'; g.fillRect(16, 16, 32, 32);
    const bytes = async (type) => Array.from(new Uint8Array(await (await new Promise((r) => c.toBlob(r, type, 0.9))).arrayBuffer()));
    return [await bytes('image/jpeg'), await bytes('image/png')];
  });
  jpeg = Buffer.from(j);
  png = Buffer.from(p);
  await maker.close();
  page = await context.newPage();
  watch(page);
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await mf?.dispose();
  console.log(`# browser test: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

function watch(p) {
  p.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  p.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const failed = /^Failed to load resource: the server responded with a status of (\d+)/.exec(msg.text());
    const at = failed && expectedFailures.indexOf(`${failed[1]} ${new URL(msg.location().url).pathname}`);
    if (failed && at >= 0) expectedFailures.splice(at, 1);
    else problems.push(`console error: ${msg.text()} (${msg.location().url})`);
  });
}

/** Waits (up to 5 s) until every provoked error answer has been logged by Chromium. */
async function seenAllFailures() {
  for (const until = Date.now() + 5000; expectedFailures.length > 0 && Date.now() < until;) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

const nav = (name) => page.getByRole('navigation', { name: '页面' }).getByRole('link', { name, exact: true });
const ready = (name) => page.locator(`[data-page="${name}"][data-state="ready"]`).waitFor();
async function open(name, label) {
  await nav(label).click();
  await ready(name);
}

/** Every control Chromium computes no accessible name for (its own accessibility tree). */
async function unnamedControls() {
  const cdp = await context.newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  await cdp.detach();
  const roles = new Set(['button', 'textbox', 'combobox', 'checkbox', 'radio', 'spinbutton', 'searchbox', 'link', 'listbox']);
  return nodes.filter((n) => !n.ignored && roles.has(n.role?.value) && !String(n.name?.value ?? '').trim())
    .map((n) => `${n.role.value} without a name`);
}

/** The page at 1280 and 375 px: a screenshot each, no sideways scrolling at 375, every control named. */
async function capture(name) {
  for (const width of [1280, 375]) {
    await page.setViewportSize({ width, height: width === 375 ? 812 : 900 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(shots, `${name}-${width}.png`), fullPage: true });
    if (width === 375) {
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= 375, `${name} scrolls sideways at 375 px (${scroll} px wide)`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(await unnamedControls(), [], `${name}: every control has an accessible name`);
}

const lastBody = (path) => JSON.parse(mock.calls(path).at(-1).body);
const rulesNow = async () => (await mf.dispatchFetch(`${base}api/rules`, { headers: auth })).json();

test('the console is served as static assets with a strict CSP, and the worker keeps its routes', async () => {
  const res = await fetch(`${base}console`, { redirect: 'manual' });
  assert.equal(res.status, 307);
  assert.equal(new URL(res.headers.get('location'), base).pathname, '/console/');
  for (const path of ['console/', 'console/app.js', 'console/style.css']) {
    const r = await fetch(base + path);
    assert.equal(r.status, 200, path);
    const csp = r.headers.get('content-security-policy') ?? '';
    for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", 'img-src \'self\' https://*.qpic.cn', "frame-ancestors 'none'", "require-trusted-types-for 'script'"]) {
      assert.ok(csp.includes(d), `${path}: CSP has ${d}`);
    }
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  }
  const health = await fetch(`${base}healthz`);
  assert.equal(health.status, 200);
  assert.equal((await health.json()).ok, true);
  assert.equal((await fetch(`${base}api/status`)).status, 401, '/api/* reaches the worker');
  assert.equal((await fetch(`${base}_headers`)).status, 404, '_headers is not served');
});

test('login: a wrong token is refused, the right one opens the overview', async () => {
  const res = await page.goto(`${base}console`);
  assert.equal(new URL(page.url()).pathname, '/console/');
  assert.match(res.headers()['content-security-policy'], /default-src 'self'/);
  const input = page.getByLabel(LOGIN_LABEL);
  expectFailure(401, '/api/whoami');
  await input.fill('not-the-token');
  await page.getByRole('button', { name: '登录' }).click();
  await page.locator('#login-error', { hasText: '令牌不正确' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
  await capture('login');
  await input.fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: '登录' }).click();
  await ready('overview');
  assert.ok(!page.url().includes(ADMIN_TOKEN), 'the token is never in the URL');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage');
  const text = await page.locator('[data-page="overview"]').innerText();
  for (const s of ['配置完整', KF, '接待 1 / 2', '2 位用户在排队', 'access_token']) assert.ok(text.includes(s), `overview shows ${s}`);
  await capture('overview');
  // 重试 beside the token's status asks WeChat for a token now.
  const asked = mock.calls('/cgi-bin/stable_token').length;
  await page.getByRole('button', { name: '立即重新获取 access_token' }).click();
  await page.locator('#toast', { hasText: '已重新获取 access_token' }).waitFor();
  assert.equal(mock.calls('/cgi-bin/stable_token').length, asked + 1, 'one token request');
});

test('time to interactive of the overview (fresh tabs, token in the session)', async () => {
  // Five fresh tabs, each in a new context (empty cache), the token already in the session.
  const samples = [];
  for (let i = 0; i < 5; i++) {
    const ctx = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
    await ctx.route('**/*', (route) => (route.request().url().startsWith(base) ? route.continue() : route.fulfill({ status: 200, contentType: 'image/png', body: png })));
    const fresh = await ctx.newPage();
    watch(fresh);
    await fresh.addInitScript((t) => sessionStorage.setItem('wechat-kf-console:token', t), ADMIN_TOKEN);
    await fresh.goto(`${base}console/`);
    await fresh.locator('[data-page="overview"][data-state="ready"]').waitFor();
    samples.push(await fresh.evaluate(() => performance.getEntriesByName('console:overview-ready')[0].startTime));
    await ctx.close();
  }
  samples.sort((a, b) => a - b);
  const files = readdirSync(join(root, 'build/assets/console'));
  let raw = 0;
  let gz = 0;
  for (const f of files) {
    const bytes = readFileSync(join(root, 'build/assets/console', f));
    raw += bytes.length;
    gz += gzipSync(bytes, { level: 9 }).length;
  }
  console.log(`# console assets: ${files.join(', ')}: ${raw} B, ${gz} B gzip (${(gz / 1024).toFixed(1)} KiB)`);
  console.log(`# overview time to interactive: median ${samples[2].toFixed(0)} ms (${samples[0].toFixed(0)}-${samples[4].toFixed(0)} ms over 5 fresh tabs; navigation start to the overview's data rendered)`);
});

test('agents: list (text only), add, rename, invite, upload an avatar, delete', async () => {
  await open('agents', '客服');
  const list = page.getByRole('list', { name: '客服列表' });
  await list.getByRole('heading', { name: '小客服' }).waitFor();
  // A nickname is text, never markup.
  await list.getByRole('heading', { name: XSS_NICK }).waitFor();
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  // The avatar on WeChat's host, asked for over https, is shown.
  const img = list.locator('img.avatar').first();
  await img.waitFor();
  assert.ok(await img.evaluate((el) => el.complete && el.naturalWidth > 0), 'the avatar loaded');
  assert.match(avatarLoads[0], /^https:\/\/mmbiz\.qpic\.cn\/x\/0$/);

  await page.getByLabel('客服账号').fill('kf2002@gh_10f6c3c3ac5a');
  await page.getByLabel('昵称', { exact: true }).fill('新客服');
  await page.getByRole('button', { name: '添加', exact: true }).click();
  await list.getByRole('heading', { name: '新客服' }).waitFor();
  assert.deepEqual(lastBody('/customservice/kfaccount/add'), { kf_account: 'kf2002@gh_10f6c3c3ac5a', nickname: '新客服' });

  const card = () => list.getByRole('listitem').filter({ has: page.getByRole('heading', { name: '新客服' }) });
  await card().getByText('管理 新客服').click();
  await card().getByLabel('新昵称').fill('新客服二号');
  await card().getByRole('button', { name: '保存昵称' }).click();
  await list.getByRole('heading', { name: '新客服二号' }).waitFor();
  assert.deepEqual(lastBody('/customservice/kfaccount/update'), { kf_account: 'kf2002@gh_10f6c3c3ac5a', nickname: '新客服二号' });

  const renamed = list.getByRole('listitem').filter({ has: page.getByRole('heading', { name: '新客服二号' }) });
  await renamed.getByText('管理 新客服二号').click();
  await renamed.getByLabel('邀请绑定的微信号').fill('agent_wx_2');
  await renamed.getByRole('button', { name: '发送邀请' }).click();
  await page.getByRole('status').filter({ hasText: '已邀请 agent_wx_2' }).waitFor();
  assert.deepEqual(lastBody('/customservice/kfaccount/inviteworker'), { kf_account: 'kf2002@gh_10f6c3c3ac5a', invite_wx: 'agent_wx_2' });
  await renamed.getByText('邀请待确认：agent_wx_2').waitFor();
  await renamed.getByText('管理 新客服二号').click();
  await renamed.getByLabel(/头像图片/).setInputFiles({ name: 'avatar.jpg', mimeType: 'image/jpeg', buffer: jpeg });
  await renamed.getByRole('button', { name: '上传头像' }).click();
  await page.getByRole('status').filter({ hasText: '已更新 kf2002@gh_10f6c3c3ac5a 的头像' }).waitFor();
  const upload = mock.state.uploads.at(-1);
  assert.equal(upload.path, '/customservice/kfaccount/uploadheadimg');
  assert.equal(upload.kf_account, 'kf2002@gh_10f6c3c3ac5a');
  assert.deepEqual(Buffer.from(upload.bytes), jpeg, 'the JPEG reached WeChat unchanged');
  await list.getByRole('listitem').filter({ has: page.getByRole('heading', { name: '新客服二号' }) }).locator('img.avatar').waitFor();

  const bad = list.getByRole('listitem').filter({ hasText: 'kf2003@gh_10f6c3c3ac5a' });
  await bad.locator('summary').click();
  page.once('dialog', (d) => d.accept());
  await bad.getByRole('button', { name: '删除客服 kf2003@gh_10f6c3c3ac5a' }).click();
  await list.getByRole('heading', { name: XSS_NICK }).waitFor({ state: 'detached' });
  assert.deepEqual(lastBody('/customservice/kfaccount/del'), { kf_account: 'kf2003@gh_10f6c3c3ac5a' });
  await ready('agents');
  await capture('agents');
});

test('rules: an invalid hour range is shown at its field, then fixed and saved', async () => {
  await open('rules', '规则');
  await page.getByText('当前使用：默认规则').waitFor();
  await page.getByLabel('按营业时间区分（不勾选则全天营业）').check();
  const mon = page.getByLabel('周一', { exact: true });
  await mon.fill('18:00-09:00');
  expectFailure(400, '/api/rules');
  await page.getByRole('button', { name: '添加关键词' }).click();
  await page.getByLabel('第 1 条：关键词').fill('发票\n开票');
  await page.getByLabel('第 1 条：回复').fill('开票请把抬头和税号发给我们。');
  await page.getByRole('button', { name: '保存规则' }).click();
  await page.getByText('没有保存').waitFor();
  assert.equal(await mon.getAttribute('aria-invalid'), 'true');
  const described = await mon.evaluate((el) => el.getAttribute('aria-describedby').split(' ').map((id) => document.getElementById(id)?.textContent).join(' '));
  assert.match(described, /结束时间必须晚于开始时间/);
  assert.equal((await rulesNow()).stored, false, 'nothing stored');
  await capture('rules');

  await mon.fill('09:00-12:00, 13:30-18:00');
  await page.getByLabel('周二', { exact: true }).fill('09:00-18:00');
  await page.getByRole('button', { name: '保存规则' }).click();
  await page.getByText('规则已保存').waitFor();
  assert.equal(await page.getByLabel('周一', { exact: true }).getAttribute('aria-invalid'), null);
  const { stored, rules } = await rulesNow();
  assert.equal(stored, true);
  assert.deepEqual(rules.hours.weekly, { mon: ['09:00-12:00', '13:30-18:00'], tue: ['09:00-18:00'] });
  assert.deepEqual(rules.keywords, [{ match: 'exact', words: ['发票', '开票'], reply: '开票请把抬头和税号发给我们。' }]);
  assert.equal(rules.transfer.mode, 'all');
});

/** README's complete rules document: every field the form has. */
const COMPLETE = {
  timezone: '+08:00',
  welcome: '感谢关注！回复“人工”联系客服。',
  keywords: [
    { match: 'exact', words: ['营业时间', 'hours'], reply: '周一至周五 9:00-18:00' },
    { match: 'contains', words: ['发票'], reply: '开票请访问 https://example.com/invoice' },
  ],
  transfer: { mode: 'on_request', request_words: ['人工', '客服'], remember_secs: 1800, prompt: '回复“人工”联系客服。' },
  hours: {
    weekly: { mon: ['09:00-12:00', '13:30-18:00'], tue: ['09:00-18:00'], wed: ['09:00-18:00'], thu: ['09:00-18:00'], fri: ['09:00-18:00'] },
    closed_dates: ['2026-10-01', '2026-10-02'],
    open_dates: { '2026-09-27': ['09:00-18:00'] },
  },
  closed: { action: 'transfer_and_notify', text: '您的消息已收到，上班后客服会第一时间回复您。', notify_every_secs: 43200 },
  no_agent: { action: 'reply', text: '客服暂时都不在线，请稍候，我们会尽快回复。' },
  alerts: { on: ['waiting', 'queue', 'credentials'], format: 'wecom', queue_threshold: 3, wait_secs: 600, every_secs: 600, include_text: false },
  sessions: { greeting: '您好，我是客服{nickname}，很高兴为您服务。', farewell: '感谢您的咨询，祝您生活愉快！' },
  ledger: { retention_days: 30 },
  stats: { unanswered_after_secs: 300, first_response: true },
};

test('rules: a complete document goes through the form unchanged', async () => {
  const put = await mf.dispatchFetch(`${base}api/rules`, { method: 'PUT', headers: auth, body: JSON.stringify(COMPLETE) });
  assert.equal(put.status, 200, await put.clone().text());
  await page.getByRole('button', { name: '重新加载' }).click();
  await ready('rules');
  assert.equal(await page.getByLabel('周一', { exact: true }).inputValue(), '09:00-12:00, 13:30-18:00');
  await page.getByRole('button', { name: '保存规则' }).click();
  await page.getByText('规则已保存').waitFor();
  const { stored, rules } = await rulesNow();
  assert.equal(stored, true);
  assert.deepEqual(rules, COMPLETE);
  // Back to the defaults (confirmed), as the next steps expect.
  page.once('dialog', (d) => d.accept());
  await page.getByRole('button', { name: '恢复默认规则' }).click();
  await page.getByText('已恢复默认规则').waitFor();
  assert.equal((await rulesNow()).stored, false);
});

test('conversations: take a waiting user, send a text, an uploaded image, a JSON message the API refuses', async () => {
  await open('conversations', '会话');
  const waiting = page.getByRole('list', { name: '排队中的用户' });
  await waiting.getByText('oUserA').waitFor();
  assert.match(await waiting.innerText(), /排队自 .*已等待 8 分钟/);
  await capture('conversations');

  await page.getByRole('button', { name: '接入 oUserA' }).click();
  await page.getByRole('list', { name: '会话列表' }).getByText('oUserA').waitFor();
  assert.deepEqual(lastBody('/customservice/kfsession/create'), { kf_account: KF, openid: 'oUserA' });

  await page.getByRole('list', { name: '会话列表' }).getByRole('button', { name: '给 oUserA 发消息' }).click();
  assert.equal(await page.getByLabel('接收用户 OpenID').inputValue(), 'oUserA');
  await page.getByLabel('内容').fill('您好，请问有什么可以帮您？');
  await page.getByRole('button', { name: '发送', exact: true }).click();
  await page.getByText(`已发送给 oUserA（以 ${KF} 的身份）`).waitFor();
  assert.deepEqual(lastBody('/cgi-bin/message/custom/send'),
    { touser: 'oUserA', msgtype: 'text', text: { content: '您好，请问有什么可以帮您？' }, customservice: { kf_account: KF } });

  await page.getByLabel('图片', { exact: true }).check();
  await page.getByLabel(/^图片（JPG/).setInputFiles({ name: 'tiny.png', mimeType: 'image/png', buffer: png });
  const sends = mock.calls('/cgi-bin/message/custom/send').length;
  await page.getByRole('button', { name: '发送', exact: true }).click();
  await page.locator('.form-status.ok', { hasText: '已发送给 oUserA' }).waitFor();
  assert.equal(mock.calls('/cgi-bin/message/custom/send').length, sends + 1);
  const upload = mock.state.uploads.at(-1);
  assert.equal(upload.path, '/cgi-bin/media/upload');
  assert.equal(upload.type, 'image');
  assert.deepEqual(Buffer.from(upload.bytes), png, 'the PNG reached WeChat unchanged');
  assert.deepEqual(lastBody('/cgi-bin/message/custom/send'),
    { touser: 'oUserA', msgtype: 'image', image: { media_id: `MEDIA_ID_${mock.state.uploads.length}` }, customservice: { kf_account: KF } });

  await page.getByLabel('其他类型（JSON）').check();
  const editor = page.getByLabel('消息 JSON');
  await editor.fill('{"msgtype": "news", "news": {"articles": []}}');
  expectFailure(400, '/api/messages');
  await page.getByRole('button', { name: '发送', exact: true }).click();
  await page.locator('.form-status.error', { hasText: 'news.articles' }).waitFor();
  assert.equal(await editor.getAttribute('aria-invalid'), 'true');
  assert.equal(mock.calls('/cgi-bin/message/custom/send').length, sends + 1, 'refused before WeChat');

  await page.getByRole('button', { name: '关闭与 oUserA 的会话' }).click();
  await page.getByText('这位客服现在没有会话').waitFor();
  assert.deepEqual(lastBody('/customservice/kfsession/close'), { kf_account: KF, openid: 'oUserA' });
});

test("conversations: a user's timeline from the ledger, newest first, as text; a bad OpenID shown at its field", async () => {
  // oUserB writes, then an agent whose account looks like markup takes the session.
  const now = Math.floor(Date.now() / 1000);
  const xml = (inner, at) => `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oUserB]]></FromUserName><CreateTime>${at}</CreateTime>${inner}</xml>`;
  for (const body of [
    xml('<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[我的快递到哪了]]></Content><MsgId>7001</MsgId>', now - 20),
    xml(`<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_create_session]]></Event><KfAccount><![CDATA[${XSS_NICK}]]></KfAccount>`, now - 10),
  ]) {
    const res = await mf.dispatchFetch(`${base}wechat?${plainQuery()}`, { method: 'POST', body });
    assert.equal(res.status, 200);
    await res.text();
  }
  await open('conversations', '会话');
  await page.getByRole('button', { name: '查看 oUserB 的时间线' }).click();
  const timeline = page.getByRole('list', { name: '时间线' });
  await timeline.getByText('客服接入会话').waitFor();
  const rows = await timeline.getByRole('listitem').allInnerTexts();
  assert.equal(rows.length, 2, rows.join('\n'));
  assert.match(rows[0], /客服接入会话 → 已接收 · <img src=x onerror/);
  assert.match(rows[1], /文字消息 → 转给客服/);
  assert.ok(!rows.join('').includes('我的快递到哪了'), 'never message text');
  assert.equal(await page.evaluate(() => window.__xss), undefined);

  expectFailure(400, '/api/ledger');
  await page.getByLabel('用户 OpenID', { exact: true }).last().fill('o x');
  await page.getByRole('button', { name: '查看', exact: true }).click();
  await page.locator('.form-status.error', { hasText: 'OpenID' }).waitFor();
  assert.equal(await page.getByRole('textbox', { name: '用户 OpenID' }).last().getAttribute('aria-invalid'), 'true');
  await capture('conversations-timeline');
});

test('records: the last 24 hours as conversations', async () => {
  await open('records', '聊天记录');
  await page.getByRole('button', { name: '查询' }).click();
  await ready('records');
  const chat = page.getByRole('list', { name: '与 oUserA 的对话' });
  await chat.getByText('你好，我想开发票').waitFor();
  await chat.getByText('您好，请把抬头和税号发给我').waitFor();
  await page.getByText('<script>window.__xss=2</script>在吗').waitFor();
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  const asked = lastBody('/customservice/msgrecord/getmsglist');
  assert.ok(asked.endtime > asked.starttime && asked.endtime - asked.starttime <= 86400, JSON.stringify(asked));
  assert.deepEqual([asked.msgid, asked.number], [1, 10000]);
  await capture('records');
});

test('数据: a seeded week as charts with their tables, the figures the API answered, a CSV export', async () => {
  await insertRows(await mf.getD1Database('WECHAT_DB'), week(Math.floor(Date.now() / 1000), { appid: defaultBindings.WECHAT_APPID }).rows);
  // The page's own report (7 days by day, the default): what it shows must be what it got.
  const answered = page.waitForResponse((r) => r.url().includes('/api/stats?'));
  await open('stats', '数据');
  const report = await (await answered).json();
  assert.equal(report.bucket, 'day');
  assert.equal(report.buckets.length, 7);
  assert.ok(report.totals.messages > 500 && report.totals.sessions > 100, JSON.stringify(report.totals).slice(0, 300));
  const kpi = (name) => page.locator('.kpi', { has: page.locator('dt', { hasText: new RegExp(`^${name}$`) }) }).locator('dd').innerText();
  assert.equal(await kpi('用户消息'), String(report.totals.messages));
  assert.equal(await kpi('用户数'), String(report.totals.users));
  assert.equal(await kpi('会话数'), String(report.totals.sessions));
  assert.equal(await kpi('未及时接待'), String(report.totals.unanswered));
  assert.match(await kpi('首次响应（中位数）'), /^\d+ (秒|分 \d+ 秒)$/);
  assert.equal(await page.locator('.chart canvas').count(), 4);
  // Under each chart, its numbers: a row per day, the same as the API's.
  const table = page.getByRole('table', { name: '消息与用户' });
  const rows = await table.locator('tbody tr').allInnerTexts();
  assert.equal(rows.length, 7);
  const cells = rows.map((r) => r.split('\t'));
  assert.deepEqual(cells.map((c) => c.slice(1).map(Number)), report.buckets.map((b) => [b.messages, b.users, b.users_transferred]));
  const agents = await page.getByRole('table', { name: '各客服（合计）' }).locator('tbody tr').allInnerTexts();
  assert.deepEqual(agents.map((r) => r.split('\t')[0]).sort(), Object.keys(report.totals.agents).sort());
  await capture('stats');
  // 今天, by hour.
  const today = page.waitForResponse((r) => r.url().includes('/api/stats?') && r.url().includes('bucket=hour'));
  await page.getByRole('button', { name: '今天' }).click();
  const hourly = await (await today).json();
  await ready('stats');
  assert.equal(await page.getByRole('button', { name: '今天' }).getAttribute('aria-pressed'), 'true');
  assert.equal(await page.getByRole('table', { name: '消息与用户' }).locator('tbody tr').count(), hourly.buckets.length);
  assert.equal(await kpi('用户消息'), String(hourly.totals.messages));
  await capture('stats-today');
  // A range without any data: counts are 0, durations "—" (never 0 or NaN).
  await page.getByLabel('开始日期').fill('2025-01-01');
  await page.getByLabel('结束日期').fill('2025-01-02');
  await page.getByLabel('粒度').selectOption('day');
  const empty = page.waitForResponse((r) => r.url().includes('/api/stats?') && r.url().includes('bucket=day'));
  await page.getByRole('button', { name: '查询' }).click();
  assert.equal((await (await empty).json()).totals.pushes, 0);
  await ready('stats');
  assert.equal(await kpi('用户消息'), '0');
  assert.equal(await kpi('排队等待（中位数）'), '—');
  assert.equal(await kpi('非工作时间消息'), '—');
  const waits = await page.getByRole('table', { name: '排队等待' }).locator('tbody tr').first().innerText();
  assert.deepEqual(waits.split('\t').slice(1), ['—', '—', '—']);
  assert.ok(!(await page.locator('main').innerText()).includes('NaN'));
  await page.getByRole('button', { name: '今天' }).click();
  await ready('stats');
  // The CSV export: what Excel opens.
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: '导出 CSV' }).click();
  const file = readFileSync(await (await download).path());
  assert.deepEqual([...file.subarray(0, 3)], [0xef, 0xbb, 0xbf]);
  const lines = file.subarray(3).toString('utf8').split('\r\n');
  assert.match(lines[0], /^时段开始,客服账号,推送数,用户消息数,/);
  assert.ok(lines.some((l) => l.startsWith(`合计,全部,${hourly.totals.pushes},`)), lines.slice(-4).join('\n'));
});

test('a 401 on any call goes back to the login', async () => {
  await page.evaluate(() => sessionStorage.setItem('wechat-kf-console:token', 'changed-elsewhere'));
  for (const path of ['/api/status', '/api/kf/online', '/api/kf/waitcase']) expectFailure(401, path);
  await nav('概览').click();
  await page.locator('#login-error', { hasText: '令牌不正确' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  // The overview's three calls all answer 401; the login shows after the first, and Chromium's
  // "Failed to load resource" lines for the other two may arrive later.
  await seenAllFailures();
});

test('accounts: the owner adds an account and issues an operator token; the operator sees that account alone', async () => {
  const A = 'wx00000000000000a1';
  // The owner logs in again (the step before left the login showing).
  await page.getByLabel(LOGIN_LABEL).fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: '登录' }).click();
  await ready('overview');
  assert.equal(await page.locator('#account-box').isHidden(), true, 'no switcher while there are no accounts');
  await open('accounts', '账号');
  const add = page.getByRole('form', { name: '添加公众号' });
  await add.getByLabel('AppID').fill(A);
  await add.getByLabel('名称').fill('<b>服务号</b> A');
  await add.getByLabel('令牌（Token）').fill('ab');
  await add.getByLabel('AppSecret（可选）').fill('0f1e2d3c4b5a69788796a5b4c3d2e1f0');
  expectFailure(400, '/api/accounts');
  await add.getByRole('button', { name: '添加账号' }).click();
  await add.locator('.field-error', { hasText: '必须是 3 到 32 个英文字母或数字' }).waitFor();
  assert.equal(await add.getByLabel('令牌（Token）').getAttribute('aria-invalid'), 'true');
  await add.getByLabel('令牌（Token）').fill('Tok3nA1');
  await add.getByRole('button', { name: '添加账号' }).click();
  const done = page.locator('.add-account .issued');
  await done.waitFor();
  assert.equal(await done.getByRole('textbox', { name: '服务器地址（URL）' }).inputValue(), `${base}wechat/${A}`);
  assert.equal(await done.getByRole('textbox', { name: '令牌（Token）' }).inputValue(), 'Tok3nA1', 'the Token to paste, right after it was typed');
  const item = page.locator(`li[data-appid="${A}"]`);
  await item.getByRole('heading', { name: '<b>服务号</b> A' }).waitFor();
  assert.ok(!(await item.innerText()).includes('Tok3nA1'), 'the Token is never shown again');
  // An operator token, shown once.
  await item.getByText('运营令牌', { exact: true }).click();
  await item.getByLabel('令牌名称（谁在用）').fill('小王');
  await item.getByRole('button', { name: '签发令牌' }).click();
  const issued = item.locator('.issued');
  await issued.waitFor();
  const operatorToken = await issued.getByRole('textbox', { name: '运营令牌' }).inputValue();
  assert.match(operatorToken, /^kfo_[0-9a-f]{16}_/);
  await item.getByRole('list', { name: '<b>服务号</b> A 的运营令牌' }).getByText('小王', { exact: true }).waitFor();
  await capture('accounts');
  // The switcher lists it; the rules page then acts on that account.
  await page.locator('#account-box').waitFor();
  const rulesOfA = page.waitForRequest((r) => r.url().endsWith(`/api/accounts/${A}/rules`));
  await page.getByRole('combobox', { name: '公众号', exact: true }).selectOption(A);
  await open('rules', '规则');
  await rulesOfA;
  await page.getByRole('combobox', { name: '公众号', exact: true }).selectOption('');
  await page.getByRole('button', { name: '退出' }).click();

  // The operator: that account alone, no switcher, no 账号. WeChat's API is asked with the
  // account's AppID, which the mock does not know (40013): the overview shows that.
  expectFailure(502, `/api/accounts/${A}/kf/online`);
  expectFailure(502, `/api/accounts/${A}/kf/waitcase`);
  await page.getByLabel(LOGIN_LABEL).fill(operatorToken);
  await page.getByRole('button', { name: '登录' }).click();
  await ready('rules'); // where the owner left off: the operator's own account's rules
  await open('overview', '概览');
  await page.locator('#account-name', { hasText: '公众号：<b>服务号</b> A' }).waitFor();
  assert.equal(await page.locator('#account-box').isHidden(), true);
  assert.equal(await page.locator('#nav-accounts').isHidden(), true);
  await page.locator('[data-page="overview"]', { hasText: '40013' }).first().waitFor();
  await page.locator('[data-page="overview"]', { hasText: `/wechat/${A}` }).first().waitFor(); // its own settings
  await capture('operator');
  // 账号 is not the operator's: the overview again (and its two answers again).
  expectFailure(502, `/api/accounts/${A}/kf/online`);
  expectFailure(502, `/api/accounts/${A}/kf/waitcase`);
  await page.evaluate(() => { location.hash = '#accounts'; });
  await ready('overview');
  await seenAllFailures();
  await page.getByRole('button', { name: '退出' }).click();
});

test('no page error, no console error, nothing fetched from outside', () => {
  assert.deepEqual(problems, []);
  assert.deepEqual(expectedFailures, [], 'every provoked error answer was seen');
  assert.deepEqual(external, []);
});
