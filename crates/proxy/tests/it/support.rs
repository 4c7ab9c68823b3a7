//! Test upstreams (hyper servers on port 0), a proxy on port 0, and small clients.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::{
    Balance, Body, HostPattern, Pool, Proxy, ProxyConfig, Route, RouteTable, Target, Upstream,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub type BoxFut = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFut + Send + Sync>;

pub fn body(b: impl Into<Bytes>) -> Body {
    proxy::full_body(b)
}

/// A test upstream: an HTTP/1.1 server (with upgrades) on 127.0.0.1:0.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    pub conns: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl TestUpstream {
    pub async fn start(name: &str, handler: Handler) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let h = hits.clone();
        let label = name.to_owned();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => r.unwrap(),
                    _ = &mut stopped => return,
                };
                c.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let hits = h.clone();
                let label = label.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let fut = handler(req);
                        let label = label.clone();
                        async move {
                            let mut resp = fut.await;
                            resp.headers_mut()
                                .insert("x-upstream", label.parse().unwrap());
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        TestUpstream {
            addr,
            name: name.to_owned(),
            hits,
            conns,
            _stop: stop,
        }
    }

    /// Answers 200 with the request line and headers it received, one per line.
    pub async fn echo(name: &str) -> TestUpstream {
        TestUpstream::start(
            name,
            Arc::new(|req| Box::pin(async move { echo_response(req) })),
        )
        .await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn upstream(&self) -> Arc<Upstream> {
        Upstream::new(self.name.clone(), self.addr)
    }
}

pub fn echo_response(req: Request<Incoming>) -> Response<Body> {
    let mut text = format!("{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
    }
    Response::new(body(text))
}

/// Parse an echo body back into headers.
pub fn echoed(text: &str) -> (String, HeaderMap) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").to_owned();
    let mut h = HeaderMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(": ") {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
    }
    (first, h)
}

/// An address where nothing listens.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub fn pool(service: &str, balance: Balance, ups: Vec<Arc<Upstream>>) -> Arc<Pool> {
    Arc::new(Pool::new(service, balance, ups))
}

pub fn route(id: &str, host: HostPattern, path: &str, pool: &Arc<Pool>) -> Route {
    Route::new(id, "app", host, path, Target::Service(pool.clone()))
}

pub fn config() -> ProxyConfig {
    ProxyConfig {
        access_log: proxy::AccessLog::Off,
        ..ProxyConfig::default()
    }
}

/// A running proxy on 127.0.0.1:0.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    stop: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestProxy {
    pub async fn start(config: ProxyConfig, routes: Vec<Route>) -> TestProxy {
        let proxy = Proxy::new(config);
        proxy.publish(RouteTable { routes });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(proxy.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        TestProxy {
            addr,
            proxy,
            stop: Some(stop),
            served,
        }
    }

    pub fn publish(&self, routes: Vec<Route>) {
        self.proxy.publish(RouteTable { routes });
    }

    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One HTTP/1.1 connection to `addr`.
pub async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    tx
}

/// One h2c (prior knowledge) connection to `addr`.
pub async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    tx
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

pub async fn collect(resp: Response<Incoming>) -> Answer {
    let (parts, b) = resp.into_parts();
    let bytes = b.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A request on a fresh HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: Request<Body>) -> Answer {
    let mut tx = h1(addr).await;
    collect(tx.send_request(req).await.unwrap()).await
}

/// GET `path` with `Host: host` on a fresh connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Answer {
    send(
        addr,
        Request::get(path)
            .header("host", host)
            .body(proxy::empty_body())
            .unwrap(),
    )
    .await
}

pub fn full(b: &'static str) -> Body {
    Full::new(Bytes::from_static(b.as_bytes()))
        .map_err(|n| match n {})
        .boxed_unsync()
}

/// Poll `f` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream that accepts WebSockets: says `hello from NAME`, then echoes every message.
pub async fn websocket_upstream(name: &str) -> TestUpstream {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{Message, Role};
    let label = name.to_owned();
    TestUpstream::start(
        name,
        Arc::new(move |mut req| {
            let label = label.clone();
            Box::pin(async move {
                let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
                    return Response::new(body("not a websocket"));
                };
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    let _ = ws.send(Message::text(format!("hello from {label}"))).await;
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() {
                            break;
                        }
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                });
                switching_protocols(key.as_bytes())
            })
        }),
    )
    .await
}

/// An instance's `101 Switching Protocols` to a WebSocket upgrade with `Sec-WebSocket-Key: key`.
pub fn switching_protocols(key: &[u8]) -> Response<proxy::Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key),
        )
        .body(proxy::empty_body())
        .unwrap()
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket client connected through the proxy at `addr`.
pub async fn ws_connect(addr: SocketAddr, host: &str, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{host}{path}");
    let (ws, resp) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Next text message (None when the socket closed or broke), within 5 s.
pub async fn ws_next_text(ws: &mut Ws) -> Option<String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no websocket message within 5 s")
        {
            Some(Ok(Message::Text(t))) => return Some(t.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// The status of the close frame that comes next (skipping other messages), or `None` when
/// the stream ends or breaks without one (what a browser reports as 1006), within 5 s.
pub async fn ws_close_code<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no websocket message within 5 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}
