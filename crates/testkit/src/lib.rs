//! Real components and small helpers for berth's tests, on loopback and in temporary
//! directories.
//!
//! - [`Pebble`]: Let's Encrypt's ACME test server (Debian package `pebble`) and its DNS server;
//! - [`Postgres`]: a throwaway PostgreSQL cluster (Debian package `postgresql-15`) with a
//!   superuser password, `psql` and `pgbench` against it;
//! - [`S3`]: an S3-compatible object store (moto's `moto_server`, from pip);
//! - [`Chromium`]: headless Chromium (Debian package `chromium`) driven over the DevTools
//!   protocol: a page's console errors, failed requests, rendered text and screenshots;
//! - [`Smtp`]: an SMTP server (aiosmtpd, from pip), plain, STARTTLS or TLS, whose received
//!   messages a test reads;
//! - [`free_port`]: a port for a program told its port in advance;
//! - [`wait_for`] / [`eventually`]: poll a check with a deadline (blocking / async), the only
//!   way tests wait for something to happen; [`alive`]: is a process still running;
//! - [`ws`]: a WebSocket client (tokio-tungstenite), async and blocking;
//! - [`app`], [`PY_WEB`], [`PY_WS_WEB`]: app directories with Python services that answer with
//!   their release; [`http_get`]: one plain HTTP/1.1 GET.

// Tests run real tools (pebble, postgres, moto, aiosmtpd, curl, chromium): they are started with
// std's Command, not with the supervisor's builder that production code must use.
#![allow(clippy::disallowed_methods)]

mod apps;
mod chromium;
mod pebble;
mod port;
mod postgres;
mod promtool;
mod s3;
mod smtp;
mod wait;
pub mod ws;

pub use apps::{PY_WEB, PY_WS_WEB, app, http_get};
pub use chromium::{Chromium, ConsoleMessage, FailedRequest, Page};
pub use pebble::Pebble;
pub use port::free_port;
pub use postgres::Postgres;
pub use promtool::promtool_check;
pub use s3::S3;
pub use smtp::{Mail, Smtp, SmtpTls};
pub use wait::{
    Done, alive, eventually, kill_processes_under, live_processes, processes_under, wait_for,
};

/// A temporary state directory for a daemon under test: under `/var/tmp`, not `/tmp`, so that
/// apps get a private `/tmp` as in production (a state directory under `/tmp` would be hidden
/// by it, and the daemon then gives apps `TMPDIR` only).
pub fn state_dir(prefix: &str) -> tempfile::TempDir {
    let base = std::path::Path::new("/var/tmp");
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    if base.is_dir() {
        builder
            .tempdir_in(base)
            .expect("a state directory under /var/tmp")
    } else {
        builder.tempdir().expect("a temporary state directory")
    }
}

/// A program installed from PyPI: `name` on `PATH`, else the one `scripts/test` installs into
/// the virtualenv `target/tools/VENV` of the workspace when the system's pip may not.
pub fn pip_tool(name: &str, venv: &str) -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let in_venv = workspace
        .join("target/tools")
        .join(venv)
        .join("bin")
        .join(name);
    on_path
        .or_else(|| in_venv.is_file().then_some(in_venv))
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH nor in target/tools/{venv}/bin: install it with pip (scripts/test does)")
        })
}

/// Panics naming `what` with the program's output unless it succeeded.
pub fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
