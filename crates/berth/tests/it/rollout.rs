//! Zero-downtime rollouts: load during deploys and rollbacks, gates after the switch,
//! kill -9 at every step, manual rollback, dry-run, history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// The release a command made live, from its last stdout line.
fn made_live(run: &Run) -> String {
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .split_whitespace()
        .find(|w| w.starts_with('r') && w[1..].parse::<u32>().is_ok())
        .unwrap()
        .to_owned()
}

#[test]
fn twenty_deploys_and_five_rollbacks_under_load_lose_no_request() {
    let d = Daemon::start();
    let app = ws_app("steady", "instances = 2", "");
    let dir = app.path().to_str().unwrap().to_owned();
    // (release, command started, command ended): the release became live within that command.
    let mut timeline = vec![(
        made_live(&d.berth(&["deploy", &dir])),
        Instant::now(),
        Instant::now(),
    )];

    let stop = Arc::new(AtomicBool::new(false));
    let load_began = Instant::now();
    let wrk = wrk_until(d.http, None, stop.clone());
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (stop, samples, http) = (stop.clone(), samples.clone(), d.http);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let got = http_get(http, "example.test", "/");
                samples.lock().unwrap().push((t, got));
            }
        })
    };

    for i in 1..=25 {
        let start = Instant::now();
        let run = if i % 5 == 0 {
            d.berth(&["rollback", "steady"])
        } else if i == 12 {
            // A deploy with a WebSocket open: it keeps working on the old release after the
            // switch, and the deploy finishes when it closes.
            let mut ws = testkit::ws::BlockingWs::connect(d.http, "example.test", "/ws");
            let before = ws.echo("before");
            let old = before.split(':').next().unwrap().to_owned();
            let state = d.path().to_owned();
            let deploy = {
                let dir = dir.clone();
                std::thread::spawn(move || berth(&state, &["deploy", &dir]))
            };
            wait_for(
                "the switch with a WebSocket open",
                Duration::from_secs(30),
                || (d.status()["apps"][0]["release"] != old.as_str()).then_some(()),
            );
            assert_eq!(
                ws.echo("after the switch"),
                format!("{old}: after the switch")
            );
            ws.close();
            deploy.join().unwrap()
        } else {
            d.berth(&["deploy", &dir])
        };
        timeline.push((made_live(&run), start, Instant::now()));
    }
    // The rollouts can be over in three seconds; the load runs at least five, so that enough
    // requests were made for "none was lost" to mean something on a slow machine too.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(load_began.elapsed()));
    stop.store(true, Ordering::SeqCst);
    let (requests, non2xx, errors) = wrk.join().unwrap();
    sampler.join().unwrap();

    assert!(requests > 500, "wrk made only {requests} requests");
    assert_eq!(
        (non2xx, errors),
        (0, 0),
        "wrk saw failures over {requests} requests\n{}",
        d.log()
    );

    // Every sampled response is a 200 naming a release that was live at that moment: it went
    // live no later than the end of its command, and was replaced no earlier than the start of
    // the next command.
    let samples = samples.lock().unwrap();
    assert!(samples.len() > 50, "only {} samples", samples.len());
    for (t, got) in samples.iter() {
        let (code, body) = got
            .clone()
            .unwrap_or_else(|| panic!("a sampled request failed at {t:?}"));
        assert_eq!(code, 200, "{body}");
        let release = body.trim().strip_prefix("release ").unwrap();
        let ok = timeline
            .iter()
            .enumerate()
            .any(|(k, (r, _, went_live_by))| {
                r == release
                    && *t + Duration::from_millis(1) >= timeline[k].1.min(*went_live_by)
                    && timeline.get(k + 1).is_none_or(|next| *t <= next.2)
            });
        assert!(
            ok,
            "response from {release} at a moment it was not live; timeline {timeline:?}"
        );
    }
    let history: Value =
        serde_json::from_str(&d.berth(&["history", "steady", "--json"]).stdout).unwrap();
    assert_eq!(history["summary"][0]["deploys"], 21);
    assert_eq!(history["summary"][0]["rollbacks"], 5);
}

