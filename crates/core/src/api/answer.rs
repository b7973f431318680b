//! Reading WeChat's JSON answers, once for every API: `{"errcode":N,"errmsg":"..."}` with
//! `errcode` 0 or absent meaning success.

use serde_json::{Map, Value};

use crate::document;
use crate::error::Error;
use crate::http::Answer;

/// Longest `errmsg` kept (it is echoed to admin API callers and is WeChat's text, not ours).
pub const MAX_ERRMSG_CHARS: usize = 200;

/// The answer's JSON object, or the error it stands for: a non-2xx status or a body that is not
/// a JSON object is [`Error::Upstream`]; a non-zero `errcode` is [`Error::WeChat`].
pub fn read_answer(answer: &Answer) -> Result<Map<String, Value>, Error> {
    if !answer.is_success() {
        return Err(Error::Upstream("WeChat answered a non-2xx status"));
    }
    let object = match document::parse(&answer.body) {
        Some(Value::Object(object)) => object,
        Some(_) => return Err(Error::Upstream("WeChat answered JSON that is not an object")),
        None => return Err(Error::Upstream("WeChat answered something that is not JSON")),
    };
    match object.get("errcode").and_then(Value::as_i64) {
        None | Some(0) => Ok(object),
        Some(errcode) => Err(Error::WeChat {
            errcode,
            errmsg: object
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(MAX_ERRMSG_CHARS)
                .collect(),
        }),
    }
}

/// A successful answer's body (see [`read_answer`]) as its JSON object; another shape is
/// [`Error::Upstream`] with `unexpected`.
pub fn read_body(body: &[u8], unexpected: &'static str) -> Result<Map<String, Value>, Error> {
    match document::parse(body) {
        Some(Value::Object(object)) => Ok(object),
        _ => Err(Error::Upstream(unexpected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn read_answer_maps_errcodes_and_junk() {
        assert!(read_answer(&answer(200, r#"{"errcode":0,"errmsg":"ok"}"#)).is_ok());
        assert_eq!(read_answer(&answer(200, r#"{"kf_list":[]}"#)).unwrap().get("kf_list"), Some(&Value::Array(vec![])));
        assert_eq!(
            read_answer(&answer(200, r#"{"errcode":45015,"errmsg":"response out of time limit"}"#)).unwrap_err(),
            Error::WeChat { errcode: 45015, errmsg: "response out of time limit".into() }
        );
        let long = format!(r#"{{"errcode":-1,"errmsg":"{}"}}"#, "é".repeat(500));
        let Error::WeChat { errmsg, .. } = read_answer(&answer(200, &long)).unwrap_err() else { panic!() };
        assert_eq!(errmsg.chars().count(), MAX_ERRMSG_CHARS);
        let junk = [
            (500, "{}", "WeChat answered a non-2xx status"),
            (200, "<html>", "WeChat answered something that is not JSON"),
            (200, r#"{"errcode":0"#, "WeChat answered something that is not JSON"),
            (200, "[]", "WeChat answered JSON that is not an object"),
        ];
        for (status, body, reason) in junk {
            assert_eq!(read_answer(&answer(status, body)).unwrap_err(), Error::Upstream(reason), "{body}");
        }
    }
}
