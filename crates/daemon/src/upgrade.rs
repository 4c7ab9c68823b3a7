//! `berth upgrade` (and `SIGUSR2`): hand the daemon over to a new binary without refusing a
//! connection, failing a request or restarting an app.
//!
//! ```text
//! old daemon                                        new daemon (old's child, no death signal)
//! ─ refuse if a rollout runs or a release drains
//! ─ spawn BINARY serve …  with LISTEN_FDS = http[, https][, admin], control, upgrade
//!                                                   parse flags, take the descriptors
//!                          ◄── "ready"              (nothing opened yet: no lock, no store)
//! ─ stop accepting (the sockets stay open: the kernel queues new connections)
//! ─ stop background work, release every instance (no signal), drop the state lock
//! ─ "released" ──►
//!                                                   lock, open state.db, adopt every instance
//!                                                   (pid + start time + group, one probe),
//!                                                   publish routes, accept
//!                          ◄── "serving PID VERSION"
//! ─ answer `berth upgrade`; finish in-flight requests (each HTTP/1 connection's next
//!   response says `Connection: close`, HTTP/2 gets GOAWAY, WebSockets run until the drain
//!   grace) and exit, touching no app
//! ```
//!
//! Until "released" nothing is lost by failing: a successor that exits, says nothing within
//! [`READY_WITHIN`] or cannot be started is killed, the old daemon goes on serving and the
//! command says why. After it, the old daemon has let go of everything; if the successor then
//! fails, the old one starts its own binary (`/proc/self/exe`) the same way, so one daemon
//! serves again either way.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::End;
use crate::config::{Listeners, Stop, Succession};
use crate::core::Core;
use crate::refusal::Refusal;

/// How long a successor may take to say "ready" (start, parse its flags).
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a successor may take from "released" to "serving" (open the store, adopt).
const SERVING_WITHIN: Duration = Duration::from_secs(60);

/// An upgrade asked for over the control API (with a reply) or by `SIGUSR2` (without).
pub(crate) struct UpgradeRequest {
    pub binary: Option<PathBuf>,
    pub reply: Option<oneshot::Sender<Result<api::Upgraded, Refusal>>>,
    pub asked: Instant,
}

impl UpgradeRequest {
    pub fn answer(self, outcome: Result<api::Upgraded, Refusal>) {
        match (self.reply, outcome) {
            (Some(reply), outcome) => {
                let _ = reply.send(outcome);
            }
            (None, Ok(u)) => tracing::info!(pid = u.pid, version = %u.version, "upgraded"),
            (None, Err(r)) => {
                tracing::error!(error = %r.message, hint = r.hint.as_deref().unwrap_or(""), "upgrade refused")
            }
        }
    }
}

