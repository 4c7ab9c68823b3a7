//! The proxy alone in front of one upstream, like `berth proxy --listen ADDR --to ADDR`
//! (handy for benchmarks until the CLI has the subcommand).
//!
//! `cargo run --release -p proxy --example single -- --listen 127.0.0.1:9105 --to 127.0.0.1:9101`
//!
//! `BERTH_WORKERS=N` sets the runtime's worker threads; `BERTH_CURRENT_THREAD=1` uses a
//! current-thread runtime instead (for comparing scheduler overhead).

use std::net::SocketAddr;

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9105).into();
    let mut to: SocketAddr = ([127, 0, 0, 1], 9101).into();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let addr = value.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{flag} {value}: {e}"),
            )
        })?;
        match flag.as_str() {
            "--listen" => listen = addr,
            "--to" => to = addr,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("unknown flag {flag}"),
                ));
            }
        }
    }
    let mut rt = if std::env::var_os("BERTH_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(n) = std::env::var("BERTH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rt.worker_threads(n);
    }
    let rt = rt.enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        proxy::run_single(
            listener,
            to,
            proxy::ProxyConfig::default(),
            proxy::SingleOptions::default(),
            shutdown,
        )
        .await
    })
}
