//! The worker as a function from a request to a response, over the runtime traits: routes and
//! their body limits, the callback (verify, parse, choose the transfer target, reply), the admin
//! API's authentication, the one mapping from [`Error`] to a response, and the log line.
//!
//! The glue reads the request, calls [`serve`], writes the [`Response`], hands
//! [`Served::background`] to `waitUntil`, and prints [`log_line`]: it decides nothing.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::api::admin;
use crate::api::client::WeChatApi;
use crate::api::kf::OnlineKf;
use crate::api::kf::{self, OnlineState, Target};
use crate::api::media;
use crate::api::token_cache::{TokenCache, TokenState};
use crate::config::Config;
use crate::desk::decide::{decide, Agents, Answer, Decision, Fact, Facts, Reason, Step};
use crate::desk::effects::{self, EffectsState};
use crate::desk::{self, DeskState};
use crate::error::Error;
use crate::json::ObjectWriter;
use crate::runtime::{Clock, Runtime};
use crate::text::{find_byte, split_at_byte};
use crate::wechat::callback::{self, CallbackSettings, Inbound, Passive, Query};
use crate::wechat::reply::SUCCESS;

/// Work that runs after the response is sent (`waitUntil`).
pub type Background = Pin<Box<dyn Future<Output = ()>>>;

/// What one isolate remembers between requests.
#[derive(Debug, Default)]
pub struct Isolate {
    pub token: TokenState,
    pub online: OnlineState,
    pub desk: DeskState,
    pub effects: EffectsState,
    /// An upload is being read or sent (one at a time per isolate: see [`prepare`]).
    uploading: std::cell::Cell<bool>,
}

/// One request's view of the worker: the isolate's configuration and state, and the runtime.
pub struct App<R: Runtime> {
    pub config: Rc<Config>,
    pub isolate: Rc<Isolate>,
    pub rt: R,
    /// What happened on the way that the log line should say (never content or secrets).
    notes: RefCell<Vec<String>>,
}

impl<R: Runtime> App<R> {
    pub fn new(config: Rc<Config>, isolate: Rc<Isolate>, rt: R) -> Self {
        App { config, isolate, rt, notes: RefCell::new(Vec::new()) }
    }

