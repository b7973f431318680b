//! The Cloudflare Workers glue, the only code that names `worker::`: the entry points, the
//! request and response plumbing, and the runtime traits over KV, timers and `fetch`.
//! Every decision is [`crate::app`]'s.

mod http;
mod runtime;

use std::cell::OnceCell;
use std::rc::Rc;

use worker::{event, web_sys, Context, Env, ScheduleContext, ScheduledEvent};

use crate::app::{self, App, Isolate, Request, Route, Served};
use crate::config::{is_known_variable, Config};
use crate::runtime::Clock;
use runtime::{WorkerClock, WorkerRuntime};

/// Reads every variable the worker knows from secrets or vars (both are strings to the
/// runtime); the KV binding reads as "bound" when present.
fn load_config(env: &Env) -> Config {
    Config::build(|name| {
        debug_assert!(is_known_variable(name));
        if name == "WECHAT_KV" {
            return env.kv(name).ok().map(|_| "bound".to_string());
        }
        env.var(name).ok().map(|v| v.to_string())
    })
}

thread_local! {
    static ISOLATE: OnceCell<(Rc<Config>, Rc<Isolate>)> = const { OnceCell::new() };
}

/// The configuration and state of this isolate, built on its first request: an isolate's
/// environment never changes (a new secret or var means a new deployment, hence new isolates).
fn isolate(env: &Env) -> (Rc<Config>, Rc<Isolate>) {
    ISOLATE.with(|c| c.get_or_init(|| (Rc::new(load_config(env)), Rc::default())).clone())
}

fn app(env: &Env) -> Rc<App<WorkerRuntime>> {
    let (config, isolate) = isolate(env);
    Rc::new(App::new(config, isolate, WorkerRuntime::new(env)))
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let started = WorkerClock.now_ms();
    let method = req.method();
    let url = req.url();
    let (path, query) = app::split_url(&url);
    let route = Route::of(&method, path);
    let app = app(&env);
    let served = match route.body_limit() {
        Some(limit) => match http::read_body(&req, limit).await {
            Ok(body) => {
                let authorization = req.headers().get("authorization").ok().flatten();
                let request =
                    Request { method: &method, path, query, authorization: authorization.as_deref(), body: &body };
                app::serve(&app, route, request).await
            }
            Err(e) => Served::failed(&e),
        },
        None => {
            let request = Request { method: &method, path, query, authorization: None, body: &[] };
            app::serve(&app, route, request).await
        }
    };
    http::discard_unread_body(&req).await;
    let Served { response, outcome, background } = served;
    let ms = WorkerClock.now_ms().saturating_sub(started);
    let status = response.status;
    let web = http::to_web(&response);
    match background {
        // The log line waits for the background work, so that it can tell what that did.
        Some(work) => ctx.wait_until(async move {
            work.await;
            log(&app::log_line(route, &method, status, &outcome, ms, &app.take_notes()), status);
        }),
        None => log(&app::log_line(route, &method, status, &outcome, ms, &app.take_notes()), status),
    }
    Ok(web)
}

/// One line per request; server faults (misconfiguration, runtime failures) at error level.
fn log(line: &str, status: u16) {
    if status >= 500 {
        worker::console_error!("{line}");
    } else {
        worker::console_log!("{line}");
    }
}

/// Cron Trigger: keeps the stored access_token fresh so user-facing calls never wait for it.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let app = app(&env);
    let outcome = app::scheduled(&app).await;
    let mut line = crate::json::ObjectWriter::new();
    line.str("cron", "access_token").str("outcome", &outcome);
    worker::console_log!("{}", line.finish());
}
