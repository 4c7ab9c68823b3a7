//! The small data types at the seam between the daemon and the certificate [`Manager`]:
//! what is wanted ([`CertSpec`]), how to get it ([`ManagerConfig`]), what is served
//! ([`CertStatus`]).
//!
//! [`Manager`]: crate::Manager

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;

/// How the CA checks that we control a name. Wildcard names always use DNS-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeKind {
    /// `GET http://NAME/.well-known/acme-challenge/TOKEN` on port 80 ([`crate::Http01Challenges`]).
    #[default]
    Http01,
    /// A TLS handshake on port 443 with ALPN `acme-tls/1` ([`crate::CertStore`] answers it).
    TlsAlpn01,
    /// A TXT record `_acme-challenge.NAME`, set by the configured DNS hook.
    Dns01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }
}

/// Where a certificate comes from (an app's `[tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Generated here, no CA: for development. Kept under `certs/` so it survives restarts.
    SelfSigned { names: Vec<String> },
    /// Operator-given PEM files (chain, key); reloaded when their mtime changes.
    Files { cert: PathBuf, key: PathBuf },
    /// Obtained and renewed from an ACME CA (`directory` is its directory URL).
    Acme {
        email: String,
        directory: String,
        names: Vec<String>,
        challenge: ChallengeKind,
    },
}

/// One certificate berth should serve. `id` names it in status and in file names under
/// `certs/` (`[a-z0-9._-]`, e.g. the app name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub id: String,
    pub source: CertSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    SelfSigned,
    Files,
    Acme,
}

/// What `berth status` shows per certificate. Times are absolute; `None` when not known yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStatus {
    pub id: String,
    pub source: SourceKind,
    /// Names of the served certificate, or the configured names while none is served.
    pub names: Vec<String>,
    /// Whether a certificate is being served for this id.
    pub serving: bool,
    pub issuer: Option<String>,
    pub not_before: Option<SystemTime>,
    pub not_after: Option<SystemTime>,
    pub serial: Option<String>,
    /// Last ACME order or file (re)load.
    pub last_attempt: Option<SystemTime>,
    /// Why the last attempt failed; cleared by the next success.
    pub last_error: Option<String>,
    /// When the next ACME order is due (renewal or retry after backoff).
    pub next_attempt: Option<SystemTime>,
}

/// Knobs of the [`crate::Manager`]; [`ManagerConfig::new`] has the production defaults.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// `STATE/certs`: created 0700; every file in it 0600.
    pub dir: PathBuf,
    /// Roots trusted for the ACME directory's HTTPS besides the Mozilla ones (private CA,
    /// pebble).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// `sh -c HOOK` for DNS-01, with `BERTH_DNS_ACTION=set|clear`, `BERTH_DNS_NAME`
    /// (`_acme-challenge.example.com`) and `BERTH_DNS_VALUE`.
    pub dns_hook: Option<String>,
    /// First retry delay after a failed order; doubles per failure (with jitter) …
    pub retry_min: Duration,
    /// … up to this. Also the delay after the CA says `rateLimited`.
    pub retry_max: Duration,
    /// Pause between two orders (jittered ±50 %): orders go one at a time, spread out.
    pub order_gap: Duration,
    /// How long one order may wait for validation and for issuance.
    pub order_timeout: Duration,
    /// How often `Files` certificates are checked for changes.
    pub file_check: Duration,
}

impl ManagerConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManagerConfig {
            dir: dir.into(),
            extra_roots: Vec::new(),
            dns_hook: None,
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            order_gap: Duration::from_secs(10),
            order_timeout: Duration::from_secs(180),
            file_check: Duration::from_secs(10),
        }
    }
}
