// 数据: service levels from GET /api/stats — how long users wait for an agent, how fast agents
// answer, who was never picked up, and each agent's share. Charts are uPlot (canvas, ~50 KB
// minified, no dependencies, no eval or HTML strings: it runs under the console's CSP and Trusted
// Types); a canvas says nothing to a screen reader, so every chart is followed by a table of the
// same numbers, which also copies cleanly into a spreadsheet. Times are in the rules' timezone
// (the report's `timezone`), not the browser's.
import uPlot from 'uplot';
import { api } from '../lib/api.js';
import { h, field, replace } from '../lib/dom.js';
import { pageHead, card, statusLine } from '../lib/ui.js';

export const title = '数据';

const DAY = 86400;
const pad = (n) => String(n).padStart(2, '0');
const DASH = '—';

/** The report's `+08:00` in seconds. */
function offsetSecs(tz) {
  const m = /^([+-])(\d\d):(\d\d)$/.exec(tz ?? '+08:00');
  if (!m) return 8 * 3600;
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 3600 + Number(m[3]) * 60);
}

/** Unix seconds as `MM-DD` or `MM-DD HH:MM` in the report's timezone. */
function label(secs, offset, hourly) {
  const d = new Date((secs + offset) * 1000);
  const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  // (At an offset of half hours, an hour bucket starts at :30.)
  return hourly ? `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` : day;
}

/** A count, or — for no data (never 0 or NaN in its place). */
const count = (v) => (v == null ? DASH : String(v));

/** Seconds in words for the tables and cards: `45 秒`, `3 分 20 秒`, `1 小时 5 分`. */
function secs(v) {
  if (v == null) return DASH;
  if (v < 60) return `${v} 秒`;
  if (v < 3600) return `${Math.floor(v / 60)} 分 ${v % 60} 秒`;
  return `${Math.floor(v / 3600)} 小时 ${Math.floor((v % 3600) / 60)} 分`;
}

const share = (part, whole) => (part == null || !whole ? DASH : `${Math.round((part / whole) * 100)}%`);

/** The range of a preset, in Unix seconds: today, or the last 7 or 30 days (today included). */
function preset(name, offset) {
  const now = Math.floor(Date.now() / 1000);
  const today = now - ((now + offset) % DAY + DAY) % DAY;
  const days = { today: 1, week: 7, month: 30 }[name];
  return { from: today - (days - 1) * DAY, to: now, bucket: name === 'today' ? 'hour' : 'day' };
}

/** A `YYYY-MM-DD` date input's day as Unix seconds at the start (or end) of it, in the timezone. */
function dayOf(value, offset, end = false) {
  const [y, m, d] = value.split('-').map(Number);
  const start = Date.UTC(y, m - 1, d) / 1000 - offset;
  return end ? start + DAY - 1 : start;
}

