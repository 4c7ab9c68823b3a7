//! Upgrading and restarting berth itself: no refused connection, no failed request, no app
//! restarted (issue 15).

// The load's figures and the kill moments are printed on stderr, to compare runs.
#![allow(clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use testkit::ws::BlockingWs;

use crate::harness::*;

/// An app named `name` answering on host `host`, its web service from `PY_WS_WEB` (with a
/// WebSocket echo on /ws).
fn hosted_app(name: &str, host: &str) -> tempfile::TempDir {
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n[services.web]\ncommand = \"python3 -u web.py\"\ninstances = 2\nhealth = {{ path = \"/health\", interval = \"200ms\", timeout = \"200ms\" }}\nstop_timeout = \"5s\"\n[[routes]]\nhost = \"{host}\"\npath = \"/\"\nservice = \"web\"\n"
            ),
        ),
        ("web.py", PY_WS_WEB),
    ])
}

/// Wait until the proxy has answered `n` more requests (its access log) than `seen`; returns
/// the new count. So that the load runs across each upgrade and restart.
fn traffic(d: &Daemon, seen: usize, n: usize) -> usize {
    let log = d.path().join("logs/access.log");
    wait_for("requests to flow", Duration::from_secs(20), || {
        let now = std::fs::read(&log)
            .ok()?
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        (now >= seen + n).then_some(now)
    })
}

/// Every instance's pid, by app.
fn pids(d: &Daemon) -> Vec<(String, u64)> {
    let status = d.status();
    let mut all: Vec<(String, u64)> = ["alpha", "beta"]
        .iter()
        .flat_map(|app| {
            instances(&status, app)
                .into_iter()
                .map(|i| (app.to_string(), i["pid"].as_u64().unwrap_or(0)))
        })
        .collect();
    all.sort();
    all
}

#[test]
fn upgrades_and_restarts_refuse_no_connection_fail_no_request_and_restart_no_app() {
    let mut d = Daemon::start_activated();
    for (name, host) in [("alpha", "alpha.test"), ("beta", "beta.test")] {
        let dir = hosted_app(name, host);
        let run = d.berth(&["deploy", dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let before = pids(&d);
    assert_eq!(before.len(), 4, "{before:?}");
    let mut ws = BlockingWs::connect(d.http, "beta.test", "/ws");
    assert_eq!(ws.echo("hello"), "r1: hello");

    let stop = Arc::new(AtomicBool::new(false));
    let loads = [
        wrk_until(d.http, Some("alpha.test"), stop.clone()),
        wrk_until(d.http, Some("beta.test"), stop.clone()),
    ];
    // CLI commands during the hand-overs: each is answered, by the old daemon or the new.
    let asking = Arc::new(AtomicBool::new(true));
    let cli = {
        let (asking, state) = (asking.clone(), d.path().to_owned());
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, Vec::new());
            while asking.load(Ordering::SeqCst) {
                let run = berth(&state, &["status", "--json"]);
                match run.code {
                    0 => answered += 1,
                    _ => failed.push(run),
                }
            }
            (answered, failed)
        })
    };
    let first = d.serving_pid().unwrap();
    let mut daemons = vec![first];
    let mut seen = traffic(&d, 0, 200);
    for round in 0..3 {
        let run = d.berth(&["upgrade"]);
        assert_eq!(run.code, 0, "upgrade {round}: {run:?}\n{}", d.log());
        assert!(run.stdout.contains("no app was restarted"), "{run:?}");
        let now = d.serving_pid().unwrap();
        assert!(!daemons.contains(&now), "upgrade {round}: still pid {now}");
        daemons.push(now);
        // The WebSocket opened before the upgrades goes on (its daemon drains it).
        assert_eq!(
            ws.echo(&format!("after upgrade {round}")),
            format!("r1: after upgrade {round}")
        );
        assert_eq!(pids(&d), before, "upgrade {round} restarted an app");
        seen = traffic(&d, seen, 200);
    }
    asking.store(false, Ordering::SeqCst);
    let (answered, failed) = cli.join().unwrap();
    assert!(
        answered > 3 && failed.is_empty(),
        "{answered} answered; failed: {failed:?}"
    );
    for round in 0..3 {
        let pid = d.serving_pid().unwrap();
        signal(pid, libc_sig::TERM);
        wait_unlocked(d.path());
        d.restart();
        assert_ne!(d.serving_pid(), Some(pid));
        assert_eq!(pids(&d), before, "restart {round} restarted an app");
        seen = traffic(&d, seen, 200);
    }
    stop.store(true, Ordering::SeqCst);
    let [a, b] = loads.map(|l| l.join().unwrap());
    eprintln!("alpha: {a:?}, beta: {b:?} (requests, non-2xx, socket errors)");
    assert!(a.0 > 100 && b.0 > 100, "the load ran: {a:?} {b:?}");
    assert_eq!((a.1, a.2, b.1, b.2), (0, 0, 0, 0), "{}", d.log());

    // A new WebSocket on the daemon serving now.
    let mut ws = BlockingWs::connect(d.http, "beta.test", "/ws");
    assert_eq!(ws.echo("again"), "r1: again");
    let history: Value = serde_json::from_str(&d.berth(&["history", "--json"]).stdout).unwrap();
    let upgrades = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "upgrade")
        .count();
    assert_eq!(upgrades, 3, "{history:#}");
}

