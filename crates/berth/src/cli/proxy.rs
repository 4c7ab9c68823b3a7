//! `berth proxy --listen ADDR (--to ADDR | --static DIR [--spa]) [--headers PRESET]
//! [--rate-limit RATE]`: the proxy alone in front of one upstream or one static directory, with
//! the daemon's defaults (access log and metrics on, `basic` security headers). Used by the
//! benchmarks.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use spec::{HeaderPreset, RateSpec};

pub async fn run(
    listen: SocketAddr,
    target: proxy::SingleTarget,
    config: proxy::ProxyConfig,
    headers: HeaderPreset,
    rate_limit: Option<RateSpec>,
) -> Result<u8> {
    crate::serve::init_tracing();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), listen = %bound, ?target, ?headers, ?rate_limit, "berth proxy listening");
    let options = proxy::SingleOptions {
        headers: proxy::HeaderPolicy::preset(daemon::header_preset(headers)),
        rate_limit: rate_limit.map(|r| proxy::RateLimit {
            zone: "single".into(),
            requests: r.requests,
            per: r.per,
            burst: r.burst,
        }),
    };
    proxy::run_single(listener, target, config, options, async {
        daemon::shutdown_signal().await;
    })
    .await
    .context("serve the proxy")?;
    Ok(0)
}
