//! `cache_control = { hashed = "…", html = "…", other = "…" }` of a static route: the
//! `Cache-Control` its files get, by kind.

use toml::de::DeValue;

use crate::diagnostic::Diagnostic;
use crate::model::CacheControlSpec;
use crate::walk::{Problem, Table, Walker, did_you_mean, type_name};

const KINDS: &[&str] = &["hashed", "html", "other"];

/// Directives of RFC 9111 and RFC 8246; others are allowed (the header is extensible), unless
/// they look like a typo of one of these.
const DIRECTIVES: &[&str] = &[
    "public",
    "private",
    "no-cache",
    "no-store",
    "no-transform",
    "max-age",
    "s-maxage",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "immutable",
    "stale-while-revalidate",
    "stale-if-error",
];

/// Directives whose argument is a number of seconds.
const SECONDS: &[&str] = &[
    "max-age",
    "s-maxage",
    "stale-while-revalidate",
    "stale-if-error",
];

/// The route's `cache_control`, each kind not written keeping its default; `None` when
/// something is wrong (reported).
pub(crate) fn cache_control(w: &mut Walker<'_>, t: &Table<'_, '_>) -> Option<CacheControlSpec> {
    let mut out = CacheControlSpec::default();
    let Some(value) = t.get("cache_control") else {
        return Some(out);
    };
    let ctx = format!("`cache_control` of {}", t.ctx);
    let Some(table) = w.table(value, &ctx, KINDS) else {
        let help = "write cache_control = { hashed = \"public, max-age=31536000, immutable\", \
                    html = \"no-cache\", other = \"no-cache\" }";
        w.wrong_type(t, "cache_control", value, "a table", Some(help.to_owned()));
        return None;
    };
    let mut ok = true;
    for (kind, slot) in [
        ("hashed", &mut out.hashed),
        ("html", &mut out.html),
        ("other", &mut out.other),
    ] {
        let Some(value) = table.get(kind) else {
            continue;
        };
        match value.get_ref() {
            DeValue::String(s) if s.trim().is_empty() => *slot = None,
            DeValue::String(s) => match check_cache_control(s) {
                Ok(()) => *slot = Some(s.trim().to_owned()),
                Err(problem) => {
                    let message = format!("invalid `{kind}` in {ctx}");
                    w.problem(message, value.span(), problem);
                    ok = false;
                }
            },
            DeValue::Boolean(false) => *slot = None,
            other => {
                w.report(
                    Diagnostic::error(format!("wrong type for `{kind}` in {ctx}"))
                        .at(
                            value.span(),
                            format!("expected a string or false, found {}", type_name(other)),
                        )
                        .help(format!(
                            "write {kind} = \"public, max-age=3600\", or {kind} = false to send no Cache-Control"
                        )),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A `Cache-Control` value: `directive[=argument]` separated by commas, printable ASCII.
fn check_cache_control(value: &str) -> Result<(), Problem> {
    let example = "e.g. \"public, max-age=3600\" or \"no-cache\"";
    if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
        return Err((
            "only printable ASCII on one line is allowed in a header value".to_owned(),
            Some(example.to_owned()),
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
    };
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim())),
            None => (directive, None),
        };
        if directive.is_empty() {
            return Err((
                "empty directive".to_owned(),
                Some(format!("separate directives with one comma, {example}")),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if !token(name) {
            return Err((
                format!("`{name}` is not a directive"),
                Some(format!("directives are words like `max-age`, {example}")),
            ));
        }
        if !DIRECTIVES.contains(&lower.as_str())
            && let Some(close) = did_you_mean(&lower, DIRECTIVES.iter().copied())
        {
            return Err((
                format!("unknown directive `{name}`"),
                Some(format!("did you mean `{close}`?")),
            ));
        }
        let takes_seconds = SECONDS.contains(&lower.as_str());
        let seconds = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let quoted = |s: &str| s.len() >= 2 && s.starts_with('"') && s.ends_with('"');
        match argument {
            Some(argument) if takes_seconds && !seconds(argument) => {
                return Err((
                    format!("`{lower}` takes a number of seconds"),
                    Some(format!(
                        "write {lower}=3600 (one hour) or {lower}=31536000 (a year)"
                    )),
                ));
            }
            Some(argument) if !takes_seconds && !token(argument) && !quoted(argument) => {
                return Err((
                    format!("`{argument}` is not a valid argument of `{name}`"),
                    Some("quote it: name=\"argument\"".to_owned()),
                ));
            }
            None if takes_seconds => {
                return Err((
                    format!("`{lower}` needs a number of seconds"),
                    Some(format!("write {lower}=3600")),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        for ok in [
            "public, max-age=31536000, immutable",
            "no-cache",
            "no-store",
            "private, max-age=0, must-revalidate",
            "public,max-age=60,stale-while-revalidate=30",
            "no-cache=\"Set-Cookie\"",
            "x-custom-extension",
        ] {
            assert_eq!(check_cache_control(ok), Ok(()), "{ok}");
        }
        for (bad, label) in [
            ("public, max_age=3600", "unknown directive `max_age`"),
            ("public, imutable", "unknown directive `imutable`"),
            ("max-age=1h", "`max-age` takes a number of seconds"),
            ("max-age", "`max-age` needs a number of seconds"),
            ("public,, no-cache", "empty directive"),
            ("public; max-age=60", "`public; max-age` is not a directive"),
            (
                "no-cache\u{e9}",
                "only printable ASCII on one line is allowed in a header value",
            ),
        ] {
            assert_eq!(check_cache_control(bad).unwrap_err().0, label, "{bad}");
        }
    }
}
