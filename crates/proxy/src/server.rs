//! Listeners and client connections: accept, the per-address limit, TLS, serving HTTP/1.1 and
//! HTTP/2 (h2c or ALPN) until idle or shutdown, and the graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::conn::{CLOSING_IDLE, ConnShared, ServeCtx};
use crate::fast::{Outcome, Rewind};
use crate::proxy::Proxy;
use crate::record::Tracked;

#[derive(Clone)]
struct Service {
    proxy: Arc<Proxy>,
    conn: Arc<ConnShared>,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let proxy = self.proxy.clone();
        let conn = self.conn.clone();
        Box::pin(async move { Ok(proxy.handle(req, conn).await) })
    }
}

impl Proxy {
    /// Accept plain HTTP connections until `shutdown` resolves; then stop accepting, let
    /// in-flight requests and WebSockets finish for up to `drain_grace`, and close what is left.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        self.listen(listener, None, shutdown).await
    }

    /// Like [`Proxy::serve`], for TLS: each connection's handshake (SNI picks the certificate,
    /// ALPN `h2` or `http/1.1`) must finish within the header-read timeout; a TLS-ALPN-01
    /// validation connection (ALPN `acme-tls/1`) is closed right after its handshake.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        config: Arc<tls::rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        self.listen(listener, Some(acceptor), shutdown).await
    }

    /// Serve one connection that no listener accepted (a rollout's smoke check through a
    /// [`Proxy::preview`]): over TLS with `tls` — the handshake as the HTTPS listener does it
    /// —, else as plain HTTP with the scheme `proto` (`"https"` checks an HTTPS app's routes
    /// without its redirect, when its certificate is not there yet).
    pub async fn serve_stream<I>(
        self: Arc<Self>,
        io: I,
        peer: SocketAddr,
        proto: &'static str,
        tls: Option<Arc<tls::rustls::ServerConfig>>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let ctx = Arc::new(ServeCtx::new());
        match tls {
            None => self.serve_connection(io, peer, proto, false, ctx).await,
            Some(config) => {
                let accept = tokio_rustls::TlsAcceptor::from(config).accept(io);
                match tokio::time::timeout(self.config.header_read_timeout, accept).await {
                    Ok(Ok(tls)) => {
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        self.serve_connection(tls, peer, "https", h2, ctx).await
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "preview TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "preview TLS handshake timed out"),
                }
            }
        }
    }

    async fn listen(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let threads = self.config.threads;
        tracing::info!(%addr, scheme, threads, version = env!("CARGO_PKG_VERSION"), "proxy listening");
        let ctx = Arc::new(ServeCtx::new());
        let mut workers = Vec::new();
        if threads == 0 {
            let accepting = self.clone().accept(listener, tls, ctx.clone());
            tokio::select! {
                biased;
                () = shutdown => {}
                () = accepting => {}
            }
        } else {
            // Every serving thread accepts on its own copy of the listener.
            workers = match self.clone().start_threads(listener, tls, ctx.clone()) {
                Ok(workers) => workers,
                Err(err) => {
                    // The threads already started stop too: nothing serves half a listener.
                    ctx.stop();
                    ctx.tracker.close();
                    return Err(err);
                }
            };
            shutdown.await;
        }
        tracing::info!(%addr, "proxy stopping: draining connections");
        ctx.stop();
        ctx.tracker.close();
        if tokio::time::timeout(self.config.drain_grace, ctx.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(%addr, left = ctx.tracker.len(), "drain grace over: closing remaining connections");
            ctx.cut.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), ctx.tracker.wait()).await;
        }
        // Whatever the threads' runtimes still run (an upstream connection's task) ends with them.
        ctx.cut.cancel();
        for done in workers {
            let _ = done.await;
        }
        tracing::info!(%addr, "proxy stopped");
        Ok(())
    }

    /// `config.threads` threads, each with a runtime of its own that accepts on a copy of
    /// `listener` and serves the connections it accepted, until `ctx` stops. Each resolves
    /// its receiver when its runtime has ended.
    fn start_threads(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        ctx: Arc<ServeCtx>,
    ) -> io::Result<Vec<tokio::sync::oneshot::Receiver<()>>> {
        let listener = listener.into_std()?;
        let mut done = Vec::with_capacity(self.config.threads);
        for n in 1..=self.config.threads {
            let copy = listener.try_clone()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (proxy, tls, ctx) = (self.clone(), tls.clone(), ctx.clone());
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("berth-proxy-{n}"))
                .spawn(move || {
                    crate::upstream::set_thread_slot(n);
                    runtime.block_on(async move {
                        match TcpListener::from_std(copy) {
                            Ok(listener) => {
                                let accepting = proxy.accept(listener, tls, ctx.clone());
                                tokio::select! {
                                    () = ctx.shutdown.cancelled() => {}
                                    () = accepting => {}
                                }
                            }
                            Err(err) => tracing::error!(error = %err, "proxy thread cannot listen"),
                        }
                        // This thread's connections finish (or are cut) before its runtime ends.
                        tokio::select! {
                            () = ctx.tracker.wait() => {}
                            () = async {
                                ctx.cut.cancelled().await;
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            } => {}
                        }
                    });
                    let _ = tx.send(());
                })?;
            done.push(rx);
        }
        Ok(done)
    }

    /// Accept connections on `listener` and serve each in a task of its own (until the
    /// caller stops polling this).
    async fn accept(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        ctx: Arc<ServeCtx>,
    ) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let proxy = self.clone();
                    ctx.tracker
                        .spawn(proxy.connection(stream, peer, tls.clone(), ctx.clone()));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One accepted connection: within the per-IP limit (checked before any TLS work), then
    /// served over plain HTTP or after a TLS handshake.
    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        serve: Arc<ServeCtx>,
    ) {
        let Some(_per_ip) = self.conn_limit.acquire(peer.ip()) else {
            let g = &self.metrics.global;
            g.connections_over_ip_limit.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection closed: max_connections_per_ip reached");
            return;
        };
        match tls {
            None => {
                self.clone()
                    .serve_connection(stream, peer, "http", false, serve)
                    .await
            }
            Some(acceptor) => {
                self.clone()
                    .serve_tls_connection(acceptor, stream, peer, serve)
                    .await
            }
        }
    }

    async fn serve_tls_connection(
        self: Arc<Self>,
        acceptor: tokio_rustls::TlsAcceptor,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        serve: Arc<ServeCtx>,
    ) {
        let handshake = tokio::select! {
            res = tokio::time::timeout(self.config.header_read_timeout, acceptor.accept(stream)) => res,
            () = serve.shutdown.cancelled() => return,
        };
        let mut tls = match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                self.metrics
                    .global
                    .tls_handshake_failures
                    .fetch_add(1, Relaxed);
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                self.metrics
                    .global
                    .tls_handshake_failures
                    .fetch_add(1, Relaxed);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        if tls.get_ref().1.alpn_protocol() == Some(tls::ACME_TLS_ALPN) {
            // TLS-ALPN-01 validation: the handshake was the answer.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            return;
        }
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        self.serve_connection(tls, peer, "https", h2, serve).await;
    }

    /// Serve one client connection (HTTP/1.1, or HTTP/2 by prior knowledge or ALPN) over any
    /// byte stream; the TLS listener calls this with the TLS stream and `proto = "https"`
    /// (`h2`: ALPN chose HTTP/2). HTTP/1.1 starts on the fast path (`fast`), which hands the
    /// connection to hyper's server when a request needs it.
    pub(crate) async fn serve_connection<I>(
        self: Arc<Self>,
        mut io: I,
        peer: SocketAddr,
        proto: &'static str,
        h2: bool,
        serve: Arc<ServeCtx>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let g = &self.metrics.global;
        g.connections.fetch_add(1, Relaxed);
        g.connections_total.fetch_add(1, Relaxed);
        let shared = Arc::new(ConnShared::new(peer.ip(), proto, serve.clone()));
        let read = if self.config.http1_fast_path && !h2 {
            match self.serve_fast(&mut io, &shared).await {
                Outcome::Done => {
                    g.connections.fetch_sub(1, Relaxed);
                    return;
                }
                Outcome::HandOver(read) => read,
            }
        } else {
            BytesMut::new()
        };
        g.hyper_connections.fetch_add(1, Relaxed);
        let io = Rewind::new(read, io);
        let service = Service {
            proxy: self.clone(),
            conn: shared.clone(),
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let (first, idle) = (
            self.config
                .header_read_timeout
                .min(self.config.idle_timeout),
            self.config.idle_timeout,
        );
        let mut closing = false;
        let hard = tokio::time::sleep(Duration::from_secs(86_400 * 365));
        tokio::pin!(hard);
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(err) = res {
                        tracing::debug!(%peer, error = %err, "client connection ended with an error");
                    }
                    break;
                }
                () = serve.shutdown.cancelled(), if !closing => {
                    closing = true;
                    // HTTP/2: GOAWAY. HTTP/1: each next response says `Connection: close`
                    // (handler.rs); hyper's graceful shutdown would close an idle connection at
                    // once, racing a request the client may be sending on it.
                    if shared.is_h2() {
                        conn.as_mut().graceful_shutdown();
                    }
                    hard.as_mut().reset(tokio::time::Instant::now() + CLOSING_IDLE);
                }
                () = shared.idle_expired(first, idle), if !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    hard.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
                }
                () = &mut hard, if closing => {
                    // Graceful shutdown waits for a request head that may never come; a
                    // closing HTTP/1 connection with no request for a while is closed here.
                    if shared.idle_for() >= CLOSING_IDLE {
                        break;
                    }
                    hard.as_mut().reset(tokio::time::Instant::now() + CLOSING_IDLE);
                }
                () = serve.cut.cancelled() => break,
            }
        }
        g.connections.fetch_sub(1, Relaxed);
    }
}
