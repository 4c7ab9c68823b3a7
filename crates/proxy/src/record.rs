//! The response body that records its request (metrics, access log, in-flight counts, the
//! upstream connection back to its pool) when it finishes or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::accesslog::{self, Entry};
use crate::body::{Body, BoxError};
use crate::conn::ConnShared;
use crate::metrics::{Global, RouteMetrics};
use crate::upstream::InflightGuard;

/// Everything needed to account for one request once its response is done.
pub(crate) struct Record {
    /// The proxy's counters not tied to a route (in flight, unrouted, log lines dropped).
    pub global: Arc<Global>,
    pub access_log: Option<accesslog::Sender>,
    pub conn: Arc<ConnShared>,
    pub start: Instant,
    pub time: SystemTime,
    pub request_id: HeaderValue,
    pub host: Option<HeaderValue>,
    pub method: Method,
    pub uri: Uri,
    pub status: u16,
    pub bytes: u64,
    pub metrics: Option<Arc<RouteMetrics>>,
    pub route: Option<Arc<str>>,
    pub upstream: Option<InflightGuard>,
    pub error: Option<&'static str>,
    /// The upstream connection, returned to the pool if the response ends cleanly.
    pub pooled: Option<hyper::client::conn::http1::SendRequest<Body>>,
    /// Idle connections the pool keeps per instance.
    pub max_idle: usize,
    pub clean_end: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        match &self.metrics {
            Some(m) => m.record(self.status, elapsed),
            None => {
                self.global.unrouted.fetch_add(1, Relaxed);
            }
        }
        self.global.inflight.fetch_sub(1, Relaxed);
        self.conn.request_done();
        // Status 0: the client left before an answer; neither a success nor the app's error.
        if let Some(g) = &self.upstream
            && self.status != 0
        {
            g.0.count_outcome(self.status);
        }
        if let Some(log) = &self.access_log {
            let entry = Entry {
                time: self.time,
                request_id: &self.request_id,
                client: self.conn.client.xff.as_bytes(),
                host: self.host.as_ref(),
                method: &self.method,
                uri: &self.uri,
                status: self.status,
                bytes: self.bytes,
                duration: elapsed,
                route: self.route.as_deref(),
                upstream: self.upstream.as_ref().map(|g| g.0.id.as_str()),
                error: self.error,
            };
            if !log.send(&entry) {
                self.global.access_log_dropped.fetch_add(1, Relaxed);
            }
        }
        // Back to the pool: the response was read to its end and no request body is still
        // on its way, so the connection is about to be ready for the next request.
        if let (Some(tx), true, Some(g)) =
            (self.pooled.take(), self.clean_end, self.upstream.as_ref())
        {
            g.0.idle.put(tx, self.max_idle);
        }
        // `upstream` (the in-flight guard) drops last.
    }
}

/// The response body handed to the client; finishes the [`Record`] at its end.
pub(crate) struct Tracked {
    pub inner: Body,
    pub record: Option<Box<Record>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(r)) = (frame.data_ref(), self.record.as_mut()) {
                    r.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(r) = self.record.as_mut() {
                    r.clean_end = true;
                }
                self.record = None;
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = self.record.as_mut() {
                    r.error.get_or_insert("response body cut");
                }
                self.record = None;
            }
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A body hyper never polled because it was empty from the start also ended cleanly.
        if let Some(r) = self.record.as_mut()
            && self.inner.is_end_stream()
        {
            r.clean_end = true;
        }
    }
}
