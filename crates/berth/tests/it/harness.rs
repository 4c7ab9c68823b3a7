//! Start daemons, run the CLI, make small apps, poll with deadlines.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
pub use testkit::{PY_WEB, PY_WS_WEB, alive, app, http_get, wait_for};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The repository root (for `examples/`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `berth ARGS` with `BERTH_STATE` set to `state`.
pub fn berth(state: &Path, args: &[&str]) -> Run {
    let out = Command::new(BERTH)
        .args(args)
        .env("BERTH_STATE", state)
        .stdin(Stdio::null())
        .output()
        .expect("run berth");
    Run::from(out)
}

/// `berth ARGS` with `input` on stdin.
pub fn berth_stdin(d: &Daemon, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(BERTH)
        .args(args)
        .env("BERTH_STATE", d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused before it reads stdin closes the pipe early: that is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `berth serve` process on a temporary state directory, killed on drop.
pub struct Daemon {
    pub state: tempfile::TempDir,
    pub child: Option<Child>,
    pub http: SocketAddr,
    /// Extra environment of the daemon process (e.g. `BERTH_TEST_PAUSE_AT`).
    pub env: Vec<(String, String)>,
    /// Arguments of `berth serve` (default `--http 127.0.0.1:0`).
    pub args: Vec<String>,
    /// The HTTP listener, held by the test the way systemd holds a `.socket` unit's, and
    /// passed to each daemon as `LISTEN_FDS` (see [`Daemon::start_activated`]).
    pub activation: Option<std::net::TcpListener>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&["--http", "127.0.0.1:0"], &[])
    }

    /// `berth serve ARGS` with extra environment `env`.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let state = testkit::state_dir("berth-it-");
        let mut d = Daemon {
            state,
            child: None,
            http: "127.0.0.1:1".parse().unwrap(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
            activation: None,
        };
        d.restart();
        d
    }

    /// A daemon whose HTTP listener is passed in, as systemd's socket activation does: the
    /// socket stays open (and queues connections) while no daemon runs.
    pub fn start_activated() -> Daemon {
        let state = testkit::state_dir("berth-it-");
        let mut d = Daemon {
            state,
            child: None,
            http: "127.0.0.1:1".parse().unwrap(),
            env: Vec::new(),
            args: vec!["--http".into(), "127.0.0.1:0".into()],
            activation: Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
        };
        d.restart();
        d
    }

    pub fn path(&self) -> &Path {
        self.state.path()
    }

    /// Start (again) on the same state directory.
    pub fn restart(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.path().join("daemon.log"))
            .unwrap();
        let mut cmd = Command::new(BERTH);
        cmd.arg("serve")
            .args(&self.args)
            .env("BERTH_STATE", self.path())
            .env("BERTH_LOG", "info")
            // Not under systemd, even when the tests are: SIGTERM leaves the apps running.
            .env_remove("INVOCATION_ID")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(listener) = &self.activation {
            pass_as_fd_3(&mut cmd, listener);
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            let run = berth(self.path(), &["status", "--json"]);
            if run.code == 0 {
                break serde_json::from_str::<Value>(&run.stdout).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer within 20s: {run:?}\n--- daemon log\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.http = status["daemon"]["http"].as_str().unwrap().parse().unwrap();
    }

    /// The pid of the daemon answering on the state directory now (after an upgrade, not the
    /// process this harness started), if one answers.
    pub fn serving_pid(&self) -> Option<u32> {
        let run = berth(self.path(), &["status", "--json"]);
        (run.code == 0)
            .then(|| serde_json::from_str::<Value>(&run.stdout).ok())
            .flatten()
            .and_then(|s| s["daemon"]["pid"].as_u64())
            .map(|p| p as u32)
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM (the daemon goes, the apps stay) and wait; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        self.stop_with(libc_sig::TERM)
    }

    /// When the daemon answering now started (`status`).
    pub fn status_started_at(&self) -> String {
        self.status()["daemon"]["started_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Signal `sig` to the daemon and wait; returns the exit code.
    pub fn stop_with(&mut self, sig: i32) -> i32 {
        let mut child = self.child.take().unwrap();
        signal(child.id(), sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn berth(&self, args: &[&str]) -> Run {
        berth(self.path(), args)
    }

    pub fn status(&self) -> Value {
        let run = self.berth(&["status", "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// The daemon's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http, "example.test", path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // After an upgrade the daemon serving is not the process this harness started.
        let serving = self.serving_pid();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = serving {
            signal(pid, libc_sig::KILL);
        }
        // Instances outlive the daemon: end what this test's daemons started.
        testkit::kill_processes_under(self.path());
    }
}

/// The child gets `fd` as descriptor 3 with `LISTEN_FDS=1` and `LISTEN_FDNAMES=http`, as
/// systemd passes a socket unit's listener.
#[allow(unsafe_code)]
fn pass_as_fd_3(cmd: &mut Command, fd: &impl std::os::fd::AsRawFd) {
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    cmd.env("LISTEN_FDS", "1").env("LISTEN_FDNAMES", "http");
    // SAFETY: dup2 is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let done = if raw == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(raw, 3)
            };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Wait until no daemon holds the state directory's lock (one that got SIGTERM lets go of
/// it once its apps are released, before its last requests are done).
pub fn wait_unlocked(state: &Path) {
    let lock = state.join("daemon.lock");
    wait_for("the state lock to be free", Duration::from_secs(30), || {
        let file = std::fs::File::open(&lock).ok()?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .ok()
            .map(drop)
    });
}

pub mod libc_sig {
    pub const TERM: i32 = 15;
    pub const INT: i32 = 2;
    pub const KILL: i32 = 9;
}

pub fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Instances of `app` in `status --json`.
pub fn instances(status: &Value, app: &str) -> Vec<Value> {
    status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == app)
        .map(|a| a["instances"].as_array().unwrap().clone())
        .unwrap_or_default()
}

/// `release` of `app` answers `/` and is the app's only release running, every instance ready:
/// what a failed deploy or a rollback must leave behind.
pub fn assert_serves(d: &Daemon, app: &str, release: &str) {
    assert_eq!(d.get("/").unwrap(), (200, format!("release {release}\n")));
    let status = d.status();
    let live = status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == app)
        .map(|a| a["release"].clone());
    assert_eq!(live, Some(Value::from(release)), "{status}");
    assert!(
        instances(&status, app)
            .iter()
            .all(|i| i["release"] == release && i["state"] == "ready"),
        "{status}"
    );
}

/// A web app from [`PY_WS_WEB`] with extra `[services.web]` lines and extra top-level TOML.
pub fn ws_app(name: &str, service_extra: &str, top_extra: &str) -> tempfile::TempDir {
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n{top_extra}\n[services.web]\ncommand = \"python3 -u web.py\"\nhealth = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }}\nstop_timeout = \"5s\"\n{service_extra}\n[[routes]]\nhost = \"*\"\npath = \"/\"\nservice = \"web\"\n"
            ),
        ),
        ("web.py", PY_WS_WEB),
    ])
}

/// `wrk` in 3-second rounds until `stop`, with `Host: host` when given: (requests, non-2xx,
/// socket errors — refused connections included).
pub fn wrk_until(
    addr: SocketAddr,
    host: Option<&'static str>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64, u64)> {
    std::thread::spawn(move || {
        let (mut requests, mut non2xx, mut errors) = (0, 0, 0);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let mut wrk = Command::new("wrk");
            wrk.args(["-t1", "-c8", "-d3s", "--timeout", "5s"]);
            if let Some(host) = host {
                wrk.args(["-H", &format!("Host: {host}")]);
            }
            let out = wrk
                .arg(format!("http://{addr}/"))
                .output()
                .expect("wrk is installed (scripts/test installs it)");
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if line.contains("requests in") {
                    requests += words[0].parse::<u64>().unwrap();
                } else if line.starts_with("  Non-2xx") {
                    non2xx += words.last().unwrap().parse::<u64>().unwrap();
                } else if line.starts_with("  Socket errors") {
                    // Socket errors: connect 0, read 0, write 0, timeout 0
                    errors += words
                        .iter()
                        .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                        .sum::<u64>();
                }
            }
        }
        (requests, non2xx, errors)
    })
}
