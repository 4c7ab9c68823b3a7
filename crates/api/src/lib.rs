//! berth's control API, shared by the daemon and its clients: the wire types (JSON over HTTP
//! on `STATE/berth.sock`), the closed vocabularies of rollouts and releases, the typed query
//! strings, and (feature `client`) the client, over the socket or a stream a dialer opens.
//!
//! | method | path                                   | query              | answer                       |
//! |--------|----------------------------------------|--------------------|------------------------------|
//! | GET    | /v1/daemon                             |                    | [`DaemonInfo`]               |
//! | GET    | /v1/status                             | [`AppQuery`]       | [`Status`]                   |
//! | POST   | /v1/deploy (body: source archive)      | [`DeployQuery`]    | NDJSON [`DeployEvent`]s, or a [`Plan`] with `dry_run` |
//! | POST   | /v1/apps/APP/rollback                  | [`RollbackQuery`]  | NDJSON [`DeployEvent`]s      |
//! | GET    | /v1/apps/APP/releases                  |                    | [`Releases`]                 |
//! | GET    | /v1/history                            | [`AppQuery`]       | [`History`]                  |
//! | GET    | /v1/apps/APP/logs                      | [`LogsQuery`]      | log lines, streamed          |
//! | GET    | /v1/metrics                            |                    | Prometheus text              |
//! | GET    | /v1/apps/APP/secrets                   |                    | [`SecretInfo`]s              |
//! | PUT    | /v1/apps/APP/secrets/NAME (body: value)| [`SetSecretQuery`] | [`SecretSet`]                |
//! | DELETE | /v1/apps/APP/secrets/NAME              |                    | [`SecretRemoved`]            |
//! | POST   | /v1/apps/APP/secrets/generate          |                    | [`SecretInfo`]s              |
//! | POST   | /v1/apps/APP/secrets/NAME/rotate (body: value or empty) | | NDJSON [`DeployEvent`]s |
//! | PUT    | /v1/apps/APP/maintenance (body: message)|                   | [`MaintenanceMode`]          |
//! | DELETE | /v1/apps/APP/maintenance               |                    | [`MaintenanceMode`]          |
//! | POST   | /v1/check/routes (body: [`RouteCheck`])|                    | [`RouteConflicts`]           |
//! | POST   | /v1/upgrade                            | [`UpgradeQuery`]   | [`Upgraded`]                 |
//! | GET    | /v1/secrets/key                        |                    | the key, as text             |
//! | PUT    | /v1/secrets/key (body: key)            | [`ImportKeyQuery`] | [`KeyImported`]              |
//!
//! Every non-2xx answer is an [`ApiError`]: 4xx for bad input, 5xx for a failure.

#[cfg(feature = "client")]
pub mod client;
mod query;
mod types;
mod vocab;

pub use query::{
    AppQuery, BackupQuery, DeployQuery, ImportKeyQuery, LogsQuery, NoQuery, RollbackQuery,
    SetSecretQuery, UpgradeQuery, parse, path, segments,
};
pub use types::*;
pub use vocab::{
    BackupStatus, BackupTrigger, CertSource, DeployKind, DeployResult, Gate, Phase, ReleaseState,
    ReleaseStatus, SecretOrigin, Step, UnknownWord,
};

/// A size as people read it, in SI units: `950 B`, `12.3 MB`. The daemon's messages and the
/// CLI's tables write sizes the same way.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
