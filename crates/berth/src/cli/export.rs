//! `berth export TARGET [DIR] [--env NAME] [--out DIR] [--force]`: the files the `export`
//! crate makes, printed (one document where the format allows) or written to `--out DIR`,
//! where an existing file is replaced only with `--force`. Nothing is written unless every
//! file can be.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use export::File;

use crate::{EXIT_BAD_INPUT, output};

#[derive(Subcommand)]
pub enum ExportCommand {
    /// A hardened systemd unit for the daemon (berth.service).
    Systemd {
        #[command(flatten)]
        server: Server,
        /// Run as this dedicated user, with no capability but binding ports 80 and 443. App
        /// isolation is then OFF (every app runs as this user). Default: root, bounded to the
        /// capabilities app isolation needs.
        #[arg(long)]
        user: Option<String>,
        /// The berth binary the unit runs.
        #[arg(long, default_value = "/usr/local/bin/berth")]
        binary: String,
        #[command(flatten)]
        out: Out,
    },
    /// Inbound firewall rules: SSH, HTTP, HTTPS; loopback and established traffic; the rest
    /// dropped, the admin listener never exposed.
    Firewall {
        /// An nftables ruleset (the default).
        #[arg(long, conflicts_with = "ufw")]
        nftables: bool,
        /// A script of ufw commands.
        #[arg(long)]
        ufw: bool,
        /// The SSH port to keep open.
        #[arg(long, default_value_t = 22)]
        ssh_port: u16,
        #[command(flatten)]
        server: Server,
        #[command(flatten)]
        out: Out,
    },
    /// Kubernetes manifests: Deployments, Services, Ingresses, HPAs, CronJobs, NetworkPolicies.
    Kubernetes {
        #[command(flatten)]
        app: App,
        /// metadata.namespace of every object (default: none, `kubectl -n` decides).
        #[arg(long)]
        namespace: Option<String>,
        /// ingressClassName of the Ingresses.
        #[arg(long, default_value = "nginx")]
        ingress_class: String,
        /// The namespace of the ingress controller, the only one the NetworkPolicies admit.
        #[arg(long, default_value = "ingress-nginx")]
        ingress_namespace: String,
        /// cert-manager ClusterIssuer for apps with [tls] acme.
        #[arg(long, default_value = "letsencrypt")]
        cluster_issuer: String,
        /// An nginx image holding the static routes' directories under /usr/share/nginx/html.
        #[arg(long, value_name = "IMAGE")]
        static_image: Option<String>,
        /// The image of the backup CronJobs (with pg_dump).
        #[arg(long, value_name = "IMAGE", default_value = "postgres:16-alpine")]
        backup_image: String,
        #[command(flatten)]
        out: Out,
    },
    /// Prometheus: a scrape config for the daemon and rules equivalent to the app's [alerts].
    Prometheus {
        #[command(flatten)]
        app: App,
        /// The daemon's admin listener (`berth serve --admin`) Prometheus scrapes.
        #[arg(long, default_value = "127.0.0.1:9100")]
        target: String,
        #[command(flatten)]
        out: Out,
    },
    /// A Grafana dashboard: rate, errors, latency and instances per app and route.
    Grafana {
        #[command(flatten)]
        app: App,
        #[command(flatten)]
        out: Out,
    },
}

/// The app exported.
#[derive(Args)]
pub struct App {
    /// App directory holding berth.toml.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Apply the [environments.NAME] overlay.
    #[arg(long)]
    env: Option<String>,
}

impl App {
    /// berth.toml, checked; `None` when it has problems (printed).
    fn load(&self) -> Result<Option<spec::AppSpec>> {
        super::check::load(&self.dir, self.env.as_deref())
    }
}

/// The daemon's listeners, as `berth serve` takes them.
#[derive(Args)]
pub struct Server {
    /// `berth serve --http`.
    #[arg(long, default_value = "0.0.0.0:80")]
    pub http: SocketAddr,
    /// `berth serve --https`.
    #[arg(long, default_value = "0.0.0.0:443", conflicts_with = "no_https")]
    https: SocketAddr,
    /// No HTTPS listener.
    #[arg(long)]
    no_https: bool,
    /// `berth serve --admin` (/metrics, the dashboard); keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub admin: SocketAddr,
}

impl Server {
    pub fn https(&self) -> Option<SocketAddr> {
        (!self.no_https).then_some(self.https)
    }

