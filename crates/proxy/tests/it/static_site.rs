//! Static routes end to end: a proxy on a real socket, hyper's HTTP/1.1 and h2 clients and
//! curl, a release-like directory per test.

use std::net::SocketAddr;
use std::path::Path;

use http::{Request, StatusCode};
use proxy::{HostPattern, Route, Target};

use crate::support::{Answer, TestProxy, collect, config, h1, h2};

fn write(dir: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// Text that compresses well.
fn text(len: usize) -> Vec<u8> {
    let line = b"berth serves static files like a CDN. ";
    line.iter().copied().cycle().take(len).collect()
}

fn static_route(root: &Path, spa: bool) -> Route {
    Route::new(
        "site:/",
        "site",
        HostPattern::Any,
        "/",
        Target::Static {
            root: root.to_owned(),
            spa,
        },
    )
}

async fn start(root: &Path, spa: bool) -> TestProxy {
    TestProxy::start(config(), vec![static_route(root, spa)]).await
}

#[derive(Clone, Copy, Debug)]
enum Proto {
    H1,
    H2,
}

async fn ask(
    addr: SocketAddr,
    proto: Proto,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let authority = format!("127.0.0.1:{}", addr.port());
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"));
    // HTTP/1.1 needs a Host (berth answers 400 without one); on h2 it agrees with :authority.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        req = req.header("host", &authority);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(proxy::empty_body()).unwrap();
    match proto {
        Proto::H1 => {
            let mut tx = h1(addr).await;
            collect(tx.send_request(req).await.unwrap()).await
        }
        Proto::H2 => {
            let mut tx = h2(addr).await;
            collect(tx.send_request(req).await.unwrap()).await
        }
    }
}

/// The headers that describe the representation: HEAD must say what GET says.
const REPRESENTATION: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "etag",
    "last-modified",
    "cache-control",
    "vary",
    "accept-ranges",
];

#[tokio::test]
async fn head_and_get_describe_the_same_representation() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.js", text(4000)); // compressible, no precompressed sibling
    write(dir.path(), "big.css", text(600_000)); // above the in-memory size
    write(dir.path(), "pre.js", text(3000));
    write(dir.path(), "pre.js.gz", "gzip bytes");
    write(dir.path(), "index.html", "<h1>home</h1>");
    let proxy = start(dir.path(), true).await;
    for proto in [Proto::H1, Proto::H2] {
        for path in ["/app.js", "/big.css", "/pre.js", "/", "/deep/link"] {
            for accept in ["br", "gzip", "br, gzip", "identity", ""] {
                let headers: &[(&str, &str)] = if accept.is_empty() {
                    &[]
                } else {
                    &[("accept-encoding", accept)]
                };
                let get = ask(proxy.addr, proto, "GET", path, headers).await;
                let head = ask(proxy.addr, proto, "HEAD", path, headers).await;
                assert_eq!(get.status, StatusCode::OK, "{proto:?} {path} {accept}");
                assert_eq!(head.status, get.status, "{proto:?} {path} {accept}");
                for name in REPRESENTATION {
                    assert_eq!(
                        head.header(name),
                        get.header(name),
                        "{proto:?} {path} accept-encoding '{accept}': {name}"
                    );
                }
                assert!(head.body.is_empty());
            }
        }
    }
}

/// The value of an unlabelled series in the proxy's metrics.
fn metric(proxy: &TestProxy, name: &str) -> u64 {
    let text = proxy.proxy.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn large_files_compressed_on_the_fly_say_so_on_head_too() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "huge.txt", text(9 << 20)); // above the compress-once size
    let proxy = start(dir.path(), false).await;
    for proto in [Proto::H1, Proto::H2] {
        let headers = &[("accept-encoding", "gzip")];
        let get = ask(proxy.addr, proto, "GET", "/huge.txt", headers).await;
        let head = ask(proxy.addr, proto, "HEAD", "/huge.txt", headers).await;
        assert_eq!(get.header("content-encoding"), "gzip", "{proto:?}");
        assert!(get.header("etag").starts_with("W/\""), "{proto:?}");
        assert_eq!(get.header("content-length"), "", "{proto:?}");
        for name in REPRESENTATION {
            assert_eq!(head.header(name), get.header(name), "{proto:?}: {name}");
        }
    }
}

