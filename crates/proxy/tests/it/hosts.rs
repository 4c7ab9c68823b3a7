//! Which host a request is for: exactly one valid `Host` on HTTP/1.1 (RFC 9112 section 3.2),
//! `:authority` on HTTP/2 with a `host` header that agrees, and what the instance is told.

use std::net::SocketAddr;

use http::{Request, StatusCode};
use proxy::{Balance, HostPattern, Route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Writes `head` (a request head without its final blank line) with `Connection: close` and
/// returns everything the proxy answers.
async fn raw(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// An echo upstream behind `shop.test` and another behind `*`.
async fn site() -> (TestUpstream, TestUpstream, TestProxy) {
    let shop = TestUpstream::echo("shop").await;
    let any = TestUpstream::echo("any").await;
    let ps = pool("shop", Balance::RoundRobin, vec![shop.upstream()]);
    let pa = pool("any", Balance::RoundRobin, vec![any.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![
            route("shop", HostPattern::Exact("shop.test".into()), "/", &ps),
            route("any", HostPattern::Any, "/", &pa),
        ],
    )
    .await;
    (shop, any, proxy)
}

#[tokio::test]
async fn http11_needs_exactly_one_valid_host() {
    let (shop, any, proxy) = site().await;
    let a = proxy.addr;
    for head in [
        "GET / HTTP/1.1\r\nHost: shop.test\r\nHost: evil.test",
        "GET / HTTP/1.1\r\nHost: shop.test\r\nhost: shop.test",
        "GET / HTTP/1.1",
        "GET / HTTP/1.1\r\nHost: local host/../x",
        "GET / HTTP/1.1\r\nHost: user@shop.test",
        "GET http://shop.test/ HTTP/1.1",
    ] {
        let r = raw(a, head).await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{head:?}: {r}");
        assert!(r.contains("x-berth-error: bad host\r\n"), "{head:?}: {r}");
        assert!(!r.contains("x-upstream"), "{head:?}: {r}");
    }
    assert_eq!((shop.hits(), any.hits()), (0, 0));

    // HTTP/1.0 may leave the host out: the `*` route answers.
    let r = raw(a, "GET /old HTTP/1.0").await;
    assert!(r.starts_with("HTTP/1.0 200 "), "{r}");
    assert!(r.contains("x-upstream: any\r\n"), "{r}");
    // Absolute form: the target's authority names the host, Host is still required.
    let r = raw(a, "GET http://shop.test/abs HTTP/1.1\r\nHost: other.test").await;
    assert!(r.contains("x-upstream: shop\r\n"), "{r}");
    assert!(r.contains("\r\n\r\nGET /abs\n"), "{r}");
    assert!(r.contains("\nhost: shop.test\n"), "{r}");
}

#[tokio::test]
async fn h2_host_header_must_agree_with_authority() {
    let (shop, _any, proxy) = site().await;
    let mut tx = h2(proxy.addr).await;
    let ask = |host: Option<&'static str>| {
        let mut req = Request::get("http://shop.test/h2");
        if let Some(host) = host {
            req = req.header("host", host);
        }
        req.body(proxy::empty_body()).unwrap()
    };
    for (host, status) in [
        (None, StatusCode::OK),
        (Some("SHOP.test"), StatusCode::OK),
        (Some("evil.test"), StatusCode::BAD_REQUEST),
    ] {
        let r = collect(tx.send_request(ask(host)).await.unwrap()).await;
        assert_eq!(r.status, status, "host {host:?}: {}", r.body);
        if status == StatusCode::OK {
            assert_eq!(r.header("x-upstream"), "shop");
        } else {
            assert_eq!(r.header("x-berth-error"), "bad host");
        }
    }
    assert_eq!(shop.hits(), 2);
    // userinfo has no place in :authority
    let req = Request::get("http://user@shop.test/")
        .body(proxy::empty_body())
        .unwrap();
    let r = collect(tx.send_request(req).await.unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(shop.hits(), 2);
}

#[tokio::test]
async fn real_ip_and_request_id_are_berths_whatever_the_client_sends() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let behind_lb = Route {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()].into(),
        ..route("lb", HostPattern::Exact("lb.test".into()), "/", &p)
    };
    let proxy = TestProxy::start(
        config(),
        vec![route("r", HostPattern::Any, "/", &p), behind_lb],
    )
    .await;
    let ask = |host: &str, id: Option<&str>| {
        let mut req = Request::get("/")
            .header("host", host)
            .header(
                "connection",
                "x-request-id, x-real-ip, x-forwarded-proto, forwarded",
            )
            .header("x-real-ip", "6.6.6.6")
            .header("x-forwarded-for", "203.0.113.9");
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.body(proxy::empty_body()).unwrap()
    };
    // A direct client: the peer is the client, whatever it says; the request id berth made
    // reaches the instance although the client named the header in `Connection`.
    let r = send(proxy.addr, ask("x", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let (_, h) = echoed(&r.body);
    assert_eq!(h["x-real-ip"], "127.0.0.1", "{}", r.body);
    assert_eq!(h["x-forwarded-proto"], "http", "{}", r.body);
    assert_eq!(h["forwarded"], "for=127.0.0.1;host=\"x\";proto=http");
    let id = r.header("x-request-id");
    assert_eq!(id.len(), 29, "berth made the id: {id}");
    assert_eq!(h["x-request-id"], id, "{}", r.body);
    // Behind a trusted proxy: the client it names; an id the client gave is the request's id
    // (it was said to berth, the next hop), and berth passes it on as its own.
    let r = send(proxy.addr, ask("lb.test", Some("client-made"))).await;
    let (_, h) = echoed(&r.body);
    assert_eq!(h["x-real-ip"], "203.0.113.9", "{}", r.body);
    assert_eq!(r.header("x-request-id"), "client-made");
    assert_eq!(h["x-request-id"], "client-made");
}
