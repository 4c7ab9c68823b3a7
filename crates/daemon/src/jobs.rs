//! Short jobs the daemon runs for an app (a build; later hooks and backup tools): their process
//! groups are recorded while they run, so that a restart after `kill -9` sweeps whatever they
//! left (the daemon's death signal reaches only a job's first process, not its children).

use store::Db;

use crate::core::Core;

/// A job's process group, recorded in the store until this is dropped.
pub(crate) struct Job {
    db: Db,
    pgid: i32,
}

impl Core {
    /// Record the process group `pgid` (a job's leader) of `app`, doing `what`.
    pub async fn job(&self, app: &str, what: &'static str, pgid: u32) -> Job {
        let pgid = pgid as i32;
        if let Err(err) = self.db.record_job(pgid, app, what).await {
            tracing::warn!(app, what, error = %err, "record a job's process group");
        }
        Job {
            db: self.db.clone(),
            pgid,
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let (db, pgid) = (self.db.clone(), self.pgid);
        tokio::spawn(async move {
            if let Err(err) = db.forget_job(pgid).await {
                tracing::warn!(pgid, error = %err, "forget a finished job");
            }
        });
    }
}
