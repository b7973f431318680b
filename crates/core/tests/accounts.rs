//! Official Accounts in the database beside the environment's: the owner's routes and their
//! refusals, secrets sealed and never answered, pushes at `/wechat/{appid}` in plain,
//! compatible and safe mode, the 30 s copy an isolate keeps, a key that does not open them, and
//! a deployment of database accounts only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;

use kf_core::app::Isolate;
use kf_core::runtime::Clock;
use kf_core::testkit::fake::{FakeRuntime, Scripted};
use kf_core::testkit::{config, text_xml, TestApp, ADMIN_TOKEN, NONCE};
use serde_json::{json, Value};
use wechat_mp::testkit::{safe_push_for, signed_query};
use wechat_mp::WeChatCrypto;

const NOW: u64 = 1_790_524_800;
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
const PLAIN: &str = "wx00000000000000a1";
const COMPAT: &str = "wx00000000000000b2";
const SAFE: &str = "wx00000000000000c3";
const AES: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn with_key(key: &str) -> Rc<Isolate> {
    Rc::new(Isolate::new(config(&[("ACCOUNTS_KEY", key)])))
}

/// A deployment with no account of its own: database accounts only.
fn accounts_only(rt: &FakeRuntime) -> TestApp {
    let vars = [
        ("ACCOUNTS_KEY", KEY),
        ("WECHAT_TOKEN", ""),
        ("WECHAT_APPID", ""),
        ("WECHAT_ENCODING_AES_KEY", ""),
        ("WECHAT_APPSECRET", ""),
    ];
    TestApp::on(rt, Rc::new(Isolate::new(config(&vars))))
}

