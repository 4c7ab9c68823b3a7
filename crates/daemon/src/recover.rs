//! Start-up after a stop, a crash or an upgrade, and the daemon's view of instance events.
//!
//! Recovery is the same path as a deploy's switch, from nothing: sweep the job process groups
//! the previous run recorded, mark its unfinished rollouts `interrupted`, then start each
//! app's current release and switch to it. Instances outlive the daemon, so "start" is first
//! "adopt": each instance of a current release the previous daemon recorded is taken over if
//! it is still that process (pid, start time, its own group) and answers its probe; every
//! other recorded process (a release that no longer serves, a rollout cut short) is killed
//! with its group. Nothing is left running that no daemon knows about. Recovery is over (the
//! daemon is ready) once every recovered instance has passed its start gate or failed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use store::{ProcessRecord, StandbyRecord};
use supervisor::{Event, EventKind};
use tokio::sync::broadcast::error::RecvError;

use crate::core::Core;
use crate::release::{Release, all_slots, environment_of, load_spec};

/// How long recovery waits for adopted instances to answer before their routes are
/// published (an adopted instance needs one probe; one that fails is replaced meanwhile).
const ADOPT_WAIT: Duration = Duration::from_secs(4);

/// How recovery went: apps started again, and apps that could not be.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Recovered {
    pub apps: usize,
    pub failed: usize,
}

