//! A client's request head on the fast path: parsed with `httparse` into spans of the bytes
//! read, checked, and written toward an instance as bytes.
//!
//! [`parse`] takes only requests whose meaning is beyond doubt and leaves every other one to
//! hyper (see the module above): anything hyper might refuse, or that needs more than a head
//! (a body, an upgrade, `Expect`), never gets a different answer here.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Uri};

use crate::compress;
use crate::field::{self, tokens, visible_ascii};
use crate::forward::{self, Forwarding};
use crate::host;

/// Most header fields in a request head on the fast path (hyper takes up to 100).
const MAX_FIELDS: usize = 64;

/// Longest request head on the fast path (offsets into it are `u16`s; hyper takes longer
/// ones, up to `max_header_bytes`). Heads are moved a few times per request: small spans
/// keep those copies short.
const MAX_HEAD: usize = u16::MAX as usize;

/// Offset and length of a piece of the head.
type Piece = (u16, u16);

/// Where a field is in the head.
#[derive(Clone, Copy, Default)]
struct Span {
    name: Piece,
    value: Piece,
}

/// A request head the fast path answers.
pub(crate) struct Head {
    /// The head as received.
    bytes: Bytes,
    pub method: Method,
    target: Piece,
    spans: [Span; MAX_FIELDS],
    count: usize,
    /// The `Host` value (`None`: empty, the `*` routes).
    host: Option<Piece>,
    /// The client said `Connection: close`.
    pub close: bool,
    /// The (first) `Accept-Encoding` value.
    accept_encoding: Option<Piece>,
    /// The (first) `X-Request-Id` value.
    request_id: Option<Piece>,
}

/// What [`parse`] found at the front of the buffer.
#[allow(
    clippy::large_enum_variant,
    reason = "a head is moved once per request; boxing it would allocate per request"
)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    Head(Head),
    /// Not for the fast path: hyper reads it (and answers 400, 431, 417... where it should).
    Other,
}

/// Parse a request head from the front of `buf`; a [`Parsed::Head`] has been taken out of it.
pub(crate) fn parse(buf: &mut BytesMut, max_head: usize) -> Parsed {
    let max_head = max_head.min(MAX_HEAD);
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    if req.version != Some(1) {
        return Parsed::Other;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Other;
    };
    let method = match Method::from_bytes(method.as_bytes()) {
        Ok(Method::CONNECT) | Err(_) => return Parsed::Other,
        Ok(m) => m,
    };
    if !plain_origin_form(target.as_bytes()) {
        return Parsed::Other;
    }
    let base = buf.as_ptr() as usize;
    // A head is at most MAX_HEAD bytes, so offsets fit in u16.
    let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u16, s.len() as u16);
    let mut spans = [Span::default(); MAX_FIELDS];
    let (mut host, mut hosts, mut close) = (None, 0, false);
    let (mut accept_encoding, mut request_id) = (None, None);
    for (span, field) in spans.iter_mut().zip(req.headers.iter()) {
        let (name, value) = (field.name.as_bytes(), field.value);
        *span = Span {
            name: at(name),
            value: at(value),
        };
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                if !host::valid(value) {
                    return Parsed::Other;
                }
                host = (!value.is_empty()).then(|| at(value));
            }
            // A body, an upgrade, or an expectation: hyper's.
            6 if name.eq_ignore_ascii_case(b"expect") => return Parsed::Other,
            7 if name.eq_ignore_ascii_case(b"upgrade") => return Parsed::Other,
            14 if name.eq_ignore_ascii_case(b"content-length") => return Parsed::Other,
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return Parsed::Other,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                close |= tokens(value).any(|t| t.eq_ignore_ascii_case("close"));
            }
            // The first one, as `HeaderMap::get` would give hyper's path.
            15 if name.eq_ignore_ascii_case(b"accept-encoding") && accept_encoding.is_none() => {
                accept_encoding = Some(at(value));
            }
            12 if name.eq_ignore_ascii_case(b"x-request-id") && request_id.is_none() => {
                request_id = Some(at(value));
            }
            _ => {}
        }
    }
    // HTTP/1.1 needs exactly one Host (RFC 9112 section 3.2): hyper's path answers 400.
    if hosts != 1 {
        return Parsed::Other;
    }
    let head = Head {
        target: at(target.as_bytes()),
        count: req.headers.len(),
        method,
        spans,
        host,
        close,
        accept_encoding,
        request_id,
        bytes: Bytes::new(),
    };
    Parsed::Head(Head {
        bytes: buf.split_to(len).freeze(),
        ..head
    })
}

/// An origin-form target (`/path?query`) of bytes `http::Uri` takes in a path and a query
/// alike, and no fragment: `Uri` parses it as it stands.
fn plain_origin_form(target: &[u8]) -> bool {
    target.first() == Some(&b'/')
        && target.len() < usize::from(u16::MAX) - 1
        && target.iter().all(|&b| {
            matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E)
        })
}

impl Head {
    fn slice(&self, (at, len): Piece) -> &[u8] {
        &self.bytes[usize::from(at)..usize::from(at) + usize::from(len)]
    }

    fn text(&self, span: Piece) -> &str {
        // Checked by `plain_origin_form` and `host::valid`: ASCII.
        std::str::from_utf8(self.slice(span)).unwrap_or("")
    }

