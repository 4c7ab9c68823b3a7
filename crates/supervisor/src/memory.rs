//! Readings from /proc: the memory and the process group of an instance.

use std::fs;

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

/// What the processes of one group use, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// User + system CPU time of the live processes and of the children they reaped.
    pub cpu_seconds: f64,
}

/// The fields of `/proc/PID/stat` berth reads, in clock ticks, pages and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcStat {
    pub pgrp: i32,
    /// utime + stime of the process.
    pub cpu_seconds: f64,
    /// cutime + cstime: its reaped children's.
    pub children_cpu_seconds: f64,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    /// Seconds after boot the process started.
    pub started_after_boot: f64,
    /// The same in clock ticks, exactly as the kernel has it: with the pid, what identifies
    /// a process across a restart of the daemon (a reused pid has another start time).
    pub start_ticks: u64,
}

/// `/proc/PID/stat` of `pid` (`"self"` for this process).
pub fn proc_stat(pid: &str) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command: state(3) ppid(4) pgrp(5) … utime(14) stime(15) cutime(16) cstime(17)
    // … starttime(22) vsize(23) rss(24), numbered as in proc(5).
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (tick, page) = units();
    Some(ProcStat {
        pgrp: field(5) as i32,
        cpu_seconds: (field(14) + field(15)) as f64 / tick,
        children_cpu_seconds: (field(16) + field(17)) as f64 / tick,
        rss_bytes: field(24).max(0) as u64 * page,
        vsize_bytes: field(23).max(0) as u64,
        started_after_boot: field(22) as f64 / tick,
        start_ticks: field(22).max(0) as u64,
    })
}

/// When process `pid` started, by the wall clock: boot time (`btime` in /proc/stat) plus its
/// start after boot. For an adopted process, whose start this daemon did not see.
pub(crate) fn started_at(pid: u32) -> Option<std::time::SystemTime> {
    let after_boot = proc_stat(&pid.to_string())?.started_after_boot;
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(btime)
            + std::time::Duration::from_secs_f64(after_boot),
    )
}

/// (clock ticks per second, page size in bytes).
fn units() -> (f64, u64) {
    use std::sync::OnceLock;
    static UNITS: OnceLock<(f64, u64)> = OnceLock::new();
    *UNITS.get_or_init(|| {
        let sys = |v| nix::unistd::sysconf(v).ok().flatten();
        (
            sys(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100) as f64,
            sys(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096) as u64,
        )
    })
}

/// Every process group's usage, from one pass over /proc (one read of each `stat`): what a
/// metrics scrape of many instances costs once, not once per instance.
pub fn group_usage() -> std::collections::HashMap<i32, Usage> {
    let mut out: std::collections::HashMap<i32, Usage> = std::collections::HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Some(st) = proc_stat(pid) else { continue };
        let u = out.entry(st.pgrp).or_default();
        u.cpu_seconds += st.cpu_seconds + st.children_cpu_seconds;
        u.rss_bytes += st.rss_bytes;
    }
    out
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
