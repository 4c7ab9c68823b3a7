//! The control API's wire types (JSON over HTTP on `berth.sock`). Only these cross the wire;
//! the daemon's internal types stay internal.

use serde::{Deserialize, Serialize};

/// `GET /v1/daemon`
#[derive(Debug, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub state_dir: String,
    /// Bound proxy address, e.g. `127.0.0.1:8080`.
    pub http: Option<String>,
    pub admin: Option<String>,
}

/// `GET /v1/status[?app=NAME]`
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub daemon: DaemonInfo,
    pub apps: Vec<AppStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    /// The release serving traffic, if any.
    pub release: Option<String>,
    /// A deploy in progress, if any (release id).
    pub deploying: Option<String>,
    pub instances: Vec<InstanceStatus>,
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
    pub warnings: Vec<String>,
}

/// One line of the NDJSON stream answering `POST /v1/deploy`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeployEvent {
    /// A phase began: `unpack`, `build`, `start`, `switch`, `drain`.
    Phase { phase: String, detail: String },
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

#[derive(Debug, Serialize, Deserialize)]
pub struct DeployOutcome {
    pub ok: bool,
    pub app: String,
    pub release: String,
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
