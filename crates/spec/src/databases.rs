//! `[databases.NAME]`: the app's own databases, which berth backs up and restores in drills
//! but does not run; and the rule for paths in the app's shared directory, which `[backups]`
//! shares.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::diagnostic::Diagnostic;
use crate::model::{DatabaseEngine, DatabaseSpec};
use crate::schema::named_tables;
use crate::secrets::{Defined, check_template, inner_span};
use crate::walk::{Problem, Table, Value, Walker, optional};

const DATABASE_KEYS: &[&str] = &["engine", "url", "verify_url", "path"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    Sqlite,
}

const ENGINES: &[(&str, Engine)] = &[("postgres", Engine::Postgres), ("sqlite", Engine::Sqlite)];

impl Engine {
    fn name(self) -> &'static str {
        ENGINES
            .iter()
            .find(|(_, e)| *e == self)
            .map_or("?", |(n, _)| n)
    }
}

/// `[databases.NAME]`: the valid databases, and the names of all written (so a backup of a
/// database with problems of its own is not reported twice).
pub(crate) fn databases(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    defined: &Defined<'_>,
) -> (BTreeMap<String, DatabaseSpec>, Vec<String>) {
    named_tables(w, value, "database", "databases", |w, value, _, ctx| {
        database(w, value, ctx, defined)
    })
}

fn database(
    w: &mut Walker<'_>,
    value: &Value<'_>,
    ctx: &str,
    defined: &Defined<'_>,
) -> Option<DatabaseSpec> {
    let t = w.named_table(value, ctx, DATABASE_KEYS, || {
        format!(
            "write {ctx} on one line and below it engine = \"postgres\" and url = \"${{DATABASE_URL}}\""
        )
    })?;
    // Each key is checked even when `engine` is missing or wrong, so that one pass finds
    // every problem; a key of the other engine is checked as that engine's.
    let engine = w
        .required(&t, "engine", "engine = \"postgres\"")
        .and_then(|_| w.string(&t, "engine"))
        .and_then(|(name, span)| w.one_of("engine", name, span, ENGINES, &t.in_ctx()));
    let url = optional(&t, "url", |k| postgres_url(w, &t, k, defined));
    let verify_url = optional(&t, "verify_url", |k| postgres_url(w, &t, k, defined));
    let path = optional(&t, "path", |k| shared_path_value(w, &t, k, "data/app.db"));
    let engine = engine?;
    let mut foreign = false;
    for (key, key_engine) in [
        ("url", Engine::Postgres),
        ("verify_url", Engine::Postgres),
        ("path", Engine::Sqlite),
    ] {
        if let Some((key_span, _)) = t.entry(key)
            && key_engine != engine
        {
            let (label, help) = match engine {
                Engine::Postgres => (
                    "only for sqlite",
                    format!("a postgres database is reached through `url`; remove `{key}`"),
                ),
                Engine::Sqlite => (
                    "only for postgres",
                    format!(
                        "a sqlite database is the file at `path` in the app's shared directory; remove `{key}`"
                    ),
                ),
            };
            w.report(
                Diagnostic::error(format!(
                    "`{key}` is not a key of a {} database{}",
                    engine.name(),
                    t.in_ctx()
                ))
                .at(key_span, label)
                .help(help),
            );
            foreign = true;
        }
    }
    let spec = match engine {
        Engine::Postgres => {
            w.required(&t, "url", "url = \"${DATABASE_URL}\"");
            let (url, verify_url) = (url??, verify_url?);
            if let (Some(v), Some(value)) = (&verify_url, t.get("verify_url"))
                && *v == url
            {
                w.report(
                    Diagnostic::error(format!("`verify_url` is the same as `url`{}", t.in_ctx()))
                        .at(value.span(), "a drill would restore over the live database")
                        .help("point `verify_url` at a scratch database, or leave it out for one on the same server"),
                );
                return None;
            }
            DatabaseEngine::Postgres { url, verify_url }
        }
        Engine::Sqlite => {
            w.required(&t, "path", "path = \"data/app.db\"");
            DatabaseEngine::Sqlite { path: path?? }
        }
    };
    (!foreign).then_some(DatabaseSpec { engine: spec })
}

/// `url` or `verify_url`: a template whose references are defined, a postgres URL, with no
/// password written in the file.
fn postgres_url(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    key: &str,
    defined: &Defined<'_>,
) -> Option<String> {
    let (url, span) = w.non_empty_string(t, key)?;
    let owner = format!("`{key}`{}", t.in_ctx());
    check_template(w, &owner, url, &span, defined)?;
    let secret = if key == "url" {
        "DATABASE_URL"
    } else {
        "DRILL_DATABASE_URL"
    };
    let from_secret = format!(
        "write {key} = \"${{{secret}}}\" and declare {secret} = {{ required = true }} in [secrets]; set it with `berth secrets set`"
    );
    if !url.starts_with("${")
        && !["postgres://", "postgresql://"]
            .iter()
            .any(|s| url.starts_with(s))
    {
        w.report(
            Diagnostic::error(format!("{owner} is not a postgres URL"))
                .at(span, "must start with postgres:// or postgresql://")
                .help(from_secret),
        );
        return None;
    }
    no_literal_password(w, &owner, url, &span, from_secret)?;
    Some(url.to_owned())
}

