//! The route table the daemon publishes, and how a request finds its route.
//!
//! Matching is host first, then path: the most specific host pattern that has any route for
//! the request's host owns it (exact beats `*.wildcard` beats `Any`), and among that host's
//! routes the longest path prefix wins. A host that owns routes never falls through to a less
//! specific host's routes, so one app's site can never be answered by another app by accident.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::files::{CachePolicy, Sites, StaticRoute};
use crate::headers::HeaderPolicy;
use crate::metrics::{Registry, RouteMetrics, UpstreamErrors};
use crate::ratelimit::{RateLimit, Zone, Zones};
use crate::upstream::Pool;

/// Everything the proxy routes, published as one value by [`crate::Proxy::publish`].
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

/// One route: which requests (host, path prefix) go where.
#[derive(Clone, Debug)]
pub struct Route {
    /// Bounded label for metrics and logs, e.g. `"shop:/api/"`.
    pub id: String,
    /// The app that owns the route.
    pub app: String,
    pub host: HostPattern,
    /// Path prefix, matched on segment boundaries: `/api` matches `/api` and `/api/x`, not
    /// `/apix`; a prefix ending in `/` matches everything below it.
    pub path: String,
    /// Remove `path` from the request path before forwarding (or serving files).
    pub strip_prefix: bool,
    /// Largest request body in bytes; `None` takes [`crate::ProxyConfig::max_body`].
    pub max_body: Option<u64>,
    /// The app has TLS: plain HTTP requests get `308` to the same URL on HTTPS when the proxy
    /// has an HTTPS listener and a certificate for the host, except ACME HTTP-01 challenges.
    pub https_redirect: bool,
    pub target: Target,
    /// Security headers added to every response of the route.
    pub headers: Arc<HeaderPolicy>,
    /// The rate-limit zone requests count against; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Peers whose `X-Forwarded-For` names the client (for rate limiting); empty: the TCP peer
    /// is always the client.
    pub trusted_proxies: Arc<[IpNet]>,
    /// `Cache-Control` of the files of a [`Target::Static`] route, by kind (ignored for
    /// services).
    pub cache_control: CachePolicy,
    /// Under maintenance: every request is answered 503 with its `Retry-After` and page, and
    /// nothing reaches the target.
    pub maintenance: Option<Arc<Maintenance>>,
}

/// What a route under maintenance answers: `503` with `Retry-After` and an HTML page, both
/// chosen when the table is published (nothing is read or rendered per request).
#[derive(Debug, PartialEq, Eq)]
pub struct Maintenance {
    /// Seconds a client is told to wait (`Retry-After`).
    pub retry_after: u32,
    /// The HTML page (`text/html; charset=utf-8`).
    pub page: bytes::Bytes,
}

impl Route {
    /// A route with the defaults: no prefix stripping, the proxy's body limit, `basic`
    /// headers, no rate limit, no trusted proxies, the default cache policy for static files.
    pub fn new(
        id: impl Into<String>,
        app: impl Into<String>,
        host: HostPattern,
        path: impl Into<String>,
        target: Target,
    ) -> Route {
        Route {
            id: id.into(),
            app: app.into(),
            host,
            path: path.into(),
            strip_prefix: false,
            max_body: None,
            https_redirect: false,
            target,
            headers: Arc::default(),
            rate_limit: None,
            trusted_proxies: Arc::new([]),
            cache_control: CachePolicy::default(),
            maintenance: None,
        }
    }
}

/// Which `Host` a route answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// One host name, compared without port and case-insensitively.
    Exact(String),
    /// `"*.example.com"`: any host below `example.com` (not `example.com` itself).
    Wildcard(String),
    /// Any host (the default site).
    Any,
}

/// Where a route sends its requests.
#[derive(Clone, Debug)]
pub enum Target {
    /// A service's instances.
    Service(Arc<Pool>),
    /// Files under `root` (a directory whose files never change while it is published: what
    /// is found there is cached until no published table has `root`); with `spa`, paths that
    /// name nothing fall back to `index.html`, unless they name an asset (`.js`, `.css`, …).
    Static { root: PathBuf, spa: bool },
}

impl Target {
    pub(crate) fn service_label(&self) -> &str {
        match self {
            Target::Service(pool) => &pool.service,
            Target::Static { .. } => "static",
        }
    }
}

/// A route ready for the hot path.
pub(crate) struct Entry {
    pub route: Route,
    /// `route.id`, shared with log lines.
    pub label: Arc<str>,
    pub metrics: Arc<RouteMetrics>,
    pub errors: Arc<UpstreamErrors>,
    /// The route's rate-limit zone (state shared across tables).
    pub zone: Option<Arc<Zone>>,
    /// Length of the prefix to strip from the path (0 when not stripping).
    pub strip_len: usize,
    /// The files of a static route, with its root's cache.
    pub files: Option<StaticRoute>,
}

/// The published table, indexed by host.
#[derive(Default)]
pub(crate) struct Compiled {
    pub entries: Vec<Entry>,
    exact: HashMap<String, Routes>,
    /// (suffix including the leading dot, routes), longest suffix first.
    wildcard: Vec<(String, Routes)>,
    any: Routes,
}

