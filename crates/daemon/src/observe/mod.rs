//! What the daemon watches on its own, without Prometheus: every 10 s the sampler turns the
//! proxy's and the processes' counters into figures (`sample.rs`), records them in the
//! bounded history (`monitor::History`), evaluates every serving release's `[alerts]` and the
//! server's own rules (`monitor::Alerts`), and records and sends what changed (`notify.rs`).
//! The dashboard and `berth alerts`/`berth health` read from here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monitor::{AlertKey, Alerts, Change, Direction, History, Rule, SeriesKey};
use spec::{AlertName, AlertRule};
use supervisor::InstanceState;
use tokio::sync::watch;

use crate::core::Core;
use crate::lock::lock;

mod format;
mod health;
pub(crate) mod notify;
mod sample;
mod view;

pub(crate) use format::shown;
use sample::{Delta, Window};

/// How often the sampler runs by default: the history's finest step.
pub const STEP: Duration = Duration::from_secs(10);
/// Latency and error rate are judged over this many steps (a minute), so one slow request in
/// a quiet 10 s does not make a p95.
const JUDGED_STEPS: usize = 6;
/// Answers a route needs in the judged window before its error rate or latency counts.
const MIN_ANSWERS: u64 = 10;

/// The server's own rules (not an app's): from `berth serve` flags.
#[derive(Debug, Clone)]
pub struct ServerAlerts {
    /// Free space of the state directory's filesystem, a fraction: warn and critical below.
    pub disk_free: (Option<f64>, Option<f64>),
    /// The daemon's resident memory in bytes: warn and critical above.
    pub daemon_memory: (Option<f64>, Option<f64>),
}

impl Default for ServerAlerts {
    fn default() -> ServerAlerts {
        ServerAlerts {
            disk_free: (Some(0.20), Some(0.10)),
            daemon_memory: (
                Some(256.0 * 1024.0 * 1024.0),
                Some(1024.0 * 1024.0 * 1024.0),
            ),
        }
    }
}

/// The sampler's state and what it produced.
pub(crate) struct Observe {
    /// How often the sampler runs (`berth serve --sample-interval`).
    pub every: Duration,
    pub history: Mutex<History>,
    pub alerts: Mutex<Alerts>,
    pub server: ServerAlerts,
    sampler: Mutex<Sampler>,
    /// Unix seconds of the newest sample: the dashboard's event stream says `tick` on change.
    ticks: watch::Sender<u64>,
    /// The newest CPU figure of each instance, in percent of one core.
    cpu: Mutex<HashMap<(String, String, u32), f64>>,
    pub notify: notify::Notifications,
}

impl Observe {
    pub fn new(server: ServerAlerts, every: Duration) -> Observe {
        Observe {
            every,
            history: Mutex::new(History::new()),
            alerts: Mutex::new(Alerts::new()),
            server,
            sampler: Mutex::new(Sampler::default()),
            ticks: watch::channel(0).0,
            cpu: Mutex::new(HashMap::new()),
            notify: notify::Notifications::default(),
        }
    }
}

#[derive(Default)]
struct Sampler {
    at: Option<SystemTime>,
    routes: HashMap<(String, String), proxy::RouteSample>,
    windows: HashMap<String, Window>,
    /// CPU seconds of each instance's process group at the previous sample.
    cpu: HashMap<(String, String, u32, i32), f64>,
    /// Restart counts of each instance with when they were seen.
    restarts: HashMap<(String, String, u32), VecDeque<(SystemTime, u32)>>,
    /// Since when each instance has not been ready.
    down_since: HashMap<(String, String, u32), SystemTime>,
    /// When each firing alert was last sent.
    reminded: HashMap<AlertKey, SystemTime>,
}

/// One instance as the sampler sees it.
struct Seen {
    app: String,
    service: String,
    index: u32,
    pgid: Option<i32>,
    ready: bool,
    restarts: u32,
    memory_max: Option<u64>,
}

