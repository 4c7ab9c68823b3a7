//! The small data types at the seam between the daemon and the supervisor.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::cgroup::{LimitStatus, Limits};
use crate::confine::Confinement;

/// Everything the supervisor needs to run one instance of one service.
///
/// The daemon builds it from berth.toml and the store; the supervisor knows nothing else.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub app: String,
    pub service: String,
    pub release: String,
    pub instance: u32,
    /// Shell command line, run with `/bin/sh -c` (prefixed with `exec` when it is a simple command).
    pub command: String,
    /// Working directory: the release directory.
    pub cwd: PathBuf,
    /// The app's environment. The supervisor adds `PORT`, `BERTH_APP`, `BERTH_SERVICE`,
    /// `BERTH_RELEASE`, `BERTH_INSTANCE`, and passes through from the daemon's own environment
    /// only what [`crate::command::base_env`] lists (PATH, HOME, locale, user, TMPDIR, toolchain homes).
    pub env: BTreeMap<String, String>,
    /// Port the instance must bind on 127.0.0.1 (see [`crate::free_port`]).
    pub port: u16,
    /// HTTP probe; `None` means "ready once it has been running 1 s".
    pub health: Option<Probe>,
    /// Readiness must pass before this much time after spawn (also bounds the 1 s rule).
    pub start_deadline: Duration,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_timeout: Duration,
    /// Memory, CPU and process limits (cgroup v2 where berth has one, else rlimits; see
    /// [`crate::LimitStatus`]).
    pub limits: Limits,
    /// Who the instance runs as and how it is confined (the supervisor adds the cgroup and
    /// the rlimit fallbacks of `limits`).
    pub confinement: Confinement,
}

/// An HTTP GET probe against `http://127.0.0.1:PORT{path}`; any 2xx passes.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passes needed to become ready (and to leave `Unready`).
    pub healthy_after: u32,
    /// Consecutive failures after which a ready instance is `Unready`; after as many
    /// failures again it is restarted.
    pub unhealthy_after: u32,
}

impl Probe {
    /// A probe on `path` with the defaults: every 2 s, 1 s timeout, 1 pass, 3 failures.
    pub fn new(path: impl Into<String>) -> Self {
        Probe {
            path: path.into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_after: 1,
            unhealthy_after: 3,
        }
    }
}

/// Supervisor-wide settings.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Logs go to `log_root/APP/SERVICE/current.log`.
    pub log_root: PathBuf,
    /// Instances' stdout/stderr FIFOs: `pipe_root/APP/SERVICE.N@RELEASE.{out,err}`
    /// (default `log_root/.pipes`). The next daemon must use the same directory to adopt.
    pub pipe_root: PathBuf,
    /// `current.log` is rotated before it would exceed this size (default 10 MiB).
    pub log_max_bytes: u64,
    /// Rotated files kept: `current.log.1` ..= `current.log.N` (default 5).
    pub log_keep: u32,
    /// Restart delay: starts at `.0`, doubles per consecutive failure, capped at `.1`
    /// (default 1 s .. 30 s).
    pub restart_backoff: (Duration, Duration),
    /// An instance ready for this long has its backoff and crash-loop flag reset (default 30 s).
    pub backoff_reset_after: Duration,
    /// Crash loop: this many restarts within `crash_loop_window`, or this many attempts in a
    /// row that never became ready (default 5).
    pub crash_loop_restarts: u32,
    /// Default 60 s.
    pub crash_loop_window: Duration,
}

impl SupervisorOptions {
    /// Defaults with logs under `log_root`.
    pub fn new(log_root: impl Into<PathBuf>) -> Self {
        let log_root: PathBuf = log_root.into();
        SupervisorOptions {
            pipe_root: log_root.join(".pipes"),
            log_root,
            log_max_bytes: 10 * 1024 * 1024,
            log_keep: 5,
            restart_backoff: (Duration::from_secs(1), Duration::from_secs(30)),
            backoff_reset_after: Duration::from_secs(30),
            crash_loop_restarts: 5,
            crash_loop_window: Duration::from_secs(60),
        }
    }
}

/// Identifies one instance: `app/service.instance@release`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub app: String,
    pub service: String,
    pub release: String,
    pub instance: u32,
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.{}@{}",
            self.app, self.service, self.instance, self.release
        )
    }
}

/// Lifecycle state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Spawned, readiness not yet passed.
    Starting,
    /// Readiness passed (and liveness keeps passing).
    Ready,
    /// Was ready, liveness failed `unhealthy_after` times in a row.
    Unready,
    /// Exited or killed; waiting for the restart delay.
    Backoff,
    /// Like `Backoff`, but a crash loop was detected (retrying at the maximum delay).
    CrashLoop,
    /// `stop()` was called; the process group is being terminated.
    Stopping,
    /// Terminal: stopped and reaped, never restarted.
    Stopped,
    /// The last attempt could not even be spawned (e.g. missing cwd); it is retried.
    Failed,
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            InstanceState::Starting => "starting",
            InstanceState::Ready => "ready",
            InstanceState::Unready => "unready",
            InstanceState::Backoff => "backoff",
            InstanceState::CrashLoop => "crash-loop",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
        };
        f.write_str(s)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// An adopted process (started by a previous daemon) ended: it is not this daemon's
    /// child, so its status went to its parent.
    Unknown,
}

impl Exit {
    pub(crate) fn from_status(st: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Unknown => f.write_str("exit status unknown (adopted from a previous daemon)"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

/// A point-in-time view of an instance, for `berth status` and metrics.
#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub key: InstanceKey,
    /// Pid of the current process (also its process group id), if one is running.
    pub pid: Option<u32>,
    /// Process group of the current process; the daemon records it for [`crate::kill_stale_group`].
    pub pgid: Option<i32>,
    pub port: u16,
    pub state: InstanceState,
    /// Times the instance was respawned.
    pub restarts: u32,
    /// When the current process was spawned.
    pub started_at: Option<SystemTime>,
    /// Resident memory summed over the process group (from /proc), if running.
    pub memory_rss: Option<u64>,
    pub last_exit: Option<Exit>,
    pub crash_loop: bool,
    /// Each limit asked for, and what holds it (cgroup, an rlimit, or nothing and why).
    pub limits: Vec<LimitStatus>,
    /// Operator-facing caveats.
    pub warnings: Vec<String>,
}

/// Something that happened to an instance, broadcast by [`crate::Supervisor::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub key: InstanceKey,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Started {
        pid: u32,
    },
    Ready,
    /// Liveness failed; `reason` is the last probe error.
    Unready {
        reason: String,
    },
    Exited(Exit),
    /// `attempt` is the restart count so far (1 for the first restart).
    Restarting {
        attempt: u32,
        delay: Duration,
    },
    CrashLoop,
    Stopped,
}

/// Why an instance never became ready, with the last lines it printed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("instance {key} did not start: {kind}")]
pub struct StartFailure {
    pub key: InstanceKey,
    pub kind: StartFailureKind,
    /// The last ~20 lines of stdout/stderr, oldest first, as `out | text` / `err | text`.
    pub log_tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartFailureKind {
    #[error("could not spawn `/bin/sh -c`: {0}")]
    Spawn(String),
    #[error("it exited before becoming ready ({0})")]
    Exited(Exit),
    #[error("not ready within {deadline:?}: {}", last_error.as_deref().unwrap_or("no probe result"))]
    NotReady {
        deadline: Duration,
        last_error: Option<String>,
    },
    #[error("it was stopped before becoming ready")]
    Stopped,
}
