//! The one push pipeline: a push is opened once (verified, decrypted, parsed), decided by the
//! front desk with the facts its rules need (each read within its time limit), targeted, and
//! answered; recording it in the ledger and its effects are handed back to run after the reply.

use std::rc::Rc;

use wechat_mp::callback::{self, CallbackSettings, Inbound, Passive, Query};
use wechat_mp::reply::SUCCESS;
use wechat_mp::Message;

use crate::api::client::WeChatApi;
use crate::api::kf::{self, OnlineKf, OnlineState, Target};
use crate::config::Account;
use crate::desk::decide::{decide, Agents, Answer, Decision, Fact, Facts, Reason, Step};
use crate::desk::effects::{self, Effects, Recorded};
use crate::desk::Desk;
use crate::error::Error;
use crate::notes::Notes;
use crate::runtime::{join, Background, Clock, Runtime};

/// How far back a push's `CreateTime` is trusted as the time to decide it for.
pub const DECISION_WINDOW_SECS: u64 = 60;

/// A push's answer.
pub struct Reply {
    /// `success`, or the reply's XML (encrypted when the push was).
    pub body: String,
    /// What happened, for the log line: `transfer text targeted by closed` (never content).
    pub outcome: String,
    /// The push's effects and any lookup finishing after the reply.
    pub background: Option<Background>,
}

impl Reply {
    /// Whether the body is XML (else the plain-text `success`).
    pub fn is_xml(&self) -> bool {
        self.body != SUCCESS
    }
}

/// What a push needs of its account and the request: each piece narrow.
pub struct Pipeline<'a, R> {
    pub rt: &'a Rc<R>,
    pub settings: CallbackSettings<'a>,
    pub account: &'a Account,
    pub desk: Desk<'a, R>,
    /// The account's WeChat API, when it is configured (online routing, no-agent rules).
    pub api: Result<WeChatApi<R>, Error>,
    pub online: &'a Rc<OnlineState>,
    pub effects: Effects<R>,
    pub notes: &'a Rc<Notes>,
}

/// The time a push is decided for (office hours): its `CreateTime`, within the last
/// [`DECISION_WINDOW_SECS`] (else now), so that WeChat's retries of one push, seconds later, get
/// the same passive reply even across a closing time.
fn decision_time(message: &Message, now: u64) -> u64 {
    message.create_time.clamp(now.saturating_sub(DECISION_WINDOW_SECS), now)
}

/// Who is online, from the online list (`None`: the lookup failed or ran over budget).
fn presence(list: Option<&[OnlineKf]>) -> Agents {
    match list {
        None => Agents::Unknown,
        Some(list) if list.iter().any(|kf| kf.status != 0) => Agents::Online,
        Some(_) => Agents::Nobody,
    }
}

impl<R: Runtime + 'static> Pipeline<'_, R> {
    /// Serves a `POST` to the callback URL.
    pub async fn serve(self, query: &str, body: &[u8]) -> Result<Reply, Error> {
        let now = self.rt.clock().now();
        let inbound = callback::open_message(&self.settings, &Query::parse(query), body, now)?;
        let message = &inbound.message;
        let loaded = self.desk.current_rules().await;
        let rules = &loaded.document.rules;
        let mut facts = Facts::default();
        // The online list, once looked up for the decision, serves the transfer's target too.
        let mut online: Option<Option<Vec<OnlineKf>>> = None;
        let mut background = None;
        // The reply path queries the database at most once: once the gate has, the online list
        // comes from memory or WeChat, not from the database's shared copy.
        let mut queried = false;
        let decision = loop {
            match decide(message, decision_time(message, now), rules, &facts) {
                Step::Need(Fact::Requested) => {
                    let (asked, read) = self.desk.requested(&message.from_user_name).await;
                    facts.requested = Some(asked);
                    queried |= read;
                }
                Step::Need(Fact::Agents) => {
                    let (list, finish) = self.online_agents(!queried).await;
                    facts.agents = Some(presence(list.as_deref()));
                    online = Some(list);
                    background = join(background, finish);
                }
                Step::Decided(d) => break d,
            }
        };
        let kf_account = match decision.answer {
            Answer::Transfer => {
                let (chosen, finish) = transfer_target(self.account, online, || self.online_agents(!queried)).await;
                background = join(background, finish);
                chosen
            }
            _ => None,
        };
        // After the reply: the ledger's row (with a database) and the effects.
        let planned = effects::plan(message, &decision, rules);
        if planned.is_some() || self.rt.database().is_some() {
            let at = decision_time(message, now);
            let closed = rules.hours.as_ref().is_some_and(|h| !h.is_open(at, rules.timezone));
            let recorded = Recorded::new(message, &decision, kf_account.as_deref(), closed);
            let (effects, loaded) = (self.effects.clone(), loaded.clone());
            let work: Background =
                Box::pin(async move { effects.after_reply(&loaded.document.rules, recorded, planned).await });
            background = join(background, Some(work));
        }
        // Only an encrypted reply needs a random prefix.
        let random = if inbound.encrypted && decision.answer != Answer::Success { self.rt.random16() } else { [0; 16] };
        reply(&self.settings, &inbound, &decision, kf_account, now, &random, background)
    }

    /// Who is online (see [`kf::online_agents`]; `shared`: the database's shared copy may be
    /// read); unknown without the WeChat API.
    async fn online_agents(&self, shared: bool) -> (Option<Vec<OnlineKf>>, Option<Background>) {
        match &self.api {
            Ok(api) => kf::online_agents(api, self.online, self.notes, shared).await,
            Err(e) => {
                self.notes.add(format!("online list unavailable: {}", e.code()));
                (None, None)
            }
        }
    }
}

/// The `KfAccount` of a transfer: none, the fixed one, or the first listed account online with
/// free capacity, from the list the decision looked up (`known`) or from `look_up`.
pub async fn transfer_target<F, Fut>(
    account: &Account,
    known: Option<Option<Vec<OnlineKf>>>,
    look_up: F,
) -> (Option<String>, Option<Background>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = (Option<Vec<OnlineKf>>, Option<Background>)>,
{
    let accounts = match kf::target(account) {
        Target::Untargeted => return (None, None),
        Target::Fixed(account) => return (Some(account.to_string()), None),
        Target::LookUp(accounts) => accounts,
    };
    let (list, background) = match known {
        Some(list) => (list, None),
        None => look_up().await,
    };
    (list.and_then(|list| kf::choose(accounts, &list).map(str::to_string)), background)
}

/// The reply to `inbound` for `decision`, and the log line's outcome.
fn reply(
    settings: &CallbackSettings<'_>,
    inbound: &Inbound,
    decision: &Decision<'_>,
    kf_account: Option<String>,
    now: u64,
    random: &[u8; 16],
    background: Option<Background>,
) -> Result<Reply, Error> {
    let passive = match decision.answer {
        Answer::Transfer => Passive::Transfer(kf_account.as_deref()),
        Answer::Text(text) => Passive::Text(text),
        Answer::Success => Passive::Success,
    };
    let body = callback::respond(settings, inbound, passive, now, random)?;
    let mut outcome = format!("{} {}", passive.as_str(), inbound.message.label());
    if inbound.encrypted {
        outcome.push_str(" encrypted");
    }
    if kf_account.is_some() {
        outcome.push_str(" targeted");
    }
    if decision.reason != Reason::Default {
        outcome.push_str(" by ");
        outcome.push_str(decision.reason.as_str());
    }
    Ok(Reply { body, outcome, background })
}
