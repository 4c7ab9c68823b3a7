//! pebble (Let's Encrypt's ACME test server) with `pebble-challtestsrv` as its DNS server:
//! every name resolves to 127.0.0.1 and TXT records are set through the challtestsrv
//! management API, so any name validates against the listeners of the test, which pebble is
//! pointed at (`httpPort` / `tlsPort`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::port::free_port;

/// pebble and its DNS server; both are killed on drop.
pub struct Pebble {
    dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// PEM of the CA behind pebble's own HTTPS (the ACME client must trust it).
    pub https_root: PathBuf,
    /// PEM of the root of the certificates pebble issues (clients of the site trust it).
    pub issuer_root: PathBuf,
    /// Port of the `pebble-challtestsrv` management API (`/set-txt`, `/clear-txt`).
    pub challtest: u16,
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts pebble with its HTTP-01 and TLS-ALPN-01 validations sent to `http_port` and
    /// `tls_port` on 127.0.0.1, issuing certificates that live `validity` seconds; returns once
    /// its directory and issuer root answer (blocking, up to 20 s).
    pub fn start(http_port: u16, tls_port: u16, validity: u64) -> Pebble {
        let dir = tempfile::tempdir().expect("temporary directory");
        // A CA of our own for pebble's HTTPS (the Debian package ships no test certificate).
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("certificate");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("signed certificate");
        let https_root = dir.path().join("https-root.pem");
        let write = |name: &Path, body: String| std::fs::write(name, body).expect("write");
        write(&https_root, ca.pem());
        write(&dir.path().join("cert.pem"), cert.pem());
        write(&dir.path().join("key.pem"), key.serialize_pem());

        let (listen, management, dns, challtest) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.path().join("cert.pem"),
                "privateKey": dir.path().join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity,
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        write(&config_path, config.to_string());
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{challtest}")])
            .args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
            ])
            .args(["-defaultIPv4", "127.0.0.1"])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble) must be installed");
        let mut children = vec![dns_server];
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}"), "-strict=false"])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            // pebble rejects 5% of good nonces by default; the daemon retries a failed order
            // only after a minute, longer than a test waits.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn();
        match pebble {
            Ok(child) => children.push(child),
            Err(err) => {
                for c in &mut children {
                    let _ = c.kill();
                }
                panic!("pebble (Debian package pebble) must be installed: {err}");
            }
        }
        let pebble = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            issuer_root: dir.path().join("issuer-root.pem"),
            https_root,
            challtest,
            dir,
            children,
        };
        let roots_url = format!("https://127.0.0.1:{management}/roots/0");
        let deadline = Instant::now() + Duration::from_secs(20);
        let issuer_pem = loop {
            let get = |url: &str| curl(&pebble.https_root, url);
            if let (Some(dir), Some(pem)) = (get(&pebble.directory), get(&roots_url))
                && dir.contains("newOrder")
                && pem.contains("BEGIN CERTIFICATE")
            {
                break pem;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not come up; logs in {}:\n{}",
                pebble.dir.path().display(),
                pebble.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        std::fs::write(&pebble.issuer_root, issuer_pem).expect("write the issuer root");
        pebble
    }

    /// pebble's own log and error output, for failure messages.
    pub fn logs(&self) -> String {
        ["pebble.log", "pebble.err"]
            .iter()
            .map(|n| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default())
            .collect()
    }
}

/// `curl --cacert ROOT URL`: the body, or `None` on any failure.
fn curl(root: &Path, url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert"])
        .arg(root)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
