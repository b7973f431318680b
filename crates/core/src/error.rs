//! The core's one error type and its one mapping to HTTP.
//!
//! Every failure a caller can cause maps to a 4xx with a short, fixed public message and the
//! field at fault; internals, secrets and message content never reach the response. A missing
//! or invalid configuration is a generic 500 whose log line names the variable.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

/// The `Retry-After` of [`Error::Busy`].
pub const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// Everything that can go wrong while serving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The callback refused a push or a URL check (see [`wechat_mp::Error`]).
    Push(wechat_mp::Error),
    /// The request body is larger than the route accepts.
    PayloadTooLarge,
    /// An uploaded file is larger than its kind allows (`image`, `voice`, ..., `avatar`).
    FileTooLarge { kind: &'static str, limit: usize, limit_label: &'static str },
    /// An uploaded file is not one of the formats its kind accepts; `accepted` are their MIME
    /// types.
    UnsupportedMediaType { kind: &'static str, accepted: Vec<&'static str> },
    /// An admin request is invalid; names the offending field (a JSON path or a parameter).
    InvalidRequest { field: String, reason: &'static str },
    /// The request body could not be read (the client went away mid-body).
    BodyUnreadable,
    /// No or wrong `Authorization: Bearer` on the admin API.
    Unauthorized,
    /// A valid token that may not do this (an operator token on the owner's routes).
    Forbidden,
    /// No such route (also the whole admin API while `ADMIN_TOKEN` is unset).
    NotFound,
    /// What the request would create exists already (an account's appid); names the field.
    Conflict { field: &'static str, reason: &'static str },
    /// The route needs a variable the deployment has not set (or set invalid): the body names
    /// it (a name, never a value), since the caller is the owner who can set it.
    NotConfigured { variable: &'static str, reason: &'static str },
    /// The route exists but not for this method; carries the `Allow` header's value.
    MethodNotAllowed(&'static str),
    /// A required variable is missing or invalid. Names the variable, never its value; the
    /// caller only sees a generic 500.
    Config(&'static str),
    /// WeChat answered with `errcode != 0`.
    WeChat { errcode: i64, errmsg: String },
    /// WeChat could not be reached, answered non-2xx, or answered something that is not its
    /// JSON. The detail is for logs only.
    Upstream(&'static str),
    /// A WeChat call did not finish in time.
    UpstreamTimeout,
    /// The same call was made too recently (a token refresh by hand); retry in the seconds given.
    TooSoon { retry_after_secs: u64 },
    /// This isolate is already doing the one thing of this kind it does at a time (an upload:
    /// each holds several copies of a file of up to 10 MB); retry in a few seconds.
    Busy(&'static str),
    /// Storage or the runtime failed; the detail is for logs only.
    Internal(&'static str),
    /// `cause` happened recently (a failed access_token request): callers are answered from it
    /// until the next attempt, in `retry_after_secs`.
    RetryLater { cause: Box<Error>, retry_after_secs: u64 },
}

impl From<wechat_mp::Error> for Error {
    fn from(e: wechat_mp::Error) -> Self {
        match e {
            // An encrypted push for an account without a key: the configuration's fault.
            wechat_mp::Error::NoAesKey => Error::Config("WECHAT_ENCODING_AES_KEY"),
            wechat_mp::Error::PayloadTooLarge => Error::PayloadTooLarge,
            e => Error::Push(e),
        }
    }
}

/// The JSON body of an error answer. Only fixed texts, field names and WeChat's own `errmsg`.
#[derive(Serialize, Default)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errmsg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accepted: Option<&'a [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        use wechat_mp::Error as P;
        match self {
            Error::Push(P::InvalidSignature | P::StaleTimestamp) => 403,
            Error::Push(P::PayloadTooLarge) | Error::PayloadTooLarge | Error::FileTooLarge { .. } => 413,
            Error::Push(P::NoAesKey) | Error::Config(_) | Error::Internal(_) => 500,
            Error::Push(_) | Error::InvalidRequest { .. } | Error::BodyUnreadable => 400,
            Error::Unauthorized => 401,
            Error::Forbidden => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Conflict { .. } => 409,
            Error::NotConfigured { .. } => 503,
            Error::UnsupportedMediaType { .. } => 415,
            Error::WeChat { errcode, .. } => wechat_status(*errcode),
            Error::Upstream(_) => 502,
            Error::UpstreamTimeout => 504,
            Error::Busy(_) => 503,
            Error::TooSoon { .. } => 429,
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
            Error::TooSoon { retry_after_secs } => vec![("retry-after", retry_after_secs.to_string())],
            _ => Vec::new(),
        }
    }

    /// A stable machine-readable code for the response body and logs.
    pub fn code(&self) -> &'static str {
        use wechat_mp::Error as P;
        match self {
            Error::Push(e) => match e {
                P::MissingParameter(_) => "missing_parameter",
                P::InvalidParameter(_) => "invalid_parameter",
                P::InvalidSignature => "invalid_signature",
                P::StaleTimestamp => "stale_timestamp",
                P::PayloadTooLarge => "payload_too_large",
                P::MalformedXml(_) => "malformed_xml",
                P::MissingField(_) => "missing_field",
                P::InvalidField(_) => "invalid_field",
                P::DecryptFailed(_) => "decrypt_failed",
                P::NoAesKey => "server_misconfigured",
            },
            Error::PayloadTooLarge | Error::FileTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::InvalidRequest { .. } | Error::BodyUnreadable => "invalid_request",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden => "forbidden",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Conflict { .. } => "conflict",
            Error::NotConfigured { .. } => "not_configured",
            Error::Config(_) => "server_misconfigured",
            Error::WeChat { .. } => "wechat_error",
            Error::Upstream(_) => "upstream_error",
            Error::UpstreamTimeout => "upstream_timeout",
            Error::Busy(_) => "busy",
            Error::TooSoon { .. } => "too_many_requests",
            Error::Internal(_) => "internal_error",
            Error::RetryLater { cause, .. } => cause.code(),
        }
    }

    /// The detail worth a log line (never a secret, a token or message content).
    pub fn log_detail(&self) -> String {
        use wechat_mp::Error as P;
        match self {
            Error::Push(P::MissingParameter(n) | P::InvalidParameter(n) | P::MissingField(n) | P::InvalidField(n)) => {
                (*n).to_string()
            }
            Error::Push(P::MalformedXml(r) | P::DecryptFailed(r)) => (*r).to_string(),
            Error::Push(P::NoAesKey) => "variable WECHAT_ENCODING_AES_KEY is missing or invalid".to_string(),
            Error::Upstream(r) | Error::Internal(r) | Error::Busy(r) => (*r).to_string(),
            Error::Config(var) => format!("variable {var} is missing or invalid"),
            Error::InvalidRequest { field, reason } => format!("{field}: {reason}"),
            Error::Conflict { field, reason } => format!("{field}: {reason}"),
            Error::NotConfigured { variable, .. } => format!("variable {variable} is missing or invalid"),
            Error::BodyUnreadable => "body: the request body could not be read".to_string(),
            Error::FileTooLarge { kind, .. } | Error::UnsupportedMediaType { kind, .. } => (*kind).to_string(),
            Error::WeChat { errcode, .. } => format!("errcode {errcode}"),
            Error::RetryLater { cause, retry_after_secs } => {
                format!("{}; next attempt in {retry_after_secs} s", cause.log_detail())
            }
            _ => String::new(),
        }
    }

    /// The JSON body answered to the caller.
    pub fn body(&self) -> String {
        serde_json::to_string(&self.fields()).unwrap_or_default()
    }

    fn fields(&self) -> Body<'_> {
        use wechat_mp::Error as P;
        let coded = |field: Option<&'static str>| Body {
            error: Some(self.code()),
            field,
            message: Some(Cow::Borrowed(self.public_message())),
            ..Body::default()
        };
        match self {
            Error::WeChat { errcode, errmsg } => Body {
                errcode: Some(*errcode),
                errmsg: Some(errmsg),
                hint: Some(wechat_hint(*errcode)),
                ..Body::default()
            },
            Error::InvalidRequest { field, reason } => Body {
                error: Some(self.code()),
                field: Some(field),
                message: Some(Cow::Borrowed(reason)),
                ..Body::default()
            },
            // Their public message is their reason.
            Error::Conflict { field, .. } => coded(Some(field)),
            Error::NotConfigured { variable, .. } => coded(Some(variable)),
            Error::BodyUnreadable => coded(Some("body")),
            Error::Push(P::MissingParameter(n) | P::InvalidParameter(n) | P::MissingField(n) | P::InvalidField(n)) => {
                coded(Some(n))
            }
            Error::FileTooLarge { kind, limit, limit_label } => Body {
                error: Some(self.code()),
                field: Some("media"),
                message: Some(Cow::Owned(format!("{kind} files may be at most {limit_label} ({limit} bytes)"))),
                limit_bytes: Some(*limit),
                ..Body::default()
            },
            Error::UnsupportedMediaType { kind, accepted } => Body {
                error: Some(self.code()),
                field: Some("media"),
                message: Some(Cow::Owned(format!(
                    "{kind} files must be one of {} (judged by their content)",
                    accepted.join(", ")
                ))),
                accepted: Some(accepted),
                ..Body::default()
            },
            Error::RetryLater { cause, retry_after_secs } => {
                Body { retry_after: Some(*retry_after_secs), ..cause.fields() }
            }
            Error::TooSoon { retry_after_secs } => Body { retry_after: Some(*retry_after_secs), ..coded(None) },
            _ => coded(None),
        }
    }

    fn public_message(&self) -> &'static str {
        use wechat_mp::Error as P;
        match self {
            Error::Push(e) => match e {
                P::MissingParameter(_) => "a required query parameter is missing",
                P::InvalidParameter(_) => "a query parameter is malformed",
                P::InvalidSignature => "signature does not match",
                P::StaleTimestamp => "timestamp is outside the accepted window",
                P::PayloadTooLarge => "request body is too large",
                P::MalformedXml(_) => "request body is not a WeChat XML message",
                P::MissingField(_) => "a required message field is missing",
                P::InvalidField(_) => "a message field has an invalid value",
                P::DecryptFailed(_) => "encrypted message could not be decrypted",
                P::NoAesKey => "the worker is not configured correctly; see its logs",
            },
            Error::PayloadTooLarge | Error::FileTooLarge { .. } => "request body is too large",
            Error::UnsupportedMediaType { .. } => "unsupported file type",
            Error::InvalidRequest { .. } => "invalid request",
            Error::BodyUnreadable => "the request body could not be read",
            Error::Unauthorized => "missing or invalid bearer token",
            Error::Forbidden => "this token may not do that: an operator token reaches its own account's routes",
            Error::NotFound => "not found",
            Error::MethodNotAllowed(_) => "method not allowed",
            Error::Conflict { reason, .. } | Error::NotConfigured { reason, .. } => reason,
            Error::Config(_) => "the worker is not configured correctly; see its logs",
            Error::WeChat { .. } => "WeChat rejected the call",
            Error::Upstream(_) => "WeChat API could not be reached or answered unexpectedly",
            Error::UpstreamTimeout => "WeChat API did not answer in time",
            Error::Busy(_) => "another upload is in progress here; retry in a few seconds",
            Error::TooSoon { .. } => "called too recently; retry after the seconds given",
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
    use wechat_mp::Error as P;

    #[test]
    fn every_caller_fault_is_4xx_and_never_500() {
        let caller_faults = [
            Error::Push(P::MissingParameter("signature")),
            Error::Push(P::InvalidParameter("timestamp")),
            Error::Push(P::InvalidSignature),
            Error::Push(P::StaleTimestamp),
            Error::PayloadTooLarge,
            Error::Push(P::MalformedXml("doctype")),
            Error::Push(P::MissingField("MsgType")),
            Error::Push(P::InvalidField("CreateTime")),
            Error::Push(P::DecryptFailed("appid")),
            Error::BodyUnreadable,
            Error::Unauthorized,
            Error::NotFound,
            Error::MethodNotAllowed("GET"),
        ];
        for e in caller_faults {
            assert!((400..500).contains(&e.status()), "{e:?} -> {}", e.status());
        }
        assert_eq!(Error::Config("WECHAT_TOKEN").status(), 500);
        assert_eq!(Error::from(P::NoAesKey), Error::Config("WECHAT_ENCODING_AES_KEY"));
    }

    /// The exact bodies callers depend on, one per shape.
    #[test]
    fn bodies_are_pinned() {
        let cases = [
            (
                Error::Push(P::MissingParameter("timestamp")),
                400,
                r#"{"error":"missing_parameter","field":"timestamp","message":"a required query parameter is missing"}"#,
            ),
            (
                Error::Push(P::InvalidSignature),
                403,
                r#"{"error":"invalid_signature","message":"signature does not match"}"#,
            ),
            (
                Error::InvalidRequest { field: "text.content".into(), reason: "must not be empty" },
                400,
                r#"{"error":"invalid_request","field":"text.content","message":"must not be empty"}"#,
            ),
            (
                Error::BodyUnreadable,
                400,
                r#"{"error":"invalid_request","field":"body","message":"the request body could not be read"}"#,
            ),
            (
                Error::retry_later(Error::WeChat { errcode: 40164, errmsg: "invalid ip".into() }, 295),
                502,
                r#"{"errcode":40164,"errmsg":"invalid ip","hint":"the calling IP is not on the account's API IP whitelist: Workers egress from Cloudflare's IP ranges; whitelist them in the WeChat console or point WECHAT_API_BASE at a fixed-IP proxy","retry_after":295}"#,
            ),
        ];
        for (error, status, body) in cases {
            assert_eq!((error.status(), error.body()), (status, body.to_string()), "{error:?}");
        }
    }

    #[test]
    fn decrypt_failures_are_uniform_to_the_caller() {
        let a = Error::Push(P::DecryptFailed("bad base64"));
        let b = Error::Push(P::DecryptFailed("appid mismatch"));
        assert_eq!(a.body(), b.body());
        assert_eq!(a.status(), b.status());
    }

    #[test]
    fn config_error_body_never_names_the_value_or_variable() {
        let body = Error::Config("WECHAT_ENCODING_AES_KEY").body();
        assert!(!body.contains("WECHAT_ENCODING_AES_KEY"));
        assert_eq!(
            Error::Config("WECHAT_TOKEN").to_string(),
            "server_misconfigured: variable WECHAT_TOKEN is missing or invalid"
        );
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
        let big = Error::FileTooLarge { kind: "avatar", limit: 5 * 1024 * 1024, limit_label: "5 MB" };
        assert_eq!(big.status(), 413);
        assert_eq!(
            big.body(),
            r#"{"error":"payload_too_large","field":"media","message":"avatar files may be at most 5 MB (5242880 bytes)","limit_bytes":5242880}"#
        );
        let wrong = Error::UnsupportedMediaType {
            kind: "image",
            accepted: vec!["image/jpeg", "image/png", "image/gif", "image/bmp"],
        };
        assert_eq!(wrong.status(), 415);
        assert_eq!(
            wrong.body(),
            r#"{"error":"unsupported_media_type","field":"media","message":"image files must be one of image/jpeg, image/png, image/gif, image/bmp (judged by their content)","accepted":["image/jpeg","image/png","image/gif","image/bmp"]}"#
        );
    }
}