/// Deploy `bad` over a good r1 that has smoke checks and a watch window: exit 1 naming `gate`
/// (after the switch), and r1 serves again.
fn rolled_back(name: &str, env: &str, gate: &str, expect: &str) {
    let d = Daemon::start();
    let gates = "[deploy]\nsmoke = [{ path = \"/\" }]\nwatch = \"3s\"\n";
    let good = ws_app(name, "", gates);
    assert_eq!(
        made_live(&d.berth(&["deploy", good.path().to_str().unwrap()])),
        "r1"
    );
    let bad = ws_app(name, "", &format!("{gates}[env]\n{env}\n"));
    let run = d.berth(&["deploy", bad.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!("failed at the {gate} gate")),
        "{run:?}"
    );
    assert!(run.stderr.contains(expect), "{run:?}");
    assert!(
        run.stderr.contains("rolled back to r1, which serves again"),
        "{run:?}"
    );
    assert_serves(&d, name, "r1");
    let history: Value =
        serde_json::from_str(&d.berth(&["history", name, "--json"]).stdout).unwrap();
    let last = &history["deploys"][0];
    assert_eq!(
        (last["result"].as_str(), last["gate"].as_str()),
        (Some("rolled-back"), Some(gate))
    );
    let releases: Value =
        serde_json::from_str(&d.berth(&["releases", name, "--json"]).stdout).unwrap();
    assert_eq!(releases["releases"][0]["status"], "failed");
}

#[test]
fn a_crash_in_the_watch_window_rolls_back() {
    rolled_back(
        "crashy",
        "CRASH_AFTER = \"1\"",
        "watch",
        "watch window: service web instance 0 of crashy r2 exited (exit code 9)",
    );
}

