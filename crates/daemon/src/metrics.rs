//! The daemon's own series on `/metrics`, read at scrape time: every instance (state,
//! restarts, uptime, CPU, memory), the serving releases, deploys by outcome, the state
//! directory's disk, and the daemon process itself (`process_*`). One pass over /proc per
//! scrape, whatever the number of instances; nothing here is touched on the request path.

use std::collections::BTreeMap;
use std::sync::{Mutex, Weak};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use supervisor::InstanceState;

use crate::core::Core;
use crate::lock::lock;

/// Rollouts that ended, by (app, kind, result).
#[derive(Default)]
pub(crate) struct DeployCounts(Mutex<BTreeMap<(String, &'static str, &'static str), u64>>);

impl DeployCounts {
    pub fn add(&self, app: &str, kind: api::DeployKind, result: api::DeployResult) {
        *lock(&self.0)
            .entry((app.to_owned(), kind.as_str(), result.as_str()))
            .or_default() += 1;
    }
}

pub(crate) struct DaemonMetrics(pub Weak<Core>);

impl std::fmt::Debug for DaemonMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonMetrics")
    }
}

/// One instance, as a scrape sees it.
struct Row {
    app: String,
    service: String,
    instance: String,
    ready: bool,
    restarts: u32,
    uptime: Option<f64>,
    pgid: Option<i32>,
    memory_max: Option<u64>,
}

impl Collector for DaemonMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(core) = self.0.upgrade() else {
            return Ok(());
        };
        let now = SystemTime::now();
        let (rows, releases) = {
            let apps = core.apps();
            let mut rows = Vec::new();
            let mut releases = Vec::new();
            for (app, state) in apps.iter() {
                let Some(r) = &state.running else { continue };
                releases.push((app.clone(), r.id.clone()));
                for m in &r.members {
                    let st = m.instance.status_without_memory();
                    rows.push(Row {
                        app: app.clone(),
                        service: m.service.clone(),
                        instance: m.index.to_string(),
                        ready: st.state == InstanceState::Ready,
                        restarts: st.restarts,
                        uptime: st
                            .started_at
                            .and_then(|t| now.duration_since(t).ok())
                            .map(|d| d.as_secs_f64()),
                        pgid: st.pgid,
                        memory_max: r.spec.services.get(&m.service).and_then(|s| s.memory_max),
                    });
                }
            }
            (rows, releases)
        };
        let usage = if rows.iter().any(|r| r.pgid.is_some()) {
            supervisor::group_usage()
        } else {
            Default::default()
        };
        let labels = |r: &Row| {
            [
                ("app", r.app.clone()),
                ("service", r.service.clone()),
                ("instance", r.instance.clone()),
            ]
        };

        gauge_family(
            &mut encoder,
            "berth_app_release",
            "The release serving each app (always 1).",
            releases
                .iter()
                .map(|(app, rel)| (vec![("app", app.clone()), ("release", rel.clone())], 1.0)),
        )?;
        gauge_family(
            &mut encoder,
            "berth_instance_ready",
            "Whether the instance passes readiness (1) or not (0).",
            rows.iter()
                .map(|r| (labels(r).to_vec(), f64::from(u8::from(r.ready)))),
        )?;
        counter_family(
            &mut encoder,
            "berth_instance_restarts",
            "Times the instance was started again after it exited.",
            rows.iter()
                .map(|r| (labels(r).to_vec(), f64::from(r.restarts))),
        )?;
        gauge_family(
            &mut encoder,
            "berth_instance_uptime_seconds",
            "Time since the instance's current process started.",
            rows.iter()
                .filter_map(|r| Some((labels(r).to_vec(), r.uptime?))),
        )?;
        counter_family(
            &mut encoder,
            "berth_instance_cpu_seconds",
            "CPU time (user + system) of the instance's process group.",
            rows.iter()
                .filter_map(|r| Some((labels(r).to_vec(), usage.get(&r.pgid?)?.cpu_seconds))),
        )?;
        gauge_family(
            &mut encoder,
            "berth_instance_memory_bytes",
            "Resident memory of the instance's process group.",
            rows.iter()
                .filter_map(|r| Some((labels(r).to_vec(), usage.get(&r.pgid?)?.rss_bytes as f64))),
        )?;
        gauge_family(
            &mut encoder,
            "berth_instance_memory_max_bytes",
            "The instance's memory_max.",
            rows.iter()
                .filter_map(|r| Some((labels(r).to_vec(), r.memory_max? as f64))),
        )?;

        let deploys: Vec<_> = lock(&core.deploy_counts.0)
            .iter()
            .map(|((app, kind, result), n)| {
                (
                    vec![
                        ("app", app.clone()),
                        ("kind", (*kind).to_owned()),
                        ("result", (*result).to_owned()),
                    ],
                    *n as f64,
                )
            })
            .collect();
        counter_family(
            &mut encoder,
            "berth_deploys",
            "Deploys, rollbacks and restarts that ended, by result.",
            deploys.into_iter(),
        )?;

        // Alerts firing: one series per alert and severity (Prometheus' own ALERTS has the
        // same shape); the server's own alerts have an empty app.
        let firing: Vec<_> = core
            .alert_list()
            .into_iter()
            .filter(|a| a.state == "firing")
            .map(|a| {
                (
                    vec![
                        ("alert", a.alert),
                        ("app", a.app),
                        ("subject", a.subject),
                        ("severity", a.severity),
                    ],
                    1.0,
                )
            })
            .collect();
        gauge_family(
            &mut encoder,
            "berth_alert_firing",
            "Alerts firing now (always 1), by alert, app, subject and severity.",
            firing.into_iter(),
        )?;
        let notifiers = core.notifier_rows();
        gauge_family(
            &mut encoder,
            "berth_notifier_up",
            "Whether the channel's latest delivery succeeded (1) or failed (0).",
            notifiers.iter().map(|(app, channel, s)| {
                (
                    vec![("app", app.clone()), ("channel", channel.clone())],
                    f64::from(u8::from(s.ok)),
                )
            }),
        )?;
        counter_family(
            &mut encoder,
            "berth_notifications_failed",
            "Messages a channel could not deliver after every retry.",
            notifiers.iter().map(|(app, channel, s)| {
                (
                    vec![("app", app.clone()), ("channel", channel.clone())],
                    s.failed_total as f64,
                )
            }),
        )?;

        if let Some((free, size)) = disk(core.dir.root()) {
            let path = core.dir.root().display().to_string();
            gauge_family(
                &mut encoder,
                "berth_disk_free_bytes",
                "Space available to berth on the state directory's filesystem.",
                std::iter::once((vec![("path", path.clone())], free)),
            )?;
            gauge_family(
                &mut encoder,
                "berth_disk_size_bytes",
                "Size of the state directory's filesystem.",
                std::iter::once((vec![("path", path)], size)),
            )?;
        }
        process(&mut encoder)
    }
}

