//! One request to one of a service's instances: a request without a body through the inline
//! client (`h1`), one with a body through hyper's client, a WebSocket spliced (`splice`) until
//! either side closes. A connect failure of an idempotent request is retried once on another
//! instance.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::body::{Body, BoxError, empty_body};
use crate::clientip::client_ip;
use crate::conn::ConnShared;
use crate::error::ProxyError;
use crate::forward;
use crate::h1;
use crate::metrics::UpstreamErrors;
use crate::proxy::Proxy;
use crate::record::Record;
use crate::splice;
use crate::table::Entry;
use crate::upstream::{ConnectError, Group, InflightGuard, Pool, Upstream, WebSocketGuard};

type Result<T> = std::result::Result<T, ProxyError>;

impl Proxy {
    /// A request to one of the route's instances.
    pub(crate) async fn forward(
        &self,
        pool: &Arc<Pool>,
        entry: &Entry,
        mut req: Request<Incoming>,
        conn: &ConnShared,
        record: &mut Record,
        host: Option<&HeaderValue>,
    ) -> Result<Response<Body>> {
        let cfg = &self.config;
        let limit = entry.route.max_body.unwrap_or(cfg.max_body);
        let declared = match req.headers().get(header::CONTENT_LENGTH) {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(ProxyError::BadRequest)?,
            ),
            None => None,
        };
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::BodyTooLarge);
        }
        let upgrade = is_websocket_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, incoming) = req.into_parts();

        let uri = upstream_uri(&parts.uri, entry.strip_len);
        // Who the client is, before stripping can take a hop-by-hop X-Forwarded-For away.
        let client = client_ip(conn.client.ip, &parts.headers, &entry.route.trusted_proxies);
        forward::strip_hop_by_hop(&mut parts.headers, upgrade);
        forward::Forwarding {
            peer: &conn.client,
            client,
            host,
            proto: conn.proto,
            request_id: &record.request_id,
        }
        .apply(&mut parts.headers);

        let exceeded = Arc::new(AtomicBool::new(false));
        let bodyless = incoming.is_end_stream();
        let body: Body = if bodyless {
            empty_body()
        } else if declared.is_some() {
            // hyper holds the client to its Content-Length, which is within the limit.
            incoming.map_err(Into::into).boxed_unsync()
        } else {
            Limited {
                inner: incoming,
                remaining: limit,
                exceeded: exceeded.clone(),
            }
            .boxed_unsync()
        };
        // GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 section 9.2.2).
        let idempotent = parts.method.is_idempotent();
        let errors = &entry.errors;
        let pool = pool.group(client);
        let first = pool.pick(None).ok_or(ProxyError::NoInstances)?;
        record.upstream = Some(InflightGuard::new(first));
        let deadline = tokio::time::Instant::now() + cfg.response_timeout;

        if bodyless && client_upgrade.is_none() && parts.method != Method::CONNECT {
            return self
                .forward_inline(
                    pool, first, idempotent, &parts, &uri, record, errors, deadline,
                )
                .await;
        }

        let mut up_req = Request::new(body);
        *up_req.method_mut() = parts.method;
        *up_req.uri_mut() = uri;
        *up_req.headers_mut() = parts.headers;
        *up_req.version_mut() = Version::HTTP_11;

        if let Some(client_upgrade) = client_upgrade {
            let up = first.clone();
            return self
                .forward_upgrade(&up, up_req, client_upgrade, conn, deadline)
                .await;
        }

        let (mut tx, up) = connect_any(pool, first, idempotent, record, errors, |u| {
            self.checkout(u)
        })
        .await?;

        let sent = tokio::time::timeout_at(deadline, tx.try_send_request(up_req)).await;
        let resp = match sent {
            Err(_) => {
                errors.timeout.fetch_add(1, Relaxed);
                return Err(ProxyError::Timeout);
            }
            Ok(Ok(resp)) => resp,
            Ok(Err(mut err)) => match err.take_message() {
                // The pooled connection closed before the request went out: nothing was
                // sent, so any method may go again on a fresh connection.
                Some(up_req) => {
                    tx = up.connect(cfg.connect_timeout).await.map_err(|e| {
                        errors.connect.fetch_add(1, Relaxed);
                        tracing::warn!(upstream = %up.id, error = %e, "upstream reconnect failed");
                        ProxyError::ConnectFailed
                    })?;
                    match tokio::time::timeout_at(deadline, tx.send_request(up_req)).await {
                        Err(_) => {
                            errors.timeout.fetch_add(1, Relaxed);
                            return Err(ProxyError::Timeout);
                        }
                        Ok(Ok(resp)) => resp,
                        Ok(Err(e)) => return Err(self.send_failed(&up, &e, &exceeded, errors)),
                    }
                }
                None => return Err(self.send_failed(&up, err.error(), &exceeded, errors)),
            },
        };
        if bodyless {
            // Back to the pool when the response body ends (see `Record`): no extra task.
            record.pooled = Some(tx);
        } else {
            // The request body may still be streaming: wait for the connection in a task.
            let max_idle = cfg.upstream_max_idle;
            tokio::spawn(async move {
                if tx.ready().await.is_ok() {
                    up.idle.put(tx, max_idle);
                }
            });
        }
        Ok(finish_response(resp, false))
    }

    /// A request without a body, through the inline client (`h1`): this task writes it and
    /// reads the response; the body hands the connection back to the pool at its end.
    #[allow(clippy::too_many_arguments)]
    async fn forward_inline(
        &self,
        pool: &Group,
        first: &Arc<Upstream>,
        idempotent: bool,
        parts: &http::request::Parts,
        uri: &Uri,
        record: &mut Record,
        errors: &UpstreamErrors,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Body>> {
        let cfg = &self.config;
        let (conn, up) = connect_any(pool, first, idempotent, record, errors, |u| {
            self.checkout_inline(u)
        })
        .await?;
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let home = || h1::Home {
            pool: up.inline().clone(),
            max_idle: cfg.upstream_max_idle,
        };
        let trip = |conn: h1::Conn| {
            tokio::time::timeout_at(
                deadline,
                conn.round_trip(&parts.method, target, &parts.headers, home()),
            )
        };
        let mut res = trip(conn).await;
        if let Ok(Err((_, true))) = &res
            && idempotent
        {
            res = trip(self.redial(&up, errors).await?).await;
        }
        match res {
            Err(_) => Err(inline_failed(&up, errors, None)),
            Ok(Ok(resp)) => Ok(finish_response(resp, false)),
            Ok(Err((err, _))) => Err(inline_failed(&up, errors, Some(err))),
        }
    }

    /// A fresh connection to `up` for a request whose pooled connection the instance had
    /// closed while idle (nothing was answered, so it may go again).
    pub(crate) async fn redial(&self, up: &Upstream, errors: &UpstreamErrors) -> Result<h1::Conn> {
        match up.dial(self.config.connect_timeout).await {
            Ok(conn) => Ok(h1::Conn::new(conn)),
            Err(e) => {
                errors.connect.fetch_add(1, Relaxed);
                tracing::warn!(upstream = %up.id, error = %e, "upstream reconnect failed");
                Err(ProxyError::ConnectFailed)
            }
        }
    }

    fn send_failed(
        &self,
        up: &Upstream,
        err: &hyper::Error,
        exceeded: &AtomicBool,
        errors: &UpstreamErrors,
    ) -> ProxyError {
        if exceeded.load(Relaxed) {
            return ProxyError::BodyTooLarge;
        }
        if err.is_user() || err.is_body_write_aborted() {
            // The client's body broke off; not the instance's fault.
            return ProxyError::BadRequest;
        }
        errors.protocol.fetch_add(1, Relaxed);
        tracing::warn!(upstream = %up.id, error = %err, "upstream request failed");
        ProxyError::BadResponse
    }

    /// An idle connection of hyper's client to `up`, or a new one.
    async fn checkout(
        &self,
        up: &Arc<Upstream>,
    ) -> std::result::Result<http1::SendRequest<Body>, ConnectError> {
        while let Some(mut tx) = up.idle.take(self.config.upstream_idle_timeout) {
            if tx.is_ready() {
                return Ok(tx);
            }
            // Returned right after its response ended: its driver task is about to mark it ready.
            if let Ok(Ok(())) =
                tokio::time::timeout(std::time::Duration::from_secs(1), tx.ready()).await
            {
                return Ok(tx);
            }
        }
        up.connect(self.config.connect_timeout).await
    }

    /// An idle connection of the inline client to `up`, or a new one.
    pub(crate) async fn checkout_inline(
        &self,
        up: &Arc<Upstream>,
    ) -> std::result::Result<h1::Conn, ConnectError> {
        match up.inline().take(self.config.upstream_idle_timeout) {
            Some(conn) => Ok(conn),
            None => Ok(h1::Conn::new(up.dial(self.config.connect_timeout).await?)),
        }
    }

    /// A WebSocket: its own upstream connection; on 101 both upgraded streams are spliced
    /// (`splice`) until either side closes, or the instance is drained past its grace, or the
    /// listener shuts down past its grace (then both sides get a close frame, 1001).
    async fn forward_upgrade(
        &self,
        up: &Arc<Upstream>,
        up_req: Request<Body>,
        client_upgrade: hyper::upgrade::OnUpgrade,
        conn: &ConnShared,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Body>> {
        let stream = up.dial(self.config.connect_timeout).await.map_err(|err| {
            tracing::warn!(upstream = %up.id, error = %err, "upstream connect failed");
            ProxyError::ConnectFailed
        })?;
        let (mut tx, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ProxyError::BadResponse)?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "upstream upgrade connection ended");
            }
        });
        let mut resp = match tokio::time::timeout_at(deadline, tx.send_request(up_req)).await {
            Err(_) => return Err(ProxyError::Timeout),
            Ok(Err(err)) => {
                tracing::warn!(upstream = %up.id, error = %err, "upstream upgrade request failed");
                return Err(ProxyError::BadResponse);
            }
            Ok(Ok(resp)) => resp,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let guard = WebSocketGuard::new(up);
            let up_cut = up.cut.clone();
            let cut = conn.serve.cut.clone();
            let gauge = self.metrics.global_handle();
            gauge.websockets.fetch_add(1, Relaxed);
            let id = up.id.clone();
            conn.serve.tracker.spawn(async move {
                match tokio::join!(client_upgrade, upstream_upgrade) {
                    (Ok(client), Ok(upstream)) => {
                        // Both directions until either side closes, or until berth cuts it.
                        let cut = async {
                            tokio::select! {
                                () = up_cut.cancelled() => "instance drained",
                                () = cut.cancelled() => "proxy shutting down",
                            }
                        };
                        let (client, upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                        if let Some(cut) = splice::splice(client, upstream, cut, guard).await {
                            tracing::info!(
                                upstream = %id,
                                reason = cut.reason,
                                close_frame = cut.client_closed,
                                "websocket closed by berth"
                            );
                        }
                    }
                    (Err(err), _) | (_, Err(err)) => {
                        tracing::debug!(upstream = %id, error = %err, "upgrade failed");
                        drop(guard);
                    }
                }
                gauge.websockets.fetch_sub(1, Relaxed);
            });
            return Ok(finish_response(resp, true));
        }
        Ok(finish_response(resp, false))
    }
}

