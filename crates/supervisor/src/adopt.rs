//! Processes this daemon did not start: an instance a previous daemon started (before a
//! restart, a `kill -9` or an upgrade), taken over by its identity, and watched through a
//! pidfd — it is not our child, so `waitpid` cannot see it exit. And the subreaper that takes
//! the orphans of our own children.
//!
//! Identity: a pid alone is not enough (pids are reused); the process must still lead its
//! own group (pgid = pid, as every instance berth starts) and have the start time, in clock
//! ticks after boot, that was recorded when it was started. The pidfd is opened *before* the
//! check, so the process checked is the one watched.

use std::collections::HashSet;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;

use crate::command::{group_alive, signal_group};
use crate::memory::proc_stat;

/// What identifies a process across daemons: its pid (= its group) and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    /// `/proc/PID/stat` field 22: clock ticks after boot.
    pub start_ticks: u64,
}

impl Identity {
    /// The identity of live process `pid`, if it leads its own process group.
    pub fn of(pid: u32) -> Option<Identity> {
        let st = proc_stat(&pid.to_string())?;
        (st.pgrp == pid as i32).then_some(Identity {
            pid,
            start_ticks: st.start_ticks,
        })
    }
}

/// Why a recorded process cannot be adopted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("process {0} is gone")]
    Gone(u32),
    #[error("pid {0} is another process now (start time or process group differ)")]
    NotTheSame(u32),
    #[error("watch process {pid}: {source}")]
    Watch { pid: u32, source: io::Error },
}

/// A process taken over from a previous daemon, watched through its pidfd.
#[derive(Debug)]
pub(crate) struct Adopted {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
}

impl Adopted {
    /// Take over `who` if it is still the same process. Must run inside a tokio runtime.
    pub(crate) fn open(who: Identity) -> Result<Adopted, AdoptError> {
        let pid = who.pid;
        let pidfd = pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => AdoptError::Gone(pid),
            _ => AdoptError::Watch { pid, source: e },
        })?;
        match Identity::of(pid) {
            Some(now) if now == who => {}
            Some(_) => return Err(AdoptError::NotTheSame(pid)),
            None if proc_stat(&pid.to_string()).is_some() => {
                return Err(AdoptError::NotTheSame(pid));
            }
            None => return Err(AdoptError::Gone(pid)),
        }
        #[allow(unsafe_code)]
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open (and the same descriptor)
        // until the AsyncFd drops it.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
                .map_err(|e| AdoptError::Watch {
                    pid,
                    source: io::Error::from(e),
                })?;
        Ok(Adopted { pid, pidfd })
    }

    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Resolves when the process has exited. Its exit status is its parent's to read (init,
    /// or this daemon when it became the subreaper of an orphan), so it is not known here.
    pub(crate) async fn exited(&self) {
        // A pidfd polls readable once the process has exited; an error means the same.
        let _ = self.pidfd.readable().await;
    }

    /// SIGTERM to the group, SIGKILL after `grace`, then whatever is left of the group.
    pub(crate) async fn terminate(&self, grace: Duration) {
        let pgid = self.pid as i32;
        let deadline = tokio::time::Instant::now() + grace;
        signal_group(pgid, Signal::SIGTERM);
        if tokio::time::timeout_at(deadline, self.exited())
            .await
            .is_err()
        {
            signal_group(pgid, Signal::SIGKILL);
            self.exited().await;
        }
        while group_alive(pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(pgid, Signal::SIGKILL);
    }

    pub(crate) fn kill(&self) {
        signal_group(self.pid as i32, Signal::SIGKILL);
    }
}

#[allow(unsafe_code)]
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just created for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Pids this daemon spawned (through the spawner thread): the runtime reaps those. The
/// subreaper's reaper leaves them alone.
static SPAWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// Run `spawn` (a fork) and note the pid it gives, under the lock the reaper takes: the
/// reaper never sees a child of ours it does not know.
pub(crate) fn spawning<T>(
    spawn: impl FnOnce() -> io::Result<T>,
    pid: impl Fn(&T) -> Option<u32>,
) -> io::Result<T> {
    let mut set = SPAWNED.lock().unwrap_or_else(|p| p.into_inner());
    let spawned = spawn()?;
    if let Some(pid) = pid(&spawned) {
        set.get_or_insert_with(HashSet::new).insert(pid);
    }
    Ok(spawned)
}

/// Make this process the subreaper of its descendants (`PR_SET_CHILD_SUBREAPER`): a process
/// an instance leaves behind when it exits is reparented to the daemon, not to init, so it
/// stays in reach; and reap those orphans when they exit (a task on SIGCHLD). Children the
/// runtime spawned are left to the runtime. Call once, inside a tokio runtime.
pub fn become_subreaper() -> io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: prctl with an integer argument; no memory is passed.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
    tokio::spawn(async move {
        while sigchld.recv().await.is_some() {
            reap_orphans();
        }
    });
    Ok(())
}

/// Reap exited children that are not the runtime's (orphans we inherited as subreaper).
fn reap_orphans() {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut ours = SPAWNED.lock().ok();
    let mut live_children = HashSet::new();
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = after.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()));
        if ppid != Some(me) {
            continue;
        }
        live_children.insert(pid);
        let spawned = ours
            .as_mut()
            .and_then(|s| s.as_ref())
            .is_some_and(|s| s.contains(&pid));
        if state == Some("Z") && !spawned {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
    // Forget spawned pids that are no longer our children (the runtime reaped them).
    if let Some(Some(set)) = ours.as_deref_mut() {
        set.retain(|p| live_children.contains(p));
    }
}
