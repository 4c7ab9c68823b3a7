//! A daemon in its own process, so that a test can `kill -9` it: this test binary, run again
//! with `BERTH_IT_DAEMON=STATE` (see `daemon_process` in main.rs), builds a [`Config`] with
//! the test's hooks and runs [`daemon::Daemon`] until SIGTERM. The test talks to it through
//! the control API with `api`'s client, as the CLI does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use api::client::{Client, for_each_line};
use api::{DeployEvent, DeployOutcome, DeployQuery, NoQuery, RollbackQuery};
use bytes::Bytes;
use daemon::{Config, Daemon, Hooks, Listeners, Step};
use http::Method;
use serde_json::Value;
use testkit::wait_for;

/// The environment variable that turns this test binary into a daemon process.
const DAEMON_ENV: &str = "BERTH_IT_DAEMON";
/// With it: the step at which every rollout pauses (see [`pause_at`]).
const PAUSE_ENV: &str = "BERTH_IT_PAUSE_AT";

/// The daemon process's `main`: serve `state` until SIGTERM. Returns at once (a passing
/// test) when this binary is not a daemon process.
pub fn daemon_process() {
    let Some(state) = std::env::var_os(DAEMON_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config = Config::new(PathBuf::from(&state));
        if let Ok(step) = std::env::var(PAUSE_ENV) {
            config.hooks = pause_at(step.parse().unwrap(), PathBuf::from(&state));
        }
        let daemon = Daemon::open(config).unwrap();
        let listeners = Listeners {
            http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            https: None,
            admin: None,
            control: daemon.bind_control().unwrap(),
        };
        daemon
            .run(listeners, daemon::shutdown_signal())
            .await
            .unwrap();
    });
}

/// A rollout that reaches `step` creates `STATE/paused-at-STEP` and waits until the test
/// removes it.
fn pause_at(step: Step, state: PathBuf) -> Hooks {
    Hooks {
        at_step: Some(Arc::new(move |at| {
            let flag = state.join(format!("paused-at-{at}"));
            Box::pin(async move {
                if at != step || std::fs::write(&flag, b"").is_err() {
                    return;
                }
                while flag.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })),
    }
}

/// A daemon process on a temporary state directory, killed on drop.
pub struct TestDaemon {
    pub state: tempfile::TempDir,
    child: Option<Child>,
    pub http: SocketAddr,
    /// The step rollouts pause at, for the next (re)start.
    pub pause: Option<Step>,
}

impl TestDaemon {
    pub fn start(pause: Option<Step>) -> TestDaemon {
        let state = testkit::state_dir("berth-daemon-it-");
        let mut d = TestDaemon {
            state,
            child: None,
            http: "127.0.0.1:1".parse().unwrap(),
            pause,
        };
        d.restart();
        d
    }

    pub fn path(&self) -> &Path {
        self.state.path()
    }

    /// Start (again) on the same state directory and wait until it answers.
    pub fn restart(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.path().join("daemon.log"))
            .unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "daemon_process", "--nocapture"])
            .env(DAEMON_ENV, self.path())
            .env_remove(PAUSE_ENV)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(step) = self.pause {
            cmd.env(PAUSE_ENV, step.as_str());
        }
        self.child = Some(cmd.spawn().unwrap());
        let info: api::DaemonInfo =
            wait_for("the daemon to answer", Duration::from_secs(20), || {
                block_on(
                    self.client()
                        .get(&api::path(&["v1", "daemon"], &NoQuery {})),
                )
                .ok()
            });
        self.http = info.http.unwrap().parse().unwrap();
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = wait_for(
            "the daemon to stop on SIGTERM",
            Duration::from_secs(30),
            || child.try_wait().unwrap(),
        );
        assert!(status.success(), "{status}");
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn client(&self) -> Client {
        Client::new(self.path())
    }

    pub fn status(&self) -> Value {
        block_on(
            self.client()
                .get(&api::path(&["v1", "status"], &NoQuery {})),
        )
        .unwrap()
    }

    pub fn history(&self, app: &str) -> Value {
        let query = api::AppQuery {
            app: Some(app.to_owned()),
        };
        block_on(self.client().get(&api::path(&["v1", "history"], &query))).unwrap()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        testkit::http_get(self.http, "example.test", path)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Instances outlive the daemon: end what this test's daemons started.
        testkit::kill_processes_under(self.path());
    }
}

/// What a rollout reported: its progress, and how it ended (`None` when the daemon went away
/// before the end).
#[derive(Debug)]
pub struct Rolled {
    pub events: Vec<DeployEvent>,
    pub done: Option<DeployOutcome>,
}

impl Rolled {
    /// The release the rollout made live; panics when it failed.
    pub fn made_live(&self) -> &str {
        let done = self.done.as_ref().unwrap_or_else(|| panic!("{self:?}"));
        assert!(done.ok, "{self:?}");
        &done.release
    }

    /// The `detail` of every phase line.
    pub fn phases(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DeployEvent::Phase { phase, detail } => Some(format!("{phase}: {detail}")),
                _ => None,
            })
            .collect()
    }
}

/// `berth deploy DIR` against the daemon at `state`, as the CLI sends it.
pub fn deploy(state: &Path, dir: &Path, wait: bool) -> Rolled {
    let packed = deploy::pack(dir).unwrap();
    let query = DeployQuery {
        wait,
        ..DeployQuery::default()
    };
    rollout(
        state,
        &api::path(&["v1", "deploy"], &query),
        packed.bytes.into(),
    )
}

/// `berth rollback APP [--to RELEASE]`.
#[allow(dead_code)]
pub fn rollback(state: &Path, app: &str, to: Option<&str>) -> Rolled {
    let query = RollbackQuery {
        to: to.map(str::to_owned),
        wait: false,
    };
    rollout(
        state,
        &api::path(&["v1", "apps", app, "rollback"], &query),
        Bytes::new(),
    )
}

fn rollout(state: &Path, path: &str, body: Bytes) -> Rolled {
    block_on(async {
        let resp = Client::new(state)
            .send(Method::POST, path, body)
            .await
            .unwrap();
        let mut events = Vec::new();
        let read = for_each_line(resp.into_body(), |line| {
            events.push(serde_json::from_str(line).unwrap());
            Ok::<_, api::client::Error>(())
        })
        .await;
        let done = match events.pop() {
            Some(DeployEvent::Done(done)) => Some(done),
            Some(other) => {
                events.push(other);
                None
            }
            None => None,
        };
        // A daemon killed mid-rollout cuts the stream: that is what the caller is testing.
        let _ = read;
        Rolled { events, done }
    })
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