    /// The WeChat API of the configured account.
    pub fn api(&self) -> Result<WeChatApi<'_, R>, Error> {
        let creds = self.config.api_credentials()?;
        Ok(WeChatApi { tokens: TokenCache { rt: &self.rt, state: &self.isolate.token, creds } })
    }

    /// Adds a note to the request's log line.
    pub fn note(&self, note: String) {
        self.notes.borrow_mut().push(note);
    }

    /// The notes so far (emptied).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.borrow_mut())
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /wechat`: WeChat's URL check.
    UrlCheck,
    /// `POST /wechat`: a message or event.
    Push,
    /// `GET|HEAD /healthz`.
    Health,
    /// `/api/...`.
    Admin,
    /// `/api/media`, `/api/kf/accounts/{kf_account}/avatar`: admin calls with a file as the body.
    Upload,
    NotFound,
    /// A known path with another method; the `Allow` header's value.
    MethodNotAllowed(&'static str),
}

impl Route {
    pub fn of(method: &str, path: &str) -> Route {
        match path {
            "/wechat" => match method {
                "GET" => Route::UrlCheck,
                "POST" => Route::Push,
                _ => Route::MethodNotAllowed("GET, POST"),
            },
            "/healthz" => match method {
                "GET" | "HEAD" => Route::Health,
                _ => Route::MethodNotAllowed("GET, HEAD"),
            },
            _ if path.starts_with("/api/") => {
                if media::is_upload_path(below_api(path)) {
                    Route::Upload
                } else {
                    Route::Admin
                }
            }
            _ => Route::NotFound,
        }
    }

    /// The most body bytes the route reads (more is a 413); `None`: the body is not read.
    pub fn body_limit(&self) -> Option<usize> {
        match self {
            Route::Push => Some(callback::MAX_BODY_BYTES),
            Route::Admin => Some(admin::MAX_BODY_BYTES),
            Route::Upload => Some(media::MAX_UPLOAD_BODY_BYTES),
            _ => None,
        }
    }

    /// The route's name in the log line.
    pub fn label(&self) -> &'static str {
        match self {
            Route::UrlCheck | Route::Push => "/wechat",
            Route::Health => "/healthz",
            Route::Admin | Route::Upload => "/api",
            Route::NotFound => "other",
            Route::MethodNotAllowed(_) => "method",
        }
    }
}

/// An admin path below `/api` (`/api/media` -> `/media`).
fn below_api(path: &str) -> &str {
    path.strip_prefix("/api").unwrap_or(path)
}

/// `(path, query)` of an absolute URL as the runtime serializes it (no fragment); the query
/// without its `?`.
pub fn split_url(url: &str) -> (&str, &str) {
    // A scheme is letters, digits, '+', '-', '.' up to the first ':'; a relative target has none.
    let is_scheme = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let after_scheme = match find_byte(url, b':') {
        Some(i) if url.get(..i).is_some_and(is_scheme) && url.get(i..).is_some_and(|r| r.starts_with("://")) => i + 3,
        _ => 0,
    };
    let rest = url.get(after_scheme..).unwrap_or_default();
    let target = find_byte(rest, b'/').and_then(|i| rest.get(i..)).unwrap_or("/");
    split_at_byte(target, b'?').unwrap_or((target, ""))
}

/// What the glue read of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Without the `?`.
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    /// The declared type of `body`, for uploads (the glue unwraps a multipart body into its
    /// `media` part: see [`media::File`]).
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the glue writes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The same method and URL get this very response (and log line) for the isolate's
    /// lifetime: the entry may replay it without calling the core (the health report: the
    /// configuration never changes within an isolate).
    pub replayable: bool,
}

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const XML: &str = "application/xml; charset=utf-8";
/// Every content type answered; [`Response::encode`] sends its index in this list.
pub const CONTENT_TYPES: [&str; 3] = [JSON, TEXT, XML];
/// Headers every response carries besides its content type and its route's own.
pub const COMMON_HEADERS: [(&str, &str); 1] = [("cache-control", "no-store")];

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Response { status, content_type, headers: Vec::new(), body, replayable: false }
    }

    /// The one mapping from [`Error`] to a response.
    pub fn error(err: &Error) -> Self {
        Response {
            status: err.status(),
            content_type: JSON,
            headers: err.headers(),
            body: err.body().into_bytes(),
            replayable: false,
        }
    }

    /// The response and its log line as one byte string, for the JS entry to read with one
    /// crossing of the wasm boundary. Little-endian:
    /// `u16 status | u8 content type (index in CONTENT_TYPES) | u8 n | n × (u8 len, name, u16 len,
    /// value) (the route's own headers) | u8 level | u32 len, log line | body`, level 0 = no line,
    /// 1 = `console.log`, 2 = `console.error` (a 5xx); 3 and 4 the same for a line that is not
    /// all ASCII (the entry reads ASCII without a decoder); plus 0x80 when
    /// [`Response::replayable`].
    pub fn encode(&self, log_line: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out, log_line);
        out
    }

    /// [`Response::encode`], appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>, log_line: Option<&str>) {
        out.reserve(self.body.len() + 160);
        out.extend_from_slice(&self.status.to_le_bytes());
        let kind = CONTENT_TYPES.iter().position(|t| *t == self.content_type).unwrap_or_default();
        out.push(u8::try_from(kind).unwrap_or_default());
        let headers = self.headers.get(..usize::from(u8::MAX)).unwrap_or(&self.headers);
        out.push(u8::try_from(headers.len()).unwrap_or(u8::MAX));
        for (name, value) in headers {
            let name = truncated(name.as_bytes(), usize::from(u8::MAX));
            out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(name);
            let value = truncated(value.as_bytes(), usize::from(u16::MAX));
            out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_le_bytes());
            out.extend_from_slice(value);
        }
        let (level, line) = match log_line {
            None => (0, ""),
            Some(line) => (if self.status >= 500 { 2 } else { 1 } + if line.is_ascii() { 0 } else { 2 }, line),
        };
        out.push(level | if self.replayable { 0x80 } else { 0 });
        out.extend_from_slice(&u32::try_from(line.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// At most `max` bytes of `bytes`.
fn truncated(bytes: &[u8], max: usize) -> &[u8] {
    bytes.get(..max).unwrap_or(bytes)
}

/// A served request.
pub struct Served {
    pub response: Response,
    /// What happened, for the log line (never content or secrets).
    pub outcome: String,
    /// Work to finish after the response.
    pub background: Option<Background>,
}

impl Served {
    fn done(response: Response, outcome: impl Into<String>) -> Self {
        Served { response, outcome: outcome.into(), background: None }
    }

    /// The answer to `err`.
    pub fn failed(err: &Error) -> Self {
        Served::done(Response::error(err), err.to_string())
    }
}

/// The store key the JS entry should read before [`serve_now`] can answer this request (then
/// hand the result to [`desk::keep_read`]): the rules' key for a verified push while this
/// isolate's copy is older than 30 s (a push that fails verification is refused without it).
/// The read is the entry's, in JS, so that the isolate's first push (and the one every 30 s
/// after) stays on the path without Rust futures.
pub fn read_first<R: Runtime>(app: &App<R>, route: Route, req: &Request<'_>) -> Option<String> {
    let stale = route == Route::Push && app.isolate.desk.rules_now(app.rt.clock().now()).is_none();
    (stale && open_push(app, req).is_ok()).then(|| desk::rules_key(app))
}

/// The entry's instruction to read `key` from the store and call the core again: status 0,
/// then the key (UTF-8); see [`Response::encode`] for an answer.
pub fn encode_read(key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_read_into(&mut out, key);
    out
}

/// [`encode_read`], appended to `out`.
fn encode_read_into(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(key.as_bytes());
}

/// The result of a read asked for by [`encode_read`], as the entry passes it back: `"+"` and the
/// value, `"-"` for none, anything else (`"!"`) for a failed read.
pub fn decode_read(read: &str) -> Result<Option<String>, Error> {
    match read.split_at_checked(1) {
        Some(("+", value)) => Ok(Some(value.to_string())),
        Some(("-", "")) => Ok(None),
        _ => Err(Error::Internal("KV read failed")),
    }
}

/// The JS entry's synchronous call, whole: `target` is `"<method> <url>"`, `body` the whole body
/// (empty for none), `read` the result of a read this asked for (see [`decode_read`]) and
/// `waited_ms` how long it took. Answers the encoded response with its log line (see
/// [`Response::encode`]), or the instruction to read a store key first and call again (see
/// [`encode_read`]), or `None` when the request needs [`serve`].
pub fn handle_now<R: Runtime>(
    app: &App<R>,
    target: &str,
    body: &[u8],
    read: Option<&str>,
    waited_ms: u64,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    handle_now_into(app, target, body, read, waited_ms, &mut out).then_some(out)
}

/// A reused answer buffer grown past this (by a large answer) is given back before the next
/// answer rather than kept for the isolate's lifetime.
pub const KEPT_ANSWER_BYTES: usize = 64 * 1024;

/// [`handle_now`] into `out` (the glue reuses one buffer for every request: cleared first, and
/// given back if a large answer grew it past [`KEPT_ANSWER_BYTES`]): `false`, and `out` empty,
/// when the request needs [`serve`].
pub fn handle_now_into<R: Runtime>(
    app: &App<R>,
    target: &str,
    body: &[u8],
    read: Option<&str>,
    waited_ms: u64,
    out: &mut Vec<u8>,
) -> bool {
    if out.capacity() > KEPT_ANSWER_BYTES {
        *out = Vec::new();
    }
    out.clear();
    let (method, url) = split_at_byte(target, b' ').unwrap_or((target, ""));
    let (path, query) = split_url(url);
    let route = Route::of(method, path);
    let request = Request { method, path, query, authorization: None, content_type: None, body };
    match read {
        Some(read) => {
            desk::keep_read(app, decode_read(read));
        }
        None => {
            if let Some(key) = read_first(app, route, &request) {
                encode_read_into(out, &key);
                return true;
            }
        }
    }
    let Some(served) = serve_now(app, route, &request) else {
        return false;
    };
    let line = log_line(route, method, served.response.status, &served.outcome, waited_ms, &app.take_notes());
    served.response.encode_into(out, Some(&line));
    true
}

/// Where an answer is in the core's memory, as the JS entry reads it: one number (an export
/// returns it without allocating) that is `address + len × 2³²`. Both are 32-bit on wasm32, so
/// the sum is an exact f64; the entry takes `at >>> 0` as the address and the rest as the length.
pub fn answer_location(address: u32, len: u32) -> f64 {
    f64::from(address) + f64::from(len) * 4_294_967_296.0
}

/// Serves `req` without any I/O, when that is possible: `None` when the answer needs the store
/// or the WeChat API (then [`serve`] does the whole request). The common path, a push
/// transferred to a fixed account or untargeted, and every error answer, are served here.
pub fn serve_now<R: Runtime>(app: &App<R>, route: Route, req: &Request<'_>) -> Option<Served> {
    let result = match route {
        Route::UrlCheck => url_check(app, req),
        Route::Push => match open_push(app, req) {
            Ok(opened) => push_now(app, &opened)?,
            Err(e) => Err(e),
        },
        Route::Health => Ok(health(app)),
        Route::Admin | Route::Upload => return None,
        Route::NotFound => Err(Error::NotFound),
        Route::MethodNotAllowed(allow) => Err(Error::MethodNotAllowed(allow)),
    };
    Some(result.unwrap_or_else(|e| Served::failed(&e)))
}

/// Serves `req`, whose body the glue read within `route.body_limit()`.
pub async fn serve<R: Runtime + 'static>(app: &Rc<App<R>>, route: Route, req: Request<'_>) -> Served {
    let result = match route {
        // Opened (verified, decrypted, parsed) once for both paths.
        Route::Push => {
            let opened = match open_push(app, &req) {
                Ok(opened) => opened,
                Err(e) => return Served::failed(&e),
            };
            if let Some(now) = push_now(app, &opened) {
                return now.unwrap_or_else(|e| Served::failed(&e));
            }
            push(app, opened).await
        }
        Route::Admin => admin_call(app, &req).await,
        Route::Upload => upload_call(app, &req).await,
        // Every other route is served without I/O.
        _ => match serve_now(app, route, &req) {
            Some(served) => return served,
            None => Err(Error::Internal("route without an I/O path")),
        },
    };
    let mut served = result.unwrap_or_else(|e| Served::failed(&e));
    if app.isolate.token.has_credential_failure() {
        // A token request failed in a way no retry fixes: the agents hear of it (rules allowing).
        let app = app.clone();
        let work: Background = Box::pin(async move {
            let rules = desk::current_rules(&app).await;
            effects::credentials_alert(&app, &rules.document.rules).await;
        });
        served.background = join(served.background, Some(work));
    }
    served
}

/// `GET /healthz` (see [`Config::health`]). Out of line, as is [`url_check`]: V8 compiles a
/// function whole on its first call, and the first push need not compile the other routes.
#[inline(never)]
fn health<R: Runtime>(app: &App<R>) -> Served {
    let health = Response { replayable: true, ..Response::new(200, JSON, app.config.health().as_bytes().to_vec()) };
    Served::done(health, "ok")
}

#[inline(never)]
fn url_check<R: Runtime>(app: &App<R>, req: &Request<'_>) -> Result<Served, Error> {
    let settings = app.config.callback()?;
    let query = Query::parse(req.query);
    let echostr = callback::verify_url(&settings, &query, app.rt.clock().now())?;
    Ok(Served::done(Response::new(200, TEXT, echostr.as_bytes().to_vec()), "url_check"))
}

/// A verified, parsed push.
struct Push<'c> {
    settings: CallbackSettings<'c>,
    inbound: Inbound,
    now: u64,
}

