//! The proxy alone in front of one upstream, like `berth proxy --listen ADDR --to ADDR`, with
//! knobs for benchmarks:
//!
//! `cargo run --release -p proxy --example single -- --listen 127.0.0.1:9105 --to 127.0.0.1:9101`
//!
//! - `--routes N --layout paths|hosts`: a table of N routes in front of the one that matches:
//!   `paths` puts N-1 longer path prefixes on the same (any) host, so every request walks past
//!   them; `hosts` gives each of N-1 routes an exact host of its own (a hash lookup misses).
//! - `--threads N`: serving threads (`ProxyConfig::threads`; 0: the main runtime).
//! - `--hyper`: no fast path (every request through hyper's server).
//! - `--tls DIR`: HTTPS with a self-signed certificate for `localhost`, also written to
//!   `DIR/cert.pem` and `DIR/key.pem` so a peer can serve the same one.

use std::net::SocketAddr;
use std::sync::Arc;

use proxy::{Balance, HostPattern, Pool, ProxyConfig, Route, RouteTable, Target, Upstream};

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what)
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9105).into();
    let mut to: SocketAddr = ([127, 0, 0, 1], 9101).into();
    let (mut routes, mut by_host) = (1usize, false);
    let mut tls_dir: Option<std::path::PathBuf> = None;
    let mut config = ProxyConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--hyper" {
            config.http1_fast_path = false;
            continue;
        }
        let value = args.next().unwrap_or_default();
        let bad = |e: &dyn std::fmt::Display| invalid(format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|e| bad(&e))?,
            "--to" => to = value.parse().map_err(|e| bad(&e))?,
            "--routes" => routes = value.parse().map_err(|e| bad(&e))?,
            "--threads" => config.threads = value.parse().map_err(|e| bad(&e))?,
            "--tls" => tls_dir = Some(value.into()),
            "--layout" => {
                by_host = match value.as_str() {
                    "hosts" => true,
                    "paths" => false,
                    _ => return Err(bad(&"paths or hosts")),
                }
            }
            _ => return Err(invalid(format!("unknown flag {flag}"))),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let proxy = proxy::Proxy::new(config);
        let pool = Arc::new(Pool::new(
            "web",
            Balance::RoundRobin,
            vec![Upstream::new("web@1", to)],
        ));
        let route = |i: usize, host, path: String| {
            Route::new(
                format!("r{i}"),
                "app",
                host,
                path,
                Target::Service(pool.clone()),
            )
        };
        let mut table: Vec<Route> = (1..routes)
            .map(|i| match by_host {
                true => route(i, HostPattern::Exact(format!("app{i}.test")), "/".into()),
                false => route(i, HostPattern::Any, format!("/section{i}/page")),
            })
            .collect();
        table.push(route(0, HostPattern::Any, "/".into()));
        proxy.publish(RouteTable { routes: table });
        tracing::info!(%listen, routes, "single listening");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match tls_dir {
            None => proxy.serve(listener, shutdown).await,
            Some(dir) => {
                let names = vec!["localhost".to_owned()];
                let (key, pem) = tls::self_signed(&names).map_err(|e| invalid(e.to_string()))?;
                std::fs::write(dir.join("cert.pem"), &pem.cert)?;
                std::fs::write(dir.join("key.pem"), &pem.key)?;
                let store = tls::CertStore::new();
                store.set("localhost", names, key);
                let config = tls::server_config(&store).map_err(|e| invalid(e.to_string()))?;
                proxy.serve_tls(listener, config, shutdown).await
            }
        }
    })
}
