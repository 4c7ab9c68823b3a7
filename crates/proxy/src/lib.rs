//! berth's reverse proxy.
//!
//! The proxy knows nothing about deploys, `berth.toml` or the supervisor: the daemon builds a
//! [`RouteTable`] (routes and upstream pools) and hands it over with [`Proxy::publish`]. Each
//! request loads the published table once and finishes on it, so a swap never blocks the hot
//! path and never disturbs a request in flight. [`Proxy::drained`] tells the daemon when an
//! instance that left the table has finished its last request and WebSocket.
//!
//! Module map, from the top down (a module imports only modules below it):
//! - `server`: listeners (one serving thread per core, each with its own runtime), the
//!   per-address limit, TLS, serving a connection (HTTP/1.1, h2c, ALPN h2), graceful shutdown.
//! - `fast`: the HTTP/1.1 fast path every connection starts on (the common request read,
//!   forwarded and answered as bytes); it hands the connection to hyper when a request needs
//!   more.
//! - `handler`: one request: route, redirect, rate limit, answer; the response goes out in a
//!   `record::Tracked` body.
//! - `relay`: one request to an instance (inline client or hyper's, one retry on another
//!   instance, WebSocket upgrades) and the request-body limit.
//! - `proxy`: [`Proxy`], the state all of these share, [`Proxy::publish`] and the metrics.
//! - `record`: the response body that accounts for its request when it ends (metrics, access
//!   log, in-flight counts, the upstream connection back to its pool).
//! - `conn`: one client connection as its requests see it.
//! - `table`: [`RouteTable`], [`Route`], host/path matching (compiled on publish).
//! - `upstream`: [`Pool`], [`Upstream`], balancing, draining; `h1`: the inline HTTP/1.1
//!   client for requests without a body (no connection task); `idle`: the keep-alive pool of
//!   either client; `splice`: a WebSocket copied both ways with its frame boundaries
//!   followed, closed with status 1001 at a boundary when berth cuts it.
//! - `ratelimit`: rate-limit zones (token bucket per client, bounded) and the per-address
//!   connection limit; `clientip`: the client behind trusted proxies ([`IpNet`]).
//! - `metrics`, `accesslog`: lock-free counters/histograms read at scrape time, and the
//!   off-hot-path access log.
//! - `files`: static files (ETag/304, Range, precompressed siblings, SPA fallback, no escapes);
//!   `compress`: streaming gzip/brotli of responses the client accepts.
//! - `host`: the host a request is for (one valid `Host`, `:authority`), or a 400; `field`:
//!   header values read as raw bytes the way `HeaderValue` reads them.
//! - `forward`: hop-by-hop stripping, then berth's own headers toward the instance (`Host`,
//!   `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `X-Request-Id`); request ids.
//! - `error`: the typed responses berth itself generates (`x-berth-error`).
//! - `headers`: security-header presets and overrides ([`HeaderPolicy`]), `Server: berth`.
//! - `config`: [`ProxyConfig`], limits and timeouts with safe defaults; `body`: [`Body`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

mod accesslog;
mod body;
mod clientip;
pub mod compress;
mod config;
mod conn;
mod error;
mod fast;
mod field;
pub mod files;
mod forward;
mod h1;
mod handler;
mod headers;
mod host;
mod idle;
mod metrics;
mod proxy;
mod ratelimit;
mod record;
mod relay;
mod server;
mod splice;
mod table;
mod upstream;

pub use body::{Body, BoxError, empty_body, full_body};
pub use config::{AccessLog, ProxyConfig};
pub use error::ProxyError;
pub use files::CachePolicy;
pub use headers::{HeaderEntry, HeaderPolicy, Preset};
/// The IP network type of [`Route::trusted_proxies`] (the same as `spec`'s).
pub use ipnet::IpNet;
pub use metrics::RouteSample;
pub use proxy::Proxy;
pub use ratelimit::RateLimit;
pub use table::{HostPattern, Maintenance, Route, RouteTable, Target};
pub use upstream::{Balance, DrainOutcome, Pool, Share, Upstream};

/// What `berth proxy` adds to its one route.
#[derive(Clone, Debug, Default)]
pub struct SingleOptions {
    /// Security headers (default `basic`, like an app that says nothing).
    pub headers: HeaderPolicy,
    /// A rate-limit zone for every request, keyed by the TCP peer.
    pub rate_limit: Option<RateLimit>,
}

/// What `berth proxy` serves: one upstream, or one directory of static files.
#[derive(Clone, Debug)]
pub enum SingleTarget {
    /// `--to ADDR`: every request goes to this upstream.
    Upstream(SocketAddr),
    /// `--static DIR [--spa]`: files under `root`, treated like a release's static directory
    /// (immutable: what is cached stays until the process restarts).
    Static { root: PathBuf, spa: bool },
}

impl From<SocketAddr> for SingleTarget {
    fn from(addr: SocketAddr) -> SingleTarget {
        SingleTarget::Upstream(addr)
    }
}

/// `berth proxy --listen ADDR (--to ADDR | --static DIR)`: the proxy alone in front of one
/// upstream or one static directory, with the daemon's defaults (access log and metrics on).
pub async fn run_single(
    listener: TcpListener,
    target: impl Into<SingleTarget>,
    config: ProxyConfig,
    options: SingleOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let proxy = Proxy::new(config);
    let target = target.into();
    let route_target = match &target {
        SingleTarget::Upstream(upstream) => {
            let pool = Pool::new(
                "single",
                Balance::RoundRobin,
                vec![Upstream::new(format!("single@{upstream}"), *upstream)],
            );
            Target::Service(Arc::new(pool))
        }
        SingleTarget::Static { root, spa } => Target::Static {
            root: root.clone(),
            spa: *spa,
        },
    };
    proxy.publish(RouteTable {
        routes: vec![Route {
            headers: Arc::new(options.headers),
            rate_limit: options.rate_limit,
            ..Route::new("single:/", "single", HostPattern::Any, "/", route_target)
        }],
    });
    tracing::info!(listen = %listener.local_addr()?, ?target, "berth proxy started");
    proxy.serve(listener, shutdown).await
}
