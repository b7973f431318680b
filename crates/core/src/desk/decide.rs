//! The front desk's decision, pure: (message, now, rules, what is known) -> the one passive
//! answer, and whether to remember that the user asked for a human.
//!
//! Order for a user message: keywords (text only) -> the transfer gate -> closed -> no agent ->
//! transfer. `subscribe` gets the welcome; other events `success`. A decision that needs a fact
//! the caller has not looked up yet (a remembered request, who is online) says so, and the
//! caller asks again with it: no I/O is made that the rules do not need.

use wechat_mp::{Event, Message, MessageKind};

use crate::desk::rules::{FallbackAction, Rules};

/// What the decision may need to know besides the message and the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// Whether the user asked for a human within `transfer.remember_secs`.
    Requested,
    /// Whether any agent is online.
    Agents,
}

/// Who is online, as far as the lookup could tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agents {
    Online,
    Nobody,
    /// The lookup failed or ran over its budget: assume agents are there.
    Unknown,
}

/// The facts looked up so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    pub requested: Option<bool>,
    pub agents: Option<Agents>,
}

/// The passive answer (the transfer's target is chosen afterwards, by the routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'r> {
    Transfer,
    Text(&'r str),
    Success,
}

/// Why, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The default: transfer a user message, acknowledge an event.
    Default,
    Welcome,
    Keyword,
    /// The gate: the user has not asked for a human.
    Prompt,
    Closed,
    NoAgent,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Default => "default",
            Reason::Welcome => "welcome",
            Reason::Keyword => "keyword",
            Reason::Prompt => "prompt",
            Reason::Closed => "closed",
            Reason::NoAgent => "no_agent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'r> {
    pub answer: Answer<'r>,
    /// With a transfer, `Closed` or `NoAgent` says the user will wait (a notice, a `waiting`
    /// alert may follow).
    pub reason: Reason,
    /// The user asked for a human just now: remember it for `transfer.remember_secs`.
    pub remember_request: bool,
}

