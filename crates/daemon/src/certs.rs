//! Certificates for the apps with `[tls]`: what the [`tls::Manager`] should hold, derived from
//! the releases that serve, and how it is reported in status.
//!
//! The manager keeps one certificate per app (id = the app's instance name, e.g. `shop` or
//! `shop.staging`) for the app's route hosts. It is told the whole set whenever the route table
//! is republished; an unchanged set is not passed on, so a republish costs nothing.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use spec::{AcmeChallenge, AppSpec, TlsSpec};
use tls::{CertSource, CertSpec, ChallengeKind, SourceKind};

use crate::config::AcmeConfig;
use crate::lock::lock;
use crate::paths::StateDir;

/// The certificate manager and the last set of certificates it was given.
pub struct Certs {
    pub manager: tls::Manager,
    pub store: tls::CertStore,
    pub http01: tls::Http01Challenges,
    wanted: Mutex<Vec<CertSpec>>,
    dns_hook: bool,
}

impl Certs {
    pub fn open(dir: &StateDir, acme: &AcmeConfig) -> Result<Certs> {
        let mut config = tls::ManagerConfig::new(dir.certs());
        if let Some(path) = &acme.ca_root {
            let pem = std::fs::read(path)
                .with_context(|| format!("read --acme-ca-root {}", path.display()))?;
            config.extra_roots = tls::certs_from_pem(&pem).with_context(|| {
                format!("--acme-ca-root {}: no PEM certificate", path.display())
            })?;
        }
        config.dns_hook = acme.dns_hook.clone();
        let store = tls::CertStore::new();
        let http01 = tls::Http01Challenges::new();
        let manager = tls::Manager::new(config, store.clone(), http01.clone())
            .context("open the certificate directory")?;
        Ok(Certs {
            manager,
            store,
            http01,
            wanted: Mutex::new(Vec::new()),
            dns_hook: acme.dns_hook.is_some(),
        })
    }

    /// Make the manager hold exactly the certificates of `apps` (app name, spec, release dir).
    pub fn sync<'a>(&self, apps: impl Iterator<Item = (&'a str, &'a AppSpec, &'a Path)>) {
        let specs: Vec<CertSpec> = apps
            .filter_map(|(app, spec, dir)| cert_spec(app, spec, dir))
            .collect();
        let mut wanted = lock(&self.wanted);
        if *wanted == specs {
            return;
        }
        *wanted = specs.clone();
        drop(wanted);
        for (id, err) in self.manager.set_certs(specs) {
            tracing::warn!(app = id, error = %err, "certificate not loaded; see `berth status`");
        }
    }

    /// What would keep a release's `[tls]` from working on this server, found before the
    /// release starts: certificate files that do not load, wildcard names without a DNS hook,
    /// TLS-ALPN-01 without an HTTPS listener (`https`).
    pub fn check(&self, spec: &AppSpec, release_dir: &Path, https: bool) -> Result<(), String> {
        match &spec.tls {
            Some(TlsSpec::Files { cert, key }) => {
                let read = |given: &str, what: &str| {
                    let path = release_dir.join(given);
                    std::fs::read(&path).map_err(|e| {
                        let shipped = if Path::new(given).is_relative() {
                            " (a relative path is read from the deployed release, which leaves out what .gitignore and .berthignore list; an absolute path reads the server's own file)"
                        } else {
                            ""
                        };
                        format!("[tls] {what} {}: {e}{shipped}", path.display())
                    })
                };
                let (chain, pem) = (read(cert, "cert")?, read(key, "key")?);
                tls::certified_key_from_pem(cert, &chain, &pem)
                    .map(drop)
                    .map_err(|e| format!("[tls] cert/key: {e}"))
            }
            Some(TlsSpec::Acme {
                challenge: AcmeChallenge::TlsAlpn01,
                ..
            }) if !https => Err(
                "[tls] acme: challenge = \"tls-alpn-01\" is answered by the HTTPS listener, and the daemon has none; start `berth serve` with --https ADDR (port 443 in production), or use challenge = \"http-01\"".to_owned(),
            ),
            Some(TlsSpec::Acme { .. }) if !self.dns_hook => {
                match spec::certificate_names(&spec.routes)
                    .into_iter()
                    .find(|n| n.starts_with("*."))
                {
                    Some(wild) => Err(format!(
                        "[tls] acme: `{wild}` is a wildcard name, which only DNS-01 can validate, and the daemon has no DNS hook; start `berth serve` with --acme-dns-hook COMMAND, or list the names one by one"
                    )),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Status of the certificates of the apps `only` lets through.
    pub fn status(&self, only: impl Fn(&str) -> bool) -> Vec<api::CertificateStatus> {
        let now = SystemTime::now();
        let time = supervisor::logs::format_time;
        self.manager
            .status()
            .into_iter()
            .filter(|s| only(&s.id))
            .map(|s| api::CertificateStatus {
                source: match s.source {
                    SourceKind::Acme => api::CertSource::Acme,
                    SourceKind::SelfSigned => api::CertSource::SelfSigned,
                    SourceKind::Files => api::CertSource::Files,
                },
                names: s.names,
                serving: s.serving,
                issuer: s.issuer,
                expires_in_days: s.not_after.map(|t| match t.duration_since(now) {
                    Ok(left) => (left.as_secs() / 86_400) as i64,
                    Err(past) => -((past.duration().as_secs() / 86_400) as i64) - 1,
                }),
                not_after: s.not_after.map(time),
                serial: s.serial,
                last_attempt: s.last_attempt.map(time),
                last_error: s.last_error,
                next_attempt: s.next_attempt.map(time),
                app: s.id,
            })
            .collect()
    }
}

/// The certificate of one app, from its `[tls]` and route hosts; `None` without `[tls]`.
fn cert_spec(app: &str, spec: &AppSpec, release_dir: &Path) -> Option<CertSpec> {
    let names = spec::certificate_names(&spec.routes);
    let source = match spec.tls.as_ref()? {
        TlsSpec::Acme {
            email,
            directory,
            challenge,
        } => CertSource::Acme {
            email: email.clone(),
            directory: directory.clone(),
            names,
            challenge: match challenge {
                AcmeChallenge::Http01 => ChallengeKind::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeKind::TlsAlpn01,
            },
        },
        TlsSpec::SelfSigned => CertSource::SelfSigned { names },
        TlsSpec::Files { cert, key } => CertSource::Files {
            cert: release_dir.join(cert),
            key: release_dir.join(key),
        },
    };
    Some(CertSpec {
        id: app.to_owned(),
        source,
    })
}

/// `berth_certificate_expiry_timestamp_seconds{app}` and `berth_certificate_renewal_failing{app}`,
/// read from the manager at scrape time.
pub(crate) struct CertMetrics(pub tls::Manager);

impl std::fmt::Debug for CertMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertMetrics")
    }
}

impl Collector for CertMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = self.0.status();
        if status.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "berth_certificate_expiry_timestamp_seconds",
            "When the served certificate expires (Unix time).",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            if let Some(at) = s.not_after {
                let secs = at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                ConstGauge::new(secs).encode(family.encode_family(&[("app", s.id.as_str())])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_certificate_renewal_failing",
            "Whether the last order or reload of the certificate failed.",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            ConstGauge::new(i64::from(s.last_error.is_some()))
                .encode(family.encode_family(&[("app", s.id.as_str())])?)?;
        }
        Ok(())
    }
}
