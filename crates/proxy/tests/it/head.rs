//! HEAD to the answers berth makes itself (errors, static 404/416, 429), over h2c and HTTP/1.1
//! with curl: status and headers, and a stream that ends with the headers.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use proxy::{Balance, HostPattern, RateLimit, Route, Target};

use crate::support::*;

/// `curl -sSI` (plus `extra`) against `http://ADDR/path`: the response head, or curl's error.
async fn curl_head(addr: SocketAddr, path: &str, extra: &[&str]) -> Result<String, String> {
    let url = format!("http://{addr}{path}");
    let mut cmd = Command::new("curl");
    cmd.args(["-sSI", "--max-time", "10"]).args(extra).arg(&url);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_lowercase())
    } else {
        Err(format!(
            "curl {url} {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[tokio::test]
async fn head_to_berths_own_answers_ends_the_stream_over_h2() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("a.txt"), "0123456789").unwrap();
    let echo = TestUpstream::echo("web").await;
    let live = pool("web", Balance::RoundRobin, vec![echo.upstream()]);
    let dead = pool(
        "dead",
        Balance::RoundRobin,
        vec![proxy::Upstream::new("dead", dead_addr().await)],
    );
    let empty = pool("empty", Balance::RoundRobin, vec![]);
    let files = Target::Static {
        root: site.path().to_owned(),
        spa: false,
    };
    let limited = Route {
        rate_limit: Some(RateLimit {
            zone: "z".into(),
            requests: 1,
            per: Duration::from_secs(3600),
            burst: 1,
        }),
        ..route("limited", HostPattern::Any, "/limited", &live)
    };
    let proxy = TestProxy::start(
        config(),
        vec![
            Route {
                strip_prefix: true,
                ..Route::new("static", "app", HostPattern::Any, "/static", files)
            },
            route("dead", HostPattern::Any, "/dead", &dead),
            route("empty", HostPattern::Any, "/empty", &empty),
            limited,
            route("only", HostPattern::Exact("only.test".into()), "/", &live),
        ],
    )
    .await;
    let a = proxy.addr;
    // The zone's one token goes to this request; the HEADs below get 429.
    assert_eq!(get(a, "x", "/limited").await.status, 200);

    let cases: [(&str, &[&str], &str, &str); 7] = [
        ("/static/nope", &[], "404", ""),
        ("/static/%2e%2e/x", &[], "400", ""),
        ("/static/a.txt", &["-H", "range: bytes=100-"], "416", ""),
        ("/limited", &[], "429", "rate-limited"),
        ("/dead", &[], "502", "upstream connect refused"),
        ("/empty", &[], "503", "no instances"),
        ("/", &["-H", "host: nobody.test"], "404", "no route"),
    ];
    for version in ["--http2-prior-knowledge", "--http1.1"] {
        for (path, extra, status, marker) in cases {
            let args: Vec<&str> = [version].iter().chain(extra).copied().collect();
            let head = curl_head(a, path, &args).await.unwrap();
            let first = head.lines().next().unwrap_or("");
            assert!(first.contains(status), "{version} {path}: {head}");
            if !marker.is_empty() {
                assert!(
                    head.contains(&format!("x-berth-error: {marker}")),
                    "{version} {path}: {head}"
                );
            }
            // The length of the body a GET would get.
            assert!(
                head.contains("content-length: "),
                "{version} {path}: {head}"
            );
        }
    }
    // Static 200 and a proxied answer stay as they were.
    let head = curl_head(a, "/static/a.txt", &["--http2-prior-knowledge"])
        .await
        .unwrap();
    assert!(head.contains("content-length: 10"), "{head}");
    let head = curl_head(
        a,
        "/",
        &["--http2-prior-knowledge", "-H", "host: only.test"],
    )
    .await
    .unwrap();
    assert!(head.starts_with("http/2 200"), "{head}");
}

/// h2load sends HEADs too: every one of berth's answers must be a complete stream.
#[tokio::test]
async fn h2load_heads_of_a_404_all_complete() {
    let proxy = TestProxy::start(config(), vec![]).await;
    let url = format!("http://{}/nope", proxy.addr);
    let mut cmd = Command::new("h2load");
    cmd.args([
        "-n",
        "200",
        "-c",
        "2",
        "-m",
        "8",
        "-H",
        ":method: HEAD",
        &url,
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // (h2load counts a 4xx as "failed"; a broken stream is "errored".)
    assert!(
        text.contains("200 done, 0 succeeded, 200 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("200 4xx"), "{text}");
}
