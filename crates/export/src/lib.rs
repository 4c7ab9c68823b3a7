//! `berth export`: the files other tools read, made from the same `berth.toml` (and the
//! server's own settings) — a hardened systemd unit for the daemon, firewall rules,
//! Kubernetes manifests, Prometheus scrape config and rules, a Grafana dashboard.
//!
//! Pure: a parsed [`spec::AppSpec`] and options in, [`File`]s out. No IO, no clock, no
//! environment; the CLI writes the files or prints them. Secrets are never in an export: the
//! spec holds none (only how each is made), and the Kubernetes manifests name them as
//! `secretKeyRef`s.

pub mod firewall;
pub mod grafana;
pub mod kubernetes;
pub mod prometheus;
pub mod systemd;
mod yaml;

/// One generated file: a path relative to the output directory, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub contents: String,
}

impl File {
    fn new(path: impl Into<String>, contents: impl Into<String>) -> File {
        File {
            path: path.into(),
            contents: contents.into(),
        }
    }
}

/// Why an export cannot be made from this spec; each names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A service has no `image`, which only the Kubernetes export needs.
    #[error("service `{service}` has no `image`: Kubernetes runs containers, not the release tree")]
    MissingImage { service: String },
    /// A static route and no image to serve it from.
    #[error(
        "the static route {route} needs an image to serve its files from (nginx serving `{dir}`)"
    )]
    StaticNeedsImage { route: String, dir: String },
}

impl Error {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Error::MissingImage { service } => format!(
                "add image = \"REGISTRY/IMAGE:TAG\" to [services.{service}] in berth.toml (an image whose working directory holds the app, so `command` runs as it does in a release)"
            ),
            Error::StaticNeedsImage { .. } => "pass --static-image REGISTRY/IMAGE:TAG: an nginx image with the built directory under /usr/share/nginx/html".to_owned(),
        }
    }
}

/// A duration the way Prometheus and systemd both read it: whole seconds (`300s`), or
/// milliseconds when it is not whole (`1500ms`).
pub(crate) fn seconds(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
