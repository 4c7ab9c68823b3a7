//! `berth demo`: start a daemon in a temporary state directory, deploy `examples/hello` behind
//! the proxy, print the URL, and serve until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::api::DaemonInfo;
use crate::client::Client;
use crate::output;

pub async fn run(http: SocketAddr) -> Result<u8> {
    let example = example_dir().context("find examples/hello")?;
    let state = std::env::temp_dir().join(format!("berth-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
    output::progress(format!("==> state directory {}", state.display()));

    let exe = std::env::current_exe().context("find the berth binary")?;
    let mut daemon = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--state")
        .arg(&state)
        .arg("--http")
        .arg(http.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
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
    stop(&mut daemon).await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(code)
}

async fn stop(daemon: &mut tokio::process::Child) {
    if let Some(pid) = daemon.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .is_err()
    {
        let _ = daemon.kill().await;
    }
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
