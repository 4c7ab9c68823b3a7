//! Conditional and range requests: `If-None-Match` / `If-Modified-Since` (304), `Range` and
//! `If-Range` (206, 416).

use std::time::SystemTime;

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};
use http::{HeaderMap, HeaderValue};

/// `If-None-Match` (weak comparison) wins over `If-Modified-Since` (RFC 9110 §13.2.2).
pub(crate) fn not_modified(
    headers: &HeaderMap,
    etag: &HeaderValue,
    mtime: Option<SystemTime>,
) -> bool {
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
pub(crate) fn if_range_holds(
    headers: &HeaderMap,
    etag: &HeaderValue,
    mtime: Option<SystemTime>,
) -> bool {
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
pub(crate) enum ByteRange {
    /// No usable range: serve the whole file with 200.
    Whole,
    /// Inclusive first and last byte.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range: `a-b`, `a-`, `-n`. A syntactically invalid header is ignored (RFC 9110
/// §14.2). Several ranges are answered with the whole file (200), which the RFC allows; a
/// multipart/byteranges body is not worth its complexity for static assets.
pub(crate) fn parse_range(value: &str, len: u64) -> ByteRange {
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