/// A connection (`connect`: of either client) to `first`, or, for an idempotent request
/// whose connect failed, to another instance of the pool; `record` follows the instance used.
pub(crate) async fn connect_any<'a, C, F>(
    pool: &'a Group,
    first: &'a Arc<Upstream>,
    idempotent: bool,
    record: &mut Record,
    errors: &UpstreamErrors,
    connect: impl Fn(&'a Arc<Upstream>) -> F,
) -> Result<(C, Arc<Upstream>)>
where
    F: Future<Output = std::result::Result<C, ConnectError>>,
{
    match connect(first).await {
        Ok(c) => return Ok((c, first.clone())),
        Err(err) => {
            errors.connect.fetch_add(1, Relaxed);
            tracing::warn!(upstream = %first.id, addr = %first.addr, error = %err, "upstream connect failed");
        }
    }
    let second = match pool.pick(Some(first)) {
        Some(s) if idempotent && !Arc::ptr_eq(s, first) => s,
        _ => return Err(ProxyError::ConnectFailed),
    };
    errors.retried.fetch_add(1, Relaxed);
    record.upstream = Some(InflightGuard::new(second));
    match connect(second).await {
        Ok(c) => Ok((c, second.clone())),
        Err(err) => {
            errors.connect.fetch_add(1, Relaxed);
            tracing::warn!(upstream = %second.id, addr = %second.addr, error = %err, "upstream connect failed");
            Err(ProxyError::ConnectFailed)
        }
    }
}

