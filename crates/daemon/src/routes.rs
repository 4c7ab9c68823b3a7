//! What a route's `[proxy]` settings become in the proxy: the security headers (preset, the
//! app's `set_headers`, the route's own), its rate-limit zone, the app's trusted proxies, and
//! the `Cache-Control` of a static route's files.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use proxy::{CachePolicy, HeaderPolicy, IpNet, Preset, RateLimit};
use spec::{HeaderPreset, ProxySpec, RouteSpec};

pub fn preset(p: HeaderPreset) -> Preset {
    match p {
        HeaderPreset::Off => Preset::Off,
        HeaderPreset::Basic => Preset::Basic,
        HeaderPreset::Strict => Preset::Strict,
    }
}

/// The route's headers, in layers: its preset (`headers` of the route, else of `[proxy]`),
/// then `[proxy.set_headers]`, then the route's `set_headers`; with `force_headers` every one
/// of them replaces (or removes) the header the app sets itself.
pub(crate) fn header_policy(app: &ProxySpec, route: &RouteSpec) -> HeaderPolicy {
    let mut policy = HeaderPolicy::preset(preset(route.headers.unwrap_or(app.headers)));
    for (name, value) in app.set_headers.iter().chain(&route.set_headers) {
        // spec has checked both; a failure here is a bug, not worth failing a deploy over
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::warn!(header = %name, "invalid header name skipped");
            continue;
        };
        let value = match value.as_deref().map(HeaderValue::from_str) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                tracing::warn!(header = %name, "invalid header value skipped");
                continue;
            }
        };
        policy.set(name, value);
    }
    if route.force_headers {
        policy.force();
    }
    policy
}

/// The zone the route counts against, with the app's rate for it.
pub(crate) fn rate_limit(app: &ProxySpec, route: &RouteSpec) -> Option<RateLimit> {
    let zone = route.rate_limit.as_ref()?;
    let Some(rate) = app.rate_limits.get(zone) else {
        tracing::warn!(zone = %zone, "route names an undefined rate-limit zone; not limited");
        return None;
    };
    Some(RateLimit {
        zone: zone.clone(),
        requests: rate.requests,
        per: rate.per,
        burst: rate.burst,
    })
}

/// The route's `cache_control`: the `Cache-Control` of its static files, by kind.
pub(crate) fn cache_policy(route: &RouteSpec) -> CachePolicy {
    // spec has checked every value; one that does not convert sends no header
    let value = |v: &Option<String>| v.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
    let c = &route.cache_control;
    CachePolicy {
        hashed: value(&c.hashed),
        html: value(&c.html),
        other: value(&c.other),
    }
}

/// `[proxy] trusted_proxies`, shared by all routes of the app.
pub(crate) fn trusted_proxies(app: &ProxySpec) -> Arc<[IpNet]> {
    app.trusted_proxies.as_slice().into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn route(
        headers: Option<HeaderPreset>,
        set: &[(&str, Option<&str>)],
        force: bool,
    ) -> RouteSpec {
        RouteSpec {
            host: "*".into(),
            path: "/".into(),
            target: spec::RouteTarget::Service("web".into()),
            strip_prefix: false,
            max_body: None,
            rate_limit: None,
            headers,
            set_headers: headers_map(set),
            force_headers: force,
            cache_control: spec::CacheControlSpec::default(),
            span: spec::SourceSpan::default(),
        }
    }

    #[test]
    fn cache_policy_from_spec() {
        let mut r = route(None, &[], false);
        assert_eq!(cache_policy(&r), CachePolicy::default());
        r.cache_control.hashed = Some("public, max-age=60".into());
        r.cache_control.html = None;
        let p = cache_policy(&r);
        assert_eq!(p.hashed.unwrap(), "public, max-age=60");
        assert_eq!(p.html, None);
        assert_eq!(p.other, CachePolicy::default().other);
    }

    fn headers_map(set: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        set.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    fn rendered(p: &HeaderPolicy) -> Vec<String> {
        let mut out: Vec<String> = p
            .entries()
            .iter()
            .map(|e| {
                let value = e.value.as_ref().map_or("-", |v| v.to_str().unwrap());
                let force = if e.force { " (forced)" } else { "" };
                format!("{}: {value}{force}", e.name)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn layers() {
        let app = ProxySpec {
            headers: HeaderPreset::Strict,
            set_headers: headers_map(&[
                (
                    "Content-Security-Policy",
                    Some("default-src 'self' cdn.example"),
                ),
                ("X-Frame-Options", None),
            ]),
            ..ProxySpec::default()
        };
        // the app's preset and overrides
        let p = header_policy(&app, &route(None, &[], false));
        let r = rendered(&p);
        assert!(r.contains(&"content-security-policy: default-src 'self' cdn.example".into()));
        assert!(r.contains(&"x-frame-options: -".into()));
        assert!(r.contains(&"cross-origin-opener-policy: same-origin".into()));
        // the route's preset, the app's overrides, then the route's, forced
        let p = header_policy(
            &app,
            &route(
                Some(HeaderPreset::Basic),
                &[
                    ("x-frame-options", Some("DENY")),
                    ("X-Robots-Tag", Some("noindex")),
                ],
                true,
            ),
        );
        assert_eq!(
            rendered(&p),
            [
                "content-security-policy: default-src 'self' cdn.example (forced)",
                "referrer-policy: strict-origin-when-cross-origin (forced)",
                "strict-transport-security: max-age=63072000 (forced)",
                "x-content-type-options: nosniff (forced)",
                "x-frame-options: DENY (forced)",
                "x-robots-tag: noindex (forced)",
            ]
        );
        // nothing said: basic
        let p = header_policy(&ProxySpec::default(), &route(None, &[], false));
        assert_eq!(p, HeaderPolicy::default());
    }

    #[test]
    fn zones_and_trust() {
        let app = ProxySpec {
            rate_limits: BTreeMap::from([(
                "api".to_owned(),
                spec::parse_rate("50/s burst 100").unwrap(),
            )]),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..ProxySpec::default()
        };
        let mut r = route(None, &[], false);
        assert_eq!(rate_limit(&app, &r), None);
        r.rate_limit = Some("api".into());
        let limit = rate_limit(&app, &r).unwrap();
        assert_eq!(
            (limit.zone.as_str(), limit.requests, limit.burst),
            ("api", 50, 100)
        );
        assert_eq!(limit.per, std::time::Duration::from_secs(1));
        let trusted = trusted_proxies(&app);
        assert_eq!(trusted.len(), 1);
        assert!(trusted[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
    }
}
