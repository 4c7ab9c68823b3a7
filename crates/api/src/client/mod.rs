//! The client side of the control API: HTTP/1.1 over the daemon's Unix socket on this
//! machine, or over a byte stream a [`Dial`]er opens to a daemon elsewhere (berth's
//! `--host ssh://…`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::ApiError;

mod dial;
mod upload;

pub use dial::{Body, BoxError, BoxFuture, Dial, Dialed, Stream};
pub use upload::Progress;
use upload::Upload;

/// Where the daemon's socket lives under a state directory.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("berth.sock")
}

/// Why a call did not get a successful answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no berth daemon answers at {}; start one with: berth serve --state {}",
        socket.display(),
        state.display()
    )]
    NoDaemon { socket: PathBuf, state: PathBuf },
    /// The daemon answered non-2xx: its message, and the status that tells bad input (4xx)
    /// from a failed operation.
    #[error("{}", body.error)]
    Daemon { status: StatusCode, body: ApiError },
    /// The way to the daemon failed, and its [`Dial`]er said why (e.g. `ssh: connection
    /// refused`).
    #[error(transparent)]
    Transport(BoxError),
    #[error("talk to the berth daemon")]
    Handshake(#[source] hyper::Error),
    #[error("the berth daemon closed the connection")]
    Closed(#[source] hyper::Error),
    #[error("read from the berth daemon")]
    Read(#[source] hyper::Error),
    #[error("read the daemon's answer")]
    Decode(#[source] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct Client {
    way: Way,
}

enum Way {
    /// `STATE/berth.sock` on this machine: a new connection per request (they are cheap, and
    /// callers may send at the same time).
    Socket(PathBuf),
    /// Through a dialer: one connection kept for the next request (see [`dial`]).
    Dialer(dial::Dialer),
}

impl Client {
    /// The daemon of the state directory `state` on this machine.
    pub fn new(state: &Path) -> Client {
        Client {
            way: Way::Socket(state.to_owned()),
        }
    }

    /// A daemon reached through `dial` (berth's SSH transport).
    pub fn dial(dial: impl Dial) -> Client {
        Client {
            way: Way::Dialer(dial::Dialer::new(Box::new(dial))),
        }
    }

    /// Where the daemon is, for messages: its socket, or the dialer's target.
    pub fn target(&self) -> String {
        match &self.way {
            Way::Socket(state) => socket_path(state).display().to_string(),
            Way::Dialer(d) => d.target(),
        }
    }

    /// Send a request and return the response once its head arrived (2xx only).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<http::Response<Body>> {
        self.send_with_progress(method, path_and_query, body, None)
            .await
    }

    /// [`Client::send`], telling `progress` how much of `body` has gone as it is sent.
    pub async fn send_with_progress(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        progress: Option<Progress>,
    ) -> Result<http::Response<Body>> {
        let request = || {
            Request::builder()
                .method(method.clone())
                .uri(path_and_query)
                .header(http::header::HOST, "berth")
                .body(Upload::new(body.clone(), progress.clone()))
                .expect("a request of a method, a path and a body is valid")
        };
        let resp = match &self.way {
            Way::Socket(state) => {
                let socket = socket_path(state);
                let stream = UnixStream::connect(&socket)
                    .await
                    .map_err(|_| Error::NoDaemon {
                        socket,
                        state: state.clone(),
                    })?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(Error::Handshake)?;
                tokio::spawn(conn);
                let resp = sender
                    .send_request(request())
                    .await
                    .map_err(Error::Closed)?;
                resp.map(Body::once)
            }
            Way::Dialer(d) => d.send(request).await?,
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(Error::Read)?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
            error: String::from_utf8_lossy(&bytes).trim().to_owned(),
            hint: None,
        });
        Err(Error::Daemon { status, body })
    }

    /// `GET` and decode the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T> {
        let resp = self.send(Method::GET, path_and_query, Bytes::new()).await?;
        read_json(resp.into_body()).await
    }
}

/// The whole body, decoded as JSON.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T> {
    let bytes = body.collect().await.map_err(Error::Read)?.to_bytes();
    serde_json::from_slice(&bytes).map_err(Error::Decode)
}

/// Read a streamed body line by line, calling `each` for every complete line.
pub async fn for_each_line<E: From<Error>>(
    mut body: Body,
    mut each: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Error::Read)?;
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
