//! The Cloudflare Workers glue: routing, environment, clock, randomness, logging.
//! Everything it decides is delegated to the pure modules; it only moves bytes.

mod http;

use worker::{event, Context, Env, Method, Request, Response};

use crate::callback::{self, Query};
use crate::config::{Config, VARIABLES};
use crate::error::Error;

/// Reads every variable the worker knows from secrets or vars (both are strings to the runtime).
pub(crate) fn load_config(env: &Env) -> Config {
    Config::build(|name| {
        debug_assert!(VARIABLES.contains(&name));
        env.var(name).ok().map(|v| v.to_string())
    })
}

/// Seconds since the Unix epoch, from the runtime's clock.
pub(crate) fn now_secs() -> u64 {
    worker::Date::now().as_millis() / 1000
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started = worker::Date::now().as_millis();
    let method = req.method();
    let config = load_config(&env);
    let (route, result) = serve(req, &config).await;
    let (response, outcome) = match result {
        Ok(served) => served,
        Err(err) => {
            if let Error::Config(var) = &err {
                worker::console_error!("{{\"config_error\":\"{var} is missing or invalid\"}}");
            }
            let outcome = err.to_string();
            (http::error_response(&err), outcome)
        }
    };
    let line = serde_json::json!({
        "route": route,
        "method": method.to_string(),
        "status": response.status_code(),
        "outcome": outcome,
        "ms": worker::Date::now().as_millis().saturating_sub(started),
    });
    worker::console_log!("{line}");
    Ok(response)
}

/// Routes a request; returns the route label for logs and the outcome.
async fn serve(mut req: Request, config: &Config) -> (&'static str, Result<(Response, String), Error>) {
    let path = req.path();
    match path.as_str() {
        "/wechat" => {
            let result = match req.method() {
                Method::Get => url_check(&req, config),
                Method::Post => message(&mut req, config).await,
                _ => Err(Error::MethodNotAllowed),
            };
            ("/wechat", result)
        }
        "/healthz" => {
            let result = match req.method() {
                Method::Get | Method::Head => {
                    http::json_response(200, &config.health().to_string()).map(|r| (r, "ok".to_string()))
                }
                _ => Err(Error::MethodNotAllowed),
            };
            ("/healthz", result)
        }
        _ => ("other", Err(Error::NotFound)),
    }
}

fn query_of(req: &Request) -> Query {
    req.url().ok().and_then(|u| u.query().map(Query::parse)).unwrap_or_default()
}

/// `GET /wechat`: WeChat's URL check.
fn url_check(req: &Request, config: &Config) -> Result<(Response, String), Error> {
    let settings = config.callback()?;
    let query = query_of(req);
    let echostr = callback::verify_url(&settings, &query)?;
    Ok((http::text_response(200, echostr)?, "url_check".to_string()))
}

/// `POST /wechat`: a message or event.
async fn message(req: &mut Request, config: &Config) -> Result<(Response, String), Error> {
    let settings = config.callback()?;
    let query = query_of(req);
    let body = http::read_body_limited(req, callback::MAX_BODY_BYTES).await?;
    let now = now_secs();
    let inbound = callback::open_message(&settings, &query, &body, now)?;
    let kf_account =
        if inbound.message.is_user_message() { config.kf_accounts.first().map(String::as_str) } else { None };
    // Only an encrypted reply needs a random prefix.
    let random = if inbound.encrypted { http::random_bytes()? } else { [0u8; 16] };
    let (action, reply) = callback::respond(&settings, &inbound, kf_account, now, &random)?;
    let content_type =
        if reply == crate::reply::SUCCESS { "text/plain; charset=utf-8" } else { "application/xml; charset=utf-8" };
    let outcome =
        format!("{} {}{}", action.as_str(), inbound.message.label(), if inbound.encrypted { " encrypted" } else { "" });
    Ok((http::response(200, content_type, reply.into_bytes())?, outcome))
}
