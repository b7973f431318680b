// 会话: who waits (GET /api/kf/waitcase), an agent's sessions (GET /api/kf/sessions?kf_account=),
// opening and closing a session (POST / DELETE /api/kf/sessions), sending a message as an agent
// (POST /api/messages): text, an image uploaded on the spot (POST /api/media?type=image), or any
// other msgtype as JSON that the API validates; and a user's timeline (GET /api/ledger).
import { api } from '../lib/api.js';
import { h, field, busy, replace, dateTime, duration, setFieldError, clearFieldErrors } from '../lib/dom.js';
import { pageHead, card, fill, statusLine, loadAgents } from '../lib/ui.js';

export const title = '会话';

/** The payload of each msgtype the JSON editor offers, as the custom/send API documents it. */
const TEMPLATES = {
  voice: { voice: { media_id: 'MEDIA_ID' } },
  video: { video: { media_id: 'MEDIA_ID', thumb_media_id: 'THUMB_MEDIA_ID', title: '标题', description: '描述' } },
  music: { music: { title: '标题', description: '描述', musicurl: 'https://example.com/a.mp3', hqmusicurl: 'https://example.com/a.mp3', thumb_media_id: 'THUMB_MEDIA_ID' } },
  news: { news: { articles: [{ title: '标题', description: '描述', url: 'https://example.com/', picurl: 'https://example.com/a.jpg' }] } },
  mpnews: { mpnews: { media_id: 'MEDIA_ID' } },
  mpnewsarticle: { mpnewsarticle: { article_id: 'ARTICLE_ID' } },
  msgmenu: { msgmenu: { head_content: '您对本次服务是否满意？', list: [{ id: '101', content: '满意' }, { id: '102', content: '不满意' }], tail_content: '欢迎再次光临' } },
  wxcard: { wxcard: { card_id: 'CARD_ID' } },
  miniprogrampage: { miniprogrampage: { title: '标题', appid: 'APPID', pagepath: 'pages/index/index', thumb_media_id: 'THUMB_MEDIA_ID' } },
};
const TYPE_NAMES = {
  voice: '语音', video: '视频', music: '音乐', news: '图文（外链）', mpnews: '图文（素材）', mpnewsarticle: '已发布的图文',
  msgmenu: '菜单', wxcard: '卡券', miniprogrampage: '小程序卡片',
};

const jsonTemplate = (type) => JSON.stringify({ msgtype: type, ...TEMPLATES[type] }, null, 2);

/** The ledger's names, as an operator reads them. Unknown names are shown as they are. */
const LEDGER_WHAT = {
  text: '文字消息', image: '图片消息', voice: '语音消息', video: '视频消息', shortvideo: '小视频消息',
  location: '位置消息', link: '链接消息', file: '文件消息', miniprogrampage: '小程序卡片消息', unknown: '其他消息',
  'event:subscribe': '关注', 'event:unsubscribe': '取消关注', 'event:kf_create_session': '客服接入会话',
  'event:kf_close_session': '客服关闭会话', 'event:kf_switch_session': '会话转接',
  notice_closed: '非工作时间通知', notice_no_agent: '无客服在线通知', alert_waiting: '等待提醒（发给客服群）',
  greeting: '接入问候', farewell: '结束语', remember_request: '记住转人工请求',
};
const LEDGER_OUTCOME = {
  transfer: '转给客服', keyword: '关键词回复', welcome: '关注欢迎语', gate_prompt: '提示回复“人工”',
  closed: '非工作时间回复', no_agent: '无客服在线回复', success: '已接收',
  sent: '已发送', done: '已完成', skipped: '已跳过', failed: '失败',
};
const LEDGER_DETAIL = { closed: '非工作时间', no_agent: '无客服在线' };
const ledgerName = (names, key) => names[key] ?? key;

