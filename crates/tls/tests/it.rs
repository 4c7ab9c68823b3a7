//! Real handshakes on loopback, and real ACME against pebble.
//!
//! pebble runs with `-dnsserver` pointed at `pebble-challtestsrv` (DNS only), which answers
//! `A 127.0.0.1` for every name and serves the TXT records our DNS hook sets through its
//! management API; so any name (`*.berth.test`) validates against the listeners of the test:
//! pebble's `httpPort` / `tlsPort` are this test's HTTP-01 and TLS listeners.

// The tests run real tools (pebble through testkit, openssl) with std's Command.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use testkit::eventually;
use tls::{
    ACME_TLS_ALPN, CertInfo, CertSource, CertSpec, CertStatus, CertStore, ChallengeKind,
    Http01Challenges, Manager, ManagerConfig, SourceKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- listeners under test

/// The proxy's plain HTTP listener, reduced to the challenge path. `fail` makes it answer 404
/// to everything (a broken HTTP-01 setup).
async fn http_listener(challenges: Http01Challenges, fail: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let challenges = challenges.clone();
            let fail = fail.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let answer = (!fail.load(Ordering::SeqCst))
                    .then(|| challenges.response(&path))
                    .flatten();
                let response = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// The proxy's TLS listener, reduced to the handshake and a fixed answer.
async fn tls_listener(store: &CertStore) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(store).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                    return; // TLS-ALPN-01 validation: handshake only, then close
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- clients

fn client(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = tls::client_config(roots).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

struct Handshake {
    certs: Vec<CertificateDer<'static>>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
}

impl Handshake {
    fn leaf(&self) -> CertInfo {
        CertInfo::from_der(&self.certs[0]).unwrap()
    }
}

async fn handshake(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> Result<Handshake, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let conn = stream.get_ref().1;
    Ok(Handshake {
        certs: conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
    })
}

fn status_of(manager: &Manager, id: &str) -> CertStatus {
    manager.status().into_iter().find(|s| s.id == id).unwrap()
}

// ---------------------------------------------------------------- pebble

/// pebble (see `testkit::Pebble`), with its roots as rustls wants them.
struct Pebble {
    kit: testkit::Pebble,
    /// Trusted for pebble's own HTTPS (our test CA signed its server certificate).
    https_root: CertificateDer<'static>,
    /// pebble's CA for the certificates it issues.
    issuer_root: CertificateDer<'static>,
}

impl Pebble {
    /// pebble with its validation ports pointed at `http` and `tls`; issued certificates live
    /// `validity` seconds.
    async fn start(http: SocketAddr, tls: SocketAddr, validity: u64) -> Pebble {
        let kit = tokio::task::spawn_blocking(move || {
            testkit::Pebble::start(http.port(), tls.port(), validity)
        })
        .await
        .unwrap();
        let root = |path: &Path| {
            tls::certs_from_pem(&std::fs::read(path).unwrap())
                .unwrap()
                .remove(0)
        };
        Pebble {
            https_root: root(&kit.https_root),
            issuer_root: root(&kit.issuer_root),
            kit,
        }
    }

    fn manager_config(&self, certs: &Path) -> ManagerConfig {
        let mut config = ManagerConfig::new(certs);
        config.extra_roots = vec![self.https_root.clone()];
        config.retry_min = Duration::from_millis(500);
        config.retry_max = Duration::from_secs(5);
        config.order_gap = Duration::from_millis(50);
        config.order_timeout = Duration::from_secs(30);
        config.file_check = Duration::from_millis(100);
        config
    }

    fn acme(&self, names: &[&str], challenge: ChallengeKind) -> CertSource {
        CertSource::Acme {
            email: "ops@berth.test".into(),
            directory: self.kit.directory.clone(),
            names: names.iter().map(|n| n.to_string()).collect(),
            challenge,
        }
    }
}

/// The proxy side of one test: store, both listeners, and a running manager.
struct Berth {
    store: CertStore,
    manager: Manager,
    http_fail: Arc<AtomicBool>,
    tls: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Listeners {
    store: CertStore,
    http01: Http01Challenges,
    http_fail: Arc<AtomicBool>,
    http: SocketAddr,
    tls: SocketAddr,
}

async fn listeners() -> Listeners {
    let store = CertStore::new();
    let http01 = Http01Challenges::new();
    let http_fail = Arc::new(AtomicBool::new(false));
    let http = http_listener(http01.clone(), http_fail.clone()).await;
    let tls = tls_listener(&store).await;
    Listeners {
        store,
        http01,
        http_fail,
        http,
        tls,
    }
}

fn start_manager(l: Listeners, config: ManagerConfig, specs: Vec<CertSpec>) -> Berth {
    let manager = Manager::new(config, l.store.clone(), l.http01.clone()).unwrap();
    let problems = manager.set_certs(specs);
    assert!(problems.is_empty(), "{problems:?}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(manager.clone().run(async move {
        let _ = stopped.await;
    }));
    Berth {
        store: l.store,
        manager,
        http_fail: l.http_fail,
        tls: l.tls,
        _stop: stop,
    }
}

async fn wait_serving(
    berth: &Berth,
    id: &str,
    other_than: Option<&str>,
    pebble: &Pebble,
) -> CertStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(&berth.manager, id);
        if status.serving && status.serial.as_deref() != other_than {
            return status;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for certificate {id}: {status:?}\npebble:\n{}",
                pebble.kit.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------- ACME tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_renews_and_a_failed_renewal_keeps_the_old_certificate() {
    let l = listeners().await;
    // Short-lived certificates: renewal (a third of the lifetime left) comes after ~10 s.
    let pebble = Pebble::start(l.http, l.tls, 15).await;
    let state = tempfile::tempdir().unwrap();
    let certs = state.path().join("certs");
    let spec = CertSpec {
        id: "shop".into(),
        source: pebble.acme(
            &["shop.berth.test", "www.shop.berth.test"],
            ChallengeKind::Http01,
        ),
    };
    let berth = start_manager(l, pebble.manager_config(&certs), vec![spec]);
    let trusting_pebble = client(
        std::slice::from_ref(&pebble.issuer_root),
        &[b"h2", b"http/1.1"],
    );

    let first = wait_serving(&berth, "shop", None, &pebble).await;
    assert_eq!(first.source, SourceKind::Acme);
    assert_eq!(first.names, ["shop.berth.test", "www.shop.berth.test"]);
    assert!(
        first.issuer.as_deref().unwrap().contains("Pebble"),
        "{first:?}"
    );
    assert_eq!(first.last_error, None);
    let seen = handshake(berth.tls, "www.shop.berth.test", trusting_pebble.clone())
        .await
        .unwrap();
    assert_eq!(seen.leaf().serial, *first.serial.as_ref().unwrap());
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));

    // Everything under certs/ is private.
    assert_eq!(mode(&certs), 0o700);
    let files: Vec<_> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("account-")),
        "{files:?}"
    );
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    // Renewal by lifetime, without restart; new connections get the new certificate.
    let renewed = wait_serving(&berth, "shop", first.serial.as_deref(), &pebble).await;
    assert!(renewed.not_after > first.not_after);
    let seen = handshake(berth.tls, "shop.berth.test", trusting_pebble.clone())
        .await
        .unwrap();
    assert_eq!(seen.leaf().serial, *renewed.serial.as_ref().unwrap());

    // The HTTP-01 answer breaks: the renewal fails, says why, and the old certificate stays.
    berth.http_fail.store(true, Ordering::SeqCst);
    berth.manager.renew_now("shop");
    let failed = eventually(
        "a failed renewal in status",
        Duration::from_secs(60),
        || {
            let s = status_of(&berth.manager, "shop");
            s.last_error.is_some().then_some(s)
        },
    )
    .await;
    let error = failed.last_error.clone().unwrap();
    assert!(
        error.contains("http-01") && error.contains("shop.berth.test"),
        "{error}"
    );
    assert!(error.contains("404"), "{error}");
    assert_eq!(failed.serial, renewed.serial);
    assert!(
        failed.last_attempt.is_some()
            && failed.next_attempt.unwrap() > SystemTime::now() - Duration::from_secs(1)
    );
    let seen = handshake(berth.tls, "shop.berth.test", trusting_pebble)
        .await
        .unwrap();
    assert_eq!(seen.leaf().serial, *renewed.serial.as_ref().unwrap());
    drop(berth.store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_and_the_certificate_survives_a_restart() {
    let l = listeners().await;
    let pebble = Pebble::start(l.http, l.tls, 3600).await;
    let state = tempfile::tempdir().unwrap();
    let certs = state.path().join("certs");
    let spec = CertSpec {
        id: "api".into(),
        source: pebble.acme(&["api.berth.test"], ChallengeKind::TlsAlpn01),
    };
    // HTTP-01 answers are broken: only TLS-ALPN-01 can succeed.
    l.http_fail.store(true, Ordering::SeqCst);
    let berth = start_manager(l, pebble.manager_config(&certs), vec![spec.clone()]);
    let trusting_pebble = client(std::slice::from_ref(&pebble.issuer_root), &[b"http/1.1"]);

    let issued = wait_serving(&berth, "api", None, &pebble).await;
    let seen = handshake(berth.tls, "api.berth.test", trusting_pebble.clone())
        .await
        .unwrap();
    assert_eq!(seen.leaf().names, ["api.berth.test"]);
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    // No challenge pending any more: acme-tls/1 gets no certificate at all.
    let acme_client = client(std::slice::from_ref(&pebble.issuer_root), &[ACME_TLS_ALPN]);
    assert!(
        handshake(berth.tls, "api.berth.test", acme_client)
            .await
            .is_err()
    );

    // A restart (new store, new manager, same directory) serves the saved certificate at once
    // and orders nothing until renewal is due.
    drop(berth);
    let l = listeners().await;
    let store = l.store.clone();
    let manager = Manager::new(
        pebble.manager_config(&certs),
        store.clone(),
        l.http01.clone(),
    )
    .unwrap();
    assert!(manager.set_certs(vec![spec]).is_empty());
    let status = status_of(&manager, "api");
    assert!(status.serving);
    assert_eq!(status.serial, issued.serial);
    assert!(status.next_attempt.unwrap() > SystemTime::now() + Duration::from_secs(1800));
    let seen = handshake(l.tls, "api.berth.test", trusting_pebble)
        .await
        .unwrap();
    assert_eq!(seen.leaf().serial, issued.serial.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_wildcard_through_the_hook() {
    let l = listeners().await;
    let pebble = Pebble::start(l.http, l.tls, 3600).await;
    let state = tempfile::tempdir().unwrap();
    let certs = state.path().join("certs");
    let mut config = pebble.manager_config(&certs);
    let hook_log = state.path().join("hook.log");
    config.dns_hook = Some(format!(
        r#"echo "$BERTH_DNS_ACTION $BERTH_DNS_NAME" >> {log}
if [ "$BERTH_DNS_ACTION" = set ]; then
  curl -sf -d "{{\"host\":\"$BERTH_DNS_NAME.\",\"value\":\"$BERTH_DNS_VALUE\"}}" http://127.0.0.1:{port}/set-txt
else
  curl -sf -d "{{\"host\":\"$BERTH_DNS_NAME.\"}}" http://127.0.0.1:{port}/clear-txt
fi"#,
        log = hook_log.display(),
        port = pebble.kit.challtest
    ));
    let spec = CertSpec {
        id: "wild".into(),
        source: pebble.acme(&["*.wild.berth.test"], ChallengeKind::Http01),
    };
    let berth = start_manager(l, config, vec![spec]);
    let status = wait_serving(&berth, "wild", None, &pebble).await;
    assert_eq!(status.names, ["*.wild.berth.test"]);
    let trusting_pebble = client(std::slice::from_ref(&pebble.issuer_root), &[b"http/1.1"]);
    let seen = handshake(berth.tls, "anything.wild.berth.test", trusting_pebble)
        .await
        .unwrap();
    assert_eq!(seen.leaf().names, ["*.wild.berth.test"]);
    let log = std::fs::read_to_string(&hook_log).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "set _acme-challenge.wild.berth.test",
            "clear _acme-challenge.wild.berth.test"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_without_a_hook_is_a_clear_error() {
    let l = listeners().await;
    let pebble = Pebble::start(l.http, l.tls, 3600).await;
    let state = tempfile::tempdir().unwrap();
    let spec = CertSpec {
        id: "wild".into(),
        source: pebble.acme(&["*.nohook.berth.test"], ChallengeKind::Http01),
    };
    let berth = start_manager(
        l,
        pebble.manager_config(&state.path().join("certs")),
        vec![spec],
    );
    let status = eventually("an error", Duration::from_secs(30), || {
        let s = status_of(&berth.manager, "wild");
        s.last_error.is_some().then_some(s)
    })
    .await;
    let error = status.last_error.unwrap();
    assert!(
        error.contains("DNS hook") && error.contains("_acme-challenge.nohook.berth.test"),
        "{error}"
    );
    assert!(!status.serving);
}

// ---------------------------------------------------------------- local certificates

#[tokio::test]
async fn sni_picks_exact_then_wildcard_names() {
    let l = listeners().await;
    let mut roots = Vec::new();
    for (id, names) in [
        ("exact", vec!["shop.example.com"]),
        ("wild", vec!["*.example.com"]),
    ] {
        let names: Vec<String> = names.into_iter().map(String::from).collect();
        let (key, _) = tls::self_signed(&names).unwrap();
        roots.push(key.cert[0].clone());
        l.store.set(id, names, key);
    }
    let config = client(&roots, &[b"http/1.1"]);
    let exact = handshake(l.tls, "shop.example.com", config.clone())
        .await
        .unwrap();
    assert_eq!(exact.leaf().names, ["shop.example.com"]);
    let wild = handshake(l.tls, "api.example.com", config.clone())
        .await
        .unwrap();
    assert_eq!(wild.leaf().names, ["*.example.com"]);
    assert!(
        handshake(l.tls, "a.b.example.com", config.clone())
            .await
            .is_err()
    );
    assert!(handshake(l.tls, "other.org", config).await.is_err());
}

#[tokio::test]
async fn self_signed_and_files_reload_when_changed() {
    let l = listeners().await;
    let state = tempfile::tempdir().unwrap();
    let certs = state.path().join("certs");
    let given = state.path().join("given");
    std::fs::create_dir(&given).unwrap();
    let (cert_file, key_file) = (given.join("cert.pem"), given.join("key.pem"));
    let write_pair = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (key, pem) = tls::self_signed(&names).unwrap();
        std::fs::write(&cert_file, pem.cert).unwrap();
        std::fs::write(&key_file, pem.key).unwrap();
        key.cert[0].clone()
    };
    let first = write_pair(&["files.test"]);

    let mut config = ManagerConfig::new(&certs);
    config.file_check = Duration::from_millis(50);
    let specs = vec![
        CertSpec {
            id: "dev".into(),
            source: CertSource::SelfSigned {
                names: vec!["dev.test".into(), "localhost".into()],
            },
        },
        CertSpec {
            id: "given".into(),
            source: CertSource::Files {
                cert: cert_file.clone(),
                key: key_file.clone(),
            },
        },
    ];
    let berth = start_manager(l, config.clone(), specs.clone());

    // Self-signed: served, saved 0600, and the same one after a restart.
    let dev = status_of(&berth.manager, "dev");
    assert_eq!((dev.source, dev.serving), (SourceKind::SelfSigned, true));
    assert_eq!(dev.names, ["dev.test", "localhost"]);
    for f in ["dev.self-signed.crt", "dev.self-signed.key"] {
        assert_eq!(mode(&certs.join(f)), 0o600, "{f}");
    }
    let again = Manager::new(config, CertStore::new(), Http01Challenges::new()).unwrap();
    assert!(again.set_certs(specs).is_empty());
    assert_eq!(status_of(&again, "dev").serial, dev.serial);
    let dev_root =
        tls::certs_from_pem(&std::fs::read(certs.join("dev.self-signed.crt")).unwrap()).unwrap();
    let seen = handshake(berth.tls, "dev.test", client(&dev_root, &[]))
        .await
        .unwrap();
    assert_eq!(seen.leaf().serial, dev.serial.unwrap());

    // Files: served, then replaced on disk and picked up by `run` without a restart.
    let seen = handshake(berth.tls, "files.test", client(&[first], &[]))
        .await
        .unwrap();
    assert_eq!(seen.leaf().names, ["files.test"]);
    tokio::time::sleep(Duration::from_millis(20)).await; // a distinct mtime
    let second = write_pair(&["files.test", "new.files.test"]);
    let config = client(&[second], &[]);
    let seen = wait_for_handshake(berth.tls, "new.files.test", config.clone()).await;
    assert_eq!(seen.leaf().names, ["files.test", "new.files.test"]);

    // A broken file: the error shows, the last good certificate stays.
    std::fs::write(&key_file, "not a key").unwrap();
    let status = eventually("a reload error", Duration::from_secs(10), || {
        let s = status_of(&berth.manager, "given");
        s.last_error.is_some().then_some(s)
    })
    .await;
    assert!(status.last_error.unwrap().contains("key.pem"));
    assert_eq!(status.names, ["files.test", "new.files.test"]);
    handshake(berth.tls, "new.files.test", config)
        .await
        .unwrap();
}

async fn wait_for_handshake(addr: SocketAddr, sni: &str, config: Arc<ClientConfig>) -> Handshake {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match handshake(addr, sni, config.clone()).await {
            Ok(seen) => return seen,
            Err(err) => assert!(Instant::now() < deadline, "handshake with {sni}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_with_h2() {
    let l = listeners().await;
    let names = vec!["v.test".to_string()];
    let (key, pem) = tls::self_signed(&names).unwrap();
    let root = key.cert[0].clone();
    l.store.set("v", names, key);

    let seen = handshake(
        l.tls,
        "v.test",
        client(std::slice::from_ref(&root), &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
    let tls12 = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root).unwrap();
            roots
        })
        .with_no_client_auth();
    let seen = handshake(l.tls, "v.test", Arc::new(tls12)).await.unwrap();
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_2));

    // rustls clients cannot speak TLS 1.1 or 1.0; openssl can, and must be refused.
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), pem.cert).unwrap();
    let openssl = |flag: &'static str| {
        let ca = ca.path().to_owned();
        let addr = l.tls;
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr.to_string(),
                    "-servername",
                    "v.test",
                    flag,
                ])
                .arg("-CAfile")
                .arg(ca)
                .args(["-cipher", "ALL:@SECLEVEL=0"])
                .stdin(std::process::Stdio::null())
                .output()
        })
    };
    let ok12 = openssl("-tls1_2")
        .await
        .unwrap()
        .expect("openssl (Debian package openssl) must be installed");
    assert!(
        ok12.status.success(),
        "{}",
        String::from_utf8_lossy(&ok12.stderr)
    );
    for old in ["-tls1_1", "-tls1"] {
        let out = openssl(old).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{old} was accepted: {text}");
    }
}
