//! `berth export prometheus`: a scrape config for the daemon's admin listener and a rules file
//! equivalent to the app's `[alerts]`, written against the series `/metrics` serves:
//! `berth_proxy_requests_total` and `berth_proxy_request_duration_seconds` (labels `route` =
//! `APP:HOST/PATH`, `service`, `class`), `berth_instance_*` (`app`, `service`, `instance`),
//! `berth_disk_*` (`path`), `berth_certificate_expiry_timestamp_seconds` and
//! `berth_backup_last_success_timestamp_seconds` (`app`).
//!
//! Each rule judges what the daemon judges: latency and errors per route over the last minute
//! once [`MIN_ANSWERS`] were answered, memory per instance against its `memory_max`, restarts
//! per instance within `within`, the state directory's free share, time to certificate expiry,
//! time since each backup's last success, an instance not ready. A threshold is reached at
//! equality, as in the daemon ([`spec::AlertName::breaches`]).

use std::time::Duration;

pub use monitor::Severity;
use serde_json::{Value, json};
use spec::{AlertName, AppSpec};

use crate::{File, seconds, yaml};

/// Answers a route must have had in the window before its latency and errors are judged.
pub const MIN_ANSWERS: u32 = 10;

/// Where Prometheus finds the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The admin listener (`berth serve --admin`), `HOST:PORT`.
    pub target: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: "127.0.0.1:9100".to_owned(),
        }
    }
}

/// One alerting rule, with what it was made from (the tests build their inputs from these).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: AlertName,
    pub severity: Severity,
    /// In the model's unit: seconds, a fraction, a count.
    pub threshold: f64,
    /// `for` of the rule (for `instance_down`, the threshold plus `for`).
    pub for_: Duration,
    /// The window of `restarts` (`within`).
    pub within: Option<Duration>,
    pub expr: String,
}

impl Rule {
    /// `BerthP95Latency`, the `alertname`.
    pub fn alertname(&self) -> String {
        let camel: String = self
            .name
            .as_str()
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        format!("Berth{camel}")
    }
}

/// The file names: `prometheus.yml` and `berth-APP.rules.yml`.
pub fn rules_file_name(app: &AppSpec) -> String {
    format!("berth-{}.rules.yml", app.instance_name())
}

/// `prometheus.yml` (scrape config, loading the rules) and the rules file.
pub fn files(app: &AppSpec, o: &Options) -> Vec<File> {
    let rules_file = rules_file_name(app);
    let config = json!({
        "global": { "scrape_interval": "15s", "evaluation_interval": "15s" },
        "rule_files": [rules_file],
        "scrape_configs": [{
            "job_name": "berth",
            "metrics_path": "/metrics",
            "static_configs": [{ "targets": [o.target] }],
        }],
    });
    let header = "# Made by `berth export prometheus` from berth.toml.\n";
    vec![
        File::new(
            "prometheus.yml",
            format!("{header}{}", yaml::to_string(&config)),
        ),
        File::new(rules_file, format!("{header}{}", rules_yaml(app))),
    ]
}

/// The rules file alone.
pub fn rules_yaml(app: &AppSpec) -> String {
    let rules: Vec<Value> = rules(app).iter().map(|r| rule_json(app, r)).collect();
    yaml::to_string(&json!({
        "groups": [{ "name": format!("berth-{}", app.instance_name()), "rules": rules }],
    }))
}

fn rule_json(app: &AppSpec, r: &Rule) -> Value {
    json!({
        "alert": r.alertname(),
        "expr": r.expr,
        "for": seconds(r.for_),
        "labels": {
            "severity": r.severity.as_str(),
            "app": app.instance_name(),
            "berth_alert": r.name.as_str(),
        },
        "annotations": { "summary": summary(app, r) },
    })
}

/// The `summary` annotation: a template over the alert's labels (no `$value`, so a firing
/// alert says the same thing each time it is sent).
pub fn summary(app: &AppSpec, r: &Rule) -> String {
    let side = if r.name.fires_below() {
        "at or below"
    } else {
        "at or above"
    };
    format!(
        "{} of {}{}: {side} the {} threshold {}",
        r.name,
        app.instance_name(),
        subject(r.name),
        r.severity.as_str(),
        r.threshold
    )
}

