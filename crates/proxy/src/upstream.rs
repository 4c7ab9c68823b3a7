//! Upstream instances, their pools, balancing and keep-alive connections.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::h1;
use crate::idle::{IdlePool, Reusable};
use crate::splice::CLOSE_WINDOW;

/// How a pool picks an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// The instance with the fewest requests in flight (ties broken round-robin).
    LeastOutstanding,
}

/// The instances of one service that receive traffic: one group, or during a canary two, the
/// stable one and the new release's, which gets a [`Share`] of the clients.
pub struct Pool {
    pub service: String,
    pub balance: Balance,
    stable: Group,
    canary: Option<(Group, Share)>,
}

/// Instances balanced among themselves.
pub(crate) struct Group {
    balance: Balance,
    upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
}

/// The share of clients a canary gets, in basis points (0 to 10 000). A client belongs to it
/// when its address hashes below the share, so the same client stays on the same side, and
/// a client in a smaller share is in every larger one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share(u16);

impl Share {
    /// `fraction` of clients, in (0, 1]; rounded to a basis point.
    pub fn of(fraction: f64) -> Share {
        Share((fraction.clamp(0.0, 1.0) * 10_000.0).round() as u16)
    }

    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }

    /// Whether `client` is among this share of clients. IPv6 clients count by their /64, as
    /// rate limits do.
    pub fn admits(self, client: std::net::IpAddr) -> bool {
        let key = match client {
            std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
            std::net::IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 | (1 << 63),
        };
        (mix(key) % 10_000) < u64::from(self.0)
    }
}

/// A fixed bit mixer (splitmix64's finalizer): addresses that differ in one bit land far
/// apart, and the same address lands in the same bucket in every process.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("service", &self.service)
            .field("balance", &self.balance)
            .field("upstreams", &self.stable.upstreams)
            .field(
                "canary",
                &self.canary.as_ref().map(|(g, share)| (&g.upstreams, share)),
            )
            .finish()
    }
}

impl Pool {
    pub fn new(
        service: impl Into<String>,
        balance: Balance,
        upstreams: Vec<Arc<Upstream>>,
    ) -> Pool {
        Pool {
            service: service.into(),
            balance,
            stable: Group::new(balance, upstreams),
            canary: None,
        }
    }

    /// The pool with `upstreams` as a canary that `share` of the clients go to.
    pub fn with_canary(mut self, upstreams: Vec<Arc<Upstream>>, share: Share) -> Pool {
        self.canary = Some((Group::new(self.balance, upstreams), share));
        self
    }

    /// The stable group's instances.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.stable.upstreams
    }

    /// The group `client`'s requests go to: the canary when the client is in its share, else
    /// the stable one; either side with no instance sends everyone to the other.
    pub(crate) fn group(&self, client: std::net::IpAddr) -> &Group {
        match &self.canary {
            Some((canary, share))
                if !canary.upstreams.is_empty()
                    && (self.stable.upstreams.is_empty() || share.admits(client)) =>
            {
                canary
            }
            _ => &self.stable,
        }
    }
}

impl Group {
    fn new(balance: Balance, upstreams: Vec<Arc<Upstream>>) -> Group {
        Group {
            balance,
            upstreams,
            next: AtomicUsize::new(0),
        }
    }

    /// Pick an instance, avoiding `not` when another one exists.
    pub(crate) fn pick(&self, not: Option<&Arc<Upstream>>) -> Option<&Arc<Upstream>> {
        let n = self.upstreams.len();
        if n == 0 {
            return None;
        }
        // A retry (`not` set) does not take a turn from the next request.
        let start = if not.is_some() {
            self.next.load(Relaxed)
        } else {
            self.next.fetch_add(1, Relaxed)
        };
        let allowed = |u: &Arc<Upstream>| not.is_none_or(|x| !Arc::ptr_eq(x, u));
        match self.balance {
            Balance::RoundRobin => (0..n)
                .map(|k| &self.upstreams[(start + k) % n])
                .find(|u| allowed(u)),
            Balance::LeastOutstanding => (0..n)
                .map(|k| &self.upstreams[(start + k) % n])
                .filter(|u| allowed(u))
                .min_by_key(|u| u.inflight.load(Relaxed)),
        }
    }
}

