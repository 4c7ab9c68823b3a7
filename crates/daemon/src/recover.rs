//! Start-up after a stop or a crash, and the daemon's view of instance events.
//!
//! Recovery is the same path as a deploy's switch, from nothing: sweep the process groups the
//! previous run recorded, mark its unfinished rollouts `interrupted`, then start each app's
//! current release and switch to it. Recovery is over (the daemon is ready) once every
//! recovered instance has passed its start gate or failed it.

use std::sync::Arc;

use store::ProcessRecord;
use supervisor::{Event, EventKind};
use tokio::sync::broadcast::error::RecvError;

use crate::core::Core;
use crate::release::{Release, all_slots, environment_of, load_spec};

/// How recovery went: apps started again, and apps that could not be.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Recovered {
    pub apps: usize,
    pub failed: usize,
}

impl Core {
    /// Bring every app's current release back up, after sweeping what a previous run of the
    /// daemon may have left behind (process groups, rollouts cut short). Returns once every
    /// app is restored (its instances through their start gate) or could not be.
    pub async fn recover(self: Arc<Self>) -> Recovered {
        self.refresh_redactor().await;
        let leftovers = self.db.take_processes().await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "read process groups of the previous run");
            vec![]
        });
        for p in &leftovers {
            supervisor::kill_stale_group(p.pgid);
        }
        match self.db.take_jobs().await {
            Ok(jobs) => {
                for (pgid, app, what) in jobs {
                    if supervisor::kill_stale_group(pgid) {
                        tracing::warn!(
                            app,
                            what,
                            pgid,
                            "swept the processes of a job cut short by the previous stop"
                        );
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "read job process groups of the previous run")
            }
        }
        match self.db.interrupt_running_deploys().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                count = n,
                "deploys interrupted by the previous stop were marked interrupted"
            ),
            Err(err) => tracing::error!(error = %err, "mark interrupted deploys"),
        }
        // Before any release serves: an app the operator left in maintenance stays in it.
        self.load_maintenance().await;
        let apps = match self.db.apps().await {
            Ok(apps) => apps,
            Err(err) => {
                tracing::error!(error = %err, "read apps from the state database; nothing started");
                return Recovered::default();
            }
        };
        let mut restoring = Vec::new();
        for app in apps {
            let Some(release) = app.current_release else {
                continue;
            };
            let this = self.clone();
            restoring.push(self.tasks.spawn(async move {
                match this.restore(&app.name, &release).await {
                    Ok(()) => {
                        tracing::info!(app = %app.name, %release, "app restored");
                        true
                    }
                    Err(err) => {
                        tracing::error!(app = %app.name, %release, error = %format!("{err:#}"), "could not restore app");
                        false
                    }
                }
            }));
        }
        let mut recovered = Recovered::default();
        for restored in restoring {
            match restored.await {
                Ok(true) => recovered.apps += 1,
                _ => recovered.failed += 1,
            }
        }
        recovered
    }

    async fn restore(&self, app: &str, release: &str) -> anyhow::Result<()> {
        let dir = self.dir.release(app, release);
        let spec = Arc::new(load_spec(&dir, environment_of(app))?);
        // An app deployed before it had a user of its own gets one now.
        let user = self
            .seat(&spec)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        self.seal(&dir, user.as_ref(), None)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        let env = self.release_env(&spec, release, user.as_ref()).await?;
        let mut started = Release::new(release, spec.clone(), &dir, env, user);
        started.members = self.start_members(&started, &all_slots(&spec));
        let instances: Vec<_> = started.members.iter().map(|m| m.instance.clone()).collect();
        // Instances that are not ready yet join the route table as soon as they are: the
        // supervisor keeps restarting them, and `watch_supervisor` republishes on each change.
        self.switch(app, started).await;
        // The app is restored once each instance passed its start gate or failed it (then the
        // supervisor goes on restarting it); a stop does not wait for the gates.
        let gates = futures_util::future::join_all(instances.iter().map(|i| i.wait_ready()));
        tokio::select! {
            () = self.cancel.cancelled() => {}
            outcomes = gates => {
                for failure in outcomes.into_iter().filter_map(Result::err) {
                    tracing::warn!(app, %release, error = %failure, "a restored instance is not ready; the supervisor restarts it");
                }
                // The ready ones serve before recovery is reported over (`watch_supervisor`
                // publishes too, on its own task).
                self.publish_routes();
            }
        }
        Ok(())
    }

    /// Republish routes whenever an instance changes state, and record process groups and
    /// restarts. Ends when the daemon stops.
    pub async fn watch_supervisor(self: Arc<Self>) {
        let mut events = self.supervisor.events();
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return,
                event = events.recv() => event,
            };
            let event = match event {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => {
                    self.publish_routes();
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            self.publish_routes();
            if let EventKind::Started { pid } = event.kind {
                // pgid = pid: every instance leads its own process group.
                let record = ProcessRecord {
                    app: event.key.app.clone(),
                    service: event.key.service.clone(),
                    release: event.key.release.clone(),
                    instance: event.key.instance,
                    pgid: pid as i32,
                };
                if let Err(err) = self.db.record_process(record).await {
                    tracing::error!(error = %err, "record a process group");
                }
            }
            if let Some((kind, detail)) = event_record(&event)
                && let Err(err) = self.db.record_event(&event.key.app, kind, detail).await
            {
                tracing::warn!(error = %err, "record an instance event");
            }
            if matches!(event.kind, EventKind::CrashLoop) {
                let (app, release) = (event.key.app.clone(), event.key.release.clone());
                let why = format!(
                    "{}.{} is crash-looping",
                    event.key.service, event.key.instance
                );
                let core = self.clone();
                // Its own task: stopping the standby waits for supervisor events this loop reads.
                self.tasks
                    .spawn(async move { core.drop_standby(&app, &release, &why).await });
            }
        }
    }
}

/// What of a supervisor event goes into the store's event log.
fn event_record(ev: &Event) -> Option<(&'static str, String)> {
    let who = format!("{}.{}@{}", ev.key.service, ev.key.instance, ev.key.release);
    match &ev.kind {
        EventKind::Exited(exit) => Some(("exited", format!("{who} {exit}"))),
        EventKind::Restarting { attempt, delay } => Some((
            "restart",
            format!("{who} restart #{attempt} in {:.1}s", delay.as_secs_f64()),
        )),
        EventKind::CrashLoop => Some(("crash-loop", format!("{who} is crash-looping"))),
        EventKind::Unready { reason } => {
            Some(("unready", format!("{who} failed liveness: {reason}")))
        }
        EventKind::Started { .. } | EventKind::Ready | EventKind::Stopped => None,
    }
}