/// Deploys r2 of `name`, which answers 500 on `/api`, while a client sends one request in four
/// there: a 25% error rate in the watch window, against `max_error_rate`.
fn deploy_under_errors(name: &str, max_error_rate: &str) -> (Daemon, Run) {
    let d = Daemon::start();
    let gates = format!(
        "[deploy]\nsmoke = [{{ path = \"/\" }}]\nwatch = \"4s\"\nmax_error_rate = \"{max_error_rate}\"\n"
    );
    let good = ws_app(name, "", &gates);
    assert_eq!(
        made_live(&d.berth(&["deploy", good.path().to_str().unwrap()])),
        "r1"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), d.http);
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let path = if n.is_multiple_of(4) { "/api" } else { "/" };
                let _ = http_get(addr, "localhost", path);
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let bad = ws_app(name, "", &format!("{gates}[env]\nFAIL_PATH = \"/api\"\n"));
    let run = d.berth(&["deploy", bad.path().to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    (d, run)
}

#[test]
fn errors_above_the_threshold_in_the_watch_window_roll_back() {
    let (d, run) = deploy_under_errors("flaky", "20%");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("failed at the watch gate"), "{run:?}");
    assert!(
        run.stderr.contains("requests to flaky r2 in the last")
            && run
                .stderr
                .contains("above 20% (max_error_rate 20%; baseline: r1 answered"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("rolled back to r1, which serves again"),
        "{run:?}"
    );
    assert_eq!(d.get("/api").unwrap(), (200, "release r1\n".to_owned()));
}

#[test]
fn errors_below_the_threshold_keep_the_release() {
    let (d, run) = deploy_under_errors("tolerant", "50%");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(d.get("/").unwrap(), (200, "release r2\n".to_owned()));
    assert_eq!(d.get("/api").unwrap().0, 500);
}

#[test]
fn rollback_releases_dry_run_and_history() {
    let d = Daemon::start();
    let app = ws_app("flip", "", "");
    let dir = app.path().to_str().unwrap();
    assert_eq!(made_live(&d.berth(&["deploy", dir])), "r1");
    assert_eq!(made_live(&d.berth(&["deploy", dir])), "r2");

    let run = d.berth(&["rollback", "flip"]);
    assert_eq!(made_live(&run), "r1");
    assert!(run.stdout.starts_with("rolled back flip r1"), "{run:?}");
    assert_eq!(d.get("/").unwrap().1, "release r1\n");
    assert_eq!(
        made_live(&d.berth(&["rollback", "flip", "--to", "r2"])),
        "r2"
    );
    assert_eq!(d.get("/").unwrap().1, "release r2\n");

    for (args, message) in [
        (
            vec!["rollback", "flip", "--to", "r9"],
            "flip has no release r9",
        ),
        (
            vec!["rollback", "flip", "--to", "r2"],
            "r2 is already the live release of flip",
        ),
        (vec!["rollback", "nope"], "no app named nope"),
    ] {
        let run = d.berth(&args);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains(message), "{run:?}");
        assert!(run.stderr.contains("hint: "), "{run:?}");
    }

    // Dry-run: a plan, and nothing changes.
    let bigger = ws_app(
        "flip",
        "instances = 3",
        "[env]\nNEW_KEY = \"value-never-shown\"\n",
    );
    let run = d.berth(&["deploy", "--dry-run", bigger.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("plan for flip (replaces r2); nothing was changed"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("~ service web: instances 1 -> 3"),
        "{run:?}"
    );
    assert!(run.stdout.contains("~ env     +NEW_KEY"), "{run:?}");
    assert!(!run.stdout.contains("value-never-shown") && !run.stderr.contains("value-never-shown"));

    let releases: Value =
        serde_json::from_str(&d.berth(&["releases", "flip", "--json"]).stdout).unwrap();
    let ids: Vec<(&str, bool)> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["live"].as_bool().unwrap()))
        .collect();
    assert_eq!(ids, [("r2", true), ("r1", false)]);
    let text = d.berth(&["releases", "flip"]);
    assert!(
        text.stdout.lines().any(|l| l.starts_with("* r2")),
        "{text:?}"
    );

    let history: Value = serde_json::from_str(&d.berth(&["history", "--json"]).stdout).unwrap();
    let kinds: Vec<&str> = history["deploys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["rollback", "rollback", "deploy", "deploy"]);
    let summary = &history["summary"][0];
    assert_eq!(
        (summary["deploys"].as_u64(), summary["rollbacks"].as_u64()),
        (Some(2), Some(2))
    );
    // r2 was rolled back by hand within the hour: a failed change.
    assert_eq!(summary["failed_changes"], 1);
    assert_eq!(summary["change_failure_rate"], 0.5);
    let text = d.berth(&["history", "flip"]);
    assert!(
        text.stdout.contains(
            "flip: 2 deploys that went live (1 failed), 0 caught before traffic, 2 rollbacks;"
        ),
        "{text:?}"
    );
    assert!(text.stdout.contains("r1->r2"), "{text:?}");
}

#[test]
fn rollback_goes_back_to_the_release_that_served_before_not_the_newest_older_one() {
    let d = Daemon::start();
    let app = ws_app("back", "", "");
    let dir = app.path().to_str().unwrap();
    assert_eq!(made_live(&d.berth(&["deploy", dir])), "r1");
    assert_eq!(made_live(&d.berth(&["deploy", dir])), "r2");
    assert_eq!(made_live(&d.berth(&["rollback", "back"])), "r1");
    assert_eq!(made_live(&d.berth(&["deploy", dir])), "r3");
    // Back is r1, which served before r3; not r2, which was rolled back from.
    let text = d.berth(&["releases", "back"]);
    for (line, state) in [
        ("* r3", "live"),
        ("  r2", "rolled-back"),
        ("  r1", "previous"),
    ] {
        assert!(
            text.stdout
                .lines()
                .any(|l| l.starts_with(line) && l.trim_end().ends_with(state)),
            "{line} {state}: {text:?}"
        );
    }
    assert_eq!(made_live(&d.berth(&["rollback", "back"])), "r1");
    // Rolling back again goes further back, not forth: there is nothing before r1.
    let run = d.berth(&["rollback", "back"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("back has no earlier release to roll back to"),
        "{run:?}"
    );
}

#[test]
fn releases_say_what_each_is_and_pruning_keeps_the_newest_good_ones() {
    let d = Daemon::start();
    // The build fails while the file `broken` exists.
    let app = ws_app(
        "keeper",
        "",
        "[build]\ncommand = \"test ! -e broken\"\n[deploy]\nkeep_releases = 2\n",
    );
    let dir = app.path().to_str().unwrap();
    let broken = app.path().join("broken");
    for (n, fails) in [(1, false), (2, true), (3, false), (4, true), (5, false)] {
        if fails {
            std::fs::write(&broken, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&broken);
        }
        let run = d.berth(&["deploy", dir]);
        assert_eq!(run.code, i32::from(fails), "r{n}: {run:?}");
    }
    let states = || -> Vec<(String, String)> {
        let releases: Value =
            serde_json::from_str(&d.berth(&["releases", "keeper", "--json"]).stdout).unwrap();
        releases["releases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // The two newest releases that went live stay; the failed ones went first. (Pruning
    // follows the drain of the replaced release, after the deploy returned.)
    let expected: Vec<(String, String)> = [
        ("r5", "live"),
        ("r4", "pruned"),
        ("r3", "previous"),
        ("r2", "pruned"),
        ("r1", "pruned"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    wait_for(
        "the prune after r5's drain",
        Duration::from_secs(20),
        || (states() == expected).then_some(()),
    );
    let mut on_disk: Vec<String> = std::fs::read_dir(d.path().join("apps/keeper/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, ["r3", "r5"]);
    // r5 was unpacked while r3 served: the files they share are one file on disk.
    let inode = |release: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(
            d.path()
                .join(format!("apps/keeper/releases/{release}/web.py")),
        )
        .unwrap()
        .ino()
    };
    assert_eq!(inode("r5"), inode("r3"));
    let text = d.berth(&["releases", "keeper"]);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("  r3") && l.contains("previous")),
        "{text:?}"
    );
    assert_eq!(made_live(&d.berth(&["rollback", "keeper"])), "r3");
}

#[test]
fn a_deploy_returns_while_the_release_it_replaced_drains_then_websockets_get_1001() {
    let d = Daemon::start();
    let app = ws_app("drainer", "", "[deploy]\ndrain = \"3s\"\n");
    let dir = app.path().to_str().unwrap();
    assert_eq!(made_live(&d.berth(&["deploy", dir])), "r1");
    let mut ws = testkit::ws::BlockingWs::connect(d.http, "example.test", "/ws");
    assert_eq!(ws.echo("hello"), "r1: hello");

    let started = Instant::now();
    let run = d.berth(&["deploy", dir]);
    assert_eq!(made_live(&run), "r2");
    assert!(
        run.stderr
            .contains("release r1 finishes its requests in the background (up to 3s)"),
        "{run:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deploy waited for the drain"
    );
    // The old release still serves its WebSocket, and status and history say it drains.
    assert_eq!(ws.echo("still there"), "r1: still there");
    let status = d.status();
    assert_eq!(
        status["apps"][0]["draining"][0]["release"], "r1",
        "{status:#}"
    );
    assert_eq!(
        status["apps"][0]["draining"][0]["instances"], 1,
        "{status:#}"
    );
    let text = d.berth(&["status", "drainer"]);
    assert!(text.stdout.contains("draining r1: 1 instance"), "{text:?}");
    let history = d.berth(&["history", "drainer"]);
    assert!(history.stdout.contains("draining"), "{history:?}");

    // When the drain ends, the client is told the server is going away (1001), not cut.
    assert_eq!(ws.closed(Duration::from_secs(10)), Some(1001));
    let drained = wait_for("the drain to be recorded", Duration::from_secs(10), || {
        let h: Value =
            serde_json::from_str(&d.berth(&["history", "drainer", "--json"]).stdout).unwrap();
        let last = h["deploys"][0].clone();
        last["drain_ms"].as_u64().map(|ms| (ms, last))
    });
    assert!(drained.0 >= 2500, "{drained:?}");
    assert_eq!(drained.1["step"], "done", "{drained:?}");
    assert!(
        d.status()["apps"][0]["draining"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
