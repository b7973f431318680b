// 规则: the front desk's rules document as a form (GET /api/rules, PUT /api/rules, DELETE
// /api/rules = back to the defaults). The schema is src/desk/rules.rs's; the API validates and
// answers a bad document with the JSON path of the first bad field, which is shown next to the
// control that path came from (or above the form when no control matches).
import { api } from '../lib/api.js';
import { h, field, busy, uid, setFieldError, clearFieldErrors } from '../lib/dom.js';
import { pageHead, statusLine } from '../lib/ui.js';
import { reason } from '../lib/i18n.js';

export const title = '规则';

const DAYS = [['mon', '周一'], ['tue', '周二'], ['wed', '周三'], ['thu', '周四'], ['fri', '周五'], ['sat', '周六'], ['sun', '周日']];
const ACTIONS = [
  ['transfer', '照常转人工（消息在微信的队列里等待）'],
  ['reply', '自动回复文字，不转人工'],
  ['transfer_and_notify', '转人工，并给用户发一条通知'],
];
const ALERTS = [
  ['waiting', '有用户在非营业时间或无人在线时被转人工'],
  ['queue', '排队人数或等待时间超过阈值（每 5 分钟检查）'],
  ['credentials', '获取 access_token 失败且重试无效（如 IP 白名单、AppSecret）'],
];

/** Splits a list typed in one control: lines, commas (，,) or 、. */
const items = (s) => s.split(/[\n,，、]+/).map((x) => x.trim()).filter(Boolean);
/** Time ranges typed in one control: commas, 、, semicolons or lines between them; spaces inside a
 * range (`09:00 - 18:00`) dropped. */
