//! What the tests share: the known-answer account of WeChat's documentation, the fixtures under
//! `tests/fixtures/`, and pushes signed and encrypted as WeChat does. Only with the `testkit`
//! feature (tests, benches, fuzz targets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::callback::CallbackSettings;
use crate::crypto::WeChatCrypto;
use crate::signature::sign;

/// The known-answer account of WeChat's documentation.
pub const TOKEN: &str = "QDG6eK";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const APPID: &str = "wx5823bf96d3bd56c7";
/// The account's original ID, the `ToUserName` of the fixtures.
pub const ACCOUNT: &str = "gh_10f6c3c3ac5a";
/// The user of the fixtures.
pub const OPENID: &str = "oyORnuP8q7ou2gfYjqLzSIWZf0rs";
/// The fixtures' `CreateTime`; tests sign their pushes at this time.
pub const NOW: u64 = 1_700_000_000;
pub const NONCE: &str = "1320562132";

/// `tests/fixtures/<rel>` of the repository.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_str(rel: &str) -> String {
    String::from_utf8(fixture(rel)).unwrap()
}

/// The known-answer account's cipher.
pub fn crypto() -> WeChatCrypto {
    WeChatCrypto::new(AES_KEY, APPID).expect("the known-answer key is valid")
}

/// Plain-mode settings with a 300 s window.
pub fn plain_settings() -> CallbackSettings<'static> {
    CallbackSettings { token: TOKEN, crypto: None, max_clock_skew_secs: 300 }
}

/// The query string of a plain-mode push signed with `token` at `timestamp`.
pub fn signed_query(token: &str, timestamp: u64, nonce: &str) -> String {
    let ts = timestamp.to_string();
    format!("signature={}&timestamp={ts}&nonce={nonce}&openid={OPENID}", sign(&[token, &ts, nonce]))
}

/// The query string of a plain-mode push of the known-answer account signed at `timestamp`.
pub fn plain_query(timestamp: u64, nonce: &str) -> String {
    signed_query(TOKEN, timestamp, nonce)
}

/// The query string and body of a safe-mode push of `xml` (compatible mode when `compatible`:
/// plaintext fields beside `Encrypt`, which must be ignored).
pub fn safe_push(crypto: &WeChatCrypto, xml: &str, timestamp: u64, nonce: &str, compatible: bool) -> (String, String) {
    safe_push_for(TOKEN, crypto, xml, timestamp, nonce, compatible)
}

/// [`safe_push`] for the account with `token`.
pub fn safe_push_for(
    token: &str,
    crypto: &WeChatCrypto,
    xml: &str,
    timestamp: u64,
    nonce: &str,
    compatible: bool,
) -> (String, String) {
    let encrypt = crypto.encrypt(xml, b"0123456789abcdef").expect("the known-answer key encrypts");
    let ts = timestamp.to_string();
    let query = format!(
        "signature={}&timestamp={ts}&nonce={nonce}&openid={OPENID}&encrypt_type=aes&msg_signature={}",
        sign(&[token, &ts, nonce]),
        sign(&[token, &ts, nonce, &encrypt])
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
