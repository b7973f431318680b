//! The crate's one error type and its one mapping to HTTP.
//!
//! Every failure a caller can cause maps to a 4xx with a short, fixed public message; internals,
//! secrets and message content never reach the response. Configuration faults are the only 500s.

use std::fmt;

use crate::api::media::Format;
use crate::json::ObjectWriter;

/// The `Retry-After` of [`Error::Busy`].
pub const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// Everything that can go wrong while serving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A required query parameter is absent or empty (`signature`, `timestamp`, `nonce`, ...).
    MissingParameter(&'static str),
    /// A query parameter is present but malformed (e.g. a non-numeric `timestamp`).
    InvalidParameter(&'static str),
    /// `signature` or `msg_signature` does not match: the request is not from WeChat.
    InvalidSignature,
    /// The request's `timestamp` is outside the configured clock-skew window.
    StaleTimestamp,
    /// The request body is larger than the route accepts.
    PayloadTooLarge,
    /// An uploaded file is larger than its kind allows (`image`, `voice`, ..., `avatar`).
    FileTooLarge { kind: &'static str, limit: usize, limit_label: &'static str },
    /// An uploaded file is not one of the formats its kind accepts (by its bytes, and by its
    /// declared type when one is given).
    UnsupportedMediaType { kind: &'static str, accepted: &'static [Format] },
    /// The body is not the XML WeChat sends: not UTF-8, not well formed, a DTD, too deep, ...
    /// The reason is for logs only.
    MalformedXml(&'static str),
    /// A field every WeChat message carries is absent (`MsgType`, `FromUserName`, ...).
    MissingField(&'static str),
    /// A field is present but its value is not valid (e.g. an overflowing `CreateTime`).
    InvalidField(&'static str),
    /// A safe-mode message could not be decrypted or belongs to another AppID. Deliberately
    /// uniform: the reason is for logs only, never for the caller.
    DecryptFailed(&'static str),
    /// An admin API request body is invalid; names the offending field.
    InvalidRequest { field: String, reason: &'static str },
    /// No or wrong `Authorization: Bearer` on the admin API.
    Unauthorized,
    /// No such route (also the whole admin API while `ADMIN_TOKEN` is unset).
    NotFound,
    /// The route exists but not for this method; carries the `Allow` header's value.
    MethodNotAllowed(&'static str),
    /// A required variable is missing or invalid. Names the variable, never its value; the
    /// caller only sees a generic 500.
    Config(&'static str),
    /// WeChat answered with `errcode != 0`.
    WeChat { errcode: i64, errmsg: String },
    /// WeChat could not be reached, answered non-2xx, or answered something that is not its JSON.
    /// The detail is for logs only.
    Upstream(&'static str),
    /// A WeChat call did not finish in time.
    UpstreamTimeout,
    /// This isolate is already doing the one thing of this kind it does at a time (an upload:
    /// each holds several copies of a file of up to 10 MB); retry in a few seconds.
    Busy(&'static str),
    /// Storage (KV) or the runtime failed; the detail is for logs only.
    Internal(&'static str),
    /// `cause` happened recently (a failed access_token request): callers are answered from it
    /// until the next attempt, in `retry_after_secs`.
    RetryLater { cause: Box<Error>, retry_after_secs: u64 },
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Error::MissingParameter(_)
            | Error::InvalidParameter(_)
            | Error::MalformedXml(_)
            | Error::MissingField(_)
            | Error::InvalidField(_)
            | Error::DecryptFailed(_)
            | Error::InvalidRequest { .. } => 400,
            Error::Unauthorized => 401,
            Error::InvalidSignature | Error::StaleTimestamp => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::PayloadTooLarge | Error::FileTooLarge { .. } => 413,
            Error::UnsupportedMediaType { .. } => 415,
            Error::Config(_) | Error::Internal(_) => 500,
            Error::WeChat { errcode, .. } => wechat_status(*errcode),
            Error::Upstream(_) => 502,
            Error::UpstreamTimeout => 504,
            Error::Busy(_) => 503,
            Error::RetryLater { cause, .. } => cause.status(),
        }
    }

    /// `cause`, to be answered until `retry_after_secs` have passed.
    pub fn retry_later(cause: Error, retry_after_secs: u64) -> Error {
        match cause {
            Error::RetryLater { cause, .. } => Error::RetryLater { cause, retry_after_secs },
            cause => Error::RetryLater { cause: Box::new(cause), retry_after_secs },
        }
    }

    /// The error itself, without a [`Error::RetryLater`] wrapper.
    pub fn cause(&self) -> &Error {
        match self {
            Error::RetryLater { cause, .. } => cause,
            other => other,
        }
    }

    /// Extra response headers this error is answered with.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::MethodNotAllowed(allow) => vec![("allow", (*allow).to_string())],
            Error::Unauthorized => vec![("www-authenticate", "Bearer".to_string())],
            Error::RetryLater { retry_after_secs, .. } => vec![("retry-after", retry_after_secs.to_string())],
            Error::Busy(_) => vec![("retry-after", BUSY_RETRY_AFTER_SECS.to_string())],
            _ => Vec::new(),
        }
    }

    /// A stable machine-readable code for the response body and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MissingParameter(_) => "missing_parameter",
            Error::InvalidParameter(_) => "invalid_parameter",
            Error::InvalidSignature => "invalid_signature",
            Error::StaleTimestamp => "stale_timestamp",
            Error::PayloadTooLarge | Error::FileTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::MalformedXml(_) => "malformed_xml",
            Error::MissingField(_) => "missing_field",
            Error::InvalidField(_) => "invalid_field",
            Error::DecryptFailed(_) => "decrypt_failed",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::Unauthorized => "unauthorized",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Config(_) => "server_misconfigured",
            Error::WeChat { .. } => "wechat_error",
            Error::Upstream(_) => "upstream_error",
            Error::UpstreamTimeout => "upstream_timeout",
            Error::Busy(_) => "busy",
            Error::Internal(_) => "internal_error",
            Error::RetryLater { cause, .. } => cause.code(),
        }
    }

    /// The detail worth a log line (never a secret, a token or message content).
    pub fn log_detail(&self) -> String {
        match self {
            Error::MissingParameter(n) | Error::InvalidParameter(n) => (*n).to_string(),
            Error::MissingField(n) | Error::InvalidField(n) => (*n).to_string(),
            Error::MalformedXml(r) | Error::DecryptFailed(r) => (*r).to_string(),
            Error::Upstream(r) | Error::Internal(r) | Error::Busy(r) => (*r).to_string(),
            Error::Config(var) => format!("variable {var} is missing or invalid"),
            Error::InvalidRequest { field, reason } => format!("{field}: {reason}"),
            Error::FileTooLarge { kind, .. } | Error::UnsupportedMediaType { kind, .. } => (*kind).to_string(),
            Error::WeChat { errcode, .. } => format!("errcode {errcode}"),
            Error::RetryLater { cause, retry_after_secs } => {
                format!("{}; next attempt in {retry_after_secs} s", cause.log_detail())
            }
            _ => String::new(),
        }
    }

    /// The JSON body answered to the caller. Only fixed texts and caller-supplied field names.
    pub fn body(&self) -> String {
        let mut w = ObjectWriter::new();
        self.write_fields(&mut w);
        w.finish()
    }

    fn write_fields(&self, w: &mut ObjectWriter) {
        match self {
            Error::WeChat { errcode, errmsg } => {
                w.int("errcode", *errcode).str("errmsg", errmsg).str("hint", wechat_hint(*errcode));
            }
            Error::InvalidRequest { field, reason } => {
                w.str("error", self.code()).str("field", field).str("message", reason);
            }
            Error::MissingParameter(n)
            | Error::InvalidParameter(n)
            | Error::MissingField(n)
            | Error::InvalidField(n) => {
                w.str("error", self.code()).str("field", n).str("message", self.public_message());
            }
            Error::FileTooLarge { kind, limit, limit_label } => {
                w.str("error", self.code())
                    .str("field", "media")
                    .str("message", &format!("{kind} files may be at most {limit_label} ({limit} bytes)"))
                    .num("limit_bytes", *limit as u64);
            }
            Error::UnsupportedMediaType { kind, accepted } => {
                let mimes = || accepted.iter().map(|f| f.mime());
                let list = mimes().collect::<Vec<_>>().join(", ");
                w.str("error", self.code())
                    .str("field", "media")
                    .str("message", &format!("{kind} files must be one of {list} (judged by their content)"))
                    .strs("accepted", mimes());
            }
            Error::RetryLater { cause, retry_after_secs } => {
                cause.write_fields(w);
                w.num("retry_after", *retry_after_secs);
            }
            _ => {
                w.str("error", self.code()).str("message", self.public_message());
            }
        }
    }

    fn public_message(&self) -> &'static str {
        match self {
            Error::MissingParameter(_) => "a required query parameter is missing",
            Error::InvalidParameter(_) => "a query parameter is malformed",
            Error::InvalidSignature => "signature does not match",
            Error::StaleTimestamp => "timestamp is outside the accepted window",
            Error::PayloadTooLarge | Error::FileTooLarge { .. } => "request body is too large",
            Error::UnsupportedMediaType { .. } => "unsupported file type",
            Error::MalformedXml(_) => "request body is not a WeChat XML message",
            Error::MissingField(_) => "a required message field is missing",
            Error::InvalidField(_) => "a message field has an invalid value",
            Error::DecryptFailed(_) => "encrypted message could not be decrypted",
            Error::InvalidRequest { .. } => "invalid request",
            Error::Unauthorized => "missing or invalid bearer token",
            Error::NotFound => "not found",
            Error::MethodNotAllowed(_) => "method not allowed",
            Error::Config(_) => "the worker is not configured correctly; see its logs",
            Error::WeChat { .. } => "WeChat rejected the call",
            Error::Upstream(_) => "WeChat API could not be reached or answered unexpectedly",
            Error::UpstreamTimeout => "WeChat API did not answer in time",
            Error::Busy(_) => "another upload is in progress here; retry in a few seconds",
            Error::Internal(_) => "internal error",
            Error::RetryLater { cause, .. } => cause.public_message(),
        }
    }
}

/// HTTP status for a WeChat `errcode`: caller mistakes are 4xx, WeChat's state or ours is 5xx.
fn wechat_status(errcode: i64) -> u16 {
    match errcode {
        // Invalid openid, media_id, content too long, too many articles, bad kf account fields,
        // an upload without its file.
        40003 | 40007 | 45002 | 45008 | 40097 | 41005 | 61451 | 61452 | 61453 | 61454 | 61455 => 400,
        // An upload WeChat finds too large, or not of a type it takes.
        40006 | 40009 | 40010 | 40011 | 40012 => 413,
        40004 | 40005 => 415,
        // Not authorised for this API / user does not follow / outside the 48 h window.
        48001 => 403,
        43004 | 45015 | 65400..=65499 => 409,
        // Quotas and rate limits.
        45009 | 45011 | 45047 => 429,
        // WeChat is busy.
        -1 => 503,
        // Our credentials, IP whitelist or token: the operator must act; WeChat is the upstream.
        _ => 502,
    }
}

/// A human hint for the errcodes operators meet most.
pub fn wechat_hint(errcode: i64) -> &'static str {
    match errcode {
        -1 => "WeChat is busy; retry later",
        40001 | 40014 | 42001 => {
            "the access_token was rejected even after one refresh; check WECHAT_APPID/WECHAT_APPSECRET and that no other system force-refreshes this account's token"
        }
        40003 => "invalid openid: touser must be a follower's OpenID of this account",
        40013 => "invalid AppID: check WECHAT_APPID",
        40125 => "invalid AppSecret: check the WECHAT_APPSECRET secret",
        40164 => {
            "the calling IP is not on the account's API IP whitelist: Workers egress from Cloudflare's IP ranges; whitelist them in the WeChat console or point WECHAT_API_BASE at a fixed-IP proxy"
        }
        43004 => "the user does not follow the account",
        40004 | 40005 => "WeChat refused the file's type: see the formats of POST /api/media",
        40006 | 40009 | 40010 | 40011 | 40012 => "WeChat refused the file's size: see the limits of POST /api/media",
        41005 => "WeChat received no file",
        45002 => "content too long",
        45008 => "too many articles: a news message may hold one article",
        45009 | 45011 => "API rate limit reached; retry later",
        45015 => "outside the 48-hour window: the user has not interacted with the account recently",
        45047 => "customer-service message quota for this user interaction is used up",
        48001 => "the account is not authorised for this API",
        _ => "see the WeChat error code reference",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = self.log_detail();
        if detail.is_empty() {
            f.write_str(self.code())
        } else {
            write!(f, "{}: {}", self.code(), detail)
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caller_fault_is_4xx_and_never_500() {
        let caller_faults = [
            Error::MissingParameter("signature"),
            Error::InvalidParameter("timestamp"),
            Error::InvalidSignature,
            Error::StaleTimestamp,
            Error::PayloadTooLarge,
            Error::MalformedXml("doctype"),
            Error::MissingField("MsgType"),
            Error::InvalidField("CreateTime"),
            Error::DecryptFailed("appid"),
            Error::Unauthorized,
            Error::NotFound,
            Error::MethodNotAllowed("GET"),
        ];
        for e in caller_faults {
            assert!((400..500).contains(&e.status()), "{e:?} -> {}", e.status());
        }
        assert_eq!(Error::Config("WECHAT_TOKEN").status(), 500);
    }

    #[test]
    fn decrypt_failures_are_uniform_to_the_caller() {
        let a = Error::DecryptFailed("bad base64");
        let b = Error::DecryptFailed("appid mismatch");
        assert_eq!(a.body(), b.body());
        assert_eq!(a.status(), b.status());
    }

    #[test]
    fn config_error_body_never_names_the_value_or_variable() {
        let body = Error::Config("WECHAT_ENCODING_AES_KEY").body();
        assert!(!body.contains("WECHAT_ENCODING_AES_KEY"));
    }

    #[test]
    fn wechat_window_and_quota_errors_are_not_server_faults() {
        assert_eq!(Error::WeChat { errcode: 45015, errmsg: String::new() }.status(), 409);
        assert_eq!(Error::WeChat { errcode: 45047, errmsg: String::new() }.status(), 429);
        assert_eq!(Error::WeChat { errcode: -1, errmsg: String::new() }.status(), 503);
        // Upload errors are the caller's file, not WeChat failing.
        assert_eq!(Error::WeChat { errcode: 40009, errmsg: String::new() }.status(), 413);
        assert_eq!(Error::WeChat { errcode: 40005, errmsg: String::new() }.status(), 415);
        assert_eq!(Error::WeChat { errcode: 41005, errmsg: String::new() }.status(), 400);
        let body = Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }.body();
        assert!(body.contains("whitelist"), "{body}");
    }

    #[test]
    fn upload_errors_name_the_limit_and_the_accepted_types() {
        use crate::api::media::{AVATAR, IMAGE};
        let big = Error::FileTooLarge { kind: "avatar", limit: AVATAR.limit, limit_label: AVATAR.limit_label };
        assert_eq!(big.status(), 413);
        assert_eq!(
            big.body(),
            r#"{"error":"payload_too_large","field":"media","message":"avatar files may be at most 5 MB (5242880 bytes)","limit_bytes":5242880}"#
        );
        let wrong = Error::UnsupportedMediaType { kind: "image", accepted: IMAGE.formats };
        assert_eq!(wrong.status(), 415);
        assert_eq!(
            wrong.body(),
            r#"{"error":"unsupported_media_type","field":"media","message":"image files must be one of image/jpeg, image/png, image/gif, image/bmp (judged by their content)","accepted":["image/jpeg","image/png","image/gif","image/bmp"]}"#
        );
    }
}
