//! A route under maintenance: 503 with `Retry-After`, the route's page, the marker header, and
//! nothing reaches the instance or the files; other routes and a republish without it serve.

use std::sync::Arc;

use proxy::{Balance, HostPattern, Maintenance, Route, Target};

use crate::support::*;

#[tokio::test]
async fn a_route_under_maintenance_answers_its_page_and_retry_after() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("a.txt"), "file").unwrap();
    let echo = TestUpstream::echo("web").await;
    let live = pool("web", Balance::RoundRobin, vec![echo.upstream()]);
    let down = Arc::new(Maintenance {
        retry_after: 42,
        page: "<h1>back at 5</h1>".into(),
    });
    let routes = |maintenance: Option<Arc<Maintenance>>| {
        let files = Target::Static {
            root: site.path().to_owned(),
            spa: false,
        };
        vec![
            Route {
                maintenance: maintenance.clone(),
                ..route("app", HostPattern::Exact("app.test".into()), "/", &live)
            },
            Route {
                maintenance,
                strip_prefix: true,
                ..Route::new("files", "app", HostPattern::Any, "/files", files)
            },
            route("other", HostPattern::Any, "/", &live),
        ]
    };
    let proxy = TestProxy::start(config(), routes(Some(down))).await;
    let a = proxy.addr;

    for (host, path) in [("app.test", "/x"), ("any.test", "/files/a.txt")] {
        let answer = get(a, host, path).await;
        assert_eq!(answer.status, 503, "{host}{path}");
        assert_eq!(answer.header("retry-after"), "42");
        assert_eq!(answer.header("x-berth-error"), "maintenance");
        assert_eq!(answer.header("content-type"), "text/html; charset=utf-8");
        assert_eq!(answer.header("cache-control"), "no-store");
        assert_eq!(answer.body, "<h1>back at 5</h1>");
    }
    assert_eq!(echo.hits(), 0, "nothing reached the instance");
    // Another app's route is not affected.
    assert_eq!(get(a, "other.test", "/").await.status, 200);
    assert_eq!(echo.hits(), 1);

    proxy.publish(routes(None));
    assert_eq!(get(a, "app.test", "/x").await.status, 200);
    assert_eq!(get(a, "any.test", "/files/a.txt").await.body, "file");
}
