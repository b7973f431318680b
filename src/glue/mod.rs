//! The Cloudflare Workers glue: routing, environment, clock, randomness, logging.
//! Everything it decides is delegated to the pure modules; it only moves bytes.

mod http;
mod wechat;

use std::rc::Rc;
use std::time::Duration;

use worker::{event, Context, Env, Method, Request, Response, ScheduleContext, ScheduledEvent};

use crate::callback::{self, Query};
use crate::config::{is_known_variable, Config};
use crate::error::Error;
use crate::kf::{self, Target};
use wechat::Client;

/// Reads every variable the worker knows from secrets or vars (both are strings to the runtime).
pub(crate) fn load_config(env: &Env) -> Config {
    Config::build(|name| {
        debug_assert!(is_known_variable(name));
        env.var(name).ok().map(|v| v.to_string())
    })
}

thread_local! {
    static CONFIG: std::cell::OnceCell<Rc<Config>> = const { std::cell::OnceCell::new() };
}

/// The configuration, built once per isolate: an isolate's environment never changes (a new
/// secret or var means a new deployment, hence new isolates), and building it decodes the
/// EncodingAESKey and expands the AES key schedule.
fn isolate_config(env: &Env) -> Rc<Config> {
    CONFIG.with(|c| c.get_or_init(|| Rc::new(load_config(env))).clone())
}

/// Seconds since the Unix epoch, from the runtime's clock.
pub(crate) fn now_secs() -> u64 {
    worker::Date::now().as_millis() / 1000
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started = worker::Date::now().as_millis();
    let method = req.method();
    let config = isolate_config(&env);
    let mut req = req;
    let (route, result) = serve(&mut req, &env, &ctx, &config).await;
    http::discard_unread_body(&mut req).await;
    let (response, outcome) = match result {
        Ok(served) => served,
        // A configuration error's outcome names the variable (never its value).
        Err(err) => (http::error_response(&err), err.to_string()),
    };
    let line = serde_json::json!({
        "route": route,
        "method": method.to_string(),
        "status": response.status_code(),
        "outcome": outcome,
        "ms": worker::Date::now().as_millis().saturating_sub(started),
    });
    // One line per request; server faults (only misconfiguration and runtime failures) at error level.
    if response.status_code() >= 500 {
        worker::console_error!("{line}");
    } else {
        worker::console_log!("{line}");
    }
    Ok(response)
}

/// Routes a request; returns the route label for logs and the outcome.
async fn serve(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    config: &Config,
) -> (&'static str, Result<(Response, String), Error>) {
    let path = req.path();
    if let Some(rest) = path.strip_prefix("/api/") {
        let rest = rest.to_string();
        return ("/api", admin(req, env, config, &rest).await);
    }
    match path.as_str() {
        "/wechat" => {
            let result = match req.method() {
                Method::Get => url_check(req, config),
                Method::Post => message(req, env, ctx, config).await,
                _ => Err(Error::MethodNotAllowed("GET, POST")),
            };
            ("/wechat", result)
        }
        "/healthz" => {
            let result = match req.method() {
                Method::Get | Method::Head => {
                    Ok((http::json_response(200, &config.health().to_string()), "ok".to_string()))
                }
                _ => Err(Error::MethodNotAllowed("GET, HEAD")),
            };
            ("/healthz", result)
        }
        _ => ("other", Err(Error::NotFound)),
    }
}

/// The query string, from the URL the runtime serialized (no URL parser: the `url` crate and its
/// IDNA tables cost ~100 KB of wasm). A serialized request URL has no fragment.
fn raw_query(req: &Request) -> String {
    let url = req.inner().url();
    url.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default()
}

fn query_of(req: &Request) -> Query {
    Query::parse(&raw_query(req))
}

/// `GET /wechat`: WeChat's URL check.
fn url_check(req: &Request, config: &Config) -> Result<(Response, String), Error> {
    let settings = config.callback()?;
    let query = query_of(req);
    let echostr = callback::verify_url(&settings, &query)?;
    Ok((http::text_response(200, echostr), "url_check".to_string()))
}

