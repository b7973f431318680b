//! Uploads and the status report, natively over the in-memory runtime: what WeChat receives, the
//! retry after a rejected token resending the same bytes, the 413/415 answers, and what
//! `GET /api/status` says (never the token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::rc::Rc;

use kf_core::app::{body_refused, Isolate, Route, Served};
use kf_core::http::{Body, HttpMethod};
use kf_core::runtime::Clock;
use kf_core::testkit::fake::{FakeRuntime, Scripted};
use kf_core::testkit::{config, request, TestApp, ADMIN_TOKEN, NOW};
use kf_core::Error;
use serde_json::json;

/// A 1×1 PNG as an image editor writes it.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";
/// The start of a JFIF file.
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xff\xdb";

fn app(rt: &FakeRuntime) -> TestApp {
    TestApp::new(rt, &[])
}

fn auth() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

fn body(served: &Served) -> serde_json::Value {
    serde_json::from_slice(&served.response.body).unwrap()
}

/// WeChat with a token endpoint that issues T1, T2, ... and upload APIs that accept `accepted`.
fn wechat(rt: &FakeRuntime, accepted: &'static str) {
    let issued = std::cell::Cell::new(0);
    rt.upstream.script(move |call| {
        if call.url.contains("stable_token") {
            issued.set(issued.get() + 1);
            Scripted::json(&format!(r#"{{"access_token":"T{}","expires_in":7200}}"#, issued.get()))
        } else if call.url.split(&['?', '&']).any(|p| p == format!("access_token={accepted}")) {
            Scripted::json(r#"{"type":"image","media_id":"MEDIA_1","created_at":1763700000}"#)
        } else {
            Scripted::json(r#"{"errcode":40001,"errmsg":"invalid credential"}"#)
        }
    });
}

#[test]
fn an_image_reaches_wechat_as_the_media_field_of_a_multipart_body_and_its_answer_comes_back() {
    let rt = FakeRuntime::at(NOW);
    wechat(&rt, "T1");
    let app = app(&rt);
    let served = app.upload("POST", "/api/media?type=image", Some(&auth()), Some("image/png"), PNG);
    assert_eq!(served.response.status, 200);
    assert_eq!(body(&served), json!({"type":"image","media_id":"MEDIA_1","created_at":1763700000}));
    assert_eq!(served.outcome, format!("/cgi-bin/media/upload {} bytes", PNG.len()));
    let sent = rt.upstream.calls().pop().unwrap();
    assert_eq!(sent.method, HttpMethod::Post);
    assert_eq!(sent.url, "https://api.weixin.qq.com/cgi-bin/media/upload?access_token=T1&type=image");
    let Body::File { field, filename, content_type, bytes } = sent.body else { panic!("not a file: {:?}", sent.body) };
    assert_eq!((field, filename.as_str(), content_type.as_str()), ("media", "media.png", "image/png"));
    assert_eq!(&bytes[..], PNG, "the bytes WeChat receives are the bytes uploaded");
}

#[test]
fn a_rejected_token_is_refreshed_once_and_the_same_bytes_are_sent_again() {
    let rt = FakeRuntime::at(NOW);
    // The cached token T0 is stale in WeChat's eyes: the first upload is rejected with 40001.
    rt.store.seed(
        "access_token:wx5823bf96d3bd56c7",
        &format!(r#"{{"access_token":"T0","expires_at":{},"fetched_at":{}}}"#, NOW + 7000, NOW - 200),
        7000,
    );
    wechat(&rt, "T1");
    let app = app(&rt);
    let served = app.upload("PUT", "/api/kf/accounts/kf2001%40gh_1/avatar", Some(&auth()), Some("image/jpeg"), JPEG);
    assert_eq!(served.response.status, 200, "{}", String::from_utf8_lossy(&served.response.body));
    let uploads: Vec<_> = rt.upstream.calls().into_iter().filter(|c| c.url.contains("uploadheadimg")).collect();
    assert_eq!(uploads.len(), 2, "one upload, one retry");
    assert!(uploads[0].url.contains("access_token=T0&kf_account=kf2001%40gh_1"));
    assert!(uploads[1].url.contains("access_token=T1&kf_account=kf2001%40gh_1"));
    assert_eq!(uploads[0].body, uploads[1].body, "the retry resends the same file");
    let Body::File { bytes, filename, .. } = &uploads[1].body else { panic!("not a file") };
    assert_eq!((&bytes[..], filename.as_str()), (JPEG, "media.jpg"));
}

#[test]
fn refused_uploads_never_reach_wechat_and_name_the_limit_or_the_types() {
    let rt = FakeRuntime::at(NOW);
    wechat(&rt, "T1");
    let app = app(&rt);
    let mut voice = b"#!AMR\n".to_vec();
    voice.resize(2 * 1024 * 1024 + 1, 0);
    let too_big = app.upload("POST", "/api/media?type=voice", Some(&auth()), Some("audio/amr"), &voice);
    assert_eq!(too_big.response.status, 413);
    assert_eq!(
        body(&too_big),
        json!({"error":"payload_too_large","field":"media","message":"voice files may be at most 2 MB (2097152 bytes)","limit_bytes":2097152})
    );
    let svg = app.upload("POST", "/api/media?type=image", Some(&auth()), Some("image/png"), b"<svg onload=alert(1)>");
    assert_eq!(svg.response.status, 415);
    assert_eq!(body(&svg)["accepted"], json!(["image/jpeg", "image/png", "image/gif", "image/bmp"]));
    let png_avatar = app.upload("PUT", "/api/kf/accounts/a@b/avatar", Some(&auth()), None, PNG);
    assert_eq!((png_avatar.response.status, body(&png_avatar)["accepted"].clone()), (415, json!(["image/jpeg"])));
    let no_part =
        app.upload("POST", "/api/media?type=image", Some(&auth()), Some("multipart/form-data; boundary=b"), b"");
    assert_eq!(
        body(&no_part),
        json!({"error":"invalid_request","field":"media","message":"the multipart body has no file in field media"})
    );
    let anonymous = app.upload("POST", "/api/media?type=image", None, Some("image/png"), PNG);
    assert_eq!(anonymous.response.status, 401);
    assert!(rt.upstream.calls().is_empty(), "nothing was sent");

    // A body past the largest limit is refused by the glue before it is read; the answer still
    // names the limit of the kind asked for.
    let refused = body_refused(&request("POST", "/api/media?type=thumb", None, b""), Error::PayloadTooLarge);
    assert_eq!(refused.response.status, 413);
    assert_eq!(body(&refused)["limit_bytes"], 65536);
    let other = body_refused(&request("POST", "/api/messages", None, b""), Error::PayloadTooLarge);
    assert_eq!(body(&other), json!({"error":"payload_too_large","message":"request body is too large"}));
}

#[test]
fn upload_routes_read_bodies_up_to_their_largest_limit_and_others_keep_64_kib() {
    assert_eq!(Route::of("POST", "/api/media"), Route::Upload);
    assert_eq!(Route::of("PUT", "/api/kf/accounts/a@b/avatar"), Route::Upload);
    assert_eq!(Route::Upload.body_limit(), Some(10 * 1024 * 1024 + 64 * 1024));
    assert_eq!(Route::of("PUT", "/api/kf/accounts/a@b"), Route::Admin);
    assert_eq!(Route::Admin.body_limit(), Some(64 * 1024));
}

#[test]
fn status_tells_the_token_state_without_the_token() {
    let rt = FakeRuntime::at(NOW);
    wechat(&rt, "T1");
    let app = app(&rt);
    let status = |app: &TestApp| body(&app.request("GET", "/api/status", Some(&auth()), b""));
    assert_eq!(
        status(&app),
        json!({
            "token": {"cached": false, "expires_in": null, "fetched_at": null, "retry_after": null, "last_error": null},
            "online": {"age_secs": null, "ok": null},
            "rules": {"stored": false, "age_secs": 0},
            "now": NOW,
        })
    );
    assert!(rt.upstream.calls().is_empty(), "the status never asks WeChat");

    let sent = app.request("GET", "/api/kf/accounts", Some(&auth()), b"");
    assert_eq!(sent.response.status, 200);
    rt.clock.advance(100_000);
    let after = status(&app);
    assert_eq!(after["token"]["cached"], true);
    assert_eq!(after["token"]["expires_in"], 7100);
    assert_eq!(after["token"]["fetched_at"], NOW);
    assert!(!after.to_string().contains("T1"), "never the token: {after}");

    // Another isolate, with the token only in the store: one KV read finds it.
    let other = TestApp::on(&rt, Rc::new(Isolate::new(config(&[]))));
    assert_eq!(status(&other)["token"]["expires_in"], 7100);

    // A credential failure: when the next attempt is, and why.
    let rt = FakeRuntime::at(NOW);
    rt.upstream.script(|_| Scripted::json(r#"{"errcode":40164,"errmsg":"invalid ip 1.2.3.4"}"#));
    let app = TestApp::new(&rt, &[]);
    assert_eq!(app.request("GET", "/api/kf/accounts", Some(&auth()), b"").response.status, 502);
    let failing = status(&app);
    assert_eq!(failing["token"]["retry_after"], 300);
    assert_eq!(failing["token"]["last_error"], "wechat_error: errcode 40164");
    assert_eq!(app.request("POST", "/api/status", Some(&auth()), b"").response.status, 405);
    assert_eq!(app.request("GET", "/api/status", None, b"").response.status, 401);
}

#[test]
fn an_upload_is_checked_before_its_body_is_read_and_one_runs_at_a_time() {
    use kf_core::app::prepare;
    let rt = FakeRuntime::at(NOW);
    let app = app(&rt);
    let auth = auth();
    let head = |method: &str, target: &str, authorization: Option<&str>| request(method, target, authorization, b"");
    // Answered without the body: no token, a wrong method, an unknown type, a bad account.
    let refused = [
        (head("POST", "/api/media?type=image", None), 401),
        (head("GET", "/api/media?type=image", Some(&auth)), 405),
        (head("POST", "/api/media?type=pdf", Some(&auth)), 400),
        (head("PUT", "/api/kf/accounts/nobody/avatar", Some(&auth)), 400),
    ];
    for (req, status) in refused {
        let e = prepare(&app.isolate, app.rt.clock.now(), &req).err().expect("refused before the body");
        assert_eq!(e.status(), status, "{} {}?{}", req.method, req.path, req.query);
    }
    // Each kind's body is read up to its limit and the envelope, no further.
    let limit = |target: &str| {
        prepare(&app.isolate, app.rt.clock.now(), &head("POST", target, Some(&auth))).unwrap().body_limit
    };
    assert_eq!(limit("/api/media?type=thumb"), Some(64 * 1024 + 64 * 1024));
    assert_eq!(limit("/api/media?type=voice"), Some(2 * 1024 * 1024 + 64 * 1024));
    assert_eq!(limit("/api/media?type=video"), Some(10 * 1024 * 1024 + 64 * 1024));
    // While one upload holds the isolate's slot, another is a 503 with Retry-After.
    let first = prepare(&app.isolate, app.rt.clock.now(), &head("POST", "/api/media?type=image", Some(&auth))).unwrap();
    let busy =
        prepare(&app.isolate, app.rt.clock.now(), &head("POST", "/api/media?type=image", Some(&auth))).err().unwrap();
    assert_eq!((busy.status(), busy.headers()), (503, vec![("retry-after", "5".to_string())]));
    // Other admin calls are not held up.
    assert!(prepare(&app.isolate, app.rt.clock.now(), &head("GET", "/api/kf/accounts", Some(&auth))).is_ok());
    drop(first);
    assert!(prepare(&app.isolate, app.rt.clock.now(), &head("POST", "/api/media?type=image", Some(&auth))).is_ok());
    let auth = auth.as_str();
    // A thumb past its limit is refused by the glue unread, naming the thumb's limit.
    let served = app.upload("POST", "/api/media?type=thumb", Some(auth), Some("image/jpeg"), &vec![0xFF; 200 * 1024]);
    assert_eq!((served.response.status, body(&served)["limit_bytes"].clone()), (413, json!(65536)));
}
