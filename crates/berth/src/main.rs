//! berth: one binary that takes a web app to production on one Linux server and keeps it there.
//!
//! `berth serve` is the daemon; every other subcommand is a thin client of its control API
//! (HTTP + JSON on `STATE/berth.sock`, or through SSH with `--host ssh://…`), except `proxy`
//! and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cli;
mod listen_fds;
mod output;
mod remote;
mod serve;
mod systemd;

/// Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Take a web app to production on one Linux server, and keep it there."
)]
struct Cli {
    /// State directory of the daemon (holds state.db, berth.sock, releases, logs).
    #[arg(
        long,
        global = true,
        env = "BERTH_STATE",
        default_value = "/var/lib/berth"
    )]
    state: PathBuf,
    /// Run the command against the daemon on another server, through SSH:
    /// ssh://[USER@]HOST[:PORT]. The server needs sshd and berth on its PATH, nothing else;
    /// --state (or BERTH_STATE), when given, names the state directory there. ssh runs with
    /// BatchMode=yes; BERTH_SSH_COMMAND replaces `ssh` (words split on spaces, e.g.
    /// "ssh -i deploy_key").
    #[arg(
        long,
        global = true,
        env = "BERTH_HOST",
        value_name = "ssh://USER@HOST[:PORT]"
    )]
    host: Option<remote::Host>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: supervise apps, serve the proxy and the control API.
    Serve(serve::ServeArgs),
    /// Validate berth.toml, the directory and the routes (against the daemon's other apps, when
    /// one answers) and change nothing.
    Check {
        /// App directory holding berth.toml.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Apply the [environments.NAME] overlay.
        #[arg(long)]
        env: Option<String>,
    },
    /// Ship the app in DIR as a new release.
    Deploy {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Apply the [environments.NAME] overlay; the app runs as APP.NAME.
        #[arg(long)]
        env: Option<String>,
        /// Validate and print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// If a deploy of the app is running, wait for it instead of giving up.
        #[arg(long)]
        wait: bool,
    },
    /// Switch an app back to a kept release (the previous one by default).
    Rollback {
        app: String,
        /// Release id, e.g. r7 (see `berth releases APP`).
        #[arg(long)]
        to: Option<String>,
        /// If a deploy of the app is running, wait for it instead of giving up.
        #[arg(long)]
        wait: bool,
    },
    /// List an app's releases; * marks the live one.
    Releases {
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Every deploy and rollback, with deploy frequency, change-failure rate and time to restore.
    History {
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show apps, releases and instances.
    Status {
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the logs of an app's services.
    Logs {
        app: String,
        service: Option<String>,
        /// Keep printing new lines as they are written.
        #[arg(long, short)]
        follow: bool,
        /// Only lines newer than this, e.g. 10m, 2h.
        #[arg(long)]
        since: Option<String>,
        /// Replace known secret values with [redacted NAME] (`--redact false` shows lines as
        /// the service wrote them).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        redact: bool,
    },
    /// Manage an app's secrets (values only ever on stdin).
    #[command(subcommand)]
    Secrets(cli::secrets::SecretsCommand),
    /// Alerts pending or firing, with value, threshold and since when.
    Alerts {
        #[arg(long)]
        json: bool,
    },
    /// Is it OK? One line per app; exits 1 when something is critical.
    Health {
        app: Option<String>,
        /// The alerts behind each line.
        #[arg(long)]
        detailed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Send a test message through every [[notify]] channel of an app.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// The dashboard (served on the admin listener).
    #[command(subcommand)]
    Dashboard(DashboardCommand),
    /// Put an app in maintenance (its routes answer 503 with a page) or take it out.
    #[command(subcommand)]
    Maintenance(cli::maintenance::MaintenanceCommand),
    /// Back up an app's data, list, verify and restore its backups.
    #[command(subcommand)]
    Backup(cli::backup::BackupCommand),
    /// Hand the daemon over to a new binary (default: the one it was started from, which a
    /// package upgrade replaced): no connection refused, no request failed, no app restarted.
    /// What `systemctl reload berth` runs; SIGUSR2 to the daemon does the same.
    Upgrade {
        /// The new berth binary.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Run the bundled example end to end in a temporary state directory.
    Demo {
        /// Proxy address for the demo.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
    },
    /// The proxy alone in front of one upstream or one static directory (benchmarks, quick
    /// use).
    Proxy {
        #[arg(long)]
        listen: SocketAddr,
        /// The upstream every request goes to.
        #[arg(long, required_unless_present = "static_dir")]
        to: Option<SocketAddr>,
        /// Serve the files of DIR instead, as a static route of an app would. DIR is treated
        /// like a release, whose files never change: restart after changing them.
        #[arg(long = "static", value_name = "DIR", conflicts_with = "to")]
        static_dir: Option<PathBuf>,
        /// With --static: paths that are not files get DIR/index.html (a single-page app).
        #[arg(long, requires = "static_dir")]
        spa: bool,
        /// Security headers on every response: strict, basic or off.
        #[arg(long, default_value = "basic", value_parser = <spec::HeaderPreset as std::str::FromStr>::from_str)]
        headers: spec::HeaderPreset,
        /// Rate-limit every request by client address: "REQUESTS/s|m|h [burst N]",
        /// e.g. "1000/s burst 2000".
        #[arg(long, value_name = "RATE", value_parser = spec::parse_rate)]
        rate_limit: Option<spec::RateSpec>,
        /// Open connections one client address may have (0: no limit).
        #[arg(long, default_value_t = proxy::ProxyConfig::default().max_connections_per_ip)]
        max_connections_per_ip: u32,
    },
    /// Files for other tools, from the same berth.toml: a systemd unit, firewall rules,
    /// Kubernetes manifests, Prometheus config and rules, a Grafana dashboard.
    #[command(subcommand)]
    Export(cli::export::ExportCommand),
    /// Run berth as a hardened systemd service on this host.
    Install(cli::install::InstallArgs),
    /// Join stdin and stdout to the daemon's socket (what `berth --host ssh://…` runs on the
    /// server).
    #[command(hide = true)]
    DialStdio,
}

impl Command {
    /// Whether the command talks to a daemon (and so may go to one elsewhere with --host).
    fn is_client(&self) -> bool {
        matches!(
            self,
            Command::Check { .. }
                | Command::Deploy { .. }
                | Command::Rollback { .. }
                | Command::Releases { .. }
                | Command::History { .. }
                | Command::Status { .. }
                | Command::Logs { .. }
                | Command::Secrets(_)
                | Command::Alerts { .. }
                | Command::Health { .. }
                | Command::Notify(_)
                | Command::Dashboard(_)
                | Command::Maintenance(_)
                | Command::Backup(_)
        )
    }
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// A test message through every channel; reports each result.
    Test {
        app: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DashboardCommand {
    /// The dashboard's URL with its access token.
    Url,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let source = |id| matches.value_source(id);
    let state_given = matches!(
        source("state"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    let host_typed = source("host") == Some(ValueSource::CommandLine);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            output::error(&anyhow::Error::new(err).context("start the async runtime"));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(async move {
        let client = match (&cli.host, cli.command.is_client()) {
            (Some(host), true) => {
                let state = state_given.then(|| cli.state.clone());
                let ssh_command = std::env::var("BERTH_SSH_COMMAND").ok();
                remote::connect(host.clone(), state, ssh_command).await?
            }
            // BERTH_HOST in the environment is for the client commands only.
            (Some(host), false) if host_typed => {
                return Err(cli::BadInput(format!(
                    "--host {host}: this command runs on this machine; --host is for commands that talk to a daemon"
                ))
                .into());
            }
            _ => api::client::Client::new(&cli.state),
        };
        let client = &client;
        match cli.command {
            Command::Serve(args) => serve::run(&cli.state, args).await,
            Command::DialStdio => remote::dial_stdio::run(&cli.state).await,
            Command::Check { dir, env } => cli::check::run(client, &dir, env.as_deref()).await,
            Command::Deploy {
                dir,
                env,
                dry_run,
                wait,
            } => cli::deploy::run(client, &dir, env.as_deref(), dry_run, wait).await,
            Command::Secrets(cmd) => cli::secrets::run(client, cmd).await,
            Command::Backup(cmd) => cli::backup::run(client, cmd).await,
            Command::Maintenance(cmd) => cli::maintenance::run(client, cmd).await,
            Command::Alerts { json } => cli::observe::alerts(client, json).await,
            Command::Health {
                app,
                detailed,
                json,
            } => cli::observe::health(client, app.as_deref(), detailed, json).await,
            Command::Notify(NotifyCommand::Test { app, json }) => {
                cli::observe::notify_test(client, &app, json).await
            }
            Command::Dashboard(DashboardCommand::Url) => {
                cli::observe::dashboard_url(client).await
            }
            Command::Rollback { app, to, wait } => {
                cli::deploy::rollback(client, &app, to.as_deref(), wait).await
            }
            Command::Releases { app, json } => cli::history::releases(client, &app, json).await,
            Command::History { app, json } => {
                cli::history::history(client, app.as_deref(), json).await
            }
            Command::Status { app, json } => {
                cli::status::run(client, app.as_deref(), json).await
            }
            Command::Logs {
                app,
                service,
                follow,
                since,
                redact,
            } => {
                cli::logs::run(
                    client,
                    &app,
                    service.as_deref(),
                    follow,
                    since.as_deref(),
                    redact,
                )
                .await
            }
            Command::Demo { http } => cli::demo::run(http).await,
            Command::Upgrade { binary } => cli::upgrade::run(&cli.state, binary).await,
            Command::Proxy {
                listen,
                to,
                static_dir,
                spa,
                headers,
                rate_limit,
                max_connections_per_ip,
            } => {
                let config = proxy::ProxyConfig {
                    max_connections_per_ip,
                    ..proxy::ProxyConfig::default()
                };
                let target = match (to, static_dir) {
                    (Some(to), _) => proxy::SingleTarget::Upstream(to),
                    (None, root) => proxy::SingleTarget::Static {
                        root: root.unwrap_or_default(),
                        spa,
                    },
                };
                cli::proxy::run(listen, target, config, headers, rate_limit).await
            }
            Command::Export(cmd) => cli::export::run(cmd),
            Command::Install(args) => cli::install::run(args).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => ExitCode::from(cli::report(&err)),
    }
}