function dateValue(secs, offset) {
  const d = new Date((secs + offset) * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** A table of `rows` (arrays of cells) under `headers`, captioned. */
function table(caption, headers, rows) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', { class: 'numbers' },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c))))))));
}

const COLORS = ['#07a35a', '#1565c0', '#b26a00', '#c62828'];

/**
 * A chart of `series` ([name, values, format]) over the buckets, and the same numbers as a
 * table. uPlot draws `null` as a gap: a bucket without data is not a zero.
 */
function chart(titleText, report, series, { durations = false } = {}, max = null) {
  const c = card(titleText, { cls: 'chart-card' });
  const offset = offsetSecs(report.timezone);
  const hourly = report.bucket === 'hour';
  const xs = report.buckets.map((b) => b.start + offset);
  const plot = h('div', { class: 'chart', role: 'img', 'aria-label': `${titleText}图表，数字见下表` });
  // The table: the chart's series, and a duration's maximum (too far off the chart's scale).
  const columns = max ? [...series, ['最长', max, secs]] : series;
  c.body.append(plot, table(titleText, ['时段', ...columns.map(([name]) => name)],
    report.buckets.map((b, i) => [label(b.start, offset, hourly), ...columns.map(([, values, fmt]) => fmt(values[i]))])));
  const opts = {
    width: 320,
    height: 200,
    // The x values are the report's local times written as UTC: read them back as UTC.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'UTC'),
    scales: { x: { time: true } },
    // Durations on the y axis in minutes (a median of seconds beside a maximum of hours is
    // unreadable: the table has the maximum).
    axes: [{
      stroke: '#5f6b76',
      // 24-hour times, Chinese-style dates: `08:00` by hour, `12-07` by day.
      values: (u, ticks) => ticks.map((t) => {
        const d = new Date(t * 1000);
        const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
        if (!hourly) return day;
        const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
        return report.buckets.length > 24 ? `${day} ${time}` : time;
      }),
    }, {
      stroke: '#5f6b76',
      size: 56,
      ...(durations ? { values: (u, ticks) => ticks.map((v) => `${Math.round(v / 6) / 10} 分`) } : {}),
    }],
    legend: { show: true },
    series: [
      { label: '时段', value: (u, v) => (v == null ? DASH : label(v - offset, offset, hourly)) },
      ...series.map(([name, , fmt], i) => ({
        label: name,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        value: (u, v) => fmt(v),
        points: { show: report.buckets.length < 40 },
      })),
    ],
  };
  const data = [xs, ...series.map(([, values]) => values.map((v) => (v == null ? null : v)))];
  return { el: c.el, mount: () => new uPlot(opts, data, plot), plot };
}

/** The totals as cards: what an operator reads first. */
function summary(t) {
  const items = [
    ['用户消息', count(t.messages)],
    ['用户数', count(t.users)],
    ['转人工用户', count(t.users_transferred)],
    ['非工作时间消息', share(t.after_hours, t.messages)],
    ['排队等待（中位数）', secs(t.queue_wait_secs.median)],
    ['首次响应（中位数）', secs(t.first_response_secs.median)],
    ['未及时接待', count(t.unanswered)],
    ['当天未接待', count(t.never_answered)],
    ['会话数', count(t.sessions)],
  ];
  return h('dl', { class: 'kpis', 'aria-label': '合计' }, items.map(([k, v]) => h('div', { class: 'kpi' }, h('dt', {}, k), h('dd', {}, v))));
}

function agentsTable(totals) {
  const rows = Object.entries(totals.agents ?? {}).map(([kf, a]) => [
    kf, count(a.sessions), count(a.users), count(a.switches),
    secs(a.queue_wait_secs.median), secs(a.first_response_secs.median), secs(a.session_secs.median),
  ]);
  if (rows.length === 0) return h('p', { class: 'muted' }, '这段时间没有客服接待记录。');
  return table('各客服（合计）', ['客服账号', '会话数', '接入用户', '转入', '排队等待中位数', '首次响应中位数', '会话时长中位数'], rows);
}

export function render(root, ctx) {
  let offset = 8 * 3600;
  let range = preset('week', offset);
  let chosen = 'week';
  const presets = [['today', '今天'], ['week', '7 天'], ['month', '30 天']].map(([name, text]) =>
    h('button', { type: 'button', class: 'quiet', 'data-preset': name, 'aria-pressed': String(name === chosen) }, text));
  const from = h('input', { type: 'date', required: true });
  const to = h('input', { type: 'date', required: true });
  const bucket = h('select', {}, h('option', { value: 'day' }, '按天'), h('option', { value: 'hour' }, '按小时'));
  const apply = h('button', { type: 'submit' }, '查询');
  const csv = h('button', { type: 'button', class: 'quiet' }, '导出 CSV');
  const form = h('form', { class: 'inline stats-range', 'aria-label': '统计范围' },
    field('开始日期', from), field('结束日期', to), field('粒度', bucket, { hint: '按小时最多 92 天，按天最多 400 天。' }), apply);
  const line = statusLine();
  const results = h('div', { class: 'stats-results' });
  root.replaceChildren(pageHead(title, csv), h('div', { class: 'presets', role: 'group', 'aria-label': '时间范围' }, presets), form, line.el, results);

  const showRange = () => {
    from.value = dateValue(range.from, offset);
    to.value = dateValue(range.to, offset);
    bucket.value = range.bucket;
    for (const b of presets) b.setAttribute('aria-pressed', String(b.dataset.preset === chosen));
  };
  const query = () => `from=${range.from}&to=${range.to}&bucket=${range.bucket}`;

  let plots = [];
  /** The charts go when the operator leaves the page (uPlot's listeners with them). */
  const release = () => {
    observer.disconnect();
    for (const { u } of plots) u.destroy();
    plots = [];
  };
  const observer = new ResizeObserver(() => {
    if (!ctx.alive()) return release();
    for (const { u, plot } of plots) u.setSize({ width: Math.max(260, plot.clientWidth), height: 200 });
    return undefined;
  });
  window.addEventListener('hashchange', release, { once: true });

  // Only the newest request's answer is shown (a preset pressed twice quickly).
  let asked = 0;
  async function load() {
    const mine = ++asked;
    line.clear();
    root.dataset.state = 'loading';
    replace(results, h('p', { class: 'muted' }, '加载中…'));
    let report;
    try {
      report = await api(`/api/stats?${query()}`);
    } catch (err) {
      if (!ctx.alive() || mine !== asked) return;
      replace(results, h('p', { class: 'error' }, err.message));
      root.dataset.state = 'error';
      return;
    }
    if (!ctx.alive() || mine !== asked) return;
    const tz = offsetSecs(report.timezone);
    if (tz !== offset) {
      // The rules' timezone is not the default: the presets' days are its days.
      offset = tz;
      if (chosen) range = preset(chosen, offset);
      showRange();
      if (chosen) return load();
    }
    for (const { u } of plots) u.destroy();
    const b = report.buckets;
    const pick = (f) => b.map((x) => f(x));
    const charts = [
      chart('消息与用户', report, [
        ['用户消息', pick((x) => x.messages), count],
        ['用户数', pick((x) => x.users), count],
        ['转人工用户', pick((x) => x.users_transferred), count],
      ]),
      chart('排队等待', report, [
        ['中位数', pick((x) => x.queue_wait_secs.median), secs],
        ['P90', pick((x) => x.queue_wait_secs.p90), secs],
      ], { durations: true }, pick((x) => x.queue_wait_secs.max)),
      chart('首次响应', report, [
        ['中位数', pick((x) => x.first_response_secs.median), secs],
        ['P90', pick((x) => x.first_response_secs.p90), secs],
      ], { durations: true }, pick((x) => x.first_response_secs.max)),
      chart('会话与未接待', report, [
        ['会话数', pick((x) => x.sessions), count],
        ['未及时接待', pick((x) => x.unanswered), count],
        ['当天未接待', pick((x) => x.never_answered), count],
      ]),
    ];
    const agents = card('各客服');
    agents.body.append(agentsTable(report.totals));
    const note = h('p', { class: 'hint' },
      `时间按规则的时区（${report.timezone}）。“未及时接待”：转人工后 ${report.unanswered_after_secs} 秒内没有客服接入；`,
      '“当天未接待”：当天一直没有客服接入。首次响应需要在规则里开启“统计客服首次响应时间”。');
    const behind = report.up_to_date ? null : h('p', { class: 'form-status error', role: 'status' }, '最近的记录较多，还没有全部统计进来：稍后刷新即可看到。');
    replace(results, behind, summary(report.totals), h('div', { class: 'grid two' }, charts.map((c) => c.el)), agents.el, note);
    // One short line for screen readers, not the whole report.
    line.ok(`已更新：${from.value} 至 ${to.value}，${report.bucket === 'hour' ? '按小时' : '按天'}。`);
    plots = charts.map((c) => ({ u: c.mount(), plot: c.plot }));
    observer.disconnect();
    for (const { plot } of plots) observer.observe(plot);
    root.dataset.state = 'ready';
  }

  for (const b of presets) {
    b.addEventListener('click', () => {
      chosen = b.dataset.preset;
      range = preset(chosen, offset);
      showRange();
      load();
    });
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!from.value || !to.value) return line.error('请选择开始和结束日期。');
    const r = { from: dayOf(from.value, offset), to: dayOf(to.value, offset, true), bucket: bucket.value };
    if (r.from > r.to) return line.error('结束日期不能早于开始日期。');
    chosen = null;
    range = r;
    showRange();
    return load();
  });
  csv.addEventListener('click', async () => {
    csv.disabled = true;
    try {
      const blob = await api(`/api/stats?${query()}&format=csv`, { blob: true });
      const a = h('a', { href: URL.createObjectURL(blob), download: `数据-${from.value}-${to.value}.csv` });
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (err) {
      ctx.toast(`导出失败：${err.message}`, 'error');
    } finally {
      csv.disabled = false;
    }
  });
  showRange();
  load();
}
