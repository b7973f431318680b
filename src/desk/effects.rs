//! After the reply: notices to users, alerts to agents, session greetings, each at most once per
//! push.
//!
//! - [`plan`] (pure) turns a decided push into effects.
//! - [`alert_body`] and [`queue_alert`] (pure) write alerts and decide the cron's queue alert.
//! - [`run`] runs a push's effects over the runtime traits, once: an isolate remembers the pushes
//!   it ran effects for, and a store marker (TTL 60 s) is checked and written first, for the other
//!   isolates. Every outcome becomes a note in the request's log line (never message text).

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::api::http::{ApiCall, HttpCall};
use crate::app::App;
use crate::desk::appid;
use crate::desk::decide::{Decision, Reason};
use crate::desk::hours::{local, Offset};
use crate::desk::rules::{Alerts, FallbackAction, Rules};
use crate::error::{wechat_hint, Error};
use crate::json::{parse, Json, ObjectWriter};
use crate::runtime::{Clock, Runtime, Store, STORE_MIN_TTL_SECS};
use crate::wechat::message::{Event, Message, MessageKind};

/// How long a push's key is remembered (WeChat retries within ~15 s).
pub const ONCE_TTL_SECS: u64 = 60;
/// Most push keys an isolate remembers.
pub const MAX_KEYS: usize = 4096;
/// Alerts about credentials: at most one an hour.
pub const CREDENTIALS_EVERY_SECS: u64 = 3600;
/// How long agents' nicknames (`getkflist`) are kept.
pub const NICKNAMES_TTL_SECS: u64 = 600;
/// A WeCom robot's markdown content limit.
pub const MAX_WECOM_CONTENT_BYTES: usize = 4096;
/// Characters of the user's message an alert may quote (with `include_text`).
pub const EXCERPT_CHARS: usize = 100;

/// Why a user waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Situation {
    Closed,
    NoAgent,
}

impl Situation {
    pub fn as_str(&self) -> &'static str {
        match self {
            Situation::Closed => "closed",
            Situation::NoAgent => "no_agent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Greeting,
    Farewell,
}

/// One piece of work after the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The user asked for a human: remember it for `secs`.
    RememberRequest { secs: u64 },
    /// A customer-service text to the user, at most once per `every_secs` per situation.
    Notice { situation: Situation, text: String, every_secs: u64 },
    /// The agents' webhook: a user waits.
    WaitingAlert { situation: Situation, excerpt: Option<String> },
    /// A customer-service text as the agent (`{nickname}` replaced).
    Session { kind: SessionKind, kf_account: String, template: String },
}

/// A push's effects, with what running them needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// [`Message::dedup_key`].
    pub key: String,
    pub openid: String,
    pub effects: Vec<Effect>,
}

/// The first [`EXCERPT_CHARS`] characters of what the user sent (a text), or its type. Out of
/// line: only an alert that quotes the user needs it.
#[inline(never)]
fn excerpt(message: &Message) -> String {
    match &message.kind {
        MessageKind::Text { content } => content.chars().take(EXCERPT_CHARS).collect(),
        _ => format!("[{}]", message.label()),
    }
}

/// The effects of `decision` on `message` under `rules`; `None` when there are none.
pub fn plan(message: &Message, decision: &Decision<'_>, rules: &Rules) -> Option<Planned> {
    // Nearly every push has none: answered here, the planning below (out of line) is compiled
    // only by an isolate that meets a push with effects.
    if !decision.remember_request && decision.waiting().is_none() && session_event(message).is_none() {
        return None;
    }
    plan_effects(message, decision, rules)
}

/// The session `message` opens or closes, and its agent: what a session greeting or farewell
/// answers.
fn session_event(message: &Message) -> Option<(SessionKind, &String)> {
    match &message.kind {
        MessageKind::Event(Event::KfCreateSession { kf_account }) => Some((SessionKind::Greeting, kf_account)),
        MessageKind::Event(Event::KfCloseSession { kf_account }) => Some((SessionKind::Farewell, kf_account)),
        _ => None,
    }
}