/// A host's routes, longest path prefix first, and for a host with many of them an index by
/// the prefix's first path segment, so a lookup does not walk past every route.
#[derive(Default)]
struct Routes {
    all: Vec<usize>,
    /// Built when `all` is longer than [`Routes::SCAN`]: the routes by the first segment of
    /// their prefix (`api` for `/api/v1`), each list longest first.
    by_segment: HashMap<Box<str>, Vec<usize>>,
    /// The routes no first segment names (`/`, the empty prefix): after those of the segment,
    /// being shorter than all of them.
    rest: Vec<usize>,
}

impl Routes {
    /// Up to this many routes a walk is faster than a hash.
    const SCAN: usize = 16;

    fn index(&mut self, entries: &[Entry]) {
        if self.all.len() <= Routes::SCAN {
            return;
        }
        for &i in &self.all {
            match first_segment(&entries[i].route.path) {
                Some(segment) => self.by_segment.entry(segment.into()).or_default().push(i),
                None => self.rest.push(i),
            }
        }
    }

    /// The first route whose prefix matches `path`, longest prefix first.
    fn find<'a>(&self, entries: &'a [Entry], path: &str) -> Option<&'a Entry> {
        let matching = |&i: &usize| {
            let e = &entries[i];
            prefix_matches(&e.route.path, path).then_some(e)
        };
        if self.by_segment.is_empty() && self.rest.is_empty() {
            return self.all.iter().find_map(matching);
        }
        let named = first_segment(path).and_then(|s| self.by_segment.get(s));
        named
            .into_iter()
            .flatten()
            .chain(&self.rest)
            .find_map(matching)
    }
}

/// The first segment of a path prefix or a request path: `api` of `/api/v1`; `None` for `/`,
/// the empty path, and anything not starting with `/`.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    let segment = rest.split('/').next().unwrap_or("");
    (!segment.is_empty()).then_some(segment)
}

impl Compiled {
    /// Indexes `table`; route metrics, rate-limit zones and static roots' caches come from
    /// `registry`, `zones` and `sites` (created there when new), so they outlive this table.
    pub fn new(
        table: RouteTable,
        registry: &Registry,
        zones: &Zones,
        zone_max_keys: usize,
        sites: &Sites,
    ) -> Compiled {
        let mut c = Compiled::default();
        for route in table.routes {
            let idx = c.entries.len();
            match &route.host {
                HostPattern::Exact(h) => c
                    .exact
                    .entry(normalize_host(h).into_owned())
                    .or_default()
                    .all
                    .push(idx),
                HostPattern::Wildcard(w) => {
                    let suffix = normalize_host(w.trim_start_matches('*')).into_owned();
                    let suffix = if suffix.starts_with('.') {
                        suffix
                    } else {
                        format!(".{suffix}")
                    };
                    match c.wildcard.iter_mut().find(|(s, _)| *s == suffix) {
                        Some((_, v)) => v.all.push(idx),
                        None => c.wildcard.push((
                            suffix,
                            Routes {
                                all: vec![idx],
                                ..Routes::default()
                            },
                        )),
                    }
                }
                HostPattern::Any => c.any.all.push(idx),
            }
            let strip_len = if route.strip_prefix {
                route.path.trim_end_matches('/').len()
            } else {
                0
            };
            let service = route.target.service_label();
            let metrics = registry.route(&route.id, service);
            let errors = registry.upstream_errors(service);
            let label = Arc::from(route.id.as_str());
            let zone = route
                .rate_limit
                .as_ref()
                .map(|limit| zones.zone(&route.app, limit, zone_max_keys));
            let files = match &route.target {
                Target::Static { root, spa } => Some(StaticRoute::new(
                    sites,
                    root,
                    *spa,
                    route.cache_control.clone(),
                )),
                Target::Service(_) => None,
            };
            c.entries.push(Entry {
                route,
                label,
                metrics,
                errors,
                zone,
                strip_len,
                files,
            });
        }
        let entries = &c.entries;
        let by_len = |v: &mut Routes| {
            // Longest prefix first; on equal prefixes the earlier route wins (stable sort).
            v.all
                .sort_by_key(|&i| std::cmp::Reverse(entries[i].route.path.len()));
            v.index(entries);
        };
        c.exact.values_mut().for_each(by_len);
        c.wildcard.iter_mut().for_each(|(_, v)| by_len(v));
        by_len(&mut c.any);
        c.wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        c
    }

    /// The rate-limit zones the routes count against.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> + Clone {
        self.entries.iter().filter_map(|e| e.zone.as_ref())
    }

    /// The route for `host` (as sent: may carry a port, any case) and `path`.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&Entry> {
        let candidates = match host.map(normalize_host) {
            Some(h) => self.host_routes(&h),
            None => &self.any,
        };
        candidates.find(&self.entries, path)
    }

    fn host_routes(&self, host: &str) -> &Routes {
        if let Some(v) = self.exact.get(host) {
            return v;
        }
        for (suffix, v) in &self.wildcard {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return v;
            }
        }
        &self.any
    }
}