fn world(rt: &FakeRuntime) {
    rt.upstream.script_behind_token(|_| Scripted::json(r#"{"errcode":0,"errmsg":"ok"}"#));
}

fn auth() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

/// `(status, body as JSON or null)` of an owner's call.
fn call(app: &TestApp, method: &str, path: &str, body: &str) -> (u16, Value) {
    let served = app.request(method, path, Some(&auth()), body.as_bytes());
    (served.response.status, serde_json::from_slice(&served.response.body).unwrap_or(Value::Null))
}

fn token_of(appid: &str) -> String {
    format!("tok{}", &appid[15..])
}

fn create(app: &TestApp, appid: &str, aes: bool) {
    let mut body = json!({"appid": appid, "name": format!("公众号 {appid}"), "token": token_of(appid), "secret": SECRET,
        "kf_accounts": ["kf2001@gh_1"]});
    if aes {
        body["aes_key"] = json!(AES);
    }
    let (status, answer) = call(app, "POST", "/api/accounts", &body.to_string());
    assert_eq!(status, 201, "{answer}");
}

/// A plain, compatible or safe push of a text to `appid`'s callback: `(status, body)`.
fn push(app: &TestApp, appid: &str, mode: &str, token: &str) -> (u16, String) {
    let now = app.rt.clock.now();
    let xml = text_xml("oUser1", "你好", now, now);
    let (query, body) = match mode {
        "plain" => (signed_query(token, now, NONCE), xml),
        _ => safe_push_for(token, &WeChatCrypto::new(AES, appid).unwrap(), &xml, now, NONCE, mode == "compatible"),
    };
    let mut served = app.request("POST", &format!("/wechat/{appid}?{query}"), None, body.as_bytes());
    app.finish(&mut served);
    (served.response.status, String::from_utf8(served.response.body).unwrap())
}

#[test]
fn the_owner_adds_reads_changes_and_removes_an_account_and_never_sees_a_secret() {
    let rt = FakeRuntime::at(NOW);
    let app = TestApp::on(&rt, with_key(KEY));
    create(&app, PLAIN, true);
    let (status, list) = call(&app, "GET", "/api/accounts", "");
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"accounts": [{"appid": PLAIN, "name": format!("公众号 {PLAIN}"), "callback_path": format!("/wechat/{PLAIN}"),
            "kf_accounts": ["kf2001@gh_1"], "kf_routing": "static", "token_endpoint": "stable",
            "aes_key_set": true, "secret_set": true, "created": NOW, "updated": NOW}]})
    );
    // A duplicate is a 409; nothing changes.
    let again = json!({"appid": PLAIN, "name": "x", "token": "other1"}).to_string();
    assert_eq!(
        call(&app, "POST", "/api/accounts", &again),
        (409, json!({"error": "conflict", "field": "appid", "message": "an account with this appid exists"}))
    );
    // A change of the name keeps the secrets; null removes the AES key.
    rt.clock.advance(5_000);
    let (status, changed) = call(
        &app,
        "PUT",
        &format!("/api/accounts/{PLAIN}"),
        r#"{"name":"新名字","aes_key":null,"kf_routing":"online"}"#,
    );
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (
            &changed["name"],
            &changed["aes_key_set"],
            &changed["secret_set"],
            &changed["kf_routing"],
            &changed["updated"]
        ),
        (&json!("新名字"), &json!(false), &json!(true), &json!("online"), &json!(NOW + 5))
    );
    assert_eq!(push(&app, PLAIN, "plain", &token_of(PLAIN)).0, 200, "the token kept");
    // No response and no row holds a secret in the clear.
    let everything =
        [call(&app, "GET", "/api/accounts", "").1, call(&app, "GET", &format!("/api/accounts/{PLAIN}"), "").1, changed];
    let rows = rt.db().rows("SELECT * FROM accounts");
    for secret in [token_of(PLAIN).as_str(), AES, SECRET, KEY] {
        for answer in &everything {
            assert!(!answer.to_string().contains(secret), "{secret} in {answer}");
        }
        assert!(!format!("{rows:?}").contains(secret), "{secret} in the table");
    }
    // Its statistics (the fold's hourly rows and followed users) go with it.
    assert_eq!(call(&app, "GET", &format!("/api/accounts/{PLAIN}/stats"), "").0, 200);
    let stats_rows = |rt: &FakeRuntime| {
        let of = |table: &str| rt.db().rows(&format!("SELECT count(*) AS n FROM {table} WHERE appid = '{PLAIN}'"));
        (of("stats_hours")[0]["n"].as_u64().unwrap(), of("stats_users")[0]["n"].as_u64().unwrap())
    };
    assert!(stats_rows(&rt).0 > 0 && stats_rows(&rt).1 > 0, "{:?}", stats_rows(&rt));
    assert_eq!(app.request("DELETE", &format!("/api/accounts/{PLAIN}"), Some(&auth()), b"").response.status, 204);
    assert_eq!(stats_rows(&rt), (0, 0));
    assert_eq!(call(&app, "GET", &format!("/api/accounts/{PLAIN}"), "").0, 404);
    assert_eq!(push(&app, PLAIN, "plain", &token_of(PLAIN)).0, 404, "removed: at once in this isolate");
    assert_eq!(call(&app, "DELETE", &format!("/api/accounts/{PLAIN}"), "").0, 404);
}

