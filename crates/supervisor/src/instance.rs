//! One supervised instance: the handle ([`Instance`]) and the task that runs it ([`run`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::adopt::Identity;
use crate::capture::{self, Tail};
use crate::command;
use crate::logs::{self, Record};
use crate::memory;
use crate::pipes::LogPipes;
use crate::probe;
use crate::process::{Proc, release, spawn_attempt, take_over};
use crate::types::*;

/// Handle to a supervised instance. Cheap to clone.
#[derive(Clone)]
pub struct Instance {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    key: InstanceKey,
    port: u16,
    state: watch::Sender<InstanceState>,
    status: Mutex<Dynamic>,
    first: watch::Sender<Option<Result<(), StartFailure>>>,
    cancel: CancellationToken,
    /// Supervision ends, the process is left running for another daemon ([`Instance::release`]).
    handover: CancellationToken,
    tail: Arc<Tail>,
}

#[derive(Default)]
pub(crate) struct Dynamic {
    pub pid: Option<u32>,
    pub restarts: u32,
    pub started_at: Option<SystemTime>,
    pub last_exit: Option<Exit>,
    pub crash_loop: bool,
    pub limits: Vec<crate::cgroup::LimitStatus>,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("key", &self.inner.key)
            .field("port", &self.inner.port)
            .field("state", &self.state())
            .finish()
    }
}

impl Instance {
    pub(crate) fn new(spec: &ProcessSpec) -> Instance {
        Instance {
            inner: Arc::new(Inner {
                key: InstanceKey {
                    app: spec.app.clone(),
                    service: spec.service.clone(),
                    release: spec.release.clone(),
                    instance: spec.instance,
                },
                port: spec.port,
                state: watch::Sender::new(InstanceState::Starting),
                status: Mutex::new(Dynamic::default()),
                first: watch::Sender::new(None),
                cancel: CancellationToken::new(),
                handover: CancellationToken::new(),
                tail: Arc::new(Tail::new()),
            }),
        }
    }

    pub fn key(&self) -> &InstanceKey {
        &self.inner.key
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The outcome of the *first* start attempt: `Ok` once readiness passed, or why it did not.
    /// Later restarts do not change it (watch [`Instance::watch`] or the events for those).
    #[allow(clippy::result_large_err)] // rare path; boxing would only make every caller unbox
    pub async fn wait_ready(&self) -> Result<(), StartFailure> {
        let mut rx = self.inner.first.subscribe();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| Err(self.failure(StartFailureKind::Stopped)))
    }

    /// The current state, without reading /proc.
    pub fn state(&self) -> InstanceState {
        *self.inner.state.borrow()
    }

    /// The process group of the current process, if one runs.
    pub fn pgid(&self) -> Option<i32> {
        self.inner.status.lock().unwrap().pid.map(|p| p as i32)
    }

    /// Current status; reads /proc for memory, so it costs a directory scan.
    pub fn status(&self) -> InstanceStatus {
        let mut status = self.status_without_memory();
        status.memory_rss = status.pgid.and_then(memory::group_rss);
        status
    }

    /// Current status but `memory_rss` (None): no /proc scan. [`crate::group_usage`] reads
    /// every group's memory in one pass.
    pub fn status_without_memory(&self) -> InstanceStatus {
        let state = *self.inner.state.borrow();
        let d = self.inner.status.lock().unwrap();
        let pgid = d.pid.map(|p| p as i32);
        InstanceStatus {
            key: self.inner.key.clone(),
            pid: d.pid,
            pgid,
            port: self.inner.port,
            state,
            restarts: d.restarts,
            started_at: d.started_at,
            memory_rss: None,
            last_exit: d.last_exit,
            crash_loop: d.crash_loop,
            limits: d.limits.clone(),
            warnings: d.warnings.clone(),
        }
    }

    pub fn watch(&self) -> watch::Receiver<InstanceState> {
        self.inner.state.subscribe()
    }

    /// SIGTERM to the process group, SIGKILL after `stop_timeout`; never restarted afterwards.
    /// Returns once the process is reaped. Idempotent.
    pub async fn stop(&self) {
        self.inner.cancel.cancel();
        let mut rx = self.inner.state.subscribe();
        let _ = rx.wait_for(|s| *s == InstanceState::Stopped).await;
    }

