//! The one way berth starts a process: app instances, build steps, hooks, backups.
//!
//! [`Command`] is a small builder; [`Command::spawn`] gives a [`Child`]. Every child:
//! - starts from a cleared environment: [`base_env`] plus what the caller adds;
//! - is its own session and process group (pgid = pid), so one signal reaches its whole tree;
//! - dies with the daemon, even on `kill -9`: `PR_SET_PDEATHSIG(SIGKILL)` (the direct child
//!   only; grandchildren are reached through the group) — unless it is started with
//!   [`Command::outlive_daemon`] (app instances, and a new daemon on `berth upgrade`), which
//!   the next daemon adopts or sweeps from what the store recorded;
//! - has its whole group SIGKILLed when its [`Child`] is dropped, so a timeout is a `drop`;
//! - has stdin, stdout and stderr on `/dev/null` unless the caller says otherwise;
//! - is confined as the caller says ([`Confinement`]: user, no-new-privs, private `/tmp`,
//!   limits, cgroup).
//!
//! Every child is forked from one dedicated, never-exiting thread ("berth-spawner").
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process;
//! tokio worker threads can be retired (e.g. after `block_in_place`) and blocking-pool threads
//! exit when idle, so forking from either could SIGKILL a healthy app later. The spawner thread
//! enters the caller's runtime so the child is reaped by it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

use crate::confine::{Confinement, Prepared};

/// Variables passed through from the daemon's environment; everything else is the child's.
/// `CARGO_HOME`/`RUSTUP_HOME` locate the host's toolchains, like `PATH`.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The part of every child's environment that comes from the host: the variables of
/// `INHERITED_ENV` the daemon has, and a default `PATH` when it has none. Builds, hooks and
/// services all get the same base, so a build sees what its services will see.
pub fn base_env() -> Vec<(String, OsString)> {
    let mut env: Vec<_> = INHERITED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|v| ((*name).to_owned(), v)))
        .collect();
    if std::env::var_os("PATH").is_none() {
        env.push(("PATH".to_owned(), DEFAULT_PATH.into()));
    }
    env
}

/// A process to start; see the module doc for what every child gets.
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    confinement: Confinement,
    /// No death signal: the process outlives the daemon (see [`Command::outlive_daemon`]).
    outlive: bool,
    /// Descriptors the child gets as 3, 4, … (see [`Command::pass_fds`]).
    fds: Vec<OwnedFd>,
}