fn open_push<'c, R: Runtime>(app: &'c App<R>, req: &Request<'_>) -> Result<Push<'c>, Error> {
    let settings = app.config.callback()?;
    let now = app.rt.clock().now();
    let inbound = callback::open_message(&settings, &Query::parse(req.query), req.body, now)?;
    Ok(Push { settings, inbound, now })
}

/// How far back a push's `CreateTime` is trusted as the time to decide it for.
pub const DECISION_WINDOW_SECS: u64 = 60;

/// The time a push is decided for (office hours): its `CreateTime`, within the last
/// [`DECISION_WINDOW_SECS`] (else now), so that WeChat's retries of one push, seconds later, get
/// the same passive reply even across a closing time.
fn decision_time(message: &crate::wechat::message::Message, now: u64) -> u64 {
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

/// The push answered from what this isolate knows; `None` when it needs the store or the
/// WeChat API (fresh rules, a remembered request, the online list) or a store write.
fn push_now<R: Runtime>(app: &App<R>, push: &Push<'_>) -> Option<Result<Served, Error>> {
    let loaded = app.isolate.desk.rules_now(push.now)?;
    let message = &push.inbound.message;
    let mut facts = Facts::default();
    let decision = loop {
        match decide(message, decision_time(message, push.now), &loaded.document.rules, &facts) {
            Step::Need(Fact::Requested) => {
                facts.requested = Some(app.isolate.desk.requested_now(&message.from_user_name, push.now)?);
            }
            Step::Need(Fact::Agents) => facts.agents = Some(presence(app.isolate.online.known(push.now)?.as_deref())),
            Step::Decided(d) => break d,
        }
    };
    if effects::plan(message, &decision, &loaded.document.rules).is_some() {
        // Work after the reply needs the async path (waitUntil).
        return None;
    }
    let kf_account = match decision.answer {
        Answer::Transfer => transfer_target_now(app, push.now)?,
        _ => None,
    };
    Some(reply(app, push, &decision, kf_account, None))
}

async fn push<R: Runtime + 'static>(app: &Rc<App<R>>, push: Push<'_>) -> Result<Served, Error> {
    let loaded = desk::current_rules(app).await;
    let message = &push.inbound.message;
    let mut facts = Facts::default();
    let mut online = None;
    let mut background = None;
    let decision = loop {
        match decide(message, decision_time(message, push.now), &loaded.document.rules, &facts) {
            Step::Need(Fact::Requested) => facts.requested = Some(desk::requested(app, &message.from_user_name).await),
            Step::Need(Fact::Agents) => {
                let (list, finish) = kf::online_agents(app).await;
                facts.agents = Some(presence(list.as_deref()));
                online = Some(list);
                background = finish;
            }
            Step::Decided(d) => break d,
        }
    };
    if let Some(planned) = effects::plan(message, &decision, &loaded.document.rules) {
        let (app, loaded) = (app.clone(), loaded.clone());
        let work: Background = Box::pin(async move { effects::run(&app, &loaded.document.rules, planned).await });
        background = join(background, Some(work));
    }
    let kf_account = match decision.answer {
        Answer::Transfer => {
            let (chosen, finish) = transfer_target(app, online).await;
            background = join(background, finish);
            chosen
        }
        _ => None,
    };
    reply(app, &push, &decision, kf_account, background)
}