const ranges = (s) => s.split(/[\n,，、;；]+/).map((x) => x.replace(/\s+/g, '')).filter(Boolean);
const select = (options, value) => h('select', {}, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
const textarea = (value, rows = 2) => h('textarea', { rows, value: value ?? '' });
const number = (value, min) => h('input', { type: 'number', min, step: 1, inputmode: 'numeric', value: value ?? '' });
const fieldset = (legend, ...children) => h('fieldset', {}, h('legend', {}, legend), children);
/** A fieldset that spans both columns of the wide layout. */
const wide = (set) => { set.classList.add('wide'); return set; };

/**
 * The form for one document. `controls` maps JSON paths to the controls they come from:
 * `a.b` exactly, and `a.b[*]` for any item of a list typed in one control.
 */
function buildForm(doc, webhook) {
  const controls = new Map();
  const at = (path, el) => { controls.set(path, el); return el; };

  // --- basics
  const timezone = h('input', { type: 'text', value: doc.timezone ?? '+08:00', pattern: '[+\\-][0-9]{2}:[0-9]{2}', autocomplete: 'off' });
  const welcome = textarea(doc.welcome, 3);
  const basics = fieldset('基本',
    field('时区（UTC 偏移）', timezone, { hint: '营业时间按这个时区计算；中国为 +08:00。' }),
    field('关注后的欢迎语', welcome, { hint: '用户关注公众号时自动回复；留空则不回复。' }));

  // --- keywords
  const keywordRows = h('ol', { class: 'rows keywords' });
  const keywordSet = fieldset('关键词自动回复', h('p', { class: 'hint' }, '按顺序检查用户发来的文字，第一条匹配的规则自动回复，不转人工。'), keywordRows);
  const addKeyword = (k = {}) => {
    const n = keywordRows.children.length + 1;
    const row = h('li', { class: 'keyword' });
    const match = select([['exact', '完全匹配'], ['contains', '包含']], k.match ?? 'exact');
    const words = textarea((k.words ?? []).join('\n'), 2);
    const reply = textarea(k.reply, 2);
    const remove = h('button', { type: 'button', class: 'quiet danger', onclick: () => row.remove() }, `删除第 ${n} 条`);
    row.append(
      field(`第 ${n} 条：匹配方式`, match),
      field(`第 ${n} 条：关键词`, words, { hint: '每行一个，或用逗号分隔；英文不区分大小写。' }),
      field(`第 ${n} 条：回复`, reply),
      remove);
    row.parts = { match, words, reply };
    keywordRows.append(row);
    return row;
  };
  for (const k of doc.keywords ?? []) addKeyword(k);
  keywordSet.append(h('button', { type: 'button', class: 'quiet', onclick: () => addKeyword().parts.words.focus() }, '添加关键词'));

  // --- transfer gate
  const t = doc.transfer ?? {};
  const mode = select([['all', '所有消息都转人工'], ['on_request', '用户说出下面的词后才转人工']], t.mode ?? 'all');
  const requestWords = textarea((t.request_words ?? []).join('\n'), 2);
  const remember = number(t.remember_secs, 60);
  const prompt = textarea(t.prompt, 2);
  const transferSet = fieldset('转人工',
    field('方式', mode),
    field('转人工的词', requestWords, { hint: '如“人工”“客服”；每行一个，或用逗号分隔。' }),
    field('记住用户要求转人工的时间（秒）', remember, { hint: '60 到 604800，默认 1800。' }),
    field('未转人工时的提示', prompt, { hint: '如“回复‘人工’联系客服。”；留空则不回复。' }));

  // --- hours
  const hours = doc.hours ?? null;
  const hoursOn = h('input', { type: 'checkbox', checked: !!hours });
  const dayInputs = DAYS.map(([d, label]) => {
    const input = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '休息', value: (hours?.weekly?.[d] ?? []).join(', ') });
    return [d, label, input];
  });
  const closedDates = textarea((hours?.closed_dates ?? []).join('\n'), 2);
  const openRows = h('ul', { class: 'rows' });
  const addOpen = (date = '', list = []) => {
    const row = h('li', { class: 'open-date' });
    const day = h('input', { type: 'date', value: date });
    const times = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', value: list.join(', '), placeholder: '09:00-18:00' });
    row.append(field('日期', day), field('营业时段', times), h('button', { type: 'button', class: 'quiet danger', onclick: () => row.remove() }, '删除这一天'));
    row.parts = { day, times };
    openRows.append(row);
    return row;
  };
  for (const [date, list] of Object.entries(hours?.open_dates ?? {})) addOpen(date, list);
  const hoursBody = h('div', { class: 'hours-body' },
    h('div', { class: 'week', role: 'group', 'aria-label': '每周营业时段' },
      dayInputs.map(([, label, input]) => field(label, input, { cls: 'day' }))),
    h('p', { class: 'hint' }, '每天可以有多个时段，用逗号分隔，如 09:00-12:00, 13:30-18:00；留空表示这天休息。'),
    field('休息日（节假日）', closedDates, { hint: '每行一个日期，如 2026-10-01。' }),
    h('p', { class: 'sub' }, '调休上班日（优先于每周时段和休息日）'),
    openRows,
    h('button', { type: 'button', class: 'quiet', onclick: () => addOpen().parts.day.focus() }, '添加调休上班日'));
  const hoursSet = fieldset('营业时间', h('label', { class: 'choice' }, hoursOn, '按营业时间区分（不勾选则全天营业）'), hoursBody);
  const showHours = () => { hoursBody.hidden = !hoursOn.checked; };
  hoursOn.addEventListener('change', showHours);
  showHours();

  // --- fallbacks
  const fallback = (legend, hint, f = {}) => {
    const action = select(ACTIONS, f.action ?? 'transfer');
    const text = textarea(f.text, 2);
    const every = number(f.notify_every_secs, 60);
    const everyField = field('同一用户最多多久通知一次（秒）', every, { hint: '至少 60，默认 43200（12 小时）。' });
    const set = fieldset(legend, h('p', { class: 'hint' }, hint), field('动作', action), field('回复或通知的文字', text), everyField);
    const show = () => { everyField.hidden = action.value !== 'transfer_and_notify'; };
    action.addEventListener('change', show);
    show();
    return { set, action, text, every };
  };
  const closed = fallback('非营业时间', '营业时间以外收到用户消息时。', doc.closed);
  const noAgent = fallback('无客服在线', '营业时间内没有客服在线时。', doc.no_agent);

  // --- session texts
  const greeting = textarea(doc.sessions?.greeting, 2);
  const farewell = textarea(doc.sessions?.farewell, 2);
  const sessionsSet = fieldset('会话消息',
    field('客服接入时的问候', greeting, { hint: '{nickname} 会换成客服的昵称；留空则不发。' }),
    field('会话结束时的告别', farewell));

  // --- alerts
  const a = doc.alerts ?? {};
  const on = ALERTS.map(([v, label]) => [v, h('input', { type: 'checkbox', value: v, checked: (a.on ?? []).includes(v) }), label]);
  const format = select([['wecom', '企业微信群机器人（markdown）'], ['json', 'JSON']], a.format ?? 'wecom');
  const threshold = number(a.queue_threshold, 1);
  const waitSecs = number(a.wait_secs, 60);
  const everySecs = number(a.every_secs, 60);
  const includeText = h('input', { type: 'checkbox', checked: !!a.include_text });
  const alertsSet = fieldset('告警',
    h('p', { class: 'hint' }, webhook ? '告警发到 ALERT_WEBHOOK_URL。一项都不勾选则不告警。' : '需要先设置 ALERT_WEBHOOK_URL（Worker 的 secret）才能保存告警。'),
    h('div', { class: 'choices', role: 'group', 'aria-label': '告警事件' }, on.map(([, box, label]) => h('label', { class: 'choice' }, box, label))),
    field('格式', format),
    field('排队人数阈值', threshold, { hint: '默认 3。' }),
    field('等待时间阈值（秒）', waitSecs, { hint: '默认 600。' }),
    field('同类告警最短间隔（秒）', everySecs, { hint: '默认 600。' }),
    h('label', { class: 'choice' }, includeText, '告警里引用用户消息的前 100 个字'));

  // --- the ledger
  const retention = number(doc.ledger?.retention_days, 1);
  const ledgerSet = fieldset('用户记录',
    field('保留天数', retention, { hint: '“会话”页的用户时间线保留多久（1 到 3650 天，默认 90）；更早的记录由定时任务删除。' }));

  // --- the service-level report (数据)
  const unansweredAfter = number(doc.stats?.unanswered_after_secs, 60);
  const firstResponse = h('input', { type: 'checkbox', checked: !!doc.stats?.first_response });
  const statsSet = fieldset('数据统计',
    field('未及时接待的界限（秒）', unansweredAfter, { hint: '转人工后这么久仍没有客服接入，算“未及时接待”（60 到 86400，默认 600）。' }),
    h('label', { class: 'choice' }, firstResponse, '统计客服首次响应时间（定时任务读取聊天记录，会用掉接口调用次数）'));

  // --- paths → controls
  at('timezone', timezone);
  at('welcome', welcome);
  at('keywords', keywordSet);
  at('transfer', transferSet);
  at('transfer.mode', mode);
  at('transfer.request_words', requestWords);
  at('transfer.request_words[*]', requestWords);
  at('transfer.remember_secs', remember);
  at('transfer.prompt', prompt);
  at('hours', hoursSet);
  at('hours.weekly', hoursSet);
  for (const [d, , input] of dayInputs) { at(`hours.weekly.${d}`, input); at(`hours.weekly.${d}[*]`, input); }
  at('hours.closed_dates', closedDates);
  at('hours.closed_dates[*]', closedDates);
  at('hours.open_dates', hoursSet);
  for (const [name, f] of [['closed', closed], ['no_agent', noAgent]]) {
    at(name, f.set);
    at(`${name}.action`, f.action);
    at(`${name}.text`, f.text);
    at(`${name}.notify_every_secs`, f.every);
  }
  at('sessions', sessionsSet);
  at('sessions.greeting', greeting);
  at('sessions.farewell', farewell);
  at('alerts', alertsSet);
  at('alerts.on', alertsSet);
  at('alerts.on[*]', alertsSet);
  at('alerts.format', format);
  at('alerts.queue_threshold', threshold);
  at('alerts.wait_secs', waitSecs);
  at('alerts.every_secs', everySecs);
  at('alerts.include_text', includeText);
  at('ledger', ledgerSet);
  at('ledger.retention_days', retention);
  at('stats', statsSet);
  at('stats.unanswered_after_secs', unansweredAfter);
  at('stats.first_response', firstResponse);

  const int = (el) => (el.value.trim() === '' ? undefined : Number(el.value));
  const str = (el) => (el.value.trim() === '' ? undefined : el.value);

  /** The document the form shows (absent and empty values left out: null counts as absent). */
  function collect() {
    const out = {};
    out.timezone = timezone.value.trim() || undefined;
    out.welcome = str(welcome);
    // Paths of the rows as sent (an empty row is left out, so the index is the sent one).
    const kws = [];
    for (const row of keywordRows.children) {
      const { match, words, reply } = row.parts;
      if (!words.value.trim() && !reply.value.trim()) continue;
      const i = kws.length;
      for (const [k, el] of [['match', match], ['words', words], ['words[*]', words], ['reply', reply]]) controls.set(`keywords[${i}].${k}`, el);
      controls.set(`keywords[${i}]`, words);
      kws.push({ match: match.value, words: items(words.value), reply: str(reply) });
    }
    out.keywords = kws;
    out.transfer = { mode: mode.value };
    if (items(requestWords.value).length) out.transfer.request_words = items(requestWords.value);
    out.transfer.remember_secs = int(remember);
    out.transfer.prompt = str(prompt);
    if (hoursOn.checked) {
      const weekly = {};
      for (const [d, , input] of dayInputs) if (ranges(input.value).length) weekly[d] = ranges(input.value);
      const open = {};
      for (const row of openRows.children) {
        const { day, times } = row.parts;
        if (!day.value && !times.value.trim()) continue;
        controls.set(`hours.open_dates.${day.value}`, day);
        controls.set(`hours.open_dates.${day.value}[*]`, times);
        open[day.value] = ranges(times.value);
      }
      out.hours = { weekly };
      if (items(closedDates.value).length) out.hours.closed_dates = items(closedDates.value);
      if (Object.keys(open).length) out.hours.open_dates = open;
    }
    for (const [name, f] of [['closed', closed], ['no_agent', noAgent]]) {
      out[name] = { action: f.action.value, text: str(f.text) };
      if (f.action.value === 'transfer_and_notify') out[name].notify_every_secs = int(f.every);
    }
    if (str(greeting) || str(farewell)) out.sessions = { greeting: str(greeting), farewell: str(farewell) };
    const checked = on.filter(([, box]) => box.checked).map(([v]) => v);
    if (checked.length) {
      out.alerts = {
        on: checked, format: format.value, queue_threshold: int(threshold), wait_secs: int(waitSecs),
        every_secs: int(everySecs), include_text: includeText.checked,
      };
    }
    if (int(retention) !== undefined) out.ledger = { retention_days: int(retention) };
    if (int(unansweredAfter) !== undefined || firstResponse.checked) {
      out.stats = { unanswered_after_secs: int(unansweredAfter), first_response: firstResponse.checked || undefined };
    }
    // JSON.stringify leaves out the undefined members.
    return JSON.parse(JSON.stringify(out));
  }

  /** The control for a JSON path, and the item number when the control holds a list. */
  function controlOf(path) {
    let p = path;
    let item = null;
    while (p) {
      if (controls.has(p)) return { control: controls.get(p), item };
      const m = /^(.*)\[(\d+)\]$/.exec(p);
      if (m && controls.has(`${m[1]}[*]`)) return { control: controls.get(`${m[1]}[*]`), item: Number(m[2]) + 1 };
      // Up one level: `a.b[3]` → `a.b`, `a.b` → `a`.
      const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
      p = cut > 0 ? p.slice(0, cut) : '';
    }
    return { control: null, item: null };
  }

  const el = h('div', { class: 'rules-form' }, basics, transferSet, wide(keywordSet), wide(hoursSet), closed.set, noAgent.set, sessionsSet, alertsSet, ledgerSet, statsSet);
  return { el, collect, controlOf };
}

