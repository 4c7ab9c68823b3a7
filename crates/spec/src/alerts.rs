//! `[alerts]`: the thresholds the daemon watches for an app, merged over the defaults
//! ([`AlertName::default_rule`]) alert by alert and field by field, so that a table left out,
//! an alert left out and a field left out all mean "the default".
//!
//! Each alert's thresholds are written in its own unit: a duration (`p95_latency`,
//! `cert_expiry`, `backup_age`, `instance_down`), a percentage (`error_rate`, `memory`,
//! `disk_free`) or a count (`restarts`); `warn = false` or `critical = false` drops one level,
//! `NAME = false` the whole alert. The model holds them in base units (seconds, fractions).

use std::time::Duration;

use toml::de::DeValue;

use crate::diagnostic::Diagnostic;
use crate::observe_model::{AlertName, AlertRule, AlertsSpec};
use crate::schema::report_not_table;
use crate::units::{self, format_duration};
use crate::walk::{Table, Value, Walker, or_default};

const RULE_KEYS: &[&str] = &["warn", "critical", "for", "within"];
/// The most restarts a threshold may count.
const MAX_RESTARTS: u32 = 100_000;

/// How an alert's thresholds are written.
#[derive(Clone, Copy, PartialEq)]
enum Measure {
    /// `"500ms"`, `"30d"`: held in seconds.
    Duration,
    /// `"5%"`: held as a fraction.
    Share,
    /// `3`: a whole number.
    Count,
}

fn measure(name: AlertName) -> Measure {
    match name {
        AlertName::P95Latency
        | AlertName::CertExpiry
        | AlertName::BackupAge
        | AlertName::InstanceDown => Measure::Duration,
        AlertName::ErrorRate | AlertName::Memory | AlertName::DiskFree => Measure::Share,
        AlertName::Restarts => Measure::Count,
    }
}

/// A threshold as berth.toml writes it: `"500ms"`, `"5%"`, `3`.
fn show(m: Measure, value: f64) -> String {
    match m {
        Measure::Duration => {
            format!(
                "\"{}\"",
                format_duration(Duration::from_secs_f64(value.max(0.0)))
            )
        }
        Measure::Share => {
            let percent = format!("{:.4}", value * 100.0);
            format!(
                "\"{}%\"",
                percent.trim_end_matches('0').trim_end_matches('.')
            )
        }
        Measure::Count => format!("{value}"),
    }
}

/// `NAME = { warn = ..., critical = ..., for = ... }` with the defaults of `name`.
fn example(name: AlertName) -> String {
    let d = name.default_rule();
    let m = measure(name);
    let mut fields = Vec::new();
    if let Some(v) = d.warn {
        fields.push(format!("warn = {}", show(m, v)));
    }
    if let Some(v) = d.critical {
        fields.push(format!("critical = {}", show(m, v)));
    }
    if !d.for_.is_zero() {
        fields.push(format!("for = \"{}\"", format_duration(d.for_)));
    }
    if let Some(within) = d.within {
        fields.push(format!("within = \"{}\"", format_duration(within)));
    }
    format!("{name} = {{ {} }}", fields.join(", "))
}

/// `KEY = VALUE` for a threshold of `name`: the default of `key`, else the other level's.
fn example_field(name: AlertName, key: &str) -> String {
    let d = name.default_rule();
    let value = if key == "warn" {
        d.warn.or(d.critical)
    } else {
        d.critical.or(d.warn)
    };
    format!("{key} = {}", show(measure(name), value.unwrap_or(1.0)))
}

/// `[alerts]`: the defaults, overridden by what the table says. An alert with problems
/// (reported) keeps its default.
pub(crate) fn alerts(w: &mut Walker<'_>, value: &Value<'_>) -> AlertsSpec {
    let mut spec = AlertsSpec::default();
    let mut allowed: Vec<&str> = AlertName::ALL.iter().map(|a| a.as_str()).collect();
    allowed.push("repeat");
    let Some(t) = w.table(value, "[alerts]", &allowed) else {
        report_not_table(
            w,
            "alerts",
            value,
            format!(
                "write [alerts] and below it one alert per line, e.g. {}",
                example(AlertName::P95Latency)
            ),
        );
        return spec;
    };
    for name in AlertName::ALL {
        if let Some(value) = t.get(name.as_str())
            && let Some(rule) = rule(w, &t, name, value)
        {
            spec.rules.insert(name, rule);
        }
    }
    if let Some(repeat) = repeat(w, &t) {
        spec.repeat = repeat;
    }
    spec
}

