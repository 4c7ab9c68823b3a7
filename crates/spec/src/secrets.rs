//! `[secrets]` and the `${NAME}` references of `[env]` values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use toml::de::DeValue;

use crate::diagnostic::Diagnostic;
use crate::walk::{Value, Walker, backticked, did_you_mean, type_name};

/// One entry of `[secrets]`. The value itself never appears in berth.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSpec {
    /// `{ generate = "base64:32" }`: created once from the OS CSPRNG on first deploy, then kept.
    Generate { kind: SecretKind, len: u32 },
    /// `{ required = true, pattern = "^postgres://", min_len = 12 }`: the operator sets it with
    /// `berth secrets set`; nothing starts until it is set and passes [`SecretSpec::check_value`].
    Required {
        /// A regular expression (`regex` crate syntax, unanchored: write `^`/`$` to anchor)
        /// the value must match. Checked to compile when the file is parsed.
        pattern: Option<String>,
        /// Minimum length in characters.
        min_len: Option<u32>,
    },
}

/// How a generated secret is made. `len` means random *bytes* for `hex`, `base64` and
/// `base64url` (so `hex:16` gives 32 characters), *characters* for `alnum`; `uuid` takes no
/// length (a random version-4 UUID; its `len` is 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `[A-Za-z0-9]`
    Alnum,
    /// lowercase hex
    Hex,
    /// standard alphabet, padded
    Base64,
    /// URL-safe alphabet, unpadded
    Base64Url,
    /// `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`
    Uuid,
}

impl SecretKind {
    pub const ALL: &[(&str, SecretKind)] = &[
        ("alnum", SecretKind::Alnum),
        ("hex", SecretKind::Hex),
        ("base64", SecretKind::Base64),
        ("base64url", SecretKind::Base64Url),
        ("uuid", SecretKind::Uuid),
    ];

    pub fn name(self) -> &'static str {
        SecretKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl SecretSpec {
    /// Bounds of `LEN` in `generate = "KIND:LEN"`.
    pub const MIN_LEN: u32 = 8;
    pub const MAX_LEN: u32 = 256;

    /// Whether `value` is acceptable for this secret. The error says what is wrong without ever
    /// quoting the value, so it can be shown as is.
    pub fn check_value(&self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return Err("the value is empty".to_owned());
        }
        let SecretSpec::Required { pattern, min_len } = self else {
            return Ok(());
        };
        if let Some(min) = min_len {
            let n = value.chars().count();
            if n < *min as usize {
                return Err(format!(
                    "the value is {n} characters long, at least {min} are required"
                ));
            }
        }
        if let Some(pattern) = pattern {
            let re = regex::Regex::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
            if !re.is_match(value) {
                return Err(format!("the value does not match the pattern `{pattern}`"));
            }
        }
        Ok(())
    }
}

const REQUIRED_KEYS: &[&str] = &["generate", "required", "pattern", "min_len"];

/// `[secrets]`: returns the valid entries and the names of all entries written (so that
/// references to a secret with problems of its own are not reported as undefined).
pub(crate) fn secrets(
    w: &mut Walker<'_>,
    value: &Value<'_>,
) -> (BTreeMap<String, SecretSpec>, BTreeSet<String>) {
    let mut out = BTreeMap::new();
    let mut names = BTreeSet::new();
    let DeValue::Table(entries) = value.get_ref() else {
        w.report(
            Diagnostic::error("`secrets` must be a table")
                .at(
                    value.span(),
                    format!("found {}", type_name(value.get_ref())),
                )
                .help("write [secrets] and one NAME = { generate = \"base64:32\" } per line"),
        );
        return (out, names);
    };
    for (key, value) in entries.iter() {
        let name = key.get_ref().as_ref();
        names.insert(name.to_owned());
        let name_ok = match crate::names::check_env_name(name) {
            Ok(()) => true,
            Err(problem) => {
                w.problem(format!("invalid secret name `{name}`"), key.span(), problem);
                false
            }
        };
        if let Some(spec) = secret(w, name, value)
            && name_ok
        {
            out.insert(name.to_owned(), spec);
        }
    }
    (out, names)
}

