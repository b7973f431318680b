//! The callback pipeline end to end, natively: real WeChat XML fixtures in, replies out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use std::fs;
use std::path::Path;

use wechat_mp::callback::{default_passive, open_message, respond, CallbackSettings, Passive, Query};
use wechat_mp::crypto::WeChatCrypto;
use wechat_mp::message::{parse_message, Event, MessageKind};
use wechat_mp::signature::sign;
use wechat_mp::testkit::{crypto, fixture, fixture_str, plain_settings as plain, AES_KEY, NOW, TOKEN};
use wechat_mp::xml::parse_fields;
use wechat_mp::Error;

fn plain_query(ts: u64, nonce: &str) -> Query {
    Query::parse(&wechat_mp::testkit::plain_query(ts, nonce))
}

type KindCheck = fn(&MessageKind) -> bool;
type EventCheck = fn(&Event) -> bool;

#[test]
fn every_message_fixture_parses_to_its_variant() {
    let cases: &[(&str, KindCheck)] = &[
        ("text", |k| matches!(k, MessageKind::Text { content } if content.contains("订单 #1024"))),
        ("image", |k| matches!(k, MessageKind::Image { media_id, .. } if media_id == "media_id_image_1")),
        ("voice", |k| matches!(k, MessageKind::Voice { recognition: None, format, .. } if format == "amr")),
        ("voice_recognition", |k| matches!(k, MessageKind::Voice { recognition: Some(r), .. } if r == "腾讯微信团队")),
        ("video", |k| matches!(k, MessageKind::Video { thumb_media_id, .. } if thumb_media_id == "thumb_media_id_1")),
        ("shortvideo", |k| matches!(k, MessageKind::ShortVideo { media_id, .. } if media_id == "media_id_sv_1")),
        ("location", |k| {
            matches!(k, MessageKind::Location { latitude, longitude, scale: 20, .. }
                if latitude.as_str() == "23.134521" && (longitude.value() - 113.358803).abs() < 1e-9)
        }),
        ("link", |k| matches!(k, MessageKind::Link { url, .. } if url == "https://mp.weixin.qq.com")),
        (
            "file",
            |k| matches!(k, MessageKind::File { file_total_len: Some(31948), title, .. } if title == "invoice.pdf"),
        ),
        ("miniprogrampage", |k| {
            matches!(k, MessageKind::MiniProgramPage { app_id, page_path, .. }
                if app_id == "wxa1b2c3d4e5f6a7b8" && page_path == "pages/index/index?id=1")
        }),
    ];
    for (name, check) in cases {
        let m = parse_message(&fixture_str(&format!("messages/{name}.xml"))).unwrap();
        assert!(check(&m.kind), "{name}: {:?}", m.kind);
        assert!(m.is_user_message(), "{name}");
        assert!(m.msg_id.is_some(), "{name} has a MsgId");
        assert_eq!(m.from_user_name, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
        assert_eq!(m.create_time, 1_700_000_000);
    }
}

#[test]
fn every_event_fixture_parses_to_its_variant() {
    let cases: &[(&str, EventCheck)] = &[
        ("subscribe", |e| matches!(e, Event::Subscribe { event_key: None, ticket: None })),
        (
            "subscribe_qrscene",
            |e| matches!(e, Event::Subscribe { event_key: Some(k), ticket: Some(_) } if k == "qrscene_123123"),
        ),
        ("unsubscribe", |e| matches!(e, Event::Unsubscribe)),
        ("scan", |e| matches!(e, Event::Scan { event_key, ticket: Some(_) } if event_key == "123123")),
        ("location", |e| matches!(e, Event::Location { precision, .. } if precision.as_str() == "119.385040")),
        ("click", |e| matches!(e, Event::Click { event_key } if event_key == "V1001_TODAY_MUSIC")),
        (
            "view",
            |e| matches!(e, Event::View { url, menu_id: Some(m) } if url == "https://www.qq.com/" && m == "208379533"),
        ),
        (
            "scancode_push",
            |e| matches!(e, Event::ScancodePush { scan_type, scan_result, .. } if scan_type == "qrcode" && scan_result == "1"),
        ),
        ("scancode_waitmsg", |e| matches!(e, Event::ScancodeWaitmsg { scan_result, .. } if scan_result == "2")),
        (
            "pic_sysphoto",
            |e| matches!(e, Event::PicSysphoto { pics, .. } if pics.count == 1 && pics.pic_md5_sums.len() == 1),
        ),
        (
            "pic_photo_or_album",
            |e| matches!(e, Event::PicPhotoOrAlbum { pics, .. } if pics.count == 2 && pics.pic_md5_sums.len() == 2),
        ),
        ("pic_weixin", |e| matches!(e, Event::PicWeixin { pics, .. } if pics.count == 1)),
        (
            "location_select",
            |e| matches!(e, Event::LocationSelect { location, .. } if location.scale == 15 && location.label.contains("广州市")),
        ),
        (
            "view_miniprogram",
            |e| matches!(e, Event::ViewMiniprogram { page_path, .. } if page_path == "pages/index/index"),
        ),
        ("templatesendjobfinish", |e| matches!(e, Event::TemplateSendJobFinish { status } if status == "success")),
        (
            "masssendjobfinish",
            |e| matches!(e, Event::MassSendJobFinish { status, total_count: 0, .. } if status == "err(30003)"),
        ),
        ("kf_create_session", |e| matches!(e, Event::KfCreateSession { kf_account } if kf_account == "test1@test")),
        ("kf_close_session", |e| matches!(e, Event::KfCloseSession { kf_account } if kf_account == "test1@test")),
        ("kf_switch_session", |e| {
            matches!(e, Event::KfSwitchSession { from_kf_account, to_kf_account }
                if from_kf_account == "test1@test" && to_kf_account == "test2@test")
        }),
    ];
    for (name, check) in cases {
        let m = parse_message(&fixture_str(&format!("events/{name}.xml"))).unwrap();
        match &m.kind {
            MessageKind::Event(e) => assert!(check(e), "{name}: {e:?}"),
            other => panic!("{name} parsed as {other:?}"),
        }
        assert!(!m.is_user_message(), "{name} must not be transferred");
    }
}

#[test]
fn text_message_is_transferred_with_golden_reply() {
    let q = plain_query(NOW, "42");
    let inbound = open_message(&plain(), &q, &fixture("messages/text.xml"), NOW).unwrap();
    let body = respond(&plain(), &inbound, Passive::Transfer(None), NOW, &[0; 16]).unwrap();
    assert_eq!(body, fixture_str("replies/transfer.xml"));
    let body = respond(&plain(), &inbound, Passive::Transfer(Some("kf2001@gh_10f6c3c3ac5a")), NOW, &[0; 16]).unwrap();
    assert_eq!(body, fixture_str("replies/transfer_kf.xml"));
    let body = respond(&plain(), &inbound, Passive::Text("您好 ]]> <xml>"), NOW, &[0; 16]).unwrap();
    assert_eq!(body, fixture_str("replies/text.xml"));
    assert_eq!(respond(&plain(), &inbound, Passive::Success, NOW, &[0; 16]).unwrap(), "success");
}

#[test]
fn every_user_message_is_transferred_and_every_event_acknowledged() {
    for dir in ["messages", "events"] {
        for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(dir)).unwrap()
        {
            let path = entry.unwrap().path();
            let body = fs::read(&path).unwrap();
            let inbound = open_message(&plain(), &plain_query(NOW, "7"), &body, NOW).unwrap();
            let passive = default_passive(&inbound, None);
            let reply = respond(&plain(), &inbound, passive, NOW, &[0; 16]).unwrap();
            if dir == "messages" {
                assert_eq!(passive, Passive::Transfer(None), "{}", path.display());
                assert!(reply.contains("transfer_customer_service"));
            } else {
                assert_eq!((passive, reply.as_str()), (Passive::Success, "success"), "{}", path.display());
            }
        }
    }
}

