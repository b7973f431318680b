//! Request and response plumbing shared by every route.

use futures_util::StreamExt;
use worker::{Headers, Request, Response};

use crate::error::Error;

/// A response with a body and content type (infallible: the header names and values are ours).
pub(crate) fn response(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", content_type);
    let _ = headers.set("cache-control", "no-store");
    Response::builder().with_status(status).with_headers(headers).fixed(body)
}

pub(crate) fn text_response(status: u16, body: &str) -> Response {
    response(status, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

pub(crate) fn json_response(status: u16, body: &str) -> Response {
    response(status, "application/json; charset=utf-8", body.as_bytes().to_vec())
}

/// The one mapping from [`Error`] to an HTTP response.
pub(crate) fn error_response(err: &Error) -> Response {
    let resp = json_response(err.status(), &err.body());
    match err {
        Error::MethodNotAllowed(allow) => {
            let _ = resp.headers().set("allow", allow);
        }
        Error::Unauthorized => {
            let _ = resp.headers().set("www-authenticate", "Bearer");
        }
        _ => {}
    }
    resp
}

/// Reads the body, refusing (413) as soon as it is known to exceed `limit` bytes: by its
/// `Content-Length`, or while streaming, so an oversized body is never buffered whole.
pub(crate) async fn read_body_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, Error> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge);
    }
    if declared.is_some() {
        // The runtime enforces Content-Length, so one read is bounded; it is far cheaper than
        // pulling chunks through the stream one promise at a time.
        let body = req.bytes().await.map_err(|_| Error::MalformedXml("body could not be read"))?;
        return if body.len() > limit { Err(Error::PayloadTooLarge) } else { Ok(body) };
    }
    let mut body = Vec::new();
    let Ok(mut stream) = req.stream() else {
        // No body at all.
        return Ok(body);
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::MalformedXml("body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// 16 bytes from the runtime's CSPRNG (`crypto.getRandomValues`).
pub(crate) fn random_bytes() -> Result<[u8; 16], Error> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf).map_err(|_| Error::Internal("random"))?;
    Ok(buf)
}
