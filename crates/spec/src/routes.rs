//! `[[routes]]`: which requests go where. Checks each route on its own (host, path, target),
//! then the set of routes (no two with the same host and path).

use std::collections::HashMap;

use toml::de::DeValue;

use crate::cache;
use crate::diagnostic::Diagnostic;
use crate::model::{RouteSpec, RouteTarget, SourceSpan};
use crate::proxy;
use crate::walk::{
    Problem, Table, Value, Walker, backticked, did_you_mean, optional, or_default, type_name,
};

const ROUTE_KEYS: &[&str] = &[
    "host",
    "path",
    "service",
    "static",
    "spa",
    "strip_prefix",
    "max_body",
    "rate_limit",
    "headers",
    "set_headers",
    "force_headers",
    "cache_control",
];

/// `zones`: the names of all rate-limit zones written in [proxy].
pub(crate) fn routes(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    services: &[String],
    zones: &[String],
) -> Vec<RouteSpec> {
    let mut out = Vec::new();
    let DeValue::Array(items) = value.get_ref() else {
        w.report(
            Diagnostic::error("`routes` must be an array of tables")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help("write [[routes]] (with double brackets) above each route"),
        );
        return out;
    };
    // (host, path) → line of the first route with them.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let ctx = format!("[[routes]] #{}", i + 1);
        let Some(t) = w.table(item, &ctx, ROUTE_KEYS) else {
            w.report(
                Diagnostic::error("each route must be a table")
                    .at(item.span(), format!("found {}", type_name(item.get_ref())))
                    .help("write [[routes]] tables, or routes = [{ path = \"/\", service = \"web\" }]"),
            );
            continue;
        };
        let Some(route) = route(w, &t, services, zones) else {
            continue;
        };
        let key = (route.host.clone(), route.path.clone());
        let line = w.text(0..t.span.start).matches('\n').count() + 1;
        if let Some(first) = seen.get(&key) {
            let span = t
                .get("path")
                .or(t.get("host"))
                .map_or(t.span.clone(), |v| v.span());
            let message = format!(
                "duplicate route for host `{}` and path `{}`",
                route.host, route.path
            );
            w.report(
                Diagnostic::error(message)
                    .at(
                        span,
                        format!("same host and path as the route at line {first}"),
                    )
                    .help("remove one of them, or change its `host` or `path`"),
            );
            continue;
        }
        seen.insert(key, line);
        out.push(route);
    }
    out
}

fn route(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    services: &[String],
    zones: &[String],
) -> Option<RouteSpec> {
    let host = or_default(t, "host", "*".to_owned(), |k| {
        w.checked(t, k, "host", check_host)
    });
    let path = or_default(t, "path", "/".to_owned(), |k| {
        w.checked(t, k, "path", check_path)
    });
    let strip_prefix = or_default(t, "strip_prefix", false, |k| w.bool(t, k));
    let max_body = optional(t, "max_body", |k| w.size(t, k).map(|(b, _)| b));
    let target = route_target(w, t, services);
    let rate_limit = optional(t, "rate_limit", |_| proxy::zone_ref(w, t, zones));
    let headers = optional(t, "headers", |k| proxy::preset(w, t, k));
    let set_headers_ctx = format!("`set_headers` of {}", t.ctx);
    let set_headers = proxy::set_headers(w, t, &set_headers_ctx);
    let force_headers = or_default(t, "force_headers", false, |k| w.bool(t, k));
    let cache_control = cache::cache_control(w, t);
    Some(RouteSpec {
        host: host?,
        path: path?,
        target: target?,
        strip_prefix: strip_prefix?,
        max_body: max_body?,
        rate_limit: rate_limit?,
        headers: headers?,
        set_headers,
        force_headers: force_headers?,
        cache_control: cache_control?,
        span: SourceSpan(t.span.clone()),
    })
}

