//! The front desk's rules document, pure: its typed form, its defaults (today's behaviour:
//! transfer every user message, `success` for every event), and its validation, which names the
//! JSON path of the first bad field and refuses unknown fields (a typo must not be ignored).

use crate::desk::hours::{overlap, Date, Hours, Offset, Range, RangeError, MAX_RANGES_PER_DAY};
use crate::error::Error;
use crate::json::{parse, Json, Object, ParseError};

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// Longest text (WeChat's limit for a passive text reply is 2,048 bytes).
pub const MAX_TEXT_BYTES: usize = 2048;
/// Longest keyword or request word.
pub const MAX_WORD_BYTES: usize = 256;
pub const MAX_KEYWORD_RULES: usize = 200;
pub const MAX_WORDS: usize = 100;
/// How long a request for a human is remembered by default, and its bounds.
pub const DEFAULT_REMEMBER_SECS: u64 = 1800;
pub const MIN_REMEMBER_SECS: u64 = 60;
pub const MAX_REMEMBER_SECS: u64 = 7 * 86_400;
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// How often a user gets the same notice by default, and the least.
pub const DEFAULT_NOTIFY_EVERY_SECS: u64 = 43_200;
pub const MIN_EVERY_SECS: u64 = 60;
/// The longest rate limit or wait (30 days): every `*_secs` of notices and alerts.
pub const MAX_EVERY_SECS: u64 = 30 * 86_400;
/// Alert defaults.
pub const DEFAULT_QUEUE_THRESHOLD: u64 = 3;
pub const DEFAULT_WAIT_SECS: u64 = 600;
pub const DEFAULT_ALERT_EVERY_SECS: u64 = 600;

/// The rules the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub timezone: Offset,
    /// Passive text reply to `subscribe`; `None`: `success`.
    pub welcome: Option<String>,
    pub keywords: Vec<Keyword>,
    pub transfer: Gate,
    /// `None`: always open.
    pub hours: Option<Hours>,
    /// Outside `hours`.
    pub closed: Fallback,
    /// Inside hours with nobody online.
    pub no_agent: Fallback,
    /// Alerts to the agents' webhook; `None`: no alerts.
    pub alerts: Option<Alerts>,
    /// Session greeting and farewell.
    pub sessions: Sessions,
}

impl Rules {
    /// Whether the decision must know who is online: a no-agent rule that acts, or `waiting`
    /// alerts (a transfer while nobody is online is one).
    pub fn needs_agents(&self) -> bool {
        self.no_agent.action != FallbackAction::Transfer || self.alerts.as_ref().is_some_and(|a| a.waiting)
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            timezone: Offset::CHINA,
            welcome: None,
            keywords: Vec::new(),
            transfer: Gate {
                on_request: false,
                request_words: Vec::new(),
                remember_secs: DEFAULT_REMEMBER_SECS,
                prompt: None,
            },
            hours: None,
            closed: Fallback::default(),
            no_agent: Fallback::default(),
            alerts: None,
            sessions: Sessions::default(),
        }
    }
}

/// One keyword rule. Words are kept with ASCII letters lowercased (they match case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// `exact`: the trimmed text equals a word; else it contains one.
    pub exact: bool,
    pub words: Vec<String>,
    pub reply: String,
}

/// The "转人工" gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// `on_request`: transfer only after the user asked for a human.
    pub on_request: bool,
    /// ASCII letters lowercased.
    pub request_words: Vec<String>,
    pub remember_secs: u64,
    pub prompt: Option<String>,
}

/// What to do outside hours, or when nobody is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub action: FallbackAction,
    /// The reply's or the notice's text (required with `reply` and `transfer_and_notify`).
    pub text: Option<String>,
    /// With `transfer_and_notify`: a user gets the notice at most once in this long.
    pub notify_every_secs: u64,
}