/// A request body cut off after `limit` bytes; `exceeded` tells the handler why it ended.
struct Limited {
    inner: hyper::body::Incoming,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.remaining {
                        self.exceeded.store(true, Relaxed);
                        return Poll::Ready(Some(Err(Box::new(ProxyError::BodyTooLarge))));
                    }
                    self.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a failed round trip on the inline client means for the client (`None`: no answer
/// before the response deadline), counted against the instance.
pub(crate) fn inline_failed(
    up: &Upstream,
    errors: &UpstreamErrors,
    err: Option<h1::Error>,
) -> ProxyError {
    match err {
        None => {
            errors.timeout.fetch_add(1, Relaxed);
            ProxyError::Timeout
        }
        Some(err) => {
            errors.protocol.fetch_add(1, Relaxed);
            tracing::warn!(upstream = %up.id, error = %err, "upstream request failed");
            ProxyError::BadResponse
        }
    }
}

/// Strip the upstream response's hop-by-hop headers and box its body.
fn finish_response<B>(resp: Response<B>, upgrade: bool) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = resp.into_parts();
    forward::strip_hop_by_hop(&mut parts.headers, upgrade);
    Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && req.headers().get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// Origin-form URI for the upstream, with the route prefix removed when asked.
fn upstream_uri(uri: &Uri, strip_len: usize) -> Uri {
    let Some(pq) = uri.path_and_query() else {
        return Uri::from_static("/");
    };
    if strip_len == 0 {
        if uri.scheme().is_none() && uri.authority().is_none() {
            return uri.clone();
        }
        return Uri::from(pq.clone());
    }
    let rest = pq.as_str().get(strip_len..).unwrap_or("");
    let rewritten = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    rewritten.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let check = |uri: &str, strip: usize, expected: &str| {
            assert_eq!(
                upstream_uri(&uri.parse().unwrap(), strip).to_string(),
                expected,
                "{uri}"
            );
        };
        check("/a/b?x=1", 0, "/a/b?x=1");
        check("http://shop.example.com/a?x", 0, "/a?x");
        check("/api/x?y", 4, "/x?y");
        check("/api?y", 4, "/?y");
        check("/api", 4, "/");
    }
}
