//! The HTTP/1.1 fast path: the common request (a head, no body, to a service route) read,
//! forwarded and answered as bytes, in the connection's own task, without hyper's server.
//!
//! A connection starts here. Each request head is parsed with `httparse` into spans of one
//! reused read buffer ([`request`]), routed on `&str` host and path, written toward the
//! instance straight into a buffer, and sent on the inline client (`h1`); the response head
//! comes back as spans too and goes to the client with the route's headers added
//! ([`response`]), in one write with the first body bytes.
//!
//! An answer the client may get compressed (`compress::Shape`) is compressed on the way, by
//! the same streaming encoders as on hyper's path, and sent in chunks.
//!
//! Everything else goes to hyper, for the rest of the connection: a request with a body, an
//! upgrade (WebSocket), `Expect`, HTTP/1.0, h2c, a static route, a redirect, maintenance, an
//! ACME challenge, no route, or any head the fast path does not take as it stands (hyper then answers 400, 431... exactly as before). The hand-over
//! happens before a byte of the answer is written: hyper reads the connection through a
//! [`Rewind`] that first replays what the fast path had read.
//!
//! Per request there is no task, no channel and no timer: the connection's one deadline
//! (idle, head read, closing) is re-armed only when it fires, and shutdown and cut are watched
//! at the cost of an atomic load.

mod request;
mod response;
mod rewind;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::{Body, BoxError};
use crate::clientip::client_ip_from;
use crate::compress;
use crate::conn::{CLOSING_IDLE, ConnShared};
use crate::error::ProxyError;
use crate::forward::Forwarding;
use crate::h1;
use crate::metrics::UpstreamErrors;
use crate::proxy::Proxy;
use crate::ratelimit::retry_after_secs;
use crate::record::Record;
use crate::relay::{connect_any, inline_failed};
use crate::table::Target;
use crate::upstream::{InflightGuard, Pool};

pub(crate) use rewind::Rewind;

use request::{Head, Parsed};
use response::Extra;

/// Free space ensured in the read buffer before each read.
const READ_SPACE: usize = 4 * 1024;
/// Body bytes gathered behind the response head before the first write.
const FIRST_WRITE: usize = 64 * 1024;

/// How a connection left the fast path.
pub(crate) enum Outcome {
    /// It is finished (closed by either side, timed out, or cut).
    Done,
    /// hyper serves the rest, starting with these bytes already read.
    HandOver(BytesMut),
}

/// What one request on the fast path came to.
enum Answered {
    KeepAlive,
    Close,
    /// Not the fast path's: hyper answers it (the head's bytes go back in front of the rest).
    HandOver(Bytes),
}

/// A cancellation watched for an atomic load per poll: the token's future is polled once,
/// which registers the task's waker; a cancel wakes the task and `is_cancelled` tells.
struct Watch {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: bool,
}

impl Watch {
    fn new(token: &CancellationToken) -> Watch {
        Watch {
            token: token.clone(),
            wait: Box::pin(token.clone().cancelled_owned()),
            registered: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.registered {
            self.registered = true;
            return self.wait.as_mut().poll(cx).is_ready();
        }
        self.token.is_cancelled()
    }
}

/// The connection's one timer: while it waits for a request head, `limit` after the last
/// response (after the connection opened, for the first), [`CLOSING_IDLE`] once the listener
/// is shutting down; while it waits for an instance, the response deadline. It is re-armed
/// only when it fires early or a nearer deadline comes: no timer is inserted per request.
struct Clock {
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    since: Instant,
    shutdown: Watch,
    closing: bool,
}

impl Clock {
    /// Whether the wait for a head is over (polled only when no byte is there to read).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.closing && self.shutdown.poll(cx) {
            self.closing = true;
            self.limit = self.limit.min(CLOSING_IDLE);
        }
        self.passed(cx, self.since + self.limit)
    }

    /// Whether `due` has passed; wakes the task when it does.
    fn passed(&mut self, cx: &mut Context<'_>, due: Instant) -> bool {
        let due = tokio::time::Instant::from_std(due);
        if self.sleep.deadline() > due {
            self.sleep.as_mut().reset(due);
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= due {
                return true;
            }
            // Armed for an earlier deadline: re-armed for this one.
            self.sleep.as_mut().reset(due);
        }
        false
    }

    /// `fut`, or `None` once `due` has passed.
    async fn within<F: Future>(&mut self, due: Instant, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if self.passed(cx, due) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await
    }
}