impl Default for Fallback {
    fn default() -> Self {
        Fallback { action: FallbackAction::Transfer, text: None, notify_every_secs: DEFAULT_NOTIFY_EVERY_SECS }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FallbackAction {
    /// Transfer anyway: the message waits in WeChat's queue.
    #[default]
    Transfer,
    /// A passive text reply, no transfer.
    Reply,
    /// Transfer, and send `text` as a customer-service message (after the reply).
    TransferAndNotify,
}

/// Alerts to the agents (`ALERT_WEBHOOK_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerts {
    /// A user transferred while closed or while nobody is online.
    pub waiting: bool,
    /// The cron sees a long queue or a long wait.
    pub queue: bool,
    /// A token request failed in a way no retry fixes.
    pub credentials: bool,
    pub wecom: bool,
    pub queue_threshold: u64,
    pub wait_secs: u64,
    pub every_secs: u64,
    pub include_text: bool,
}

/// Sent as customer-service messages when an agent takes or closes a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    /// `{nickname}` is replaced with the agent's nickname.
    pub greeting: Option<String>,
    pub farewell: Option<String>,
}

/// A validated document: the typed rules and the JSON as stored (compact, in the order given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub rules: Rules,
    pub json: String,
}

/// The defaults, written as a document (what `GET /api/rules` shows when none is stored).
pub const DEFAULTS_JSON: &str = r#"{"timezone":"+08:00","keywords":[],"transfer":{"mode":"all","request_words":[],"remember_secs":1800},"closed":{"action":"transfer"},"no_agent":{"action":"transfer"}}"#;

/// What the deployment can do, for the rules that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The WeChat API can be called (online list, customer-service messages).
    pub api: bool,
    /// `ALERT_WEBHOOK_URL` is set.
    pub webhook: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities { api: true, webhook: true };
}

/// Validates a document against what the deployment can do.
pub fn validate(body: &[u8], can: Capabilities) -> Result<Document, Error> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let doc = match parse(body) {
        Ok(doc) => doc,
        Err(ParseError::Syntax) => return Err(invalid("body", "is not valid JSON")),
        Err(ParseError::Duplicate(path)) => {
            return Err(Error::InvalidRequest { field: path, reason: "appears twice in the same object" })
        }
    };
    let o = doc.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let rules = read_rules(o, can)?;
    Ok(Document { rules, json: doc.to_json() })
}

/// A stored document, read back: validated again (a hand-edited KV entry must not break replies).
pub fn load(stored: &str) -> Result<Document, Error> {
    validate(stored.as_bytes(), Capabilities::ALL)
}

fn invalid(field: &str, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.to_string(), reason }
}

/// `parent.name`.
fn path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Refuses a member not in `known`.
fn only(o: &Object, parent: &str, known: &[&str]) -> Result<(), Error> {
    match o.iter().find(|(k, _)| !known.contains(k)) {
        Some((k, _)) => Err(Error::InvalidRequest { field: path(parent, k), reason: "is not a known field" }),
        None => Ok(()),
    }
}

/// A member, `None` when absent or `null`.
fn member<'a>(o: &'a Object, name: &str) -> Option<&'a Json> {
    o.get(name).filter(|v| **v != Json::Null)
}

fn object<'a>(v: &'a Json, at: &str) -> Result<&'a Object, Error> {
    v.as_object().ok_or_else(|| invalid(at, "must be an object"))
}

fn array<'a>(v: &'a Json, at: &str) -> Result<&'a [Json], Error> {
    v.as_array().ok_or_else(|| invalid(at, "must be an array"))
}

/// A non-empty string of at most `max` bytes (after trimming it must not be empty).
fn string<'a>(v: &'a Json, at: &str, max: usize) -> Result<&'a str, Error> {
    let s = v.as_str().ok_or_else(|| invalid(at, "must be a string"))?;
    if s.trim().is_empty() {
        return Err(invalid(at, "must not be empty"));
    }
    if s.len() > max {
        return Err(invalid(
            at,
            if max == MAX_TEXT_BYTES { "is longer than 2048 bytes" } else { "is longer than 256 bytes" },
        ));
    }
    Ok(s)
}

fn text(o: &Object, parent: &str, name: &str) -> Result<Option<String>, Error> {
    member(o, name).map(|v| string(v, &path(parent, name), MAX_TEXT_BYTES).map(str::to_string)).transpose()
}

