//! Small helpers to walk a spanned TOML tree against a hand-written schema, collecting every
//! problem instead of stopping at the first. Nothing here knows about berth.toml's sections;
//! `schema.rs` does.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Diagnostic;
use crate::units::{self, UnitError};

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// What is wrong with a value (a label to print under it) and what would be right.
pub(crate) type Problem = (String, Option<String>);

/// A table of the document, with where it is and how to name it in messages.
#[derive(Clone)]
pub(crate) struct Table<'a, 'i> {
    pub entries: &'a DeTable<'i>,
    /// The table header (`[services.web]`), the inline table, or the key of a dotted table.
    pub span: Range<usize>,
    /// How messages name this table, e.g. "[services.web]"; empty for the top level.
    pub ctx: &'a str,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn entry(&self, key: &str) -> Option<(Range<usize>, &'a Value<'i>)> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(k, v)| (k.span(), v))
    }

    /// Whether some other key looks like a typo of `key` (then "missing `key`" would be noise
    /// next to "unknown key, did you mean `key`?").
    pub fn has_typo_of(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| {
            let k = k.get_ref().as_ref();
            k != key && did_you_mean(k, [key]).is_some()
        })
    }

    /// " in [services.web]", or "" at the top level.
    pub fn in_ctx(&self) -> String {
        if self.ctx.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.ctx)
        }
    }
}

/// Collects diagnostics while the schema walks the document.
pub(crate) struct Walker<'s> {
    pub source: &'s str,
    /// Keys of the top-level table: found inside another table, they were most likely written
    /// below a `[table]` header by mistake.
    pub top_level_keys: &'static [&'static str],
    pub diags: Vec<Diagnostic>,
}

impl<'s> Walker<'s> {
    pub fn new(source: &'s str) -> Self {
        Walker {
            source,
            top_level_keys: &[],
            diags: Vec::new(),
        }
    }

    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    /// Reports `problem` (from a `check_*` function) at `span`.
    pub fn problem(&mut self, message: String, span: Range<usize>, (label, help): Problem) {
        let mut d = Diagnostic::error(message).at(span, label);
        d.help = help;
        self.report(d);
    }

    /// A string value that must pass `check`; `what` names it in the message ("host").
    pub fn checked(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        what: &str,
        check: fn(&str) -> Result<(), Problem>,
    ) -> Option<String> {
        let (s, span) = self.string(table, key)?;
        match check(s) {
            Ok(()) => Some(s.to_owned()),
            Err(problem) => {
                self.problem(
                    format!("invalid {what} `{s}`{}", table.in_ctx()),
                    span,
                    problem,
                );
                None
            }
        }
    }