/// What the alert is about, in its summary.
fn subject(name: AlertName) -> &'static str {
    match name {
        AlertName::P95Latency | AlertName::ErrorRate => " route {{ $labels.route }}",
        AlertName::Memory | AlertName::Restarts | AlertName::InstanceDown => {
            " {{ $labels.service }}.{{ $labels.instance }}"
        }
        AlertName::DiskFree => " (disk {{ $labels.path }})",
        AlertName::CertExpiry => "",
        AlertName::BackupAge => " backup {{ $labels.backup }}",
    }
}

/// Every rule of the app's `[alerts]`: one per level set, for alerts that apply to the app
/// (memory needs a `memory_max`, certificates `[tls]`, backup age `[backups]`).
pub fn rules(app: &AppSpec) -> Vec<Rule> {
    let mut out = Vec::new();
    for name in AlertName::ALL {
        let rule = app.alerts.rule(name);
        if !rule.enabled || !applies(app, name) {
            continue;
        }
        for (severity, level) in [
            (Severity::Warning, rule.warn),
            (Severity::Critical, rule.critical),
        ] {
            let Some(threshold) = level else { continue };
            let within = rule.within;
            let for_ = if name == AlertName::InstanceDown {
                Duration::from_secs_f64(threshold) + rule.for_
            } else {
                rule.for_
            };
            out.push(Rule {
                name,
                severity,
                threshold,
                for_,
                within,
                expr: expr(app, name, threshold, within),
            });
        }
    }
    out
}

fn applies(app: &AppSpec, name: AlertName) -> bool {
    match name {
        AlertName::Memory => app.services.values().any(|s| s.memory_max.is_some()),
        AlertName::CertExpiry => app.tls.is_some(),
        AlertName::BackupAge => !app.backups.is_empty(),
        AlertName::P95Latency | AlertName::ErrorRate => !app.routes.is_empty(),
        _ => true,
    }
}

/// `route=~`APP:.*``: the app's routes (the route label is `APP:HOST/PATH`).
pub fn route_selector(app: &AppSpec) -> String {
    format!("route=~`{}:.*`", regex_escape(&app.instance_name()))
}

/// `app="APP"`.
pub fn app_selector(app: &AppSpec) -> String {
    format!("app=\"{}\"", app.instance_name())
}

/// App and environment names are `[a-z0-9-]`: only the `.` of `shop.staging` needs escaping.
fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

fn expr(app: &AppSpec, name: AlertName, t: f64, within: Option<Duration>) -> String {
    let r = route_selector(app);
    let a = app_selector(app);
    let answered = format!(
        "sum by (route) (increase(berth_proxy_requests_total{{{r}}}[1m])) >= {MIN_ANSWERS}"
    );
    match name {
        AlertName::P95Latency => format!(
            "(histogram_quantile(0.95, sum by (route, le) (rate(berth_proxy_request_duration_seconds_bucket{{{r}}}[1m]))) >= {t}) and on (route) ({answered})"
        ),
        AlertName::ErrorRate => format!(
            "(sum by (route) (rate(berth_proxy_requests_total{{{r},class=\"5xx\"}}[1m])) / sum by (route) (rate(berth_proxy_requests_total{{{r}}}[1m])) >= {t}) and on (route) ({answered})"
        ),
        AlertName::Memory => format!(
            "berth_instance_memory_bytes{{{a}}} / on (app, service, instance) berth_instance_memory_max_bytes{{{a}}} >= {t}"
        ),
        AlertName::Restarts => format!(
            "increase(berth_instance_restarts_total{{{a}}}[{}]) >= {t}",
            seconds(within.unwrap_or(Duration::from_secs(900)))
        ),
        AlertName::DiskFree => {
            format!("berth_disk_free_bytes / on (path) berth_disk_size_bytes <= {t}")
        }
        AlertName::CertExpiry => {
            format!("berth_certificate_expiry_timestamp_seconds{{{a}}} - time() <= {t}")
        }
        AlertName::BackupAge => {
            format!("time() - berth_backup_last_success_timestamp_seconds{{{a}}} >= {t}")
        }
        AlertName::InstanceDown => format!("berth_instance_ready{{{a}}} == 0"),
    }
}
