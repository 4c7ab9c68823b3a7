//! The TLS listener driven by curl: h2 and http/1.1 by ALPN, SNI, `X-Forwarded-Proto`, the
//! HTTP → HTTPS redirect, ACME HTTP-01 answers on plain HTTP. (TLS-ALPN-01 through the
//! listener is proven against pebble in the daemon's tests.)

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use proxy::{HostPattern, Proxy, ProxyConfig, RouteTable};
use tls::{CertStore, Http01Challenges};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::*;

/// A proxy with an HTTP and an HTTPS listener; a self-signed certificate for `names`.
struct TlsProxy {
    http: SocketAddr,
    https: SocketAddr,
    /// PEM of the served certificate, for curl's `--cacert`.
    ca: tempfile::NamedTempFile,
    _stop: oneshot::Sender<()>,
}

impl TlsProxy {
    async fn start(
        names: &[&str],
        http01: Http01Challenges,
        routes: impl FnOnce(&[&str]) -> Vec<proxy::Route>,
    ) -> TlsProxy {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (key, pem) = tls::self_signed(&names).unwrap();
        let store = CertStore::new();
        store.set("site", names.clone(), key);
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), pem.cert).unwrap();

        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_addr, https_addr) = (http.local_addr().unwrap(), https.local_addr().unwrap());
        let proxy = Proxy::new(ProxyConfig {
            http01: Some(http01),
            https_port: Some(https_addr.port()),
            certs: Some(store.clone()),
            ..config()
        });
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        proxy.publish(RouteTable {
            routes: routes(&refs),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let shared = futures_util::future::FutureExt::shared(Box::pin(stopped));
        tokio::spawn(proxy.clone().serve(http, shared.clone()));
        tokio::spawn(
            proxy
                .clone()
                .serve_tls(https, tls::server_config(&store).unwrap(), shared),
        );
        TlsProxy {
            http: http_addr,
            https: https_addr,
            ca,
            _stop: stop,
        }
    }

    /// curl against `https://NAME:PORT/path`, resolved to the listener; returns stdout.
    async fn curl(&self, name: &str, path: &str, extra: &[&str]) -> String {
        let url = format!("https://{name}:{}{path}", self.https.port());
        let resolve = format!("{name}:{}:127.0.0.1", self.https.port());
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--resolve", &resolve, "--cacert"])
            .arg(self.ca.path())
            .args(extra)
            .arg(&url);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn site(names: &[&str], pool: &Arc<proxy::Pool>, https_redirect: bool) -> Vec<proxy::Route> {
    names
        .iter()
        .map(|n| proxy::Route {
            https_redirect,
            headers: Arc::new(proxy::HeaderPolicy::preset(proxy::Preset::Strict)),
            ..route(n, HostPattern::Exact(n.to_string()), "/", pool)
        })
        .collect()
}

#[tokio::test]
async fn h2_and_http1_by_alpn_with_the_certificate_sni_picks() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", proxy::Balance::RoundRobin, vec![up.upstream()]);
    let tp = TlsProxy::start(
        &["shop.berth.test", "api.berth.test"],
        Http01Challenges::new(),
        |names| site(names, &p, true),
    )
    .await;

    let v = tp
        .curl(
            "shop.berth.test",
            "/x",
            &["--http2", "-o", "/dev/null", "-w", "%{http_version}"],
        )
        .await;
    assert_eq!(v, "2", "curl --http2 negotiates h2 by ALPN");
    let v = tp
        .curl(
            "api.berth.test",
            "/x",
            &["--http1.1", "-o", "/dev/null", "-w", "%{http_version}"],
        )
        .await;
    assert_eq!(v, "1.1");

    // Over HTTPS: HSTS (which plain HTTP never gets, see below) and the other strict headers.
    let head = tp
        .curl(
            "shop.berth.test",
            "/",
            &["--http2", "-o", "/dev/null", "-D", "-"],
        )
        .await;
    for line in [
        "strict-transport-security: max-age=63072000; includeSubDomains\r\n",
        "content-security-policy: ",
        "x-frame-options: DENY",
        "x-content-type-options: nosniff",
        "server: berth",
    ] {
        assert!(
            head.to_lowercase().contains(&line.to_lowercase()),
            "{line} in {head}"
        );
    }

    // Over HTTPS the app sees https and the name asked for, and is not redirected.
    let body = tp.curl("shop.berth.test", "/a?b=1", &["--http2"]).await;
    let (line, headers) = echoed(&body);
    assert_eq!(line, "GET /a?b=1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(
        headers["host"],
        format!("shop.berth.test:{}", tp.https.port())
    );
}

#[tokio::test]
async fn plain_http_redirects_with_308_except_acme_challenges() {
    let up = TestUpstream::echo("web").await;
    let p = pool("web", proxy::Balance::RoundRobin, vec![up.upstream()]);
    let pending = Http01Challenges::new();
    let tp = TlsProxy::start(&["shop.berth.test"], pending.clone(), |names| {
        let mut routes = site(names, &p, true);
        // A second site without TLS is served over plain HTTP as before.
        routes.push(route(
            "plain",
            HostPattern::Exact("plain.berth.test".into()),
            "/",
            &p,
        ));
        // A TLS site whose certificate is not there (yet): never sent to a handshake that
        // would fail.
        routes.extend(site(&["pending.berth.test"], &p, true));
        routes
    })
    .await;

    let (status, headers, _) = get(tp.http, "shop.berth.test:8080", "/cart?id=7").await;
    assert_eq!(status, 308);
    assert!(!headers.contains_key("strict-transport-security"));
    assert_eq!(
        headers["location"],
        format!("https://shop.berth.test:{}/cart?id=7", tp.https.port())
    );
    let (status, headers, body) = get(tp.http, "plain.berth.test", "/p").await;
    assert_eq!((status, echoed(&body).0.as_str()), (200, "GET /p"));
    assert!(!headers.contains_key("strict-transport-security"));
    let (status, _, body) = get(tp.http, "pending.berth.test", "/p").await;
    assert_eq!((status, echoed(&body).0.as_str()), (200, "GET /p"));

    // A pending challenge is answered by berth; an unknown token goes to the app, not to HTTPS.
    pending.insert("tok123", "tok123.thumbprint");
    let (status, headers, body) = get(
        tp.http,
        "shop.berth.test",
        "/.well-known/acme-challenge/tok123",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "tok123.thumbprint"));
    assert_eq!(headers["content-type"], "text/plain");
    let (status, _, body) = get(
        tp.http,
        "shop.berth.test",
        "/.well-known/acme-challenge/other",
    )
    .await;
    assert_eq!(
        (status, echoed(&body).0.as_str()),
        (200, "GET /.well-known/acme-challenge/other")
    );
}

/// `GET path` with `Host: host` on plain HTTP: (status, headers, body).
async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let mut tx = h1(addr).await;
    let req = http::Request::get(path)
        .header("host", host)
        .body(proxy::empty_body())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}
