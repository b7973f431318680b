//! The front desk's rules document, pure: its typed form, its defaults (today's behaviour:
//! transfer every user message, `success` for every event), and its validation, which names the
//! JSON path of the first bad field and refuses unknown fields (a typo must not be ignored).

use crate::desk::hours::{overlap, Date, Hours, Offset, Range, RangeError, MAX_RANGES_PER_DAY};
pub use crate::desk::keywords::Keyword;
use crate::desk::keywords::{KeywordMatcher, WordSet};
use crate::document;
use crate::error::Error;

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
/// How long the ledger keeps its rows by default (OpenIDs are personal data), and the most.
pub const DEFAULT_RETENTION_DAYS: u64 = 90;
pub const MAX_RETENTION_DAYS: u64 = 3650;

/// The rules the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub timezone: Offset,
    /// Passive text reply to `subscribe`; `None`: `success`.
    pub welcome: Option<String>,
    pub keywords: Vec<Keyword>,
    /// The keywords, compiled for matching.
    pub matcher: KeywordMatcher,
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
    /// How long the ledger keeps what happened to each user.
    pub retention_days: u64,
    /// The service-level report's settings.
    pub stats: Stats,
}

/// `stats`: how the service-level report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// A transferred user with no session within this is unanswered.
    pub unanswered_after_secs: u64,
    /// Whether the cron reads agents' first responses from `msgrecord/getmsglist`.
    pub first_response: bool,
}

/// `stats.unanswered_after_secs` by default, and its bounds.
pub const DEFAULT_UNANSWERED_AFTER_SECS: u64 = 600;
pub const MIN_UNANSWERED_AFTER_SECS: u64 = 60;
pub const MAX_UNANSWERED_AFTER_SECS: u64 = 86_400;

impl Default for Stats {
    fn default() -> Self {
        Stats { unanswered_after_secs: DEFAULT_UNANSWERED_AFTER_SECS, first_response: false }
    }
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
            matcher: KeywordMatcher::default(),
            transfer: Gate {
                on_request: false,
                request_words: WordSet::default(),
                remember_secs: DEFAULT_REMEMBER_SECS,
                prompt: None,
            },
            hours: None,
            closed: Fallback::default(),
            no_agent: Fallback::default(),
            alerts: None,
            sessions: Sessions::default(),
            retention_days: DEFAULT_RETENTION_DAYS,
            stats: Stats::default(),
        }
    }
}

/// The "转人工" gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// `on_request`: transfer only after the user asked for a human.
    pub on_request: bool,
    /// ASCII letters lowercased.
    pub request_words: WordSet,
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
    /// The database (`WECHAT_DB`) is bound: effects run once and rate limits hold across
    /// locations, requests for a human are remembered by every isolate.
    pub database: bool,
    /// The cron runs for this account (the environment's): queue alerts, and the ledger's
    /// retention, which covers every account's rows.
    pub cron: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities { api: true, webhook: true, database: true, cron: true };
}

/// Validates a document against what the deployment can do.
pub fn validate(body: &[u8], can: Capabilities) -> Result<Document, Error> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let (raw, value): (raw::Document, _) = document::read(body)?;
    let rules = raw.into_rules(can)?;
    // Stored compact, members in the order given.
    Ok(Document { rules, json: value.to_string() })
}

/// A stored document, read back: validated again (a hand-edited KV entry must not break replies).
pub fn load(stored: &str) -> Result<Document, Error> {
    validate(stored.as_bytes(), Capabilities::ALL)
}

fn invalid(field: &str, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.to_string(), reason }
}

const NEEDS_API: &str = "needs the WeChat API (WECHAT_APPID and WECHAT_APPSECRET)";
const NEEDS_DATABASE: &str = "needs the database (WECHAT_DB)";

/// The document as written: serde reads it (unknown fields refused, `null` as absent, each
/// leaf checked by its own type in the API's words), then [`raw::Document::into_rules`] checks
/// what spans fields and turns it into [`Rules`].
mod raw {
    use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
    use serde::Deserialize;