    /// The source text of a span, e.g. to quote a value back in a hint.
    pub fn text(&self, span: Range<usize>) -> &'s str {
        self.source.get(span).unwrap_or_default()
    }

    /// `value` as a table named `ctx`, whose keys must all be in `allowed`.
    pub fn table<'a, 'i>(
        &mut self,
        value: &'a Value<'i>,
        ctx: &'a str,
        allowed: &[&str],
    ) -> Option<Table<'a, 'i>> {
        let DeValue::Table(entries) = value.get_ref() else {
            return None;
        };
        let table = Table {
            entries,
            span: value.span(),
            ctx,
        };
        self.known_keys(&table, allowed);
        Some(table)
    }

    /// [`Walker::table`] for a named table (`[services.web]`), reporting "`ctx` must be a
    /// table" with `help` (how to write it) when `value` is something else.
    pub fn named_table<'a, 'i>(
        &mut self,
        value: &'a Value<'i>,
        ctx: &'a str,
        allowed: &[&str],
        help: impl FnOnce() -> String,
    ) -> Option<Table<'a, 'i>> {
        let table = self.table(value, ctx, allowed);
        if table.is_none() {
            self.report(
                Diagnostic::error(format!("{ctx} must be a table"))
                    .at(
                        value.span(),
                        format!("found {}", type_name(value.get_ref())),
                    )
                    .help(help()),
            );
        }
        table
    }

    /// Reports every key of `table` that is not in `allowed`, with a "did you mean".
    pub fn known_keys(&mut self, table: &Table<'_, '_>, allowed: &[&str]) {
        for (key, value) in table.entries.iter() {
            let name = key.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let message = match (table.ctx.is_empty(), value.get_ref()) {
                (true, DeValue::Table(_)) => format!("unknown table [{name}]"),
                (true, _) => format!("unknown top-level key `{name}`"),
                (false, _) => format!("unknown key `{name}`{}", table.in_ctx()),
            };
            let mut d = Diagnostic::error(message);
            let top_level = !table.ctx.is_empty() && self.top_level_keys.contains(&name);
            d = match did_you_mean(name, allowed.iter().copied()) {
                None if top_level => d.at(key.span(), "belongs at the top level").help(format!(
                    "keys below a [table] header belong to that table; move `{name}` above the first header"
                )),
                Some(close) => d.at(key.span(), format!("did you mean `{close}`?")),
                None => d.at(key.span(), "unknown key").help(format!(
                    "expected one of {}",
                    backticked(allowed.iter().copied())
                )),
            };
            self.report(d);
        }
    }

    /// The value of `key`, reporting it as missing (at the table header) when absent.
    pub fn required<'a, 'i>(
        &mut self,
        table: &Table<'a, 'i>,
        key: &str,
        example: &str,
    ) -> Option<&'a Value<'i>> {
        let value = table.get(key);
        if value.is_none() && !table.has_typo_of(key) {
            self.report(
                Diagnostic::error(format!("missing `{key}`{}", table.in_ctx()))
                    .at(table.span.clone(), format!("`{key}` is required here"))
                    .help(format!("add `{example}`")),
            );
        }
        value
    }

    /// Reports that `key` holds the wrong kind of value. `help` says what to write instead.
    pub fn wrong_type(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        value: &Value<'_>,
        expected: &str,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::error(format!("wrong type for `{key}`{}", table.in_ctx())).at(
            value.span(),
            format!("expected {expected}, found {}", type_name(value.get_ref())),
        );
        d.help = help;
        self.report(d);
    }

    /// A string value, or `None` (reported) when it has another type.
    pub fn string<'a>(
        &mut self,
        table: &Table<'a, '_>,
        key: &str,
    ) -> Option<(&'a str, Range<usize>)> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), value.span())),
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                let raw = self.text(value.span());
                let help = format!("quote it: {key} = \"{raw}\"");
                self.wrong_type(table, key, value, "a string", Some(help));
                None
            }
            _ => {
                self.wrong_type(table, key, value, "a string", None);
                None
            }
        }
    }

    /// A non-empty string value.
    pub fn non_empty_string<'a>(
        &mut self,
        table: &Table<'a, '_>,
        key: &str,
    ) -> Option<(&'a str, Range<usize>)> {
        let (s, span) = self.string(table, key)?;
        if s.trim().is_empty() {
            self.report(
                Diagnostic::error(format!("empty `{key}`{}", table.in_ctx()))
                    .at(span, "must not be empty"),
            );
            return None;
        }
        Some((s, span))
    }

    pub fn bool(&mut self, table: &Table<'_, '_>, key: &str) -> Option<bool> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            DeValue::String(s) if s == "true" || s == "false" => {
                let help = format!("remove the quotes: {key} = {s}");
                self.wrong_type(table, key, value, "a boolean", Some(help));
                None
            }
            _ => {
                let help = format!("write {key} = true or {key} = false");
                self.wrong_type(table, key, value, "a boolean", Some(help));
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn int(&mut self, table: &Table<'_, '_>, key: &str, min: u32, max: u32) -> Option<u32> {
        let value = table.get(key)?;
        let n = match value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            DeValue::String(s) if s.trim().parse::<i64>().is_ok() => {
                let help = format!("remove the quotes: {key} = {}", s.trim());
                self.wrong_type(table, key, value, "an integer", Some(help));
                return None;
            }
            _ => {
                self.wrong_type(table, key, value, "an integer", None);
                return None;
            }
        };
        match n.and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let label = if max == u32::MAX {
                    format!("must be at least {min}")
                } else {
                    format!("must be between {min} and {max}")
                };
                self.report(
                    Diagnostic::error(format!("`{key}` out of range{}", table.in_ctx()))
                        .at(value.span(), label),
                );
                None
            }
        }
    }

    /// `name` looked up in `choices`, or a "did you mean" / "expected one of" diagnostic.
    /// `what` names the setting ("balance"), `in_ctx` the table (" in [proxy]").
    pub fn one_of<T: Copy>(
        &mut self,
        what: &str,
        name: &str,
        span: Range<usize>,
        choices: &[(&str, T)],
        in_ctx: &str,
    ) -> Option<T> {
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == name) {
            return Some(*v);
        }
        let names = choices.iter().map(|(n, _)| *n);
        let d = Diagnostic::error(format!("unknown {what} `{name}`{in_ctx}"));
        let d = match did_you_mean(name, names.clone()) {
            Some(close) => d.at(span, format!("did you mean `{close}`?")),
            None => d
                .at(span, "unknown")
                .help(format!("expected one of {}", backticked(names))),
        };
        self.report(d);
        None
    }

    /// A duration string such as "2s"; zero is rejected (no field of berth.toml wants it).
    pub fn duration(&mut self, table: &Table<'_, '_>, key: &str) -> Option<Duration> {
        let (d, span) = self.unit(table, key, "duration", "2s", units::duration)?;
        if d.is_zero() {
            self.report(
                Diagnostic::error(format!("`{key}` cannot be zero{}", table.in_ctx()))
                    .at(span, "must be longer than zero"),
            );
            return None;
        }
        Some(d)
    }

    /// A size string such as "512M", in bytes; zero is rejected.
    pub fn size(&mut self, table: &Table<'_, '_>, key: &str) -> Option<(u64, Range<usize>)> {
        let (bytes, span) = self.unit(table, key, "size", "512M", units::size)?;
        if bytes == 0 {
            self.report(
                Diagnostic::error(format!("`{key}` cannot be zero{}", table.in_ctx()))
                    .at(span, "must be larger than zero"),
            );
            return None;
        }
        Some((bytes, span))
    }

    /// A percentage string such as "5%", as a fraction in (0, 1].
    pub fn percent(&mut self, table: &Table<'_, '_>, key: &str) -> Option<f64> {
        self.unit(table, key, "percentage", "5%", units::percent)
            .map(|(p, _)| p)
    }

    /// A string with a unit, parsed by `parse` (e.g. [`crate::units::cpu_share`]).
    pub fn unit_value<T>(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        what: &str,
        example: &str,
        parse: fn(&str) -> Result<T, UnitError>,
    ) -> Option<T> {
        self.unit(table, key, what, example, parse).map(|(v, _)| v)
    }

    fn unit<T>(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        what: &str,
        example: &str,
        parse: fn(&str) -> Result<T, UnitError>,
    ) -> Option<(T, Range<usize>)> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => match parse(s) {
                Ok(v) => Some((v, value.span())),
                Err(e) => {
                    let mut d =
                        Diagnostic::error(format!("invalid {what} for `{key}`{}", table.in_ctx()))
                            .at(value.span(), e.problem);
                    d.help = e.help;
                    self.report(d);
                    None
                }
            },
            DeValue::Integer(_) => {
                let raw = self.text(value.span());
                let unit = match what {
                    "size" => "M",
                    "percentage" => "%",
                    _ => "s",
                };
                let help =
                    format!("write it as a string with a unit, e.g. {key} = \"{raw}{unit}\"");
                self.wrong_type(table, key, value, &format!("a {what} string"), Some(help));
                None
            }
            _ => {
                let help = format!("write it as a string with a unit, e.g. {key} = \"{example}\"");
                self.wrong_type(table, key, value, &format!("a {what} string"), Some(help));
                None
            }
        }
    }
}

