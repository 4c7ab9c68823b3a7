//! Where a backup, drill or restore reports as it goes: the NDJSON stream of a `berth backup`
//! command, redacted, or nothing for a scheduled run.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Where a run reports: the NDJSON stream of a `berth backup …` command, or nothing for a
/// scheduled run. Lines are redacted.
#[derive(Clone)]
pub(crate) struct Events {
    tx: Option<mpsc::Sender<Bytes>>,
    redactor: Option<Arc<arc_swap::ArcSwap<secrets::Redactor>>>,
}

impl Events {
    pub fn none() -> Events {
        Events {
            tx: None,
            redactor: None,
        }
    }

    pub fn to(
        tx: mpsc::Sender<Bytes>,
        redactor: Arc<arc_swap::ArcSwap<secrets::Redactor>>,
    ) -> Events {
        Events {
            tx: Some(tx),
            redactor: Some(redactor),
        }
    }

    /// One NDJSON line, redacted.
    fn line(&self, event: &api::BackupEvent) -> Bytes {
        let mut line = serde_json::to_string(event).unwrap_or_default();
        if let Some(r) = &self.redactor {
            line = r.load().redact(&line).into_owned();
        }
        line.push('\n');
        Bytes::from(line)
    }

    fn send(&self, event: &api::BackupEvent) {
        // Progress is best effort: a slow reader loses lines, never stalls the backup.
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(self.line(event));
        }
    }

    pub fn step(&self, detail: impl Into<String>) {
        self.send(&api::BackupEvent::Step {
            detail: detail.into(),
        });
    }

    pub(super) fn progress(&self) -> backup::Progress {
        let this = self.clone();
        Arc::new(move |bytes| this.send(&api::BackupEvent::Progress { bytes }))
    }

    pub async fn done(
        &self,
        ok: bool,
        backup: Option<api::BackupRecord>,
        error: Option<String>,
        hint: Option<String>,
    ) {
        let Some(tx) = &self.tx else { return };
        let event = api::BackupEvent::Done {
            ok,
            backup: backup.map(Box::new),
            error,
            hint,
        };
        let _ = tx.send(self.line(&event)).await;
    }
}
