// 账号 (the owner's page): the Official Accounts kept in the database, each served at
// /wechat/{appid}. Add one (then the URL and Token to paste into WeChat's console), change it
// (the secret fields are write-only: left empty, they stay as they are), remove it after a
// confirmation, and issue and revoke its operator tokens (a new token is shown this once).
import { api, seg } from '../lib/api.js';
import { h, field, busy, replace, setFieldError, clearFieldErrors, dateTime } from '../lib/dom.js';
import { pageHead, card, statusLine } from '../lib/ui.js';

export const title = '账号';

/** A 复制 button for `text()`, named for screen readers by `label`. */
function copyButton(label, text, ctx) {
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text());
      ctx.toast(`已复制${label}`);
    } catch {
      ctx.toast('无法复制：请选中文字后手动复制。', 'error');
    }
  };
  return h('button', { type: 'button', class: 'quiet', 'aria-label': `复制${label}`, onclick: copy }, '复制');
}

/** A read-only value with its copy button. */
function copyable(label, value, ctx) {
  const input = h('input', { type: 'text', readonly: true, value, spellcheck: 'false' });
  return h('div', { class: 'copyable' }, field(label, input), copyButton(label, () => input.value, ctx));
}

/** What to paste into WeChat's console for an account (the Token only right after it was typed). */
function pasteBox(appid, token, ctx) {
  return h('div', { class: 'paste' },
    h('p', { class: 'muted' }, '在微信公众平台“设置与开发 → 基本配置 → 服务器配置”中填写：'),
    copyable('服务器地址（URL）', `${location.origin}/wechat/${appid}`, ctx),
    token ? copyable('令牌（Token）', token, ctx) : null);
}

const text = (attrs = {}) => h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', ...attrs });
const choice = (values, chosen) => h('select', {}, values.map(([v, label]) => h('option', { value: v, selected: v === chosen }, label)));

/** The controls of an account's fields; `existing` for a change (secret fields left empty). */
function controls(existing) {
  const keep = existing ? { placeholder: '不修改请留空' } : {};
  const c = {
    appid: text({ required: !existing, disabled: Boolean(existing), value: existing?.appid ?? '', placeholder: 'wx0123456789abcdef' }),
    name: text({ required: true, maxlength: 64, value: existing?.name ?? '' }),
    token: text({ required: !existing, maxlength: 32, ...keep }),
    aes_key: text({ maxlength: 43, ...keep }),
    secret: text({ maxlength: 64, ...keep }),
    kf_accounts: text({ value: (existing?.kf_accounts ?? []).join(', '), placeholder: 'kf2001@gh_xxx, kf2002@gh_xxx' }),
    kf_routing: choice([['static', '固定：第一个客服'], ['online', '在线：第一个在线且有空的客服']], existing?.kf_routing ?? 'static'),
    token_endpoint: choice([['stable', 'stable_token（推荐）'], ['classic', 'token（旧接口）']], existing?.token_endpoint ?? 'stable'),
  };
  if (existing?.aes_key_set) c.remove_aes_key = h('input', { type: 'checkbox' });
  if (existing?.secret_set) c.remove_secret = h('input', { type: 'checkbox' });
  return c;
}

function fieldsOf(c, existing) {
  const set = (yes) => (yes ? '已设置' : '未设置');
  return [
    field('AppID', c.appid, { hint: existing ? 'AppID 不能修改。' : '在“设置与开发 → 基本配置”中查看，以 wx 开头。' }),
    field('名称', c.name),
    field('令牌（Token）', c.token, { hint: existing ? '只写：当前值不会显示。' : '3 到 32 个英文字母或数字，与微信公众平台填写的一致。' }),
    field(`消息加解密密钥（EncodingAESKey，${existing ? set(existing.aes_key_set) : '可选'}）`, c.aes_key, { hint: '43 个字符；兼容模式和安全模式需要。' }),
    c.remove_aes_key ? field('移除 EncodingAESKey（改为明文模式）', c.remove_aes_key, { cls: 'check' }) : null,
    field(`AppSecret（${existing ? set(existing.secret_set) : '可选'}）`, c.secret, { hint: '调用微信接口（在线分配、通知、问候）需要。' }),
    c.remove_secret ? field('移除 AppSecret', c.remove_secret, { cls: 'check' }) : null,
    field('客服账号（逗号分隔）', c.kf_accounts),
    field('分配方式', c.kf_routing),
    field('获取 access_token 的接口', c.token_endpoint),
  ];
}

