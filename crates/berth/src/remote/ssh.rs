//! The SSH transport: one `ssh` process per connection, its stdin and stdout the stream, its
//! exit status and stderr what a failure is named by (`diagnose`).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result};
use api::client::{BoxError, BoxFuture, Dial, Dialed};
use tokio::io::AsyncReadExt;

use super::Host;

/// What a failure of the way to the remote daemon is: the step that failed, ssh's (or the
/// remote berth's) own words, and what to do.
#[derive(Debug)]
pub struct Failure {
    message: String,
    detail: Option<Detail>,
    pub hint: Option<String>,
}

/// ssh's or the remote berth's own message, shown as the cause.
#[derive(Debug)]
struct Detail(String);

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {}

impl Failure {
    pub fn new(message: String, detail: Option<String>, hint: Option<String>) -> Failure {
        Failure {
            message,
            detail: detail.map(Detail),
            hint,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail.as_ref().map(|d| d as _)
    }
}

pub struct Ssh {
    host: Host,
    /// The program and its first arguments: `ssh`, or `BERTH_SSH_COMMAND` split on spaces.
    program: Vec<String>,
    /// What the remote shell runs.
    remote: String,
}

impl Ssh {
    pub fn new(host: Host, state: Option<PathBuf>, ssh_command: Option<String>) -> Result<Ssh> {
        let program: Vec<String> = ssh_command
            .as_deref()
            .unwrap_or("ssh")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if program.is_empty() {
            anyhow::bail!(crate::cli::BadInput(
                "BERTH_SSH_COMMAND is empty; leave it unset to run ssh".to_owned()
            ));
        }
        let mut remote = "berth dial-stdio".to_owned();
        if let Some(state) = state {
            let state = state.to_str().with_context(|| {
                format!(
                    "--state {} is not UTF-8: name the remote state directory in UTF-8",
                    state.display()
                )
            })?;
            remote.push_str(" --state ");
            remote.push_str(&shell_quote(state));
        }
        Ok(Ssh {
            host,
            program,
            remote,
        })
    }

    /// The arguments after the program: options, `--`, destination, the remote command.
    fn args(&self) -> Vec<String> {
        let mut args = vec!["-o".to_owned(), "BatchMode=yes".to_owned()];
        if let Some(port) = self.host.port {
            args.extend(["-p".to_owned(), port.to_string()]);
        }
        args.push("--".to_owned());
        args.push(match &self.host.user {
            Some(user) => format!("{user}@{}", self.host.host),
            None => self.host.host.clone(),
        });
        args.push(self.remote.clone());
        args
    }

