//! The only place that prints to the terminal. Everything else returns data or logs with
//! `tracing`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Display;
use std::io::Write;

/// A line of normal output (stdout).
pub fn line(s: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
}

/// Progress for a person watching (stderr, so stdout stays clean for scripts).
pub fn progress(s: impl Display) {
    eprintln!("{s}");
}

/// A prompt on stderr, without a newline.
pub fn progress_inline(s: impl Display) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "{s}");
    let _ = e.flush();
}

/// Pretty JSON on stdout for `--json`.
pub fn json<T: serde::Serialize>(value: &T) {
    line(serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Print an error, its causes and hints:
///
/// ```text
/// error: deploy of hello failed
///   caused by: ...
/// hint: ...
/// ```
pub fn error(err: &anyhow::Error) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(e, "  caused by: {cause}");
    }
}

pub fn hint(s: impl Display) {
    eprintln!("hint: {s}");
}

/// Plain diagnostics text (already formatted, e.g. berth.toml problems) on stderr.
pub fn diagnostics(s: impl Display) {
    let text = s.to_string();
    eprintln!("{}", text.trim_end_matches('\n'));
}
