//! What the dashboard's charts and `berth alerts` read from the sampler's work.

use std::time::{Duration, SystemTime};

use monitor::SeriesKey;

use super::{STEP, shown, unix};
use crate::core::Core;
use crate::lock::lock;

impl Core {
    /// The dashboard's charts of `app` over `window`.
    pub fn series_json(&self, app: &str, window: Duration) -> serde_json::Value {
        let now = SystemTime::now();
        let since = now - window;
        let h = lock(&self.observe.history);
        let mut start = None;
        let mut step = STEP.as_secs();
        let mut series = serde_json::Map::new();
        for (name, metric, scale) in [
            ("requests_per_sec", "requests_per_second", 1.0),
            ("error_rate", "error_rate", 1.0),
            ("p50_ms", "p50_latency_seconds", 1000.0),
            ("p95_ms", "p95_latency_seconds", 1000.0),
            ("p99_ms", "p99_latency_seconds", 1000.0),
            ("cpu_percent", "cpu_percent", 1.0),
            ("memory_bytes", "memory_bytes", 1.0),
        ] {
            let key = SeriesKey::new(metric, app, "");
            let values = match h.range(&key, since, now) {
                Some(r) => {
                    start.get_or_insert(unix(r.start));
                    step = r.step.as_secs();
                    r.values.into_iter().map(|v| v.map(|v| v * scale)).collect()
                }
                None => Vec::new(),
            };
            series.insert(name.to_owned(), serde_json::json!(values));
        }
        // Every array as long as the longest (series that started later are padded in front).
        let len = series
            .values()
            .filter_map(|v| v.as_array().map(Vec::len))
            .max()
            .unwrap_or(0);
        for v in series.values_mut() {
            if let Some(a) = v.as_array_mut() {
                let mut padded = vec![serde_json::Value::Null; len - a.len()];
                padded.append(a);
                *a = padded;
            }
        }
        let start = start.unwrap_or_else(|| unix(now).saturating_sub(len as u64 * step));
        serde_json::json!({
            "app": app,
            "window": if window > Duration::from_secs(3600) { "24h" } else { "1h" },
            "start": start,
            "step_secs": step,
            "series": series,
        })
    }

    /// The current alerts, firing first.
    pub fn alert_list(&self) -> Vec<api::AlertInfo> {
        let mut list: Vec<api::AlertInfo> = lock(&self.observe.alerts)
            .all()
            .into_iter()
            .filter(|a| a.state != monitor::State::Inactive)
            .map(|a| api::AlertInfo {
                value: shown(&a.key.alert, a.value),
                threshold: shown(&a.key.alert, a.threshold),
                state: if a.state == monitor::State::Pending {
                    "pending".into()
                } else {
                    "firing".into()
                },
                severity: a.severity.as_str().to_owned(),
                since: supervisor::logs::format_time(a.since),
                alert: a.key.alert,
                app: a.key.app,
                subject: a.key.subject,
            })
            .collect();
        list.sort_by(|a, b| {
            (a.state != "firing", &a.app, &a.alert).cmp(&(b.state != "firing", &b.app, &b.alert))
        });
        list
    }

    pub fn alerts_json(&self) -> serde_json::Value {
        serde_json::to_value(self.alert_list()).unwrap_or_default()
    }
}
