//! `memory_max` enforcement and memory readings from /proc.
//!
//! Preferred: a cgroup v2 with the memory controller. Instances get
//! `CGROUP2_ROOT/berth/APP-SERVICE-INSTANCE-RELEASE` (the release is in the name because old
//! and new instances overlap during a deploy) with `memory.max`; the pid is moved in right
//! after spawn, and the cgroup is removed when the process is gone. Otherwise (cgroup v1 or
//! no delegated controller): `RLIMIT_AS` in the child, which limits virtual address space per
//! process, and a warning in the instance status says so.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, Clone)]
pub(crate) enum Limiter {
    /// Parent cgroup (`.../berth`) with the memory controller enabled for its children.
    Cgroup(PathBuf),
    /// Why cgroups cannot be used.
    Rlimit(String),
}

/// Detected once per process.
pub(crate) fn limiter() -> &'static Limiter {
    static LIMITER: OnceLock<Limiter> = OnceLock::new();
    LIMITER.get_or_init(|| {
        let l = detect();
        match &l {
            Limiter::Cgroup(p) => {
                tracing::info!(cgroup = %p.display(), "memory_max enforced with cgroup v2")
            }
            Limiter::Rlimit(why) => {
                tracing::info!(reason = %why, "memory_max falls back to RLIMIT_AS")
            }
        }
        l
    })
}

fn detect() -> Limiter {
    let candidates = [
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/fs/cgroup/unified"),
    ];
    let mut why = String::from("no cgroup v2 hierarchy found");
    for root in candidates {
        let Ok(controllers) = fs::read_to_string(root.join("cgroup.controllers")) else {
            continue;
        };
        if !controllers.split_whitespace().any(|c| c == "memory") {
            why = format!("cgroup v2 at {} has no memory controller", root.display());
            continue;
        }
        match enable(root) {
            Ok(dir) => return Limiter::Cgroup(dir),
            Err(e) => why = format!("cannot set up {}/berth: {e}", root.display()),
        }
    }
    Limiter::Rlimit(why)
}

fn enable(root: &Path) -> io::Result<PathBuf> {
    let enable_in = |dir: &Path| -> io::Result<()> {
        let current = fs::read_to_string(dir.join("cgroup.subtree_control"))?;
        if !current.split_whitespace().any(|c| c == "memory") {
            fs::write(dir.join("cgroup.subtree_control"), "+memory")?;
        }
        Ok(())
    };
    enable_in(root)?;
    let dir = root.join("berth");
    match fs::create_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    enable_in(&dir)?;
    Ok(dir)
}

/// One instance's cgroup, removed on drop (best effort: it must be empty by then).
pub(crate) struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    pub(crate) fn create(parent: &Path, name: &str, max: u64) -> io::Result<Cgroup> {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let cg = Cgroup { dir };
        fs::write(cg.dir.join("memory.max"), max.to_string())?;
        // Without this the limit only pushes the app into swap.
        let _ = fs::write(cg.dir.join("memory.swap.max"), "0");
        Ok(cg)
    }

    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.dir) {
            tracing::warn!(cgroup = %self.dir.display(), error = %e, "cannot remove instance cgroup");
        }
    }
}

/// Resident memory summed over every process in group `pgid`, in bytes.
pub(crate) fn group_rss(pgid: i32) -> Option<u64> {
    let mut total = 0u64;
    let mut found = false;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if process_group(pid) != Some(pgid) {
            continue;
        }
        found = true;
        total += rss(pid).unwrap_or(0);
    }
    found.then_some(total)
}

/// Field 5 of /proc/PID/stat (after the parenthesised command name).
pub(crate) fn process_group(pid: u32) -> Option<i32> {
    stat(pid).map(|(_, pgrp)| pgrp)
}

/// (state, pgrp) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut after = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = after.next()?.chars().next()?;
    Some((state, after.nth(1)?.parse().ok()?))
}

/// Whether group `pgid` has a member that is not a zombie.
pub(crate) fn group_has_live(pgid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(stat)
            .is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z')
    })
}

fn rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
