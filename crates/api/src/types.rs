//! The control API's wire types (JSON over HTTP on `berth.sock`). Only these cross the wire;
//! the daemon's internal types stay internal.

use serde::{Deserialize, Serialize};

use crate::vocab::{
    BackupStatus, BackupTrigger, CertSource, DeployKind, DeployResult, Gate, Phase, ReleaseState,
    SecretOrigin, Step,
};

/// `GET /v1/daemon`
#[derive(Debug, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub state_dir: String,
    /// Bound proxy address, e.g. `127.0.0.1:8080`.
    pub http: Option<String>,
    /// Bound TLS listener, if the daemon has one (`--https`).
    #[serde(default)]
    pub https: Option<String>,
    pub admin: Option<String>,
    /// Whether apps run as users of their own: `on: …`, or `OFF: why`.
    #[serde(default)]
    pub isolation: String,
    /// When this daemon started (RFC 3339, UTC): an upgrade or a restart changes it, the
    /// apps' instances keep theirs.
    #[serde(default)]
    pub started_at: Option<String>,
}

/// `POST /v1/upgrade`: the daemon that handed over and the one serving now.
#[derive(Debug, Serialize, Deserialize)]
pub struct Upgraded {
    pub from_pid: u32,
    pub from_version: String,
    pub pid: u32,
    pub version: String,
    pub binary: String,
    /// From the request to the new daemon accepting, in milliseconds.
    pub took_ms: u64,
}

/// `GET /v1/status[?app=NAME]`
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub daemon: DaemonInfo,
    pub apps: Vec<AppStatus>,
    /// One per app with `[tls]` (of the apps shown).
    #[serde(default)]
    pub certificates: Vec<CertificateStatus>,
}

/// A certificate berth serves (or is obtaining) for an app. Times are UTC, RFC 3339.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertificateStatus {
    pub app: String,
    pub source: CertSource,
    pub names: Vec<String>,
    /// Whether a certificate is being served for the app now.
    pub serving: bool,
    pub issuer: Option<String>,
    pub not_after: Option<String>,
    /// Whole days until `not_after` (negative once expired).
    pub expires_in_days: Option<i64>,
    pub serial: Option<String>,
    /// Last ACME order or file (re)load, and its error if it failed.
    pub last_attempt: Option<String>,
    pub last_error: Option<String>,
    /// When the next ACME order is due (renewal, or retry after a failure).
    pub next_attempt: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    /// The release serving traffic, if any.
    pub release: Option<String>,
    /// A deploy in progress, if any (release id).
    pub deploying: Option<String>,
    /// The user its processes run as (none when the daemon cannot switch users).
    #[serde(default)]
    pub user: Option<String>,
    pub instances: Vec<InstanceStatus>,
    /// Releases a deploy replaced that still finish their requests before they stop.
    #[serde(default)]
    pub draining: Vec<Draining>,
    /// The replaced release kept running out of traffic (`[deploy] standby`), for an instant
    /// rollback.
    #[serde(default)]
    pub standby: Option<Standby>,
    /// A canary in progress: the release a share of clients is on.
    #[serde(default)]
    pub canary: Option<Canary>,
    /// Its `[backups.NAME]`: last success and its age, the last drill.
    #[serde(default)]
    pub backups: Vec<BackupDefinition>,
    /// Under maintenance, who put it there and why: the operator (`berth maintenance on`,
    /// every route answers 503) and/or a restore (its services answer 503).
    #[serde(default)]
    pub maintenance: Option<String>,
    /// Its `[[notify]]` channels and whether they deliver.
    #[serde(default)]
    pub notifiers: Vec<NotifierStatus>,
}

/// A warm standby: the previous release, running but not routed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Standby {
    pub release: String,
    /// Its instances, as the live ones are shown.
    pub instances: Vec<InstanceStatus>,
    /// Their memory together.
    pub memory_bytes: u64,
    /// When it is drained and stopped (RFC 3339, UTC).
    pub until: String,
}