/// The effects [`plan`] found a trigger for (a remembered request, a wait, a session event).
#[inline(never)]
fn plan_effects(message: &Message, decision: &Decision<'_>, rules: &Rules) -> Option<Planned> {
    let mut effects = Vec::new();
    if decision.remember_request {
        effects.push(Effect::RememberRequest { secs: rules.transfer.remember_secs });
    }
    if let Some(reason) = decision.waiting() {
        let (situation, fallback) = match reason {
            Reason::Closed => (Situation::Closed, &rules.closed),
            _ => (Situation::NoAgent, &rules.no_agent),
        };
        if let (FallbackAction::TransferAndNotify, Some(text)) = (fallback.action, &fallback.text) {
            effects.push(Effect::Notice { situation, text: text.clone(), every_secs: fallback.notify_every_secs });
        }
        if let Some(alerts) = rules.alerts.as_ref().filter(|a| a.waiting) {
            effects.push(Effect::WaitingAlert { situation, excerpt: alerts.include_text.then(|| excerpt(message)) });
        }
    }
    let session = session_event(message).and_then(|(kind, kf_account)| {
        let template = match kind {
            SessionKind::Greeting => &rules.sessions.greeting,
            SessionKind::Farewell => &rules.sessions.farewell,
        };
        template.as_ref().map(|t| (kind, kf_account, t))
    });
    if let Some((kind, kf_account, template)) = session {
        effects.push(Effect::Session { kind, kf_account: kf_account.clone(), template: template.clone() });
    }
    (!effects.is_empty()).then(|| Planned { key: message.dedup_key(), openid: message.from_user_name.clone(), effects })
}

/// What an alert says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertEvent {
    Waiting { situation: Situation, openid: String, excerpt: Option<String> },
    Queue { count: u64, longest_wait_secs: u64 },
    Credentials { errcode: i64 },
}

impl AlertEvent {
    pub fn name(&self) -> &'static str {
        match self {
            AlertEvent::Waiting { .. } => "waiting",
            AlertEvent::Queue { .. } => "queue",
            AlertEvent::Credentials { .. } => "credentials",
        }
    }
}

/// Text from users, made safe inside a WeCom markdown message: one line, and the characters
/// markdown acts on written as their full-width forms.
fn markdown_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            '<' => '＜',
            '>' => '＞',
            '[' => '［',
            ']' => '］',
            '(' => '（',
            ')' => '）',
            '*' => '＊',
            '#' => '＃',
            '`' => '｀',
            '_' => '＿',
            '~' => '～',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `YYYY-MM-DD HH:MM` at `offset`.
fn local_time(now: u64, offset: Offset) -> String {
    let (d, minute) = local(now, offset);
    format!("{:04}-{:02}-{:02} {:02}:{:02}", d.year, d.month, d.day, minute / 60, minute % 60)
}

/// The webhook's body for `event`: WeCom markdown (content at most 4,096 bytes) or plain JSON.
pub fn alert_body(alerts: &Alerts, event: &AlertEvent, appid: &str, now: u64, offset: Offset) -> Vec<u8> {
    if !alerts.wecom {
        let mut w = ObjectWriter::new();
        w.str("event", event.name()).str("appid", appid).num("at", now);
        match event {
            AlertEvent::Waiting { situation, openid, excerpt } => {
                w.str("situation", situation.as_str()).str("openid", openid);
                if let Some(text) = excerpt {
                    w.str("text", text);
                }
            }
            AlertEvent::Queue { count, longest_wait_secs } => {
                w.num("count", *count).num("longest_wait_secs", *longest_wait_secs);
            }
            AlertEvent::Credentials { errcode } => {
                w.int("errcode", *errcode).str("hint", wechat_hint(*errcode));
            }
        }
        return w.finish().into_bytes();
    }
    let mut content = match event {
        AlertEvent::Waiting { situation, openid, excerpt } => {
            let why = match situation {
                Situation::Closed => "非工作时间",
                Situation::NoAgent => "当前没有客服在线",
            };
            let mut c = format!(
                "**有用户在等待客服**\n> 情况：<font color=\"warning\">{why}</font>\n> 用户：{}",
                markdown_text(openid)
            );
            if let Some(text) = excerpt {
                c.push_str("\n> 消息：");
                c.push_str(&markdown_text(text));
            }
            c
        }
        AlertEvent::Queue { count, longest_wait_secs } => format!(
            "**客服排队提醒**\n> 等待接入：<font color=\"warning\">{count}</font> 人\n> 最久已等待：{} 分钟",
            longest_wait_secs / 60
        ),
        AlertEvent::Credentials { errcode } => format!(
            "**微信接口凭证错误**\n> 错误码：<font color=\"warning\">{errcode}</font>\n> 处理：{}",
            markdown_text(wechat_hint(*errcode))
        ),
    };
    content.push_str("\n> 公众号：");
    content.push_str(&markdown_text(appid));
    content.push_str("\n> 时间：");
    content.push_str(&local_time(now, offset));
    truncate(&mut content, MAX_WECOM_CONTENT_BYTES);
    let mut markdown = ObjectWriter::new();
    markdown.str("content", &content);
    let mut w = ObjectWriter::new();
    w.str("msgtype", "markdown").raw("markdown", &markdown.finish());
    w.finish().into_bytes()
}

