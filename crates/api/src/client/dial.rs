//! A daemon reached through a byte stream someone else opens (a [`Dial`]er: berth's SSH
//! transport runs `ssh … berth dial-stdio` and hands over its stdin and stdout).
//!
//! Opening such a stream is dear (a process, a key exchange), so the client keeps one
//! HTTP/1.1 connection and sends its requests one after another on it: a response's
//! [`Body`] gives the connection back when it has been read to its end, and a request sent
//! while another's body is still being read opens a connection of its own. When a
//! connection fails, the dialer is asked why (ssh's exit status and message) before hyper's
//! own error is reported.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::upload::Upload;
use super::{Error, Result};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream to the daemon's control API.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A new connection from a [`Dial`]er.
pub struct Dialed {
    pub stream: Box<dyn Stream>,
    /// Resolves once the connection is over: why, when the dialer can tell (an `ssh` that
    /// exited 255 with its message), else `None`. Awaited only after a request failed;
    /// dropping it may end the connection (the dialer's process is killed).
    pub closed: BoxFuture<'static, Option<BoxError>>,
}

/// A way to reach a daemon other than its socket on this machine.
pub trait Dial: Send + Sync + 'static {
    /// Where the daemon is, as the operator wrote it (`ssh://root@example.com`).
    fn target(&self) -> String;
    /// Open a new connection.
    fn dial(&self) -> BoxFuture<'_, Result<Dialed, BoxError>>;
}

/// How long a failed connection's dialer may take to say why.
const WHY_CLOSED: Duration = Duration::from_secs(5);

/// One HTTP/1.1 connection over a dialed stream.
struct Conn {
    sender: SendRequest<Upload>,
    closed: BoxFuture<'static, Option<BoxError>>,
}

impl Conn {
    /// The dialer's reason the connection failed, else `fallback`.
    async fn why(self, fallback: Error) -> Error {
        drop(self.sender);
        match tokio::time::timeout(WHY_CLOSED, self.closed).await {
            Ok(Some(why)) => Error::Transport(why),
            _ => fallback,
        }
    }
}

type Idle = Arc<Mutex<Option<Conn>>>;

pub(super) struct Dialer {
    dial: Box<dyn Dial>,
    idle: Idle,
}

impl Dialer {
    pub fn new(dial: Box<dyn Dial>) -> Dialer {
        Dialer {
            dial,
            idle: Arc::default(),
        }
    }

    pub fn target(&self) -> String {
        self.dial.target()
    }

    /// Send on the idle connection, or on a new one. A kept connection that turns out to be
    /// gone before the request left (the daemon restarted since) is replaced once.
    pub async fn send(
        &self,
        request: impl Fn() -> Request<Upload>,
    ) -> Result<http::Response<Body>> {
        let kept = take(&self.idle).filter(|c| !c.sender.is_closed());
        let reused = kept.is_some();
        let mut conn = match kept {
            Some(conn) => conn,
            None => self.open().await?,
        };
        let mut sent = send_on(&mut conn, request()).await;
        if reused && matches!(&sent, Err(e) if e.is_canceled()) {
            conn = self.open().await?;
            sent = send_on(&mut conn, request()).await;
        }
        match sent {
            Ok(resp) => {
                let keep = Keep {
                    idle: self.idle.clone(),
                    conn,
                };
                Ok(resp.map(|inner| Body {
                    inner,
                    keep: Some(keep),
                }))
            }
            Err(err) => Err(conn.why(Error::Closed(err)).await),
        }
    }

    async fn open(&self) -> Result<Conn> {
        let dialed = self.dial.dial().await.map_err(Error::Transport)?;
        match hyper::client::conn::http1::handshake(TokioIo::new(dialed.stream)).await {
            Ok((sender, conn)) => {
                tokio::spawn(conn);
                Ok(Conn {
                    sender,
                    closed: dialed.closed,
                })
            }
            Err(err) => match tokio::time::timeout(WHY_CLOSED, dialed.closed).await {
                Ok(Some(why)) => Err(Error::Transport(why)),
                _ => Err(Error::Handshake(err)),
            },
        }
    }
}

async fn send_on(
    conn: &mut Conn,
    request: Request<Upload>,
) -> Result<http::Response<Incoming>, hyper::Error> {
    conn.sender.ready().await?;
    conn.sender.send_request(request).await
}

fn take(idle: &Idle) -> Option<Conn> {
    idle.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// A connection lent to a response, given back to the idle slot when its body ends.
struct Keep {
    idle: Idle,
    conn: Conn,
}

/// A response body. Over a dialed connection, reading it to its end makes the connection
/// free for the next request; dropping it before closes the connection.
pub struct Body {
    inner: Incoming,
    keep: Option<Keep>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("inner", &self.inner)
            .field("keeps_connection", &self.keep.is_some())
            .finish()
    }
}

impl Body {
    /// A body on a connection of its own.
    pub(super) fn once(inner: Incoming) -> Body {
        Body { inner, keep: None }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(keep) = self.keep.take()
        {
            *keep.idle.lock().unwrap_or_else(|p| p.into_inner()) = Some(keep.conn);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
