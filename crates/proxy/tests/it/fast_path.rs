//! The HTTP/1.1 fast path against hyper's path on the same answers: a proxy with the fast path
//! and one without it, in front of the same instance, must give every client the same status,
//! fields and body (compressed or not, chunked or not, HEAD or GET).

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::StreamBody;
use hyper::body::Frame;

use crate::support::*;
use proxy::{Balance, HostPattern, ProxyConfig};

fn page() -> String {
    "<p>hello from the fast path</p>\n".repeat(64)
}

/// The instance: a few kinds of answers, by path.
async fn instance() -> TestUpstream {
    TestUpstream::start(
        "web",
        Arc::new(|req| {
            Box::pin(async move {
                let mut resp = match req.uri().path() {
                    "/page" => Response::builder()
                        .header("content-type", "text/html; charset=utf-8")
                        .header("etag", "\"v1\"")
                        .header("accept-ranges", "bytes")
                        .header("cache-control", "public, max-age=60")
                        .body(body(page())),
                    "/small" => Response::builder()
                        .header("content-type", "application/json")
                        .body(body("{\"ok\":true}")),
                    "/stream" => {
                        let frames = ["one\n", "two\n", "three\n"].into_iter().map(|s| {
                            Ok::<_, proxy::BoxError>(Frame::data(Bytes::from(s.repeat(300))))
                        });
                        Response::builder()
                            .header("content-type", "text/plain")
                            .body(http_body_util::BodyExt::boxed_unsync(StreamBody::new(
                                futures_util::stream::iter(frames),
                            )))
                    }
                    "/empty" => Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(proxy::empty_body()),
                    "/notransform" => Response::builder()
                        .header("content-type", "text/html")
                        .header("cache-control", "no-transform")
                        .body(body(page())),
                    _ => Response::builder()
                        .header("connection", "x-hop")
                        .header("x-hop", "1")
                        .header("keep-alive", "timeout=5")
                        .header("server", "app/1.0")
                        .header("x-request-id", "from-the-app")
                        .header("x-frame-options", "ALLOW-FROM https://a.test")
                        .header("vary", "Cookie")
                        .body(body("hop")),
                }
                .unwrap();
                resp.headers_mut()
                    .insert("x-path", req.uri().path().parse().unwrap());
                resp
            })
        }),
    )
    .await
}

/// Status, fields (without `date`) sorted, and the body decoded.
async fn ask(
    addr: std::net::SocketAddr,
    method: &Method,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "shop.test")
        .header("x-request-id", "test-1");
    if let Some(accept) = accept {
        req = req.header("accept-encoding", accept);
    }
    let mut tx = h1(addr).await;
    let resp = tx
        .send_request(req.body(proxy::empty_body()).unwrap())
        .await
        .unwrap();
    let (parts, b) = resp.into_parts();
    let raw = http_body_util::BodyExt::collect(b)
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let decoded = match parts
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap())
    {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some("br") => {
            let mut out = Vec::new();
            brotli::Decompressor::new(&raw[..], 4096)
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        _ => raw,
    };
    (parts.status, fields(&parts.headers), decoded)
}

fn fields(h: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = h
        .iter()
        .filter(|(n, _)| n.as_str() != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn the_fast_path_answers_as_hypers_path_does() {
    let up = instance().await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let routes = || {
        let mut r = route("shop", HostPattern::Exact("shop.test".into()), "/", &p);
        r.headers = Arc::new(proxy::HeaderPolicy::preset(proxy::Preset::Strict));
        vec![r]
    };
    let fast = TestProxy::start(config(), routes()).await;
    let hyper_only = TestProxy::start(
        ProxyConfig {
            http1_fast_path: false,
            ..config()
        },
        routes(),
    )
    .await;
    let mut compressed = 0;
    for path in [
        "/page",
        "/small",
        "/stream",
        "/empty",
        "/notransform",
        "/hop",
    ] {
        for accept in [
            None,
            Some("gzip"),
            Some("br, gzip"),
            Some("gzip;q=0, identity"),
        ] {
            for method in [Method::GET, Method::HEAD] {
                let ours = ask(fast.addr, &method, path, accept).await;
                let theirs = ask(hyper_only.addr, &method, path, accept).await;
                assert_eq!(ours, theirs, "{method} {path} accept-encoding {accept:?}");
                if ours.1.iter().any(|(n, _)| n == "content-encoding") {
                    compressed += 1;
                }
                if method == Method::GET && ours.0 == StatusCode::OK {
                    assert!(!ours.2.is_empty(), "{path}");
                }
            }
        }
    }
    assert!(
        compressed >= 4,
        "compression was exercised {compressed} times"
    );
    // The answers compared were the fast path's own: hyper's server served no connection.
    let text = fast.proxy.metrics_text();
    assert!(
        text.contains("berth_proxy_hyper_connections_total 0"),
        "{text}"
    );
    // And a request the fast path leaves to hyper (one with a body) is counted there.
    let req = Request::post("/page")
        .header("host", "shop.test")
        .body(body("a body"))
        .unwrap();
    assert_eq!(send(fast.addr, req).await.status, StatusCode::OK);
    let text = fast.proxy.metrics_text();
    assert!(
        text.contains("berth_proxy_hyper_connections_total 1"),
        "{text}"
    );
}
