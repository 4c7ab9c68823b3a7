//! Deploys, rollbacks and restarts: one state machine, persisted step by step in the store.
//!
//! ```text
//! deploy:   unpack → build → start → smoke → canary → switch → watch → workers → drain → done
//! rollback:                  start → smoke ─────────→ switch → watch → workers → drain → done
//!           (or, to a warm standby: the switch at once)
//! restart:  relink ────────→ start → …
//! ```
//!
//! Every rollout is [`Core::rollout`] of a [`Source`]: the source gives the release (an
//! upload, a kept release, the live one relinked), the [`Plan`] of the two specs says which
//! instances start, are replaced, stopped and drained, and the same machine runs it.
//!
//! Until `switch` the old release serves (all of it, or the clients outside a canary step's
//! share); a failed gate stops the new instances and that is all. Smoke checks go through the
//! new release's own routes before any client can reach it. `switch` is the commit point
//! (`set_current`, then one route table). After it, the old release's routed instances stay
//! alive (idle) until `drain` — or for `[deploy] standby`, warm for a rollback —, so a failed
//! watch window or worker start switches straight back to them. Unrouted services (workers)
//! are replaced one instance at a time only once the new release has proven itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::{DeployKind, DeployResult, Gate, Phase, ReleaseStatus, Step};
use store::NewDeploy;

use crate::core::Core;
use crate::failure::Failure;
use crate::plan::Plan;
use crate::refusal::Refusal;
use crate::release::{HISTORY, Lineage, Release, all_slots};
use judge::{Baseline, Judged, Tally, Until};

mod canary;
mod gates;
mod judge;
mod prepare;
mod progress;
mod standby;

pub(crate) use prepare::Source;
use prepare::Target;
pub(crate) use progress::{EVENT_BUFFER, Progress, Rollout};

/// Who asked, and whether to queue behind a running rollout instead of refusing.
pub(crate) struct Request {
    pub user: String,
    pub wait: bool,
}

/// A replaced release left to finish its requests once the rollout has its result.
struct Drain {
    /// The `deploys` row that replaced it.
    deploy: i64,
    app: String,
    old: Release,
    /// `[deploy] drain` of the new release.
    grace: Duration,
    keep_releases: usize,
    /// `[deploy] standby` of the new release: keep `old` warm this long first.
    standby: Option<Duration>,
}

impl Core {
    /// Run one rollout of `source` to its end, reporting to `progress`; a client that goes
    /// away does not cut it short. The client has its answer once the new release serves and
    /// has passed its checks; the release it replaced then drains here, in the background.
    /// When the daemon stops, the rollout is dropped where it stands; its record says
    /// `running` until the next start marks it `interrupted`.
    pub async fn rollout(self: Arc<Self>, source: Source, req: Request, progress: Progress) {
        let started = Instant::now();
        let (mut app, mut release) = (String::new(), String::new());
        let result = tokio::select! {
            result = self.prepare_and_run(source, &req, &progress, &mut app, &mut release) => result,
            () = self.cancel.cancelled() => return,
        };
        let (result, drain) = match result {
            Ok(drain) => (Ok(()), drain),
            Err(f) => (Err(f), None),
        };
        progress.finish(app, release, result, started).await;
        if let Some(drain) = drain {
            tokio::select! {
                () = async {
                    match drain.standby {
                        Some(keep) => self.keep_standby(drain, keep).await,
                        None => self.drain(drain).await,
                    }
                } => {}
                () = self.cancel.cancelled() => {}
            }
        }
    }

