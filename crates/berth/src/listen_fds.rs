//! Listening sockets handed in by whoever started `berth serve`: systemd's socket activation
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`; see sd_listen_fds(3)), or the daemon that
//! hands over to this one on `berth upgrade`, which passes its listeners the same way plus
//! the hand-over channel named `upgrade`.
//!
//! Names: `http`, `https`, `admin` (TCP), `control` (the Unix socket), `upgrade`. A single
//! unnamed descriptor is the HTTP listener. A descriptor with an unknown name is an error
//! (with the names berth knows), not silently ignored.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result, bail};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// What was handed in; each listener is bound already.
#[derive(Default)]
pub struct Inherited {
    pub http: Option<std::net::TcpListener>,
    pub https: Option<std::net::TcpListener>,
    pub admin: Option<std::net::TcpListener>,
    pub control: Option<std::os::unix::net::UnixListener>,
    pub upgrade: Option<std::os::unix::net::UnixStream>,
}

impl Inherited {
    /// Take the descriptors named in this process's environment (once: the variables are
    /// removed, and each descriptor is made close-on-exec so no app inherits it). Call it
    /// before anything else reads the environment or opens a descriptor.
    #[allow(unsafe_code)]
    pub fn from_env() -> Result<Inherited> {
        let count = std::env::var("LISTEN_FDS").ok();
        let pid = std::env::var("LISTEN_PID").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            // SAFETY: called first thing in `berth serve`; no other thread reads or writes the
            // environment meanwhile.
            unsafe { std::env::remove_var(var) };
        }
        let Some(count) = count else {
            return Ok(Inherited::default());
        };
        if let Some(pid) = pid
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            // Meant for another process (systemd sets it to the service's main pid).
            return Ok(Inherited::default());
        }
        let count: RawFd = count
            .parse()
            .with_context(|| format!("LISTEN_FDS={count:?} is not a number"))?;
        let names: Vec<String> = match names {
            Some(n) => n.split(':').map(str::to_owned).collect(),
            None if count == 1 => vec!["http".to_owned()],
            None => bail!(
                "{count} descriptors passed in LISTEN_FDS without LISTEN_FDNAMES; name them (systemd: FileDescriptorName=http, https, admin or control)"
            ),
        };
        if names.len() != count as usize {
            bail!(
                "LISTEN_FDS={count} but LISTEN_FDNAMES names {} descriptors",
                names.len()
            );
        }
        let mut got = Inherited::default();
        for (i, name) in names.iter().enumerate() {
            let fd = FIRST + i as RawFd;
            let cloexec = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
            // SAFETY: the number is only used for this one `fcntl`, which fails harmlessly
            // (EBADF) when it is not open; then we stop.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            if nix::fcntl::fcntl(borrowed, cloexec).is_err() {
                bail!("descriptor {fd} ({name}) named in LISTEN_FDS is not open");
            }
            // SAFETY: open (checked above), passed to this process for it to own, and owned by
            // nothing else in it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            match name.as_str() {
                "http" => got.http = Some(owned.into()),
                "https" => got.https = Some(owned.into()),
                "admin" => got.admin = Some(owned.into()),
                "control" => got.control = Some(owned.into()),
                "upgrade" => got.upgrade = Some(owned.into()),
                other => bail!(
                    "descriptor {fd} is named {other:?} in LISTEN_FDNAMES; berth knows http, https, admin and control"
                ),
            }
        }
        Ok(got)
    }
}

/// A handed-in TCP listener, ready for tokio.
pub fn tcp(l: std::net::TcpListener, what: &str) -> Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
        .with_context(|| format!("use the {what} listener passed in LISTEN_FDS"))
}

/// The handed-in control socket, ready for tokio.
pub fn unix(l: std::os::unix::net::UnixListener) -> Result<tokio::net::UnixListener> {
    l.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(l).context("use the control socket passed in LISTEN_FDS")
}