/// Words for case-insensitive matching: trimmed, ASCII lowercased, 1 to [`MAX_WORDS`].
fn words(v: &Json, at: &str, allow_empty: bool) -> Result<Vec<String>, Error> {
    let items = array(v, at)?;
    if items.is_empty() && !allow_empty {
        return Err(invalid(at, "must list at least one word"));
    }
    if items.len() > MAX_WORDS {
        return Err(invalid(at, "lists more than 100 words"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, w)| string(w, &format!("{at}[{i}]"), MAX_WORD_BYTES).map(|w| w.trim().to_ascii_lowercase()))
        .collect()
}

const NEEDS_API: &str = "needs the WeChat API (WECHAT_APPID and WECHAT_APPSECRET)";

fn read_rules(o: &Object, can: Capabilities) -> Result<Rules, Error> {
    only(o, "", &["timezone", "welcome", "keywords", "transfer", "hours", "closed", "no_agent", "alerts", "sessions"])?;
    let mut rules = Rules::default();
    if let Some(tz) = member(o, "timezone") {
        let s = tz.as_str().ok_or_else(|| invalid("timezone", "must be a string"))?;
        rules.timezone = Offset::parse(s).ok_or_else(|| invalid("timezone", "must be a UTC offset like +08:00"))?;
    }
    rules.welcome = text(o, "", "welcome")?;
    if let Some(list) = member(o, "keywords") {
        let items = array(list, "keywords")?;
        if items.len() > MAX_KEYWORD_RULES {
            return Err(invalid("keywords", "holds more than 200 rules"));
        }
        for (i, item) in items.iter().enumerate() {
            let at = format!("keywords[{i}]");
            rules.keywords.push(keyword(object(item, &at)?, &at)?);
        }
    }
    if let Some(gate) = member(o, "transfer") {
        rules.transfer = read_gate(object(gate, "transfer")?)?;
    }
    if let Some(hours) = member(o, "hours") {
        rules.hours = Some(read_hours(object(hours, "hours")?)?);
    }
    if let Some(closed) = member(o, "closed") {
        rules.closed = fallback(object(closed, "closed")?, "closed")?;
        if rules.closed.action == FallbackAction::TransferAndNotify && !can.api {
            return Err(invalid("closed", NEEDS_API));
        }
    }
    if let Some(no_agent) = member(o, "no_agent") {
        rules.no_agent = fallback(object(no_agent, "no_agent")?, "no_agent")?;
        if rules.no_agent.action != FallbackAction::Transfer && !can.api {
            return Err(invalid("no_agent", NEEDS_API));
        }
    }
    if let Some(alerts) = member(o, "alerts") {
        if !can.webhook {
            return Err(invalid("alerts", "needs ALERT_WEBHOOK_URL"));
        }
        let alerts = read_alerts(object(alerts, "alerts")?)?;
        if (alerts.waiting || alerts.queue) && !can.api {
            return Err(invalid("alerts.on", NEEDS_API));
        }
        rules.alerts = Some(alerts);
    }
    if let Some(sessions) = member(o, "sessions") {
        let sessions = object(sessions, "sessions")?;
        only(sessions, "sessions", &["greeting", "farewell"])?;
        rules.sessions = Sessions {
            greeting: text(sessions, "sessions", "greeting")?,
            farewell: text(sessions, "sessions", "farewell")?,
        };
        if (rules.sessions.greeting.is_some() || rules.sessions.farewell.is_some()) && !can.api {
            return Err(invalid("sessions", NEEDS_API));
        }
    }
    Ok(rules)
}

/// An integer of at least `min` seconds (or count), when present.
fn at_least(o: &Object, parent: &str, name: &str, min: u64, default: u64) -> Result<u64, Error> {
    match member(o, name) {
        None => Ok(default),
        Some(v) => v.as_u64().filter(|n| (min..=MAX_EVERY_SECS).contains(n)).ok_or_else(|| {
            invalid(
                &path(parent, name),
                if min == 1 { "must be an integer from 1 to 2592000" } else { "must be an integer from 60 to 2592000" },
            )
        }),
    }
}

fn read_alerts(o: &Object) -> Result<Alerts, Error> {
    only(o, "alerts", &["on", "format", "queue_threshold", "wait_secs", "every_secs", "include_text"])?;
    let mut alerts = Alerts {
        waiting: false,
        queue: false,
        credentials: false,
        wecom: true,
        queue_threshold: at_least(o, "alerts", "queue_threshold", 1, DEFAULT_QUEUE_THRESHOLD)?,
        wait_secs: at_least(o, "alerts", "wait_secs", MIN_EVERY_SECS, DEFAULT_WAIT_SECS)?,
        every_secs: at_least(o, "alerts", "every_secs", MIN_EVERY_SECS, DEFAULT_ALERT_EVERY_SECS)?,
        include_text: match member(o, "include_text") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| invalid("alerts.include_text", "must be true or false"))?,
        },
    };
    let on = member(o, "on").ok_or_else(|| invalid("alerts.on", "is required"))?;
    for (i, kind) in array(on, "alerts.on")?.iter().enumerate() {
        match kind.as_str() {
            Some("waiting") => alerts.waiting = true,
            Some("queue") => alerts.queue = true,
            Some("credentials") => alerts.credentials = true,
            _ => return Err(invalid(&format!("alerts.on[{i}]"), "must be waiting, queue or credentials")),
        }
    }
    alerts.wecom = match member(o, "format").map(|f| f.as_str()) {
        None | Some(Some("wecom")) => true,
        Some(Some("json")) => false,
        Some(_) => return Err(invalid("alerts.format", "must be wecom or json")),
    };
    Ok(alerts)
}