#[test]
fn a_bad_account_is_refused_naming_its_field() {
    let rt = FakeRuntime::at(NOW);
    let app = TestApp::on(&rt, with_key(KEY));
    let ok = json!({"appid": PLAIN, "name": "n", "token": "tok123"});
    let with = |key: &str, value: Value| {
        let mut body = ok.clone();
        body[key] = value;
        body.to_string()
    };
    let cases = [
        (r#"{"name":"n","token":"tok123"}"#.to_string(), "appid", "is required"),
        (with("appid", json!("wx0123456789ABCDEF")), "appid", "must be wx followed by 16 lowercase hexadecimal digits"),
        (with("appid", json!("gh_0123456789abcd")), "appid", "must be wx followed by 16 lowercase hexadecimal digits"),
        (with("name", json!("  ")), "name", "must be 1 to 64 characters, no control characters"),
        (with("token", json!("ab")), "token", "must be 3 to 32 letters or digits"),
        (with("token", json!("tok-123")), "token", "must be 3 to 32 letters or digits"),
        (with("aes_key", json!("short")), "aes_key", "must be 43 characters of the base64 alphabet"),
        (with("aes_key", json!(format!("{}!", &AES[..42]))), "aes_key", "must be 43 characters of the base64 alphabet"),
        (with("secret", json!("0123")), "secret", "must be 16 to 64 letters or digits"),
        (
            with("kf_accounts", json!(["kf1@gh", "nobody"])),
            "kf_accounts[1]",
            "must be a customer-service account such as kf2001@gh_xxx",
        ),
        (with("kf_routing", json!("random")), "kf_routing", "must be static or online"),
        (with("token_endpoint", json!("fast")), "token_endpoint", "must be stable or classic"),
        (with("password", json!("x")), "password", "is not a known field"),
    ];
    for (body, field, reason) in cases {
        assert_eq!(
            call(&app, "POST", "/api/accounts", &body),
            (400, json!({"error": "invalid_request", "field": field, "message": reason})),
            "{body}"
        );
    }
    assert!(rt.db().rows("SELECT appid FROM accounts").is_empty(), "nothing stored");
    create(&app, PLAIN, false);
    assert_eq!(
        call(&app, "PUT", &format!("/api/accounts/{PLAIN}"), &json!({"appid": SAFE}).to_string()),
        (
            400,
            json!({"error": "invalid_request", "field": "appid",
            "message": "must be the appid of the path (an account's appid never changes)"})
        )
    );
    assert_eq!(call(&app, "GET", "/api/accounts/wx0123", "").0, 404);
    assert_eq!(call(&app, "PATCH", "/api/accounts", "").0, 405);
}

#[test]
fn without_accounts_key_nothing_is_stored_and_the_answer_names_it() {
    let rt = FakeRuntime::at(NOW);
    let app = TestApp::new(&rt, &[]);
    let body = json!({"appid": PLAIN, "name": "n", "token": "tok123"}).to_string();
    assert_eq!(
        call(&app, "POST", "/api/accounts", &body),
        (
            503,
            json!({"error": "not_configured", "field": "ACCOUNTS_KEY",
            "message": "set ACCOUNTS_KEY (32 random bytes, base64) to keep accounts' secrets"})
        )
    );
    assert!(rt.db().rows("SELECT appid FROM accounts").is_empty());
    assert_eq!(app.request("POST", &format!("/wechat/{PLAIN}"), None, b"").response.status, 404);
    // Set but not 32 bytes of base64: invalid in the health report, never its value.
    let bad = TestApp::on(&rt, with_key("c2hvcnQ="));
    let health: Value = serde_json::from_slice(&bad.request("GET", "/healthz", None, b"").response.body).unwrap();
    assert_eq!(
        (&health["ok"], &health["invalid"], &health["features"]["accounts"]),
        (&json!(false), &json!(["ACCOUNTS_KEY"]), &json!(false))
    );
    let good = TestApp::on(&rt, with_key(KEY));
    let health: Value = serde_json::from_slice(&good.request("GET", "/healthz", None, b"").response.body).unwrap();
    assert_eq!((&health["ok"], &health["features"]["accounts"]), (&json!(true), &json!(true)));
}

#[test]
fn three_database_accounts_beside_the_default_one_each_with_its_own_token() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let app = TestApp::on(&rt, with_key(KEY));
    create(&app, PLAIN, false);
    create(&app, COMPAT, true);
    create(&app, SAFE, true);
    let (status, body) = push(&app, PLAIN, "plain", &token_of(PLAIN));
    assert_eq!(status, 200);
    assert!(body.contains("<MsgType><![CDATA[transfer_customer_service]]></MsgType>"), "{body}");
    assert!(body.contains("<KfAccount><![CDATA[kf2001@gh_1]]></KfAccount>"), "its own kf account: {body}");
    for (appid, mode) in [(COMPAT, "compatible"), (SAFE, "safe")] {
        let (status, body) = push(&app, appid, mode, &token_of(appid));
        assert_eq!(status, 200, "{mode}");
        assert!(body.contains("<Encrypt><![CDATA["), "{mode}: {body}");
    }
    // Signed with another account's Token: refused; unknown or malformed appids: 404.
    assert_eq!(push(&app, SAFE, "safe", &token_of(COMPAT)).0, 403);
    assert_eq!(push(&app, PLAIN, "plain", &token_of(SAFE)).0, 403);
    assert_eq!(push(&app, "wx00000000000000d4", "plain", "tok0d4").0, 404);
    assert_eq!(push(&app, "wx00000000000000D4", "plain", "tok0D4").0, 404);
    assert_eq!(app.request("GET", "/wechat/", None, b"").response.status, 404);
    // The default account still answers at /wechat.
    let query = wechat_mp::testkit::plain_query(rt.clock.now(), NONCE);
    let xml = text_xml("oUser1", "你好", rt.clock.now(), 77);
    let mut served = app.request("POST", &format!("/wechat?{query}"), None, xml.as_bytes());
    assert_eq!(served.response.status, 200);
    app.finish(&mut served);
    // Each account's ledger rows are its own.
    let appids: Vec<String> = rt
        .db()
        .rows("SELECT DISTINCT appid FROM ledger ORDER BY appid")
        .iter()
        .map(|r| r["appid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(appids, [PLAIN, COMPAT, SAFE, kf_core::testkit::APPID].map(String::from).to_vec());
}

#[test]
fn an_isolate_reads_an_account_once_and_again_after_30_seconds() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let isolate = with_key(KEY);
    let (owner, other) = (TestApp::on(&rt, with_key(KEY)), TestApp::on(&rt, isolate));
    create(&owner, PLAIN, false);
    let reads = || rt.db().statements().iter().filter(|(sql, _)| sql.contains("FROM accounts")).count();
    rt.db().clear_log();
    assert_eq!(push(&other, PLAIN, "plain", &token_of(PLAIN)).0, 200);
    assert_eq!(reads(), 1, "the first push: one indexed query");
    rt.clock.advance(10_000);
    assert_eq!(push(&other, PLAIN, "plain", &token_of(PLAIN)).0, 200);
    assert_eq!(reads(), 1, "later pushes: none");
    // A new Token set through another isolate: this one uses the old until its copy is 30 s old.
    assert_eq!(call(&owner, "PUT", &format!("/api/accounts/{PLAIN}"), r#"{"token":"newtok"}"#).0, 200);
    assert_eq!(push(&other, PLAIN, "plain", &token_of(PLAIN)).0, 200);
    rt.clock.advance(20_000);
    assert_eq!(push(&other, PLAIN, "plain", &token_of(PLAIN)).0, 403);
    assert_eq!(push(&other, PLAIN, "plain", "newtok").0, 200);
    // Removed elsewhere: 404 here within 30 s.
    assert_eq!(owner.request("DELETE", &format!("/api/accounts/{PLAIN}"), Some(&auth()), b"").response.status, 204);
    rt.clock.advance(30_000);
    assert_eq!(push(&other, PLAIN, "plain", "newtok").0, 404);
}

#[test]
fn secrets_that_do_not_open_fail_that_account_alone() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    create(&TestApp::on(&rt, with_key(KEY)), PLAIN, false);
    let app = TestApp::on(&rt, with_key(OTHER_KEY));
    create(&app, SAFE, true);
    let query = signed_query(&token_of(PLAIN), NOW, NONCE);
    let served =
        app.request("POST", &format!("/wechat/{PLAIN}?{query}"), None, text_xml("o1", "在吗", NOW, 1).as_bytes());
    assert_eq!(
        (served.response.status, served.outcome.as_str()),
        (500, "internal_error: accounts: the sealed secrets do not open with ACCOUNTS_KEY")
    );
    assert_eq!(app.take_notes(), [format!("account {PLAIN}: its secrets do not open with ACCOUNTS_KEY")]);
    assert_eq!(push(&app, SAFE, "safe", &token_of(SAFE)).0, 200, "another account is served");
    assert_eq!(call(&app, "PUT", &format!("/api/accounts/{PLAIN}"), r#"{"name":"x"}"#).0, 500);
}

#[test]
fn a_deployment_of_database_accounts_only() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let app = accounts_only(&rt);
    let health: Value = serde_json::from_slice(&app.request("GET", "/healthz", None, b"").response.body).unwrap();
    assert_eq!(
        (&health["ok"], &health["missing"], &health["features"]["callback"]),
        (&json!(true), &json!([]), &json!(false))
    );
    assert_eq!(app.request("GET", "/wechat?echostr=1", None, b"").response.status, 404);
    create(&app, PLAIN, false);
    assert_eq!(push(&app, PLAIN, "plain", &token_of(PLAIN)).0, 200);
}

/// An owner's or operator's call: `(status, body as JSON or null)`.
fn call_as(app: &TestApp, token: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut served = app.request(method, path, Some(&format!("Bearer {token}")), body.as_bytes());
    let status = served.response.status;
    let answer = serde_json::from_slice(&served.response.body).unwrap_or(Value::Null);
    app.finish(&mut served);
    (status, answer)
}

#[test]
fn an_operator_token_reaches_its_own_accounts_routes_only() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let app = TestApp::on(&rt, with_key(KEY));
    create(&app, PLAIN, false);
    create(&app, SAFE, true);
    let (status, issued) = call(&app, "POST", &format!("/api/accounts/{PLAIN}/tokens"), r#"{"name":"小王"}"#);
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().unwrap().to_string();
    let id = issued["id"].as_str().unwrap().to_string();
    assert!(token.starts_with(&format!("kfo_{id}_")));
    assert_eq!((&issued["name"], &issued["created"]), (&json!("小王"), &json!(NOW)));
    // Its own account's routes: the rules (its own), the status, WeChat's API with its AppID.
    let rules = r#"{"welcome":"欢迎关注 A"}"#;
    assert_eq!(call_as(&app, &token, "PUT", &format!("/api/accounts/{PLAIN}/rules"), rules).0, 200);
    assert_eq!(
        call_as(&app, &token, "GET", &format!("/api/accounts/{PLAIN}/rules"), "").1["rules"]["welcome"],
        "欢迎关注 A"
    );
    assert_eq!(call(&app, "GET", "/api/rules", "").1["stored"], false, "the environment's rules untouched");
    assert_eq!(call_as(&app, &token, "GET", &format!("/api/accounts/{PLAIN}/status"), "").0, 200);
    assert_eq!(call_as(&app, &token, "GET", &format!("/api/accounts/{PLAIN}/kf/accounts"), "").0, 200);
    let asked = rt.upstream.calls().into_iter().find(|c| c.url.contains("stable_token")).unwrap();
    let kf_core::http::Body::Json(sent) = &asked.body else { panic!("a JSON token request") };
    assert!(String::from_utf8_lossy(sent).contains(PLAIN), "the token of its own AppID");
    assert_eq!(call_as(&app, &token, "GET", &format!("/api/accounts/{PLAIN}"), "").1["appid"], PLAIN);
    // Another account's routes and the environment's do not exist for it; management is 403.
    for (method, path, status) in [
        ("GET", format!("/api/accounts/{SAFE}/rules"), 404),
        ("GET", format!("/api/accounts/{SAFE}"), 404),
        ("GET", format!("/api/accounts/{SAFE}/tokens"), 404),
        ("GET", "/api/rules".to_string(), 404),
        ("POST", "/api/messages".to_string(), 404),
        ("GET", "/api/accounts".to_string(), 403),
        ("POST", "/api/accounts".to_string(), 403),
        ("PUT", format!("/api/accounts/{PLAIN}"), 403),
        ("DELETE", format!("/api/accounts/{PLAIN}"), 403),
        ("GET", format!("/api/accounts/{PLAIN}/tokens"), 403),
        ("DELETE", format!("/api/accounts/{PLAIN}/tokens/{id}"), 403),
    ] {
        assert_eq!(call_as(&app, &token, method, &path, "{}").0, status, "{method} {path}");
    }
    // The owner's list: name, created, last used (after the reply); never the token.
    let (_, list) = call(&app, "GET", &format!("/api/accounts/{PLAIN}/tokens"), "");
    assert_eq!(list, json!({"tokens": [{"id": id, "name": "小王", "created": NOW, "last_used": NOW}]}));
    assert!(!format!("{:?}", rt.db().rows("SELECT * FROM operator_tokens")).contains(&token[21..]), "only a hash kept");
    // A wrong secret, a made-up token: 401.
    let wrong = format!("{}x{}", &token[..token.len() - 1], "");
    assert_eq!(call_as(&app, &wrong, "GET", &format!("/api/accounts/{PLAIN}/rules"), "").0, 401);
    assert_eq!(
        call_as(
            &app,
            "kfo_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "GET",
            &format!("/api/accounts/{PLAIN}/rules"),
            ""
        )
        .0,
        401
    );
}

#[test]
fn a_revoked_token_is_refused_at_once_here_and_within_30_seconds_everywhere() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let (here, there) = (TestApp::on(&rt, with_key(KEY)), TestApp::on(&rt, with_key(KEY)));
    create(&here, PLAIN, false);
    let (_, issued) = call(&here, "POST", &format!("/api/accounts/{PLAIN}/tokens"), r#"{"name":"夜班"}"#);
    let (token, id) = (issued["token"].as_str().unwrap(), issued["id"].as_str().unwrap());
    let rules = format!("/api/accounts/{PLAIN}/rules");
    assert_eq!(call_as(&here, token, "GET", &rules, "").0, 200);
    assert_eq!(call_as(&there, token, "GET", &rules, "").0, 200);
    assert_eq!(
        here.request("DELETE", &format!("/api/accounts/{PLAIN}/tokens/{id}"), Some(&auth()), b"").response.status,
        204
    );
    assert_eq!(call_as(&here, token, "GET", &rules, "").0, 401, "at once where it was revoked");
    rt.clock.advance(29_000);
    assert_eq!(call_as(&there, token, "GET", &rules, "").0, 200, "another isolate's check is at most 30 s old");
    rt.clock.advance(1_000);
    assert_eq!(call_as(&there, token, "GET", &rules, "").0, 401);
    // Bad input.
    assert_eq!(
        call(&here, "POST", &format!("/api/accounts/{PLAIN}/tokens"), r#"{"name":""}"#),
        (
            400,
            json!({"error": "invalid_request", "field": "name", "message": "must be 1 to 64 characters, no control characters"})
        )
    );
    assert_eq!(
        call(&here, "POST", &format!("/api/accounts/{SAFE}/tokens"), r#"{"name":"x"}"#).0,
        404,
        "no such account"
    );
    assert_eq!(call(&here, "DELETE", &format!("/api/accounts/{PLAIN}/tokens/{id}"), "").0, 404, "revoked already");
}

#[test]
fn whoami_tells_the_owner_from_an_operator() {
    let rt = FakeRuntime::at(NOW);
    let app = TestApp::on(&rt, with_key(KEY));
    create(&app, PLAIN, false);
    let (_, issued) = call(&app, "POST", &format!("/api/accounts/{PLAIN}/tokens"), r#"{"name":"小王"}"#);
    assert_eq!(call(&app, "GET", "/api/whoami", ""), (200, json!({"role": "owner"})));
    assert_eq!(
        call_as(&app, issued["token"].as_str().unwrap(), "GET", "/api/whoami", ""),
        (200, json!({"role": "operator", "appid": PLAIN, "name": format!("公众号 {PLAIN}")}))
    );
    assert_eq!(call_as(&app, "wrong", "GET", "/api/whoami", "").0, 401);
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

#[test]
fn an_upload_needs_a_checked_token_before_its_body_is_read() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let app = TestApp::on(&rt, with_key(KEY));
    create(&app, PLAIN, false);
    create(&app, SAFE, false);
    let (_, issued) = call(&app, "POST", &format!("/api/accounts/{PLAIN}/tokens"), r#"{"name":"小王"}"#);
    let token = format!("Bearer {}", issued["token"].as_str().unwrap());
    // A made-up token shaped like an operator token: refused before the body (nothing read,
    // the isolate's one upload slot untouched), and its id remembered (one query, not one each).
    let forged = "Bearer kfo_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    rt.db().clear_log();
    for _ in 0..3 {
        let refused = app.upload(
            "POST",
            &format!("/api/accounts/{PLAIN}/media?type=image"),
            Some(forged),
            Some("image/png"),
            PNG,
        );
        assert_eq!(refused.response.status, 401);
    }
    assert_eq!(rt.db().statements().len(), 1, "an unknown token id is read once");
    assert!(kf_core::app::admit(&app.isolate, NOW, kf_core::app::Route::Upload, Some(forged)).is_err());
    // The operator's own account: uploaded with its token; another account's or the
    // environment's upload route: 404.
    let ok =
        app.upload("POST", &format!("/api/accounts/{PLAIN}/media?type=image"), Some(&token), Some("image/png"), PNG);
    assert_eq!(ok.response.status, 200, "{}", String::from_utf8_lossy(&ok.response.body));
    let sent = rt.upstream.calls().into_iter().filter(|c| c.url.contains("/cgi-bin/media/upload")).count();
    assert_eq!(sent, 1);
    for path in [format!("/api/accounts/{SAFE}/media?type=image"), "/api/media?type=image".to_string()] {
        assert_eq!(app.upload("POST", &path, Some(&token), Some("image/png"), PNG).response.status, 404, "{path}");
    }
    // Over its kind's limit under an account's path: the 413 names that kind's limit.
    let big = vec![0u8; 11 << 20];
    let served =
        app.upload("POST", &format!("/api/accounts/{PLAIN}/media?type=voice"), Some(&auth()), Some("audio/mpeg"), &big);
    assert_eq!(served.response.status, 413);
    assert!(
        String::from_utf8_lossy(&served.response.body).contains("voice"),
        "{}",
        String::from_utf8_lossy(&served.response.body)
    );
}

#[test]
fn the_environments_appid_is_not_a_database_account_and_secrets_are_sealed_afresh() {
    let rt = FakeRuntime::at(NOW);
    let app = TestApp::on(&rt, with_key(KEY));
    let env = json!({"appid": kf_core::testkit::APPID, "name": "n", "token": "tok123"}).to_string();
    assert_eq!(
        call(&app, "POST", "/api/accounts", &env),
        (
            409,
            json!({"error": "conflict", "field": "appid", "message": "is the environment's account (WECHAT_APPID), served at /wechat"})
        )
    );
    create(&app, PLAIN, false);
    let first = rt.db().rows("SELECT sealed FROM accounts")[0]["sealed"].clone();
    assert_eq!(call(&app, "PUT", &format!("/api/accounts/{PLAIN}"), r#"{"name":"同一个"}"#).0, 200);
    let second = rt.db().rows("SELECT sealed FROM accounts")[0]["sealed"].clone();
    assert_ne!(first, second, "the same secrets sealed with another nonce");
    // Two tokens of one account: two ids.
    let ids: Vec<String> = (0..2)
        .map(|i| {
            call(&app, "POST", &format!("/api/accounts/{PLAIN}/tokens"), &format!(r#"{{"name":"t{i}"}}"#)).1["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn after_a_key_change_an_account_is_repaired_by_giving_its_secrets_anew() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    create(&TestApp::on(&rt, with_key(KEY)), PLAIN, false);
    let app = TestApp::on(&rt, with_key(OTHER_KEY));
    let path = format!("/api/accounts/{PLAIN}");
    assert_eq!(call(&app, "PUT", &path, r#"{"token":"fresh1"}"#).0, 500, "the AES key and AppSecret are not given");
    assert_eq!(app.take_notes(), [format!("account {PLAIN}: its secrets do not open with ACCOUNTS_KEY")]);
    assert_eq!(
        call(&app, "PUT", &path, &json!({"token": "fresh1", "aes_key": null, "secret": SECRET}).to_string()).0,
        200
    );
    assert_eq!(push(&app, PLAIN, "plain", "fresh1").0, 200);
}

#[test]
fn a_database_accounts_rules_are_checked_against_its_own_credentials() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let app = accounts_only(&rt);
    create(&app, PLAIN, false); // with an AppSecret
    let greeting = r#"{"sessions":{"greeting":"您好"}}"#;
    assert_eq!(call(&app, "PUT", &format!("/api/accounts/{PLAIN}/rules"), greeting).0, 200);
    let bare = json!({"appid": SAFE, "name": "n", "token": "tok123"}).to_string();
    assert_eq!(call(&app, "POST", "/api/accounts", &bare).0, 201);
    assert_eq!(call(&app, "PUT", &format!("/api/accounts/{SAFE}/rules"), greeting).0, 400, "no AppSecret: no greeting");
}

#[test]
fn what_the_cron_does_for_database_accounts() {
    let rt = FakeRuntime::at(NOW);
    world(&rt);
    let app = TestApp::on(&rt, with_key(KEY));
    // Rules that only the environment's cron would act on are refused for a database account.
    create(&app, PLAIN, false);
    let queue = r#"{"alerts":{"on":["queue"]}}"#;
    let hook = TestApp::on(
        &rt,
        Rc::new(Isolate::new(config(&[("ACCOUNTS_KEY", KEY), ("ALERT_WEBHOOK_URL", "https://hooks.example.com/x")]))),
    );
    assert_eq!(
        call(&hook, "PUT", &format!("/api/accounts/{PLAIN}/rules"), queue),
        (
            400,
            json!({"error": "invalid_request", "field": "alerts.on", "message": "queue is checked by the cron, for the environment's account only"})
        )
    );
    assert_eq!(call(&hook, "PUT", "/api/rules", queue).0, 200, "the environment's account may");
    assert_eq!(
        call(&app, "PUT", &format!("/api/accounts/{PLAIN}/rules"), r#"{"ledger":{"retention_days":30}}"#).1["field"],
        "ledger.retention_days"
    );
    // The expired limits and requests of 25 more accounts: 10 accounts a run, in appid order,
    // then the rest.
    let appids: Vec<String> = (0..25).map(|i| format!("wx00000000000001{i:02x}")).collect();
    for appid in &appids {
        create(&app, appid, false);
        rt.db()
            .connection
            .execute("INSERT INTO limits (appid, name, until) VALUES (?1, 'notice:closed:o1', ?2)", (appid, NOW - 1))
            .unwrap();
        rt.db()
            .connection
            .execute("INSERT INTO requests (appid, openid, until) VALUES (?1, 'o1', ?2)", (appid, NOW + 600))
            .unwrap();
    }
    let left = || rt.db().rows("SELECT count(*) AS n FROM limits")[0]["n"].as_u64().unwrap();
    app.scheduled();
    assert_eq!(left(), 16, "10 accounts a run (the first is PLAIN, which has none)");
    app.scheduled();
    assert_eq!(left(), 6);
    let (_, notes) = app.scheduled();
    assert_eq!(left(), 0, "{notes:?}");
    assert_eq!(rt.db().rows("SELECT count(*) AS n FROM requests")[0]["n"], 25, "requests still running stay");
    // Removing an account removes its limits, requests and shared lists.
    assert_eq!(app.request("DELETE", &format!("/api/accounts/{}", appids[0]), Some(&auth()), b"").response.status, 204);
    assert_eq!(rt.db().rows("SELECT count(*) AS n FROM requests")[0]["n"], 24);
}
