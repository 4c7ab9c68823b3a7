//! The proxy's counters and histograms, and how a Prometheus registry reads them.
//!
//! Every route gets its series when the table is published, so the hot path only touches
//! atomics it already holds: no lock, no map lookup. Series outlive table swaps (counters never
//! go backwards). They reach a `prometheus_client` registry as a [`Collector`] that reads the
//! atomics at scrape time: prometheus-client's own `Histogram` locks a mutex on every
//! observation, and its `Family` looks a series up in a locked map.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Upper bounds of the latency histogram buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Series of one route (labels `route`, `service`).
pub(crate) struct RouteMetrics {
    route: String,
    service: String,
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS_US.len()],
    sum_us: AtomicU64,
}

impl RouteMetrics {
    pub fn new(route: &str, service: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics {
            route: route.to_owned(),
            service: service.to_owned(),
            by_class: Default::default(),
            buckets: Default::default(),
            sum_us: AtomicU64::new(0),
        })
    }

    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(us, Relaxed);
    }
}

/// Counters not tied to a route.
#[derive(Default)]
pub(crate) struct Global {
    pub unrouted: AtomicU64,
    pub inflight: AtomicU64,
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub websockets: AtomicU64,
    pub access_log_dropped: AtomicU64,
    pub table_swaps: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub https_redirects: AtomicU64,
    pub connections_over_ip_limit: AtomicU64,
    /// Connections served by hyper's server: HTTP/2, and HTTP/1.1 ones the fast path
    /// (`fast`) handed over.
    pub hyper_connections: AtomicU64,
}

/// Upstream failures by service and kind.
#[derive(Default)]
pub(crate) struct UpstreamErrors {
    pub connect: AtomicU64,
    pub timeout: AtomicU64,
    pub protocol: AtomicU64,
    pub retried: AtomicU64,
}

/// All series of one proxy.
#[derive(Default)]
pub(crate) struct Registry {
    pub global: Arc<Global>,
    routes: Mutex<BTreeMap<(String, String), Arc<RouteMetrics>>>,
    upstream: Mutex<BTreeMap<String, Arc<UpstreamErrors>>>,
}

impl Registry {
    pub fn route(&self, route: &str, service: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes
            .entry((route.to_owned(), service.to_owned()))
            .or_insert_with(|| RouteMetrics::new(route, service))
            .clone()
    }

    pub fn global_handle(&self) -> Arc<Global> {
        self.global.clone()
    }

    pub fn upstream_errors(&self, service: &str) -> Arc<UpstreamErrors> {
        let mut up = self.upstream.lock().unwrap_or_else(PoisonError::into_inner);
        up.entry(service.to_owned()).or_default().clone()
    }
}

/// The counters of one route at one moment, for a sampler that keeps its own history.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSample {
    /// The route's label (`app:host/path`).
    pub route: String,
    pub service: String,
    /// Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [u64; 5],
    /// Latency histogram: (upper bound in seconds, answers in that bucket, not cumulative).
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
}

impl Registry {
    /// Every route's counters now (one lock to copy the list of routes, then atomics).
    pub fn samples(&self) -> Vec<RouteSample> {
        let routes: Vec<Arc<RouteMetrics>> = {
            let r = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            r.values().cloned().collect()
        };
        routes
            .iter()
            .map(|m| RouteSample {
                route: m.route.clone(),
                service: m.service.clone(),
                by_class: std::array::from_fn(|i| m.by_class[i].load(Relaxed)),
                buckets: BUCKETS_US
                    .iter()
                    .zip(&m.buckets)
                    .map(|(b, n)| (*b as f64 / 1e6, n.load(Relaxed)))
                    .collect(),
                sum_seconds: m.sum_us.load(Relaxed) as f64 / 1e6,
            })
            .collect()
    }
}

