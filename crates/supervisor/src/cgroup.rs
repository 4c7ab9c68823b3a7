//! Resource limits of an instance, and what enforces each one.
//!
//! Preferred: a cgroup v2 subtree berth may use — the daemon's own service cgroup under
//! systemd's `Delegate=yes` (the daemon first moves itself into its leaf `OWN/daemon`, since a
//! cgroup v2 with children may hold no process), else the root's when the daemon is root on a
//! cgroup v2 host. Each limited instance gets `SUBTREE/berth/APP-SERVICE-INSTANCE-RELEASE` (the release is in the name
//! because old and new instances overlap during a deploy) with `memory.max`, `cpu.max` and
//! `pids.max`; the child joins it before exec, and it is removed when the process is gone.
//! Without a controller the limit falls back: `memory_max` to `RLIMIT_AS` (virtual memory,
//! per process), `pids_max` to `RLIMIT_NPROC` (every process of the app's user), and `cpu_max`
//! to nothing — and the instance's status says which mechanism holds each limit.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What berth may use of cgroup v2, found once per process.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    /// `.../berth`, with these controllers enabled for its children.
    parent: Option<PathBuf>,
    controllers: Vec<&'static str>,
    /// Why some or all of memory, cpu and pids are not available.
    why_not: Option<String>,
}

const WANTED: [&str; 3] = ["memory", "cpu", "pids"];

pub(crate) fn cgroups() -> &'static Cgroups {
    static CGROUPS: OnceLock<Cgroups> = OnceLock::new();
    CGROUPS.get_or_init(|| {
        let c = detect();
        match (&c.parent, &c.why_not) {
            (Some(p), None) => {
                tracing::info!(cgroup = %p.display(), "limits enforced with cgroup v2 (memory, cpu, pids)")
            }
            (_, Some(why)) => tracing::info!(
                controllers = ?c.controllers,
                reason = %why,
                "some limits fall back to rlimits or are not enforced"
            ),
            (None, None) => {}
        }
        c
    })
}

/// Where cgroup v2 may be mounted: alone, or beside v1 (a "hybrid" host).
const MOUNTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

fn detect() -> Cgroups {
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| delegated(&text));
    let mut why = String::from("no cgroup v2 hierarchy with controllers found");
    let own_dirs = own.iter().flat_map(|own| {
        MOUNTS
            .iter()
            .map(move |m| Path::new(m).join(own.trim_start_matches('/')))
    });
    for dir in own_dirs {
        if !dir.join("cgroup.controllers").is_file() {
            continue;
        }
        // The daemon leaves its own cgroup for a leaf of it first: a cgroup that hands
        // controllers to children may hold no process itself.
        match into_leaf(&dir) {
            Ok(()) => match found(&dir) {
                Ok(c) => return c,
                Err(w) => why = w,
            },
            Err(e) => {
                why = format!(
                    "cannot use the service's delegated cgroup {}: {e}",
                    dir.display()
                )
            }
        }
    }
    for root in MOUNTS.map(Path::new) {
        match found(root) {
            Ok(c) => return c,
            Err(w) if w.is_empty() => {}
            Err(w) => why = w,
        }
    }
    Cgroups {
        parent: None,
        controllers: Vec::new(),
        why_not: Some(why),
    }
}

/// The daemon's own cgroup v2 path (`/system.slice/berth.service`) when it is a systemd
/// service's, which `Delegate=yes` hands to it; from `/proc/self/cgroup` (the `0::` line).
fn delegated(proc_self_cgroup: &str) -> Option<String> {
    let path = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    let path = path.strip_suffix("/daemon").unwrap_or(path);
    path.rsplit('/')
        .next()
        .is_some_and(|unit| unit.ends_with(".service"))
        .then(|| path.to_owned())
}

/// Move this process into `dir/daemon`.
fn into_leaf(dir: &Path) -> io::Result<()> {
    let leaf = dir.join("daemon");
    match fs::create_dir(&leaf) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
}

