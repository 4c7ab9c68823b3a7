//! Certificates for berth's TLS listener.
//!
//! - [`CertStore`] holds the certificates by name and is the listener's
//!   [`rustls::server::ResolvesServerCert`]: SNI picks the exact name, then a `*.` wildcard;
//!   certificates are swapped in place (arc-swap), so a renewal needs no restart and drops no
//!   connection. It also answers TLS-ALPN-01 challenges.
//! - [`server_config`] is the one [`rustls::ServerConfig`] berth serves with (ring, TLS 1.2 and
//!   1.3, AEAD suites only, ALPN h2 / http/1.1, resumption on).
//! - [`Http01Challenges`] is what the plain HTTP listener answers for
//!   `/.well-known/acme-challenge/TOKEN`.
//! - [`Manager`] turns [`CertSpec`]s (self-signed, files, ACME) into certificates in the store,
//!   persists ACME material under `STATE/certs/`, renews, backs off, and reports [`CertStatus`].
//!
//! Invariants: this crate binds no listener and knows nothing about berth.toml, routes or the
//! daemon; the only crypto provider is ring, always passed explicitly (never the process
//! default).

mod acme;
mod error;
mod files;
mod http01;
mod manager;
mod parse;
mod persist;
mod provider;
mod store;
mod types;

pub use error::Error;
pub use http01::Http01Challenges;
pub use manager::Manager;
pub use parse::{CertInfo, Pem, certified_key_from_pem, certs_from_pem, self_signed};
pub use provider::{client_config, pinned_client_config, provider, server_config};
pub use store::{ACME_TLS_ALPN, CertStore};
pub use types::{CertSource, CertSpec, CertStatus, ChallengeKind, ManagerConfig, SourceKind};

/// rustls itself, so callers use the same version and features (ring, no aws-lc-rs).
pub use rustls;