impl Command {
    /// Run `program` (looked up in the child's `PATH` when it has no slash).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            confinement: Confinement::default(),
            outlive: false,
            fds: Vec::new(),
        }
    }

    /// Let the process outlive the daemon: no `PR_SET_PDEATHSIG`. For app instances (a
    /// restart or an upgrade of berth must not restart them; the next daemon adopts them) and
    /// for the new daemon of an upgrade. Its [`Child`] still kills the group when dropped,
    /// unless [`Child::detach`]ed.
    pub fn outlive_daemon(mut self) -> Command {
        self.outlive = true;
        self
    }

    /// Hand `fds` to the child as descriptors 3, 4, … in order (the `LISTEN_FDS` convention);
    /// every other descriptor of the daemon stays closed-on-exec.
    pub fn pass_fds(mut self, fds: Vec<OwnedFd>) -> Command {
        self.fds = fds;
        self
    }

    /// Run `line` with `/bin/sh -c`.
    pub fn shell(line: impl AsRef<OsStr>) -> Command {
        Command::new("/bin/sh").arg("-c").arg(line)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Working directory; the daemon's when not set.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Command {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Set `key` on top of [`base_env`] (a later value for the same key wins).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
        );
        self
    }

    /// Default `/dev/null`.
    pub fn stdin(mut self, cfg: Stdio) -> Command {
        self.stdin = Some(cfg);
        self
    }

    /// Default `/dev/null`; `Stdio::piped()` to read it from [`Child::stdout`].
    pub fn stdout(mut self, cfg: Stdio) -> Command {
        self.stdout = Some(cfg);
        self
    }

    /// Default `/dev/null`; `Stdio::piped()` to read it from [`Child::stderr`].
    pub fn stderr(mut self, cfg: Stdio) -> Command {
        self.stderr = Some(cfg);
        self
    }

    /// Limit the child's address space (`RLIMIT_AS`, bytes).
    pub fn rlimit_as(mut self, bytes: u64) -> Command {
        self.confinement.limits.address_space = Some(bytes);
        self
    }

    /// Run the child confined: as another user, without new privileges, with its own `/tmp`,
    /// limits and cgroup (see [`Confinement`]).
    pub fn confine(mut self, confinement: Confinement) -> Command {
        let address_space = self.confinement.limits.address_space;
        self.confinement = confinement;
        if self.confinement.limits.address_space.is_none() {
            self.confinement.limits.address_space = address_space;
        }
        self
    }

    /// Start the process from the spawner thread. Must be called inside a tokio runtime (any
    /// flavour), which then reaps the child.
    pub async fn spawn(self) -> io::Result<Child> {
        let confinement = self.confinement.prepare()?;
        let outlive = self.outlive;
        // Above any number the child gets, so no dup2 overwrites a descriptor still to move;
        // close-on-exec, so only the dup2'd copies reach the program.
        let fds = self
            .fds
            .iter()
            .map(|fd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(64)))
            .map(|r| r.map(unsafe_owned).map_err(io::Error::from))
            .collect::<io::Result<Vec<OwnedFd>>>()?;
        let mut cmd = self.into_tokio();
        install_pre_exec(&mut cmd, std::process::id(), confinement, outlive, fds);
        let mut inner = from_spawner_thread(cmd).await?;
        let pid = inner
            .id()
            .ok_or_else(|| io::Error::other("the child exited before it was seen"))?;
        Ok(Child {
            pid,
            stdin: inner.stdin.take(),
            stdout: inner.stdout.take(),
            stderr: inner.stderr.take(),
            inner,
            armed: true,
        })
    }

    /// Start the process with stdout and stderr piped, and collect both and the exit status.
    /// Dropping the future (a timeout) kills the process group.
    pub async fn output(self) -> io::Result<Output> {
        self.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await?
            .wait_with_output()
            .await
    }

    #[allow(clippy::disallowed_methods)] // the one place that builds a tokio Command
    fn into_tokio(self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(base_env())
            .envs(self.env)
            .stdin(self.stdin.unwrap_or_else(Stdio::null))
            .stdout(self.stdout.unwrap_or_else(Stdio::null))
            .stderr(self.stderr.unwrap_or_else(Stdio::null));
        // No kill_on_drop: `Child`'s own drop kills the whole group, unless detached.
        if let Some(cwd) = self.cwd {
            cmd.current_dir(cwd);
        }
        cmd
    }
}

/// Names the environment's keys, never its values (they may be secrets).
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("confinement", &self.confinement)
            .finish_non_exhaustive()
    }
}

/// A running process started by [`Command::spawn`], the leader of its own process group.
/// Dropping it SIGKILLs the group (the runtime reaps the leader).
#[derive(Debug)]
pub struct Child {
    inner: tokio::process::Child,
    pid: u32,
    /// The pipes asked for with `Stdio::piped()`; take them to use them.
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// Whether dropping this kills the group (not after [`Child::detach`]).
    armed: bool,
}

impl Child {
    /// Let the process go on without this handle: the drop no longer kills its group. For
    /// a daemon handing its instances over (`berth upgrade`, a restart) and for the new
    /// daemon of an upgrade. The runtime still reaps it if it exits while this daemon lives.
    pub fn detach(mut self) -> u32 {
        self.armed = false;
        self.pid
    }

