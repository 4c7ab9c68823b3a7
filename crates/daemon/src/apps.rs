//! Which release serves each app, how its instances start and stop, and the route table
//! derived from that.
//!
//! [`Core::switch`] is the commit point of every start-up, deploy, rollback and recovery: the
//! store records the release as current, then one new route table goes to the proxy. Start-up
//! is a switch from nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proxy::{HostPattern, Pool, Route, RouteTable, Share, Target, Upstream};
use spec::{AppSpec, RouteTarget};
use store::ProcessRecord;
use supervisor::{InstanceState, ProcessSpec};

use crate::core::Core;
use crate::failure::Failure;
use crate::release::{Member, Release, Slot};

/// How long an instance without a health check may take to start.
const DEFAULT_START_DEADLINE: Duration = Duration::from_secs(60);

impl Core {
    /// Start `slots` of `release` under the supervisor; does not wait for readiness.
    pub fn start_members(&self, release: &Release, slots: &[Slot]) -> Vec<Member> {
        self.adopt_members(release, slots, &[])
    }

    /// Like [`Core::start_members`], but a slot with a process in `found` (what a previous
    /// daemon recorded for this release) takes it over on its port instead of starting one;
    /// the supervisor replaces it if it is not that process any more or not healthy.
    pub fn adopt_members(
        &self,
        release: &Release,
        slots: &[Slot],
        found: &[ProcessRecord],
    ) -> Vec<Member> {
        let spec = &release.spec;
        let app = spec.instance_name();
        slots
            .iter()
            .filter_map(|(service, index)| {
                let s = spec.services.get(service)?;
                let adopt = found
                    .iter()
                    .find(|p| p.service == *service && p.instance == *index)
                    .map(|p| {
                        let who = supervisor::Identity {
                            pid: p.pgid as u32,
                            start_ticks: p.start_ticks,
                        };
                        (who, p.port)
                    });
                let port = match adopt {
                    Some((_, port)) => port,
                    None => supervisor::free_port().unwrap_or(0),
                };
                let process = ProcessSpec {
                    app: app.clone(),
                    service: service.clone(),
                    release: release.id.clone(),
                    instance: *index,
                    command: s.command.clone(),
                    cwd: release.dir.clone(),
                    env: (*release.env).clone(),
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
                        .map_or(DEFAULT_START_DEADLINE, |h| h.start_deadline),
                    stop_timeout: s.stop_timeout,
                    limits: supervisor::Limits {
                        memory_max: s.memory_max,
                        cpu_max: s.cpu_max,
                        pids_max: s.pids_max.map(u64::from),
                    },
                    confinement: self.confinement(&app, release.user.as_ref(), &s.sandbox),
                };
                let instance = match adopt {
                    Some((who, _)) => self.supervisor.adopt(process, who),
                    None => self.supervisor.start(process),
                };
                let upstream = Upstream::new(
                    format!("{app}/{service}.{index}@{}", release.id),
                    SocketAddr::from(([127, 0, 0, 1], port)),
                );
                Some(Member {
                    service: service.clone(),
                    index: *index,
                    instance,
                    upstream,
                })
            })
            .collect()
    }

    /// How an instance of `app` is confined: its user, and the service's `Sandbox`.
    fn confinement(
        &self,
        app: &str,
        user: Option<&crate::users::AppUser>,
        sandbox: &spec::Sandbox,
    ) -> supervisor::Confinement {
        supervisor::Confinement {
            run_as: user.map(crate::users::AppUser::run_as),
            no_new_privs: sandbox.no_new_privs,
            private_tmp: (sandbox.private_tmp && self.private_tmp.is_ok() && user.is_some())
                .then(|| self.dir.app_tmp(app)),
            limits: supervisor::Rlimits {
                open_files: Some(u64::from(sandbox.open_files)),
                processes: Some(u64::from(sandbox.processes)),
                core: (!sandbox.core_dumps).then_some(0),
                address_space: None,
            },
            umask: Some(0o027),
            cgroup: None,
        }
    }

    /// Stop `members` gracefully and forget their process groups.
    pub async fn stop_members(&self, members: Vec<Member>) {
        let stops = members.into_iter().map(|m| async move {
            let pgid = m.instance.pgid();
            m.instance.stop().await;
            let key = m.instance.key();
            let Some(pgid) = pgid else { return };
            let record = ProcessRecord {
                app: key.app.clone(),
                service: key.service.clone(),
                release: key.release.clone(),
                instance: key.instance,
                pgid,
                start_ticks: 0,
                port: m.instance.port(),
            };
            if let Err(err) = self.db.forget_process(record).await {
                tracing::warn!(error = %err, "forget a stopped process group");
            }
        });
        futures_util::future::join_all(stops).await;
    }