impl Core {
    /// The sampler: every [`STEP`] until the daemon stops.
    pub async fn observe(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.observe.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.cancel.cancelled() => return,
            }
            let now = SystemTime::now();
            let core = self.clone();
            // /proc reads and the figures are blocking work; the alerts' effects are async.
            let changes = tokio::task::spawn_blocking(move || core.sample(now))
                .await
                .unwrap_or_default();
            self.effects(changes).await;
        }
    }

    /// The history's tick: the unix time of the newest sample.
    pub fn history_ticks(&self) -> watch::Receiver<u64> {
        self.observe.ticks.subscribe()
    }

    /// The newest CPU figure per (app, service, instance), percent of one core.
    pub fn cpu_percent_now(&self) -> HashMap<(String, String, u32), f64> {
        lock(&self.observe.cpu).clone()
    }

    /// One sample: figures into the history, then the alert rules. Returns the alerts'
    /// transitions and reminders.
    fn sample(&self, now: SystemTime) -> (Vec<monitor::Transition>, Vec<monitor::Alert>) {
        let mut s = lock(&self.observe.sampler);
        let elapsed =
            s.at.and_then(|t| now.duration_since(t).ok())
                .map_or(self.observe.every.as_secs_f64(), |d| {
                    d.as_secs_f64().max(0.1)
                });
        let first = s.at.is_none();
        s.at = Some(now);
        let mut points: Vec<(SeriesKey, f64)> = Vec::new();

        // Routes: rates, errors and latency, per route and per app.
        let mut per_app: BTreeMap<String, Vec<Delta>> = BTreeMap::new();
        for sample in self.proxy.route_samples() {
            let key = (sample.route.clone(), sample.service.clone());
            let delta = s
                .routes
                .get(&key)
                .map(|before| Delta::between(before, &sample, elapsed));
            let app = sample
                .route
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            let route = sample
                .route
                .split_once(':')
                .map_or("", |(_, r)| r)
                .to_owned();
            s.routes.insert(key, sample);
            let Some(delta) = delta else { continue };
            s.windows
                .entry(route_id(&app, &route))
                .or_default()
                .push(delta.clone(), JUDGED_STEPS);
            route_points(&mut points, &app, &route, &delta);
            per_app.entry(app).or_default().push(delta);
        }
        for (app, deltas) in &per_app {
            route_points(&mut points, app, "", &Delta::sum(deltas));
        }

        // Instances: CPU, memory, restarts, readiness.
        let seen = self.seen();
        let usage = if seen.iter().any(|i| i.pgid.is_some()) {
            supervisor::group_usage()
        } else {
            HashMap::new()
        };
        let mut cpu_now = HashMap::new();
        let mut app_cpu: BTreeMap<String, f64> = BTreeMap::new();
        let mut app_mem: BTreeMap<String, f64> = BTreeMap::new();
        let mut memory_share: Vec<(AlertKey, f64)> = Vec::new();
        let mut live = std::collections::HashSet::new();
        for i in &seen {
            let id = (i.app.clone(), i.service.clone(), i.index);
            live.insert(id.clone());
            let subject = format!("{}.{}", i.service, i.index);
            if let Some(u) = i.pgid.and_then(|g| usage.get(&g)) {
                let pgid = i.pgid.unwrap_or_default();
                let ckey = (i.app.clone(), i.service.clone(), i.index, pgid);
                if let Some(before) = s.cpu.insert(ckey, u.cpu_seconds)
                    && !first
                {
                    let pct = ((u.cpu_seconds - before).max(0.0) / elapsed) * 100.0;
                    cpu_now.insert(id.clone(), pct);
                    *app_cpu.entry(i.app.clone()).or_default() += pct;
                    points.push((
                        SeriesKey::new("cpu_percent", i.app.as_str(), subject.as_str()),
                        pct,
                    ));
                }
                let rss = u.rss_bytes as f64;
                *app_mem.entry(i.app.clone()).or_default() += rss;
                points.push((
                    SeriesKey::new("memory_bytes", i.app.as_str(), subject.as_str()),
                    rss,
                ));
                if let Some(max) = i.memory_max.filter(|m| *m > 0) {
                    memory_share.push((
                        AlertKey::new("memory", i.app.as_str(), subject.as_str()),
                        rss / max as f64,
                    ));
                }
            }
            let seen_restarts = s.restarts.entry(id.clone()).or_default();
            seen_restarts.push_back((now, i.restarts));
            while seen_restarts.front().is_some_and(|(t, _)| {
                now.duration_since(*t).unwrap_or_default() > Duration::from_secs(24 * 3600)
            }) {
                seen_restarts.pop_front();
            }
            if i.ready {
                s.down_since.remove(&id);
            } else {
                s.down_since.entry(id).or_insert(now);
            }
        }
        s.cpu
            .retain(|(a, sv, ix, _), _| live.contains(&(a.clone(), sv.clone(), *ix)));
        s.restarts.retain(|k, _| live.contains(k));
        s.down_since.retain(|k, _| live.contains(k));
        for (app, v) in &app_cpu {
            points.push((SeriesKey::new("cpu_percent", app.as_str(), ""), *v));
        }
        for (app, v) in &app_mem {
            points.push((SeriesKey::new("memory_bytes", app.as_str(), ""), *v));
        }
        *lock(&self.observe.cpu) = cpu_now;

        // The server: disk and the daemon's memory.
        let disk = crate::metrics::disk(self.dir.root())
            .map(|(free, size)| if size > 0.0 { free / size } else { 1.0 });
        if let Some(d) = disk {
            points.push((SeriesKey::new("disk_free_ratio", "", ""), d));
        }
        let daemon_rss = own_rss();
        if let Some(m) = daemon_rss {
            points.push((SeriesKey::new("daemon_memory_bytes", "", ""), m));
        }
        {
            let mut h = lock(&self.observe.history);
            for (key, v) in &points {
                h.record(key, now, *v);
            }
            h.prune(now);
        }

        // The rules.
        let mut observations: Vec<(AlertKey, Rule, Option<f64>)> = Vec::new();
        let specs: Vec<(String, Arc<spec::AppSpec>)> = self
            .apps()
            .iter()
            .filter_map(|(a, st)| Some((a.clone(), st.running.as_ref()?.spec.clone())))
            .collect();
        let certs = self.certs.manager.status();
        let backups = lock(&self.backups.stats).clone();
        for (app, spec) in &specs {
            let rules = &spec.alerts;
            let rule = |name: AlertName| rule_of(name, &rules.rule(name), self.observe.every);
            if let Some(r) = rule(AlertName::P95Latency) {
                for (id, w) in s
                    .windows
                    .iter()
                    .filter(|(id, _)| id.starts_with(&format!("{app}:")))
                {
                    let total = w.total();
                    let v = (total.requests >= MIN_ANSWERS)
                        .then(|| total.quantile(0.95))
                        .flatten();
                    observations.push((
                        AlertKey::new(r.name.clone(), app.as_str(), &id[app.len() + 1..]),
                        r.clone(),
                        v,
                    ));
                }
            }
            if let Some(r) = rule(AlertName::ErrorRate) {
                for (id, w) in s
                    .windows
                    .iter()
                    .filter(|(id, _)| id.starts_with(&format!("{app}:")))
                {
                    let v = w.total().error_rate(MIN_ANSWERS);
                    observations.push((
                        AlertKey::new(r.name.clone(), app.as_str(), &id[app.len() + 1..]),
                        r.clone(),
                        v,
                    ));
                }
            }
            if let Some(r) = rule(AlertName::Memory) {
                for (key, share) in memory_share.iter().filter(|(k, _)| &k.app == app) {
                    observations.push((key.clone(), r.clone(), Some(*share)));
                }
            }
            if let Some(r) = rule(AlertName::Restarts) {
                let within = rules
                    .rule(AlertName::Restarts)
                    .within
                    .unwrap_or(Duration::from_secs(900));
                for ((a, svc, ix), seen_r) in s.restarts.iter().filter(|((a, _, _), _)| a == app) {
                    let newest = seen_r.back().map_or(0, |(_, n)| *n);
                    let oldest = seen_r
                        .iter()
                        .find(|(t, _)| now.duration_since(*t).unwrap_or_default() <= within)
                        .map_or(newest, |(_, n)| *n);
                    observations.push((
                        AlertKey::new(r.name.clone(), a.as_str(), format!("{svc}.{ix}")),
                        r.clone(),
                        Some(f64::from(newest.saturating_sub(oldest))),
                    ));
                }
            }
            if let Some(r) = rule(AlertName::DiskFree) {
                observations.push((
                    AlertKey::new(
                        r.name.clone(),
                        app.as_str(),
                        self.dir.root().display().to_string(),
                    ),
                    r.clone(),
                    disk,
                ));
            }
            if let Some(r) = rule(AlertName::CertExpiry) {
                for c in certs.iter().filter(|c| &c.id == app) {
                    let left = c.not_after.map(|t| match t.duration_since(now) {
                        Ok(d) => d.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    });
                    observations.push((
                        AlertKey::new(
                            r.name.clone(),
                            app.as_str(),
                            c.names.first().cloned().unwrap_or_default(),
                        ),
                        r.clone(),
                        left,
                    ));
                }
            }
            if let Some(r) = rule(AlertName::BackupAge) {
                for name in spec.backups.keys() {
                    let age = backups
                        .get(&(app.clone(), name.clone()))
                        .and_then(|st| st.last_success)
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs_f64());
                    observations.push((
                        AlertKey::new(r.name.clone(), app.as_str(), name.as_str()),
                        r.clone(),
                        age,
                    ));
                }
            }
            if let Some(r) = rule(AlertName::InstanceDown) {
                for i in seen.iter().filter(|i| &i.app == app) {
                    let down = s
                        .down_since
                        .get(&(i.app.clone(), i.service.clone(), i.index))
                        .map_or(0.0, |t| {
                            now.duration_since(*t).unwrap_or_default().as_secs_f64()
                        });
                    observations.push((
                        AlertKey::new(
                            r.name.clone(),
                            app.as_str(),
                            format!("{}.{}", i.service, i.index),
                        ),
                        r.clone(),
                        Some(down),
                    ));
                }
            }
        }
        let server = &self.observe.server;
        let server_rule =
            |name: &str, (warn, critical): (Option<f64>, Option<f64>), direction| Rule {
                name: name.to_owned(),
                warn,
                critical,
                direction,
                for_: Duration::ZERO,
                clear_after: Duration::from_secs(60),
            };
        observations.push((
            AlertKey::new("disk_free", "", self.dir.root().display().to_string()),
            server_rule("disk_free", server.disk_free, Direction::Below),
            disk,
        ));
        observations.push((
            AlertKey::new("daemon_memory", "", "berth"),
            server_rule("daemon_memory", server.daemon_memory, Direction::Above),
            daemon_rss,
        ));
        drop(s);

        let mut alerts = lock(&self.observe.alerts);
        let mut transitions =
            alerts.evaluate(now, observations.iter().map(|(k, r, v)| (k.clone(), r, *v)));
        // Alerts of apps that no longer serve, or of rules turned off, resolve.
        let known: std::collections::HashSet<(String, String)> = observations
            .iter()
            .map(|(k, _, _)| (k.alert.clone(), k.app.clone()))
            .collect();
        transitions
            .extend(alerts.retain(now, |k| known.contains(&(k.alert.clone(), k.app.clone()))));
        let firing = alerts.firing();
        drop(alerts);
        // Reminders every `repeat` of the alert's own app (the server's: the default), counted
        // from when it fired or last changed severity.
        let mut s = lock(&self.observe.sampler);
        for t in &transitions {
            match t.change() {
                Change::Fired | Change::SeverityChanged => {
                    s.reminded.insert(t.key.clone(), now);
                }
                Change::Resolved => {
                    s.reminded.remove(&t.key);
                }
                _ => {}
            }
        }
        let mut reminders = Vec::new();
        for a in firing {
            let repeat = specs
                .iter()
                .find(|(app, _)| *app == a.key.app)
                .map_or(spec::AlertsSpec::DEFAULT_REPEAT, |(_, spec)| {
                    spec.alerts.repeat
                });
            let last = *s.reminded.entry(a.key.clone()).or_insert(now);
            if now.duration_since(last).unwrap_or_default() >= repeat {
                s.reminded.insert(a.key.clone(), now);
                reminders.push(a);
            }
        }
        drop(s);
        let _ = self.observe.ticks.send(unix(now));
        (transitions, reminders)
    }

    /// Every running instance, read under the apps' lock.
    fn seen(&self) -> Vec<Seen> {
        let apps = self.apps();
        let mut out = Vec::new();
        for (app, st) in apps.iter() {
            let Some(r) = &st.running else { continue };
            for m in &r.members {
                let status = m.instance.status_without_memory();
                out.push(Seen {
                    app: app.clone(),
                    service: m.service.clone(),
                    index: m.index,
                    pgid: status.pgid,
                    ready: status.state == InstanceState::Ready,
                    restarts: status.restarts,
                    memory_max: r.spec.services.get(&m.service).and_then(|s| s.memory_max),
                });
            }
        }
        out
    }
}

