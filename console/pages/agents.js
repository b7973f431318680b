// 客服: the accounts (GET /api/kf/accounts merged with /api/kf/online) and what can be done to
// them: add, invite a WeChat user to bind, rename, upload an avatar, delete.
import { api, seg } from '../lib/api.js';
import { h, field, busy, uid, replace } from '../lib/dom.js';
import { pageHead, card, statusLine, loadAgents, avatar, onlineLabel, load } from '../lib/ui.js';

export const title = '客服';

const INVITE = { waiting: '邀请待确认', rejected: '邀请被拒绝', expired: '邀请已过期' };

/** A small form: the inputs, one submit button, a status line; `action(values)` does the work. */
function miniForm({ label, inputs, submit, action, ctx }) {
  const line = statusLine();
  const button = h('button', { type: 'submit' }, submit);
  const form = h('form', { class: 'mini', 'aria-label': label }, inputs, button, line.el);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    line.clear();
    busy(button, async () => {
      try {
        const msg = await action();
        if (msg) ctx.toast(msg);
        return true;
      } catch (err) {
        line.error(err.message);
        return false;
      }
    });
  });
  return form;
}

function agentCard(a, ctx, reload) {
  const nameId = uid('n');
  const who = a.kf_nick || a.kf_account;
  const state = a.online
    ? [h('span', { class: 'badge ok' }, onlineLabel(a.online.status)), ' ', h('span', { class: Number(a.online.accepted_case) >= Number(a.online.auto_accept) ? 'load full' : 'load' }, load(a.online))]
    : [h('span', { class: 'badge off' }, '离线')];
  const bound = a.kf_wx
    ? h('p', { class: 'muted' }, '已绑定微信号 ', h('code', {}, a.kf_wx))
    : a.invite_wx
      ? h('p', { class: 'muted' }, `${INVITE[a.invite_status] ?? '已邀请'}：`, h('code', {}, a.invite_wx))
      : h('p', { class: 'muted' }, '未绑定微信号');

  const nick = h('input', { type: 'text', required: true, maxlength: 16, value: a.kf_nick ?? '', autocomplete: 'off' });
  const rename = miniForm({
    ctx, label: `修改 ${who} 的昵称`, submit: '保存昵称',
    inputs: field('新昵称', nick),
    action: async () => {
      await api(`/api/kf/accounts/${seg(a.kf_account)}`, { method: 'PUT', json: { nickname: nick.value.trim() } });
      reload();
      return `已把 ${a.kf_account} 的昵称改为“${nick.value.trim()}”`;
    },
  });

  const wx = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: '对方的微信号' });
  const invite = miniForm({
    ctx, label: `邀请微信号绑定 ${who}`, submit: '发送邀请',
    inputs: field('邀请绑定的微信号', wx, { hint: '对方会在微信里收到邀请，确认后即可用这个客服账号接待。' }),
    action: async () => {
      await api(`/api/kf/accounts/${seg(a.kf_account)}/invite`, { method: 'POST', json: { invite_wx: wx.value.trim() } });
      reload();
      return `已邀请 ${wx.value.trim()} 绑定 ${a.kf_account}`;
    },
  });

  const file = h('input', { type: 'file', accept: 'image/jpeg', required: true });
  const upload = miniForm({
    ctx, label: `上传 ${who} 的头像`, submit: '上传头像',
    inputs: field('头像图片（JPEG，建议 640×640，最大 5 MB）', file),
    action: async () => {
      const f = file.files[0];
      if (!f) throw new Error('请选择一张 JPEG 图片。');
      if (f.type !== 'image/jpeg') throw new Error('头像必须是 JPEG 图片（.jpg）。');
      await api(`/api/kf/accounts/${seg(a.kf_account)}/avatar`, { method: 'PUT', body: f, type: 'image/jpeg' });
      reload();
      return `已更新 ${a.kf_account} 的头像`;
    },
  });

  const del = h('button', { type: 'button', class: 'danger', 'aria-label': `删除客服 ${a.kf_account}` }, '删除客服');
  const delLine = statusLine();
  del.addEventListener('click', () => {
    // eslint-disable-next-line no-alert
    if (!window.confirm(`确定删除客服账号 ${a.kf_account}（${a.kf_nick ?? ''}）吗？删除后不能恢复。`)) return;
    busy(del, async () => {
      try {
        await api(`/api/kf/accounts/${seg(a.kf_account)}`, { method: 'DELETE' });
        ctx.toast(`已删除 ${a.kf_account}`);
        reload();
      } catch (err) {
        delLine.error(err.message);
      }
    });
  });

  return h('li', { class: 'card agent', 'aria-labelledby': nameId },
    h('div', { class: 'agent-head' },
      avatar(a),
      h('div', {},
        h('h2', { id: nameId, class: 'name' }, a.kf_nick || '（无昵称）'),
        h('p', {}, h('code', {}, a.kf_account), a.kf_id ? h('span', { class: 'muted' }, ` 工号 ${a.kf_id}`) : null),
        h('p', {}, state))),
    bound,
    h('details', {}, h('summary', {}, `管理 ${who}`), rename, invite, upload, h('div', { class: 'mini' }, del, delLine.el)));
}

function addForm(ctx, reload) {
  const account = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'kf2002@gh_xxxxxxxx' });
  const nickname = h('input', { type: 'text', required: true, maxlength: 16, autocomplete: 'off' });
  const c = card('添加客服', { cls: 'add-agent' });
  c.body.append(miniForm({
    ctx, label: '添加客服', submit: '添加',
    inputs: [
      field('客服账号', account, { hint: '格式为“前缀@公众号微信号”，前缀最多 10 个英文字母或数字。' }),
      field('昵称', nickname),
    ],
    action: async () => {
      const kf = account.value.trim();
      await api('/api/kf/accounts', { method: 'POST', json: { kf_account: kf, nickname: nickname.value.trim() } });
      account.value = '';
      nickname.value = '';
      reload();
      return `已添加客服 ${kf}`;
    },
  }));
  return c.el;
}

export function render(root, ctx) {
  const listEl = h('ul', { class: 'cards', 'aria-label': '客服列表' });
  const note = h('div');
  const reload = async () => {
    root.dataset.state = 'loading';
    try {
      const { list, onlineError } = await loadAgents();
      if (!ctx.alive()) return;
      replace(note, onlineError ? h('p', { class: 'error' }, `在线状态未能获取：${onlineError.message}`) : null);
      replace(listEl, list.length ? list.map((a) => agentCard(a, ctx, reload)) : h('li', { class: 'muted' }, '还没有客服账号。'));
    } catch (err) {
      if (!ctx.alive()) return;
      replace(note, h('p', { class: 'error' }, err.message));
      listEl.replaceChildren();
    }
    root.dataset.state = 'ready';
  };
  const refresh = h('button', { type: 'button', class: 'quiet', onclick: reload }, '刷新');
  root.replaceChildren(pageHead(title, refresh), note, listEl, addForm(ctx, reload));
  reload();
}
