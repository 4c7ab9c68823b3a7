//! `berth status [APP] [--json]`

use anyhow::Result;

use api::client::Client;
use api::{AppQuery, CertSource, CertificateStatus, Status};

use crate::output;

pub async fn run(client: &Client, app: Option<&str>, json: bool) -> Result<u8> {
    let query = AppQuery {
        app: app.map(str::to_owned),
    };
    let status: Status = client.get(&api::path(&["v1", "status"], &query)).await?;
    if json {
        output::json(&status);
        return Ok(0);
    }
    output::line(format!(
        "daemon: berth {} (pid {}), started {}",
        status.daemon.version,
        status.daemon.pid,
        status
            .daemon
            .started_at
            .as_deref()
            .unwrap_or("at an unknown time")
    ));
    if status.daemon.isolation.starts_with("OFF") {
        output::line(format!(
            "warning: app isolation is {}",
            status.daemon.isolation
        ));
    }
    if status.apps.is_empty() {
        output::line("no apps deployed yet; deploy one with: berth deploy DIR");
        return Ok(0);
    }
    for app in &status.apps {
        let release = app.release.as_deref().unwrap_or("none");
        let deploying = app
            .deploying
            .as_deref()
            .map(|r| format!(" (deploying {r})"))
            .unwrap_or_default();
        let user = app
            .user
            .as_deref()
            .map(|u| format!("  user {u}"))
            .unwrap_or_default();
        output::line(format!("{}  release {release}{deploying}{user}", app.name));
        if app.instances.is_empty() {
            output::line("  no processes (static routes only, or nothing running)");
        } else {
            output::line(format!(
                "  {:<16} {:<8} {:>8} {:>6} {:<11} {:>8} {:>9} {:>8}",
                "INSTANCE", "RELEASE", "PID", "PORT", "STATE", "RESTARTS", "UPTIME", "MEMORY"
            ));
        }
        let mut warnings: Vec<&str> = Vec::new();
        for i in &app.instances {
            output::line(format!(
                "  {:<16} {:<8} {:>8} {:>6} {:<11} {:>8} {:>9} {:>8}",
                format!("{}.{}", i.service, i.instance),
                i.release,
                i.pid.map_or("-".to_owned(), |p| p.to_string()),
                i.port,
                i.state,
                i.restarts,
                i.uptime_secs.map_or("-".to_owned(), human_secs),
                i.memory_bytes.map_or("-".to_owned(), human_bytes),
            ));
            for w in &i.warnings {
                if !warnings.contains(&w.as_str()) {
                    warnings.push(w);
                }
            }
        }
        for w in &warnings {
            output::line(format!("  warning: {w}"));
        }
        // Limits are the same for every instance of a service: one line per service.
        let mut seen = Vec::new();
        for i in app.instances.iter().filter(|i| !i.limits.is_empty()) {
            if seen.contains(&i.service.as_str()) {
                continue;
            }
            seen.push(&i.service);
            let limits: Vec<String> = i
                .limits
                .iter()
                .map(|l| format!("{} {} ({})", l.name, l.value, l.enforced_by))
                .collect();
            output::line(format!("  {} limits: {}", i.service, limits.join("; ")));
        }
        for d in &app.draining {
            output::line(format!(
                "  draining {}: {} instance{} finishing their requests, stopped by {} at the latest",
                d.release,
                d.instances,
                if d.instances == 1 { "" } else { "s" },
                d.until
            ));
        }
        if let Some(s) = &app.standby {
            output::line(format!(
                "  standby {}: {} instance{} warm ({}), until {}: `berth rollback {}` is a route swap",
                s.release,
                s.instances.len(),
                if s.instances.len() == 1 { "" } else { "s" },
                api::human_bytes(s.memory_bytes),
                s.until,
                app.name
            ));
        }
        if let Some(c) = &app.canary {
            output::line(format!(
                "  canary {}: {}% of clients, step {} of {}",
                c.release, c.percent, c.step, c.steps
            ));
        }
        if let Some(why) = &app.maintenance {
            output::line(format!("  MAINTENANCE: {why}"));
        }
        for b in &app.backups {
            let last = match (&b.last_success, b.last_success_age_secs) {
                (Some(at), Some(age)) => format!("last success {at} ({}s ago)", age),
                _ => "no successful backup yet".to_owned(),
            };
            let drill = b
                .last_drill
                .as_ref()
                .map_or("never drilled".to_owned(), |d| {
                    format!("last drill {} {}", d.at, if d.ok { "ok" } else { "FAILED" })
                });
            output::line(format!("  backup {}: {last}; {drill}", b.name));
            if let Some(f) = &b.last_failure {
                output::line(format!("  warning: backup {}: {f}", b.name));
            }
        }
        for n in &app.notifiers {
            match (&n.last_error, n.ok) {
                (Some(e), false) => output::line(format!(
                    "  warning: notifier {} is failing ({} attempts in a row): {e}",
                    n.channel, n.failures_in_a_row
                )),
                _ => output::line(format!("  notifier {}: ok", n.channel)),
            }
        }
        for i in app.instances.iter().filter(|i| i.crash_loop) {
            output::line(format!(
                "  warning: {}.{} is crash-looping ({} restarts); see `berth logs {} {}`",
                i.service, i.instance, i.restarts, app.name, i.service
            ));
        }
    }
    if !status.certificates.is_empty() {
        certificates(&status.certificates, status.daemon.https.is_some());
    }
    Ok(0)
}

fn certificates(certs: &[CertificateStatus], has_https: bool) {
    output::line("certificates");
    for c in certs {
        let expiry = match (&c.not_after, c.expires_in_days) {
            (Some(at), Some(days)) if days < 0 => format!("EXPIRED {at}"),
            (Some(at), Some(days)) => format!("expires {at} ({days} days)"),
            _ if c.source == CertSource::Files => "not loaded".to_owned(),
            _ => "not issued yet".to_owned(),
        };
        let names = if c.names.is_empty() {
            "-".to_owned()
        } else {
            c.names.join(", ")
        };
        output::line(format!(
            "  {:<16} {:<11} {}  {}{}",
            c.app,
            c.source,
            names,
            expiry,
            c.issuer
                .as_deref()
                .map(|i| format!("  issuer {i}"))
                .unwrap_or_default(),
        ));
        if let Some(err) = &c.last_error {
            let when = c.last_attempt.as_deref().unwrap_or("-");
            output::line(format!("    last attempt {when} failed: {err}"));
            if c.serving {
                output::line("    the previous certificate keeps serving");
            }
        }
        if let Some(next) = &c.next_attempt {
            output::line(format!("    next attempt {next}"));
        }
    }
    if !has_https {
        output::line(
            "  warning: the daemon has no HTTPS listener (berth serve --https ADDR); these certificates are not served",
        );
    }
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if b >= 1024 * MIB {
        format!("{:.1}G", b as f64 / (1024 * MIB) as f64)
    } else {
        format!("{:.1}M", b as f64 / MIB as f64)
    }
}
