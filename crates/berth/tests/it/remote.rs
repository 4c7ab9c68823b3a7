//! `berth --host ssh://…`: the CLI against a daemon through a real OpenSSH server on
//! loopback, with a host key and a user key made for the test. The "server" is this machine:
//! its sshd runs `berth dial-stdio` from a PATH the test sets (the real binary, linked in).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::py_app;
use crate::harness::*;

/// An sshd on a loopback port, in a directory of its own, stopped on drop.
struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    user: String,
}

impl Sshd {
    /// `remote_path` is the PATH of the sessions it runs.
    fn start(remote_path: &str) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("berth-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for key in ["host_key", "user_key", "stranger_key"] {
            let made = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(key))
                .status()
                .unwrap();
            assert!(made.success());
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd refuses to start without its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = testkit::free_port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSetEnv PATH={remote_path}\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_key}"),
        )
        .unwrap();
        std::fs::write(d.join("empty_known_hosts"), "").unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run /usr/sbin/sshd (Debian package openssh-server)");
        wait_for("sshd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        Sshd {
            dir,
            child,
            port,
            user,
        }
    }

    fn host(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", self.user, self.port)
    }

    /// ssh with the test's key and known_hosts, and none of this machine's ssh config.
    fn ssh_command(&self, key: &str, known_hosts: &str) -> String {
        let d = self.dir.path().display();
        format!(
            "ssh -F /dev/null -o IdentitiesOnly=yes -i {d}/{key} -o UserKnownHostsFile={d}/{known_hosts}"
        )
    }

    /// SSH sessions sshd has accepted so far.
    fn sessions(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("sshd.log"))
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory holding only `berth`, a link to the binary under test.
fn berth_on_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BERTH, dir.path().join("berth")).unwrap();
    let bin = dir.path().to_owned();
    (dir, bin)
}

/// `berth --host HOST ARGS` with `ssh_command`, and --state only when `state` is given.
fn remote(host: &str, ssh_command: &str, state: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(BERTH);
    cmd.arg("--host").arg(host);
    if let Some(state) = state {
        cmd.arg("--state").arg(state);
    }
    let out = cmd
        .args(args)
        .env_remove("BERTH_STATE")
        .env("BERTH_SSH_COMMAND", ssh_command)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(out)
}

/// `berth status` through `host` fails at the step `error` names, with a hint.
fn refused(host: &str, ssh_command: &str, state: Option<&Path>, error: &str) {
    let run = remote(host, ssh_command, state, &["status"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with(&format!("error: {error}")),
        "{run:?}"
    );
    assert!(run.stderr.contains("\nhint: "), "{run:?}");
}

#[test]
#[allow(clippy::print_stderr)] // the timing, for the record (not asserted)
fn deploy_status_logs_and_releases_over_ssh() {
    let (_bin, bin) = berth_on_path();
    let sshd = Sshd::start(&format!("{}:/usr/bin:/bin", bin.display()));
    let d = Daemon::start();
    let ssh = sshd.ssh_command("user_key", "known_hosts");
    let run = |args: &[&str]| remote(&sshd.host(), &ssh, Some(d.path()), args);

    let started = Instant::now();
    let status = run(&["status"]);
    let over_ssh = started.elapsed();
    assert_eq!(status.code, 0, "{status:?}");
    let started = Instant::now();
    assert_eq!(d.berth(&["status"]).code, 0);
    let local = started.elapsed();
    eprintln!("berth status: {over_ssh:?} over SSH, {local:?} on the socket");

    // The whole deploy, three requests (routes check, version, upload), is one SSH session.
    let app = py_app("faraway", "");
    let before = sshd.sessions();
    let deploy = run(&["deploy", app.path().to_str().unwrap()]);
    assert_eq!(deploy.code, 0, "{deploy:?}\n{}", d.log());
    assert!(deploy.stderr.contains("==> packed"), "{deploy:?}");
    // The archive went through the SSH session, and said so.
    let sent = format!(" to {}", sshd.host());
    assert!(
        deploy
            .stderr
            .lines()
            .any(|l| l.contains("] sent ") && l.ends_with(&sent)),
        "{deploy:?}"
    );
    assert!(deploy.stderr.contains("web.0 ready on"), "{deploy:?}");
    assert!(deploy.stdout.contains("deployed faraway r1"), "{deploy:?}");
    assert_eq!(sshd.sessions() - before, 1, "{deploy:?}");
    assert_eq!(d.get("/").unwrap(), (200, "release r1\n".to_owned()));

    let status = run(&["status", "faraway", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(instances(&status, "faraway")[0]["state"], "ready");

    // `check` asks the remote daemon about routes; BERTH_HOST does what --host does.
    let check = Command::new(BERTH)
        .args(["check", app.path().to_str().unwrap()])
        .env("BERTH_HOST", sshd.host())
        .env("BERTH_STATE", d.path())
        .env("BERTH_SSH_COMMAND", &ssh)
        .output()
        .unwrap();
    let check = Run::from(check);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.starts_with("ok: app faraway"), "{check:?}");
    assert!(!check.stderr.contains("no berth daemon"), "{check:?}");

    let releases = run(&["releases", "faraway"]);
    assert_eq!(releases.code, 0, "{releases:?}");
    assert!(releases.stdout.contains("r1"), "{releases:?}");

    let logs = wait_for("the app's log over SSH", Duration::from_secs(10), || {
        let logs = run(&["logs", "faraway", "web"]);
        (logs.code == 0 && !logs.stdout.trim().is_empty()).then_some(logs)
    });
    assert!(logs.stdout.contains("py web on"), "{logs:?}");

    // A mistake the daemon finds is answered as on the server: exit 2, its message.
    let missing = run(&["releases", "nosuchapp"]);
    assert_eq!(missing.code, 2, "{missing:?}");
}

#[test]
fn ssh_failures_name_the_step() {
    let (_bin, bin) = berth_on_path();
    let sshd = Sshd::start(&format!("{}:/usr/bin:/bin", bin.display()));
    let good = sshd.ssh_command("user_key", "known_hosts");

    // Nothing listens on the port.
    let closed = format!("ssh://{}@127.0.0.1:{}", sshd.user, testkit::free_port());
    refused(&closed, &good, None, "ssh: connection refused\n");
    // A host key berth was not told of.
    let unknown = sshd.ssh_command("user_key", "empty_known_hosts");
    refused(
        &sshd.host(),
        &unknown,
        None,
        "ssh: host key verification failed\n",
    );
    // A key the server does not take.
    let stranger = sshd.ssh_command("stranger_key", "known_hosts");
    refused(&sshd.host(), &stranger, None, "ssh: permission denied\n");
    // No daemon in that state directory on the server.
    let nowhere = tempfile::tempdir().unwrap();
    refused(
        &sshd.host(),
        &good,
        Some(nowhere.path()),
        "remote: no berth daemon answers at ",
    );

    // --host is for the commands that talk to a daemon.
    let run = remote(&sshd.host(), &good, None, &["serve"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("runs on this machine"), "{run:?}");
}

#[test]
fn a_server_without_berth_on_its_path_is_named() {
    let sshd = Sshd::start("/usr/bin:/bin");
    let ssh = sshd.ssh_command("user_key", "known_hosts");
    refused(&sshd.host(), &ssh, None, "remote berth not found on PATH\n");
}
