//! `berth secrets (list|set|generate|rotate|unset|export-key|import-key)`.
//!
//! Values travel only on stdin (or a prompt that does not echo) and in request bodies: never as
//! arguments, which would land in shell history and `ps`.

use std::io::{IsTerminal, Read};
use std::time::Instant;

use anyhow::{Context, Result};
use api::client::{Client, read_json};
use api::{ImportKeyQuery, NoQuery, SecretInfo, SecretSet, SetSecretQuery};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;

use crate::output;

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Names, origin, dates and users of an app's secrets; never values.
    List {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a secret; the value is read from stdin, or a prompt that does not echo.
    Set {
        app: String,
        name: String,
        /// The app has not been deployed yet: set its secret ahead of the first deploy.
        #[arg(long)]
        new: bool,
    },
    /// Create every missing generated secret of a running app.
    Generate { app: String },
    /// A new value (generated again, or read from stdin for operator-set ones), then a
    /// zero-downtime restart of the app.
    Rotate { app: String, name: String },
    /// Remove a secret.
    Unset { app: String, name: String },
    /// Print the key that encrypts secrets at rest, to keep it safe or move a server.
    ExportKey,
    /// Replace the key with one from stdin (as printed by export-key).
    ImportKey {
        /// Import even if stored secrets do not decrypt with it (they are lost).
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(client: &Client, cmd: SecretsCommand) -> Result<u8> {
    // A bad name is the operator's mistake: said before anything is read or sent.
    if let SecretsCommand::Set { app, name, .. }
    | SecretsCommand::Rotate { app, name }
    | SecretsCommand::Unset { app, name } = &cmd
    {
        spec::check_app_name(app).map_err(super::BadInput)?;
        spec::check_secret_name(name).map_err(super::BadInput)?;
    }
    match cmd {
        SecretsCommand::List { app, json } => {
            let list: Vec<SecretInfo> = client.get(&secrets_path(&app, &[])).await?;
            if json {
                output::json(&list);
            } else if list.is_empty() {
                output::line(format!("{app} has no secrets"));
            } else {
                output::line(format!(
                    "{:<24} {:<10} {:<6} {:<24} {:<24} USED BY",
                    "NAME", "ORIGIN", "SET", "CREATED", "ROTATED"
                ));
                for s in &list {
                    output::line(format!(
                        "{:<24} {:<10} {:<6} {:<24} {:<24} {}",
                        s.name,
                        s.origin,
                        if s.set { "yes" } else { "NO" },
                        s.created.as_deref().unwrap_or("-"),
                        s.rotated.as_deref().unwrap_or("-"),
                        if s.declared {
                            s.used_by.join(",")
                        } else {
                            "(not declared)".to_owned()
                        }
                    ));
                }
            }
        }
        SecretsCommand::Set { app, name, new } => {
            let value = read_value(&format!("value for {app} {name}"))?;
            let resp = client
                .send(
                    Method::PUT,
                    &api::path(
                        &["v1", "apps", &app, "secrets", &name],
                        &SetSecretQuery { new },
                    ),
                    value,
                )
                .await?;
            let answer: SecretSet = read_json(resp.into_body()).await?;
            let verb = if answer.replaced { "replaced" } else { "set" };
            output::line(format!(
                "{verb} {app} {name}; running instances see it after their next restart or deploy"
            ));
            if let Some(note) = answer.note {
                output::hint(note);
            }
        }
        SecretsCommand::Generate { app } => {
            let resp = client
                .send(
                    Method::POST,
                    &secrets_path(&app, &["generate"]),
                    Bytes::new(),
                )
                .await?;
            let list: Vec<SecretInfo> = read_json(resp.into_body()).await?;
            let missing: Vec<&str> = list
                .iter()
                .filter(|s| s.declared && !s.set)
                .map(|s| s.name.as_str())
                .collect();
            output::line(format!("every generated secret of {app} is set"));
            if !missing.is_empty() {
                output::hint(format!("still to set by hand: {}", missing.join(", ")));
            }
        }
        SecretsCommand::Rotate { app, name } => {
            // Generated secrets need no input; an operator-set one takes the new value on stdin.
            let value = if std::io::stdin().is_terminal() {
                Bytes::new()
            } else {
                read_stdin()?
            };
            let started = Instant::now();
            let resp = client
                .send(Method::POST, &secrets_path(&app, &[&name, "rotate"]), value)
                .await
                .with_context(|| format!("rotate {app} {name}"))?;
            output::progress(format!(
                "==> {name} rotated; restarting {app} with zero downtime"
            ));
            return super::deploy::follow(resp.into_body(), &app, "restarted", started).await;
        }
        SecretsCommand::Unset { app, name } => {
            client
                .send(Method::DELETE, &secrets_path(&app, &[&name]), Bytes::new())
                .await?;
            output::line(format!("removed {app} {name}"));
        }
        SecretsCommand::ExportKey => {
            let resp = client
                .send(
                    Method::GET,
                    &api::path(&["v1", "secrets", "key"], &NoQuery {}),
                    Bytes::new(),
                )
                .await?;
            output::line(
                String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).trim_end(),
            );
        }
        SecretsCommand::ImportKey { force } => {
            let key = read_value("secrets key")?;
            let path = api::path(&["v1", "secrets", "key"], &ImportKeyQuery { force });
            client.send(Method::PUT, &path, key).await?;
            output::line("key imported");
        }
    }
    Ok(0)
}

/// `/v1/apps/APP/secrets[/REST...]`
fn secrets_path(app: &str, rest: &[&str]) -> String {
    let mut segments = vec!["v1", "apps", app, "secrets"];
    segments.extend_from_slice(rest);
    api::path(&segments, &NoQuery {})
}

/// A value from stdin; on a terminal, prompted for without echo.
fn read_value(what: &str) -> Result<Bytes> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return prompt(what).map(Bytes::from);
    }
    let buf = read_stdin()?;
    if buf.is_empty() {
        return Err(super::BadInput(
            "no value on stdin: pipe it in, e.g. `printf %s \"$VALUE\" | berth secrets set ...`"
                .to_owned(),
        )
        .into());
    }
    Ok(buf)
}

/// Whatever stdin holds (at most just over 64 KiB: the daemon refuses more).
fn read_stdin() -> Result<Bytes> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(64 * 1024 + 1)
        .read_to_end(&mut buf)
        .context("read the value from stdin")?;
    Ok(Bytes::from(buf))
}

/// Ask on the terminal with echo off.
fn prompt(what: &str) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("read terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turn off echo")?;
    output::progress_inline(format!("{what}: "));
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    output::progress("");
    read.context("read the value")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
