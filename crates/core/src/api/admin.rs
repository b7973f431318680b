//! The admin API, pure: which WeChat call a request maps to, with its input validated first.
//!
//! Invalid requests are refused with a 400 naming the field before anything reaches WeChat.
//! `POST /api/messages` forwards the caller's JSON byte for byte (UTF-8, no re-escaping);
//! the other routes send a JSON object built from the validated fields only.

use serde_json::{json, Map, Value};

use crate::config::is_kf_account;
use crate::document;
use crate::error::Error;
use crate::http::{query_param, ApiCall};

type Object = Map<String, Value>;

/// A request body as a JSON object (see [`document::object`]).
fn parse_object(body: &[u8]) -> Result<Object, Error> {
    document::object(body)
}

/// Largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The eleven `msgtype`s of `message/custom/send`, each with its required string fields.
pub const MSGTYPES: &[(&str, &[&str])] = &[
    ("text", &["content"]),
    ("image", &["media_id"]),
    ("voice", &["media_id"]),
    ("video", &["media_id", "thumb_media_id"]),
    ("music", &["musicurl", "hqmusicurl", "thumb_media_id"]),
    ("news", &[]),
    ("mpnews", &["media_id"]),
    ("mpnewsarticle", &["article_id"]),
    ("msgmenu", &[]),
    ("wxcard", &["card_id"]),
    ("miniprogrampage", &["title", "appid", "pagepath", "thumb_media_id"]),
];

/// Maps an admin request (`path` below `/api`, e.g. `/messages`) to its WeChat call.
pub fn plan(method: &str, path: &str, query: &str, body: &[u8]) -> Result<ApiCall, Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (segments.as_slice(), method) {
        (["messages"], "POST") => {
            validate_custom_send(&parse_object(body)?)?;
            Ok(ApiCall::post("/cgi-bin/message/custom/send", body.to_vec()))
        }
        (["typing"], "POST") => {
            let o = parse_object(body)?;
            let touser = string_field(&o, "touser", "touser")?;
            let command = string_field(&o, "command", "command")?;
            if command != "Typing" && command != "CancelTyping" {
                return Err(invalid("command", "must be Typing or CancelTyping"));
            }
            Ok(ApiCall::post(
                "/cgi-bin/message/custom/typing",
                string_body(&[("touser", touser), ("command", command)]),
            ))
        }
        (["kf", "accounts"], "GET") => Ok(ApiCall::get("/cgi-bin/customservice/getkflist")),
        (["kf", "online"], "GET") => Ok(ApiCall::get(crate::api::kf::ONLINE_PATH)),
        (["kf", "accounts"], "POST") => {
            let o = parse_object(body)?;
            let kf = kf_account_field(&o)?;
            let nickname = string_field(&o, "nickname", "nickname")?;
            Ok(ApiCall::post(
                "/customservice/kfaccount/add",
                string_body(&[("kf_account", &kf), ("nickname", nickname)]),
            ))
        }
        (["kf", "accounts", kf], "PUT") => {
            let kf = kf_account_path(kf)?;
            let o = parse_object(body)?;
            let nickname = string_field(&o, "nickname", "nickname")?;
            Ok(ApiCall::post(
                "/customservice/kfaccount/update",
                string_body(&[("kf_account", &kf), ("nickname", nickname)]),
            ))
        }
        (["kf", "accounts", kf], "DELETE") => {
            let kf = kf_account_path(kf)?;
            Ok(ApiCall::post("/customservice/kfaccount/del", string_body(&[("kf_account", &kf)])))
        }
        (["kf", "accounts", kf, "invite"], "POST") => {
            let kf = kf_account_path(kf)?;
            let o = parse_object(body)?;
            let invite_wx = string_field(&o, "invite_wx", "invite_wx")?;
            Ok(ApiCall::post(
                "/customservice/kfaccount/inviteworker",
                string_body(&[("kf_account", &kf), ("invite_wx", invite_wx)]),
            ))
        }
        (["kf", "sessions"], "POST" | "DELETE") => {
            let o = parse_object(body)?;
            let kf = kf_account_field(&o)?;
            let openid = string_field(&o, "openid", "openid")?;
            let path =
                if method == "POST" { "/customservice/kfsession/create" } else { "/customservice/kfsession/close" };
            Ok(ApiCall::post(path, string_body(&[("kf_account", &kf), ("openid", openid)])))
        }
        (["kf", "sessions"], "GET") => {
            let param = |name: &str| query_param(query, name).filter(|v| !v.is_empty());
            if let Some(openid) = param("openid") {
                Ok(ApiCall::get("/customservice/kfsession/getsession").with_query("openid", openid))
            } else if let Some(kf) = param("kf_account") {
                if !is_kf_account(&kf) {
                    return Err(invalid("kf_account", "must look like prefix@account"));
                }
                Ok(ApiCall::get("/customservice/kfsession/getsessionlist").with_query("kf_account", kf))
            } else {
                Err(invalid("openid", "pass ?openid= or ?kf_account="))
            }
        }
        (["kf", "waitcase"], "GET") => Ok(ApiCall::get("/customservice/kfsession/getwaitcase")),
        (["kf", "records"], "POST") => {
            let o = parse_object(body)?;
            let start = int_field(&o, "starttime")?;
            let end = int_field(&o, "endtime")?;
            let msgid = int_field(&o, "msgid")?;
            let number = int_field(&o, "number")?;
            if end <= start || end - start > 86_400 {
                return Err(invalid("endtime", "must be after starttime, within 24 hours of it"));
            }
            if !(1..=10_000).contains(&number) {
                return Err(invalid("number", "must be 1..=10000"));
            }
            let body = json!({"starttime": start, "endtime": end, "msgid": msgid, "number": number});
            Ok(ApiCall::post("/customservice/msgrecord/getmsglist", body.to_string().into_bytes()))
        }
        _ => Err(allowed_methods(&segments).map_or(Error::NotFound, Error::MethodNotAllowed)),
    }
}

