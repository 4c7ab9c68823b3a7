//! berth's daemon: runs each app's current release under the supervisor, derives the proxy's
//! route table from what runs, carries out deploys and rollbacks, keeps certificates, and
//! answers the control API.
//!
//! ```ignore
//! let daemon = Daemon::open(config)?;              // lock STATE, open state.db and the keys
//! let listeners = Listeners { http, https, admin, control: daemon.bind_control()? };
//! daemon.run(listeners, shutdown_signal()).await?; // serve until `shutdown` resolves (or
//!                                                  // an upgrade hands over)
//! ```
//!
//! The daemon knows berth.toml only through `spec`, processes only through `supervisor`, and
//! the network only through `proxy` and the control listeners it is handed. It reads no
//! environment variable: everything, test hooks included, comes in [`Config`].

use anyhow::{Context, Result};
use tokio::net::{TcpListener, UnixListener};

use crate::config::Addrs;

mod apps;
mod backups;
mod build;
mod certs;
mod config;
mod control;
mod core;
mod dashboard;
mod failure;
mod history;
mod jobs;
mod lock;
mod maintenance;
mod metrics;
mod observe;
mod ownership;
mod paths;
mod plan;
mod recover;
mod refusal;
mod release;
mod rollout;
mod routes;
mod secrets;
mod status;
mod upgrade;
mod users;

pub use api::Step;
pub use config::{AcmeConfig, Config, Hooks, Listeners, Ready, Stop, Succession};
pub use observe::ServerAlerts;
pub use paths::StateDir;
pub use routes::preset as header_preset;

/// An opened daemon: it holds the state directory's lock, the store and the secrets key, and
/// serves nothing yet.
pub struct Daemon {
    config: Config,
    dir: StateDir,
    lock: nix::fcntl::Flock<std::fs::File>,
    db: store::Db,
    key: ::secrets::Key,
    certs: certs::Certs,
    /// Set when this daemon takes over from another (`berth upgrade`).
    predecessor: Option<upgrade::Predecessor>,
}

