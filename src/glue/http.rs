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

/// An oversized body up to this size is read and discarded before the 413, so the client gets
/// the answer instead of a connection reset mid-upload; a larger one is refused at once.
const DRAIN_LIMIT: u64 = 1 << 20;

/// Reads the body, refusing (413) one over `limit` bytes: by its `Content-Length`, or while
/// streaming, so an oversized body is never buffered whole.
pub(crate) async fn read_body_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, Error> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            if len <= DRAIN_LIMIT {
                // Bounded by the declared length, which the runtime enforces.
                let _ = req.bytes().await;
            }
            return Err(Error::PayloadTooLarge);
        }
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
    let mut seen = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::MalformedXml("body could not be read"))?;
        seen += chunk.len() as u64;
        if seen > DRAIN_LIMIT {
            return Err(Error::PayloadTooLarge);
        }
        // Past the limit the answer is 413: keep reading (to the drain limit), stop buffering.
        if seen <= limit as u64 {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > limit as u64 {
        return Err(Error::PayloadTooLarge);
    }
    Ok(body)
}

/// Reads and discards the rest of the body, up to [`DRAIN_LIMIT`] bytes.
async fn drain(req: &mut Request) {
    if let Ok(mut stream) = req.stream() {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen as u64 > DRAIN_LIMIT {
                break;
            }
        }
    }
}

/// Answers sent without reading the body (404, 405, 401, ...) leave the client uploading into a
/// connection that is about to close; under load that showed as 5 s stalls (p99) and resets.
/// Reading what is left first (bounded) lets every client see its answer.
pub(crate) async fn discard_unread_body(req: &mut Request) {
    if req.inner().body_used() || req.inner().body().is_none() {
        return;
    }
    match req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok()) {
        // One read, bounded by the declared length (which the runtime enforces).
        Some(n) if n <= DRAIN_LIMIT => {
            let _ = req.bytes().await;
        }
        Some(_) => {}
        None => drain(req).await,
    }
}

/// 16 bytes from the runtime's CSPRNG (`crypto.getRandomValues`).
pub(crate) fn random_bytes() -> Result<[u8; 16], Error> {
    let mut buf = [0u8; 16];
    getrandom::getrandom(&mut buf).map_err(|_| Error::Internal("random"))?;
    Ok(buf)
}