/// `repeat = "4h"`: at least [`AlertsSpec::MIN_REPEAT`]. `None` when absent or wrong.
fn repeat(w: &mut Walker<'_>, t: &Table<'_, '_>) -> Option<Duration> {
    let value = t.get("repeat")?;
    let repeat = w.duration(t, "repeat")?;
    if repeat < AlertsSpec::MIN_REPEAT {
        w.report(
            Diagnostic::error("`repeat` in [alerts] is shorter than a minute")
                .at(value.span(), "must be at least 1m")
                .help(
                    "a firing alert is sent again every `repeat`; more often than once a minute floods the channels. Leave it out for 4h",
                ),
        );
        return None;
    }
    Some(repeat)
}

/// One alert: `false` or `true`, or a table of the fields to change.
fn rule(
    w: &mut Walker<'_>,
    alerts: &Table<'_, '_>,
    name: AlertName,
    value: &Value<'_>,
) -> Option<AlertRule> {
    let default = name.default_rule();
    let ctx = format!("`{name}` of [alerts]");
    let t = match value.get_ref() {
        DeValue::Boolean(enabled) => {
            return Some(AlertRule {
                enabled: *enabled,
                ..default
            });
        }
        DeValue::Table(_) => w.table(value, &ctx, RULE_KEYS)?,
        _ => {
            let help = format!("write {}, or {name} = false to turn it off", example(name));
            w.wrong_type(
                alerts,
                name.as_str(),
                value,
                "a table or `false`",
                Some(help),
            );
            return None;
        }
    };
    let warn = level(w, &t, name, "warn", default.warn);
    let critical = level(w, &t, name, "critical", default.critical);
    let for_ = or_default(&t, "for", default.for_, |k| {
        w.unit_value(&t, k, "duration", "5m", units::duration)
    });
    let within = match t.entry("within") {
        None => Some(default.within),
        Some((key_span, _)) if name != AlertName::Restarts => {
            w.report(
                Diagnostic::error(format!("`within` is not a key of {ctx}"))
                    .at(key_span, "only `restarts` counts within a window")
                    .help(format!(
                        "`for = \"5m\"` makes {name} fire only once its value has stayed past a threshold that long"
                    )),
            );
            None
        }
        Some(_) => w.duration(&t, "within").map(Some),
    };
    let (warn, critical, for_, within) = (warn?, critical?, for_?, within?);
    match (warn, critical) {
        (None, None) => {
            w.report(
                Diagnostic::error(format!("{ctx} has neither `warn` nor `critical`"))
                    .at(t.span.clone(), "nothing left to fire")
                    .help(format!(
                        "keep one of the levels, or turn the alert off with {name} = false"
                    )),
            );
            return None;
        }
        (Some(warn), Some(critical)) if !milder(name, warn, critical) => {
            order_problem(w, &t, name, warn, critical);
            return None;
        }
        _ => {}
    }
    Some(AlertRule {
        warn,
        critical,
        for_,
        within,
        enabled: true,
    })
}

/// Whether `warn` comes before `critical` as the value worsens.
fn milder(name: AlertName, warn: f64, critical: f64) -> bool {
    if name.fires_below() {
        warn > critical
    } else {
        warn < critical
    }
}

fn order_problem(w: &mut Walker<'_>, t: &Table<'_, '_>, name: AlertName, warn: f64, critical: f64) {
    let m = measure(name);
    let (should, direction, other) = if name.fires_below() {
        ("higher", "falls below", "lower")
    } else {
        ("lower", "rises above", "higher")
    };
    let default = |key| {
        if t.get(key).is_some() {
            ""
        } else {
            " (the default)"
        }
    };
    let defaults = match name.default_rule() {
        AlertRule {
            warn: Some(warn),
            critical: Some(critical),
            ..
        } => format!(
            " (by default warn = {}, critical = {})",
            show(m, warn),
            show(m, critical)
        ),
        _ => String::new(),
    };
    let span = t
        .get("warn")
        .or(t.get("critical"))
        .map_or(t.span.clone(), |v| v.span());
    w.report(
        Diagnostic::error(format!(
            "`warn` must be {should} than `critical`{}",
            t.in_ctx()
        ))
        .at(
            span,
            format!(
                "warn {}{} is not {should} than critical {}{}",
                show(m, warn),
                default("warn"),
                show(m, critical),
                default("critical")
            ),
        )
        .help(format!(
            "{name} fires when its value {direction} a threshold: `warn` is the earlier alarm, the {should} threshold; `critical` the {other} one{defaults}"
        )),
    );
}