#[test]
fn bad_bodies_are_rejected_with_their_exact_error() {
    let deep = format!("<xml>{}{}</xml>", "<a>".repeat(2_000), "</a>".repeat(2_000)).into_bytes();
    let cases: Vec<(&str, Vec<u8>, Error)> = vec![
        ("empty.xml", fixture("bad/empty.xml"), Error::MalformedXml("empty body")),
        ("malformed.xml", fixture("bad/malformed.xml"), Error::MalformedXml("not well-formed XML")),
        ("json_body.json", fixture("bad/json_body.json"), Error::MalformedXml("text outside the root element")),
        ("missing_msgtype.xml", fixture("bad/missing_msgtype.xml"), Error::MissingField("MsgType")),
        ("missing_fromusername.xml", fixture("bad/missing_fromusername.xml"), Error::MissingField("FromUserName")),
        ("billion_laughs.xml", fixture("bad/billion_laughs.xml"), Error::MalformedXml("DOCTYPE is not allowed")),
        ("external_entity.xml", fixture("bad/external_entity.xml"), Error::MalformedXml("DOCTYPE is not allowed")),
        (
            "invalid_char_ref.xml",
            fixture("bad/invalid_char_ref.xml"),
            Error::MalformedXml("invalid entity or character reference"),
        ),
        ("createtime_non_numeric.xml", fixture("bad/createtime_non_numeric.xml"), Error::InvalidField("CreateTime")),
        ("createtime_overflow.xml", fixture("bad/createtime_overflow.xml"), Error::InvalidField("CreateTime")),
        ("msgid_overflow.xml", fixture("bad/msgid_overflow.xml"), Error::InvalidField("MsgId")),
        ("msgid_non_numeric.xml", fixture("bad/msgid_non_numeric.xml"), Error::InvalidField("MsgId")),
        ("non_utf8.xml", fixture("bad/non_utf8.xml"), Error::MalformedXml("body is not UTF-8")),
        ("2000-deep", deep, Error::MalformedXml("nesting too deep")),
        ("too large", vec![b' '; 64 * 1024 + 1], Error::PayloadTooLarge),
    ];
    let on_disk = fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bad")).unwrap().count();
    assert_eq!(cases.len(), on_disk + 2, "every fixture in tests/fixtures/bad has its expected error");
    for (name, body, want) in cases {
        let err = open_message(&plain(), &plain_query(NOW, "1"), &body, NOW).unwrap_err();
        assert_eq!(err, want, "{name}");
    }
}

