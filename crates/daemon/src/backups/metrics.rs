//! The backups' series on `/metrics`, read from [`super::Stats`] at scrape time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{Key, Stats};
use crate::lock::lock;

pub(crate) struct BackupMetrics(pub Arc<Mutex<BTreeMap<Key, Stats>>>);

impl std::fmt::Debug for BackupMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupMetrics")
    }
}

type Value = fn(&Stats) -> Option<f64>;

const GAUGES: &[(&str, &str, Value)] = &[
    (
        "berth_backup_last_success_timestamp_seconds",
        "When the newest successful backup started (Unix time).",
        |s| s.last_success.map(secs),
    ),
    (
        "berth_backup_last_duration_seconds",
        "How long the newest successful backup took.",
        |s| s.last_duration.map(|d| d.as_secs_f64()),
    ),
    (
        "berth_backup_size_bytes",
        "Stored size (compressed, encrypted) of the newest successful backup.",
        |s| s.last_size.map(|b| b as f64),
    ),
    (
        "berth_backup_last_verify_success_timestamp_seconds",
        "When the newest successful restore drill ended (Unix time).",
        |s| s.last_verify_success.map(secs),
    ),
];

fn secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Collector for BackupMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = lock(&self.0).clone();
        if stats.is_empty() {
            return Ok(());
        }
        for (name, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((app, backup), s) in &stats {
                if let Some(v) = value(s) {
                    ConstGauge::new(v).encode(
                        family
                            .encode_family(&[("app", app.as_str()), ("backup", backup.as_str())])?,
                    )?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_backup_failures",
            "Backups that failed since the daemon started.",
            None,
            MetricType::Counter,
        )?;
        for ((app, backup), s) in &stats {
            ConstCounter::new(s.failures).encode(
                family.encode_family(&[("app", app.as_str()), ("backup", backup.as_str())])?,
            )?;
        }
        Ok(())
    }
}
