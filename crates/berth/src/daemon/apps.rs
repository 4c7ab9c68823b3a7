//! The daemon's core: which release of which app runs, how a release is started, switched to
//! and stopped, and how the proxy's route table is derived from that.
//!
//! Start-up, deploy and recovery after a crash all go through [`Daemon::start_release`] and
//! [`Daemon::switch`]: start-up is a switch from nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use proxy::{HostPattern, Pool, Proxy, ProxyConfig, Route, RouteTable, Target, Upstream};
use spec::{AppSpec, RouteTarget};
use store::{ProcessRecord, Store};
use supervisor::{
    Event, EventKind, Instance, InstanceState, ProcessSpec, Supervisor, SupervisorOptions,
};

use crate::api;

/// How long old instances may finish in-flight requests after a switch before they are stopped.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

pub struct Daemon {
    pub(super) state: PathBuf,
    store: Mutex<Store>,
    pub(super) supervisor: Supervisor,
    pub(super) proxy: Arc<Proxy>,
    pub(super) http: SocketAddr,
    pub(super) https: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    /// Certificates of the apps with `[tls]`.
    pub(super) certs: super::certs::Certs,
    /// The release serving each app.
    pub(super) running: Mutex<BTreeMap<String, Release>>,
    /// Apps with a deploy or rollback in progress, and the release it goes to.
    pub(super) deploying: Mutex<BTreeMap<String, String>>,
    /// One rollout per app at a time.
    pub(super) locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// `BERTH_TEST_PAUSE_AT`: the rollout step to pause before (tests only).
    pub(super) pause_at: Option<String>,
    /// Encrypts secrets at rest (`STATE/secrets.key`); replaced by `import-key`.
    pub(super) key: Mutex<Arc<secrets::Key>>,
    /// Replaces every known secret value in what berth prints.
    pub(super) redactor: Mutex<Arc<secrets::Redactor>>,
}

/// A started release: its spec, its tree, and one member per instance.
pub(super) struct Release {
    pub id: String,
    pub spec: Arc<AppSpec>,
    pub dir: PathBuf,
    /// The processes' environment (secrets included): never printed.
    pub env: Arc<BTreeMap<String, String>>,
    pub members: Vec<Member>,
}

pub(super) struct Member {
    pub service: String,
    pub index: u32,
    pub instance: Instance,
    pub upstream: Arc<Upstream>,
}

/// Why a rollout stopped; becomes a failed [`api::DeployOutcome`].
pub(super) struct Failure {
    /// `unpack`, `build`, `start`, `smoke`, `watch`, `workers`.
    pub gate: &'static str,
    pub reason: String,
    pub hint: Option<String>,
    pub tail: Vec<String>,
}

