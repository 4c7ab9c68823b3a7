//! Automatic HTTPS through the daemon: real certificates from a real ACME CA (pebble) by
//! HTTP-01 and TLS-ALPN-01 against berth's own listeners, pages fetched with curl over h2, the
//! HTTP → HTTPS redirect, certificates surviving a restart, and status.
//!
//! pebble resolves every name through `pebble-challtestsrv` (DNS only), which answers
//! 127.0.0.1; pebble's `httpPort`/`tlsPort` are the daemon's HTTP and HTTPS listeners.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use testkit::{Pebble, free_port};

use crate::harness::*;

/// `curl -sS ARGS`: stdout, or stderr as the error.
fn curl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An app on `host` answering `release rN`, with `[tls]` lines `tls`.
fn site(name: &str, host: &str, tls: &str) -> tempfile::TempDir {
    site_on(name, &[host], tls)
}

fn site_on(name: &str, hosts: &[&str], tls: &str) -> tempfile::TempDir {
    let routes: String = hosts
        .iter()
        .map(|h| format!("[[routes]]\nhost = \"{h}\"\npath = \"/\"\nservice = \"web\"\n\n"))
        .collect();
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n\n[services.web]\ncommand = \"python3 -u web.py\"\nhealth = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }}\n\n{routes}[tls]\n{tls}\n"
            ),
        ),
        ("web.py", PY_WS_WEB),
    ])
}