    /// Let the replaced release finish its requests (see [`Drain`]), stop it, record it, and
    /// prune old release trees (not before: the drained release's processes run in one).
    async fn drain(&self, d: Drain) {
        let until = std::time::SystemTime::now() + d.grace;
        let entry = (d.old.id.clone(), d.old.members.len() as u32, until);
        self.apps()
            .entry(d.app.clone())
            .or_default()
            .draining
            .push(entry);
        if let Some(hook) = &self.hooks.at_step {
            hook(Step::Drain).await;
        }
        self.drain_and_stop(d.old.members, d.grace).await;
        if let Some(a) = self.apps().get_mut(&d.app) {
            a.draining.retain(|(release, ..)| *release != d.old.id);
        }
        if let Err(err) = self.db.set_drained(d.deploy).await {
            tracing::warn!(app = %d.app, error = %err, "record the end of a drain");
        }
        self.prune(&d.app, d.keep_releases).await;
    }

    async fn prepare_and_run(
        &self,
        source: Source,
        req: &Request,
        progress: &Progress,
        app: &mut String,
        release: &mut String,
    ) -> Result<Option<Drain>, Failure> {
        let kind = source.kind();
        let pending;
        (*app, pending) = self.pending(source, progress).await?;
        let _slot = self
            .take_slot(app, req.wait, progress)
            .await
            .ok_or_else(|| busy(app))?;
        let deploying = Deploying { core: self, app };
        let target = self.target(app, pending, release, progress).await?;
        deploying.set(release);
        self.record_and_run(kind, app, target, &req.user, progress)
            .await
    }

    /// Hold the app's rollout slot: at once, or (with `wait`) after the running one ends.
    async fn take_slot(
        &self,
        app: &str,
        wait: bool,
        progress: &Progress,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let slot = self.apps().entry(app.to_owned()).or_default().slot.clone();
        match slot.clone().try_lock_owned() {
            Ok(guard) => Some(guard),
            Err(_) if wait => {
                progress.phase(
                    Phase::Wait,
                    format!("another deploy of {app} is running; waiting for it"),
                );
                Some(slot.lock_owned().await)
            }
            Err(_) => None,
        }
    }

    /// Open the deploy record, run the state machine, close the record (at step `drain` when
    /// the replaced release is left to drain).
    async fn record_and_run(
        &self,
        kind: DeployKind,
        app: &str,
        target: Target,
        user: &str,
        progress: &Progress,
    ) -> Result<Option<Drain>, Failure> {
        let from = self.with_running(app, |r| r.id.clone());
        let id = self
            .db
            .begin_deploy(NewDeploy {
                kind,
                app,
                release: &target.release,
                from_release: from.as_deref(),
                user,
            })
            .await
            .map_err(|e| Failure::new(Gate::Start, e.to_string()))?;
        let rollout = Rollout {
            id,
            kind,
            app: app.to_owned(),
            release: target.release,
            spec: target.spec,
            dir: target.dir,
            progress,
        };
        let result = self.run(&rollout).await;
        let step = match &result {
            Ok(Some(_)) => Step::Drain,
            _ => Step::Done,
        };
        let (res, gate, reason) = match &result {
            Ok(_) => (DeployResult::Ok, None, None),
            Err(f) if f.gate.after_switch() => (
                DeployResult::RolledBack,
                Some(f.gate),
                Some(f.reason.clone()),
            ),
            Err(f) => (DeployResult::Failed, Some(f.gate), Some(f.reason.clone())),
        };
        self.deploy_counts.add(app, kind, res);
        self.notify_rollout(app, kind, res, &rollout.release, reason.as_deref());
        // A deploy or restart made its own release, which never served if it failed; a
        // rollback's target is a release that did serve, and stays `live`.
        let failed = (result.is_err() && kind != DeployKind::Rollback).then(|| {
            (
                app.to_owned(),
                rollout.release.clone(),
                ReleaseStatus::Failed,
            )
        });
        if let Err(err) = self
            .db
            .finish_deploy(id, res, gate, reason, failed, step)
            .await
        {
            tracing::error!(app, release = %rollout.release, error = %err, "record the end of a rollout");
        }
        let keep_releases = rollout.spec.deploy.keep_releases as usize;
        match result? {
            Some(old) => Ok(Some(Drain {
                deploy: id,
                app: app.to_owned(),
                grace: rollout.spec.deploy.drain,
                standby: rollout.spec.deploy.standby,
                keep_releases,
                old,
            })),
            None => {
                self.prune(app, keep_releases).await;
                Ok(None)
            }
        }
    }

