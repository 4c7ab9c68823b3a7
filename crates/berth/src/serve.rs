//! `berth serve`: bind the listeners (or take those handed in: socket activation, an upgrade),
//! open the daemon on the state directory, and run it until SIGTERM (the apps keep running),
//! SIGINT (everything stops) or an upgrade hands it over; under systemd (`NOTIFY_SOCKET`),
//! tell it how the start goes (`crate::systemd`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address of the HTTP proxy listener (use 0.0.0.0:80 in production).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Address of the HTTPS listener (0.0.0.0:443 in production). Without it, apps with [tls]
    /// get their certificates but are served over plain HTTP only.
    #[arg(long)]
    pub https: Option<SocketAddr>,
    /// Address of the admin listener serving /metrics (off unless given).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Open connections one client address (IPv6: one /64) may have; 0 for no limit. Behind
    /// a load balancer every connection comes from its address: raise this or use 0.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_ip: u32,
    /// PEM file of a CA to trust for the ACME directory's own HTTPS, besides the public roots
    /// (a private ACME CA, or pebble in tests).
    #[arg(long, value_name = "FILE")]
    pub acme_ca_root: Option<PathBuf>,
    /// Command run with `sh -c` to set and clear the `_acme-challenge` TXT record for wildcard
    /// names (DNS-01). It gets BERTH_DNS_ACTION=set|clear, BERTH_DNS_NAME (the full record
    /// name, prefix included: `_acme-challenge.example.com` for `*.example.com`; do not add
    /// `_acme-challenge.` again) and BERTH_DNS_VALUE (the TXT value); it exits 0 once the
    /// record is set (or cleared) and visible.
    #[arg(long, value_name = "COMMAND")]
    pub acme_dns_hook: Option<String>,
    /// Where `pg_dump` and `pg_restore` are (default: those of the database server's major
    /// version under /usr/lib/postgresql, else PATH's).
    #[arg(long, value_name = "DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// The server's own alert on the state directory's free disk: "WARN,CRITICAL" below,
    /// e.g. "20%,10%" (the default); "off" for none.
    #[arg(long, value_name = "WARN,CRITICAL", default_value = "20%,10%", value_parser = percents)]
    pub alert_disk_free: (Option<f64>, Option<f64>),
    /// The server's own alert on the daemon's resident memory: "WARN,CRITICAL" above, e.g.
    /// "256M,1G" (the default); "off" for none.
    #[arg(long, value_name = "WARN,CRITICAL", default_value = "256M,1G", value_parser = sizes)]
    pub alert_daemon_memory: (Option<f64>, Option<f64>),
    /// How often metrics are sampled into the built-in history and alert rules evaluated.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = spec::parse_duration)]
    pub sample_interval: std::time::Duration,
}

type Pair = (Option<f64>, Option<f64>);

fn pair(input: &str, one: impl Fn(&str) -> Result<f64, String>) -> Result<Pair, String> {
    if input == "off" {
        return Ok((None, None));
    }
    let (w, c) = input
        .split_once(',')
        .ok_or_else(|| format!("`{input}`: expected WARN,CRITICAL (or off)"))?;
    let side = |s: &str| match s.trim() {
        "" | "off" => Ok(None),
        s => one(s).map(Some),
    };
    Ok((side(w)?, side(c)?))
}

fn percents(input: &str) -> Result<Pair, String> {
    pair(input, |s| {
        let n: f64 = s
            .strip_suffix('%')
            .and_then(|n| n.trim().parse().ok())
            .filter(|n: &f64| (0.0..=100.0).contains(n))
            .ok_or_else(|| format!("`{s}`: a percentage like 20%"))?;
        Ok(n / 100.0)
    })
}

fn sizes(input: &str) -> Result<Pair, String> {
    pair(input, |s| spec::parse_size(s).map(|b| b as f64))
}