fn route_target(w: &mut Walker<'_>, t: &Table<'_, '_>, services: &[String]) -> Option<RouteTarget> {
    let service = t.entry("service");
    let dir = t.entry("static");
    let spa = t.entry("spa");
    if let (true, Some((static_key, _))) = (service.is_some(), dir.clone()) {
        w.report(
            Diagnostic::error(format!(
                "route has both `service` and `static`{}",
                t.in_ctx()
            ))
            .at(static_key, "a route has one target")
            .help("split it into two routes with different paths"),
        );
        return None;
    }
    for key in ["spa", "cache_control"] {
        if let (Some((key_span, _)), None) = (t.entry(key), dir.clone()) {
            w.report(
                Diagnostic::error(format!("`{key}` without `static`{}", t.in_ctx()))
                    .at(key_span, format!("`{key}` only applies to static routes"))
                    .help(format!(
                        "remove `{key}`, or serve a directory with static = \"dir\""
                    )),
            );
        }
    }
    if service.is_some() {
        let (name, span) = w.string(t, "service")?;
        if !services.iter().any(|s| s == name) {
            let mut d =
                Diagnostic::error(format!("route to unknown service `{name}`{}", t.in_ctx()));
            d = match did_you_mean(name, services.iter().map(String::as_str)) {
                Some(close) => d.at(span, format!("did you mean `{close}`?")),
                None if services.is_empty() => d
                    .at(span, "no services are defined")
                    .help(format!("add a [services.{name}] table with a `command`")),
                None => d.at(span, "no such service").help(format!(
                    "defined services: {}",
                    backticked(services.iter().map(String::as_str))
                )),
            };
            w.report(d);
            return None;
        }
        let static_only = spa.is_some() || t.get("cache_control").is_some();
        return (!static_only).then(|| RouteTarget::Service(name.to_owned()));
    }
    if dir.is_some() {
        let spa = or_default(t, "spa", false, |k| w.bool(t, k));
        let dir = w.checked(t, "static", "static directory", check_static_dir)?;
        return Some(RouteTarget::Static { dir, spa: spa? });
    }
    if t.has_typo_of("service") || t.has_typo_of("static") {
        return None; // reported as an unknown key with "did you mean"
    }
    let example = services.first().map_or("web", String::as_str);
    w.report(
        Diagnostic::error(format!("route has no target{}", t.in_ctx()))
            .at(t.span.clone(), "needs `service` or `static`")
            .help(format!("add service = \"{example}\" or static = \"dir\"")),
    );
    None
}

/// `*`, `localhost`, `shop.example.com` or `*.example.com`: lowercase, no scheme, no port.
pub(crate) fn check_host(host: &str) -> Result<(), Problem> {
    let err = |label: &str, help: Option<String>| Err((label.to_owned(), help));
    if host == "*" || host == "localhost" {
        return Ok(());
    }
    if host.is_empty() {
        return err("empty host", Some("use \"*\" to match any host".to_owned()));
    }
    if let Some((_, rest)) = host.split_once("://") {
        let bare = rest.split(['/', ':']).next().unwrap_or_default();
        return err("a host name, not a URL", Some(format!("write \"{bare}\"")));
    }
    if host.contains('/') {
        let (bare, path) = host.split_once('/').unwrap_or_default();
        return err(
            "a host name cannot contain a path",
            Some(format!("write host = \"{bare}\" and path = \"/{path}\"")),
        );
    }
    if let Some((bare, _)) = host.split_once(':') {
        return err(
            "a host name has no port",
            Some(format!("berth listens on its own ports; write \"{bare}\"")),
        );
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return err(
            "host names are lowercase",
            Some(format!("write \"{}\"", host.to_ascii_lowercase())),
        );
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return err(
            "`*` may only be the whole first label",
            Some("e.g. \"*.example.com\" for any subdomain, or \"*\" for any host".to_owned()),
        );
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return err(
            "not a valid host name",
            Some("use letters, digits and `-` between dots, e.g. \"shop.example.com\"".to_owned()),
        );
    }
    Ok(())
}

/// A path prefix: starts with '/', no query, fragment or spaces.
fn check_path(path: &str) -> Result<(), Problem> {
    if !path.starts_with('/') {
        return Err((
            "must start with '/'".to_owned(),
            Some(format!("write \"/{path}\"")),
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || *c == '?' || *c == '#')
    {
        let what = if c.is_whitespace() {
            "spaces".to_owned()
        } else {
            format!("`{c}`")
        };
        return Err((
            format!("a path prefix cannot contain {what}"),
            Some("routes match on the path only".to_owned()),
        ));
    }
    // Clients and the proxy resolve `.` and `..` before matching, so such a prefix would never
    // match what it seems to say.
    let dot = |seg: &str| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    };
    if path.split('/').any(dot) {
        let mut kept: Vec<&str> = Vec::new();
        for seg in path.split('/').skip(1) {
            match seg.to_ascii_lowercase().replace("%2e", ".").as_str() {
                "." => {}
                ".." => {
                    kept.pop();
                }
                _ => kept.push(seg),
            }
        }
        let mut resolved = format!("/{}", kept.join("/"));
        if path.ends_with('/') && !resolved.ends_with('/') {
            resolved.push('/');
        }
        return Err((
            "a path prefix cannot contain `.` or `..` segments".to_owned(),
            Some(format!("write the path they resolve to: \"{resolved}\"")),
        ));
    }
    Ok(())
}

/// Relative to the app directory and staying inside it.
fn check_static_dir(dir: &str) -> Result<(), Problem> {
    if dir.trim().is_empty() {
        return Err((
            "must not be empty".to_owned(),
            Some("name a directory inside the app, e.g. \"public\"".to_owned()),
        ));
    }
    if dir.starts_with('/') {
        return Err((
            "must be relative to the app directory".to_owned(),
            Some(
                "name a directory inside the app, relative to berth.toml, e.g. \"public\""
                    .to_owned(),
            ),
        ));
    }
    if dir.split(['/', '\\']).any(|part| part == "..") {
        return Err((
            "must not leave the app directory".to_owned(),
            Some("remove `..`; only files inside the app are served".to_owned()),
        ));
    }
    Ok(())
}
