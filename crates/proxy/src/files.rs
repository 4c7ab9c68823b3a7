//! Static files served by the proxy itself from a release's static directory.
//!
//! Invariants, stated as absences:
//! - no response ever comes from outside `root`: the request path is decoded once, `.`/`..`
//!   segments, backslashes and NUL are refused, and the final file is canonicalized and must
//!   still lie under the canonicalized root (a symlink pointing out of the tree is a 404);
//! - dotfiles (`.env`, `.git/…`) are never served, except under `.well-known/`;
//! - no filesystem path appears in a response; errors are short bodies with `x-berth-error`;
//! - no file is read whole: bodies stream in `CHUNK`-sized pieces.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED,
    LOCATION, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::body::{Body, BoxError};
use crate::compress::{self, Encoding};

/// Read size of the file stream.
const CHUNK: usize = 64 * 1024;

/// For names with a content hash: the bytes behind such a URL never change.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// HTML, and every other name without a hash. A deploy replaces the static directory at once,
/// so an un-hashed URL (`/favicon.ico`, `/robots.txt`, `/logo.png`) may mean new bytes after
/// any deploy; `no-cache` lets browsers keep the copy but revalidate it (a cheap 304 thanks to
/// the ETag), so nobody sees a stale file after a deploy. A max-age would trade that for one
/// saved round trip.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// Serve `rel_path` (the request path after route-prefix handling, still percent-encoded,
/// always starting with '/') from `root` (the static dir inside an immutable release
/// directory).
pub async fn serve(
    root: &Path,
    spa: bool,
    rel_path: &str,
    req: &http::request::Parts,
) -> Response<Body> {
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let Some(path) = RequestPath::parse(rel_path) else {
        return error(StatusCode::BAD_REQUEST, "bad path");
    };
    if path.has_hidden_segment() {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let root = match tokio::fs::canonicalize(root).await {
        Ok(root) => root,
        Err(err) => {
            tracing::warn!(root = %root.display(), error = %err, "static root unavailable");
            return error(StatusCode::NOT_FOUND, "not found");
        }
    };
    match locate(&root, &path).await {
        Located::File(hit) => respond(&root, *hit, req).await,
        Located::Redirect => redirect_to_dir(rel_path, req),
        Located::NotFound if spa && path.lacks_extension() => {
            match open_inside(&root, &root.join("index.html")).await {
                Some(hit) if hit.meta.is_file() => {
                    respond(&root, hit.named("index.html"), req).await
                }
                _ => error(StatusCode::NOT_FOUND, "not found"),
            }
        }
        Located::NotFound => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Whether a file name carries a content hash, so its URL can be cached forever.
///
/// The rule: take the name without its last extension; a *token* is every `.`-separated part
/// after the first, and the text after the last `-` of any part. The name is hashed when a
/// token is at least 8 ASCII letters/digits, has both a digit and a letter (so dates and
/// version numbers are not hashes), and looks machine-made: all its letters are lowercase hex
/// (webpack, Parcel, Next.js), or all uppercase (esbuild), or it mixes cases with an uppercase
/// letter after its first character (Vite's base64). So `app.3f9a1c2b.js`,
/// `index-BX8kP2Qa.css`, `chunk-5JS3F7RA.js` are hashed; `bootstrap5.css`,
/// `jquery-3.6.0.min.js`, `my-component2.js` and `report-20240101.pdf` are not. A miss only
/// costs a revalidation; a false hit would pin a changing file in caches for a year, so the
/// rule leans to "not hashed" (an all-digit hex hash is a rare, harmless miss).
pub fn is_hashed_name(name: &str) -> bool {
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    let after_dots = stem.split('.').skip(1);
    let after_dashes = stem
        .split('.')
        .filter_map(|part| part.rsplit_once('-').map(|(_, token)| token));
    after_dots.chain(after_dashes).any(looks_like_hash)
}

fn looks_like_hash(token: &str) -> bool {
    if token.len() < 8 || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let letters = || token.bytes().filter(u8::is_ascii_alphabetic);
    if !token.bytes().any(|b| b.is_ascii_digit()) || letters().next().is_none() {
        return false;
    }
    let lower_hex = letters().all(|b| matches!(b, b'a'..=b'f'));
    let all_upper = letters().all(|b| b.is_ascii_uppercase());
    let mixed = token.bytes().skip(1).any(|b| b.is_ascii_uppercase())
        && letters().any(|b| b.is_ascii_lowercase());
    lower_hex || all_upper || mixed
}

/// The Content-Type for a file name.
pub fn content_type(name: &str) -> String {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let known = match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    match mime_guess::from_ext(&ext).first() {
        Some(m) if m.type_() == mime_guess::mime::TEXT => format!("{m}; charset=utf-8"),
        Some(m) => m.to_string(),
        None => "application/octet-stream".to_owned(),
    }
}

/// The request path, decoded once and split into safe segments.
struct RequestPath {
    segments: Vec<String>,
    trailing_slash: bool,
}

impl RequestPath {
    /// `None` when the path is malformed or tries to climb: `.`/`..` segments (also encoded,
    /// `%2e%2e`, `..%2f`), backslashes, NUL, or bytes that are not UTF-8.
    fn parse(raw: &str) -> Option<RequestPath> {
        let raw = raw.split(['?', '#']).next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>();
        let decoded = String::from_utf8(decoded).ok()?;
        if decoded.contains(['\\', '\0']) {
            return None;
        }
        let mut segments = Vec::new();
        for seg in decoded.split('/') {
            match seg {
                "" => continue, // `//` and the leading `/`: never an absolute path
                "." | ".." => return None,
                _ => segments.push(seg.to_owned()),
            }
        }
        Some(RequestPath {
            segments,
            trailing_slash: decoded.ends_with('/'),
        })
    }

    fn has_hidden_segment(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.starts_with('.') && s != ".well-known")
    }

    fn lacks_extension(&self) -> bool {
        self.segments
            .last()
            .is_none_or(|s| Path::new(s).extension().is_none())
    }
}

/// An open file known to lie inside the root.
struct Hit {
    real: PathBuf,
    file: File,
    meta: std::fs::Metadata,
    /// The name the client asked for (decides Content-Type and caching), which may differ from
    /// `real` when it is a symlink or an index.
    name: String,
}

impl Hit {
    fn named(mut self, name: &str) -> Hit {
        name.clone_into(&mut self.name);
        self
    }
}

enum Located {
    File(Box<Hit>),
    Redirect,
    NotFound,
}

async fn locate(root: &Path, path: &RequestPath) -> Located {
    let candidate = path
        .segments
        .iter()
        .fold(root.to_path_buf(), |p, s| p.join(s));
    let Some(hit) = open_inside(root, &candidate).await else {
        return Located::NotFound;
    };
    let name = path.segments.last().cloned().unwrap_or_default();
    if hit.meta.is_file() {
        // `/app.js/` names a directory that does not exist.
        if path.trailing_slash {
            return Located::NotFound;
        }
        return Located::File(Box::new(hit.named(&name)));
    }
    if !hit.meta.is_dir() {
        return Located::NotFound;
    }
    if !path.trailing_slash && !path.segments.is_empty() {
        return Located::Redirect;
    }
    match open_inside(root, &hit.real.join("index.html")).await {
        Some(index) if index.meta.is_file() => Located::File(Box::new(index.named("index.html"))),
        _ => Located::NotFound,
    }
}

/// Opens `candidate` if, with every symlink resolved, it is still under `root` (canonical).
async fn open_inside(root: &Path, candidate: &Path) -> Option<Hit> {
    let real = tokio::fs::canonicalize(candidate).await.ok()?;
    if !real.starts_with(root) {
        tracing::debug!("static path resolves outside the root; refused");
        return None;
    }
    // Stat before opening: opening a FIFO or device could block or have side effects.
    let kind = tokio::fs::metadata(&real).await.ok()?.file_type();
    if !kind.is_file() && !kind.is_dir() {
        return None;
    }
    let file = File::open(&real).await.ok()?;
    let meta = file.metadata().await.ok()?;
    Some(Hit {
        real,
        file,
        meta,
        name: String::new(),
    })
}

fn redirect_to_dir(rel_path: &str, req: &http::request::Parts) -> Response<Body> {
    // A relative Location (`./docs/`) stays right whatever prefix the route stripped; `./`
    // keeps a segment like `a:b` from reading as a URI scheme.
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
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    resp
}

async fn respond(root: &Path, hit: Hit, req: &http::request::Parts) -> Response<Body> {
    let content_type = content_type(&hit.name);
    let compressible = compress::is_compressible(&content_type);
    let cache_control = if content_type.starts_with("text/html") || !is_hashed_name(&hit.name) {
        CACHE_REVALIDATE
    } else {
        CACHE_IMMUTABLE
    };
    let wants_range = req.headers.contains_key(RANGE);

    // A precompressed sibling, unless a byte range was asked for: ranges are then served from
    // the identity file, so the same URL never mixes ranges of two representations.
    let mut encoding = None;
    let mut hit = hit;
    if compressible && !wants_range {
        for enc in compress::accepted_encodings(req.headers.get(ACCEPT_ENCODING)) {
            let mut sibling = hit.real.clone().into_os_string();
            sibling.push(enc.file_suffix());
            let sibling = PathBuf::from(sibling);
            if let Some(found) = open_inside(root, &sibling).await
                && found.meta.is_file()
            {
                let name = std::mem::take(&mut hit.name);
                hit = found.named(&name);
                encoding = Some(enc);
                break;
            }
        }
    }

    let len = hit.meta.len();
    let mtime = hit.meta.modified().ok();
    let etag = etag(len, mtime, encoding);
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, etag.clone());
    if let Some(mtime) = mtime {
        insert(&mut headers, LAST_MODIFIED, &httpdate::fmt_http_date(mtime));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if compressible {
        compress::add_vary_accept_encoding(&mut headers);
    }

    if not_modified(&req.headers, &etag, mtime) {
        return with_headers(StatusCode::NOT_MODIFIED, headers, empty());
    }

    insert(&mut headers, CONTENT_TYPE, &content_type);
    if let Some(enc) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(enc.as_str()));
    } else {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    let range = match req.headers.get(RANGE) {
        Some(range) if encoding.is_none() && if_range_holds(&req.headers, &etag, mtime) => {
            parse_range(range.to_str().unwrap_or(""), len)
        }
        _ => ByteRange::Whole,
    };
    let (status, start, count) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, len),
        ByteRange::Part(start, end) => {
            let content_range = format!("bytes {start}-{end}/{len}");
            insert(&mut headers, CONTENT_RANGE, &content_range);
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            headers.remove(CONTENT_TYPE);
            insert(&mut headers, CONTENT_RANGE, &format!("bytes */{len}"));
            return with_headers(
                StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                error_body("range not satisfiable"),
            );
        }
    };
    insert(&mut headers, CONTENT_LENGTH, &count.to_string());

    if req.method == Method::HEAD {
        return with_headers(status, headers, empty());
    }
    let mut file = hit.file;
    if start > 0
        && let Err(err) = file.seek(SeekFrom::Start(start)).await
    {
        tracing::warn!(error = %err, "seek in static file failed");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "read failed");
    }
    let frames = ReaderStream::with_capacity(file.take(count), CHUNK)
        .map_ok(Frame::data)
        .map_err(BoxError::from);
    with_headers(status, headers, StreamBody::new(frames).boxed_unsync())
}

