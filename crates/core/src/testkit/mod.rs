//! What the native tests, benches and fuzz targets share: the protocol's known-answer account
//! and fixtures ([`wechat_mp::testkit`], re-exported), a deployment's configuration, and the
//! in-memory runtime ([`fake`]). Only with the `testkit` feature.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake;

use std::rc::Rc;

pub use wechat_mp::testkit::*;

use crate::app::{self, Isolate, Request, Served, Worker};
use crate::config::Config;
use crate::notes::Notes;
use fake::FakeRuntime;

pub const APPSECRET: &str = "test-app-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const KF_ACCOUNT: &str = "kf2001@gh_10f6c3c3ac5a";

/// A configuration like a deployment's: the known-answer account with safe mode, the API
/// credentials, the admin token, a KV namespace and a database; `vars` add or override (`""`
/// removes).
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut all: Vec<(String, String)> = [
        ("WECHAT_TOKEN", TOKEN),
        ("WECHAT_APPID", APPID),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY),
        ("WECHAT_APPSECRET", APPSECRET),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("WECHAT_API_BASE", "https://api.weixin.qq.com"),
        ("WECHAT_KV", "bound"),
        ("WECHAT_DB", "bound"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in vars {
        all.retain(|(name, _)| name != k);
        all.push((k.to_string(), v.to_string()));
    }
    Config::build(|name| all.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

/// An isolate of a deployment configured with [`config`]`(vars)`.
pub fn isolate(vars: &[(&str, &str)]) -> Rc<Isolate> {
    Rc::new(Isolate::new(config(vars)))
}

/// A request as the glue reads it: `target` is a path with its query.
pub fn request(method: &str, target: &str, authorization: Option<&str>, body: &[u8]) -> Request {
    let (path, query) = app::split_url(target);
    Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization: authorization.map(str::to_string),
        content_type: None,
        body: body.to_vec(),
    }
}

/// A deployment's isolate over the in-memory runtime, serving requests the way the glue does.
/// The notes of every request it serves go to one list (see [`TestApp::take_notes`]).
pub struct TestApp {
    pub isolate: Rc<Isolate>,
    pub rt: FakeRuntime,
    notes: Rc<Notes>,
}

impl TestApp {
    /// A new isolate configured with [`config`]`(vars)`.
    pub fn new(rt: &FakeRuntime, vars: &[(&str, &str)]) -> TestApp {
        TestApp::on(rt, isolate(vars))
    }

    /// Another request context on `isolate` (its memory shared).
    pub fn on(rt: &FakeRuntime, isolate: Rc<Isolate>) -> TestApp {
        TestApp { isolate, rt: rt.clone(), notes: Rc::default() }
    }

    fn worker(&self) -> Worker<FakeRuntime> {
        Worker::with_notes(self.isolate.clone(), Rc::new(self.rt.clone()), self.notes.clone())
    }

    /// Serves one request (see [`TestApp::upload`]); its background work is left in
    /// [`Served::background`].
    pub fn request(&self, method: &str, target: &str, authorization: Option<&str>, body: &[u8]) -> Served {
        self.upload(method, target, authorization, None, body)
    }

    /// [`TestApp::request`] with a declared body type (an upload). As the glue does:
    /// [`app::prepare`] first (the admin token, an upload's kind and slot, the body's limit),
    /// then the body within its limit, then [`Worker::serve`].
    pub fn upload(
        &self,
        method: &str,
        target: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Served {
        let req = request(method, target, authorization, body);
        let prepared = match fake::block_on(&self.rt.clock, app::prepare_request(&self.worker(), &req)) {
            Ok(prepared) => prepared,
            Err(e) => return Served::failed(&e),
        };
        let req = match prepared.body_limit {
            None => Request { body: Vec::new(), ..req },
            Some(limit) if req.body.len() > limit => {
                return app::body_refused(&req, crate::Error::PayloadTooLarge);
            }
            Some(_) => Request { content_type: content_type.map(str::to_string), ..req },
        };
        let served = fake::block_on(&self.rt.clock, self.worker().serve(req));
        drop(prepared);
        served
    }

    /// Serves `requests` at once (concurrently, as one isolate's requests run), then their work
    /// after the reply, at once too; the served requests, their background work done.
    pub fn concurrently(&self, requests: Vec<Request>) -> Vec<Served> {
        let tasks: Vec<fake::Task<'_, Served>> =
            requests.into_iter().map(|req| Box::pin(self.worker().serve(req)) as fake::Task<'_, Served>).collect();
        let mut served = fake::run(&self.rt.clock, tasks);
        let work: Vec<fake::Task<'_, ()>> =
            served.iter_mut().filter_map(|s| s.background.take()).map(|w| w as fake::Task<'_, ()>).collect();
        fake::run(&self.rt.clock, work);
        served
    }

    /// Runs a served request's background work to the end; the notes so far (emptied).
    pub fn finish(&self, served: &mut Served) -> Vec<String> {
        if let Some(work) = served.background.take() {
            fake::run(&self.rt.clock, vec![work as fake::Task<'_, ()>]);
        }
        self.take_notes()
    }

    /// The notes of the requests served so far (emptied).
    pub fn take_notes(&self) -> Vec<String> {
        self.notes.take()
    }

    /// The account's WeChat API in this isolate (its token state shared by every request).
    pub fn api(&self) -> Result<crate::api::client::WeChatApi<FakeRuntime>, crate::Error> {
        let creds = self.isolate.config.credentials()?;
        Ok(crate::api::client::WeChatApi::new(Rc::new(self.rt.clone()), self.isolate.account.tokens.clone(), creds))
    }

    /// The cron, as the glue runs it: what it did to the token, and its notes.
    pub fn scheduled(&self) -> (String, Vec<String>) {
        let outcome = fake::block_on(&self.rt.clock, self.worker().scheduled());
        (outcome, self.take_notes())
    }
}
