//! Rollouts held at a step: one rollout per app at a time, and `kill -9` of the daemon at
//! every step.

use std::time::Duration;

use daemon::Step;

use testkit::{PY_WEB, alive, app, processes_under, wait_for};

use crate::harness::*;

fn web_app(name: &str, extra: &str) -> tempfile::TempDir {
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n{extra}\n[services.web]\ncommand = \"python3 -u web.py\"\nhealth = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }}\nstop_timeout = \"5s\"\n\n[[routes]]\nhost = \"*\"\npath = \"/\"\nservice = \"web\"\n"
            ),
        ),
        ("web.py", PY_WEB),
    ])
}

#[test]
fn one_rollout_per_app_at_a_time() {
    let d = TestDaemon::start(Some(Step::Switch));
    let app = web_app("queue", "");
    let paused = d.path().join("paused-at-switch");
    let first = {
        let (state, dir) = (d.path().to_owned(), app.path().to_owned());
        std::thread::spawn(move || deploy(&state, &dir, false))
    };
    wait_for(
        "r1 to pause before the switch",
        Duration::from_secs(20),
        || paused.exists().then_some(()),
    );
    std::fs::remove_file(&paused).unwrap();
    assert_eq!(first.join().unwrap().made_live(), "r1");
    let first = {
        let (state, dir) = (d.path().to_owned(), app.path().to_owned());
        std::thread::spawn(move || deploy(&state, &dir, false))
    };
    wait_for(
        "r2 to pause before the switch",
        Duration::from_secs(20),
        || paused.exists().then_some(()),
    );

    let refused = deploy(d.path(), app.path(), false);
    let done = refused.done.as_ref().unwrap();
    assert!(!done.ok, "{refused:?}");
    assert!(
        done.reason
            .as_deref()
            .unwrap()
            .contains("a deploy or rollback of queue is already running"),
        "{refused:?}"
    );
    assert!(
        done.hint.as_deref().unwrap().contains("--wait"),
        "{refused:?}"
    );

    let uploads = || {
        std::fs::read_dir(d.path().join("tmp"))
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = uploads();
    let queued = {
        let (state, dir) = (d.path().to_owned(), app.path().to_owned());
        std::thread::spawn(move || deploy(&state, &dir, true))
    };
    // Its upload is unpacked before it asks for the app's slot, which r2 holds: it waits.
    wait_for(
        "the queued deploy's upload",
        Duration::from_secs(20),
        || (uploads() > before).then_some(()),
    );
    std::fs::remove_file(&paused).unwrap();
    assert_eq!(first.join().unwrap().made_live(), "r2");
    wait_for(
        "the queued deploy to pause before the switch",
        Duration::from_secs(20),
        || paused.exists().then_some(()),
    );
    std::fs::remove_file(&paused).unwrap();
    let queued = queued.join().unwrap();
    assert!(
        queued.phases().iter().any(|p| p.contains("waiting for it")),
        "{queued:?}"
    );
    // The refused deploy recorded nothing: the queued one is r3.
    assert_eq!(queued.made_live(), "r3");
}

/// Kill the daemon with -9 while a deploy of r2 is paused before `step`; after a restart the
/// app serves `expect`, nothing of the other release runs, and the deploy is `interrupted`.
fn kill_at(step: Step, expect: &str) {
    let mut d = TestDaemon::start(None);
    let app_dir = app(&[
        (
            "berth.toml",
            "[app]\nname = \"crashme\"\n[build]\ncommand = \"echo built\"\n\
             [services.web]\ncommand = \"python3 -u web.py\"\nhealth = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }\n\
             [services.worker]\ncommand = \"python3 -c 'import time; time.sleep(3600)'\"\n\
             [[routes]]\npath = \"/\"\nservice = \"web\"\n\
             [deploy]\nsmoke = [{ path = \"/\" }]\nwatch = \"1s\"\n",
        ),
        ("web.py", PY_WEB),
    ]);
    assert_eq!(deploy(d.path(), app_dir.path(), false).made_live(), "r1");
    d.terminate();
    d.pause = Some(step);
    d.restart();
    wait_for("r1 to serve again", Duration::from_secs(20), || {
        d.get("/").filter(|(c, b)| *c == 200 && b == "release r1\n")
    });

    let client = {
        let (state, dir) = (d.path().to_owned(), app_dir.path().to_owned());
        std::thread::spawn(move || deploy(&state, &dir, false))
    };
    let paused = d.path().join(format!("paused-at-{step}"));
    wait_for("the deploy to pause", Duration::from_secs(30), || {
        paused.exists().then_some(())
    });
    d.kill9();
    let cut = client.join().unwrap();
    // The replaced release drains after the client has its answer; before that, the answer
    // is cut short.
    let drained_after_answer = step == Step::Drain;
    assert_eq!(cut.done.is_some(), drained_after_answer, "{cut:?}");
    std::fs::remove_file(&paused).unwrap();
    d.pause = None;
    d.restart();

    wait_for(
        "the app to serve after restart",
        Duration::from_secs(30),
        || {
            d.get("/")
                .filter(|(c, b)| *c == 200 && *b == format!("release {expect}\n"))
        },
    );
    let status = d.status();
    assert_eq!(status["apps"][0]["release"], expect, "{status:#}");
    let releases_dir = d.path().join("apps/crashme/releases");
    let expected_dir = releases_dir.join(expect).canonicalize().unwrap();
    wait_for(
        "only the serving release's processes to run",
        Duration::from_secs(15),
        || {
            let cwds = process_cwds_under(&releases_dir.canonicalize().unwrap());
            (!cwds.is_empty() && cwds.iter().all(|c| c.starts_with(&expected_dir))).then_some(())
        },
    );
    let history = d.history("crashme");
    let last = &history["deploys"][0];
    assert_eq!(last["release"], "r2");
    let result = if drained_after_answer {
        "ok"
    } else {
        "interrupted"
    };
    assert_eq!(last["result"], result, "{last:#}");
    assert_eq!(last["step"], step.as_str(), "{last:#}");
    assert!(last["drain_ms"].is_null(), "{last:#}");
}

/// Working directories of live processes under `root`.
fn process_cwds_under(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .parse::<u32>()
                .is_ok_and(alive)
        })
        .filter_map(|e| std::fs::read_link(e.path().join("cwd")).ok())
        .filter(|cwd| cwd.starts_with(root))
        .collect()
}