    /// The head's bytes (to hand them back to hyper).
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The request target (`/path?query`).
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    pub fn host(&self) -> Option<&str> {
        self.host.map(|h| self.text(h))
    }

    /// The `Host` value, shared with the head's bytes.
    pub fn host_value(&self) -> Option<HeaderValue> {
        let (at, len) = self.host?;
        HeaderValue::from_maybe_shared(
            self.bytes
                .slice(usize::from(at)..usize::from(at) + usize::from(len)),
        )
        .ok()
    }

    /// The target as a `Uri` (for the access log), shared with the head's bytes.
    pub fn uri(&self) -> Uri {
        let (at, len) = self.target;
        Uri::from_maybe_shared(
            self.bytes
                .slice(usize::from(at)..usize::from(at) + usize::from(len)),
        )
        .unwrap_or_else(|_| Uri::from_static("/"))
    }

    /// Every field (name, value), in the order received.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans[..self.count]
            .iter()
            .map(|s| (self.slice(s.name), self.slice(s.value)))
    }

    /// The values of the fields named `name` (lowercase), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        let spans = &self.spans[..self.count];
        spans
            .iter()
            .filter(move |s| self.slice(s.name).eq_ignore_ascii_case(name.as_bytes()))
            .map(|s| self.slice(s.value))
    }

    /// The encoding the client prefers for a compressible answer (as
    /// `compress::accepted_encodings` reads its `Accept-Encoding`).
    pub fn preferred_encoding(&self) -> Option<compress::Encoding> {
        let value = visible_ascii(self.slice(self.accept_encoding?))?;
        compress::encodings_in(value).first().copied()
    }

    /// The client's `X-Request-Id` when berth keeps it.
    pub fn request_id(&self) -> Option<HeaderValue> {
        let v = HeaderValue::from_bytes(self.slice(self.request_id?)).ok()?;
        forward::acceptable_request_id(&v).then_some(v)
    }

    /// Write the request toward an instance into `out`: the request line with `target`,
    /// every field but the hop-by-hop ones and berth's own, then berth's (as
    /// `forward::strip_hop_by_hop` and [`Forwarding::apply`] leave a `HeaderMap`).
    pub fn write_upstream(&self, out: &mut Vec<u8>, target: &str, fwd: &Forwarding<'_>) {
        out.clear();
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        // The fields `Connection` names are hop-by-hop too.
        let mut named: [&[u8]; 8] = [b""; 8];
        let mut named_count = 0;
        let mut named_overflow = false;
        for v in self.values("connection") {
            for t in tokens(v) {
                if named_count < named.len() {
                    named[named_count] = t.as_bytes();
                    named_count += 1;
                } else {
                    named_overflow = true;
                }
            }
        }
        let is_named = |name: &[u8]| {
            named[..named_count]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
                || (named_overflow
                    && self
                        .values("connection")
                        .flat_map(tokens)
                        .any(|t| t.as_bytes().eq_ignore_ascii_case(name)))
        };
        let (mut xff, mut forwarded) = (None, None);
        for (name, value) in self.fields() {
            let lower = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
            if lower("connection")
                || lower("keep-alive")
                || lower("te")
                || lower("trailer")
                || lower("transfer-encoding")
                || lower("upgrade")
                || (name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-"))
                || is_named(name)
            {
                continue;
            }
            if lower("x-forwarded-for") {
                xff.get_or_insert(value);
                continue;
            }
            if lower("forwarded") {
                forwarded.get_or_insert(value);
                continue;
            }
            // An empty `Host` stays as it came (there is no host to set).
            if (lower("host") && fwd.host.is_some())
                || lower("x-forwarded-proto")
                || lower("x-forwarded-host")
                || lower("x-real-ip")
                || lower("x-request-id")
            {
                continue;
            }
            field::write(out, name, value);
        }
        if let Some(host) = fwd.host {
            field::write(out, b"host", host.as_bytes());
        }
        let peer = fwd.peer;
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(prev) = xff {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(peer.xff.as_bytes());
        out.extend_from_slice(b"\r\n");
        field::write(out, b"x-forwarded-proto", fwd.proto.as_bytes());
        out.extend_from_slice(b"x-real-ip: ");
        if fwd.client == peer.ip {
            out.extend_from_slice(peer.xff.as_bytes());
        } else {
            write_ip(out, fwd.client);
        }
        out.extend_from_slice(b"\r\n");
        field::write(out, b"x-request-id", fwd.request_id.as_bytes());
        out.extend_from_slice(b"forwarded: ");
        if let Some(prev) = forwarded.and_then(visible_ascii) {
            out.extend_from_slice(prev.as_bytes());
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(peer.forwarded_for.as_bytes());
        if let Some(host) = fwd.host {
            // A valid host has no `"` or `\`.
            out.extend_from_slice(b";host=\"");
            out.extend_from_slice(host.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b";proto=");
        out.extend_from_slice(fwd.proto.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(host) = fwd.host {
            field::write(out, b"x-forwarded-host", host.as_bytes());
        }
        // Methods that normally carry a body say it is empty (as hyper's client does); a
        // request with a `Content-Length` is not on the fast path.
        if matches!(self.method, Method::POST | Method::PUT | Method::PATCH) {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    use std::io::Write as _;
    let _ = write!(out, "{ip}");
}