/// Both pieces of background work, one after the other.
fn join(a: Option<Background>, b: Option<Background>) -> Option<Background> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::pin(async move {
            a.await;
            b.await;
        })),
        (a, b) => a.or(b),
    }
}

fn reply<R: Runtime>(
    app: &App<R>,
    push: &Push<'_>,
    decision: &Decision<'_>,
    kf_account: Option<String>,
    background: Option<Background>,
) -> Result<Served, Error> {
    let inbound = &push.inbound;
    let passive = match decision.answer {
        Answer::Transfer => Passive::Transfer(kf_account.as_deref()),
        Answer::Text(text) => Passive::Text(text),
        Answer::Success => Passive::Success,
    };
    // Only an encrypted reply needs a random prefix.
    let random = if inbound.encrypted && passive != Passive::Success { app.rt.random16() } else { [0; 16] };
    let reply = callback::respond(&push.settings, inbound, passive, push.now, &random)?;
    let content_type = if reply == SUCCESS { TEXT } else { XML };
    let mut outcome = String::from(passive.as_str());
    outcome.push(' ');
    outcome.push_str(&inbound.message.label());
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
    Ok(Served { response: Response::new(200, content_type, reply.into_bytes()), outcome, background })
}

/// The `KfAccount` for a transfer from what this isolate knows; `None` when a lookup is needed.
fn transfer_target_now<R: Runtime>(app: &App<R>, now: u64) -> Option<Option<String>> {
    match kf::target(&app.config) {
        Target::Untargeted => Some(None),
        Target::Fixed(account) => Some(Some(account.to_string())),
        Target::LookUp(accounts) => {
            let online = app.isolate.online.known(now)?;
            Some(online.and_then(|list| kf::choose(accounts, &list).map(str::to_string)))
        }
    }
}

