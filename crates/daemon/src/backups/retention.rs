//! Retention after a successful backup: what `keep` no longer keeps is deleted (manifest
//! first), then whatever no manifest describes is swept.

use std::time::UNIX_EPOCH;

use api::BackupStatus;
use backup::Manifest;
use store::BackupRow;

use super::{Events, Planned, receipt};
use crate::core::Core;

impl Core {
    /// Deletes what `keep` no longer keeps, among the definition's successful backups. Runs
    /// only after a successful backup.
    pub(super) async fn retention(&self, planned: &Planned, events: &Events) -> Result<(), String> {
        let rows = self.backup_rows(&planned.app, Some(&planned.name)).await;
        let ok: Vec<(&BackupRow, Manifest)> = rows
            .iter()
            .filter(|r| r.status == BackupStatus::Ok)
            .filter_map(|r| Some((r, serde_json::from_str(r.manifest.as_deref()?).ok()?)))
            .collect();
        let kept: Vec<backup::retention::Kept> = ok
            .iter()
            .map(|(r, _)| backup::retention::Kept {
                id: &r.id,
                at_ms: r
                    .started_at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                verified: receipt(r).is_some_and(|rc| rc.ok),
            })
            .collect();
        let keep = backup::retention::Keep {
            last: planned.spec.keep.last,
            daily: planned.spec.keep.daily,
            weekly: planned.spec.keep.weekly,
            monthly: planned.spec.keep.monthly,
        };
        let doomed = backup::retention::to_delete(&kept, keep);
        let mut failed = Vec::new();
        for id in doomed {
            let Some((_, manifest)) = ok.iter().find(|(r, _)| r.id == id) else {
                continue;
            };
            match backup::delete(&planned.job.storage, manifest).await {
                Ok(()) => {
                    let (a, i) = (planned.app.clone(), id.clone());
                    if let Err(err) = self.db.call(move |s| s.backup_deleted(&a, &i)).await {
                        failed.push(format!("{id}: deleted, but not recorded: {err}"));
                    }
                    let detail = format!(
                        "{} {id} deleted: the keep policy no longer keeps it",
                        planned.name
                    );
                    events.step(format!("retention: {detail}"));
                    self.record_event(&planned.app, "retention", detail).await;
                }
                Err(f) => {
                    let why = self.redact(&f.message);
                    self.record_event(
                        &planned.app,
                        "retention-failed",
                        format!("{} {id}: {why}", planned.name),
                    )
                    .await;
                    failed.push(format!("{id}: {why}"));
                }
            }
        }
        match backup::sweep(&planned.job.storage, &planned.name).await {
            Ok(removed) if !removed.is_empty() => {
                let detail = format!(
                    "{}: removed what no manifest describes: {}",
                    planned.name,
                    removed.join(", ")
                );
                events.step(format!("retention: {detail}"));
                self.record_event(&planned.app, "retention", detail).await;
            }
            Ok(_) => {}
            Err(f) => failed.push(self.redact(&f.to_string())),
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}