#[test]
fn bad_query_parameters_are_rejected() {
    let body = fixture("messages/text.xml");
    let good_sig = sign(&[TOKEN, &NOW.to_string(), "1"]);
    let cases = [
        ("", Error::MissingParameter("timestamp")),
        (&format!("timestamp={NOW}&nonce=1") as &str, Error::MissingParameter("signature")),
        (&format!("signature={good_sig}&timestamp={NOW}"), Error::MissingParameter("nonce")),
        (&format!("signature=deadbeef&timestamp={NOW}&nonce=1"), Error::InvalidSignature),
        (&format!("signature={}&timestamp={NOW}&nonce=1", "g".repeat(40)), Error::InvalidSignature),
        (&format!("signature={good_sig}&timestamp={NOW}&nonce=2"), Error::InvalidSignature),
        (&format!("signature={good_sig}&timestamp=abc&nonce=1"), Error::InvalidParameter("timestamp")),
        (&format!("signature={good_sig}&timestamp={NOW}&nonce=1%0A"), Error::InvalidParameter("nonce")),
    ];
    for (qs, want) in cases {
        assert_eq!(open_message(&plain(), &Query::parse(qs), &body, NOW).unwrap_err(), want, "{qs}");
    }
    let stale = plain_query(NOW - 301, "1");
    assert_eq!(open_message(&plain(), &stale, &body, NOW).unwrap_err(), Error::StaleTimestamp);
    let unchecked = CallbackSettings { max_clock_skew_secs: 0, ..plain() };
    assert!(open_message(&unchecked, &stale, &body, NOW).is_ok());
}

/// What WeChat does in safe mode: encrypt the message and sign the ciphertext.
fn wechat_encrypts(inner: &str, ts: u64, nonce: &str, compatible: bool) -> (Query, Vec<u8>) {
    let (query, body) = wechat_mp::testkit::safe_push(&crypto(), inner, ts, nonce, compatible);
    (Query::parse(&query), body.into_bytes())
}

