use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use proxy::{Balance, HostPattern, Pool, ProxyConfig, Upstream};

use crate::support::*;

#[tokio::test]
async fn nothing_listening_is_502() {
    let dead = Upstream::new("web.0", dead_addr().await);
    let p = pool("web", Balance::RoundRobin, vec![dead]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let r = get(proxy.addr, "x", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("x-berth-error"), "upstream connect refused");
    assert!(
        !r.body.contains("127.0.0.1") && !r.body.to_lowercase().contains("error:"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn empty_pool_is_503() {
    let p = pool("web", Balance::RoundRobin, vec![]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let r = get(proxy.addr, "x", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("x-berth-error"), "no instances");
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let slow = TestUpstream::start(
        "slow",
        Arc::new(|_req| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Response::new(body("late"))
            })
        }),
    )
    .await;
    let p = pool("web", Balance::RoundRobin, vec![slow.upstream()]);
    let cfg = ProxyConfig {
        response_timeout: Duration::from_millis(300),
        ..config()
    };
    let proxy = TestProxy::start(cfg, vec![route("r", HostPattern::Any, "/", &p)]).await;
    let started = std::time::Instant::now();
    let r = get(proxy.addr, "x", "/").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.header("x-berth-error"), "upstream timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn idempotent_request_retried_on_another_instance() {
    let alive = TestUpstream::echo("alive").await;
    let p = dead_then(&alive).await;
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    for _ in 0..4 {
        let r = get(proxy.addr, "x", "/").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-upstream"), "alive");
    }
    assert!(
        proxy
            .proxy
            .metrics_text()
            .contains("berth_proxy_upstream_retries_total{service=\"web\"} 2")
    );
}

#[tokio::test]
async fn post_is_never_retried() {
    let alive = TestUpstream::echo("alive").await;
    let p = dead_then(&alive).await;
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let req = Request::post("/orders")
        .header("host", "x")
        .body(full("{\"n\":1}"))
        .unwrap();
    let r = send(proxy.addr, req).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.header("x-berth-error"), "upstream connect refused");
    assert_eq!(alive.hits(), 0);
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_instance() {
    let (release, released) = tokio::sync::watch::channel(false);
    let busy = TestUpstream::start(
        "busy",
        Arc::new(move |_req| {
            let mut released = released.clone();
            Box::pin(async move {
                let _ = released.wait_for(|r| *r).await;
                Response::new(body("done"))
            })
        }),
    )
    .await;
    let free = TestUpstream::echo("free").await;
    let p = pool(
        "web",
        Balance::LeastOutstanding,
        vec![busy.upstream(), free.upstream()],
    );
    let busy_up = p.upstreams()[0].clone();
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    // Occupy the busy instance (least-outstanding tie-breaks round-robin, so the first
    // request may go either way: send until one is stuck there).
    let addr = proxy.addr;
    let mut stuck = Vec::new();
    while busy_up.inflight() == 0 {
        stuck.push(tokio::spawn(get(addr, "x", "/")));
        assert!(
            eventually(Duration::from_secs(5), || busy_up.inflight() > 0
                || free.hits() > 0)
            .await
        );
    }
    for _ in 0..6 {
        assert_eq!(get(addr, "x", "/").await.header("x-upstream"), "free");
    }
    release.send(true).unwrap();
    for s in stuck {
        assert_eq!(s.await.unwrap().status, StatusCode::OK);
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let mut tx = h1(proxy.addr).await;
    for _ in 0..20 {
        let req = Request::get("/")
            .header("host", "x")
            .body(proxy::empty_body())
            .unwrap();
        let r = collect(tx.send_request(req).await.unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(up.hits(), 20);
    // Sequential requests share pooled upstream connections (a second one may open while the
    // first is on its way back to the pool).
    let conns = up.conns.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns <= 3,
        "{conns} upstream connections for 20 sequential requests"
    );
}

/// A round-robin pool whose first instance (where round-robin starts) refuses connections and
/// whose second is `alive`.
async fn dead_then(alive: &TestUpstream) -> Arc<Pool> {
    pool(
        "web",
        Balance::RoundRobin,
        vec![Upstream::new("dead", dead_addr().await), alive.upstream()],
    )
}