impl Collector for Registry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let routes: Vec<Arc<RouteMetrics>> = {
            let r = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            r.values().cloned().collect()
        };
        let mut family = encoder.encode_descriptor(
            "berth_proxy_requests",
            "Requests answered on a route, by status class.",
            None,
            MetricType::Counter,
        )?;
        for m in &routes {
            for (i, class) in CLASSES.iter().enumerate() {
                let labels = [
                    ("route", m.route.as_str()),
                    ("service", m.service.as_str()),
                    ("class", class),
                ];
                ConstCounter::new(m.by_class[i].load(Relaxed))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_proxy_request_duration_seconds",
            "Time from request received to response body sent, by route.",
            None,
            MetricType::Histogram,
        )?;
        for m in &routes {
            let labels = [("route", m.route.as_str()), ("service", m.service.as_str())];
            let buckets: [(f64, u64); BUCKETS_US.len()] =
                std::array::from_fn(|i| (BUCKETS_US[i] as f64 / 1e6, m.buckets[i].load(Relaxed)));
            let in_buckets: u64 = buckets.iter().map(|(_, n)| n).sum();
            // Read apart from the buckets: never report fewer than the buckets hold.
            let count: u64 = m.by_class.iter().map(|c| c.load(Relaxed)).sum();
            let count = count.max(in_buckets);
            let sum = m.sum_us.load(Relaxed) as f64 / 1e6;
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        let upstream: Vec<(String, Arc<UpstreamErrors>)> = {
            let u = self.upstream.lock().unwrap_or_else(PoisonError::into_inner);
            u.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut family = encoder.encode_descriptor(
            "berth_proxy_upstream_errors",
            "Failed attempts to reach a service's instances, by kind.",
            None,
            MetricType::Counter,
        )?;
        for (service, e) in &upstream {
            for (kind, v) in [
                ("connect", &e.connect),
                ("timeout", &e.timeout),
                ("protocol", &e.protocol),
            ] {
                let labels = [("service", service.as_str()), ("kind", kind)];
                ConstCounter::new(v.load(Relaxed)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_proxy_upstream_retries",
            "Requests retried on another instance after a connect failure.",
            None,
            MetricType::Counter,
        )?;
        for (service, e) in &upstream {
            ConstCounter::new(e.retried.load(Relaxed))
                .encode(family.encode_family(&[("service", service.as_str())])?)?;
        }
        let g = &self.global;
        // Counters are named without `_total`: the encoder adds it.
        let simple: [(&str, MetricType, &str, &AtomicU64); 11] = [
            (
                "berth_proxy_unrouted_requests",
                MetricType::Counter,
                "Requests that matched no route (answered 404).",
                &g.unrouted,
            ),
            (
                "berth_proxy_inflight_requests",
                MetricType::Gauge,
                "Requests being answered now.",
                &g.inflight,
            ),
            (
                "berth_proxy_open_connections",
                MetricType::Gauge,
                "Client connections open now.",
                &g.connections,
            ),
            (
                "berth_proxy_connections",
                MetricType::Counter,
                "Client connections accepted.",
                &g.connections_total,
            ),
            (
                "berth_proxy_open_websockets",
                MetricType::Gauge,
                "Upgraded (WebSocket) connections open now.",
                &g.websockets,
            ),
            (
                "berth_proxy_access_log_dropped",
                MetricType::Counter,
                "Access log lines dropped because the writer fell behind.",
                &g.access_log_dropped,
            ),
            (
                "berth_proxy_route_table_swaps",
                MetricType::Counter,
                "Route tables published.",
                &g.table_swaps,
            ),
            (
                "berth_proxy_hyper_connections",
                MetricType::Counter,
                "Client connections served by hyper's server: HTTP/2, and HTTP/1.1 ones the fast path handed over (a body, an upgrade, a static route...).",
                &g.hyper_connections,
            ),
            (
                "berth_proxy_tls_handshake_failures",
                MetricType::Counter,
                "TLS handshakes that failed or timed out.",
                &g.tls_handshake_failures,
            ),
            (
                "berth_proxy_https_redirects",
                MetricType::Counter,
                "Plain HTTP requests redirected to HTTPS (308).",
                &g.https_redirects,
            ),
            (
                "berth_proxy_connections_over_ip_limit",
                MetricType::Counter,
                "Client connections closed at once: their address had max_connections_per_ip open.",
                &g.connections_over_ip_limit,
            ),
        ];
        for (name, kind, help, v) in simple {
            let metric = encoder.encode_descriptor(name, help, None, kind)?;
            let v = v.load(Relaxed);
            match kind {
                MetricType::Counter => ConstCounter::new(v).encode(metric)?,
                _ => ConstGauge::new(v).encode(metric)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("proxy::metrics::Registry")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text;

    use super::*;

    #[test]
    fn histogram_text() {
        let metrics = Arc::new(Registry::default());
        let m = metrics.route("shop:/", "web");
        m.record(200, Duration::from_micros(700));
        m.record(200, Duration::from_millis(3));
        m.record(503, Duration::from_secs(20));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(metrics));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        let series = |suffix: &str| format!("berth_proxy_request_duration_seconds_{suffix}");
        let labels = "route=\"shop:/\",service=\"web\"";
        for (le, n) in [
            ("0.0005", 0),
            ("0.001", 1),
            ("0.005", 2),
            ("10", 2),
            ("+Inf", 3),
        ] {
            let line = format!("{}{{{labels},le=\"{le}\"}} {n}\n", series("bucket"));
            assert!(text.contains(&line), "{line}{text}");
        }
        for line in [
            format!("{}{{{labels}}} 20.0037\n", series("sum")),
            format!("{}{{{labels}}} 3\n", series("count")),
            format!("berth_proxy_requests_total{{{labels},class=\"5xx\"}} 1\n"),
            "# TYPE berth_proxy_requests_total counter\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line}{text}");
        }
    }
}
