use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use proxy::{Balance, BoxError, HostPattern, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::*;

/// An upstream that reads the whole request body, reports progress, and answers its length.
async fn counting_upstream(seen: Arc<AtomicU64>) -> TestUpstream {
    TestUpstream::start(
        "count",
        Arc::new(move |req| {
            let seen = seen.clone();
            Box::pin(async move {
                let mut b = req.into_body();
                let mut n = 0u64;
                while let Some(frame) = b.frame().await {
                    match frame {
                        Ok(f) => {
                            if let Some(d) = f.data_ref() {
                                n += d.len() as u64;
                                seen.store(n, Ordering::SeqCst);
                            }
                        }
                        Err(_) => {
                            return Response::builder()
                                .status(400)
                                .body(body("broken"))
                                .unwrap();
                        }
                    }
                }
                Response::new(body(n.to_string()))
            })
        }),
    )
    .await
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn channel_body(rx: mpsc::Receiver<Bytes>) -> proxy::Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    });
    StreamBody::new(stream).boxed_unsync()
}

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn hundred_mib_streams_both_ways_without_buffering() {
    let seen = Arc::new(AtomicU64::new(0));
    let up = counting_upstream(seen.clone()).await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let mut r = route("r", HostPattern::Any, "/", &p);
    r.max_body = Some(200 * MIB);
    let big = TestUpstream::start(
        "big",
        Arc::new(|_req| {
            Box::pin(async {
                let chunk = Bytes::from(vec![7u8; 64 * 1024]);
                let stream = futures_util::stream::iter(
                    (0..1600).map(move |_| Ok::<_, BoxError>(Frame::data(chunk.clone()))),
                );
                Response::new(StreamBody::new(stream).boxed_unsync())
            })
        }),
    )
    .await;
    let pb = pool("big", Balance::RoundRobin, vec![big.upstream()]);
    let proxy = TestProxy::start(
        config(),
        vec![r, route("big", HostPattern::Any, "/big", &pb)],
    )
    .await;

    // Upload: the upstream must see the first chunk while the client still holds the rest.
    let baseline = rss_bytes();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let req = Request::post("/upload")
        .header("host", "x")
        .body(channel_body(rx))
        .unwrap();
    let addr = proxy.addr;
    let answer = tokio::spawn(async move { send(addr, req).await });
    let chunk = Bytes::from(vec![1u8; 64 * 1024]);
    tx.send(chunk.clone()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || seen.load(Ordering::SeqCst)
            >= 64 * 1024)
        .await,
        "first chunk never reached the upstream: body buffered?"
    );
    let mut peak = 0;
    for i in 1..1600u64 {
        tx.send(chunk.clone()).await.unwrap();
        if i % 64 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    drop(tx);
    let a = answer.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, (100 * MIB).to_string());
    assert!(
        peak.saturating_sub(baseline) < 48 * MIB,
        "RSS grew by {} MiB during upload",
        (peak - baseline) / MIB
    );

    // Download.
    let baseline = rss_bytes();
    let mut tx = h1(proxy.addr).await;
    let resp = tx
        .send_request(
            Request::get("/big")
                .header("host", "x")
                .body(proxy::empty_body())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut b = resp.into_body();
    let (mut n, mut peak, mut frames) = (0u64, 0u64, 0u64);
    while let Some(f) = b.frame().await {
        if let Some(d) = f.unwrap().data_ref() {
            n += d.len() as u64;
        }
        frames += 1;
        if frames % 64 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(n, 100 * MIB);
    assert!(
        peak.saturating_sub(baseline) < 48 * MIB,
        "RSS grew by {} MiB during download",
        (peak - baseline) / MIB
    );
}

#[tokio::test]
async fn body_over_limit_is_413() {
    let seen = Arc::new(AtomicU64::new(0));
    let up = counting_upstream(seen.clone()).await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let mut r = route("r", HostPattern::Any, "/", &p);
    r.max_body = Some(MIB);
    let proxy = TestProxy::start(config(), vec![r]).await;

    // Declared length: refused before anything is sent upstream.
    let req = Request::post("/")
        .header("host", "x")
        .header("content-length", (2 * MIB).to_string())
        .body(proxy::full_body(vec![0u8; 2 * MIB as usize]))
        .unwrap();
    let a = send(proxy.addr, req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.header("x-berth-error"), "body too large");
    assert_eq!(up.hits(), 0);

    // Within the limit: fine.
    let req = Request::post("/")
        .header("host", "x")
        .body(proxy::full_body(vec![0u8; 1000]))
        .unwrap();
    assert_eq!(send(proxy.addr, req).await.body, "1000");

    // Streamed (chunked, no length): cut at the limit and answered 413.
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let req = Request::post("/")
        .header("host", "x")
        .body(channel_body(rx))
        .unwrap();
    let addr = proxy.addr;
    let answer = tokio::spawn(async move {
        let mut c = h1(addr).await;
        match c.send_request(req).await {
            Ok(resp) => Some(collect(resp).await),
            Err(_) => None,
        }
    });
    let chunk = Bytes::from(vec![2u8; 64 * 1024]);
    for _ in 0..40 {
        if tx.send(chunk.clone()).await.is_err() {
            break;
        }
    }
    drop(tx);
    let a = answer.await.unwrap().expect("the proxy answered");
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(seen.load(Ordering::SeqCst) <= MIB);
}

async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let cfg = ProxyConfig {
        header_read_timeout: Duration::from_millis(300),
        ..config()
    };
    let proxy = TestProxy::start(cfg, vec![route("r", HostPattern::Any, "/", &p)]).await;

    // Half a request head, then silence.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("connection still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // A connection that never says anything.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("silent connection still open after 5 s");

    // An idle keep-alive connection after one request.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("idle connection still open after 5 s");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn oversized_header_refused() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", Balance::RoundRobin, vec![up.upstream()]);
    let cfg = ProxyConfig {
        max_header_bytes: 16 * 1024,
        ..config()
    };
    let proxy = TestProxy::start(cfg, vec![route("r", HostPattern::Any, "/", &p)]).await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let big = "a".repeat(32 * 1024);
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(head.as_bytes()).await;
    let got = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
    assert_eq!(up.hits(), 0);
}