/// Host without port, trailing dot or upper case (borrowed when already normal).
pub(crate) fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Prefix match on a path-segment boundary.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, host: HostPattern, path: &str) -> Route {
        let target = Target::Static {
            root: PathBuf::new(),
            spa: false,
        };
        Route::new(id, "a", host, path, target)
    }

    fn compile(routes: Vec<Route>) -> Compiled {
        Compiled::new(
            RouteTable { routes },
            &Registry::default(),
            &Zones::default(),
            100,
            &Sites::new(0),
        )
    }

    fn check(table: &Compiled, host: Option<&str>, path: &str, expected: Option<&str>) {
        let got = table.lookup(host, path).map(|e| e.route.id.as_str());
        assert_eq!(got, expected, "host={host:?} path={path}");
    }

    /// A host with many routes is looked up through its segment index: the answer is the
    /// one a walk over every route, longest prefix first, gives.
    #[test]
    fn the_segment_index_answers_as_a_walk_does() {
        let prefixes = [
            "/",
            "/api",
            "/api/",
            "/api/v1",
            "/api/v1/",
            "/api/v2",
            "/apix",
            "/a",
            "/b/c",
            "/b",
            "/b/",
            "/static",
            "/static/img",
            "//odd",
            "/x/y/z",
            "/api/v1/users",
            "/docs",
            "/docs/",
            "/d",
            "/api2",
        ];
        let mut routes: Vec<Route> = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| route(&format!("r{i}"), HostPattern::Any, p))
            .collect();
        // The same prefix twice: the earlier route wins.
        routes.push(route("dup", HostPattern::Any, "/api"));
        let t = compile(routes);
        assert!(!t.any.by_segment.is_empty(), "indexed");
        let paths = [
            "",
            "/",
            "/api",
            "/api/",
            "/api/v1",
            "/api/v1/users/7",
            "/api/v2/x",
            "/api2",
            "/apix/1",
            "/apixy",
            "/a",
            "/ab",
            "/b",
            "/b/c",
            "/b/cd",
            "/b/c/d",
            "/static/img/a.png",
            "//odd/x",
            "//",
            "/x/y",
            "/x/y/z/w",
            "/docs",
            "/docs/a",
            "/nothing",
            "/d/e",
        ];
        for path in paths {
            let walk = t
                .any
                .all
                .iter()
                .map(|&i| &t.entries[i])
                .find(|e| prefix_matches(&e.route.path, path))
                .map(|e| e.route.id.as_str());
            check(&t, None, path, walk);
        }
        check(&t, None, "/api", Some("r1"));
        check(&t, None, "/api/v1/users/7", Some("r15"));
        check(&t, None, "/apixy", Some("r0"));
    }

    #[test]
    fn precedence() {
        let t = compile(vec![
            route("any", HostPattern::Any, "/"),
            route("wild", HostPattern::Wildcard("*.example.com".into()), "/"),
            route(
                "deep",
                HostPattern::Wildcard("*.shop.example.com".into()),
                "/",
            ),
            route(
                "shop-root",
                HostPattern::Exact("shop.example.com".into()),
                "/",
            ),
            route(
                "shop-api",
                HostPattern::Exact("shop.example.com".into()),
                "/api",
            ),
            route(
                "shop-apiv2",
                HostPattern::Exact("shop.example.com".into()),
                "/api/v2/",
            ),
            route(
                "only-api",
                HostPattern::Exact("api.example.org".into()),
                "/api/",
            ),
        ]);
        check(&t, Some("shop.example.com"), "/", Some("shop-root"));
        check(&t, Some("SHOP.example.com:8080"), "/api", Some("shop-api"));
        check(&t, Some("shop.example.com"), "/api/x", Some("shop-api"));
        check(&t, Some("shop.example.com"), "/apix", Some("shop-root"));
        check(
            &t,
            Some("shop.example.com"),
            "/api/v2/x",
            Some("shop-apiv2"),
        );
        check(&t, Some("shop.example.com."), "/api/v2", Some("shop-api"));
        check(&t, Some("a.example.com"), "/x", Some("wild"));
        check(&t, Some("a.b.example.com"), "/x", Some("wild"));
        check(&t, Some("a.shop.example.com"), "/x", Some("deep"));
        check(&t, Some("example.com"), "/x", Some("any"));
        check(&t, Some("other.net"), "/", Some("any"));
        check(&t, None, "/", Some("any"));
        check(&t, Some("[::1]:80"), "/", Some("any"));
        // a host that owns routes does not fall through to less specific hosts
        check(&t, Some("api.example.org"), "/", None);
        check(&t, Some("api.example.org"), "/api/", Some("only-api"));
    }

    #[test]
    fn no_default_site_means_no_route() {
        let t = compile(vec![route(
            "shop",
            HostPattern::Exact("shop.example.com".into()),
            "/",
        )]);
        check(&t, Some("evil.example.com"), "/", None);
        check(&t, None, "/", None);
    }

    #[test]
    fn prefixes() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
        assert!(prefix_matches("/", "/anything"));
    }
}