impl Core {
    /// Bring every app's current release back up: adopt what the previous daemon left
    /// running of it, sweep everything else it left (process groups, rollouts cut short).
    /// Returns once every app with adopted instances is in the route table again; the rest
    /// goes on in the background, and the handle says how recovery went once every app is
    /// restored (its instances through their start gate) or could not be.
    pub async fn recover(self: Arc<Self>) -> tokio::task::JoinHandle<Recovered> {
        self.refresh_redactor().await;
        let leftovers = self.db.processes().await.unwrap_or_else(|err| {
            tracing::error!(error = %err, "read process groups of the previous run");
            vec![]
        });
        self.sweep_jobs().await;
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
                for p in &leftovers {
                    self.sweep(p).await;
                }
                return tokio::spawn(async { Recovered::default() });
            }
        };
        let current: BTreeMap<String, String> = apps
            .iter()
            .filter_map(|a| Some((a.name.clone(), a.current_release.clone()?)))
            .collect();
        // Standbys still in their time, of a release that does not serve.
        let now = std::time::SystemTime::now();
        let mut standbys: BTreeMap<String, StandbyRecord> = match self.db.standbys().await {
            Ok(list) => list
                .into_iter()
                .filter(|s| s.until > now && current.get(&s.app) != Some(&s.release))
                .map(|s| (s.app.clone(), s))
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "read the standbys of the previous run");
                BTreeMap::new()
            }
        };
        let mut adoptable: BTreeMap<String, Vec<ProcessRecord>> = BTreeMap::new();
        let mut warm: BTreeMap<String, Vec<ProcessRecord>> = BTreeMap::new();
        for p in leftovers {
            let known = p.start_ticks != 0 && p.port != 0;
            if known && current.get(&p.app) == Some(&p.release) {
                adoptable.entry(p.app.clone()).or_default().push(p);
            } else if known && standbys.get(&p.app).is_some_and(|s| s.release == p.release) {
                warm.entry(p.app.clone()).or_default().push(p);
            } else {
                self.sweep(&p).await;
            }
        }
        for (app, found) in warm {
            let Some(record) = standbys.remove(&app) else {
                continue;
            };
            let this = self.clone();
            self.tasks.spawn(async move {
                let release = record.release.clone();
                match this.release_of(&app, &release).await {
                    Ok(mut standby) => {
                        let slots: Vec<_> = found.iter().map(|p| (p.service.clone(), p.instance)).collect();
                        standby.members = this.adopt_members(&standby, &slots, &found);
                        tracing::info!(app = %app, %release, adopted = found.len(), "standby kept");
                        this.resume_standby(standby, record).await;
                    }
                    Err(err) => {
                        tracing::warn!(app = %app, %release, error = %format!("{err:#}"), "cannot keep the standby: stopping it");
                        for p in &found {
                            this.sweep(p).await;
                        }
                    }
                }
            });
        }
        let mut switched = Vec::new();
        let mut restoring = Vec::new();
        for (app, release) in current {
            let found = adoptable.remove(&app).unwrap_or_default();
            let (tx, rx) = tokio::sync::oneshot::channel();
            if !found.is_empty() {
                switched.push(rx);
            }
            let this = self.clone();
            restoring.push(self.tasks.spawn(async move {
                match this.restore(&app, &release, &found, tx).await {
                    Ok(()) => {
                        tracing::info!(app = %app, %release, adopted = found.len(), "app restored");
                        true
                    }
                    Err(err) => {
                        tracing::error!(app = %app, %release, error = %format!("{err:#}"), "could not restore app");
                        false
                    }
                }
            }));
        }
        // The apps with adopted instances are routed again before the listeners accept.
        futures_util::future::join_all(switched).await;
        tokio::spawn(async move {
            let mut recovered = Recovered::default();
            for restored in restoring {
                match restored.await {
                    Ok(true) => recovered.apps += 1,
                    _ => recovered.failed += 1,
                }
            }
            recovered
        })
    }

    /// Kill what the jobs of the previous run (builds, hooks) left.
    async fn sweep_jobs(&self) {
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
    }

    async fn restore(
        &self,
        app: &str,
        release: &str,
        found: &[ProcessRecord],
        switched: tokio::sync::oneshot::Sender<()>,
    ) -> anyhow::Result<()> {
        let mut started = self.release_of(app, release).await?;
        let spec = started.spec.clone();
        started.members = self.adopt_members(&started, &all_slots(&spec), found);
        // Adopted instances are routed once they answered their one probe (or were replaced),
        // so a client never meets an app with no instance in the table during a hand-over.
        let adopted = started.members.iter().filter(|m| {
            found
                .iter()
                .any(|p| p.service == m.service && p.instance == m.index)
        });
        let answers = adopted.map(|m| m.instance.wait_ready());
        let _ = tokio::time::timeout(ADOPT_WAIT, futures_util::future::join_all(answers)).await;
        let instances: Vec<_> = started.members.iter().map(|m| m.instance.clone()).collect();
        // Instances that are not ready yet join the route table as soon as they are: the
        // supervisor keeps restarting them, and `watch_supervisor` republishes on each change.
        self.switch(app, started).await;
        let _ = switched.send(());
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

    /// `release` of `app` as a `Release` without members: its spec, its user (made now for an
    /// app deployed before it had one), its sealed tree and its environment.
    async fn release_of(&self, app: &str, release: &str) -> anyhow::Result<Release> {
        let dir = self.dir.release(app, release);
        let spec = Arc::new(load_spec(&dir, environment_of(app))?);
        let user = self
            .seat(&spec)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        self.seal(&dir, user.as_ref(), None)
            .await
            .map_err(|f| anyhow::anyhow!(f.reason))?;
        let env = self.release_env(&spec, release, user.as_ref()).await?;
        Ok(Release::new(release, spec, &dir, env, user))
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
                // pgid = pid: every instance leads its own process group. Its start time
                // and port are what the next daemon checks before adopting it.
                let port = self
                    .supervisor
                    .instances()
                    .iter()
                    .find(|i| *i.key() == event.key)
                    .map_or(0, |i| i.port());
                let record = ProcessRecord {
                    app: event.key.app.clone(),
                    service: event.key.service.clone(),
                    release: event.key.release.clone(),
                    instance: event.key.instance,
                    pgid: pid as i32,
                    start_ticks: supervisor::Identity::of(pid).map_or(0, |i| i.start_ticks),
                    port,
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

impl Core {
    /// Kill the group of a recorded process that is not adopted, unless its pid now leads
    /// another process (started later than the one recorded: the group it led is long gone);
    /// then forget it.
    async fn sweep(&self, p: &ProcessRecord) {
        let pid = p.pgid as u32;
        match supervisor::Identity::of(pid) {
            Some(now) if p.start_ticks != 0 && now.start_ticks != p.start_ticks => {}
            _ => {
                supervisor::kill_stale_group(p.pgid);
            }
        }
        if let Err(err) = self.db.forget_process(p.clone()).await {
            tracing::warn!(error = %err, "forget a swept process group");
        }
    }
}