/// The cron's queue alert from `getwaitcase`'s answer: when `count` reaches the threshold, or a
/// user has waited longer than `wait_secs`.
pub fn queue_alert(alerts: &Alerts, waitcase: &[u8], now: u64) -> Result<Option<AlertEvent>, Error> {
    let doc = parse(waitcase).map_err(|_| Error::Upstream("getwaitcase answered something that is not JSON"))?;
    let o = doc.as_object().ok_or(Error::Upstream("getwaitcase answered an unexpected shape"))?;
    let list = o.get("waitcaselist").and_then(Json::as_array).unwrap_or_default();
    let count = o.get("count").and_then(Json::as_u64).unwrap_or(list.len() as u64);
    let longest_wait_secs = list
        .iter()
        .filter_map(|w| w.as_object()?.get("latest_time")?.as_u64())
        .map(|t| now.saturating_sub(t))
        .max()
        .unwrap_or(0);
    let alert = count >= alerts.queue_threshold || (count > 0 && longest_wait_secs > alerts.wait_secs);
    Ok(alert.then_some(AlertEvent::Queue { count, longest_wait_secs }))
}

/// A customer-service text message body, optionally as an agent.
pub fn custom_text(openid: &str, text: &str, kf_account: Option<&str>) -> Vec<u8> {
    let mut content = ObjectWriter::new();
    content.str("content", text);
    let mut w = ObjectWriter::new();
    w.str("touser", openid).str("msgtype", "text").raw("text", &content.finish());
    if let Some(kf) = kf_account {
        let mut cs = ObjectWriter::new();
        cs.str("kf_account", kf);
        w.raw("customservice", &cs.finish());
    }
    w.finish().into_bytes()
}

/// `{nickname}` in `template` replaced with the agent's nickname, or the account's prefix.
pub fn fill_nickname(template: &str, kf_account: &str, nickname: Option<&str>) -> String {
    let name =
        nickname.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| kf_account.split('@').next().unwrap_or(kf_account));
    template.replace("{nickname}", name)
}

/// `kf_nick` of `kf_account` in `getkflist`'s answer.
pub fn nickname_in(kflist: &[u8], kf_account: &str) -> Option<String> {
    let doc = parse(kflist).ok()?;
    doc.as_object()?.get("kf_list")?.as_array()?.iter().find_map(|kf| {
        let kf = kf.as_object()?;
        (kf.get("kf_account")?.as_str()? == kf_account).then(|| kf.get("kf_nick")?.as_str().map(str::to_string))?
    })
}

/// What an isolate remembers for the effects.
#[derive(Debug, Default)]
pub struct EffectsState {
    /// Keys of the pushes whose effects this isolate ran, with when to forget them.
    ran: RefCell<VecDeque<(String, u64)>>,
    /// `getkflist`'s answer and until when to use it.
    kflist: RefCell<Option<(u64, Vec<u8>)>>,
    /// When this isolate last alerted a credential failure.
    credentials_alerted: RefCell<Option<u64>>,
    /// Rate limits this isolate set (key, until when): they hold here even when the store does
    /// not (KV failing, or its daily write quota used up), and spare a read.
    limited: RefCell<Vec<(String, u64)>>,
}

impl EffectsState {
    /// Marks `key` as run at `now`; false when it already was (a retried push).
    fn first_time(&self, key: &str, now: u64) -> bool {
        let mut ran = self.ran.borrow_mut();
        while ran.front().is_some_and(|(_, until)| *until <= now) || ran.len() >= MAX_KEYS {
            ran.pop_front();
        }
        if ran.iter().any(|(k, _)| k == key) {
            return false;
        }
        ran.push_back((key.to_string(), now.saturating_add(ONCE_TTL_SECS)));
        true
    }

    /// Whether this isolate set the rate limit `key` and it still holds at `now`.
    fn is_limited(&self, key: &str, now: u64) -> bool {
        self.limited.borrow().iter().any(|(k, until)| k == key && *until > now)
    }

