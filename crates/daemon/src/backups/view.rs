//! What `berth backup list` and `berth status` show of backups: definitions and records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::BackupStatus;
use backup::{Manifest, Receipt};
use spec::{AppSpec, BackupSource, BackupSpec, BackupTarget, DatabaseEngine};
use store::BackupRow;

use crate::core::Core;
use crate::lock::lock;
use crate::refusal::Refusal;

impl Core {
    pub async fn backup_rows(&self, app: &str, name: Option<&str>) -> Vec<BackupRow> {
        let (a, n) = (app.to_owned(), name.map(str::to_owned));
        self.db
            .call(move |s| s.backups(&a, n.as_deref()))
            .await
            .unwrap_or_else(|err| {
                tracing::error!(app, error = %err, "read backups");
                Vec::new()
            })
    }

    /// `berth backup list`: the definitions of the serving release and every backup.
    pub async fn list_backups(&self, app: &str) -> Result<api::Backups, Refusal> {
        self.known_app(app).await?;
        let rows = self.backup_rows(app, None).await;
        Ok(api::Backups {
            app: app.to_owned(),
            definitions: self.backup_definitions(app, &rows).await,
            backups: rows.iter().map(|r| self.record(r)).collect(),
        })
    }

    /// The serving release's backup definitions and how each stands.
    pub async fn backup_definitions(
        &self,
        app: &str,
        rows: &[BackupRow],
    ) -> Vec<api::BackupDefinition> {
        let Some(spec) = self.with_running(app, |r| r.spec.clone()) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let mut out = Vec::new();
        for (name, bs) in &spec.backups {
            let mine: Vec<&BackupRow> = rows.iter().filter(|r| &r.name == name).collect();
            let last_ok = mine.iter().find(|r| r.status == BackupStatus::Ok);
            let last = mine.first();
            let stored = self
                .db
                .call({
                    let (a, n) = (app.to_owned(), name.clone());
                    move |s| s.backup_due(&a, &n)
                })
                .await
                .ok()
                .flatten();
            // What the scheduler will do: the stored time, or the schedule's next slot if
            // sooner (it has not looked at a new schedule yet).
            let next = backup::schedule::Schedule::parse(&bs.schedule)
                .ok()
                .and_then(|s| s.next_after(now));
            let due = match (stored, next) {
                (Some(s), Some(n)) => Some(s.min(n)),
                (s, n) => s.or(n),
            };
            let problem = lock(&self.backups.stats)
                .get(&(app.to_owned(), name.clone()))
                .and_then(|s| s.problem.clone());
            out.push(api::BackupDefinition {
                name: name.clone(),
                source: describe_source(&spec, bs),
                schedule: bs.schedule.clone(),
                next_run: due.map(supervisor::logs::format_time),
                to: match &bs.to {
                    BackupTarget::Default => self
                        .dir
                        .root()
                        .join("backups")
                        .join(app)
                        .display()
                        .to_string(),
                    BackupTarget::Local(p) => p.display().to_string(),
                    BackupTarget::S3 { bucket, prefix } if prefix.is_empty() => {
                        format!("s3://{bucket}")
                    }
                    BackupTarget::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
                },
                keep: format!(
                    "last {}, daily {}, weekly {}, monthly {}",
                    bs.keep.last, bs.keep.daily, bs.keep.weekly, bs.keep.monthly
                ),
                verify: bs.verify.as_str().to_owned(),
                last_success: last_ok.map(|r| supervisor::logs::format_time(r.started_at)),
                last_success_age_secs: last_ok
                    .and_then(|r| now.duration_since(r.started_at).ok())
                    .map(|d| d.as_secs()),
                last_drill: mine
                    .iter()
                    .filter_map(|r| receipt(r))
                    .max_by_key(|r| r.at)
                    .map(|r| drill_record(&r)),
                last_failure: match last {
                    Some(r) if r.status == BackupStatus::Failed => Some(format!(
                        "{} at {}: {}",
                        r.id,
                        r.stage.as_deref().unwrap_or("?"),
                        r.error.as_deref().unwrap_or("")
                    )),
                    _ => problem,
                },
                running: mine.iter().any(|r| r.status == BackupStatus::Running),
            });
        }
        out
    }

    /// A stored row as the API shows it.
    pub fn record(&self, r: &BackupRow) -> api::BackupRecord {
        let manifest: Option<Manifest> = r
            .manifest
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok());
        api::BackupRecord {
            id: r.id.clone(),
            name: r.name.clone(),
            trigger: r.trigger,
            status: r.status,
            started: supervisor::logs::format_time(r.started_at),
            took_ms: r
                .finished_at
                .and_then(|f| f.duration_since(r.started_at).ok())
                .map(|d| d.as_millis() as u64),
            size: manifest.as_ref().map(|m| m.stored_bytes),
            plain_size: manifest.as_ref().map(|m| m.plain_bytes),
            sha256: manifest.as_ref().map(|m| m.sha256.clone()),
            tables: manifest.as_ref().map_or(0, |m| m.tables.len() as u64),
            rows: manifest.as_ref().map_or(0, Manifest::rows),
            files: manifest.as_ref().and_then(|m| m.files),
            stage: r.stage.clone(),
            error: r.error.clone(),
            drill: receipt(r).map(|rc| drill_record(&rc)),
        }
    }
}

pub(super) fn describe_source(spec: &AppSpec, bs: &BackupSpec) -> String {
    match &bs.source {
        BackupSource::Database(db) => match spec.databases.get(db).map(|d| &d.engine) {
            Some(DatabaseEngine::Postgres { .. }) => format!("database {db} (postgres)"),
            Some(DatabaseEngine::Sqlite { path }) => format!("database {db} (sqlite {path})"),
            None => format!("database {db}"),
        },
        BackupSource::Dir(path) => format!("dir {path}"),
    }
}

pub(super) fn receipt(r: &BackupRow) -> Option<Receipt> {
    r.drill
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
}

pub(super) fn drill_record(r: &Receipt) -> api::DrillRecord {
    api::DrillRecord {
        at: supervisor::logs::format_time(UNIX_EPOCH + Duration::from_secs(r.at.max(0) as u64)),
        ok: r.ok,
        duration_ms: r.duration_ms,
        tables: r.tables,
        rows: r.rows,
        problem: r.problem.clone(),
    }
}