/// `warn` or `critical`: a threshold, or `false` for none. `Some(default)` when absent.
fn level(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    name: AlertName,
    key: &str,
    default: Option<f64>,
) -> Option<Option<f64>> {
    let Some(value) = t.get(key) else {
        return Some(default);
    };
    match value.get_ref() {
        DeValue::Boolean(false) => Some(None),
        DeValue::Boolean(true) => {
            w.report(
                Diagnostic::error(format!("`{key} = true`{}", t.in_ctx()))
                    .at(value.span(), "a threshold, or `false` for none")
                    .help(format!(
                        "write a threshold, e.g. {}, or leave `{key}` out for the default",
                        example_field(name, key)
                    )),
            );
            None
        }
        _ => threshold(w, t, name, key).map(Some),
    }
}

/// A threshold in the unit of `name`, converted to the model's.
fn threshold(w: &mut Walker<'_>, t: &Table<'_, '_>, name: AlertName, key: &str) -> Option<f64> {
    let value = t.get(key)?;
    let m = measure(name);
    let unit = match m {
        Measure::Duration => "durations",
        Measure::Share => "percentages",
        Measure::Count => "whole numbers of restarts",
    };
    let help = format!(
        "{name} thresholds are {unit}, e.g. {}",
        example_field(name, key)
    );
    let invalid = |w: &mut Walker<'_>, label: String, help: String| {
        w.report(
            Diagnostic::error(format!("invalid `{key}`{}", t.in_ctx()))
                .at(value.span(), label)
                .help(help),
        );
        None
    };
    match (m, value.get_ref()) {
        (Measure::Count, DeValue::Integer(_)) => w.int(t, key, 1, MAX_RESTARTS).map(f64::from),
        (Measure::Count, DeValue::String(s)) if s.trim().parse::<i64>().is_ok() => {
            w.int(t, key, 1, MAX_RESTARTS).map(f64::from)
        }
        (Measure::Duration, DeValue::String(s)) => match units::duration(s) {
            Ok(d) if d.is_zero() => invalid(w, "must be longer than zero".to_owned(), help),
            Ok(d) => Some(d.as_secs_f64()),
            Err(_) if units::percent(s).is_ok() => {
                invalid(w, "a percentage, not a duration".to_owned(), help)
            }
            Err(e) => {
                // Keep the parser's own correction ("write \"1500ms\""), else say the unit.
                let help = e.help.filter(|h| h.starts_with("write \"")).unwrap_or(help);
                invalid(w, e.problem, help)
            }
        },
        (Measure::Share, DeValue::String(s)) => match units::percent(s) {
            Ok(p) => Some(p),
            Err(_) if units::duration(s).is_ok_and(|d| !d.is_zero()) => {
                invalid(w, "a duration, not a percentage".to_owned(), help)
            }
            Err(e) => {
                // Keep the parser's correction for a missing `%` ("write a percentage, e.g.
                // \"30%\""), else say the unit.
                let help = e
                    .help
                    .filter(|_| e.problem.starts_with("missing"))
                    .unwrap_or(help);
                invalid(w, e.problem, help)
            }
        },
        (Measure::Share, DeValue::Integer(_) | DeValue::Float(_)) => {
            let raw = w.text(value.span());
            // A fraction (0.05) was most likely meant as one.
            let percent = match raw.parse::<f64>() {
                Ok(f) if f > 0.0 && f < 1.0 => show(m, f),
                _ => format!("\"{raw}%\""),
            };
            let help = format!("write it as a percentage: {key} = {percent}");
            w.wrong_type(t, key, value, "a percentage string", Some(help));
            None
        }
        (Measure::Duration, _) => {
            w.wrong_type(t, key, value, "a duration string", Some(help));
            None
        }
        (Measure::Share, _) => {
            w.wrong_type(t, key, value, "a percentage string", Some(help));
            None
        }
        (Measure::Count, _) => {
            w.wrong_type(t, key, value, "a whole number", Some(help));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppSpec;

    const APP: &str = "[app]\nname = \"shop\"\n[services.web]\ncommand = \"run\"\n";

    fn parse(alerts: &str) -> AppSpec {
        let source = format!("{APP}{alerts}");
        crate::parse("berth.toml", &source).unwrap_or_else(|d| panic!("{d}"))
    }

    fn rule(app: &AppSpec, name: AlertName) -> AlertRule {
        app.alerts.rules[&name].clone()
    }

    #[test]
    fn defaults_when_the_table_is_absent() {
        let app = parse("");
        assert_eq!(app.alerts, AlertsSpec::default());
        assert_eq!(app.alerts.rules.len(), AlertName::ALL.len());
        assert_eq!(app.alerts.repeat, Duration::from_secs(4 * 3600));
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let expected = [
            (AlertName::P95Latency, Some(0.5), Some(1.0), minutes(5)),
            (AlertName::ErrorRate, Some(0.01), Some(0.05), minutes(5)),
            (AlertName::Memory, Some(0.8), Some(0.95), minutes(5)),
            (AlertName::Restarts, Some(3.0), Some(10.0), Duration::ZERO),
            (AlertName::DiskFree, Some(0.2), Some(0.1), Duration::ZERO),
            (
                AlertName::CertExpiry,
                Some(30.0 * 86_400.0),
                Some(7.0 * 86_400.0),
                Duration::ZERO,
            ),
            (AlertName::BackupAge, None, Some(93_600.0), Duration::ZERO),
            (AlertName::InstanceDown, None, Some(60.0), Duration::ZERO),
        ];
        for (name, warn, critical, for_) in expected {
            let r = rule(&app, name);
            assert_eq!(
                (r.warn, r.critical, r.for_),
                (warn, critical, for_),
                "{name}"
            );
            assert!(r.enabled, "{name}");
            let within = (name == AlertName::Restarts).then_some(minutes(15));
            assert_eq!(r.within, within, "{name}");
        }
        // An empty table is the defaults too.
        assert_eq!(parse("[alerts]\n").alerts, AlertsSpec::default());
    }

    #[test]
    fn the_defaults_read_back_as_written() {
        let written: Vec<String> = AlertName::ALL.into_iter().map(example).collect();
        assert_eq!(
            written,
            [
                r#"p95_latency = { warn = "500ms", critical = "1s", for = "5m" }"#,
                r#"error_rate = { warn = "1%", critical = "5%", for = "5m" }"#,
                r#"memory = { warn = "80%", critical = "95%", for = "5m" }"#,
                r#"restarts = { warn = 3, critical = 10, within = "15m" }"#,
                r#"disk_free = { warn = "20%", critical = "10%" }"#,
                r#"cert_expiry = { warn = "30d", critical = "7d" }"#,
                r#"backup_age = { critical = "26h" }"#,
                r#"instance_down = { critical = "1m" }"#,
            ]
        );
        // Writing the defaults out gives the defaults.
        let app = parse(&format!("[alerts]\n{}\n", written.join("\n")));
        assert_eq!(app.alerts, AlertsSpec::default());
    }

    #[test]
    fn a_partial_table_overrides_only_what_it_says() {
        let app = parse(
            "[alerts]\np95_latency = { critical = \"2s\" }\ndisk_free = { warn = false }\nmemory = false\nrepeat = \"30m\"\n",
        );
        let p95 = rule(&app, AlertName::P95Latency);
        assert_eq!(p95.critical, Some(2.0));
        assert_eq!(p95.warn, Some(0.5), "warn stays");
        assert_eq!(p95.for_, Duration::from_secs(300), "for stays");
        let disk = rule(&app, AlertName::DiskFree);
        assert_eq!((disk.warn, disk.critical), (None, Some(0.1)));
        assert!(!rule(&app, AlertName::Memory).enabled);
        assert_eq!(app.alerts.repeat, Duration::from_secs(1800));
        // Every other alert keeps its default.
        for name in [
            AlertName::ErrorRate,
            AlertName::Restarts,
            AlertName::CertExpiry,
            AlertName::BackupAge,
            AlertName::InstanceDown,
        ] {
            assert_eq!(rule(&app, name), name.default_rule(), "{name}");
        }
    }

    #[test]
    fn direction() {
        assert!(AlertName::DiskFree.breaches(0.05, 0.1));
        assert!(!AlertName::DiskFree.breaches(0.5, 0.1));
        assert!(AlertName::Restarts.breaches(3.0, 3.0));
        assert!(!AlertName::P95Latency.breaches(0.4, 0.5));
        for name in AlertName::ALL {
            let d = name.default_rule();
            if let (Some(warn), Some(critical)) = (d.warn, d.critical) {
                assert!(milder(name, warn, critical), "{name}");
            }
            assert_eq!(name.as_str().parse(), Ok(name));
        }
    }

    #[test]
    fn thresholds_shown_as_written() {
        assert_eq!(show(Measure::Share, 0.07), "\"7%\"");
        assert_eq!(show(Measure::Share, 0.005), "\"0.5%\"");
        assert_eq!(show(Measure::Duration, 0.25), "\"250ms\"");
        assert_eq!(show(Measure::Duration, 93_600.0), "\"26h\"");
        assert_eq!(show(Measure::Count, 10.0), "10");
    }
}
