//! Rate-limit zones and the per-address connection limit over real sockets. Every client is
//! 127.0.0.1, so distinct clients are simulated by trusting 127.0.0.1 as a proxy and sending
//! `X-Forwarded-For`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use proxy::{Balance, HostPattern, IpNet, Pool, ProxyConfig, RateLimit, Route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn limit(zone: &str, requests: u32, per: Duration, burst: u32) -> RateLimit {
    RateLimit {
        zone: zone.into(),
        requests,
        per,
        burst,
    }
}

const MINUTE: Duration = Duration::from_secs(60);

fn limited(path: &str, p: &Arc<Pool>, rate: RateLimit, trusted: &[&str]) -> Route {
    let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
    Route {
        rate_limit: Some(rate),
        trusted_proxies: trusted.into(),
        ..route(path, HostPattern::Any, path, p)
    }
}

/// GET `path` on a fresh connection, with `X-Forwarded-For: xff` unless empty.
async fn get_from(addr: SocketAddr, path: &str, xff: &str) -> Answer {
    let mut req = Request::get(path).header("host", "x");
    if !xff.is_empty() {
        req = req.header("x-forwarded-for", xff);
    }
    send(addr, req.body(proxy::empty_body()).unwrap()).await
}

async fn status_from(addr: SocketAddr, path: &str, xff: &str) -> StatusCode {
    get_from(addr, path, xff).await.status
}

