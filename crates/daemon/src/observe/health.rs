//! `berth health`: is it OK? One line per app, the worst severity first.

use std::time::Duration;

use monitor::SeriesKey;

use crate::core::Core;
use crate::lock::lock;

impl Core {
    pub async fn health(&self, only: Option<&str>) -> anyhow::Result<api::Health> {
        let status = self.status(only).await?;
        let alerts = self.alert_list();
        let firing = |app: &str| -> Vec<api::AlertInfo> {
            alerts
                .iter()
                .filter(|a| a.app == app && a.state == "firing")
                .cloned()
                .collect()
        };
        let mut apps = Vec::new();
        for a in &status.apps {
            let mine = firing(&a.name);
            let ready = a.instances.iter().filter(|i| i.state == "ready").count();
            let total = a.instances.len();
            let mut worst = worst_of(&mine);
            let mut problems: Vec<String> = mine
                .iter()
                .map(|al| {
                    let what = if al.subject.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", al.subject)
                    };
                    format!(
                        "{} {}{what} {} (threshold {})",
                        al.severity, al.alert, al.value, al.threshold
                    )
                })
                .collect();
            match (&a.release, ready, total) {
                (None, _, _) => {
                    worst = "critical";
                    problems.insert(0, "nothing serves: no release is live".to_owned());
                }
                (Some(_), 0, t) if t > 0 => {
                    worst = "critical";
                    problems.insert(0, format!("0/{t} instances ready"));
                }
                (Some(_), r, t) if r < t && worst == "ok" => worst = "warning",
                _ => {}
            }
            if let Some(why) = &a.maintenance {
                if worst == "ok" {
                    worst = "warning";
                }
                problems.insert(0, format!("maintenance: {why}"));
            }
            let figures = self.figures(&a.name);
            let mut summary = format!(
                "{}, {ready}/{total} instances ready{figures}",
                a.release.as_deref().unwrap_or("no release")
            );
            if !problems.is_empty() {
                summary = format!("{}; {summary}", problems.join("; "));
            }
            apps.push(api::AppHealth {
                app: a.name.clone(),
                status: worst.to_owned(),
                summary,
                alerts: mine,
            });
        }
        let server: Vec<api::AlertInfo> = if only.is_none() {
            alerts
                .iter()
                .filter(|a| a.app.is_empty() && a.state == "firing")
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let overall = apps
            .iter()
            .map(|a| a.status.as_str())
            .chain(std::iter::once(worst_of(&server)))
            .max_by_key(|s| rank(s))
            .unwrap_or("ok")
            .to_owned();
        Ok(api::Health {
            status: overall,
            apps,
            server,
        })
    }

    /// `, 12.3 req/s, 0.0% errors, p95 45ms` from the newest minute of the history.
    fn figures(&self, app: &str) -> String {
        let h = lock(&self.observe.history);
        let mean = |metric: &'static str| {
            let v: Vec<f64> = h
                .window(
                    &SeriesKey::new(metric, app, ""),
                    std::time::SystemTime::now(),
                    Duration::from_secs(60),
                )
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let mut out = String::new();
        if let Some(r) = mean("requests_per_second") {
            out.push_str(&format!(", {r:.1} req/s"));
        }
        if let Some(e) = mean("error_rate") {
            out.push_str(&format!(", {:.1}% errors", e * 100.0));
        }
        if let Some(p) = mean("p95_latency_seconds") {
            out.push_str(&format!(", p95 {}", super::shown("p95_latency", p)));
        }
        out
    }
}

fn worst_of(alerts: &[api::AlertInfo]) -> &'static str {
    if alerts.iter().any(|a| a.severity == "critical") {
        "critical"
    } else if alerts.is_empty() {
        "ok"
    } else {
        "warning"
    }
}

fn rank(s: &str) -> u8 {
    match s {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    }
}
