use http::{Request, StatusCode};
use proxy::{Balance, HostPattern};

use crate::support::*;

#[tokio::test]
async fn host_then_longest_prefix_and_404() {
    let shop = TestUpstream::echo("shop").await;
    let api = TestUpstream::echo("api").await;
    let wild = TestUpstream::echo("wild").await;
    let any = TestUpstream::echo("any").await;
    let p = |u: &TestUpstream| pool(&u.name, Balance::RoundRobin, vec![u.upstream()]);
    let (ps, pa, pw, pany) = (p(&shop), p(&api), p(&wild), p(&any));
    let mut strip = route(
        "shop:/api",
        HostPattern::Exact("shop.example.com".into()),
        "/api",
        &pa,
    );
    strip.strip_prefix = true;
    let proxy = TestProxy::start(
        config(),
        vec![
            route("any:/", HostPattern::Any, "/", &pany),
            route(
                "wild:/",
                HostPattern::Wildcard("*.example.com".into()),
                "/",
                &pw,
            ),
            route(
                "shop:/",
                HostPattern::Exact("shop.example.com".into()),
                "/",
                &ps,
            ),
            strip,
            route(
                "only:/x/",
                HostPattern::Exact("only.example.org".into()),
                "/x/",
                &ps,
            ),
        ],
    )
    .await;
    let a = proxy.addr;
    let check = |host: &'static str,
                 path: &'static str,
                 upstream: &'static str,
                 seen_path: &'static str| async move {
        let r = get(a, host, path).await;
        assert_eq!(r.status, StatusCode::OK, "{host}{path}");
        assert_eq!(r.header("x-upstream"), upstream, "{host}{path}");
        let (line, _) = echoed(&r.body);
        assert_eq!(line, format!("GET {seen_path}"), "{host}{path}");
    };
    check("shop.example.com", "/", "shop", "/").await;
    check("Shop.Example.com:8080", "/cart?x=1", "shop", "/cart?x=1").await;
    check("shop.example.com", "/api/items?q=2", "api", "/items?q=2").await;
    check("shop.example.com", "/api", "api", "/").await;
    check("shop.example.com", "/apix", "shop", "/apix").await;
    check("cdn.example.com", "/a", "wild", "/a").await;
    check("example.com", "/a", "any", "/a").await;
    check("unknown.test", "/", "any", "/").await;

    // A host that owns routes never falls through to the default site.
    let r = get(a, "only.example.org", "/elsewhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-berth-error"), "no route");
    assert!(
        r.body.len() < 100 && !r.body.contains("127.0.0.1"),
        "{}",
        r.body
    );
    assert!(!r.header("x-request-id").is_empty());
}

#[tokio::test]
async fn unknown_host_without_default_site_is_404() {
    let shop = TestUpstream::echo("shop").await;
    let ps = pool("web", Balance::RoundRobin, vec![shop.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![route(
            "shop:/",
            HostPattern::Exact("shop.example.com".into()),
            "/",
            &ps,
        )],
    )
    .await;
    let r = get(proxy.addr, "evil.example.com", "/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-berth-error"), "no route");
    // No Host at all (HTTP/1.0 style).
    let mut req = Request::get("/").body(proxy::empty_body()).unwrap();
    *req.version_mut() = http::Version::HTTP_10;
    let r = send(proxy.addr, req).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(shop.hits(), 0);
}

#[tokio::test]
async fn h2c_routed_by_authority_with_host_for_http1_upstream() {
    let shop = TestUpstream::echo("shop").await;
    let other = TestUpstream::echo("other").await;
    let ps = pool("web", Balance::RoundRobin, vec![shop.upstream()]);
    let po = pool("other", Balance::RoundRobin, vec![other.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![
            route(
                "shop:/",
                HostPattern::Exact("shop.example.com".into()),
                "/",
                &ps,
            ),
            route("any:/", HostPattern::Any, "/", &po),
        ],
    )
    .await;
    let mut tx = h2(proxy.addr).await;
    for _ in 0..3 {
        let req = Request::get("http://shop.example.com/h2?x=1")
            .body(proxy::empty_body())
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let r = collect(resp).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-upstream"), "shop");
        let (line, h) = echoed(&r.body);
        assert_eq!(line, "GET /h2?x=1");
        assert_eq!(h["host"], "shop.example.com");
    }
}