    /// Record that the rollout reached `step`, then let a test hook hold it there.
    async fn step(&self, r: &Rollout<'_>, step: Step) {
        self.record_step(r.id, step).await;
        if let Some(hook) = &self.hooks.at_step {
            hook(step).await;
        }
    }

    async fn record_step(&self, deploy: i64, step: Step) {
        if let Err(err) = self.db.set_deploy_step(deploy, step).await {
            tracing::warn!(deploy, %step, error = %err, "record a rollout step");
        }
    }

    /// The state machine. See the module docs. Returns the release it replaced, out of the
    /// route table and to be drained.
    async fn run(&self, r: &Rollout<'_>) -> Result<Option<Release>, Failure> {
        let old_spec = self.with_running(&r.app, |old| old.spec.clone());
        let plan = Plan::new(&r.spec, old_spec.as_deref());
        let new = match self.warm(r).await {
            Some(warm) => warm,
            None => {
                let new = self.start_release(r, &plan).await?;
                self.canary(r, new).await?
            }
        };

        self.step(r, Step::Switch).await;
        let shape = new.like();
        let mut tally = Tally::of(&new);
        let t = Instant::now();
        let mut old = self.switch(&r.app, new).await;
        if let Err(err) = self.db.set_switched(r.id).await {
            tracing::warn!(deploy = r.id, error = %err, "record the switch of a rollout");
        }
        r.progress.phase(
            Phase::Switch,
            format!(
                "traffic on {} in {:.2} ms",
                r.release,
                t.elapsed().as_secs_f64() * 1000.0
            ),
        );
        // A rollback leaves a release that was bad, or thought to be: no baseline to keep.
        let baseline = match &old {
            Some(o) if r.kind != DeployKind::Rollback => Baseline::Before {
                release: o.id.clone(),
                counts: Tally::lifetime(o),
            },
            _ => Baseline::None,
        };

        let checked = async {
            if let Some(watch) = r.spec.deploy.watch {
                self.step(r, Step::Watch).await;
                let (limit, why) = baseline.limit(r.spec.deploy.max_error_rate);
                r.progress.phase(
                    Phase::Watch,
                    format!(
                        "{}s for crashes of {} and 5xx above {} in any {}s ({why})",
                        watch.as_secs(),
                        r.release,
                        gates::percent(limit),
                        spec::DeploySpec::WATCH_WINDOW.as_secs()
                    ),
                );
                let judged = Judged {
                    gate: Gate::Watch,
                    what: "watch window",
                    until: Until::Elapsed(watch),
                    max_error_rate: r.spec.deploy.max_error_rate,
                    baseline,
                };
                self.judge(r, &mut tally, judged).await?;
            }
            match old.as_mut() {
                Some(old) => self.replace_workers(r, &plan, &shape, old).await,
                None => Ok(()),
            }
        };
        if let Err(mut f) = checked.await {
            f.reason = format!("{}; {}", f.reason, self.switch_back(r, old).await);
            return Err(f);
        }

        if let Some(old) = &old {
            self.record_step(r.id, Step::Drain).await;
            let after = match r.spec.deploy.standby {
                Some(keep) => format!(
                    "stays warm for {}s (a rollback to it is a route swap), then drains",
                    keep.as_secs()
                ),
                None => format!(
                    "finishes its requests in the background (up to {}s) and stops",
                    r.spec.deploy.drain.as_secs()
                ),
            };
            r.progress.phase(
                Phase::Drain,
                format!(
                    "release {} {after}; `berth status {}` shows it",
                    old.id, r.app
                ),
            );
        }
        Ok(old)
    }

