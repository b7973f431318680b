//! The Cloudflare Workers glue, the only code that names `worker::`: the exports the JS entry
//! (`entry.mjs`) calls, request plumbing, and the runtime traits over KV, timers, `fetch` and D1.
//! Every decision is the core's ([`kf_core::app`]).

mod http;
mod runtime;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use kf_core::app::{self, Isolate, Request, Served, Worker};
use kf_core::config::{self, Config};
use kf_core::runtime::Clock;
use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::{web_sys, Env};

use crate::reads::{self, Driven, Waiting};
use crate::wire;
use runtime::{WorkerClock, WorkerRuntime};

/// Reads every variable the worker knows from secrets or vars (both are strings to the
/// runtime); a binding reads as "bound" when present.
fn load_config(env: &Env) -> Config {
    Config::build(|name| {
        debug_assert!(config::variables().any(|v| v == name));
        let binding = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
        if config::STORE_VARIABLES.contains(&name) {
            return binding.is_object().then(|| "bound".to_string());
        }
        binding.as_string()
    })
}

/// A request's future, answering with the encoded response.
type Answer = dyn Future<Output = Out>;

thread_local! {
    static ISOLATE: OnceCell<Rc<Isolate>> = const { OnceCell::new() };
    /// The last synchronous answer, which the entry reads in place before its next call.
    static ANSWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The promise of the answer that [`handle`] could not give at once.
    static PENDING: RefCell<Option<js_sys::Promise>> = const { RefCell::new(None) };
    /// Requests waiting for a read the entry makes (see [`crate::reads`]), oldest first.
    static WAITING: RefCell<VecDeque<Waiting<Answer>>> = const { RefCell::new(VecDeque::new()) };
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// This isolate's configuration and memory, built on its first request.
fn isolate(env: &Env) -> Rc<Isolate> {
    ISOLATE.with(|i| i.get_or_init(|| Rc::new(Isolate::new(load_config(env)))).clone())
}

fn worker(env: &Env) -> Worker<WorkerRuntime> {
    Worker::new(isolate(env), WorkerRuntime::new(env))
}

/// The request `"<method> <url>"` with `body` (empty for none), which the entry read: the
/// location in memory (see [`wire::location`]) of the answer, or of an instruction to read a
/// store key and call [`resume`] with the result (the entry reads either in place before its
/// next call); or [`wire::PENDING`] when the answer needs other I/O (the entry then awaits
/// [`take_pending`]); or [`wire::NEEDS_REQUEST`] for the admin API (the entry then calls
/// [`handle_request`]).
#[wasm_bindgen]
pub fn handle(env: &Env, ctx: worker::worker_sys::Context, target: &str, body: Vec<u8>) -> f64 {
    let started = WorkerClock.now_ms();
    let req = Request::from_target(target, body);
    if req.route().is_admin() {
        return wire::NEEDS_REQUEST;
    }
    let id = NEXT_ID.get().wrapping_add(1);
    NEXT_ID.set(id);
    let future: Pin<Box<Answer>> = Box::pin(serve(worker(env), ctx, req, started));
    answer(reads::drive(future, id))
}

/// The request `id` that [`handle`] (or an earlier `resume`) left waiting for a read, with the
/// read's result: `"+"` and the value, `"-"` absent, `"~"` later than the limit, `"!"` failed.
/// Answers as [`handle`] does.
#[wasm_bindgen]
pub fn resume(id: u32, read: &str) -> f64 {
    let waiting = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        let at = w.iter().position(|waiting| waiting.id == id)?;
        w.remove(at)
    });
    match waiting {
        Some(waiting) => answer(reads::drive(waiting.resume(read), id)),
        // Dropped to make room for newer ones (its client had most likely gone).
        None => {
            let err = kf_core::Error::Internal("the request was dropped while it waited for a read");
            let line = app::log_line(app::Route::Push, "POST", err.status(), &err.to_string(), 0, &[]);
            write_answer(|out| wire::encode_reused(&app::Response::error(&err), Some(&line), out))
        }
    }
}

/// What [`handle`] and [`resume`] hand the entry for one poll of a request's future.
fn answer(driven: Driven<Answer>) -> f64 {
    match driven {
        Driven::Done(out) => write_answer(|buffer| wire::encode_reused(&out.response, out.log_line.as_deref(), buffer)),
        Driven::Read(waiting, wanted) => {
            let id = waiting.id;
            WAITING.with(|w| {
                let mut w = w.borrow_mut();
                if w.len() >= reads::MAX_WAITING {
                    w.pop_front();
                }
                w.push_back(waiting);
            });
            write_answer(|buffer| wire::encode_read(id, wanted.within_ms, &wanted.key, buffer))
        }
        Driven::Pending(future) => {
            let promise = future_to_promise(async move {
                let out = future.await;
                Ok(Uint8Array::from(wire::encode(&out.response, out.log_line.as_deref()).as_slice()).into())
            });
            PENDING.with(|p| *p.borrow_mut() = Some(promise));
            wire::PENDING
        }
    }
}

/// Writes into the reused answer buffer and gives its location.
fn write_answer(write: impl FnOnce(&mut Vec<u8>)) -> f64 {
    ANSWER.with(|cell| {
        let mut buffer = cell.borrow_mut();
        write(&mut buffer);
        let address = u32::try_from(buffer.as_ptr() as usize).unwrap_or(0);
        wire::location(address, u32::try_from(buffer.len()).unwrap_or(0))
    })
}

/// The promise of the answer [`handle`] left pending: resolves to the encoded answer.
#[wasm_bindgen]
pub fn take_pending() -> JsValue {
    PENDING.with(|p| p.borrow_mut().take()).map_or(JsValue::UNDEFINED, JsValue::from)
}

