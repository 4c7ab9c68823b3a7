//! `berth deploy [DIR] [--dry-run] [--wait]` and `berth rollback APP [--to RELEASE]`: send the
//! request, then show each phase of the rollout as the daemon reports it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use api::client::{Client, for_each_line, read_json};
use api::{DeployEvent, DeployQuery, Plan, RollbackQuery};
use bytes::Bytes;
use http::Method;

use crate::{EXIT_BAD_INPUT, EXIT_FAILED, output};

pub async fn run(
    client: &Client,
    dir: &Path,
    env: Option<&str>,
    dry_run: bool,
    wait: bool,
) -> Result<u8> {
    // Same validation as the daemon's, so mistakes are caught before anything is sent.
    let Some(spec) = super::check::load(dir, env)? else {
        return Ok(EXIT_BAD_INPUT);
    };
    if let super::check::Preflight::Refused = super::check::preflight(client, dir, &spec).await? {
        return Ok(EXIT_BAD_INPUT);
    }
    let started = Instant::now();
    let packed = {
        let src = dir.to_owned();
        tokio::task::spawn_blocking(move || deploy::pack(&src))
            .await?
            .with_context(|| format!("pack {}", dir.display()))?
    };
    output::progress(format!(
        "==> packed {} files ({} KiB, sha256 {})",
        packed.files,
        packed.bytes.len() / 1024,
        &packed.digest[..12]
    ));
    let query = DeployQuery {
        dry_run,
        wait,
        env: env.map(str::to_owned),
    };
    let path = api::path(&["v1", "deploy"], &query);
    let resp = client
        .send_with_progress(
            Method::POST,
            &path,
            Bytes::from(packed.bytes),
            Some(upload_progress(client.target(), started)),
        )
        .await
        .with_context(|| {
            let what = if dry_run {
                "plan a deploy of"
            } else {
                "deploy"
            };
            format!("{what} {}", spec.instance_name())
        })?;
    if dry_run {
        let plan: Plan = read_json(resp.into_body()).await.context("read the plan")?;
        print_plan(&plan);
        return Ok(0);
    }
    follow(resp.into_body(), &spec.instance_name(), "deployed", started).await
}

pub async fn rollback(client: &Client, app: &str, to: Option<&str>, wait: bool) -> Result<u8> {
    let started = Instant::now();
    let query = RollbackQuery {
        to: to.map(str::to_owned),
        wait,
    };
    let resp = client
        .send(
            Method::POST,
            &api::path(&["v1", "apps", app, "rollback"], &query),
            Bytes::new(),
        )
        .await
        .with_context(|| format!("roll back {app}"))?;
    follow(resp.into_body(), app, "rolled back", started).await
}

/// Shows the archive going to the daemon: a line a second while it goes (a slow link, SSH),
/// and one when all of it is sent.
fn upload_progress(to: String, started: Instant) -> api::client::Progress {
    let shown = std::sync::Mutex::new(Instant::now());
    std::sync::Arc::new(move |sent, total| {
        let at = started.elapsed().as_secs_f64();
        if sent == total {
            output::progress(format!(
                "==> [{at:6.2}s] sent {} to {to}",
                api::human_bytes(total)
            ));
            return;
        }
        let mut shown = shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.elapsed() >= std::time::Duration::from_secs(1) {
            *shown = Instant::now();
            output::progress(format!(
                "    [{at:6.2}s] sending: {} of {} ({}%)",
                api::human_bytes(sent),
                api::human_bytes(total),
                sent * 100 / total.max(1)
            ));
        }
    })
}

/// Print the rollout's progress; exit 0 when it went live, 1 when it did not.
pub async fn follow(
    body: api::client::Body,
    app: &str,
    verb: &str,
    started: Instant,
) -> Result<u8> {
    let mut outcome = None;
    let streamed = for_each_line(body, |line| {
        let event: DeployEvent = serde_json::from_str(line)
            .with_context(|| format!("unexpected line from the daemon: {line}"))?;
        let at = started.elapsed().as_secs_f64();
        match event {
            DeployEvent::Phase { phase, detail } => {
                output::progress(format!("==> [{at:6.2}s] {phase}: {detail}"))
            }
            DeployEvent::Build { line } => output::progress(format!("    | {line}")),
            DeployEvent::Ready {
                service,
                instance,
                port,
            } => output::progress(format!(
                "    [{at:6.2}s] {service}.{instance} ready on 127.0.0.1:{port}"
            )),
            DeployEvent::Done(done) => outcome = Some(done),
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    // A stream cut short (the daemon stopped or crashed) is said plainly, with where to look;
    // an unreadable line is a different failure and keeps its own message.
    let cut = match streamed {
        Ok(()) => outcome.is_none(),
        Err(err) => match err.downcast_ref::<api::client::Error>() {
            Some(api::client::Error::Read(_)) => true,
            _ => return Err(err),
        },
    };
    let Some(done) = outcome.filter(|_| !cut) else {
        anyhow::bail!(
            "the berth daemon went away before {app} was done (it stopped or crashed); `berth status {app}` shows what serves now and `berth history {app}` how the rollout ended"
        );
    };
    if done.ok {
        output::line(format!(
            "{verb} {} {} in {:.1}s",
            done.app,
            done.release,
            started.elapsed().as_secs_f64()
        ));
        return Ok(0);
    }
    let release = if done.release.is_empty() {
        String::new()
    } else {
        format!(" {}", done.release)
    };
    output::progress(format!(
        "error: {} of {app}{release} failed at the {} gate: {}",
        if verb == "deployed" {
            "deploy"
        } else {
            "rollback"
        },
        done.gate.map_or("?", |g| g.as_str()),
        done.reason.as_deref().unwrap_or("no reason given")
    ));
    if !done.log_tail.is_empty() {
        output::progress("  last log lines:");
        for l in &done.log_tail {
            output::progress(format!("    {l}"));
        }
    }
    if let Some(hint) = done.hint {
        output::hint(hint);
    }
    Ok(EXIT_FAILED)
}

fn print_plan(p: &Plan) {
    let current = p
        .current
        .as_deref()
        .map_or("nothing is deployed yet".to_owned(), |c| {
            format!("replaces {c}")
        });
    output::line(format!(
        "plan for {} ({current}); nothing was changed",
        p.app
    ));
    if let Some(build) = &p.build {
        output::line(format!("  build: {build}"));
    }
    let section = |title: &str, items: &[String]| {
        for item in items {
            output::line(format!("  {title} {item}"));
        }
    };
    section("+ service", &p.services_added);
    section("- service", &p.services_removed);
    section("~ service", &p.services_changed);
    section("+ route  ", &p.routes_added);
    section("- route  ", &p.routes_removed);
    section("~ env    ", &p.env_changed);
    section("~ setting", &p.settings_changed);
    let instances: Vec<String> = p
        .instances
        .iter()
        .map(|(s, n)| format!("{s} x{n}"))
        .collect();
    let instances = if instances.is_empty() {
        "none (static routes only)".to_owned()
    } else {
        instances.join(", ")
    };
    output::line(format!("  instances after: {instances}"));
    let steps = [
        ("start before the switch", &p.start),
        ("replace one at a time  ", &p.replace),
        ("stop                   ", &p.stop),
        ("drain after the checks ", &p.drain),
    ];
    for (what, slots) in steps {
        if !slots.is_empty() {
            output::line(format!("  {what}: {}", slots.join(", ")));
        }
    }
}
