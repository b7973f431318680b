//! Request plumbing: the body read within the route's limit, a multipart upload's file part,
//! and what is left unread drained.

use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys;

use kf_core::Error;

use super::runtime::read_bounded;

fn content_length(req: &web_sys::Request) -> Option<usize> {
    req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse().ok())
}

/// A body that could not be read (the client went away mid-body, a broken stream).
fn unreadable() -> Error {
    Error::BodyUnreadable
}

async fn array_buffer(req: &web_sys::Request) -> Result<Vec<u8>, Error> {
    let promise = req.array_buffer().map_err(|_| unreadable())?;
    let buffer = JsFuture::from(promise).await.map_err(|_| unreadable())?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Reads the body, refusing (413) one over `limit` bytes: by its `Content-Length`, or while
/// streaming, so an oversized body is never buffered whole. Past the limit, up to `drain`
/// bytes are read and dropped (see [`kf_core::app::DRAIN_BYTES`]).
pub(crate) async fn read_body(req: &web_sys::Request, limit: usize, drain: usize) -> Result<Vec<u8>, Error> {
    if let Some(len) = content_length(req) {
        if len > limit {
            discard_unread_body(req, drain).await;
            return Err(Error::PayloadTooLarge);
        }
        // The runtime enforces the declared length, so one read is bounded.
        return array_buffer(req).await;
    }
    let Some(stream) = req.body() else { return Ok(Vec::new()) };
    // Past the limit the rest is drained, so that the client sees the 413.
    read_bounded(stream, limit, drain).await.map_err(|_| unreadable())?.ok_or(Error::PayloadTooLarge)
}

/// Answers sent without reading the body (404, 405, 401, 413...) leave the client uploading into
/// a connection that is about to close; under load that showed as stalls and resets. Reading
/// what is left first (up to `drain` bytes, counted, not kept) lets every client see its answer;
/// a larger declared body is not drained.
pub(crate) async fn discard_unread_body(req: &web_sys::Request, drain: usize) {
    if req.body_used() || content_length(req).is_some_and(|n| n > drain) {
        return;
    }
    if let Some(stream) = req.body() {
        let _ = read_bounded(stream, 0, drain).await;
    }
}

/// The file in field `media` of a `multipart/form-data` body, parsed by the runtime
/// (`Response.formData()`), with its declared type. No such file: an empty body declared as
/// multipart, which the core refuses naming the field. A body the runtime cannot parse is a 400.
pub(crate) async fn media_part(body: Vec<u8>, content_type: &str) -> Result<(Vec<u8>, Option<String>), Error> {
    let unreadable =
        || Error::InvalidRequest { field: "media".into(), reason: "the multipart body could not be parsed" };
    let headers = web_sys::Headers::new().map_err(|_| Error::Internal("headers"))?;
    let _ = headers.set("content-type", content_type);
    let init = web_sys::ResponseInit::new();
    init.set_headers(&headers);
    // A copy owned by JS: the runtime reads it after this call returns.
    let bytes = Uint8Array::from(body.as_slice());
    drop(body);
    let response =
        web_sys::Response::new_with_opt_js_u8_array_and_init(Some(&bytes), &init).map_err(|_| unreadable())?;
    let form: web_sys::FormData = JsFuture::from(response.form_data().map_err(|_| unreadable())?)
        .await
        .map_err(|_| unreadable())?
        .unchecked_into();
    let entry = form.get("media");
    let Some(file) = entry.dyn_ref::<web_sys::Blob>() else {
        return Ok((Vec::new(), Some(content_type.to_string())));
    };
    let buffer = JsFuture::from(file.array_buffer()).await.map_err(|_| unreadable())?;
    let declared = Some(file.type_()).filter(|t| !t.is_empty());
    Ok((Uint8Array::new(&buffer).to_vec(), declared))
}
