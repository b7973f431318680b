// 聊天记录: message records for a time range of at most 24 hours (POST /api/kf/records, unix
// seconds), shown as one conversation per user.
import { api } from '../lib/api.js';
import { h, field, busy, replace, dateTime, localInput } from '../lib/dom.js';
import { pageHead, card, statusLine } from '../lib/ui.js';

export const title = '聊天记录';

const PAGE = 10000;
/** WeChat's opercode: what a record is. */
const OPER = {
  1000: '创建未接入会话', 1001: '接入会话', 1002: '主动发起会话', 1003: '转接会话', 1004: '关闭会话',
  1005: '抢接会话', 2001: '用户发来消息', 2002: '客服发送消息', 2003: '客服收到消息',
};
const FROM_USER = new Set([2001, 2003]);
const FROM_AGENT = new Set([2002]);

function conversation(openid, records) {
  const c = card(`用户 ${openid}`, { cls: 'chat-card', level: 'h2' });
  c.body.append(h('ol', { class: 'chat', 'aria-label': `与 ${openid} 的对话` }, records.map((r) => {
    const op = Number(r.opercode);
    const when = h('time', { datetime: new Date(Number(r.time) * 1000).toISOString() }, dateTime(r.time));
    if (FROM_USER.has(op) || FROM_AGENT.has(op)) {
      const agent = FROM_AGENT.has(op);
      return h('li', { class: agent ? 'msg agent' : 'msg user' },
        h('p', { class: 'who' }, agent ? `客服 ${r.worker || ''}` : '用户', ' · ', when),
        h('p', { class: 'text' }, r.text ?? ''));
    }
    return h('li', { class: 'msg event' }, when, ' ', `${r.worker ? `${r.worker} ` : ''}${OPER[op] ?? `操作 ${op}`}`);
  })));
  return c.el;
}

export function render(root, ctx) {
  const now = new Date();
  const start = h('input', { type: 'datetime-local', required: true, value: localInput(new Date(now.getTime() - 86_400_000 + 60_000)) });
  const end = h('input', { type: 'datetime-local', required: true, value: localInput(now) });
  const filter = h('input', { type: 'search', autocomplete: 'off', spellcheck: 'false' });
  const line = statusLine();
  const submit = h('button', { type: 'submit' }, '查询');
  const form = h('form', { class: 'inline', 'aria-label': '查询聊天记录' },
    field('开始时间', start), field('结束时间', end, { hint: '与开始时间相差不超过 24 小时。' }),
    field('只看这位用户（OpenID，可选）', filter), submit);
  const results = h('div', { class: 'results' });
  const more = h('div');
  root.replaceChildren(pageHead(title), form, line.el, results, more);
  root.dataset.state = 'ready';

  let records = [];
  let range = null;
  const draw = () => {
    const who = filter.value.trim();
    const byUser = new Map();
    for (const r of records) {
      if (who && r.openid !== who) continue;
      if (!byUser.has(r.openid)) byUser.set(r.openid, []);
      byUser.get(r.openid).push(r);
    }
    for (const list of byUser.values()) list.sort((a, b) => Number(a.time) - Number(b.time));
    replace(results, byUser.size
      ? [...byUser].map(([openid, list]) => conversation(openid, list))
      : h('p', { class: 'muted' }, records.length ? '这位用户在这段时间没有记录。' : '这段时间没有聊天记录。'));
  };
  filter.addEventListener('input', draw);

  /** Asks for one page; `msgid` 1 for the first, then the `msgid` WeChat answered. */
  async function fetchPage(msgid) {
    const answer = await api('/api/kf/records', { method: 'POST', json: { ...range, msgid, number: PAGE } });
    if (!ctx.alive()) return;
    records = records.concat(answer.recordlist ?? []);
    draw();
    line.ok(`共 ${records.length} 条记录（${dateTime(range.starttime)} 至 ${dateTime(range.endtime)}）`);
    if (Number(answer.number) >= PAGE && answer.msgid) {
      const next = h('button', { type: 'button', class: 'quiet' }, '加载更多');
      next.addEventListener('click', () => busy(next, () => fetchPage(answer.msgid).catch((err) => line.error(err.message))));
      replace(more, next);
    } else {
      more.replaceChildren();
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    line.clear();
    const s = Math.floor(new Date(start.value).getTime() / 1000);
    const t = Math.floor(new Date(end.value).getTime() / 1000);
    if (!Number.isFinite(s) || !Number.isFinite(t)) return line.error('请填写开始和结束时间。');
    if (t <= s) return line.error('结束时间必须晚于开始时间。');
    if (t - s > 86_400) return line.error('一次最多查询 24 小时的记录。');
    range = { starttime: s, endtime: t };
    records = [];
    more.replaceChildren();
    root.dataset.state = 'loading';
    return busy(submit, async () => {
      try {
        await fetchPage(1);
      } catch (err) {
        results.replaceChildren();
        line.error(err.message);
      }
      root.dataset.state = 'ready';
    });
  });
}
