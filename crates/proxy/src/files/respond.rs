//! The answer for one file. First the representation: a precompressed sibling the client
//! accepts, else an encoding made once from the file, else the file compressed on the fly
//! (too large to keep, or the memory budget is spent), else the file itself; ranges are always
//! of the file itself. Then validators (304), ranges (206, 416), and the body from memory or
//! disk. HEAD and GET take the same steps and differ only in the body, so they always describe
//! the same representation.

use std::io::SeekFrom;

use futures_util::TryStreamExt;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION, RANGE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::asset::{Asset, Data, Variant, etag};
use super::conditional::{ByteRange, if_range_holds, not_modified, parse_range};
use super::policy::CachePolicy;
use crate::body::{Body, BoxError, empty_body, full_body};
use crate::compress::{self, Encoding};

/// Read size of a file streamed from disk.
const CHUNK: usize = 64 * 1024;

enum Choice<'a> {
    /// A representation the asset holds (in memory or on disk).
    Stored(&'a Variant),
    /// The file itself, encoded as it is sent.
    OnTheFly(Encoding),
}

async fn choose<'a>(asset: &'a Asset, req: &http::request::Parts) -> Choice<'a> {
    let identity = Choice::Stored(&asset.identity);
    // A range is served from the file itself, so the same URL never mixes ranges of two
    // representations.
    if !asset.compressible || req.headers.contains_key(RANGE) {
        return identity;
    }
    let accepted = compress::accepted_encodings(req.headers.get(ACCEPT_ENCODING));
    if let Some(sibling) = accepted.iter().find_map(|&e| asset.sibling(e)) {
        return Choice::Stored(sibling);
    }
    match accepted.first() {
        Some(&encoding) if asset.identity.len >= compress::MIN_SIZE => {
            match asset.made(encoding).await {
                Some(made) => Choice::Stored(made),
                None => Choice::OnTheFly(encoding),
            }
        }
        _ => identity,
    }
}

pub(crate) async fn respond(
    asset: &Asset,
    policy: &CachePolicy,
    req: &http::request::Parts,
) -> Response<Body> {
    let choice = choose(asset, req).await;
    let (variant, etag, encoding) = match choice {
        Choice::Stored(v) => (v, v.etag.clone(), v.encoding),
        Choice::OnTheFly(e) => {
            let file = &asset.identity;
            (file, etag(file.len, file.mtime, Some(e), true), Some(e))
        }
    };
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(ETAG, etag.clone());
    if let Some(date) = &variant.last_modified {
        headers.insert(LAST_MODIFIED, date.clone());
    }
    if let Some(cache_control) = policy.for_kind(asset.kind) {
        headers.insert(CACHE_CONTROL, cache_control.clone());
    }
    if asset.compressible {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    if not_modified(&req.headers, &etag, variant.mtime) {
        return with_headers(StatusCode::NOT_MODIFIED, headers, empty_body());
    }
    headers.insert(CONTENT_TYPE, asset.content_type.clone());
    match encoding {
        Some(e) => headers.insert(CONTENT_ENCODING, HeaderValue::from_static(e.as_str())),
        None => headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    };
    let head = req.method == Method::HEAD;

    if let Choice::OnTheFly(encoding) = choice {
        // The encoded length is known only once it is sent: no Content-Length, for HEAD too.
        if head {
            return with_headers(StatusCode::OK, headers, empty_body());
        }
        return match body(variant, 0, variant.len).await {
            Ok(body) => with_headers(
                StatusCode::OK,
                headers,
                compress::encode_body(encoding, body),
            ),
            Err(err) => read_failed(&err),
        };
    }

    let len = variant.len;
    let range = match req.headers.get(RANGE) {
        Some(range) if encoding.is_none() && if_range_holds(&req.headers, &etag, variant.mtime) => {
            parse_range(range.to_str().unwrap_or(""), len)
        }
        _ => ByteRange::Whole,
    };
    let (status, start, count) = match range {
        ByteRange::Whole => {
            headers.insert(CONTENT_LENGTH, variant.content_length.clone());
            (StatusCode::OK, 0, len)
        }
        ByteRange::Part(start, end) => {
            let content_range = format!("bytes {start}-{end}/{len}");
            insert(&mut headers, CONTENT_RANGE, &content_range);
            headers.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            headers.remove(CONTENT_TYPE);
            insert(&mut headers, CONTENT_RANGE, &format!("bytes */{len}"));
            let mut resp = error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            resp.headers_mut().extend(headers);
            return resp;
        }
    };
    if head {
        return with_headers(status, headers, empty_body());
    }
    match body(variant, start, count).await {
        Ok(body) => with_headers(status, headers, body),
        Err(err) => read_failed(&err),
    }
}

/// `count` bytes of `variant` from `start`: a slice of memory, or a stream of the file.
async fn body(variant: &Variant, start: u64, count: u64) -> std::io::Result<Body> {
    let path = match &variant.data {
        Data::Memory { bytes, .. } => {
            let (start, end) = (start as usize, (start + count) as usize);
            return Ok(full_body(bytes.slice(start..end)));
        }
        Data::Disk(path) => path,
    };
    let mut file = tokio::fs::File::open(path).await?;
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let frames = ReaderStream::with_capacity(file.take(count), CHUNK)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    Ok(StreamBody::new(frames).boxed_unsync())
}

fn read_failed(err: &std::io::Error) -> Response<Body> {
    tracing::warn!(error = %err, "reading a static file failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "read failed")
}

/// `405` with `Allow`.
pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// `308` to the directory: a relative `Location` (`./docs/`) stays right whatever prefix the
/// route stripped; `./` keeps a segment like `a:b` from reading as a URI scheme.
pub(crate) fn redirect_to_dir(rel_path: &str, req: &http::request::Parts) -> Response<Body> {
    let raw = rel_path.split(['?', '#']).next().unwrap_or("");
    let last = raw.rsplit('/').next().unwrap_or("");
    let mut location = format!("./{last}/");
    if let Some(q) = req.uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let Ok(location) = HeaderValue::from_str(&location) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let mut resp = Response::new(empty_body());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    resp
}

/// berth's own error: a short plain body and the `x-berth-error` marker.
pub(crate) fn error(status: StatusCode, what: &'static str) -> Response<Body> {
    let mut resp = Response::new(full_body(format!("{what}\n")));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-berth-error", HeaderValue::from_static(what));
    resp
}

fn insert(headers: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
