//! `berth --host ssh://USER@HOST[:PORT] COMMAND`: the CLI here, the daemon on another server.
//!
//! The client runs `ssh -o BatchMode=yes [-p PORT] -- USER@HOST berth dial-stdio [--state
//! DIR]` (`ssh.rs`) and speaks the control API through ssh's stdin and stdout, as it does
//! over `STATE/berth.sock` on the server itself: no port is opened and no credential made,
//! SSH's own authentication and host-key checking are all. On the server, `berth dial-stdio`
//! (`dial_stdio.rs`) joins its stdin and stdout to the daemon's socket. Before the command
//! runs, the client asks the daemon its version (`GET /v1/daemon`) and refuses an older one.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Result;
use api::client::Client;

pub mod dial_stdio;
mod ssh;

pub use ssh::Failure;

/// `ssh://[USER@]HOST[:PORT]`: where a remote daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub user: Option<String>,
    /// A name or an address (IPv6 without brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl FromStr for Host {
    type Err = String;

    fn from_str(s: &str) -> Result<Host, String> {
        let bad = |why: &str| format!("`{s}`: {why}; expected ssh://[USER@]HOST[:PORT]");
        let rest = s
            .strip_prefix("ssh://")
            .ok_or_else(|| bad("only ssh:// is supported"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, rest),
        };
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad(&format!("port `{p}` is not a number from 1 to 65535")))?,
            ),
            None => None,
        };
        // Nothing ssh could take for an option or a second word.
        let word = |w: &str, extra: &[char]| {
            !w.is_empty()
                && !w.starts_with('-')
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(&c))
        };
        if !word(host, &[':']) {
            return Err(bad("the host must be a name or an address"));
        }
        if let Some(user) = user
            && !word(user, &[])
        {
            return Err(bad("the user must be a plain user name"));
        }
        Ok(Host {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A client of the daemon at `host`, checked to be no older than this client. `state` is the
/// remote state directory when the operator named one (`--state` or `BERTH_STATE`), else the
/// remote berth's default. `ssh_command` replaces `ssh` (`BERTH_SSH_COMMAND`).
pub async fn connect(
    host: Host,
    state: Option<PathBuf>,
    ssh_command: Option<String>,
) -> Result<Client> {
    let ssh = ssh::Ssh::new(host, state, ssh_command)?;
    let client = Client::dial(ssh);
    let info: api::DaemonInfo = client.get("/v1/daemon").await?;
    check_version(&info.version, env!("CARGO_PKG_VERSION"))?;
    Ok(client)
}

/// Refuse a remote daemon older than this client: it may not know what this client sends.
fn check_version(remote: &str, local: &str) -> Result<(), Failure> {
    match (parse_version(remote), parse_version(local)) {
        (Some(r), Some(l)) if r >= l => Ok(()),
        _ => Err(Failure::new(
            format!("remote berth {remote} is older than this client {local}"),
            None,
            Some(format!(
                "install berth {local} or later on the server and restart its daemon, or use a client of version {remote}"
            )),
        )),
    }
}

/// `0.2.1` (a pre-release suffix ignored) as numbers.
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let ok = |s: &str, user: Option<&str>, host: &str, port: Option<u16>| {
            let h: Host = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                h,
                Host {
                    user: user.map(str::to_owned),
                    host: host.to_owned(),
                    port
                },
                "{s}"
            );
        };
        ok("ssh://root@example.com", Some("root"), "example.com", None);
        ok(
            "ssh://deploy@10.0.0.5:2222/",
            Some("deploy"),
            "10.0.0.5",
            Some(2222),
        );
        ok("ssh://example.com", None, "example.com", None);
        ok("ssh://root@[::1]:22", Some("root"), "::1", Some(22));
        assert_eq!(
            "ssh://root@[::1]:22".parse::<Host>().unwrap().to_string(),
            "ssh://root@[::1]:22"
        );
        let bad = |s: &str, why: &str| {
            let err = s.parse::<Host>().unwrap_err();
            assert!(err.contains(why), "{s}: {err}");
        };
        bad("tcp://example.com", "only ssh://");
        bad("example.com", "only ssh://");
        bad("ssh://root@example.com:0", "port `0`");
        bad("ssh://root@example.com:ssh", "port `ssh`");
        bad("ssh://-oProxyCommand=x", "the host must be");
        bad("ssh://-l@example.com", "the user must be");
        bad("ssh://root@exa mple.com", "the host must be");
        bad("ssh://", "the host must be");
    }

    #[test]
    fn versions() {
        assert!(check_version("0.2.0", "0.2.0").is_ok());
        assert!(check_version("0.3.0", "0.2.9").is_ok());
        assert!(check_version("0.10.0", "0.9.0").is_ok());
        let err = check_version("0.1.0", "0.2.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "remote berth 0.1.0 is older than this client 0.2.0"
        );
        assert!(check_version("0.2.0-rc.1", "0.2.0").is_ok());
        assert!(check_version("nonsense", "0.2.0").is_err());
    }
}
