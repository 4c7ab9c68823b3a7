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
        let child = Command::new(BERTH)
            .arg("serve")
            .args(&self.args)
            .env("BERTH_STATE", self.path())
            .env("BERTH_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let status = wait_for("the daemon to answer", Duration::from_secs(20), || {
            let run = berth(self.path(), &["status", "--json"]);
            (run.code == 0).then(|| serde_json::from_str::<Value>(&run.stdout).unwrap())
        });
        self.http = status["daemon"]["http"].as_str().unwrap().parse().unwrap();
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        signal(child.id(), libc_sig::TERM);
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub mod libc_sig {
    pub const TERM: i32 = 15;
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
