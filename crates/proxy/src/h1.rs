//! A small HTTP/1.1 client for the common case, driven inside the request's own task.
//!
//! A request without a body (and not an upgrade) is written to a pooled upstream connection,
//! and the response is read back by the same task that serves the client: no connection task,
//! no channel, no cross-task wake-up per request. The response body ([`ResponseBody`]) reads
//! straight from the upstream socket and hands the connection back to its instance's pool the
//! moment the last byte of the body is in. Requests with a body and upgrades go through hyper's
//! client (see `handler`), which streams both directions at once.
//!
//! Framing follows RFC 9112 section 6.3: no body for HEAD, 1xx, 204 and 304; chunked when
//! `Transfer-Encoding` ends in `chunked`; `Content-Length`; otherwise up to the close. Only
//! a connection whose response was framed and fully read, with nothing after it, is reused.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::field::tokens;
use crate::idle::{IdlePool, Reusable};

/// Largest response head accepted from an instance (offsets into it are `u16`s).
const MAX_HEAD: usize = u16::MAX as usize;
/// Most header fields in a response head (hyper's client default).
const MAX_HEADERS: usize = 100;
/// Free space ensured in the read buffer before each read.
const READ_SPACE: usize = 8 * 1024;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;

/// One keep-alive HTTP/1.1 connection to an instance.
pub(crate) struct Conn {
    io: TcpStream,
    /// Bytes read from the instance and not consumed yet.
    rbuf: BytesMut,
    /// The request head being written (kept to reuse its allocation).
    wbuf: Vec<u8>,
    /// Has carried a response before: a failure before any byte of the next response may
    /// just mean the instance closed it while it sat idle.
    reused: bool,
}

/// Why a round trip failed.
#[derive(Debug)]
pub(crate) enum Error {
    Io(io::Error),
    /// The connection closed before the response was complete.
    Closed,
    /// The instance spoke invalid HTTP/1.
    Malformed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("connection closed before the response was complete"),
            Error::Malformed(what) => write!(f, "invalid response: {what}"),
        }
    }
}

impl std::error::Error for Error {}