impl Failure {
    pub fn new(gate: &'static str, reason: impl Into<String>) -> Failure {
        Failure {
            gate,
            reason: reason.into(),
            hint: None,
            tail: vec![],
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl Daemon {
    pub fn open(
        state: &Path,
        listen: super::Listen,
        tls: &super::certs::TlsArgs,
    ) -> Result<Arc<Daemon>> {
        let store = Store::open(&state.join("state.db")).context("open the state database")?;
        let key_path = state.join(secrets::KEY_FILE);
        let key = secrets::Key::load_or_create(&key_path)
            .with_context(|| format!("load the secrets key {}", key_path.display()))?;
        let supervisor = Supervisor::new(SupervisorOptions::new(state.join("logs")));
        let certs = super::certs::Certs::open(state, tls)?;
        let proxy = Proxy::new(ProxyConfig {
            access_log: proxy::AccessLog::File(state.join("logs").join("access.log")),
            http01: Some(certs.http01.clone()),
            https_port: listen.https.map(|a| a.port()),
            certs: Some(certs.store.clone()),
            max_connections_per_ip: listen.max_connections_per_ip,
            ..ProxyConfig::default()
        });
        Ok(Arc::new(Daemon {
            state: state.to_owned(),
            store: Mutex::new(store),
            supervisor,
            proxy,
            http: listen.http,
            https: listen.https,
            admin: listen.admin,
            certs,
            running: Mutex::new(BTreeMap::new()),
            deploying: Mutex::new(BTreeMap::new()),
            locks: Mutex::new(BTreeMap::new()),
            pause_at: std::env::var("BERTH_TEST_PAUSE_AT").ok(),
            key: Mutex::new(Arc::new(key)),
            redactor: Mutex::new(Arc::new(secrets::Redactor::new(
                Vec::<(String, String)>::new(),
            ))),
        }))
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    pub fn info(&self) -> api::DaemonInfo {
        api::DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            state_dir: self.state.display().to_string(),
            http: Some(self.http.to_string()),
            https: self.https.map(|a| a.to_string()),
            admin: self.admin.map(|a| a.to_string()),
        }
    }

    /// Run `f` on the store. SQLite calls are short but blocking, so they leave the async workers.
    pub async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut store = this.store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store)
        })
        .await
        .context("state database task")?;
        result.context("state database")
    }

    pub(super) fn release_dir(&self, app: &str, release: &str) -> PathBuf {
        self.state
            .join("apps")
            .join(app)
            .join("releases")
            .join(release)
    }

    // ---- start-up and recovery --------------------------------------------------------------

    /// Bring every app's current release back up, after sweeping what a previous run of the
    /// daemon may have left behind (process groups, deploys cut short).
    pub async fn recover(self: Arc<Self>) {
        self.refresh_redactor().await;
        let leftovers = self.with_store(|s| s.take_processes()).await.unwrap_or_else(|err| {
            tracing::error!(error = %format!("{err:#}"), "read process groups of the previous run");
            vec![]
        });
        for p in &leftovers {
            supervisor::kill_stale_group(p.pgid);
        }
        match self.with_store(|s| s.interrupt_running_deploys()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "deploys interrupted by the previous stop were marked interrupted"
            ),
            Err(err) => tracing::error!(error = %format!("{err:#}"), "mark interrupted deploys"),
        }
        let apps = match self.with_store(|s| s.apps()).await {
            Ok(apps) => apps,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "read apps from the state database; nothing started");
                return;
            }
        };
        for app in apps {
            let Some(release) = app.current_release else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                match this.restore(&app.name, &release).await {
                    Ok(()) => tracing::info!(app = %app.name, %release, "app restored"),
                    Err(f) => {
                        tracing::error!(app = %app.name, %release, reason = %f.reason, "could not restore app")
                    }
                }
            });
        }
    }

    async fn restore(self: &Arc<Self>, app: &str, release: &str) -> Result<(), Failure> {
        let dir = self.release_dir(app, release);
        let spec = load_spec(&dir, environment_of(app))
            .map_err(|e| Failure::new("start", format!("{e:#}")))?;
        let started = self.start_release(&Arc::new(spec), release, &dir).await?;
        // Instances that are not ready yet join the route table as soon as they are: the
        // supervisor keeps restarting them, and `watch_supervisor` republishes on each change.
        self.switch(app, started).await;
        Ok(())
    }

    /// Republish routes whenever an instance changes state, and record restarts.
    pub async fn watch_supervisor(self: Arc<Self>) {
        let mut events = self.supervisor.events();
        loop {
            let event = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    self.publish_routes();
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            self.publish_routes();
            if let EventKind::Started { pid } = event.kind {
                // pgid = pid: every instance leads its own process group.
                let record = ProcessRecord {
                    app: event.key.app.clone(),
                    service: event.key.service.clone(),
                    release: event.key.release.clone(),
                    instance: event.key.instance,
                    pgid: pid as i32,
                };
                if let Err(err) = self.with_store(move |s| s.record_process(&record)).await {
                    tracing::error!(error = %format!("{err:#}"), "record a process group");
                }
            }
            if let Some((kind, detail)) = event_record(&event) {
                let app = event.key.app.clone();
                let _ = self
                    .with_store(move |s| s.record_event(&app, kind, &detail))
                    .await;
            }
        }
    }

    /// Start every instance of every service of `release`; does not wait for readiness.
    pub(super) async fn start_release(
        self: &Arc<Self>,
        spec: &Arc<AppSpec>,
        release: &str,
        dir: &Path,
    ) -> Result<Release, Failure> {
        let env = self
            .release_env(spec, release)
            .await
            .map_err(|e| Failure::new("secrets", format!("{e:#}")))?;
        let members = self.start_members(spec, release, dir, &env, |_, _| true);
        Ok(Release {
            id: release.to_owned(),
            spec: spec.clone(),
            dir: dir.to_owned(),
            env: Arc::new(env),
            members,
        })
    }

    /// Start the instances of `release` that `pick(service, index)` selects.
    pub(super) fn start_members(
        self: &Arc<Self>,
        spec: &Arc<AppSpec>,
        release: &str,
        dir: &Path,
        env: &BTreeMap<String, String>,
        pick: impl Fn(&str, u32) -> bool,
    ) -> Vec<Member> {
        let app = spec.instance_name();
        let mut members = Vec::new();
        for (service, s) in &spec.services {
            for index in (0..s.instances).filter(|&i| pick(service, i)) {
                let port = supervisor::free_port().unwrap_or(0);
                let instance = self.supervisor.start(ProcessSpec {
                    app: app.clone(),
                    service: service.clone(),
                    release: release.to_owned(),
                    instance: index,
                    command: s.command.clone(),
                    cwd: dir.to_owned(),
                    env: env.clone(),
                    port,
                    health: s.health.as_ref().map(|h| supervisor::Probe {
                        path: h.path.clone(),
                        interval: h.interval,
                        timeout: h.timeout,
                        healthy_after: h.healthy_after,
                        unhealthy_after: h.unhealthy_after,
                    }),
                    start_deadline: s
                        .health
                        .as_ref()
                        .map_or(Duration::from_secs(60), |h| h.start_deadline),
                    stop_timeout: s.stop_timeout,
                    memory_max: s.memory_max,
                });
                let upstream = Upstream::new(
                    format!("{app}/{service}.{index}@{release}"),
                    SocketAddr::from(([127, 0, 0, 1], port)),
                );
                members.push(Member {
                    service: service.clone(),
                    index,
                    instance,
                    upstream,
                });
            }
        }
        members
    }

    /// Make `new` the release serving its app: commit it in the store, then publish routes.
    /// Returns the release it replaced, still running, for the caller to drain.
    pub(super) async fn switch(self: &Arc<Self>, app: &str, new: Release) -> Option<Release> {
        let (a, r) = (app.to_owned(), new.id.clone());
        if let Err(err) = self.with_store(move |s| s.set_current(&a, &r)).await {
            tracing::error!(app, error = %format!("{err:#}"), "record the current release");
        }
        let old = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_owned(), new);
        self.publish_routes();
        old
    }

    /// Take `app` out of service entirely (a first deploy that failed after its switch).
    pub(super) async fn take_app(self: &Arc<Self>, app: &str) -> Option<Release> {
        let a = app.to_owned();
        if let Err(err) = self.with_store(move |s| s.clear_current(&a)).await {
            tracing::error!(app, error = %format!("{err:#}"), "clear the current release");
        }
        let old = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        self.publish_routes();
        old
    }

    pub(super) async fn drain_and_stop(self: &Arc<Self>, members: Vec<Member>) {
        let drains = members
            .iter()
            .map(|m| self.proxy.drained(&m.upstream, DRAIN_GRACE));
        futures_util::future::join_all(drains).await;
        self.stop_members(members).await;
    }

    pub(super) async fn stop_members(self: &Arc<Self>, members: Vec<Member>) {
        let stops = members.into_iter().map(|m| async move {
            m.instance.stop().await;
            let key = m.instance.key().clone();
            let _ = self
                .with_store(move |s| {
                    s.forget_process(&key.app, &key.service, &key.release, key.instance)
                })
                .await;
        });
        futures_util::future::join_all(stops).await;
    }

    /// Stop every app gracefully (daemon shutdown).
    pub async fn stop_all(self: &Arc<Self>) {
        let all: Vec<Release> =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        self.publish_routes();
        let stops = all.into_iter().map(|r| self.stop_members(r.members));
        futures_util::future::join_all(stops).await;
    }

    pub(super) fn check_route_conflicts(&self, spec: &AppSpec) -> Result<(), Failure> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for (other, release) in running
            .iter()
            .filter(|(name, _)| **name != spec.instance_name())
        {
            for r in &spec.routes {
                if release
                    .spec
                    .routes
                    .iter()
                    .any(|o| o.host == r.host && o.path == r.path)
                {
                    return Err(Failure::new(
                        "unpack",
                        format!(
                            "route host \"{}\" path \"{}\" is already served by app {other}",
                            r.host, r.path
                        ),
                    )
                    .hint("give this app its own host or path in berth.toml"));
                }
            }
        }
        Ok(())
    }

    // ---- routes -----------------------------------------------------------------------------

    /// Derive the route table from the running releases and publish it. Only ready instances
    /// receive traffic.
    pub fn publish_routes(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut routes = Vec::new();
        for (app, release) in running.iter() {
            let settings = &release.spec.proxy;
            let trusted = super::routes::trusted_proxies(settings);
            for r in &release.spec.routes {
                let target = match &r.target {
                    RouteTarget::Service(service) => {
                        let ready = release
                            .members
                            .iter()
                            .filter(|m| {
                                &m.service == service
                                    && m.instance.status().state == InstanceState::Ready
                            })
                            .map(|m| m.upstream.clone())
                            .collect();
                        Target::Service(Arc::new(Pool::new(
                            service.clone(),
                            balance(release.spec.proxy.balance),
                            ready,
                        )))
                    }
                    RouteTarget::Static { dir, spa } => Target::Static {
                        root: release.dir.join(dir),
                        spa: *spa,
                    },
                };
                routes.push(Route {
                    id: format!("{app}:{}{}", r.host, r.path),
                    app: app.clone(),
                    host: host_pattern(&r.host),
                    path: r.path.clone(),
                    strip_prefix: r.strip_prefix,
                    max_body: Some(r.max_body.unwrap_or(release.spec.proxy.max_body)),
                    // `*` answers any name, and no certificate has every name.
                    https_redirect: self.https.is_some()
                        && release.spec.tls.is_some()
                        && r.host != "*",
                    target,
                    headers: Arc::new(super::routes::header_policy(settings, r)),
                    rate_limit: super::routes::rate_limit(settings, r),
                    trusted_proxies: trusted.clone(),
                });
            }
        }
        self.proxy.publish(RouteTable { routes });
        // Still under `running`, so two republishes cannot hand the manager their sets in the
        // wrong order. It only does work (file reads, a self-signed key) when the set changed.
        self.certs.sync(
            running
                .iter()
                .map(|(app, r)| (app.as_str(), &*r.spec, r.dir.as_path())),
        );
    }

    // ---- status -----------------------------------------------------------------------------

    pub async fn status(self: &Arc<Self>, only: Option<String>) -> Result<api::Status> {
        let apps = self.with_store(|s| s.apps()).await?;
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let deploying = self.deploying.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        let apps = apps
            .into_iter()
            .filter(|a| only.as_deref().is_none_or(|o| o == a.name))
            .map(|a| api::AppStatus {
                instances: running
                    .get(&a.name)
                    .map(|r| {
                        r.members
                            .iter()
                            .map(|m| instance_status(m, &r.id, now))
                            .collect()
                    })
                    .unwrap_or_default(),
                deploying: deploying.get(&a.name).cloned(),
                release: a.current_release,
                name: a.name,
            })
            .collect();
        Ok(api::Status {
            daemon: self.info(),
            apps,
            certificates: self
                .certs
                .status(|app| only.as_deref().is_none_or(|o| o == app)),
        })
    }

    pub async fn releases(self: &Arc<Self>, app: &str) -> Result<Option<api::Releases>> {
        let a = app.to_owned();
        let (known, list) = self
            .with_store(move |s| Ok((s.app(&a)?, s.releases(&a)?)))
            .await?;
        let Some(known) = known else { return Ok(None) };
        let current = known.current_release;
        Ok(Some(api::Releases {
            app: app.to_owned(),
            releases: list
                .into_iter()
                .map(|r| api::ReleaseInfo {
                    live: Some(&r.id) == current.as_ref(),
                    created: supervisor::logs::format_time(r.created_at),
                    digest: r.digest,
                    status: r.status.as_str().to_owned(),
                    id: r.id,
                })
                .collect(),
            current,
        }))
    }

    pub async fn history(self: &Arc<Self>, app: Option<String>) -> Result<api::History> {
        let deploys = self
            .with_store(move |s| s.deploys(app.as_deref(), 10_000))
            .await?;
        Ok(api::History {
            summary: super::history::summarize(&deploys, SystemTime::now()),
            deploys: deploys.iter().map(super::history::record).collect(),
        })
    }

    pub fn log_dir(&self, app: &str) -> PathBuf {
        self.state.join("logs").join(app)
    }
}