    /// Stop supervising without touching the process: no signal, its log pipes left for the
    /// next daemon to read (a restart or an upgrade of berth). Returns once the supervision
    /// task has ended; the state is then `Stopped` here, while the process runs on.
    pub async fn release(&self) {
        self.inner.handover.cancel();
        let mut rx = self.inner.state.subscribe();
        let _ = rx.wait_for(|s| *s == InstanceState::Stopped).await;
    }

    /// Whether supervision ends, by a stop or a release.
    fn ending(&self) -> bool {
        self.inner.cancel.is_cancelled() || self.inner.handover.is_cancelled()
    }

    fn failure(&self, kind: StartFailureKind) -> StartFailure {
        StartFailure {
            key: self.inner.key.clone(),
            kind,
            log_tail: self.inner.tail.lines(),
        }
    }

    fn set_state(&self, s: InstanceState) {
        self.inner.state.send_replace(s);
    }

    #[allow(clippy::result_large_err)]
    fn set_first(&self, outcome: Result<(), StartFailure>) {
        self.inner.first.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(outcome);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Dynamic)) {
        f(&mut self.inner.status.lock().unwrap());
    }
}

/// What the run task needs from the supervisor.
pub(crate) struct Ctx {
    pub opts: Arc<SupervisorOptions>,
    pub events: broadcast::Sender<Event>,
    pub log_tx: mpsc::Sender<Record>,
    /// The supervisor's list of live instances; the instance removes itself when stopped.
    pub registry: Weak<Mutex<Vec<Instance>>>,
}

impl Ctx {
    fn emit(&self, inst: &Instance, kind: EventKind) {
        let _ = self.events.send(Event {
            key: inst.inner.key.clone(),
            kind,
        });
    }
}

/// Marks the instance stopped however the task ends (including a panic), killing what is left.
/// Order matters: deregister and emit `Stopped` before the state flips, because
/// [`Instance::stop`] returns on the state.
struct Finish<'a>(&'a Ctx, &'a Instance);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let Finish(ctx, inst) = *self;
        let pid = inst
            .inner
            .status
            .lock()
            .map(|mut d| d.pid.take())
            .ok()
            .flatten();
        if let Some(pid) = pid {
            command::signal_group(pid as i32, Signal::SIGKILL);
        }
        if let Some(registry) = ctx.registry.upgrade()
            && let Ok(mut list) = registry.lock()
        {
            list.retain(|i| !Arc::ptr_eq(&i.inner, &inst.inner));
        }
        inst.set_first(Err(inst.failure(StartFailureKind::Stopped)));
        ctx.emit(inst, EventKind::Stopped);
        inst.set_state(InstanceState::Stopped);
    }
}

/// How one attempt ended.
pub(crate) struct Attempt {
    /// How long it was ready, if it ever was.
    pub ready_for: Option<Duration>,
    pub stopped: bool,
}

