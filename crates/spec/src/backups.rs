//! `[backups.NAME]`: what is backed up (a database of `[databases]` or a directory of the
//! shared directory), when (`schedule`, see `cron.rs`), how many are kept, where they go and
//! how often one is restored in a drill.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use crate::cron::check_schedule;
use crate::databases::shared_path_value;
use crate::diagnostic::Diagnostic;
use crate::model::{BackupSource, BackupSpec, BackupTarget, Keep, VerifyCadence};
use crate::schema::named_tables;
use crate::secrets::{Defined, inner_span, key_span};
use crate::walk::{Problem, Table, Value, Walker, backticked, did_you_mean, or_default};

const BACKUP_KEYS: &[&str] = &["database", "dir", "schedule", "keep", "to", "verify"];
const KEEP_KEYS: &[&str] = &["last", "daily", "weekly", "monthly"];
const KEEP_EXAMPLE: &str = "keep = { last = 3, daily = 7, weekly = 4, monthly = 12 }";

/// `[backups.NAME]`. `databases`: the names of all `[databases.NAME]` written.
pub(crate) fn backups(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    databases: &[String],
    defined: &Defined<'_>,
) -> BTreeMap<String, BackupSpec> {
    let (backups, _) = named_tables(w, value, "backup", "backups", |w, value, _, ctx| {
        backup(w, value, ctx, databases, defined)
    });
    backups
}

fn backup(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    ctx: &str,
    databases: &[String],
    defined: &Defined<'_>,
) -> Option<BackupSpec> {
    let t = w.named_table(value, ctx, BACKUP_KEYS, || {
        format!("write {ctx} on one line and below it database = \"main\" or dir = \"uploads\"")
    })?;
    let source = source(w, &t, databases);
    let schedule = or_default(
        &t,
        "schedule",
        BackupSpec::DEFAULT_SCHEDULE.to_owned(),
        |k| schedule(w, &t, k),
    );
    let keep = or_default(&t, "keep", Keep::default(), |k| keep(w, &t, k));
    let to = or_default(&t, "to", BackupTarget::Default, |k| {
        target(w, &t, k, defined)
    });
    let verify = or_default(&t, "verify", VerifyCadence::default(), |k| {
        let (name, span) = w.string(&t, k)?;
        let choices = VerifyCadence::ALL.map(|v| (v.as_str(), v));
        w.one_of("verify cadence", name, span, &choices, &t.in_ctx())
    });
    Some(BackupSpec {
        source: source?,
        schedule: schedule?,
        keep: keep?,
        to: to?,
        verify: verify?,
    })
}

/// `database = "NAME"` or `dir = "PATH"`, exactly one.
fn source(w: &mut Walker<'_>, t: &Table<'_, '_>, databases: &[String]) -> Option<BackupSource> {
    let example = databases.first().map_or("main", String::as_str);
    match (t.entry("database"), t.entry("dir")) {
        (Some(_), Some((dir_key, _))) => {
            w.report(
                Diagnostic::error(format!(
                    "backup has both `database` and `dir`{}",
                    t.in_ctx()
                ))
                .at(dir_key, "a backup copies one thing")
                .help("split it into two backups: one with `database`, one with `dir`"),
            );
            None
        }
        (None, None) => {
            if !t.has_typo_of("database") && !t.has_typo_of("dir") {
                w.report(
                    Diagnostic::error(format!(
                        "backup says neither `database` nor `dir`{}",
                        t.in_ctx()
                    ))
                    .at(t.span.clone(), "what is backed up?")
                    .help(format!(
                        "add database = \"{example}\" (a [databases.NAME]) or dir = \"uploads\" (a directory in the app's shared directory)"
                    )),
                );
            }
            None
        }
        (Some(_), None) => {
            let (name, span) = w.string(t, "database")?;
            if databases.iter().any(|d| d == name) {
                return Some(BackupSource::Database(name.to_owned()));
            }
            let d = Diagnostic::error(format!("backup of unknown database `{name}`{}", t.in_ctx()));
            let d = match did_you_mean(name, databases.iter().map(String::as_str)) {
                Some(close) => d.at(span, format!("did you mean `{close}`?")),
                None if databases.is_empty() => {
                    d.at(span, "no databases are defined").help(format!(
                        "define it: [databases.{name}] with engine = \"postgres\" and url = \"${{DATABASE_URL}}\""
                    ))
                }
                None => d.at(span, "no such database").help(format!(
                    "defined databases: {}",
                    backticked(databases.iter().map(String::as_str))
                )),
            };
            w.report(d);
            None
        }
        (None, Some(_)) => shared_path_value(w, t, "dir", "uploads").map(BackupSource::Dir),
    }
}

fn schedule(w: &mut Walker<'_>, t: &Table<'_, '_>, key: &str) -> Option<String> {
    let (text, span) = w.non_empty_string(t, key)?;
    match check_schedule(text) {
        Ok(()) => Some(text.to_owned()),
        Err(e) => {
            w.report(
                Diagnostic::error(format!("invalid `{key}`{}", t.in_ctx()))
                    .at(inner_span(w.source, &span, text, e.range), e.label)
                    .help(e.help),
            );
            None
        }
    }
}