    async fn spawn(&self) -> Result<Dialed, BoxError> {
        // The operator's ssh in the operator's environment (agent, ~/.ssh/config,
        // known_hosts), not the supervisor's cleared one for the daemon's children.
        #[allow(clippy::disallowed_methods)]
        let mut cmd = tokio::process::Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .args(self.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|err| {
            let hint = (err.kind() == std::io::ErrorKind::NotFound)
                .then(|| "install an OpenSSH client (Debian: apt-get install openssh-client), or set BERTH_SSH_COMMAND".to_owned());
            Box::new(Failure::new(
                format!("ssh: could not run `{}`", self.program[0]),
                Some(err.to_string()),
                hint,
            ))
        })?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("ssh was started without its pipes".into());
        };
        // ssh's stderr is read all along (a full pipe would stall it) and kept, the last
        // 16 KiB, for when it fails.
        let said = tokio::spawn(async move {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 16 * 1024 {
                    kept.drain(..kept.len() - 16 * 1024);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let closed = Box::pin(async move {
            let status = child.wait().await.ok()?;
            let stderr = said.await.unwrap_or_default();
            diagnose(status.code(), &stderr).map(|f| Box::new(f) as BoxError)
        });
        Ok(Dialed {
            stream: Box::new(tokio::io::join(stdout, stdin)),
            closed,
        })
    }
}

impl Dial for Ssh {
    fn target(&self) -> String {
        self.host.to_string()
    }

    fn dial(&self) -> BoxFuture<'_, Result<Dialed, BoxError>> {
        Box::pin(self.spawn())
    }
}

/// `'it''s'`: one word for the remote shell, whatever it holds.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Why the connection ended, from ssh's exit status and stderr: ssh's own failures (255), the
/// remote shell's "not found" (127), or `berth dial-stdio`'s error. `None` when ssh ended
/// well or was stopped by us.
fn diagnose(code: Option<i32>, stderr: &str) -> Option<Failure> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect();
    let last = lines.last().map(|l| (*l).to_owned());
    let said = |needle: &str| {
        lines
            .iter()
            .any(|l| l.to_ascii_lowercase().contains(needle))
    };
    let failure = |message: &str, hint: &str| {
        Some(Failure::new(
            message.to_owned(),
            last.clone(),
            Some(hint.to_owned()),
        ))
    };
    let code = code?;
    match code {
        0 => None,
        255 if said("connection refused") => failure(
            "ssh: connection refused",
            "nothing answers SSH at that address and port: check the host, the port (ssh://USER@HOST:PORT) and that sshd runs",
        ),
        255 if said("host key verification failed")
            || said("remote host identification has changed")
            || said("host key is known") =>
        {
            failure(
                "ssh: host key verification failed",
                "the server's host key is not in known_hosts or has changed: check its fingerprint, then connect once with ssh (or add it with ssh-keyscan) so berth can use it without asking",
            )
        }
        255 if said("permission denied") => failure(
            "ssh: permission denied",
            "the server took none of the keys offered: check the user in ssh://USER@HOST and that your key is in its authorized_keys (berth runs ssh with BatchMode=yes, so it asks for no password)",
        ),
        255 if said("could not resolve hostname") => failure(
            "ssh: could not resolve the host name",
            "check the host in ssh://USER@HOST",
        ),
        255 if said("timed out") => failure(
            "ssh: connection timed out",
            "the server does not answer: check the address, the port and the firewall",
        ),
        255 => failure(
            "ssh: could not connect",
            "run the same ssh yourself (ssh -p PORT USER@HOST) to see why",
        ),
        127 => failure(
            "remote berth not found on PATH",
            "install berth on the server in a directory on the PATH of non-interactive SSH sessions (e.g. /usr/local/bin/berth)",
        ),
        _ if said("unrecognized subcommand") && said("dial-stdio") => failure(
            &format!(
                "remote berth is older than this client {}: it has no dial-stdio",
                env!("CARGO_PKG_VERSION")
            ),
            "upgrade berth on the server",
        ),
        _ => {
            // `berth dial-stdio` failed: its own `error:` and `hint:` lines.
            let error = lines
                .iter()
                .find_map(|l| l.strip_prefix("error: "))
                .map_or_else(
                    || format!("remote berth dial-stdio failed (exit {code})"),
                    |e| format!("remote: {e}"),
                );
            let hint = lines.iter().find_map(|l| l.strip_prefix("hint: ")).map_or_else(
                || "check that the daemon runs on the server and that --state (or BERTH_STATE), when given, names its state directory there".to_owned(),
                |h| format!("on the server: {h}"),
            );
            Some(Failure::new(error, None, Some(hint)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(code: i32, stderr: &str, expected: Option<&str>) {
        let got = diagnose(Some(code), stderr).map(|f| f.to_string());
        assert_eq!(got.as_deref(), expected, "{code} {stderr}");
    }

    #[test]
    fn failures_name_the_step() {
        check(0, "", None);
        check(
            255,
            "ssh: connect to host 127.0.0.1 port 1: Connection refused\n",
            Some("ssh: connection refused"),
        );
        check(
            255,
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            Some("ssh: host key verification failed"),
        );
        check(
            255,
            "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\nroot@127.0.0.1: Permission denied (publickey).\n",
            Some("ssh: permission denied"),
        );
        check(
            255,
            "ssh: Could not resolve hostname nowhere.invalid: Name or service not known\n",
            Some("ssh: could not resolve the host name"),
        );
        check(
            127,
            "bash: line 1: berth: command not found\n",
            Some("remote berth not found on PATH"),
        );
        check(
            2,
            "error: unrecognized subcommand 'dial-stdio'\n",
            Some(&format!(
                "remote berth is older than this client {}: it has no dial-stdio",
                env!("CARGO_PKG_VERSION")
            )),
        );
        check(
            1,
            "error: no berth daemon answers at /srv/berth/berth.sock; start one with: berth serve --state /srv/berth\n",
            Some(
                "remote: no berth daemon answers at /srv/berth/berth.sock; start one with: berth serve --state /srv/berth",
            ),
        );
        assert!(diagnose(None, "").is_none(), "killed by us");
    }

    #[test]
    fn the_remote_command_quotes_the_state_directory() {
        let host: Host = "ssh://root@example.com:2222".parse().unwrap();
        let ssh = Ssh::new(host, Some("/srv/it's here".into()), None).unwrap();
        assert_eq!(
            ssh.args(),
            [
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "--",
                "root@example.com",
                r"berth dial-stdio --state '/srv/it'\''s here'"
            ]
        );
    }
}
