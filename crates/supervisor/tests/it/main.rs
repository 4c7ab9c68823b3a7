//! Integration tests with real child processes (python3, sh). No mocks, no sleeps as
//! synchronisation: every wait polls with a deadline.

// The tests start helper processes (this test binary again) with std's Command.
#![allow(clippy::disallowed_methods)]

mod adopt;
mod command;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use supervisor::{
    EventKind, Exit, InstanceState, Probe, ProcessSpec, StartFailureKind, Supervisor,
    SupervisorOptions, logs,
};
use testkit::{alive, eventually};

/// A tiny HTTP server: `/health` answers 200 unless a file `sick` exists in its cwd; SIGTERM
/// makes it print `got TERM` and exit 0.
const SERVER: &str = r#"
import http.server, os, signal, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/health" and not os.path.exists("sick")
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
def term(*a):
    print("got TERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
s = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening", os.environ["PORT"], os.environ["BERTH_APP"], os.environ["BERTH_INSTANCE"], os.environ.get("GREETING"), flush=True)
s.serve_forever()
"#;

struct Env {
    dir: tempfile::TempDir,
    sup: Supervisor,
}

impl Env {
    fn new() -> Env {
        Env::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut SupervisorOptions)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.py"), SERVER).unwrap();
        let mut opts = SupervisorOptions::new(dir.path().join("logs"));
        opts.restart_backoff = (Duration::from_millis(50), Duration::from_millis(400));
        f(&mut opts);
        Env {
            sup: Supervisor::new(opts),
            dir,
        }
    }

    fn cwd(&self) -> &Path {
        self.dir.path()
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs").join("shop")
    }

    fn spec(&self, command: &str) -> ProcessSpec {
        ProcessSpec {
            app: "shop".into(),
            service: "web".into(),
            release: "r1".into(),
            instance: 0,
            command: command.into(),
            cwd: self.cwd().to_path_buf(),
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            port: supervisor::free_port().unwrap(),
            health: None,
            start_deadline: Duration::from_secs(15),
            stop_timeout: Duration::from_secs(5),
            limits: Default::default(),
            confinement: Default::default(),
        }
    }

    fn server(&self) -> ProcessSpec {
        let mut spec = self.spec("python3 server.py");
        spec.health = Some(Probe {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            ..Probe::new("/health")
        });
        spec
    }

    fn log_text(&self) -> String {
        logs::read(&self.logs(), None, None)
            .unwrap()
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

const LONG: Duration = Duration::from_secs(20);

/// Live (non-zombie) processes in group `pgid`.
fn group_members(pgid: i32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        if f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_via_probe_with_env_and_events() {
    let env = Env::new();
    let mut events = env.sup.events();
    let inst = env.sup.start(env.server());
    inst.wait_ready().await.unwrap();
    let st = inst.status();
    assert_eq!(st.state, InstanceState::Ready);
    let pid = st.pid.unwrap();
    assert_eq!(st.pgid, Some(pid as i32), "own process group");
    assert!(
        st.memory_rss.unwrap() > 1_000_000,
        "rss {:?}",
        st.memory_rss
    );
    assert!(st.warnings.is_empty());
    assert_eq!(env.sup.instances().len(), 1);
    eventually("listening line in the log", LONG, || {
        env.log_text().contains(&format!(
            "web.0@r1 out | listening {} shop 0 hi",
            inst.port()
        ))
    })
    .await;
    inst.stop().await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
    assert!(env.sup.instances().is_empty());
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind);
    }
    assert_eq!(kinds[0], EventKind::Started { pid });
    assert_eq!(kinds[1], EventKind::Ready);
    assert_eq!(kinds[2], EventKind::Exited(Exit::Code(0)));
    assert_eq!(kinds[3], EventKind::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_probe_ready_after_one_second() {
    let env = Env::new();
    let t = Instant::now();
    let inst = env.sup.start(env.spec("sleep 30"));
    inst.wait_ready().await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(inst.status().state, InstanceState::Ready);
    // `exec` means the shell is not left in between: the pid runs sleep itself.
    let pid = inst.status().pid.unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_at_once_fails_start_with_code_and_tail() {
    let env = Env::new();
    let t = Instant::now();
    let inst = env.sup.start(env.spec(
        "python3 -c 'import sys; print(\"starting\"); print(\"boom: no DATABASE_URL\", file=sys.stderr); sys.exit(3)'",
    ));
    let err = inst.wait_ready().await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "fails at once");
    assert_eq!(err.kind, StartFailureKind::Exited(Exit::Code(3)));
    assert!(
        err.log_tail
            .contains(&"err | boom: no DATABASE_URL".to_string()),
        "{:?}",
        err.log_tail
    );
    assert!(
        err.log_tail.contains(&"out | starting".to_string()),
        "{:?}",
        err.log_tail
    );
    assert!(err.to_string().contains("exit code 3"), "{err}");
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_error_fails_start_and_names_the_cwd() {
    let env = Env::new();
    let mut spec = env.spec("sleep 30");
    spec.cwd = env.cwd().join("missing-release");
    let inst = env.sup.start(spec);
    let err = inst.wait_ready().await.unwrap_err();
    match &err.kind {
        StartFailureKind::Spawn(msg) => assert!(msg.contains("missing-release"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    inst.stop().await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_fails_after_deadline_with_probe_error() {
    let env = Env::new();
    let mut spec = env.server();
    spec.command = "sleep 30".into(); // never listens
    spec.start_deadline = Duration::from_secs(1);
    let t = Instant::now();
    let inst = env.sup.start(spec);
    let err = inst.wait_ready().await.unwrap_err();
    assert!(t.elapsed() >= Duration::from_secs(1) && t.elapsed() < Duration::from_secs(5));
    match &err.kind {
        StartFailureKind::NotReady { last_error, .. } => {
            let e = last_error.as_deref().unwrap();
            assert!(e.contains("connect") && e.contains("/health"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_restarts_and_is_ready_again() {
    let env = Env::new();
    let inst = env.sup.start(env.server());
    inst.wait_ready().await.unwrap();
    let pid = inst.status().pid.unwrap();
    kill9(pid);
    eventually("restarted and ready", LONG, || {
        let st = inst.status();
        st.restarts == 1 && st.state == InstanceState::Ready && st.pid != Some(pid)
    })
    .await;
    assert_eq!(inst.status().last_exit, Some(Exit::Signal(9)));
    assert!(!inst.status().crash_loop);
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_unready_recovers_then_restarts() {
    let env = Env::new();
    let mut spec = env.server();
    if let Some(p) = spec.health.as_mut() {
        p.interval = Duration::from_millis(150);
        p.unhealthy_after = 4;
    }
    let mut events = env.sup.events();
    let inst = env.sup.start(spec);
    inst.wait_ready().await.unwrap();
    let sick = env.cwd().join("sick");
    let mut state = inst.watch();

    // Unready, then healthy again without a restart.
    std::fs::write(&sick, "").unwrap();
    tokio::time::timeout(LONG, state.wait_for(|s| *s == InstanceState::Unready))
        .await
        .unwrap()
        .unwrap();
    std::fs::remove_file(&sick).unwrap();
    tokio::time::timeout(LONG, state.wait_for(|s| *s == InstanceState::Ready))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inst.status().restarts, 0);

    // Stays sick: unready, then restarted.
    std::fs::write(&sick, "").unwrap();
    eventually("restart after failing liveness", LONG, || {
        inst.status().restarts == 1
    })
    .await;
    std::fs::remove_file(&sick).unwrap();
    eventually("ready after restart", LONG, || {
        inst.status().state == InstanceState::Ready
    })
    .await;
    let mut saw_unready = false;
    while let Ok(e) = events.try_recv() {
        if let EventKind::Unready { reason } = e.kind {
            assert!(reason.contains("500"), "{reason}");
            saw_unready = true;
        }
    }
    assert!(saw_unready);
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_is_detected_and_retried() {
    let env = Env::with(|o| {
        o.restart_backoff = (Duration::from_millis(20), Duration::from_millis(200));
        o.crash_loop_restarts = 3;
    });
    let mut events = env.sup.events();
    let inst = env.sup.start(env.spec("echo crashing; exit 1"));
    assert!(inst.wait_ready().await.is_err());
    eventually("crash loop flagged", LONG, || inst.status().crash_loop).await;
    let mut saw = false;
    while let Ok(e) = events.try_recv() {
        saw |= e.kind == EventKind::CrashLoop;
    }
    assert!(saw, "CrashLoop event");
    let mut state = inst.watch();
    tokio::time::timeout(LONG, state.wait_for(|s| *s == InstanceState::CrashLoop))
        .await
        .unwrap()
        .unwrap();
    // It keeps retrying.
    let before = inst.status().restarts;
    eventually("still retrying", LONG, || inst.status().restarts > before).await;
    assert_eq!(inst.status().last_exit, Some(Exit::Code(1)));
    inst.stop().await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_first() {
    let env = Env::new();
    let inst = env.sup.start(env.server());
    inst.wait_ready().await.unwrap();
    let pid = inst.status().pid.unwrap();
    let t = Instant::now();
    inst.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(inst.status().last_exit, Some(Exit::Code(0)));
    assert!(!alive(pid));
    eventually("TERM logged", LONG, || {
        env.log_text().contains("out | got TERM")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_after_timeout_when_sigterm_is_ignored() {
    let env = Env::new();
    let mut spec = env.spec("trap '' TERM; while true; do sleep 0.1; done");
    spec.stop_timeout = Duration::from_secs(1);
    let inst = env.sup.start(spec);
    inst.wait_ready().await.unwrap();
    let pgid = inst.status().pgid.unwrap();
    let t = Instant::now();
    inst.stop().await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert_eq!(inst.status().last_exit, Some(Exit::Signal(9)));
    eventually("group gone", LONG, || group_members(pgid).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_kill_reaches_grandchildren() {
    let env = Env::new();
    let inst = env.sup.start(env.spec("sleep 1000 & sleep 1000 & wait"));
    inst.wait_ready().await.unwrap();
    let pgid = inst.status().pgid.unwrap();
    eventually("three processes in the group", LONG, || {
        group_members(pgid).len() == 3
    })
    .await;
    // The leader dies alone: its children are swept before the restart.
    kill9(pgid as u32);
    eventually("old group swept", LONG, || group_members(pgid).is_empty()).await;
    eventually("restarted", LONG, || {
        inst.status().state == InstanceState::Ready
    })
    .await;
    let pgid = inst.status().pgid.unwrap();
    eventually("three processes again", LONG, || {
        group_members(pgid).len() == 3
    })
    .await;
    inst.stop().await;
    assert!(group_members(pgid).is_empty(), "stop kills the whole group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_stale_group_kills_a_group() {
    let env = Env::new();
    let inst = env.sup.start(env.spec("sleep 1000 & wait"));
    inst.wait_ready().await.unwrap();
    let pgid = inst.status().pgid.unwrap();
    assert!(supervisor::kill_stale_group(pgid));
    eventually("group gone", LONG, || group_members(pgid).is_empty()).await;
    assert!(!supervisor::kill_stale_group(i32::MAX - 1), "no such group");
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_max_is_enforced() {
    let env = Env::new();
    // Within the limit: runs.
    let mut spec = env.spec("python3 -c 'b = bytearray(10 << 20); import time; time.sleep(30)'");
    spec.limits.memory_max = Some(200 << 20);
    let small = env.sup.start(spec);
    small.wait_ready().await.unwrap();
    // Beyond it: fails.
    let mut spec = env.spec("python3 -c 'b = bytearray(400 << 20); print(\"allocated\")'");
    spec.instance = 1;
    spec.limits.memory_max = Some(200 << 20);
    let big = env.sup.start(spec);
    let err = big.wait_ready().await.unwrap_err();
    let limits = big.status().limits;
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits[0].name, "memory_max");
    if limits[0].enforced_by != supervisor::Enforcement::Cgroup {
        assert!(
            limits[0].enforced_by.to_string().contains("RLIMIT_AS"),
            "{limits:?}"
        );
        assert_eq!(err.kind, StartFailureKind::Exited(Exit::Code(1)));
        assert!(
            err.log_tail.iter().any(|l| l.contains("MemoryError")),
            "{:?}",
            err.log_tail
        );
    } else {
        // cgroup v2: the kernel's OOM killer.
        assert_eq!(err.kind, StartFailureKind::Exited(Exit::Signal(9)));
    }
    assert!(!err.log_tail.iter().any(|l| l.contains("allocated")));
    small.stop().await;
    big.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_rotate_and_read_back_with_since_and_follow() {
    let env = Env::with(|o| {
        o.log_max_bytes = 2000;
        o.log_keep = 2;
    });
    // Each line is ~55 bytes on disk: 200 lines fill more than 3 files of 2000 bytes.
    let inst = env.sup.start(env.spec(
        "python3 -c 'import sys, os, time\nfor i in range(200): print(\"line\", i, flush=True)\nwhile not os.path.exists(\"go\"): time.sleep(0.05)\nfor i in range(200, 260): print(\"line\", i, file=sys.stderr, flush=True)\ntime.sleep(30)'",
    ));
    let dir = env.logs();
    eventually("line 199", LONG, || {
        env.log_text().contains("out | line 199\n")
    })
    .await;
    let svc = dir.join("web");
    for name in ["current.log", "current.log.1", "current.log.2"] {
        let len = std::fs::metadata(svc.join(name)).unwrap().len();
        assert!(len <= 2000, "{name} is {len} bytes");
    }
    assert!(!svc.join("current.log.3").exists());
    let lines = logs::read(&dir, Some("web"), None).unwrap();
    let numbers: Vec<u32> = lines
        .iter()
        .map(|l| l.text.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers[0] > 0, "oldest lines were dropped by rotation");
    assert_eq!(*numbers.last().unwrap(), 199);
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous, oldest first: {numbers:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.service == "web" && l.instance == 0 && l.release == "r1")
    );

    let since = lines[lines.len() - 10].time;
    let recent = logs::read(&dir, None, Some(since)).unwrap();
    assert!(recent.len() >= 10 && recent.iter().all(|l| l.time >= since));
    assert!(
        logs::read(
            &dir,
            None,
            Some(SystemTime::now() + Duration::from_secs(60))
        )
        .unwrap()
        .is_empty()
    );
    assert!(
        logs::read(&dir.join("nope"), None, None)
            .unwrap()
            .is_empty()
    );

    // Follow from now: the next lines arrive in order across another rotation.
    let mut follow = logs::follow(dir.clone(), None, Some(SystemTime::now()));
    std::fs::write(env.cwd().join("go"), "").unwrap();
    let mut got = Vec::new();
    while got.len() < 60 {
        let line = tokio::time::timeout(LONG, follow.recv())
            .await
            .unwrap_or_else(|_| panic!("followed {got:?}; on disk:\n{}", env.log_text()))
            .unwrap();
        assert_eq!(line.stream, logs::Stream::Err);
        got.push(line.text);
    }
    let want: Vec<String> = (200..260).map(|i| format!("line {i}")).collect();
    assert_eq!(got, want);
    inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_cut_and_bad_utf8_is_replaced() {
    let env = Env::new();
    let inst = env.sup.start(env.spec(
        "python3 -c 'import sys, time\nsys.stdout.write(\"x\" * 40000 + \"\\n\")\nsys.stdout.flush()\nsys.stdout.buffer.write(b\"bad \\xff\\xfe bytes\\r\\nafter\\n\")\nsys.stdout.flush()\ntime.sleep(30)'",
    ));
    eventually("after", LONG, || env.log_text().contains("out | after\n")).await;
    let lines = logs::read(&env.logs(), None, None).unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0].text,
        format!("{} [cut]", "x".repeat(logs::MAX_LINE))
    );
    assert_eq!(lines[1].text, "bad \u{FFFD}\u{FFFD} bytes");
    inst.stop().await;
}

/// Set in a re-executed test binary to `MODE:PIDFILE`: see [`pdeathsig_helper`].
const HELPER: &str = "BERTH_SUP_PDEATH_HELPER";

/// Helper for the tests that kill a parent with SIGKILL: only does something when re-executed
/// with [`HELPER`] set. MODE `instance` runs a real Supervisor with a `sleep 1000` instance,
/// MODE `command` starts `sleep 1000` through the command builder; the child's pid is written
/// to PIDFILE, then the helper waits to be killed.
#[test]
fn pdeathsig_helper() {
    let Ok(arg) = std::env::var(HELPER) else {
        return;
    };
    let (mode, pid_file) = arg.split_once(':').unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let park = |pid: u32| async move {
        std::fs::write(pid_file, pid.to_string()).unwrap();
        std::future::pending::<()>().await;
    };
    rt.block_on(async {
        match mode {
            "instance" => {
                let env = Env::new();
                let inst = env.sup.start(env.spec("sleep 1000"));
                inst.wait_ready().await.unwrap();
                park(inst.status().pid.unwrap()).await;
            }
            "command" => {
                let child = supervisor::command::Command::new("sleep")
                    .arg("1000")
                    .spawn()
                    .await
                    .unwrap();
                park(child.id()).await;
            }
            other => panic!("unknown helper mode {other}"),
        }
    });
}

/// Run [`pdeathsig_helper`] in `mode` in a new process; returns it and its child's pid.
pub(crate) async fn start_helper(mode: &str) -> (std::process::Child, u32) {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pdeathsig_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, format!("{mode}:{}", pid_file.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("helper started its child", LONG, || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| !s.is_empty())
    })
    .await;
    let child = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    (helper, child)
}

/// Instances outlive the daemon (no death signal): a restart or an upgrade of berth must not
/// restart the apps. The next daemon adopts them (`adopt.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_outlive_a_killed_daemon() {
    let (mut helper, child) = start_helper("instance").await;
    assert!(alive(child));
    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();
    assert!(alive(child), "the instance died with its daemon");
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the instance to be gone", LONG, || !alive(child)).await;
}