/// `root/berth` set up with the controllers `root` has; `Err("")` when `root` is no cgroup v2,
/// else why it cannot be used.
fn found(root: &Path) -> Result<Cgroups, String> {
    let Ok(available) = fs::read_to_string(root.join("cgroup.controllers")) else {
        return Err(String::new());
    };
    let controllers: Vec<&'static str> = WANTED
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    if controllers.is_empty() {
        return Err(format!(
            "cgroup v2 at {} has none of the memory, cpu and pids controllers",
            root.display()
        ));
    }
    let dir = enable(root, &controllers)
        .map_err(|e| format!("cannot set up {}/berth: {e}", root.display()))?;
    let missing: Vec<&str> = WANTED
        .into_iter()
        .filter(|c| !controllers.contains(c))
        .collect();
    Ok(Cgroups {
        parent: Some(dir),
        why_not: (!missing.is_empty()).then(|| {
            format!(
                "cgroup v2 at {} lacks {}",
                root.display(),
                missing.join(", ")
            )
        }),
        controllers,
    })
}

fn enable(root: &Path, controllers: &[&str]) -> io::Result<PathBuf> {
    let enable_in = |dir: &Path| -> io::Result<()> {
        let current = fs::read_to_string(dir.join("cgroup.subtree_control"))?;
        let add: Vec<String> = controllers
            .iter()
            .filter(|c| !current.split_whitespace().any(|x| x == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !add.is_empty() {
            fs::write(dir.join("cgroup.subtree_control"), add.join(" "))?;
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

/// The limits asked of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory.
    pub memory_max: Option<u64>,
    /// Share of one CPU (`0.5` = half a core; `2.0` = two cores).
    pub cpu_max: Option<f64>,
    /// Processes and threads.
    pub pids_max: Option<u64>,
}

/// What holds one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    Cgroup,
    /// An rlimit in the child, with what it really limits, and why no cgroup holds it.
    Rlimit(&'static str, String),
    /// Nothing: the reason.
    NotEnforced(String),
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Enforcement::Cgroup => f.write_str("cgroup"),
            Enforcement::Rlimit(what, why) => write!(f, "{what}; no cgroup: {why}"),
            Enforcement::NotEnforced(why) => write!(f, "not enforced: {why}"),
        }
    }
}

/// One limit of an instance and its mechanism, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitStatus {
    /// `memory_max`, `cpu_max`, `pids_max`.
    pub name: &'static str,
    /// As configured: bytes, share of a CPU, count.
    pub value: String,
    pub enforced_by: Enforcement,
}

/// How an instance's limits are held: its cgroup (if any), the rlimits the child gets, and
/// the report for status.
pub(crate) struct Plan {
    pub cgroup: Option<Cgroup>,
    pub address_space: Option<u64>,
    pub processes: Option<u64>,
    pub report: Vec<LimitStatus>,
}

pub(crate) fn plan(name: &str, limits: Limits) -> Plan {
    let cg = cgroups();
    let has = |c: &str| cg.parent.is_some() && cg.controllers.contains(&c);
    let why = || cg.why_not.clone().unwrap_or_else(|| "no cgroup".to_owned());
    let wanted =
        limits.memory_max.is_some() || limits.cpu_max.is_some() || limits.pids_max.is_some();
    let mut cgroup = None;
    let mut failed = None;
    if wanted && let Some(parent) = &cg.parent {
        match Cgroup::create(parent, name) {
            Ok(c) => cgroup = Some(c),
            Err(e) => failed = Some(format!("cannot create the instance's cgroup: {e}")),
        }
    }
    let mut plan = report(limits, |controller, file, value| {
        match (&cgroup, has(controller)) {
            (Some(c), true) => {
                c.set(file, &value)
                    .map_err(|e| format!("write {file}: {e}"))?;
                if file == "memory.max" {
                    // Without this the limit only pushes the app into swap.
                    let _ = c.set("memory.swap.max", "0");
                }
                Ok(())
            }
            _ => Err(failed.clone().unwrap_or_else(why)),
        }
    });
    plan.cgroup = cgroup;
    plan
}

/// The limits a process a previous daemon started runs under, which `plan` gave it then: the
/// limits of the instance's cgroup when the process is in it, else the rlimits it was started
/// with (they stay with the process). The cgroup is kept, and removed once the process is gone.
pub(crate) fn adopted(name: &str, limits: Limits, pid: u32) -> Plan {
    let cg = cgroups();
    let dir = cg.parent.as_ref().map(|p| p.join(dir_name(name)));
    let inside = dir.as_deref().is_some_and(|d| holds(d, pid));
    let why = || match &cg.why_not {
        Some(why) => why.clone(),
        None => "the adopted process is not in its instance's cgroup".to_owned(),
    };
    let mut plan = report(limits, |controller, _, _| {
        if inside && cg.controllers.contains(&controller) {
            Ok(())
        } else {
            Err(why())
        }
    });
    plan.cgroup = dir.filter(|_| inside).map(|dir| Cgroup { dir });
    plan
}

/// Whether process `pid` is in the cgroup at `dir` (from `/proc/PID/cgroup`).
fn holds(dir: &Path, pid: u32) -> bool {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    MOUNTS
        .iter()
        .filter_map(|m| dir.strip_prefix(m).ok())
        .any(|rel| Path::new("/").join(rel) == Path::new(path))
}

/// The report of `limits`, each held by `enforce(controller, file, value)` when it can, else
/// by the rlimit or by nothing, with the reason it gave.
fn report(
    limits: Limits,
    mut enforce: impl FnMut(&'static str, &str, String) -> Result<(), String>,
) -> Plan {
    let mut plan = Plan {
        cgroup: None,
        address_space: None,
        processes: None,
        report: Vec::new(),
    };
    if let Some(max) = limits.memory_max {
        let enforced_by = match enforce("memory", "memory.max", max.to_string()) {
            Ok(()) => Enforcement::Cgroup,
            Err(why) => {
                plan.address_space = Some(max);
                Enforcement::Rlimit("RLIMIT_AS (virtual memory, per process)", why)
            }
        };
        plan.report.push(LimitStatus {
            name: "memory_max",
            value: max.to_string(),
            enforced_by,
        });
    }
    if let Some(share) = limits.cpu_max {
        const PERIOD: u64 = 100_000;
        let quota = ((share * PERIOD as f64).round() as u64).max(1_000);
        let enforced_by = match enforce("cpu", "cpu.max", format!("{quota} {PERIOD}")) {
            Ok(()) => Enforcement::Cgroup,
            Err(why) => Enforcement::NotEnforced(why),
        };
        plan.report.push(LimitStatus {
            name: "cpu_max",
            value: format!("{share}"),
            enforced_by,
        });
    }
    if let Some(max) = limits.pids_max {
        let enforced_by = match enforce("pids", "pids.max", max.to_string()) {
            Ok(()) => Enforcement::Cgroup,
            Err(why) => {
                plan.processes = Some(max);
                Enforcement::Rlimit("RLIMIT_NPROC (every process of the app's user)", why)
            }
        };
        plan.report.push(LimitStatus {
            name: "pids_max",
            value: max.to_string(),
            enforced_by,
        });
    }
    plan
}

/// The directory name of an instance's cgroup.
fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One instance's cgroup, removed on drop (best effort: it must be empty by then).
pub(crate) struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn create(parent: &Path, name: &str) -> io::Result<Cgroup> {
        let dir = parent.join(dir_name(name));
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        Ok(Cgroup { dir })
    }

    fn set(&self, file: &str, value: &str) -> io::Result<()> {
        fs::write(self.dir.join(file), value)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.dir) {
            tracing::warn!(cgroup = %self.dir.display(), error = %e, "cannot remove instance cgroup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::delegated;

    #[test]
    fn only_a_systemd_service_cgroup_counts_as_delegated() {
        // A service, before and after the daemon moved into its leaf.
        assert_eq!(
            delegated("0::/system.slice/berth.service\n").as_deref(),
            Some("/system.slice/berth.service")
        );
        assert_eq!(
            delegated("0::/system.slice/berth.service/daemon\n").as_deref(),
            Some("/system.slice/berth.service")
        );
        // A hybrid host lists v1 hierarchies first.
        assert_eq!(
            delegated("12:memory:/system.slice/berth.service\n0::/system.slice/berth.service\n")
                .as_deref(),
            Some("/system.slice/berth.service")
        );
        // A login session, a container's root, or no cgroup v2 at all: not ours to divide.
        assert_eq!(
            delegated("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(delegated("0::/\n"), None);
        assert_eq!(delegated("4:memory:/\n"), None);
    }
}
