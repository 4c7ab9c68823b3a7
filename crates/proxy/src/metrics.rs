//! In-memory counters and histograms, rendered as Prometheus text.
//!
//! Every route gets its series when the table is published, so the hot path only touches
//! atomics it already holds. Series outlive table swaps (counters never go backwards).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let routes: Vec<Arc<RouteMetrics>> = {
            let r = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            r.values().cloned().collect()
        };
        header(
            &mut out,
            "berth_proxy_requests_total",
            "counter",
            "Requests answered on a route, by status class.",
        );
        for m in &routes {
            for (i, class) in CLASSES.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "berth_proxy_requests_total{{route=\"{}\",service=\"{}\",class=\"{class}\"}} {}",
                    esc(&m.route),
                    esc(&m.service),
                    m.by_class[i].load(Relaxed)
                );
            }
        }
        header(
            &mut out,
            "berth_proxy_request_duration_seconds",
            "histogram",
            "Time from request received to response body sent, by route.",
        );
        for m in &routes {
            let labels = format!(
                "route=\"{}\",service=\"{}\"",
                esc(&m.route),
                esc(&m.service)
            );
            let mut cumulative = 0;
            for (i, b) in BUCKETS_US.iter().enumerate() {
                cumulative += m.buckets[i].load(Relaxed);
                let le = *b as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "berth_proxy_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let count: u64 = m.by_class.iter().map(|c| c.load(Relaxed)).sum();
            let count = count.max(cumulative);
            let _ = writeln!(
                out,
                "berth_proxy_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = m.sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "berth_proxy_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "berth_proxy_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        let upstream: Vec<(String, Arc<UpstreamErrors>)> = {
            let u = self.upstream.lock().unwrap_or_else(PoisonError::into_inner);
            u.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        header(
            &mut out,
            "berth_proxy_upstream_errors_total",
            "counter",
            "Failed attempts to reach a service's instances, by kind.",
        );
        for (service, e) in &upstream {
            for (kind, v) in [
                ("connect", &e.connect),
                ("timeout", &e.timeout),
                ("protocol", &e.protocol),
            ] {
                let _ = writeln!(
                    out,
                    "berth_proxy_upstream_errors_total{{service=\"{}\",kind=\"{kind}\"}} {}",
                    esc(service),
                    v.load(Relaxed)
                );
            }
        }
        header(
            &mut out,
            "berth_proxy_upstream_retries_total",
            "counter",
            "Requests retried on another instance after a connect failure.",
        );
        for (service, e) in &upstream {
            let _ = writeln!(
                out,
                "berth_proxy_upstream_retries_total{{service=\"{}\"}} {}",
                esc(service),
                e.retried.load(Relaxed)
            );
        }
        let g = &self.global;
        let simple: [(&str, &str, &str, &AtomicU64); 10] = [
            (
                "berth_proxy_unrouted_requests_total",
                "counter",
                "Requests that matched no route (answered 404).",
                &g.unrouted,
            ),
            (
                "berth_proxy_inflight_requests",
                "gauge",
                "Requests being answered now.",
                &g.inflight,
            ),
            (
                "berth_proxy_open_connections",
                "gauge",
                "Client connections open now.",
                &g.connections,
            ),
            (
                "berth_proxy_connections_total",
                "counter",
                "Client connections accepted.",
                &g.connections_total,
            ),
            (
                "berth_proxy_open_websockets",
                "gauge",
                "Upgraded (WebSocket) connections open now.",
                &g.websockets,
            ),
            (
                "berth_proxy_access_log_dropped_total",
                "counter",
                "Access log lines dropped because the writer fell behind.",
                &g.access_log_dropped,
            ),
            (
                "berth_proxy_route_table_swaps_total",
                "counter",
                "Route tables published.",
                &g.table_swaps,
            ),
            (
                "berth_proxy_tls_handshake_failures_total",
                "counter",
                "TLS handshakes that failed or timed out.",
                &g.tls_handshake_failures,
            ),
            (
                "berth_proxy_https_redirects_total",
                "counter",
                "Plain HTTP requests redirected to HTTPS (308).",
                &g.https_redirects,
            ),
            (
                "berth_proxy_connections_over_ip_limit_total",
                "counter",
                "Client connections closed at once: their address had max_connections_per_ip open.",
                &g.connections_over_ip_limit,
            ),
        ];
        for (name, kind, help, v) in simple {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escape a label value for the text exposition format.
pub(crate) fn esc(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        v.into()
    }
}
