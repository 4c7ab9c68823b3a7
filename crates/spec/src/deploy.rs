//! `[deploy]`: the gates a rollout must pass after the switch, and how many releases to keep.

use toml::de::DeValue;

use crate::diagnostic::Diagnostic;
use crate::model::{DeploySpec, SmokeCheck};
use crate::walk::{Value, Walker, type_name};

const DEPLOY_KEYS: &[&str] = &["smoke", "watch", "max_error_rate", "keep_releases", "drain"];
const SMOKE_KEYS: &[&str] = &["path", "status"];

pub(crate) fn deploy(w: &mut Walker<'_>, value: &Value<'_>) -> DeploySpec {
    let defaults = DeploySpec::default();
    let Some(t) = w.table(value, "[deploy]", DEPLOY_KEYS) else {
        w.report(
            Diagnostic::error("`deploy` must be a table")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help("write [deploy] and one setting per line"),
        );
        return defaults;
    };
    let watch = w.duration(&t, "watch");
    let max_error_rate = w
        .percent(&t, "max_error_rate")
        .unwrap_or(defaults.max_error_rate);
    if let Some((key, _)) = t.entry("max_error_rate")
        && t.get("watch").is_none()
    {
        w.report(
            Diagnostic::error("`max_error_rate` without `watch` in [deploy]")
                .at(key, "judged only during the watch window")
                .help("add watch = \"30s\": the new release's 5xx share is watched for that long after the switch"),
        );
    }
    let keep_releases = w
        .int(&t, "keep_releases", 1, 100)
        .unwrap_or(defaults.keep_releases);
    let drain = match w.duration(&t, "drain") {
        Some(d) if d > DeploySpec::MAX_DRAIN => {
            if let Some((_, value)) = t.entry("drain") {
                w.report(
                    Diagnostic::error("`drain` in [deploy] is longer than 1h")
                        .at(value.span(), "at most \"1h\"")
                        .help("connections that must live longer should reconnect: WebSocket clients get a close frame (1001) when the drain ends"),
                );
            }
            defaults.drain
        }
        Some(d) => d,
        None => defaults.drain,
    };
    let mut smoke = Vec::new();
    if let Some(list) = t.get("smoke") {
        match list.get_ref() {
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ctx = format!("[deploy] smoke #{}", i + 1);
                    let Some(check) = w.table(item, &ctx, SMOKE_KEYS) else {
                        w.report(
                            Diagnostic::error("each smoke check must be a table")
                                .at(item.span(), format!("found {}", type_name(item.get_ref())))
                                .help("smoke = [{ path = \"/\", status = 200 }]"),
                        );
                        continue;
                    };
                    let path = match w.required(&check, "path", "path = \"/\"") {
                        Some(_) => match w.string(&check, "path") {
                            Some((p, span)) if !p.starts_with('/') => {
                                w.report(
                                    Diagnostic::error(format!(
                                        "smoke check path must start with `/`{}",
                                        check.in_ctx()
                                    ))
                                    .at(span, format!("try \"/{p}\"")),
                                );
                                continue;
                            }
                            Some((p, _)) => p.to_owned(),
                            None => continue,
                        },
                        None => continue,
                    };
                    let status = w.int(&check, "status", 100, 599).unwrap_or(200) as u16;
                    smoke.push(SmokeCheck { path, status });
                }
            }
            other => w.report(
                Diagnostic::error("`smoke` must be an array of checks")
                    .at(list.span(), format!("found {}", type_name(other)))
                    .help("smoke = [{ path = \"/\", status = 200 }]"),
            ),
        }
    }
    DeploySpec {
        smoke,
        watch,
        max_error_rate,
        keep_releases,
        drain,
    }
}
