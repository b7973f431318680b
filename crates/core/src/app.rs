//! The worker as a function from a request to a response, over the runtime traits: routes and
//! their body limits, the callback, the admin API and its authentication, the one mapping from
//! [`Error`] to a response, the log line, and the cron.
//!
//! The glue reads the request, calls [`serve`], writes the [`Response`], hands
//! [`Served::background`] to `waitUntil`, and prints [`log_line`]: it decides nothing. This is
//! the one module that sees the whole isolate; every subsystem below it gets only the handles it
//! needs.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use serde::Serialize;
use serde_json::value::RawValue;
use wechat_mp::callback::{self, Query};

use crate::accounts::{self, Checked, Stored, MAX_LISTED};
use crate::api::admin;
use crate::api::client::WeChatApi;
use crate::api::kf::OnlineState;
use crate::api::media;
use crate::api::token_cache::{TokenState, MANUAL_REFRESH_SPACING_MS};
use crate::config::{Account, Config, Credentials};
use crate::database::{AccountDb, AccountsDb, StatsDb, FOLD_ROWS, PAGE_ROWS};
use crate::desk::effects::{Effects, EffectsState};
use crate::desk::rules::Capabilities;
use crate::desk::{Desk, DeskState, Loaded};
use crate::error::Error;
use crate::notes::Notes;
use crate::operators;
use crate::push::Pipeline;
use crate::report;
use crate::runtime::{join, with_timeout, Background, Clock, Runtime, READ_LIMIT_MS};

/// Database accounts whose expired limits and requests one cron run deletes, and where the
/// next run starts (a row of the `cache` table of the deployment, appid `""`).
const ACCOUNTS_PURGED_PER_RUN: u64 = 10;
const PURGE_CURSOR: &str = "accounts_purged_to";

/// The rate limit (in the database) of `POST /api/token/refresh`.
const TOKEN_REFRESH_LIMIT: &str = "token_refresh";
/// Folds of the ledger before a report (the rows the cron has not folded yet), and per cron
/// run: up to 6,000 and 4,000 ledger rows (5 D1 calls a fold; a cron run stays inside the free
/// plan's 50 D1 calls per invocation).
const REPORT_FOLDS: usize = 3;
const CRON_FOLDS: usize = 2;
/// A user who waited this long for an agent and never wrote again, or a session whose close never
/// came, is no longer followed by the statistics.
const FOLLOWED_FOR_SECS: u64 = 2 * 86_400;

/// What one account keeps in one isolate's memory, a piece for each subsystem.
#[derive(Debug, Default, Clone)]
pub struct AccountState {
    pub tokens: Rc<TokenState>,
    pub online: Rc<OnlineState>,
    pub desk: Rc<DeskState>,
    pub effects: Rc<EffectsState>,
}

/// What one isolate knows: its configuration (an isolate's environment never changes: a new
/// secret or var means new isolates) and its memory.
#[derive(Debug)]
pub struct Isolate {
    pub config: Config,
    pub account: AccountState,
    /// The account's part of the store keys, and where alerts go (shared by every request).
    account_key: Rc<str>,
    webhook: Option<Rc<str>>,
    /// The configuration report, built on its first request.
    health: OnceCell<String>,
    /// An upload is being read or sent (one at a time per isolate: see [`prepare`]).
    uploading: Cell<bool>,
    /// The database's accounts this isolate served lately, by appid (`None`: none such), each
    /// trusted [`ACCOUNT_TTL_SECS`] after it was read.
    accounts: RefCell<HashMap<String, Cached>>,
    /// Their memory (tokens, online list, rules, limits), kept across re-reads of the account.
    states: RefCell<HashMap<String, AccountState>>,
    /// Operator tokens checked lately, by id: `(account, hash of the secret, read at)`.
    operators: RefCell<HashMap<String, (String, String, u64)>>,
}

/// How long an isolate serves a database account as it read it: a change made through another
/// isolate takes effect here within this time (at once in the isolate that made it).
pub const ACCOUNT_TTL_SECS: u64 = 30;
/// Most database accounts (and unknown appids) an isolate remembers; past it, it starts over.
const MAX_CACHED_ACCOUNTS: usize = 1024;

/// A database account as an isolate read it.
#[derive(Debug, Clone)]
struct Cached {
    read_at: u64,
    account: Option<Rc<DbAccount>>,
}

/// A database account, ready to serve: its settings and opened secrets, its memory in this
/// isolate.
#[derive(Debug)]
pub struct DbAccount {
    account: Account,
    state: AccountState,
    key: Rc<str>,
    credentials: Result<Rc<Credentials>, Error>,
}

