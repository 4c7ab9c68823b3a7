//! `berth serve` under systemd (`Type=notify`): a datagram socket of the test's own is
//! systemd's end of `NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::py_app;
use crate::harness::*;

/// Every message until one holds `want`, or the deadline.
fn until(socket: &UnixDatagram, want: &str, within: Duration, seen: &mut Vec<String>) {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(want)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {want} within {within:?}; got {seen:?}");
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn serve_says_ready_once_apps_are_recovered_pings_the_watchdog_and_says_stopping() {
    // A daemon that serves an app, stopped: the next start has it to recover.
    let mut d = Daemon::start();
    let app = py_app("notified", "");
    let run = d.berth(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(d.terminate(), 0, "{}", d.log());

    let systemd = tempfile::tempdir().unwrap();
    let path = systemd.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut child = Command::new(BERTH)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("BERTH_STATE", d.path())
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    until(&socket, "READY=1", Duration::from_secs(30), &mut seen);

    // Told ready: the app is back and serves at once, no waiting.
    let status = d.status();
    let live = instances(&status, "notified");
    assert_eq!(live.len(), 1, "{status}");
    assert_eq!(live[0]["state"], "ready", "{status}");
    let http = status["daemon"]["http"].as_str().unwrap();
    let answer = http_get(http.parse().unwrap(), "example.test", "/");
    assert!(
        matches!(&answer, Some((200, body)) if body.starts_with("release r1")),
        "{answer:?}"
    );
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(
        ready.contains(&format!("STATUS=serving 1 app on http {http}")),
        "{ready}"
    );
    let before: Vec<_> = seen.iter().take_while(|m| !m.contains("READY=1")).collect();
    assert!(
        before.iter().any(|m| m.starts_with("STATUS=starting")),
        "{seen:?}"
    );

    // The watchdog, every 200 ms.
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    while pings < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {pings} watchdog pings in 10 s");
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buf)
            && &buf[..n] == b"WATCHDOG=1"
        {
            pings += 1;
        }
    }

    signal(child.id(), libc_sig::TERM);
    seen.clear();
    until(&socket, "STOPPING=1", Duration::from_secs(10), &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