/// Reports a password written as is in `url` (at `span`, the string's span) with `help`;
/// `None` then.
pub(crate) fn no_literal_password(
    w: &mut Walker<'_>,
    owner: &str,
    url: &str,
    span: &std::ops::Range<usize>,
    help: String,
) -> Option<()> {
    let Some(range) = literal_password(url) else {
        return Some(());
    };
    w.report(
        Diagnostic::error(format!("password written in {owner}"))
            .at(
                inner_span(w.source, span, url, range),
                "a password must come from a secret",
            )
            .help(help),
    );
    None
}

/// The bytes of a password written as is in the user info of `url` (`postgres://app:PW@db`,
/// also `smtps://` URLs of `[[notify]]`),
/// unless it is a `${NAME}` reference (or contains one).
pub(crate) fn literal_password(url: &str) -> Option<Range<usize>> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let user_info = &authority[..authority.rfind('@')?];
    // A reference's name holds no `:`, so the first one ends the user name.
    let (_, password) = user_info.split_once(':')?;
    if password.is_empty() || password.contains("${") {
        return None;
    }
    let start = authority_start + user_info.len() - password.len();
    Some(start..start + password.len())
}

/// A string `key` of `t` that names a path in the app's shared directory, normalized.
pub(crate) fn shared_path_value(
    w: &mut Walker<'_>,
    t: &Table<'_, '_>,
    key: &str,
    example: &str,
) -> Option<String> {
    let (text, span) = w.string(t, key)?;
    match shared_path(text, example) {
        Ok(path) => Some(path),
        Err(problem) => {
            w.problem(format!("invalid `{key}`{}", t.in_ctx()), span, problem);
            None
        }
    }
}

/// A path in the app's shared directory (`BERTH_SHARED`, kept across releases): relative and
/// staying inside, returned normalized (`./data//app.db` is `data/app.db`). `example` is a
/// good path to suggest.
pub(crate) fn shared_path(text: &str, example: &str) -> Result<String, Problem> {
    let hint = || {
        Some(format!(
            "name a path in the app's shared directory, e.g. \"{example}\""
        ))
    };
    if text.trim().is_empty() {
        return Err(("must not be empty".to_owned(), hint()));
    }
    if text.starts_with('/') {
        return Err((
            "must be relative to the app's shared directory".to_owned(),
            Some(format!(
                "paths here are in the app's shared directory (BERTH_SHARED, kept across releases), e.g. \"{example}\""
            )),
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err((
                        "leaves the app's shared directory".to_owned(),
                        Some(format!(
                            "remove `..`: only what is in the app's shared directory (BERTH_SHARED) is reachable, e.g. \"{example}\""
                        )),
                    ));
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(("names the shared directory itself".to_owned(), hint()));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_paths_are_normalized() {
        let ok = |text: &str| shared_path(text, "x").unwrap();
        let err = |text: &str| shared_path(text, "x").unwrap_err().0;
        assert_eq!(ok("data/app.db"), "data/app.db");
        assert_eq!(ok("./data//app.db"), "data/app.db");
        assert_eq!(ok("data/./tmp/../app.db/"), "data/app.db");
        assert_eq!(ok("uploads"), "uploads");
        assert_eq!(err(""), "must not be empty");
        assert_eq!(
            err("/srv/app.db"),
            "must be relative to the app's shared directory"
        );
        assert_eq!(err("../app.db"), "leaves the app's shared directory");
        assert_eq!(err("data/../../x"), "leaves the app's shared directory");
        assert_eq!(err("./"), "names the shared directory itself");
        assert_eq!(err("data/.."), "names the shared directory itself");
    }

    #[test]
    fn passwords_in_urls() {
        fn pw(url: &str) -> Option<&str> {
            literal_password(url).map(|r| &url[r])
        }
        assert_eq!(pw("postgres://app:hunter2@db/shop"), Some("hunter2"));
        assert_eq!(pw("postgresql://app:p@ss@db:5432/shop"), Some("p@ss"));
        assert_eq!(
            pw("postgres://app:hunter2@${DB_HOST}/shop"),
            Some("hunter2")
        );
        assert_eq!(pw("postgres://app@db/shop"), None);
        assert_eq!(pw("postgres://app:@db/shop"), None);
        assert_eq!(pw("postgres://db/shop?user=app"), None);
        assert_eq!(pw("postgres:///shop?host=/run/postgresql"), None);
        assert_eq!(pw("postgres://app:${DB_PASSWORD}@db/shop"), None);
        assert_eq!(pw("postgres://${DB_USER}:${DB_PASSWORD}@db/shop"), None);
        assert_eq!(pw("postgres://${DB_AUTH}@db/shop"), None);
        assert_eq!(pw("${DATABASE_URL}"), None);
    }
}