fn keyword(o: &Object, at: &str) -> Result<Keyword, Error> {
    only(o, at, &["match", "words", "reply"])?;
    let exact = match member(o, "match").map(|m| m.as_str()) {
        None | Some(Some("exact")) => true,
        Some(Some("contains")) => false,
        Some(_) => return Err(invalid(&path(at, "match"), "must be exact or contains")),
    };
    let words = words(
        member(o, "words").ok_or_else(|| invalid(&path(at, "words"), "is required"))?,
        &path(at, "words"),
        false,
    )?;
    let reply = text(o, at, "reply")?.ok_or_else(|| invalid(&path(at, "reply"), "is required"))?;
    Ok(Keyword { exact, words, reply })
}

fn read_gate(o: &Object) -> Result<Gate, Error> {
    only(o, "transfer", &["mode", "request_words", "remember_secs", "prompt"])?;
    let on_request = match member(o, "mode").map(|m| m.as_str()) {
        None | Some(Some("all")) => false,
        Some(Some("on_request")) => true,
        Some(_) => return Err(invalid("transfer.mode", "must be all or on_request")),
    };
    let request_words = match member(o, "request_words") {
        Some(v) => words(v, "transfer.request_words", !on_request)?,
        None if on_request => return Err(invalid("transfer.request_words", "is required when mode is on_request")),
        None => Vec::new(),
    };
    let remember_secs = match member(o, "remember_secs") {
        None => DEFAULT_REMEMBER_SECS,
        Some(v) => v
            .as_u64()
            .filter(|s| (MIN_REMEMBER_SECS..=MAX_REMEMBER_SECS).contains(s))
            .ok_or_else(|| invalid("transfer.remember_secs", "must be an integer from 60 to 604800"))?,
    };
    Ok(Gate { on_request, request_words, remember_secs, prompt: text(o, "transfer", "prompt")? })
}

fn ranges(v: &Json, at: &str) -> Result<Vec<Range>, Error> {
    let mut out = Vec::new();
    let items = array(v, at)?;
    if items.len() > MAX_RANGES_PER_DAY {
        return Err(invalid(at, "holds more than 48 ranges"));
    }
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let s = item.as_str().ok_or_else(|| invalid(&here, "must be a string"))?;
        out.push(Range::parse(s).map_err(|e| match e {
            RangeError::Syntax => invalid(&here, "must be HH:MM-HH:MM (24:00 only as an end)"),
            RangeError::Empty => invalid(&here, "must end after it starts"),
        })?);
    }
    if let Some((_, later)) = overlap(&out) {
        return Err(invalid(&format!("{at}[{later}]"), "overlaps another range of the same day"));
    }
    Ok(out)
}

