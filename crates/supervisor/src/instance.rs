//! One supervised instance: the handle ([`Instance`]) and the task that runs it ([`run`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::capture::{self, Tail};
use crate::cgroup;
use crate::command::{self, Child};
use crate::logs::{self, Record};
use crate::memory;
use crate::probe;
use crate::spawn;
use crate::types::*;

/// Without a probe, an instance is ready once it has been running this long.
const READY_WITHOUT_PROBE: Duration = Duration::from_secs(1);

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
    tail: Arc<Tail>,
}

#[derive(Default)]
struct Dynamic {
    pid: Option<u32>,
    restarts: u32,
    started_at: Option<SystemTime>,
    last_exit: Option<Exit>,
    crash_loop: bool,
    limits: Vec<crate::cgroup::LimitStatus>,
    warnings: Vec<String>,
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

    fn update(&self, f: impl FnOnce(&mut Dynamic)) {
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
struct Attempt {
    /// How long it was ready, if it ever was.
    ready_for: Option<Duration>,
    stopped: bool,
}

/// Supervise `spec` until [`Instance::stop`]. Spawned as a task by the supervisor.
pub(crate) async fn run(ctx: Ctx, inst: Instance, spec: ProcessSpec) {
    let finish = Finish(&ctx, &inst);
    let (min, max) = ctx.opts.restart_backoff;
    let mut failures: u32 = 0;
    let mut never_ready: u32 = 0;
    let mut recent: VecDeque<Instant> = VecDeque::new();
    loop {
        let attempt = run_once(&ctx, &inst, &spec).await;
        if attempt.stopped || inst.inner.cancel.is_cancelled() {
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
        }
    }
    drop(finish);
}

enum Start {
    Stop,
    Exited(std::io::Result<std::process::ExitStatus>),
    Ready,
    NotReady(Option<String>),
}

enum Live {
    Stop,
    Exited(std::io::Result<std::process::ExitStatus>),
    Unhealthy(String),
}

async fn run_once(ctx: &Ctx, inst: &Instance, spec: &ProcessSpec) -> Attempt {
    inst.set_state(InstanceState::Starting);
    // Limits: the instance's cgroup where berth has one, else rlimits (see cgroup.rs).
    let name = format!(
        "{}-{}-{}-{}",
        spec.app, spec.service, spec.instance, spec.release
    );
    let plan = cgroup::plan(&name, spec.limits);
    let mut confinement = spec.confinement.clone();
    confinement.cgroup = plan.cgroup.as_ref().map(|c| c.dir().to_owned());
    if plan.address_space.is_some() {
        confinement.limits.address_space = plan.address_space;
    }
    if let Some(max) = plan.processes {
        let own = confinement.limits.processes.unwrap_or(u64::MAX);
        confinement.limits.processes = Some(own.min(max));
    }
    let instance_cgroup = plan.cgroup;
    let limits = plan.report;
    let warnings = Vec::new();

    let mut child = match spawn::command(spec, confinement).spawn().await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{e} (cwd {})", spec.cwd.display());
            tracing::error!(instance = %inst.inner.key, error = %msg, "cannot spawn instance");
            inst.update(|d| {
                d.warnings = warnings;
                d.limits = limits;
            });
            inst.set_state(InstanceState::Failed);
            inst.set_first(Err(inst.failure(StartFailureKind::Spawn(msg))));
            return Attempt {
                ready_for: None,
                stopped: false,
            };
        }
    };
    let pid = child.id();
    inst.update(|d| {
        d.pid = Some(pid);
        d.started_at = Some(SystemTime::now());
        d.warnings = warnings;
        d.limits = limits;
    });
    tracing::info!(instance = %inst.inner.key, pid, port = spec.port, "instance started");
    ctx.emit(inst, EventKind::Started { pid });
    let label = logs::label(&spec.service, spec.instance, &spec.release);
    let readers = capture::start(&mut child, label.into(), &inst.inner.tail, &ctx.log_tx);

    let started = Instant::now();
    let start = tokio::select! {
        biased;
        _ = inst.inner.cancel.cancelled() => Start::Stop,
        st = child.wait() => Start::Exited(st),
        r = readiness(spec, started) => match r {
            Ok(()) => Start::Ready,
            Err(e) => Start::NotReady(e),
        },
    };

    let mut ready_for = None;
    let status = match start {
        Start::Stop => {
            inst.set_state(InstanceState::Stopping);
            terminate(&mut child, spec.stop_timeout).await
        }
        Start::Exited(st) => {
            readers.drain().await;
            let exit = exit_of(st);
            inst.set_first(Err(inst.failure(StartFailureKind::Exited(exit))));
            child.kill();
            Some(exit)
        }
        Start::NotReady(last_error) => {
            tracing::warn!(instance = %inst.inner.key, error = last_error.as_deref().unwrap_or(""), "instance not ready before its start deadline");
            inst.set_first(Err(inst.failure(StartFailureKind::NotReady {
                deadline: spec.start_deadline,
                last_error,
            })));
            terminate(&mut child, spec.stop_timeout).await
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
                    st = child.wait() => break Live::Exited(st),
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
                    terminate(&mut child, spec.stop_timeout).await
                }
                Live::Exited(st) => {
                    child.kill();
                    Some(exit_of(st))
                }
                Live::Unhealthy(e) => {
                    tracing::warn!(instance = %inst.inner.key, error = %e, "instance failed liveness; restarting");
                    terminate(&mut child, spec.stop_timeout).await
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
        stopped: inst.inner.cancel.is_cancelled(),
    }
}

fn exit_of(st: std::io::Result<std::process::ExitStatus>) -> Exit {
    match st {
        Ok(st) => Exit::from_status(st),
        Err(_) => Exit::Code(-1),
    }
}

/// Stop the attempt's process group (see [`Child::terminate`]).
async fn terminate(child: &mut Child, timeout: Duration) -> Option<Exit> {
    Some(exit_of(child.terminate(timeout).await))
}

/// First readiness: `healthy_after` passes in a row before the start deadline.
/// `Err` carries the last probe error.
async fn readiness(spec: &ProcessSpec, started: Instant) -> Result<(), Option<String>> {
    let deadline = tokio::time::Instant::from_std(started + spec.start_deadline);
    let Some(probe) = &spec.health else {
        if spec.start_deadline < READY_WITHOUT_PROBE {
            tokio::time::sleep_until(deadline).await;
            return Err(Some(format!(
                "start deadline is shorter than the {READY_WITHOUT_PROBE:?} a service without a health probe must run"
            )));
        }
        tokio::time::sleep(READY_WITHOUT_PROBE).await;
        return Ok(());
    };
    let needed = probe.healthy_after.max(1);
    let mut passes = 0;
    let mut last_error = None;
    loop {
        let next = tokio::time::Instant::now() + probe.interval;
        match tokio::time::timeout_at(
            deadline,
            probe::check(spec.port, &probe.path, probe.timeout),
        )
        .await
        {
            Err(_) => return Err(last_error),
            Ok(Ok(())) => {
                passes += 1;
                if passes >= needed {
                    return Ok(());
                }
            }
            Ok(Err(e)) => {
                passes = 0;
                last_error = Some(e);
            }
        }
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(last_error);
        }
        tokio::time::sleep_until(next).await;
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