/// The methods a known admin path answers (the `Allow` header of a 405).
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["messages"] | ["typing"] | ["kf", "records"] | ["kf", "accounts", _, "invite"] => Some("POST"),
        ["kf", "online"] | ["kf", "waitcase"] => Some("GET"),
        ["kf", "accounts"] => Some("GET, POST"),
        ["kf", "accounts", _] => Some("PUT, DELETE"),
        ["kf", "sessions"] => Some("GET, POST, DELETE"),
        _ => None,
    }
}

/// Checks a `message/custom/send` body: `touser`, a known `msgtype` with its required fields,
/// one article for `news`, a non-empty `msgmenu.list`, and a well-formed optional
/// `customservice.kf_account`.
pub fn validate_custom_send(o: &Object) -> Result<(), Error> {
    string_field(o, "touser", "touser")?;
    let msgtype = string_field(o, "msgtype", "msgtype")?;
    let Some((_, required)) = MSGTYPES.iter().find(|(t, _)| *t == msgtype) else {
        return Err(invalid("msgtype", "must be one of the eleven documented msgtypes"));
    };
    let payload = o
        .get(msgtype)
        .and_then(Value::as_object)
        .ok_or_else(|| Error::InvalidRequest { field: msgtype.to_string(), reason: "must be an object" })?;
    for name in *required {
        string_field(payload, name, &format!("{msgtype}.{name}"))?;
    }
    match msgtype {
        "news" => {
            let articles = payload
                .get("articles")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::InvalidRequest { field: "news.articles".into(), reason: "must be an array" })?;
            if articles.len() != 1 {
                return Err(invalid("news.articles", "must hold exactly one article (WeChat answers 45008 otherwise)"));
            }
            let article = articles
                .first()
                .and_then(Value::as_object)
                .ok_or_else(|| invalid("news.articles[0]", "must be an object"))?;
            string_field(article, "title", "news.articles[0].title")?;
            string_field(article, "url", "news.articles[0].url")?;
        }
        "msgmenu" => {
            let list = payload.get("list").and_then(Value::as_array).filter(|l| !l.is_empty());
            let list = list.ok_or_else(|| invalid("msgmenu.list", "must be a non-empty array"))?;
            for (i, item) in list.iter().enumerate() {
                let item =
                    item.as_object().ok_or_else(|| invalid(&format!("msgmenu.list[{i}]"), "must be an object"))?;
                string_field(item, "id", &format!("msgmenu.list[{i}].id"))?;
                string_field(item, "content", &format!("msgmenu.list[{i}].content"))?;
            }
        }
        _ => {}
    }
    if let Some(cs) = o.get("customservice") {
        let cs = cs.as_object().ok_or_else(|| invalid("customservice", "must be an object"))?;
        let kf = string_field(cs, "kf_account", "customservice.kf_account")?;
        if !is_kf_account(kf) {
            return Err(invalid("customservice.kf_account", "must look like prefix@account"));
        }
    }
    Ok(())
}

fn invalid(field: &str, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.to_string(), reason }
}

/// A JSON object of string fields, in their order.
fn string_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = String::from("{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(*name).to_string());
        out.push(':');
        out.push_str(&Value::from(*value).to_string());
    }
    out.push('}');
    out.into_bytes()
}

fn string_field<'a>(o: &'a Object, name: &str, label: &str) -> Result<&'a str, Error> {
    match o.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(invalid(label, "must not be empty")),
        Some(_) => Err(invalid(label, "must be a string")),
        None => Err(invalid(label, "is required")),
    }
}

