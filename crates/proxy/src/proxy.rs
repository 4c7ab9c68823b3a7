//! The [`Proxy`]: what every listener, connection and request shares (the published route
//! table, metrics, access log, rate-limit zones), and the daemon's handle on it.
//!
//! Its other methods live with their job: `server` (listeners and connections), `handler`
//! (one request), `relay` (one request to an instance).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri};

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::accesslog;
use crate::config::{AccessLog, ProxyConfig};
use crate::conn::ConnShared;
use crate::files::Sites;
use crate::forward::RequestIds;
use crate::metrics::Registry;
use crate::ratelimit::{ConnLimit, Zones};
use crate::record::Record;
use crate::table::{Compiled, RouteTable};
use crate::upstream::{self, DrainOutcome, Upstream};

/// The reverse proxy: the published route table, metrics and access log, shared by every
/// listener and connection.
pub struct Proxy {
    pub(crate) config: ProxyConfig,
    table: ArcSwap<Compiled>,
    pub(crate) metrics: Arc<Registry>,
    pub(crate) access_log: Option<accesslog::Sender>,
    pub(crate) ids: RequestIds,
    pub(crate) builder: auto::Builder<TokioExecutor>,
    /// Rate-limit zones by (app, zone): outlive route tables.
    pub(crate) zones: Arc<Zones>,
    /// Open connections per client address.
    pub(crate) conn_limit: ConnLimit,
    /// Static roots' caches: live as long as a published table has their root.
    sites: Arc<Sites>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Arc<Proxy> {
        let sites = Arc::new(Sites::new(config.static_memory));
        Proxy::build(config, sites)
    }

    fn build(config: ProxyConfig, sites: Arc<Sites>) -> Arc<Proxy> {
        let access_log = match accesslog::start(&config.access_log) {
            Ok(log) => log,
            Err(err) => {
                tracing::error!(error = %err, dest = ?config.access_log, "cannot open the access log; requests will not be logged");
                None
            }
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            // One copy into hyper's buffer and one `write` beats a `writev` of head and body
            // for the small responses that dominate (measured: ~0.5 us per request).
            .writev(false)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(config.max_concurrent_streams)
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn_limit = ConnLimit::new(config.max_connections_per_ip);
        Arc::new(Proxy {
            config,
            table: ArcSwap::from_pointee(Compiled::default()),
            metrics: Arc::default(),
            access_log,
            ids: RequestIds::new(),
            builder,
            zones: Arc::default(),
            conn_limit,
            sites,
        })
    }

    /// A proxy of its own for `table`, which no listener serves: requests reach it only
    /// through [`Proxy::serve_stream`]. It shares the static caches, and counts nothing in
    /// this proxy's metrics, access log or rate-limit zones; the instances' own answered/5xx
    /// counts do see its requests.
    pub fn preview(&self, table: RouteTable) -> Arc<Proxy> {
        let proxy = Proxy::build(
            ProxyConfig {
                access_log: AccessLog::Off,
                ..self.config.clone()
            },
            self.sites.clone(),
        );
        proxy.publish(table);
        proxy
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Replace the route table. Requests already routed finish on the table they loaded.
    pub fn publish(&self, table: RouteTable) {
        let compiled = Compiled::new(
            table,
            &self.metrics,
            &self.zones,
            self.config.rate_limit_max_keys,
            &self.sites,
        );
        self.zones.retain(compiled.zones());
        self.table.store(Arc::new(compiled));
        self.metrics.global.table_swaps.fetch_add(1, Relaxed);
    }

    /// The record of a request that starts now on `conn` (in flight until it is dropped);
    /// the caller fills in what it learns (host, route, status...).
    pub(crate) fn record(
        &self,
        conn: &Arc<ConnShared>,
        start: Instant,
        request_id: HeaderValue,
        method: Method,
        uri: Uri,
    ) -> Record {
        conn.request_started();
        self.metrics.global.inflight.fetch_add(1, Relaxed);
        Record {
            global: self.metrics.global.clone(),
            access_log: self.access_log.clone(),
            conn: conn.clone(),
            start,
            time: SystemTime::now(),
            request_id,
            host: None,
            method,
            uri,
            status: 0,
            bytes: 0,
            metrics: None,
            route: None,
            upstream: None,
            error: None,
            pooled: None,
            max_idle: self.config.upstream_max_idle,
            clean_end: false,
        }
    }

    pub(crate) fn table(&self) -> Arc<Compiled> {
        self.table.load_full()
    }

    /// Wait until `upstream` (already absent from the published table) has no request in
    /// flight and no open WebSocket, or `grace` has passed. Then each of its WebSockets
    /// finishes the frame in flight, gets a close frame with status 1001 (going away) toward
    /// the client and the instance, and is closed, before this returns (at most 2 s past
    /// `grace`; a frame that has not ended by then is cut without one).
    pub async fn drained(&self, upstream: &Arc<Upstream>, grace: Duration) -> DrainOutcome {
        upstream::drain(upstream, grace).await
    }

    /// Add the proxy's series (all named `berth_proxy_*`, so `registry` should have no prefix)
    /// to `registry`; they are read from the proxy at every scrape.
    /// Every route's request counters and latency histogram now (for the daemon's history).
    pub fn route_samples(&self) -> Vec<crate::metrics::RouteSample> {
        self.metrics.samples()
    }

    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self.metrics.clone()));
        registry.register_collector(Box::new(self.zones.clone()));
        registry.register_collector(Box::new(self.sites.clone()));
    }

    /// The proxy's series alone in the Prometheus text format (version 0.0.4).
    pub fn metrics_text(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.register_metrics(&mut registry);
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail, and the collectors report no error of their own.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }

    /// Client keys the rate-limit zone `zone` of `app` holds now (`None`: no such zone in the
    /// published table).
    pub fn rate_limit_keys(&self, app: &str, zone: &str) -> Option<usize> {
        self.zones.get(app, zone).map(|z| z.keys())
    }
}
