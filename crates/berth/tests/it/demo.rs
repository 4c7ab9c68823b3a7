//! `berth demo`, exactly as the README runs it (but on a free port).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[test]
fn demo_serves_hello_and_stops_on_ctrl_c() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(BERTH)
        .args(["demo", "--http", &format!("127.0.0.1:{port}")])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(demo.stdout.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "demo ended before serving"
        );
        if let Some(url) = line.trim().strip_prefix("berth demo is serving ") {
            break url.to_owned();
        }
    };
    assert_eq!(url, format!("http://127.0.0.1:{port}/"));
    let (code, body) = http_get(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "localhost",
        "/",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("hello from release r1"), "{body}");

    signal(demo.id(), 2);
    let status = wait_for(
        "the demo to stop on SIGINT",
        Duration::from_secs(30),
        || demo.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(0));
    assert!(
        http_get(
            format!("127.0.0.1:{port}").parse().unwrap(),
            "localhost",
            "/"
        )
        .is_none()
    );
}