/// A canary step in progress.
#[derive(Debug, Serialize, Deserialize)]
pub struct Canary {
    pub release: String,
    /// The share of clients on it now, in percent.
    pub percent: f64,
    /// This step's number (1-based) and how many steps there are, the switch included.
    pub step: u32,
    pub steps: u32,
}

/// A replaced release finishing its requests and WebSockets.
#[derive(Debug, Serialize, Deserialize)]
pub struct Draining {
    pub release: String,
    /// Its instances still running.
    pub instances: u32,
    /// When it is stopped at the latest (RFC 3339, UTC): open WebSockets get a close frame.
    pub until: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub service: String,
    pub instance: u32,
    pub release: String,
    pub pid: Option<u32>,
    pub port: u16,
    /// starting, ready, unready, backoff, crash-loop, stopping, stopped, failed
    pub state: String,
    pub restarts: u32,
    pub uptime_secs: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub crash_loop: bool,
    /// Each limit of the instance and what enforces it.
    #[serde(default)]
    pub limits: Vec<LimitStatus>,
    pub warnings: Vec<String>,
}

/// A limit (`memory_max`, `cpu_max`, `pids_max`) and what holds it: `cgroup`, an rlimit, or
/// `not enforced: why`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LimitStatus {
    pub name: String,
    pub value: String,
    pub enforced_by: String,
}

/// One line of the NDJSON stream answering `POST /v1/deploy`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeployEvent {
    /// A phase began.
    Phase { phase: Phase, detail: String },
    /// A line of build output.
    Build { line: String },
    /// An instance passed readiness.
    Ready {
        service: String,
        instance: u32,
        port: u16,
    },
    /// The deploy is over.
    Done(DeployOutcome),
}

/// `GET /v1/alerts`: the alerts pending or firing, firing first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertInfo {
    /// `p95_latency`, `error_rate`, … or a server rule (`disk_free`, `daemon_memory`).
    pub alert: String,
    /// Empty for the server's own alerts.
    pub app: String,
    /// What in the app: a route, `service.instance`, a certificate's name, a backup.
    pub subject: String,
    /// `pending` (past the threshold, not yet for `for`) or `firing`.
    pub state: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// In the alert's unit: `1.20s`, `3.2%`, `4`, `6d 2h`.
    pub value: String,
    pub threshold: String,
    /// RFC 3339, UTC: since when it is in this state.
    pub since: String,
}

/// `GET /v1/health`: one line per app.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, `warning` or `critical`: the worst of the apps and the server.
    pub status: String,
    pub apps: Vec<AppHealth>,
    /// The server's own firing alerts (disk, the daemon's memory).
    pub server: Vec<AlertInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppHealth {
    pub app: String,
    /// `ok`, `warning` or `critical`.
    pub status: String,
    /// One line: `r3, 2/2 instances ready, 12.3 req/s, 0.0% errors, p95 45ms`, or what is wrong.
    pub summary: String,
    /// Firing alerts of the app.
    pub alerts: Vec<AlertInfo>,
}

/// `GET /v1/dashboard`: where the dashboard is.
#[derive(Debug, Serialize, Deserialize)]
pub struct DashboardUrl {
    pub url: String,
}

/// `POST /v1/apps/APP/notify/test`: what each channel answered.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotifyResults {
    pub app: String,
    pub results: Vec<NotifyResult>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NotifyResult {
    /// `slack (…/AbCd)`: never the token.
    pub channel: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// A notifier's standing, in `berth status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifierStatus {
    pub channel: String,
    pub ok: bool,
    pub last_error: Option<String>,
    pub failures_in_a_row: u32,
}

/// `GET /v1/apps/APP/backups`: the app's backup definitions and its backups, newest first.
#[derive(Debug, Serialize, Deserialize)]
pub struct Backups {
    pub app: String,
    pub definitions: Vec<BackupDefinition>,
    pub backups: Vec<BackupRecord>,
}