/// Supervise `spec` until [`Instance::stop`] (or [`Instance::release`]). With `adopt`, the
/// first attempt takes over that process instead of spawning one. Spawned as a task by the
/// supervisor.
pub(crate) async fn run(ctx: Ctx, inst: Instance, spec: ProcessSpec, mut adopt: Option<Identity>) {
    let pipes = LogPipes::new(&ctx.opts.pipe_root, &inst.inner.key);
    let finish = Finish(&ctx, &inst);
    let (min, max) = ctx.opts.restart_backoff;
    let mut failures: u32 = 0;
    let mut never_ready: u32 = 0;
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        let attempt = run_once(&ctx, &inst, &spec, &pipes, adopt.take()).await;
        if attempt.stopped || inst.ending() {
            break;
        }
        match attempt.ready_for {
            Some(d) if d >= ctx.opts.backoff_reset_after => {
                failures = 0;
                never_ready = 0;
                recent.clear();
            }
            Some(_) => never_ready = 0,
            None => never_ready += 1,
        }
        let now = Instant::now();
        recent.push_back(now);
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > ctx.opts.crash_loop_window)
        {
            recent.pop_front();
        }
        let threshold = ctx.opts.crash_loop_restarts.max(1);
        let looping = recent.len() as u32 >= threshold || never_ready >= threshold;
        let mut newly_looping = false;
        let mut crash_loop = false;
        let mut restarts = 0;
        inst.update(|d| {
            newly_looping = looping && !d.crash_loop;
            d.crash_loop |= looping;
            crash_loop = d.crash_loop;
            d.restarts += 1;
            restarts = d.restarts;
        });
        if newly_looping {
            tracing::warn!(instance = %inst.inner.key, restarts, "crash loop: retrying at the maximum backoff");
            ctx.emit(&inst, EventKind::CrashLoop);
        }
        let delay = if crash_loop {
            max
        } else {
            min.saturating_mul(1u32 << failures.min(20)).min(max)
        };
        failures = failures.saturating_add(1);
        inst.set_state(if crash_loop {
            InstanceState::CrashLoop
        } else {
            InstanceState::Backoff
        });
        ctx.emit(
            &inst,
            EventKind::Restarting {
                attempt: restarts,
                delay,
            },
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inst.inner.cancel.cancelled() => break,
            _ = inst.inner.handover.cancelled() => break,
        }
    }
    if !inst.inner.handover.is_cancelled() {
        pipes.remove();
    }
    drop(finish);
}

enum Start {
    Stop,
    Release,
    Exited(Exit),
    Ready,
    NotReady(Option<String>),
}

enum Live {
    Stop,
    Release,
    Exited(Exit),
    Unhealthy(String),
}

async fn run_once(
    ctx: &Ctx,
    inst: &Instance,
    spec: &ProcessSpec,
    pipes: &LogPipes,
    adopt: Option<Identity>,
) -> Attempt {
    inst.set_state(InstanceState::Starting);
    let adopted = adopt.and_then(|who| take_over(inst, spec, pipes, who));
    let was_adopted = adopted.is_some();
    let (mut proc, ends, instance_cgroup) = match adopted {
        Some((adopted, ends, cgroup)) => (Proc::Adopted(adopted), ends, cgroup),
        None => match spawn_attempt(inst, spec, pipes).await {
            Ok(spawned) => spawned,
            Err(msg) => {
                tracing::error!(instance = %inst.inner.key, error = %msg, "cannot spawn instance");
                inst.set_state(InstanceState::Failed);
                inst.set_first(Err(inst.failure(StartFailureKind::Spawn(msg))));
                return Attempt {
                    ready_for: None,
                    stopped: false,
                };
            }
        },
    };
    let pid = proc.id();
    // An adopted process keeps the start it had: uptime is the app's, not this daemon's.
    let started_at = match was_adopted {
        true => memory::started_at(pid).unwrap_or_else(SystemTime::now),
        false => SystemTime::now(),
    };
    inst.update(|d| {
        d.pid = Some(pid);
        d.started_at = Some(started_at);
    });
    let how = if was_adopted { "adopted" } else { "started" };
    tracing::info!(instance = %inst.inner.key, pid, port = spec.port, "instance {how}");
    ctx.emit(inst, EventKind::Started { pid });
    let label = logs::label(&spec.service, spec.instance, &spec.release);
    let readers = capture::start(ends, label.into(), &inst.inner.tail, &ctx.log_tx);

    let started = Instant::now();
    let start = tokio::select! {
        biased;
        _ = inst.inner.cancel.cancelled() => Start::Stop,
        _ = inst.inner.handover.cancelled() => Start::Release,
        st = proc.wait() => Start::Exited(st),
        r = probe::readiness(spec, started, was_adopted) => match r {
            Ok(()) => Start::Ready,
            Err(e) => Start::NotReady(e),
        },
    };

    let mut ready_for = None;
    let status = match start {
        Start::Stop => {
            inst.set_state(InstanceState::Stopping);
            Some(proc.terminate(spec.stop_timeout).await)
        }
        Start::Release => return release(inst, proc, readers, instance_cgroup).await,
        Start::Exited(exit) => {
            readers.drain().await;
            inst.set_first(Err(inst.failure(StartFailureKind::Exited(exit))));
            proc.kill();
            Some(exit)
        }
        Start::NotReady(last_error) if was_adopted => {
            tracing::warn!(instance = %inst.inner.key, pid, error = last_error.as_deref().unwrap_or(""), "adopted instance is not healthy: replacing it");
            Some(proc.terminate(spec.stop_timeout).await)
        }
        Start::NotReady(last_error) => {
            tracing::warn!(instance = %inst.inner.key, error = last_error.as_deref().unwrap_or(""), "instance not ready before its start deadline");
            inst.set_first(Err(inst.failure(StartFailureKind::NotReady {
                deadline: spec.start_deadline,
                last_error,
            })));
            Some(proc.terminate(spec.stop_timeout).await)
        }
        Start::Ready => {
            let ready_at = Instant::now();
            inst.set_state(InstanceState::Ready);
            inst.set_first(Ok(()));
            ctx.emit(inst, EventKind::Ready);
            tracing::info!(instance = %inst.inner.key, after = ?started.elapsed(), "instance ready");
            let reset = tokio::time::sleep(ctx.opts.backoff_reset_after);
            tokio::pin!(reset);
            let mut reset_done = false;
            let live = loop {
                tokio::select! {
                    biased;
                    _ = inst.inner.cancel.cancelled() => break Live::Stop,
                    _ = inst.inner.handover.cancelled() => break Live::Release,
                    st = proc.wait() => break Live::Exited(st),
                    e = liveness(ctx, inst, spec) => break Live::Unhealthy(e),
                    _ = &mut reset, if !reset_done => {
                        reset_done = true;
                        inst.update(|d| d.crash_loop = false);
                    }
                }
            };
            ready_for = Some(ready_at.elapsed());
            match live {
                Live::Stop => {
                    inst.set_state(InstanceState::Stopping);
                    Some(proc.terminate(spec.stop_timeout).await)
                }
                Live::Release => return release(inst, proc, readers, instance_cgroup).await,
                Live::Exited(exit) => {
                    proc.kill();
                    Some(exit)
                }
                Live::Unhealthy(e) => {
                    tracing::warn!(instance = %inst.inner.key, error = %e, "instance failed liveness; restarting");
                    Some(proc.terminate(spec.stop_timeout).await)
                }
            }
        }
    };
    if let Some(exit) = status {
        tracing::info!(instance = %inst.inner.key, pid, %exit, "instance exited");
        ctx.emit(inst, EventKind::Exited(exit));
    }
    inst.update(|d| {
        d.pid = None;
        d.last_exit = status.or(d.last_exit);
    });
    drop(instance_cgroup);
    Attempt {
        ready_for,
        stopped: inst.ending(),
    }
}

