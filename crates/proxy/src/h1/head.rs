//! Response heads from an instance: parsed into spans of the bytes received, and framed
//! (RFC 9112 section 6.3).

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Error, MAX_HEAD, MAX_HEADERS};
use crate::field::tokens;

/// A response head as the instance sent it: the bytes, and where each field is in them.
pub(crate) struct RawHead {
    bytes: Bytes,
    pub status: StatusCode,
    spans: [Span; MAX_HEADERS],
    count: usize,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
}

/// One field of a [`RawHead`]: offset and length of its name and of its value.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u16, u16),
    value: (u16, u16),
}

impl RawHead {
    /// Every field (name, value), in the order received.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans[..self.count].iter().map(|s| {
            let b = &self.bytes[..];
            (
                &b[usize::from(s.name.0)..usize::from(s.name.0) + usize::from(s.name.1)],
                &b[usize::from(s.value.0)..usize::from(s.value.0) + usize::from(s.value.1)],
            )
        })
    }

    pub(super) fn header_map(&self) -> Result<HeaderMap, Error> {
        let mut headers = HeaderMap::with_capacity(self.count);
        for s in &self.spans[..self.count] {
            let (ns, nl, vs, vl) = (
                usize::from(s.name.0),
                usize::from(s.name.1),
                usize::from(s.value.0),
                usize::from(s.value.1),
            );
            let name = HeaderName::from_bytes(&self.bytes[ns..ns + nl])
                .map_err(|_| Error::Malformed("header name"))?;
            // Header values are slices of the head's bytes, not copies.
            let value = HeaderValue::from_maybe_shared(self.bytes.slice(vs..vs + vl))
                .map_err(|_| Error::Malformed("header value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many body bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// The body runs until the instance closes the connection.
    UntilClose,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Parse one response head from the front of `buf` and consume it; `Ok(None)` when more bytes
/// are needed. Interim (1xx) responses are consumed and skipped.
pub(super) fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<RawHead>, Error> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Complete(_)) => return Err(Error::Malformed("head too large")),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Malformed("too many headers"));
            }
            Err(_) => return Err(Error::Malformed("unparsable head")),
        };
        let code = resp.code.unwrap_or(0);
        let version = resp.version.unwrap_or(1);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(Error::Malformed("101 without an upgrade"));
            }
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| Error::Malformed("status code"))?;
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| {
            // A head is at most MAX_HEAD bytes, so offsets fit in u16.
            ((s.as_ptr() as usize - base) as u16, s.len() as u16)
        };
        let mut spans = [Span::default(); MAX_HEADERS];
        let count = resp.headers.len();
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            *span = Span {
                name: at(h.name.as_bytes()),
                value: at(h.value),
            };
        }
        let mut head = RawHead {
            bytes: buf.split_to(len).freeze(),
            status,
            spans,
            count,
            framing: Framing::Done,
            keep_alive: false,
        };
        (head.framing, head.keep_alive) = framing(&head, version, head_request)?;
        return Ok(Some(head));
    }
}

fn framing(head: &RawHead, version: u8, head_request: bool) -> Result<(Framing, bool), Error> {
    let (mut close, mut keep, mut te, mut chunked_last) = (false, false, false, false);
    let mut length: Option<Option<u64>> = None;
    for (name, value) in head.fields() {
        if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(value) {
                close |= t.eq_ignore_ascii_case("close");
                keep |= t.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            if let Some(last) = tokens(value).next_back() {
                chunked_last = last.eq_ignore_ascii_case("chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let mut seen = length.flatten();
            for t in tokens(value) {
                let n = t
                    .parse::<u64>()
                    .ok()
                    .filter(|_| t.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(Error::Malformed("content-length"))?;
                if seen.is_some_and(|l| l != n) {
                    return Err(Error::Malformed("conflicting content-length"));
                }
                seen = Some(n);
            }
            length = Some(seen);
        }
    }
    let mut keep_alive = if version == 0 { keep } else { !close };
    let status = head.status;
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Done
        } else if te {
            if length.is_some() {
                // Both framings: the length is ignored, and so is the connection afterwards.
                keep_alive = false;
            }
            if chunked_last && version == 1 {
                Framing::Chunked(Chunk::Size)
            } else {
                keep_alive = false;
                Framing::UntilClose
            }
        } else if let Some(length) = length {
            Framing::Length(length.ok_or(Error::Malformed("content-length"))?)
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
    Ok((framing, keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, head_request: bool) -> Result<Option<(RawHead, usize)>, Error> {
        let mut buf = BytesMut::from(text);
        parse_head(&mut buf, head_request).map(|h| h.map(|h| (h, buf.len())))
    }

    #[test]
    fn heads_and_framing() {
        let (h, rest) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.header_map().unwrap()["x-a"], "b");
        assert_eq!(
            h.fields().collect::<Vec<_>>(),
            [(&b"Content-Length"[..], &b"5"[..]), (b"X-A", b"b")]
        );
        assert_eq!(rest, 5);

        let (h, _) = parse(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked(Chunk::Size));

        let (h, _) = parse("HTTP/1.0 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);

        let (h, _) = parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Done);

        let (h, _) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);

        assert!(
            parse("HTTP/1.1 200 OK\r\nContent-Le", false)
                .unwrap()
                .is_none()
        );
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", false).is_err());
        assert!(parse("HTTP/1.1 101 Switching\r\n\r\n", false).is_err());
        assert!(parse("garbage\r\n\r\n", false).is_err());
    }
}
