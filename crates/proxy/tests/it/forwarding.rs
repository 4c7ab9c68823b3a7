use http::{Request, StatusCode};
use proxy::{Balance, HostPattern};

use crate::support::*;

#[tokio::test]
async fn hop_by_hop_removed_and_forwarding_headers_added() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let req = Request::get("/h")
        .header("host", "shop.example.com")
        .header("connection", "x-private, keep-alive")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9v")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-host", "spoofed.example")
        .header("upgrade", "h2c")
        .header("accept", "text/plain")
        .body(proxy::empty_body())
        .unwrap();
    let r = send(proxy.addr, req).await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, h) = echoed(&r.body);
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-authorization",
        "upgrade",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        assert!(
            !h.contains_key(gone),
            "{gone} reached the upstream: {}",
            r.body
        );
    }
    // `Connection` toward the upstream is only hyper's own keep-alive handling, if anything.
    assert_ne!(
        h.get("connection").map(|v| v.to_str().unwrap()),
        Some("x-private, keep-alive")
    );
    assert_eq!(h["accept"], "text/plain");
    assert_eq!(h["host"], "shop.example.com");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com");
    assert_eq!(
        h["forwarded"],
        "for=127.0.0.1;host=\"shop.example.com\";proto=http"
    );
    // A request id was made, passed on, and returned.
    let id = r.header("x-request-id");
    assert_eq!(id.len(), 29, "{id}");
    assert_eq!(h["x-request-id"], id);
}

#[tokio::test]
async fn request_id_kept_when_given_and_unique_when_not() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let req = Request::get("/")
        .header("host", "x")
        .header("x-request-id", "abc-123")
        .body(proxy::empty_body())
        .unwrap();
    let r = send(proxy.addr, req).await;
    assert_eq!(r.header("x-request-id"), "abc-123");
    assert_eq!(echoed(&r.body).1["x-request-id"], "abc-123");
    let a = get(proxy.addr, "x", "/").await;
    let b = get(proxy.addr, "x", "/").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    // berth's own error responses carry one too.
    let p404 = TestProxy::start(config(), vec![]).await;
    assert!(
        !get(p404.addr, "x", "/")
            .await
            .header("x-request-id")
            .is_empty()
    );
}

#[tokio::test]
async fn upstream_response_hop_by_hop_removed() {
    let up = TestUpstream::start(
        "web",
        std::sync::Arc::new(|_req| {
            Box::pin(async {
                http::Response::builder()
                    .header("connection", "x-internal")
                    .header("x-internal", "1")
                    .header("keep-alive", "timeout=3")
                    .header("x-app", "yes")
                    .body(body("ok"))
                    .unwrap()
            })
        }),
    )
    .await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let r = get(proxy.addr, "x", "/").await;
    assert_eq!(r.body, "ok");
    assert_eq!(r.header("x-app"), "yes");
    assert!(!r.headers.contains_key("x-internal"));
    assert!(!r.headers.contains_key("keep-alive"));
}
