//! The runtime traits over Workers: KV for the store, `Date`/`setTimeout` for the clock, `fetch`
//! for the upstream, D1 for the database. They move bytes and decide nothing (every TTL, limit,
//! timeout and statement is the caller's).

use std::cell::OnceCell;

use worker::js_sys::{self, Reflect, Uint8Array};
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{web_sys, Env};

use kf_core::http::{Answer, Body, HttpCall, HttpMethod};
use kf_core::runtime::{Clock, Database, Late, Param, Row, Runtime, Statement, Store, Upstream, MAX_ANSWER_BYTES};
use kf_core::Error;

#[wasm_bindgen]
extern "C" {
    /// A Workers KV namespace, with only the three calls the store needs. (`worker::KvStore`
    /// builds its options through serde, 9 KB of wasm for the same three calls.)
    #[wasm_bindgen(extends = js_sys::Object)]
    type KvNamespace;
    #[wasm_bindgen(method, catch)]
    fn get(this: &KvNamespace, key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn put(this: &KvNamespace, key: &str, value: &str, options: &js_sys::Object) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn delete(this: &KvNamespace, key: &str) -> Result<js_sys::Promise, JsValue>;
}

/// Workers KV (the `WECHAT_KV` binding), looked up on first use; without the binding every
/// operation fails, and the callers degrade to isolate memory and the WeChat API.
pub(crate) struct KvBacked {
    env: Env,
    kv: OnceCell<Option<KvNamespace>>,
}

impl KvBacked {
    fn kv(&self) -> Result<&KvNamespace, Error> {
        self.kv
            .get_or_init(|| {
                let binding = Reflect::get(self.env.as_ref(), &JsValue::from_str("WECHAT_KV")).ok()?;
                binding.is_object().then(|| binding.unchecked_into())
            })
            .as_ref()
            .ok_or(Error::Config("WECHAT_KV"))
    }
}

async fn settle(promise: Result<js_sys::Promise, JsValue>, failed: &'static str) -> Result<JsValue, Error> {
    JsFuture::from(promise.map_err(|_| Error::Internal(failed))?).await.map_err(|_| Error::Internal(failed))
}

impl Store for KvBacked {
    async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(settle(self.kv()?.get(key), "KV read failed").await?.as_string())
    }
    async fn get_within(&self, key: &str, within_ms: u64) -> Result<Result<Option<String>, Error>, Late> {
        // While the entry drives the request, it makes the read (see crate::reads).
        if let Some(read) = crate::reads::by_entry(key, within_ms) {
            return read.await;
        }
        kf_core::runtime::with_timeout(&WorkerClock, within_ms, Box::pin(self.get(key))).await.map_err(|_| Late)
    }
    async fn put(&self, key: &str, value: &str, ttl_secs: Option<u64>) -> Result<(), Error> {
        let options = js_sys::Object::new();
        if let Some(ttl) = ttl_secs {
            // Whole seconds, far below 2^53: exact as a JS number.
            let _ = Reflect::set(&options, &JsValue::from_str("expirationTtl"), &JsValue::from_f64(ttl as f64));
        }
        settle(self.kv()?.put(key, value, &options), "KV write failed").await.map(|_| ())
    }
    async fn delete(&self, key: &str) -> Result<(), Error> {
        settle(self.kv()?.delete(key), "KV delete failed").await.map(|_| ())
    }
}

/// D1 (the `WECHAT_DB` binding), through the `worker` crate.
pub(crate) struct D1Backed(worker::D1Database);

/// Integers D1 takes exactly: JS numbers (bound as doubles), up to the core's `MAX_EXACT`.
use kf_core::database::MAX_EXACT;

fn failed(_: worker::Error) -> Error {
    Error::Internal("database: a statement failed")
}

