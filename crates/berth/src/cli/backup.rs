//! `berth backup (run|list|verify|restore|export-key)`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use api::client::{Client, for_each_line, read_json};
use api::{BackupEvent, BackupQuery, BackupRecord, Backups, NoQuery, RestorePlan};
use bytes::Bytes;
use http::Method;

use crate::{EXIT_FAILED, output};

#[derive(clap::Subcommand)]
pub enum BackupCommand {
    /// Back up now, with progress; exits 0 only when the backup is good (read back and
    /// checked) and its drill and retention, if they ran, went well.
    Run {
        app: String,
        /// The `[backups.NAME]` (needed when the app has several).
        name: Option<String>,
    },
    /// The app's backup definitions and its backups: status, size, sha256, drills.
    List {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// A restore drill now: restore into a scratch database or file, compare, throw away.
    Verify {
        app: String,
        /// The backup id (default: the newest good one).
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// The backup key kept offline (as printed by export-key), when it is not on the server.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Restore a backup over the app's data: checked first, a safety backup of what it
    /// replaces, the app's services stopped meanwhile (the proxy answers 503).
    Restore {
        app: String,
        /// The backup id (default: the newest good one).
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
        /// Print the backup chosen and the steps; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Print the backup key (an age identity) to keep offline; verify and restore need it.
    ExportKey,
}

pub async fn run(client: &Client, cmd: BackupCommand) -> Result<u8> {
    if let BackupCommand::Run { app, .. }
    | BackupCommand::List { app, .. }
    | BackupCommand::Verify { app, .. }
    | BackupCommand::Restore { app, .. } = &cmd
    {
        spec::check_app_name(app.split('.').next().unwrap_or(app)).map_err(super::BadInput)?;
    }
    match cmd {
        BackupCommand::Run { app, name } => {
            let q = BackupQuery {
                name,
                ..BackupQuery::default()
            };
            stream(client, &app, "run", &q, Bytes::new()).await
        }
        BackupCommand::List { app, json } => {
            let b: Backups = client
                .get(&api::path(&["v1", "apps", &app, "backups"], &NoQuery {}))
                .await?;
            if json {
                output::json(&b);
            } else {
                print_list(&b);
            }
            Ok(0)
        }
        BackupCommand::Verify {
            app,
            id,
            name,
            identity,
        } => {
            let q = BackupQuery {
                name,
                id,
                dry_run: false,
            };
            stream(
                client,
                &app,
                "verify",
                &q,
                read_identity(identity.as_deref())?,
            )
            .await
        }
        BackupCommand::Restore {
            app,
            id,
            name,
            yes,
            dry_run,
            identity,
        } => {
            let identity = read_identity(identity.as_deref())?;
            let plan_q = BackupQuery {
                name: name.clone(),
                id: id.clone(),
                dry_run: true,
            };
            let resp = client
                .send(
                    Method::POST,
                    &api::path(&["v1", "apps", &app, "backups", "restore"], &plan_q),
                    Bytes::new(),
                )
                .await?;
            let plan: RestorePlan = read_json(resp.into_body()).await?;
            print_plan(&plan);
            if dry_run {
                return Ok(0);
            }
            if !yes && !confirm(&app)? {
                output::line("nothing was changed");
                return Ok(EXIT_FAILED);
            }
            let q = BackupQuery {
                name,
                id: Some(plan.backup.id.clone()),
                dry_run: false,
            };
            stream(client, &app, "restore", &q, identity).await
        }
        BackupCommand::ExportKey => {
            let resp = client
                .send(Method::GET, "/v1/backups/key", Bytes::new())
                .await?;
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await?
                .to_bytes();
            output::line(String::from_utf8_lossy(&bytes).trim_end());
            Ok(0)
        }
    }
}

fn read_identity(file: Option<&Path>) -> Result<Bytes> {
    match file {
        None => Ok(Bytes::new()),
        Some(f) => {
            Ok(Bytes::from(std::fs::read(f).with_context(|| {
                format!("read the backup key {}", f.display())
            })?))
        }
    }
}

fn confirm(app: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(super::BadInput(format!(
            "restoring replaces {app}'s data: pass --yes to do it without a terminal to ask on"
        ))
        .into());
    }
    output::progress_inline(format!("restore over {app}'s data? type yes: "));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// Follows a run, verify or restore: steps as they come, a progress line with bytes and
/// rate, then the outcome. Exit 0 only when it all went well.
async fn stream(
    client: &Client,
    app: &str,
    action: &str,
    q: &BackupQuery,
    body: Bytes,
) -> Result<u8> {
    let started = Instant::now();
    let resp = client
        .send(
            Method::POST,
            &api::path(&["v1", "apps", app, "backups", action], q),
            body,
        )
        .await?;
    let tty = std::io::stderr().is_terminal();
    let mut done = None;
    let mut last_progress = false;
    let streamed = for_each_line(resp.into_body(), |line| {
        let event: BackupEvent = serde_json::from_str(line)
            .with_context(|| format!("unexpected line from the daemon: {line}"))?;
        let at = started.elapsed().as_secs_f64();
        match event {
            BackupEvent::Step { detail } => {
                if last_progress && tty {
                    output::progress("");
                }
                last_progress = false;
                output::progress(format!("==> [{at:6.2}s] {detail}"));
            }
            BackupEvent::Progress { bytes } => {
                let rate = bytes as f64 / at.max(0.001);
                let text = format!(
                    "    {} read, {}/s",
                    api::human_bytes(bytes),
                    api::human_bytes(rate as u64)
                );
                if tty {
                    output::progress_inline(format!("\r{text}   "));
                } else {
                    output::progress(text);
                }
                last_progress = true;
            }
            BackupEvent::Done {
                ok,
                backup,
                error,
                hint,
            } => {
                if last_progress && tty {
                    output::progress("");
                }
                done = Some((ok, backup.map(|b| *b), error, hint));
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let Some((ok, backup, error, hint)) = done else {
        streamed?;
        anyhow::bail!(
            "the daemon stopped answering before the {action} ended; `berth backup list {app}` shows how it stands"
        );
    };
    if let Some(b) = &backup {
        output::line(summary(b));
    }
    if let Some(e) = error {
        output::progress(format!("error: {e}"));
    }
    if let Some(h) = hint {
        output::hint(h);
    }
    Ok(if ok { 0 } else { EXIT_FAILED })
}

fn summary(b: &BackupRecord) -> String {
    let mut s = format!("{} {} {}", b.name, b.id, b.status);
    if let (Some(size), Some(plain)) = (b.size, b.plain_size) {
        s.push_str(&format!(
            ": {} stored ({} read)",
            api::human_bytes(size),
            api::human_bytes(plain)
        ));
    }
    if b.tables > 0 {
        s.push_str(&format!(", {} tables, {} rows", b.tables, b.rows));
    }
    if let Some(f) = b.files {
        s.push_str(&format!(", {f} files"));
    }
    if let Some(ms) = b.took_ms {
        s.push_str(&format!(", {:.1}s", ms as f64 / 1000.0));
    }
    if let Some(sha) = &b.sha256 {
        s.push_str(&format!(", sha256 {}", &sha[..12.min(sha.len())]));
    }
    if let Some(d) = &b.drill {
        s.push_str(&format!(
            "; drill {} ({:.1}s)",
            if d.ok { "ok" } else { "FAILED" },
            d.duration_ms as f64 / 1000.0
        ));
    }
    s
}

fn print_list(b: &Backups) {
    for d in &b.definitions {
        output::line(format!(
            "{}: {} every `{}` to {}; keep {}; drills {}",
            d.name, d.source, d.schedule, d.to, d.keep, d.verify
        ));
        output::line(format!(
            "  last success: {}; next run: {}; last drill: {}{}",
            match (&d.last_success, d.last_success_age_secs) {
                (Some(at), Some(age)) => format!("{at} ({} ago)", ago(age)),
                _ => "never".to_owned(),
            },
            d.next_run.as_deref().unwrap_or("-"),
            d.last_drill
                .as_ref()
                .map_or("never".to_owned(), |r| format!(
                    "{} {} ({:.1}s)",
                    r.at,
                    if r.ok { "ok" } else { "FAILED" },
                    r.duration_ms as f64 / 1000.0
                )),
            d.last_failure
                .as_ref()
                .map(|f| format!("\n  PROBLEM: {f}"))
                .unwrap_or_default()
        ));
    }
    if b.backups.is_empty() {
        output::line(format!("{} has no backups yet", b.app));
        return;
    }
    output::line(format!(
        "\n{:<26} {:<10} {:<9} {:<8} {:<22} {:>10} {:<14} {}",
        "ID", "NAME", "TRIGGER", "STATUS", "STARTED", "SIZE", "SHA256", "VERIFIED"
    ));
    for r in &b.backups {
        let verified = match &r.drill {
            Some(d) if d.ok => format!("{} ok", d.at),
            Some(d) => format!("{} FAILED: {}", d.at, d.problem.as_deref().unwrap_or("")),
            None => "-".to_owned(),
        };
        let status = match (&r.stage, &r.error) {
            (Some(stage), Some(e)) => format!("{} ({stage}: {e})", r.status),
            _ => r.status.to_string(),
        };
        output::line(format!(
            "{:<26} {:<10} {:<9} {:<8} {:<22} {:>10} {:<14} {}",
            r.id,
            r.name,
            r.trigger,
            status,
            r.started,
            r.size
                .map(api::human_bytes)
                .unwrap_or_else(|| "-".to_owned()),
            r.sha256.as_deref().map_or("-", |s| &s[..12.min(s.len())]),
            verified
        ));
    }
}

fn print_plan(p: &RestorePlan) {
    output::line(format!(
        "restore {} of {}: backup {} from {} ({} ago), {} stored, {} tables, {} rows",
        p.backup.name,
        p.app,
        p.backup.id,
        p.backup.started,
        ago(p.age_secs),
        p.backup
            .size
            .map(api::human_bytes)
            .unwrap_or_else(|| "?".to_owned()),
        p.backup.tables,
        p.backup.rows
    ));
    for (i, step) in p.steps.iter().enumerate() {
        output::line(format!("  {}. {step}", i + 1));
    }
}

fn ago(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
