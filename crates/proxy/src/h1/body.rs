//! A response body read from an instance's connection by whoever polls it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::head::{Chunk, Framing};
use super::{Conn, Error, Home, MAX_LINE};
use crate::body::BoxError;

/// A response body read from the upstream connection by whoever polls it.
pub(crate) struct ResponseBody {
    /// `None` once the body has ended (the connection is back in the pool or closed).
    pub(super) conn: Option<Conn>,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) home: Option<Home>,
}

impl ResponseBody {
    /// The body is complete: pool the connection if it can carry another request.
    pub(super) fn release(&mut self) {
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

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0;ext=1"), Some(0));
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b"ffffffffffffffff"), None);
    }
}