/// A request on its way to one of a service's instances.
struct Trip<'a> {
    pool: &'a Pool,
    errors: &'a UpstreamErrors,
    client: std::net::IpAddr,
    head: &'a Head,
    /// The request head toward the instance.
    request: &'a [u8],
}

/// The bytes a connection carries between requests.
struct Bufs {
    read: BytesMut,
    write: Vec<u8>,
    /// The request head toward the instance.
    up: Vec<u8>,
}

impl Proxy {
    /// Serve `io` on the fast path until it ends or a request needs hyper.
    pub(crate) async fn serve_fast<I>(&self, io: &mut I, conn: &Arc<ConnShared>) -> Outcome
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let mut cut = Watch::new(&conn.serve.cut);
        let mut serve = std::pin::pin!(self.serve_requests(io, conn));
        poll_fn(|cx| {
            if cut.poll(cx) {
                return Poll::Ready(Outcome::Done);
            }
            serve.as_mut().poll(cx)
        })
        .await
    }

    async fn serve_requests<I>(&self, io: &mut I, conn: &Arc<ConnShared>) -> Outcome
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let limit = self
            .config
            .header_read_timeout
            .min(self.config.idle_timeout);
        let since = Instant::now();
        let mut clock = Clock {
            sleep: Box::pin(tokio::time::sleep_until((since + limit).into())),
            limit,
            since,
            shutdown: Watch::new(&conn.serve.shutdown),
            closing: false,
        };
        let mut bufs = Bufs {
            read: BytesMut::with_capacity(READ_SPACE),
            write: Vec::with_capacity(4096),
            up: Vec::with_capacity(1024),
        };
        loop {
            let head = loop {
                if !bufs.read.is_empty() {
                    match request::parse(&mut bufs.read, self.config.max_header_bytes) {
                        Parsed::Head(head) => break head,
                        Parsed::Other => return Outcome::HandOver(bufs.read),
                        Parsed::Partial => {}
                    }
                }
                bufs.read.reserve(READ_SPACE);
                let read = poll_fn(|cx| {
                    match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut bufs.read) {
                        Poll::Ready(res) => Poll::Ready(Some(res)),
                        Poll::Pending if clock.expired(cx) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await;
                match read {
                    Some(Ok(n)) if n > 0 => {}
                    // Closed, failed, or silent past the deadline: nothing to answer.
                    _ => return Outcome::Done,
                }
            };
            match self.answer(io, head, conn, &mut bufs, &mut clock).await {
                Answered::KeepAlive => clock.since = Instant::now(),
                Answered::Close => {
                    rewind::linger(io).await;
                    return Outcome::Done;
                }
                Answered::HandOver(head) => {
                    let mut read = BytesMut::from(&head[..]);
                    read.extend_from_slice(&bufs.read);
                    return Outcome::HandOver(read);
                }
            }
        }
    }

    /// One request: handed over when hyper's path must answer it, else forwarded and its
    /// answer written.
    async fn answer<I>(
        &self,
        io: &mut I,
        head: Head,
        conn: &Arc<ConnShared>,
        bufs: &mut Bufs,
        clock: &mut Clock,
    ) -> Answered
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let table = self.table();
        let on_http = conn.proto == "http";
        let path = head.path();
        let Some(entry) = table.lookup(head.host(), path) else {
            return Answered::HandOver(head.into_bytes());
        };
        let route = &entry.route;
        let Target::Service(pool) = &route.target else {
            return Answered::HandOver(head.into_bytes());
        };
        if route.maintenance.is_some()
            || (on_http && tls::Http01Challenges::is_challenge_path(path))
            || (on_http
                && route.https_redirect
                && self.config.https_port.is_some()
                && self.has_certificate_for(head.host()))
        {
            return Answered::HandOver(head.into_bytes());
        }

        let request_id = head.request_id().unwrap_or_else(|| self.ids.next());
        let mut record = self.record(
            conn,
            Instant::now(),
            request_id.clone(),
            head.method.clone(),
            head.uri(),
        );
        record.host = head.host_value();
        record.metrics = Some(entry.metrics.clone());
        record.route = Some(entry.label.clone());
        let client = client_ip_from(
            conn.client.ip,
            head.values("x-forwarded-for"),
            &route.trusted_proxies,
        );
        // `close` is decided when the answer is written: a shutdown may begin while the
        // instance answers, and then this answer is the connection's last.
        let mut extra = Extra {
            policy: Some(&route.headers),
            https: conn.proto == "https",
            request_id: &request_id,
            close: head.close,
        };
        let w = &mut bufs.write;
        w.clear();
        if let Some(zone) = &entry.zone
            && let Err(wait) = zone.check(client)
        {
            let err = ProxyError::RateLimited;
            record.error = Some(err.marker());
            let mut resp = err.response();
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
            record.status = resp.status().as_u16();
            extra.close |= conn.closing();
            response::write_own(w, resp, &extra);
            return finish(io, w, record, extra.close).await;
        }

        let target = upstream_target(head.target(), entry.strip_len);
        let forwarding = Forwarding {
            peer: &conn.client,
            client,
            host: record.host.as_ref(),
            proto: conn.proto,
            request_id: &request_id,
        };
        head.write_upstream(&mut bufs.up, &target, &forwarding);
        let sent = self
            .exchange(
                Trip {
                    pool,
                    errors: &entry.errors,
                    client,
                    head: &head,
                    request: &bufs.up,
                },
                &mut record,
                clock,
            )
            .await;
        let (up_head, body) = match sent {
            Ok(got) => got,
            Err(err) => {
                record.error = Some(err.marker());
                let resp = err.response();
                record.status = resp.status().as_u16();
                extra.close |= conn.closing();
                response::write_own(w, resp, &extra);
                return finish(io, w, record, extra.close).await;
            }
        };
        extra.close |= conn.closing();
        record.status = up_head.status.as_u16();
        let known = body.known_length();
        let out =
            response::write_upstream_head(w, &up_head, known, head.preferred_encoding(), &extra);
        drop(up_head);
        let mut source = match out.encoding {
            None => Source::Plain(body),
            Some(encoding) => {
                Source::Encoded(compress::encode_body(encoding, BodyExt::boxed_unsync(body)))
            }
        };
        // The body bytes already here go out with the head, in one write.
        let mut ended = known == Some(0) && out.encoding.is_none();
        while !ended && w.len() < FIRST_WRITE {
            match poll_fn(|cx| Poll::Ready(source.poll_next(cx))).await {
                Poll::Ready(Some(Ok(data))) => {
                    record.bytes += data.len() as u64;
                    push(w, &data, out.chunked);
                }
                Poll::Ready(None) => ended = true,
                Poll::Ready(Some(Err(_))) => return cut_short(io, w, record).await,
                Poll::Pending => break,
            }
        }
        loop {
            if ended {
                if out.chunked {
                    w.extend_from_slice(response::LAST_CHUNK);
                }
                // Accounted before the client has the whole answer (as on hyper's path).
                record.clean_end = true;
                return finish(io, w, record, extra.close).await;
            }
            if io.write_all(w).await.is_err() {
                return Answered::Close;
            }
            w.clear();
            match poll_fn(|cx| source.poll_next(cx)).await {
                Some(Ok(data)) if !out.chunked && w.is_empty() => {
                    // Large pieces of a body of known length go out as they are.
                    record.bytes += data.len() as u64;
                    if io.write_all(&data).await.is_err() {
                        return Answered::Close;
                    }
                }
                Some(Ok(data)) => {
                    record.bytes += data.len() as u64;
                    push(w, &data, out.chunked);
                }
                None => ended = true,
                Some(Err(_)) => return cut_short(io, w, record).await,
            }
        }
    }

    /// The request on one of the route's instances through the inline client; a connect
    /// failure of an idempotent request is retried once on another instance, and a reused
    /// connection the instance had closed, once on a fresh one (as `relay` does).
    async fn exchange(
        &self,
        trip: Trip<'_>,
        record: &mut Record,
        clock: &mut Clock,
    ) -> Result<(h1::RawHead, h1::ResponseBody), ProxyError> {
        let Trip {
            pool,
            errors,
            client,
            head,
            request,
        } = trip;
        let cfg = &self.config;
        // GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 section 9.2.2).
        let idempotent = head.method.is_idempotent();
        let group = pool.group(client);
        let first = group.pick(None).ok_or(ProxyError::NoInstances)?;
        record.upstream = Some(InflightGuard::new(first));
        let deadline = Instant::now() + cfg.response_timeout;
        let (conn, up) = connect_any(group, first, idempotent, record, errors, |u| {
            self.checkout_inline(u)
        })
        .await?;
        let head_request = head.method == Method::HEAD;
        let home = || h1::Home {
            pool: up.inline().clone(),
            max_idle: cfg.upstream_max_idle,
        };
        let mut res = clock
            .within(deadline, conn.exchange(request, head_request, home()))
            .await;
        if let Some(Err((_, true))) = &res
            && idempotent
        {
            let conn = self.redial(&up, errors).await?;
            res = clock
                .within(deadline, conn.exchange(request, head_request, home()))
                .await;
        }
        match res {
            None => Err(inline_failed(&up, errors, None)),
            Some(Ok(got)) => Ok(got),
            Some(Err((err, _))) => Err(inline_failed(&up, errors, Some(err))),
        }
    }
}

