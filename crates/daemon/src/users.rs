//! Who an app runs as. A root daemon runs each app, and its build, as a user of its own
//! (`berth-APP`, created on the app's first deploy; or the existing user `[app] user` names,
//! never root); the app cannot read berth's keys, another app's files or its processes. A
//! daemon that is not root cannot switch users: it runs apps as itself, and says so loudly.

use std::path::Path;

use api::Gate;
use spec::AppSpec;
use supervisor::RunAs;
use supervisor::command::Command;

use crate::failure::Failure;

/// Whether this daemon can give apps users of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Isolation {
    On,
    /// Why not, in words for status and the start-up log.
    Off(String),
}

impl Isolation {
    pub fn detect() -> Isolation {
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            Isolation::On
        } else {
            Isolation::Off(format!(
                "the daemon runs as uid {uid}, not root, so it cannot switch users: every app runs as the daemon's own user and can read berth's keys; run the daemon as root (see `berth serve --help`)"
            ))
        }
    }
}

/// What this host lets the daemon do for isolation, found at start.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    pub isolation: Isolation,
    /// A child can get a private `/tmp` (a mount namespace); else why not.
    pub private_tmp: Result<(), String>,
}

impl Host {
    /// Whether the daemon is root, and (then) whether a child can have its own `/tmp`: the
    /// kernel lets it unshare a mount namespace (tried with `scratch`), and the state directory
    /// is not under `/tmp` (binding the app's directory over `/tmp` would hide the release it
    /// runs from).
    pub async fn detect(state: &Path, scratch: &Path) -> Host {
        let isolation = Isolation::detect();
        let state = state.canonicalize().unwrap_or_else(|_| state.to_owned());
        let private_tmp = if isolation != Isolation::On {
            Err("the daemon is not root".to_owned())
        } else if state.starts_with("/tmp") {
            Err(format!(
                "the state directory {} is under /tmp; apps get TMPDIR only",
                state.display()
            ))
        } else if std::fs::create_dir_all(scratch).is_err()
            || !supervisor::command::private_tmp_works(scratch).await
        {
            Err("this kernel (or container) refuses a private mount namespace; apps get TMPDIR only".to_owned())
        } else {
            Ok(())
        };
        match &isolation {
            Isolation::On => {
                tracing::info!(private_tmp = ?private_tmp, "apps run as users of their own")
            }
            Isolation::Off(why) => tracing::warn!("app isolation is OFF: {why}"),
        }
        Host {
            isolation,
            private_tmp,
        }
    }
}

/// The user and group an app's processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl AppUser {
    pub fn run_as(&self) -> RunAs {
        RunAs::new(self.uid, self.gid).expect("an app user is never root")
    }
}

/// The user berth makes for `app` (`shop` → `berth-shop`, `shop.staging` →
/// `berth-shop_staging`); `_` cannot appear in app names, so two apps never share one. Names
/// longer than Linux's 32 characters keep their start and end in a hash.
pub(crate) fn user_name(app: &str) -> String {
    let name = format!("berth-{}", app.replace('.', "_"));
    if name.len() <= 32 {
        return name;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    app.hash(&mut h);
    format!("{}-{:08x}", &name[..23], h.finish() as u32)
}

/// The user of `spec`'s app, created when it is berth's to make. `home` is the app's home
/// directory (`apps/APP/home`).
pub(crate) async fn ensure(
    isolation: &Isolation,
    spec: &AppSpec,
    home: &Path,
) -> Result<Option<AppUser>, Failure> {
    let app = spec.instance_name();
    if let Isolation::Off(why) = isolation {
        if let Some(user) = &spec.user {
            return Err(Failure::new(
                Gate::User,
                format!("{app} asks to run as user {user}, and {why}"),
            ));
        }
        return Ok(None);
    }
    let (name, ours) = match &spec.user {
        Some(user) => (user.clone(), false),
        None => (user_name(&app), true),
    };
    if let Some(user) = lookup(&name)? {
        return Ok(Some(user));
    }
    if !ours {
        return Err(Failure::new(
            Gate::User,
            format!("[app] user = \"{name}\" of {app}: no such user on this server"),
        )
        .hint(format!(
            "create it (e.g. `useradd --system --user-group {name}`), or leave `user` out and berth makes one for the app"
        )));
    }
    // Another daemon on this host (or useradd's lock on /etc/passwd) may be at it too: a
    // failure with the user there is a success, and a busy lock is tried again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let made = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--shell"])
            .arg("/usr/sbin/nologin")
            .arg("--home-dir")
            .arg(home)
            .arg("--comment")
            .arg(format!("berth app {app}"))
            .arg(&name)
            .output()
            .await
            .map_err(|e| {
                Failure::new(Gate::User, format!("create user {name} for {app}: {e}")).hint(
                    "berth needs `useradd` (Debian package passwd) to give each app its own user",
                )
            })?;
        if made.status.success() {
            break;
        }
        if let Some(user) = lookup(&name)? {
            return Ok(Some(user));
        }
        // useradd exits 10 when it cannot lock /etc/passwd or /etc/group.
        if made.status.code() == Some(10) && attempt < 10 {
            tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            continue;
        }
        return Err(Failure::new(
            Gate::User,
            format!(
                "create user {name} for {app}: useradd {}: {}",
                made.status,
                String::from_utf8_lossy(&made.stderr).trim()
            ),
        ));
    }
    tracing::info!(app, user = %name, "created the app's user");
    lookup(&name)?.map(Some).ok_or_else(|| {
        Failure::new(
            Gate::User,
            format!("useradd made user {name} for {app}, and it is not there"),
        )
    })
}

/// The user `name`, with its primary group; refused if it is root.
fn lookup(name: &str) -> Result<Option<AppUser>, Failure> {
    let found = nix::unistd::User::from_name(name)
        .map_err(|e| Failure::new(Gate::User, format!("look up user {name}: {e}")))?;
    let Some(user) = found else { return Ok(None) };
    if user.uid.is_root() {
        return Err(Failure::new(
            Gate::User,
            format!("user {name} has uid 0: an app never runs as root"),
        ));
    }
    Ok(Some(AppUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

#[cfg(test)]
mod tests {
    use super::user_name;

    #[test]
    fn user_names_are_distinct_and_short() {
        assert_eq!(user_name("shop"), "berth-shop");
        assert_eq!(user_name("shop.staging"), "berth-shop_staging");
        let long = user_name("a-very-long-application-name.production");
        assert!(long.len() <= 32, "{long}");
        assert_ne!(long, user_name("a-very-long-application-name.producti0n"));
    }
}
