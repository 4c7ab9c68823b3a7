//! Deploys and rollbacks: one state machine, persisted step by step in the store.
//!
//! ```text
//! deploy:   unpack → build → start → switch → smoke → watch → workers → drain → done
//! rollback:                  start → switch → smoke → watch → workers → drain → done
//! ```
//!
//! Until `switch` the old release serves untouched; a failed gate stops the new instances and
//! that is all. `switch` is the commit point (`store.set_current`, then one route table). After
//! it, the old release's routed instances stay alive (idle) until `drain`, so a failed smoke
//! check, watch window or worker start switches straight back to them. Unrouted services
//! (workers) are replaced one instance at a time only once the new release has proven itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spec::{AppSpec, DeploySpec, RouteTarget};
use store::{NewDeploy, ReleaseStatus};
use supervisor::EventKind;
use tokio::sync::mpsc;

use super::apps::{Daemon, Failure, Member, Release, environment_of, load_spec};
use crate::api::{DeployEvent, DeployOutcome};

/// Deploy progress lines buffered for a slow client before build output is dropped.
pub(crate) const EVENT_BUFFER: usize = 256;
/// A smoke check must answer within this time.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Progress of one rollout, as NDJSON lines to the client that asked for it. Every text that
/// could carry app output goes through the redactor first.
pub struct Progress {
    tx: mpsc::Sender<Bytes>,
    daemon: Arc<Daemon>,
}

impl Progress {
    pub fn new(tx: mpsc::Sender<Bytes>, daemon: Arc<Daemon>) -> Progress {
        Progress { tx, daemon }
    }

    fn line(event: &DeployEvent) -> Bytes {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn send(&self, event: &DeployEvent) {
        let event = match event {
            DeployEvent::Build { line } => DeployEvent::Build {
                line: self.daemon.redact(line),
            },
            DeployEvent::Phase { phase, detail } => DeployEvent::Phase {
                phase: phase.clone(),
                detail: self.daemon.redact(detail),
            },
            DeployEvent::Ready {
                service,
                instance,
                port,
            } => DeployEvent::Ready {
                service: service.clone(),
                instance: *instance,
                port: *port,
            },
            DeployEvent::Done(_) => return,
        };
        // A slow or gone client must not stall the rollout.
        let _ = self.tx.try_send(Self::line(&event));
    }

    fn phase(&self, phase: &str, detail: impl Into<String>) {
        self.send(&DeployEvent::Phase {
            phase: phase.to_owned(),
            detail: detail.into(),
        });
    }

    async fn finish(self, mut outcome: DeployOutcome) {
        let redact = |s: &mut String| *s = self.daemon.redact(s);
        outcome.reason.as_mut().map(redact);
        outcome.hint.as_mut().map(redact);
        outcome.log_tail.iter_mut().for_each(redact);
        // The last line must arrive: wait for room rather than drop it.
        let _ = self.tx.send(Self::line(&DeployEvent::Done(outcome))).await;
    }
}

/// What `[deploy]` asks of a rollout.
struct Gates {
    smoke: Vec<(String, u16)>,
    watch: Option<Duration>,
    max_error_rate: f64,
    keep_releases: usize,
}

impl Gates {
    fn of(spec: &AppSpec) -> Gates {
        let d = &spec.deploy;
        Gates {
            smoke: d.smoke.iter().map(|s| (s.path.clone(), s.status)).collect(),
            watch: d.watch,
            max_error_rate: d.max_error_rate,
            keep_releases: d.keep_releases as usize,
        }
    }
}

/// One deploy or rollback in progress.
struct Rollout<'a> {
    id: i64,
    kind: &'static str,
    app: String,
    release: String,
    spec: Arc<AppSpec>,
    dir: PathBuf,
    progress: &'a Progress,
}

/// Who asked, and whether to queue behind a running rollout instead of refusing.
pub struct Request {
    pub user: String,
    pub wait: bool,
    /// `--env NAME`: the environment overlay to deploy.
    pub env: Option<String>,
}

impl Daemon {
    /// Deploy an uploaded source archive. Runs to the end even if the client goes away.
    pub async fn deploy(self: Arc<Self>, archive: Bytes, req: Request, progress: Progress) {
        let started = Instant::now();
        let (app, release, result) = self.deploy_archive(archive, &req, &progress).await;
        progress
            .finish(outcome(app, release, result, started))
            .await;
    }