#[test]
fn safe_mode_roundtrip() {
    let c = crypto();
    let s = CallbackSettings { token: TOKEN, crypto: Some(&c), max_clock_skew_secs: 300 };
    for compatible in [false, true] {
        let (q, body) = wechat_encrypts(&fixture_str("messages/text.xml"), NOW, "1320562132", compatible);
        let inbound = open_message(&s, &q, &body, NOW).unwrap();
        assert!(inbound.encrypted);
        assert_eq!(inbound.message.from_user_name, "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
        let envelope = respond(&s, &inbound, Passive::Transfer(None), NOW, &[9; 16]).unwrap();
        // Decrypt the reply as WeChat would.
        let f = parse_fields(&envelope).unwrap();
        let encrypt = f.get("Encrypt").unwrap();
        assert_eq!(f.get("TimeStamp"), Some(NOW.to_string().as_str()));
        assert_eq!(f.get("Nonce"), Some("1320562132"));
        assert_eq!(f.get("MsgSignature").unwrap(), sign(&[TOKEN, &NOW.to_string(), "1320562132", encrypt]));
        assert_eq!(c.decrypt(encrypt).unwrap(), fixture_str("replies/transfer.xml"));
    }
}

#[test]
fn safe_mode_matches_spec_example() {
    let c = crypto();
    let s = CallbackSettings { token: TOKEN, crypto: Some(&c), max_clock_skew_secs: 0 };
    let encrypt = fixture_str("safe/encrypt_kat.txt");
    let q = Query::parse(
        "timestamp=1409735669&nonce=1320562132&encrypt_type=aes&msg_signature=901aa526f5528554dc40e8ec44ec1795f9368350",
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        encrypt.trim()
    );
    let inbound = open_message(&s, &q, body.as_bytes(), NOW).unwrap();
    assert!(matches!(inbound.message.kind, MessageKind::Text { ref content } if content == "hello"));
}

#[test]
fn safe_mode_rejects_bad_ciphertext_signature_and_appid() {
    let c = crypto();
    let s = CallbackSettings { token: TOKEN, crypto: Some(&c), max_clock_skew_secs: 300 };
    let sign_body = |encrypt: &str| -> (Query, Vec<u8>) {
        let msg_sig = sign(&[TOKEN, &NOW.to_string(), "5", encrypt]);
        (
            Query::parse(&format!("timestamp={NOW}&nonce=5&encrypt_type=aes&msg_signature={msg_sig}")),
            format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").into_bytes(),
        )
    };
    let good = c.encrypt(&fixture_str("messages/text.xml"), &[1; 16]).unwrap();
    let other = WeChatCrypto::new(AES_KEY, "wx0000000000000000").unwrap();
    let other_app = other.encrypt(&fixture_str("messages/text.xml"), &[1; 16]).unwrap();
    for bad in ["%%% not base64 %%%", &good[..good.len() - 8], "QUJD", &other_app] {
        let (q, body) = sign_body(bad);
        let err = open_message(&s, &q, &body, NOW).unwrap_err();
        assert!(matches!(err, Error::DecryptFailed(_)), "{bad}: {err:?}");
    }
    // A valid ciphertext under a wrong msg_signature.
    let (mut q, body) = sign_body(&good);
    q.msg_signature = Some(sign(&["x"]));
    assert_eq!(open_message(&s, &q, &body, NOW).unwrap_err(), Error::InvalidSignature);
    // Safe mode requested but no key configured: the account's configuration is at fault...
    let (q, body) = sign_body(&good);
    assert_eq!(open_message(&plain(), &q, &body, NOW).unwrap_err(), Error::NoAesKey);
    // ...but only once the push is known to be WeChat's: anyone else's is a bad signature.
    let forged = Query::parse(&format!("timestamp={NOW}&nonce=1&encrypt_type=aes&msg_signature=junk"));
    assert_eq!(open_message(&plain(), &forged, &body, NOW).unwrap_err(), Error::InvalidSignature);
}