/// An instance's body as it goes to the client: as read, or compressed on the way.
enum Source {
    Plain(h1::ResponseBody),
    Encoded(Body),
}

impl Source {
    /// The next piece (never empty); `None` at the end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> {
        match self {
            Source::Plain(body) => body.poll_next(cx),
            Source::Encoded(body) => loop {
                match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
                    None => return Poll::Ready(None),
                    Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                    // Trailers, and empty pieces (a chunk of size 0 would end the body).
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                        _ => {}
                    },
                }
            },
        }
    }
}

/// A piece of a body into the write buffer, in a chunk when `chunked`.
fn push(w: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        response::chunk(w, data);
    } else {
        w.extend_from_slice(data);
    }
}

/// Account for the request, then write the last of its answer (all of it, for berth's own).
async fn finish<I>(io: &mut I, w: &[u8], record: Record, close: bool) -> Answered
where
    I: AsyncWrite + Unpin,
{
    drop(record);
    let sent = io.write_all(w).await;
    if sent.is_err() || close {
        Answered::Close
    } else {
        Answered::KeepAlive
    }
}

/// The instance broke off a body: what was gathered goes out, then the connection closes
/// (the client sees the body end short, as on hyper's path).
async fn cut_short<I>(io: &mut I, w: &[u8], mut record: Record) -> Answered
where
    I: AsyncWrite + Unpin,
{
    record.error.get_or_insert("response body cut");
    let _ = io.write_all(w).await;
    Answered::Close
}

/// The target toward the instance: the client's, with the route prefix removed when asked.
fn upstream_target(target: &str, strip_len: usize) -> std::borrow::Cow<'_, str> {
    if strip_len == 0 {
        return target.into();
    }
    let rest = target.get(strip_len..).unwrap_or("");
    if rest.starts_with('/') {
        rest.into()
    } else {
        format!("/{rest}").into()
    }
}

#[cfg(test)]
mod tests;