    /// Let `members`, already out of the route table, finish their requests for up to `grace`
    /// (the proxy closes what is left, WebSockets with a close frame); then stop them.
    pub async fn drain_and_stop(&self, members: Vec<Member>, grace: Duration) {
        let drains = members
            .iter()
            .map(|m| self.proxy.drained(&m.upstream, grace));
        futures_util::future::join_all(drains).await;
        self.stop_members(members).await;
    }

    /// Make `new` the release serving its app: commit it in the store, then publish routes.
    /// Returns the release it replaced, still running, for the caller to drain.
    pub async fn switch(&self, app: &str, new: Release) -> Option<Release> {
        if let Err(err) = self.db.set_current(app, &new.id).await {
            tracing::error!(app, error = %err, "record the current release");
        }
        let old = self
            .apps()
            .entry(app.to_owned())
            .or_default()
            .running
            .replace(new);
        self.publish_routes();
        old
    }

    /// Take `app` out of service entirely (a first deploy that failed after its switch).
    pub async fn take_app(&self, app: &str) -> Option<Release> {
        if let Err(err) = self.db.clear_current(app).await {
            tracing::error!(app, error = %err, "clear the current release");
        }
        let old = self.apps().get_mut(app).and_then(|a| a.running.take());
        self.publish_routes();
        old
    }

    /// Stop every app gracefully (daemon shutdown) with its standby and canary, and any
    /// instance a cut-short rollout left.
    pub async fn stop_all(&self) {
        let all: Vec<Release> = self
            .apps()
            .values_mut()
            .flat_map(|a| {
                let warm = a.standby.take().map(|s| s.release);
                let canary = a.canary.take().map(|c| c.release);
                [a.running.take(), warm, canary]
            })
            .flatten()
            .collect();
        self.publish_routes();
        let stops = all.into_iter().map(|r| self.stop_members(r.members));
        futures_util::future::join_all(stops).await;
        self.supervisor.shutdown().await;
    }

    /// `Ok` when berth knows `app` (a release of it was ever made), else the refusal.
    pub async fn known_app(&self, app: &str) -> Result<(), crate::refusal::Refusal> {
        match self.db.app(app).await.map_err(anyhow::Error::new)? {
            Some(_) => Ok(()),
            None => Err(crate::refusal::Refusal::no_app(app)),
        }
    }

    /// The routes of `spec` that another app already serves, all of them at once.
    pub fn check_route_conflicts(&self, spec: &AppSpec) -> Result<(), Failure> {
        let keys: Vec<api::RouteKey> = spec
            .routes
            .iter()
            .map(|r| api::RouteKey {
                host: r.host.clone(),
                path: r.path.clone(),
            })
            .collect();
        let conflicts = self.route_conflicts(&spec.instance_name(), &keys);
        if conflicts.is_empty() {
            return Ok(());
        }
        let said: Vec<String> = conflicts
            .iter()
            .map(|c| {
                format!(
                    "route host \"{}\" path \"{}\" is already served by app {}",
                    c.host, c.path, c.app
                )
            })
            .collect();
        Err(Failure::new(api::Gate::Unpack, said.join("; "))
            .hint("give this app its own host or path in berth.toml"))
    }

    /// Which of `routes` apps other than `app` serve now.
    pub fn route_conflicts(&self, app: &str, routes: &[api::RouteKey]) -> Vec<api::RouteConflict> {
        let apps = self.apps();
        let mut conflicts = Vec::new();
        for key in routes {
            let taken_by = apps
                .iter()
                .filter(|(other, _)| *other != app)
                .filter_map(|(other, a)| Some((other, a.running.as_ref()?)))
                .find(|(_, release)| {
                    release
                        .spec
                        .routes
                        .iter()
                        .any(|o| o.host == key.host && o.path == key.path)
                });
            if let Some((other, _)) = taken_by {
                conflicts.push(api::RouteConflict {
                    host: key.host.clone(),
                    path: key.path.clone(),
                    app: other.clone(),
                });
            }
        }
        conflicts
    }

