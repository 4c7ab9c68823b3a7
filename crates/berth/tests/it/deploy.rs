//! Deploys through the real CLI: the hello example end to end, and every start gate failing.

use std::time::Duration;

use crate::daemon::py_app;
use crate::harness::*;

#[test]
fn hello_deploys_serves_restarts_a_killed_instance_and_shows_logs() {
    let d = Daemon::start();
    let run = d.berth(&["deploy", repo().join("examples/hello").to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}\n{}", d.log());
    assert!(run.stdout.starts_with("deployed hello r1"), "{run:?}");
    for phase in [
        "] build:",
        "] start: 2 instances",
        "web.0 ready",
        "web.1 ready",
        "] switch:",
    ] {
        assert!(run.stderr.contains(phase), "missing {phase:?}: {run:?}");
    }

    let status = d.status();
    let list = instances(&status, "hello");
    assert_eq!(list.len(), 2, "{status:#}");
    for i in &list {
        assert_eq!(i["state"], "ready");
        assert_eq!(i["release"], "r1");
        assert_eq!(i["restarts"], 0);
        assert!(i["memory_bytes"].as_u64().unwrap() > 0);
    }
    let (code, body) = d.get("/").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.starts_with("hello from release r1 instance "),
        "{body}"
    );

    // kill -9 one instance: it comes back, with restarts = 1.
    let victim = list[0]["pid"].as_u64().unwrap() as u32;
    signal(victim, libc_sig::KILL);
    wait_for(
        "the killed instance to be ready again",
        Duration::from_secs(20),
        || {
            let status = d.status();
            let i = instances(&status, "hello")
                .into_iter()
                .find(|i| i["instance"] == list[0]["instance"])?;
            (i["restarts"] == 1 && i["state"] == "ready" && i["pid"] != victim).then_some(())
        },
    );

    let logs = d.berth(&["logs", "hello", "web"]);
    assert_eq!(logs.code, 0, "{logs:?}");
    assert!(
        logs.stdout
            .contains("web.0@r1 out | hello: release r1 instance 0 listening"),
        "{logs:?}"
    );
    let recent = d.berth(&["logs", "hello", "--since", "1h"]);
    assert_eq!(recent.stdout.lines().count(), logs.stdout.lines().count());
    let unknown = d.berth(&["logs", "nope"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("no app named nope"), "{unknown:?}");
}

/// Deploy a good release, then a broken one: exit 1, the reason names the gate and the
/// service, and the good release keeps serving.
fn broken_deploy(name: &str, broken: &[(&str, &str)], expect: &[&str]) {
    let d = Daemon::start();
    let good = py_app(name, "");
    assert_eq!(d.berth(&["deploy", good.path().to_str().unwrap()]).code, 0);
    assert_eq!(d.get("/").unwrap(), (200, "release r1\n".to_owned()));

    let bad = app(broken);
    let run = d.berth(&["deploy", bad.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    for e in expect {
        assert!(run.stderr.contains(e), "missing {e:?} in:\n{run:?}");
    }
    assert!(
        run.stderr.contains("release r1 keeps serving") || expect.contains(&"build"),
        "{run:?}"
    );
    assert_serves(&d, name, "r1");
}

#[test]
fn a_failing_build_leaves_the_old_release_serving() {
    broken_deploy(
        "buildfail",
        &[
            (
                "berth.toml",
                "[app]\nname = \"buildfail\"\n[build]\ncommand = \"echo compiling; echo 'error: missing semicolon' >&2; exit 3\"\n[services.web]\ncommand = \"python3 web.py\"\n[[routes]]\npath = \"/\"\nservice = \"web\"\n",
            ),
            ("web.py", PY_WEB),
        ],
        &[
            "build",
            "exited with status 3",
            "error: missing semicolon",
            "| compiling",
        ],
    );
}

#[test]
fn a_command_that_exits_at_once_fails_the_start_gate() {
    broken_deploy(
        "quits",
        &[(
            "berth.toml",
            "[app]\nname = \"quits\"\n[services.web]\ncommand = \"python3 -c 'import sys; print(\\\"no database\\\"); sys.exit(4)'\"\n[[routes]]\npath = \"/\"\nservice = \"web\"\n",
        )],
        &[
            "start gate: service web instance 0 of quits r2",
            "exited before becoming ready (exit code 4)",
            "no database",
        ],
    );
}

#[test]
fn a_health_path_that_never_answers_fails_the_start_gate() {
    broken_deploy(
        "neverready",
        &[
            (
                "berth.toml",
                "[app]\nname = \"neverready\"\n[services.web]\ncommand = \"python3 -u web.py\"\nhealth = { path = \"/nope\", interval = \"200ms\", timeout = \"200ms\", start_deadline = \"2s\" }\n[[routes]]\npath = \"/\"\nservice = \"web\"\n",
            ),
            (
                "web.py",
                &PY_WEB.replace(
                    "self.send_response(200)",
                    "self.send_response(200 if self.path != '/nope' else 503)",
                ),
            ),
        ],
        &[
            "start gate: service web instance 0 of neverready r2",
            "not ready within 2s",
            "503",
        ],
    );
}

#[test]
fn an_invalid_berth_toml_is_refused_before_anything_is_sent() {
    let d = Daemon::start();
    let bad = app(&[(
        "berth.toml",
        "[app]\nname = \"x\"\n[services.web]\ncommand = \"true\"\ninstances = -1\n",
    )]);
    let run = d.berth(&["deploy", bad.path().to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("berth.toml:5:13"), "{run:?}");
    assert!(d.status()["apps"].as_array().unwrap().is_empty());
}

#[test]
fn a_daemon_that_dies_mid_deploy_is_said_plainly() {
    let mut d = Daemon::start();
    let app = py_app("orphan", "");
    std::fs::write(
        app.path().join("berth.toml"),
        std::fs::read_to_string(app.path().join("berth.toml"))
            .unwrap()
            .replace(
                "[app]\nname = \"orphan\"\n",
                "[app]\nname = \"orphan\"\n[build]\ncommand = \"echo building; sleep 30\"\n",
            ),
    )
    .unwrap();
    let deploying = {
        let (state, dir) = (d.path().to_owned(), app.path().to_owned());
        std::thread::spawn(move || berth(&state, &["deploy", dir.to_str().unwrap()]))
    };
    wait_for("the build to start", Duration::from_secs(20), || {
        d.status()["apps"][0]["deploying"].is_string().then_some(())
    });
    d.kill9();
    let run = deploying.join().unwrap();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the berth daemon went away before orphan was done")
            && run.stderr.contains("`berth status orphan`"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("chunk size"), "{run:?}");
}
