//! What every native test, bench, example and fuzz target shares: the known-answer account,
//! the fixtures, pushes signed and encrypted as WeChat does, and the in-memory runtime
//! ([`fake`]). Not compiled for wasm32.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fake;

use crate::config::Config;
use crate::wechat::callback::CallbackSettings;
use crate::wechat::crypto::WeChatCrypto;
use crate::wechat::signature::sign;

/// The known-answer account of WeChat's documentation.
pub const TOKEN: &str = "QDG6eK";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const APPID: &str = "wx5823bf96d3bd56c7";
pub const APPSECRET: &str = "test-app-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The account's original ID, the `ToUserName` of the fixtures.
pub const ACCOUNT: &str = "gh_10f6c3c3ac5a";
/// The user of the fixtures.
pub const OPENID: &str = "oyORnuP8q7ou2gfYjqLzSIWZf0rs";
pub const KF_ACCOUNT: &str = "kf2001@gh_10f6c3c3ac5a";
/// The fixtures' `CreateTime`; tests sign their pushes at this time.
pub const NOW: u64 = 1_700_000_000;
pub const NONCE: &str = "1320562132";

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_str(rel: &str) -> String {
    String::from_utf8(fixture(rel)).unwrap()
}

pub fn crypto() -> WeChatCrypto {
    WeChatCrypto::new(AES_KEY, APPID).expect("the known-answer key is valid")
}

/// Plain-mode settings with a 300 s window.
pub fn plain_settings() -> CallbackSettings<'static> {
    CallbackSettings { token: TOKEN, crypto: None, max_clock_skew_secs: 300 }
}

/// The query string of a plain-mode push signed at `timestamp`.
pub fn plain_query(timestamp: u64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    format!("signature={}&timestamp={ts}&nonce={nonce}&openid={OPENID}", sign(&[TOKEN, &ts, nonce]))
}

/// The query string and body of a safe-mode push of `xml` (compatible mode when `compatible`:
/// plaintext fields beside `Encrypt`, which must be ignored).
pub fn safe_push(crypto: &WeChatCrypto, xml: &str, timestamp: u64, nonce: &str, compatible: bool) -> (String, String) {
    let encrypt = crypto.encrypt(xml, b"0123456789abcdef").unwrap();
    let ts = timestamp.to_string();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid={OPENID}&encrypt_type=aes&msg_signature={}",
        sign(&[TOKEN, &ts, nonce]),
        sign(&[TOKEN, &ts, nonce, &encrypt])
    );
    let plain = if compatible {
        "<FromUserName><![CDATA[spoofed]]></FromUserName><MsgType><![CDATA[event]]></MsgType>"
    } else {
        ""
    };
    (
        query,
        format!(
            "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>{plain}<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ),
    )
}

/// A configuration like a deployment's: the known-answer account with safe mode, the API
/// credentials, the admin token and a KV binding; `vars` add or override (`""` removes).
pub fn config(vars: &[(&str, &str)]) -> Config {
    let mut all: Vec<(String, String)> = [
        ("WECHAT_TOKEN", TOKEN),
        ("WECHAT_APPID", APPID),
        ("WECHAT_ENCODING_AES_KEY", AES_KEY),
        ("WECHAT_APPSECRET", APPSECRET),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("WECHAT_API_BASE", "https://api.weixin.qq.com"),
        ("WECHAT_KV", "bound"),
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

/// A text message from `openid`, as WeChat pushes it.
pub fn text_xml(openid: &str, content: &str, create_time: u64, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
}

/// An event from `openid`, with extra fields (`<KfAccount>...`).
pub fn event_xml(openid: &str, event: &str, extra: &str, create_time: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>"
    )
}

/// Serves one request over the in-memory runtime the way the glue does (the body is passed
/// whole), and runs its background work to the end unless `keep_background`.
pub fn request(
    app: &std::rc::Rc<crate::app::App<fake::FakeRuntime>>,
    method: &str,
    target: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> crate::app::Served {
    upload(app, method, target, authorization, None, body)
}

/// [`request`] with a declared body type (an upload). As the glue does: [`crate::app::prepare`]
/// first (the admin token, an upload's kind and slot, the body's limit), then the body within
/// its limit, then [`crate::app::serve`].
pub fn upload(
    app: &std::rc::Rc<crate::app::App<fake::FakeRuntime>>,
    method: &str,
    target: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> crate::app::Served {
    let (path, query) = crate::app::split_url(target);
    let route = crate::app::Route::of(method, path);
    let head = crate::app::Request { method, path, query, authorization, content_type: None, body: &[] };
    let prepared = match crate::app::prepare(app, route, &head) {
        Ok(prepared) => prepared,
        Err(e) => return crate::app::Served::failed(&e),
    };
    let body = match prepared.body_limit {
        None => &[][..],
        Some(limit) if body.len() > limit => {
            return crate::app::body_refused(route, path, query, crate::Error::PayloadTooLarge);
        }
        Some(_) => body,
    };
    let req = crate::app::Request { content_type, body, ..head };
    fake::block_on(&app.rt.clock, crate::app::serve(app, route, req))
}

/// Runs a served request's background work to the end; the notes it left.
pub fn finish(app: &std::rc::Rc<crate::app::App<fake::FakeRuntime>>, served: &mut crate::app::Served) -> Vec<String> {
    if let Some(work) = served.background.take() {
        fake::run(&app.rt.clock, vec![work as fake::Task<'_, ()>]);
    }
    app.take_notes()
}
