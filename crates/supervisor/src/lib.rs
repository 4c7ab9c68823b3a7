//! Runs each service instance as a supervised child process.
//!
//! The daemon hands over a [`ProcessSpec`]; [`Supervisor::start`] spawns it and supervises it
//! until [`Instance::stop`]: readiness and liveness probes, restart with exponential backoff,
//! crash-loop detection, graceful stop of the whole process group, `memory_max`, and log
//! capture with rotation ([`logs`]). This crate knows nothing about berth.toml, the store,
//! deploys or the proxy.
//!
//! It also owns the one way berth starts any process, [`command::Command`]: instances, build
//! steps, hooks and backups all go through it.
//!
//! Invariants:
//! - every child is its own session and process group (pgid = pid), with a cleared environment
//!   plus [`command::base_env`]; an instance is started with `/bin/sh -c` in the release
//!   directory, stdin `/dev/null`;
//! - short jobs (builds, hooks, tools) die with the daemon, even on `kill -9`:
//!   `PR_SET_PDEATHSIG(SIGKILL)`, set from a dedicated spawner thread that lives as long as the
//!   process. Grandchildren are not covered: the daemon records their groups and sweeps with
//!   [`kill_stale_group`] at start;
//! - instances outlive the daemon (no death signal; stdout/stderr are FIFOs that keep a
//!   reader, `pipes.rs`): the next daemon takes each over with [`Supervisor::adopt`] when its
//!   [`Identity`] (pid = pgid, start time) still matches, watching it through a pidfd; a
//!   daemon that hands over calls [`Supervisor::release_all`], which leaves them untouched;
//! - nothing is left behind by an attempt: after the leader exits, the rest of its group is
//!   SIGKILLed before a restart, and every child is reaped;
//! - the supervisor must run inside a tokio runtime ([`Supervisor::start`] spawns tasks).

mod adopt;
mod capture;
mod cgroup;
pub mod command;
mod confine;
mod instance;
pub mod logs;
mod memory;
mod pipes;
mod probe;
mod process;
mod spawn;
mod types;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

pub use adopt::{AdoptError, Identity, become_subreaper};
pub use cgroup::{Enforcement, LimitStatus, Limits};
pub use confine::{Confinement, Rlimits, RunAs};
pub use instance::Instance;
pub use memory::{ProcStat, Usage, group_usage, proc_stat};
pub use probe::{http_status, http_status_on};
pub use types::{
    Event, EventKind, Exit, InstanceKey, InstanceState, InstanceStatus, Probe, ProcessSpec,
    StartFailure, StartFailureKind, SupervisorOptions,
};

/// Supervises many instances. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

struct Shared {
    opts: Arc<SupervisorOptions>,
    events: broadcast::Sender<Event>,
    instances: Arc<Mutex<Vec<Instance>>>,
    /// One log writer per `(app, service)`, shared by its instances.
    writers: Mutex<HashMap<(String, String), mpsc::Sender<logs::Record>>>,
}

impl Supervisor {
    pub fn new(opts: SupervisorOptions) -> Self {
        Supervisor {
            shared: Arc::new(Shared {
                opts: Arc::new(opts),
                events: broadcast::channel(1024).0,
                instances: Arc::new(Mutex::new(Vec::new())),
                writers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Spawn `spec` and supervise it until [`Instance::stop`]. Returns at once; use
    /// [`Instance::wait_ready`] for the outcome of the start. Must be called within a tokio
    /// runtime (any flavour).
    pub fn start(&self, spec: ProcessSpec) -> Instance {
        self.run(spec, None)
    }

    /// Take over the process `who` that a previous daemon started for `spec` (same port,
    /// same log pipes) and supervise it like [`Supervisor::start`]'s: it is kept if it is
    /// still that process and passes one probe within 3 s; otherwise it is stopped and a new
    /// one started (the restart counts). Returns at once.
    pub fn adopt(&self, spec: ProcessSpec, who: Identity) -> Instance {
        self.run(spec, Some(who))
    }

    fn run(&self, spec: ProcessSpec, adopt: Option<Identity>) -> Instance {
        let inst = Instance::new(&spec);
        let ctx = instance::Ctx {
            opts: self.shared.opts.clone(),
            events: self.shared.events.clone(),
            log_tx: self.writer(&spec.app, &spec.service),
            registry: Arc::downgrade(&self.shared.instances),
        };
        self.shared.instances.lock().unwrap().push(inst.clone());
        tokio::spawn(instance::run(ctx, inst.clone(), spec, adopt));
        inst
    }

    /// Stop supervising every instance and leave the processes running, for the next
    /// daemon to adopt (see [`Instance::release`]).
    pub async fn release_all(&self) {
        let all = self.instances();
        let releases = all.iter().map(Instance::release);
        for r in releases.collect::<Vec<_>>() {
            r.await;
        }
    }

    /// Lifecycle events of every instance. Slow receivers lose the oldest events (lagged).
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Instances not yet stopped, in start order.
    pub fn instances(&self) -> Vec<Instance> {
        self.shared.instances.lock().unwrap().clone()
    }

    /// Stop every instance concurrently (daemon shutdown).
    pub async fn shutdown(&self) {
        let all = self.instances();
        let mut set = tokio::task::JoinSet::new();
        for inst in all {
            set.spawn(async move { inst.stop().await });
        }
        while set.join_next().await.is_some() {}
    }

    fn writer(&self, app: &str, service: &str) -> mpsc::Sender<logs::Record> {
        let mut writers = self.shared.writers.lock().unwrap();
        writers
            .entry((app.to_owned(), service.to_owned()))
            .or_insert_with(|| {
                let o = &self.shared.opts;
                logs::spawn_writer(
                    o.log_root.join(app).join(service),
                    o.log_max_bytes,
                    o.log_keep,
                )
            })
            .clone()
    }
}

/// A free TCP port on 127.0.0.1 for an instance's `PORT`, chosen outside the kernel's
/// ephemeral range: a port from that range (what binding port 0 gives) can be taken as the
/// source port of any outgoing connection, the proxy's own to the upstreams included, in the
/// moment between choosing it and the app binding it. Ports are handed out in turn from a
/// random start, so two instances started together never get the same one.
pub fn free_port() -> io::Result<u16> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let (low, high) = ephemeral_range();
    // 10000 up to the ephemeral range, and above it.
    let below = usize::from(low.saturating_sub(10_000));
    let above = usize::from(u16::MAX - high);
    let count = below + above;
    if count < 1000 {
        // The ephemeral range covers (nearly) everything: fall back to the kernel's choice.
        return Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port());
    }
    let _ = NEXT.compare_exchange(
        usize::MAX,
        random_start(count),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..count {
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % count;
        let port = if i < below {
            10_000 + i as u16
        } else {
            high + 1 + (i - below) as u16
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free port on 127.0.0.1 outside the ephemeral range",
    ))
}

/// `net.ipv4.ip_local_port_range`, or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(low, high)| low <= high)
        .unwrap_or((32_768, 60_999))
}

fn random_start(count: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() % count as u64) as usize
}

/// SIGKILL process group `pgid` if it still exists. For the daemon's start-up sweep of groups
/// recorded by a previous run. The caller must know the group is one of ours: a pgid can be
/// reused by an unrelated session after a reboot. Returns whether a group was signalled.
pub fn kill_stale_group(pgid: i32) -> bool {
    let killed = command::signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
    if killed {
        tracing::warn!(pgid, "killed process group left from a previous run");
    }
    killed
}
