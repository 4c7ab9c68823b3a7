//! The names berth.toml gives: apps and services, environment variables.

use crate::walk::Problem;

/// App and service names: `[a-z0-9-]`, 1 to 40 characters, a letter first, no `-` last
/// (so they work as DNS labels and Kubernetes names).
pub(crate) fn check_name(name: &str) -> Result<(), Problem> {
    // Suggest a fix only when case or separators are all that is wrong.
    let fixed = name
        .trim()
        .to_ascii_lowercase()
        .replace(['_', ' ', '.'], "-")
        .trim_matches('-')
        .to_owned();
    let fixable = !fixed.is_empty()
        && fixed.len() <= 40
        && fixed.starts_with(|c: char| c.is_ascii_lowercase())
        && fixed
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let suggest = || (fixable && fixed != name).then(|| format!("try \"{fixed}\""));
    let label = if name.is_empty() {
        "must not be empty"
    } else if name.len() > 40 {
        "longer than 40 characters"
    } else if name
        .chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        "only lowercase letters, digits and `-` are allowed"
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a letter"
    } else if name.ends_with('-') {
        "must not end with `-`"
    } else {
        return Ok(());
    };
    Err((label.to_owned(), suggest()))
}

/// A Unix user name (`[a-z_][a-z0-9_-]*`, at most 32 characters), and never `root`: an app
/// never runs as root.
pub(crate) fn check_user(name: &str) -> Result<(), Problem> {
    if name == "root" {
        return Err((
            "an app never runs as root".to_owned(),
            Some("leave `user` out: berth creates a user for the app (berth-NAME)".to_owned()),
        ));
    }
    let valid = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        return Ok(());
    }
    Err((
        "not a user name".to_owned(),
        Some(
            "an existing user: lowercase letters, digits, `_` and `-`, at most 32 characters"
                .to_owned(),
        ),
    ))
}

/// `[A-Z_][A-Z0-9_]*`, not set by berth itself.
pub(crate) fn check_env_name(name: &str) -> Result<(), Problem> {
    if name == "PORT" {
        return Err((
            "set by berth".to_owned(),
            Some("berth gives each instance its own PORT; remove this line".to_owned()),
        ));
    }
    if name.starts_with("BERTH_") {
        return Err((
            "reserved".to_owned(),
            Some("names starting with BERTH_ are set by berth".to_owned()),
        ));
    }
    let valid = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        return Ok(());
    }
    let fixed: String = name
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let help = if fixed.starts_with(|c: char| c.is_ascii_digit()) || fixed == name {
        "use uppercase letters, digits and `_`, not starting with a digit".to_owned()
    } else {
        format!("write `{fixed}`")
    };
    Err(("not a valid name".to_owned(), Some(help)))
}

/// An app as berth runs it: `shop`, or `shop.staging` for an environment. `Err` says what is
/// wrong and what the rule is, in one line.
pub fn check_app_name(app: &str) -> Result<(), String> {
    let (name, env) = match app.split_once('.') {
        Some((name, env)) => (name, Some(env)),
        None => (app, None),
    };
    for (part, what) in std::iter::once((name, "app name")).chain(env.map(|e| (e, "environment"))) {
        if let Err((problem, help)) = check_name(part) {
            let help = help.map(|h| format!(" ({h})")).unwrap_or_default();
            return Err(format!(
                "{what} \"{}\": {problem}{help}; an app is NAME or NAME.ENVIRONMENT, each 1 to 40 lowercase letters, digits and `-`, starting with a letter",
                part.escape_debug()
            ));
        }
    }
    Ok(())
}

/// The rule for a secret's (or any env variable's) name, as one sentence for an operator:
/// `Err` says what is wrong and what the rule is.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    check_env_name(name).map_err(|(what, help)| {
        let shown = name.escape_debug();
        let rule = "a secret name is an environment variable name: uppercase letters, digits and `_`, not starting with a digit, and not PORT or BERTH_*";
        match help {
            Some(help) => format!("secret name \"{shown}\": {what} ({help}); {rule}"),
            None => format!("secret name \"{shown}\": {what}; {rule}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::check_secret_name;

    #[test]
    fn secret_names_say_the_rule() {
        assert!(check_secret_name("DB_PASSWORD").is_ok());
        for bad in [
            "",
            "db password",
            "A/B",
            "LINE\nBREAK",
            "PORT",
            "BERTH_X",
            "1ST",
        ] {
            let err = check_secret_name(bad).unwrap_err();
            assert!(
                err.contains("a secret name is an environment variable name"),
                "{bad:?}: {err}"
            );
        }
        assert!(
            check_secret_name("db_password")
                .unwrap_err()
                .contains("write `DB_PASSWORD`")
        );
        // A newline is shown escaped, so the message stays one line.
        assert!(!check_secret_name("A\nB").unwrap_err().contains('\n'));
    }

    #[test]
    fn app_names_with_environments() {
        use super::check_app_name;
        assert!(check_app_name("shop").is_ok());
        assert!(check_app_name("shop.staging").is_ok());
        let err = check_app_name("Shop").unwrap_err();
        assert!(
            err.contains("app name \"Shop\"") && err.contains("try \"shop\""),
            "{err}"
        );
        let err = check_app_name("shop.").unwrap_err();
        assert!(err.contains("environment \"\": must not be empty"), "{err}");
        assert!(check_app_name("a/b").is_err());
    }
}
