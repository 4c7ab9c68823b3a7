//! Backups as the daemon records them: one row per attempt, from `running` to `ok` or `failed`
//! (and `deleted` once retention removed it), with the manifest and the newest drill's
//! receipt kept as JSON; and when each backup definition is due next.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use crate::{BackupStatus, BackupTrigger, Result, Store, from_millis, to_millis};

/// One backup attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRow {
    pub app: String,
    pub id: String,
    pub name: String,
    pub trigger: BackupTrigger,
    pub status: BackupStatus,
    pub started_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    /// A failure: the stage, and why.
    pub stage: Option<String>,
    pub error: Option<String>,
    /// The manifest (JSON) of a successful backup.
    pub manifest: Option<String>,
    /// The newest drill's receipt (JSON).
    pub drill: Option<String>,
}

const COLUMNS: &str =
    "app, id, name, trigger, status, started_at, finished_at, stage, error, manifest, drill";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupRow> {
    Ok(BackupRow {
        app: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        trigger: r.get(3)?,
        status: r.get(4)?,
        started_at: from_millis(r.get(5)?),
        finished_at: r.get::<_, Option<i64>>(6)?.map(from_millis),
        stage: r.get(7)?,
        error: r.get(8)?,
        manifest: r.get(9)?,
        drill: r.get(10)?,
    })
}

impl Store {
    pub fn begin_backup(
        &self,
        app: &str,
        name: &str,
        id: &str,
        trigger: BackupTrigger,
        at: SystemTime,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO backups (app, id, name, trigger, status, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![app, id, name, trigger, BackupStatus::Running, to_millis(at)],
        )?;
        Ok(())
    }

    /// Records a backup as `ok` with its manifest.
    pub fn backup_succeeded(&self, app: &str, id: &str, manifest: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET status = ?3, finished_at = ?4, manifest = ?5 WHERE app = ?1 AND id = ?2",
            params![app, id, BackupStatus::Ok, to_millis(SystemTime::now()), manifest],
        )?;
        Ok(())
    }

    /// Records a backup as `failed` at `stage`.
    pub fn backup_failed(&self, app: &str, id: &str, stage: &str, error: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET status = ?3, finished_at = ?4, stage = ?5, error = ?6
             WHERE app = ?1 AND id = ?2",
            params![
                app,
                id,
                BackupStatus::Failed,
                to_millis(SystemTime::now()),
                stage,
                error
            ],
        )?;
        Ok(())
    }

    pub fn backup_deleted(&self, app: &str, id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET status = ?3 WHERE app = ?1 AND id = ?2",
            params![app, id, BackupStatus::Deleted],
        )?;
        Ok(())
    }

    pub fn record_drill(&self, app: &str, id: &str, receipt: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET drill = ?3 WHERE app = ?1 AND id = ?2",
            params![app, id, receipt],
        )?;
        Ok(())
    }

    /// The backups of `app` (of `name` only, if given), newest first.
    pub fn backups(&self, app: &str, name: Option<&str>) -> Result<Vec<BackupRow>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM backups WHERE app = ?1 AND (?2 IS NULL OR name = ?2)
             ORDER BY started_at DESC, id DESC"
        ))?;
        let rows = st.query_map(params![app, name], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn backup(&self, app: &str, id: &str) -> Result<Option<BackupRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM backups WHERE app = ?1 AND id = ?2"),
                params![app, id],
                row,
            )
            .optional()?)
    }

    /// Backups a stopped daemon left `running` become `failed`; returns them. Used once at
    /// daemon start.
    pub fn interrupt_running_backups(&mut self) -> Result<Vec<BackupRow>> {
        let tx = self.conn.transaction()?;
        let list = {
            let mut st = tx.prepare(&format!("SELECT {COLUMNS} FROM backups WHERE status = ?1"))?;
            st.query_map([BackupStatus::Running], row)?
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE backups SET status = ?1, finished_at = ?2, stage = 'interrupted',
             error = 'the daemon stopped while it ran' WHERE status = ?3",
            params![
                BackupStatus::Failed,
                to_millis(SystemTime::now()),
                BackupStatus::Running
            ],
        )?;
        tx.commit()?;
        Ok(list)
    }

    /// When `name` of `app` is due next, if known.
    pub fn backup_due(&self, app: &str, name: &str) -> Result<Option<SystemTime>> {
        Ok(self
            .conn
            .query_row(
                "SELECT next_due FROM backup_schedules WHERE app = ?1 AND name = ?2",
                params![app, name],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(from_millis))
    }

    pub fn set_backup_due(&self, app: &str, name: &str, at: SystemTime) -> Result<()> {
        self.conn.execute(
            "INSERT INTO backup_schedules (app, name, next_due) VALUES (?1, ?2, ?3)
             ON CONFLICT(app, name) DO UPDATE SET next_due = excluded.next_due",
            params![app, name, to_millis(at)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_from_running_to_ok_and_interrupted_ones_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("state.db")).unwrap();
        let t = SystemTime::now();
        s.begin_backup("shop", "nightly", "b1", BackupTrigger::Manual, t)
            .unwrap();
        s.begin_backup("shop", "nightly", "b2", BackupTrigger::Schedule, t)
            .unwrap();
        s.backup_succeeded("shop", "b1", "{}").unwrap();
        s.record_drill("shop", "b1", "{\"ok\":true}").unwrap();
        let interrupted = s.interrupt_running_backups().unwrap();
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].id, "b2");
        let b2 = s.backup("shop", "b2").unwrap().unwrap();
        assert_eq!(b2.status, BackupStatus::Failed);
        assert_eq!(b2.stage.as_deref(), Some("interrupted"));
        let b1 = s.backup("shop", "b1").unwrap().unwrap();
        assert_eq!(
            (b1.status, b1.drill.as_deref()),
            (BackupStatus::Ok, Some("{\"ok\":true}"))
        );
        assert_eq!(s.backups("shop", Some("nightly")).unwrap().len(), 2);
        assert!(s.backups("shop", Some("other")).unwrap().is_empty());

        assert_eq!(s.backup_due("shop", "nightly").unwrap(), None);
        s.set_backup_due("shop", "nightly", t).unwrap();
        s.set_backup_due("shop", "nightly", t).unwrap();
        assert!(s.backup_due("shop", "nightly").unwrap().is_some());
    }
}
