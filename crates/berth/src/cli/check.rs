//! `berth check [DIR]`: validate berth.toml exactly as the daemon will, and what the daemon
//! would refuse of the directory (links out of the tree) and of its routes (another app's), and
//! change nothing.

use std::path::Path;

use anyhow::Result;
use api::client::Client;
use api::{NoQuery, RouteCheck, RouteConflicts, RouteKey};
use http::Method;

use crate::{EXIT_BAD_INPUT, output};

pub async fn run(client: &Client, dir: &Path, env: Option<&str>) -> Result<u8> {
    let Some(spec) = load(dir, env)? else {
        return Ok(EXIT_BAD_INPUT);
    };
    let checked = match preflight(client, dir, &spec).await? {
        Preflight::Refused => return Ok(EXIT_BAD_INPUT),
        Preflight::Clear { daemon } => daemon,
    };
    let services: Vec<String> = spec
        .services
        .iter()
        .map(|(name, s)| {
            if s.instances > 1 {
                format!("{name} x{}", s.instances)
            } else {
                name.clone()
            }
        })
        .collect();
    output::line(format!(
        "ok: app {} — {} service{} ({}), {} route{}",
        spec.instance_name(),
        spec.services.len(),
        plural(spec.services.len()),
        services.join(", "),
        spec.routes.len(),
        plural(spec.routes.len()),
    ));
    smoke_hosts(&spec);
    if !checked {
        output::hint(format!(
            "no berth daemon answers at {}, so the routes were not checked against other apps'",
            client.target()
        ));
    }
    Ok(0)
}

/// Warns of smoke checks that have no host of their own to use: berth sends them with a name
/// it makes up under the app's wildcard route, which a multi-tenant app may not answer.
fn smoke_hosts(spec: &spec::AppSpec) {
    for (i, check) in spec.deploy.smoke.iter().enumerate() {
        if let spec::SmokeHost::UnderWildcard { host, pattern } = spec.smoke_host(check) {
            output::line(format!(
                "warning: [deploy] smoke #{} (GET {}) has no host to use: every route is a wildcard, so it is sent as {host} (under {pattern})",
                i + 1,
                check.path
            ));
            output::hint(format!(
                "give it a name the app answers: smoke = [{{ path = \"{}\", host = \"shop.{}\" }}]",
                check.path,
                pattern.trim_start_matches("*.")
            ));
        }
    }
}

/// What a check of the directory and the routes found.
pub enum Preflight {
    /// Problems were printed: the daemon would refuse the deploy.
    Refused,
    /// Nothing to refuse; `daemon` says whether the routes were checked against a daemon.
    Clear { daemon: bool },
}

/// What the daemon would refuse, found before anything is packed or sent: symlinks that point
/// outside the app directory (all of them), and routes another app serves (asked of the
/// daemon `client` reaches, when one answers). Every problem is printed.
pub async fn preflight(client: &Client, dir: &Path, spec: &spec::AppSpec) -> Result<Preflight> {
    let mut refused = false;
    let shipped = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            let files = deploy::shipped(&dir)?;
            Ok::<_, std::io::Error>(deploy::escaping_links(&dir, &files))
        })
        .await??
    };
    if !shipped.is_empty() {
        refused = true;
        output::progress(format!(
            "error: {} symlink{} in {} point{} outside the app directory; the daemon refuses {}:",
            shipped.len(),
            plural(shipped.len()),
            dir.display(),
            if shipped.len() == 1 { "s" } else { "" },
            if shipped.len() == 1 { "it" } else { "them" }
        ));
        for (link, target) in &shipped {
            output::progress(format!("  {} -> {}", link.display(), target.display()));
        }
        output::hint(
            "make each a relative link to a file inside the directory, or list it in .berthignore",
        );
    }
    let check = RouteCheck {
        app: spec.instance_name(),
        routes: spec
            .routes
            .iter()
            .map(|r| RouteKey {
                host: r.host.clone(),
                path: r.path.clone(),
            })
            .collect(),
    };
    let body = serde_json::to_vec(&check)?;
    let path = api::path(&["v1", "check", "routes"], &NoQuery {});
    let answer = client.send(Method::POST, &path, body.into()).await;
    let daemon = match answer {
        Ok(resp) => {
            let found: RouteConflicts = api::client::read_json(resp.into_body()).await?;
            for c in &found.conflicts {
                refused = true;
                output::progress(format!(
                    "error: route host \"{}\" path \"{}\" is already served by app {}",
                    c.host, c.path, c.app
                ));
            }
            if !found.conflicts.is_empty() {
                output::hint("give this app its own host or path in berth.toml");
            }
            true
        }
        Err(api::client::Error::NoDaemon { .. }) => false,
        Err(err) => return Err(err.into()),
    };
    Ok(if refused {
        Preflight::Refused
    } else {
        Preflight::Clear { daemon }
    })
}

/// Read and validate `DIR/berth.toml`. Problems are printed; `None` means the spec is invalid.
pub fn load(dir: &Path, env: Option<&str>) -> Result<Option<spec::AppSpec>> {
    let path = dir.join("berth.toml");
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(super::BadInput(format!(
                "no berth.toml in {}: run berth in your app's directory, or pass it as DIR",
                dir.display()
            ))
            .into());
        }
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!("read {}", path.display())));
        }
    };
    match spec::parse_env(&path.display().to_string(), &source, env) {
        Ok(spec) => Ok(Some(spec)),
        Err(diagnostics) => {
            output::diagnostics(diagnostics);
            Ok(None)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
