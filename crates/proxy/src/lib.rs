//! berth's reverse proxy.
//!
//! The proxy knows nothing about deploys, `berth.toml` or the supervisor: the daemon builds a
//! [`RouteTable`] (routes and upstream pools) and hands it over with [`Proxy::publish`]. Each
//! request loads the published table once and finishes on it, so a swap never blocks the hot
//! path and never disturbs a request in flight. [`Proxy::drained`] tells the daemon when an
//! instance that left the table has finished its last request and WebSocket.
//!
//! Module map:
//! - `config`: [`ProxyConfig`], limits and timeouts with safe defaults.
//! - `table`: [`RouteTable`], [`Route`], host/path matching (compiled on publish).
//! - `upstream`: [`Pool`], [`Upstream`], balancing and per-instance keep-alive connections;
//!   `idle`: the keep-alive pool of either client.
//! - `forward`: hop-by-hop stripping, `X-Forwarded-*`, `Forwarded`, request ids.
//! - `server`: listeners, connection serving (HTTP/1.1 + h2c), graceful shutdown.
//! - `h1`: the inline HTTP/1.1 client for requests without a body (no connection task).
//! - `handler`: one request from routing to response, retries, WebSocket splicing.
//! - `body`: request body limit and the response body that records the finished request.
//! - `files`: static files (ETag/304, Range, precompressed siblings, SPA fallback, no escapes).
//! - `compress`: streaming gzip/brotli of responses the client accepts.
//! - `error`: the typed responses berth itself generates (`x-berth-error`).
//! - `headers`: security-header presets and overrides ([`HeaderPolicy`]), `Server: berth`.
//! - `ratelimit`: rate-limit zones (token bucket per client, bounded) and the per-address
//!   connection limit; `clientip`: the client behind trusted proxies ([`Cidr`]).
//! - `metrics`, `accesslog`: counters/histograms and the off-hot-path access log.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

mod accesslog;
mod body;
mod clientip;
pub mod compress;
mod config;
mod error;
pub mod files;
mod forward;
mod h1;
mod handler;
mod headers;
mod idle;
mod metrics;
mod ratelimit;
mod server;
mod table;
mod upstream;

pub use clientip::Cidr;
pub use config::{AccessLog, ProxyConfig};
pub use error::ProxyError;
pub use headers::{HeaderEntry, HeaderPolicy, Preset};
pub use ratelimit::RateLimit;
pub use server::Proxy;
pub use table::{HostPattern, Route, RouteTable, Target};
pub use upstream::{Balance, DrainOutcome, Pool, Upstream};

/// Error type of every body that passes through the proxy.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type the proxy hands to hyper, for requests and responses alike.
pub type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// An empty [`Body`] (no allocation).
pub fn empty_body() -> Body {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A [`Body`] holding `bytes` in one frame.
pub fn full_body(bytes: impl Into<bytes::Bytes>) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What `berth proxy` adds to its one route.
#[derive(Clone, Debug, Default)]
pub struct SingleOptions {
    /// Security headers (default `basic`, like an app that says nothing).
    pub headers: HeaderPolicy,
    /// A rate-limit zone for every request, keyed by the TCP peer.
    pub rate_limit: Option<RateLimit>,
}

/// `berth proxy --listen ADDR --to ADDR`: the proxy alone in front of one upstream, with the
/// daemon's defaults (access log and metrics on).
pub async fn run_single(
    listener: TcpListener,
    upstream: SocketAddr,
    config: ProxyConfig,
    options: SingleOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let proxy = Proxy::new(config);
    let pool = Pool::new(
        "single",
        Balance::RoundRobin,
        vec![Upstream::new(format!("single@{upstream}"), upstream)],
    );
    proxy.publish(RouteTable {
        routes: vec![Route {
            headers: Arc::new(options.headers),
            rate_limit: options.rate_limit,
            ..Route::new(
                "single:/",
                "single",
                HostPattern::Any,
                "/",
                Target::Service(Arc::new(pool)),
            )
        }],
    });
    tracing::info!(listen = %listener.local_addr()?, to = %upstream, "berth proxy started");
    proxy.serve(listener, shutdown).await
}
