//! Real components and small helpers for berth's tests, on loopback and in temporary
//! directories.
//!
//! - [`Pebble`]: Let's Encrypt's ACME test server (Debian package `pebble`) and its DNS server;
//! - [`Postgres`]: a throwaway PostgreSQL cluster (Debian package `postgresql-15`) with a
//!   superuser password, `psql` and `pgbench` against it;
//! - [`S3`]: an S3-compatible object store (moto's `moto_server`, from pip);
//! - [`Chromium`]: headless Chromium (Debian package `chromium`) driven over the DevTools
//!   protocol: a page's console errors, failed requests, rendered text and screenshots;
//! - [`free_port`]: a port for a program told its port in advance;
//! - [`wait_for`] / [`eventually`]: poll a check with a deadline (blocking / async), the only
//!   way tests wait for something to happen; [`alive`]: is a process still running;
//! - [`ws`]: a WebSocket client (tokio-tungstenite), async and blocking;
//! - [`app`], [`PY_WEB`], [`PY_WS_WEB`]: app directories with Python services that answer with
//!   their release; [`http_get`]: one plain HTTP/1.1 GET.

// Tests run real tools (pebble, postgres, moto, curl, chromium): they are started with std's
// Command, not with the supervisor's builder that production code must use.
#![allow(clippy::disallowed_methods)]

mod apps;
mod chromium;
mod pebble;
mod port;
mod postgres;
mod s3;
mod wait;
pub mod ws;

pub use apps::{PY_WEB, PY_WS_WEB, app, http_get};
pub use chromium::{Chromium, ConsoleMessage, FailedRequest, Page};
pub use pebble::Pebble;
pub use port::free_port;
pub use postgres::Postgres;
pub use s3::S3;
pub use wait::{Done, alive, eventually, wait_for};

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

/// Panics naming `what` with the program's output unless it succeeded.
fn assert_success(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