    /// The units for a daemon on these listeners (`export systemd` and `install` alike).
    pub fn systemd(&self, user: Option<String>, binary: String) -> export::systemd::Options {
        export::systemd::Options {
            user,
            binary,
            http: self.http.to_string(),
            https: self.https().map(|a| a.to_string()),
            admin: Some(self.admin.to_string()),
        }
    }
}

/// Where the files go.
#[derive(Args)]
pub struct Out {
    /// Write the files into this directory (made if missing) instead of printing them.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// With --out: replace files that are there.
    #[arg(long, requires = "out")]
    force: bool,
}

pub fn run(cmd: ExportCommand) -> Result<u8> {
    let (files, out) = match cmd {
        ExportCommand::Systemd {
            server,
            user,
            binary,
            out,
        } => (export::systemd::units(&server.systemd(user, binary)), out),
        ExportCommand::Firewall {
            ufw,
            ssh_port,
            server,
            out,
            ..
        } => {
            let o = export::firewall::Options {
                ssh_port,
                http_port: server.http.port(),
                https_port: server.https().map(|a| a.port()),
                http3: false,
                admin_port: Some(server.admin.port()),
            };
            let f = if ufw {
                file("berth-ufw.sh", export::firewall::ufw(&o))
            } else {
                file("berth.nft", export::firewall::nftables(&o))
            };
            (vec![f], out)
        }
        ExportCommand::Kubernetes {
            app,
            namespace,
            ingress_class,
            ingress_namespace,
            cluster_issuer,
            static_image,
            backup_image,
            out,
        } => {
            let Some(spec) = app.load()? else {
                return Ok(EXIT_BAD_INPUT);
            };
            let o = export::kubernetes::Options {
                namespace,
                ingress_class,
                ingress_namespace,
                cluster_issuer,
                static_image,
                backup_image,
            };
            for note in export::kubernetes::notes(&spec) {
                output::progress(format!("note: {note}"));
            }
            match export::kubernetes::files(&spec, &o) {
                Ok(files) if out.out.is_none() => {
                    output::line(export::kubernetes::one_document(&files).trim_end());
                    return Ok(0);
                }
                Ok(files) => (files, out),
                Err(err) => {
                    let path = app.dir.join("berth.toml");
                    output::error(&anyhow::anyhow!("{}: {err}", path.display()));
                    output::hint(err.hint());
                    return Ok(EXIT_BAD_INPUT);
                }
            }
        }
        ExportCommand::Prometheus { app, target, out } => {
            let Some(spec) = app.load()? else {
                return Ok(EXIT_BAD_INPUT);
            };
            let o = export::prometheus::Options { target };
            (export::prometheus::files(&spec, &o), out)
        }
        ExportCommand::Grafana { app, out } => {
            let Some(spec) = app.load()? else {
                return Ok(EXIT_BAD_INPUT);
            };
            (vec![export::grafana::dashboard(&spec)], out)
        }
    };
    match out.out {
        Some(dir) => write_all(&dir, &files, out.force),
        None => {
            print_all(&files);
            Ok(0)
        }
    }
}

fn file(path: &str, contents: String) -> File {
    File {
        path: path.to_owned(),
        contents,
    }
}

/// One file as it is; several each under a `# ==> NAME <==` line (comments in every format
/// printed this way), with a hint that `--out` writes them apart.
fn print_all(files: &[File]) {
    if let [only] = files {
        output::line(only.contents.trim_end());
        return;
    }
    for f in files {
        output::line(format!("# ==> {} <==", f.path));
        output::line(f.contents.trim_end());
    }
    output::hint("--out DIR writes each file on its own");
}

/// Writes every file, or none: an existing file without `--force` refuses the lot first.
fn write_all(dir: &Path, files: &[File], force: bool) -> Result<u8> {
    let there: Vec<String> = files
        .iter()
        .map(|f| dir.join(&f.path))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !there.is_empty() && !force {
        output::error(&anyhow::anyhow!(
            "{} already there; nothing was written",
            there.join(", ")
        ));
        output::hint("pass --force to replace them, or --out another directory");
        return Ok(EXIT_BAD_INPUT);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for f in files {
        let path = dir.join(&f.path);
        std::fs::write(&path, &f.contents).with_context(|| format!("write {}", path.display()))?;
        output::line(format!("wrote {}", path.display()));
    }
    Ok(0)
}
