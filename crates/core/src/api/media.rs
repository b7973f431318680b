//! Uploads, pure: which WeChat upload a request maps to, with the file checked first (its size
//! against the kind's limit, its format from its own bytes ([`Format::sniff`]), not only its
//! declared type).
//!
//! - `POST /api/media?type=image|voice|video|thumb` -> `POST /cgi-bin/media/upload?type=...`
//!   (temporary media: WeChat keeps it 3 days).
//! - `PUT /api/kf/accounts/{kf_account}/avatar` -> `POST /customservice/kfaccount/uploadheadimg`.
//!
//! Both send `multipart/form-data` with the file in field `media`, named after its format
//! (`media.jpg`, ...), encoded by the runtime. The bytes are shared ([`Body::File`]), so the
//! retry after a rejected token resends the very same bytes.

use std::rc::Rc;

use crate::api::admin::kf_account_path;
pub use crate::api::format::Format;
use crate::error::Error;
use crate::http::{query_param, ApiCall, Body, HttpMethod};

/// What can be uploaded, with WeChat's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// WeChat's name (`type=`), or `avatar`.
    pub name: &'static str,
    /// Largest file accepted, in bytes.
    pub limit: usize,
    /// The limit as WeChat documents it.
    pub limit_label: &'static str,
    pub formats: &'static [Format],
}

const MB: usize = 1024 * 1024;

pub const IMAGE: Kind = Kind {
    name: "image",
    limit: 10 * MB,
    limit_label: "10 MB",
    formats: &[Format::Jpeg, Format::Png, Format::Gif, Format::Bmp],
};
pub const VOICE: Kind =
    Kind { name: "voice", limit: 2 * MB, limit_label: "2 MB", formats: &[Format::Amr, Format::Mp3] };
pub const VIDEO: Kind = Kind { name: "video", limit: 10 * MB, limit_label: "10 MB", formats: &[Format::Mp4] };
pub const THUMB: Kind = Kind { name: "thumb", limit: 64 * 1024, limit_label: "64 KB", formats: &[Format::Jpeg] };
pub const AVATAR: Kind = Kind { name: "avatar", limit: 5 * MB, limit_label: "5 MB", formats: &[Format::Jpeg] };

/// The media kinds of `POST /api/media`.
pub const MEDIA_KINDS: [Kind; 4] = [IMAGE, VOICE, VIDEO, THUMB];

/// Whether a `Content-Type` is `multipart/form-data` (the glue then has the runtime parse it).
pub fn is_multipart(content_type: &str) -> bool {
    content_type.trim_start().get(..19).is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
}

/// Room for a multipart envelope around the file (boundaries, part headers, other fields).
pub const ENVELOPE_BYTES: usize = 64 * 1024;

/// The most body bytes any upload route reads: the largest file plus its envelope.
pub const MAX_UPLOAD_BODY_BYTES: usize = 10 * MB + ENVELOPE_BYTES;

/// What an upload request asks for, from its method, path and query alone: its kind, or the
/// error that answers it without reading the body (405, an unknown `type`, a bad `kf_account`).
/// Its body is then read up to the kind's limit plus [`ENVELOPE_BYTES`], no further.
pub fn head(method: &str, path: &str, query: &str) -> Result<Kind, Error> {
    target(method, path, query).map(|(kind, _)| kind)
}

/// An upload route, from the path below `/api`: `Some` for `/media` and
/// `/kf/accounts/{kf_account}/avatar`.
pub fn is_upload_path(path: &str) -> bool {
    path == "/media"
        || (path.starts_with("/kf/accounts/") && path.ends_with("/avatar") && path.matches('/').count() == 4)
}

/// The kind an upload request asks for, as far as the method, path and query tell (`None`
/// when they do not: the request is answered with that error, not with the file's).
pub fn kind_of(path: &str, query: &str) -> Option<Kind> {
    if path == "/media" {
        let name = query_param(query, "type")?;
        MEDIA_KINDS.into_iter().find(|k| k.name == name)
    } else {
        Some(AVATAR)
    }
}

/// The answer to a body over [`MAX_UPLOAD_BODY_BYTES`]: the kind's limit when the request names
/// one, else the largest.
pub fn too_large(path: &str, query: &str) -> Error {
    let kind = kind_of(path, query).unwrap_or(IMAGE);
    Error::FileTooLarge { kind: kind.name, limit: kind.limit, limit_label: kind.limit_label }
}

/// The file of an upload as the glue read it: the body, or the `media` part of a
/// `multipart/form-data` body.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    /// The declared type: the request's `Content-Type`, or the part's. `multipart/form-data`
    /// here means the glue found no file in field `media`.
    pub content_type: Option<&'a str>,
    pub bytes: &'a [u8],
}

