//! `[tls]`: where the app's certificate comes from. One source: `acme`, `self_signed`, or
//! `cert` + `key`. The names are the app's route hosts.

use std::ops::Range;

use crate::diagnostic::Diagnostic;
use crate::model::{AcmeChallenge, RouteSpec, TlsSpec};
use crate::walk::{Table, Value, Walker, backticked, did_you_mean, type_name};

const TLS_KEYS: &[&str] = &["acme", "self_signed", "cert", "key"];
const ACME_KEYS: &[&str] = &["email", "directory", "challenge"];
const CHALLENGES: &[(&str, AcmeChallenge)] = &[
    ("http-01", AcmeChallenge::Http01),
    ("tls-alpn-01", AcmeChallenge::TlsAlpn01),
];
const EXAMPLE: &str = "acme = { email = \"ops@example.com\" }";

pub(crate) fn tls(w: &mut Walker<'_>, value: &Value<'_>, routes: &[RouteSpec]) -> Option<TlsSpec> {
    let Some(t) = w.table(value, "[tls]", TLS_KEYS) else {
        w.report(
            Diagnostic::error("`tls` must be a table")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help(format!(
                    "write [tls] and one of: {EXAMPLE}; self_signed = true; cert = \"...\" and key = \"...\""
                )),
        );
        return None;
    };
    let acme = t.entry("acme");
    let self_signed = t.entry("self_signed");
    let files = t.entry("cert").or(t.entry("key"));
    let given: Vec<(&str, Range<usize>)> = [
        ("acme", acme.as_ref()),
        ("self_signed", self_signed.as_ref()),
        ("cert/key", files.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, e)| e.map(|(span, _)| (name, span.clone())))
    .collect();
    let names = certificate_names(routes);
    let no_names = names.is_empty();
    if no_names {
        w.report(
            Diagnostic::error("[tls] needs a route with a host name")
                .at(t.span.clone(), "no name to put in the certificate")
                .help("a route with host = \"*\" answers any name; give the routes their public names, e.g. host = \"shop.example.com\""),
        );
    }
    // Each source given is checked, even when there are several, so that every problem is
    // reported in one pass.
    let acme = acme.map(|(_, value)| acme_spec(w, value, &names));
    let self_signed = self_signed.map(|_| match w.bool(&t, "self_signed")? {
        true => Some(TlsSpec::SelfSigned),
        false => {
            w.report(
                Diagnostic::error("`self_signed = false` gives no certificate")
                    .at(t.get("self_signed")?.span(), "no certificate source")
                    .help(format!(
                        "remove [tls] to serve plain HTTP, or use {EXAMPLE}"
                    )),
            );
            None
        }
    });
    let files = files.map(|_| files_spec(w, &t));
    match given.as_slice() {
        [] => {
            w.report(
                Diagnostic::error("[tls] says nowhere to get a certificate from")
                    .at(t.span.clone(), "no certificate source")
                    .help(format!(
                        "add one of: {EXAMPLE}; self_signed = true (development); cert = \"/etc/ssl/shop.pem\" and key = \"/etc/ssl/shop.key\""
                    )),
            );
            return None;
        }
        [_, (second, span), ..] => {
            w.report(
                Diagnostic::error(format!(
                    "[tls] has more than one certificate source: {}",
                    given.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ))
                .at(
                    span.clone(),
                    format!("`{second}` conflicts with `{}`", given[0].0),
                )
                .help("keep one: acme, self_signed, or cert and key"),
            );
            return None;
        }
        [_] => {}
    }
    let spec = acme.or(self_signed).or(files).flatten()?;
    (!no_names).then_some(spec)
}

/// The names a certificate covers: every route host but `*`, sorted, without duplicates.
pub fn certificate_names(routes: &[RouteSpec]) -> Vec<String> {
    let mut names: Vec<String> = routes
        .iter()
        .map(|r| r.host.clone())
        .filter(|h| h != "*")
        .collect();
    names.sort();
    names.dedup();
    names
}

