//! `berth serve`: the daemon. Owns the store, the supervisor, the proxy listeners and the
//! control API, and wires them together.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::{TcpListener, UnixListener};

mod api;
mod apps;
mod body;
mod build;
mod certs;
mod history;
mod logs;
mod plan;
mod rollout;
pub(crate) mod routes;
mod secrets;

pub use apps::Daemon;
pub use certs::TlsArgs;

/// The daemon's bound listeners.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    /// [`proxy::ProxyConfig::max_connections_per_ip`].
    pub max_connections_per_ip: u32,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the HTTP proxy listener (use 0.0.0.0:80 in production).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Address of the admin listener serving /metrics (off unless given).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Open connections one client address (IPv6: one /64) may have; 0 for no limit. Behind
    /// a load balancer every connection comes from its address: raise this or use 0.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_ip: u32,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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

pub async fn serve(state: &Path, args: ServeArgs) -> Result<u8> {
    init_tracing();
    prepare_state_dir(state)?;
    let _lock = lock_state_dir(state)?;

    let http = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("listen for HTTP on {}", args.http))?;
    let admin = match args.admin {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for admin on {addr}"))?,
        ),
        None => None,
    };
    let https = match args.tls.https {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen for HTTPS on {addr}"))?,
        ),
        None => None,
    };
    let sock_path = crate::client::socket_path(state);
    let control = bind_control_socket(&sock_path).await?;

    let listen = Listen {
        http: http.local_addr()?,
        https: https.as_ref().map(|l| l.local_addr()).transpose()?,
        admin: admin.as_ref().map(|l| l.local_addr()).transpose()?,
        max_connections_per_ip: args.max_connections_per_ip,
    };
    let daemon = Daemon::open(state, listen, &args.tls)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        state = %state.display(),
        http = %http.local_addr()?,
        https = ?listen.https,
        admin = ?admin.as_ref().map(|l| l.local_addr()),
        control = %sock_path.display(),
        "berth daemon started"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let proxy_task = tokio::spawn(daemon.proxy().clone().serve(http, stopped(stop_rx.clone())));
    let https_task = match https {
        Some(listener) => {
            let config = tls::server_config(&daemon.certs.store)
                .context("set up TLS for the HTTPS listener")?;
            Some(tokio::spawn(daemon.proxy().clone().serve_tls(
                listener,
                config,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let certs_task = tokio::spawn(daemon.certs.manager.clone().run(stopped(stop_rx.clone())));
    let admin_task = admin.map(|l| {
        tokio::spawn(api::serve_admin(
            daemon.clone(),
            l,
            stopped(stop_rx.clone()),
        ))
    });
    let events_task = tokio::spawn(daemon.clone().watch_supervisor());
    tokio::spawn(daemon.clone().recover());

    api::serve_control(daemon.clone(), control, shutdown_signal()).await;

    // Stop order: no new API calls (done), stop apps gracefully, then the listeners.
    tracing::info!("stopping apps");
    daemon.stop_all().await;
    let _ = stop_tx.send(true);
    events_task.abort();
    if let Err(err) = proxy_task.await? {
        tracing::warn!(error = %err, "proxy listener ended with an error");
    }
    if let Some(task) = https_task
        && let Err(err) = task.await?
    {
        tracing::warn!(error = %err, "HTTPS listener ended with an error");
    }
    let _ = certs_task.await;
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&sock_path);
    tracing::info!("berth daemon stopped");
    Ok(0)
}

fn prepare_state_dir(state: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state)
        .with_context(|| format!("create state directory {}", state.display()))?;
    // It may have existed already: it will hold keys and secrets, so it is private either way.
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("set mode 0700 on {}", state.display()))?;
    for sub in ["apps", "logs", "tmp", "certs"] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state.join(sub))
            .with_context(|| format!("create {}", state.join(sub).display()))?;
    }
    // Leftovers of uploads interrupted by a crash.
    if let Ok(entries) = std::fs::read_dir(state.join("tmp")) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// One daemon per state directory: an exclusive lock on `daemon.lock`, held until exit.
fn lock_state_dir(state: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let path = state.join("daemon.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            bail!(
                "another berth daemon is running with state directory {}; stop it first or pass a different --state",
                state.display()
            )
        }
        Err((_, err)) => Err(anyhow::Error::new(err).context(format!("lock {}", path.display()))),
    }
}

async fn bind_control_socket(path: &Path) -> Result<UnixListener> {
    // The state lock is held, so a socket file left here belongs to a dead daemon.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!("remove stale {}", path.display())));
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("set mode 0600 on {}", path.display()))?;
    Ok(listener)
}

pub(crate) type Shared = Arc<Daemon>;
