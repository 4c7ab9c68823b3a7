//! The CLI side of the control API: HTTP/1.1 over the daemon's Unix socket.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::api::ApiError;

/// Where the daemon's socket lives under a state directory.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("berth.sock")
}

pub struct Client {
    state: PathBuf,
}

/// A failure the daemon reported (non-2xx), kept typed so the CLI can pick the exit code.
#[derive(Debug)]
pub struct DaemonError {
    pub status: StatusCode,
    pub body: ApiError,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body.error)
    }
}

impl std::error::Error for DaemonError {}

impl Client {
    pub fn new(state: &Path) -> Client {
        Client {
            state: state.to_owned(),
        }
    }

    /// Send a request and return the response once its head arrived (2xx only).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<http::Response<Incoming>> {
        let sock = socket_path(&self.state);
        let stream = UnixStream::connect(&sock).await.map_err(|_| {
            anyhow!(
                "no berth daemon answers at {}; start one with: berth serve --state {}",
                sock.display(),
                self.state.display()
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("talk to the berth daemon")?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, "berth")
            .body(Full::new(body))?;
        let resp = sender
            .send_request(req)
            .await
            .context("the berth daemon closed the connection")?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
            error: String::from_utf8_lossy(&bytes).trim().to_owned(),
            hint: None,
        });
        Err(DaemonError { status, body }.into())
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T> {
        let resp = self.send(Method::GET, path_and_query, Bytes::new()).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&bytes).context("read the daemon's answer")
    }
}

/// Read a streamed body line by line, calling `each` for every complete line.
pub async fn for_each_line(
    mut body: Incoming,
    mut each: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read from the berth daemon")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            each(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref())?;
        }
    }
    if !buf.is_empty() {
        each(String::from_utf8_lossy(&buf).as_ref())?;
    }
    Ok(())
}
