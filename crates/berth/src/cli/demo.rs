//! `berth demo`: start a daemon in a temporary state directory, deploy `examples/hello` behind
//! the proxy, print the URL, and serve until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use supervisor::command::Command;

use crate::api::DaemonInfo;
use crate::client::Client;
use crate::output;

/// Between SIGTERM and SIGKILL when the demo stops its daemon.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(http: SocketAddr) -> Result<u8> {
    let example = example_dir().context("find examples/hello")?;
    let state = std::env::temp_dir().join(format!("berth-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
    output::progress(format!("==> state directory {}", state.display()));

    let exe = std::env::current_exe().context("find the berth binary")?;
    // Like every child of berth: it dies with the demo, even on `kill -9`. Its log goes to
    // the terminal; of our environment it gets the base and the log level.
    let mut daemon = Command::new(exe)
        .arg("serve")
        .arg("--state")
        .arg(&state)
        .arg("--http")
        .arg(http.to_string())
        .envs(std::env::var_os("BERTH_LOG").map(|level| ("BERTH_LOG", level)))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .await
        .context("start the berth daemon")?;

    let client = Client::new(&state);
    let deadline = Instant::now() + Duration::from_secs(20);
    let info: DaemonInfo = loop {
        match client.get_json("/v1/daemon").await {
            Ok(info) => break info,
            Err(_) if Instant::now() < deadline => {
                if let Some(status) = daemon.try_wait()? {
                    bail!("the berth daemon exited at start ({status}); is {http} already in use?");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(err.context("wait for the berth daemon")),
        }
    };

    let code = super::deploy::run(&state, &example, None, false, false).await?;
    if code == 0 {
        let url = format!(
            "http://{}/",
            info.http.as_deref().unwrap_or("127.0.0.1:8080")
        );
        output::line(format!("\nberth demo is serving {url}"));
        output::line(format!("  try:    curl {url}"));
        output::line(format!(
            "  status: berth status --state {}",
            state.display()
        ));
        output::line(format!(
            "  logs:   berth logs hello --state {}",
            state.display()
        ));
        output::line("Ctrl-C stops the demo.");
        tokio::select! {
            _ = crate::daemon::shutdown_signal() => {}
            status = daemon.wait() => output::progress(format!("the daemon exited: {status:?}")),
        }
    }
    let _ = daemon.terminate(STOP_TIMEOUT).await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(code)
}

/// `examples/hello` next to the current directory (the README runs the demo from the repo
/// root), else next to the source tree this binary was built from.
fn example_dir() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("examples/hello"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("berth.toml").is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("examples/hello not found: run the demo from the berth repository")
        })
}
