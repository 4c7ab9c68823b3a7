//! promtool checks the scrape config and the rules, then runs unit tests made here from the
//! same thresholds: for every rule, series that put its value just past the threshold (it
//! fires, with every other level of the alert that value breaches) and just short of it (it
//! does not).

use std::collections::BTreeMap;
use std::time::Duration;

use export::prometheus::{Options, Rule, files, rules, summary};
use serde_json::{Value, json};
use spec::{AlertName, AppSpec};

use crate::{run_ok, shop, tool, write};

/// Samples every 15 s.
const STEP: u64 = 15;
/// How far past (or short of) a threshold the test puts a value.
const NUDGE: f64 = 1e-5;
/// The proxy's latency buckets (seconds).
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn promtool() -> std::process::Command {
    tool("promtool", "prometheus")
}

#[test]
fn config_and_rules_pass_promtool_check() {
    let app = shop();
    let dir = tempfile::tempdir().unwrap();
    for f in files(&app, &Options::default()) {
        write(dir.path(), &f.path, &f.contents);
    }
    run_ok(
        promtool()
            .args(["check", "config"])
            .arg(dir.path().join("prometheus.yml")),
    );
    run_ok(
        promtool()
            .args(["check", "rules"])
            .arg(dir.path().join("berth-shop.rules.yml")),
    );
    let names: Vec<AlertName> = rules(&app).iter().map(|r| r.name).collect();
    for name in AlertName::ALL {
        assert!(names.contains(&name), "no rule for {name}");
    }
}