    /// Everything before the switch for a release that is not running yet: secrets, build,
    /// the sealed tree, TLS, its instances through the start gate, and the smoke checks
    /// through its own routes. A failure stops what was started; the old release serves on.
    async fn start_release(&self, r: &Rollout<'_>, plan: &Plan) -> Result<Release, Failure> {
        // Secrets first: a missing one refuses the rollout before anything is built or started.
        self.ensure_secrets(&r.spec).await?;
        let user = self.seat(&r.spec).await?;
        let env = self
            .release_env(&r.spec, &r.release, user.as_ref())
            .await
            .map_err(|e| Failure::new(Gate::Secrets, format!("{e:#}")))?;
        if r.kind == DeployKind::Deploy {
            self.build_step(r, &env, user.as_ref()).await?;
        }
        let previous = match r.kind {
            DeployKind::Deploy => self.with_running(&r.app, |old| old.dir.clone()),
            DeployKind::Rollback | DeployKind::Restart => None,
        };
        self.seal(&r.dir, user.as_ref(), previous).await?;
        self.certs
            .check(&r.spec, &r.dir, self.addrs.https.is_some())
            .map_err(|reason| Failure::new(Gate::Tls, reason).hint(self.serving(&r.app)))?;

        self.step(r, Step::Start).await;
        let mut new = Release::new(&r.release, r.spec.clone(), &r.dir, env, user);
        new.members = self.start_members(&new, &plan.first);
        let n = new.members.len();
        r.progress.phase(
            Phase::Start,
            format!("{n} instance{} of {} {}", plural(n), r.app, r.release),
        );
        let checked = async {
            self.gate_ready(r, &new.members).await?;
            if !r.spec.deploy.smoke.is_empty() {
                self.step(r, Step::Smoke).await;
                self.smoke(r, &new).await?;
            }
            Ok(())
        };
        match checked.await {
            Ok(()) => Ok(new),
            Err(f) => {
                self.stop_members(new.members).await;
                Err(f)
            }
        }
    }

    /// The `[build]` step of a deploy, run as the app's user with the tree its own, its output
    /// streamed to the client.
    async fn build_step(
        &self,
        r: &Rollout<'_>,
        env: &std::collections::BTreeMap<String, String>,
        user: Option<&crate::users::AppUser>,
    ) -> Result<(), Failure> {
        let Some(build) = &r.spec.build else {
            return Ok(());
        };
        self.step(r, Step::Build).await;
        r.progress.phase(Phase::Build, &build.command);
        if let Some(user) = user {
            self.open_for_build(&r.dir, user).await?;
        }
        self.build(&r.app, &build.command, &r.dir, env, user, |line| {
            r.progress.build(&line)
        })
        .await
        .map_err(|f| {
            Failure::new(Gate::Build, f.reason)
                .hint(format!(
                    "fix the build (try `{}` in the app directory) and deploy again; {}",
                    build.command,
                    self.serving(&r.app)
                ))
                .tail(f.tail)
        })
    }

    /// The plan's workers, one at a time: start the new instance, wait for it to be ready,
    /// stop the old one. Then the old workers the new release no longer has are stopped.
    async fn replace_workers(
        &self,
        r: &Rollout<'_>,
        plan: &Plan,
        shape: &Release,
        old: &mut Release,
    ) -> Result<(), Failure> {
        if !plan.workers.is_empty() {
            self.step(r, Step::Workers).await;
        }
        for slot in &plan.workers {
            let mut new = self.start_members(shape, std::slice::from_ref(slot));
            if let Err(mut f) = self.gate_ready(r, &new).await {
                f.gate = Gate::Workers;
                self.stop_members(new).await;
                return Err(f);
            }
            r.progress
                .phase(Phase::Workers, format!("{}.{} replaced", slot.0, slot.1));
            if let Some(running) = self.apps().get_mut(&r.app).and_then(|a| a.running.as_mut()) {
                running.members.append(&mut new);
            }
            if let Some(pos) = old.members.iter().position(|m| m.slot() == *slot) {
                let replaced = old.members.remove(pos);
                self.stop_members(vec![replaced]).await;
            }
        }
        let (retired, keep) = std::mem::take(&mut old.members)
            .into_iter()
            .partition(|m| plan.retire.contains(&m.slot()));
        old.members = keep;
        self.stop_members(retired).await;
        Ok(())
    }