#[tokio::test]
async fn burst_then_429_with_retry_after_then_refill() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![
            limited("/slow", &p, limit("slow", 1, MINUTE, 3), &[]),
            limited(
                "/fast",
                &p,
                limit("fast", 1, Duration::from_secs(1), 1),
                &[],
            ),
            route("/", HostPattern::Any, "/", &p),
        ],
    )
    .await;

    for _ in 0..3 {
        assert_eq!(status_from(proxy.addr, "/slow", "").await, StatusCode::OK);
    }
    let a = get_from(proxy.addr, "/slow/x", "").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.header("x-berth-error"), "rate-limited");
    // one token a minute: the next one is 60 s away at most, rounded up
    let wait: u64 = a.header("retry-after").parse().unwrap();
    assert!((55..=60).contains(&wait), "retry-after {wait}");
    assert_eq!(up.hits(), 3, "a limited request never reaches the app");
    // other routes and zones are not affected
    assert_eq!(status_from(proxy.addr, "/", "").await, StatusCode::OK);

    assert_eq!(status_from(proxy.addr, "/fast", "").await, StatusCode::OK);
    let a = get_from(proxy.addr, "/fast", "").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.header("retry-after"), "1");
    // a client that waits as told gets through
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status_from(proxy.addr, "/fast", "").await, StatusCode::OK);

    let text = proxy.proxy.metrics_text();
    assert!(
        text.contains("berth_proxy_rate_limited_total{zone=\"app/slow\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("berth_proxy_rate_limited_total{zone=\"app/fast\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn clients_behind_trusted_proxies_have_their_own_buckets() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![
            limited(
                "/behind-lb",
                &p,
                limit("lb", 1, MINUTE, 2),
                &["127.0.0.1/32", "10.0.0.0/8"],
            ),
            limited("/direct", &p, limit("direct", 1, MINUTE, 2), &[]),
        ],
    )
    .await;
    let a = proxy.addr;

    // two clients, two buckets
    for _ in 0..2 {
        assert_eq!(
            status_from(a, "/behind-lb", "1.1.1.1").await,
            StatusCode::OK
        );
    }
    assert_eq!(
        status_from(a, "/behind-lb", "1.1.1.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status_from(a, "/behind-lb", "2.2.2.2").await,
        StatusCode::OK
    );

    // the right-most untrusted entry is the client: a forged left-most one changes nothing
    for _ in 0..2 {
        assert_eq!(
            status_from(a, "/behind-lb", "9.9.9.9, 3.3.3.3, 10.1.2.3").await,
            StatusCode::OK
        );
    }
    for forged in ["8.8.8.8, 3.3.3.3", "7.7.7.7, 3.3.3.3, 10.9.9.9", "3.3.3.3"] {
        assert_eq!(
            status_from(a, "/behind-lb", forged).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{forged}"
        );
    }
    assert_eq!(
        status_from(a, "/behind-lb", "3.3.3.3, 4.4.4.4").await,
        StatusCode::OK
    );

    // an untrusted peer's X-Forwarded-For is ignored: every request is 127.0.0.1's
    assert_eq!(status_from(a, "/direct", "5.5.5.5").await, StatusCode::OK);
    assert_eq!(status_from(a, "/direct", "6.6.6.6").await, StatusCode::OK);
    assert_eq!(
        status_from(a, "/direct", "7.7.7.7").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn many_clients_keep_the_zone_bounded() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let cfg = ProxyConfig {
        rate_limit_max_keys: 1000,
        ..config()
    };
    let proxy = TestProxy::start(
        cfg,
        vec![limited(
            "/",
            &p,
            limit("z", 1, MINUTE, 5),
            &["127.0.0.1/32"],
        )],
    )
    .await;
    // 10 000 distinct clients over 8 keep-alive connections
    let mut tasks = Vec::new();
    for conn in 0..8u32 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut tx = h1(addr).await;
            for i in 0..1250u32 {
                let n = conn * 1250 + i;
                let ip = format!("100.64.{}.{}", n / 256, n % 256);
                let req = Request::get("/")
                    .header("host", "x")
                    .header("x-forwarded-for", ip)
                    .body(proxy::empty_body())
                    .unwrap();
                tx.ready().await.unwrap();
                let a = collect(tx.send_request(req).await.unwrap()).await;
                assert_eq!(a.status, StatusCode::OK, "client {n}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let keys = proxy.proxy.rate_limit_keys("app", "z").unwrap();
    assert!(keys <= 1000 && keys > 100, "{keys} keys");
    let text = proxy.proxy.metrics_text();
    assert!(
        text.contains(&format!(
            "berth_proxy_rate_limit_keys{{zone=\"app/z\"}} {keys}"
        )),
        "{text}"
    );
    assert!(
        !text.contains("berth_proxy_rate_limit_evicted_keys_total{zone=\"app/z\"} 0"),
        "{text}"
    );
    // a new client of the full zone is remembered: its burst runs out (the clients of the
    // load above came over 8 connections served in parallel, so which of them came last is
    // not known)
    for _ in 0..5 {
        assert_eq!(
            status_from(proxy.addr, "/", "100.64.200.1").await,
            StatusCode::OK
        );
    }
    assert_eq!(
        status_from(proxy.addr, "/", "100.64.200.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn zone_state_survives_a_new_table() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let table = |rate: RateLimit| vec![limited("/", &p, rate, &[])];
    let proxy = TestProxy::start(config(), table(limit("z", 1, MINUTE, 2))).await;
    for _ in 0..2 {
        assert_eq!(status_from(proxy.addr, "/", "").await, StatusCode::OK);
    }
    assert_eq!(
        status_from(proxy.addr, "/", "").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // a deploy publishes a new table with the same zone: the client is still limited
    proxy.publish(table(limit("z", 1, MINUTE, 2)));
    assert_eq!(
        status_from(proxy.addr, "/", "").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(proxy.proxy.rate_limit_keys("app", "z"), Some(1));
    // a changed rate starts afresh
    proxy.publish(table(limit("z", 1, MINUTE, 3)));
    assert_eq!(status_from(proxy.addr, "/", "").await, StatusCode::OK);
    // a table without the zone forgets it
    proxy.publish(vec![route("/", HostPattern::Any, "/", &p)]);
    assert_eq!(proxy.proxy.rate_limit_keys("app", "z"), None);
}

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let cfg = ProxyConfig {
        max_connections_per_ip: 3,
        ..config()
    };
    let proxy = TestProxy::start(cfg, vec![route("/", HostPattern::Any, "/", &p)]).await;
    let ask = |mut tx: hyper::client::conn::http1::SendRequest<proxy::Body>| async move {
        let req = Request::get("/")
            .header("host", "x")
            .body(proxy::empty_body())
            .unwrap();
        let status = collect(tx.send_request(req).await.unwrap()).await.status;
        (status, tx)
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        let (status, tx) = ask(h1(proxy.addr).await).await;
        assert_eq!(status, StatusCode::OK);
        open.push(tx);
    }
    // the fourth is closed at once, without an answer
    let mut fourth = TcpStream::connect(proxy.addr).await.unwrap();
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut buf))
        .await
        .expect("the connection over the limit was not closed");
    assert!(read.is_err() || buf.is_empty(), "answered: {buf:?}");
    // the others still work
    let mut still = Vec::new();
    for tx in open {
        let (status, tx) = ask(tx).await;
        assert_eq!(status, StatusCode::OK);
        still.push(tx);
    }
    let text = proxy.proxy.metrics_text();
    assert!(
        text.contains("berth_proxy_connections_over_ip_limit_total 1"),
        "{text}"
    );
    // one closes: a new one is let in
    still.remove(0);
    let mut ok = false;
    for _ in 0..100 {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        let _ = s
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        if buf.starts_with(b"HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "no connection let in after one closed");
}