/// One `[backups.NAME]` of the serving release, and how it stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupDefinition {
    pub name: String,
    /// What it backs up: `postgres 127.0.0.1:5432/shop (database main)`, `dir uploads`.
    pub source: String,
    pub schedule: String,
    /// When it runs next (RFC 3339, UTC).
    pub next_run: Option<String>,
    /// Where backups go: `/var/lib/berth/backups/shop`, `s3://bucket/shop`.
    pub to: String,
    pub keep: String,
    pub verify: String,
    /// The newest successful backup: when it started (RFC 3339) and how old it is.
    pub last_success: Option<String>,
    pub last_success_age_secs: Option<u64>,
    /// The newest drill of any of its backups.
    pub last_drill: Option<DrillRecord>,
    /// The newest backup failed: why.
    pub last_failure: Option<String>,
    /// A backup of it is running now.
    pub running: bool,
}

/// One backup, as the daemon recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    pub name: String,
    pub trigger: BackupTrigger,
    pub status: BackupStatus,
    /// RFC 3339, UTC.
    pub started: String,
    pub took_ms: Option<u64>,
    /// Stored bytes (compressed and encrypted), and bytes read from the source.
    pub size: Option<u64>,
    pub plain_size: Option<u64>,
    pub sha256: Option<String>,
    pub tables: u64,
    pub rows: u64,
    /// Directories: files in the backup.
    pub files: Option<u64>,
    /// A failed backup: the stage that failed and why.
    pub stage: Option<String>,
    pub error: Option<String>,
    /// Its newest restore drill.
    pub drill: Option<DrillRecord>,
}

/// A restore drill's receipt: the backup restored into a scratch target and compared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    /// RFC 3339, UTC.
    pub at: String,
    pub ok: bool,
    /// The time the restore took: the app's measured time to restore.
    pub duration_ms: u64,
    pub tables: u64,
    pub rows: u64,
    pub problem: Option<String>,
}

/// One line of the NDJSON stream answering a backup run, verify or restore.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BackupEvent {
    /// A step began or ended (`safety backup 2026…: ok`, `services stopped`).
    Step { detail: String },
    /// Bytes read from the source so far.
    Progress { bytes: u64 },
    /// It is over: the backup concerned, and whether all went well.
    Done {
        ok: bool,
        backup: Option<Box<BackupRecord>>,
        error: Option<String>,
        hint: Option<String>,
    },
}

/// `POST /v1/apps/APP/backups/restore?dry_run=true`: what a restore would do.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestorePlan {
    pub app: String,
    pub backup: BackupRecord,
    pub age_secs: u64,
    pub steps: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeployOutcome {
    pub ok: bool,
    pub app: String,
    pub release: String,
    /// The gate that failed.
    pub gate: Option<Gate>,
    /// What went wrong, naming the gate, service and instance.
    pub reason: Option<String>,
    /// What the operator can do about it.
    pub hint: Option<String>,
    /// The last lines of the failing build or instance log.
    pub log_tail: Vec<String>,
    pub elapsed_ms: u64,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub hint: Option<String>,
}

/// `POST /v1/deploy?dry_run=1`: what a deploy would change. Values of env keys are never shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    pub app: String,
    /// The release serving now, if any.
    pub current: Option<String>,
    pub build: Option<String>,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// `web: instances 2 → 3`, `web: command changed`, …
    pub services_changed: Vec<String>,
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    /// `+KEY`, `-KEY`, `~KEY` (value changed).
    pub env_changed: Vec<String>,
    /// `tls: none -> acme (shop.example.com)`, `[proxy] changed`, `[deploy] changed`.
    #[serde(default)]
    pub settings_changed: Vec<String>,
    /// Instances that would run after the deploy, per service.
    pub instances: Vec<(String, u32)>,
    /// How the rollout would go, instance by instance (`web.0`): started and ready before
    /// the switch; replaced one at a time after the checks; stopped; drained and stopped.
    #[serde(default)]
    pub start: Vec<String>,
    #[serde(default)]
    pub replace: Vec<String>,
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub drain: Vec<String>,
}

