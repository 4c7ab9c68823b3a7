//! Maintenance mode through the real CLI: `berth maintenance on` makes the app's routes answer
//! 503 with `Retry-After` and a page (the default one with the escaped message, or the
//! release's own `maintenance.html`), survives a restart of the daemon, and `off` ends it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::daemon::py_app;
use crate::harness::*;

/// One GET through the proxy: (status, lowercased head, body).
fn fetch(addr: SocketAddr) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

fn wait_for_status(d: &Daemon, want: u16) -> (String, String) {
    wait_for(
        &format!("GET / to answer {want}"),
        Duration::from_secs(20),
        || {
            fetch(d.http)
                .filter(|(status, ..)| *status == want)
                .map(|(_, head, body)| (head, body))
        },
    )
}

#[test]
fn maintenance_answers_503_with_a_page_survives_a_restart_and_ends() {
    let mut d = Daemon::start();
    let first = py_app("shop", "");
    assert_eq!(d.berth(&["deploy", first.path().to_str().unwrap()]).code, 0);
    assert_eq!(d.get("/").unwrap(), (200, "release r1\n".to_owned()));

    let on = d.berth(&[
        "maintenance",
        "on",
        "shop",
        "--message",
        "back at 5 <b>&</b>",
    ]);
    assert_eq!(on.code, 0, "{on:?}");
    assert!(on.stdout.contains("shop is in maintenance"), "{on:?}");
    let (head, body) = wait_for_status(&d, 503);
    assert!(head.contains("retry-after: 30"), "{head}");
    assert!(head.contains("x-berth-error: maintenance"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        body.contains("back at 5 &lt;b&gt;&amp;&lt;/b&gt;"),
        "{body}"
    );
    assert!(!body.contains("<b>"), "{body}");

    let status = d.status();
    let shop = &status["apps"][0];
    assert_eq!(shop["name"], "shop");
    let why = shop["maintenance"].as_str().unwrap_or_default();
    assert!(
        why.contains("set by the operator") && why.contains("back at 5"),
        "{status:#}"
    );
    // The supervisor's health checks go to the instances directly: they stay ready.
    assert!(
        instances(&status, "shop")
            .iter()
            .all(|i| i["state"] == "ready"),
        "{status:#}"
    );
    let text = d.berth(&["status", "shop"]);
    assert!(
        text.stdout.contains("MAINTENANCE: set by the operator"),
        "{text:?}"
    );

    // Stored: a restart of the daemon keeps the app in maintenance.
    assert_eq!(d.terminate(), 0);
    d.restart();
    let (_, body) = wait_for_status(&d, 503);
    assert!(body.contains("back at 5"), "{body}");

    let off = d.berth(&["maintenance", "off", "shop"]);
    assert_eq!(off.code, 0, "{off:?}");
    assert!(off.stdout.contains("out of maintenance"), "{off:?}");
    let (_, body) = wait_for_status(&d, 200);
    assert_eq!(body, "release r1\n");
    assert_eq!(
        d.status()["apps"][0]["maintenance"],
        serde_json::Value::Null
    );

    // A release with its own page: that page is served instead of the default one.
    let second = py_app("shop", "");
    std::fs::write(
        second.path().join("maintenance.html"),
        "<h1>Our own page</h1>\n",
    )
    .unwrap();
    let run = d.berth(&["deploy", second.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}\n{}", d.log());
    assert_eq!(d.berth(&["maintenance", "on", "shop"]).code, 0);
    let (head, body) = wait_for_status(&d, 503);
    assert!(head.contains("retry-after: 30"), "{head}");
    assert_eq!(body, "<h1>Our own page</h1>\n");
    assert_eq!(d.berth(&["maintenance", "off", "shop"]).code, 0);
    wait_for_status(&d, 200);

    let unknown = d.berth(&["maintenance", "on", "nope"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("no app named nope"), "{unknown:?}");
}
