use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use proxy::{Balance, HostPattern};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::support::*;

/// An upstream whose `/slow` waits until released.
async fn gated(name: &str, gate: tokio::sync::watch::Receiver<bool>) -> TestUpstream {
    TestUpstream::start(
        name,
        Arc::new(move |req| {
            let mut gate = gate.clone();
            Box::pin(async move {
                if req.uri().path() == "/slow" {
                    let _ = gate.wait_for(|open| *open).await;
                }
                Response::new(body("done"))
            })
        }),
    )
    .await
}

#[tokio::test]
async fn old_instance_finishes_in_flight_then_drained() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let old = gated("old", gate.clone()).await;
    let new = gated("new", gate).await;
    let old_up = old.upstream();
    let p_old = pool("web", Balance::RoundRobin, vec![old_up.clone()]);
    let p_new = pool("web", Balance::RoundRobin, vec![new.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p_old)]).await;

    let addr = proxy.addr;
    let slow = tokio::spawn(async move { get(addr, "x", "/slow").await });
    assert!(eventually(Duration::from_secs(5), || old_up.inflight() == 1).await);

    proxy.publish(vec![route("r", HostPattern::Any, "/", &p_new)]);
    for _ in 0..5 {
        assert_eq!(get(addr, "x", "/").await.header("x-upstream"), "new");
    }
    let old_hits = old.hits();

    let p = proxy.proxy.clone();
    let up = old_up.clone();
    let mut drained = tokio::spawn(async move { p.drained(&up, Duration::from_secs(20)).await });
    // Still busy: not drained.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut drained)
            .await
            .is_err()
    );

    open.send(true).unwrap();
    let a = slow.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "done");
    let outcome = tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .expect("drained resolves")
        .unwrap();
    assert!(outcome.clean, "{outcome:?}");
    assert_eq!(outcome.websockets_cut, 0);
    assert_eq!(
        old.hits(),
        old_hits,
        "the drained instance got new requests"
    );
}

#[tokio::test]
async fn websocket_to_drained_instance_lives_until_grace() {
    let old = websocket_upstream("old").await;
    let new = websocket_upstream("new").await;
    let old_up = old.upstream();
    let p_old = pool("ws", Balance::RoundRobin, vec![old_up.clone()]);
    let p_new = pool("ws", Balance::RoundRobin, vec![new.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p_old)]).await;

    let mut ws = ws_connect(proxy.addr, "x", "/").await;
    assert_eq!(
        ws_next_text(&mut ws).await.as_deref(),
        Some("hello from old")
    );
    assert!(eventually(Duration::from_secs(5), || old_up.websockets() == 1).await);

    proxy.publish(vec![route("r", HostPattern::Any, "/", &p_new)]);
    let mut fresh = ws_connect(proxy.addr, "x", "/").await;
    assert_eq!(
        ws_next_text(&mut fresh).await.as_deref(),
        Some("hello from new")
    );

    let p = proxy.proxy.clone();
    let up = old_up.clone();
    let grace = Duration::from_millis(800);
    let drained = tokio::spawn(async move { p.drained(&up, grace).await });
    // Within the grace period the old socket still works both ways.
    ws.send(Message::text("still there?")).await.unwrap();
    assert_eq!(ws_next_text(&mut ws).await.as_deref(), Some("still there?"));

    let outcome = tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .expect("drained resolves")
        .unwrap();
    assert!(!outcome.clean);
    assert_eq!(outcome.websockets_cut, 1);
    assert!(outcome.waited >= grace);
    // Cut the WebSocket way, before `drained` returned: the close frame is already there.
    assert_eq!(old_up.websockets(), 0);
    assert_eq!(ws_close_code(&mut ws).await, Some(1001), "going away");
    // The new instance's socket is untouched.
    fresh.send(Message::text("ok")).await.unwrap();
    assert_eq!(ws_next_text(&mut fresh).await.as_deref(), Some("ok"));
}

/// A client's socket that counts the bytes read from it.
struct Counting {
    inner: TcpStream,
    read: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read
            .fetch_add(buf.filled().len() - before, Ordering::SeqCst);
        res
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// An instance that answers a WebSocket with one binary frame of `len` bytes: it sends the
/// header and the first half, waits for a close frame from its client (berth), reports the
/// frame's status on `closed`, sends the second half, answers the close and closes.
async fn half_frame_upstream(len: usize, closed: oneshot::Sender<u16>) -> TestUpstream {
    let closed = Arc::new(std::sync::Mutex::new(Some(closed)));
    TestUpstream::start(
        "old",
        Arc::new(move |mut req| {
            let closed = closed.lock().unwrap().take();
            Box::pin(async move {
                let key = req.headers()["sec-websocket-key"].clone();
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(upgrade.await.unwrap());
                    let data = payload(len);
                    let mut head = vec![0x82, 127];
                    head.extend_from_slice(&(len as u64).to_be_bytes());
                    io.write_all(&head).await.unwrap();
                    io.write_all(&data[..len / 2]).await.unwrap();
                    // A client's close frame: masked, two bytes of status.
                    let mut frame = [0u8; 8];
                    io.read_exact(&mut frame).await.unwrap();
                    assert_eq!(frame[..2], [0x88, 0x82], "{frame:?}");
                    let status = u16::from_be_bytes([frame[6] ^ frame[2], frame[7] ^ frame[3]]);
                    closed.unwrap().send(status).unwrap();
                    io.write_all(&data[len / 2..]).await.unwrap();
                    io.write_all(&[0x88, 0x02, 0x03, 0xe9]).await.unwrap();
                    io.shutdown().await.unwrap();
                });
                switching_protocols(key.as_bytes())
            })
        }),
    )
    .await
}

