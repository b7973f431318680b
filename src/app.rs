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
use crate::api::kf::{self, OnlineState, Target};
use crate::api::token_cache::{TokenCache, TokenState};
use crate::config::Config;
use crate::error::Error;
use crate::json::ObjectWriter;
use crate::runtime::{Clock, Runtime};
use crate::wechat::callback::{self, CallbackSettings, Inbound, Query};
use crate::wechat::reply::SUCCESS;

/// Work that runs after the response is sent (`waitUntil`).
pub type Background = Pin<Box<dyn Future<Output = ()>>>;

/// What one isolate remembers between requests.
#[derive(Debug, Default)]
pub struct Isolate {
    pub token: TokenState,
    pub online: OnlineState,
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
            _ if path.starts_with("/api/") => Route::Admin,
            _ => Route::NotFound,
        }
    }

    /// The most body bytes the route reads (more is a 413); `None`: the body is not read.
    pub fn body_limit(&self) -> Option<usize> {
        match self {
            Route::Push => Some(callback::MAX_BODY_BYTES),
            Route::Admin => Some(admin::MAX_BODY_BYTES),
            _ => None,
        }
    }

    /// The route's name in the log line.
    pub fn label(&self) -> &'static str {
        match self {
            Route::UrlCheck | Route::Push => "/wechat",
            Route::Health => "/healthz",
            Route::Admin => "/api",
            Route::NotFound => "other",
            Route::MethodNotAllowed(_) => "method",
        }
    }
}

/// `(path, query)` of an absolute URL as the runtime serializes it (no fragment); the query
/// without its `?`.
pub fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = url.get(after_scheme..).unwrap_or_default();
    let target = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/");
    target.split_once('?').unwrap_or((target, ""))
}

/// What the glue read of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Without the `?`.
    pub query: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the glue writes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
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
        Response { status, content_type, headers: Vec::new(), body }
    }

    /// The one mapping from [`Error`] to a response.
    pub fn error(err: &Error) -> Self {
        Response { status: err.status(), content_type: JSON, headers: err.headers(), body: err.body().into_bytes() }
    }

    /// Every header sent: the content type, [`COMMON_HEADERS`], and the route's own.
    pub fn all_headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("content-type", self.content_type))
            .chain(COMMON_HEADERS)
            .chain(self.headers.iter().map(|(name, value)| (*name, value.as_str())))
    }

    /// The response and its log line as one byte string, for the JS entry to read with one
    /// crossing of the wasm boundary. Little-endian:
    /// `u16 status | u8 content type (index in CONTENT_TYPES) | u8 n | n × (u8 len, name, u16 len,
    /// value) (the route's own headers) | u8 level | u32 len, log line | body`, level 0 = no line,
    /// 1 = `console.log`, 2 = `console.error` (a 5xx); 3 and 4 the same for a line that is not
    /// all ASCII (the entry reads ASCII without a decoder).
    pub fn encode(&self, log_line: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 160);
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
        out.push(level);
        out.extend_from_slice(&u32::try_from(line.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(&self.body);
        out
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

/// Serves `req` without any I/O, when that is possible: `None` when the answer needs the store
/// or the WeChat API (then [`serve`] does the whole request). The common path, a push
/// transferred to a fixed account or untargeted, and every error answer, are served here.
pub fn serve_now<R: Runtime>(app: &App<R>, route: Route, req: &Request<'_>) -> Option<Served> {
    let result = match route {
        Route::UrlCheck => url_check(app, req),
        Route::Push => push_now(app, req)?,
        Route::Health => Ok(Served::done(Response::new(200, JSON, app.config.health().as_bytes().to_vec()), "ok")),
        Route::Admin => return None,
        Route::NotFound => Err(Error::NotFound),
        Route::MethodNotAllowed(allow) => Err(Error::MethodNotAllowed(allow)),
    };
    Some(result.unwrap_or_else(|e| Served::failed(&e)))
}

/// Serves `req`, whose body the glue read within `route.body_limit()`.
pub async fn serve<R: Runtime + 'static>(app: &Rc<App<R>>, route: Route, req: Request<'_>) -> Served {
    if let Some(served) = serve_now(app, route, &req) {
        return served;
    }
    let result = match route {
        Route::Push => push(app, &req).await,
        Route::Admin => admin_call(app, &req).await,
        // Every other route is served by `serve_now`.
        _ => Err(Error::Internal("route without an I/O path")),
    };
    result.unwrap_or_else(|e| Served::failed(&e))
}

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

/// The push answered without I/O; `None` when its transfer target needs a lookup.
fn push_now<R: Runtime>(app: &App<R>, req: &Request<'_>) -> Option<Result<Served, Error>> {
    let push = match open_push(app, req) {
        Ok(push) => push,
        Err(e) => return Some(Err(e)),
    };
    let kf_account = if push.inbound.message.is_user_message() { transfer_target_now(app, push.now)? } else { None };
    Some(reply(app, push, kf_account, None))
}

async fn push<R: Runtime + 'static>(app: &Rc<App<R>>, req: &Request<'_>) -> Result<Served, Error> {
    let push = open_push(app, req)?;
    let (kf_account, background) =
        if push.inbound.message.is_user_message() { transfer_target(app).await } else { (None, None) };
    reply(app, push, kf_account, background)
}

fn reply<R: Runtime>(
    app: &App<R>,
    push: Push<'_>,
    kf_account: Option<String>,
    background: Option<Background>,
) -> Result<Served, Error> {
    let Push { settings, inbound, now } = push;
    // Only an encrypted reply needs a random prefix.
    let random = if inbound.encrypted { app.rt.random16() } else { [0; 16] };
    let (action, reply) = callback::respond(&settings, &inbound, kf_account.as_deref(), now, &random)?;
    let content_type = if reply == SUCCESS { TEXT } else { XML };
    let outcome = format!(
        "{} {}{}{}",
        action.as_str(),
        inbound.message.label(),
        if inbound.encrypted { " encrypted" } else { "" },
        if kf_account.is_some() { " targeted" } else { "" },
    );
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

/// The `KfAccount` for a transfer (see [`kf::target`] and [`kf::online_agents`]).
async fn transfer_target<R: Runtime + 'static>(app: &Rc<App<R>>) -> (Option<String>, Option<Background>) {
    let accounts = match kf::target(&app.config) {
        Target::Untargeted => return (None, None),
        Target::Fixed(account) => return (Some(account.to_string()), None),
        Target::LookUp(accounts) => accounts,
    };
    let (online, background) = kf::online_agents(app).await;
    let chosen = online.and_then(|list| kf::choose(accounts, &list).map(str::to_string));
    (chosen, background)
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
    let Some(expected) = app.config.admin_token.as_deref() else {
        return Err(Error::NotFound);
    };
    authorize(req.authorization, expected)?;
    let path = req.path.strip_prefix("/api").unwrap_or(req.path);
    let call = admin::plan(req.method, path, req.query, req.body)?;
    let answer = app.api()?.call(&call).await?;
    Ok(Served::done(Response::new(200, JSON, answer), call.path))
}

/// The Cron Trigger: keeps the stored access_token fresh. Returns what it did.
pub async fn scheduled<R: Runtime>(app: &App<R>) -> String {
    match app.api() {
        Ok(api) => api.tokens.refresh_if_due().await.map(str::to_string).unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    }
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