/// Copies of the listening sockets, taken before the listeners go to their tasks, in the
/// order and with the names the successor gets them.
pub(crate) struct HandoverFds(Vec<(&'static str, OwnedFd)>);

impl HandoverFds {
    pub fn new(l: &Listeners) -> Result<HandoverFds> {
        let mut fds = vec![("http", l.http.as_fd().try_clone_to_owned()?)];
        if let Some(https) = &l.https {
            fds.push(("https", https.as_fd().try_clone_to_owned()?));
        }
        if let Some(admin) = &l.admin {
            fds.push(("admin", admin.as_fd().try_clone_to_owned()?));
        }
        fds.push(("control", l.control.as_fd().try_clone_to_owned()?));
        Ok(HandoverFds(fds))
    }
}

impl Core {
    /// Why an upgrade cannot start now, if it cannot: a rollout or a drain would be cut short.
    pub(crate) fn upgrade_refusal(&self) -> Option<Refusal> {
        let apps = self.apps();
        for (name, a) in apps.iter() {
            if let Some(release) = &a.deploying {
                return Some(
                    Refusal::bad_input(format!("a rollout of {name} to {release} is in progress"))
                        .hint(
                            "run `berth upgrade` again once it is done (`berth status` shows it)",
                        ),
                );
            }
            if let Some((release, _, until)) = a.draining.first() {
                let at = supervisor::logs::format_time(*until);
                return Some(
                    Refusal::bad_input(format!("{name} is draining release {release} until {at}"))
                        .hint("run `berth upgrade` again once it has drained"),
                );
            }
        }
        None
    }
}

/// The new daemon, started and ready to take over.
pub(crate) struct Successor {
    child: supervisor::command::Child,
    chan: BufReader<tokio::net::UnixStream>,
    pub binary: PathBuf,
}

/// Start `binary` as this daemon's successor and wait for its "ready".
pub(crate) async fn start_successor(
    succession: &Succession,
    binary: &Path,
    fds: &HandoverFds,
) -> Result<Successor> {
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().context("make the hand-over channel")?;
    let mut passed = fds
        .0
        .iter()
        .map(|(_, fd)| fd.try_clone())
        .collect::<std::io::Result<Vec<OwnedFd>>>()
        .context("copy the listening sockets")?;
    passed.push(theirs.into());
    let names: Vec<&str> = fds.0.iter().map(|(n, _)| *n).chain(["upgrade"]).collect();
    let child = supervisor::command::Command::new(binary)
        .args(&succession.args)
        .envs(succession.env.iter().map(|(k, v)| (k, v)))
        .env("LISTEN_FDS", passed.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .outlive_daemon()
        .pass_fds(passed)
        .spawn()
        .await
        .with_context(|| format!("start {}", binary.display()))?;
    ours.set_nonblocking(true)?;
    let chan = BufReader::new(tokio::net::UnixStream::from_std(ours)?);
    let mut successor = Successor {
        child,
        chan,
        binary: binary.to_owned(),
    };
    match successor.expect("ready", READY_WITHIN).await {
        Ok(_) => Ok(successor),
        Err(err) => Err(successor.failed(err).await),
    }
}

impl Successor {
    /// Tell the successor the state directory is its own now.
    pub async fn released(&mut self) -> Result<()> {
        self.chan.get_mut().write_all(b"released\n").await?;
        Ok(())
    }

    /// Wait for "serving PID VERSION"; then the successor goes on alone.
    pub async fn serving(mut self) -> Result<(u32, String)> {
        let line = match self.expect("serving", SERVING_WITHIN).await {
            Ok(line) => line,
            Err(err) => return Err(self.failed(err).await),
        };
        let mut words = line.split_whitespace().skip(1);
        let pid = words.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let version = words.next().unwrap_or("").to_owned();
        self.child.detach();
        Ok((pid, version))
    }

    /// The next line, which must start with `word`.
    async fn expect(&mut self, word: &str, within: Duration) -> Result<String> {
        let mut line = String::new();
        match tokio::time::timeout(within, self.chan.read_line(&mut line)).await {
            Err(_) => bail!("it did not say {word} within {}s", within.as_secs()),
            Ok(Err(err)) => Err(anyhow::Error::new(err).context("read the hand-over channel")),
            Ok(Ok(0)) => bail!("it exited before it was {word}"),
            Ok(Ok(_)) if line.split_whitespace().next() == Some(word) => Ok(line),
            Ok(Ok(_)) => bail!("it said {:?} where {word} was expected", line.trim()),
        }
    }

    /// Kill it (its group) and say what happened, with its exit status when it has one.
    pub async fn failed(mut self, err: anyhow::Error) -> anyhow::Error {
        let status = tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await;
        let err = match status {
            Ok(Ok(st)) => err.context(format!("the new daemon ended: {st}")),
            _ => err,
        };
        err.context(format!(
            "the new daemon ({}) did not take over; its own messages are in this daemon's log",
            self.binary.display()
        ))
    }
}

/// The successor's side of the channel (the descriptor named `upgrade`).
pub(crate) struct Predecessor(std::os::unix::net::UnixStream);

impl Predecessor {
    /// Say "ready" and wait until the old daemon has let go of the state directory.
    pub fn take_over(stream: std::os::unix::net::UnixStream) -> Result<Predecessor> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(SERVING_WITHIN))?;
        (&stream)
            .write_all(b"ready\n")
            .context("tell the old daemon this one is ready")?;
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .context("wait for the old daemon to let go")?;
        if line.trim() != "released" {
            bail!(
                "the old daemon did not let go of the state directory ({:?})",
                line.trim()
            );
        }
        Ok(Predecessor(stream))
    }

    /// Tell the old daemon this one serves: it may finish and exit.
    pub fn serving(mut self) {
        let line = format!(
            "serving {} {}\n",
            std::process::id(),
            env!("CARGO_PKG_VERSION")
        );
        if let Err(err) = self.0.write_all(line.as_bytes()) {
            tracing::warn!(error = %err, "tell the old daemon this one serves");
        }
    }
}

/// Serve until `shutdown` resolves or an upgrade has a successor ready to take over. An
/// upgrade refused or failed before that is answered here, and serving goes on.
pub(crate) async fn wait_for_end(
    core: &Core,
    shutdown: impl Future<Output = Stop>,
    succession: Option<&Succession>,
    fds: &HandoverFds,
) -> End {
    use tokio::signal::unix::{SignalKind, signal};
    let mut requests = core.take_upgrade_requests();
    let mut usr2 = signal(SignalKind::user_defined2()).ok();
    tokio::pin!(shutdown);
    loop {
        let request = tokio::select! {
            stop = &mut shutdown => return End::Stop(stop),
            Some(r) = requests.recv() => r,
            Some(()) = async { usr2.as_mut()?.recv().await } => {
                tracing::info!("SIGUSR2 received: upgrading");
                UpgradeRequest { binary: None, reply: None, asked: Instant::now() }
            }
        };
        match begin(core, request.binary.as_deref(), succession, fds).await {
            Ok(successor) => return End::HandOver(Box::new(successor), request),
            Err(refusal) => request.answer(Err(refusal)),
        }
    }
}

/// Check, then start the successor and wait for its "ready".
async fn begin(
    core: &Core,
    binary: Option<&Path>,
    succession: Option<&Succession>,
    fds: &HandoverFds,
) -> Result<Successor, Refusal> {
    let Some(succession) = succession else {
        return Err(Refusal::bad_input(
            "this daemon cannot start a successor: it was not started by `berth serve`",
        ));
    };
    if let Some(refusal) = core.upgrade_refusal() {
        return Err(refusal);
    }
    let binary = binary.unwrap_or(&succession.binary);
    if !is_executable(binary) {
        return Err(
            Refusal::bad_input(format!("{} is not an executable file", binary.display()))
                .hint("pass the new berth binary with `berth upgrade --binary PATH`"),
        );
    }
    tracing::info!(binary = %binary.display(), "starting the successor");
    start_successor(succession, binary, fds).await.map_err(|err| {
        tracing::error!(error = %format!("{err:#}"), "upgrade failed; this daemon goes on serving");
        Refusal::from(err).hint("this daemon goes on serving; nothing was changed")
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// After this daemon let go of everything: tell the successor, wait for it to serve. If it
/// fails now, start this daemon's own binary in its place, so that one daemon serves.
/// Returns the pid, version and binary of the daemon that serves.
pub(crate) async fn finish(
    mut successor: Successor,
    succession: Option<&Succession>,
    fds: &HandoverFds,
) -> Result<(u32, String, String), Refusal> {
    let binary = successor.binary.display().to_string();
    let failed = match successor.released().await {
        Ok(()) => match successor.serving().await {
            Ok((pid, version)) => return Ok((pid, version, binary)),
            Err(err) => err,
        },
        Err(err) => successor.failed(err).await,
    };
    tracing::error!(error = %format!("{failed:#}"), "the successor failed after this daemon let go; starting this daemon's own binary again");
    let own = Path::new("/proc/self/exe");
    let again = match succession {
        Some(succession) => start_successor(succession, own, fds).await,
        None => Err(anyhow::anyhow!("no way to start a daemon")),
    };
    let served = match again {
        Ok(mut s) => match s.released().await {
            Ok(()) => s.serving().await,
            Err(err) => Err(s.failed(err).await),
        },
        Err(err) => Err(err),
    };
    let hint = match served {
        Ok((pid, _)) => {
            format!("the previous version serves again (pid {pid}); the apps were not touched")
        }
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "no daemon serves: start `berth serve`; it adopts the running apps");
            "no daemon serves now: start `berth serve` again; it adopts the running apps".to_owned()
        }
    };
    Err(Refusal::from(failed).hint(hint))
}
