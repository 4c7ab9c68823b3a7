//! `berth demo`: start a daemon in a temporary state directory, deploy `examples/hello` behind
//! the proxy, print the URL, and serve until Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::output;

pub async fn run(http: SocketAddr) -> Result<u8> {
    let example = example_dir().context("find examples/hello")?;
    // Not under /tmp: the demo's app gets a private /tmp, as in production.
    let base = [
        std::path::Path::new("/var/tmp").to_owned(),
        std::env::temp_dir(),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .unwrap_or_else(std::env::temp_dir);
    let state = base.join(format!("berth-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state).with_context(|| format!("create {}", state.display()))?;
    output::progress(format!("==> state directory {}", state.display()));
    crate::serve::init_tracing();

    // The daemon runs in this process, on its own task, until the demo ends.
    let daemon = daemon::Daemon::open(daemon::Config::new(&state))?;
    // The dashboard on a loopback port of its own.
    let admin = TcpListener::bind("127.0.0.1:0")
        .await
        .context("listen for the dashboard on loopback")?;
    let listeners = daemon::Listeners {
        http: TcpListener::bind(http)
            .await
            .with_context(|| format!("listen on {http}; is it already in use?"))?,
        https: None,
        admin: Some(admin),
        control: daemon.bind_control()?,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The demo's apps end with it: nothing is left for a next daemon.
    let mut served = tokio::spawn(daemon.run(listeners, async {
        let _ = stopped.await;
        daemon::Stop::Everything
    }));

    let client = api::client::Client::new(&state);
    let deployed = super::deploy::run(&client, &example, None, false, false).await;
    if let Ok(0) = deployed {
        let url = format!("http://{http}/");
        let dashboard = super::observe::url(&client).await?;
        output::line(format!("\nberth demo is serving {url}"));
        output::line(format!("  dashboard: {dashboard}"));
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
            _ = daemon::shutdown_signal() => {}
            ended = &mut served => output::progress(format!("the daemon ended: {ended:?}")),
        }
    }
    let _ = stop.send(());
    if !served.is_finished() {
        served.await.context("stop the daemon")??;
    }
    let _ = std::fs::remove_dir_all(&state);
    deployed
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
