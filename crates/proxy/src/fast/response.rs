//! Response heads on the fast path, written as bytes: an instance's (its fields as received,
//! less the hop-by-hop ones, plus the route's headers and berth's) and berth's own answers.
//!
//! The result is what hyper's server writes for the same response on the other path, field
//! for field (names keep the instance's spelling; HTTP field names are case-insensitive).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;

use crate::body::Body;
use crate::compress::{self, Encoding, Shape};
use crate::field::{self, tokens, visible_ascii};
use crate::h1::RawHead;
use crate::handler::berths_headers;
use crate::headers::HeaderPolicy;

/// What berth adds to every response it writes on the fast path.
pub(crate) struct Extra<'a> {
    /// The route's security headers (`None`: no route, as for berth's own 404).
    pub policy: Option<&'a HeaderPolicy>,
    /// The client connection is TLS.
    pub https: bool,
    pub request_id: &'a HeaderValue,
    /// The connection closes after this response.
    pub close: bool,
}

/// How an instance's body goes to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyOut {
    /// In chunks (its length is not known ahead, or it is compressed on the way).
    pub chunked: bool,
    /// Compressed with this.
    pub encoding: Option<Encoding>,
}

/// The head of an instance's response into `out`. `known_length`: of its body, when known
/// ahead; `accepts`: the encoding the client prefers, used when the response may be
/// compressed (as `compress::maybe_compress` decides on hyper's path).
pub(crate) fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RawHead,
    known_length: Option<u64>,
    accepts: Option<Encoding>,
    extra: &Extra<'_>,
) -> BodyOut {
    let named = |name: &[u8]| {
        head.fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, v)| tokens(v))
            .any(|t| t.as_bytes().eq_ignore_ascii_case(name))
    };
    let has_connection = head
        .fields()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"connection"));
    let applies = |e: &&crate::headers::HeaderEntry| !e.https_only || extra.https;
    let forced = |name: &[u8]| {
        extra.policy.is_some_and(|p| {
            p.entries()
                .iter()
                .filter(applies)
                .any(|e| e.force && e.name.as_str().as_bytes().eq_ignore_ascii_case(name))
        })
    };
    // The instance's fields that go on: all but the hop-by-hop ones and those berth sets;
    // decided once per field (bit i: field i).
    const _: () = assert!(crate::h1::MAX_HEADERS <= 128);
    let mut kept_mask = 0u128;
    for (i, (name, _)) in head.fields().enumerate() {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        let dropped = is("connection")
            || is("keep-alive")
            || is("te")
            || is("trailer")
            || is("transfer-encoding")
            || is("upgrade")
            || (name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-"))
            || is("server")
            || is("x-request-id")
            || (has_connection && named(name))
            || forced(name);
        if !dropped {
            kept_mask |= 1 << i;
        }
    }
    let kept = || {
        head.fields()
            .enumerate()
            .filter(move |(i, _)| kept_mask & (1 << i) != 0)
            .map(|(_, field)| field)
    };
    let mut shape = Shape {
        status: head.status,
        content_type: None,
        encoded: false,
        no_transform: false,
        empty: known_length == Some(0),
        length: None,
    };
    let (mut has_date, mut varies) = (false, false);
    for (name, value) in kept() {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if is("content-type") {
            shape.content_type = shape.content_type.or(visible_ascii(value));
        } else if is("content-encoding") {
            shape.encoded = true;
        } else if is("cache-control") {
            shape.no_transform |= visible_ascii(value).is_some_and(compress::is_no_transform);
        } else if is("content-length") {
            if shape.length.is_none() {
                shape.length = visible_ascii(value).and_then(|s| s.trim().parse().ok());
            }
        } else if is("date") {
            has_date = true;
        } else if is("vary") {
            varies |= tokens(value).any(|t| t == "*" || t.eq_ignore_ascii_case("accept-encoding"));
        }
    }
    shape.length = shape.length.or(known_length);
    let eligible = shape.eligible();
    let encoding = accepts.filter(|_| eligible);
    let body = BodyOut {
        chunked: known_length.is_none() || encoding.is_some(),
        encoding,
    };

    status_line(out, head.status);
    for (name, value) in kept() {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if body.chunked && is("content-length") {
            continue;
        }
        if encoding.is_some() {
            // Byte ranges of the identity body mean nothing for the encoded one, and a strong
            // ETag names exact bytes: only a weak one stays true.
            if is("accept-ranges") {
                continue;
            }
            if is("etag") && value.starts_with(b"\"") {
                out.extend_from_slice(name);
                out.extend_from_slice(b": W/");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
                continue;
            }
        }
        field::write(out, name, value);
    }
    // The representation depends on Accept-Encoding, whether or not this client gets it
    // compressed, so caches must key on it.
    if eligible && !varies {
        field::write(out, b"vary", b"accept-encoding");
    }
    if let Some(encoding) = encoding {
        field::write(out, b"content-encoding", encoding.as_str().as_bytes());
    }
    if let Some(policy) = extra.policy
        && head.status.as_u16() >= 200
    {
        let present = |name: &[u8]| kept().any(|(n, _)| n.eq_ignore_ascii_case(name));
        for e in policy.entries().iter().filter(applies) {
            let Some(value) = &e.value else { continue };
            let name = e.name.as_str().as_bytes();
            // A forced entry's name was left out above; the app's own one wins otherwise.
            if e.force || !present(name) {
                field::write(out, name, value.as_bytes());
            }
        }
    }
    if !has_date {
        date(out);
    }
    finish(out, extra, body.chunked);
    body
}

/// berth's own answer (an error, a rate-limit refusal) as one buffer: head and body.
pub(crate) fn write_own(out: &mut Vec<u8>, resp: Response<Body>, extra: &Extra<'_>) {
    let (mut parts, body) = resp.into_parts();
    // berth's own bodies are whole from the start.
    let body = futures_util::FutureExt::now_or_never(body.collect())
        .and_then(Result::ok)
        .map_or_else(Bytes::new, |c| c.to_bytes());
    let h = &mut parts.headers;
    let status = parts.status.as_u16();
    let id = extra.request_id.clone();
    berths_headers(h, status, extra.policy, extra.https, id, extra.close);
    h.entry(header::CONTENT_LENGTH)
        .or_insert_with(|| HeaderValue::from(body.len()));
    status_line(out, parts.status);
    for (name, value) in h.iter() {
        field::write(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !h.contains_key(header::DATE) {
        date(out);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

/// The fields berth always sets last, and the end of the head.
fn finish(out: &mut Vec<u8>, extra: &Extra<'_>, chunked: bool) {
    out.extend_from_slice(b"server: berth\r\n");
    if extra.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    field::write(out, b"x-request-id", extra.request_id.as_bytes());
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `date: <IMF-fixdate>\r\n`, formatted once a second per thread (as hyper caches it).
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, line)| {
        if *at != secs {
            *at = secs;
            line.clear();
            line.extend_from_slice(b"date: ");
            line.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            line.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    });
}

/// A piece of a chunked body: size line, data, CRLF.
pub(crate) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body (no trailers: none are passed on).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