/// Liveness after ready: `unhealthy_after` failures in a row → Unready; back to Ready after
/// `healthy_after` passes; returns (meaning "restart it") after `unhealthy_after` more failures
/// while Unready. Never returns without a probe.
async fn liveness(ctx: &Ctx, inst: &Instance, spec: &ProcessSpec) -> String {
    let Some(probe) = &spec.health else {
        return std::future::pending().await;
    };
    let limit = probe.unhealthy_after.max(1);
    let needed = probe.healthy_after.max(1);
    let (mut fails, mut passes) = (0u32, 0u32);
    let mut interval =
        tokio::time::interval_at(tokio::time::Instant::now() + probe.interval, probe.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match probe::check(spec.port, &probe.path, probe.timeout).await {
            Ok(()) => {
                fails = 0;
                passes += 1;
                if inst.state() == InstanceState::Unready && passes >= needed {
                    inst.set_state(InstanceState::Ready);
                    ctx.emit(inst, EventKind::Ready);
                    tracing::info!(instance = %inst.inner.key, "instance healthy again");
                }
            }
            Err(e) => {
                passes = 0;
                fails += 1;
                if inst.state() == InstanceState::Ready && fails >= limit {
                    fails = 0;
                    inst.set_state(InstanceState::Unready);
                    ctx.emit(inst, EventKind::Unready { reason: e.clone() });
                    tracing::warn!(instance = %inst.inner.key, error = %e, "instance unready");
                } else if inst.state() == InstanceState::Unready && fails >= limit {
                    return e;
                }
            }
        }
    }
}