#[test]
fn every_rule_fires_at_its_threshold() {
    let app = shop();
    let all = rules(&app);
    let dir = tempfile::tempdir().unwrap();
    let rules_file = export::prometheus::rules_file_name(&app);
    write(
        dir.path(),
        &rules_file,
        &export::prometheus::rules_yaml(&app),
    );
    let mut tests = Vec::new();
    for rule in &all {
        let (fire, quiet) = if rule.name.fires_below() {
            (rule.threshold * (1.0 - NUDGE), rule.threshold * 0.99)
        } else {
            (rule.threshold * (1.0 + NUDGE), rule.threshold * 0.99)
        };
        tests.extend(case(&app, &all, rule, fire));
        tests.extend(case(&app, &all, rule, quiet));
    }
    assert!(tests.len() >= 2 * all.len() - 2, "{} cases", tests.len());
    let doc = json!({
        "rule_files": [rules_file],
        "evaluation_interval": "15s",
        "tests": tests,
    });
    let path = write(
        dir.path(),
        "tests.yml",
        &serde_json::to_string_pretty(&doc).unwrap(),
    );
    let out = run_ok(promtool().args(["test", "rules"]).arg(&path));
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

/// One promtool test: series that give `rule`'s alert the value `v`, and the alerts expected
/// then — every level of the same alert that `v` breaches. `None` when the rule's own window
/// makes no such case (restarts counted by whole numbers, a `for` longer than `within`).
fn case(app: &AppSpec, all: &[Rule], rule: &Rule, v: f64) -> Option<Value> {
    let a = app.instance_name();
    let route = format!("{a}:shop.example.com/api/");
    let mut series: Vec<(String, String)> = Vec::new();
    let for_ = rule.for_.as_secs();
    let mut labels: BTreeMap<&str, String> = BTreeMap::new();
    let mut value = v;
    // Evaluated once the condition has held for `for` (rates need a minute of samples).
    let mut eval = (for_ + 120).next_multiple_of(STEP);
    let steps = |secs: u64| secs / STEP + 2;
    match rule.name {
        AlertName::P95Latency => {
            let total = 1e9;
            let i = BUCKETS.iter().position(|b| v <= *b)?;
            assert!(i > 0, "threshold {v} below the first bucket");
            let (lo, hi) = (BUCKETS[i - 1], BUCKETS[i]);
            let f = (v - lo) / (hi - lo);
            let below = (0.95 * total - 0.05 * total * f).round();
            let inside = 0.05 * total;
            for (j, le) in BUCKETS.iter().enumerate() {
                let cum = if j < i { below } else { below + inside };
                series.push((
                    format!(
                        "berth_proxy_request_duration_seconds_bucket{{route=\"{route}\",service=\"web\",le=\"{le}\"}}"
                    ),
                    format!("0+{cum}x{}", steps(eval)),
                ));
            }
            series.push((
                format!(
                    "berth_proxy_request_duration_seconds_bucket{{route=\"{route}\",service=\"web\",le=\"+Inf\"}}"
                ),
                format!("0+{total}x{}", steps(eval)),
            ));
            series.push((
                format!(
                    "berth_proxy_requests_total{{route=\"{route}\",service=\"web\",class=\"2xx\"}}"
                ),
                format!("0+{total}x{}", steps(eval)),
            ));
            labels.insert("route", route.clone());
        }
        AlertName::ErrorRate => {
            let total = 1e9;
            let errors = (v * total).round();
            for (class, n) in [("5xx", errors), ("2xx", total - errors)] {
                series.push((
                    format!(
                        "berth_proxy_requests_total{{route=\"{route}\",service=\"web\",class=\"{class}\"}}"
                    ),
                    format!("0+{n}x{}", steps(eval)),
                ));
            }
            labels.insert("route", route.clone());
        }
        AlertName::Memory => {
            let inst = format!("app=\"{a}\",service=\"web\",instance=\"0\"");
            series.push((
                format!("berth_instance_memory_bytes{{{inst}}}"),
                format!("{}x{}", v * 1e9, steps(eval)),
            ));
            series.push((
                format!("berth_instance_memory_max_bytes{{{inst}}}"),
                format!("1000000000x{}", steps(eval)),
            ));
            instance_labels(&mut labels, &a);
        }
        AlertName::Restarts => {
            // Whole restarts: the threshold itself fires, one fewer does not.
            let within = rule.within.unwrap().as_secs();
            let n = if v >= rule.threshold {
                rule.threshold
            } else {
                rule.threshold - 1.0
            };
            // increase() extrapolates by at most within / (within - STEP).
            if n * within as f64 / (within - STEP) as f64 >= rule.threshold && n < rule.threshold {
                return None;
            }
            value = n;
            let jump = 300;
            // A zero sample must still be in the window at the evaluation.
            if for_ + 60 + STEP > within {
                return None;
            }
            eval = (jump + for_ + 60).next_multiple_of(STEP);
            series.push((
                format!(
                    "berth_instance_restarts_total{{app=\"{a}\",service=\"web\",instance=\"0\"}}"
                ),
                format!("0x{} {n}x{}", jump / STEP - 1, steps(eval)),
            ));
            instance_labels(&mut labels, &a);
        }
        AlertName::DiskFree => {
            let path = "path=\"/var/lib/berth\"";
            series.push((
                format!("berth_disk_free_bytes{{{path}}}"),
                format!("{}x{}", v * 1e12, steps(eval)),
            ));
            series.push((
                format!("berth_disk_size_bytes{{{path}}}"),
                format!("1000000000000x{}", steps(eval)),
            ));
            labels.insert("path", "/var/lib/berth".to_owned());
        }
        AlertName::CertExpiry => {
            // expiry - time() is `v` when `for` starts counting, and only shrinks after.
            let since = if v <= rule.threshold {
                eval - for_
            } else {
                eval
            };
            series.push((
                format!("berth_certificate_expiry_timestamp_seconds{{app=\"{a}\"}}"),
                format!("{}x{}", since as f64 + v, steps(eval)),
            ));
        }
        AlertName::BackupAge => {
            // time() - last success is `v` when `for` starts counting.
            eval = (for_ + v.ceil() as u64 + 120).next_multiple_of(STEP);
            let last = if v >= rule.threshold {
                eval as f64 - for_ as f64 - v
            } else {
                eval as f64 - v
            };
            series.push((
                format!(
                    "berth_backup_last_success_timestamp_seconds{{app=\"{a}\",backup=\"nightly\"}}"
                ),
                format!("{last}x{}", steps(eval)),
            ));
            labels.insert("backup", "nightly".to_owned());
        }
        AlertName::InstanceDown => {
            // The threshold is how long it has been down: `for` is threshold + for.
            let down = Duration::from_secs_f64(v).as_secs();
            eval = if v >= rule.threshold {
                (for_ + STEP).next_multiple_of(STEP)
            } else {
                (down.min(for_).saturating_sub(STEP)) / STEP * STEP
            };
            series.push((
                format!("berth_instance_ready{{app=\"{a}\",service=\"web\",instance=\"0\"}}"),
                format!("0x{}", steps(eval)),
            ));
            instance_labels(&mut labels, &a);
        }
    }
    if matches!(rule.name, AlertName::CertExpiry) {
        labels.insert("app", a.clone());
    }
    let expected: Vec<Value> = all
        .iter()
        .filter(|r| r.name == rule.name && r.name.breaches(value, r.threshold))
        .filter(|r| r.name != AlertName::InstanceDown || r.for_.as_secs() <= eval)
        .map(|r| {
            let mut l = labels.clone();
            l.insert("severity", r.severity.as_str().to_owned());
            l.insert("app", a.clone());
            l.insert("berth_alert", r.name.as_str().to_owned());
            let mut text = summary(app, r);
            for (k, v) in &l {
                text = text.replace(&format!("{{{{ $labels.{k} }}}}"), v);
            }
            json!({ "exp_labels": l, "exp_annotations": { "summary": text } })
        })
        .collect();
    let input: Vec<Value> = series
        .into_iter()
        .map(|(s, values)| json!({ "series": s, "values": values }))
        .collect();
    Some(json!({
        "name": format!("{} {} at {value}", rule.alertname(), rule.severity.as_str()),
        "interval": format!("{STEP}s"),
        "input_series": input,
        "alert_rule_test": [{
            "eval_time": format!("{eval}s"),
            "alertname": rule.alertname(),
            "exp_alerts": expected,
        }],
    }))
}

fn instance_labels(labels: &mut BTreeMap<&str, String>, app: &str) {
    labels.insert("app", app.to_owned());
    labels.insert("service", "web".to_owned());
    labels.insert("instance", "0".to_owned());
}