fn read_hours(o: &Object) -> Result<Hours, Error> {
    only(o, "hours", &["weekly", "closed_dates", "open_dates"])?;
    let mut hours = Hours::default();
    if let Some(weekly) = member(o, "weekly") {
        let weekly = object(weekly, "hours.weekly")?;
        for (day, list) in weekly.iter() {
            let at = path("hours.weekly", day);
            let i =
                WEEKDAYS.iter().position(|d| *d == day).ok_or_else(|| invalid(&at, "is not a weekday (mon to sun)"))?;
            if let Some(slot) = hours.weekly.get_mut(i) {
                *slot = ranges(list, &at)?;
            }
        }
    }
    if let Some(dates) = member(o, "closed_dates") {
        for (i, d) in array(dates, "hours.closed_dates")?.iter().enumerate() {
            let at = format!("hours.closed_dates[{i}]");
            let s = d.as_str().ok_or_else(|| invalid(&at, "must be a string"))?;
            hours.closed_dates.push(Date::parse(s).ok_or_else(|| invalid(&at, "must be a date YYYY-MM-DD"))?);
        }
    }
    if let Some(dates) = member(o, "open_dates") {
        for (day, list) in object(dates, "hours.open_dates")?.iter() {
            let at = path("hours.open_dates", day);
            let date = Date::parse(day).ok_or_else(|| invalid(&at, "must be a date YYYY-MM-DD"))?;
            hours.open_dates.push((date, ranges(list, &at)?));
        }
    }
    Ok(hours)
}