/** The request body: every field for a new account; for a change, what was typed. */
function bodyOf(c, existing) {
  const kf = c.kf_accounts.value.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
  const body = { name: c.name.value.trim(), kf_accounts: kf, kf_routing: c.kf_routing.value, token_endpoint: c.token_endpoint.value };
  if (!existing) body.appid = c.appid.value.trim();
  for (const key of ['token', 'aes_key', 'secret']) {
    const v = c[key].value.trim();
    if (v) body[key] = v;
  }
  if (c.remove_aes_key?.checked) body.aes_key = null;
  if (c.remove_secret?.checked) body.secret = null;
  return body;
}

/** Shows an error at the control the API named (`kf_accounts[1]` → 客服账号), else on `line`. */
function showError(err, c, line) {
  const control = err.field ? c[err.field.replace(/\[\d+\]$/, '')] : null;
  if (control) {
    setFieldError(control, err.message);
    control.focus();
  } else {
    line.error(err.message);
  }
}

function tokensSection(a, ctx) {
  const list = h('ul', { class: 'tokens', 'aria-label': `${a.name} 的运营令牌` });
  const line = statusLine();
  const shown = h('div');
  const reload = async () => {
    try {
      const { tokens } = await api(`/api/accounts/${seg(a.appid)}/tokens`);
      replace(list, tokens.length ? tokens.map((t) => tokenItem(t)) : h('li', { class: 'muted' }, '还没有运营令牌。'));
    } catch (err) {
      line.error(err.message);
    }
  };
  const tokenItem = (t) => {
    const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': `吊销运营令牌 ${t.name}` }, '吊销');
    revoke.addEventListener('click', () => {
      // eslint-disable-next-line no-alert
      if (!window.confirm(`确定吊销运营令牌“${t.name}”吗？使用它的人将无法再登录。`)) return;
      busy(revoke, async () => {
        try {
          await api(`/api/accounts/${seg(a.appid)}/tokens/${seg(t.id)}`, { method: 'DELETE' });
          ctx.toast(`已吊销 ${t.name}`);
          await reload();
        } catch (err) {
          line.error(err.message);
        }
      });
    });
    return h('li', {}, h('strong', {}, t.name), ' ', h('span', { class: 'muted' }, `创建于 ${dateTime(t.created)}，最近使用 ${t.last_used ? dateTime(t.last_used) : '从未'}`), ' ', revoke);
  };
  const name = text({ required: true, maxlength: 64, placeholder: '如：小王' });
  const issue = h('button', { type: 'submit' }, '签发令牌');
  const form = h('form', { class: 'mini', 'aria-label': `为 ${a.name} 签发运营令牌` }, field('令牌名称（谁在用）', name), issue, line.el);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    line.clear();
    clearFieldErrors(form);
    busy(issue, async () => {
      try {
        const t = await api(`/api/accounts/${seg(a.appid)}/tokens`, { method: 'POST', json: { name: name.value.trim() } });
        name.value = '';
        replace(shown, h('div', { class: 'issued', role: 'status' },
          h('p', {}, `新令牌“${t.name}”只显示这一次，请复制后交给使用者：`),
          copyable('运营令牌', t.token, ctx)));
        await reload();
      } catch (err) {
        showError(err, { name }, line);
      }
    });
  });
  reload();
  return h('details', {}, h('summary', {}, '运营令牌'), shown, list, form);
}

