//! One client connection as its requests see it, and the `serve` call it belongs to.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::forward::ClientAddr;

/// One `serve` call: its connections and upgraded streams, and how to stop them.
pub(crate) struct ServeCtx {
    pub tracker: TaskTracker,
    /// Stop taking new requests; let in-flight ones finish.
    pub shutdown: CancellationToken,
    /// The grace period is over: close whatever is still open.
    pub cut: CancellationToken,
    /// When `shutdown` was cancelled.
    pub shutdown_at: std::sync::OnceLock<Instant>,
}

impl ServeCtx {
    pub fn new() -> ServeCtx {
        ServeCtx {
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            cut: CancellationToken::new(),
            shutdown_at: std::sync::OnceLock::new(),
        }
    }

    /// Stop taking new requests (see [`ConnShared::closing`]).
    pub fn stop(&self) {
        let _ = self.shutdown_at.set(Instant::now());
        self.shutdown.cancel();
    }
}

/// A closing HTTP/1 connection with no request for this long is closed (on shutdown, its
/// next response would have said `Connection: close`).
pub(crate) const CLOSING_IDLE: Duration = Duration::from_secs(1);

/// Closing HTTP/1 connections say `Connection: close` spread over this long, not all at once:
/// their clients reconnect (to the next daemon, on an upgrade) a few at a time, and no burst of
/// new connections meets the next daemon and the apps behind it.
const CLOSE_SPREAD_MS: u64 = 500;

/// What a connection's requests share.
pub(crate) struct ConnShared {
    pub client: ClientAddr,
    /// `http` or `https` (TLS listener).
    pub proto: &'static str,
    pub serve: Arc<ServeCtx>,
    active: AtomicUsize,
    born: Instant,
    /// Milliseconds after `born` of the last request start or end.
    last_activity_ms: AtomicU64,
    /// A request came over HTTP/2: a shutdown can say GOAWAY, which no client mistakes.
    h2: std::sync::atomic::AtomicBool,
    /// This connection's place in the [`CLOSE_SPREAD_MS`] after a shutdown.
    close_after: Duration,
}

impl ConnShared {
    pub fn new(peer: IpAddr, proto: &'static str, serve: Arc<ServeCtx>) -> ConnShared {
        ConnShared {
            client: ClientAddr::new(peer),
            proto,
            serve,
            active: AtomicUsize::new(0),
            born: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            h2: std::sync::atomic::AtomicBool::new(false),
            close_after: {
                static SEQ: AtomicU64 = AtomicU64::new(0);
                let n = SEQ.fetch_add(1, Relaxed);
                // A multiplicative step: consecutive connections land far apart.
                Duration::from_millis(n.wrapping_mul(2_654_435_761) % CLOSE_SPREAD_MS)
            },
        }
    }

    pub fn saw_h2(&self) {
        self.h2.store(true, Relaxed);
    }

    pub fn is_h2(&self) -> bool {
        self.h2.load(Relaxed)
    }

    /// Whether the connection is closing: its HTTP/1 responses say `Connection: close`, so
    /// the client sends its next request elsewhere (to the next daemon, on an upgrade).
    pub fn closing(&self) -> bool {
        self.serve
            .shutdown_at
            .get()
            .is_some_and(|at| at.elapsed() >= self.close_after)
    }

    /// How long no request has been in flight (zero while one is).
    pub fn idle_for(&self) -> Duration {
        if self.active.load(Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_activity_ms.load(Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    pub fn request_started(&self) {
        self.active.fetch_add(1, Relaxed);
        self.touch();
    }

    pub fn request_done(&self) {
        self.active.fetch_sub(1, Relaxed);
        self.touch();
    }

    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Relaxed);
    }

    /// Resolves once the connection has had no request in flight for `idle` (before its first
    /// request: for `first`, so a silent client is dropped after the header-read timeout).
    pub async fn idle_expired(&self, first: Duration, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_activity_ms.load(Relaxed));
            let limit = if self.active.load(Relaxed) == 0 && last.is_zero() {
                first
            } else {
                idle
            };
            let due = self.born + last + limit;
            if Instant::now() >= due && self.active.load(Relaxed) == 0 {
                return;
            }
            let wake = due.max(Instant::now() + Duration::from_millis(100));
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}
