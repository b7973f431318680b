//! After the reply: notices to users, alerts to agents, session greetings, each at most once per
//! push.
//!
//! - [`plan`] (pure) turns a decided push into effects.
//! - [`alert_body`] and [`queue_alert`] (pure) write alerts and decide the cron's queue alert.
//! - [`Effects::after_reply`] records the push in the ledger and, on its first delivery only,
//!   runs its effects over the runtime traits: the ledger's insert is the one claim, so a retry
//!   delivered to any isolate anywhere finds it taken. Rate limits are taken by one conditional
//!   write each. Every outcome becomes a ledger row and a note in the request's log line (never
//!   message text). Without a database (or while it fails) the effects run once per isolate and
//!   the limits hold in its memory.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::{json, Value};
use wechat_mp::{Event, Message, MessageKind};

use crate::api::answer::read_body;
use crate::api::client::WeChatApi;
use crate::database::{AccountDb, EffectRow, PushRow};
use crate::desk::decide::{Decision, Reason};
use crate::desk::hours::{local, Offset};
use crate::desk::rules::{Alerts, FallbackAction, Rules};
use crate::desk::{Desk, DeskState};
use crate::error::{wechat_hint, Error};
use crate::flight::SingleFlight;
use crate::http::{ApiCall, HttpCall};
use crate::notes::Notes;
use crate::runtime::{exchange, Clock, Runtime};

/// How long an isolate remembers a push's key without a database (WeChat retries within ~15 s).
pub const ONCE_TTL_SECS: u64 = 60;
/// Most push keys an isolate remembers.
pub const MAX_KEYS: usize = 4096;
/// Alerts about credentials: at most one an hour.
pub const CREDENTIALS_EVERY_SECS: u64 = 3600;
/// How long agents' nicknames (`getkflist`) are kept.
pub const NICKNAMES_TTL_SECS: u64 = 600;
/// The shared copy of `getkflist`'s answer in the database.
pub const KFLIST_CACHE: &str = "kf_list";
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

/// A push's effects (the push itself, its key and its user, is the [`Recorded`] they run with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub effects: Vec<Effect>,
}

/// A push as the ledger records it (owned: it is written after the reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub openid: String,
    pub at: u64,
    pub key: String,
    pub what: String,
    pub decision: &'static str,
    pub kf_account: Option<String>,
    pub detail: Option<String>,
    /// A user message: whether it arrived outside office hours; `None` for an event.
    pub after_hours: Option<bool>,
}

impl Recorded {
    /// `message`, answered as `decision` (with the transfer's target `kf_account`); `closed`:
    /// whether the rules' office hours were closed when it arrived.
    pub fn new(message: &Message, decision: &Decision<'_>, kf_account: Option<&str>, closed: bool) -> Recorded {
        use crate::desk::decide::Answer;
        let waiting = decision.waiting().map(|r| r.as_str().to_string());
        let (decision_name, mut kf_account, mut detail) = match (decision.answer, decision.reason) {
            (Answer::Transfer, _) => ("transfer", kf_account.map(str::to_string), waiting),
            (Answer::Text(_), Reason::Welcome) => ("welcome", None, None),
            (Answer::Text(_), Reason::Keyword) => ("keyword", None, None),
            (Answer::Text(_), Reason::Prompt) => ("gate_prompt", None, None),
            (Answer::Text(_), Reason::Closed) => ("closed", None, None),
            (Answer::Text(_), Reason::NoAgent) => ("no_agent", None, None),
            (Answer::Text(_), Reason::Default) | (Answer::Success, _) => ("success", None, None),
        };
        // A session event: its agents.
        if let MessageKind::Event(event) = &message.kind {
            match event {
                Event::KfCreateSession { kf_account: kf } | Event::KfCloseSession { kf_account: kf } => {
                    kf_account = Some(kf.clone());
                }
                Event::KfSwitchSession { from_kf_account, to_kf_account } => {
                    kf_account = Some(to_kf_account.clone());
                    detail = Some(from_kf_account.clone());
                }
                _ => {}
            }
        }
        Recorded {
            openid: message.from_user_name.clone(),
            at: message.create_time,
            key: message.dedup_key(),
            what: message.label(),
            decision: decision_name,
            kf_account,
            detail,
            after_hours: (!matches!(message.kind, MessageKind::Event(_))).then_some(closed),
        }
    }