#[test]
fn kill_9_before_build() {
    kill_at(Step::Build, "r1");
}

#[test]
fn kill_9_before_start() {
    kill_at(Step::Start, "r1");
}

#[test]
fn kill_9_before_smoke() {
    kill_at(Step::Smoke, "r1");
}

#[test]
fn kill_9_before_switch() {
    kill_at(Step::Switch, "r1");
}

#[test]
fn kill_9_before_watch() {
    kill_at(Step::Watch, "r2");
}

#[test]
fn kill_9_before_workers() {
    kill_at(Step::Workers, "r2");
}

#[test]
fn kill_9_before_drain() {
    kill_at(Step::Drain, "r2");
}

/// A build is a job: `kill -9` of the daemon mid-build leaves no process of it running once the
/// daemon is back (the build's shell dies with the daemon; what the shell started is swept).
#[test]
fn a_build_cut_short_by_kill_9_leaves_nothing_behind() {
    let mut d = TestDaemon::start(None);
    // Two commands, so the shell stays and `sleep` is its child, not the shell itself.
    let app_dir = web_app("builder", "[build]\ncommand = \"sleep 25; echo built\"\n");
    let client = {
        let (state, dir) = (d.path().to_owned(), app_dir.path().to_owned());
        std::thread::spawn(move || deploy(&state, &dir, false))
    };
    let releases = d.path().join("apps/builder/releases");
    let building = wait_for("the build to run", Duration::from_secs(20), || {
        let procs = processes_under(&releases);
        procs
            .iter()
            .any(|(_, cmd)| cmd.starts_with("sleep"))
            .then_some(procs)
    });
    d.kill9();
    assert!(client.join().unwrap().done.is_none());
    d.restart();
    wait_for(
        "the build's processes to be gone",
        Duration::from_secs(15),
        || building.iter().all(|(pid, _)| !alive(*pid)).then_some(()),
    );
    assert_eq!(d.history("builder")["deploys"][0]["result"], "interrupted");
}
