//! `berth dial-stdio` (hidden): what `berth --host ssh://…` runs on the server. It joins its
//! stdin and stdout to the daemon's socket and copies bytes both ways: the client's requests
//! in, the daemon's answers out, until the daemon closes the connection (after the client
//! closed its side, or when it stops).

use std::path::Path;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

pub async fn run(state: &Path) -> Result<u8> {
    let socket = api::client::socket_path(state);
    let stream = match UnixStream::connect(&socket).await {
        Ok(stream) => stream,
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(err).with_context(|| {
                format!(
                    "connect to {}: only the user the daemon runs as may (connect as that user: ssh://USER@HOST)",
                    socket.display()
                )
            });
        }
        Err(_) => {
            return Err(api::client::Error::NoDaemon {
                socket,
                state: state.to_owned(),
            }
            .into());
        }
    };
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let requests = async {
        // The client closed its side: the daemon finishes what it answers, then closes.
        let _ = tokio::io::copy(&mut stdin, &mut to_daemon).await;
        let _ = to_daemon.shutdown().await;
        std::future::pending::<()>().await
    };
    let answers = async {
        let copied = tokio::io::copy(&mut from_daemon, &mut stdout).await;
        let _ = stdout.flush().await;
        copied
    };
    tokio::select! {
        () = requests => {}
        copied = answers => {
            // A client gone (EPIPE on stdout) is the normal end too.
            if let Err(err) = copied {
                tracing::debug!(error = %err, "dial-stdio ended");
            }
        }
    }
    // tokio's stdin is a blocking read on a thread of its own that cannot be cancelled; the
    // runtime would wait for it at exit, so leave now.
    std::process::exit(0)
}
