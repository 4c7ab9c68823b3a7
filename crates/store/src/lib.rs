//! The daemon's durable state: one SQLite database (`state.db`, WAL) under the state directory.
//!
//! The store knows nothing about processes or the network; it records what the daemon decided
//! (apps, releases, which release is current, deploys, running instances, events) so that a
//! restart — even after `kill -9` — can reconcile to the last committed state.
//!
//! Every write is one transaction; the schema is versioned by `PRAGMA user_version` and the
//! numbered migrations in [`MIGRATIONS`] are applied in order at open.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

mod backups;
mod db;
mod maintenance;
mod migrations;
mod secrets;
mod standby;
pub use api::{
    BackupStatus, BackupTrigger, DeployKind, DeployResult, Gate, ReleaseStatus, SecretOrigin, Step,
};
pub use backups::BackupRow;
pub use db::Db;
pub use maintenance::Maintenance;
pub use migrations::MIGRATIONS;
pub use secrets::SecretMeta;
pub use standby::StandbyRecord;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("open state database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state database schema is version {found}, newer than this berth knows ({known}); upgrade berth"
    )]
    TooNew { found: i64, known: i64 },
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The blocking task that ran a call panicked or was cancelled (a bug, or shutdown).
    #[error("state database task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A release as recorded: an immutable tree under `apps/APP/releases/ID/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub app: String,
    pub id: String,
    pub created_at: SystemTime,
    /// sha256 of the uploaded source archive.
    pub digest: String,
    pub status: ReleaseStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub current_release: Option<String>,
    pub created_at: SystemTime,
}

/// One deploy or rollback, from start to result: a state machine persisted step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub id: i64,
    pub kind: DeployKind,
    pub app: String,
    /// The release being deployed or rolled back to.
    pub release: String,
    /// The release that was live when it began.
    pub from_release: Option<String>,
    pub user: String,
    pub started_at: SystemTime,
    /// When traffic was switched to its release (`None`: it never was, or the record is older
    /// than this field).
    pub switched_at: Option<SystemTime>,
    /// When the result was known (the old release may still be draining).
    pub finished_at: Option<SystemTime>,
    /// When the release it replaced had drained and stopped.
    pub drained_at: Option<SystemTime>,
    /// The step reached.
    pub step: Step,
    pub result: DeployResult,
    /// The gate that failed.
    pub gate: Option<Gate>,
    pub reason: Option<String>,
}

/// What a new deploy record starts with.
pub struct NewDeploy<'a> {
    pub kind: DeployKind,
    pub app: &'a str,
    pub release: &'a str,
    pub from_release: Option<&'a str>,
    pub user: &'a str,
}