/// One instance of a service, e.g. `shop/web.0@r7` on `127.0.0.1:41234`.
/// Pools of inline connections per upstream: serving threads share them beyond this many.
const THREAD_SLOTS: usize = 8;

thread_local! {
    /// The serving thread this is (0: not one of the proxy's own threads).
    static THREAD_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Called once by each of the proxy's serving threads, numbered from 1.
pub(crate) fn set_thread_slot(n: usize) {
    THREAD_SLOT.set(n);
}

pub struct Upstream {
    pub id: String,
    pub addr: SocketAddr,
    inflight: AtomicUsize,
    websockets: AtomicUsize,
    /// Responses sent on behalf of this instance, and how many of them were 5xx (its own, or
    /// berth's 502/504 because of it): the deploy watch window's error rate.
    answered: AtomicU64,
    server_errors: AtomicU64,
    /// Idle connections of hyper's client, for requests with a body.
    pub(crate) idle: IdlePool<http1::SendRequest<Body>>,
    /// Idle connections of the inline client (`h1`), for requests without a body, one pool
    /// per serving thread ([`Upstream::inline`]); shared with the response bodies that hand
    /// their connection back.
    inline: [Arc<IdlePool<h1::Conn>>; THREAD_SLOTS],
    draining: AtomicBool,
    settled: Notify,
    /// Cancelled when a drain's grace runs out: open WebSockets to this instance close.
    pub(crate) cut: CancellationToken,
}

impl Reusable for http1::SendRequest<Body> {
    /// Open (it may still be finishing its previous response: check `is_ready`).
    fn usable(&mut self) -> bool {
        !self.is_closed()
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("inflight", &self.inflight())
            .field("websockets", &self.websockets())
            .finish()
    }
}

/// Why no connection to an instance could be had.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Io(io::Error),
    Timeout,
    Handshake(hyper::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Handshake(e) => write!(f, "handshake: {e}"),
        }
    }
}

impl Upstream {
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Arc<Upstream> {
        Arc::new(Upstream {
            id: id.into(),
            addr,
            inflight: AtomicUsize::new(0),
            websockets: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            idle: IdlePool::default(),
            inline: Default::default(),
            draining: AtomicBool::new(false),
            settled: Notify::new(),
            cut: CancellationToken::new(),
        })
    }

    /// This thread's idle connections of the inline client. A connection is registered with
    /// the reactor of the thread that opened it (each serving thread runs its own runtime), so
    /// it is reused on that thread, where its readiness is seen at once.
    pub(crate) fn inline(&self) -> &Arc<IdlePool<h1::Conn>> {
        &self.inline[THREAD_SLOT.get() % THREAD_SLOTS]
    }

    /// Requests to this instance whose response has not finished yet.
    pub fn inflight(&self) -> usize {
        self.inflight.load(SeqCst)
    }

    /// `(answered, server_errors)`: responses finished on behalf of this instance so far, and
    /// how many of them had a 5xx status.
    pub fn outcomes(&self) -> (u64, u64) {
        (
            self.answered.load(Relaxed),
            self.server_errors.load(Relaxed),
        )
    }

    pub(crate) fn count_outcome(&self, status: u16) {
        self.answered.fetch_add(1, Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Relaxed);
        }
    }

    /// Upgraded (WebSocket) connections to this instance that are open.
    pub fn websockets(&self) -> usize {
        self.websockets.load(SeqCst)
    }

    fn clear_idle(&self) {
        self.idle.clear();
        for pool in &self.inline {
            pool.clear();
        }
    }

    /// Open a TCP connection (no HTTP yet).
    pub(crate) async fn dial(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Io)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// A fresh HTTP/1.1 connection; its driver runs as its own task.
    pub(crate) async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<http1::SendRequest<Body>, ConnectError> {
        let stream = self.dial(timeout).await?;
        let (tx, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    fn settle(&self) {
        if self.draining.load(SeqCst) {
            self.settled.notify_waiters();
        }
    }
}

/// Counts a request as in flight on an instance until dropped.
pub(crate) struct InflightGuard(pub Arc<Upstream>);

impl InflightGuard {
    pub fn new(up: &Arc<Upstream>) -> InflightGuard {
        up.inflight.fetch_add(1, SeqCst);
        InflightGuard(up.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, SeqCst) == 1 {
            self.0.settle();
        }
    }
}

/// Counts an open WebSocket on an instance until dropped.
pub(crate) struct WebSocketGuard(pub Arc<Upstream>);

impl WebSocketGuard {
    pub fn new(up: &Arc<Upstream>) -> WebSocketGuard {
        up.websockets.fetch_add(1, SeqCst);
        WebSocketGuard(up.clone())
    }
}

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        if self.0.websockets.fetch_sub(1, SeqCst) == 1 {
            self.0.settle();
        }
    }
}

