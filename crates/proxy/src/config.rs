//! Limits and timeouts of the proxy, with safe defaults.

use std::path::PathBuf;
use std::time::Duration;

/// Where the access log goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AccessLog {
    /// No access log.
    Off,
    /// One JSON line per request on standard output.
    #[default]
    Stdout,
    /// One JSON line per request appended to this file.
    File(PathBuf),
}

/// Settings of one [`crate::Proxy`]; every field has a safe default.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// A client must send a complete request head within this time (slow-client protection).
    /// On HTTP/1.1 this clock also runs while a keep-alive connection waits for its next
    /// request, so an idle HTTP/1.1 connection is closed after `min(header_read_timeout,
    /// idle_timeout)`.
    pub header_read_timeout: Duration,
    /// A client connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers) accepted, in bytes; HTTP/1.1 needs at
    /// least 8 KiB.
    pub max_header_bytes: usize,
    /// Time allowed to open a TCP connection to an upstream instance.
    pub connect_timeout: Duration,
    /// Time allowed for an upstream to start answering (response head) once the request is sent.
    pub response_timeout: Duration,
    /// Largest request body, in bytes, for routes that set no `max_body` of their own.
    pub max_body: u64,
    /// On shutdown, how long in-flight requests and WebSockets may take before they are cut.
    pub drain_grace: Duration,
    /// An idle pooled upstream connection is dropped after this long; keep it below the
    /// upstream's own keep-alive timeout so a request never lands on a closing connection.
    pub upstream_idle_timeout: Duration,
    /// Idle pooled connections kept per upstream instance.
    pub upstream_max_idle: usize,
    /// Concurrent HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// Access log destination.
    pub access_log: AccessLog,
    /// Pending ACME HTTP-01 challenges, answered on plain HTTP before routing (and never
    /// redirected to HTTPS).
    pub http01: Option<tls::Http01Challenges>,
    /// Port of the HTTPS listener, for the `Location` of HTTP → HTTPS redirects (left out of
    /// the URL when 443). `None`: no HTTPS listener, routes are never redirected.
    pub https_port: Option<u16>,
    /// The certificates the HTTPS listener serves: a route is redirected to HTTPS only for a
    /// host that has one (never to a listener that cannot complete the handshake).
    pub certs: Option<tls::CertStore>,
    /// Open connections one client address (IPv6: one /64) may have; a connection over the
    /// limit is closed at once. 0: no limit. Behind a load balancer every connection comes
    /// from its address: raise this or set 0 there.
    pub max_connections_per_ip: u32,
    /// Client keys each rate-limit zone remembers (the quietest are evicted beyond it); at
    /// least 16.
    pub rate_limit_max_keys: usize,
    /// Bytes of static files (and encodings made from them) kept in memory, across every
    /// static root; beyond it files are read from disk per request.
    pub static_memory: u64,
    /// Serve the common HTTP/1.1 request (no body, to a service route) on the fast path
    /// (`fast`); `false` leaves every request to hyper's server, for comparison.
    pub http1_fast_path: bool,
    /// Threads serving client connections, each with a runtime of its own and a copy of the
    /// listener (one per core by default); 0 serves them on the caller's runtime.
    pub threads: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            max_body: 10 * 1024 * 1024,
            drain_grace: Duration::from_secs(30),
            upstream_idle_timeout: Duration::from_secs(20),
            upstream_max_idle: 256,
            max_concurrent_streams: 256,
            access_log: AccessLog::default(),
            http01: None,
            https_port: None,
            certs: None,
            max_connections_per_ip: 256,
            rate_limit_max_keys: 100_000,
            static_memory: 64 * 1024 * 1024,
            http1_fast_path: true,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        }
    }
}