#[test]
fn a_successor_that_fails_leaves_the_old_daemon_serving() {
    let d = Daemon::start();
    let dir = hosted_app("alpha", "alpha.test");
    assert_eq!(d.berth(&["deploy", dir.path().to_str().unwrap()]).code, 0);
    let before = pids(&d);
    let pid = d.serving_pid().unwrap();
    // A binary that exits at once.
    let run = d.berth(&["upgrade", "--binary", "/bin/false"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the new daemon (/bin/false) did not take over")
            && run.stderr.contains("exited before it was ready")
            && run.stderr.contains("this daemon goes on serving"),
        "{run:?}"
    );
    // Not a file at all: bad input.
    let run = d.berth(&["upgrade", "--binary", "/nonexistent/berth"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is not an executable file"), "{run:?}");
    assert_eq!(d.serving_pid(), Some(pid));
    assert_eq!(pids(&d), before);
    assert_eq!(
        http_get(d.http, "alpha.test", "/").unwrap(),
        (200, "release r1\n".to_owned())
    );
}

/// `kill -9` of the daemon at some moment of an upgrade: then one daemon serves every app, no
/// process is left that no daemon knows, and the state database is intact.
#[test]
fn kill_9_during_an_upgrade_leaves_one_daemon_serving_and_no_orphan() {
    let mut d = Daemon::start();
    for (name, host) in [("alpha", "alpha.test"), ("beta", "beta.test")] {
        let dir = hosted_app(name, host);
        assert_eq!(d.berth(&["deploy", dir.path().to_str().unwrap()]).code, 0);
    }
    // Random moments over the hand-over (15 to 40 ms here), counted from when the new daemon
    // appears: even trials kill the old daemon, odd ones the new. Printed, so that a failure
    // can be tried again at its moment.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let delays: Vec<u64> = (0..5u64).map(|i| (seed >> (i * 5)) % 16).collect();
    eprintln!("kill -9 after {delays:?} ms");
    for (trial, delay) in delays.into_iter().enumerate() {
        let old = d.serving_pid().unwrap();
        let path = d.path().to_owned();
        let upgrade = std::thread::spawn(move || berth(&path, &["upgrade"]));
        // Looked for without pausing between looks: the whole hand-over takes a few polls.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let new = loop {
            if let Some(p) = daemons_on(d.path()).into_iter().find(|&p| p != old) {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new daemon started"
            );
        };
        std::thread::sleep(Duration::from_millis(delay));
        let victim = if trial % 2 == 0 { old } else { new };
        signal(victim, libc_sig::KILL);
        let _ = upgrade.join();
        // If the other daemon of the pair survived, it serves; else start one.
        let state = d.path().to_owned();
        let serving = wait_for(
            "a daemon to serve, or none to run",
            Duration::from_secs(30),
            || match d.serving_pid() {
                Some(pid) => Some(Some(pid)),
                None if daemons_on(&state).is_empty() => Some(None),
                None => None,
            },
        );
        eprintln!(
            "trial {trial}: killed {victim} (old {old}, new {new}) after {delay} ms; serving after: {serving:?}"
        );
        if serving.is_none() {
            wait_unlocked(d.path());
            d.restart();
        }
        wait_for("every app to serve", Duration::from_secs(20), || {
            let a = http_get(d.http, "alpha.test", "/")?;
            let b = http_get(d.http, "beta.test", "/")?;
            (a.0 == 200 && b.0 == 200).then_some(())
        });
        let known: Vec<u64> = pids(&d).into_iter().map(|(_, p)| p).collect();
        assert_eq!(known.len(), 4, "trial {trial}");
        // Every app process under the state directory is one the serving daemon knows.
        wait_for("no orphan", Duration::from_secs(15), || {
            let running: Vec<u64> = testkit::processes_under(d.path())
                .into_iter()
                .map(|(p, _)| u64::from(p))
                .collect();
            running.iter().all(|p| known.contains(p)).then_some(())
        });
        // A daemon that handed over finishes its requests and exits.
        wait_for("one daemon", Duration::from_secs(40), || {
            (daemons_on(d.path()).len() == 1).then_some(())
        });
    }
    let out = std::process::Command::new("sqlite3")
        .arg(d.path().join("state.db"))
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("sqlite3 is installed (scripts/test installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// `berth serve` processes running on `state`.
fn daemons_on(state: &std::path::Path) -> Vec<u32> {
    let state = state.to_string_lossy().into_owned();
    testkit::live_processes()
        .filter_map(|(pid, dir)| {
            let cmd =
                String::from_utf8_lossy(&std::fs::read(dir.join("cmdline")).ok()?).into_owned();
            let env =
                String::from_utf8_lossy(&std::fs::read(dir.join("environ")).ok()?).into_owned();
            (cmd.contains("\0serve") && env.contains(&state)).then_some(pid)
        })
        .collect()
}

/// A warm standby survives an upgrade and a restart of berth: its instances are adopted, and
/// a rollback to it is still a route swap to the same process.
#[test]
fn a_warm_standby_is_adopted_across_an_upgrade_and_a_restart() {
    let mut d = Daemon::start();
    let top = "[deploy]\nstandby = \"5m\"\n";
    let v1 = ws_app("warm", "", top);
    assert_eq!(d.berth(&["deploy", v1.path().to_str().unwrap()]).code, 0);
    let v2 = ws_app("warm", "", &format!("{top}[env]\nVERSION = \"2\"\n"));
    assert_eq!(d.berth(&["deploy", v2.path().to_str().unwrap()]).code, 0);
    let standby_pid = |d: &Daemon| d.status()["apps"][0]["standby"]["instances"][0]["pid"].clone();
    let before = standby_pid(&d);
    assert!(before.is_u64(), "{before}");

    let run = d.berth(&["upgrade"]);
    assert_eq!(run.code, 0, "{run:?}");
    wait_for("the standby to be kept", Duration::from_secs(10), || {
        (standby_pid(&d) == before).then_some(())
    });
    let pid = d.serving_pid().unwrap();
    signal(pid, libc_sig::TERM);
    wait_unlocked(d.path());
    d.restart();
    wait_for("the standby to be kept", Duration::from_secs(10), || {
        (standby_pid(&d) == before).then_some(())
    });

    let run = d.berth(&["rollback", "warm"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("(warm standby)"), "{run:?}");
    assert_eq!(instances(&d.status(), "warm")[0]["pid"], before);
    assert_serves(&d, "warm", "r1");
}

/// An adopted instance reports the limits it was started with (not none), and the same
/// mechanism for each: cgroup, rlimit, or not enforced and why.
#[test]
fn an_adopted_instance_reports_the_limits_it_runs_under() {
    let d = Daemon::start();
    let dir = app(&[(
        "berth.toml",
        "[app]\nname = \"held\"\n\
         [services.small]\ncommand = \"python3 -c 'import time; time.sleep(3600)'\"\nmemory_max = \"64M\"\ncpu_max = \"50%\"\npids_max = 64\n",
    )]);
    assert_eq!(d.berth(&["deploy", dir.path().to_str().unwrap()]).code, 0);
    let before = &instances(&d.status(), "held")[0];
    let limits = before["limits"].clone();
    assert_eq!(limits.as_array().map(Vec::len), Some(3), "{limits:#}");
    let run = d.berth(&["upgrade"]);
    assert_eq!(run.code, 0, "{run:?}");
    let after = wait_for("the instance adopted", Duration::from_secs(10), || {
        let status = d.status();
        let i = instances(&status, "held").first()?.clone();
        (i["pid"] == before["pid"] && i["state"] == "ready").then_some(i)
    });
    assert_eq!(after["limits"], limits, "{after:#}");
}
