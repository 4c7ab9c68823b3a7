//! The warm standby of each app (`[deploy] standby`), so that a restart or an upgrade of the
//! daemon adopts its instances and keeps it for the rest of its time. One row per app; a row
//! is only honoured while its release still has recorded processes and is not the current one
//! (a rollback took it, or it drained and stopped), so nothing needs to clear it.

use std::time::{Duration, SystemTime};

use rusqlite::params;

use crate::{Result, Store, from_millis, to_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyRecord {
    pub app: String,
    pub release: String,
    /// When it drains and stops.
    pub until: SystemTime,
    /// The `deploys` row that replaced it.
    pub deploy: i64,
    /// The drain grace of the release that replaced it.
    pub grace: Duration,
    /// `[deploy] keep_releases` of the release that replaced it (pruning after the drain).
    pub keep_releases: u32,
}

impl Store {
    pub fn set_standby(&mut self, s: &StandbyRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO standbys (app, release, until, deploy, grace_ms, keep_releases)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (app) DO UPDATE SET release = excluded.release, until = excluded.until,
               deploy = excluded.deploy, grace_ms = excluded.grace_ms,
               keep_releases = excluded.keep_releases",
            params![
                s.app,
                s.release,
                to_millis(s.until),
                s.deploy,
                s.grace.as_millis() as i64,
                s.keep_releases
            ],
        )?;
        Ok(())
    }

    /// Every app's last standby, by app.
    pub fn standbys(&self) -> Result<Vec<StandbyRecord>> {
        let mut stmt = self.conn.prepare(
            "SELECT app, release, until, deploy, grace_ms, keep_releases FROM standbys ORDER BY app",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StandbyRecord {
                app: r.get(0)?,
                release: r.get(1)?,
                until: from_millis(r.get(2)?),
                deploy: r.get(3)?,
                grace: Duration::from_millis(r.get::<_, i64>(4)?.max(0) as u64),
                keep_releases: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_standby_of_each_app_is_kept() {
        let mut s = Store::open_in_memory().unwrap();
        // One time for every record: the expected one is made after the stored ones.
        let until = from_millis(to_millis(SystemTime::now()));
        let record = |release: &str| StandbyRecord {
            app: "shop".into(),
            release: release.into(),
            until,
            deploy: 7,
            grace: Duration::from_secs(30),
            keep_releases: 5,
        };
        s.set_standby(&record("r1")).unwrap();
        s.set_standby(&record("r2")).unwrap();
        assert_eq!(s.standbys().unwrap(), [record("r2")]);
    }
}
