//! The command builder every child of berth is started with: its environment, pipes, exit
//! status, and that nothing it started outlives its handle or its parent.

use std::path::Path;
use std::process::Stdio;

use supervisor::command::Command;
use testkit::{alive, eventually};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{LONG, start_helper};

/// What `base_env()` may pass through from the test's own environment.
const INHERITED: &[&str] = &[
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_dies_when_its_parent_is_killed() {
    let (mut helper, child) = start_helper("command").await;
    assert!(alive(child));
    helper.kill().unwrap(); // SIGKILL
    helper.wait().unwrap();
    eventually("sleep died with its parent", LONG, || !alive(child)).await;
}

#[tokio::test]
async fn the_environment_is_the_base_and_what_the_caller_sets() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("env")
        .env("GREETING", "hi")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert!(text.lines().any(|l| l == "GREETING=hi"), "{text}");
    assert!(names.contains(&"PATH"), "{text}");
    for name in names {
        assert!(
            name == "GREETING" || INHERITED.contains(&name),
            "{name} leaked from the parent's environment:\n{text}"
        );
    }

    let pwd = Command::new("pwd")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(pwd.stdout).unwrap().trim_end(),
        dir.path().canonicalize().unwrap().to_str().unwrap()
    );
}

#[tokio::test]
async fn output_has_both_streams_and_the_exit_status() {
    let out = Command::shell("echo out; echo err >&2; exit 3")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
}

#[tokio::test]
async fn stdout_streams_while_the_child_runs() {
    let mut child = Command::shell("echo ready; read line; echo \"got $line\"; exit 0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .await
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"dump\n").await.unwrap();
    drop(stdin);
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("got dump")
    );
    assert_eq!(lines.next_line().await.unwrap(), None);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn dropping_the_child_kills_its_whole_group() {
    let mut child = Command::shell("sleep 1000 & echo $!; wait")
        .stdout(Stdio::piped())
        .spawn()
        .await
        .unwrap();
    let leader = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let grandchild: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    assert!(alive(leader) && alive(grandchild));
    drop(child);
    eventually("the group to die with its handle", LONG, || {
        !alive(leader) && !alive(grandchild)
    })
    .await;
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let err = Command::new("/nonexistent/program")
        .spawn()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn debug_shows_env_keys_not_values() {
    let cmd = Command::new("true").env("DATABASE_PASSWORD", "hunter2");
    let text = format!("{cmd:?}");
    assert!(text.contains("DATABASE_PASSWORD"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// Runs as root in CI: a confined child runs as its user (never root again), without new
/// privileges, with its limits and umask, and with its own directory as `/tmp`. Without root
/// the switch is refused (EPERM), which is what a non-root daemon must report.
#[tokio::test]
async fn a_confined_child_runs_as_its_user_with_its_own_tmp_and_limits() {
    use supervisor::{Confinement, Rlimits, RunAs};
    let nobody = RunAs::new(65534, 65534).unwrap();
    assert!(
        RunAs::new(0, 0).is_none(),
        "nothing is ever switched to root"
    );
    let tmp = tempfile::tempdir().unwrap();
    let own_tmp = tmp.path().join("tmp");
    std::fs::create_dir(&own_tmp).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        nix::unistd::chown(&own_tmp, Some(65534.into()), Some(65534.into())).unwrap();
    }
    let marker = format!("berth-confined-{}", std::process::id());
    let confinement = Confinement {
        run_as: Some(nobody),
        no_new_privs: true,
        private_tmp: Some(own_tmp.clone()),
        limits: Rlimits {
            open_files: Some(1234),
            core: Some(0),
            ..Rlimits::default()
        },
        umask: Some(0o027),
        cgroup: None,
    };
    let script = format!(
        "grep -E '^(Uid|Gid|Groups|NoNewPrivs):' /proc/self/status; echo core=$(ulimit -c) files=$(ulimit -n) umask=$(umask); touch /tmp/{marker}; ls /tmp"
    );
    let out = Command::shell(&script).confine(confinement).output().await;
    if !root {
        let err = out.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        return;
    }
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "Uid:\t65534\t65534\t65534\t65534",
        "Gid:\t65534\t65534\t65534\t65534",
        "NoNewPrivs:\t1",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(
        text.lines()
            .any(|l| l.trim() == "Groups:\t65534" || l.trim() == "Groups:\t65534 "),
        "{text}"
    );
    assert!(text.contains("core=0 files=1234 umask=0027"), "{text}");
    // Its /tmp is its own directory: the file is there, not in the host's /tmp.
    assert!(own_tmp.join(&marker).exists(), "{text}");
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(text.contains(&marker));
}
