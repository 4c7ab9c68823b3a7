//! The process of one attempt of an instance: spawned by this daemon ([`Child`]), or adopted
//! from a previous daemon ([`Adopted`]). The attempt's code does not care which.

use std::time::Duration;

use crate::adopt::{Adopted, Identity};
use crate::capture;
use crate::cgroup;
use crate::command::Child;
use crate::instance::Instance;
use crate::pipes::{LogPipes, ReadEnds};
use crate::spawn;
use crate::types::{Exit, ProcessSpec};

#[allow(clippy::large_enum_variant)] // one per attempt, never moved in a hot path
pub(crate) enum Proc {
    Spawned(Child),
    Adopted(Adopted),
}

impl Proc {
    pub(crate) fn id(&self) -> u32 {
        match self {
            Proc::Spawned(c) => c.id(),
            Proc::Adopted(a) => a.id(),
        }
    }

    /// Until the process exits.
    pub(crate) async fn wait(&mut self) -> Exit {
        match self {
            Proc::Spawned(c) => exit_of(c.wait().await),
            Proc::Adopted(a) => {
                a.exited().await;
                Exit::Unknown
            }
        }
    }

    /// SIGKILL the group now.
    pub(crate) fn kill(&self) {
        match self {
            Proc::Spawned(c) => c.kill(),
            Proc::Adopted(a) => a.kill(),
        }
    }

    /// SIGTERM, `grace`, SIGKILL, for the whole group.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> Exit {
        match self {
            Proc::Spawned(c) => exit_of(c.terminate(grace).await),
            Proc::Adopted(a) => {
                a.terminate(grace).await;
                Exit::Unknown
            }
        }
    }

    /// Leave the process running, untouched, for another daemon.
    pub(crate) fn detach(self) {
        match self {
            Proc::Spawned(c) => {
                c.detach();
            }
            Proc::Adopted(_) => {}
        }
    }
}

fn exit_of(st: std::io::Result<std::process::ExitStatus>) -> Exit {
    match st {
        Ok(st) => Exit::from_status(st),
        Err(_) => Exit::Code(-1),
    }
}

/// The recorded process `who`, if it is still the one started and its log pipes are there;
/// else `None` (a process that is ours but whose pipes are gone is killed: nothing would
/// read what it prints).
pub(crate) fn take_over(
    inst: &Instance,
    spec: &ProcessSpec,
    pipes: &LogPipes,
    who: Identity,
) -> Option<(Adopted, ReadEnds, Option<cgroup::Cgroup>)> {
    let adopted = match Adopted::open(who) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(instance = %inst.key(), error = %e, "cannot adopt the recorded process: starting a new one");
            return None;
        }
    };
    match pipes.open() {
        Ok(ends) => {
            // The limits it was started with, for status; its cgroup goes when it does.
            let plan = cgroup::adopted(&cgroup_name(spec), spec.limits, who.pid);
            inst.update(|d| {
                d.warnings = Vec::new();
                d.limits = plan.report;
            });
            Some((adopted, ends, plan.cgroup))
        }
        Err(e) => {
            tracing::warn!(instance = %inst.key(), pid = who.pid, error = %e, "the adopted process's log pipes cannot be opened: replacing it");
            adopted.kill();
            None
        }
    }
}

/// The name of the instance's cgroup (the same for a process this daemon starts and one it
/// adopts).
fn cgroup_name(spec: &ProcessSpec) -> String {
    format!(
        "{}-{}-{}-{}",
        spec.app, spec.service, spec.instance, spec.release
    )
}

/// Spawn a new process for the attempt, with fresh log pipes and the instance's limits.
pub(crate) async fn spawn_attempt(
    inst: &Instance,
    spec: &ProcessSpec,
    pipes: &LogPipes,
) -> Result<(Proc, ReadEnds, Option<cgroup::Cgroup>), String> {
    // Limits: the instance's cgroup where berth has one, else rlimits (see cgroup.rs).
    let plan = cgroup::plan(&cgroup_name(spec), spec.limits);
    let mut confinement = spec.confinement.clone();
    confinement.cgroup = plan.cgroup.as_ref().map(|c| c.dir().to_owned());
    if plan.address_space.is_some() {
        confinement.limits.address_space = plan.address_space;
    }
    if let Some(max) = plan.processes {
        let own = confinement.limits.processes.unwrap_or(u64::MAX);
        confinement.limits.processes = Some(own.min(max));
    }
    inst.update(|d| {
        d.warnings = Vec::new();
        d.limits = plan.report;
    });
    let cwd = spec.cwd.display();
    let write = pipes
        .create()
        .map_err(|e| format!("create the log pipes {}: {e}", pipes.out.display()))?;
    // Opened before the spawn, while this daemon holds a write end: never at their end.
    let ends = pipes
        .open()
        .map_err(|e| format!("open the log pipes {}: {e}", pipes.out.display()))?;
    let child = spawn::command(spec, confinement, write)
        .spawn()
        .await
        .map_err(|e| format!("{e} (cwd {cwd})"))?;
    Ok((Proc::Spawned(child), ends, plan.cgroup))
}

/// Leave the attempt's process to the next daemon: readers stopped at a line boundary, nothing
/// signalled, the cgroup left in place (the process is in it).
pub(crate) async fn release(
    inst: &Instance,
    proc: Proc,
    readers: capture::Readers,
    cgroup: Option<cgroup::Cgroup>,
) -> crate::instance::Attempt {
    readers.stop().await;
    let pid = proc.id();
    proc.detach();
    std::mem::forget(cgroup);
    inst.update(|d| d.pid = None);
    tracing::info!(instance = %inst.key(), pid, "instance left running for the next daemon");
    crate::instance::Attempt {
        ready_for: None,
        stopped: true,
    }
}
