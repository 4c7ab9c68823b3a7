//! `berth backup restore` and `berth backup verify`.
//!
//! A restore: the backup is checked (sha256, size, key) before anything is touched; a safety
//! backup of what it replaces is made and must succeed; the app's services are stopped while
//! the proxy answers 503 with `Retry-After` on their routes; the data is restored; the
//! services start again through the readiness gate. A failed restore restores the safety
//! backup and says so.

use std::time::{Duration, SystemTime};

use age::x25519::Identity;
use api::{BackupStatus, BackupTrigger};
use backup::{Keys, Manifest};
use store::BackupRow;

use super::{Events, Planned};
use crate::core::Core;
use crate::maintenance::RETRY_AFTER as MAINTENANCE_RETRY_AFTER;
use crate::refusal::Refusal;
use crate::release::all_slots;

impl Core {
    /// The backup `id` of the definition (the newest successful one when absent).
    async fn chosen(
        &self,
        planned: &Planned,
        id: Option<&str>,
    ) -> Result<(BackupRow, Manifest), Refusal> {
        let rows = self.backup_rows(&planned.app, Some(&planned.name)).await;
        let row = match id {
            Some(id) => rows.into_iter().find(|r| r.id == id).ok_or_else(|| {
                Refusal::not_found(format!(
                    "{} has no backup {id} of {}",
                    planned.app, planned.name
                ))
                .hint(format!("`berth backup list {}` lists them", planned.app))
            })?,
            None => rows
                .into_iter()
                .find(|r| r.status == BackupStatus::Ok)
                .ok_or_else(|| {
                    Refusal::not_found(format!(
                        "{} has no successful backup of {} yet",
                        planned.app, planned.name
                    ))
                    .hint(format!(
                        "make one: berth backup run {} {}",
                        planned.app, planned.name
                    ))
                })?,
        };
        if row.status != BackupStatus::Ok {
            return Err(Refusal::bad_input(format!(
                "backup {} of {} is {}, not restorable",
                row.id, planned.app, row.status
            )));
        }
        let manifest = row
            .manifest
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .ok_or_else(|| {
                Refusal::from(anyhow::anyhow!(
                    "backup {} has no readable manifest",
                    row.id
                ))
            })?;
        Ok((row, manifest))
    }

    /// What a verify or a restore works on: the definition, the backup chosen, its manifest,
    /// and the key that opens it.
    async fn opened(
        &self,
        app: &str,
        q: &api::BackupQuery,
        identity: Option<&str>,
    ) -> Result<(Planned, BackupRow, Manifest, Identity), Refusal> {
        let planned = self.plan_backup(app, q.name.as_deref())?;
        let (row, manifest) = self.chosen(&planned, q.id.as_deref()).await?;
        let identity = self.identity(identity)?;
        Ok((planned, row, manifest, identity))
    }

    /// The identity given with the request, or the one on this server.
    pub(super) fn identity(&self, given: Option<&str>) -> Result<Identity, Refusal> {
        match given {
            Some(text) => backup::import_identity(text).map_err(Refusal::bad_input),
            None => Keys::load_or_create(self.dir.root())
                .map_err(|e| Refusal::from(anyhow::anyhow!("the backup key: {e}")))?
                .identity()
                .cloned()
                .map_err(Refusal::bad_input),
        }
    }

    /// `berth backup verify`: a restore drill of one backup now.
    pub async fn verify_backup(
        &self,
        app: &str,
        q: &api::BackupQuery,
        identity: Option<&str>,
        events: &Events,
    ) -> Result<api::BackupRecord, Refusal> {
        let (planned, row, manifest, identity) = self.opened(app, q, identity).await?;
        events.step(format!(
            "restore drill of {} {} ({} stored, {} rows)",
            planned.name,
            row.id,
            api::human_bytes(manifest.stored_bytes),
            manifest.rows()
        ));
        self.drill(&planned, &manifest, Some(identity), events)
            .await;
        let row = self
            .db
            .call({
                let (a, i) = (app.to_owned(), row.id.clone());
                move |s| s.backup(&a, &i)
            })
            .await
            .map_err(anyhow::Error::from)?
            .unwrap_or(row);
        Ok(self.record(&row))
    }