impl Conn {
    pub fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_SPACE),
            wbuf: Vec::with_capacity(512),
            reused: false,
        }
    }

    /// Send a request without a body and read the response head. `Err((error, stale))`:
    /// `stale` when nothing at all came back on a reused connection, so the request may be
    /// sent again on a fresh one if it is idempotent.
    pub async fn round_trip(
        mut self,
        method: &Method,
        target: &str,
        headers: &HeaderMap,
        home: Home,
    ) -> Result<Response<ResponseBody>, (Error, bool)> {
        self.encode(method, target, headers);
        let wbuf = std::mem::take(&mut self.wbuf);
        let sent = self.exchange(&wbuf, *method == Method::HEAD, home).await;
        let (head, mut body) = sent?;
        if let Some(conn) = body.conn.as_mut() {
            conn.wbuf = wbuf;
        }
        let headers = head.header_map().map_err(|err| {
            body.conn = None;
            (err, false)
        })?;
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = headers;
        Ok(resp)
    }

    /// Send `request` (a complete request head, no body) and read the response head; the
    /// body reads the rest and hands the connection `home` at its end. `Err((error, stale))`
    /// as for [`Conn::round_trip`].
    pub async fn exchange(
        mut self,
        request: &[u8],
        head_request: bool,
        home: Home,
    ) -> Result<(RawHead, ResponseBody), (Error, bool)> {
        if let Err(err) = self.io.write_all(request).await {
            return Err((Error::Io(err), self.reused));
        }
        let head = match self.read_head(head_request).await {
            Ok(head) => head,
            Err((err, nothing)) => return Err((err, nothing && self.reused)),
        };
        self.reused = true;
        let mut body = ResponseBody {
            conn: Some(self),
            framing: head.framing,
            keep_alive: head.keep_alive,
            home: Some(home),
        };
        if matches!(body.framing, Framing::Done | Framing::Length(0)) {
            body.framing = Framing::Done;
            body.release();
        }
        Ok((head, body))
    }

    fn encode(&mut self, method: &Method, target: &str, headers: &HeaderMap) {
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(method.as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(target.as_bytes());
        w.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        // Methods that normally carry a body say it is empty (as hyper's client does).
        if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
            && !headers.contains_key(header::CONTENT_LENGTH)
        {
            w.extend_from_slice(b"content-length: 0\r\n");
        }
        w.extend_from_slice(b"\r\n");
    }

    /// Read until a final (non-1xx) response head is complete. `Err((_, true))` when not one
    /// byte of a response arrived.
    async fn read_head(&mut self, head_request: bool) -> Result<RawHead, (Error, bool)> {
        let mut got_any = false;
        loop {
            if !self.rbuf.is_empty() {
                got_any = true;
                match parse_head(&mut self.rbuf, head_request) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) if self.rbuf.len() >= MAX_HEAD => {
                        return Err((Error::Malformed("head too large"), false));
                    }
                    Ok(None) => {}
                    Err(err) => return Err((err, false)),
                }
            }
            self.rbuf.reserve(READ_SPACE);
            match self.io.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err((Error::Closed, !got_any)),
                Ok(_) => {}
                Err(err) => return Err((Error::Io(err), !got_any)),
            }
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.rbuf.reserve(READ_SPACE);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(Box::new(Error::Closed))),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(err)) => Poll::Ready(Err(Box::new(Error::Io(err)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Reusable for Conn {
    /// Is this idle connection still usable? Costs no system call unless the reactor has seen
    /// the socket readable (a close, or bytes nobody asked for: either way it is not reused).
    fn usable(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Where a connection goes back to when its response has been read: its instance's pool,
/// which keeps at most `max_idle`.
pub(crate) struct Home {
    pub pool: Arc<IdlePool<Conn>>,
    pub max_idle: usize,
}

/// A response head as the instance sent it: the bytes, and where each field is in them.
pub(crate) struct RawHead {
    bytes: Bytes,
    pub status: StatusCode,
    spans: [Span; MAX_HEADERS],
    count: usize,
    framing: Framing,
    keep_alive: bool,
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

    fn header_map(&self) -> Result<HeaderMap, Error> {
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
enum Framing {
    /// This many body bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// The body runs until the instance closes the connection.
    UntilClose,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Parse one response head from the front of `buf` and consume it; `Ok(None)` when more bytes
/// are needed. Interim (1xx) responses are consumed and skipped.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<RawHead>, Error> {
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

/// A response body read from the upstream connection by whoever polls it.
pub(crate) struct ResponseBody {
    /// `None` once the body has ended (the connection is back in the pool or closed).
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    home: Option<Home>,
}

impl ResponseBody {
    /// The body is complete: pool the connection if it can carry another request.
    fn release(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if let Some(home) = self.home.take()
            && self.keep_alive
            && conn.rbuf.is_empty()
        {
            home.pool.put(conn, home.max_idle);
        }
    }

    /// The body's length when it is known before it is read (`Content-Length`, or none at all).
    pub fn known_length(&self) -> Option<u64> {
        match self.framing {
            _ if self.conn.is_none() => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of the body; `None` at its end.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.rbuf;
            match self.framing {
                Framing::Done => {
                    self.release();
                    return Poll::Ready(None);
                }
                Framing::Length(remaining) => {
                    if buf.is_empty() {
                        std::task::ready!(conn.poll_fill(cx))?;
                        continue;
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.framing = Framing::Length(remaining - n);
                    if remaining == n {
                        self.framing = Framing::Done;
                        self.release();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Framing::UntilClose => {
                    if !buf.is_empty() {
                        return Poll::Ready(Some(Ok(buf.split().freeze())));
                    }
                    match std::task::ready!(conn.poll_fill(cx)) {
                        Ok(()) => continue,
                        Err(_) => {
                            // The close is the end of this body.
                            self.keep_alive = false;
                            self.framing = Framing::Done;
                        }
                    }
                }
                Framing::Chunked(Chunk::Data(remaining)) => {
                    if buf.is_empty() {
                        std::task::ready!(conn.poll_fill(cx))?;
                        continue;
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.framing = Framing::Chunked(if remaining == n {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(remaining - n)
                    });
                    return Poll::Ready(Some(Ok(data)));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                    } else if buf.starts_with(b"\n") {
                        buf.advance(1);
                    } else if buf.is_empty() || buf[..] == b"\r"[..] {
                        std::task::ready!(conn.poll_fill(cx))?;
                        continue;
                    } else {
                        return Poll::Ready(Some(Err(Box::new(Error::Malformed("chunk end")))));
                    }
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(state @ (Chunk::Size | Chunk::Trailers)) => {
                    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_LINE {
                            return Poll::Ready(Some(Err(Box::new(Error::Malformed(
                                "chunk line too long",
                            )))));
                        }
                        std::task::ready!(conn.poll_fill(cx))?;
                        continue;
                    };
                    let line = buf[..eol].strip_suffix(b"\r").unwrap_or(&buf[..eol]);
                    self.framing = if state == Chunk::Trailers {
                        // Trailer fields are not passed on.
                        if line.is_empty() {
                            Framing::Done
                        } else {
                            Framing::Chunked(Chunk::Trailers)
                        }
                    } else {
                        match chunk_size(line) {
                            Some(0) => Framing::Chunked(Chunk::Trailers),
                            Some(n) => Framing::Chunked(Chunk::Data(n)),
                            None => {
                                return Poll::Ready(Some(Err(Box::new(Error::Malformed(
                                    "chunk size",
                                )))));
                            }
                        }
                    };
                    buf.advance(eol + 1);
                    if self.framing == Framing::Done {
                        self.release();
                        return Poll::Ready(None);
                    }
                }
            }
        }
    }
}

/// The size of a chunk-size line (extensions ignored).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let digits = &line[..end];
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        n = n * 16 + u64::from(char::from(d).to_digit(16)?);
    }
    Some(n)
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.poll_next(cx) {
            Poll::Ready(Some(Err(err))) => {
                // A broken body leaves the connection in an unknown state.
                this.conn = None;
                Poll::Ready(Some(Err(err)))
            }
            other => other.map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            _ if self.conn.is_none() => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
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

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0;ext=1"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b"ffffffffffffffff"), None);
    }
}