/// The checked value of an optional key without default: `Some(None)` when absent, `None` when
/// present but wrong (already reported).
pub(crate) fn optional<T>(
    t: &Table<'_, '_>,
    key: &str,
    get: impl FnOnce(&str) -> Option<T>,
) -> Option<Option<T>> {
    if t.get(key).is_some() {
        get(key).map(Some)
    } else {
        Some(None)
    }
}

/// The checked value of an optional key, or `default` when the key is absent.
pub(crate) fn or_default<T>(
    t: &Table<'_, '_>,
    key: &str,
    default: T,
    get: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    if t.get(key).is_some() {
        get(key)
    } else {
        Some(default)
    }
}

/// The closest of `candidates` to `name`, if any is close enough to be a likely typo.
pub(crate) fn did_you_mean<'c>(
    name: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    // Jaro-Winkler catches most typos; edit distance catches swapped letters in short names
    // ("wbe" for "web"), which Jaro-Winkler scores low.
    candidates
        .into_iter()
        .map(|c| {
            let edits = strsim::osa_distance(name, c);
            let close_edit = edits <= (c.chars().count() / 3).max(1);
            let score = strsim::jaro_winkler(name, c) + if close_edit { 1.0 } else { 0.0 };
            (score, c)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "`a`, `b`, `c`"
pub(crate) fn backticked<'c>(items: impl IntoIterator<Item = &'c str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
