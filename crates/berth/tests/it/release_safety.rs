//! Release safety: smoke checks before the switch, a watch window that cannot be diluted,
//! wildcard-only apps, rollback from a warm standby, canary steps. The tests print what they
//! measured (client answers, shares, rollback time) for the closing notes.
#![allow(clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A client sending `GET path` every few milliseconds until `stop`: (answers, non-200, none).
fn client_load(
    addr: SocketAddr,
    path: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64, u64)> {
    std::thread::spawn(move || {
        let (mut answers, mut bad, mut failed) = (0, 0, 0);
        while !stop.load(Ordering::Relaxed) {
            match http_get(addr, "localhost", path) {
                Some((200, _)) => answers += 1,
                Some(_) => {
                    answers += 1;
                    bad += 1
                }
                None => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (answers, bad, failed)
    })
}

/// Deploy `good` (the app's `top` lines), then `top` plus `env` while a client keeps asking:
/// the deploy's run and what the client got.
fn deploy_under_load(name: &str, top: &str, env: &str) -> (Daemon, Run, (u64, u64, u64)) {
    let d = Daemon::start();
    let good = ws_app(name, "", top);
    assert_eq!(d.berth(&["deploy", good.path().to_str().unwrap()]).code, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let load = client_load(d.http, "/", stop.clone());
    let bad = ws_app(name, "", &format!("{top}[env]\n{env}"));
    let run = d.berth(&["deploy", bad.path().to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    let seen = load.join().unwrap();
    (d, run, seen)
}

/// The newest rollout's result and the gate it failed at.
fn last_result(history: &Value) -> (&str, &str) {
    let last = &history["deploys"][0];
    (
        last["result"].as_str().unwrap_or_default(),
        last["gate"].as_str().unwrap_or_default(),
    )
}

fn history(d: &Daemon, app: &str) -> Value {
    serde_json::from_str(&d.berth(&["history", app, "--json"]).stdout).unwrap()
}

#[test]
fn a_failing_smoke_check_is_caught_before_any_client_sees_the_release() {
    // It takes a second to start, so the client asks throughout a deploy of some length.
    let (d, run, (answers, bad_answers, failed)) = deploy_under_load(
        "smoky",
        "[deploy]\nsmoke = [{ path = \"/\" }]\n",
        "STATUS = \"500\"\nSTART_DELAY = \"1\"\n",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("failed at the smoke gate")
            && run.stderr.contains(
                "smoke check: GET / (Host: localhost) on smoky r2, before the switch: answered 500, expected 200"
            )
            && run.stderr.contains("release r1 keeps serving"),
        "{run:?}"
    );
    eprintln!(
        "client during the refused deploy: {answers} answers, {bad_answers} not 200, {failed} failed"
    );
    assert!(answers > 10, "the client kept asking: {answers}");
    assert_eq!((bad_answers, failed), (0, 0));
    assert_serves(&d, "smoky", "r1");
    let h = history(&d, "smoky");
    assert_eq!(last_result(&h), ("failed", "smoke"));
    let s = &h["summary"][0];
    assert_eq!(
        (
            &s["deploys"],
            &s["failed_changes"],
            &s["caught_before_traffic"]
        ),
        (&Value::from(1), &Value::from(0), &Value::from(1))
    );
}

#[test]
fn a_release_that_fails_late_in_the_watch_window_is_rolled_back() {
    // 50% errors from 13 s after start in a 20 s window: about 15% over the whole window (below
    // the 20% limit), but 20% within a 10 s window by about 17 s.
    let (d, run, _) = deploy_under_load(
        "late",
        "[deploy]\nwatch = \"20s\"\nmax_error_rate = \"20%\"\n",
        "FAIL_AFTER = \"13\"\n",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("failed at the watch gate")
            && run
                .stderr
                .contains("requests to late r2 in the last 10s answered 5xx")
            && run
                .stderr
                .contains("max_error_rate 20%; baseline: r1 answered 0% of")
            && run.stderr.contains("rolled back to r1, which serves again"),
        "{run:?}"
    );
    assert_serves(&d, "late", "r1");
}

#[test]
fn a_wildcard_only_app_passes_its_smoke_checks_over_https() {
    let https = testkit::free_port();
    let https_addr = format!("127.0.0.1:{https}");
    let d = Daemon::start_with(&["--http", "127.0.0.1:0", "--https", &https_addr], &[]);
    let dir = app(&[
        (
            "berth.toml",
            "[app]\nname = \"tenants\"\n\n[services.web]\ncommand = \"python3 -u web.py\"\nhealth = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }\n\n[[routes]]\nhost = \"*.tenants.test\"\npath = \"/\"\nservice = \"web\"\n\n[tls]\nself_signed = true\n\n[deploy]\nsmoke = [{ path = \"/\" }, { path = \"/health\", host = \"acme.tenants.test\" }]\n",
        ),
        ("web.py", PY_WS_WEB),
    ]);
    let check = d.berth(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check.stdout.contains("warning: [deploy] smoke #1 (GET /) has no host to use: every route is a wildcard, so it is sent as www.tenants.test (under *.tenants.test)"),
        "{check:?}"
    );
    for _ in 0..2 {
        let run = d.berth(&["deploy", dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            run.stderr
                .contains("GET / (Host: www.tenants.test, HTTPS) answered 200")
                && run
                    .stderr
                    .contains("GET /health (Host: acme.tenants.test, HTTPS) answered 200"),
            "{run:?}"
        );
    }
}

/// The release a request from `client` (sent as `X-Forwarded-For` through a trusted proxy)
/// gets, on one keep-alive connection.
struct Client {
    stream: TcpStream,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Client { stream }
    }

    fn get(&mut self, path: &str, client: u32) -> (u16, String) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + client);
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: {ip}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

fn canary_status(d: &Daemon, app: &str) -> Option<(f64, u64)> {
    let s = d.status();
    let a = s["apps"].as_array()?.iter().find(|a| a["name"] == app)?;
    let c = a.get("canary").filter(|c| !c.is_null())?;
    Some((c["percent"].as_f64()?, c["step"].as_u64()?))
}

#[test]
fn canary_steps_shift_the_measured_share_of_clients_and_a_bad_step_rolls_back() {
    let d = Daemon::start();
    let top = "[proxy]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[deploy]\ncanary = [\"10%\", \"50%\", \"100%\"]\nstep = \"10s\"\n";
    let v1 = ws_app("birds", "", top);
    assert_eq!(d.berth(&["deploy", v1.path().to_str().unwrap()]).code, 0);
    let v2 = ws_app("birds", "", &format!("{top}[env]\nVERSION = \"2\"\n"));
    let deploy = {
        let (state, dir) = (d.path().to_owned(), v2.path().to_owned());
        std::thread::spawn(move || berth(&state, &["deploy", dir.to_str().unwrap()]))
    };
    for (percent, step) in [(10.0, 1), (50.0, 2)] {
        wait_for("the canary step", Duration::from_secs(20), || {
            canary_status(&d, "birds") == Some((percent, step))
        });
        // 400 clients over 8 connections, well within the step.
        let clients = 400u32;
        let t = Instant::now();
        let askers: Vec<_> = (0..8u32)
            .map(|k| {
                let addr = d.http;
                std::thread::spawn(move || {
                    let mut c = Client::new(addr);
                    (k * 50..(k + 1) * 50)
                        .filter(|&i| c.get("/", i).1 == "release r2\n")
                        .count()
                })
            })
            .collect();
        let on_new = askers.into_iter().map(|a| a.join().unwrap()).sum::<usize>() as f64;
        assert_eq!(
            canary_status(&d, "birds"),
            Some((percent, step)),
            "measured within step {step} ({:?})",
            t.elapsed()
        );
        let measured = on_new / f64::from(clients) * 100.0;
        let mut c = Client::new(d.http);
        eprintln!(
            "canary step {step}: {percent}% asked, {measured:.1}% of {clients} clients on r2"
        );
        assert!(
            (measured - percent).abs() <= 5.0,
            "step {step}: {measured}% of clients on r2, asked {percent}%"
        );
        // Sticky: the same client gets the same release again.
        assert!((0..50).all(|i| c.get("/", i).1 == c.get("/", i).1));
    }
    let run = deploy.join().unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("canary step 2 of 3 (50%) passed"),
        "{run:?}"
    );
    assert_eq!(canary_status(&d, "birds"), None);
    assert_serves(&d, "birds", "r2");

    // r3 answers 500 on /api: the clients of the first step see it, and it goes back.
    let v3 = ws_app("birds", "", &format!("{top}[env]\nFAIL_PATH = \"/api\"\n"));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, errors, addr) = (stop.clone(), errors.clone(), d.http);
        std::thread::spawn(move || {
            let mut c = Client::new(addr);
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if c.get("/api", i % 600).0 == 500 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };
    let run = d.berth(&["deploy", v3.path().to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("failed at the canary gate")
            && run.stderr.contains("canary step 1 of 3 (10%): ")
            && run.stderr.contains("requests to birds r3")
            && run.stderr.contains("its clients are back on release r2"),
        "{run:?}"
    );
    eprintln!(
        "500s seen by clients in the bad canary step: {}",
        errors.load(Ordering::Relaxed)
    );
    assert_serves(&d, "birds", "r2");
    let h = history(&d, "birds");
    assert_eq!(last_result(&h), ("rolled-back", "canary"));
}

#[test]
fn a_rollback_to_the_warm_standby_is_a_route_swap() {
    let d = Daemon::start();
    let top = "[deploy]\nstandby = \"5m\"\n";
    let slow = "[env]\nSTART_DELAY = \"3\"\n";
    let v1 = ws_app("warm", "", &format!("{top}{slow}"));
    assert_eq!(d.berth(&["deploy", v1.path().to_str().unwrap()]).code, 0);
    let v2 = ws_app("warm", "", &format!("{top}{slow}VERSION = \"2\"\n"));
    assert_eq!(d.berth(&["deploy", v2.path().to_str().unwrap()]).code, 0);
    let status = d.berth(&["status", "warm"]);
    assert!(
        status.stdout.contains("standby r1: 1 instance warm (")
            && status
                .stdout
                .contains("`berth rollback warm` is a route swap"),
        "{status:?}"
    );
    // A standby instance that dies is restarted (the supervisor keeps it), and stays warm.
    let standby = |d: &Daemon| d.status()["apps"][0]["standby"]["instances"][0].clone();
    let killed = standby(&d)["pid"].as_u64().unwrap() as u32;
    signal(killed, libc_sig::KILL);
    let pid_before = wait_for("the standby to be back", Duration::from_secs(30), || {
        let s = standby(&d);
        (s["state"] == "ready" && s["pid"].as_u64() != Some(u64::from(killed)))
            .then(|| s["pid"].clone())
    });
    // From the command to the first answer of r1, while a client keeps asking.
    let seen = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let watcher = {
        let (seen, addr) = (seen.clone(), d.http);
        std::thread::spawn(move || {
            let mut c = Client::new(addr);
            while c.get("/", 1).1 != "release r1\n" {}
            seen.store(true, Ordering::SeqCst);
            t0.elapsed()
        })
    };
    let run = d.berth(&["rollback", "warm"]);
    let to_traffic = watcher.join().unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    eprintln!(
        "rollback to the warm standby: {:.1} ms from the command to r1's first answer (the app takes 3 s to start); the command took {:.1} ms",
        to_traffic.as_secs_f64() * 1000.0,
        t0.elapsed().as_secs_f64() * 1000.0
    );
    assert!(run.stderr.contains("(warm standby)"), "{run:?}");
    assert!(to_traffic < Duration::from_millis(1500), "{to_traffic:?}");
    let live = instances(&d.status(), "warm");
    assert_eq!(live[0]["pid"], pid_before, "the same process serves again");
    // And r2 is the standby now: forward again just as fast.
    let t = Instant::now();
    let run = d.berth(&["rollback", "warm", "--to", "r2"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("(warm standby)"), "{run:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    assert_serves(&d, "warm", "r2");
}
