//! `berth logs APP [SERVICE] [--follow] [--since DUR]`

use anyhow::Result;
use bytes::Bytes;
use http::Method;

use api::LogsQuery;
use api::client::{Client, for_each_line};

use crate::output;

pub async fn run(
    client: &Client,
    app: &str,
    service: Option<&str>,
    follow: bool,
    since: Option<&str>,
    redact: bool,
) -> Result<u8> {
    let since_ms = match since {
        Some(since) => Some(
            spec::parse_duration(since)
                .map_err(|e| super::BadInput(format!("--since {since}: {e}")))?
                .as_millis() as u64,
        ),
        None => None,
    };
    let query = LogsQuery {
        service: service.map(str::to_owned),
        since_ms,
        follow,
        redact,
    };
    let path = api::path(&["v1", "apps", app, "logs"], &query);
    let resp = client.send(Method::GET, &path, Bytes::new()).await?;
    for_each_line(resp.into_body(), |line| {
        output::line(line);
        Ok::<_, api::client::Error>(())
    })
    .await?;
    Ok(0)
}
