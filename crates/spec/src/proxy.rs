//! `[proxy]`: timeouts, balancing, security headers, rate-limit zones and trusted proxies; and
//! the header settings a route may add (`headers`, `set_headers`, `force_headers`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use toml::de::DeValue;

use crate::diagnostic::Diagnostic;
use ipnet::IpNet;

use crate::model::{Balance, HeaderPreset, ProxySpec};
use crate::units;
use crate::units::RateSpec;
use crate::walk::{Problem, Table, Value, Walker, backticked, did_you_mean, type_name};

const PROXY_KEYS: &[&str] = &[
    "max_body",
    "connect_timeout",
    "response_timeout",
    "balance",
    "headers",
    "set_headers",
    "rate_limits",
    "trusted_proxies",
];
const BALANCES: &[(&str, Balance)] = &[
    ("round_robin", Balance::RoundRobin),
    ("least_requests", Balance::LeastRequests),
];
const PRESETS: &[(&str, HeaderPreset)] = &[
    ("strict", HeaderPreset::Strict),
    ("basic", HeaderPreset::Basic),
    ("off", HeaderPreset::Off),
];
impl std::str::FromStr for HeaderPreset {
    type Err = String;

    /// `"strict"`, `"basic"` or `"off"` (also for `berth proxy --headers`).
    fn from_str(s: &str) -> Result<HeaderPreset, String> {
        PRESETS
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, p)| *p)
            .ok_or_else(|| "expected strict, basic or off".to_owned())
    }
}

