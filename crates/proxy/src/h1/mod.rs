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

use bytes::BytesMut;
use http::header::{self, HeaderMap};
use http::{Method, Response, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::idle::{IdlePool, Reusable};

mod body;
mod head;

pub(crate) use body::ResponseBody;
pub(crate) use head::RawHead;
use head::{Framing, parse_head};

/// Largest response head accepted from an instance (offsets into it are `u16`s).
const MAX_HEAD: usize = u16::MAX as usize;
/// Most header fields in a response head (hyper's client default).
pub(crate) const MAX_HEADERS: usize = 100;
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
