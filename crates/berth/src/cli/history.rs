//! `berth releases APP [--json]` and `berth history [APP] [--json]`.

use anyhow::Result;

use api::client::Client;
use api::{AppQuery, History, NoQuery, Releases};

use crate::output;

pub async fn releases(client: &Client, app: &str, json: bool) -> Result<u8> {
    let r: Releases = client
        .get(&api::path(&["v1", "apps", app, "releases"], &NoQuery {}))
        .await?;
    if json {
        output::json(&r);
        return Ok(0);
    }
    output::line(format!(
        "  {:<8} {:<24} {:<14} {:<8}",
        "RELEASE", "CREATED", "SOURCE", "STATUS"
    ));
    for rel in &r.releases {
        output::line(format!(
            "{} {:<8} {:<24} {:<14} {:<8}",
            if rel.live { "*" } else { " " },
            rel.id,
            rel.created,
            &rel.digest[..rel.digest.len().min(12)],
            rel.status
        ));
    }
    Ok(0)
}

pub async fn history(client: &Client, app: Option<&str>, json: bool) -> Result<u8> {
    let query = AppQuery {
        app: app.map(str::to_owned),
    };
    let h: History = client.get(&api::path(&["v1", "history"], &query)).await?;
    if json {
        output::json(&h);
        return Ok(0);
    }
    output::line(format!(
        "{:<24} {:<10} {:<12} {:<12} {:<10} {:>8} {:>8}  {:<12} {}",
        "STARTED", "KIND", "APP", "RELEASE", "USER", "TOOK", "DRAIN", "RESULT", "GATE / REASON"
    ));
    for d in &h.deploys {
        let release = match &d.from_release {
            Some(from) => format!("{from}->{}", d.release),
            None => d.release.clone(),
        };
        let why = match (&d.gate, &d.reason) {
            (Some(g), Some(r)) => format!("{g}: {r}"),
            (None, Some(r)) => r.clone(),
            _ => String::new(),
        };
        let secs =
            |ms: Option<u64>| ms.map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        let drain = match (d.step, d.drain_ms) {
            (api::Step::Drain, None) => "draining".to_owned(),
            (_, ms) => secs(ms),
        };
        output::line(format!(
            "{:<24} {:<10} {:<12} {:<12} {:<10} {:>8} {:>8}  {:<12} {}",
            d.started,
            d.kind,
            d.app,
            release,
            d.user,
            secs(d.duration_ms),
            drain,
            d.result,
            why
        ));
    }
    if !h.events.is_empty() {
        output::line(format!(
            "\n{:<24} {:<12} {:<16} {}",
            "AT", "APP", "EVENT", "DETAIL"
        ));
        for e in &h.events {
            output::line(format!(
                "{:<24} {:<12} {:<16} {}",
                e.at, e.app, e.kind, e.detail
            ));
        }
    }
    for s in &h.summary {
        output::line(format!(
            "\n{}: {} that went live ({} failed), {} caught before traffic, {}; {:.2} deploys/day (30d); change failure rate {:.0}%; mean time to restore {}",
            s.app,
            count(s.deploys, "deploy"),
            s.failed_changes,
            s.caught_before_traffic,
            count(s.rollbacks, "rollback"),
            s.deploys_per_day,
            s.change_failure_rate * 100.0,
            s.mean_time_to_restore_secs
                .map_or("n/a".to_owned(), |t| format!("{t:.1}s"))
        ));
    }
    Ok(0)
}

/// `1 deploy`, `2 deploys`.
fn count(n: u32, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
