//! Building and spawning the child process.
//!
//! Every child is forked from one dedicated, never-exiting thread ("berth-spawner").
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process;
//! tokio worker threads can be retired (e.g. after `block_in_place`) and blocking-pool threads
//! exit when idle, so forking from either could SIGKILL a healthy app later. The spawner thread
//! enters the caller's runtime so the returned `tokio::process::Child` is reaped by it.

use std::io;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc as std_mpsc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::types::ProcessSpec;

/// Variables passed through from the daemon's environment; everything else is the app's.
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

/// The part of a child's environment that comes from the host: the variables of
/// `INHERITED_ENV` the daemon has, and a default `PATH` when it has none. Build commands get
/// the same base, so a build sees what its services will see.
pub fn base_env() -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<_> = INHERITED_ENV
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|v| ((*name).to_owned(), v)))
        .collect();
    if std::env::var_os("PATH").is_none() {
        env.push(("PATH".to_owned(), DEFAULT_PATH.into()));
    }
    env
}
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The `sh -c` argument: `exec COMMAND` when that is safe, so no shell stays in between.
pub(crate) fn shell_line(command: &str) -> String {
    if is_simple(command) {
        format!("exec {command}")
    } else {
        command.to_owned()
    }
}

/// A single simple command: no list/pipe/subshell operators outside quotes, and a first word
/// that is neither an assignment nor a shell keyword or builtin that `exec` would break.
fn is_simple(command: &str) -> bool {
    let command = command.trim();
    let Some(first) = command.split_whitespace().next() else {
        return false;
    };
    const NOT_EXECABLE: &[&str] = &[
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done",
        "function", "!", "{", "}", "[[", "exec", "cd", "export", "set", "unset", ".", "source",
        "eval", "time", "trap", "ulimit", "umask", "wait", "exit", "readonly",
    ];
    if NOT_EXECABLE.contains(&first) || first.contains('=') {
        return false;
    }
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in command.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' | '&' | '|' | '\n' | '(' | ')' | '`' if !single && !double => return false,
            _ => {}
        }
    }
    !single && !double && !escaped
}

/// The full command for one attempt. `rlimit_as` is the `RLIMIT_AS` fallback for `memory_max`.
pub(crate) fn command(spec: &ProcessSpec, rlimit_as: Option<u64>) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(shell_line(&spec.command));
    cmd.current_dir(&spec.cwd).env_clear().envs(base_env());
    cmd.envs(&spec.env)
        .env("PORT", spec.port.to_string())
        .env("BERTH_APP", &spec.app)
        .env("BERTH_SERVICE", &spec.service)
        .env("BERTH_RELEASE", &spec.release)
        .env("BERTH_INSTANCE", spec.instance.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    install_pre_exec(&mut cmd, std::process::id(), rlimit_as);
    cmd
}

/// In the child, between fork and exec: own session and process group, die with the daemon,
/// optional address-space limit.
#[allow(unsafe_code)]
pub(crate) fn install_pre_exec(cmd: &mut Command, parent: u32, rlimit_as: Option<u64>) {
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (setsid, prctl, getppid, setrlimit, _exit); it allocates nothing
    // (`io::Error::last_os_error` stores the errno inline).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
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
            if let Some(limit) = rlimit_as {
                let lim = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

type Job = (
    Command,
    tokio::runtime::Handle,
    oneshot::Sender<io::Result<Child>>,
);

/// Spawn `cmd` from the long-lived spawner thread. Must be called inside a tokio runtime.
pub(crate) async fn spawn(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<std_mpsc::Sender<Job>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("berth-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the sender is in a static and never dropped.
                while let Ok((mut cmd, handle, reply)) = rx.recv() {
                    let _rt = handle.enter();
                    let _ = reply.send(cmd.spawn());
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

#[cfg(test)]
mod tests {
    use super::shell_line;

    #[test]
    fn exec_only_simple_commands() {
        let check = |cmd: &str, exec: bool| {
            let want = if exec {
                format!("exec {cmd}")
            } else {
                cmd.to_owned()
            };
            assert_eq!(shell_line(cmd), want);
        };
        check("target/release/hello", true);
        check("python3 web.py --port 80", true);
        check("python3 -c 'import os; print(1)'", true);
        check("node \"a;b\"", true);
        check("cd x && ./run", false);
        check("a; b", false);
        check("a | b", false);
        check("FOO=1 ./run", false);
        check("exec ./run", false);
        check("(./run)", false);
        check("sleep 1 &", false);
        check("", false);
    }
}