function accountCard(a, ctx, reloadAll) {
  const c = controls(a);
  const line = statusLine();
  const save = h('button', { type: 'submit' }, '保存修改');
  const form = h('form', { 'aria-label': `修改 ${a.name}` }, fieldsOf(c, a), save, line.el);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    line.clear();
    clearFieldErrors(form);
    busy(save, async () => {
      try {
        await api(`/api/accounts/${seg(a.appid)}`, { method: 'PUT', json: bodyOf(c, a) });
        ctx.toast(`已保存 ${c.name.value.trim()}`);
        reloadAll();
      } catch (err) {
        showError(err, c, line);
      }
    });
  });
  const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `删除公众号 ${a.name}` }, '删除账号');
  const removeLine = statusLine();
  remove.addEventListener('click', () => {
    // eslint-disable-next-line no-alert
    if (!window.confirm(`确定删除公众号“${a.name}”（${a.appid}）吗？它的回调地址将不再可用，运营令牌一并删除。`)) return;
    busy(remove, async () => {
      try {
        await api(`/api/accounts/${seg(a.appid)}`, { method: 'DELETE' });
        ctx.toast(`已删除 ${a.name}`);
        reloadAll();
      } catch (err) {
        removeLine.error(err.message);
      }
    });
  });
  const mode = a.aes_key_set ? '可用安全模式' : '明文模式';
  return h('li', { class: 'card account', 'data-appid': a.appid },
    h('h2', {}, a.name),
    h('p', {}, h('code', {}, a.appid), h('span', { class: 'muted' }, ` ${mode}，AppSecret ${a.secret_set ? '已设置' : '未设置'}，更新于 ${dateTime(a.updated)}`)),
    pasteBox(a.appid, null, ctx),
    h('details', {}, h('summary', {}, '修改'), form),
    tokensSection(a, ctx),
    h('div', { class: 'mini' }, remove, removeLine.el));
}

function addCard(ctx, reloadAll) {
  const c = controls(null);
  const line = statusLine();
  const done = h('div');
  const add = h('button', { type: 'submit' }, '添加账号');
  const form = h('form', { 'aria-label': '添加公众号' }, fieldsOf(c, null), add, line.el);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    line.clear();
    clearFieldErrors(form);
    busy(add, async () => {
      try {
        const body = bodyOf(c, null);
        const a = await api('/api/accounts', { method: 'POST', json: body });
        replace(done, h('div', { class: 'issued', role: 'status' }, h('p', {}, `已添加“${a.name}”。`), pasteBox(a.appid, body.token, ctx)));
        for (const key of ['appid', 'name', 'token', 'aes_key', 'secret', 'kf_accounts']) c[key].value = '';
        reloadAll();
      } catch (err) {
        showError(err, c, line);
      }
    });
  });
  const box = card('添加公众号', { cls: 'add-account' });
  box.body.append(done, form);
  return box.el;
}

export function render(root, ctx) {
  const list = h('ul', { class: 'cards', 'aria-label': '公众号列表' });
  const note = h('div');
  const reload = async () => {
    root.dataset.state = 'loading';
    try {
      const { accounts } = await api('/api/accounts');
      if (!ctx.alive()) return;
      replace(note, h('p', { class: 'muted' }, '这里的公众号各有自己的回调地址、令牌、规则和运营令牌；“默认”公众号由环境变量配置，不在此列。'));
      replace(list, accounts.length ? accounts.map((a) => accountCard(a, ctx, reload)) : h('li', { class: 'muted' }, '还没有保存在数据库里的公众号。'));
    } catch (err) {
      if (!ctx.alive()) return;
      replace(note, h('p', { class: 'error' }, err.message));
      list.replaceChildren();
    }
    ctx.accountsChanged();
    root.dataset.state = 'ready';
  };
  const refresh = h('button', { type: 'button', class: 'quiet', onclick: reload }, '刷新');
  root.replaceChildren(pageHead(title, refresh), note, list, addCard(ctx, reload));
  reload();
}