/// The `KfAccount` for a transfer (see [`kf::target`] and [`kf::online_agents`]), reusing the
/// online list when the decision already looked it up.
async fn transfer_target<R: Runtime + 'static>(
    app: &Rc<App<R>>,
    online: Option<Option<Vec<OnlineKf>>>,
) -> (Option<String>, Option<Background>) {
    let accounts = match kf::target(&app.config) {
        Target::Untargeted => return (None, None),
        Target::Fixed(account) => return (Some(account.to_string()), None),
        Target::LookUp(accounts) => accounts,
    };
    let (list, background) = match online {
        Some(list) => (list, None),
        None => kf::online_agents(app).await,
    };
    (list.and_then(|list| kf::choose(accounts, &list).map(str::to_string)), background)
}

/// Whether a request may go on to have its body read: admin routes need the admin token
/// (checked before an upload of up to 10 MB is read).
pub fn admit<R: Runtime>(app: &App<R>, route: Route, authorization: Option<&str>) -> Result<(), Error> {
    match route {
        Route::Admin | Route::Upload => {
            let Some(expected) = app.config.outbound().admin_token.as_deref() else {
                return Err(Error::NotFound);
            };
            authorize(authorization, expected)
        }
        _ => Ok(()),
    }
}

/// What the glue may do once [`prepare`] let a request through.
pub struct Prepared {
    /// The most body bytes to read (more is a 413); `None`: the body is not read.
    pub body_limit: Option<usize>,
    /// Held while an upload is read and sent.
    _slot: Option<UploadSlot>,
}

