//! What the daemon is given at start: [`Config`] (with the test [`Hooks`] and the
//! [`Config::on_ready`] callback) and the bound [`Listeners`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use api::Step;
use futures_util::future::BoxFuture;
use tokio::net::{TcpListener, UnixListener};

/// Everything the daemon is told at start.
pub struct Config {
    /// The state directory (`/var/lib/berth`): created 0700 if missing.
    pub state: PathBuf,
    /// Open connections one client address (IPv6: one /64) may have; 0 for no limit.
    pub max_connections_per_ip: u32,
    pub acme: AcmeConfig,
    /// Where `pg_dump` and `pg_restore` are; by default those of the database server's major
    /// version (`/usr/lib/postgresql/MAJOR/bin`), else `PATH`'s.
    pub pg_bin_dir: Option<PathBuf>,
    /// The server's own alert rules (disk free, the daemon's memory).
    pub server_alerts: crate::observe::ServerAlerts,
    /// How often metrics are sampled into the history and alert rules evaluated.
    pub sample_every: std::time::Duration,
    /// Called once, when the listeners are bound and every app's current release has been
    /// started and has passed (or failed) its start gate. `berth serve` tells systemd
    /// `READY=1` here.
    pub on_ready: Option<Box<dyn FnOnce(Ready) + Send>>,
    /// How to start the next daemon on `berth upgrade` (and, for a successor, the channel to
    /// the daemon handing over). `None`: upgrades are refused.
    pub succession: Option<Succession>,
    /// The control socket was handed in (socket activation, an upgrade): it is not removed
    /// when the daemon stops, as whoever bound it still holds it.
    pub control_inherited: bool,
    pub hooks: Hooks,
}

/// What the daemon serves once it is ready (see [`Config::on_ready`]).
#[derive(Debug, Clone)]
pub struct Ready {
    /// Apps whose current release was started again.
    pub apps: usize,
    /// Apps whose current release could not be started (the daemon's log says why).
    pub failed: usize,
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// How the daemon starts its successor: `binary ARGS` with `env` (besides the base
/// environment), the listeners as `LISTEN_FDS` named by `LISTEN_FDNAMES`, and one more
/// descriptor named `upgrade`, the hand-over channel (see `upgrade.rs`).
#[derive(Default)]
pub struct Succession {
    /// Run when `berth upgrade` names no binary: the path this daemon was started from, which
    /// after a package upgrade holds the new version.
    pub binary: PathBuf,
    /// `serve` and its flags, as this daemon got them.
    pub args: Vec<std::ffi::OsString>,
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// Set in a successor: the channel to the daemon handing over.
    pub from: Option<std::os::unix::net::UnixStream>,
    /// Called with the new daemon's pid once it serves, before this one exits: `berth serve`
    /// tells systemd `MAINPID=` there, so `systemctl reload` does not lose the service.
    pub handed_over: Option<Box<dyn Fn(u32) + Send + Sync>>,
}

/// How a daemon's run ends (what `shutdown` resolves to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop every app gracefully, then the daemon (`SIGINT`, `berth demo`).
    Everything,
    /// The daemon goes; the apps keep running, and the next daemon adopts them (`SIGTERM`:
    /// a restart). Under systemd, `systemctl stop` still stops them: it signals the whole
    /// control group.
    LeaveApps,
}

impl Config {
    pub fn new(state: impl Into<PathBuf>) -> Config {
        Config {
            state: state.into(),
            max_connections_per_ip: proxy::ProxyConfig::default().max_connections_per_ip,
            acme: AcmeConfig::default(),
            pg_bin_dir: None,
            server_alerts: Default::default(),
            sample_every: crate::observe::STEP,
            on_ready: None,
            succession: None,
            control_inherited: false,
            hooks: Hooks::default(),
        }
    }
}

/// How certificates are obtained from an ACME CA.
#[derive(Debug, Clone, Default)]
pub struct AcmeConfig {
    /// PEM file of a CA trusted for the ACME directory's own HTTPS, besides the public roots.
    pub ca_root: Option<PathBuf>,
    /// `sh -c HOOK` that sets and clears `_acme-challenge` TXT records (DNS-01);
    /// `BERTH_DNS_NAME` is the record's full name, `_acme-challenge.` prefix included.
    pub dns_hook: Option<String>,
}

/// Points where a test can hold the daemon. Production passes `Hooks::default()`: none, and
/// nothing is checked.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Awaited once a rollout has recorded that it reached `step`, before it runs the step:
    /// a test can hold it there, kill the daemon, or let it go on.
    pub at_step: Option<Arc<dyn Fn(Step) -> BoxFuture<'static, ()> + Send + Sync>>,
}

/// The sockets the daemon serves, bound by the caller (tests bind port 0).
pub struct Listeners {
    /// The proxy's plain-HTTP listener.
    pub http: TcpListener,
    /// The proxy's TLS listener; without it apps with `[tls]` are served over HTTP only.
    pub https: Option<TcpListener>,
    /// `GET /metrics` and `GET /health` for the daemon itself.
    pub admin: Option<TcpListener>,
    /// The control API; from [`Daemon::bind_control`].
    pub control: UnixListener,
}

/// The bound addresses, as the daemon reports them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addrs {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}