    /// The process id, which is also its process group id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Wait for the process to exit (the rest of its group may live on until the drop).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.inner.wait().await
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.inner.try_wait()
    }

    /// SIGKILL the whole group now; [`Child::wait`] then returns at once.
    pub fn kill(&self) {
        signal_group(self.pgid(), Signal::SIGKILL);
    }

    /// Stop the group gracefully: SIGTERM, wait up to `grace` for the process and then for the
    /// rest of its group, SIGKILL whatever is left. Returns the process's exit status.
    pub async fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        let pgid = self.pgid();
        let deadline = tokio::time::Instant::now() + grace;
        signal_group(pgid, Signal::SIGTERM);
        let status = match tokio::time::timeout_at(deadline, self.inner.wait()).await {
            Ok(status) => status,
            Err(_) => {
                signal_group(pgid, Signal::SIGKILL);
                self.inner.wait().await
            }
        };
        // Grandchildren that outlived the leader get the rest of the grace period.
        while group_alive(pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        signal_group(pgid, Signal::SIGKILL);
        status
    }

    /// Read the piped stdout and stderr to their end and wait for the exit status.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        async fn read_all(pipe: Option<impl AsyncReadExt + Unpin>) -> io::Result<Vec<u8>> {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut buf).await?;
            }
            Ok(buf)
        }
        drop(self.stdin.take());
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let (stdout, stderr, status) =
            tokio::try_join!(read_all(stdout), read_all(stderr), self.inner.wait())?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn pgid(&self) -> i32 {
        self.pid as i32
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid(), Signal::SIGKILL);
        }
    }
}

/// An `OwnedFd` for a descriptor `fcntl` just returned.
#[allow(unsafe_code)]
fn unsafe_owned(raw: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `raw` was just returned by F_DUPFD_CLOEXEC: open, and owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// In the child, between fork and exec: own session and process group, the passed
/// descriptors moved to 3, 4, …, the confinement, then die with the daemon (after the user
/// switch, which would clear it) unless it is to outlive it.
#[allow(unsafe_code)]
fn install_pre_exec(
    cmd: &mut tokio::process::Command,
    parent: u32,
    confinement: Prepared,
    outlive: bool,
    fds: Vec<OwnedFd>,
) {
    use std::os::fd::AsRawFd;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (setsid, dup2, the confinement's syscalls, prctl, getppid,
    // _exit); it allocates nothing (`io::Error::last_os_error` stores the errno inline).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            for (i, fd) in fds.iter().enumerate() {
                // dup2 clears close-on-exec on the copy.
                if libc::dup2(fd.as_raw_fd(), 3 + i as libc::c_int) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            confinement.apply()?;
            if outlive {
                return Ok(());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Whether a child can get a private `/tmp` here: the daemon is root and the kernel lets it
/// unshare a mount namespace (not inside every container). Tried once, in a child.
pub async fn private_tmp_works(scratch: &Path) -> bool {
    let confinement = Confinement {
        private_tmp: Some(scratch.to_owned()),
        ..Confinement::default()
    };
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg("exit 0")
        .confine(confinement)
        .spawn()
        .await;
    match spawned {
        Ok(mut child) => child.wait().await.is_ok_and(|s| s.success()),
        Err(_) => false,
    }
}

type Job = (
    tokio::process::Command,
    tokio::runtime::Handle,
    oneshot::Sender<io::Result<tokio::process::Child>>,
);

/// Spawn `cmd` from the long-lived spawner thread. Must be called inside a tokio runtime.
async fn from_spawner_thread(cmd: tokio::process::Command) -> io::Result<tokio::process::Child> {
    static SPAWNER: OnceLock<std_mpsc::Sender<Job>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the sender is in a static and never dropped.
                while let Ok((mut cmd, handle, reply)) = rx.recv() {
                    let _rt = handle.enter();
                    let _ = reply.send(crate::adopt::spawning(|| cmd.spawn(), |c| c.id()));
                }
            })
            .expect("start the berth-spawner thread");
        tx
    });
    let (reply, answer) = oneshot::channel();
    tx.send((cmd, tokio::runtime::Handle::current(), reply))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("spawner thread dropped the request"))?
}

/// Send `sig` to process group `pgid`; false when the group no longer exists.
pub(crate) fn signal_group(pgid: i32, sig: Signal) -> bool {
    if pgid <= 1 {
        return false;
    }
    killpg(Pid::from_raw(pgid), sig).is_ok()
}

/// Whether a live (non-zombie) process is still in group `pgid`. Zombies are ignored: an
/// orphaned grandchild's zombie is reaped by init (or not, in some containers), not by us.
pub(crate) fn group_alive(pgid: i32) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid), None).is_ok() && crate::memory::group_has_live(pgid)
}
