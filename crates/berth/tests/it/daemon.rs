//! The daemon itself: state directory, socket, one daemon per state dir, shutdown, recovery.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::*;

#[test]
fn state_dir_socket_and_database_are_private() {
    let d = Daemon::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.path().join("berth.sock")), 0o600);
    // Traversable, so an app's user reaches its own directory under apps/; not listable; and
    // every file in it is the daemon's alone.
    assert_eq!(mode(d.path()), 0o711);
    assert!(d.path().join("state.db").is_file());
    for entry in std::fs::read_dir(d.path()).unwrap().flatten() {
        let path = entry.path();
        if path.is_file() && !path.ends_with("daemon.log") {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    let status = d.status();
    assert_eq!(status["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(status["apps"].as_array().unwrap().is_empty());
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused() {
    let d = Daemon::start();
    let out = std::process::Command::new(BERTH)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("BERTH_STATE", d.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another berth daemon is running"),
        "{stderr}"
    );
    // The first one is unharmed.
    assert_eq!(d.berth(&["status"]).code, 0);
}

#[test]
fn sigint_stops_apps_gracefully_and_exits_0() {
    let (mut d, pids) = deployed("term", "");
    assert_eq!(pids.len(), 1);
    assert_eq!(d.stop_with(libc_sig::INT), 0, "{}", d.log());
    for pid in pids {
        assert!(!alive(pid), "app process {pid} outlived the daemon");
    }
    assert!(!d.path().join("berth.sock").exists());
    assert!(d.log().contains("berth daemon stopped"), "{}", d.log());
    // Not a terminal: plain text, no colour codes in the log file.
    assert!(!d.log().contains('\x1b'), "{}", d.log());
}

/// SIGTERM is a restart: the apps keep running while no daemon does, and the next daemon
/// adopts them (same pids), with their logs going on.
#[test]
fn sigterm_leaves_the_apps_running_and_the_next_daemon_adopts_them() {
    let (mut d, pids) = deployed("stay", "instances = 2");
    let first_start = d.status_started_at();
    assert_eq!(d.terminate(), 0, "{}", d.log());
    assert!(d.log().contains("leaving the apps running"), "{}", d.log());
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");
    d.restart();
    assert_eq!(app_pids(&d, "stay"), pids);
    assert_ne!(d.status_started_at(), first_start);
    assert_eq!(d.get("/").unwrap(), (200, "release r1\n".to_owned()));
    let status = d.status();
    assert!(
        instances(&status, "stay")
            .iter()
            .all(|i| i["state"] == "ready"),
        "{status}"
    );
    // The adopted instances' output still reaches their log.
    wait_for(
        "the adopted app's log to go on",
        Duration::from_secs(10),
        || {
            let run = d.berth(&["logs", "stay"]);
            (run.stdout.matches("py web on").count() >= 2).then_some(())
        },
    );
    assert!(d.log().contains("instance adopted"), "{}", d.log());
}

#[test]
fn kill_9_of_the_daemon_leaves_the_apps_serving_and_a_restart_adopts_them() {
    let (mut d, pids) = deployed("phoenix", "instances = 2");
    assert_eq!(pids.len(), 2);

    d.kill9();
    assert!(pids.iter().all(|&p| alive(p)), "{pids:?}");
    // An instance that stops answering while no daemon watches is replaced, not adopted.
    signal(pids[1], 19); // SIGSTOP
    d.restart();
    wait_for(
        "the unhealthy instance to be replaced",
        Duration::from_secs(30),
        || {
            let now = app_pids(&d, "phoenix");
            (now.len() == 2 && now.contains(&pids[0]) && !now.contains(&pids[1])).then_some(())
        },
    );
    wait_for(
        "the stopped instance to be killed",
        Duration::from_secs(20),
        || (!alive(pids[1])).then_some(()),
    );
    assert_eq!(d.get("/").unwrap(), (200, "release r1\n".to_owned()));
}

/// A daemon serving [`py_app`] `name` (`extra` in its service), and its instances' pids.
fn deployed(name: &str, extra: &str) -> (Daemon, Vec<u32>) {
    let d = Daemon::start();
    let app = py_app(name, extra);
    let run = d.berth(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let pids = app_pids(&d, name);
    (d, pids)
}

/// The pids of `app`'s instances, in instance order.
fn app_pids(d: &Daemon, app: &str) -> Vec<u32> {
    instances(&d.status(), app)
        .iter()
        .filter_map(|i| Some(i["pid"].as_u64()? as u32))
        .collect()
}

/// A python app named `name` with one web service; `extra` goes into `[services.web]`.
pub fn py_app(name: &str, extra: &str) -> tempfile::TempDir {
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n[services.web]\ncommand = \"python3 -u web.py\"\nhealth = {{ path = \"/health\", interval = \"200ms\", timeout = \"200ms\" }}\nstop_timeout = \"5s\"\n{extra}\n[[routes]]\nhost = \"*\"\npath = \"/\"\nservice = \"web\"\n"
            ),
        ),
        ("web.py", PY_WEB),
    ])
}
