//! The outbound HTTP call model: what the core asks the [`Upstream`](crate::runtime::Upstream)
//! to send, and what comes back. Query values are encoded and decoded here, with
//! `form_urlencoded`.

use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// The body of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    /// `application/json; charset=utf-8`.
    Json(Vec<u8>),
    /// `multipart/form-data` with one file field, encoded by the runtime (`FormData`/`Blob`).
    /// The bytes are shared so that a retry resends them without a copy.
    File {
        field: &'static str,
        filename: String,
        content_type: String,
        bytes: Rc<[u8]>,
    },
}

/// An HTTP request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: HttpMethod,
    /// Absolute URL.
    pub url: String,
    pub body: Body,
}

impl HttpCall {
    pub fn get(url: String) -> Self {
        HttpCall { method: HttpMethod::Get, url, body: Body::None }
    }

    pub fn post_json(url: String, json: Vec<u8>) -> Self {
        HttpCall { method: HttpMethod::Post, url, body: Body::Json(json) }
    }
}

/// A WeChat API call, without its access_token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub method: HttpMethod,
    /// Path below the API base, e.g. `/cgi-bin/message/custom/send`.
    pub path: &'static str,
    /// Extra query parameters, unencoded (e.g. `openid`).
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
}

impl ApiCall {
    pub fn get(path: &'static str) -> Self {
        ApiCall { method: HttpMethod::Get, path, query: Vec::new(), body: Body::None }
    }

    pub fn post(path: &'static str, json: Vec<u8>) -> Self {
        ApiCall { method: HttpMethod::Post, path, query: Vec::new(), body: Body::Json(json) }
    }

    /// With one more query parameter.
    pub fn with_query(mut self, name: &'static str, value: String) -> Self {
        self.query.push((name, value));
        self
    }

    /// The absolute URL with the token; every value percent-encoded.
    pub fn url(&self, api_base: &str, access_token: &str) -> String {
        let mut url = format!("{api_base}{}?access_token={}", self.path, encode(access_token));
        for (k, v) in &self.query {
            url.push('&');
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    /// The HTTP call with the token.
    pub fn http(&self, api_base: &str, access_token: &str) -> HttpCall {
        HttpCall { method: self.method, url: self.url(api_base, access_token), body: self.body.clone() }
    }
}

/// What came back: the status and the (bounded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A query value, `application/x-www-form-urlencoded` (RFC 3986 unreserved bytes stay as they are).
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The value of `name` in a query string (without `?`), decoded; the first occurrence wins.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_are_inverse_and_strict_about_escapes() {
        assert_eq!(encode("a b&c=d/中"), "a+b%26c%3Dd%2F%E4%B8%AD");
        assert_eq!(query_param("x=1&q=a+b%26c%3Dd%2F%E4%B8%AD", "q").as_deref(), Some("a b&c=d/中"));
        // A sign is not a hex digit: "%+a" stays as written.
        assert_eq!(query_param("q=%+a", "q").as_deref(), Some("% a"));
        assert_eq!(query_param("q=%zz%4", "q").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("q=1&q=2", "q").as_deref(), Some("1"));
        assert_eq!(query_param("q", "q").as_deref(), Some(""));
        assert_eq!(query_param("p=1", "q"), None);
    }
}
