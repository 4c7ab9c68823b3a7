//! [`Core`]: what every part of the running daemon shares. The apps' in-memory state (which
//! release serves, which rollout runs) is one map behind one lock; everything durable goes
//! through the store's async façade; background work runs on one tracker, so shutdown waits for
//! it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use proxy::{Proxy, ProxyConfig};
use store::Db;
use supervisor::{Supervisor, SupervisorOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::certs::{CertMetrics, Certs};
use crate::config::{Addrs, Config, Hooks};
use crate::lock::lock;
use crate::paths::StateDir;
use crate::release::Release;
use crate::users::{Host, Isolation};

pub(crate) struct Core {
    pub dir: StateDir,
    pub db: Db,
    pub supervisor: Supervisor,
    pub proxy: Arc<Proxy>,
    pub certs: Certs,
    /// Encrypts secrets at rest (`STATE/secrets.key`); replaced by `import-key`.
    pub key: ArcSwap<secrets::Key>,
    /// Replaces every known secret value in what berth prints; shared with each rollout's
    /// progress stream.
    pub redactor: Arc<ArcSwap<secrets::Redactor>>,
    pub addrs: Addrs,
    /// Whether apps get users of their own (the daemon is root), and why not.
    pub isolation: Isolation,
    /// Whether a child can get a private `/tmp` (a mount namespace) on this host; else why not.
    pub private_tmp: Result<(), String>,
    /// Every series `/metrics` shows: the proxy's, the certificates'. Collectors read their
    /// numbers at scrape time; nothing is written to the registry on the request path.
    pub metrics: prometheus_client::registry::Registry,
    pub hooks: Hooks,
    /// The sampler's history and alerts (`observe/`).
    pub observe: crate::observe::Observe,
    /// When this daemon started.
    pub started_at: std::time::SystemTime,
    /// Rollouts that ended, for `/metrics`.
    pub deploy_counts: crate::metrics::DeployCounts,
    /// Backup locks and figures (`backups/`).
    pub backups: crate::backups::Backups,
    /// Where `pg_dump` and `pg_restore` are found.
    pub backup_tools: backup::Tools,
    /// Rollouts, recovery and schedules: shutdown cancels, then waits for, them.
    pub tasks: TaskTracker,
    pub cancel: CancellationToken,
    /// `berth upgrade` requests, to the run loop (`upgrade.rs`).
    pub upgrades: tokio::sync::mpsc::Sender<crate::upgrade::UpgradeRequest>,
    upgrade_requests: Mutex<Option<tokio::sync::mpsc::Receiver<crate::upgrade::UpgradeRequest>>>,
    apps: Mutex<BTreeMap<String, AppState>>,
}

/// One app, in memory.
#[derive(Default)]
pub(crate) struct AppState {
    /// The release serving traffic.
    pub running: Option<Release>,
    /// The release a rollout in progress goes to.
    pub deploying: Option<String>,
    /// Held by the one rollout of the app that may run.
    pub slot: Arc<tokio::sync::Mutex<()>>,
    /// Replaced releases still finishing their requests: (release, instances, stopped by).
    pub draining: Vec<(String, u32, std::time::SystemTime)>,
    /// The replaced release kept warm for an instant rollback (`rollout/standby.rs`).
    pub standby: Option<crate::release::Standby>,
    /// A canary step in progress (`rollout/canary.rs`).
    pub canary: Option<crate::release::Canary>,
    /// A restore in progress: its service routes answer 503. Why. Never stored.
    pub restoring: Option<String>,
    /// The operator's maintenance mode (`berth maintenance on`; stored, loaded at start):
    /// every route of the app answers 503. See `maintenance.rs`.
    pub maintenance: Option<store::Maintenance>,
}

impl Core {
    pub fn new(
        config: Config,
        dir: StateDir,
        db: Db,
        key: secrets::Key,
        certs: Certs,
        addrs: Addrs,
        host: Host,
    ) -> Arc<Core> {
        let supervisor = Supervisor::new(SupervisorOptions {
            pipe_root: dir.pipes(),
            ..SupervisorOptions::new(dir.logs())
        });
        let proxy = Proxy::new(ProxyConfig {
            access_log: proxy::AccessLog::File(dir.logs().join("access.log")),
            http01: Some(certs.http01.clone()),
            https_port: addrs.https.map(|a| a.port()),
            certs: Some(certs.store.clone()),
            max_connections_per_ip: config.max_connections_per_ip,
            ..ProxyConfig::default()
        });
        let mut metrics = prometheus_client::registry::Registry::default();
        proxy.register_metrics(&mut metrics);
        metrics.register_collector(Box::new(CertMetrics(certs.manager.clone())));
        let backups = crate::backups::Backups::default();
        metrics.register_collector(Box::new(crate::backups::BackupMetrics(
            backups.stats.clone(),
        )));
        let (upgrades, upgrade_requests) = tokio::sync::mpsc::channel(4);
        Arc::new_cyclic(|me| {
            // The daemon's own series read the apps' state at scrape time.
            metrics.register_collector(Box::new(crate::metrics::DaemonMetrics(me.clone())));
            Core {
                dir,
                db,
                supervisor,
                proxy,
                certs,
                key: ArcSwap::from_pointee(key),
                redactor: Arc::new(ArcSwap::from_pointee(secrets::Redactor::new(Vec::<(
                    String,
                    String,
                )>::new(
                )))),
                addrs,
                isolation: host.isolation,
                private_tmp: host.private_tmp,
                metrics,
                hooks: config.hooks,
                backups,
                deploy_counts: Default::default(),
                observe: crate::observe::Observe::new(config.server_alerts, config.sample_every),
                started_at: std::time::SystemTime::now(),
                backup_tools: backup::Tools {
                    bin_dir: config.pg_bin_dir,
                },
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                upgrades,
                upgrade_requests: Mutex::new(Some(upgrade_requests)),
                apps: Mutex::new(BTreeMap::new()),
            }
        })
    }

    /// The receiving end of [`Core::upgrades`], once (the run loop's).
    pub fn take_upgrade_requests(
        &self,
    ) -> tokio::sync::mpsc::Receiver<crate::upgrade::UpgradeRequest> {
        lock(&self.upgrade_requests)
            .take()
            .unwrap_or_else(|| tokio::sync::mpsc::channel(1).1)
    }

    /// Every app's in-memory state. Never held across an await.
    pub fn apps(&self) -> MutexGuard<'_, BTreeMap<String, AppState>> {
        lock(&self.apps)
    }

    /// `f` on the release serving `app`, if any.
    /// Record an event in the app's history (a failure to is logged, not returned).
    pub async fn record_event(&self, app: &str, kind: &'static str, detail: String) {
        if let Err(err) = self.db.record_event(app, kind, detail).await {
            tracing::error!(app, kind, error = %err, "record an event");
        }
    }

    pub fn with_running<T>(&self, app: &str, f: impl FnOnce(&Release) -> T) -> Option<T> {
        self.apps().get(app).and_then(|a| a.running.as_ref()).map(f)
    }

    pub fn info(&self) -> api::DaemonInfo {
        api::DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            state_dir: self.dir.root().display().to_string(),
            http: Some(self.addrs.http.to_string()),
            https: self.addrs.https.map(|a| a.to_string()),
            admin: self.addrs.admin.map(|a| a.to_string()),
            started_at: Some(supervisor::logs::format_time(self.started_at)),
            isolation: match &self.isolation {
                Isolation::On => match &self.private_tmp {
                    Ok(()) => {
                        "on: each app runs as a user of its own, with its own /tmp".to_owned()
                    }
                    Err(why) => {
                        format!("on: each app runs as a user of its own; no private /tmp: {why}")
                    }
                },
                Isolation::Off(why) => format!("OFF: {why}"),
            },
        }
    }
}