    fn limit(&self, key: &str, until: u64, now: u64) {
        let mut limited = self.limited.borrow_mut();
        limited.retain(|(_, until)| *until > now);
        if limited.len() >= MAX_KEYS {
            limited.remove(0);
        }
        limited.push((key.to_string(), until));
    }
}

/// Runs `planned` once (see the module). Every outcome is a note in the log line.
pub async fn run<R: Runtime>(app: &App<R>, rules: &Rules, planned: Planned) {
    let now = app.rt.clock().now();
    if !app.isolate.effects.first_time(&planned.key, now) {
        app.note("effects skipped: already run for this push (a retry)".into());
        return;
    }
    let marker = format!("once:{}:{}", appid(app), crate::wechat::signature::sign(&[&planned.key]));
    match app.rt.store().get(&marker).await {
        Ok(Some(_)) => {
            app.note("effects skipped: another isolate ran them (a retry)".into());
            return;
        }
        Ok(None) => {
            let _ = app.rt.store().put(&marker, "1", Some(ONCE_TTL_SECS)).await;
        }
        Err(_) => app.note("effects: the store failed, running them on this isolate's word".into()),
    }
    for effect in planned.effects {
        run_one(app, rules, &planned.openid, effect).await;
    }
}

/// Sets the rate-limit marker `key` for `secs` unless it is set (in this isolate or the
/// store): false when it was.
async fn first_in<R: Runtime>(app: &App<R>, key: &str, secs: u64) -> bool {
    let now = app.rt.clock().now();
    if app.isolate.effects.is_limited(key, now) {
        return false;
    }
    if let Ok(Some(_)) = app.rt.store().get(key).await {
        return false;
    }
    let secs = secs.max(STORE_MIN_TTL_SECS);
    let _ = app.rt.store().put(key, "1", Some(secs)).await;
    app.isolate.effects.limit(key, now.saturating_add(secs), now);
    true
}

async fn run_one<R: Runtime>(app: &App<R>, rules: &Rules, openid: &str, effect: Effect) {
    match effect {
        Effect::RememberRequest { secs } => {
            crate::desk::remember_request(app, openid, secs).await;
            app.note("transfer request remembered".into());
        }
        Effect::Notice { situation, text, every_secs } => {
            let what = format!("notice {}", situation.as_str());
            let key = format!("notified:{}:{}:{openid}", appid(app), situation.as_str());
            if !first_in(app, &key, every_secs).await {
                app.note(format!("{what} skipped: sent to this user within {every_secs} s"));
                return;
            }
            let outcome = send_text(app, openid, &text, None).await;
            app.note(format!("{what} {outcome}"));
        }
        Effect::WaitingAlert { situation, excerpt } => {
            let Some(alerts) = rules.alerts.as_ref() else { return };
            let key = format!("alerted:{}:waiting:{openid}", appid(app));
            if !first_in(app, &key, alerts.every_secs).await {
                app.note(format!("alert waiting skipped: sent for this user within {} s", alerts.every_secs));
                return;
            }
            let event = AlertEvent::Waiting { situation, openid: openid.to_string(), excerpt };
            alert(app, rules, &event).await;
        }
        Effect::Session { kind, kf_account, template } => {
            let what = match kind {
                SessionKind::Greeting => "greeting",
                SessionKind::Farewell => "farewell",
            };
            let nickname = nickname(app, &kf_account).await;
            let text = fill_nickname(&template, &kf_account, nickname.as_deref());
            let outcome = send_text(app, openid, &text, Some(&kf_account)).await;
            app.note(format!("{what} {outcome}"));
        }
    }
}

/// A customer-service text; never retried (45015, outside the 48-hour window, and 45047, the
/// quota, would not change). Answers "sent" or why not.
async fn send_text<R: Runtime>(app: &App<R>, openid: &str, text: &str, kf_account: Option<&str>) -> String {
    let call = ApiCall::post("/cgi-bin/message/custom/send", custom_text(openid, text, kf_account));
    let result = match app.api() {
        Ok(api) => api.call(&call).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => "sent".into(),
        Err(e) => format!("failed: {e}"),
    }
}