/// An instance's process (the leader of its group) the daemon started; kept so the next
/// daemon can adopt it (same pid, start time and port) or sweep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRecord {
    pub app: String,
    pub service: String,
    pub release: String,
    pub instance: u32,
    pub pgid: i32,
    /// `/proc/PID/stat` start time in clock ticks after boot (0: unknown, never adopted).
    pub start_ticks: u64,
    /// The port it serves on (0: unknown).
    pub port: u16,
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating if needed) the database at `path` and apply pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|source| Error::Open {
            path: path.display().to_string(),
            source,
        })?;
        Store::init(conn)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed deploy survives power loss, not just a crash of the daemon.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrations::apply(&mut conn)?;
        Ok(Store { conn })
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    // ---- apps -------------------------------------------------------------------------------

    pub fn apps(&self) -> Result<Vec<App>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name, current_release, created_at FROM apps ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(App {
                name: r.get(0)?,
                current_release: r.get(1)?,
                created_at: from_millis(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn app(&self, name: &str) -> Result<Option<App>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, current_release, created_at FROM apps WHERE name = ?1",
                [name],
                |r| {
                    Ok(App {
                        name: r.get(0)?,
                        current_release: r.get(1)?,
                        created_at: from_millis(r.get(2)?),
                    })
                },
            )
            .optional()?)
    }

    // ---- releases ---------------------------------------------------------------------------

    /// Record a new release of `app` (creating the app on its first release) and return its id,
    /// `r1`, `r2`, … in order per app.
    pub fn create_release(&mut self, app: &str, digest: &str) -> Result<Release> {
        let tx = self.conn.transaction()?;
        let now = to_millis(SystemTime::now());
        tx.execute(
            "INSERT INTO apps (name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![app, now],
        )?;
        let seq: i64 = tx.query_row(
            "UPDATE apps SET release_seq = release_seq + 1 WHERE name = ?1 RETURNING release_seq",
            [app],
            |r| r.get(0),
        )?;
        let id = format!("r{seq}");
        tx.execute(
            "INSERT INTO releases (app, id, seq, created_at, digest, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![app, id, seq, now, digest, ReleaseStatus::Pending],
        )?;
        tx.commit()?;
        Ok(Release {
            app: app.to_owned(),
            id,
            created_at: from_millis(now),
            digest: digest.to_owned(),
            status: ReleaseStatus::Pending,
        })
    }

    pub fn set_release_status(&self, app: &str, id: &str, status: ReleaseStatus) -> Result<()> {
        self.conn.execute(
            "UPDATE releases SET status = ?3 WHERE app = ?1 AND id = ?2",
            params![app, id, status],
        )?;
        Ok(())
    }

    /// Make `id` the release that serves `app`. This is the commit point of a deploy.
    pub fn set_current(&mut self, app: &str, id: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE releases SET status = ?3 WHERE app = ?1 AND id = ?2",
            params![app, id, ReleaseStatus::Live],
        )?;
        tx.execute(
            "UPDATE apps SET current_release = ?2 WHERE name = ?1",
            params![app, id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `app` has no serving release any more.
    pub fn clear_current(&self, app: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE apps SET current_release = NULL WHERE name = ?1",
            [app],
        )?;
        Ok(())
    }

    /// Releases of `app`, newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<Release>> {
        let mut st = self.conn.prepare_cached(
            "SELECT app, id, created_at, digest, status FROM releases WHERE app = ?1 ORDER BY seq DESC",
        )?;
        let rows = st.query_map([app], |r| {
            Ok(Release {
                app: r.get(0)?,
                id: r.get(1)?,
                created_at: from_millis(r.get(2)?),
                digest: r.get(3)?,
                status: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- deploys ----------------------------------------------------------------------------

    pub fn begin_deploy(&self, d: &NewDeploy<'_>) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO deploys (kind, app, release, from_release, user, started_at, step, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                d.kind,
                d.app,
                d.release,
                d.from_release,
                d.user,
                to_millis(SystemTime::now()),
                Step::Start,
                DeployResult::Running,
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Record the step a running deploy has reached.
    pub fn set_deploy_step(&self, id: i64, step: Step) -> Result<()> {
        self.conn.execute(
            "UPDATE deploys SET step = ?2 WHERE id = ?1",
            params![id, step],
        )?;
        Ok(())
    }

    pub fn finish_deploy(
        &self,
        id: i64,
        result: DeployResult,
        gate: Option<Gate>,
        reason: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE deploys SET finished_at = ?2, result = ?3, gate = ?4, reason = ?5 WHERE id = ?1",
            params![id, to_millis(SystemTime::now()), result, gate, reason],
        )?;
        Ok(())
    }

    /// Traffic went to the release of deploy `id` now (its first canary step, or the switch:
    /// the first time is kept).
    pub fn set_switched(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE deploys SET switched_at = COALESCE(switched_at, ?2) WHERE id = ?1",
            params![id, to_millis(SystemTime::now())],
        )?;
        Ok(())
    }

    /// The release `id` replaced has drained and stopped: the rollout is done.
    pub fn set_drained(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE deploys SET drained_at = ?2, step = ?3 WHERE id = ?1",
            params![id, to_millis(SystemTime::now()), Step::Done],
        )?;
        Ok(())
    }

    /// Mark deploys that were running when the daemon stopped as interrupted, and releases that
    /// were being started (never switched to) as failed; returns how many deploys.
    pub fn interrupt_running_deploys(&mut self) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE deploys SET finished_at = ?1, result = ?2,
             reason = 'the daemon stopped during step ' || step || '; the last switched-to release serves'
             WHERE result = ?3",
            params![
                to_millis(SystemTime::now()),
                DeployResult::Interrupted,
                DeployResult::Running
            ],
        )?;
        tx.execute(
            "UPDATE releases SET status = ?1 WHERE status = ?2
             AND NOT EXISTS (SELECT 1 FROM apps WHERE apps.name = releases.app AND apps.current_release = releases.id)",
            params![ReleaseStatus::Failed, ReleaseStatus::Pending],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Deploys, newest first, optionally of one app.
    pub fn deploys(&self, app: Option<&str>, limit: u32) -> Result<Vec<Deploy>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, kind, app, release, from_release, user, started_at, finished_at, step, result, gate, reason, drained_at, switched_at
             FROM deploys WHERE ?1 IS NULL OR app = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![app, limit], |r| {
            Ok(Deploy {
                id: r.get(0)?,
                kind: r.get(1)?,
                app: r.get(2)?,
                release: r.get(3)?,
                from_release: r.get(4)?,
                user: r.get(5)?,
                started_at: from_millis(r.get(6)?),
                finished_at: r.get::<_, Option<i64>>(7)?.map(from_millis),
                step: r.get(8)?,
                result: r.get(9)?,
                gate: r.get(10)?,
                reason: r.get(11)?,
                drained_at: r.get::<_, Option<i64>>(12)?.map(from_millis),
                switched_at: r.get::<_, Option<i64>>(13)?.map(from_millis),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- process groups ---------------------------------------------------------------------

    pub fn record_process(&self, p: &ProcessRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO processes (app, service, release, instance, pgid, start_ticks, port)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(app, service, release, instance) DO UPDATE SET pgid = excluded.pgid,
               start_ticks = excluded.start_ticks, port = excluded.port",
            params![
                p.app,
                p.service,
                p.release,
                p.instance,
                p.pgid,
                p.start_ticks as i64,
                p.port
            ],
        )?;
        Ok(())
    }

    /// Forget the process group `pgid` of an instance, if it is still the one recorded (the
    /// same instance of the same release may have been started again since, e.g. by a rollback
    /// to a release that was still draining).
    pub fn forget_process(&self, p: &ProcessRecord) -> Result<()> {
        self.conn.execute(
            "DELETE FROM processes WHERE app = ?1 AND service = ?2 AND release = ?3 AND instance = ?4 AND pgid = ?5",
            params![p.app, p.service, p.release, p.instance, p.pgid],
        )?;
        Ok(())
    }

    /// Every recorded process. Read once at daemon start; each is then adopted (and recorded
    /// again as it is taken) or swept and forgotten. Nothing is forgotten by reading: a daemon
    /// killed while it adopts leaves the records for the next one.
    pub fn processes(&self) -> Result<Vec<ProcessRecord>> {
        let mut st = self.conn.prepare(
            "SELECT app, service, release, instance, pgid, start_ticks, port FROM processes",
        )?;
        let list = st
            .query_map([], |r| {
                Ok(ProcessRecord {
                    app: r.get(0)?,
                    service: r.get(1)?,
                    release: r.get(2)?,
                    instance: r.get(3)?,
                    pgid: r.get(4)?,
                    start_ticks: r.get::<_, i64>(5)?.max(0) as u64,
                    port: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(list)
    }

    /// A short job's process group (a build, a hook): swept at the next start if the daemon
    /// dies before [`Store::forget_job`].
    pub fn record_job(&self, pgid: i32, app: &str, what: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO jobs (pgid, app, what, started_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(pgid) DO UPDATE SET app = excluded.app, what = excluded.what, started_at = excluded.started_at",
            params![pgid, app, what, to_millis(SystemTime::now())],
        )?;
        Ok(())
    }

    pub fn forget_job(&self, pgid: i32) -> Result<()> {
        self.conn
            .execute("DELETE FROM jobs WHERE pgid = ?1", [pgid])?;
        Ok(())
    }

    /// Every recorded job's process group (pgid, app, what), and forget them all: used once at
    /// daemon start.
    pub fn take_jobs(&mut self) -> Result<Vec<(i32, String, String)>> {
        let tx = self.conn.transaction()?;
        let list = {
            let mut st = tx.prepare("SELECT pgid, app, what FROM jobs")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.execute("DELETE FROM jobs", [])?;
        tx.commit()?;
        Ok(list)
    }

    // ---- events -----------------------------------------------------------------------------

    /// Append to the event log (restarts, crash loops, deploy phases). `detail` must never hold
    /// a secret value.
    pub fn record_event(&self, app: &str, kind: &str, detail: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO events (at, app, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![to_millis(SystemTime::now()), app, kind, detail],
        )?;
        Ok(())
    }

    pub fn events(
        &self,
        app: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(SystemTime, String, String, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT at, app, kind, detail FROM events WHERE ?1 IS NULL OR app = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![app, limit], |r| {
            Ok((from_millis(r.get(0)?), r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn to_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests;
