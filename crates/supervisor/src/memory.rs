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
