//! `[deploy]`: the gates a rollout must pass (smoke checks before the switch, canary steps,
//! the watch window after it), how long the replaced release stays warm, and how many
//! releases to keep.

use toml::de::DeValue;

use crate::diagnostic::Diagnostic;
use std::time::Duration;

use crate::model::RouteSpec;
use crate::walk::{Table, Value, Walker, type_name};

/// `[deploy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploySpec {
    /// `smoke = [{ path = "/", status = 200 }]`: requests sent through the new release's own
    /// routes before the switch, where no client can reach them; any other answer refuses it.
    pub smoke: Vec<SmokeCheck>,
    /// `watch = "30s"`: after the switch, a crash of the new release within this window, or
    /// too many 5xx in any sliding [`DeploySpec::WATCH_WINDOW`] of it, rolls back. None: no
    /// watch window.
    pub watch: Option<Duration>,
    /// `max_error_rate = "5%"`: the share of 5xx answers the new release may give (once
    /// [`DeploySpec::ERROR_RATE_MIN_REQUESTS`] requests have been answered), or twice the
    /// previous release's own share when that is higher. A fraction in (0, 1]; default 10%.
    pub max_error_rate: f64,
    /// `keep_releases = 5`: release trees kept on disk for rollback (1..=100).
    pub keep_releases: u32,
    /// `drain = "30s"`: how long the release this deploy replaces may finish its requests and
    /// WebSockets (in the background, after the deploy returns) before it is stopped; its
    /// WebSockets get a close frame (1001) when the time is up. At most 1h.
    pub drain: Duration,
    /// `standby = "10m"`: the replaced release's routed instances keep running, out of the
    /// route table, for this long after the switch; a rollback within it is a route swap.
    /// At most 24h.
    pub standby: Option<Duration>,
    /// `canary = ["5%", "25%", "100%"]`: shares of clients the new release gets before it takes
    /// all traffic, each held for `step` and judged like the watch window. Strictly increasing
    /// fractions in (0, 1], the last one 1. Empty: the switch is at once.
    pub canary: Vec<f64>,
    /// `step`: how long each canary share is held.
    pub step: Option<CanaryStep>,
}

/// How long a canary step lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CanaryStep {
    /// `step = "1m"`.
    Time(Duration),
    /// `step = 500`: until the new release has answered this many requests within the step
    /// (at most [`DeploySpec::MAX_CANARY_STEP`]).
    Requests(u32),
}

impl Default for DeploySpec {
    fn default() -> Self {
        DeploySpec {
            smoke: Vec::new(),
            watch: None,
            max_error_rate: 0.10,
            keep_releases: 5,
            drain: Duration::from_secs(30),
            standby: None,
            canary: Vec::new(),
            step: None,
        }
    }
}

impl DeploySpec {
    /// Answers the new release must have given before its error rate is judged, so that one
    /// early 5xx does not count as 100%.
    pub const ERROR_RATE_MIN_REQUESTS: u64 = 20;
    /// The sliding window the watch judges the error rate over, so a release that turns bad
    /// late in a long window is not diluted by its good start.
    pub const WATCH_WINDOW: Duration = Duration::from_secs(10);
    /// The longest `drain`.
    pub const MAX_DRAIN: Duration = Duration::from_secs(3600);
    /// The longest `standby`.
    pub const MAX_STANDBY: Duration = Duration::from_secs(24 * 3600);
    /// The longest a canary step waits for its request count.
    pub const MAX_CANARY_STEP: Duration = Duration::from_secs(3600);
}

#[derive(Debug, Clone, PartialEq)]
pub struct SmokeCheck {
    /// Path requested.
    pub path: String,
    /// Status expected (default 200).
    pub status: u16,
    /// `host = "www.example.com"`: the `Host` (and TLS name) of the request; one of the app's
    /// routes must serve it. None: see [`crate::AppSpec::smoke_host`].
    pub host: Option<String>,
}

/// The host a smoke check is sent with, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum SmokeHost {
    /// The check's own `host`.
    Given(String),
    /// The app's first route with an exact host.
    Route(String),
    /// A name under the app's first wildcard route (`www.example.com` for `*.example.com`):
    /// no route has an exact host and the check names none. `berth check` warns.
    UnderWildcard { host: String, pattern: String },
    /// Every route answers any host (`*`): `localhost`.
    Any,
}

impl SmokeHost {
    pub fn name(&self) -> &str {
        match self {
            SmokeHost::Given(h)
            | SmokeHost::Route(h)
            | SmokeHost::UnderWildcard { host: h, .. } => h,
            SmokeHost::Any => "localhost",
        }
    }
}

const DEPLOY_KEYS: &[&str] = &[
    "smoke",
    "watch",
    "max_error_rate",
    "keep_releases",
    "drain",
    "standby",
    "canary",
    "step",
];
const SMOKE_KEYS: &[&str] = &["path", "status", "host"];