/// A strong validator from size and modification time (nanoseconds), distinct per encoding.
fn etag(len: u64, mtime: Option<SystemTime>, encoding: Option<Encoding>) -> HeaderValue {
    let nanos = mtime
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let suffix = encoding.map_or(String::new(), |e| format!("-{}", e.as_str()));
    HeaderValue::from_str(&format!("\"{len:x}-{nanos:x}{suffix}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `If-None-Match` (weak comparison) wins over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(headers: &HeaderMap, etag: &HeaderValue, mtime: Option<SystemTime>) -> bool {
    if let Some(inm) = headers.get(IF_NONE_MATCH) {
        let ours = opaque(etag.to_str().unwrap_or(""));
        return inm.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || opaque(tag) == ours)
        });
    }
    let since = headers
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    match (since, mtime) {
        (Some(since), Some(mtime)) => seconds(mtime) <= since,
        _ => false,
    }
}

/// `If-Range` needs a strong match: our exact ETag, or exactly our Last-Modified date.
/// Without `If-Range` the range applies.
fn if_range_holds(headers: &HeaderMap, etag: &HeaderValue, mtime: Option<SystemTime>) -> bool {
    let Some(value) = headers.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return headers.get(IF_RANGE).is_none();
    };
    let value = value.trim();
    if value.starts_with('"') {
        return value.as_bytes() == etag.as_bytes();
    }
    match (httpdate::parse_http_date(value), mtime) {
        (Ok(date), Some(mtime)) => seconds(mtime) == date,
        _ => false,
    }
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// HTTP dates have second precision; compare at that precision.
fn seconds(t: SystemTime) -> SystemTime {
    SystemTime::from(httpdate::HttpDate::from(t))
}

#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// No usable range: serve the whole file with 200.
    Whole,
    /// Inclusive first and last byte.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range: `a-b`, `a-`, `-n`. A syntactically invalid header is ignored (RFC 9110
/// §14.2). Several ranges are answered with the whole file (200), which the RFC allows; a
/// multipart/byteranges body is not worth its complexity for static assets.
fn parse_range(value: &str, len: u64) -> ByteRange {
    let Some(spec) = value
        .trim()
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &value.trim()[6..])
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return ByteRange::Whole;
        };
        if suffix == 0 || len == 0 {
            return ByteRange::Unsatisfiable;
        }
        return ByteRange::Part(len.saturating_sub(suffix), len - 1);
    }
    let Ok(start) = first.parse::<u64>() else {
        return ByteRange::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return ByteRange::Whole,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part(start, end.min(len - 1))
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

/// berth's own error: a short plain body and the `x-berth-error` marker.
fn error(status: StatusCode, what: &'static str) -> Response<Body> {
    let mut resp = Response::new(error_body(what));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert("x-berth-error", HeaderValue::from_static(what));
    resp
}

fn error_body(what: &str) -> Body {
    Full::new(Bytes::from(format!("{what}\n")))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