#[tokio::test]
async fn a_path_and_its_siblings_are_looked_up_on_disk_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.js", text(4000));
    write(dir.path(), "app.js.br", "brotli bytes");
    write(dir.path(), "app.js.gz", "gzip bytes");
    let proxy = start(dir.path(), false).await;
    let before = metric(&proxy, "berth_proxy_static_lookups_on_disk_total");
    for (method, accept, encoding, body) in [
        ("GET", "br", "br", "brotli bytes"),
        ("GET", "gzip", "gzip", "gzip bytes"),
        ("HEAD", "br, gzip", "br", ""),
        ("GET", "identity", "", "berth"),
    ] {
        let a = ask(
            proxy.addr,
            Proto::H1,
            method,
            "/app.js",
            &[("accept-encoding", accept)],
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.header("content-encoding"), encoding, "{accept}");
        assert!(a.body.starts_with(body), "{accept}: {}", a.body);
    }
    let after = metric(&proxy, "berth_proxy_static_lookups_on_disk_total");
    assert_eq!(after - before, 1);
    // The file and both siblings are held in memory.
    let expected = 4000 + "brotli bytes".len() + "gzip bytes".len();
    assert_eq!(
        metric(&proxy, "berth_proxy_static_memory_bytes"),
        expected as u64
    );
}

#[tokio::test]
async fn memory_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a.bin", "b.bin", "c.bin"];
    for (i, name) in names.iter().enumerate() {
        write(dir.path(), name, vec![b'a' + i as u8; 6000]);
    }
    let cfg = proxy::ProxyConfig {
        static_memory: 13_000,
        ..config()
    };
    let proxy = TestProxy::start(cfg, vec![static_route(dir.path(), false)]).await;
    for round in 0..2 {
        for (i, name) in names.iter().enumerate() {
            let a = ask(proxy.addr, Proto::H2, "GET", &format!("/{name}"), &[]).await;
            assert_eq!(a.status, StatusCode::OK);
            assert_eq!(
                a.body,
                String::from(char::from(b'a' + i as u8)).repeat(6000),
                "round {round}"
            );
        }
    }
    // Two files fit; the third is read from disk each time.
    assert_eq!(metric(&proxy, "berth_proxy_static_memory_bytes"), 12_000);
}

#[tokio::test]
async fn no_stale_file_after_a_deploy() {
    let releases = tempfile::tempdir().unwrap();
    let (r1, r2) = (
        releases.path().join("r1/dist"),
        releases.path().join("r2/dist"),
    );
    write(&r1, "app.js", "one");
    write(&r2, "app.js", "two");
    let proxy = start(&r1, false).await;
    let body = |addr| async move { ask(addr, Proto::H1, "GET", "/app.js", &[]).await.body };
    assert_eq!(body(proxy.addr).await, "one");
    // A release tree never changes, so what was found is kept: even a (forbidden) edit in place
    // is not seen while r1 is published.
    write(&r1, "app.js", "one, edited");
    assert_eq!(body(proxy.addr).await, "one");
    assert_eq!(metric(&proxy, "berth_proxy_static_roots"), 1);

    proxy.publish(vec![static_route(&r2, false)]); // deploy
    assert_eq!(body(proxy.addr).await, "two");
    // r1's cache went with the last table that had it.
    assert_eq!(metric(&proxy, "berth_proxy_static_roots"), 1);
    assert_eq!(metric(&proxy, "berth_proxy_static_memory_bytes"), 3);

    proxy.publish(vec![static_route(&r1, false)]); // rollback: r1 from an empty cache
    assert_eq!(body(proxy.addr).await, "one, edited");

    // The same root on two routes (and on republishing) shares one cache.
    let mut assets = static_route(&r1, false);
    assets.path = "/assets".into();
    assets.strip_prefix = true;
    proxy.publish(vec![static_route(&r1, false), assets]);
    assert_eq!(body(proxy.addr).await, "one, edited");
    let a = ask(proxy.addr, Proto::H1, "GET", "/assets/app.js", &[]).await;
    assert_eq!(a.body, "one, edited");
    assert_eq!(metric(&proxy, "berth_proxy_static_roots"), 1);
}

#[tokio::test]
async fn paths_map_to_files_under_the_root() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.js", "root app");
    write(dir.path(), "static/app.js", "nested app");
    write(dir.path(), "docs/index.html", "docs");
    let mut stripped = static_route(dir.path(), false);
    stripped.path = "/cdn".into();
    stripped.strip_prefix = true;
    let mut kept = static_route(dir.path(), false);
    kept.path = "/static".into();
    let proxy = TestProxy::start(config(), vec![stripped, kept]).await;
    for (path, status, body) in [
        ("/cdn/app.js", 200, "root app"), // strip_prefix: /cdn/x is ROOT/x
        ("/static/app.js", 200, "nested app"), // no strip_prefix: /static/x is ROOT/static/x
        ("/cdn/static/app.js", 200, "nested app"),
        ("/cdn/docs/", 200, "docs"),
        ("/cdn/docs", 308, ""),
        ("/cdn/missing.js", 404, "not found\n"),
    ] {
        let a = ask(proxy.addr, Proto::H1, "GET", path, &[]).await;
        assert_eq!(a.status.as_u16(), status, "{path}");
        assert_eq!(a.body, body, "{path}");
    }
    let a = ask(proxy.addr, Proto::H1, "GET", "/cdn/docs?x=1", &[]).await;
    assert_eq!(a.header("location"), "./docs/?x=1");
}