/// `POST /wechat`: a message or event.
async fn message(req: &mut Request, env: &Env, ctx: &Context, config: &Config) -> Result<(Response, String), Error> {
    let settings = config.callback()?;
    let query = query_of(req);
    let body = http::read_body_limited(req, callback::MAX_BODY_BYTES).await?;
    let now = now_secs();
    let inbound = callback::open_message(&settings, &query, &body, now)?;
    let kf_account =
        if inbound.message.is_user_message() { transfer_target(config, env, ctx, now).await } else { None };
    // Only an encrypted reply needs a random prefix.
    let random = if inbound.encrypted { http::random_bytes()? } else { [0u8; 16] };
    let (action, reply) = callback::respond(&settings, &inbound, kf_account.as_deref(), now, &random)?;
    let content_type =
        if reply == crate::reply::SUCCESS { "text/plain; charset=utf-8" } else { "application/xml; charset=utf-8" };
    let outcome = format!(
        "{} {}{}{}",
        action.as_str(),
        inbound.message.label(),
        if inbound.encrypted { " encrypted" } else { "" },
        if kf_account.is_some() { " targeted" } else { "" },
    );
    Ok((http::response(200, content_type, reply.into_bytes()), outcome))
}

/// The `KfAccount` for a transfer. With online routing, the lookup gets at most
/// [`kf::LOOKUP_BUDGET_MS`]; past that (or on any failure) the transfer goes untargeted, transfers
/// skip the lookup for [`kf::NEGATIVE_TTL_SECS`], and a slow lookup finishes in the background
/// to warm the cache.
async fn transfer_target(config: &Config, env: &Env, ctx: &Context, now: u64) -> Option<String> {
    let accounts = match kf::target(config) {
        Target::Untargeted => return None,
        Target::Fixed(account) => return Some(account.to_string()),
        Target::LookUp(accounts) => accounts,
    };
    if let Some(cached) = wechat::online_from_memory(now) {
        return cached.and_then(|list| kf::choose(accounts, &list).map(str::to_string));
    }
    let client = match Client::new(config, env) {
        Ok(c) => c,
        Err(e) => {
            warn_routing(&e.to_string());
            wechat::remember_online(now, None);
            return None;
        }
    };
    let lookup = Box::pin(async move { client.online_list(now).await });
    match wechat::with_timeout(lookup, Duration::from_millis(kf::LOOKUP_BUDGET_MS)).await {
        Ok(Ok(list)) => {
            let chosen = kf::choose(accounts, &list).map(str::to_string);
            wechat::remember_online(now, Some(list));
            chosen
        }
        Ok(Err(e)) => {
            warn_routing(&e.to_string());
            wechat::remember_online(now, None);
            None
        }
        Err(lookup) => {
            warn_routing("lookup over budget; untargeted transfer");
            wechat::remember_online(now, None);
            ctx.wait_until(async move {
                if let Ok(list) = lookup.await {
                    wechat::remember_online(now, Some(list));
                }
            });
            None
        }
    }
}

fn warn_routing(what: &str) {
    worker::console_warn!("{}", serde_json::json!({ "kf_routing": what }));
}

/// `/api/*`: authenticated, validated, forwarded to WeChat.
async fn admin(req: &mut Request, env: &Env, config: &Config, path: &str) -> Result<(Response, String), Error> {
    let Some(expected) = config.admin_token.as_deref() else {
        return Err(Error::NotFound);
    };
    let given = req.headers().get("authorization").ok().flatten().unwrap_or_default();
    let bearer = given.strip_prefix("Bearer ").unwrap_or_default();
    if bearer.is_empty() || !crate::signature::secrets_match(bearer, expected) {
        return Err(Error::Unauthorized);
    }
    let body = http::read_body_limited(req, crate::admin::MAX_BODY_BYTES).await?;
    let query = raw_query(req);
    let call = crate::admin::plan(req.method().as_ref(), &format!("/{path}"), &query, &body)?;
    let client = Client::new(config, env)?;
    let answer = client.call(&call, now_secs()).await?;
    Ok((http::response(200, "application/json; charset=utf-8", answer), call.label().to_string()))
}

/// Cron Trigger: keeps the KV access_token fresh so user-facing calls never wait for it.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = load_config(&env);
    let outcome = match Client::new(&config, &env) {
        Ok(client) => client.refresh_if_due(now_secs()).await.map(str::to_string).unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    };
    worker::console_log!("{}", serde_json::json!({ "cron": "access_token", "outcome": outcome }));
}