/// (available, total) bytes of the filesystem holding `path`.
pub(crate) fn disk(path: &std::path::Path) -> Option<(f64, f64)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size() as f64;
    Some((
        st.blocks_available() as f64 * frag,
        st.blocks() as f64 * frag,
    ))
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Gauge, values)
}

fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> std::fmt::Result {
    family(encoder, name, help, MetricType::Counter, values)
}

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl Iterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> std::fmt::Result {
    let mut values = values.peekable();
    if values.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in values {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let enc = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(enc)?,
            _ => ConstGauge::new(v).encode(enc)?,
        }
    }
    Ok(())
}

/// The daemon's own `process_*` series, as Prometheus' client libraries name them.
fn process(encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let Some(me) = supervisor::proc_stat("self") else {
        return Ok(());
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0.0, |(soft, _)| soft as f64);
    let one = |encoder: &mut DescriptorEncoder, name: &str, help: &str, kind, v: f64| {
        family(encoder, name, help, kind, std::iter::once((Vec::new(), v)))
    };
    one(
        encoder,
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        MetricType::Counter,
        me.cpu_seconds,
    )?;
    one(
        encoder,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricType::Gauge,
        me.rss_bytes as f64,
    )?;
    one(
        encoder,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        MetricType::Gauge,
        me.vsize_bytes as f64,
    )?;
    one(
        encoder,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge,
        boot + me.started_after_boot,
    )?;
    one(
        encoder,
        "process_open_fds",
        "Number of open file descriptors.",
        MetricType::Gauge,
        fds,
    )?;
    one(
        encoder,
        "process_max_fds",
        "Maximum number of open file descriptors.",
        MetricType::Gauge,
        max_fds,
    )?;
    Ok(())
}
