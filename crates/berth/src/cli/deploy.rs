//! `berth deploy [DIR]`: pack the app, send it to the daemon, show each phase as it happens.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::Method;

use crate::api::DeployEvent;
use crate::client::{Client, for_each_line};
use crate::{EXIT_BAD_INPUT, EXIT_FAILED, output};

pub async fn run(state: &Path, dir: &Path) -> Result<u8> {
    // Same validation as the daemon's, so mistakes are caught before anything is sent.
    let Some(spec) = super::check::load(dir)? else {
        return Ok(EXIT_BAD_INPUT);
    };
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

    let client = Client::new(state);
    let resp = client
        .send(Method::POST, "/v1/deploy", Bytes::from(packed.bytes))
        .await
        .with_context(|| format!("deploy {}", spec.name))?;
    let mut outcome = None;
    for_each_line(resp.into_body(), |line| {
        let event: DeployEvent = serde_json::from_str(line)
            .with_context(|| format!("unexpected line from the daemon: {line}"))?;
        match event {
            DeployEvent::Phase { phase, detail } => {
                output::progress(format!("==> {phase}: {detail}"))
            }
            DeployEvent::Build { line } => output::progress(format!("    | {line}")),
            DeployEvent::Ready {
                service,
                instance,
                port,
            } => output::progress(format!(
                "    {service}.{instance} ready on 127.0.0.1:{port}"
            )),
            DeployEvent::Done(done) => outcome = Some(done),
        }
        Ok(())
    })
    .await?;

    let Some(done) = outcome else {
        anyhow::bail!(
            "the daemon stopped answering before the deploy of {} finished; see `berth status {}`",
            spec.name,
            spec.name
        );
    };
    if done.ok {
        output::line(format!(
            "deployed {} {} in {:.1}s",
            done.app,
            done.release,
            started.elapsed().as_secs_f64()
        ));
        return Ok(0);
    }
    output::progress(format!(
        "error: deploy of {} {} failed: {}",
        done.app,
        done.release,
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
