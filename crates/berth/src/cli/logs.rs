//! `berth logs APP [SERVICE] [--follow] [--since DUR]`

use std::path::Path;

use anyhow::Result;
use bytes::Bytes;
use http::Method;

use crate::client::{Client, for_each_line};
use crate::output;

pub async fn run(
    state: &Path,
    app: &str,
    service: Option<&str>,
    follow: bool,
    since: Option<&str>,
    redact: bool,
) -> Result<u8> {
    let mut query = Vec::new();
    if let Some(service) = service {
        query.push(format!("service={service}"));
    }
    if let Some(since) = since {
        let dur = spec::parse_duration(since)
            .map_err(|e| super::BadInput(format!("--since {since}: {e}")))?;
        query.push(format!("since_ms={}", dur.as_millis()));
    }
    if follow {
        query.push("follow=1".to_owned());
    }
    if !redact {
        query.push("redact=0".to_owned());
    }
    let path = format!("/v1/apps/{app}/logs?{}", query.join("&"));
    let resp = Client::new(state)
        .send(Method::GET, &path, Bytes::new())
        .await?;
    for_each_line(resp.into_body(), |line| {
        output::line(line);
        Ok(())
    })
    .await?;
    Ok(0)
}