fn secret(w: &mut Walker<'_>, name: &str, value: &Value<'_>) -> Option<SecretSpec> {
    let ctx = format!("secret `{name}`");
    let Some(t) = w.table(value, &ctx, REQUIRED_KEYS) else {
        w.report(
            Diagnostic::error(format!("{ctx} must be a table"))
                .at(value.span(), format!("found {}", type_name(value.get_ref())))
                .help(format!(
                    "write {name} = {{ generate = \"base64:32\" }} or {name} = {{ required = true }}; \
                     the value itself never goes in berth.toml"
                )),
        );
        return None;
    };
    let generate = t.get("generate");
    let required = t.get("required");
    match (generate, required) {
        (Some(g), Some(r)) => {
            let a = if g.span().start > r.span().start {
                g
            } else {
                r
            };
            w.report(
                Diagnostic::error(format!("{ctx} is both generated and required"))
                    .at(a.span(), "either generated or required, not both")
                    .help("keep `generate` for a value berth makes, `required` for one the operator sets"),
            );
            None
        }
        (None, None) => {
            if !t.has_typo_of("generate") && !t.has_typo_of("required") {
                w.report(
                    Diagnostic::error(format!("{ctx} says neither `generate` nor `required`"))
                        .at(t.span.clone(), "how is the value made?")
                        .help("add `generate = \"base64:32\"` or `required = true`"),
                );
            }
            None
        }
        (Some(_), None) => {
            for key in ["pattern", "min_len"] {
                if let Some((span, _)) = t.entry(key) {
                    w.report(
                        Diagnostic::error(format!("`{key}` in generated {ctx}"))
                            .at(span, "applies only to required secrets")
                            .help("berth generates valid values; remove it"),
                    );
                }
            }
            let (text, span) = w.string(&t, "generate")?;
            match parse_generate(text) {
                Ok((kind, len)) => Some(SecretSpec::Generate { kind, len }),
                Err((label, help)) => {
                    let mut d =
                        Diagnostic::error(format!("invalid `generate` in {ctx}")).at(span, label);
                    d.help = help;
                    w.report(d);
                    None
                }
            }
        }
        (None, Some(r)) => {
            match w.bool(&t, "required")? {
                true => {}
                false => {
                    w.report(
                        Diagnostic::error(format!("{ctx} has `required = false`"))
                            .at(r.span(), "a secret must be set")
                            .help("write `required = true`; for optional settings use [env]"),
                    );
                    return None;
                }
            }
            let min_len = crate::walk::optional(&t, "min_len", |k| w.int(&t, k, 1, 4096));
            let pattern = crate::walk::optional(&t, "pattern", |k| {
                let (p, span) = w.string(&t, k)?;
                match regex::Regex::new(p) {
                    Ok(_) => Some(p.to_owned()),
                    Err(e) => {
                        let detail = match &e {
                            regex::Error::Syntax(s) => {
                                s.lines().last().unwrap_or_default().trim().to_owned()
                            }
                            other => other.to_string(),
                        };
                        let detail = detail.trim_start_matches("error: ").to_owned();
                        w.report(
                            Diagnostic::error(format!("invalid `pattern` in {ctx}"))
                                .at(span, detail)
                                .help("a regular expression, e.g. pattern = \"^postgres://\""),
                        );
                        None
                    }
                }
            });
            Some(SecretSpec::Required {
                pattern: pattern?,
                min_len: min_len?,
            })
        }
    }
}

/// `"KIND:LEN"`, or `"uuid"`.
fn parse_generate(text: &str) -> Result<(SecretKind, u32), (String, Option<String>)> {
    let kinds = || SecretKind::ALL.iter().map(|(n, _)| *n);
    let (kind_text, len_text) = match text.split_once(':') {
        Some((k, l)) => (k, Some(l)),
        None => (text, None),
    };
    let Some(kind) = SecretKind::ALL
        .iter()
        .find(|(n, _)| *n == kind_text)
        .map(|(_, k)| *k)
    else {
        let label = match did_you_mean(kind_text, kinds()) {
            Some(close) => format!("unknown kind `{kind_text}`, did you mean `{close}`?"),
            None => format!("unknown kind `{kind_text}`"),
        };
        let help = format!(
            "write \"KIND:LEN\" with KIND one of {}, e.g. \"base64:32\"",
            backticked(kinds())
        );
        return Err((label, Some(help)));
    };
    match (kind, len_text) {
        (SecretKind::Uuid, None) => Ok((kind, 16)),
        (SecretKind::Uuid, Some(_)) => Err((
            "a uuid has a fixed length".to_owned(),
            Some("write generate = \"uuid\"".to_owned()),
        )),
        (_, None) => Err((
            "missing length".to_owned(),
            Some(format!("write \"{kind_text}:32\"")),
        )),
        (_, Some(len)) => {
            let (min, max) = (SecretSpec::MIN_LEN, SecretSpec::MAX_LEN);
            let unit = if kind == SecretKind::Alnum {
                "characters"
            } else {
                "random bytes"
            };
            match len.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok((kind, n)),
                Ok(_) => Err((
                    format!("length must be between {min} and {max}"),
                    Some(format!("LEN counts {unit}; 32 is a good default")),
                )),
                Err(_) => Err((
                    format!("`{len}` is not a length"),
                    Some(format!("LEN counts {unit}, e.g. \"{kind_text}:32\"")),
                )),
            }
        }
    }
}

