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