impl Daemon {
    /// Take the state directory (one daemon per directory), open `state.db` (applying
    /// migrations), load or create the secrets key, and open the certificate store. A
    /// successor first waits for its predecessor to let go of the directory.
    pub fn open(mut config: Config) -> Result<Daemon> {
        // Everything the daemon creates is its own unless it says otherwise (state.db and its
        // WAL, keys, logs): app users must read none of it.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let predecessor = match config.succession.as_mut().and_then(|s| s.from.take()) {
            Some(chan) => Some(upgrade::Predecessor::take_over(chan)?),
            None => None,
        };
        let dir = StateDir::new(&config.state);
        dir.prepare()?;
        let lock = dir.lock()?;
        let store = store::Store::open(&dir.database()).context("open the state database")?;
        dir.make_private_files()?;
        let key_path = dir.secrets_key();
        let key = ::secrets::Key::load_or_create(&key_path)
            .with_context(|| format!("load the secrets key {}", key_path.display()))?;
        let certs = certs::Certs::open(&dir, &config.acme)?;
        Ok(Daemon {
            config,
            dir,
            lock,
            db: store::Db::new(store),
            key,
            certs,
            predecessor,
        })
    }

    /// Listen on `STATE/berth.sock` (0600), replacing a stale socket file.
    pub fn bind_control(&self) -> Result<UnixListener> {
        self.dir.bind_socket()
    }

    /// Serve until `shutdown` resolves (or the daemon hands over to a successor on `berth
    /// upgrade`): recover every app's current release — adopting the instances a previous
    /// daemon left running —, then run the proxy listeners and the control API
    /// (`Config::on_ready` is called once recovery is done). Then, as [`Stop`] says: stop the
    /// apps, or leave them running for the next daemon.
    pub async fn run(
        mut self,
        listeners: Listeners,
        shutdown: impl Future<Output = Stop>,
    ) -> Result<()> {
        let handover_fds =
            upgrade::HandoverFds::new(&listeners).context("copy the listening sockets")?;
        let Listeners {
            http,
            https,
            admin,
            control,
        } = listeners;
        let addrs = Addrs {
            http: http.local_addr().context("address of the HTTP listener")?,
            https: https.as_ref().map(TcpListener::local_addr).transpose()?,
            admin: admin.as_ref().map(TcpListener::local_addr).transpose()?,
        };
        let tls_config = match &https {
            Some(_) => Some(
                tls::server_config(&self.certs.store)
                    .context("set up TLS for the HTTPS listener")?,
            ),
            None => None,
        };
        let socket = self.dir.socket();
        // Not removed when it was handed in: whoever bound it holds it.
        let keep_socket = self.config.control_inherited;
        let succession = self.config.succession.take();
        let on_ready = self.config.on_ready.take();
        let predecessor = self.predecessor.take();
        let host =
            users::Host::detect(self.dir.root(), &self.dir.tmp().join("private-tmp-probe")).await;
        let core = core::Core::new(
            self.config,
            self.dir,
            self.db,
            self.key,
            self.certs,
            addrs,
            host,
        );
        if let Err(err) = supervisor::become_subreaper() {
            tracing::warn!(error = %err, "cannot become the subreaper of the apps' processes");
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            state = %core.dir.root().display(),
            http = %addrs.http,
            https = ?addrs.https,
            admin = ?addrs.admin,
            control = %socket.display(),
            "berth daemon started"
        );

        // Adopted instances are in the route table before the listeners accept: a client of
        // a hand-over never meets an app without instances.
        core.tasks.spawn(core.clone().watch_supervisor());
        let recovering = core.clone().recover().await;

        // The listeners outlive the apps: they stop last, once the apps have stopped.
        let listeners_stop = tokio_util::sync::CancellationToken::new();
        let mut serving = tokio::task::JoinSet::new();
        let proxy = core.proxy.clone();
        serving.spawn(proxy.serve(http, listeners_stop.clone().cancelled_owned()));
        if let (Some(listener), Some(config)) = (https, tls_config) {
            let proxy = core.proxy.clone();
            serving.spawn(proxy.serve_tls(
                listener,
                config,
                listeners_stop.clone().cancelled_owned(),
            ));
        }
        if let Some(listener) = admin {
            let admin = control::serve_admin(
                core.clone(),
                listener,
                listeners_stop.clone().cancelled_owned(),
            );
            serving.spawn(async move {
                admin.await;
                Ok(())
            });
        }
        let control_stop = tokio_util::sync::CancellationToken::new();
        let control = tokio::spawn(control::serve_control(
            core.clone(),
            control,
            control_stop.clone().cancelled_owned(),
        ));
        if let Some(predecessor) = predecessor {
            predecessor.serving();
            core.record_event(
                DAEMON_EVENTS,
                "upgrade",
                format!(
                    "berth {} (pid {}) took over",
                    env!("CARGO_PKG_VERSION"),
                    std::process::id()
                ),
            )
            .await;
        }
        core.tasks.spawn(async move {
            let recovered = recovering.await.unwrap_or_default();
            if let Some(on_ready) = on_ready {
                on_ready(Ready {
                    apps: recovered.apps,
                    failed: recovered.failed,
                    http: addrs.http,
                    https: addrs.https,
                    admin: addrs.admin,
                });
            }
        });
        let manager = core.certs.manager.clone();
        core.tasks
            .spawn(manager.run(core.cancel.clone().cancelled_owned()));
        core.recover_backups().await;
        core.tasks.spawn(core.clone().schedule_backups());
        core.tasks.spawn(core.clone().observe());

        let ending =
            upgrade::wait_for_end(&core, shutdown, succession.as_ref(), &handover_fds).await;
        control_stop.cancel();
        core.cancel.cancel();
        core.tasks.close();
        core.tasks.wait().await;
        let ending_everything = matches!(ending, End::Stop(Stop::Everything));
        match ending {
            End::Stop(Stop::Everything) => {
                tracing::info!("stopping apps");
                core.stop_all().await;
            }
            End::Stop(Stop::LeaveApps) => {
                tracing::info!("leaving the apps running for the next daemon");
                core.supervisor.release_all().await;
                // The next daemon may start (and adopt) while this one finishes its requests;
                // the socket path is then its to bind.
                if !keep_socket {
                    let _ = std::fs::remove_file(&socket);
                }
                drop(self.lock);
            }
            End::HandOver(successor, request) => {
                let successor = *successor;
                core.supervisor.release_all().await;
                drop(self.lock);
                let outcome = upgrade::finish(successor, succession.as_ref(), &handover_fds).await;
                // No copy of a listening socket may outlive the hand-over here: a client would
                // wait on it for nothing while this daemon drains.
                drop(handover_fds);
                let took_ms = request.asked.elapsed().as_millis() as u64;
                if let (Ok((pid, _, _)), Some(tell)) = (
                    &outcome,
                    succession.as_ref().and_then(|s| s.handed_over.as_ref()),
                ) {
                    tell(*pid);
                }
                request.answer(outcome.map(|(pid, version, binary)| api::Upgraded {
                    from_pid: std::process::id(),
                    from_version: env!("CARGO_PKG_VERSION").to_owned(),
                    pid,
                    version,
                    binary,
                    took_ms,
                }));
                listeners_stop.cancel();
                drain(&mut serving).await;
                let _ = control.await;
                tracing::info!("berth daemon handed over and stopped");
                return Ok(());
            }
        }
        drop(handover_fds);
        listeners_stop.cancel();
        drain(&mut serving).await;
        let _ = control.await;
        if ending_everything && !keep_socket {
            let _ = std::fs::remove_file(&socket);
        }
        tracing::info!("berth daemon stopped");
        Ok(())
    }
}

/// The app name under which the daemon's own events (upgrades) are recorded: no app can have
/// it (app names are `[a-z0-9-]`).
pub(crate) const DAEMON_EVENTS: &str = "(berth)";

/// How the run ended.
pub(crate) enum End {
    Stop(Stop),
    HandOver(Box<upgrade::Successor>, upgrade::UpgradeRequest),
}

/// Wait for the listeners to finish what they accepted.
async fn drain(serving: &mut tokio::task::JoinSet<std::io::Result<()>>) {
    while let Some(done) = serving.join_next().await {
        match done {
            Ok(Err(err)) => tracing::warn!(error = %err, "a listener ended with an error"),
            Ok(Ok(())) => {}
            Err(err) => tracing::warn!(error = %err, "a listener task failed"),
        }
    }
}

/// Resolves on SIGTERM (the daemon goes, the apps stay for the next one) or SIGINT
/// (everything stops).
pub async fn shutdown_signal() -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be stopped with SIGKILL; never return early.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM received: stopping the daemon, the apps keep running");
            Stop::LeaveApps
        }
        _ = int.recv() => {
            tracing::info!("SIGINT received: stopping the apps and the daemon");
            Stop::Everything
        }
    }
}