pub async fn run(state: &Path, args: ServeArgs) -> Result<u8> {
    let inherited = crate::listen_fds::Inherited::from_env()?;
    init_tracing();
    let notify = crate::systemd::Notifier::from_env();
    if let Some(n) = &notify {
        n.spawn_watchdog();
        n.status("starting: binding listeners, recovering apps");
    }
    let mut config = daemon::Config::new(state);
    config.max_connections_per_ip = args.max_connections_per_ip;
    config.acme.ca_root = args.acme_ca_root;
    config.acme.dns_hook = args.acme_dns_hook;
    config.pg_bin_dir = args.pg_bin_dir;
    config.sample_every = args.sample_interval;
    config.server_alerts = daemon::ServerAlerts {
        disk_free: args.alert_disk_free,
        daemon_memory: args.alert_daemon_memory,
    };
    if let Some(n) = notify.clone() {
        config.on_ready = Some(Box::new(move |ready| n.ready(&ready)));
    }
    let mut succession = succession(state, inherited.upgrade);
    if let Some(n) = notify.clone() {
        succession.handed_over = Some(Box::new(move |pid| n.send(&format!("MAINPID={pid}"))));
    }
    config.succession = Some(succession);
    config.control_inherited = inherited.control.is_some();
    let daemon = daemon::Daemon::open(config)?;
    use crate::listen_fds::{tcp, unix};
    let listeners = daemon::Listeners {
        http: match inherited.http {
            Some(l) => tcp(l, "HTTP")?,
            None => bind(args.http, "HTTP").await?,
        },
        https: match inherited.https {
            Some(l) => Some(tcp(l, "HTTPS")?),
            None => bind_some(args.https, "HTTPS").await?,
        },
        admin: match inherited.admin {
            Some(l) => Some(tcp(l, "admin")?),
            None => bind_some(args.admin, "admin").await?,
        },
        control: match inherited.control {
            Some(l) => unix(l)?,
            None => daemon.bind_control()?,
        },
    };
    // Under systemd (`INVOCATION_ID`), SIGTERM is `systemctl stop`, which SIGKILLs whatever is
    // left once berth exits (KillMode=mixed): the apps stop with the daemon, gracefully. The
    // path that keeps them is `berth upgrade` (`systemctl reload`).
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    let shutdown = async {
        let stop = match daemon::shutdown_signal().await {
            daemon::Stop::LeaveApps if under_systemd => daemon::Stop::Everything,
            stop => stop,
        };
        if let Some(n) = &notify {
            n.stopping();
        }
        stop
    };
    daemon.run(listeners, shutdown).await?;
    Ok(0)
}

/// How this daemon starts its successor on `berth upgrade`: the binary it was started from
/// (after a package upgrade, the new version), the same flags, the state directory and the
/// variables that shape its logs and its talk with systemd.
fn succession(state: &Path, from: Option<std::os::unix::net::UnixStream>) -> daemon::Succession {
    let binary = std::env::current_exe()
        .map(|p| {
            let shown = p.to_string_lossy();
            match shown.strip_suffix(" (deleted)") {
                Some(path) => PathBuf::from(path),
                None => p,
            }
        })
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut env = vec![("BERTH_STATE".into(), state.as_os_str().to_owned())];
    for var in ["BERTH_LOG", "NO_COLOR", "NOTIFY_SOCKET", "WATCHDOG_USEC"] {
        if let Some(v) = std::env::var_os(var) {
            env.push((var.into(), v));
        }
    }
    daemon::Succession {
        binary,
        args: std::env::args_os().skip(1).collect(),
        env,
        from,
        handed_over: None,
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for {what} on {addr}"))
}

async fn bind_some(addr: Option<SocketAddr>, what: &str) -> Result<Option<TcpListener>> {
    match addr {
        Some(addr) => bind(addr, what).await.map(Some),
        None => Ok(None),
    }
}

/// Logs to stderr; `BERTH_LOG` filters them (`info` by default). Colours only on a terminal,
/// and never with `NO_COLOR` set (<https://no-color.org>): a log file or journald gets plain
/// text.
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}
