//! Adoption: a daemon lets go of its instances (`release_all`) or dies, and the next one takes
//! them over (`adopt`) by their identity, with their logs going on.

use std::os::unix::process::CommandExt;

use supervisor::{Identity, InstanceState, Supervisor, SupervisorOptions};
use testkit::{alive, eventually};

use crate::{Env, LONG};

/// Lines of `text` in the instance's service log.
fn count(env: &Env, text: &str) -> usize {
    std::fs::read_to_string(env.logs().join("web/current.log"))
        .unwrap_or_default()
        .matches(text)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_instance_is_adopted_by_the_next_supervisor_and_its_log_goes_on() {
    let env = Env::new();
    let spec = env.spec("while true; do echo tick; sleep 0.05; done");
    let inst = env.sup.start(spec.clone());
    inst.wait_ready().await.unwrap();
    let pid = inst.status().pid.unwrap();
    let who = Identity::of(pid).unwrap();
    env.sup.release_all().await;
    let released = std::time::SystemTime::now();
    assert_eq!(inst.state(), InstanceState::Stopped);
    assert!(alive(pid), "released, not stopped");

    // The next daemon's supervisor, on the same directories.
    let next = Supervisor::new(SupervisorOptions::new(env.cwd().join("logs")));
    let adopted = next.adopt(spec, who);
    adopted.wait_ready().await.unwrap();
    assert_eq!(adopted.status().pid, Some(pid));
    // Its uptime is the process's, not the new supervisor's.
    let started = adopted.status().started_at.unwrap();
    let window = released - std::time::Duration::from_secs(4)..released;
    assert!(window.contains(&started), "{started:?} not in {window:?}");
    let ticks = count(&env, "tick");
    eventually(
        "the adopted instance's lines to reach its log",
        LONG,
        || count(&env, "tick") > ticks + 5,
    )
    .await;
    adopted.stop().await;
    eventually("the adopted instance to be stopped", LONG, || !alive(pid)).await;
    // Stopped for good: its pipes are gone.
    assert!(!env.cwd().join("logs/.pipes/shop/web.0@r1.out").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_is_not_the_one_recorded_is_left_alone_and_a_new_one_started() {
    let env = Env::new();
    // Some other process (its own group) now has the recorded pid.
    let mut other = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap();
    let now = Identity::of(other.id()).unwrap();
    let recorded = Identity {
        pid: now.pid,
        start_ticks: now.start_ticks + 1,
    };
    let inst = env.sup.adopt(env.spec("sleep 1000"), recorded);
    inst.wait_ready().await.unwrap();
    let started = inst.status().pid.unwrap();
    assert_ne!(started, other.id());
    inst.stop().await;
    assert!(alive(other.id()), "a process that is not ours was touched");
    other.kill().unwrap();
    other.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_instance_that_does_not_answer_is_replaced() {
    let env = Env::new();
    let mut spec = env.spec("exec python3 server.py");
    spec.health = Some(supervisor::Probe {
        interval: std::time::Duration::from_millis(100),
        timeout: std::time::Duration::from_millis(100),
        ..supervisor::Probe::new("/health")
    });
    let inst = env.sup.start(spec.clone());
    inst.wait_ready().await.unwrap();
    let pid = inst.status().pid.unwrap();
    let who = Identity::of(pid).unwrap();
    env.sup.release_all().await;
    // It hangs while no daemon watches.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let next = Supervisor::new(SupervisorOptions::new(env.cwd().join("logs")));
    let adopted = next.adopt(spec, who);
    eventually("a new process in its place", LONG, || {
        adopted.state() == InstanceState::Ready && adopted.status().pid != Some(pid)
    })
    .await;
    eventually("the hung one to be killed", LONG, || !alive(pid)).await;
    adopted.stop().await;
}