/// The agent's nickname from `getkflist` (kept [`NICKNAMES_TTL_SECS`] in memory and the store).
async fn nickname<R: Runtime>(app: &App<R>, kf_account: &str) -> Option<String> {
    let now = app.rt.clock().now();
    let cached = app.isolate.effects.kflist.borrow().as_ref().filter(|(until, _)| now < *until).map(|(_, l)| l.clone());
    if let Some(list) = cached {
        return nickname_in(&list, kf_account);
    }
    let key = format!("kf_list:{}", appid(app));
    let list = match app.rt.store().get(&key).await {
        Ok(Some(list)) => list.into_bytes(),
        _ => {
            let list = app.api().ok()?.call(&ApiCall::get("/cgi-bin/customservice/getkflist")).await.ok()?;
            if let Ok(text) = std::str::from_utf8(&list) {
                let _ = app.rt.store().put(&key, text, Some(NICKNAMES_TTL_SECS)).await;
            }
            list
        }
    };
    let nick = nickname_in(&list, kf_account);
    *app.isolate.effects.kflist.borrow_mut() = Some((now.saturating_add(NICKNAMES_TTL_SECS), list));
    nick
}

/// Posts an alert to `ALERT_WEBHOOK_URL`, retried once; a failure is noted and dropped.
pub async fn alert<R: Runtime>(app: &App<R>, rules: &Rules, event: &AlertEvent) {
    let (Some(alerts), Some(url)) = (rules.alerts.as_ref(), app.config.outbound().alert_webhook.as_deref()) else {
        app.note(format!("alert {} skipped: no webhook", event.name()));
        return;
    };
    let body = alert_body(alerts, event, appid(app), app.rt.clock().now(), rules.timezone);
    let call = HttpCall::post_json(url.to_string(), body);
    let mut failure = String::new();
    for attempt in 0..2 {
        match crate::api::client::exchange(&app.rt, &call).await {
            Ok(answer) if !answer.is_success() => failure = format!("webhook answered {}", answer.status),
            Ok(answer) => match alerts.wecom.then(|| wecom_errcode(&answer.body)) {
                None | Some(Some(0)) => {
                    app.note(format!("alert {} sent", event.name()));
                    return;
                }
                Some(Some(errcode)) => failure = format!("webhook answered errcode {errcode}"),
                Some(None) => failure = "webhook answered something that is not a WeCom answer".into(),
            },
            Err(e) => failure = e.code().to_string(),
        }
        if attempt == 0 {
            app.rt.clock().sleep(1000).await;
        }
    }
    app.note(format!("alert {} dropped after a retry: {failure}", event.name()));
}

/// A WeCom robot answers `{"errcode":0}` when it took the message.
fn wecom_errcode(body: &[u8]) -> Option<i64> {
    parse(body).ok().and_then(|d| d.as_object()?.get("errcode")?.as_i64())
}

/// The cron's checks: the queue, and a credential failure no alert has told yet.
pub async fn cron_alerts<R: Runtime>(app: &App<R>, rules: &Rules) {
    if let Some(alerts) = rules.alerts.as_ref().filter(|a| a.queue) {
        let now = app.rt.clock().now();
        let answer = match app.api() {
            Ok(api) => api.call(&ApiCall::get("/customservice/kfsession/getwaitcase")).await,
            Err(e) => Err(e),
        };
        match answer.and_then(|body| queue_alert(alerts, &body, now)) {
            Ok(Some(event)) => {
                let key = format!("alerted:{}:queue", appid(app));
                if first_in(app, &key, alerts.every_secs).await {
                    alert(app, rules, &event).await;
                } else {
                    app.note(format!("alert queue skipped: sent within {} s", alerts.every_secs));
                }
            }
            Ok(None) => {}
            Err(e) => app.note(format!("queue check failed: {e}")),
        }
    }
    credentials_alert(app, rules).await;
}

/// Alerts a credential failure (40164, 40013, 40125) recorded by the token cache, at most once
/// an hour (this isolate's memory and the store).
pub async fn credentials_alert<R: Runtime>(app: &App<R>, rules: &Rules) {
    let pending = app.isolate.token.take_credential_failure();
    let (Some(errcode), Some(alerts)) = (pending, rules.alerts.as_ref()) else { return };
    if !alerts.credentials {
        return;
    }
    let now = app.rt.clock().now();
    let last = *app.isolate.effects.credentials_alerted.borrow();
    if last.is_some_and(|t| now.saturating_sub(t) < CREDENTIALS_EVERY_SECS) {
        return;
    }
    *app.isolate.effects.credentials_alerted.borrow_mut() = Some(now);
    let key = format!("alerted:{}:credentials", appid(app));
    if first_in(app, &key, CREDENTIALS_EVERY_SECS).await {
        alert(app, rules, &AlertEvent::Credentials { errcode }).await;
    }
}