/// How draining an instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainOutcome {
    /// Every request and WebSocket finished on its own within the grace period.
    pub clean: bool,
    /// Requests still in flight when the grace period ran out (left to finish or fail).
    pub requests_left: usize,
    /// WebSockets closed by berth when the grace period ran out: each finished the frame in
    /// flight, sent a close frame with status 1001 (going away) to the client and to the
    /// instance, and was closed before `drained` returned.
    pub websockets_cut: usize,
    pub waited: Duration,
}

/// Wait until `up` is idle or `grace` has passed; then cut its WebSockets and wait (at most
/// [`CLOSE_WINDOW`] more) until each has sent its close frames and closed both sides.
pub(crate) async fn drain(up: &Arc<Upstream>, grace: Duration) -> DrainOutcome {
    let start = Instant::now();
    up.draining.store(true, SeqCst);
    let deadline = tokio::time::Instant::now() + grace;
    if settled(up, deadline, |u| u.inflight() == 0 && u.websockets() == 0).await {
        up.clear_idle();
        return DrainOutcome {
            clean: true,
            requests_left: 0,
            websockets_cut: 0,
            waited: start.elapsed(),
        };
    }
    let websockets_cut = up.websockets();
    up.cut.cancel();
    // Idle pooled connections to the instance are of no further use.
    up.clear_idle();
    // The instance is stopped when this returns: its WebSockets must have closed by then.
    let deadline = tokio::time::Instant::now() + CLOSE_WINDOW + Duration::from_millis(100);
    settled(up, deadline, |u| u.websockets() == 0).await;
    DrainOutcome {
        clean: false,
        requests_left: up.inflight(),
        websockets_cut,
        waited: start.elapsed(),
    }
}

/// Whether `done(up)` became true before `deadline`; checked whenever a request or WebSocket
/// of the draining instance ends.
async fn settled(
    up: &Upstream,
    deadline: tokio::time::Instant,
    done: impl Fn(&Upstream) -> bool,
) -> bool {
    loop {
        let settled = up.settled.notified();
        tokio::pin!(settled);
        settled.as_mut().enable();
        if done(up) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // The periodic wake-up is a safety net; the notification is the fast path.
        let wake = deadline.min(tokio::time::Instant::now() + Duration::from_millis(250));
        tokio::select! {
            _ = settled => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Share;
    use std::net::{IpAddr, Ipv4Addr};

    fn clients() -> impl Iterator<Item = IpAddr> {
        (0..20_000u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
    }

    #[test]
    fn a_share_admits_that_share_of_clients_and_grows_without_moving_anyone_out() {
        let (five, quarter) = (Share::of(0.05), Share::of(0.25));
        let admitted = |s: Share| clients().filter(|&c| s.admits(c)).count() as f64 / 20_000.0;
        assert!((admitted(five) - 0.05).abs() < 0.01, "{}", admitted(five));
        assert!(
            (admitted(quarter) - 0.25).abs() < 0.01,
            "{}",
            admitted(quarter)
        );
        assert!(
            clients()
                .filter(|&c| five.admits(c))
                .all(|c| quarter.admits(c))
        );
        assert!(clients().all(|c| Share::of(1.0).admits(c)));
        assert!(!clients().any(|c| Share::of(0.0).admits(c)));
    }
}