/// The isolate's one upload, released when dropped (also when the request is cancelled).
struct UploadSlot(Rc<Isolate>);

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.0.uploading.set(false);
    }
}

/// What is decided before the body is read: the admin token (so that nobody unauthenticated
/// makes the worker read 10 MB), an upload's method, kind and account (answered without the
/// body), and the body's limit: the route's, or the upload kind's plus its multipart envelope.
/// An isolate reads and sends one upload at a time (each holds several copies of a file of up
/// to 10 MB, and wasm memory never shrinks): another one meanwhile is a 503 with `Retry-After`.
pub fn prepare<R: Runtime>(app: &App<R>, route: Route, req: &Request<'_>) -> Result<Prepared, Error> {
    admit(app, route, req.authorization)?;
    if route != Route::Upload {
        return Ok(Prepared { body_limit: route.body_limit(), _slot: None });
    }
    let kind = media::head(req.method, below_api(req.path), req.query)?;
    if app.isolate.uploading.replace(true) {
        return Err(Error::Busy("another upload in this isolate"));
    }
    let slot = UploadSlot(app.isolate.clone());
    Ok(Prepared { body_limit: Some(kind.limit.saturating_add(media::ENVELOPE_BYTES)), _slot: Some(slot) })
}

/// The answer when the glue could not read the body (`err`): for an upload over the largest
/// limit, the limit of the kind it asked for.
pub fn body_refused(route: Route, path: &str, query: &str, err: Error) -> Served {
    match (route, err) {
        (Route::Upload, Error::PayloadTooLarge) => Served::failed(&media::too_large(below_api(path), query)),
        (_, err) => Served::failed(&err),
    }
}