#[tokio::test]
async fn websocket_cut_mid_frame_gets_the_whole_frame_then_going_away() {
    const LEN: usize = 4 << 20;
    let (closed, instance_got) = oneshot::channel();
    let old = half_frame_upstream(LEN, closed).await;
    let old_up = old.upstream();
    let p = pool("ws", Balance::RoundRobin, vec![old_up.clone()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;

    let read = Arc::new(AtomicUsize::new(0));
    let stream = Counting {
        inner: TcpStream::connect(proxy.addr).await.unwrap(),
        read: read.clone(),
    };
    let (mut ws, _) = tokio_tungstenite::client_async("ws://x/", stream)
        .await
        .unwrap();
    let handshake = read.load(Ordering::SeqCst);
    let client = tokio::spawn(async move {
        let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let data = match first {
            Ok(Some(Ok(Message::Binary(data)))) => data,
            other => panic!("expected the whole frame, got {other:?}"),
        };
        (data, ws_close_code(&mut ws).await)
    });
    // The frame is under way: part of it reached the client, the rest is still to come.
    assert!(
        eventually(Duration::from_secs(5), || read.load(Ordering::SeqCst)
            > handshake + LEN / 4)
        .await
    );

    proxy.publish(vec![]);
    let outcome = proxy.proxy.drained(&old_up, Duration::ZERO).await;
    assert!(!outcome.clean);
    assert_eq!(outcome.websockets_cut, 1);
    assert_eq!(old_up.websockets(), 0, "closed before drained returned");
    // The instance got its close frame at once (nothing was on its way to it) ...
    assert_eq!(instance_got.await.unwrap(), 1001);
    // ... and the client the rest of the frame, intact, before its own.
    let (data, status) = client.await.unwrap();
    assert_eq!(data.len(), LEN);
    assert!(data[..] == payload(LEN)[..], "the frame arrived intact");
    assert_eq!(status, Some(1001));
}

#[tokio::test]
async fn idle_instance_drains_at_once() {
    let up = TestUpstream::echo("web").await;
    let u = up.upstream();
    let proxy = proxy::Proxy::new(config());
    let outcome = proxy.drained(&u, Duration::from_secs(5)).await;
    assert!(outcome.clean);
    assert!(outcome.waited < Duration::from_secs(1));
}

#[tokio::test]
async fn table_swapped_100_times_under_load_loses_nothing() {
    let ups: Vec<TestUpstream> =
        futures_util::future::join_all(["a1", "a2", "b1", "b2"].map(TestUpstream::echo)).await;
    let pa = pool(
        "web",
        Balance::RoundRobin,
        vec![ups[0].upstream(), ups[1].upstream()],
    );
    let pb = pool(
        "web",
        Balance::LeastOutstanding,
        vec![ups[2].upstream(), ups[3].upstream()],
    );
    let table = |p: &Arc<proxy::Pool>| {
        vec![route(
            "shop:/",
            HostPattern::Exact("shop.example.com".into()),
            "/",
            p,
        )]
    };
    let proxy = TestProxy::start(config(), table(&pa)).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // `wrk` (when installed) hammers the route too, from outside the test process.
    let url = format!("http://{}/", proxy.addr);
    let wrk = wrk_available().then(|| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("wrk")
                .args(["-t1", "-c16", "-d3s", "-H", "Host: shop.example.com", &url])
                .output()
        })
    });
    let mut loops = Vec::new();
    for _ in 0..8 {
        let (stop, ok, bad, addr) = (stop.clone(), ok.clone(), bad.clone(), proxy.addr);
        loops.push(tokio::spawn(async move {
            let mut tx = h1(addr).await;
            while !stop.load(Ordering::SeqCst) {
                let req = Request::get("/")
                    .header("host", "shop.example.com")
                    .body(proxy::empty_body())
                    .unwrap();
                match tx.send_request(req).await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        let _ = collect(resp).await;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::SeqCst);
                        tx = h1(addr).await;
                    }
                }
            }
        }));
    }
    for i in 0..100 {
        proxy.publish(table(if i % 2 == 0 { &pb } else { &pa }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    assert_eq!(bad.load(Ordering::SeqCst), 0);
    assert!(
        ok.load(Ordering::SeqCst) > 100,
        "only {} requests",
        ok.load(Ordering::SeqCst)
    );
    assert!(
        ups.iter().all(|u| u.hits() > 0),
        "every instance served: {:?}",
        ups.iter().map(|u| u.hits()).collect::<Vec<_>>()
    );
    if let Some(wrk) = wrk {
        let out = wrk.await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains("Non-2xx") && !text.contains("Socket errors"),
            "{text}"
        );
        assert!(text.contains("requests in"), "{text}");
    }
}

fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}