impl D1Backed {
    fn prepared(&self, statement: &Statement) -> Result<worker::D1PreparedStatement, Error> {
        let params = statement
            .params
            .iter()
            .map(|p| match p {
                Param::Int(n) if n.unsigned_abs() <= MAX_EXACT => Ok(JsValue::from_f64(*n as f64)),
                Param::Int(_) => Err(Error::Internal("database: an integer past 2^53")),
                Param::Text(s) => Ok(JsValue::from_str(s)),
                Param::Null => Ok(JsValue::NULL),
            })
            .collect::<Result<Vec<JsValue>, Error>>()?;
        self.0.prepare(statement.sql).bind(&params).map_err(failed)
    }
}

/// The rows a statement changed: D1's `meta.changes`, read as the one number it is (the
/// `worker` crate's `meta()` deserializes all seven fields). Missing, it is an error: 0 would
/// read as "a retry" to the push's claim.
fn changes(result: &JsValue) -> Result<u64, Error> {
    Reflect::get(result, &JsValue::from_str("meta"))
        .and_then(|meta| Reflect::get(&meta, &JsValue::from_str("changes")))
        .ok()
        .and_then(|n| n.as_f64())
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64)
        .ok_or(Error::Internal("database: an answer without meta.changes"))
}

impl Database for D1Backed {
    async fn execute(&self, statement: &Statement) -> Result<u64, Error> {
        let prepared = self.prepared(statement)?;
        let promise = prepared.inner().run().map_err(|_| Error::Internal("database: a statement failed"))?;
        let result = JsFuture::from(promise).await.map_err(|_| Error::Internal("database: a statement failed"))?;
        changes(&result)
    }

    async fn query(&self, statement: &Statement) -> Result<Vec<Row>, Error> {
        let result = self.prepared(statement)?.all().await.map_err(failed)?;
        result.results::<Row>().map_err(failed)
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, Error> {
        let prepared = statements.iter().map(|s| self.prepared(s)).collect::<Result<Vec<_>, Error>>()?;
        let results = self.0.batch(prepared).await.map_err(failed)?;
        results
            .iter()
            .map(|r| {
                let changes = r.meta().ok().flatten().and_then(|m| m.changes);
                changes.map(|n| n as u64).ok_or(Error::Internal("database: an answer without meta.changes"))
            })
            .collect()
    }
}

/// The runtime's clock and timers.
pub(crate) struct WorkerClock;

impl Clock for WorkerClock {
    fn now_ms(&self) -> u64 {
        // Whole milliseconds since the epoch: exact in an f64.
        js_sys::Date::now() as u64
    }
    async fn sleep(&self, ms: u64) {
        Timer::new(ms).await
    }
}

/// A `setTimeout` as a future. It may be polled first with a waker that does nothing (see
/// `glue::answer`): it is a promise's future, which takes the waker of every poll; and dropped
/// early (a time limit's lost race) it clears its timeout.
struct Timer {
    id: Option<i32>,
    settled: JsFuture,
}

impl Timer {
    fn new(ms: u64) -> Timer {
        let mut id = None;
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
            id = global.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms).ok();
        });
        Timer { id, settled: JsFuture::from(promise) }
    }
}

impl std::future::Future for Timer {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match std::pin::Pin::new(&mut self.settled).poll(cx) {
            std::task::Poll::Ready(_) => {
                self.id = None;
                std::task::Poll::Ready(())
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
            global.clear_timeout_with_handle(id);
        }
    }
}

/// `fetch`, with the answer's body read up to [`MAX_ANSWER_BYTES`].
pub(crate) struct FetchUpstream;

impl Upstream for FetchUpstream {
    async fn send(&self, call: &HttpCall) -> Result<Answer, Error> {
        let request = build_request(call)?;
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let response: web_sys::Response = JsFuture::from(global.fetch_with_request(&request))
            .await
            .map_err(|_| Error::Upstream("unreachable or connection reset"))?
            .unchecked_into();
        let status = response.status();
        let body = match response.body() {
            None => Vec::new(),
            Some(stream) => {
                read_bounded(stream, MAX_ANSWER_BYTES, 0).await?.ok_or(Error::Upstream("answer larger than 1 MiB"))?
            }
        };
        Ok(Answer { status, body })
    }
}