/// Headers berth itself owns: message framing, connection handling, and `Server`.
const MANAGED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `[proxy]`, and the names of every zone written under `rate_limits` (valid or not, so a
/// route naming a zone with a problem of its own is not reported twice).
pub(crate) fn proxy(w: &mut Walker<'_>, value: &Value<'_>) -> (ProxySpec, Vec<String>) {
    let defaults = ProxySpec::default();
    let Some(t) = w.table(value, "[proxy]", PROXY_KEYS) else {
        w.report(
            Diagnostic::error("`proxy` must be a table")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help("write [proxy] and one setting per line"),
        );
        return (defaults, Vec::new());
    };
    let max_body = w.size(&t, "max_body").map_or(defaults.max_body, |(b, _)| b);
    let connect_timeout = w
        .duration(&t, "connect_timeout")
        .unwrap_or(defaults.connect_timeout);
    let response_timeout = w
        .duration(&t, "response_timeout")
        .unwrap_or(defaults.response_timeout);
    let balance = match w.string(&t, "balance") {
        Some((name, span)) => w
            .one_of("balance", name, span, BALANCES, " in [proxy]")
            .unwrap_or(defaults.balance),
        None => defaults.balance,
    };
    let headers = preset(w, &t, "headers").unwrap_or(defaults.headers);
    let set_headers = set_headers(w, &t, "[proxy.set_headers]");
    let (rate_limits, zones) = rate_limits(w, &t);
    let trusted_proxies = trusted_proxies(w, &t);
    let spec = ProxySpec {
        max_body,
        connect_timeout,
        response_timeout,
        balance,
        headers,
        set_headers,
        rate_limits,
        trusted_proxies,
    };
    (spec, zones)
}

/// `headers = "strict" | "basic" | "off"` in `t` (the app's [proxy] or a route).
pub(crate) fn preset(w: &mut Walker<'_>, t: &Table<'_, '_>, key: &str) -> Option<HeaderPreset> {
    let value = t.get(key)?;
    if let DeValue::Table(_) = value.get_ref() {
        let help = "`headers` picks a preset: \"strict\", \"basic\" or \"off\"; \
                    set single headers with `set_headers`";
        w.wrong_type(t, key, value, "a string", Some(help.to_owned()));
        return None;
    }
    let (name, span) = w.string(t, key)?;
    if matches!(name, "none" | "no" | "false" | "disabled" | "disable") {
        w.report(
            Diagnostic::error(format!("unknown header preset `{name}`{}", t.in_ctx()))
                .at(span, "did you mean `off`?"),
        );
        return None;
    }
    w.one_of("header preset", name, span, PRESETS, &t.in_ctx())
}

/// `set_headers` of `t`: header name → value (`None`: remove). `ctx` names the table.
pub(crate) fn set_headers(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    ctx: &str,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let Some(value) = t.get("set_headers") else {
        return out;
    };
    let DeValue::Table(entries) = value.get_ref() else {
        let help = "write set_headers = { \"Content-Security-Policy\" = \"default-src 'self'\" }";
        w.wrong_type(t, "set_headers", value, "a table", Some(help.to_owned()));
        return out;
    };
    // lowercase name → line of its first occurrence
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (key, value) in entries.iter() {
        let name = key.get_ref().as_ref();
        if let Err(problem) = check_header_name(name) {
            w.problem(
                format!("invalid header name `{name}` in {ctx}"),
                key.span(),
                problem,
            );
            continue;
        }
        let line = w.text(0..key.span().start).matches('\n').count() + 1;
        if let Some(first) = seen.get(&name.to_ascii_lowercase()) {
            w.report(
                Diagnostic::error(format!("header `{name}` is set twice in {ctx}"))
                    .at(
                        key.span(),
                        format!("same header as line {first} (names ignore case)"),
                    )
                    .help("keep one of them"),
            );
            continue;
        }
        seen.insert(name.to_ascii_lowercase(), line);
        let header_value = match value.get_ref() {
            DeValue::String(s) if s.is_empty() => None,
            DeValue::String(s) => match check_header_value(s) {
                Ok(()) => Some(s.to_string()),
                Err(problem) => {
                    w.problem(
                        format!("invalid value for header `{name}` in {ctx}"),
                        value.span(),
                        problem,
                    );
                    continue;
                }
            },
            DeValue::Boolean(false) => None,
            other => {
                w.report(
                    Diagnostic::error(format!("wrong type for header `{name}` in {ctx}"))
                        .at(
                            value.span(),
                            format!("expected a string or false, found {}", type_name(other)),
                        )
                        .help(format!(
                            "write \"{name}\" = \"value\" to set it, or \"{name}\" = false to remove it"
                        )),
                );
                continue;
            }
        };
        out.insert(name.to_owned(), header_value);
    }
    out
}

/// An HTTP field name (RFC 9110 token) that berth does not manage itself.
fn check_header_name(name: &str) -> Result<(), Problem> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err((
            "not a valid header name".to_owned(),
            Some("use letters, digits and `-`, e.g. \"X-Robots-Tag\"".to_owned()),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if MANAGED_HEADERS.contains(&lower.as_str()) {
        let help = if lower == "server" {
            "berth always answers `Server: berth`, so no version leaks; remove this line"
        } else {
            "berth handles framing and connections itself; remove this line"
        };
        return Err(("managed by berth".to_owned(), Some(help.to_owned())));
    }
    Ok(())
}

/// Printable ASCII (and tabs): what every client accepts in a header value.
fn check_header_value(value: &str) -> Result<(), Problem> {
    if value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
        return Ok(());
    }
    let label = if value.contains(['\r', '\n']) {
        "line breaks are not allowed in a header value"
    } else {
        "only printable ASCII is allowed in a header value"
    };
    Err((
        label.to_owned(),
        Some("write the value on one line; percent-encode anything else".to_owned()),
    ))
}

/// `rate_limits = { NAME = "RATE" }`: the valid zones, and the names of all zones written.
fn rate_limits(w: &mut Walker<'_>, t: &Table<'_, '_>) -> (BTreeMap<String, RateSpec>, Vec<String>) {
    let mut zones = BTreeMap::new();
    let mut names = Vec::new();
    let Some(value) = t.get("rate_limits") else {
        return (zones, names);
    };
    let DeValue::Table(entries) = value.get_ref() else {
        let help = "write rate_limits = { general = \"20/s burst 40\" }";
        w.wrong_type(t, "rate_limits", value, "a table", Some(help.to_owned()));
        return (zones, names);
    };
    for (key, value) in entries.iter() {
        let name = key.get_ref().as_ref();
        names.push(name.to_owned());
        let name_ok = match check_zone_name(name) {
            Ok(()) => true,
            Err(problem) => {
                w.problem(
                    format!("invalid rate-limit zone name `{name}` in [proxy]"),
                    key.span(),
                    problem,
                );
                false
            }
        };
        let rate = match value.get_ref() {
            DeValue::String(s) => match units::rate(s) {
                Ok(rate) => Some(rate),
                Err(e) => {
                    let mut d = Diagnostic::error(format!(
                        "invalid rate for zone `{name}` in [proxy] rate_limits"
                    ))
                    .at(value.span(), e.problem);
                    d.help = e.help;
                    w.report(d);
                    None
                }
            },
            other => {
                let example = match other {
                    DeValue::Integer(_) => format!("{}/s", w.text(value.span())),
                    _ => "20/s burst 40".to_owned(),
                };
                w.report(
                    Diagnostic::error(format!(
                        "wrong type for zone `{name}` in [proxy] rate_limits"
                    ))
                    .at(
                        value.span(),
                        format!("expected a string, found {}", type_name(other)),
                    )
                    .help(format!("write {name} = \"{example}\"")),
                );
                None
            }
        };
        if let (true, Some(rate)) = (name_ok, rate) {
            zones.insert(name.to_owned(), rate);
        }
    }
    (zones, names)
}

/// Zone names: `[a-z0-9_-]`, 1 to 40 characters (they appear in metric labels).
fn check_zone_name(name: &str) -> Result<(), Problem> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if !name.is_empty() && name.len() <= 40 && name.chars().all(ok) {
        return Ok(());
    }
    let fixed: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if ok(c) { c } else { '_' })
        .collect();
    let help = if fixed.is_empty() || fixed.len() > 40 {
        "use 1 to 40 lowercase letters, digits, `_` and `-`".to_owned()
    } else {
        format!("use lowercase letters, digits, `_` and `-`: try `{fixed}`")
    };
    Err(("not a valid zone name".to_owned(), Some(help)))
}