/// `Authorization: Bearer <token>` (the scheme in any case), compared in constant time.
pub fn authorize(header: Option<&str>, expected: &str) -> Result<(), Error> {
    let (scheme, token) = header.unwrap_or_default().trim().split_once(' ').unwrap_or_default();
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !crate::wechat::signature::secrets_match(token, expected)
    {
        return Err(Error::Unauthorized);
    }
    Ok(())
}

async fn admin_call<R: Runtime>(app: &App<R>, req: &Request<'_>) -> Result<Served, Error> {
    admit(app, Route::Admin, req.authorization)?;
    let path = below_api(req.path);
    match path {
        "/rules" => return rules_call(app, req).await,
        "/status" if req.method == "GET" => return status_call(app).await,
        "/status" => return Err(Error::MethodNotAllowed("GET")),
        _ => {}
    }
    let call = admin::plan(req.method, path, req.query, req.body)?;
    let answer = app.api()?.call(&call).await?;
    Ok(Served::done(Response::new(200, JSON, answer), call.path))
}

/// `POST /api/media?type=`, `PUT /api/kf/accounts/{kf_account}/avatar`: the file checked, then
/// uploaded (with one refresh-and-retry, resending the same bytes); WeChat's answer as it is.
async fn upload_call<R: Runtime>(app: &App<R>, req: &Request<'_>) -> Result<Served, Error> {
    admit(app, Route::Upload, req.authorization)?;
    let file = media::File { content_type: req.content_type, bytes: req.body };
    let call = media::plan(req.method, below_api(req.path), req.query, file)?;
    let answer = app.api()?.call(&call).await?;
    Ok(Served::done(Response::new(200, JSON, answer), format!("{} {} bytes", call.path, req.body.len())))
}