fn acme_spec(w: &mut Walker<'_>, value: &Value<'_>, names: &[String]) -> Option<TlsSpec> {
    let Some(t) = w.table(value, "[tls] acme", ACME_KEYS) else {
        w.report(
            Diagnostic::error("`acme` must be a table")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help(format!("write {EXAMPLE}")),
        );
        return None;
    };
    let email = match w.required(&t, "email", "email = \"ops@example.com\"") {
        Some(_) => {
            match w.non_empty_string(&t, "email") {
                Some((e, span)) if !e.contains('@') || e.contains(char::is_whitespace) => {
                    w.report(
                    Diagnostic::error("invalid `email` in [tls] acme")
                        .at(span, "not an email address")
                        .help("the CA sends expiry warnings here, e.g. email = \"ops@example.com\""),
                );
                    None
                }
                other => other.map(|(e, _)| e.to_owned()),
            }
        }
        None => None,
    };
    let directory = match w.non_empty_string(&t, "directory") {
        Some((d, span)) if !d.starts_with("https://") => {
            w.report(
                Diagnostic::error("invalid `directory` in [tls] acme")
                    .at(span, "must be an https:// URL")
                    .help(format!(
                        "leave it out for Let's Encrypt ({}), or give the CA's directory URL",
                        TlsSpec::LETS_ENCRYPT
                    )),
            );
            None
        }
        Some((d, _)) => Some(d.to_owned()),
        None if t.get("directory").is_some() => None,
        None => Some(TlsSpec::LETS_ENCRYPT.to_owned()),
    };
    let challenge = match w.string(&t, "challenge") {
        Some((c, span)) => match CHALLENGES.iter().find(|(n, _)| *n == c) {
            Some((_, c)) => Some(*c),
            None => {
                let known = CHALLENGES.iter().map(|(n, _)| *n);
                let mut d = Diagnostic::error(format!("unknown challenge `{c}` in [tls] acme"));
                d = match did_you_mean(c, known.clone()) {
                    Some(close) => d.at(span, format!("did you mean `{close}`?")),
                    None => d.at(span, "unknown").help(format!(
                        "expected one of {}; wildcard names always use dns-01 through the daemon's --acme-dns-hook",
                        backticked(known)
                    )),
                };
                w.report(d);
                None
            }
        },
        None if t.get("challenge").is_some() => None,
        None => Some(AcmeChallenge::Http01),
    };
    let local: Vec<&String> = names
        .iter()
        .filter(|n| *n == "localhost" || n.ends_with(".localhost"))
        .collect();
    if let Some(name) = local.first() {
        w.report(
            Diagnostic::error(format!("a public CA cannot issue a certificate for `{name}`"))
                .at(value.span(), "acme needs public names")
                .help("use self_signed = true for local development (an [environments.dev] overlay can switch it)"),
        );
        return None;
    }
    Some(TlsSpec::Acme {
        email: email?,
        directory: directory?,
        challenge: challenge?,
    })
}

fn files_spec(w: &mut Walker<'_>, t: &Table<'_, '_>) -> Option<TlsSpec> {
    let has_cert = w
        .required(t, "cert", "cert = \"/etc/ssl/shop.pem\"")
        .is_some();
    let has_key = w
        .required(t, "key", "key = \"/etc/ssl/shop.key\"")
        .is_some();
    let cert = if has_cert {
        w.non_empty_string(t, "cert")
    } else {
        None
    };
    let key = if has_key {
        w.non_empty_string(t, "key")
    } else {
        None
    };
    let ((cert, _), (key, key_span)) = (cert?, key?);
    if cert == key {
        w.report(
            Diagnostic::error("`cert` and `key` in [tls] are the same file")
                .at(key_span, "same path as `cert`")
                .help("give the certificate chain (PEM) and the private key (PEM) as two files"),
        );
        return None;
    }
    Some(TlsSpec::Files {
        cert: cert.to_owned(),
        key: key.to_owned(),
    })
}
