//! `berth alerts`, `berth health`, `berth notify test`, `berth dashboard url`.

use anyhow::Result;
use api::client::{Client, read_json};
use api::{AlertInfo, AppQuery, DashboardUrl, Health, NoQuery, NotifyResults};
use bytes::Bytes;
use http::Method;

use crate::{EXIT_FAILED, output};

/// `berth alerts [--json]`: firing and pending alerts with value, threshold and since when.
pub async fn alerts(client: &Client, json: bool) -> Result<u8> {
    let list: Vec<AlertInfo> = client
        .get(&api::path(&["v1", "alerts"], &NoQuery {}))
        .await?;
    if json {
        output::json(&list);
        return Ok(0);
    }
    if list.is_empty() {
        output::line("no alerts");
        return Ok(0);
    }
    output::line(format!(
        "{:<8} {:<9} {:<14} {:<12} {:<28} {:>10} {:>10}  SINCE",
        "STATE", "SEVERITY", "ALERT", "APP", "SUBJECT", "VALUE", "THRESHOLD"
    ));
    for a in &list {
        output::line(format!(
            "{:<8} {:<9} {:<14} {:<12} {:<28} {:>10} {:>10}  {}",
            a.state,
            a.severity,
            a.alert,
            if a.app.is_empty() { "(server)" } else { &a.app },
            a.subject,
            a.value,
            a.threshold,
            a.since
        ));
    }
    Ok(0)
}

/// `berth health [APP] [--detailed] [--json]`: one line per app; exits 1 when something is
/// critical, so cron and load balancer checks can use it.
pub async fn health(client: &Client, app: Option<&str>, detailed: bool, json: bool) -> Result<u8> {
    let q = AppQuery {
        app: app.map(str::to_owned),
    };
    let h: Health = client.get(&api::path(&["v1", "health"], &q)).await?;
    if json {
        output::json(&h);
    } else {
        for a in &h.apps {
            output::line(format!(
                "{:<8} {}: {}",
                a.status.to_uppercase(),
                a.app,
                a.summary
            ));
            if detailed {
                for al in &a.alerts {
                    output::line(format!(
                        "         {} {} {} {} (threshold {}) since {}",
                        al.severity, al.alert, al.subject, al.value, al.threshold, al.since
                    ));
                }
            }
        }
        for al in &h.server {
            output::line(format!(
                "{:<8} server: {} {} {} (threshold {})",
                al.severity.to_uppercase(),
                al.alert,
                al.subject,
                al.value,
                al.threshold
            ));
        }
        if h.apps.is_empty() && h.server.is_empty() {
            output::line("OK       no apps deployed");
        }
    }
    Ok(if h.status == "critical" {
        EXIT_FAILED
    } else {
        0
    })
}

/// `berth notify test APP`: a test message through every channel, and what each answered.
pub async fn notify_test(client: &Client, app: &str, json: bool) -> Result<u8> {
    let resp = client
        .send(
            Method::POST,
            &api::path(&["v1", "apps", app, "notify", "test"], &NoQuery {}),
            Bytes::new(),
        )
        .await?;
    let r: NotifyResults = read_json(resp.into_body()).await?;
    if json {
        output::json(&r);
    } else if r.results.is_empty() {
        output::line(format!("{app} has no [[notify]] channels"));
    } else {
        for c in &r.results {
            match &c.error {
                None => output::line(format!("ok      {}", c.channel)),
                Some(e) => output::line(format!("FAILED  {}: {e}", c.channel)),
            }
        }
    }
    Ok(if r.results.iter().all(|c| c.ok) {
        0
    } else {
        EXIT_FAILED
    })
}

/// `berth dashboard url`: the dashboard's URL with its token.
pub async fn dashboard_url(client: &Client) -> Result<u8> {
    output::line(url(client).await?);
    Ok(0)
}

pub async fn url(client: &Client) -> Result<String> {
    let d: DashboardUrl = client
        .get(&api::path(&["v1", "dashboard"], &NoQuery {}))
        .await?;
    Ok(d.url)
}