    fn row(&self) -> PushRow<'_> {
        PushRow {
            openid: &self.openid,
            at: self.at,
            key: &self.key,
            what: &self.what,
            decision: self.decision,
            kf_account: self.kf_account.as_deref(),
            detail: self.detail.as_deref(),
            after_hours: self.after_hours,
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of what the user sent (a text), or its type.
fn excerpt(message: &Message) -> String {
    match &message.kind {
        MessageKind::Text { content } => content.chars().take(EXCERPT_CHARS).collect(),
        _ => format!("[{}]", message.label()),
    }
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

/// The effects of `decision` on `message` under `rules`; `None` when there are none.
pub fn plan(message: &Message, decision: &Decision<'_>, rules: &Rules) -> Option<Planned> {
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
    (!effects.is_empty()).then_some(Planned { effects })
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

/// An identifier (an OpenID, a customer-service account, an AppID) inside a WeCom markdown
/// message, exactly as it is, so that an agent can copy it: inline code. WeChat writes them with
/// letters, digits, `-`, `_` (and `@`, `.` in an account); anything else is not an identifier
/// WeChat sent and is shown as neutralised text.
fn markdown_identifier(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_@.".contains(&b));
    if plain {
        format!("`{s}`")
    } else {
        markdown_text(s)
    }
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
        let mut body = json!({"event": event.name(), "appid": appid, "at": now});
        let fields = match event {
            AlertEvent::Waiting { situation, openid, excerpt } => match excerpt {
                Some(text) => json!({"situation": situation.as_str(), "openid": openid, "text": text}),
                None => json!({"situation": situation.as_str(), "openid": openid}),
            },
            AlertEvent::Queue { count, longest_wait_secs } => {
                json!({"count": count, "longest_wait_secs": longest_wait_secs})
            }
            AlertEvent::Credentials { errcode } => json!({"errcode": errcode, "hint": wechat_hint(*errcode)}),
        };
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        return body.to_string().into_bytes();
    }
    let mut content = match event {
        AlertEvent::Waiting { situation, openid, excerpt } => {
            let why = match situation {
                Situation::Closed => "非工作时间",
                Situation::NoAgent => "当前没有客服在线",
            };
            let mut c = format!(
                "**有用户在等待客服**\n> 情况：<font color=\"warning\">{why}</font>\n> 用户：{}",
                markdown_identifier(openid)
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
    content.push_str(&markdown_identifier(appid));
    content.push_str("\n> 时间：");
    content.push_str(&local_time(now, offset));
    truncate(&mut content, MAX_WECOM_CONTENT_BYTES);
    json!({"msgtype": "markdown", "markdown": {"content": content}}).to_string().into_bytes()
}

/// The cron's queue alert from `getwaitcase`'s answer: when `count` reaches the threshold, or a
/// user has waited longer than `wait_secs`.
pub fn queue_alert(alerts: &Alerts, waitcase: &[u8], now: u64) -> Result<Option<AlertEvent>, Error> {
    let o = read_body(waitcase, "getwaitcase answered an unexpected shape")?;
    let list = o.get("waitcaselist").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let count = o.get("count").and_then(Value::as_u64).unwrap_or(list.len() as u64);
    let longest_wait_secs =
        list.iter().filter_map(|w| w.get("latest_time")?.as_u64()).map(|t| now.saturating_sub(t)).max().unwrap_or(0);
    let alert = count >= alerts.queue_threshold || (count > 0 && longest_wait_secs > alerts.wait_secs);
    Ok(alert.then_some(AlertEvent::Queue { count, longest_wait_secs }))
}

/// A customer-service text message body, optionally as an agent.
pub fn custom_text(openid: &str, text: &str, kf_account: Option<&str>) -> Vec<u8> {
    let body = match kf_account {
        Some(kf) => {
            json!({"touser": openid, "msgtype": "text", "text": {"content": text}, "customservice": {"kf_account": kf}})
        }
        None => json!({"touser": openid, "msgtype": "text", "text": {"content": text}}),
    };
    body.to_string().into_bytes()
}

/// `{nickname}` in `template` replaced with the agent's nickname, or the account's prefix.
pub fn fill_nickname(template: &str, kf_account: &str, nickname: Option<&str>) -> String {
    let name =
        nickname.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| kf_account.split('@').next().unwrap_or(kf_account));
    template.replace("{nickname}", name)
}

/// `kf_nick` of `kf_account` in `getkflist`'s answer.
pub fn nickname_in(kflist: &[u8], kf_account: &str) -> Option<String> {
    let list = crate::document::parse(kflist)?;
    let kf = list
        .get("kf_list")?
        .as_array()?
        .iter()
        .find(|kf| kf.get("kf_account").and_then(Value::as_str) == Some(kf_account))?;
    kf.get("kf_nick")?.as_str().map(str::to_string)
}

/// What an isolate remembers for the effects.
#[derive(Debug)]
pub struct EffectsState {
    /// Keys of the pushes whose effects this isolate ran, with when to forget them.
    ran: RefCell<VecDeque<(String, u64)>>,
    /// `getkflist`'s answer and until when to use it.
    kflist: RefCell<Option<(u64, Rc<[u8]>)>>,
    /// Its lookups, one at a time (`None`: the lookup failed).
    kflist_flights: SingleFlight<Option<Rc<[u8]>>>,
    /// When this isolate last alerted a credential failure.
    credentials_alerted: RefCell<Option<u64>>,
    /// Rate limits this isolate set (name, until when): they hold here even when the database
    /// fails, and spare it a statement.
    limited: RefCell<Vec<(String, u64)>>,
}

impl Default for EffectsState {
    fn default() -> Self {
        EffectsState {
            ran: RefCell::default(),
            kflist: RefCell::default(),
            kflist_flights: SingleFlight::new(crate::api::kf::FLIGHT_LIMIT_MS),
            credentials_alerted: RefCell::default(),
            limited: RefCell::default(),
        }
    }
}

impl EffectsState {
    /// `getkflist`'s answer while it is fresh at `now`.
    fn kflist_now(&self, now: u64) -> Option<Rc<[u8]>> {
        self.kflist.borrow().as_ref().filter(|(until, _)| now < *until).map(|(_, list)| list.clone())
    }

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

/// What the effects of one account need: the runtime, the account's WeChat API (when it has
/// one), its state, the request's notes and where alerts go. Owned, so that work after the reply
/// keeps its own.
pub struct Effects<R> {
    pub rt: Rc<R>,
    pub api: Result<WeChatApi<R>, Error>,
    pub state: Rc<EffectsState>,
    pub desk: Rc<DeskState>,
    pub notes: Rc<Notes>,
    pub webhook: Option<Rc<str>>,
    /// The account's AppID (its rows in the database), and its name in alerts.
    pub account: Rc<str>,
}

impl<R> Clone for Effects<R> {
    fn clone(&self) -> Self {
        Effects {
            rt: self.rt.clone(),
            api: self.api.clone(),
            state: self.state.clone(),
            desk: self.desk.clone(),
            notes: self.notes.clone(),
            webhook: self.webhook.clone(),
            account: self.account.clone(),
        }
    }
}

impl<R: Runtime> Effects<R> {
    fn now(&self) -> u64 {
        self.rt.clock().now()
    }

    fn db(&self) -> Option<AccountDb<'_, R::Database>> {
        self.rt.database().map(|db| AccountDb { db, appid: &self.account })
    }

    /// After the reply: records `push` in the ledger and, on its first delivery, runs `planned`
    /// (see the module). Every outcome is a note in the log line and a row in the ledger.
    pub async fn after_reply(&self, rules: &Rules, push: Recorded, planned: Option<Planned>) {
        let first = match self.db() {
            Some(db) => match db.record_push(&push.row()).await {
                Ok(first) => Some(first),
                Err(_) => {
                    self.notes.add("ledger: the database failed, the push is not recorded");
                    None
                }
            },
            None => None,
        };
        let Some(planned) = planned else { return };
        match first {
            Some(false) => {
                self.notes.add("effects skipped: already run for this push (a retry)");
                return;
            }
            Some(true) => {}
            // No database, or it failed: once per isolate.
            None => {
                if !self.state.first_time(&push.key, self.now()) {
                    self.notes.add("effects skipped: already run for this push (a retry)");
                    return;
                }
            }
        }
        let mut rows = Vec::with_capacity(planned.effects.len());
        for effect in planned.effects {
            rows.push(self.run_one(rules, &push.openid, effect).await);
        }
        if let (Some(true), Some(db)) = (first, self.db()) {
            if db.record_effects(&rows).await.is_err() {
                self.notes.add("ledger: the database failed, the effects are not recorded");
            }
        }
    }

    /// Takes the rate limit `name` for `secs`: false when it still runs (taken by this isolate,
    /// or by any request in the database). Without the database, this isolate's memory holds it.
    async fn first_in(&self, name: &str, secs: u64) -> bool {
        let now = self.now();
        if self.state.is_limited(name, now) {
            return false;
        }
        let until = now.saturating_add(secs);
        let taken = match self.db() {
            Some(db) => db.take_limit(name, now, until).await.unwrap_or_else(|_| {
                self.notes.add("rate limit: the database failed, held by this isolate only");
                true
            }),
            None => true,
        };
        if taken {
            self.state.limit(name, until, now);
        }
        taken
    }

    fn row(&self, openid: &str, what: &'static str, outcome: &'static str, detail: Option<String>) -> EffectRow {
        EffectRow { openid: openid.to_string(), at: self.now(), what, outcome, kf_account: None, detail }
    }

    async fn run_one(&self, rules: &Rules, openid: &str, effect: Effect) -> EffectRow {
        match effect {
            Effect::RememberRequest { secs } => {
                let desk = Desk { rt: &*self.rt, state: &self.desk, notes: &self.notes, account: &self.account };
                if desk.remember_request(openid, secs).await {
                    self.notes.add("transfer request remembered");
                    self.row(openid, "remember_request", "done", None)
                } else {
                    self.notes.add("transfer request remembered by this isolate only: no database or it failed");
                    self.row(openid, "remember_request", "failed", Some("database".into()))
                }
            }
            Effect::Notice { situation, text, every_secs } => {
                let what = match situation {
                    Situation::Closed => "notice_closed",
                    Situation::NoAgent => "notice_no_agent",
                };
                let name = format!("notice:{}:{openid}", situation.as_str());
                if !self.first_in(&name, every_secs).await {
                    self.notes
                        .add(format!("notice {} skipped: sent to this user within {every_secs} s", situation.as_str()));
                    return self.row(openid, what, "skipped", Some(format!("sent within {every_secs} s")));
                }
                let result = self.send_text(openid, &text, None).await;
                self.notes.add(format!("notice {} {}", situation.as_str(), outcome_note(&result)));
                self.outcome_row(openid, what, None, result)
            }
            Effect::WaitingAlert { situation, excerpt } => {
                let Some(alerts) = rules.alerts.as_ref() else {
                    return self.row(openid, "alert_waiting", "skipped", Some("no alerts".into()));
                };
                let name = format!("alert:waiting:{openid}");
                if !self.first_in(&name, alerts.every_secs).await {
                    self.notes.add(format!("alert waiting skipped: sent for this user within {} s", alerts.every_secs));
                    return self.row(
                        openid,
                        "alert_waiting",
                        "skipped",
                        Some(format!("sent within {} s", alerts.every_secs)),
                    );
                }
                let event = AlertEvent::Waiting { situation, openid: openid.to_string(), excerpt };
                let result = self.alert(rules, &event).await;
                self.outcome_row(openid, "alert_waiting", None, result)
            }
            Effect::Session { kind, kf_account, template } => {
                let what = match kind {
                    SessionKind::Greeting => "greeting",
                    SessionKind::Farewell => "farewell",
                };
                let nickname = self.nickname(&kf_account).await;
                let text = fill_nickname(&template, &kf_account, nickname.as_deref());
                let result = self.send_text(openid, &text, Some(&kf_account)).await;
                self.notes.add(format!("{what} {}", outcome_note(&result)));
                self.outcome_row(openid, what, Some(kf_account), result)
            }
        }
    }

    fn outcome_row(
        &self,
        openid: &str,
        what: &'static str,
        kf_account: Option<String>,
        result: Result<(), String>,
    ) -> EffectRow {
        let (outcome, detail) = match result {
            Ok(()) => ("sent", None),
            Err(why) => ("failed", Some(why)),
        };
        EffectRow { kf_account, ..self.row(openid, what, outcome, detail) }
    }

    /// A customer-service text; never retried (45015, outside the 48-hour window, and 45047,
    /// the quota, would not change). The error, as the log line writes it.
    async fn send_text(&self, openid: &str, text: &str, kf_account: Option<&str>) -> Result<(), String> {
        let call = ApiCall::post("/cgi-bin/message/custom/send", custom_text(openid, text, kf_account));
        let result = match &self.api {
            Ok(api) => api.call(&call).await.map(|_| ()),
            Err(e) => Err(e.clone()),
        };
        result.map_err(|e| e.to_string())
    }

    /// The agent's nickname from `getkflist` (kept [`NICKNAMES_TTL_SECS`] in memory and the
    /// database; one lookup at a time in the isolate, however many sessions start at once).
    async fn nickname(&self, kf_account: &str) -> Option<String> {
        let clock = self.rt.clock();
        let list = match self.state.kflist_now(clock.now()) {
            Some(list) => list,
            None => {
                let lookup = || async {
                    let list = self.kflist().await?;
                    let list: Rc<[u8]> = Rc::from(list);
                    *self.state.kflist.borrow_mut() =
                        Some((clock.now().saturating_add(NICKNAMES_TTL_SECS), list.clone()));
                    Some(list)
                };
                let fresh = || self.state.kflist_now(clock.now()).map(Some);
                self.state.kflist_flights.run(clock, fresh, lookup, || None).await?
            }
        };
        nickname_in(&list, kf_account)
    }

    /// `getkflist`'s answer: the database's shared copy while fresh, else WeChat's (then shared).
    async fn kflist(&self) -> Option<Vec<u8>> {
        let now = self.now();
        if let Some(db) = self.db() {
            if let Ok(Some((list, fetched_at))) = db.cached(KFLIST_CACHE).await {
                if now.saturating_sub(fetched_at) < NICKNAMES_TTL_SECS {
                    return Some(list.into_bytes());
                }
            }
        }
        let api = self.api.as_ref().ok()?;
        let list = api.call(&ApiCall::get("/cgi-bin/customservice/getkflist")).await.ok()?;
        if let (Some(db), Ok(text)) = (self.db(), std::str::from_utf8(&list)) {
            let _ = db.cache(KFLIST_CACHE, text, now).await;
        }
        Some(list)
    }

    /// Posts an alert to the webhook, retried once; a failure is noted and dropped (and
    /// answered, as the log line writes it).
    pub async fn alert(&self, rules: &Rules, event: &AlertEvent) -> Result<(), String> {
        let (Some(alerts), Some(url)) = (rules.alerts.as_ref(), self.webhook.as_deref()) else {
            self.notes.add(format!("alert {} skipped: no webhook", event.name()));
            return Err("no webhook".into());
        };
        let body = alert_body(alerts, event, &self.account, self.now(), rules.timezone);
        let call = HttpCall::post_json(url.to_string(), body);
        let mut failure = String::new();
        for attempt in 0..2 {
            match exchange(&*self.rt, &call).await {
                Ok(answer) if !answer.is_success() => failure = format!("webhook answered {}", answer.status),
                Ok(answer) => match alerts.wecom.then(|| wecom_errcode(&answer.body)) {
                    None | Some(Some(0)) => {
                        self.notes.add(format!("alert {} sent", event.name()));
                        return Ok(());
                    }
                    Some(Some(errcode)) => failure = format!("webhook answered errcode {errcode}"),
                    Some(None) => failure = "webhook answered something that is not a WeCom answer".into(),
                },
                Err(e) => failure = e.code().to_string(),
            }
            if attempt == 0 {
                self.rt.clock().sleep(1000).await;
            }
        }
        self.notes.add(format!("alert {} dropped after a retry: {failure}", event.name()));
        Err(failure)
    }

    /// The cron's checks: the queue, and a credential failure no alert has told yet
    /// (`credential_failure`: the errcode the token cache recorded).
    pub async fn cron_alerts(&self, rules: &Rules, credential_failure: Option<i64>) {
        if let Some(alerts) = rules.alerts.as_ref().filter(|a| a.queue) {
            let now = self.now();
            let answer = match &self.api {
                Ok(api) => api.call(&ApiCall::get("/customservice/kfsession/getwaitcase")).await,
                Err(e) => Err(e.clone()),
            };
            match answer.and_then(|body| queue_alert(alerts, &body, now)) {
                Ok(Some(event)) => {
                    if self.first_in("alert:queue", alerts.every_secs).await {
                        let _ = self.alert(rules, &event).await;
                    } else {
                        self.notes.add(format!("alert queue skipped: sent within {} s", alerts.every_secs));
                    }
                }
                Ok(None) => {}
                Err(e) => self.notes.add(format!("queue check failed: {e}")),
            }
        }
        self.credentials_alert(rules, credential_failure).await;
    }

    /// Alerts a credential failure (40164, 40013, 40125) the token cache recorded, at most once
    /// an hour (this isolate's memory and the database's rate limit).
    pub async fn credentials_alert(&self, rules: &Rules, credential_failure: Option<i64>) {
        let (Some(errcode), Some(alerts)) = (credential_failure, rules.alerts.as_ref()) else { return };
        if !alerts.credentials {
            return;
        }
        let now = self.now();
        let last = *self.state.credentials_alerted.borrow();
        if last.is_some_and(|t| now.saturating_sub(t) < CREDENTIALS_EVERY_SECS) {
            return;
        }
        *self.state.credentials_alerted.borrow_mut() = Some(now);
        if self.first_in("alert:credentials", CREDENTIALS_EVERY_SECS).await {
            let _ = self.alert(rules, &AlertEvent::Credentials { errcode }).await;
        }
    }
}

/// `sent`, or `failed: ` and why, for the log line.
fn outcome_note(result: &Result<(), String>) -> String {
    match result {
        Ok(()) => "sent".into(),
        Err(why) => format!("failed: {why}"),
    }
}

/// A WeCom robot answers `{"errcode":0}` when it took the message.
fn wecom_errcode(body: &[u8]) -> Option<i64> {
    crate::document::parse(body)?.get("errcode")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::rules::{validate, Capabilities};

    fn wecom(event: &AlertEvent) -> String {
        let rules = validate(br#"{"alerts":{"on":["waiting"]}}"#, Capabilities::ALL).unwrap().rules;
        let body: Value = serde_json::from_slice(&alert_body(
            rules.alerts.as_ref().unwrap(),
            event,
            "wx5823bf96d3bd56c7",
            1_790_524_800,
            Offset::CHINA,
        ))
        .unwrap();
        body["markdown"]["content"].as_str().unwrap().to_string()
    }

    #[test]
    fn identifiers_appear_exactly_as_they_are_and_free_text_is_neutralised() {
        let event = AlertEvent::Waiting {
            situation: Situation::Closed,
            openid: "oyORnuP8q7ou2gf_Yjq-LzSIWZf0rs".into(),
            excerpt: Some("*加急* [链接](http://x) `code` _x_".into()),
        };
        let content = wecom(&event);
        assert!(content.contains("> 用户：`oyORnuP8q7ou2gf_Yjq-LzSIWZf0rs`"), "{content}");
        assert!(content.contains("> 公众号：`wx5823bf96d3bd56c7`"), "{content}");
        assert!(content.contains("> 消息：＊加急＊ ［链接］（http://x） ｀code｀ ＿x＿"), "{content}");
        // Something WeChat never sends as an OpenID is text, not code.
        let odd = AlertEvent::Waiting { situation: Situation::NoAgent, openid: "o`1*".into(), excerpt: None };
        assert!(wecom(&odd).contains("> 用户：o｀1＊"), "{}", wecom(&odd));
    }
}