/// `trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]`.
fn trusted_proxies(w: &mut Walker<'_>, t: &Table<'_, '_>) -> Vec<IpNet> {
    let mut out = Vec::new();
    let Some(value) = t.get("trusted_proxies") else {
        return out;
    };
    let DeValue::Array(items) = value.get_ref() else {
        let help = match value.get_ref() {
            DeValue::String(s) => format!("write a list: trusted_proxies = [\"{s}\"]"),
            _ => "write trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]".to_owned(),
        };
        w.wrong_type(t, "trusted_proxies", value, "an array", Some(help));
        return out;
    };
    for item in items.iter() {
        let DeValue::String(s) = item.get_ref() else {
            w.report(
                Diagnostic::error("wrong type in `trusted_proxies` in [proxy]")
                    .at(
                        item.span(),
                        format!("expected a string, found {}", type_name(item.get_ref())),
                    )
                    .help("write each address or network as a string, e.g. \"10.0.0.0/8\""),
            );
            continue;
        };
        match ip_net(s) {
            Ok(net) => out.push(net),
            Err(problem) => w.problem(
                format!("invalid trusted proxy `{s}` in [proxy]"),
                item.span(),
                problem,
            ),
        }
    }
    out
}

/// `"10.0.0.0/8"`, `"fd00::/8"`, `"127.0.0.1"`; host bits must be zero.
fn ip_net(s: &str) -> Result<IpNet, Problem> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let Ok(addr) = ip.trim().parse::<IpAddr>() else {
        let help = if ip.contains(|c: char| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit()) {
            "host names are not allowed: trust is checked against the connection's address"
        } else {
            "write an address (\"127.0.0.1\", \"::1\") or a network (\"10.0.0.0/8\")"
        };
        return Err((
            "not an IP address or network".to_owned(),
            Some(help.to_owned()),
        ));
    };
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => {
                return Err((
                    format!("the prefix length must be 0 to {max}"),
                    Some(format!("e.g. \"{addr}/{}\"", max / 2)),
                ));
            }
        },
    };
    let net = IpNet::new(addr, prefix).map_err(|_| {
        (
            format!("the prefix length must be 0 to {max}"),
            Some(format!("e.g. \"{addr}/{}\"", max / 2)),
        )
    })?;
    if net.network() != addr {
        return Err((
            format!("host bits are set for a /{prefix}"),
            Some(format!("write \"{}/{prefix}\"", net.network())),
        ));
    }
    Ok(net)
}

/// `rate_limit = "ZONE"` of a route: a zone of `[proxy] rate_limits` (`zones`: all written).
pub(crate) fn zone_ref(w: &mut Walker<'_>, t: &Table<'_, '_>, zones: &[String]) -> Option<String> {
    let (name, span) = w.string(t, "rate_limit")?;
    if zones.iter().any(|z| z == name) {
        return Some(name.to_owned());
    }
    let d = Diagnostic::error(format!("unknown rate-limit zone `{name}`{}", t.in_ctx()));
    let d = match did_you_mean(name, zones.iter().map(String::as_str)) {
        Some(close) => d.at(span, format!("did you mean `{close}`?")),
        None if zones.is_empty() => d.at(span, "no zones are defined").help(format!(
            "define it in [proxy]: rate_limits = {{ {name} = \"20/s burst 40\" }}"
        )),
        None => d.at(span, "no such zone").help(format!(
            "zones in [proxy] rate_limits: {}",
            backticked(zones.iter().map(String::as_str))
        )),
    };
    w.report(d);
    None
}