export function render(root, ctx) {
  const agentSelect = h('select', {}, h('option', { value: '' }, '加载中…'));
  const waitCard = card('排队中的用户');
  const sessionsCard = card('这位客服的会话');
  const openCard = card('接入指定用户');
  const sendCard = card('发送客服消息');
  const timelineCard = card('用户时间线');
  const refresh = h('button', { type: 'button', class: 'quiet', onclick: () => loadLists() }, '刷新');
  root.replaceChildren(
    pageHead(title, refresh),
    h('div', { class: 'toolbar' }, field('以这位客服的身份操作', agentSelect, { hint: '接入、关闭会话和发消息都用这个客服账号。' })),
    h('div', { class: 'grid two' }, waitCard.el, sessionsCard.el),
    h('div', { class: 'grid two' }, sendCard.el, openCard.el),
    timelineCard.el,
  );

  const kf = () => agentSelect.value;

  // --- sending -------------------------------------------------------------------------------
  const touser = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'oXXXXXXXXXXXXXXXXXXXXXXXXXXX' });
  const kindName = 'msgkind';
  const kinds = [['text', '文字'], ['image', '图片'], ['json', '其他类型（JSON）']];
  const radios = kinds.map(([value, label], i) => h('label', { class: 'choice' },
    h('input', { type: 'radio', name: kindName, value, checked: i === 0 }), label));
  const kindSet = h('fieldset', { class: 'choices' }, h('legend', {}, '消息类型'), radios);
  const text = h('textarea', { rows: 4, maxlength: 2048 });
  const image = h('input', { type: 'file', accept: 'image/jpeg,image/png,image/gif' });
  const jsonType = h('select', {}, Object.keys(TEMPLATES).map((t) => h('option', { value: t }, `${TYPE_NAMES[t]}（${t}）`)));
  const jsonText = h('textarea', { rows: 10, spellcheck: 'false', class: 'code', value: jsonTemplate('voice') });
  const templateButton = h('button', { type: 'button', class: 'quiet' }, '换成这个类型的模板');
  templateButton.addEventListener('click', () => { jsonText.value = jsonTemplate(jsonType.value); });
  const parts = {
    text: field('内容', text),
    image: field('图片（JPG、PNG 或 GIF，最大 10 MB）', image, { hint: '先上传为临时素材，再作为图片消息发送。' }),
    json: h('div', {}, field('JSON 模板', jsonType), templateButton,
      field('消息 JSON', jsonText, { hint: '写 msgtype 和它的内容；接收用户和客服账号由上面的表单填入。' })),
  };
  const sendLine = statusLine();
  const sendButton = h('button', { type: 'submit' }, '发送');
  const sendForm = h('form', { 'aria-label': '发送客服消息' },
    field('接收用户 OpenID', touser), kindSet, parts.text, parts.image, parts.json, sendButton, sendLine.el);
  const kind = () => sendForm.querySelector(`input[name=${kindName}]:checked`).value;
  const showKind = () => { for (const [k, el] of Object.entries(parts)) el.hidden = k !== kind(); };
  kindSet.addEventListener('change', showKind);
  showKind();
  sendCard.body.append(sendForm);

  /** The control that a field of the custom/send body (as the API names it) belongs to. */
  const controlOf = (path) => {
    if (path === 'touser') return touser;
    if (path.startsWith('customservice')) return agentSelect;
    if (path.startsWith('text')) return kind() === 'text' ? text : jsonText;
    if (path.startsWith('image') && kind() === 'image') return image;
    return kind() === 'json' ? jsonText : null;
  };

  async function send() {
    const who = touser.value.trim();
    if (!who) throw Object.assign(new Error('请填写接收用户的 OpenID。'), { control: touser });
    let body;
    const k = kind();
    if (k === 'text') {
      if (!text.value.trim()) throw Object.assign(new Error('请填写消息内容。'), { control: text });
      body = { touser: who, msgtype: 'text', text: { content: text.value } };
    } else if (k === 'image') {
      const f = image.files[0];
      if (!f) throw Object.assign(new Error('请选择一张图片。'), { control: image });
      sendLine.ok('正在上传图片…');
      const media = await api('/api/media?type=image', { method: 'POST', body: f, type: f.type || 'application/octet-stream' });
      body = { touser: who, msgtype: 'image', image: { media_id: media.media_id } };
    } else {
      let doc;
      try {
        doc = JSON.parse(jsonText.value);
      } catch (err) {
        throw Object.assign(new Error(`JSON 格式错误：${err.message}`), { control: jsonText });
      }
      if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw Object.assign(new Error('消息 JSON 必须是一个对象。'), { control: jsonText });
      const { touser: _t, customservice: _c, ...rest } = doc;
      body = { touser: who, ...rest };
    }
    if (kf()) body.customservice = { kf_account: kf() };
    await api('/api/messages', { method: 'POST', json: body });
    if (k === 'text') text.value = '';
    if (k === 'image') image.value = '';
    return `已发送给 ${who}${kf() ? `（以 ${kf()} 的身份）` : ''}`;
  }

  sendForm.addEventListener('submit', (e) => {
    e.preventDefault();
    clearFieldErrors(sendForm);
    clearFieldErrors(agentSelect.closest('.field'));
    sendLine.clear();
    busy(sendButton, async () => {
      try {
        const msg = await send();
        sendLine.ok(msg);
      } catch (err) {
        const control = err.control ?? (err.field ? controlOf(err.field) : null);
        if (control) setFieldError(control, err.message);
        sendLine.error(err.message);
      }
    });
  });

  const writeTo = (openid) => h('button', {
    type: 'button', class: 'quiet', 'aria-label': `给 ${openid} 发消息`,
    onclick: () => { touser.value = openid; (kind() === 'text' ? text : touser).focus(); },
  }, '发消息');

  // --- sessions ------------------------------------------------------------------------------
  async function session(method, openid, button) {
    if (!kf()) { ctx.toast('请先选择客服账号。', 'error'); return; }
    await busy(button, async () => {
      try {
        await api('/api/kf/sessions', { method, json: { kf_account: kf(), openid } });
        ctx.toast(method === 'POST' ? `${kf()} 已接入 ${openid}` : `已关闭 ${openid} 的会话`);
        loadLists();
      } catch (err) {
        ctx.toast(err.message, 'error');
      }
    });
  }

  const waiting = (d) => {
    const users = d.waitcaselist ?? [];
    if (!users.length) return h('p', { class: 'muted' }, '没有用户在排队。');
    const now = Date.now() / 1000;
    return [
      h('p', {}, `共 ${d.count ?? users.length} 位用户在排队`),
      h('ul', { class: 'rows', 'aria-label': '排队中的用户' }, users.map((u) => {
        const take = h('button', { type: 'button', 'aria-label': `接入 ${u.openid}` }, '接入');
        take.addEventListener('click', () => session('POST', u.openid, take));
        return h('li', {},
          h('div', {}, h('code', {}, u.openid),
            h('p', { class: 'muted' }, `排队自 ${dateTime(u.latest_time)}（已等待 ${duration(now - Number(u.latest_time))}）`)),
          h('div', { class: 'row-actions' }, take, writeTo(u.openid), timelineOf(u.openid)));
      })),
    ];
  };

  const sessions = (d) => {
    const list = d.sessionlist ?? [];
    if (!list.length) return h('p', { class: 'muted' }, '这位客服现在没有会话。');
    return h('ul', { class: 'rows', 'aria-label': '会话列表' }, list.map((s) => {
      const close = h('button', { type: 'button', class: 'danger', 'aria-label': `关闭与 ${s.openid} 的会话` }, '关闭会话');
      close.addEventListener('click', () => session('DELETE', s.openid, close));
      return h('li', {},
        h('div', {}, h('code', {}, s.openid), h('p', { class: 'muted' }, `开始于 ${dateTime(s.createtime)}`)),
        h('div', { class: 'row-actions' }, close, writeTo(s.openid)));
    }));
  };

  function loadLists() {
    root.dataset.state = 'loading';
    const jobs = [fill(waitCard.body, api('/api/kf/waitcase'), waiting)];
    if (kf()) {
      sessionsCard.heading.textContent = `${agentSelect.selectedOptions[0]?.textContent ?? kf()} 的会话`;
      jobs.push(fill(sessionsCard.body, api(`/api/kf/sessions?kf_account=${encodeURIComponent(kf())}`), sessions));
    } else {
      sessionsCard.heading.textContent = '这位客服的会话';
      replace(sessionsCard.body, h('p', { class: 'muted' }, '选择一位客服，查看他的会话。'));
    }
    Promise.all(jobs).then(() => { if (ctx.alive()) root.dataset.state = 'ready'; });
  }

  // --- a user's timeline (the ledger) -------------------------------------------------------------
  const ledgerOpenid = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'oXXXXXXXXXXXXXXXXXXXXXXXXXXX' });
  const ledgerButton = h('button', { type: 'submit' }, '查看');
  const ledgerLine = statusLine();
  const ledgerList = h('ol', { class: 'rows timeline', 'aria-label': '时间线' });
  const moreButton = h('button', { type: 'button', class: 'quiet', hidden: true }, '更早的记录');
  const ledgerForm = h('form', { 'aria-label': '查看用户时间线' },
    field('用户 OpenID', ledgerOpenid, { hint: '这位用户的每条消息、系统的处理和之后的通知、提醒（不含消息内容），最新的在前。' }),
    ledgerButton, ledgerLine.el);
  timelineCard.body.append(ledgerForm, ledgerList, moreButton);
  let shownFor = null;
  let nextCursor = null;

  const ledgerRow = (r) => h('li', {},
    h('div', {},
      h('p', {}, h('strong', {}, ledgerName(LEDGER_WHAT, r.what)), ' → ', ledgerName(LEDGER_OUTCOME, r.outcome),
        r.kf_account ? [' · ', h('code', {}, r.kf_account)] : null,
        r.detail ? ` · ${ledgerName(LEDGER_DETAIL, r.detail)}` : null),
      h('p', { class: 'muted' }, `${dateTime(r.at)} · ${r.entry === 'push' ? '收到' : '之后'}`)));

  async function loadTimeline(openid, cursor) {
    const query = cursor ? `openid=${encodeURIComponent(openid)}&cursor=${encodeURIComponent(cursor)}` : `openid=${encodeURIComponent(openid)}`;
    const page = await api(`/api/ledger?${query}`);
    if (!cursor) replace(ledgerList);
    ledgerList.append(...page.rows.map(ledgerRow));
    shownFor = openid;
    nextCursor = page.next;
    moreButton.hidden = !nextCursor;
    if (!cursor) ledgerLine.ok(page.rows.length ? `${openid} 的记录` : `没有 ${openid} 的记录（保留 90 天，可在规则中调整）`);
  }

  const showTimeline = (button, cursor) => busy(button, async () => {
    clearFieldErrors(ledgerForm);
    try {
      await loadTimeline(cursor ? shownFor : ledgerOpenid.value.trim(), cursor);
    } catch (err) {
      if (!cursor) {
        // Not the rows of the user asked for: none.
        replace(ledgerList);
        moreButton.hidden = true;
      }
      if (err.field === 'openid') setFieldError(ledgerOpenid, err.message);
      ledgerLine.error(err.message);
    }
  });
  ledgerForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!ledgerOpenid.value.trim()) { setFieldError(ledgerOpenid, '请填写用户的 OpenID。'); return; }
    showTimeline(ledgerButton);
  });
  moreButton.addEventListener('click', () => showTimeline(moreButton, nextCursor));

  function timelineOf(openid) {
    return h('button', {
      type: 'button', class: 'quiet', 'aria-label': `查看 ${openid} 的时间线`,
      onclick: (e) => { ledgerOpenid.value = openid; showTimeline(e.currentTarget); timelineCard.el.scrollIntoView({ block: 'start' }); },
    }, '时间线');
  }

  // --- open a session for any user -------------------------------------------------------------
  const openid = h('input', { type: 'text', required: true, autocomplete: 'off', spellcheck: 'false' });
  const openButton = h('button', { type: 'submit' }, '接入会话');
  const openForm = h('form', { 'aria-label': '接入指定用户' },
    field('用户 OpenID', openid, { hint: '由选中的客服主动接入这位用户（用户须在 48 小时内与公众号互动过）。' }), openButton);
  openForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const id = openid.value.trim();
    if (id) session('POST', id, openButton);
  });
  openCard.body.append(openForm);

  agentSelect.addEventListener('change', loadLists);
  loadAgents().then(({ list }) => {
    if (!ctx.alive()) return;
    replace(agentSelect,
      list.map((a) => h('option', { value: a.kf_account }, `${a.kf_nick || a.kf_account}（${a.kf_account}）${a.online ? '' : ' · 离线'}`)),
      h('option', { value: '' }, '（不指定客服）'));
    loadLists();
  }, (err) => {
    if (!ctx.alive()) return;
    replace(agentSelect, h('option', { value: '' }, '（客服列表未能加载）'));
    ctx.toast(err.message, 'error');
    loadLists();
  });
}