    /// `berth backup restore --dry-run`: the backup chosen and the steps.
    pub async fn restore_plan(
        &self,
        app: &str,
        q: &api::BackupQuery,
    ) -> Result<api::RestorePlan, Refusal> {
        let planned = self.plan_backup(app, q.name.as_deref())?;
        let (row, manifest) = self.chosen(&planned, q.id.as_deref()).await?;
        let services: Vec<String> = self
            .with_running(app, |r| r.spec.services.keys().cloned().collect())
            .unwrap_or_default();
        let age = SystemTime::now()
            .duration_since(row.started_at)
            .unwrap_or_default();
        Ok(api::RestorePlan {
            app: app.to_owned(),
            backup: self.record(&row),
            age_secs: age.as_secs(),
            steps: vec![
                format!(
                    "check {} ({} stored, sha256 {}) and the key, before touching anything",
                    manifest.object,
                    api::human_bytes(manifest.stored_bytes),
                    &manifest.sha256[..12.min(manifest.sha256.len())]
                ),
                format!("take a safety backup of {} (it must succeed)", planned.what),
                format!(
                    "answer 503 with Retry-After: {MAINTENANCE_RETRY_AFTER} on {app}'s service routes; stop {}",
                    services.join(", ")
                ),
                format!(
                    "restore {} into {} ({} tables, {} rows{})",
                    row.id,
                    planned.what,
                    manifest.tables.len(),
                    manifest.rows(),
                    manifest
                        .files
                        .map(|f| format!(", {f} files"))
                        .unwrap_or_default()
                ),
                "compare the restored row counts with the backup's".to_owned(),
                "start the services through the readiness gate, then serve again".to_owned(),
                "if the restore fails: restore the safety backup, and say so".to_owned(),
            ],
        })
    }

