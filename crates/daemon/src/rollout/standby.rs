//! Warm standby (`[deploy] standby = "10m"`): the release a rollout replaced keeps its routed
//! instances running, out of the route table, for that long; a rollback to it within the time
//! is a route swap. When the time is up (or another release takes its place) it drains and
//! stops like any replaced release.

use std::time::{Duration, SystemTime};

use api::{DeployKind, Phase};
use supervisor::InstanceState;

use super::Drain;
use super::progress::Rollout;
use crate::core::Core;
use crate::release::{Release, Standby};

impl Core {
    /// The standby of `r`'s app when `r` is a rollback to it and every instance of it is
    /// ready; a standby that is not ready is stopped, and the rollback starts the release anew.
    pub(super) async fn warm(&self, r: &Rollout<'_>) -> Option<Release> {
        if r.kind != DeployKind::Rollback {
            return None;
        }
        let standby = {
            let mut apps = self.apps();
            let a = apps.get_mut(&r.app)?;
            if a.standby.as_ref()?.release.id != r.release {
                return None;
            }
            a.standby.take()?
        };
        let members = &standby.release.members;
        match members
            .iter()
            .find(|m| m.instance.state() != InstanceState::Ready)
        {
            None => {
                r.progress.phase(
                    Phase::Standby,
                    format!(
                        "{} instance{} of {} still running (warm standby)",
                        members.len(),
                        if members.len() == 1 { "" } else { "s" },
                        r.release
                    ),
                );
                Some(standby.release)
            }
            Some(m) => {
                r.progress.phase(
                    Phase::Standby,
                    format!(
                        "the standby of {} is not ready ({}.{} is {}): starting it anew",
                        r.release,
                        m.service,
                        m.index,
                        m.instance.state()
                    ),
                );
                self.stop_members(standby.release.members).await;
                self.record_event(
                    &r.app,
                    "standby",
                    format!("standby {} dropped: not ready for a rollback", r.release),
                )
                .await;
                None
            }
        }
    }

    /// Keep `d.old` warm for `keep`, then drain and stop it (unless a rollback took it, or a
    /// newer standby replaced it: that one drains the older at once).
    pub(super) async fn keep_standby(&self, d: Drain, keep: Duration) {
        let (app, id, deploy) = (d.app.clone(), d.old.id.clone(), d.deploy);
        let replaced = self
            .apps()
            .entry(app.clone())
            .or_default()
            .standby
            .replace(Standby {
                release: d.old,
                until: SystemTime::now() + keep,
                deploy,
                grace: d.grace,
            });
        // Recorded, so that a restart or an upgrade of the daemon keeps it (`recover.rs`).
        let record = store::StandbyRecord {
            app: app.clone(),
            release: id.clone(),
            until: SystemTime::now() + keep,
            deploy,
            grace: d.grace,
            keep_releases: d.keep_releases as u32,
        };
        if let Err(err) = self.db.set_standby(record).await {
            tracing::warn!(app, error = %err, "record the standby");
        }
        self.record_event(
            &app,
            "standby",
            format!("standby {id} for {}s", keep.as_secs()),
        )
        .await;
        if let Some(older) = replaced {
            self.drain(Drain {
                deploy: older.deploy,
                app: app.clone(),
                old: older.release,
                grace: older.grace,
                keep_releases: d.keep_releases,
                standby: None,
            })
            .await;
        }
        tokio::time::sleep(keep).await;
        let expired = {
            let mut apps = self.apps();
            let a = apps.get_mut(&app);
            match a {
                Some(a)
                    if a.standby
                        .as_ref()
                        .is_some_and(|s| s.release.id == id && s.deploy == deploy) =>
                {
                    a.standby.take()
                }
                _ => None,
            }
        };
        if let Some(s) = expired {
            self.record_event(&app, "standby", format!("standby {id} ended: draining"))
                .await;
            self.drain(Drain {
                deploy: s.deploy,
                app,
                old: s.release,
                grace: s.grace,
                keep_releases: d.keep_releases,
                standby: None,
            })
            .await;
        }
    }

    /// Keep `release` (its instances adopted by this daemon) as `record` said, for the rest of
    /// its time: the standby a previous daemon kept, after a restart or an upgrade.
    pub(crate) async fn resume_standby(&self, release: Release, record: store::StandbyRecord) {
        let keep = record
            .until
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let d = Drain {
            deploy: record.deploy,
            app: record.app,
            old: release,
            grace: record.grace,
            keep_releases: record.keep_releases as usize,
            standby: None,
        };
        tokio::select! {
            () = self.keep_standby(d, keep) => {}
            () = self.cancel.cancelled() => {}
        }
    }

    /// A standby instance crash-looping: the standby cannot take traffic back, so it goes.
    pub(crate) async fn drop_standby(&self, app: &str, release: &str, why: &str) {
        let gone = {
            let mut apps = self.apps();
            match apps.get_mut(app) {
                Some(a) if a.standby.as_ref().is_some_and(|s| s.release.id == release) => {
                    a.standby.take()
                }
                _ => None,
            }
        };
        if let Some(s) = gone {
            self.stop_members(s.release.members).await;
            self.record_event(
                app,
                "standby",
                format!("standby {release} dropped: {why}; a rollback to it starts it anew"),
            )
            .await;
        }
    }
}
