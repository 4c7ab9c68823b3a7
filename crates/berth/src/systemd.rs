//! The systemd notify protocol (`sd_notify(3)`) for `berth serve` under `Type=notify`: one
//! datagram per message to the Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` in
//! the abstract namespace).
//!
//! `berth serve` says `STATUS=` while it starts, `READY=1` once the daemon is ready (the
//! listeners are bound and every app is recovered: `daemon::Config::on_ready`), `WATCHDOG=1`
//! every half `WATCHDOG_USEC` from a task on the daemon's runtime (a wedged runtime stops the
//! pings, and systemd restarts berth), and `STOPPING=1` when a stop signal arrives. Without
//! `NOTIFY_SOCKET` (not started by systemd) it says nothing. Sending never blocks and never
//! fails the daemon: a message systemd cannot take is logged and dropped.
//!
//! The protocol is one `sendto` of a few bytes, so it is written here rather than taken from
//! a crate.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

/// The socket systemd listens on for this service.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; `None` when it is not set (berth was not started by systemd).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET").filter(|v| !v.is_empty())?;
        let bytes = name.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
            None => SocketAddr::from_pathname(&name),
        };
        let socket = UnixDatagram::unbound().and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        });
        match (addr, socket) {
            (Ok(addr), Ok(socket)) => Some(Notifier {
                inner: Arc::new((socket, addr)),
            }),
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(socket = ?name, error = %err, "NOTIFY_SOCKET cannot be used; systemd is not told when berth is ready");
                None
            }
        }
    }

    /// Send one message (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) {
        let (socket, addr) = &*self.inner;
        if let Err(err) = socket.send_to_addr(message.as_bytes(), addr) {
            tracing::warn!(error = %err, message, "could not notify systemd");
        }
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    /// `READY=1`, with what the daemon serves as its status.
    pub fn ready(&self, ready: &daemon::Ready) {
        self.send(&format!("READY=1\nSTATUS={}", ready_status(ready)));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: apps finish their requests and stop");
    }

    /// Ping the watchdog every half `WATCHDOG_USEC` when systemd asks for it (and
    /// `WATCHDOG_PID`, when set, is this process), for as long as the runtime runs.
    pub fn spawn_watchdog(&self) {
        let Some(every) = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        ) else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.send("WATCHDOG=1");
            }
        });
    }
}

/// How often to ping: half the watchdog timeout systemd set, if it is meant for `pid`.
fn watchdog_interval(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if let Some(for_pid) = for_pid
        && for_pid.parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|&n| n > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// `serving 3 apps on http 0.0.0.0:80, https 0.0.0.0:443`; the apps are those recovered at
/// start, and the ones that could not be are counted apart.
fn ready_status(r: &daemon::Ready) -> String {
    let mut on = vec![format!("http {}", r.http)];
    if let Some(https) = r.https {
        on.push(format!("https {https}"));
    }
    if let Some(admin) = r.admin {
        on.push(format!("admin {admin}"));
    }
    let failed = if r.failed > 0 {
        format!(
            " ({} could not start: see berth status and the log)",
            r.failed
        )
    } else {
        String::new()
    };
    format!(
        "serving {} app{}{failed} on {}",
        r.apps,
        if r.apps == 1 { "" } else { "s" },
        on.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_half_the_timeout_and_only_for_this_process() {
        let check = |usec, pid, expected: Option<u64>| {
            assert_eq!(
                watchdog_interval(usec, pid, 42),
                expected.map(Duration::from_millis),
                "{usec:?} {pid:?}"
            );
        };
        check(Some("2000000"), None, Some(1000));
        check(Some("2000000"), Some("42"), Some(1000));
        check(Some("2000000"), Some("7"), None);
        check(Some("0"), None, None);
        check(Some("soon"), None, None);
        check(None, None, None);
    }

    #[test]
    fn ready_status_names_apps_and_listeners() {
        let mut r = daemon::Ready {
            apps: 3,
            failed: 0,
            http: "0.0.0.0:80".parse().unwrap(),
            https: Some("0.0.0.0:443".parse().unwrap()),
            admin: None,
        };
        assert_eq!(
            ready_status(&r),
            "serving 3 apps on http 0.0.0.0:80, https 0.0.0.0:443"
        );
        r.apps = 1;
        r.failed = 1;
        r.https = None;
        assert_eq!(
            ready_status(&r),
            "serving 1 app (1 could not start: see berth status and the log) on http 0.0.0.0:80"
        );
    }
}