    use super::*;

    /// A leaf of the document as read: a string, a non-negative integer or a flag (anything
    /// else is refused by the leaf's type, with its own reason).
    enum Scalar {
        Str(String),
        Int(u64),
        Bool(bool),
    }

    struct ScalarVisitor;

    impl Visitor<'_> for ScalarVisitor {
        type Value = Scalar;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string, a non-negative integer or true or false")
        }
        fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
            Ok(Scalar::Str(s.to_string()))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
            Ok(Scalar::Int(n))
        }
        fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
            Ok(Scalar::Bool(b))
        }
    }

    /// A leaf: `check` turns its scalar into `T` or names why not; a value of another kind
    /// (`wrong`) is refused with `wrong` too.
    fn leaf<'de, D, T>(
        d: D,
        wrong: &'static str,
        check: impl FnOnce(Scalar) -> Result<T, &'static str>,
    ) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
    {
        let scalar = d.deserialize_any(ScalarVisitor).map_err(|_| D::Error::custom(wrong))?;
        check(scalar).map_err(D::Error::custom)
    }

    /// A string leaf: `read` turns it into `T` or names why not.
    fn string<'de, D, T>(d: D, read: impl FnOnce(&str) -> Result<T, &'static str>) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
    {
        leaf(d, "must be a string", |v| match v {
            Scalar::Str(s) => read(&s),
            _ => Err("must be a string"),
        })
    }

    /// A non-empty string of at most `MAX` bytes.
    pub struct Text<const MAX: usize>(pub String);

    impl<'de, const MAX: usize> Deserialize<'de> for Text<MAX> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            string(d, |s| {
                if s.trim().is_empty() {
                    Err("must not be empty")
                } else if s.len() > MAX {
                    Err(if MAX == MAX_TEXT_BYTES { "is longer than 2048 bytes" } else { "is longer than 256 bytes" })
                } else {
                    Ok(Text(s.to_string()))
                }
            })
        }
    }

    pub type LongText = Text<MAX_TEXT_BYTES>;

    /// 0 to [`MAX_WORDS`] words, trimmed, ASCII letters lowercased.
    pub struct Words(pub Vec<String>);

    impl<'de> Deserialize<'de> for Words {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let words: Vec<Text<MAX_WORD_BYTES>> = Vec::deserialize(d)?;
            if words.len() > MAX_WORDS {
                return Err(D::Error::custom("lists more than 100 words"));
            }
            Ok(Words(words.into_iter().map(|w| w.0.trim().to_ascii_lowercase()).collect()))
        }
    }

    /// One of a few words, or `message`.
    fn choice<'de, D: Deserializer<'de>, T: Copy>(
        d: D,
        options: &[(&str, T)],
        message: &'static str,
    ) -> Result<T, D::Error> {
        leaf(d, message, |v| match v {
            Scalar::Str(s) => options.iter().find(|(name, _)| *name == s).map(|(_, t)| *t).ok_or(message),
            _ => Err(message),
        })
    }

    /// An integer in `MIN..=MAX` (seconds or a count).
    pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

    impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let message = match (MIN, MAX) {
                (MIN_REMEMBER_SECS, MAX_REMEMBER_SECS) => "must be an integer from 60 to 604800",
                (1, MAX_EVERY_SECS) => "must be an integer from 1 to 2592000",
                (MIN_EVERY_SECS, MAX_EVERY_SECS) => "must be an integer from 60 to 2592000",
                (1, MAX_RETENTION_DAYS) => "must be an integer from 1 to 3650",
                (MIN_UNANSWERED_AFTER_SECS, MAX_UNANSWERED_AFTER_SECS) => "must be an integer from 60 to 86400",
                _ => "is not valid",
            };
            leaf(d, message, |v| match v {
                Scalar::Int(n) if (MIN..=MAX).contains(&n) => Ok(Bounded(n)),
                _ => Err(message),
            })
        }
    }

    pub type EverySecs = Bounded<MIN_EVERY_SECS, MAX_EVERY_SECS>;

    pub struct Timezone(pub Offset);

    impl<'de> Deserialize<'de> for Timezone {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            string(d, |s| Offset::parse(s).map(Timezone).ok_or("must be a UTC offset like +08:00"))
        }
    }

    /// `HH:MM-HH:MM`.
    pub struct RangeItem(pub Range);

    impl<'de> Deserialize<'de> for RangeItem {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            string(d, |s| {
                Range::parse(s).map(RangeItem).map_err(|e| match e {
                    RangeError::Syntax => "must be HH:MM-HH:MM (24:00 only as an end)",
                    RangeError::Empty => "must end after it starts",
                })
            })
        }
    }

    /// One day's ranges.
    pub struct Ranges(pub Vec<Range>);

    impl<'de> Deserialize<'de> for Ranges {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let items: Vec<RangeItem> = Vec::deserialize(d)?;
            if items.len() > MAX_RANGES_PER_DAY {
                return Err(D::Error::custom("holds more than 48 ranges"));
            }
            Ok(Ranges(items.into_iter().map(|r| r.0).collect()))
        }
    }

    pub struct DateItem(pub Date);

    impl<'de> Deserialize<'de> for DateItem {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            string(d, |s| Date::parse(s).map(DateItem).ok_or("must be a date YYYY-MM-DD"))
        }
    }

    /// An object's members in the order written (weekdays, dates).
    pub struct Ordered<V>(pub Vec<(String, V)>);

    impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Members<V>(std::marker::PhantomData<V>);
            impl<'de, V: Deserialize<'de>> Visitor<'de> for Members<V> {
                type Value = Ordered<V>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                    let mut members = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, V>()? {
                        members.push((k, v));
                    }
                    Ok(Ordered(members))
                }
            }
            d.deserialize_map(Members(std::marker::PhantomData))
        }
    }

    pub struct Flag(pub bool);

    impl<'de> Deserialize<'de> for Flag {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            leaf(d, "must be true or false", |v| match v {
                Scalar::Bool(b) => Ok(Flag(b)),
                _ => Err("must be true or false"),
            })
        }
    }

    pub struct Match(pub bool);

    impl<'de> Deserialize<'de> for Match {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            choice(d, &[("exact", true), ("contains", false)], "must be exact or contains").map(Match)
        }
    }

    pub struct Mode(pub bool);

    impl<'de> Deserialize<'de> for Mode {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            choice(d, &[("all", false), ("on_request", true)], "must be all or on_request").map(Mode)
        }
    }

    pub struct Action(pub FallbackAction);

    impl<'de> Deserialize<'de> for Action {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let options = [
                ("transfer", FallbackAction::Transfer),
                ("reply", FallbackAction::Reply),
                ("transfer_and_notify", FallbackAction::TransferAndNotify),
            ];
            choice(d, &options, "must be transfer, reply or transfer_and_notify").map(Action)
        }
    }

    #[derive(Clone, Copy)]
    pub enum AlertKind {
        Waiting,
        Queue,
        Credentials,
    }

    impl<'de> Deserialize<'de> for AlertKind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let options =
                [("waiting", AlertKind::Waiting), ("queue", AlertKind::Queue), ("credentials", AlertKind::Credentials)];
            choice(d, &options, "must be waiting, queue or credentials")
        }
    }

    pub struct Wecom(pub bool);

    impl<'de> Deserialize<'de> for Wecom {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            choice(d, &[("wecom", true), ("json", false)], "must be wecom or json").map(Wecom)
        }
    }

    /// At most [`MAX_KEYWORD_RULES`] keyword rules.
    pub struct KeywordList(pub Vec<Keyword>);

    impl<'de> Deserialize<'de> for KeywordList {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let items: Vec<Keyword> = Vec::deserialize(d)?;
            if items.len() > MAX_KEYWORD_RULES {
                return Err(D::Error::custom("holds more than 200 rules"));
            }
            Ok(KeywordList(items))
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Document {
        timezone: Option<Timezone>,
        welcome: Option<LongText>,
        keywords: Option<KeywordList>,
        transfer: Option<Gate>,
        hours: Option<Hours>,
        closed: Option<Fallback>,
        no_agent: Option<Fallback>,
        alerts: Option<Alerts>,
        sessions: Option<Sessions>,
        ledger: Option<Ledger>,
        stats: Option<Stats>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Stats {
        unanswered_after_secs: Option<Bounded<MIN_UNANSWERED_AFTER_SECS, MAX_UNANSWERED_AFTER_SECS>>,
        first_response: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Ledger {
        retention_days: Option<Bounded<1, MAX_RETENTION_DAYS>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Keyword {
        r#match: Option<Match>,
        words: Option<Words>,
        reply: Option<LongText>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Gate {
        mode: Option<Mode>,
        request_words: Option<Words>,
        remember_secs: Option<Bounded<MIN_REMEMBER_SECS, MAX_REMEMBER_SECS>>,
        prompt: Option<LongText>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Hours {
        weekly: Option<Ordered<Ranges>>,
        closed_dates: Option<Vec<DateItem>>,
        open_dates: Option<Ordered<Ranges>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Fallback {
        action: Option<Action>,
        text: Option<LongText>,
        notify_every_secs: Option<EverySecs>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Alerts {
        on: Option<Vec<AlertKind>>,
        format: Option<Wecom>,
        queue_threshold: Option<Bounded<1, MAX_EVERY_SECS>>,
        wait_secs: Option<EverySecs>,
        every_secs: Option<EverySecs>,
        include_text: Option<Flag>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Sessions {
        greeting: Option<LongText>,
        farewell: Option<LongText>,
    }

    fn words_at_least_one(words: Vec<String>, at: &str) -> Result<Vec<String>, Error> {
        if words.is_empty() {
            return Err(invalid(at, "must list at least one word"));
        }
        Ok(words)
    }

    /// A day's ranges, refused at the later of two that overlap.
    fn day(ranges: Ranges, at: &str) -> Result<Vec<Range>, Error> {
        if let Some((_, later)) = overlap(&ranges.0) {
            return Err(invalid(&format!("{at}[{later}]"), "overlaps another range of the same day"));
        }
        Ok(ranges.0)
    }

    fn fallback(f: Fallback, at: &str) -> Result<super::Fallback, Error> {
        let action = f.action.map_or(FallbackAction::Transfer, |a| a.0);
        let text = f.text.map(|t| t.0);
        if action != FallbackAction::Transfer && text.is_none() {
            return Err(invalid(&format!("{at}.text"), "is required with this action"));
        }
        if f.notify_every_secs.is_some() && action != FallbackAction::TransferAndNotify {
            return Err(invalid(&format!("{at}.notify_every_secs"), "is only used with transfer_and_notify"));
        }
        let notify_every_secs = f.notify_every_secs.map_or(DEFAULT_NOTIFY_EVERY_SECS, |s| s.0);
        Ok(super::Fallback { action, text, notify_every_secs })
    }

    impl Document {
        /// The rules, after the checks that span fields and what the deployment can do.
        pub fn into_rules(self, can: Capabilities) -> Result<Rules, Error> {
            let mut rules = Rules::default();
            if let Some(tz) = self.timezone {
                rules.timezone = tz.0;
            }
            rules.welcome = self.welcome.map(|t| t.0);
            for (i, k) in self.keywords.map(|k| k.0).unwrap_or_default().into_iter().enumerate() {
                let at = format!("keywords[{i}]");
                let words = k.words.ok_or_else(|| invalid(&format!("{at}.words"), "is required"))?;
                let words = words_at_least_one(words.0, &format!("{at}.words"))?;
                let reply = k.reply.ok_or_else(|| invalid(&format!("{at}.reply"), "is required"))?.0;
                rules.keywords.push(super::Keyword { exact: k.r#match.is_none_or(|m| m.0), words, reply });
            }
            rules.matcher = KeywordMatcher::new(&rules.keywords)
                .map_err(|_| invalid("keywords", "holds more words than can be matched"))?;
            if let Some(gate) = self.transfer {
                let on_request = gate.mode.is_some_and(|m| m.0);
                let request_words = match gate.request_words {
                    Some(words) if on_request => words_at_least_one(words.0, "transfer.request_words")?,
                    Some(words) => words.0,
                    None if on_request => {
                        return Err(invalid("transfer.request_words", "is required when mode is on_request"))
                    }
                    None => Vec::new(),
                };
                let request_words = WordSet::new(&request_words)
                    .map_err(|_| invalid("transfer.request_words", "holds more words than can be matched"))?;
                if on_request && !can.database {
                    return Err(invalid("transfer.mode", NEEDS_DATABASE));
                }
                rules.transfer = super::Gate {
                    on_request,
                    request_words,
                    remember_secs: gate.remember_secs.map_or(DEFAULT_REMEMBER_SECS, |s| s.0),
                    prompt: gate.prompt.map(|t| t.0),
                };
            }
            if let Some(h) = self.hours {
                let mut hours = super::Hours::default();
                for (name, ranges) in h.weekly.map(|w| w.0).unwrap_or_default() {
                    let at = format!("hours.weekly.{name}");
                    let i = WEEKDAYS
                        .iter()
                        .position(|d| *d == name)
                        .ok_or_else(|| invalid(&at, "is not a weekday (mon to sun)"))?;
                    if let Some(slot) = hours.weekly.get_mut(i) {
                        *slot = day(ranges, &at)?;
                    }
                }
                hours.closed_dates = h.closed_dates.unwrap_or_default().into_iter().map(|d| d.0).collect();
                for (date, ranges) in h.open_dates.map(|d| d.0).unwrap_or_default() {
                    let at = format!("hours.open_dates.{date}");
                    let date = Date::parse(&date).ok_or_else(|| invalid(&at, "must be a date YYYY-MM-DD"))?;
                    hours.open_dates.push((date, day(ranges, &at)?));
                }
                rules.hours = Some(hours);
            }
            if let Some(closed) = self.closed {
                rules.closed = fallback(closed, "closed")?;
                if rules.closed.action == FallbackAction::TransferAndNotify && !can.api {
                    return Err(invalid("closed", NEEDS_API));
                }
                if rules.closed.action == FallbackAction::TransferAndNotify && !can.database {
                    return Err(invalid("closed.action", NEEDS_DATABASE));
                }
            }
            if let Some(no_agent) = self.no_agent {
                rules.no_agent = fallback(no_agent, "no_agent")?;
                if rules.no_agent.action != FallbackAction::Transfer && !can.api {
                    return Err(invalid("no_agent", NEEDS_API));
                }
                if rules.no_agent.action == FallbackAction::TransferAndNotify && !can.database {
                    return Err(invalid("no_agent.action", NEEDS_DATABASE));
                }
            }
            if let Some(a) = self.alerts {
                if !can.webhook {
                    return Err(invalid("alerts", "needs ALERT_WEBHOOK_URL"));
                }
                if !can.database {
                    return Err(invalid("alerts", NEEDS_DATABASE));
                }
                let mut alerts = super::Alerts {
                    waiting: false,
                    queue: false,
                    credentials: false,
                    wecom: a.format.is_none_or(|f| f.0),
                    queue_threshold: a.queue_threshold.map_or(DEFAULT_QUEUE_THRESHOLD, |n| n.0),
                    wait_secs: a.wait_secs.map_or(DEFAULT_WAIT_SECS, |n| n.0),
                    every_secs: a.every_secs.map_or(DEFAULT_ALERT_EVERY_SECS, |n| n.0),
                    include_text: a.include_text.is_some_and(|f| f.0),
                };
                for kind in a.on.ok_or_else(|| invalid("alerts.on", "is required"))? {
                    match kind {
                        AlertKind::Waiting => alerts.waiting = true,
                        AlertKind::Queue => alerts.queue = true,
                        AlertKind::Credentials => alerts.credentials = true,
                    }
                }
                if (alerts.waiting || alerts.queue) && !can.api {
                    return Err(invalid("alerts.on", NEEDS_API));
                }
                if alerts.queue && !can.cron {
                    return Err(invalid(
                        "alerts.on",
                        "queue is checked by the cron, for the environment's account only",
                    ));
                }
                rules.alerts = Some(alerts);
            }
            if let Some(sessions) = self.sessions {
                rules.sessions = super::Sessions {
                    greeting: sessions.greeting.map(|t| t.0),
                    farewell: sessions.farewell.map(|t| t.0),
                };
                if (rules.sessions.greeting.is_some() || rules.sessions.farewell.is_some()) && !can.api {
                    return Err(invalid("sessions", NEEDS_API));
                }
                if (rules.sessions.greeting.is_some() || rules.sessions.farewell.is_some()) && !can.database {
                    return Err(invalid("sessions", NEEDS_DATABASE));
                }
            }
            if let Some(ledger) = self.ledger {
                if ledger.retention_days.is_some() && !can.cron {
                    return Err(invalid(
                        "ledger.retention_days",
                        "is the environment's account's: its cron deletes every account's old rows",
                    ));
                }
                rules.retention_days = ledger.retention_days.map_or(DEFAULT_RETENTION_DAYS, |d| d.0);
            }
            if let Some(stats) = self.stats {
                if stats.first_response == Some(true) && !can.api {
                    return Err(invalid("stats.first_response", NEEDS_API));
                }
                if stats.first_response == Some(true) && !can.cron {
                    return Err(invalid(
                        "stats.first_response",
                        "is the environment's account's: its cron reads the message records",
                    ));
                }
                rules.stats = super::Stats {
                    unanswered_after_secs: stats.unanswered_after_secs.map_or(DEFAULT_UNANSWERED_AFTER_SECS, |d| d.0),
                    first_response: stats.first_response.unwrap_or(false),
                };
            }
            Ok(rules)
        }
    }
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
        let doc = validate(&wechat_mp::testkit::fixture("rules/fullest.json"), Capabilities::ALL).unwrap();
        assert_eq!(doc.rules.keywords.len(), MAX_KEYWORD_RULES);
        assert_eq!(doc.rules.hours.as_ref().unwrap().closed_dates.len(), 28);
    }

    #[test]
    fn the_defaults_reproduce_todays_behaviour() {
        let none = Capabilities { api: false, webhook: false, database: true, cron: true };
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
            (r#"{"ledger":{"retention_days":0}}"#.into(), "ledger.retention_days", "must be an integer from 1 to 3650"),
            (r#"{"ledger":{"keep":"forever"}}"#.into(), "ledger.keep", "is not a known field"),
            (
                r#"{"stats":{"unanswered_after_secs":59}}"#.into(),
                "stats.unanswered_after_secs",
                "must be an integer from 60 to 86400",
            ),
            (r#"{"stats":{"first_response":1}}"#.into(), "stats.first_response", "must be true or false"),
            (r#"{"stats":{"sla":60}}"#.into(), "stats.sla", "is not a known field"),
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
        let no_api = Capabilities { api: false, webhook: true, database: true, cron: true };
        let no_webhook = Capabilities { api: true, webhook: false, database: true, cron: true };
        let cases: [(&[u8], Capabilities, &str, &str); 7] = [
            (br#"{"no_agent":{"action":"reply","text":"nobody"}}"#, no_api, "no_agent", NEEDS_API),
            (br#"{"closed":{"action":"transfer_and_notify","text":"later"}}"#, no_api, "closed", NEEDS_API),
            (br#"{"sessions":{"greeting":"hi"}}"#, no_api, "sessions", NEEDS_API),
            (br#"{"alerts":{"on":["queue"]}}"#, no_api, "alerts.on", NEEDS_API),
            (br#"{"stats":{"first_response":true}}"#, no_api, "stats.first_response", NEEDS_API),
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
        assert!(validate(
            br#"{"no_agent":{"action":"transfer"}}"#,
            Capabilities { api: false, webhook: false, database: true, cron: true }
        )
        .is_ok());
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