fn build_request(call: &HttpCall) -> Result<web_sys::Request, Error> {
    let init = web_sys::RequestInit::new();
    init.set_method(match call.method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
    });
    match &call.body {
        Body::None => {}
        Body::Json(json) => {
            let headers = web_sys::Headers::new().map_err(|_| Error::Internal("headers"))?;
            let _ = headers.set("content-type", "application/json; charset=utf-8");
            init.set_headers(&headers);
            init.set_body(&Uint8Array::from(json.as_slice()));
        }
        Body::File { field, filename, content_type, bytes } => {
            let parts = js_sys::Array::of1(&Uint8Array::from(&bytes[..]));
            let options = web_sys::BlobPropertyBag::new();
            options.set_type(content_type);
            let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
                .map_err(|_| Error::Internal("blob"))?;
            let form = web_sys::FormData::new().map_err(|_| Error::Internal("form data"))?;
            form.append_with_blob_and_filename(field, &blob, filename).map_err(|_| Error::Internal("form data"))?;
            init.set_body(&form);
        }
    }
    web_sys::Request::new_with_str_and_init(&call.url, &init).map_err(|_| Error::Upstream("invalid URL"))
}

/// Reads `stream` to its end: `Some(bytes)`, or `None` when more than `limit` bytes arrived.
/// Past the limit the bytes are counted and dropped, not kept, until `drain_to` bytes in all;
/// then the stream is cancelled. `drain_to` at or below `limit`: cancelled as soon as the limit
/// is passed.
pub(crate) async fn read_bounded(
    stream: web_sys::ReadableStream,
    limit: usize,
    drain_to: usize,
) -> Result<Option<Vec<u8>>, Error> {
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut body = Vec::new();
    let mut seen: usize = 0;
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|_| Error::Upstream("body unreadable"))?;
        if Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok((seen <= limit).then_some(body));
        }
        let value: Uint8Array = Reflect::get(&chunk, &JsValue::from_str("value"))
            .map_err(|_| Error::Upstream("body unreadable"))?
            .unchecked_into();
        let len = value.length() as usize;
        seen = seen.saturating_add(len);
        if seen > limit {
            body = Vec::new();
            if seen > drain_to {
                let _ = reader.cancel();
                return Ok(None);
            }
            continue;
        }
        let start = body.len();
        body.resize(start + len, 0);
        if let Some(dst) = body.get_mut(start..) {
            value.copy_to(dst);
        }
    }
}

/// The runtime of one request.
pub(crate) struct WorkerRuntime {
    store: KvBacked,
    clock: WorkerClock,
    upstream: FetchUpstream,
    /// `None` without the binding.
    database: Option<D1Backed>,
}

impl WorkerRuntime {
    pub(crate) fn new(env: &Env) -> Self {
        WorkerRuntime {
            store: KvBacked { env: env.clone(), kv: OnceCell::new() },
            clock: WorkerClock,
            upstream: FetchUpstream,
            database: env.d1("WECHAT_DB").ok().map(D1Backed),
        }
    }
}

impl Runtime for WorkerRuntime {
    type Store = KvBacked;
    type Clock = WorkerClock;
    type Upstream = FetchUpstream;
    type Database = D1Backed;
    fn database(&self) -> Option<&D1Backed> {
        self.database.as_ref()
    }
    fn store(&self) -> &KvBacked {
        &self.store
    }
    fn clock(&self) -> &WorkerClock {
        &self.clock
    }
    fn upstream(&self) -> &FetchUpstream {
        &self.upstream
    }
    // Out of line: only an encrypted reply asks, and a plain-mode isolate need not compile it.
    #[inline(never)]
    fn random16(&self) -> [u8; 16] {
        let mut buf = [0u8; 16];
        // crypto.getRandomValues does not fail for 16 bytes.
        let _ = getrandom::getrandom(&mut buf);
        buf
    }
}
