//! A rollout in progress, and what it tells the client that asked for it: NDJSON
//! [`DeployEvent`] lines, ending with a [`DeployOutcome`]. Every text that could carry app
//! output or a secret goes through the redactor on its way out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use api::{DeployEvent, DeployKind, DeployOutcome, Phase};
use arc_swap::ArcSwap;
use bytes::Bytes;
use spec::AppSpec;
use tokio::sync::mpsc;

use crate::failure::Failure;

/// Deploy progress lines buffered for a slow client before build output is dropped.
pub(crate) const EVENT_BUFFER: usize = 256;

/// One rollout in progress: its deploy record, its release, and its client.
pub(crate) struct Rollout<'a> {
    /// The `deploys` row.
    pub id: i64,
    pub kind: DeployKind,
    pub app: String,
    pub release: String,
    pub spec: Arc<AppSpec>,
    pub dir: PathBuf,
    pub progress: &'a Progress,
}

/// Progress of one rollout, to the client that asked for it.
pub(crate) struct Progress {
    tx: mpsc::Sender<Bytes>,
    redactor: Arc<ArcSwap<secrets::Redactor>>,
}

impl Progress {
    pub fn new(tx: mpsc::Sender<Bytes>, redactor: Arc<ArcSwap<secrets::Redactor>>) -> Progress {
        Progress { tx, redactor }
    }

    fn redact(&self, text: &str) -> String {
        self.redactor.load().redact(text).into_owned()
    }

    fn line(event: &DeployEvent) -> Bytes {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// A slow or gone client must not stall the rollout: a line that does not fit is dropped.
    fn send(&self, event: &DeployEvent) {
        let _ = self.tx.try_send(Self::line(event));
    }

    pub fn phase(&self, phase: Phase, detail: impl AsRef<str>) {
        self.send(&DeployEvent::Phase {
            phase,
            detail: self.redact(detail.as_ref()),
        });
    }

    /// A line of build output.
    pub fn build(&self, line: &str) {
        self.send(&DeployEvent::Build {
            line: self.redact(line),
        });
    }

    pub fn ready(&self, service: &str, instance: u32, port: u16) {
        self.send(&DeployEvent::Ready {
            service: service.to_owned(),
            instance,
            port,
        });
    }

    /// The last line: how it ended. Waits for room rather than drop it.
    pub async fn finish(
        self,
        app: String,
        release: String,
        result: Result<(), Failure>,
        started: Instant,
    ) {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let outcome = match result {
            Ok(()) => DeployOutcome {
                ok: true,
                app,
                release,
                gate: None,
                reason: None,
                hint: None,
                log_tail: vec![],
                elapsed_ms,
            },
            Err(f) => DeployOutcome {
                ok: false,
                app,
                release,
                gate: Some(f.gate),
                reason: Some(self.redact(&f.reason)),
                hint: f.hint.as_deref().map(|h| self.redact(h)),
                log_tail: f.tail.iter().map(|l| self.redact(l)).collect(),
                elapsed_ms,
            },
        };
        let _ = self.tx.send(Self::line(&DeployEvent::Done(outcome))).await;
    }
}