impl Isolate {
    pub fn new(config: Config) -> Self {
        Isolate {
            account_key: Rc::from(config.account.key()),
            webhook: config.alert_webhook.as_deref().map(Rc::from),
            config,
            account: AccountState::default(),
            health: OnceCell::new(),
            uploading: Cell::new(false),
            accounts: RefCell::default(),
            states: RefCell::default(),
            operators: RefCell::default(),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /wechat`: WeChat's URL check.
    UrlCheck,
    /// `POST /wechat`: a message or event.
    Push,
    /// `GET /wechat/{appid}`: WeChat's URL check for a database account.
    AccountUrlCheck,
    /// `POST /wechat/{appid}`: a database account's message or event.
    AccountPush,
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
            _ if path.starts_with("/wechat/") => match method {
                "GET" => Route::AccountUrlCheck,
                "POST" => Route::AccountPush,
                _ => Route::MethodNotAllowed("GET, POST"),
            },
            "/healthz" => match method {
                "GET" | "HEAD" => Route::Health,
                _ => Route::MethodNotAllowed("GET, HEAD"),
            },
            _ if path.starts_with("/api/") => {
                if media::is_upload_path(route_path(path)) {
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
            Route::Push | Route::AccountPush => Some(callback::MAX_BODY_BYTES),
            Route::Admin => Some(admin::MAX_BODY_BYTES),
            Route::Upload => Some(media::MAX_UPLOAD_BODY_BYTES),
            _ => None,
        }
    }

    /// The route's name in the log line.
    pub fn label(&self) -> &'static str {
        match self {
            Route::UrlCheck | Route::Push => "/wechat",
            Route::AccountUrlCheck | Route::AccountPush => "/wechat/{appid}",
            Route::Health => "/healthz",
            Route::Admin | Route::Upload => "/api",
            Route::NotFound => "other",
            Route::MethodNotAllowed(_) => "method",
        }
    }

    /// Whether the route needs the `Authorization` header (the admin API).
    pub fn is_admin(&self) -> bool {
        matches!(self, Route::Admin | Route::Upload)
    }
}

/// An admin path below `/api` (`/api/media` -> `/media`).
fn below_api(path: &str) -> &str {
    path.strip_prefix("/api").unwrap_or(path)
}

/// An admin path as its route knows it: below `/api`, and below `/accounts/{appid}` for a
/// database account's (`/api/accounts/wx…/media` -> `/media`).
fn route_path(path: &str) -> &str {
    let below = below_api(path);
    account_route(below).map_or(below, |(_, rest)| rest)
}

/// A path below `/api` that names a database account, `/accounts/{appid}{rest}`: the appid and
/// the rest (`""` for the account itself, `/rules`, `/tokens/{id}`, ...).
fn account_route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/accounts/")?;
    Some(rest.split_at(rest.find('/').unwrap_or(rest.len())))
}

/// Who is calling the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// `ADMIN_TOKEN`: every route of every account.
    Owner,
    /// An operator token: the routes of this database account only.
    Operator { appid: String, id: String },
}

/// `(path, query)` of an absolute URL as the runtime serializes it (no fragment); the query
/// without its `?`.
pub fn split_url(url: &str) -> (&str, &str) {
    // A scheme is letters, digits, '+', '-', '.' up to the first ':'; a relative target has none.
    let is_scheme = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let after_scheme = match url.find(':') {
        Some(i) if url.get(..i).is_some_and(is_scheme) && url.get(i..).is_some_and(|r| r.starts_with("://")) => i + 3,
        _ => 0,
    };
    let rest = url.get(after_scheme..).unwrap_or_default();
    let target = rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/");
    target.split_once('?').unwrap_or((target, ""))
}

/// A request as the glue read it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Without the `?`.
    pub query: String,
    pub authorization: Option<String>,
    /// The declared type of `body`, for uploads (the glue unwraps a multipart body into its
    /// `media` part: see [`media::File`]).
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request for `"<method> <url>"` with `body` (what the JS entry passes for a push).
    pub fn from_target(target: &str, body: Vec<u8>) -> Request {
        let (method, url) = target.split_once(' ').unwrap_or((target, ""));
        let (path, query) = split_url(url);
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            authorization: None,
            content_type: None,
            body,
        }
    }

    pub fn route(&self) -> Route {
        Route::of(&self.method, &self.path)
    }
}

/// The content type of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Json,
    Text,
    Xml,
    Csv,
}

impl ContentType {
    /// Every content type answered, in a fixed order (the wire format sends the index).
    pub const ALL: [ContentType; 4] = [ContentType::Json, ContentType::Text, ContentType::Xml, ContentType::Csv];

    pub fn as_str(&self) -> &'static str {
        match self {
            ContentType::Json => "application/json; charset=utf-8",
            ContentType::Text => "text/plain; charset=utf-8",
            ContentType::Xml => "application/xml; charset=utf-8",
            ContentType::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Headers every response carries besides its content type and its route's own.
pub const COMMON_HEADERS: [(&str, &str); 1] = [("cache-control", "no-store")];

/// What the glue writes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: ContentType,
    /// The route's own headers (`allow`, `retry-after`, ...).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The same method and URL get this very response (and log line) for the isolate's
    /// lifetime: the glue may replay it without calling the core (the health report: the
    /// configuration never changes within an isolate).
    pub replayable: bool,
}

impl Response {
    pub fn new(status: u16, content_type: ContentType, body: Vec<u8>) -> Self {
        Response { status, content_type, headers: Vec::new(), body, replayable: false }
    }

    /// JSON of a serializable answer.
    fn json(value: &impl Serialize) -> Self {
        Response::new(200, ContentType::Json, serde_json::to_vec(value).unwrap_or_default())
    }

    /// The one mapping from [`Error`] to a response.
    pub fn error(err: &Error) -> Self {
        Response {
            status: err.status(),
            content_type: ContentType::Json,
            headers: err.headers(),
            body: err.body().into_bytes(),
            replayable: false,
        }
    }
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

/// One request's view of the worker: the isolate, the runtime and the request's notes.
pub struct Worker<R> {
    pub isolate: Rc<Isolate>,
    pub rt: Rc<R>,
    pub notes: Rc<Notes>,
    /// The database account the request acts for (`None`: the environment's, `default`).
    acting: Option<Rc<DbAccount>>,
}

impl<R> Clone for Worker<R> {
    fn clone(&self) -> Self {
        Worker {
            isolate: self.isolate.clone(),
            rt: self.rt.clone(),
            notes: self.notes.clone(),
            acting: self.acting.clone(),
        }
    }
}

impl<R: Runtime + 'static> Worker<R> {
    pub fn new(isolate: Rc<Isolate>, rt: R) -> Self {
        Worker::with_notes(isolate, Rc::new(rt), Rc::default())
    }

    /// A request's worker over a runtime and notes the caller keeps (the tests').
    pub fn with_notes(isolate: Rc<Isolate>, rt: Rc<R>, notes: Rc<Notes>) -> Self {
        Worker { isolate, rt, notes, acting: None }
    }

    fn config(&self) -> &Config {
        &self.isolate.config
    }

    /// The account the request acts for.
    fn account(&self) -> &Account {
        self.acting.as_ref().map_or(&self.isolate.config.account, |a| &a.account)
    }

    /// That account's memory in this isolate.
    fn state(&self) -> &AccountState {
        self.acting.as_ref().map_or(&self.isolate.account, |a| &a.state)
    }

    /// The account's WeChat API, or the variable that stops it.
    fn api(&self) -> Result<WeChatApi<R>, Error> {
        let creds = match &self.acting {
            Some(acting) => acting.credentials.clone()?,
            None => self.config().credentials()?,
        };
        Ok(WeChatApi::new(self.rt.clone(), self.state().tokens.clone(), creds))
    }

    fn desk(&self) -> Desk<'_, R> {
        Desk { rt: &self.rt, state: &self.state().desk, notes: &self.notes, account: self.account().key() }
    }

    fn effects(&self) -> Effects<R> {
        let account = self.acting.as_ref().map_or_else(|| self.isolate.account_key.clone(), |a| a.key.clone());
        Effects {
            rt: self.rt.clone(),
            api: self.api(),
            state: self.state().effects.clone(),
            desk: self.state().desk.clone(),
            notes: self.notes.clone(),
            webhook: self.isolate.webhook.clone(),
            account,
        }
    }

    /// Serves `req`, whose body the glue read within its route's limit (see [`prepare`]).
    pub async fn serve(self, req: Request) -> Served {
        let route = req.route();
        let (worker, result) = match route {
            Route::Push => {
                let result = self.push(&req).await;
                (self, result)
            }
            Route::AccountPush | Route::AccountUrlCheck => match self.for_database_account(&req.path).await {
                Ok(worker) => {
                    let result =
                        if route == Route::AccountPush { worker.push(&req).await } else { worker.url_check(&req) };
                    (worker, result)
                }
                Err(e) => (self, Err(e)),
            },
            // The other routes run in a future of their own: a push's does not carry their state.
            _ => {
                let result = self.route(route, &req).await;
                (self, result)
            }
        };
        let mut served = result.unwrap_or_else(|e| Served::failed(&e));
        if worker.state().tokens.has_credential_failure() {
            // A token request failed in a way no retry fixes: the agents hear of it (rules allowing).
            let worker = worker.clone();
            let work: Background = Box::pin(async move {
                let rules = worker.desk().current_rules().await;
                let failure = worker.state().tokens.take_credential_failure();
                worker.effects().credentials_alert(&rules.document.rules, failure).await;
            });
            served.background = join(served.background, Some(work));
        }
        served
    }

    fn route<'a>(
        &'a self,
        route: Route,
        req: &'a Request,
    ) -> Pin<Box<dyn Future<Output = Result<Served, Error>> + 'a>> {
        Box::pin(async move {
            match route {
                Route::UrlCheck => self.url_check(req),
                Route::Health => Ok(self.health()),
                // An upload is an admin route whose body the glue read within its kind's limit.
                Route::Admin | Route::Upload => self.admin(req).await,
                Route::Push | Route::AccountPush | Route::AccountUrlCheck | Route::NotFound => Err(Error::NotFound),
                Route::MethodNotAllowed(allow) => Err(Error::MethodNotAllowed(allow)),
            }
        })
    }

    /// `GET /healthz` (see [`Config::health`]).
    fn health(&self) -> Served {
        let body = self.isolate.health.get_or_init(|| self.config().health()).as_bytes().to_vec();
        Served::done(Response { replayable: true, ..Response::new(200, ContentType::Json, body) }, "ok")
    }

    /// The callback's settings of the account the request acts for.
    fn callback(&self) -> Result<callback::CallbackSettings<'_>, Error> {
        match &self.acting {
            None => self.config().callback(),
            Some(acting) => {
                acting.account.callback_settings().ok_or(Error::Internal("accounts: an account without a Token"))
            }
        }
    }

    fn url_check(&self, req: &Request) -> Result<Served, Error> {
        let settings = self.callback()?;
        let query = Query::parse(&req.query);
        let echostr = callback::verify_url(&settings, &query, self.rt.clock().now())?;
        Ok(Served::done(Response::new(200, ContentType::Text, echostr.as_bytes().to_vec()), "url_check"))
    }

    async fn push(&self, req: &Request) -> Result<Served, Error> {
        let account = self.state();
        let pipeline = Pipeline {
            rt: &self.rt,
            settings: self.callback()?,
            account: self.account(),
            desk: self.desk(),
            api: self.api(),
            online: &account.online,
            effects: self.effects(),
            notes: &self.notes,
        };
        let reply = pipeline.serve(&req.query, &req.body).await?;
        let content_type = if reply.is_xml() { ContentType::Xml } else { ContentType::Text };
        let response = Response::new(200, content_type, reply.body.into_bytes());
        Ok(Served { response, outcome: reply.outcome, background: reply.background })
    }

    /// The admin API: who calls (the owner, or an operator of one account), then which account
    /// the route is for (the environment's, or `/api/accounts/{appid}/...`'s), then the route.
    async fn admin(&self, req: &Request) -> Result<Served, Error> {
        let caller = self.caller(req).await?;
        if let Caller::Operator { id, .. } = &caller {
            self.notes.add(format!("operator token {id}"));
        }
        let mut served = self.admin_as(&caller, req).await?;
        if let Caller::Operator { id, .. } = caller {
            // When the token was last used, after the reply (written at most once an hour).
            let worker = self.clone();
            let now = self.rt.clock().now();
            let work: Background = Box::pin(async move {
                if let Some(db) = worker.rt.database() {
                    let accounts = AccountsDb { db };
                    if accounts.token_used(&id, now).await.is_err() {
                        worker.notes.add("operator token: its last use was not recorded (the database failed)");
                    }
                }
            });
            served.background = join(served.background, Some(work));
        }
        Ok(served)
    }

    async fn admin_as(&self, caller: &Caller, req: &Request) -> Result<Served, Error> {
        let path = below_api(&req.path);
        if path == "/whoami" {
            return self.whoami(caller, req).await;
        }
        if path == "/accounts" {
            return match caller {
                Caller::Owner => self.accounts(req).await,
                Caller::Operator { .. } => Err(Error::Forbidden),
            };
        }
        let Some((appid, rest)) = account_route(path) else {
            // The environment's account: the owner's alone.
            return match caller {
                Caller::Owner => self.admin_routes(req, path).await,
                Caller::Operator { .. } => Err(Error::NotFound),
            };
        };
        if let Caller::Operator { appid: own, .. } = caller {
            // Another account's routes do not exist for this token.
            if own != appid {
                return Err(Error::NotFound);
            }
        }
        let owner = *caller == Caller::Owner;
        match rest {
            "" if owner || req.method == "GET" => self.one_account(req, appid).await,
            "/tokens" if owner => self.tokens(req, appid, None).await,
            _ if rest.starts_with("/tokens/") && owner => self.tokens(req, appid, rest.strip_prefix("/tokens/")).await,
            "" | "/tokens" => Err(Error::Forbidden),
            _ if rest.starts_with("/tokens/") => Err(Error::Forbidden),
            _ => self.for_account(appid).await?.admin_routes(req, rest).await,
        }
    }

    /// `GET /api/whoami`: `{"role":"owner"}`, or `{"role":"operator","appid","name"}` (the
    /// account's name): what the console shows to whom.
    async fn whoami(&self, caller: &Caller, req: &Request) -> Result<Served, Error> {
        if req.method != "GET" {
            return Err(Error::MethodNotAllowed("GET"));
        }
        let answer = match caller {
            Caller::Owner => serde_json::json!({ "role": "owner" }),
            Caller::Operator { appid, .. } => {
                let stored = self.accounts_db()?.get(appid).await?.ok_or(Error::NotFound)?;
                serde_json::json!({ "role": "operator", "appid": appid, "name": stored.name })
            }
        };
        Ok(Served::done(Response::json(&answer), "whoami"))
    }

    /// Who calls: the owner (`ADMIN_TOKEN`) or an operator token that is still valid (this
    /// isolate's check of it at most [`operators::TRUST_SECS`] old, else one indexed query
    /// within [`READ_LIMIT_MS`]; an unknown id is remembered as long).
    async fn caller(&self, req: &Request) -> Result<Caller, Error> {
        let expected = self.config().admin_token.as_deref().ok_or(Error::NotFound)?;
        if authorize(req.authorization.as_deref(), expected).is_ok() {
            return Ok(Caller::Owner);
        }
        let presented = bearer(req.authorization.as_deref()).and_then(operators::parse).ok_or(Error::Unauthorized)?;
        let now = self.rt.clock().now();
        let known = self.isolate.operators.borrow().get(&presented.id).cloned();
        let (appid, hash) = match known.filter(|(_, _, at)| now < at.saturating_add(operators::TRUST_SECS)) {
            Some((appid, hash, _)) => (appid, hash),
            None => {
                let db = self.rt.database().ok_or(Error::Unauthorized)?;
                let tokens = AccountsDb { db };
                let found =
                    match with_timeout(self.rt.clock(), READ_LIMIT_MS, Box::pin(tokens.token(&presented.id))).await {
                        Ok(found) => found?,
                        Err(_) => return Err(Error::Internal("operators: the token could not be read in time")),
                    };
                // An unknown id is remembered too (an empty hash matches nothing).
                let (appid, hash) = found.unwrap_or_default();
                let mut cache = self.isolate.operators.borrow_mut();
                if cache.len() >= MAX_CACHED_ACCOUNTS {
                    cache.clear();
                }
                cache.insert(presented.id.clone(), (appid.clone(), hash.clone(), now));
                (appid, hash)
            }
        };
        if hash.is_empty() || !wechat_mp::signature::secrets_match(&presented.hash, &hash) {
            return Err(Error::Unauthorized);
        }
        Ok(Caller::Operator { appid, id: presented.id })
    }

    /// The admin routes of the account the worker acts for (`path` below `/api`, or below
    /// `/api/accounts/{appid}`).
    async fn admin_routes(&self, req: &Request, path: &str) -> Result<Served, Error> {
        if media::is_upload_path(path) {
            return self.upload_for(req, path).await;
        }
        match path {
            "/rules" => return self.rules(req).await,
            "/status" if req.method == "GET" => return self.status().await,
            "/status" => return Err(Error::MethodNotAllowed("GET")),
            "/token/refresh" if req.method == "POST" => return self.refresh_token().await,
            "/token/refresh" => return Err(Error::MethodNotAllowed("POST")),
            "/ledger" if req.method == "GET" => return self.ledger(req).await,
            "/ledger" => return Err(Error::MethodNotAllowed("GET")),
            "/stats" if req.method == "GET" => return self.stats(req).await,
            "/stats" => return Err(Error::MethodNotAllowed("GET")),
            _ => {}
        }
        let call = admin::plan(&req.method, path, &req.query, &req.body)?;
        let answer = self.api()?.call(&call).await?;
        Ok(Served::done(Response::new(200, ContentType::Json, answer), call.path))
    }

    /// `POST /api/media?type=`, `PUT /api/kf/accounts/{kf_account}/avatar` (`path` below `/api`
    /// or below the account's path) for the account the worker acts for: the file checked, then
    /// uploaded (with one refresh-and-retry, resending the same bytes); WeChat's answer as it is.
    async fn upload_for(&self, req: &Request, path: &str) -> Result<Served, Error> {
        let file = media::File { content_type: req.content_type.as_deref(), bytes: &req.body };
        let call = media::plan(&req.method, path, &req.query, file)?;
        let answer = self.api()?.call(&call).await?;
        let outcome = format!("{} {} bytes", call.path, req.body.len());
        Ok(Served::done(Response::new(200, ContentType::Json, answer), outcome))
    }

    /// `GET /api/status`: the token (never its value), the online list and the rules as this
    /// isolate knows them. Costs at most two store reads (the token when this isolate has none,
    /// the rules when its copy is older than 30 s); never calls WeChat.
    async fn status(&self) -> Result<Served, Error> {
        let now = self.rt.clock().now();
        let token = match self.api() {
            Ok(api) => {
                let status = api.tokens().status().await;
                TokenReport {
                    cached: status.expires_in.is_some(),
                    expires_in: status.expires_in,
                    fetched_at: status.fetched_at,
                    retry_after: status.retry_after,
                    last_error: status.last_error,
                }
            }
            // Without credentials there is no token to have (`/healthz` names what is missing).
            Err(e) => TokenReport { last_error: Some(e.to_string()), ..TokenReport::default() },
        };
        let age = self.state().online.age(now);
        let rules = self.desk().current_rules().await;
        let report = Status {
            token,
            online: OnlineReport { age_secs: age.map(|(secs, _)| secs), ok: age.map(|(_, ok)| ok) },
            rules: RulesReport { stored: rules.stored, age_secs: now.saturating_sub(rules.loaded_at) },
            now,
        };
        Ok(Served::done(Response::json(&report), "status"))
    }

    /// `POST /api/token/refresh`: one token request now, whatever the back-off; what the token
    /// endpoint said (never the token itself), or its error.
    async fn refresh_token(&self) -> Result<Served, Error> {
        let api = self.api()?;
        // With a database the spacing holds across isolates: one conditional statement takes it
        // (see `take_limit`); failing, this isolate's own spacing is all there is.
        if let Ok(db) = self.db() {
            let now = self.rt.clock().now();
            match db.take_limit(TOKEN_REFRESH_LIMIT, now, now.saturating_add(MANUAL_REFRESH_SPACING_MS / 1000)).await {
                Ok(true) => {}
                Ok(false) => {
                    let until = db.limit_until(TOKEN_REFRESH_LIMIT).await.ok().flatten().unwrap_or(now);
                    return Err(Error::TooSoon { retry_after_secs: until.saturating_sub(now).max(1) });
                }
                Err(_) => self.notes.add("token refresh spacing: the database failed, this isolate's only"),
            }
        }
        let token = api.tokens().refresh_now().await?;
        let now = self.rt.clock().now();
        let answer =
            Refreshed { ok: true, expires_in: token.expires_at.saturating_sub(now), fetched_at: token.fetched_at };
        Ok(Served::done(Response::json(&answer), "token refreshed"))
    }

    /// The account's part of the database, or the variable that is missing.
    fn db(&self) -> Result<AccountDb<'_, R::Database>, Error> {
        let db = self.rt.database().ok_or(Error::Config("WECHAT_DB"))?;
        Ok(AccountDb { db, appid: self.account().key() })
    }

    /// This request's worker acting for the database account of `/wechat/{appid}`: from this
    /// isolate's memory if read less than [`ACCOUNT_TTL_SECS`] ago, else one indexed query
    /// (within [`READ_LIMIT_MS`]; slower or failing, an older copy serves, else a 500). An
    /// unknown or malformed appid, or a deployment without accounts, is a 404; secrets that do
    /// not open with `ACCOUNTS_KEY` a 500 whose log line names the account.
    async fn for_database_account(&self, path: &str) -> Result<Worker<R>, Error> {
        self.for_account(path.trim_start_matches("/wechat/")).await
    }

    /// This request's worker acting for the database account `appid` (see
    /// [`Worker::for_database_account`]).
    async fn for_account(&self, appid: &str) -> Result<Worker<R>, Error> {
        let (Some(sealer), Some(db)) = (self.config().sealer.clone(), self.rt.database()) else {
            return Err(Error::NotFound);
        };
        if !accounts::is_appid(appid) {
            return Err(Error::NotFound);
        }
        let clock = self.rt.clock();
        let now = clock.now();
        let known = self.isolate.accounts.borrow().get(appid).cloned();
        if let Some(cached) = known.as_ref().filter(|c| now < c.read_at.saturating_add(ACCOUNT_TTL_SECS)) {
            return self.acting_for(cached.account.clone());
        }
        let accounts = AccountsDb { db };
        let read = with_timeout(clock, READ_LIMIT_MS, Box::pin(accounts.get(appid))).await;
        let stored = match read {
            Ok(Ok(stored)) => stored,
            Ok(Err(_)) | Err(_) => {
                let why = if read.is_err() { "was slower than 1 s" } else { "failed" };
                return match known {
                    Some(cached) => {
                        self.notes.add(format!("account {appid}: the database {why}, served as read before"));
                        self.acting_for(cached.account)
                    }
                    None => {
                        self.notes.add(format!("account {appid}: the database {why}"));
                        Err(Error::Internal("accounts: the account could not be read"))
                    }
                };
            }
        };
        let account = match stored {
            None => None,
            Some(stored) => {
                let secrets = sealer.open(appid, &stored.sealed).inspect_err(|_| {
                    self.notes.add(format!("account {appid}: its secrets do not open with ACCOUNTS_KEY"));
                })?;
                Some(Rc::new(self.db_account(&stored, secrets)))
            }
        };
        let mut cache = self.isolate.accounts.borrow_mut();
        if cache.len() >= MAX_CACHED_ACCOUNTS {
            cache.clear();
        }
        cache.insert(appid.to_string(), Cached { read_at: now, account: account.clone() });
        drop(cache);
        self.acting_for(account)
    }

    fn acting_for(&self, account: Option<Rc<DbAccount>>) -> Result<Worker<R>, Error> {
        let acting = account.ok_or(Error::NotFound)?;
        Ok(Worker { acting: Some(acting), ..self.clone() })
    }

    /// A database account ready to serve, with its memory in this isolate (kept by appid).
    fn db_account(&self, stored: &Stored, secrets: accounts::Secrets) -> DbAccount {
        let account = stored.account(secrets, self.config().account.max_clock_skew_secs);
        let state = self.isolate.states.borrow_mut().entry(stored.appid.clone()).or_default().clone();
        // A database account always has its AppID: only the AppSecret can be missing.
        let credentials = account.credentials(&self.config().api_base).map(Rc::new).map_err(|_| Error::NotConfigured {
            variable: "secret",
            reason: "the account has no AppSecret: set its secret to call WeChat's API",
        });
        DbAccount { key: Rc::from(stored.appid.as_str()), account, state, credentials }
    }

    /// 16 random bytes for a secret (a nonce, a token): the runtime's, refused when they are all
    /// zero (what the glue hands back if the runtime's randomness ever failed).
    fn random16(&self) -> Result<[u8; 16], Error> {
        let random = self.rt.random16();
        if random == [0; 16] {
            return Err(Error::Internal("the runtime's randomness failed"));
        }
        Ok(random)
    }

    /// The deployment's accounts, or why there are none to manage: `ACCOUNTS_KEY` or the
    /// database named (the owner can set them).
    fn accounts_db(&self) -> Result<AccountsDb<'_, R::Database>, Error> {
        self.sealer()?;
        let db = self.rt.database().ok_or(Error::NotConfigured {
            variable: "WECHAT_DB",
            reason: "bind the D1 database WECHAT_DB to keep accounts",
        })?;
        Ok(AccountsDb { db })
    }

    fn sealer(&self) -> Result<Rc<accounts::Sealer>, Error> {
        self.config().sealer.clone().ok_or(Error::NotConfigured {
            variable: accounts::KEY_VARIABLE,
            reason: "set ACCOUNTS_KEY (32 random bytes, base64) to keep accounts' secrets",
        })
    }

    /// Seals `checked`'s secrets (a fresh nonce each time).
    fn seal(&self, checked: &Checked) -> Result<String, Error> {
        let random = self.random16()?;
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(random.get(..12).ok_or(Error::Internal("accounts: a nonce"))?);
        self.sealer()?.seal(&checked.appid, &checked.secrets, nonce)
    }

    /// `GET /api/accounts` (`{"accounts": [...]}`, in appid order) and `POST /api/accounts`
    /// (201 with the account; 409 when its appid exists).
    async fn accounts(&self, req: &Request) -> Result<Served, Error> {
        let db = self.accounts_db()?;
        match req.method.as_str() {
            "GET" => {
                let list = db.list(MAX_LISTED).await?;
                let views: Vec<_> = list.iter().map(Stored::view).collect();
                let body = serde_json::to_vec(&serde_json::json!({ "accounts": views }))
                    .map_err(|_| Error::Internal("accounts: the list does not serialize"))?;
                Ok(Served::done(Response::new(200, ContentType::Json, body), format!("accounts {}", list.len())))
            }
            "POST" => {
                let checked = accounts::create(&req.body)?;
                if self.config().account.appid.as_deref() == Some(checked.appid.as_str()) {
                    return Err(Error::Conflict {
                        field: "appid",
                        reason: "is the environment's account (WECHAT_APPID), served at /wechat",
                    });
                }
                let sealed = self.seal(&checked)?;
                let now = self.rt.clock().now();
                let stored = Stored {
                    appid: checked.appid,
                    name: checked.name,
                    sealed,
                    settings: checked.settings,
                    created: now,
                    updated: now,
                };
                if !db.insert(&stored).await? {
                    return Err(Error::Conflict { field: "appid", reason: "an account with this appid exists" });
                }
                self.isolate.accounts.borrow_mut().remove(&stored.appid);
                let outcome = format!("account {} created", stored.appid);
                Ok(Served::done(Response { status: 201, ..Response::json(&stored.view()) }, outcome))
            }
            _ => Err(Error::MethodNotAllowed("GET, POST")),
        }
    }

    /// `GET`, `PUT` (fields left out keep their value) and `DELETE` (204) of
    /// `/api/accounts/{appid}`; an unknown appid is a 404.
    async fn one_account(&self, req: &Request, appid: &str) -> Result<Served, Error> {
        let db = self.accounts_db()?;
        if !accounts::is_appid(appid) {
            return Err(Error::NotFound);
        }
        match req.method.as_str() {
            "GET" => {
                let stored = db.get(appid).await?.ok_or(Error::NotFound)?;
                Ok(Served::done(Response::json(&stored.view()), format!("account {appid}")))
            }
            "PUT" => {
                let sealer = self.sealer()?;
                let current = db.get(appid).await?.ok_or(Error::NotFound)?;
                // Secrets that do not open (ACCOUNTS_KEY was changed) are replaced when the body
                // gives all three anew (the Token, and the AES key and AppSecret or null).
                let secrets = match sealer.open(appid, &current.sealed) {
                    Ok(secrets) => secrets,
                    Err(_) if accounts::replaces_secrets(&req.body) => accounts::Secrets::default(),
                    Err(e) => {
                        self.notes.add(format!("account {appid}: its secrets do not open with ACCOUNTS_KEY"));
                        return Err(e);
                    }
                };
                let checked = accounts::update(&current, secrets, &req.body)?;
                let sealed = self.seal(&checked)?;
                let now = self.rt.clock().now();
                let stored = Stored { sealed, settings: checked.settings, name: checked.name, updated: now, ..current };
                if !db.update(&stored).await? {
                    return Err(Error::NotFound);
                }
                self.isolate.accounts.borrow_mut().remove(appid);
                Ok(Served::done(Response::json(&stored.view()), format!("account {appid} changed")))
            }
            "DELETE" => {
                if !db.delete(appid).await? {
                    return Err(Error::NotFound);
                }
                self.isolate.accounts.borrow_mut().remove(appid);
                self.isolate.operators.borrow_mut().retain(|_, (of, _, _)| of != appid);
                Ok(Served::done(Response::new(204, ContentType::Json, Vec::new()), format!("account {appid} removed")))
            }
            _ => Err(Error::MethodNotAllowed("GET, PUT, DELETE")),
        }
    }

    /// `/api/accounts/{appid}/tokens` (`GET`: the list, `POST {"name"}`: a new token, shown
    /// this once) and `/api/accounts/{appid}/tokens/{id}` (`DELETE`: revoked, at once in this
    /// isolate). The owner's alone.
    async fn tokens(&self, req: &Request, appid: &str, id: Option<&str>) -> Result<Served, Error> {
        let db = self.accounts_db()?;
        if !accounts::is_appid(appid) || db.get(appid).await?.is_none() {
            return Err(Error::NotFound);
        }
        match (id, req.method.as_str()) {
            (None, "GET") => {
                let list = db.tokens(appid).await?;
                let body = serde_json::to_vec(&serde_json::json!({ "tokens": list }))
                    .map_err(|_| Error::Internal("operators: the list does not serialize"))?;
                Ok(Served::done(Response::new(200, ContentType::Json, body), format!("tokens of {appid}")))
            }
            (None, "POST") => {
                let name = operators::name(&req.body)?;
                if db.tokens(appid).await?.len() as u64 >= operators::MAX_PER_ACCOUNT {
                    return Err(Error::Conflict {
                        field: "name",
                        reason: "an account has at most 100 operator tokens",
                    });
                }
                let now = self.rt.clock().now();
                let random = [self.random16()?, self.random16()?, self.random16()?];
                let (token, kept) = operators::issue(random);
                if !db.insert_token(appid, &name, &kept, now).await? {
                    return Err(Error::Internal("operators: a token id was taken; try again"));
                }
                #[derive(Serialize)]
                struct Issued<'a> {
                    id: &'a str,
                    name: &'a str,
                    token: &'a str,
                    created: u64,
                }
                let answer = Issued { id: &kept.id, name: &name, token: &token, created: now };
                let outcome = format!("token {} issued for {appid}", kept.id);
                Ok(Served::done(Response { status: 201, ..Response::json(&answer) }, outcome))
            }
            (Some(id), "DELETE") if operators::is_id(id) => {
                if !db.revoke(appid, id).await? {
                    return Err(Error::NotFound);
                }
                self.isolate.operators.borrow_mut().remove(id);
                Ok(Served::done(Response::new(204, ContentType::Json, Vec::new()), format!("token {id} revoked")))
            }
            (Some(id), _) if !operators::is_id(id) => Err(Error::NotFound),
            (Some(_), _) => Err(Error::MethodNotAllowed("DELETE")),
            (None, _) => Err(Error::MethodNotAllowed("GET, POST")),
        }
    }

    /// `GET /api/ledger`: a user's timeline, a page at a time (see [`crate::ledger`]).
    async fn ledger(&self, req: &Request) -> Result<Served, Error> {
        // The admin token signs the cursors: only whoever may read the ledger can make one.
        let key = self.config().admin_token.as_deref().ok_or(Error::NotFound)?;
        let query = crate::ledger::query(&req.query, self.rt.clock().now(), key)?;
        let rows = self.db()?.timeline(&query.openid, query.from, query.before, PAGE_ROWS + 1).await?;
        let body = crate::ledger::page(&query, &rows, key)?;
        Ok(Served::done(
            Response::new(200, ContentType::Json, body),
            format!("ledger {} rows", rows.len().min(PAGE_ROWS)),
        ))
    }

    /// `GET /api/stats`: the account's service levels (see [`crate::report`]), the ledger's
    /// newest rows folded first so that the figures reach this request.
    async fn stats(&self, req: &Request) -> Result<Served, Error> {
        let now = self.rt.clock().now();
        let query = report::query(&req.query, now)?;
        let db = self.rt.database().ok_or(Error::Config("WECHAT_DB"))?;
        let stats = StatsDb { db };
        let (_, up_to_date) = self.fold_ledger(&stats, REPORT_FOLDS, now).await;
        let rules = self.desk().current_rules().await;
        let rules = &rules.document.rules;
        let buckets = report::Buckets::new(&query, rules.timezone);
        let appid = self.account().key();
        let rows = stats.hours(appid, buckets.first, query.to, query.kf_account.as_deref()).await?;
        let rows: Vec<report::HourRow> = rows
            .into_iter()
            .map(|(key, figures)| report::HourRow { hour: key.hour, kf_account: key.kf_account, figures })
            .collect();
        let n = rules.stats.unanswered_after_secs;
        let waiting = stats.waiting(appid, report::undecided_from(now, rules.timezone, n)).await?;
        let ctx = report::Context { now, offset: rules.timezone, unanswered_after_secs: n, waiting, up_to_date };
        let hourly_rows = rows.len();
        let answer = report::report(&query, rows, &ctx);
        let response = match query.format {
            report::Format::Json => Response::json(&answer),
            report::Format::Csv => {
                let mut response = Response::new(200, ContentType::Csv, report::csv(&answer, rules.timezone));
                let name = format!("attachment; filename=\"stats-{}-{}.csv\"", query.from, query.to);
                response.headers.push(("content-disposition", name));
                response
            }
        };
        Ok(Served::done(response, format!("stats {hourly_rows} hourly rows")))
    }

    /// Folds the ledger's newest rows into the hourly figures, at most `folds` times
    /// [`FOLD_ROWS`]: how many rows it read, and whether it reached the ledger's end. A failure
    /// is noted, and the figures stay as they were (the next fold takes the same rows).
    async fn fold_ledger(&self, stats: &StatsDb<'_, R::Database>, folds: usize, now: u64) -> (u64, bool) {
        let mut read = 0;
        for _ in 0..folds {
            match stats.fold(now).await {
                Ok(Some(outcome)) => {
                    read += outcome.rows;
                    if outcome.rows < FOLD_ROWS {
                        return (read, true);
                    }
                }
                // Another isolate folded from the same place first: go on from where it stopped.
                Ok(None) => {}
                Err(e) => {
                    self.notes.add(format!("stats: the fold failed: {e}"));
                    return (read, false);
                }
            }
        }
        (read, false)
    }

    /// `GET|PUT|DELETE /api/rules`: `{"stored": bool, "rules": <document>}`.
    async fn rules(&self, req: &Request) -> Result<Served, Error> {
        let desk = self.desk();
        let loaded = match req.method.as_str() {
            "GET" => desk.current_rules().await,
            "PUT" => desk.put_rules(&req.body, self.capabilities()).await?,
            "DELETE" => desk.delete_rules().await?,
            _ => return Err(Error::MethodNotAllowed("GET, PUT, DELETE")),
        };
        Ok(Served::done(rules_answer(&loaded)?, format!("rules {}", req.method)))
    }

    /// What the deployment can do, for the rules that need it.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            api: self.api().is_ok(),
            webhook: self.config().alert_webhook.is_some(),
            database: self.rt.database().is_some(),
            cron: self.acting.is_none(),
        }
    }

    /// The Cron Trigger: keeps the stored access_token fresh, then the alerts' checks (the
    /// queue, a credential failure), then the ledger's retention. Returns what it did to the
    /// token; the rest is in the notes.
    pub async fn scheduled(self) -> String {
        let outcome = match self.api() {
            Ok(api) => api.tokens().refresh_if_due().await.map(str::to_string).unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        };
        let rules = self.desk().current_rules().await;
        let failure = self.state().tokens.take_credential_failure();
        self.effects().cron_alerts(&rules.document.rules, failure).await;
        if let Ok(db) = self.db() {
            let now = self.rt.clock().now();
            let before = now.saturating_sub(rules.document.rules.retention_days.saturating_mul(86_400));
            match db.purge(before, now).await {
                Ok(0) => {}
                Ok(n) => self
                    .notes
                    .add(format!("ledger: {n} rows past {} days deleted", rules.document.rules.retention_days)),
                Err(e) => self.notes.add(format!("ledger retention failed: {e}")),
            }
            if self.config().sealer.is_some() {
                self.purge_database_accounts(now, before).await;
            }
            if rules.document.rules.stats.first_response {
                if let Ok(api) = self.api() {
                    match crate::first_responses::import(&api, &db, now).await {
                        Ok(i) if i.pages > 0 => self.notes.add(format!(
                            "stats: {} records read in {} pages, {} first responses",
                            i.records, i.pages, i.first_responses
                        )),
                        Ok(_) => {}
                        Err(e) => self.notes.add(format!("stats: first responses: {e}")),
                    }
                }
            }
            let stats = StatsDb { db: db.db };
            let (folded, caught_up) = self.fold_ledger(&stats, CRON_FOLDS, now).await;
            if folded > 0 {
                self.notes.add(format!("stats: {folded} ledger rows folded"));
            }
            // Only once the fold has reached now: while it catches up, a session that picks up a
            // user who has waited "two days" may be in rows it has not read yet.
            if caught_up {
                if let Err(e) = stats.purge_followed(now.saturating_sub(FOLLOWED_FOR_SECS)).await {
                    self.notes.add(format!("stats: {e}"));
                }
            }
        }
        outcome
    }

    /// The expired rate limits and requests for a human of the database's accounts, a few
    /// accounts a run in appid order (the cursor kept in the database), so that a run stays
    /// bounded however many accounts there are.
    async fn purge_database_accounts(&self, now: u64, before: u64) {
        let Some(db) = self.rt.database() else { return };
        let deployment = AccountDb { db, appid: "" };
        let cursor = deployment.cached(PURGE_CURSOR).await.ok().flatten().map(|(appid, _)| appid).unwrap_or_default();
        let batch = match (AccountsDb { db }).after(&cursor, ACCOUNTS_PURGED_PER_RUN).await {
            Ok(batch) => batch,
            Err(e) => return self.notes.add(format!("accounts' expired limits: {e}")),
        };
        for appid in &batch {
            if let Err(e) = (AccountDb { db, appid }).purge_expired(now, before).await {
                return self.notes.add(format!("accounts' expired limits: {e}"));
            }
        }
        // Past the last account, the next run starts again from the first.
        let next =
            if (batch.len() as u64) < ACCOUNTS_PURGED_PER_RUN { "" } else { batch.last().map_or("", String::as_str) };
        // (Written as it is: two runs in the same second must not keep the first's.)
        let _ = deployment.put_cursor(PURGE_CURSOR, next, now).await;
    }
}

/// `{"stored": bool, "rules": <document as stored>}`.
fn rules_answer(loaded: &Loaded) -> Result<Response, Error> {
    let rules = RawValue::from_string(loaded.document.json.clone()).map_err(|_| Error::Internal("rules document"))?;
    Ok(Response::json(&RulesAnswer { stored: loaded.stored, rules: &rules }))
}

/// `POST /api/token/refresh`'s answer.
#[derive(Serialize)]
struct Refreshed {
    ok: bool,
    expires_in: u64,
    fetched_at: u64,
}

#[derive(Serialize)]
struct RulesAnswer<'a> {
    stored: bool,
    rules: &'a RawValue,
}

/// `GET /api/status`'s answer.
#[derive(Serialize)]
struct Status {
    token: TokenReport,
    online: OnlineReport,
    rules: RulesReport,
    now: u64,
}

#[derive(Serialize, Default)]
struct TokenReport {
    cached: bool,
    expires_in: Option<u64>,
    fetched_at: Option<u64>,
    retry_after: Option<u64>,
    last_error: Option<String>,
}

#[derive(Serialize)]
struct OnlineReport {
    /// `null`: never looked up in this isolate.
    age_secs: Option<u64>,
    /// `false`: the last lookup failed.
    ok: Option<bool>,
}

#[derive(Serialize)]
struct RulesReport {
    stored: bool,
    age_secs: u64,
}

/// Whether a request may go on to have its body read: admin routes need the admin token, or an
/// operator token this isolate checked against the database within the last
/// [`operators::TRUST_SECS`] ([`prepare_request`] checks it first): nobody else makes the
/// worker read a body of up to 10 MB. (Which routes an operator token reaches is decided after.)
pub fn admit(isolate: &Isolate, now: u64, route: Route, authorization: Option<&str>) -> Result<(), Error> {
    if !route.is_admin() {
        return Ok(());
    }
    let Some(expected) = isolate.config.admin_token.as_deref() else {
        return Err(Error::NotFound);
    };
    authorize(authorization, expected).or_else(|e| {
        let presented = bearer(authorization).and_then(operators::parse).ok_or(e.clone())?;
        let operators = isolate.operators.borrow();
        let (_, hash, at) = operators.get(&presented.id).ok_or(e.clone())?;
        let fresh = now < at.saturating_add(operators::TRUST_SECS);
        if fresh && !hash.is_empty() && wechat_mp::signature::secrets_match(&presented.hash, hash) {
            Ok(())
        } else {
            Err(e)
        }
    })
}

/// [`prepare`] once who calls is known: an operator token is checked against the database (or
/// this isolate's check of it) before any body is read.
pub async fn prepare_request<R: Runtime + 'static>(worker: &Worker<R>, req: &Request) -> Result<Prepared, Error> {
    if req.route().is_admin() {
        worker.caller(req).await?;
    }
    prepare(&worker.isolate, worker.rt.clock().now(), req)
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `Authorization: Bearer <token>` (the scheme in any case), compared in constant time.
pub fn authorize(header: Option<&str>, expected: &str) -> Result<(), Error> {
    let (scheme, token) = header.unwrap_or_default().trim().split_once(' ').unwrap_or_default();
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !wechat_mp::signature::secrets_match(token, expected)
    {
        return Err(Error::Unauthorized);
    }
    Ok(())
}

/// A body answered without being read whole is read and dropped first, up to this many bytes:
/// a client then reads its answer (a 401, 404, 405, 413) instead of a reset mid-upload.
pub const DRAIN_BYTES: usize = 1 << 20;
/// The same for an upload the admin token let through: up to the request body limit of
/// Cloudflare's Free and Pro plans (a larger body never reaches a Worker there). Only an
/// operator's upload is worth reading that far.
pub const UPLOAD_DRAIN_BYTES: usize = 100 << 20;

/// The drain limit of a request [`prepare`] refused (no token, an unknown route...).
pub fn drain_limit(prepared: Option<&Prepared>) -> usize {
    prepared.map_or(DRAIN_BYTES, |p| p.drain_limit)
}

/// What the glue may do once [`prepare`] let a request through.
pub struct Prepared {
    /// The most body bytes to read (more is a 413); `None`: the body is not read.
    pub body_limit: Option<usize>,
    /// How much of a body answered unread (over its limit) to read and drop first, so that the
    /// client sees the answer rather than a reset: see [`drain_limit`].
    pub drain_limit: usize,
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
pub fn prepare(isolate: &Rc<Isolate>, now: u64, req: &Request) -> Result<Prepared, Error> {
    let route = req.route();
    admit(isolate, now, route, req.authorization.as_deref())?;
    if route != Route::Upload {
        return Ok(Prepared { body_limit: route.body_limit(), drain_limit: DRAIN_BYTES, _slot: None });
    }
    let kind = media::head(&req.method, route_path(&req.path), &req.query)?;
    if isolate.uploading.replace(true) {
        return Err(Error::Busy("another upload in this isolate"));
    }
    let slot = UploadSlot(isolate.clone());
    Ok(Prepared {
        body_limit: Some(kind.limit.saturating_add(media::ENVELOPE_BYTES)),
        drain_limit: UPLOAD_DRAIN_BYTES,
        _slot: Some(slot),
    })
}

/// The answer when the glue could not read the body (`err`): for an upload over the largest
/// limit, the limit of the kind it asked for.
pub fn body_refused(req: &Request, err: Error) -> Served {
    match (req.route(), err) {
        (Route::Upload, Error::PayloadTooLarge) => Served::failed(&media::too_large(route_path(&req.path), &req.query)),
        (_, err) => Served::failed(&err),
    }
}

/// Whether a request's log line is written at error level: a 5xx, the worker's fault or its
/// configuration's; the caller's faults (4xx) are not errors of the worker.
pub fn logged_as_error(status: u16) -> bool {
    status >= 500
}

/// The request's one log line (JSON): route, method, status, outcome, ms, and notes if any.
pub fn log_line(route: Route, method: &str, status: u16, outcome: &str, ms: u64, notes: &[String]) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        route: &'static str,
        method: &'a str,
        status: u16,
        outcome: &'a str,
        ms: u64,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        notes: &'a [String],
    }
    serde_json::to_string(&Line { route: route.label(), method, status, outcome, ms, notes }).unwrap_or_default()
}

/// The cron run's log line: `{"cron":"access_token","outcome":...,"notes":[...]}`.
pub fn cron_line(outcome: &str, notes: &[String]) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        cron: &'static str,
        outcome: &'a str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        notes: &'a [String],
    }
    serde_json::to_string(&Line { cron: "access_token", outcome, notes }).unwrap_or_default()
}