/// `GET /api/status`: the token (never its value), the online list and the rules as this
/// isolate knows them. Costs at most two KV reads (the token when this isolate has none, the
/// rules when its copy is older than 30 s); never calls WeChat.
async fn status_call<R: Runtime>(app: &App<R>) -> Result<Served, Error> {
    let now = app.rt.clock().now();
    let mut token = ObjectWriter::new();
    match app.api() {
        Ok(api) => {
            let status = api.tokens.status().await;
            token
                .bool("cached", status.expires_in.is_some())
                .opt_num("expires_in", status.expires_in)
                .opt_num("fetched_at", status.fetched_at)
                .opt_num("retry_after", status.retry_after);
            match &status.last_error {
                Some(e) => token.str("last_error", e),
                None => token.raw("last_error", "null"),
            };
        }
        // Without credentials there is no token to have (`/healthz` names what is missing).
        Err(e) => {
            token.bool("cached", false).raw("expires_in", "null").raw("fetched_at", "null").raw("retry_after", "null");
            token.str("last_error", &e.to_string());
        }
    }
    let mut online = ObjectWriter::new();
    let age = app.isolate.online.age(now);
    online.opt_num("age_secs", age.map(|(secs, _)| secs));
    match age {
        Some((_, ok)) => online.bool("ok", ok),
        None => online.raw("ok", "null"),
    };
    let rules = desk::current_rules(app).await;
    let mut rules_status = ObjectWriter::new();
    rules_status.bool("stored", rules.stored).num("age_secs", now.saturating_sub(rules.loaded_at));
    let mut body = ObjectWriter::new();
    body.raw("token", &token.finish())
        .raw("online", &online.finish())
        .raw("rules", &rules_status.finish())
        .num("now", now);
    Ok(Served::done(Response::new(200, JSON, body.finish().into_bytes()), "status"))
}

/// `GET|PUT|DELETE /api/rules`: `{"stored": bool, "rules": <document>}`.
async fn rules_call<R: Runtime>(app: &App<R>, req: &Request<'_>) -> Result<Served, Error> {
    let loaded = match req.method {
        "GET" => desk::current_rules(app).await,
        "PUT" => desk::put_rules(app, req.body).await?,
        "DELETE" => desk::delete_rules(app).await?,
        _ => return Err(Error::MethodNotAllowed("GET, PUT, DELETE")),
    };
    let mut body = ObjectWriter::new();
    body.bool("stored", loaded.stored).raw("rules", &loaded.document.json);
    Ok(Served::done(Response::new(200, JSON, body.finish().into_bytes()), format!("rules {}", req.method)))
}

/// The Cron Trigger: keeps the stored access_token fresh, then the alerts' checks (the queue, a
/// credential failure). Returns what it did to the token; the rest is in the notes.
pub async fn scheduled<R: Runtime>(app: &App<R>) -> String {
    let outcome = match app.api() {
        Ok(api) => api.tokens.refresh_if_due().await.map(str::to_string).unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    };
    let rules = desk::current_rules(app).await;
    effects::cron_alerts(app, &rules.document.rules).await;
    outcome
}

/// The cron run's log line: `{"cron":"access_token","outcome":...,"notes":[...]}`.
pub fn cron_line(outcome: &str, notes: &[String]) -> String {
    let mut w = ObjectWriter::new();
    w.str("cron", "access_token").str("outcome", outcome);
    if !notes.is_empty() {
        w.strs("notes", notes.iter().map(String::as_str));
    }
    w.finish()
}

/// The headers of every response by content type, as JSON (`[{"content-type": ..., ...}, ...]`
/// in the order of [`CONTENT_TYPES`]): the JS entry builds them once per isolate.
pub fn response_headers() -> String {
    let mut sets = String::from("[");
    for (i, content_type) in CONTENT_TYPES.iter().enumerate() {
        if i > 0 {
            sets.push(',');
        }
        let mut set = ObjectWriter::new();
        set.str("content-type", content_type);
        for (name, value) in COMMON_HEADERS {
            set.str(name, value);
        }
        sets.push_str(&set.finish());
    }
    sets.push(']');
    sets
}

/// The request's one log line (JSON): route, method, status, outcome, ms, and notes if any.
pub fn log_line(route: Route, method: &str, status: u16, outcome: &str, ms: u64, notes: &[String]) -> String {
    let mut w = ObjectWriter::new();
    w.str("route", route.label())
        .str("method", method)
        .num("status", u64::from(status))
        .str("outcome", outcome)
        .num("ms", ms);
    if !notes.is_empty() {
        w.strs("notes", notes.iter().map(String::as_str));
    }
    w.finish()
}
