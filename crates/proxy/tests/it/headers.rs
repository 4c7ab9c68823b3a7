//! Security headers over real sockets: presets, the app's own headers, forced overrides,
//! removal, static files and berth's own error responses, and `Server`.

use std::sync::Arc;

use http::header::{CONTENT_SECURITY_POLICY, STRICT_TRANSPORT_SECURITY, X_FRAME_OPTIONS};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use proxy::{Balance, HeaderPolicy, HostPattern, Preset, Route, Target};

use crate::support::*;

/// An upstream that names itself like a real server would, and on `/app-sets` sets two
/// security headers of its own.
async fn app() -> TestUpstream {
    TestUpstream::start(
        "web",
        Arc::new(|req| {
            Box::pin(async move {
                let mut resp = Response::builder().header("server", "gunicorn/20.1.0 (Ubuntu)");
                if req.uri().path().ends_with("/app-sets") {
                    resp = resp
                        .header("x-frame-options", "ALLOW-FROM https://partner.example")
                        .header("x-content-type-options", "app-value");
                }
                resp.body(body("hello")).unwrap()
            })
        }),
    )
    .await
}

fn with(route: Route, policy: HeaderPolicy) -> Route {
    Route {
        headers: Arc::new(policy),
        ..route
    }
}

fn preset(p: Preset) -> HeaderPolicy {
    HeaderPolicy::preset(p)
}

const SECURITY: [&str; 7] = [
    "strict-transport-security",
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
];

#[tokio::test]
async fn presets_over_plain_http() {
    let up = app().await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let r = |path: &str, policy| with(route(path, HostPattern::Any, path, &p), policy);
    let proxy = TestProxy::start(
        config(),
        vec![
            r("/basic", preset(Preset::Basic)),
            r("/strict", preset(Preset::Strict)),
            r("/off", preset(Preset::Off)),
            // a route built with defaults gets `basic`
            route("/default", HostPattern::Any, "/default", &p),
        ],
    )
    .await;

    for path in ["/basic", "/default"] {
        let a = get(proxy.addr, "x", path).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(a.header("x-frame-options"), "SAMEORIGIN", "{path}");
        assert_eq!(
            a.header("referrer-policy"),
            "strict-origin-when-cross-origin"
        );
        assert_eq!(a.header("content-security-policy"), "");
        // never over plain HTTP
        assert!(!a.headers.contains_key(STRICT_TRANSPORT_SECURITY));
    }

    let a = get(proxy.addr, "x", "/strict").await;
    assert_eq!(a.header("x-frame-options"), "DENY");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert!(
        a.header("content-security-policy")
            .contains("default-src 'self'")
    );
    assert!(
        a.header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );
    assert!(a.header("permissions-policy").contains("camera=()"));
    assert_eq!(a.header("cross-origin-opener-policy"), "same-origin");
    assert!(!a.headers.contains_key(STRICT_TRANSPORT_SECURITY));

    let a = get(proxy.addr, "x", "/off").await;
    assert_eq!(a.status, StatusCode::OK);
    for name in SECURITY {
        assert!(!a.headers.contains_key(name), "{name} with headers = off");
    }
}

#[tokio::test]
async fn app_wins_unless_the_route_forces() {
    let up = app().await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let mut forced = preset(Preset::Basic);
    forced.force();
    let proxy = TestProxy::start(
        config(),
        vec![
            route("/", HostPattern::Any, "/", &p),
            with(route("/forced", HostPattern::Any, "/forced", &p), forced),
        ],
    )
    .await;

    let a = get(proxy.addr, "x", "/app-sets").await;
    assert_eq!(
        a.header("x-frame-options"),
        "ALLOW-FROM https://partner.example"
    );
    assert_eq!(a.header("x-content-type-options"), "app-value");
    // what the app did not set is still added
    assert_eq!(
        a.header("referrer-policy"),
        "strict-origin-when-cross-origin"
    );

    let a = get(proxy.addr, "x", "/forced/app-sets").await;
    assert_eq!(a.header("x-frame-options"), "SAMEORIGIN");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert_eq!(a.headers.get_all(X_FRAME_OPTIONS).iter().count(), 1);
}

#[tokio::test]
async fn overrides_set_and_remove() {
    let up = app().await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let csp = "default-src 'self' https://cdn.example.com";
    let mut overridden = preset(Preset::Strict);
    overridden
        .set(CONTENT_SECURITY_POLICY, Some(HeaderValue::from_static(csp)))
        .set(HeaderName::from_static("x-frame-options"), None)
        .set(
            HeaderName::from_static("x-robots-tag"),
            Some(HeaderValue::from_static("noindex")),
        );
    // forced removal takes away the app's own header
    let mut strip = preset(Preset::Off);
    strip
        .set(HeaderName::from_static("x-content-type-options"), None)
        .force();
    let proxy = TestProxy::start(
        config(),
        vec![
            with(route("/", HostPattern::Any, "/", &p), overridden),
            with(route("/strip", HostPattern::Any, "/strip", &p), strip),
        ],
    )
    .await;

    let a = get(proxy.addr, "x", "/").await;
    assert_eq!(a.header("content-security-policy"), csp);
    assert!(!a.headers.contains_key(X_FRAME_OPTIONS));
    assert_eq!(a.header("x-robots-tag"), "noindex");
    assert_eq!(a.header("cross-origin-opener-policy"), "same-origin");

    // a removed preset header is not added, but the app may still send its own
    let a = get(proxy.addr, "x", "/app-sets").await;
    assert_eq!(
        a.header("x-frame-options"),
        "ALLOW-FROM https://partner.example"
    );

    let a = get(proxy.addr, "x", "/strip/app-sets").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.headers.contains_key("x-content-type-options"));
    assert_eq!(
        a.header("x-frame-options"),
        "ALLOW-FROM https://partner.example"
    );
}

#[tokio::test]
async fn server_header_never_leaks_a_version() {
    let up = app().await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![route("shop", HostPattern::Exact("shop".into()), "/", &p)],
    )
    .await;
    let a = get(proxy.addr, "shop", "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers.get_all("server").iter().count(), 1);
    assert_eq!(a.header("server"), "berth");
    // berth's own answers too
    let a = get(proxy.addr, "elsewhere", "/").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.header("server"), "berth");
    // no route, no route policy
    assert!(!a.headers.contains_key("x-frame-options"));
}

#[tokio::test]
async fn static_files_and_errors_of_a_route_get_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
    let dead = pool(
        "dead",
        Balance::RoundRobin,
        vec![proxy::Upstream::new("dead", dead_addr().await)],
    );
    let files = Route::new(
        "site:/",
        "site",
        HostPattern::Any,
        "/",
        Target::Static {
            root: dir.path().to_owned(),
            spa: false,
        },
    );
    let proxy = TestProxy::start(
        config(),
        vec![
            with(files, preset(Preset::Strict)),
            with(
                route("/api", HostPattern::Any, "/api", &dead),
                preset(Preset::Strict),
            ),
        ],
    )
    .await;

    let a = get(proxy.addr, "x", "/index.html").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "<h1>hi</h1>");
    assert_eq!(a.header("x-frame-options"), "DENY");
    assert_eq!(a.header("cross-origin-opener-policy"), "same-origin");

    let a = get(proxy.addr, "x", "/missing.html").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.header("x-frame-options"), "DENY");

    let a = get(proxy.addr, "x", "/api/x").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert!(a.headers.contains_key("x-berth-error"));
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert_eq!(a.header("server"), "berth");
}