/// Maps an upload request (`path` below `/api`) to its WeChat call, with the file checked:
/// 400 (`type`, `kf_account`, an empty file or no `media` part), 413 over the kind's limit, 415
/// when the bytes (or the declared type) are not one of the kind's formats.
pub fn plan(method: &str, path: &str, query: &str, file: File<'_>) -> Result<ApiCall, Error> {
    let (kind, call) = target(method, path, query)?;
    let format = check(kind, file)?;
    Ok(ApiCall {
        method: HttpMethod::Post,
        body: Body::File {
            field: "media",
            filename: format!("media.{}", format.extension()),
            content_type: format.mime().to_string(),
            bytes: Rc::from(file.bytes),
        },
        ..call
    })
}

/// The kind and the WeChat call (without its body) of an upload request.
fn target(method: &str, path: &str, query: &str) -> Result<(Kind, ApiCall), Error> {
    Ok(if path == "/media" {
        if method != "POST" {
            return Err(Error::MethodNotAllowed("POST"));
        }
        let Some(name) = query_param(query, "type").filter(|t| !t.is_empty()) else {
            return Err(invalid("type", "is required: image, voice, video or thumb"));
        };
        let Some(kind) = MEDIA_KINDS.into_iter().find(|k| k.name == name) else {
            return Err(invalid("type", "must be image, voice, video or thumb"));
        };
        (kind, ApiCall::get("/cgi-bin/media/upload").with_query("type", name))
    } else {
        if method != "PUT" {
            return Err(Error::MethodNotAllowed("PUT"));
        }
        let kf = kf_account_path(path.trim_start_matches("/kf/accounts/").trim_end_matches("/avatar"))?;
        (AVATAR, ApiCall::get("/customservice/kfaccount/uploadheadimg").with_query("kf_account", kf))
    })
}

/// The file's format, if the file is one `kind` accepts.
pub fn check(kind: Kind, file: File<'_>) -> Result<Format, Error> {
    let declared = file.content_type.map(str::trim).filter(|t| !t.is_empty());
    if declared.is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data")) {
        return Err(invalid("media", "the multipart body has no file in field media"));
    }
    if file.bytes.is_empty() {
        return Err(invalid("media", "the file is empty"));
    }
    if file.bytes.len() > kind.limit {
        return Err(Error::FileTooLarge { kind: kind.name, limit: kind.limit, limit_label: kind.limit_label });
    }
    let unsupported =
        || Error::UnsupportedMediaType { kind: kind.name, accepted: kind.formats.iter().map(|f| f.mime()).collect() };
    let format = Format::sniff(file.bytes).filter(|f| kind.formats.contains(f)).ok_or_else(unsupported)?;
    // A declared type must agree with the bytes; none (or a generic one) leaves it to them.
    match declared {
        Some(t) if !format.is_named_by(t) && !is_generic(t) => Err(unsupported()),
        _ => Ok(format),
    }
}

/// Types that say nothing about the format (what curl and browsers send for unknown files).
fn is_generic(declared: &str) -> bool {
    let essence = declared.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/octet-stream")
}