    /// Derive the route table from the running releases and publish it. Only ready instances
    /// receive traffic; during a canary, its share of clients goes to the canary's.
    pub fn publish_routes(&self) {
        let apps = self.apps();
        let running = || {
            apps.iter()
                .filter_map(|(name, a)| Some((name, a.running.as_ref()?)))
        };
        let mut routes = Vec::new();
        for (app, release) in running() {
            // The operator's maintenance covers every route; a restore's only the services.
            let state = &apps[app];
            let operator = state.maintenance.as_ref();
            let page = (operator.is_some() || state.restoring.is_some()).then(|| Maintained {
                page: crate::maintenance::answer(&release.dir, operator.map_or("", |m| &m.message)),
                everything: operator.is_some(),
            });
            let canary = state.canary.as_ref().map(|c| (&c.release, c.share));
            routes.extend(self.release_routes(app, release, page.as_ref(), canary));
        }
        self.proxy.publish(RouteTable { routes });
        // Still under the lock, so two republishes cannot hand the manager their sets in the
        // wrong order. It only does work (file reads, a self-signed key) when the set changed.
        self.certs
            .sync(running().map(|(app, r)| (app.as_str(), &*r.spec, r.dir.as_path())));
    }

    /// Hand the certificate manager the serving set with `new` in place of `app`'s release.
    pub(crate) fn sync_certs_with(&self, app: &str, new: &Release) {
        let apps = self.apps();
        let others = apps
            .iter()
            .filter(|(name, _)| name.as_str() != app)
            .filter_map(|(name, a)| Some((name, a.running.as_ref()?)));
        let set = others.map(|(name, r)| (name.as_str(), &*r.spec, r.dir.as_path()));
        self.certs
            .sync(set.chain([(app, &*new.spec, new.dir.as_path())]));
    }

    /// The routes of one release of `app`, as the proxy gets them: under maintenance when
    /// `page` says, and with `canary`'s ready instances taking its share of the clients of
    /// each service route both releases have.
    pub(crate) fn release_routes(
        &self,
        app: &str,
        release: &Release,
        page: Option<&Maintained>,
        canary: Option<(&Release, Share)>,
    ) -> Vec<Route> {
        let settings = &release.spec.proxy;
        let trusted = crate::routes::trusted_proxies(settings);
        let ready = |release: &Release, service: &str| -> Vec<Arc<Upstream>> {
            release
                .members
                .iter()
                .filter(|m| m.service == service && m.instance.state() == InstanceState::Ready)
                .map(|m| m.upstream.clone())
                .collect()
        };
        let mut routes = Vec::new();
        for r in &release.spec.routes {
            let target = match &r.target {
                RouteTarget::Service(service) => {
                    let mut pool = Pool::new(
                        service.clone(),
                        balance(settings.balance),
                        ready(release, service),
                    );
                    let same = canary.and_then(|(new, share)| {
                        let route = new
                            .spec
                            .routes
                            .iter()
                            .find(|n| n.host == r.host && n.path == r.path)?;
                        match &route.target {
                            RouteTarget::Service(s) => Some((ready(new, s), share)),
                            RouteTarget::Static { .. } => None,
                        }
                    });
                    if let Some((upstreams, share)) = same {
                        pool = pool.with_canary(upstreams, share);
                    }
                    Target::Service(Arc::new(pool))
                }
                RouteTarget::Static { dir, spa } => Target::Static {
                    root: release.dir.join(dir),
                    spa: *spa,
                },
            };
            routes.push(Route {
                id: format!("{app}:{}{}", r.host, r.path),
                app: app.to_owned(),
                host: host_pattern(&r.host),
                path: r.path.clone(),
                strip_prefix: r.strip_prefix,
                max_body: Some(r.max_body.unwrap_or(settings.max_body)),
                // `*` answers any name, and no certificate has every name.
                https_redirect: self.addrs.https.is_some()
                    && release.spec.tls.is_some()
                    && r.host != "*",
                target,
                headers: Arc::new(crate::routes::header_policy(settings, r)),
                rate_limit: crate::routes::rate_limit(settings, r),
                trusted_proxies: trusted.clone(),
                cache_control: crate::routes::cache_policy(r),
                maintenance: page
                    .filter(|p| p.everything || matches!(r.target, RouteTarget::Service(_)))
                    .map(|p| p.page.clone()),
            });
        }
        routes
    }
}

/// An app under maintenance: the page, and whether it covers every route (the operator's) or
/// only the service routes (a restore's).
pub(crate) struct Maintained {
    page: Arc<proxy::Maintenance>,
    everything: bool,
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
