//! The Cloudflare Workers glue, the only code that names `worker::`: the entry points, the
//! request and response plumbing, and the runtime traits over KV, timers and `fetch`.
//! Every decision is [`crate::app`]'s.

mod http;
mod runtime;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsValue};
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
        let binding = worker::js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
        if name == "WECHAT_KV" {
            return binding.is_object().then(|| "bound".to_string());
        }
        // What `env.var` reads (a string binding), without building an error for each absent one.
        binding.as_string()
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
    Rc::new(app_now(env))
}

/// The app for one synchronous call (no `Rc`: nothing outlives the call).
fn app_now(env: &Env) -> App<WorkerRuntime> {
    let (config, isolate) = isolate(env);
    App::new(config, isolate, WorkerRuntime::new(env))
}

/// See [`app::response_headers`].
#[wasm_bindgen]
pub fn response_headers() -> String {
    app::response_headers()
}

/// The request without I/O (see [`app::serve_now`]), for the JS entry, which reads the answer
/// in place (see [`answer`]): the encoded response (see [`app::Response::encode`]); or an
/// instruction to read a store key first and call again with the result through
/// [`handle_read`] (see [`app::encode_read`]); or nothing (length 0) when the request needs
/// [`handle_async`]. `target` is `"<method> <url>"` (one string crosses, not two). This is the
/// call for a request without a body, [`handle_body`] the one with.
/// Borrowed and plain arguments only: every `Option` or owned value here would add conversion
/// and clean-up code to the export, which every isolate's first request compiles.
#[wasm_bindgen]
pub fn handle(env: &Env, target: &str) -> f64 {
    answer(env, target, &[], None, 0)
}

/// [`handle`] with the whole body (the entry reads small declared bodies itself).
#[wasm_bindgen]
pub fn handle_body(env: &Env, target: &str, body: &[u8]) -> f64 {
    answer(env, target, body, None, 0)
}

/// [`handle`] or [`handle_body`] again (`body` empty for none) with the result of the read it
/// asked for: `read` is `"+"` and the value, `"-"` for none, `"!"` when it failed; `waited_ms`
/// how long the entry waited for it (the log line's `ms`).
#[wasm_bindgen]
pub fn handle_read(env: &Env, target: &str, body: &[u8], read: &str, waited_ms: u32) -> f64 {
    answer(env, target, body, Some(read), u64::from(waited_ms))
}

thread_local! {
    /// The last synchronous answer, which the entry reads in place before its next call.
    static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Answers the request (see [`app::handle_now_into`]) into the reused answer buffer and tells
/// the entry where the answer is, as one number (no allocation, no copy, no second call to free
/// it; see [`app::answer_location`]). The entry reads it through [`wasm_memory`] and copies what
/// it keeps before calling again.
/// One function for the three exports (not one per export): a first push compiles two of them.
#[inline(never)]
fn answer(env: &Env, target: &str, body: &[u8], read: Option<&str>, waited_ms: u64) -> f64 {
    ANSWER.with(|cell| {
        let mut out = cell.borrow_mut();
        app::handle_now_into(&app_now(env), target, body, read, waited_ms, &mut out);
        let address = u32::try_from(out.as_ptr() as usize).unwrap_or(0);
        app::answer_location(address, u32::try_from(out.len()).unwrap_or(0))
    })
}

/// The instance's memory, where the entry reads [`answer`]'s bytes.
#[wasm_bindgen]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// The whole request, with I/O; resolves to the encoded response. `body`: the body if the entry
/// already read it, else it is read here within the route's limit.
#[wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures)]
pub async fn handle_async(
    req: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
    body: Option<Vec<u8>>,
) -> Result<JsValue, JsValue> {
    let ctx = Context::new(ctx);
    let started = WorkerClock.now_ms();
    let method = req.method();
    let url = req.url();
    let (path, query) = app::split_url(&url);
    let route = Route::of(&method, path);
    let app = app(&env);
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let admin = matches!(route, Route::Admin | Route::Upload);
    let authorization = if admin { header("authorization") } else { None };
    let head = Request {
        method: &method,
        path,
        query,
        authorization: authorization.as_deref(),
        content_type: None,
        body: &[],
    };
    let served = match app::prepare(&app, route, &head) {
        Err(e) => Served::failed(&e),
        Ok(prepared) => {
            let body = match (body, prepared.body_limit) {
                (Some(body), _) => Ok(body),
                (None, Some(limit)) => http::read_body(&req, limit).await,
                (None, None) => Ok(Vec::new()),
            };
            let content_type = if route == Route::Upload { header("content-type") } else { None };
            let body = match body {
                // A multipart upload: its `media` part, decoded by the runtime.
                Ok(body) if content_type.as_deref().is_some_and(crate::api::media::is_multipart) => {
                    http::media_part(body, content_type.as_deref().unwrap_or_default()).await
                }
                Ok(body) => Ok((body, content_type)),
                Err(e) => Err(e),
            };
            let served = match body {
                Ok((body, content_type)) => {
                    let request = Request { content_type: content_type.as_deref(), body: &body, ..head };
                    app::serve(&app, route, request).await
                }
                Err(e) => app::body_refused(route, path, query, e),
            };
            drop(prepared);
            served
        }
    };
    http::discard_unread_body(&req).await;
    let Served { response, outcome, background } = served;
    let ms = WorkerClock.now_ms().saturating_sub(started);
    let encoded = match background {
        // The log line waits for the background work, so that it can tell what that did.
        Some(work) => {
            let status = response.status;
            ctx.wait_until(async move {
                work.await;
                let line = app::log_line(route, &method, status, &outcome, ms, &app.take_notes());
                if status >= 500 {
                    worker::console_error!("{line}");
                } else {
                    worker::console_log!("{line}");
                }
            });
            response.encode(None)
        }
        None => response.encode(Some(&app::log_line(route, &method, response.status, &outcome, ms, &app.take_notes()))),
    };
    Ok(Uint8Array::from(encoded.as_slice()).into())
}

/// Cron Trigger: keeps the stored access_token fresh so user-facing calls never wait for it.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let app = app(&env);
    let outcome = app::scheduled(&app).await;
    worker::console_log!("{}", app::cron_line(&outcome, &app.take_notes()));
}

/// Talc in place of Rust's default wasm allocator (dlmalloc): ~1.8 KB of code instead of ~7.7 KB,
/// all of which V8 compiles on an isolate's first request (every request allocates).
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
