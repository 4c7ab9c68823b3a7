//! Component tests of the daemon: `daemon::Daemon` in a process of its own (this binary, run
//! again), real app processes, real HTTP over loopback, the control API through `api`'s
//! client. Tests that need a hook into a rollout (hold it at a step, kill the daemon there)
//! live here; the black-box tests of the CLI are in `crates/berth/tests`.

// The harness runs this very binary again as the daemon's process, with std's Command.
#![allow(clippy::disallowed_methods)]

mod backups;
mod harness;

mod rollout;

/// Not a test: the daemon process the tests start (see `harness::daemon_process`).
#[test]
fn daemon_process() {
    harness::daemon_process();
}
