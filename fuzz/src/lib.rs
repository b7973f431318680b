//! Fuzz harnesses for the WeChat protocol crate: each target in `fuzz_targets/` is one call into
//! here. None may panic; `reply_roundtrip` asserts that a rendered reply parses back to itself.

use arbitrary::Arbitrary;
use wechat_mp::callback::{default_passive, open_message, respond, CallbackSettings, Query};
use wechat_mp::parse_message;
use wechat_mp::reply::{is_xml_char, TransferCustomerServiceReply};
use wechat_mp::signature::sign;
use wechat_mp::testkit::{crypto, NOW, TOKEN};

/// Any bytes as a message body.
pub fn parse(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_message(s);
    }
}

/// First byte 0: the rest is an `Encrypt` field as sent; otherwise the rest is raw ciphertext
/// (base64-encoded here so the fuzzer reaches AES, padding and framing).
pub fn decrypt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let c = crypto();
    let field = if mode == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(rest)
    };
    if let Ok(inner) = c.decrypt(&field) {
        let _ = parse_message(&inner);
    }
}

/// `mode byte ‖ query \n body`. Mode % 3: 0 the query as given; 1 plain mode with a valid
/// signature; 2 safe mode with the body encrypted and a valid msg_signature. The whole inbound
/// pipeline runs: verify, decrypt, parse, choose, render, encrypt.
pub fn pipeline(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (query, body) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
    let query = String::from_utf8_lossy(query);
    let c = crypto();
    let settings = CallbackSettings { token: TOKEN, crypto: Some(&c), max_clock_skew_secs: 300 };
    let ts = NOW.to_string();
    let nonce = Query::parse(&query).nonce.unwrap_or_else(|| "1".into());
    let (query, body): (String, Vec<u8>) = match mode % 3 {
        0 => (query.into_owned(), body.to_vec()),
        1 => (format!("signature={}&timestamp={ts}&nonce={nonce}&{query}", sign(&[TOKEN, &ts, &nonce])), body.to_vec()),
        _ => {
            let enc = match c.encrypt(&String::from_utf8_lossy(body), &[3; 16]) {
                Ok(enc) => enc,
                Err(e) => panic!("the test key no longer encrypts: {e:?}"),
            };
            let sig = sign(&[TOKEN, &ts, &nonce, &enc]);
            (
                format!("encrypt_type=aes&msg_signature={sig}&timestamp={ts}&nonce={nonce}"),
                format!("<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>").into_bytes(),
            )
        }
    };
    let q = Query::parse(&query);
    if let Ok(inbound) = open_message(&settings, &q, &body, NOW) {
        let _ = respond(&settings, &inbound, default_passive(&inbound, Some("kf@gh")), NOW, &[5; 16]);
    }
}

#[derive(Debug, Arbitrary)]
pub struct ReplyInput {
    pub to_user_name: String,
    pub from_user_name: String,
    pub create_time: u64,
    pub kf_account: Option<String>,
}

/// Renders a reply with arbitrary values and parses it back: it must be the same reply, but for
/// the characters XML 1.0 forbids, which are written as U+FFFD.
pub fn reply_roundtrip(input: ReplyInput) {
    let reply = TransferCustomerServiceReply {
        to_user_name: input.to_user_name,
        from_user_name: input.from_user_name,
        create_time: input.create_time,
        kf_account: input.kf_account,
    };
    let xml = reply.render();
    assert!(xml.chars().all(is_xml_char), "{xml:?}");
    let clean = |s: &str| -> String { s.chars().map(|c| if is_xml_char(c) { c } else { '\u{fffd}' }).collect() };
    let expected = TransferCustomerServiceReply {
        to_user_name: clean(&reply.to_user_name),
        from_user_name: clean(&reply.from_user_name),
        create_time: reply.create_time,
        kf_account: reply.kf_account.as_deref().map(clean),
    };
    match TransferCustomerServiceReply::parse(&xml) {
        Ok(back) => assert_eq!(back, expected, "{xml}"),
        Err(e) => panic!("rendered reply does not parse: {e:?}\n{xml}"),
    }
}
