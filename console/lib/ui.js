// Pieces every page uses: the page heading, cards that load their own data, the merged agent
// list, avatars.
import { api } from './api.js';
import { h, replace } from './dom.js';

/** The page's `<h1 id="page-title">` with its buttons (e.g. 刷新). */
export function pageHead(title, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, title), h('div', { class: 'actions' }, actions));
}

/** A titled card: `{ el, body }`; `body` is where its content goes. */
export function card(title, { cls, level = 'h2' } = {}) {
  const heading = h(level, {}, title);
  const body = h('div', { class: 'card-body' });
  const el = h('section', { class: cls ? `card ${cls}` : 'card' }, heading, body);
  return { el, body, heading };
}

/**
 * Shows 加载中… in `body`, then `render(data)` there, or the error. Resolves either way (to
 * whether it worked), so that a page can wait for all its cards.
 */
export async function fill(body, promise, render) {
  replace(body, h('p', { class: 'muted' }, '加载中…'));
  try {
    const data = await promise;
    replace(body, render(data));
    return true;
  } catch (err) {
    replace(body, h('p', { class: 'error' }, err.message));
    return false;
  }
}

/** An error or success line for a form (`role=alert` for errors). */
export function statusLine() {
  const el = h('p', { class: 'form-status', role: 'status' });
  return {
    el,
    ok(msg) { el.className = 'form-status ok'; el.setAttribute('role', 'status'); el.textContent = msg; },
    error(msg) { el.className = 'form-status error'; el.setAttribute('role', 'alert'); el.textContent = msg; },
    clear() { el.className = 'form-status'; el.textContent = ''; },
  };
}

/** WeChat's online status codes (getonlinekflist `status`). */
export function onlineLabel(status) {
  switch (Number(status)) {
    case 1: return '电脑在线';
    case 2: return '手机在线';
    case 3: return '电脑和手机在线';
    default: return '在线';
  }
}

/**
 * The accounts (`GET /api/kf/accounts`) with their online state (`GET /api/kf/online`) merged in:
 * `{ kf_account, kf_nick, kf_id, kf_headimgurl, kf_wx?, invite_wx?, invite_status?, online:
 * {status, accepted_case, auto_accept} | null }`. When the online list fails the accounts are
 * still listed, with `onlineError` set.
 */
export async function loadAgents() {
  const [accounts, online] = await Promise.allSettled([api('/api/kf/accounts'), api('/api/kf/online')]);
  if (accounts.status === 'rejected') throw accounts.reason;
  const byAccount = new Map();
  if (online.status === 'fulfilled') {
    for (const o of online.value.kf_online_list ?? []) byAccount.set(o.kf_account, o);
  }
  const list = (accounts.value.kf_list ?? []).map((a) => ({ ...a, online: byAccount.get(a.kf_account) ?? null }));
  return { list, onlineError: online.status === 'rejected' ? online.reason : null };
}

/** The load of an online agent: `接待 1 / 2`. */
export const load = (o) => `接待 ${o.accepted_case ?? 0} / ${o.auto_accept ?? '—'}`;

/**
 * An avatar URL the console may show, or null. The CSP allows images from `https://*.qpic.cn`
 * only (WeChat's image host); WeChat hands out `http://` URLs there, which are asked for over
 * HTTPS instead (the host serves both; an http image on an https page would be mixed content).
 */
export function avatarUrl(raw) {
  if (typeof raw !== 'string' || !raw) return null;
  try {
    const u = new URL(raw);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    if (!u.hostname.endsWith('.qpic.cn')) return null;
    u.protocol = 'https:';
    return u.href;
  } catch {
    return null;
  }
}

/** The agent's picture, or their first character on a colour of their own when there is none. */
export function avatar(agent) {
  const name = agent.kf_nick || agent.kf_account || '?';
  const initial = h('span', { class: 'avatar initial', 'aria-hidden': 'true' }, Array.from(name)[0].toUpperCase());
  let hash = 0;
  for (const ch of agent.kf_account ?? name) hash = (hash * 31 + ch.codePointAt(0)) % 360;
  initial.dataset.hue = String(hash % 12);
  const src = avatarUrl(agent.kf_headimgurl);
  if (!src) return initial;
  const img = h('img', { class: 'avatar', src, alt: '', width: 48, height: 48, referrerpolicy: 'no-referrer', decoding: 'async' });
  img.addEventListener('error', () => img.replaceWith(initial), { once: true });
  return img;
}
