// 概览: what is configured (GET /healthz, or a database account's settings), the token's state
// (GET /api/status), who is online with what load (GET /api/kf/online), and the queue
// (GET /api/kf/waitcase).
import { api, account, seg } from '../lib/api.js';
import { h, dateTime, duration, busy } from '../lib/dom.js';
import { pageHead, card, fill, onlineLabel, load } from '../lib/ui.js';

export const title = '概览';

const FEATURES = [
  ['callback', '消息回调（/wechat）'],
  ['safe_mode', '安全模式加解密'],
  ['outbound_api', '微信接口（发客服消息等）'],
  ['admin_api', '管理 API'],
  ['kf_targeting', '指定接待客服'],
  ['alerts', '告警 Webhook'],
];

const yesNo = (v) => h('span', { class: v ? 'badge ok' : 'badge off' }, v ? '已开启' : '未开启');

/** `<dl>` from [term, description] pairs. */
const list = (pairs) => h('dl', { class: 'pairs' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));

function health(d) {
  const f = d.features ?? {};
  return [
    h('p', {}, d.ok ? h('span', { class: 'badge ok' }, '配置完整') : h('span', { class: 'badge warn' }, '配置有问题')),
    list([
      ...FEATURES.map(([key, label]) => [label, yesNo(f[key])]),
      ['客服路由', f.kf_routing === 'online' ? '在线优先（online）' : '固定（static）'],
      ['access_token 接口', f.token_endpoint === 'classic' ? '普通（classic）' : '稳定版（stable）'],
    ]),
    d.missing?.length ? h('p', { class: 'error' }, `缺少变量：${d.missing.join('、')}`) : null,
    d.invalid?.length ? h('p', { class: 'error' }, `变量无效：${d.invalid.join('、')}`) : null,
  ];
}

/** A database account's settings (GET /api/accounts/{appid}): never its secrets. */
function accountSettings(a) {
  return [
    h('p', {}, h('strong', {}, a.name), ' ', h('code', {}, a.appid)),
    list([
      ['回调地址', h('code', {}, `${location.origin}${a.callback_path}`)],
      ['安全模式加解密', yesNo(a.aes_key_set)],
      ['微信接口（AppSecret）', yesNo(a.secret_set)],
      ['指定接待客服', a.kf_accounts.length ? a.kf_accounts.join('、') : yesNo(false)],
      ['客服路由', a.kf_routing === 'online' ? '在线优先（online）' : '固定（static）'],
      ['access_token 接口', a.token_endpoint === 'classic' ? '普通（classic）' : '稳定版（stable）'],
    ]),
  ];
}

/**
 * "重试": asks WeChat for a token now (POST /api/token/refresh), whatever the wait after a
 * failure: for an operator who just fixed the IP whitelist or the secret. `again` redraws the
 * card with the new status.
 */
function retryButton(ctx, again) {
  const button = h('button', { type: 'button', class: 'quiet', 'aria-label': '立即重新获取 access_token' }, '重试');
  button.addEventListener('click', () => busy(button, async () => {
    try {
      await api('/api/token/refresh', { method: 'POST' });
      ctx.toast('已重新获取 access_token');
    } catch (err) {
      ctx.toast(`重新获取失败：${err.message}`, 'error');
    }
    if (ctx.alive()) again();
  }));
  return button;
}

function status(d, ctx, again) {
  const t = d.token ?? {};
  const tokenState = t.retry_after
    ? h('span', { class: 'badge warn' }, `获取失败，${t.retry_after} 秒后重试`)
    : t.cached ? h('span', { class: 'badge ok' }, '有效') : h('span', { class: 'badge off' }, '未缓存（下次调用时获取）');
  return list([
    ['access_token', [tokenState, ' ', retryButton(ctx, again)]],
    ['剩余有效期', t.expires_in == null ? '—' : duration(t.expires_in)],
    ['获取时间', dateTime(t.fetched_at)],
    ['最近错误', t.last_error ?? '无'],
    ['在线列表缓存', d.online?.age_secs == null ? '无' : `${duration(d.online.age_secs)}前${d.online.ok === false ? '（获取失败）' : ''}`],
    ['规则', `${d.rules?.stored ? '已保存的规则' : '默认规则'}${d.rules?.age_secs == null ? '' : `（${duration(d.rules.age_secs)}前读取）`}`],
  ]);
}

function online(d) {
  const agents = d.kf_online_list ?? [];
  if (!agents.length) return h('p', { class: 'big' }, '0', h('span', {}, ' 位客服在线'));
  return [
    h('p', { class: 'big' }, String(agents.length), h('span', {}, ' 位客服在线')),
    h('ul', { class: 'plain' }, agents.map((a) => h('li', {},
      h('code', {}, a.kf_account), ' ', h('span', { class: 'badge ok' }, onlineLabel(a.status)), ' ',
      h('span', { class: Number(a.accepted_case) >= Number(a.auto_accept) ? 'load full' : 'load' }, load(a))))),
  ];
}

function queue(d) {
  const users = d.waitcaselist ?? [];
  const now = Date.now() / 1000;
  const longest = users.reduce((m, u) => Math.max(m, now - Number(u.latest_time || now)), 0);
  return [
    h('p', { class: 'big' }, String(d.count ?? users.length), h('span', {}, ' 位用户在排队')),
    users.length ? h('p', { class: 'muted' }, `最久已等待 ${duration(longest)}`) : null,
    h('p', {}, h('a', { href: '#conversations' }, '去会话页接入')),
  ];
}

export function render(root, ctx) {
  const refresh = h('button', { type: 'button', class: 'quiet', onclick: () => render(root, ctx) }, '刷新');
  const cards = [card('配置'), card('access_token 与缓存'), card('在线客服'), card('排队')];
  root.replaceChildren(pageHead(title, refresh), h('div', { class: 'grid' }, cards.map((c) => c.el)));
  root.dataset.state = 'loading';
  Promise.all([
    account.get()
      ? fill(cards[0].body, api(`/api/accounts/${seg(account.get())}`), accountSettings)
      : fill(cards[0].body, api('/healthz', { auth: false }), health),
    fill(cards[1].body, api('/api/status'), function again(d) {
      return status(d, ctx, () => fill(cards[1].body, api('/api/status'), again));
    }),
    fill(cards[2].body, api('/api/kf/online'), online),
    fill(cards[3].body, api('/api/kf/waitcase'), queue),
  ]).then(() => {
    root.dataset.state = 'ready';
    // Navigation start to the overview's data on screen (read by the browser test).
    if (!performance.getEntriesByName('console:overview-ready').length) performance.mark('console:overview-ready');
  });
}