/// `keep = { last, daily, weekly, monthly }`: keys left out are 0; not all may be.
fn keep(w: &mut Walker<'_>, t: &Table<'_, '_>, key: &str) -> Option<Keep> {
    let value = t.get(key)?;
    let ctx = format!("`{key}` of {}", t.ctx);
    let Some(k) = w.table(value, &ctx, KEEP_KEYS) else {
        let help = format!("write {KEEP_EXAMPLE}");
        w.wrong_type(t, key, value, "a table", Some(help));
        return None;
    };
    let mut count = |name| or_default(&k, name, 0, |name| w.int(&k, name, 0, Keep::MAX));
    let (last, daily, weekly, monthly) = (
        count("last"),
        count("daily"),
        count("weekly"),
        count("monthly"),
    );
    let keep = Keep {
        last: last?,
        daily: daily?,
        weekly: weekly?,
        monthly: monthly?,
    };
    if keep
        == (Keep {
            last: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
        })
    {
        w.report(
            Diagnostic::error(format!("`{key}`{} would keep nothing", t.in_ctx()))
                .at(value.span(), "every count is zero")
                .help(format!(
                    "keep at least one backup, e.g. keep = {{ last = 3 }}; or leave out `{key}` for {KEEP_EXAMPLE}"
                )),
        );
        return None;
    }
    Some(keep)
}

/// `to = "s3://BUCKET[/PREFIX]"` or an absolute directory.
fn target(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    key: &str,
    defined: &Defined<'_>,
) -> Option<BackupTarget> {
    let (text, span) = w.non_empty_string(t, key)?;
    let message = format!("invalid `{key}`{}", t.in_ctx());
    if let Some(rest) = text.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if let Err(problem) = check_bucket(bucket) {
            let at = inner_span(w.source, &span, text, 5..5 + bucket.len());
            w.problem(message, at, problem);
            return None;
        }
        if !s3_credentials(w, t, key, &span, defined) {
            return None;
        }
        let prefix: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
        return Some(BackupTarget::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.join("/"),
        });
    }
    if text.starts_with('/') {
        return Some(BackupTarget::Local(PathBuf::from(text)));
    }
    let (label, help) = match text.split_once("://") {
        Some((scheme, _)) => (
            format!("`{scheme}://` is not a backup target berth knows"),
            "write s3://BUCKET/PREFIX (any S3-compatible store, S3_ENDPOINT sets which) or an absolute directory such as \"/srv/backups\"".to_owned(),
        ),
        None => (
            "a relative path".to_owned(),
            format!(
                "write an absolute directory, e.g. \"/srv/backups\", or s3://BUCKET/PREFIX; or leave out `{key}` for the daemon's STATE/backups/APP"
            ),
        ),
    };
    w.report(Diagnostic::error(message).at(span, label).help(help));
    None
}

/// An S3 bucket name: 3 to 63 characters of `[a-z0-9.-]`, a letter or digit at each end.
fn check_bucket(bucket: &str) -> Result<(), Problem> {
    let form = "write s3://BUCKET or s3://BUCKET/PREFIX";
    let err = |label: &str, help: String| Err((label.to_owned(), Some(help)));
    let rule = || {
        "a bucket name is 3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit".to_owned()
    };
    if bucket.is_empty() {
        return err("no bucket name", form.to_owned());
    }
    if bucket.chars().any(|c| c.is_ascii_uppercase()) {
        let lower = bucket.to_ascii_lowercase();
        return err("bucket names are lowercase", format!("write \"{lower}\""));
    }
    if !(3..=63).contains(&bucket.len()) {
        return err("not 3 to 63 characters long", rule());
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
    {
        return err(&format!("`{c}` cannot be in a bucket name"), rule());
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(bucket.chars().next()) || !alnum(bucket.chars().last()) {
        return err("must start and end with a letter or digit", rule());
    }
    Ok(())
}

/// An S3 target needs [`BackupTarget::S3_SECRETS`] declared in `[secrets]` (not `[env]`).
/// Reports what is missing; `true` when nothing is.
fn s3_credentials(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    key: &str,
    span: &Range<usize>,
    defined: &Defined<'_>,
) -> bool {
    let mut missing = Vec::new();
    let mut ok = true;
    for name in BackupTarget::S3_SECRETS {
        if defined.secrets.contains(name) {
            continue;
        }
        ok = false;
        match defined.env.get(name) {
            Some((_, value_span)) => w.report(
                Diagnostic::error(format!(
                    "`{name}` is in [env], but S3 credentials must be secrets"
                ))
                .at(key_span(w, value_span), "a credential in plain configuration")
                .help(format!(
                    "move it to [secrets]: {name} = {{ required = true }}, and set the value with `berth secrets set`"
                )),
            ),
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        let names = backticked(missing.iter().copied());
        let lines: Vec<String> = missing
            .iter()
            .map(|n| format!("{n} = {{ required = true }}"))
            .collect();
        w.report(
            Diagnostic::error(format!("`{key}`{} needs {names} in [secrets]", t.in_ctx()))
                .at(span.clone(), "an S3 target needs credentials")
                .help(format!(
                    "add under [secrets]: {}; then set the values with `berth secrets set`",
                    lines.join(" and ")
                )),
        );
    }
    ok
}
