// The operator console: login, navigation between the five pages, and what they share.
// Served by Workers Static Assets at /console/; talks only to the worker's /api/* (and /healthz)
// with the admin token typed once and kept in sessionStorage.
import { api, token, whenUnauthorized, ApiError } from './lib/api.js';
import { replace, h } from './lib/dom.js';
import * as overview from './pages/overview.js';
import * as agents from './pages/agents.js';
import * as conversations from './pages/conversations.js';
import * as rules from './pages/rules.js';
import * as records from './pages/records.js';

const PAGES = { overview, agents, conversations, rules, records };

const $ = (id) => document.getElementById(id);
const login = $('login');
const loginForm = $('login-form');
const loginError = $('login-error');
const tokenInput = $('token');
const top = $('top');
const page = $('page');
const toastEl = $('toast');

let toastTimer;
/** A short message in the live region (`kind`: ok or error). */
function toast(message, kind = 'ok') {
  clearTimeout(toastTimer);
  toastEl.className = `toast ${kind}`;
  toastEl.textContent = message;
  toastTimer = setTimeout(() => { toastEl.textContent = ''; }, kind === 'error' ? 8000 : 4000);
}

function showLogin(message) {
  token.clear();
  top.hidden = true;
  page.hidden = true;
  page.replaceChildren();
  login.hidden = false;
  loginError.textContent = message ?? '';
  tokenInput.value = '';
  tokenInput.focus();
}

whenUnauthorized(() => showLogin('令牌不正确或已更换，请重新输入。'));

/** The current page's name from the URL fragment (#agents); the overview by default. */
const current = () => {
  const name = location.hash.slice(1);
  return Object.hasOwn(PAGES, name) ? name : 'overview';
};

let generation = 0;
function show() {
  if (!token.get()) return showLogin();
  login.hidden = true;
  top.hidden = false;
  page.hidden = false;
  const name = current();
  for (const a of top.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const mod = PAGES[name];
  document.title = `${mod.title} · 客服控制台`;
  const root = h('section', { class: 'page', 'aria-labelledby': 'page-title', 'data-page': name });
  replace(page, root);
  const gen = ++generation;
  toastEl.textContent = '';
  // A page whose data arrives after the operator moved on must not touch the new page.
  const ctx = { toast, alive: () => gen === generation };
  mod.render(root, ctx);
  return undefined;
}

loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const value = tokenInput.value.trim();
  if (!value) {
    loginError.textContent = '请输入管理令牌。';
    return;
  }
  const button = loginForm.querySelector('button[type=submit]');
  button.disabled = true;
  loginError.textContent = '';
  token.set(value);
  try {
    // A call that reaches no WeChat API: it only checks the token.
    await api('/api/status');
    tokenInput.value = '';
    show();
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) {
      token.clear();
      loginError.textContent = err.message;
    }
  } finally {
    button.disabled = false;
  }
});

$('logout').addEventListener('click', () => {
  showLogin('已退出。');
});

window.addEventListener('hashchange', show);
show();