    async fn deploy_archive(
        self: &Arc<Self>,
        archive: Bytes,
        req: &Request,
        progress: &Progress,
    ) -> (String, String, Result<(), Failure>) {
        progress.phase("unpack", format!("{} KiB", archive.len() / 1024));
        let digest = deploy::digest(&archive);
        let (upload, spec) = match self.unpack(archive, req.env.clone()).await {
            Ok(x) => x,
            Err(f) => return (String::new(), String::new(), Err(f)),
        };
        let app = spec.instance_name();
        let fail = |f| (app.clone(), String::new(), Err(f));
        if let Err(f) = self.check_route_conflicts(&spec) {
            let _ = std::fs::remove_dir_all(&upload);
            return fail(f);
        }
        let Some(_slot) = self.take_slot(&app, req.wait, progress).await else {
            let _ = std::fs::remove_dir_all(&upload);
            return fail(busy(&app));
        };

        let created = {
            let (a, digest) = (app.clone(), digest.clone());
            self.with_store(move |s| s.create_release(&a, &digest))
                .await
        };
        let release = match created {
            Ok(r) => r.id,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&upload);
                return fail(Failure::new("unpack", format!("{err:#}")));
            }
        };
        self.set_deploying(&app, Some(&release));
        let dir = self.release_dir(&app, &release);
        let placed = std::fs::create_dir_all(self.state.join("apps").join(&app).join("shared"))
            .and_then(|()| std::fs::create_dir_all(dir.parent().expect("release dir has a parent")))
            .and_then(|()| std::fs::rename(&upload, &dir));
        let result = match placed {
            Err(err) => {
                let _ = std::fs::remove_dir_all(&upload);
                Err(Failure::new(
                    "unpack",
                    format!("place release {release} in {}: {err}", dir.display()),
                ))
            }
            Ok(()) => {
                self.record_and_run("deploy", &app, &release, spec, dir, &req.user, progress)
                    .await
            }
        };
        self.set_deploying(&app, None);
        (app, release, result)
    }

    /// Roll `app` back to `target` (already validated by [`Daemon::rollback_target`]).
    pub async fn rollback(
        self: Arc<Self>,
        app: String,
        target: String,
        req: Request,
        progress: Progress,
    ) {
        let started = Instant::now();
        let result = match self.take_slot(&app, req.wait, &progress).await {
            None => Err(busy(&app)),
            Some(_slot) => {
                self.set_deploying(&app, Some(&target));
                let dir = self.release_dir(&app, &target);
                let result = match load_spec(&dir, environment_of(&app)) {
                    Ok(spec) => {
                        let spec = Arc::new(spec);
                        self.record_and_run(
                            "rollback", &app, &target, spec, dir, &req.user, &progress,
                        )
                        .await
                    }
                    Err(err) => Err(Failure::new("start", format!("{err:#}"))),
                };
                self.set_deploying(&app, None);
                result
            }
        };
        progress.finish(outcome(app, target, result, started)).await;
    }

    /// Restart `app` with a fresh environment (after a secret rotation): the live release's
    /// tree is linked into a new release, which goes through the same zero-downtime rollout.
    pub async fn restart(self: Arc<Self>, app: String, req: Request, progress: Progress) {
        let started = Instant::now();
        let (release, result) = match self.take_slot(&app, req.wait, &progress).await {
            None => (String::new(), Err(busy(&app))),
            Some(_slot) => self.restart_inner(&app, &req, &progress).await,
        };
        progress
            .finish(outcome(app, release, result, started))
            .await;
    }

    async fn restart_inner(
        self: &Arc<Self>,
        app: &str,
        req: &Request,
        progress: &Progress,
    ) -> (String, Result<(), Failure>) {
        let current = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .map(|r| (r.id.clone(), r.dir.clone()));
        let Some((from, from_dir)) = current else {
            return (
                String::new(),
                Err(Failure::new("start", format!("{app} is not running"))),
            );
        };
        let a = app.to_owned();
        let created = self
            .with_store(move |s| {
                let digest = s
                    .releases(&a)?
                    .into_iter()
                    .find(|r| r.id == from)
                    .map(|r| r.digest)
                    .unwrap_or_default();
                s.create_release(&a, &digest)
            })
            .await;
        let release = match created {
            Ok(r) => r.id,
            Err(e) => return (String::new(), Err(Failure::new("start", format!("{e:#}")))),
        };
        self.set_deploying(app, Some(&release));
        let dir = self.release_dir(app, &release);
        progress.phase(
            "restart",
            format!(
                "{release} runs the files of {} with the new environment",
                from_dir.display()
            ),
        );
        let result = match link_tree(&from_dir, &dir)
            .map_err(|e| anyhow::anyhow!(e))
            .and_then(|()| load_spec(&dir, environment_of(app)))
        {
            Ok(spec) => {
                self.record_and_run(
                    "restart",
                    app,
                    &release,
                    Arc::new(spec),
                    dir,
                    &req.user,
                    progress,
                )
                .await
            }
            Err(e) => Err(Failure::new(
                "start",
                format!("prepare release {release}: {e:#}"),
            )),
        };
        self.set_deploying(app, None);
        (release, result)
    }

    /// The release a rollback of `app` goes to: `to`, or the newest live release before the
    /// current one. Errors are the operator's (bad input).
    pub async fn rollback_target(
        self: &Arc<Self>,
        app: &str,
        to: Option<&str>,
    ) -> Result<String, (String, String)> {
        let (a, hint_app) = (app.to_owned(), app.to_owned());
        let (current, releases) = self
            .with_store(move |s| Ok((s.app(&a)?, s.releases(&a)?)))
            .await
            .map_err(|e| (format!("{e:#}"), String::new()))?;
        let Some(current) = current else {
            return Err((
                format!("no app named {app}"),
                "`berth status` lists the deployed apps".to_owned(),
            ));
        };
        let current = current.current_release;
        let hint = format!("`berth releases {hint_app}` lists the releases you can roll back to");
        let pick = match to {
            Some(id) => {
                let Some(r) = releases.iter().find(|r| r.id == id) else {
                    return Err((format!("{app} has no release {id}"), hint));
                };
                if current.as_deref() == Some(id) {
                    return Err((format!("{id} is already the live release of {app}"), hint));
                }
                match r.status {
                    ReleaseStatus::Pruned => {
                        return Err((
                            format!("release {id} of {app} was pruned (only the newest are kept)"),
                            hint,
                        ));
                    }
                    ReleaseStatus::Failed | ReleaseStatus::Pending => {
                        return Err((format!("release {id} of {app} never went live"), hint));
                    }
                    ReleaseStatus::Live => id.to_owned(),
                }
            }
            None => {
                // Releases are newest first: the first live one older than the current.
                let cur_pos = releases
                    .iter()
                    .position(|r| Some(&r.id) == current.as_ref());
                let older = releases.iter().skip(cur_pos.map_or(0, |p| p + 1));
                match older.into_iter().find(|r| r.status == ReleaseStatus::Live) {
                    Some(r) => r.id.clone(),
                    None => {
                        return Err((
                            format!("{app} has no earlier release to roll back to"),
                            hint,
                        ));
                    }
                }
            }
        };
        if !self.release_dir(app, &pick).join("berth.toml").is_file() {
            return Err((
                format!("the files of release {pick} of {app} are gone"),
                hint,
            ));
        }
        Ok(pick)
    }

    /// `deploy --dry-run`: unpack and validate the upload, compare with what runs, change nothing.
    pub(super) async fn plan(
        self: &Arc<Self>,
        archive: Bytes,
        env: Option<String>,
    ) -> Result<crate::api::Plan, Failure> {
        let (upload, spec) = self.unpack(archive, env).await?;
        let _ = std::fs::remove_dir_all(&upload);
        self.check_route_conflicts(&spec)?;
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let old = running.get(&spec.instance_name());
        Ok(super::plan::plan(
            &spec,
            old.map(|r| &*r.spec),
            old.map(|r| r.id.clone()),
        ))
    }

    /// Unpack an upload into `tmp/` and validate its berth.toml.
    async fn unpack(
        self: &Arc<Self>,
        archive: Bytes,
        env: Option<String>,
    ) -> Result<(PathBuf, Arc<AppSpec>), Failure> {
        let upload = self
            .state
            .join("tmp")
            .join(format!("upload-{:016x}", rand::random::<u64>()));
        let dest = upload.clone();
        let unpacked = tokio::task::spawn_blocking(move || -> anyhow::Result<AppSpec> {
            std::fs::create_dir_all(&dest)?;
            deploy::unpack(&archive[..], &dest)?;
            load_spec(&dest, env.as_deref())
        })
        .await;
        match unpacked {
            Ok(Ok(spec)) => Ok((upload, Arc::new(spec))),
            Ok(Err(err)) => {
                let _ = std::fs::remove_dir_all(&upload);
                Err(Failure::new("unpack", format!("{err:#}")))
            }
            Err(err) => Err(Failure::new("unpack", format!("unpack task failed: {err}"))),
        }
    }

    /// Hold the app's rollout lock: at once, or (with `wait`) after the running one ends.
    async fn take_slot(
        &self,
        app: &str,
        wait: bool,
        progress: &Progress,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_owned())
            .or_default()
            .clone();
        match lock.clone().try_lock_owned() {
            Ok(guard) => Some(guard),
            Err(_) if wait => {
                progress.phase(
                    "wait",
                    format!("another deploy of {app} is running; waiting for it"),
                );
                Some(lock.lock_owned().await)
            }
            Err(_) => None,
        }
    }

    fn set_deploying(&self, app: &str, release: Option<&str>) {
        let mut deploying = self.deploying.lock().unwrap_or_else(|p| p.into_inner());
        match release {
            Some(r) => deploying.insert(app.to_owned(), r.to_owned()),
            None => deploying.remove(app),
        };
    }

    /// Open the deploy record, run the state machine, close the record.
    #[allow(clippy::too_many_arguments)]
    async fn record_and_run(
        self: &Arc<Self>,
        kind: &'static str,
        app: &str,
        release: &str,
        spec: Arc<AppSpec>,
        dir: PathBuf,
        user: &str,
        progress: &Progress,
    ) -> Result<(), Failure> {
        let from = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .map(|r| r.id.clone());
        let id = {
            let (a, r, u, f) = (
                app.to_owned(),
                release.to_owned(),
                user.to_owned(),
                from.clone(),
            );
            self.with_store(move |s| {
                s.begin_deploy(&NewDeploy {
                    kind,
                    app: &a,
                    release: &r,
                    from_release: f.as_deref(),
                    user: &u,
                })
            })
            .await
            .map_err(|e| Failure::new("start", format!("{e:#}")))?
        };
        let rollout = Rollout {
            id,
            kind,
            app: app.to_owned(),
            release: release.to_owned(),
            spec,
            dir,
            progress,
        };
        let result = self.run(&rollout).await;
        let (res, gate, reason) = match &result {
            Ok(()) => ("ok", None, None),
            Err(f) if f.rolled_back() => ("rolled-back", Some(f.gate), Some(f.reason.clone())),
            Err(f) => ("failed", Some(f.gate), Some(f.reason.clone())),
        };
        // A deploy or restart made its own release, which never served if it failed; a
        // rollback's target is a release that did serve, and stays `live`.
        let (a, r, failed) = (
            app.to_owned(),
            release.to_owned(),
            result.is_err() && kind != "rollback",
        );
        let _ = self
            .with_store(move |s| {
                if failed {
                    s.set_release_status(&a, &r, ReleaseStatus::Failed)?;
                }
                s.set_deploy_step(id, "done")?;
                s.finish_deploy(id, res, gate, reason.as_deref())
            })
            .await;
        result
    }

    async fn step(self: &Arc<Self>, r: &Rollout<'_>, step: &'static str) {
        let id = r.id;
        let _ = self.with_store(move |s| s.set_deploy_step(id, step)).await;
        self.checkpoint(step).await;
    }

    /// Test hook: with `BERTH_TEST_PAUSE_AT=STEP` in the daemon's environment, a rollout stops
    /// before STEP, creates `STATE/paused-at-STEP`, and goes on when the file is removed. Lets
    /// tests kill the daemon at a chosen step. Off (a no-op) unless that variable is set.
    async fn checkpoint(&self, step: &str) {
        if self.pause_at.as_deref() != Some(step) {
            return;
        }
        let flag = self.state.join(format!("paused-at-{step}"));
        if std::fs::write(&flag, b"").is_err() {
            return;
        }
        tracing::warn!(step, "rollout paused by BERTH_TEST_PAUSE_AT");
        while flag.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The state machine. See the module docs.
    async fn run(self: &Arc<Self>, r: &Rollout<'_>) -> Result<(), Failure> {
        let gates = Gates::of(&r.spec);
        // Secrets first: a missing one refuses the rollout before anything is built or started.
        self.ensure_secrets(&r.spec).await?;
        let env = self
            .release_env(&r.spec, &r.release)
            .await
            .map_err(|e| Failure::new("secrets", format!("{e:#}")))?;
        if r.kind == "deploy"
            && let Some(build) = &r.spec.build
        {
            self.step(r, "build").await;
            r.progress.phase("build", build.command.clone());
            let progress = r.progress;
            super::build::run(&build.command, &r.dir, &env, |line| {
                progress.send(&DeployEvent::Build { line })
            })
            .await
            .map_err(|f| Failure {
                gate: "build",
                reason: f.reason,
                hint: Some(format!(
                    "fix the build (try `{}` in the app directory) and deploy again; {}",
                    build.command,
                    self.serving(&r.app)
                )),
                tail: f.tail,
            })?;
        }

        self.certs
            .check(&r.spec, &r.dir)
            .map_err(|reason| Failure {
                gate: "tls",
                reason,
                hint: Some(self.serving(&r.app)),
                tail: Vec::new(),
            })?;

        // start: routed services first; everything when nothing runs yet.
        self.step(r, "start").await;
        let has_old = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&r.app);
        let routed = routed_services(&r.spec);
        let first = self.start_members(&r.spec, &r.release, &r.dir, &env, |s, _| {
            !has_old || routed.contains(s)
        });
        r.progress.phase(
            "start",
            format!(
                "{} instance{} of {} {}",
                first.len(),
                plural(first.len()),
                r.app,
                r.release
            ),
        );
        if let Err(f) = self.gate_ready(r, &first).await {
            self.stop_members(first).await;
            return Err(f);
        }

        self.step(r, "switch").await;
        let t = Instant::now();
        let old = self
            .switch(
                &r.app,
                Release {
                    id: r.release.clone(),
                    spec: r.spec.clone(),
                    dir: r.dir.clone(),
                    env: Arc::new(env.clone()),
                    members: first,
                },
            )
            .await;
        r.progress.phase(
            "switch",
            format!(
                "traffic on {} in {:.2} ms",
                r.release,
                t.elapsed().as_secs_f64() * 1000.0
            ),
        );

        let checked = async {
            if !gates.smoke.is_empty() {
                self.step(r, "smoke").await;
                self.smoke(r, &gates.smoke).await?;
            }
            if let Some(watch) = gates.watch {
                self.step(r, "watch").await;
                self.watch(r, watch, gates.max_error_rate).await?;
            }
            Ok(())
        };
        let mut old = old;
        let result = match checked.await {
            Ok(()) => match old.as_mut() {
                Some(old) => self.replace_workers(r, old, &env).await,
                None => Ok(()),
            },
            Err(f) => Err(f),
        };
        if let Err(mut f) = result {
            f.reason = format!("{}; {}", f.reason, self.switch_back(r, old).await);
            return Err(f);
        }

        if let Some(old) = old {
            self.step(r, "drain").await;
            r.progress.phase(
                "drain",
                format!("release {} finishes its requests and stops", old.id),
            );
            self.drain_and_stop(old.members).await;
        }
        self.prune(&r.app, gates.keep_releases).await;
        Ok(())
    }

    /// The start gate: every instance in `members` must pass readiness.
    async fn gate_ready(&self, r: &Rollout<'_>, members: &[Member]) -> Result<(), Failure> {
        let waits = members
            .iter()
            .map(|m| async move { (m, m.instance.wait_ready().await) });
        let mut failure = None;
        for (m, ready) in futures_util::future::join_all(waits).await {
            match ready {
                Ok(()) => r.progress.send(&DeployEvent::Ready {
                    service: m.service.clone(),
                    instance: m.index,
                    port: m.instance.port(),
                }),
                Err(err) if failure.is_none() => {
                    failure = Some(Failure {
                        gate: "start",
                        reason: format!(
                            "start gate: service {} instance {} of {} {}: {}",
                            m.service, m.index, r.app, r.release, err.kind
                        ),
                        hint: Some(format!(
                            "{}; see `berth logs {} {}`",
                            self.serving(&r.app),
                            r.app,
                            m.service
                        )),
                        tail: err.log_tail.clone(),
                    });
                }
                Err(_) => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Smoke checks through the proxy, as a client would see them: over HTTPS when the app's
    /// host is served there (plain HTTP would only answer the redirect).
    async fn smoke(&self, r: &Rollout<'_>, checks: &[(String, u16)]) -> Result<(), Failure> {
        let host = r
            .spec
            .routes
            .iter()
            .map(|route| route.host.as_str())
            .find(|h| !h.contains('*'))
            .unwrap_or("localhost");
        let https = match (self.https, &r.spec.tls) {
            (Some(addr), Some(_)) => self
                .certs
                .store
                .lookup(host)
                .map(|key| (loopback(addr), key.cert[0].clone())),
            _ => None,
        };
        let over = if https.is_some() { ", HTTPS" } else { "" };
        for (path, want) in checks {
            let probe = async {
                match &https {
                    Some((addr, leaf)) => https_status(*addr, leaf.clone(), host, path).await,
                    None => supervisor::http_status(loopback(self.http), host, path).await,
                }
            };
            let got = tokio::time::timeout(SMOKE_TIMEOUT, probe).await;
            let problem = match got {
                Ok(Ok(status)) if status == *want => {
                    r.progress
                        .phase("smoke", format!("GET {path}{over} answered {status}"));
                    continue;
                }
                Ok(Ok(status)) => format!("answered {status}, expected {want}"),
                Ok(Err(err)) => err,
                Err(_) => format!("no answer within {}s", SMOKE_TIMEOUT.as_secs()),
            };
            return Err(Failure {
                gate: "smoke",
                reason: format!(
                    "smoke check: GET {path} (Host: {host}{over}) on {} {}: {problem}",
                    r.app, r.release
                ),
                hint: Some(format!("see `berth logs {}`", r.app)),
                tail: self.log_tail(&r.app, &r.release).await,
            });
        }
        Ok(())
    }

    /// The watch window: any instance of the new release exiting within `window`, or the
    /// release answering more than `max_error_rate` of its requests with 5xx (judged once it
    /// has answered enough of them), fails it.
    async fn watch(
        &self,
        r: &Rollout<'_>,
        window: Duration,
        max_error_rate: f64,
    ) -> Result<(), Failure> {
        r.progress.phase(
            "watch",
            format!(
                "{}s for crashes of {} and 5xx above {}",
                window.as_secs(),
                r.release,
                percent(max_error_rate)
            ),
        );
        let mut events = self.supervisor.events();
        let deadline = tokio::time::sleep(window);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let event = tokio::select! {
                () = &mut deadline => break,
                _ = tick.tick() => {
                    self.judge_error_rate(r, max_error_rate).await?;
                    continue;
                }
                ev = events.recv() => match ev {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            };
            if event.key.app != r.app || event.key.release != r.release {
                continue;
            }
            if let EventKind::Exited(exit) = event.kind {
                return Err(Failure {
                    gate: "watch",
                    reason: format!(
                        "watch window: service {} instance {} of {} {} exited ({exit})",
                        event.key.service, event.key.instance, r.app, r.release
                    ),
                    hint: Some(format!("see `berth logs {} {}`", r.app, event.key.service)),
                    tail: self.log_tail(&r.app, &r.release).await,
                });
            }
        }
        self.judge_error_rate(r, max_error_rate).await
    }

    /// The share of 5xx among the new release's answers so far (the proxy counts them per
    /// instance from the moment the instance joined the table).
    async fn judge_error_rate(&self, r: &Rollout<'_>, max: f64) -> Result<(), Failure> {
        let outcomes: Vec<(String, u32, u64, u64)> = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&r.app) {
                Some(live) if live.id == r.release => live
                    .members
                    .iter()
                    .map(|m| {
                        let (answered, errors) = m.upstream.outcomes();
                        (m.service.clone(), m.index, answered, errors)
                    })
                    .collect(),
                _ => return Ok(()),
            }
        };
        let answered: u64 = outcomes.iter().map(|o| o.2).sum();
        let errors: u64 = outcomes.iter().map(|o| o.3).sum();
        if answered < DeploySpec::ERROR_RATE_MIN_REQUESTS
            || (errors as f64) <= max * answered as f64
        {
            return Ok(());
        }
        let worst = outcomes
            .iter()
            .max_by_key(|o| o.3)
            .map(|(service, index, a, e)| {
                format!("; most from service {service} instance {index} ({e} of {a})")
            })
            .unwrap_or_default();
        Err(Failure {
            gate: "watch",
            reason: format!(
                "watch window: {errors} of {answered} requests to {} {} answered 5xx ({}), above max_error_rate {}{worst}",
                r.app,
                r.release,
                percent(errors as f64 / answered as f64),
                percent(max)
            ),
            hint: Some(format!(
                "see `berth logs {}`; raise [deploy] max_error_rate if this rate is normal for the app",
                r.app
            )),
            tail: self.log_tail(&r.app, &r.release).await,
        })
    }

    /// Replace the old release's unrouted instances one at a time: start the new one, wait for
    /// it to be ready, stop the old one. Instances the new release no longer has are stopped.
    async fn replace_workers(
        self: &Arc<Self>,
        r: &Rollout<'_>,
        old: &mut Release,
        env: &BTreeMap<String, String>,
    ) -> Result<(), Failure> {
        let routed = routed_services(&r.spec);
        let workers: Vec<(String, u32)> = r
            .spec
            .services
            .iter()
            .filter(|(name, _)| !routed.contains(name.as_str()))
            .flat_map(|(name, s)| (0..s.instances).map(move |i| (name.clone(), i)))
            .collect();
        if !workers.is_empty() {
            self.step(r, "workers").await;
        }
        for (service, index) in workers {
            let mut new = self.start_members(&r.spec, &r.release, &r.dir, env, |s, i| {
                s == service && i == index
            });
            if let Err(mut f) = self.gate_ready(r, &new).await {
                f.gate = "workers";
                self.stop_members(new).await;
                return Err(f);
            }
            r.progress
                .phase("workers", format!("{service}.{index} replaced"));
            if let Some(running) = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&r.app)
            {
                running.members.append(&mut new);
            }
            if let Some(pos) = old
                .members
                .iter()
                .position(|m| m.service == service && m.index == index)
            {
                let replaced = old.members.remove(pos);
                self.stop_members(vec![replaced]).await;
            }
        }
        // What is left of the old release: its routed instances, drained later, and workers the
        // new release no longer has, stopped now.
        let old_routed = routed_services(&old.spec);
        let (keep, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut old.members)
            .into_iter()
            .partition(|m| old_routed.contains(m.service.as_str()));
        old.members = keep;
        self.stop_members(stale).await;
        Ok(())
    }

    /// Put `old` back in service after a failed check: restart any of its instances that were
    /// already replaced, switch to it, stop the new release. Returns what happened, in words.
    async fn switch_back(self: &Arc<Self>, r: &Rollout<'_>, old: Option<Release>) -> String {
        let failed = match old {
            Some(mut old) => {
                let present: BTreeSet<(String, u32)> = old
                    .members
                    .iter()
                    .map(|m| (m.service.clone(), m.index))
                    .collect();
                let (spec, id, dir, env) = (
                    old.spec.clone(),
                    old.id.clone(),
                    old.dir.clone(),
                    old.env.clone(),
                );
                old.members
                    .extend(self.start_members(&spec, &id, &dir, &env, |s, i| {
                        !present.contains(&(s.to_owned(), i))
                    }));
                r.progress
                    .phase("rollback", format!("switching {} back to {id}", r.app));
                let failed = self.switch(&r.app, old).await;
                (failed, format!("rolled back to {id}, which serves again"))
            }
            None => {
                let failed = self.take_app(&r.app).await;
                (
                    failed,
                    format!("{} was not serving before, and is stopped", r.app),
                )
            }
        };
        if let Some(new) = failed.0 {
            self.stop_members(new.members).await;
        }
        failed.1
    }

    /// The last log lines of one release of an app, for failure messages.
    async fn log_tail(&self, app: &str, release: &str) -> Vec<String> {
        let (dir, release) = (self.log_dir(app), release.to_owned());
        tokio::task::spawn_blocking(move || {
            let lines = supervisor::logs::read(&dir, None, None).unwrap_or_default();
            let mine: Vec<String> = lines
                .iter()
                .filter(|l| l.release == release)
                .map(ToString::to_string)
                .collect();
            mine[mine.len().saturating_sub(20)..].to_vec()
        })
        .await
        .unwrap_or_default()
    }

    /// Delete the trees of releases beyond the newest `keep` (never the live one).
    async fn prune(self: &Arc<Self>, app: &str, keep: usize) {
        let a = app.to_owned();
        let Ok((current, releases)) = self
            .with_store(move |s| Ok((s.app(&a)?, s.releases(&a)?)))
            .await
        else {
            return;
        };
        let current = current.and_then(|c| c.current_release);
        for r in releases.iter().skip(keep) {
            if Some(&r.id) == current.as_ref() || r.status == ReleaseStatus::Pruned {
                continue;
            }
            let dir = self.release_dir(app, &r.id);
            if let Err(err) = std::fs::remove_dir_all(&dir)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(app, release = %r.id, error = %err, "prune release");
                continue;
            }
            let (a, id) = (app.to_owned(), r.id.clone());
            let _ = self
                .with_store(move |s| s.set_release_status(&a, &id, ReleaseStatus::Pruned))
                .await;
        }
    }

    /// "release rN keeps serving" or "nothing was serving", for hints.
    fn serving(&self, app: &str) -> String {
        match self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
        {
            Some(r) => format!("release {} keeps serving", r.id),
            None => "nothing was serving before".to_owned(),
        }
    }
}

