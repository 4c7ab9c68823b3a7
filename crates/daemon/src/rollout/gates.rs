//! The checks a new release must pass before the switch: every instance ready (the start
//! gate), then smoke checks through its own routes. What it must pass after (canary steps,
//! the watch window) is `judge.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{Gate, Phase};
use proxy::RouteTable;
use tls::rustls::pki_types::CertificateDer;

use super::progress::Rollout;
use crate::core::Core;
use crate::failure::Failure;
use crate::release::{Member, Release};

/// A smoke check must answer within this time.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Core {
    /// The start gate: every instance in `members` must pass readiness.
    pub(super) async fn gate_ready(
        &self,
        r: &Rollout<'_>,
        members: &[Member],
    ) -> Result<(), Failure> {
        let waits = members
            .iter()
            .map(|m| async move { (m, m.instance.wait_ready().await) });
        let mut failure = None;
        for (m, ready) in futures_util::future::join_all(waits).await {
            match ready {
                Ok(()) => r.progress.ready(&m.service, m.index, m.instance.port()),
                Err(err) if failure.is_none() => {
                    failure = Some(
                        Failure::new(
                            Gate::Start,
                            format!(
                                "start gate: service {} instance {} of {} {}: {}",
                                m.service, m.index, r.app, r.release, err.kind
                            ),
                        )
                        .hint(format!(
                            "{}; see `berth logs {} {}`",
                            self.serving(&r.app),
                            r.app,
                            m.service
                        ))
                        .tail(err.log_tail.clone()),
                    );
                }
                Err(_) => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Smoke checks through the new release's own routes, before the switch: each request goes
    /// through a [`proxy::Proxy::preview`] of its route table (headers, limits, static files
    /// and all), over TLS with the certificate berth will serve for the host when the app has
    /// `[tls]`. No client can reach the release yet, so a failed check costs none a request.
    pub(super) async fn smoke(&self, r: &Rollout<'_>, new: &Release) -> Result<(), Failure> {
        let routes = self.release_routes(&r.app, new, None, None);
        let preview = self.proxy.preview(RouteTable { routes });
        for check in &r.spec.deploy.smoke {
            let host = r.spec.smoke_host(check);
            let name = host.name();
            let over = self.smoke_over(r, new, name)?;
            let (client, server) = tokio::io::duplex(64 * 1024);
            let peer = SocketAddr::from(([127, 0, 0, 1], 0));
            let (proto, config) = match &over {
                Over::Tls { config, .. } => ("https", Some(config.clone())),
                Over::Http => ("http", None),
                Over::HttpsWithoutTls => ("https", None),
            };
            let serving = tokio::spawn(preview.clone().serve_stream(server, peer, proto, config));
            let probe = async {
                match &over {
                    Over::Tls { leaf, .. } => {
                        https_status(client, leaf.clone(), name, &check.path).await
                    }
                    _ => supervisor::http_status_on(client, name, &check.path).await,
                }
            };
            let said = over.said();
            let answer = tokio::time::timeout(SMOKE_TIMEOUT, probe).await;
            serving.abort();
            let problem = match answer {
                Ok(Ok(status)) if status == check.status => {
                    r.progress.phase(
                        Phase::Smoke,
                        format!("GET {} (Host: {name}{said}) answered {status}", check.path),
                    );
                    continue;
                }
                Ok(Ok(status)) => format!("answered {status}, expected {}", check.status),
                Ok(Err(err)) => err,
                Err(_) => format!("no answer within {}s", SMOKE_TIMEOUT.as_secs()),
            };
            let chosen = match &host {
                spec::SmokeHost::UnderWildcard { pattern, .. } => {
                    format!(" (a name under {pattern}: give the check a host = \"...\" of its own)")
                }
                _ => String::new(),
            };
            return Err(Failure::new(
                Gate::Smoke,
                format!(
                    "smoke check: GET {} (Host: {name}{said}) on {} {}, before the switch: {problem}{chosen}",
                    check.path, r.app, r.release
                ),
            )
            .hint(format!("{}; see `berth logs {}`", self.serving(&r.app), r.app))
            .tail(self.log_tail(&r.app, &r.release).await));
        }
        Ok(())
    }

    /// How a smoke check to `host` goes: plain HTTP when the app is not HTTPS here, TLS with
    /// the certificate berth serves for `host`, or HTTPS without TLS when an HTTPS app has no
    /// certificate for it yet (an ACME order for a new name).
    fn smoke_over(&self, r: &Rollout<'_>, new: &Release, host: &str) -> Result<Over, Failure> {
        if self.addrs.https.is_none() || r.spec.tls.is_none() {
            return Ok(Over::Http);
        }
        let leaf = match self.certs.store.lookup(host) {
            Some(leaf) => leaf,
            None => {
                // A new name: hand the manager the new release's `[tls]` now (files and
                // self-signed certificates are there at once; an ACME order is not). The next
                // route table, switched or not, hands it the serving set again.
                self.sync_certs_with(&r.app, new);
                match self.certs.store.lookup(host) {
                    Some(leaf) => leaf,
                    None => return Ok(Over::HttpsWithoutTls),
                }
            }
        };
        let config = tls::server_config(&self.certs.store).map_err(|e| {
            Failure::new(
                Gate::Tls,
                format!("TLS for the smoke checks of {} {}: {e}", r.app, r.release),
            )
            .hint(self.serving(&r.app))
        })?;
        Ok(Over::Tls {
            config,
            leaf: leaf.cert[0].clone(),
        })
    }

    /// The last log lines of one release of an app, for failure messages.
    pub(super) async fn log_tail(&self, app: &str, release: &str) -> Vec<String> {
        let (dir, release) = (self.dir.app_logs(app), release.to_owned());
        tokio::task::spawn_blocking(move || {
            let lines = supervisor::logs::read(&dir, None, None).unwrap_or_default();
            let mine: Vec<String> = lines
                .iter()
                .filter(|l| l.release == release)
                .map(ToString::to_string)
                .collect();
            mine[mine.len().saturating_sub(20)..].to_vec()
        })
        .await
        .unwrap_or_default()
    }

    /// "release rN keeps serving" or "nothing was serving before", for hints.
    pub(super) fn serving(&self, app: &str) -> String {
        self.with_running(app, |r| format!("release {} keeps serving", r.id))
            .unwrap_or_else(|| "nothing was serving before".to_owned())
    }
}

/// How a smoke check reaches the preview of the new release's routes.
enum Over {
    Http,
    /// TLS, as the HTTPS listener would do it; the client pins the certificate berth serves.
    Tls {
        config: Arc<tls::rustls::ServerConfig>,
        leaf: CertificateDer<'static>,
    },
    /// An HTTPS app's routes (no redirect), without TLS: no certificate for the name yet.
    HttpsWithoutTls,
}

impl Over {
    /// What the progress line and the failure add after the host.
    fn said(&self) -> &'static str {
        match self {
            Over::Http => "",
            Over::Tls { .. } => ", HTTPS",
            Over::HttpsWithoutTls => ", HTTPS without TLS: its certificate is not there yet",
        }
    }
}

/// `GET path` over TLS on `io` to a server that must present `leaf` (the certificate berth
/// serves for `host`).
async fn https_status<I>(
    io: I,
    leaf: CertificateDer<'static>,
    host: &str,
    path: &str,
) -> Result<u16, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = tls::pinned_client_config(leaf).map_err(|e| format!("TLS setup: {e}"))?;
    let name = tls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("server name {host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    supervisor::http_status_on(stream, host, path).await
}

/// `0.053` → `"5.3%"`.
pub(super) fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}
