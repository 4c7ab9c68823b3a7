//! The typed model of `berth.toml` and its validation.
//!
//! [`parse`] turns the text of a berth.toml into an [`AppSpec`], or into [`Diagnostics`] listing
//! every problem in the file at once, each with its line, column and a hint. This crate does no
//! IO: callers read the file and pass its name and text; checks that need the disk (does a
//! static dir exist?) belong to the caller, which can report them through [`Diagnostics`] too.
//!
//! How it works: the text is parsed into a spanned TOML tree (`toml::de::DeTable`), then
//! `schema.rs` walks that tree table by table with the small helpers in `walk.rs`, collecting
//! problems instead of stopping at the first.

mod alerts;
mod backups;
mod cache;
mod cron;
mod databases;
mod deploy;
mod diagnostic;
mod kubernetes;
mod model;
mod names;
mod notify;
mod observe_model;
mod overlay;
mod proxy;
mod routes;
mod schema;
mod secrets;
mod tls;
mod units;
mod walk;

pub use diagnostic::{Diagnostic, Diagnostics};
/// An IP network: `trusted_proxies` entries (the proxy takes the same type).
pub use ipnet::IpNet;
pub use kubernetes::Autoscale;
pub use model::{
    AcmeChallenge, AppSpec, BackupSource, BackupSpec, BackupTarget, Balance, BuildSpec,
    CacheControlSpec, CanaryStep, DatabaseEngine, DatabaseSpec, DeploySpec, HeaderPreset,
    HealthSpec, Keep, ProxySpec, RouteSpec, RouteTarget, Sandbox, ServiceSpec, SmokeCheck,
    SmokeHost, SourceSpan, TlsSpec, VerifyCadence,
};
pub use names::{check_app_name, check_secret_name};
pub use observe_model::{AlertName, AlertRule, AlertsSpec, NotifyChannel, NotifyEvent, NotifySpec};
pub use secrets::{SecretKind, SecretSpec, expand};
pub use tls::certificate_names;
pub use units::{RateSpec, parse_duration, parse_rate, parse_size};

/// Parses and validates a berth.toml. `file` is the name shown in diagnostics
/// (e.g. `"examples/hello/berth.toml"`).
pub fn parse(file: &str, source: &str) -> Result<AppSpec, Diagnostics> {
    parse_env(file, source, None)
}

/// Parses and validates a berth.toml with the environment `env` (`--env NAME`) applied: the
/// `[environments.NAME]` overlay merged into the base. Every overlay is checked either way, so
/// the answer lists the problems of all environments; an `env` the file does not define is a
/// problem too.
pub fn parse_env(file: &str, source: &str, env: Option<&str>) -> Result<AppSpec, Diagnostics> {
    schema::parse(file, source, env)
}