impl Failure {
    fn rolled_back(&self) -> bool {
        matches!(self.gate, "smoke" | "watch" | "workers")
    }
}

fn busy(app: &str) -> Failure {
    Failure::new(
        "start",
        format!("a deploy or rollback of {app} is already running"),
    )
    .hint(format!(
        "wait for it (`berth status {app}` shows it), or pass --wait to queue behind it"
    ))
}

fn outcome(
    app: String,
    release: String,
    result: Result<(), Failure>,
    started: Instant,
) -> DeployOutcome {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => DeployOutcome {
            ok: true,
            app,
            release,
            gate: None,
            reason: None,
            hint: None,
            log_tail: vec![],
            elapsed_ms,
        },
        Err(f) => DeployOutcome {
            ok: false,
            app,
            release,
            gate: Some(f.gate.to_owned()),
            reason: Some(f.reason),
            hint: f.hint,
            log_tail: f.tail,
            elapsed_ms,
        },
    }
}

/// Recreate the tree `src` at `dst` with hard links (copies where linking fails): a new release
/// of the same files costs no space and stays independent of the old one's deletion.
fn link_tree(src: &std::path::Path, dst: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// Services that some route sends traffic to.
fn routed_services(spec: &AppSpec) -> BTreeSet<&str> {
    spec.routes
        .iter()
        .filter_map(|r| match &r.target {
            RouteTarget::Service(s) => Some(s.as_str()),
            RouteTarget::Static { .. } => None,
        })
        .collect()
}

/// The proxy's address as a local client reaches it (0.0.0.0 → 127.0.0.1).
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `GET path` over TLS to berth's own HTTPS listener, which must present `leaf` (the
/// certificate berth serves for `host`).
async fn https_status(
    addr: SocketAddr,
    leaf: tls::rustls::pki_types::CertificateDer<'static>,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let config = tls::pinned_client_config(leaf).map_err(|e| format!("TLS setup: {e}"))?;
    let name = tls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("server name {host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    supervisor::http_status_on(stream, host, path).await
}

/// `0.053` → `"5.3%"`.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}
