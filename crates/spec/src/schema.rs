//! The rules of berth.toml, one function per table. Each function reports what is wrong and
//! returns what it could make of the table, so that one pass finds every problem.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{AppSpec, BuildSpec, HealthSpec, RouteTarget, Sandbox, ServiceSpec};
use crate::names::{check_env_name, check_name, check_user};
use crate::overlay;
use crate::proxy::proxy;
use crate::routes::routes;
use crate::secrets::{Defined, check_references, secrets};
use crate::walk::{
    Table, Value, Walker, backticked, did_you_mean, optional, or_default, type_name,
};

const ROOT_KEYS: &[&str] = &[
    "app",
    "build",
    "env",
    "secrets",
    "services",
    "routes",
    "proxy",
    "deploy",
    "tls",
    "databases",
    "backups",
    "alerts",
    "notify",
];
const APP_KEYS: &[&str] = &["name", "user"];
const BUILD_KEYS: &[&str] = &["command"];
const SERVICE_KEYS: &[&str] = &[
    "command",
    "instances",
    "health",
    "stop_timeout",
    "memory_max",
    "cpu_max",
    "pids_max",
    "no_new_privs",
    "private_tmp",
    "open_files",
    "processes",
    "core_dumps",
    "image",
    "autoscale",
];
const HEALTH_KEYS: &[&str] = &[
    "path",
    "interval",
    "timeout",
    "healthy_after",
    "start_deadline",
    "unhealthy_after",
];

pub(crate) fn parse(file: &str, source: &str, env: Option<&str>) -> Result<AppSpec, Diagnostics> {
    let mut diags = Diagnostics::new(file, source);
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        // The tree is a best guess after a syntax error; checking it would only add noise.
        for e in &errors {
            diags.push(syntax_error(e, source));
        }
        diags.sort();
        return Err(diags);
    }
    let mut w = Walker::new(source);
    w.top_level_keys = ROOT_KEYS;
    // The base alone, then every overlay merged into it: all environments are checked every
    // time, so a mistake in `prod` is found by `berth check` without --env too. A problem of
    // the base shows up once per document; duplicates are dropped below.
    let (base, overlays) = overlay::split(&mut w, root.get_ref());
    let names: Vec<String> = overlays.iter().map(|o| o.name.to_owned()).collect();
    let mut spec = app_spec(&mut w, &base);
    let in_base = w.diags.len();
    let mut selected = None;
    for o in &overlays {
        let merged = overlay::merge(&mut w, &base, o);
        let before = w.diags.len();
        let merged_spec = app_spec(&mut w, &merged);
        // What only the merged document has names its environment, and says so when the
        // text it points at is the base file's (the overlay made valid base settings wrong).
        let (earlier, found) = w.diags.split_at_mut(before);
        for d in found.iter_mut().filter(|d| !earlier[..in_base].contains(d)) {
            let in_overlay = d
                .span
                .as_ref()
                .is_none_or(|span| overlay::covers(o.value, span));
            d.message = if in_overlay {
                format!("{} (in environment `{}`)", d.message, o.name)
            } else {
                format!(
                    "{} (in environment `{}`: the base file is fine alone; [environments.{}] merged into it makes this wrong)",
                    d.message, o.name, o.name
                )
            };
        }
        if env == Some(o.name) {
            selected = Some(merged_spec);
        }
    }
    if let Some(env) = env {
        match selected {
            Some(s) => {
                spec = s.map(|s| AppSpec {
                    environment: Some(env.to_owned()),
                    ..s
                })
            }
            None => {
                spec = None;
                w.report(unknown_environment(env, &names));
            }
        }
    }
    if let Some(spec) = &mut spec {
        spec.environments = names;
    }
    for d in w.diags {
        if !diags.iter().any(|seen| *seen == d) {
            diags.push(d);
        }
    }
    match spec {
        Some(spec) if diags.is_empty() => Ok(spec),
        _ => {
            if diags.is_empty() {
                diags.push(Diagnostic::error(
                    "internal error: berth.toml was not understood",
                ));
            }
            diags.sort();
            Err(diags)
        }
    }
}

