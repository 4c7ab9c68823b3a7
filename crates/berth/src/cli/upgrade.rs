//! `berth upgrade [--binary PATH]`: the daemon hands itself over to a new binary.

use std::path::{Path, PathBuf};

use anyhow::Result;
use api::client::{Client, read_json};
use api::{UpgradeQuery, Upgraded};
use bytes::Bytes;
use http::Method;

use crate::output;

pub async fn run(state: &Path, binary: Option<PathBuf>) -> Result<u8> {
    let binary = match binary {
        Some(path) => Some(
            std::path::absolute(&path)
                .map_err(|err| super::BadInput(format!("--binary {}: {err}", path.display())))?,
        ),
        None => None,
    };
    let query = UpgradeQuery {
        binary: binary.map(|p| p.display().to_string()),
    };
    let resp = Client::new(state)
        .send(
            Method::POST,
            &api::path(&["v1", "upgrade"], &query),
            Bytes::new(),
        )
        .await?;
    let up: Upgraded = read_json(resp.into_body()).await?;
    output::line(format!(
        "berth {} (pid {}) serves now, from {}; it took over from berth {} (pid {}) in {} ms; no app was restarted",
        up.version, up.pid, up.binary, up.from_version, up.from_pid, up.took_ms
    ));
    Ok(0)
}