    /// Put `old` back in service after a failed check: restart any of its instances that were
    /// already replaced, switch to it, stop the new release. Returns what happened, in words.
    async fn switch_back(&self, r: &Rollout<'_>, old: Option<Release>) -> String {
        let (failed, said) = match old {
            Some(mut old) => {
                let present: BTreeSet<_> = old.members.iter().map(|m| m.slot()).collect();
                let missing: Vec<_> = all_slots(&old.spec)
                    .into_iter()
                    .filter(|s| !present.contains(s))
                    .collect();
                let restarted = self.start_members(&old, &missing);
                old.members.extend(restarted);
                let id = old.id.clone();
                r.progress
                    .phase(Phase::Rollback, format!("switching {} back to {id}", r.app));
                let failed = self.switch(&r.app, old).await;
                (failed, format!("rolled back to {id}, which serves again"))
            }
            None => (
                self.take_app(&r.app).await,
                format!("{} was not serving before, and is stopped", r.app),
            ),
        };
        if let Some(new) = failed {
            self.stop_members(new.members).await;
        }
        said
    }

    /// The release a rollback of `app` goes to: `to`, or the one that served before the
    /// current one (see [`Lineage::previous`]).
    pub async fn rollback_target(&self, app: &str, to: Option<&str>) -> Result<String, Refusal> {
        let (known, releases) = self
            .db
            .app_releases(app)
            .await
            .map_err(anyhow::Error::new)?;
        let Some(known) = known else {
            return Err(Refusal::no_app(app));
        };
        let current = known.current_release;
        let deploys = self
            .db
            .deploys(Some(app), HISTORY)
            .await
            .map_err(anyhow::Error::new)?;
        let lineage = Lineage::new(&deploys, current.as_deref());
        let refuse = |message: String| {
            Refusal::bad_input(message).hint(format!(
                "`berth releases {app}` lists the releases you can roll back to"
            ))
        };
        let pick = match to {
            Some(id) => {
                let Some(r) = releases.iter().find(|r| r.id == id) else {
                    return Err(refuse(format!("{app} has no release {id}")));
                };
                if current.as_deref() == Some(id) {
                    return Err(refuse(format!("{id} is already the live release of {app}")));
                }
                match r.status {
                    ReleaseStatus::Pruned => {
                        return Err(refuse(format!(
                            "release {id} of {app} was pruned (only the newest are kept)"
                        )));
                    }
                    ReleaseStatus::Failed | ReleaseStatus::Pending => {
                        return Err(refuse(format!("release {id} of {app} never went live")));
                    }
                    ReleaseStatus::Live => id.to_owned(),
                }
            }
            None => match lineage.previous(&releases) {
                Some(r) => r.id.clone(),
                None => {
                    return Err(refuse(format!(
                        "{app} has no earlier release to roll back to"
                    )));
                }
            },
        };
        if !self.dir.release(app, &pick).join("berth.toml").is_file() {
            return Err(refuse(format!(
                "the files of release {pick} of {app} are gone"
            )));
        }
        Ok(pick)
    }
}

/// The app's "deploying" mark in status: set while its rollout holds the slot, cleared when
/// the rollout ends however it ends.
struct Deploying<'a> {
    core: &'a Core,
    app: &'a str,
}

impl Deploying<'_> {
    fn set(&self, release: &str) {
        self.core
            .apps()
            .entry(self.app.to_owned())
            .or_default()
            .deploying = Some(release.to_owned());
    }
}

impl Drop for Deploying<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.core.apps().get_mut(self.app) {
            a.deploying = None;
        }
    }
}

fn busy(app: &str) -> Failure {
    Failure::new(
        Gate::Start,
        format!("a deploy or rollback of {app} is already running"),
    )
    .hint(format!(
        "wait for it (`berth status {app}` shows it), or pass --wait to queue behind it"
    ))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
