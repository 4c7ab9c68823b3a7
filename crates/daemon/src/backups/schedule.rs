//! The schedules: each backup definition of each serving release runs when its cron says. The
//! next due time is kept in the store, so a run missed while the daemon was down happens once
//! at start-up, not once per missed slot.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::BackupTrigger;
use backup::schedule::Schedule;

use super::Events;
use crate::core::Core;

/// The longest the scheduler sleeps: new apps and changed schedules are seen this soon.
const TICK: Duration = Duration::from_secs(5);

impl Core {
    /// Runs until the daemon stops.
    pub async fn schedule_backups(self: Arc<Self>) {
        loop {
            let now = SystemTime::now();
            let mut soonest = now + TICK;
            for (app, name, text) in self.backup_schedules() {
                let schedule = match Schedule::parse(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(app, backup = name, error = %e, "a backup schedule berth check let through");
                        continue;
                    }
                };
                let Some(next) = schedule.next_after(now) else {
                    continue;
                };
                let stored = {
                    let (a, n) = (app.clone(), name.clone());
                    self.db.call(move |s| s.backup_due(&a, &n)).await
                };
                let due = match stored {
                    // A schedule changed to fire sooner takes effect at once.
                    Ok(Some(due)) => due.min(next),
                    Ok(None) => {
                        self.set_due(&app, &name, next).await;
                        next
                    }
                    Err(err) => {
                        tracing::error!(app, error = %err, "read a backup's due time");
                        continue;
                    }
                };
                if due > now {
                    soonest = soonest.min(due);
                    continue;
                }
                // Due (or missed while the daemon was down): once, and the next slot recorded
                // before it starts, so a crash during the run does not repeat it in a loop.
                self.set_due(&app, &name, next).await;
                let core = self.clone();
                self.tasks.spawn(async move {
                    let run = core
                        .run_backup(&app, Some(&name), BackupTrigger::Schedule, &Events::none())
                        .await;
                    if let Err(refusal) = run {
                        tracing::warn!(app, backup = name, reason = %refusal.message, "scheduled backup did not run");
                        core.record_event(&app, "backup-skipped", format!("{name}: {}", refusal.message)).await;
                    }
                });
            }
            let wait = soonest
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait.min(TICK)) => {}
                () = self.cancel.cancelled() => return,
            }
        }
    }

    /// (app, backup, schedule) of every serving release.
    fn backup_schedules(&self) -> Vec<(String, String, String)> {
        self.apps()
            .iter()
            .filter_map(|(app, state)| Some((app, state.running.as_ref()?)))
            .flat_map(|(app, r)| {
                r.spec
                    .backups
                    .iter()
                    .map(|(name, b)| (app.clone(), name.clone(), b.schedule.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    async fn set_due(&self, app: &str, name: &str, at: SystemTime) {
        let (a, n) = (app.to_owned(), name.to_owned());
        if let Err(err) = self.db.call(move |s| s.set_backup_due(&a, &n, at)).await {
            tracing::error!(app, backup = name, error = %err, "record when a backup is due");
        }
    }
}
