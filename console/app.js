// The operator console: login, navigation between the pages, the account it acts for, and what
// they share. Served by Workers Static Assets at /console/; talks only to the worker's /api/*
// (and /healthz) with the token typed once and kept in sessionStorage. The owner (ADMIN_TOKEN)
// picks the Official Account in the switcher and manages accounts on 账号; an operator token
// opens the console on its account alone, without either.
import { api, token, role, account, whenUnauthorized, ApiError } from './lib/api.js';
import { replace, h } from './lib/dom.js';
import * as overview from './pages/overview.js';
import * as agents from './pages/agents.js';
import * as conversations from './pages/conversations.js';
import * as rules from './pages/rules.js';
import * as records from './pages/records.js';
import * as stats from './pages/stats.js';
import * as accounts from './pages/accounts.js';

const PAGES = { overview, agents, conversations, stats, rules, records, accounts };
/** Pages only the owner sees. */
const OWNER_PAGES = new Set(['accounts']);

const $ = (id) => document.getElementById(id);
const login = $('login');
const loginForm = $('login-form');
const loginError = $('login-error');
const tokenInput = $('token');
const top = $('top');
const page = $('page');
const toastEl = $('toast');
const accountBox = $('account-box');
const accountSwitch = $('account-switch');
const accountName = $('account-name');
const navAccounts = $('nav-accounts');

/** Whether the header (switcher, 账号, the account's name) was set up since the login. */
let headerShown = false;

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
  headerShown = false;
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
  const allowed = Object.hasOwn(PAGES, name) && (role.get() === 'owner' || !OWNER_PAGES.has(name));
  return allowed ? name : 'overview';
};

/**
 * The header for who is logged in: the owner gets the switcher (the deployment's account and
 * the database's, from GET /api/accounts: hidden when the deployment keeps none) and 账号; an
 * operator sees the name of their account.
 */
async function showAccounts() {
  if (!role.get()) {
    // A session from before roles were kept: ask once whose token it is.
    try {
      remember(await api('/api/whoami'));
    } catch {
      return;
    }
  }
  const owner = role.get() === 'owner';
  navAccounts.hidden = !owner;
  accountName.hidden = owner;
  accountBox.hidden = true;
  if (!owner) {
    accountName.textContent = `公众号：${account.name() ?? account.get()}`;
    return;
  }
  let list = [];
  try {
    // Without ACCOUNTS_KEY or a database the deployment has its own account only (账号 says why).
    const health = await api('/healthz', { auth: false });
    if (health.features?.accounts) list = (await api('/api/accounts')).accounts ?? [];
  } catch {
    list = [];
  }
  const options = [h('option', { value: '' }, '默认（环境变量配置的公众号）')];
  for (const a of list) options.push(h('option', { value: a.appid }, `${a.name}（${a.appid}）`));
  replace(accountSwitch, options);
  const chosen = account.get() ?? '';
  if (chosen && !list.some((a) => a.appid === chosen)) account.set(null);
  accountSwitch.value = account.get() ?? '';
  accountBox.hidden = list.length === 0;
}

/** What `/api/whoami` said: the role, and an operator's account. */
function remember(me) {
  role.set(me.role);
  if (me.role === 'operator') {
    account.set(me.appid);
    account.setName(me.name);
  }
}

accountSwitch.addEventListener('change', () => {
  account.set(accountSwitch.value || null);
  show();
});

let generation = 0;
function show() {
  if (!token.get()) return showLogin();
  if (!headerShown) {
    headerShown = true;
    showAccounts();
  }
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
  const ctx = { toast, alive: () => gen === generation, accountsChanged: showAccounts };
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
    // A call that reaches no WeChat API: it only checks the token and says whose it is.
    remember(await api('/api/whoami'));
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
