//! The checks a new release must pass: every instance ready (the start gate, before the
//! switch), smoke checks through the proxy and the watch window (after it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{Gate, Phase};
use spec::DeploySpec;
use supervisor::EventKind;
use tokio::sync::broadcast::error::RecvError;

use super::progress::Rollout;
use crate::core::Core;
use crate::failure::Failure;
use crate::release::Member;

/// A smoke check must answer within this time.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the watch window looks at the new release's error rate.
const ERROR_RATE_TICK: Duration = Duration::from_millis(250);

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

    /// Smoke checks through the proxy, as a client would see them: over HTTPS when the app's
    /// host is served there (plain HTTP would only answer the redirect).
    pub(super) async fn smoke(
        &self,
        r: &Rollout<'_>,
        checks: &[(String, u16)],
    ) -> Result<(), Failure> {
        let host = r
            .spec
            .routes
            .iter()
            .map(|route| route.host.as_str())
            .find(|h| !h.contains('*'))
            .unwrap_or("localhost");
        let https = match (self.addrs.https, &r.spec.tls) {
            (Some(addr), Some(_)) => self
                .certs
                .store
                .lookup(host)
                .map(|key| (loopback(addr), key.cert[0].clone())),
            _ => None,
        };
        let over = if https.is_some() { ", HTTPS" } else { "" };
        for (path, want) in checks {
            let probe = async {
                match &https {
                    Some((addr, leaf)) => https_status(*addr, leaf.clone(), host, path).await,
                    None => supervisor::http_status(loopback(self.addrs.http), host, path).await,
                }
            };
            let problem = match tokio::time::timeout(SMOKE_TIMEOUT, probe).await {
                Ok(Ok(status)) if status == *want => {
                    r.progress
                        .phase(Phase::Smoke, format!("GET {path}{over} answered {status}"));
                    continue;
                }
                Ok(Ok(status)) => format!("answered {status}, expected {want}"),
                Ok(Err(err)) => err,
                Err(_) => format!("no answer within {}s", SMOKE_TIMEOUT.as_secs()),
            };
            return Err(Failure::new(
                Gate::Smoke,
                format!(
                    "smoke check: GET {path} (Host: {host}{over}) on {} {}: {problem}",
                    r.app, r.release
                ),
            )
            .hint(format!("see `berth logs {}`", r.app))
            .tail(self.log_tail(&r.app, &r.release).await));
        }
        Ok(())
    }

    /// The watch window: any instance of the new release exiting within `window`, or the
    /// release answering more than `max_error_rate` of its requests with 5xx (judged once it
    /// has answered enough of them), fails it.
    pub(super) async fn watch(
        &self,
        r: &Rollout<'_>,
        window: Duration,
        max_error_rate: f64,
    ) -> Result<(), Failure> {
        r.progress.phase(
            Phase::Watch,
            format!(
                "{}s for crashes of {} and 5xx above {}",
                window.as_secs(),
                r.release,
                percent(max_error_rate)
            ),
        );
        let mut events = self.supervisor.events();
        let deadline = tokio::time::sleep(window);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(ERROR_RATE_TICK);
        loop {
            let event = tokio::select! {
                () = &mut deadline => break,
                _ = tick.tick() => {
                    self.judge_error_rate(r, max_error_rate).await?;
                    continue;
                }
                ev = events.recv() => match ev {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
            };
            if event.key.app != r.app || event.key.release != r.release {
                continue;
            }
            if let EventKind::Exited(exit) = event.kind {
                return Err(Failure::new(
                    Gate::Watch,
                    format!(
                        "watch window: service {} instance {} of {} {} exited ({exit})",
                        event.key.service, event.key.instance, r.app, r.release
                    ),
                )
                .hint(format!("see `berth logs {} {}`", r.app, event.key.service))
                .tail(self.log_tail(&r.app, &r.release).await));
            }
        }
        self.judge_error_rate(r, max_error_rate).await
    }

    /// The share of 5xx among the new release's answers so far (the proxy counts them per
    /// instance from the moment the instance joined the table).
    async fn judge_error_rate(&self, r: &Rollout<'_>, max: f64) -> Result<(), Failure> {
        let outcomes: Vec<(String, u32, u64, u64)> = match self.with_running(&r.app, |live| {
            (live.id == r.release).then(|| {
                live.members
                    .iter()
                    .map(|m| {
                        let (answered, errors) = m.upstream.outcomes();
                        (m.service.clone(), m.index, answered, errors)
                    })
                    .collect()
            })
        }) {
            Some(Some(outcomes)) => outcomes,
            _ => return Ok(()),
        };
        let answered: u64 = outcomes.iter().map(|o| o.2).sum();
        let errors: u64 = outcomes.iter().map(|o| o.3).sum();
        if answered < DeploySpec::ERROR_RATE_MIN_REQUESTS
            || (errors as f64) <= max * answered as f64
        {
            return Ok(());
        }
        let worst = outcomes
            .iter()
            .max_by_key(|o| o.3)
            .map(|(service, index, a, e)| {
                format!("; most from service {service} instance {index} ({e} of {a})")
            })
            .unwrap_or_default();
        Err(Failure::new(
            Gate::Watch,
            format!(
                "watch window: {errors} of {answered} requests to {} {} answered 5xx ({}), above max_error_rate {}{worst}",
                r.app,
                r.release,
                percent(errors as f64 / answered as f64),
                percent(max)
            ),
        )
        .hint(format!(
            "see `berth logs {}`; raise [deploy] max_error_rate if this rate is normal for the app",
            r.app
        ))
        .tail(self.log_tail(&r.app, &r.release).await))
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

/// The proxy's address as a local client reaches it (0.0.0.0 → 127.0.0.1).
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// `GET path` over TLS to berth's own HTTPS listener, which must present `leaf` (the
/// certificate berth serves for `host`).
async fn https_status(
    addr: SocketAddr,
    leaf: tls::rustls::pki_types::CertificateDer<'static>,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let config = tls::pinned_client_config(leaf).map_err(|e| format!("TLS setup: {e}"))?;
    let name = tls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("server name {host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
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
