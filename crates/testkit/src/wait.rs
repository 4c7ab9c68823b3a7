//! Polling with a deadline: no test waits with a fixed sleep.

use std::time::{Duration, Instant};

/// How often [`wait_for`] polls: its checks are often whole processes (`berth status`).
const POLL_BLOCKING: Duration = Duration::from_millis(50);
/// How often [`eventually`] polls.
const POLL_ASYNC: Duration = Duration::from_millis(20);

/// What a polled check returns: `true` or `Some(value)` once what it waits for happened.
pub trait Done {
    type Value;
    fn done(self) -> Option<Self::Value>;
}

impl Done for bool {
    type Value = ();
    fn done(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Done for Option<T> {
    type Value = T;
    fn done(self) -> Option<T> {
        self
    }
}

/// Call `check` until it is done and return its value; between calls the thread sleeps.
/// Panics naming `what` once `limit` has passed.
pub fn wait_for<D: Done>(what: &str, limit: Duration, mut check: impl FnMut() -> D) -> D::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().done() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL_BLOCKING);
    }
}

/// [`wait_for`] in async code: between calls the task sleeps.
pub async fn eventually<D: Done>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> D,
) -> D::Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().done() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_ASYNC).await;
    }
}

/// Whether process `pid` exists and is not a zombie (a zombie is dead for a test's purposes).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Every live (not zombie) process: its pid and its `/proc/PID` directory.
pub fn live_processes() -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            alive(pid).then(|| (pid, e.path()))
        })
}

/// Live processes whose working directory is under `root` (a state directory: the apps'
/// instances and builds run in its release trees): pid and command line.
pub fn processes_under(root: &std::path::Path) -> Vec<(u32, String)> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    live_processes()
        .filter_map(|(pid, dir)| {
            let cwd = std::fs::read_link(dir.join("cwd")).ok()?;
            let cmd = std::fs::read(dir.join("cmdline")).ok()?;
            cwd.starts_with(&root).then(|| {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (pid, cmd.trim().to_owned())
            })
        })
        .collect()
}

/// SIGKILL every process group led by a process under `root` (see [`processes_under`]):
/// instances outlive their daemon, so a test's clean-up must end them itself.
pub fn kill_processes_under(root: &std::path::Path) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    for (pid, _) in processes_under(root) {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_done() {
        let mut n = 0;
        let got = wait_for("three calls", Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, 3);
        wait_for("true", Duration::from_secs(5), || true);
    }

    #[test]
    #[should_panic(expected = "waiting for never")]
    fn panics_after_the_limit() {
        wait_for("never", Duration::from_millis(10), || false);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX));
    }
}
