use std::time::Duration;

use http::{Request, StatusCode};
use proxy::{AccessLog, Balance, HostPattern, ProxyConfig};

use crate::support::*;

#[tokio::test]
async fn access_log_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let up = TestUpstream::echo("web.0").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let cfg = ProxyConfig {
        access_log: AccessLog::File(path.clone()),
        ..ProxyConfig::default()
    };
    let proxy = TestProxy::start(cfg, vec![route("shop:/", HostPattern::Any, "/", &p)]).await;
    let req = Request::get("/items?token=secret")
        .header("host", "shop.example.com")
        .header("x-request-id", "log-me-1")
        .body(proxy::empty_body())
        .unwrap();
    let a = send(proxy.addr, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let _ = get(proxy.addr, "shop.example.com", "/second").await;

    let mut line = String::new();
    let found = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        match text.lines().find(|l| l.contains("\"log-me-1\"")) {
            Some(l) => {
                line = l.to_owned();
                true
            }
            None => false,
        }
    })
    .await;
    assert!(found, "no access log line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["request_id"], "log-me-1");
    assert_eq!(v["host"], "shop.example.com");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/items");
    assert_eq!(v["status"], 200);
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["route"], "shop:/");
    assert_eq!(v["upstream"], "web.0");
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert!(!line.contains("secret"));
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let weird = pool(
        "we\"ird",
        Balance::RoundRobin,
        vec![proxy::Upstream::new("dead", dead_addr().await)],
    );
    let proxy = TestProxy::start(
        config(),
        vec![
            route("shop:/", HostPattern::Any, "/", &p),
            route("shop:/dead\\", HostPattern::Any, "/dead", &weird),
            proxy::Route {
                rate_limit: Some(proxy::RateLimit {
                    zone: "api".into(),
                    requests: 1,
                    per: Duration::from_secs(60),
                    burst: 1,
                }),
                ..route("shop:/api", HostPattern::Any, "/api", &p)
            },
        ],
    )
    .await;
    assert_eq!(get(proxy.addr, "x", "/api").await.status, StatusCode::OK);
    assert_eq!(
        get(proxy.addr, "x", "/api").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "x", "/").await.status, StatusCode::OK);
    }
    assert_eq!(
        get(proxy.addr, "x", "/dead").await.status,
        StatusCode::BAD_GATEWAY
    );
    let text = proxy.proxy.metrics_text();
    assert!(
        eventually(Duration::from_secs(2), || {
            proxy.proxy.metrics_text().contains(
                "berth_proxy_requests_total{route=\"shop:/\",service=\"web\",class=\"2xx\"} 3",
            )
        })
        .await,
        "{text}"
    );
    let text = proxy.proxy.metrics_text();
    assert!(
        text.contains(
            "berth_proxy_request_duration_seconds_count{route=\"shop:/\",service=\"web\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("class=\"5xx\"} 1"), "{text}");
    assert!(
        text.contains("berth_proxy_rate_limited_total{zone=\"app/api\"} 1"),
        "{text}"
    );

    testkit::promtool_check(&text);
}
