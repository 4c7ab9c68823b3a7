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
fn sigterm_stops_apps_gracefully_and_exits_0() {
    let mut d = Daemon::start();
    let app = py_app("term", "");
    let run = d.berth(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let pids: Vec<u32> = instances(&d.status(), "term")
        .iter()
        .map(|i| i["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 1);
    assert_eq!(d.terminate(), 0, "{}", d.log());
    for pid in pids {
        assert!(!alive(pid), "app process {pid} outlived the daemon");
    }
    assert!(!d.path().join("berth.sock").exists());
    assert!(d.log().contains("berth daemon stopped"), "{}", d.log());
    // Not a terminal: plain text, no colour codes in the log file.
    assert!(!d.log().contains('\x1b'), "{}", d.log());
}

#[test]
fn kill_9_of_the_daemon_leaves_no_app_process_and_a_restart_restores_the_app() {
    let mut d = Daemon::start();
    let app = py_app("phoenix", "instances = 2");
    let run = d.berth(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let pids: Vec<u32> = instances(&d.status(), "phoenix")
        .iter()
        .map(|i| i["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 2);

    d.kill9();
    wait_for(
        "app processes to die with the daemon",
        Duration::from_secs(10),
        || pids.iter().all(|&p| !alive(p)).then_some(()),
    );

    d.restart();
    wait_for(
        "the app to serve again after restart",
        Duration::from_secs(20),
        || {
            d.get("/")
                .filter(|(code, body)| *code == 200 && body == "release r1\n")
        },
    );
    let status = d.status();
    let after = instances(&status, "phoenix");
    assert_eq!(after.len(), 2);
    assert!(
        after
            .iter()
            .all(|i| !pids.contains(&(i["pid"].as_u64().unwrap() as u32)))
    );
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
