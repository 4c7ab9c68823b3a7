//! berth's daemon: runs each app's current release under the supervisor, derives the proxy's
//! route table from what runs, carries out deploys and rollbacks, keeps certificates, and
//! answers the control API.
//!
//! ```ignore
//! let daemon = Daemon::open(config)?;              // lock STATE, open state.db and the keys
//! let listeners = Listeners { http, https, admin, control: daemon.bind_control()? };
//! daemon.run(listeners, shutdown_signal()).await?; // serve until `shutdown` resolves
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
mod users;

pub use api::Step;
pub use config::{AcmeConfig, Config, Hooks, Listeners, Ready};
pub use observe::ServerAlerts;
pub use paths::StateDir;
pub use routes::preset as header_preset;

/// An opened daemon: it holds the state directory's lock, the store and the secrets key, and
/// serves nothing yet.
pub struct Daemon {
    config: Config,
    dir: StateDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
    db: store::Db,
    key: ::secrets::Key,
    certs: certs::Certs,
}

impl Daemon {
    /// Take the state directory (one daemon per directory), open `state.db` (applying
    /// migrations), load or create the secrets key, and open the certificate store.
    pub fn open(config: Config) -> Result<Daemon> {
        // Everything the daemon creates is its own unless it says otherwise (state.db and its
        // WAL, keys, logs): app users must read none of it.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
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
            _lock: lock,
            db: store::Db::new(store),
            key,
            certs,
        })
    }

    /// Listen on `STATE/berth.sock` (0600), replacing a stale socket file.
    pub fn bind_control(&self) -> Result<UnixListener> {
        self.dir.bind_socket()
    }

    /// Serve until `shutdown` resolves: recover every app's current release, run the proxy
    /// listeners and the control API (`Config::on_ready` is called once recovery is done).
    /// Then stop in order: no new API calls, rollouts and schedules end, apps stop
    /// gracefully, the listeners finish their requests.
    pub async fn run(
        mut self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
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
        let on_ready = self.config.on_ready.take();
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
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            state = %core.dir.root().display(),
            http = %addrs.http,
            https = ?addrs.https,
            admin = ?addrs.admin,
            control = %socket.display(),
            "berth daemon started"
        );

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
        let manager = core.certs.manager.clone();
        core.tasks
            .spawn(manager.run(core.cancel.clone().cancelled_owned()));
        core.tasks.spawn(core.clone().watch_supervisor());
        let recovering = core.clone();
        core.tasks.spawn(async move {
            let recovered = recovering.recover().await;
            // The listeners were bound by the caller; the control socket queues connections
            // until `serve_control` below accepts them.
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
        core.recover_backups().await;
        core.tasks.spawn(core.clone().schedule_backups());
        core.tasks.spawn(core.clone().observe());

        control::serve_control(core.clone(), control, shutdown).await;

        tracing::info!("stopping apps");
        core.cancel.cancel();
        core.tasks.close();
        core.tasks.wait().await;
        core.stop_all().await;
        listeners_stop.cancel();
        while let Some(done) = serving.join_next().await {
            match done {
                Ok(Err(err)) => tracing::warn!(error = %err, "a listener ended with an error"),
                Ok(Ok(())) => {}
                Err(err) => tracing::warn!(error = %err, "a listener task failed"),
            }
        }
        let _ = std::fs::remove_file(&socket);
        tracing::info!("berth daemon stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can still be stopped with SIGKILL; never return early.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