/// An answer and the log line to print with it (none when it is printed after the background
/// work, which the answer hands to `waitUntil`).
struct Out {
    response: app::Response,
    log_line: Option<String>,
}

/// Serves `req`; the background work goes to `waitUntil` with the log line after it, so that
/// the line can tell what that work did.
async fn serve(worker: Worker<WorkerRuntime>, ctx: worker::worker_sys::Context, req: Request, started: u64) -> Out {
    let (route, method) = (req.route(), req.method.clone());
    let notes = worker.notes.clone();
    let Served { response, outcome, background } = worker.serve(req).await;
    let ms = WorkerClock.now_ms().saturating_sub(started);
    finish(ctx, route, method, response, outcome, background, ms, notes)
}

/// How long a request's work after the reply (effects, the ledger) waits before it starts.
const AFTER_REPLY_MS: u64 = 5;

#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: worker::worker_sys::Context,
    route: app::Route,
    method: String,
    response: app::Response,
    outcome: String,
    background: Option<kf_core::runtime::Background>,
    ms: u64,
    notes: Rc<kf_core::notes::Notes>,
) -> Out {
    let Some(work) = background else {
        let line = app::log_line(route, &method, response.status, &outcome, ms, &notes.take());
        return Out { response, log_line: Some(line) };
    };
    let status = response.status;
    let after = async move {
        // The work waits until the response is on its way: workerd runs a timer that is
        // already due (0 or 1 ms) before it writes the response out, so work started at once or
        // after `setTimeout(0)` delayed the reply by its own CPU and its first I/O (a D1
        // statement: +3.6 ms p50 locally in perf/effects.mjs). A few milliseconds later the
        // response has left the isolate locally; perf/effects.mjs is the check of this value.
        WorkerClock.sleep(AFTER_REPLY_MS).await;
        work.await;
        let line = app::log_line(route, &method, status, &outcome, ms, &notes.take());
        if app::logged_as_error(status) {
            worker::console_error!("{line}");
        } else {
            worker::console_log!("{line}");
        }
        Ok(JsValue::UNDEFINED)
    };
    let _ = ctx.wait_until(&future_to_promise(after));
    Out { response, log_line: None }
}

/// The whole request, for what [`handle`] does not serve: the admin API (its headers, an upload
/// read within its kind's limit) and bodies the entry did not read (large, undeclared, not a
/// `POST`, or unreadable). `body`: the body if the entry already read it. Resolves to the
/// encoded answer.
#[wasm_bindgen]
pub fn handle_request(
    req: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
    body: Option<Vec<u8>>,
) -> js_sys::Promise {
    future_to_promise(serve_request(req, env, ctx, body))
}

async fn serve_request(
    req: web_sys::Request,
    env: Env,
    ctx: worker::worker_sys::Context,
    body: Option<Vec<u8>>,
) -> Result<JsValue, JsValue> {
    let started = WorkerClock.now_ms();
    let method = req.method();
    let url = req.url();
    let (path, query) = app::split_url(&url);
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let mut head = Request { method, path: path.to_string(), query: query.to_string(), ..Request::default() };
    let route = head.route();
    if route.is_admin() {
        head.authorization = header("authorization");
    }
    let worker = worker(&env);
    let mut drain = app::drain_limit(None);
    let served = match app::prepare_request(&worker, &head).await {
        Err(e) => Served::failed(&e),
        Ok(prepared) => {
            drain = app::drain_limit(Some(&prepared));
            let body = match (body, prepared.body_limit) {
                (Some(body), _) => Ok(body),
                (None, Some(limit)) => http::read_body(&req, limit, drain).await,
                (None, None) => Ok(Vec::new()),
            };
            let content_type = if route == app::Route::Upload { header("content-type") } else { None };
            let body = match body {
                // A multipart upload: its `media` part, decoded by the runtime.
                Ok(body) if content_type.as_deref().is_some_and(kf_core::api::media::is_multipart) => {
                    http::media_part(body, content_type.as_deref().unwrap_or_default()).await
                }
                Ok(body) => Ok((body, content_type)),
                Err(e) => Err(e),
            };
            let served = match body {
                Ok((body, content_type)) => worker.clone().serve(Request { content_type, body, ..head.clone() }).await,
                Err(e) => app::body_refused(&head, e),
            };
            drop(prepared);
            served
        }
    };
    http::discard_unread_body(&req, drain).await;
    let Served { response, outcome, background } = served;
    let ms = WorkerClock.now_ms().saturating_sub(started);
    let out = finish(ctx, route, head.method, response, outcome, background, ms, worker.notes.clone());
    Ok(Uint8Array::from(wire::encode(&out.response, out.log_line.as_deref()).as_slice()).into())
}

/// The instance's memory, where the entry reads [`handle`]'s answers.
#[wasm_bindgen]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// See [`wire::response_headers`].
#[wasm_bindgen]
pub fn response_headers() -> String {
    wire::response_headers()
}

/// The Cron Trigger: keeps the stored access_token fresh so user-facing calls never wait for
/// it, and runs the alerts' checks. Resolves when done; the log line says what it did.
#[wasm_bindgen]
pub fn scheduled(env: Env) -> js_sys::Promise {
    let worker = worker(&env);
    future_to_promise(async move {
        let notes = worker.notes.clone();
        let outcome = worker.scheduled().await;
        worker::console_log!("{}", app::cron_line(&outcome, &notes.take()));
        Ok(JsValue::UNDEFINED)
    })
}

/// Talc in place of Rust's default wasm allocator (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