/// A route's identity in the sampler: `app:host/path`.
fn route_id(app: &str, route: &str) -> String {
    format!("{app}:{route}")
}

fn route_points(points: &mut Vec<(SeriesKey, f64)>, app: &str, route: &str, d: &Delta) {
    let key = |m: &'static str| SeriesKey::new(m, app, route);
    if let Some(r) = d.rate() {
        points.push((key("requests_per_second"), r));
    }
    if let Some(e) = d.error_rate(1) {
        points.push((key("error_rate"), e));
    }
    for (q, m) in [
        (0.5, "p50_latency_seconds"),
        (0.95, "p95_latency_seconds"),
        (0.99, "p99_latency_seconds"),
    ] {
        if let Some(v) = d.quantile(q) {
            points.push((key(m), v));
        }
    }
}

/// The monitor's rule for one of the app's `[alerts]`, or None when it is turned off.
fn rule_of(name: AlertName, r: &AlertRule, every: Duration) -> Option<Rule> {
    if !r.enabled || (r.warn.is_none() && r.critical.is_none()) {
        return None;
    }
    let direction = match name {
        AlertName::DiskFree | AlertName::CertExpiry => Direction::Below,
        _ => Direction::Above,
    };
    Some(Rule {
        name: name.as_str().to_owned(),
        warn: r.warn,
        critical: r.critical,
        direction,
        for_: r.for_,
        // Back under the threshold for as long as it took to fire (at least two samples, at
        // most 5 min) before it resolves: a noisy series does not flap.
        clear_after: r
            .for_
            .clamp(every * 2, Duration::from_secs(300).max(every * 2)),
    })
}

fn own_rss() -> Option<f64> {
    supervisor::proc_stat("self").map(|s| s.rss_bytes as f64)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
