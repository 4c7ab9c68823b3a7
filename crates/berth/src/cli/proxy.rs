//! `berth proxy --listen ADDR --to ADDR`: the proxy alone in front of one upstream, with the
//! daemon's defaults (access log and metrics on). Used by the benchmarks.

use std::net::SocketAddr;

use anyhow::{Context, Result};

pub async fn run(listen: SocketAddr, to: SocketAddr) -> Result<u8> {
    crate::daemon::init_tracing();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), %listen, upstream = %to, "berth proxy listening");
    proxy::run_single(
        listener,
        to,
        proxy::ProxyConfig::default(),
        proxy::SingleOptions::default(),
        crate::daemon::shutdown_signal(),
    )
    .await
    .context("serve the proxy")?;
    Ok(0)
}