fn fallback(o: &Object, at: &str) -> Result<Fallback, Error> {
    only(o, at, &["action", "text", "notify_every_secs"])?;
    let action = match member(o, "action").map(|m| m.as_str()) {
        None | Some(Some("transfer")) => FallbackAction::Transfer,
        Some(Some("reply")) => FallbackAction::Reply,
        Some(Some("transfer_and_notify")) => FallbackAction::TransferAndNotify,
        Some(_) => return Err(invalid(&path(at, "action"), "must be transfer, reply or transfer_and_notify")),
    };
    let text = text(o, at, "text")?;
    if action != FallbackAction::Transfer && text.is_none() {
        return Err(invalid(&path(at, "text"), "is required with this action"));
    }
    if member(o, "notify_every_secs").is_some() && action != FallbackAction::TransferAndNotify {
        return Err(invalid(&path(at, "notify_every_secs"), "is only used with transfer_and_notify"));
    }
    let notify_every_secs = at_least(o, at, "notify_every_secs", MIN_EVERY_SECS, DEFAULT_NOTIFY_EVERY_SECS)?;
    Ok(Fallback { action, text, notify_every_secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue's complete example.
    pub const EXAMPLE: &str = r#"{
      "timezone": "+08:00",
      "welcome": "感谢关注！回复“人工”联系客服。",
      "keywords": [
        {"match": "exact", "words": ["营业时间", "hours"], "reply": "周一至周五 9:00-18:00"},
        {"match": "contains", "words": ["发票"], "reply": "开票请访问 https://example.com/invoice"}
      ],
      "transfer": {"mode": "all", "request_words": ["人工", "客服"], "remember_secs": 1800,
                   "prompt": "回复“人工”联系客服。"},
      "hours": {
        "weekly": {"mon": ["09:00-12:00", "13:30-18:00"], "tue": ["09:00-18:00"], "wed": ["09:00-18:00"],
                   "thu": ["09:00-18:00"], "fri": ["09:00-18:00"]},
        "closed_dates": ["2026-10-01", "2026-10-02"],
        "open_dates": {"2026-09-27": ["09:00-18:00"]}
      },
      "closed": {"action": "reply", "text": "现在是非工作时间（工作日 9:00-18:00），上班后我们会第一时间回复您。"},
      "no_agent": {"action": "transfer", "text": "客服暂时都不在线，请稍候，我们会尽快回复。"}
    }"#;

    fn field_of(doc: &str) -> (String, &'static str) {
        match validate(doc.as_bytes(), Capabilities::ALL).unwrap_err() {
            Error::InvalidRequest { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_example_validates_and_is_stored_compact_in_its_order() {
        let doc = validate(EXAMPLE.as_bytes(), Capabilities::ALL).unwrap();
        let r = &doc.rules;
        assert_eq!(r.timezone, Offset(480));
        assert_eq!(r.keywords.len(), 2);
        assert!(r.keywords[0].exact && !r.keywords[1].exact);
        assert_eq!(r.keywords[0].words, ["营业时间", "hours"]);
        assert!(!r.transfer.on_request);
        let hours = r.hours.as_ref().unwrap();
        assert_eq!(hours.weekly[0].len(), 2);
        assert!(hours.weekly[5].is_empty() && hours.weekly[6].is_empty());
        assert_eq!(hours.closed_dates.len(), 2);
        assert_eq!(r.closed.action, FallbackAction::Reply);
        assert!(doc.json.starts_with(r#"{"timezone":"+08:00","welcome":"感谢关注！"#), "{}", doc.json);
        assert!(!doc.json.contains('\n'));
        assert_eq!(load(&doc.json).unwrap(), doc, "what is stored reads back the same");
    }

    #[test]
    fn the_fullest_document_of_the_benchmarks_validates() {
        let doc = validate(&crate::testkit::fixture("rules/fullest.json"), Capabilities::ALL).unwrap();
        assert_eq!(doc.rules.keywords.len(), MAX_KEYWORD_RULES);
        assert_eq!(doc.rules.hours.as_ref().unwrap().closed_dates.len(), 28);
    }

    #[test]
    fn the_defaults_reproduce_todays_behaviour() {
        let none = Capabilities { api: false, webhook: false };
        let defaults = validate(DEFAULTS_JSON.as_bytes(), none).unwrap();
        assert_eq!(defaults.rules, Rules::default());
        assert_eq!(validate(b"{}", none).unwrap().rules, Rules::default());
        assert_eq!(validate(br#"{"welcome":null}"#, none).unwrap().rules, Rules::default(), "null is absent");
    }

    #[test]
    fn each_invalid_field_is_named() {
        let long = "字".repeat(700);
        let too_many_rules = format!(r#"{{"keywords":[{}]}}"#, vec![r#"{"words":["a"],"reply":"b"}"#; 201].join(","));
        let too_many_words = format!(r#"{{"keywords":[{{"words":[{}],"reply":"b"}}]}}"#, vec![r#""w""#; 101].join(","));
        let cases: Vec<(String, &str, &str)> = vec![
            (r#"{"timezone":"Asia/Shanghai"}"#.into(), "timezone", "must be a UTC offset like +08:00"),
            (r#"{"timezone":8}"#.into(), "timezone", "must be a string"),
            (r#"{"welcom":"hi"}"#.into(), "welcom", "is not a known field"),
            (r#"{"welcome":""}"#.into(), "welcome", "must not be empty"),
            (format!(r#"{{"welcome":"{long}"}}"#), "welcome", "is longer than 2048 bytes"),
            (r#"{"keywords":{}}"#.into(), "keywords", "must be an array"),
            (too_many_rules, "keywords", "holds more than 200 rules"),
            (too_many_words, "keywords[0].words", "lists more than 100 words"),
            (
                r#"{"keywords":[{"match":"regex","words":["a"],"reply":"b"}]}"#.into(),
                "keywords[0].match",
                "must be exact or contains",
            ),
            (
                r#"{"keywords":[{"words":["a"],"reply":"b"},{"words":[],"reply":"b"}]}"#.into(),
                "keywords[1].words",
                "must list at least one word",
            ),
            (r#"{"keywords":[{"words":["a"," "],"reply":"b"}]}"#.into(), "keywords[0].words[1]", "must not be empty"),
            (r#"{"keywords":[{"words":["a"]}]}"#.into(), "keywords[0].reply", "is required"),
            (
                r#"{"keywords":[{"words":["a"],"reply":"b","priority":1}]}"#.into(),
                "keywords[0].priority",
                "is not a known field",
            ),
            (r#"{"transfer":{"mode":"some"}}"#.into(), "transfer.mode", "must be all or on_request"),
            (
                r#"{"transfer":{"mode":"on_request"}}"#.into(),
                "transfer.request_words",
                "is required when mode is on_request",
            ),
            (
                r#"{"transfer":{"mode":"on_request","request_words":[]}}"#.into(),
                "transfer.request_words",
                "must list at least one word",
            ),
            (
                r#"{"transfer":{"remember_secs":30}}"#.into(),
                "transfer.remember_secs",
                "must be an integer from 60 to 604800",
            ),
            (
                r#"{"transfer":{"remember_secs":90.5}}"#.into(),
                "transfer.remember_secs",
                "must be an integer from 60 to 604800",
            ),
            (
                r#"{"hours":{"weekly":{"mon":["09:00-12:00","11:00-13:00"]}}}"#.into(),
                "hours.weekly.mon[1]",
                "overlaps another range of the same day",
            ),
            (
                r#"{"hours":{"weekly":{"mon":["09:00-12:00","18:00-09:00"]}}}"#.into(),
                "hours.weekly.mon[1]",
                "must end after it starts",
            ),
            (
                r#"{"hours":{"weekly":{"tue":["9-18"]}}}"#.into(),
                "hours.weekly.tue[0]",
                "must be HH:MM-HH:MM (24:00 only as an end)",
            ),
            (
                r#"{"hours":{"weekly":{"tue":["24:00-24:00"]}}}"#.into(),
                "hours.weekly.tue[0]",
                "must be HH:MM-HH:MM (24:00 only as an end)",
            ),
            (r#"{"hours":{"weekly":{"monday":[]}}}"#.into(), "hours.weekly.monday", "is not a weekday (mon to sun)"),
            (
                r#"{"hours":{"closed_dates":["2026-02-30"]}}"#.into(),
                "hours.closed_dates[0]",
                "must be a date YYYY-MM-DD",
            ),
            (
                r#"{"hours":{"open_dates":{"2026-9-27":["09:00-18:00"]}}}"#.into(),
                "hours.open_dates.2026-9-27",
                "must be a date YYYY-MM-DD",
            ),
            (
                r#"{"hours":{"open_dates":{"2026-09-27":["09:00-18:00","17:00-19:00"]}}}"#.into(),
                "hours.open_dates.2026-09-27[1]",
                "overlaps another range of the same day",
            ),
            (r#"{"closed":{"action":"reply"}}"#.into(), "closed.text", "is required with this action"),
            (r#"{"closed":{"action":"transfer_and_notify"}}"#.into(), "closed.text", "is required with this action"),
            (
                r#"{"closed":{"action":"drop"}}"#.into(),
                "closed.action",
                "must be transfer, reply or transfer_and_notify",
            ),
            (
                r#"{"closed":{"action":"reply","text":"x","notify_every_secs":60}}"#.into(),
                "closed.notify_every_secs",
                "is only used with transfer_and_notify",
            ),
            (
                r#"{"no_agent":{"action":"transfer_and_notify","text":"x","notify_every_secs":59}}"#.into(),
                "no_agent.notify_every_secs",
                "must be an integer from 60 to 2592000",
            ),
            (r#"{"alerts":{}}"#.into(), "alerts.on", "is required"),
            (r#"{"alerts":{"on":["waiting","sms"]}}"#.into(), "alerts.on[1]", "must be waiting, queue or credentials"),
            (r#"{"alerts":{"on":[],"format":"slack"}}"#.into(), "alerts.format", "must be wecom or json"),
            (
                r#"{"alerts":{"on":[],"queue_threshold":0}}"#.into(),
                "alerts.queue_threshold",
                "must be an integer from 1 to 2592000",
            ),
            (
                r#"{"alerts":{"on":[],"every_secs":10}}"#.into(),
                "alerts.every_secs",
                "must be an integer from 60 to 2592000",
            ),
            (
                // Past 30 days: refused, so that `now + every_secs` can never overflow.
                r#"{"alerts":{"on":[],"wait_secs":18446744073709551615}}"#.into(),
                "alerts.wait_secs",
                "must be an integer from 60 to 2592000",
            ),
            (r#"{"alerts":{"on":[],"include_text":"yes"}}"#.into(), "alerts.include_text", "must be true or false"),
            (r#"{"sessions":{"greeting":"","farewell":"bye"}}"#.into(), "sessions.greeting", "must not be empty"),
            (r#"{"sessions":{"hello":"hi"}}"#.into(), "sessions.hello", "is not a known field"),
            (
                r#"{"no_agent":{"action":"reply","text":"x","when":"always"}}"#.into(),
                "no_agent.when",
                "is not a known field",
            ),
            (r#"{"welcome":"a","welcome":"b"}"#.into(), "welcome", "appears twice in the same object"),
            ("[]".into(), "body", "must be a JSON object"),
            ("{".into(), "body", "is not valid JSON"),
        ];
        for (doc, field, reason) in cases {
            assert_eq!(field_of(&doc), (field.to_string(), reason), "{doc}");
        }
        assert_eq!(validate(&vec![b' '; MAX_DOCUMENT_BYTES + 1], Capabilities::ALL), Err(Error::PayloadTooLarge));
    }

    #[test]
    fn rules_that_need_the_api_or_the_webhook_are_refused_without_them() {
        let no_api = Capabilities { api: false, webhook: true };
        let no_webhook = Capabilities { api: true, webhook: false };
        let cases: [(&[u8], Capabilities, &str, &str); 6] = [
            (br#"{"no_agent":{"action":"reply","text":"nobody"}}"#, no_api, "no_agent", NEEDS_API),
            (br#"{"closed":{"action":"transfer_and_notify","text":"later"}}"#, no_api, "closed", NEEDS_API),
            (br#"{"sessions":{"greeting":"hi"}}"#, no_api, "sessions", NEEDS_API),
            (br#"{"alerts":{"on":["queue"]}}"#, no_api, "alerts.on", NEEDS_API),
            (br#"{"alerts":{"on":["credentials"]}}"#, no_webhook, "alerts", "needs ALERT_WEBHOOK_URL"),
            (br#"{"alerts":{"on":[]}}"#, no_webhook, "alerts", "needs ALERT_WEBHOOK_URL"),
        ];
        for (doc, can, field, reason) in cases {
            assert_eq!(
                validate(doc, can).unwrap_err(),
                Error::InvalidRequest { field: field.into(), reason },
                "{}",
                String::from_utf8_lossy(doc)
            );
            assert!(validate(doc, Capabilities::ALL).is_ok());
        }
        assert!(validate(br#"{"no_agent":{"action":"transfer"}}"#, Capabilities { api: false, webhook: false }).is_ok());
        assert!(validate(br#"{"alerts":{"on":["credentials"]}}"#, no_api).is_ok(), "credential alerts need no API");
    }

    #[test]
    fn alerts_and_sessions_read_with_their_defaults() {
        let doc = r#"{"alerts":{"on":["waiting","queue","credentials"],"format":"json","include_text":true},"sessions":{"greeting":"您好，我是客服{nickname}","farewell":"再见"},"no_agent":{"action":"transfer_and_notify","text":"稍候"}}"#;
        let r = validate(doc.as_bytes(), Capabilities::ALL).unwrap().rules;
        let a = r.alerts.as_ref().unwrap();
        assert!(a.waiting && a.queue && a.credentials && !a.wecom && a.include_text);
        assert_eq!((a.queue_threshold, a.wait_secs, a.every_secs), (3, 600, 600));
        assert_eq!(r.sessions.greeting.as_deref(), Some("您好，我是客服{nickname}"));
        assert_eq!((r.no_agent.action, r.no_agent.notify_every_secs), (FallbackAction::TransferAndNotify, 43_200));
        assert!(r.needs_agents());
        assert!(!Rules::default().needs_agents());
    }
}