    /// `berth backup restore`.
    pub async fn restore_backup(
        &self,
        app: &str,
        q: &api::BackupQuery,
        identity: Option<&str>,
        events: &Events,
    ) -> Result<api::BackupRecord, Refusal> {
        let (planned, row, manifest, identity) = self.opened(app, q, identity).await?;
        let lock = self.backup_lock(app, &planned.name);
        let Ok(_backup) = lock.try_lock() else {
            return Err(Refusal::bad_input(format!(
                "backup {} of {app} is running; restore once it is done",
                planned.name
            )));
        };
        let slot = self.apps().entry(app.to_owned()).or_default().slot.clone();
        let Ok(_rollout) = slot.try_lock() else {
            return Err(Refusal::bad_input(format!(
                "a deploy of {app} is running; restore once it is done"
            )));
        };

        // 1. Nothing is touched for a backup that cannot be restored.
        events.step(format!(
            "checking {} {}: sha256, size and key",
            planned.name, row.id
        ));
        backup::check(&planned.job.storage, &manifest, &identity)
            .await
            .map_err(|f| {
                Refusal::bad_input(format!(
                    "backup {} cannot be restored: {}",
                    row.id,
                    self.redact(&f.to_string())
                ))
                .hint("nothing was changed; `berth backup list` shows the other backups")
            })?;

        // 2. A safety backup of what is about to be replaced; no restore without one.
        events.step(format!("safety backup of {}", planned.what));
        let (safety_row, safety) = self
            .backup_locked(&planned, BackupTrigger::Safety, events)
            .await?;
        let Some(safety) = safety else {
            return Err(Refusal::from(anyhow::anyhow!(
                "the safety backup failed at {}: {}; nothing was restored",
                safety_row.stage.as_deref().unwrap_or("?"),
                safety_row.error.as_deref().unwrap_or("")
            )));
        };
        events.step(format!(
            "safety backup {} ok ({} stored)",
            safety.id,
            api::human_bytes(safety.stored_bytes)
        ));

        // 3. Services stopped behind a maintenance answer, data restored, services started.
        self.set_maintenance(
            app,
            Some(format!("restoring backup {} of {}", row.id, planned.name)),
        );
        let members = self
            .apps()
            .get_mut(app)
            .and_then(|a| a.running.as_mut())
            .map(|r| std::mem::take(&mut r.members))
            .unwrap_or_default();
        self.publish_routes();
        events.step(format!(
            "{app} answers 503 (maintenance); stopping {} instances",
            members.len()
        ));
        self.stop_members(members).await;

        let t0 = std::time::Instant::now();
        events.step(format!("restoring {} into {}", row.id, planned.what));
        let restored = backup::restore(&planned.job, &manifest, &identity).await;
        super::release_memory();
        let outcome = match restored {
            Ok(()) => {
                let detail = format!(
                    "{} {} restored into {} in {:.1}s ({} rows); safety backup {}",
                    planned.name,
                    row.id,
                    planned.what,
                    t0.elapsed().as_secs_f64(),
                    manifest.rows(),
                    safety.id
                );
                events.step(detail.clone());
                self.record_event(app, "restore", detail).await;
                Ok(())
            }
            Err(f) => {
                let why = self.redact(&f.to_string());
                events.step(format!(
                    "restore failed: {why}; restoring the safety backup {}",
                    safety.id
                ));
                let back = backup::restore(&planned.job, &safety, &identity).await;
                let detail = match &back {
                    Ok(()) => format!(
                        "{} {} FAILED ({why}); the safety backup {} was restored: the data is as before",
                        planned.name, row.id, safety.id
                    ),
                    Err(f2) => format!(
                        "{} {} FAILED ({why}); restoring the safety backup {} FAILED too ({}): restore it by hand with `berth backup restore {app} {}`",
                        planned.name,
                        row.id,
                        safety.id,
                        self.redact(&f2.to_string()),
                        safety.id
                    ),
                };
                self.record_event(app, "restore-failed", detail.clone())
                    .await;
                Err(detail)
            }
        };

        events.step(format!("starting {app}'s services"));
        let started = self.start_again(app).await;
        self.set_maintenance(app, None);
        self.publish_routes();
        match (outcome, started) {
            (Ok(()), Ok(())) => {
                events.step(format!("{app} serves again"));
                Ok(self.record(&row))
            }
            (Ok(()), Err(e)) => Err(Refusal::from(anyhow::anyhow!(
                "{} was restored, but {app}'s services did not pass readiness: {e}",
                row.id
            ))),
            (Err(detail), _) => Err(Refusal::from(anyhow::anyhow!("{detail}"))),
        }
    }

    fn set_maintenance(&self, app: &str, why: Option<String>) {
        if let Some(a) = self.apps().get_mut(app) {
            a.restoring = why;
        }
    }

    /// Starts every instance of the serving release again and waits for readiness.
    async fn start_again(&self, app: &str) -> Result<(), String> {
        let Some(fresh) = self.with_running(app, |r| r.like()) else {
            return Err(format!("{app} has no serving release"));
        };
        let members = self.start_members(&fresh, &all_slots(&fresh.spec));
        let waits = members.iter().map(|m| async move {
            tokio::time::timeout(Duration::from_secs(300), m.instance.wait_ready())
                .await
                .map_err(|_| format!("{} instance {}: not ready after 300s", m.service, m.index))?
                .map_err(|e| format!("{} instance {}: {}", m.service, m.index, e.kind))
        });
        let results = futures_util::future::join_all(waits).await;
        if let Some(a) = self.apps().get_mut(app).and_then(|a| a.running.as_mut()) {
            a.members = members;
        }
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