fn certificate(d: &Daemon, app: &str) -> Value {
    let status = d.status();
    status["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["app"] == app)
        .cloned()
        .unwrap_or(Value::Null)
}

fn wait_serving(d: &Daemon, app: &str, pebble: &Pebble) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = certificate(d, app);
        if c["serving"] == true {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate for {app}: {c}\ndaemon log:\n{}\npebble:\n{}",
            d.log(),
            pebble.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn acme_certificates_by_http01_and_tls_alpn01_served_over_h2_and_kept_across_restarts() {
    let (http, https) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, 3600);
    let (http_addr, https_addr) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{https}"));
    let mut d = Daemon::start_with(
        &[
            "--http",
            &http_addr,
            "--https",
            &https_addr,
            "--acme-ca-root",
            pebble.https_root.to_str().unwrap(),
        ],
        &[],
    );
    let acme = |challenge: &str| {
        format!(
            "acme = {{ email = \"ops@berth.test\", directory = \"{}\", challenge = \"{challenge}\" }}",
            pebble.directory
        )
    };
    let shop = site("shop", "shop.berth.test", &acme("http-01"));
    let api = site("api", "api.berth.test", &acme("tls-alpn-01"));
    for dir in [&shop, &api] {
        let run = d.berth(&["deploy", dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
    }

    let shop_cert = wait_serving(&d, "shop", &pebble);
    let api_cert = wait_serving(&d, "api", &pebble);
    for (c, name) in [
        (&shop_cert, "shop.berth.test"),
        (&api_cert, "api.berth.test"),
    ] {
        assert_eq!(c["source"], "acme");
        assert_eq!(c["names"], serde_json::json!([name]));
        assert!(c["issuer"].as_str().unwrap().contains("Pebble"), "{c}");
        assert!(c["last_error"].is_null(), "{c}");
        assert!(c["expires_in_days"].as_i64().unwrap() >= 0, "{c}");
    }

    // A client that trusts pebble's root gets the page over h2, with SNI picking each name.
    let root = pebble.issuer_root.to_str().unwrap();
    for name in ["shop.berth.test", "api.berth.test"] {
        let resolve = format!("{name}:{https}:127.0.0.1");
        let url = format!("https://{name}:{https}/");
        let out = curl(&[
            "--http2",
            "--cacert",
            root,
            "--resolve",
            &resolve,
            "-w",
            " %{http_version}",
            &url,
        ])
        .unwrap_or_else(|e| panic!("{url}: {e}\n{}", d.log()));
        assert_eq!(out, "release r1\n 2", "{url}");
    }

    // Plain HTTP is redirected to HTTPS; ACME's own path is not (pebble validated through it).
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: shop.berth.test",
        &format!("http://{http_addr}/cart?x=1"),
    ])
    .unwrap();
    assert_eq!(out, format!("308 https://shop.berth.test:{https}/cart?x=1"));

    // Account key and certificates are private and survive a restart: no new order.
    let certs = d.path().join("certs");
    let files: Vec<PathBuf> = std::fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&certs), 0o700);
    assert_eq!(d.terminate(), 0);
    d.restart();
    let again = wait_serving(&d, "shop", &pebble);
    assert_eq!(again["serial"], shop_cert["serial"]);
    let text = d.berth(&["status"]);
    assert!(
        text.stdout.contains("certificates")
            && text.stdout.contains("shop.berth.test")
            && text.stdout.contains("Pebble"),
        "{text:?}"
    );

    // Port 80 no longer reaches berth (the daemon moved; pebble still validates on the old
    // port): a new name cannot be validated. The failure shows in status, and the certificate
    // already issued keeps serving.
    assert_eq!(d.terminate(), 0);
    d.args[1] = format!("127.0.0.1:{}", free_port());
    d.restart();
    let www = site_on(
        "shop",
        &["shop.berth.test", "www.shop.berth.test"],
        &acme("http-01"),
    );
    let run = d.berth(&["deploy", www.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let failed = wait_for("the order to fail", Duration::from_secs(60), || {
        let c = certificate(&d, "shop");
        c["last_error"].is_string().then_some(c)
    });
    assert_eq!(failed["serving"], true, "{failed}");
    assert_eq!(failed["serial"], shop_cert["serial"], "{failed}");
    assert!(failed["next_attempt"].is_string(), "{failed}");
    let resolve = format!("shop.berth.test:{https}:127.0.0.1");
    let out = curl(&[
        "--cacert",
        root,
        "--resolve",
        &resolve,
        &format!("https://shop.berth.test:{https}/"),
    ])
    .unwrap();
    assert_eq!(out, "release r2\n");
    let text = d.berth(&["status", "shop"]);
    assert!(
        text.stdout.contains("failed:") && text.stdout.contains("keeps serving"),
        "{text:?}"
    );
}

/// The serial of the certificate the listener presents for `name`, as openssl prints it.
fn served_serial(https: u16, name: &str) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{https} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -serial"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_short_lived_certificate_is_renewed_and_swapped_in_without_a_restart() {
    let (http, https) = (free_port(), free_port());
    // Renewal is due when a third of the lifetime is left: 6 s after issuance.
    let pebble = Pebble::start(http, https, 9);
    let d = Daemon::start_with(
        &[
            "--http",
            &format!("127.0.0.1:{http}"),
            "--https",
            &format!("127.0.0.1:{https}"),
            "--acme-ca-root",
            pebble.https_root.to_str().unwrap(),
        ],
        &[],
    );
    let tls = format!(
        "acme = {{ email = \"ops@berth.test\", directory = \"{}\" }}",
        pebble.directory
    );
    let short = site("short", "short.berth.test", &tls);
    let run = d.berth(&["deploy", short.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let first = wait_serving(&d, "short", &pebble);
    let served = served_serial(https, "short.berth.test");
    assert!(served.starts_with("serial="), "{served}");
    let renewed = wait_for("the renewal", Duration::from_secs(30), || {
        let c = certificate(&d, "short");
        (c["serial"] != first["serial"] && c["serving"] == true).then_some(c)
    });
    assert!(renewed["last_error"].is_null(), "{renewed}");
    // The same daemon, no restart: the listener now presents the new certificate.
    let now = wait_for(
        "the new certificate on the listener",
        Duration::from_secs(5),
        || {
            let s = served_serial(https, "short.berth.test");
            (s.starts_with("serial=") && s != served).then_some(s)
        },
    );
    assert_ne!(now, served);
}

#[test]
fn certificate_files_are_checked_before_start_and_served() {
    let https = free_port();
    let https_addr = format!("127.0.0.1:{https}");
    let d = Daemon::start_with(&["--http", "127.0.0.1:0", "--https", &https_addr], &[]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["files.berth.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = "cert = \"tls/site.pem\"\nkey = \"tls/site.key\"";
    let good = site("files", "files.berth.test", tls);
    std::fs::create_dir_all(good.path().join("tls")).unwrap();
    std::fs::write(good.path().join("tls/site.pem"), cert.pem()).unwrap();
    std::fs::write(good.path().join("tls/site.key"), key.serialize_pem()).unwrap();
    let run = d.berth(&["deploy", good.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let ca = good.path().join("tls/site.pem");
    let get = || {
        curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("files.berth.test:{https}:127.0.0.1"),
            &format!("https://files.berth.test:{https}/"),
        ])
    };
    assert_eq!(get().unwrap(), "release r1\n");

    // The key is missing from the next release: refused before anything starts.
    std::fs::remove_file(good.path().join("tls/site.key")).unwrap();
    let run = d.berth(&["deploy", good.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("failed at the tls gate")
            && run.stderr.contains("[tls] key")
            && run.stderr.contains("tls/site.key")
            && run.stderr.contains("release r1 keeps serving"),
        "{run:?}"
    );
    assert_eq!(get().unwrap(), "release r1\n");
    assert_eq!(certificate(&d, "files")["source"], "files");
}

#[test]
fn self_signed_for_development_with_expiry_in_metrics() {
    let https = free_port();
    let https_addr = format!("127.0.0.1:{https}");
    let d = Daemon::start_with(
        &[
            "--http",
            "127.0.0.1:0",
            "--https",
            &https_addr,
            "--admin",
            "127.0.0.1:0",
        ],
        &[],
    );
    // Smoke checks go to the HTTPS listener: plain HTTP would only answer the redirect.
    let dev = site(
        "dev",
        "dev.localhost",
        "self_signed = true\n\n[deploy]\nsmoke = [{ path = \"/\" }]",
    );
    for _ in 0..2 {
        let run = d.berth(&["deploy", dev.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            run.stderr
                .contains("smoke: GET / (Host: dev.localhost, HTTPS) answered 200"),
            "{run:?}"
        );
    }
    let c = certificate(&d, "dev");
    assert_eq!(
        (c["source"].as_str(), c["serving"].as_bool()),
        (Some("self-signed"), Some(true)),
        "{c}"
    );
    // Kept under certs/, so a restart serves the same certificate.
    let pem = d.path().join("certs/dev.self-signed.crt");
    assert_eq!(mode(&pem), 0o600);
    let out = curl(&[
        "--cacert",
        pem.to_str().unwrap(),
        "--resolve",
        &format!("dev.localhost:{https}:127.0.0.1"),
        &format!("https://dev.localhost:{https}/"),
    ])
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert_eq!(out, "release r2\n");

    // The admin listener's /metrics has the certificate's expiry, and promtool accepts it all.
    let admin: std::net::SocketAddr = d.status()["daemon"]["admin"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, metrics) = http_get(admin, "localhost", "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("berth_certificate_expiry_timestamp_seconds{app=\"dev\"} ")
            && metrics.contains("berth_certificate_renewal_failing{app=\"dev\"} 0"),
        "{metrics}"
    );
    testkit::promtool_check(&metrics);
}