#[tokio::test]
async fn spa_fallback_for_deep_links_but_not_missing_assets() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", "<h1>app</h1>");
    write(dir.path(), "assets/app.3f9a1c2b.js", "js");
    let proxy = start(dir.path(), true).await;
    for proto in [Proto::H1, Proto::H2] {
        for path in [
            "/dashboard",
            "/users/john.doe",
            "/users/john.doe/",
            "/v1.2/settings",
            "/blog/2024.01.02.hello-world",
            "/about.html",
        ] {
            let a = ask(proxy.addr, proto, "GET", path, &[]).await;
            assert_eq!(a.status, StatusCode::OK, "{proto:?} {path}");
            assert_eq!(a.body, "<h1>app</h1>", "{proto:?} {path}");
            assert_eq!(a.header("cache-control"), "no-cache", "{path}");
        }
        for path in [
            "/missing.js",
            "/assets/app.0000aaaa.js",
            "/assets/index-BkT9x2aB.css",
            "/favicon.ico",
            "/users/john.png",
            "/.env",
        ] {
            let a = ask(proxy.addr, proto, "GET", path, &[]).await;
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{proto:?} {path}");
            assert_eq!(a.header("x-berth-error"), "not found", "{path}");
        }
        let a = ask(proxy.addr, proto, "GET", "/assets/app.3f9a1c2b.js", &[]).await;
        assert_eq!(a.body, "js");
    }
}

#[tokio::test]
async fn cache_control_by_kind_and_configurable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "index.html", "<h1>home</h1>");
    write(dir.path(), "assets/index-BkT9x2aB.css", "css");
    write(dir.path(), "assets/app.3f9a1c2b.js", "js");
    write(dir.path(), "logo.png", "png");
    let defaults = start(dir.path(), false).await;
    let mut custom = static_route(dir.path(), true);
    custom.cache_control = proxy::CachePolicy {
        hashed: Some("public, max-age=604800".parse().unwrap()),
        html: Some("no-store".parse().unwrap()),
        other: None,
    };
    let custom = TestProxy::start(config(), vec![custom]).await;
    for (path, default, configured) in [
        (
            "/assets/index-BkT9x2aB.css",
            "public, max-age=31536000, immutable",
            "public, max-age=604800",
        ),
        (
            "/assets/app.3f9a1c2b.js",
            "public, max-age=31536000, immutable",
            "public, max-age=604800",
        ),
        ("/", "no-cache", "no-store"),
        ("/index.html", "no-cache", "no-store"),
        ("/logo.png", "no-cache", ""),
    ] {
        let a = ask(defaults.addr, Proto::H1, "GET", path, &[]).await;
        assert_eq!(a.header("cache-control"), default, "{path}");
        let a = ask(custom.addr, Proto::H2, "GET", path, &[]).await;
        assert_eq!(a.header("cache-control"), configured, "{path}");
        let a = ask(custom.addr, Proto::H2, "HEAD", path, &[]).await;
        assert_eq!(a.header("cache-control"), configured, "HEAD {path}");
    }
    // The SPA fallback is HTML.
    let a = ask(custom.addr, Proto::H1, "GET", "/some/page", &[]).await;
    assert_eq!(a.header("cache-control"), "no-store");
}

/// curl with `Accept-Encoding: br`, on the blocking pool (the proxy runs on this runtime).
async fn curl(url: &str, args: &'static [&'static str]) -> String {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-H", "accept-encoding: br"])
            .args(args)
            .arg(&url)
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "curl {args:?}");
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// The representation headers of a response head as curl prints it, sorted.
fn representation(head: &str) -> Vec<String> {
    let mut kept: Vec<String> = head
        .lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
            REPRESENTATION.contains(&name.as_str())
        })
        .map(|l| l.trim().to_ascii_lowercase())
        .collect();
    kept.sort();
    kept
}

/// curl, as a user would: GET and `-I` (HEAD) of the same URL agree.
#[tokio::test]
async fn curl_head_matches_get() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app.js", text(5000));
    let proxy = start(dir.path(), false).await;
    let url = format!("http://127.0.0.1:{}/app.js", proxy.addr.port());
    let get = representation(&curl(&url, &["-D", "-", "-o", "/dev/null"]).await);
    let head = representation(&curl(&url, &["-I"]).await);
    assert!(get.contains(&"content-encoding: br".to_owned()), "{get:?}");
    assert_eq!(head, get);
}