export function render(root, ctx) {
  const source = h('p', { class: 'muted' }, '加载中…');
  const line = statusLine();
  const save = h('button', { type: 'submit' }, '保存规则');
  const reset = h('button', { type: 'button', class: 'danger' }, '恢复默认规则');
  const reload = h('button', { type: 'button', class: 'quiet', onclick: () => load() }, '重新加载');
  const slot = h('div');
  const formId = uid('rules');
  // The status line sits by the buttons, where the operator is when saving.
  const form = h('form', { id: formId, 'aria-labelledby': 'page-title', novalidate: true }, slot,
    line.el, h('div', { class: 'form-actions' }, save, reset));
  root.replaceChildren(pageHead(title, reload), source, form);
  let current = null;

  const show = (answer) => {
    source.textContent = answer.stored ? '当前使用：已保存的规则。' : '当前使用：默认规则（所有消息都转人工）。';
    current = buildForm(answer.rules ?? {}, webhook);
    slot.replaceChildren(current.el);
  };

  let webhook = true;
  async function load() {
    root.dataset.state = 'loading';
    line.clear();
    try {
      const [answer, health] = await Promise.all([api('/api/rules'), api('/healthz', { auth: false }).catch(() => null)]);
      if (!ctx.alive()) return;
      webhook = health?.features?.alerts ?? true;
      show(answer);
    } catch (err) {
      if (!ctx.alive()) return;
      source.textContent = '';
      line.error(err.message);
    }
    root.dataset.state = 'ready';
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!current) return;
    clearFieldErrors(form);
    line.clear();
    busy(save, async () => {
      try {
        const answer = await api('/api/rules', { method: 'PUT', json: current.collect() });
        show(answer);
        line.ok('规则已保存，立即生效（其他实例最多 30 秒内生效）。');
      } catch (err) {
        const { control, item } = err.field ? current.controlOf(err.field) : { control: null };
        if (control) {
          const what = reason(err.body?.message) || err.message;
          setFieldError(control, item ? `第 ${item} 项：${what}` : what);
          const hidden = control.closest('[hidden]');
          if (hidden) hidden.hidden = false;
          control.focus();
          control.scrollIntoView({ block: 'center' });
        }
        line.error(`没有保存：${err.message}`);
      }
    });
  });

  reset.addEventListener('click', () => {
    // eslint-disable-next-line no-alert
    if (!window.confirm('确定删除已保存的规则、恢复默认吗？恢复后所有消息都直接转人工。')) return;
    busy(reset, async () => {
      try {
        await api('/api/rules', { method: 'DELETE' });
        await load();
        line.ok('已恢复默认规则。');
      } catch (err) {
        line.error(err.message);
      }
    });
  });

  load();
}