/// `GET /v1/apps/APP/releases`
#[derive(Debug, Serialize, Deserialize)]
pub struct Releases {
    pub app: String,
    pub current: Option<String>,
    pub releases: Vec<ReleaseInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub id: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// sha256 of the source archive.
    pub digest: String,
    pub status: ReleaseState,
    /// Serving now.
    pub live: bool,
}

/// `GET /v1/history[?app=A]`
#[derive(Debug, Serialize, Deserialize)]
pub struct History {
    pub deploys: Vec<DeployRecord>,
    pub summary: Vec<AppSummary>,
    /// Backups, drills, restores, retention deletions, restarts: newest first.
    #[serde(default)]
    pub events: Vec<EventRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EventRecord {
    /// RFC 3339, UTC.
    pub at: String,
    pub app: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRecord {
    pub id: i64,
    pub kind: DeployKind,
    pub app: String,
    pub release: String,
    pub from_release: Option<String>,
    pub user: String,
    pub started: String,
    /// From start to result (the old release may drain after that).
    pub duration_ms: Option<u64>,
    /// How long the replaced release took to drain and stop, once it has.
    #[serde(default)]
    pub drain_ms: Option<u64>,
    pub result: DeployResult,
    /// Step reached.
    pub step: Step,
    pub gate: Option<Gate>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct AppSummary {
    pub app: String,
    /// Changes: deploys and restarts that took traffic (passed the switch).
    pub deploys: u32,
    /// Changes rolled back automatically, or by hand soon after their switch.
    #[serde(default)]
    pub failed_changes: u32,
    /// Deploys and restarts refused before the switch (build, start, health): never served.
    #[serde(default)]
    pub caught_before_traffic: u32,
    /// `berth rollback`s.
    pub rollbacks: u32,
    /// Changes per day over the last 30 days (or since the first change, if later).
    pub deploys_per_day: f64,
    /// Share of changes that failed.
    pub change_failure_rate: f64,
    /// Mean time from a failed change's switch to traffic back on a good release.
    pub mean_time_to_restore_secs: Option<f64>,
}

/// `GET /v1/apps/APP/secrets`: one line per secret; never a value.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    pub origin: SecretOrigin,
    /// A value is stored.
    pub set: bool,
    pub created: Option<String>,
    pub rotated: Option<String>,
    /// Declared in the running release's [secrets].
    pub declared: bool,
    /// Services that receive it.
    pub used_by: Vec<String>,
}

/// `PUT /v1/apps/APP/secrets/NAME`
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretSet {
    /// A value was stored before and is replaced.
    pub replaced: bool,
    /// Something the operator should know, e.g. that the live release does not use it yet.
    #[serde(default)]
    pub note: Option<String>,
}

/// `DELETE /v1/apps/APP/secrets/NAME`
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretRemoved {
    pub removed: bool,
}

/// `PUT` and `DELETE /v1/apps/APP/maintenance`: the operator's maintenance mode of the app.
#[derive(Debug, Serialize, Deserialize)]
pub struct MaintenanceMode {
    pub app: String,
    /// Whether its routes now answer 503 with the maintenance page.
    pub on: bool,
    /// The message of the default page (with `on`).
    #[serde(default)]
    pub message: Option<String>,
    /// Whether the operator had it in maintenance before this request (a `PUT` then only
    /// replaced the message; a `DELETE` otherwise changed nothing).
    #[serde(default)]
    pub was_on: bool,
}

/// `PUT /v1/secrets/key`
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyImported {
    pub imported: bool,
}

/// `POST /v1/check/routes` (body): would these routes of `app` clash with another app's?
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteCheck {
    /// The app as it runs (`shop`, `shop.staging`): its own routes never clash.
    pub app: String,
    pub routes: Vec<RouteKey>,
}

/// A route's place: host and path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteKey {
    pub host: String,
    pub path: String,
}

/// Answer to [`RouteCheck`]: every route another app already serves.
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteConflicts {
    pub conflicts: Vec<RouteConflict>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteConflict {
    pub host: String,
    pub path: String,
    /// The app that serves it now.
    pub app: String,
}