fn invalid(field: &str, reason: &'static str) -> Error {
    Error::InvalidRequest { field: field.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn unsupported(kind: &Kind) -> Error {
        Error::UnsupportedMediaType { kind: kind.name, accepted: kind.formats.iter().map(|f| f.mime()).collect() }
    }

    fn file<'a>(content_type: Option<&'a str>, bytes: &'a [u8]) -> File<'a> {
        File { content_type, bytes }
    }

    #[test]
    fn multipart_is_recognised_by_its_media_type_alone() {
        for yes in ["multipart/form-data; boundary=x", "  Multipart/Form-Data;boundary=x", "multipart/form-data"] {
            assert!(is_multipart(yes), "{yes:?}");
        }
        for no in ["multipart/mixed; boundary=x", "image/jpeg", "multipart/form", "", "表单multipart/form-data"] {
            assert!(!is_multipart(no), "{no:?}");
        }
    }

    #[test]
    fn an_image_upload_is_a_multipart_file_named_after_its_format() {
        let call = plan("POST", "/media", "type=image", file(Some("image/png"), PNG)).unwrap();
        assert_eq!(call.method, HttpMethod::Post);
        assert_eq!(call.url("https://api", "T"), "https://api/cgi-bin/media/upload?access_token=T&type=image");
        assert_eq!(
            call.body,
            Body::File {
                field: "media",
                filename: "media.png".into(),
                content_type: "image/png".into(),
                bytes: Rc::from(PNG)
            }
        );
        // No declared type, or a generic one: the bytes decide.
        for declared in [None, Some("application/octet-stream")] {
            let call = plan("POST", "/media", "type=thumb", file(declared, JPEG)).unwrap();
            assert!(matches!(&call.body, Body::File { filename, .. } if filename == "media.jpg"));
        }
    }

    #[test]
    fn an_avatar_goes_to_uploadheadimg_for_the_decoded_account() {
        let call = plan("PUT", "/kf/accounts/kf2001%40gh_1/avatar", "", file(Some("image/jpeg"), JPEG)).unwrap();
        assert_eq!(
            call.url("https://api", "T"),
            "https://api/customservice/kfaccount/uploadheadimg?access_token=T&kf_account=kf2001%40gh_1"
        );
        assert!(matches!(&call.body, Body::File { field: "media", filename, .. } if filename == "media.jpg"));
    }

    #[test]
    fn each_kind_refuses_what_it_cannot_take_with_the_documented_error() {
        let big = |n: usize, head: &[u8]| {
            let mut v = head.to_vec();
            v.resize(n, 0);
            v
        };
        let too_large = |kind: &'static str, limit, limit_label| Error::FileTooLarge { kind, limit, limit_label };
        // (method, path, query, declared type, bytes, the error)
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Vec<u8>, Error);
        let cases: Vec<Case<'_>> = vec![
            ("POST", "/media", "", None, PNG.to_vec(), invalid("type", "is required: image, voice, video or thumb")),
            (
                "POST",
                "/media",
                "type=file",
                None,
                PNG.to_vec(),
                invalid("type", "must be image, voice, video or thumb"),
            ),
            ("PUT", "/media", "type=image", None, PNG.to_vec(), Error::MethodNotAllowed("POST")),
            ("POST", "/kf/accounts/a@b/avatar", "", None, JPEG.to_vec(), Error::MethodNotAllowed("PUT")),
            (
                "PUT",
                "/kf/accounts/nobody/avatar",
                "",
                None,
                JPEG.to_vec(),
                invalid("kf_account", "must look like prefix@account"),
            ),
            ("POST", "/media", "type=image", Some("image/png"), Vec::new(), invalid("media", "the file is empty")),
            (
                "POST",
                "/media",
                "type=image",
                Some("multipart/form-data; boundary=x"),
                Vec::new(),
                invalid("media", "the multipart body has no file in field media"),
            ),
            ("POST", "/media", "type=image", None, big(10 * MB + 1, PNG), too_large("image", 10 * MB, "10 MB")),
            ("POST", "/media", "type=voice", None, big(2 * MB + 1, b"#!AMR\n"), too_large("voice", 2 * MB, "2 MB")),
            ("POST", "/media", "type=thumb", None, big(64 * 1024 + 1, JPEG), too_large("thumb", 64 * 1024, "64 KB")),
            ("PUT", "/kf/accounts/a@b/avatar", "", None, big(5 * MB + 1, JPEG), too_large("avatar", 5 * MB, "5 MB")),
            // A PNG is an image but not a thumb or an avatar.
            ("POST", "/media", "type=thumb", None, PNG.to_vec(), unsupported(&THUMB)),
            ("PUT", "/kf/accounts/a@b/avatar", "", None, PNG.to_vec(), unsupported(&AVATAR)),
            // The header says JPEG, the bytes say SVG: the bytes win.
            ("POST", "/media", "type=image", Some("image/jpeg"), b"<svg/>".to_vec(), unsupported(&IMAGE)),
            // The bytes are a PNG, the header says GIF: refused rather than guessed.
            ("POST", "/media", "type=image", Some("image/gif"), PNG.to_vec(), unsupported(&IMAGE)),
            ("POST", "/media", "type=video", Some("video/mp4"), JPEG.to_vec(), unsupported(&VIDEO)),
        ];
        for (method, path, query, declared, bytes, expected) in cases {
            assert_eq!(
                plan(method, path, query, file(declared, &bytes)).unwrap_err(),
                expected,
                "{method} {path}?{query}"
            );
        }
        // Exactly at the limit is accepted.
        assert!(plan("POST", "/media", "type=thumb", file(None, &big(64 * 1024, JPEG))).is_ok());
    }

    #[test]
    fn upload_paths_and_their_limits_are_known_before_the_body_is_read() {
        assert!(is_upload_path("/media"));
        assert!(is_upload_path("/kf/accounts/a@b/avatar"));
        assert!(!is_upload_path("/kf/accounts/a@b"));
        assert!(!is_upload_path("/kf/accounts/a/b/avatar"));
        assert_eq!(
            too_large("/media", "type=voice"),
            Error::FileTooLarge { kind: "voice", limit: 2 * MB, limit_label: "2 MB" }
        );
        assert_eq!(
            too_large("/media", ""),
            Error::FileTooLarge { kind: "image", limit: 10 * MB, limit_label: "10 MB" }
        );
        assert_eq!(
            too_large("/kf/accounts/a@b/avatar", ""),
            Error::FileTooLarge { kind: "avatar", limit: 5 * MB, limit_label: "5 MB" }
        );
    }
}