pub(crate) fn deploy(w: &mut Walker<'_>, value: &Value<'_>, routes: &[RouteSpec]) -> DeploySpec {
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
        && t.get("canary").is_none()
    {
        w.report(
            Diagnostic::error("`max_error_rate` without `watch` or `canary` in [deploy]")
                .at(key, "judged only during the watch window and canary steps")
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
                    let host = smoke_host(w, &check, routes);
                    smoke.push(SmokeCheck { path, status, host });
                }
            }
            other => w.report(
                Diagnostic::error("`smoke` must be an array of checks")
                    .at(list.span(), format!("found {}", type_name(other)))
                    .help("smoke = [{ path = \"/\", status = 200 }]"),
            ),
        }
    }
    let standby = match w.duration(&t, "standby") {
        Some(d) if d > DeploySpec::MAX_STANDBY => {
            if let Some((_, value)) = t.entry("standby") {
                w.report(
                    Diagnostic::error("`standby` in [deploy] is longer than 24h")
                        .at(value.span(), "at most \"24h\"")
                        .help("a rollback after that starts the old release again, as without standby"),
                );
            }
            None
        }
        other => other,
    };
    let (canary, step) = canary(w, &t);
    DeploySpec {
        smoke,
        watch,
        max_error_rate,
        keep_releases,
        drain,
        standby,
        canary,
        step,
    }
}

/// A smoke check's `host`: a concrete name (no wildcard) that one of the app's routes serves.
fn smoke_host(w: &mut Walker<'_>, check: &Table<'_, '_>, routes: &[RouteSpec]) -> Option<String> {
    let host = w.checked(check, "host", "host", crate::routes::check_host)?;
    let (_, value) = check.entry("host")?;
    let span = value.span();
    if host.contains('*') {
        w.report(
            Diagnostic::error(format!(
                "a smoke check needs a concrete host{}",
                check.in_ctx()
            ))
            .at(span.clone(), "a pattern, not a name")
            .help(format!(
                "write a name the route answers, e.g. \"www.{}\"",
                host.trim_start_matches("*.").trim_start_matches('*')
            )),
        );
        return None;
    }
    let served = routes.iter().any(|r| match r.host.strip_prefix('*') {
        None => r.host == host,
        Some("") => true,
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
    });
    if !served {
        let hosts: Vec<&str> = routes.iter().map(|r| r.host.as_str()).collect();
        w.report(
            Diagnostic::error(format!(
                "no route of the app serves host `{host}`{}",
                check.in_ctx()
            ))
            .at(span.clone(), "the smoke check would find no route")
            .help(format!("use a host of [[routes]]: {}", hosts.join(", "))),
        );
        return None;
    }
    Some(host)
}

/// `canary = ["5%", "25%", "100%"]` and its `step`.
fn canary(w: &mut Walker<'_>, t: &Table<'_, '_>) -> (Vec<f64>, Option<CanaryStep>) {
    const EXAMPLE: &str = "canary = [\"5%\", \"25%\", \"100%\"]";
    let step = t.get("step").and_then(|value| match value.get_ref() {
        DeValue::Integer(_) => w.int(t, "step", 1, 1_000_000).map(CanaryStep::Requests),
        _ => w.duration(t, "step").map(CanaryStep::Time),
    });
    let Some(list) = t.get("canary") else {
        if let Some((key, _)) = t.entry("step") {
            w.report(
                Diagnostic::error("`step` without `canary` in [deploy]")
                    .at(key, "the length of each canary step")
                    .help(format!("add {EXAMPLE}, or remove `step`")),
            );
        }
        return (Vec::new(), None);
    };
    let DeValue::Array(items) = list.get_ref() else {
        w.report(
            Diagnostic::error("`canary` must be an array of percentages")
                .at(list.span(), format!("found {}", type_name(list.get_ref())))
                .help(EXAMPLE),
        );
        return (Vec::new(), None);
    };
    let mut shares: Vec<f64> = Vec::new();
    let mut all_read = true;
    for item in items {
        let parsed = match item.get_ref() {
            DeValue::String(s) => crate::units::percent(s).map_err(|e| (e.problem, e.help)),
            other => Err((
                format!("found {}", type_name(other)),
                Some(EXAMPLE.to_owned()),
            )),
        };
        match parsed {
            Ok(p) if shares.last().is_some_and(|&last| p <= last) => w.report(
                Diagnostic::error("canary shares must grow step by step in [deploy]")
                    .at(item.span(), "not above the share before it")
                    .help(EXAMPLE),
            ),
            Ok(p) => shares.push(p),
            Err((label, help)) => {
                all_read = false;
                let mut d = Diagnostic::error("invalid share in `canary` in [deploy]")
                    .at(item.span(), label);
                if let Some(help) = help {
                    d = d.help(help);
                }
                w.report(d);
            }
        }
    }
    if all_read && shares.last().is_some_and(|&last| last < 1.0) {
        w.report(
            Diagnostic::error("the last canary share must be \"100%\" in [deploy]")
                .at(list.span(), "the new release never takes all traffic")
                .help("end the list with \"100%\": that step is the switch"),
        );
    }
    if shares.is_empty() && !items.is_empty() {
        return (Vec::new(), None);
    }
    if step.is_none() && t.get("step").is_none() {
        w.report(
            Diagnostic::error("`canary` without `step` in [deploy]")
                .at(list.span(), "how long is each share held?")
                .help("add step = \"1m\" (a time) or step = 500 (requests to the new release)"),
        );
    }
    (shares, step)
}