/// A `${NAME}` found in a template, with its byte range in the template.
pub(crate) struct Reference<'t> {
    pub name: &'t str,
    pub range: Range<usize>,
}

/// The `${NAME}` references of a template, or where a `${` is not closed or holds no valid
/// name. `$${` is a literal `${`; any other `$` is literal.
pub(crate) fn references(template: &str) -> Result<Vec<Reference<'_>>, (Range<usize>, String)> {
    let mut refs = Vec::new();
    let bytes = template.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if template[i..].starts_with("$${") {
            i += 3;
        } else if template[i..].starts_with("${") {
            let Some(close) = template[i..].find('}') else {
                return Err((i..template.len(), "`${` is not closed".to_owned()));
            };
            let name = &template[i + 2..i + close];
            let range = i..i + close + 1;
            if !valid_ref_name(name) {
                return Err((range, format!("`{name}` is not a variable name")));
            }
            refs.push(Reference { name, range });
            i += close + 1;
        } else {
            i += template[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    Ok(refs)
}

fn valid_ref_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Expands the `${NAME}` references of an `[env]` value with `lookup`. `$${` stands for a
/// literal `${`; any other `$` is kept. A reference `lookup` does not know (or a malformed one,
/// which [`crate::parse`] never lets through) is kept as written.
pub fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if rest.starts_with("${")
            && let Some(close) = rest.find('}')
            && let Some(value) = lookup(&rest[2..close])
        {
            out.push_str(&value);
            rest = &rest[close + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// What a `${NAME}` may name: the keys of `[env]` (with their values and value spans) and the
/// names of all secrets written.
pub(crate) struct Defined<'a> {
    pub env: &'a BTreeMap<String, (String, Range<usize>)>,
    pub secrets: &'a BTreeSet<String>,
}

/// Checks the `${NAME}` references of one template, `value` written at `span`: each must be
/// well formed and name a secret or an `[env]` key. `owner` names the template in messages
/// ("`GREETING` in [env]", "`url` in [databases.main]"). Returns the references to `[env]`
/// keys with their spans in the source, or `None` when the template is malformed (reported).
pub(crate) fn check_template<'t>(
    w: &mut Walker<'_>,
    owner: &str,
    value: &'t str,
    span: &Range<usize>,
    defined: &Defined<'_>,
) -> Option<Vec<(&'t str, Range<usize>)>> {
    let to_source = |r: Range<usize>| inner_span(w.source, span, value, r);
    let refs = match references(value) {
        Ok(refs) => refs,
        Err((range, label)) => {
            w.report(
                Diagnostic::error(format!("invalid reference in {owner}"))
                    .at(to_source(range), label)
                    .help("write ${NAME} to use a secret or an [env] value, $${ for a literal ${"),
            );
            return None;
        }
    };
    let mut to_env = Vec::new();
    for r in refs {
        if defined.env.contains_key(r.name) {
            to_env.push((r.name, to_source(r.range)));
        } else if !defined.secrets.contains(r.name) {
            let names = defined
                .env
                .keys()
                .chain(defined.secrets)
                .map(String::as_str);
            let mut d = Diagnostic::error(format!("undefined `${{{}}}` in {owner}", r.name));
            d = match did_you_mean(r.name, names) {
                Some(close) => d.at(to_source(r.range), format!("did you mean `{close}`?")),
                None => d
                    .at(to_source(r.range), "not a secret or [env] key")
                    .help(format!(
                        "define it in [secrets] (e.g. {} = {{ required = true }}) or in [env]",
                        r.name
                    )),
            };
            w.report(d);
        }
    }
    Some(to_env)
}

/// Checks the references of every `[env]` value ([`check_template`]), and that env keys
/// refer neither to themselves nor to each other in a cycle.
pub(crate) fn check_references(w: &mut Walker<'_>, defined: &Defined<'_>) {
    let env = defined.env;
    let mut graph: BTreeMap<&str, Vec<(&str, Range<usize>)>> = BTreeMap::new();
    for (key, (value, span)) in env {
        if defined.secrets.contains(key) {
            w.report(
                Diagnostic::error(format!("`{key}` is defined in both [env] and [secrets]"))
                    .at(key_span(w, span), "also a secret")
                    .help("a name is either plain configuration or a secret; remove one"),
            );
        }
        let owner = format!("`{key}` in [env]");
        let Some(refs) = check_template(w, &owner, value, span, defined) else {
            continue;
        };
        for (name, ref_span) in refs {
            if name == key {
                w.report(
                    Diagnostic::error(format!("`{key}` in [env] refers to itself"))
                        .at(ref_span, "refers to itself"),
                );
            } else {
                graph.entry(key).or_default().push((name, ref_span));
            }
        }
    }
    // Cycles between env keys: report each cycle once, at the first reference.
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for start in graph.keys().copied() {
        if reported.contains(start) {
            continue;
        }
        if let Some(path) = cycle_from(&graph, start) {
            let names: Vec<&str> = path.iter().map(|(n, _)| *n).collect();
            reported.extend(names.iter().copied());
            let span = path[0].1.clone();
            let chain = std::iter::once(start)
                .chain(names.iter().copied())
                .collect::<Vec<_>>()
                .join(" -> ");
            w.report(
                Diagnostic::error(format!(
                    "[env] values refer to each other in a cycle: {chain}"
                ))
                .at(span, "starts a cycle")
                .help("break the cycle: one of them must not use the other"),
            );
        }
    }
}

/// A path of references from `start` back to `start`, if there is one.
fn cycle_from<'g>(
    graph: &BTreeMap<&'g str, Vec<(&'g str, Range<usize>)>>,
    start: &'g str,
) -> Option<Vec<(&'g str, Range<usize>)>> {
    fn dfs<'g>(
        graph: &BTreeMap<&'g str, Vec<(&'g str, Range<usize>)>>,
        at: &'g str,
        start: &'g str,
        path: &mut Vec<(&'g str, Range<usize>)>,
        seen: &mut BTreeSet<&'g str>,
    ) -> bool {
        for (next, span) in graph.get(at).into_iter().flatten() {
            path.push((next, span.clone()));
            if *next == start {
                return true;
            }
            if seen.insert(next) && dfs(graph, next, start, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = Vec::new();
    dfs(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// The span of `range` (a byte range of the decoded string `value`) in the source, when the
/// string is written without escapes; otherwise the whole value.
pub(crate) fn inner_span(
    source: &str,
    span: &Range<usize>,
    value: &str,
    range: Range<usize>,
) -> Range<usize> {
    let raw = source.get(span.clone()).unwrap_or_default();
    let quotes = raw.len().saturating_sub(value.len());
    if quotes <= 6
        && quotes.is_multiple_of(2)
        && raw.get(quotes / 2..raw.len() - quotes / 2) == Some(value)
    {
        let base = span.start + quotes / 2;
        base + range.start..base + range.end
    } else {
        span.clone()
    }
}

/// The key before a value span (`KEY = "value"` on one line), for "defined twice" reports.
pub(crate) fn key_span(w: &Walker<'_>, value: &Range<usize>) -> Range<usize> {
    let line_start = w.source[..value.start.min(w.source.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = &w.source[line_start..value.start];
    let key = line.split('=').next().unwrap_or_default();
    let trimmed = key.trim();
    match key.find(trimmed) {
        Some(off) if !trimmed.is_empty() => line_start + off..line_start + off + trimmed.len(),
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".to_owned()),
            "B" => Some("${A}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        assert_eq!(expand("x${A}y", vars), "xalphay");
        assert_eq!(expand("${A}${A}", vars), "alphaalpha");
        assert_eq!(expand("$${A}", vars), "${A}");
        assert_eq!(expand("$$${A}", vars), "$${A}");
        assert_eq!(expand("cost $5 ${B}", vars), "cost $5 ${A}");
        assert_eq!(expand("${NOPE} ${A", vars), "${NOPE} ${A");
        assert_eq!(expand("é${A}ü$", vars), "éalphaü$");
    }

    #[test]
    fn finds_references() {
        let names = |s| {
            references(s)
                .map(|r| r.iter().map(|r| r.name.to_owned()).collect::<Vec<_>>())
                .map_err(|e| e.1)
        };
        assert_eq!(names("${A}-${B_2}"), Ok(vec!["A".into(), "B_2".into()]));
        assert_eq!(names("$${A} $ {B}"), Ok(vec![]));
        assert_eq!(names("x ${A"), Err("`${` is not closed".into()));
        assert_eq!(names("${a}"), Err("`a` is not a variable name".into()));
    }

    #[test]
    fn generate_syntax() {
        assert_eq!(parse_generate("base64:32"), Ok((SecretKind::Base64, 32)));
        assert_eq!(parse_generate("uuid"), Ok((SecretKind::Uuid, 16)));
        assert!(parse_generate("hex:7").is_err());
        assert!(parse_generate("hex:257").is_err());
        assert!(parse_generate("hex").is_err());
        assert!(parse_generate("uuid:16").is_err());
    }

    #[test]
    fn check_value_never_quotes_the_value() {
        let spec = SecretSpec::Required {
            pattern: Some("^postgres://".into()),
            min_len: Some(12),
        };
        assert_eq!(spec.check_value("postgres://u:p@h/db"), Ok(()));
        let e = spec.check_value("mysql://u:p@h/db").unwrap_err();
        assert!(!e.contains("mysql"), "{e}");
        let e = spec.check_value("short").unwrap_err();
        assert!(!e.contains("short"), "{e}");
        assert!(spec.check_value("").is_err());
    }
}
