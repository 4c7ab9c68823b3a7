//! `promtool check metrics`: Prometheus' own linter of the text exposition format.

use std::io::Write;
use std::process::{Command, Stdio};

/// Panics unless `promtool check metrics` (Debian package `prometheus`) accepts `metrics`;
/// its complaints and the scrape are the panic's message.
pub fn promtool_check(metrics: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    check
        .stdin
        .take()
        .expect("promtool's stdin is piped")
        .write_all(metrics.as_bytes())
        .expect("write the scrape to promtool");
    let out = check.wait_with_output().expect("wait for promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the scrape:\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