fn unknown_environment(env: &str, names: &[String]) -> Diagnostic {
    let d = Diagnostic::error(format!("unknown environment `{env}`"));
    if names.is_empty() {
        return d.help("berth.toml defines no [environments.NAME]; leave out --env");
    }
    let defined = backticked(names.iter().map(String::as_str));
    match did_you_mean(env, names.iter().map(String::as_str)) {
        Some(close) => d.help(format!("did you mean `{close}`? defined: {defined}")),
        None => d.help(format!("berth.toml defines {defined}")),
    }
}

fn syntax_error(e: &toml::de::Error, source: &str) -> Diagnostic {
    let span = e.span().unwrap_or(0..0);
    let message = e.message();
    if message == "duplicate key" {
        let line_start = source[..span.start.min(source.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = source[line_start..]
            .lines()
            .next()
            .unwrap_or_default()
            .trim();
        let what = if line.starts_with('[') {
            let header = line.split('#').next().unwrap_or_default().trim_end();
            format!("table {header}")
        } else {
            format!("`{}`", source.get(span.clone()).unwrap_or_default())
        };
        return Diagnostic::error(format!("invalid TOML: {what} is defined twice"))
            .at(span, "defined again here")
            .help("a key or table may appear only once; merge the two definitions");
    }
    match message.split_once(", expected ") {
        Some((what, expected)) => Diagnostic::error(format!("invalid TOML: {what}"))
            .at(span, format!("expected {expected}")),
        None => Diagnostic::error(format!("invalid TOML: {message}")).at(span, message),
    }
}

fn app_spec(w: &mut Walker<'_>, root: &DeTable<'_>) -> Option<AppSpec> {
    let root = Table {
        entries: root,
        span: 0..0,
        ctx: "",
    };
    w.known_keys(&root, ROOT_KEYS);

    let app = app(w, &root);
    let build = root.get("build").and_then(|v| build(w, v));
    let (secrets, secret_names) = root
        .get("secrets")
        .map(|v| secrets(w, v))
        .unwrap_or_default();
    let env_spanned = root.get("env").map(|v| env(w, v)).unwrap_or_default();
    let defined = Defined {
        env: &env_spanned,
        secrets: &secret_names,
    };
    check_references(w, &defined);
    let (databases, database_names) = root
        .get("databases")
        .map(|v| crate::databases::databases(w, v, &defined))
        .unwrap_or_default();
    let backups = root
        .get("backups")
        .map(|v| crate::backups::backups(w, v, &database_names, &defined))
        .unwrap_or_default();
    let alerts = root
        .get("alerts")
        .map(|v| crate::alerts::alerts(w, v))
        .unwrap_or_default();
    let notify = root
        .get("notify")
        .map(|v| crate::notify::notify(w, v, &defined))
        .unwrap_or_default();
    let env = env_spanned.into_iter().map(|(k, (v, _))| (k, v)).collect();
    let (services, service_names) = root
        .get("services")
        .map(|v| services(w, v))
        .unwrap_or_default();
    let (proxy, zones) = root.get("proxy").map(|v| proxy(w, v)).unwrap_or_default();
    let routes = root
        .get("routes")
        .map(|v| routes(w, v, &service_names, &zones))
        .unwrap_or_default();
    let deploy = root
        .get("deploy")
        .map(|v| crate::deploy::deploy(w, v, &routes))
        .unwrap_or_default();
    let tls = root.get("tls").map(|v| crate::tls::tls(w, v, &routes));

    let has_static = routes
        .iter()
        .any(|r| matches!(r.target, RouteTarget::Static { .. }));
    if service_names.is_empty() && !has_static {
        let mut d = Diagnostic::error("the app has nothing to run or serve").help(
            "add a [services.NAME] table with a `command`, or a [[routes]] entry with `static`",
        );
        if let Some(span) = app.as_ref().map(|a| a.span.clone()) {
            d = d.at(span, "no services and no static routes");
        }
        w.report(d);
    }

    let app = app?;
    Some(AppSpec {
        name: app.name,
        user: app.user,
        build,
        env,
        secrets,
        services,
        routes,
        proxy,
        deploy,
        tls: tls.flatten(),
        databases,
        backups,
        alerts,
        notify,
        environment: None,
        environments: Vec::new(),
    })
}

/// What `[app]` says, and where.
struct AppHead {
    name: String,
    user: Option<String>,
    span: Range<usize>,
}

/// `[app]`.
fn app(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Option<AppHead> {
    let Some(value) = root.get("app") else {
        w.report(
            Diagnostic::error("missing [app] table")
                .help("start the file with [app] and a line name = \"my-app\""),
        );
        return None;
    };
    let Some(t) = w.table(value, "[app]", APP_KEYS) else {
        let help = match value.get_ref() {
            DeValue::String(s) => format!("write [app] on one line and name = \"{s}\" below it"),
            _ => "write [app] on one line and name = \"my-app\" below it".to_owned(),
        };
        w.wrong_type(root, "app", value, "a table", Some(help));
        return None;
    };
    let user = optional(&t, "user", |k| w.checked(&t, k, "user", check_user));
    w.required(&t, "name", "name = \"my-app\"")?;
    let name = w.checked(&t, "name", "app name", check_name)?;
    Some(AppHead {
        name,
        user: user?,
        span: t.span,
    })
}

fn build(w: &mut Walker<'_>, value: &Value<'_>) -> Option<BuildSpec> {
    let Some(t) = w.table(value, "[build]", BUILD_KEYS) else {
        let help = match value.get_ref() {
            DeValue::String(s) => {
                format!("write [build] on one line and command = \"{s}\" below it")
            }
            _ => "write [build] on one line and command = \"...\" below it".to_owned(),
        };
        report_not_table(w, "build", value, help);
        return None;
    };
    w.required(&t, "command", "command = \"...\"")?;
    let (command, _) = w.non_empty_string(&t, "command")?;
    Some(BuildSpec {
        command: command.to_owned(),
    })
}

/// `[env]`, with the span of each value (for reference checks).
fn env(w: &mut Walker<'_>, value: &Value<'_>) -> BTreeMap<String, (String, Range<usize>)> {
    let mut env = BTreeMap::new();
    let DeValue::Table(entries) = value.get_ref() else {
        report_not_table(
            w,
            "env",
            value,
            "write [env] and one NAME = \"value\" per line".to_owned(),
        );
        return env;
    };
    for (key, value) in entries.iter() {
        let name = key.get_ref().as_ref();
        if let Err(problem) = check_env_name(name) {
            let message = format!("invalid environment variable name `{name}`");
            w.problem(message, key.span(), problem);
        }
        match value.get_ref() {
            DeValue::String(s) => {
                env.insert(name.to_owned(), (s.to_string(), value.span()));
            }
            other => {
                let raw = w.text(value.span());
                let help = match other {
                    DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                        format!("quote it: {name} = \"{raw}\"")
                    }
                    _ => "environment variables hold plain strings".to_owned(),
                };
                w.report(
                    Diagnostic::error(format!("value of `{name}` in [env] must be a string"))
                        .at(value.span(), format!("found {}", type_name(other)))
                        .help(help),
                );
            }
        }
    }
    env
}

/// `[services.NAME]`: returns the valid services and the names of all services written, so that
/// routes to a service with problems of its own are not reported twice.
fn services(w: &mut Walker<'_>, value: &Value<'_>) -> (BTreeMap<String, ServiceSpec>, Vec<String>) {
    named_tables(w, value, "service", "services", |w, value, _, ctx| {
        service(w, value, ctx)
    })
}

/// A table of named tables (`[services.NAME]`, `[databases.NAME]`, ...): each name follows
/// [`check_name`], each table is read by `each(w, value, name, ctx)` with `ctx` naming it
/// (`[services.web]`). Returns the valid entries, and the names of all entries written (so
/// that references to an entry with problems of its own are not reported twice). `what` is
/// the singular ("service"), `section` the key ("services").
pub(crate) fn named_tables<T>(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    what: &str,
    section: &str,
    mut each: impl FnMut(&mut Walker<'_>, &Value<'_>, &str, &str) -> Option<T>,
) -> (BTreeMap<String, T>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    let DeValue::Table(entries) = value.get_ref() else {
        report_not_table(
            w,
            section,
            value,
            format!("write one [{section}.NAME] table per {what}"),
        );
        return (out, names);
    };
    for (key, value) in entries.iter() {
        let name = key.get_ref().as_ref();
        names.push(name.to_owned());
        let name_ok = match check_name(name) {
            Ok(()) => true,
            Err(problem) => {
                w.problem(format!("invalid {what} name `{name}`"), key.span(), problem);
                false
            }
        };
        let ctx = format!("[{section}.{name}]");
        if let Some(entry) = each(w, value, name, &ctx)
            && name_ok
        {
            out.insert(name.to_owned(), entry);
        }
    }
    (out, names)
}

fn service(w: &mut Walker<'_>, value: &Value<'_>, ctx: &str) -> Option<ServiceSpec> {
    let t = w.named_table(value, ctx, SERVICE_KEYS, || match value.get_ref() {
        DeValue::String(s) => format!("write {ctx} on one line and command = \"{s}\" below it"),
        _ => format!("write {ctx} on one line and command = \"...\" below it"),
    })?;
    let command = w
        .required(&t, "command", "command = \"...\"")
        .and_then(|_| w.non_empty_string(&t, "command"));
    let instances = match t.get("instances") {
        Some(v) if matches!(v.get_ref(), DeValue::Integer(i) if i.as_str() == "0") => {
            w.report(
                Diagnostic::error(format!("`instances` cannot be zero{}", t.in_ctx()))
                    .at(v.span(), "must be at least 1")
                    .help("to stop running this service, remove it"),
            );
            None
        }
        Some(_) => w.int(&t, "instances", 1, ServiceSpec::MAX_INSTANCES),
        None => Some(1),
    };
    let health_ctx = format!("`health` of {ctx}");
    let health = optional(&t, "health", |_| {
        t.get("health").and_then(|v| health(w, &t, v, &health_ctx))
    });
    let stop_timeout = match t.get("stop_timeout") {
        Some(_) => w.duration(&t, "stop_timeout"),
        None => Some(ServiceSpec::DEFAULT_STOP_TIMEOUT),
    };
    let memory_max = optional(&t, "memory_max", |k| {
        let (bytes, span) = w.size(&t, k)?;
        if bytes < 1 << 20 {
            w.report(
                Diagnostic::error(format!("`memory_max` is too small{}", t.in_ctx()))
                    .at(span, "less than 1M")
                    .help("no real service runs in less than a megabyte; try \"64M\""),
            );
            return None;
        }
        Some(bytes)
    });
    let cpu_max = optional(&t, "cpu_max", |k| {
        w.unit_value(&t, k, "CPU share", "50%", crate::units::cpu_share)
    });
    let pids_max = optional(&t, "pids_max", |k| w.int(&t, k, 8, 1_000_000));
    let image = crate::kubernetes::image(w, &t);
    let autoscale = crate::kubernetes::autoscale(w, &t);
    let sandbox = sandbox(w, &t)?;
    Some(ServiceSpec {
        command: command?.0.to_owned(),
        instances: instances?,
        health: health?,
        stop_timeout: stop_timeout?,
        memory_max: memory_max?,
        cpu_max: cpu_max?,
        pids_max: pids_max?,
        sandbox,
        image: image?,
        autoscale: autoscale?,
    })
}

/// The hardening keys of a service; each defaults to [`Sandbox::default`]. `None` when a key
/// is wrong (reported).
fn sandbox(w: &mut Walker<'_>, t: &Table<'_, '_>) -> Option<Sandbox> {
    let d = Sandbox::default();
    let flag = |w: &mut Walker<'_>, key: &str, default: bool| {
        optional(t, key, |k| w.bool(t, k)).map(|v| v.unwrap_or(default))
    };
    let no_new_privs = flag(w, "no_new_privs", d.no_new_privs);
    let private_tmp = flag(w, "private_tmp", d.private_tmp);
    let core_dumps = flag(w, "core_dumps", d.core_dumps);
    let open_files =
        optional(t, "open_files", |k| w.int(t, k, 64, 1 << 20)).map(|v| v.unwrap_or(d.open_files));
    let processes =
        optional(t, "processes", |k| w.int(t, k, 16, 1 << 22)).map(|v| v.unwrap_or(d.processes));
    Some(Sandbox {
        no_new_privs: no_new_privs?,
        private_tmp: private_tmp?,
        open_files: open_files?,
        processes: processes?,
        core_dumps: core_dumps?,
    })
}

fn health(
    w: &mut Walker<'_>,
    service: &Table<'_, '_>,
    value: &Value<'_>,
    ctx: &str,
) -> Option<HealthSpec> {
    let Some(t) = w.table(value, ctx, HEALTH_KEYS) else {
        let help = match value.get_ref() {
            DeValue::String(s) => format!("write health = {{ path = \"{s}\" }}"),
            _ => "write health = { path = \"/health\" }".to_owned(),
        };
        w.wrong_type(service, "health", value, "a table", Some(help));
        return None;
    };
    let path = w
        .required(&t, "path", "path = \"/health\"")
        .and_then(|_| w.string(&t, "path"));
    let path = match path {
        Some((p, span)) if !p.starts_with('/') => {
            w.report(
                Diagnostic::error(format!("`path` must start with '/'{}", t.in_ctx()))
                    .at(span, "not an absolute path")
                    .help(format!("write \"/{p}\"")),
            );
            None
        }
        other => other.map(|(p, _)| p.to_owned()),
    };
    let interval = or_default(&t, "interval", HealthSpec::DEFAULT_INTERVAL, |k| {
        w.duration(&t, k)
    });
    let timeout = or_default(&t, "timeout", HealthSpec::DEFAULT_TIMEOUT, |k| {
        w.duration(&t, k)
    });
    let healthy_after = or_default(
        &t,
        "healthy_after",
        HealthSpec::DEFAULT_HEALTHY_AFTER,
        |k| w.int(&t, k, 1, u32::MAX),
    );
    let unhealthy_after = or_default(
        &t,
        "unhealthy_after",
        HealthSpec::DEFAULT_UNHEALTHY_AFTER,
        |k| w.int(&t, k, 1, u32::MAX),
    );
    let start_deadline = or_default(
        &t,
        "start_deadline",
        HealthSpec::DEFAULT_START_DEADLINE,
        |k| w.duration(&t, k),
    );
    if let (Some(interval), Some(timeout)) = (interval, timeout)
        && timeout > interval
    {
        let span = t
            .get("timeout")
            .or(t.get("interval"))
            .map_or(t.span.clone(), |v| v.span());
        w.report(
                Diagnostic::error(format!("`timeout` is longer than `interval`{}", t.in_ctx()))
                    .at(span, format!("{timeout:?} > {interval:?}"))
                    .help("a probe must finish before the next one starts: make `timeout` at most `interval`"),
            );
        return None;
    }
    Some(HealthSpec {
        path: path?,
        interval: interval?,
        timeout: timeout?,
        healthy_after: healthy_after?,
        start_deadline: start_deadline?,
        unhealthy_after: unhealthy_after?,
    })
}

pub(crate) fn report_not_table(w: &mut Walker<'_>, key: &str, value: &Value<'_>, help: String) {
    w.report(
        Diagnostic::error(format!("`{key}` must be a table"))
            .at(
                value.span(),
                format!("found {}", type_name(value.get_ref())),
            )
            .help(help),
    );
}