fn int_field(o: &Object, name: &str) -> Result<i64, Error> {
    match o.get(name) {
        Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| invalid(name, "must be a non-negative integer")),
        None => Err(invalid(name, "is required")),
    }
}

fn kf_account_field(o: &Object) -> Result<String, Error> {
    let kf = string_field(o, "kf_account", "kf_account")?;
    if !is_kf_account(kf) {
        return Err(invalid("kf_account", "must look like prefix@account"));
    }
    Ok(kf.to_string())
}

/// The `{kf_account}` of a path, percent-decoded and checked.
pub(crate) fn kf_account_path(raw: &str) -> Result<String, Error> {
    let kf = percent_decode_path(raw);
    if !is_kf_account(&kf) {
        return Err(invalid("kf_account", "must look like prefix@account"));
    }
    Ok(kf)
}

/// A path segment, percent-decoded (`+` is a plus sign in a path, not a space).
fn percent_decode_path(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Body;
    use serde_json::{json, Value};

    fn json_body(s: &str) -> Body {
        Body::Json(s.as_bytes().to_vec())
    }

    fn send(body: Value) -> Result<ApiCall, Error> {
        plan("POST", "/messages", "", body.to_string().as_bytes())
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::InvalidRequest { field, .. } => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn every_msgtype_matches_spec_example() {
        let examples = [
            json!({"touser":"O","msgtype":"text","text":{"content":"Hello World"}}),
            json!({"touser":"O","msgtype":"image","image":{"media_id":"M"}}),
            json!({"touser":"O","msgtype":"voice","voice":{"media_id":"M"}}),
            json!({"touser":"O","msgtype":"video","video":{"media_id":"M","thumb_media_id":"T","title":"t","description":"d"}}),
            json!({"touser":"O","msgtype":"music","music":{"title":"t","description":"d","musicurl":"u","hqmusicurl":"h","thumb_media_id":"T"}}),
            json!({"touser":"O","msgtype":"news","news":{"articles":[{"title":"Happy Day","description":"d","url":"URL","picurl":"P"}]}}),
            json!({"touser":"O","msgtype":"mpnews","mpnews":{"media_id":"M"}}),
            json!({"touser":"O","msgtype":"mpnewsarticle","mpnewsarticle":{"article_id":"A"}}),
            json!({"touser":"O","msgtype":"msgmenu","msgmenu":{"head_content":"h","list":[{"id":"101","content":"满意"}],"tail_content":"t"}}),
            json!({"touser":"O","msgtype":"wxcard","wxcard":{"card_id":"123dsdajkasd231jhksad"}}),
            json!({"touser":"O","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"wx1","pagepath":"p","thumb_media_id":"T"}}),
            json!({"touser":"O","msgtype":"text","text":{"content":"Hello"},"customservice":{"kf_account":"test1@kftest"}}),
        ];
        assert_eq!(MSGTYPES.len(), 11);
        for body in examples {
            let raw = body.to_string();
            let call = plan("POST", "/messages", "", raw.as_bytes()).unwrap();
            assert_eq!(call.path, "/cgi-bin/message/custom/send");
            assert_eq!(call.body, Body::Json(raw.into_bytes()), "forwarded unchanged");
        }
    }

    #[test]
    fn custom_send_rejects_missing_fields_by_name() {
        let cases = [
            (json!({"msgtype":"text","text":{"content":"x"}}), "touser"),
            (json!({"touser":"O","text":{"content":"x"}}), "msgtype"),
            (json!({"touser":"O","msgtype":"fax"}), "msgtype"),
            (json!({"touser":"O","msgtype":"text"}), "text"),
            (json!({"touser":"O","msgtype":"text","text":{}}), "text.content"),
            (json!({"touser":"O","msgtype":"text","text":{"content":""}}), "text.content"),
            (json!({"touser":"O","msgtype":"video","video":{"media_id":"M"}}), "video.thumb_media_id"),
            (json!({"touser":"O","msgtype":"music","music":{"musicurl":"u","thumb_media_id":"T"}}), "music.hqmusicurl"),
            (json!({"touser":"O","msgtype":"news","news":{"articles":[]}}), "news.articles"),
            (
                json!({"touser":"O","msgtype":"news","news":{"articles":[{"title":"a","url":"u"},{"title":"b","url":"u"}]}}),
                "news.articles",
            ),
            (json!({"touser":"O","msgtype":"news","news":{"articles":[{"title":"a"}]}}), "news.articles[0].url"),
            (json!({"touser":"O","msgtype":"msgmenu","msgmenu":{"list":[{"id":"1"}]}}), "msgmenu.list[0].content"),
            (json!({"touser":"O","msgtype":"wxcard","wxcard":{"card_id":5}}), "wxcard.card_id"),
            (
                json!({"touser":"O","msgtype":"miniprogrampage","miniprogrampage":{"title":"t","appid":"a","pagepath":"p"}}),
                "miniprogrampage.thumb_media_id",
            ),
            (
                json!({"touser":"O","msgtype":"text","text":{"content":"x"},"customservice":{"kf_account":"nobody"}}),
                "customservice.kf_account",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(send(body.clone()).unwrap_err()), field, "{body}");
        }
        assert_eq!(field_of(plan("POST", "/messages", "", b"not json").unwrap_err()), "body");
        assert_eq!(field_of(plan("POST", "/messages", "", b"[1]").unwrap_err()), "body");
    }

    #[test]
    fn account_and_session_routes_build_documented_calls() {
        let add = plan("POST", "/kf/accounts", "", r#"{"kf_account":"a@b","nickname":"客服1"}"#.as_bytes()).unwrap();
        assert_eq!(add.path, "/customservice/kfaccount/add");
        assert_eq!(add.body, json_body(r#"{"kf_account":"a@b","nickname":"客服1"}"#));
        let upd = plan("PUT", "/kf/accounts/a%40b", "", br#"{"nickname":"n"}"#).unwrap();
        assert_eq!(upd.path, "/customservice/kfaccount/update");
        assert_eq!(upd.body, json_body(r#"{"kf_account":"a@b","nickname":"n"}"#));
        let del = plan("DELETE", "/kf/accounts/a@b", "", b"").unwrap();
        assert_eq!((del.path, del.body), ("/customservice/kfaccount/del", json_body(r#"{"kf_account":"a@b"}"#)));
        let inv = plan("POST", "/kf/accounts/a@b/invite", "", br#"{"invite_wx":"wxid"}"#).unwrap();
        assert_eq!(inv.path, "/customservice/kfaccount/inviteworker");
        let get = plan("GET", "/kf/sessions", "openid=o%201", b"").unwrap();
        assert_eq!(get.url("https://x", "T"), "https://x/customservice/kfsession/getsession?access_token=T&openid=o+1");
        let list = plan("GET", "/kf/sessions", "kf_account=a%40b", b"").unwrap();
        assert_eq!(list.path, "/customservice/kfsession/getsessionlist");
        let close = plan("DELETE", "/kf/sessions", "", br#"{"kf_account":"a@b","openid":"o"}"#).unwrap();
        assert_eq!(close.path, "/customservice/kfsession/close");
        assert_eq!(plan("GET", "/kf/waitcase", "", b"").unwrap().path, "/customservice/kfsession/getwaitcase");
        let rec =
            plan("POST", "/kf/records", "", br#"{"starttime":1000,"endtime":2000,"msgid":1,"number":100}"#).unwrap();
        assert_eq!(rec.path, "/customservice/msgrecord/getmsglist");
    }

    #[test]
    fn plan_rejects_bad_input_and_unknown_routes() {
        let bad = [
            ("POST", "/typing", &br#"{"touser":"o","command":"Dance"}"#[..], "command"),
            ("POST", "/kf/accounts", br#"{"kf_account":"noat","nickname":"n"}"#, "kf_account"),
            ("POST", "/kf/accounts", br#"{"kf_account":"a@b"}"#, "nickname"),
            ("PUT", "/kf/accounts/bad", br#"{"nickname":"n"}"#, "kf_account"),
            ("POST", "/kf/accounts/a@b/invite", b"{}", "invite_wx"),
            ("POST", "/kf/sessions", br#"{"kf_account":"a@b"}"#, "openid"),
            ("GET", "/kf/sessions", b"", "openid"),
            ("POST", "/kf/records", br#"{"starttime":2000,"endtime":1000,"msgid":1,"number":10}"#, "endtime"),
            ("POST", "/kf/records", br#"{"starttime":1,"endtime":2,"msgid":1,"number":0}"#, "number"),
            ("POST", "/kf/records", br#"{"starttime":"1","endtime":2,"msgid":1,"number":1}"#, "starttime"),
        ];
        for (m, p, body, field) in bad {
            assert_eq!(field_of(plan(m, p, "", body).unwrap_err()), field, "{m} {p}");
        }
        assert_eq!(plan("GET", "/nope", "", b"").unwrap_err(), Error::NotFound);
        assert_eq!(plan("GET", "/messages", "", b"").unwrap_err(), Error::MethodNotAllowed("POST"));
        assert_eq!(plan("PATCH", "/kf/accounts/a@b", "", b"").unwrap_err(), Error::MethodNotAllowed("PUT, DELETE"));
        assert_eq!(plan("POST", "/messages", "", &vec![b' '; MAX_BODY_BYTES + 1]).unwrap_err(), Error::PayloadTooLarge);
    }
}