impl Decision<'_> {
    /// The user is transferred while closed or while nobody is online: they will wait.
    pub fn waiting(&self) -> Option<Reason> {
        (self.answer == Answer::Transfer && matches!(self.reason, Reason::Closed | Reason::NoAgent))
            .then_some(self.reason)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'r> {
    Need(Fact),
    Decided(Decision<'r>),
}

fn decided(answer: Answer<'_>, reason: Reason, remember_request: bool) -> Step<'_> {
    Step::Decided(Decision { answer, reason, remember_request })
}

/// Decides the answer to `message` at `now` (Unix seconds).
pub fn decide<'r>(message: &Message, now: u64, rules: &'r Rules, facts: &Facts) -> Step<'r> {
    let text = match &message.kind {
        MessageKind::Event(Event::Subscribe { .. }) => {
            return match &rules.welcome {
                Some(welcome) => decided(Answer::Text(welcome), Reason::Welcome, false),
                None => decided(Answer::Success, Reason::Default, false),
            };
        }
        MessageKind::Event(_) => return decided(Answer::Success, Reason::Default, false),
        MessageKind::Text { content } => Some(content),
        _ => None,
    };
    let gate = &rules.transfer;
    if let Some(rule) = text.and_then(|t| rules.matcher.first(t)).and_then(|i| rules.keywords.get(i)) {
        return decided(Answer::Text(&rule.reply), Reason::Keyword, false);
    }
    let asked = gate.on_request && text.is_some_and(|t| gate.request_words.found_in(t));
    if gate.on_request && !asked {
        match facts.requested {
            None => return Step::Need(Fact::Requested),
            Some(false) => {
                let answer = gate.prompt.as_deref().map_or(Answer::Success, Answer::Text);
                return decided(answer, Reason::Prompt, false);
            }
            Some(true) => {}
        }
    }
    if rules.hours.as_ref().is_some_and(|h| !h.is_open(now, rules.timezone)) {
        return match (rules.closed.action, rules.closed.text.as_deref()) {
            (FallbackAction::Reply, Some(text)) => decided(Answer::Text(text), Reason::Closed, asked),
            _ => decided(Answer::Transfer, Reason::Closed, asked),
        };
    }
    if rules.needs_agents() {
        match facts.agents {
            None => return Step::Need(Fact::Agents),
            Some(Agents::Nobody) => {
                return match (rules.no_agent.action, rules.no_agent.text.as_deref()) {
                    (FallbackAction::Reply, Some(text)) => decided(Answer::Text(text), Reason::NoAgent, asked),
                    _ => decided(Answer::Transfer, Reason::NoAgent, asked),
                };
            }
            Some(Agents::Online | Agents::Unknown) => {}
        }
    }
    decided(Answer::Transfer, Reason::Default, asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::rules::validate;
    use wechat_mp::parse_message;
    use wechat_mp::testkit::fixture_str;

    /// 2026-09-28 (a Monday) at `hh:mm`, +08:00, in Unix seconds.
    fn monday(hh: u64, mm: u64) -> u64 {
        1_790_524_800 + hh * 3600 + mm * 60
    }

    fn text(content: &str) -> Message {
        let mut m = parse_message(&fixture_str("messages/text.xml")).unwrap();
        m.kind = MessageKind::Text { content: content.into() };
        m
    }

    fn rules(doc: &str) -> Rules {
        validate(doc.as_bytes(), crate::desk::rules::Capabilities::ALL).unwrap().rules
    }

    const FULL: &str = r#"{
      "welcome": "欢迎",
      "keywords": [
        {"match": "exact", "words": ["营业时间", "Hours"], "reply": "HOURS"},
        {"match": "contains", "words": ["发票"], "reply": "INVOICE"}
      ],
      "transfer": {"mode": "on_request", "request_words": ["人工", "Agent"], "prompt": "PROMPT"},
      "hours": {"weekly": {"mon": ["09:00-12:00", "13:30-18:00"]}},
      "closed": {"action": "reply", "text": "CLOSED"},
      "no_agent": {"action": "reply", "text": "NOBODY"}
    }"#;

    #[test]
    fn monday_is_the_day_the_tests_think_it_is() {
        let (date, minute) = crate::desk::hours::local(monday(9, 0), rules("{}").timezone);
        assert_eq!((date.year, date.month, date.day, date.weekday(), minute), (2026, 9, 28, 0, 540));
    }

    /// Runs the decision the way the caller does, answering each need from `known`.
    fn run<'r>(m: &Message, now: u64, r: &'r Rules, requested: bool, agents: Agents) -> (Decision<'r>, Vec<Fact>) {
        let mut facts = Facts::default();
        let mut asked = Vec::new();
        loop {
            match decide(m, now, r, &facts) {
                Step::Need(Fact::Requested) => {
                    asked.push(Fact::Requested);
                    facts.requested = Some(requested);
                }
                Step::Need(Fact::Agents) => {
                    asked.push(Fact::Agents);
                    facts.agents = Some(agents);
                }
                Step::Decided(d) => return (d, asked),
            }
        }
    }

    #[test]
    fn the_rules_apply_in_order() {
        let r = rules(FULL);
        let open = monday(10, 0);
        let night = monday(22, 0);
        use Agents::*;
        use Answer::*;
        use Reason as R;
        #[rustfmt::skip]
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, u64, bool, Agents, Answer, R, bool, Vec<Fact>)> = vec![
            // keywords first, whatever the gate, the hours and the agents say
            ("营业时间", night, false, Nobody, Text("HOURS"), R::Keyword, false, vec![]),
            ("  HOURS ", open, false, Online, Text("HOURS"), R::Keyword, false, vec![]),
            ("营业时间?", open, false, Online, Text("PROMPT"), R::Prompt, false, vec![Fact::Requested]),
            ("我要开发票", open, false, Online, Text("INVOICE"), R::Keyword, false, vec![]),
            // the gate
            ("你好", open, false, Online, Text("PROMPT"), R::Prompt, false, vec![Fact::Requested]),
            ("你好", open, true, Online, Transfer, R::Default, false, vec![Fact::Requested, Fact::Agents]),
            ("转人工", open, false, Online, Transfer, R::Default, true, vec![Fact::Agents]),
            ("I want an AGENT", open, false, Online, Transfer, R::Default, true, vec![Fact::Agents]),
            // closed, then no agent
            ("人工", night, false, Online, Text("CLOSED"), R::Closed, true, vec![]),
            ("你好", night, true, Online, Text("CLOSED"), R::Closed, false, vec![Fact::Requested]),
            ("人工", open, false, Nobody, Text("NOBODY"), R::NoAgent, true, vec![Fact::Agents]),
            ("人工", open, false, Unknown, Transfer, R::Default, true, vec![Fact::Agents]),
        ];
        for (content, now, requested, agents, answer, reason, remember, needs) in cases {
            let (d, asked) = run(&text(content), now, &r, requested, agents);
            assert_eq!((d.answer, d.reason, d.remember_request), (answer, reason, remember), "{content:?} at {now}");
            assert_eq!(asked, needs, "{content:?}: facts looked up");
        }
    }

    #[test]
    fn non_text_messages_skip_keywords_and_events_keep_their_answer() {
        let r = rules(FULL);
        let image = parse_message(&fixture_str("messages/image.xml")).unwrap();
        assert_eq!(run(&image, monday(10, 0), &r, false, Agents::Online).0.answer, Answer::Text("PROMPT"));
        assert_eq!(run(&image, monday(10, 0), &r, true, Agents::Online).0.answer, Answer::Transfer);
        let voice = parse_message(&fixture_str("messages/voice_recognition.xml")).unwrap();
        assert_eq!(run(&voice, monday(22, 0), &r, true, Agents::Online).0.answer, Answer::Text("CLOSED"));
        for (event, answer) in [
            ("subscribe", Answer::Text("欢迎")),
            ("subscribe_qrscene", Answer::Text("欢迎")),
            ("click", Answer::Success),
            ("kf_create_session", Answer::Success),
            ("unsubscribe", Answer::Success),
        ] {
            let m = parse_message(&fixture_str(&format!("events/{event}.xml"))).unwrap();
            let (d, asked) = run(&m, monday(22, 0), &r, false, Agents::Nobody);
            assert_eq!((d.answer, asked), (answer, vec![]), "{event}");
        }
    }

    #[test]
    fn the_defaults_transfer_every_user_message_and_acknowledge_every_event_without_looking_anything_up() {
        let r = Rules::default();
        for name in ["text", "image", "voice", "video", "location", "link", "file", "miniprogrampage", "shortvideo"] {
            let m = parse_message(&fixture_str(&format!("messages/{name}.xml"))).unwrap();
            assert_eq!(
                decide(&m, 0, &r, &Facts::default()),
                decided(Answer::Transfer, Reason::Default, false),
                "{name}"
            );
        }
        for name in ["subscribe", "scan", "click", "location", "kf_close_session"] {
            let m = parse_message(&fixture_str(&format!("events/{name}.xml"))).unwrap();
            assert_eq!(
                decide(&m, 0, &r, &Facts::default()),
                decided(Answer::Success, Reason::Default, false),
                "{name}"
            );
        }
    }

    #[test]
    fn a_closed_transfer_does_not_ask_who_is_online() {
        let r = rules(r#"{"hours":{"weekly":{"mon":["09:00-18:00"]}},"no_agent":{"action":"reply","text":"N"}}"#);
        assert_eq!(
            run(&text("hi"), monday(20, 0), &r, false, Agents::Nobody),
            (Decision { answer: Answer::Transfer, reason: Reason::Closed, remember_request: false }, vec![])
        );
        assert_eq!(run(&text("hi"), monday(10, 0), &r, false, Agents::Nobody).0.answer, Answer::Text("N"));
    }
}