fn instance_status(m: &Member, release: &str, now: SystemTime) -> api::InstanceStatus {
    let st = m.instance.status();
    api::InstanceStatus {
        service: m.service.clone(),
        instance: m.index,
        release: release.to_owned(),
        pid: st.pid,
        port: m.instance.port(),
        state: st.state.to_string(),
        restarts: st.restarts,
        uptime_secs: st
            .started_at
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs()),
        memory_bytes: st.memory_rss,
        crash_loop: st.crash_loop,
        warnings: st.warnings.clone(),
    }
}

/// Read and validate `DIR/berth.toml` for `env` (daemon side: never trust the client's check).
pub(super) fn load_spec(dir: &Path, env: Option<&str>) -> Result<AppSpec> {
    let path = dir.join("berth.toml");
    let source =
        std::fs::read_to_string(&path).context("the uploaded app has no readable berth.toml")?;
    spec::parse_env("berth.toml", &source, env)
        .map_err(|d| anyhow::anyhow!("berth.toml is invalid:\n{d}"))
}

/// The environment an app instance runs in: `shop.staging` → `staging`.
pub(super) fn environment_of(app: &str) -> Option<&str> {
    app.split_once('.').map(|(_, env)| env)
}

fn balance(b: spec::Balance) -> proxy::Balance {
    match b {
        spec::Balance::RoundRobin => proxy::Balance::RoundRobin,
        spec::Balance::LeastRequests => proxy::Balance::LeastOutstanding,
    }
}

fn host_pattern(host: &str) -> HostPattern {
    match host {
        "*" => HostPattern::Any,
        h if h.starts_with("*.") => HostPattern::Wildcard(h.to_owned()),
        h => HostPattern::Exact(h.to_owned()),
    }
}

/// What of a supervisor event goes into the store's event log.
fn event_record(ev: &Event) -> Option<(&'static str, String)> {
    let who = format!("{}.{}@{}", ev.key.service, ev.key.instance, ev.key.release);
    match &ev.kind {
        EventKind::Exited(exit) => Some(("exited", format!("{who} {exit}"))),
        EventKind::Restarting { attempt, delay } => Some((
            "restart",
            format!("{who} restart #{attempt} in {:.1}s", delay.as_secs_f64()),
        )),
        EventKind::CrashLoop => Some(("crash-loop", format!("{who} is crash-looping"))),
        EventKind::Unready { reason } => {
            Some(("unready", format!("{who} failed liveness: {reason}")))
        }
        EventKind::Started { .. } | EventKind::Ready | EventKind::Stopped => None,
    }
}
