//! Apps are isolated from berth and from each other (the daemon runs as root, as in CI): a
//! probe service of one app tries to reach berth's keys, the other app's files, environment
//! and processes, and its own code, and reports each errno; it runs as its own user, without
//! new privileges, with its own /tmp; its build ran as that user too.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// Answers `GET /probe?pid=PID&state=DIR` with a JSON object: for each attempt, "ok" or the
/// errno's name.
const PROBE: &str = r#"
import errno, json, os, resource, signal, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def read(path):
    with open(path, "rb") as f:
        f.read(1)

def write(path):
    with open(path, "w") as f:
        f.write("x")

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/health":
            body = b"ok"
        else:
            q = dict(urllib.parse.parse_qsl(url.query))
            state, pid = q["state"], int(q["pid"])
            status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
            report = {
                "uid": os.getuid(),
                "euid": os.geteuid(),
                "no_new_privs": status["NoNewPrivs"].strip(),
                "build_uid": open("build-uid").read().strip(),
                "secrets_key": attempt(lambda: read(state + "/secrets.key")),
                "state_db": attempt(lambda: read(state + "/state.db")),
                "certs": attempt(lambda: read(state + "/certs/vault.self-signed.crt")),
                "socket": attempt(lambda: read(state + "/berth.sock")),
                "list_state": attempt(lambda: os.listdir(state)),
                "other_shared": attempt(lambda: read(state + "/apps/vault/shared/data.txt")),
                "other_app_dir": attempt(lambda: os.listdir(state + "/apps/vault")),
                "other_environ": attempt(lambda: read("/proc/%d/environ" % pid)),
                "signal_other": attempt(lambda: os.kill(pid, 0)),
                "write_own_release": attempt(lambda: write("web.py")),
                "create_in_own_release": attempt(lambda: write("new-file")),
                "own_shared": attempt(lambda: write(os.environ["BERTH_SHARED"] + "/mine.txt")),
                "own_tmp": attempt(lambda: write("/tmp/probe-" + str(os.getpid()))),
                "tmp_marker": "probe-" + str(os.getpid()),
                "core_limit": resource.getrlimit(resource.RLIMIT_CORE)[1],
                "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            }
            body = json.dumps(report).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The other app: a generated secret in its environment, a file in its shared directory, and
/// a self-signed certificate under berth's `certs/`.
const VAULT: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
data = os.environ["BERTH_SHARED"] + "/data.txt"
if not os.path.exists(data):
    with open(data, "w") as f:
        f.write("private")
with open(data) as f:
    f.read()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn uid_of(user: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no user {user} in /etc/passwd"))
}

#[test]
fn an_app_cannot_reach_berths_keys_the_other_apps_files_or_its_own_code() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run the daemon as root, as CI does"
    );
    let d = Daemon::start();
    let vault = app(&[
        (
            "berth.toml",
            "[app]\nname = \"vault\"\n[secrets]\nTOKEN = { generate = \"hex:32\" }\n\
             [services.web]\ncommand = \"python3 -u web.py\"\nhealth = { path = \"/\", interval = \"100ms\", timeout = \"100ms\" }\n\
             [[routes]]\nhost = \"vault.localhost\"\npath = \"/\"\nservice = \"web\"\n\
             [tls]\nself_signed = true\n",
        ),
        ("web.py", VAULT),
    ]);
    let probe = app(&[
        (
            "berth.toml",
            "[app]\nname = \"probe\"\n[build]\ncommand = \"id -u > build-uid\"\n\
             [services.web]\ncommand = \"python3 -u web.py\"\nhealth = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }\n\
             [services.loose]\ncommand = \"grep NoNewPrivs /proc/self/status; exec sleep 3600\"\nno_new_privs = false\nprivate_tmp = false\ncore_dumps = true\n\
             [[routes]]\nhost = \"probe.localhost\"\npath = \"/\"\nservice = \"web\"\n",
        ),
        ("web.py", PROBE),
    ]);
    for dir in [&vault, &probe] {
        let run = d.berth(&["deploy", dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let status = d.status();
    assert!(
        status["daemon"]["isolation"]
            .as_str()
            .unwrap()
            .starts_with("on:"),
        "{status:#}"
    );
    let apps = status["apps"].as_array().unwrap();
    let user_of = |name: &str| {
        apps.iter().find(|a| a["name"] == name).unwrap()["user"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(user_of("vault"), "berth-vault");
    assert_eq!(user_of("probe"), "berth-probe");
    let vault_pid = instances(&status, "vault")[0]["pid"].as_u64().unwrap();
    wait_for("the vault's certificate", Duration::from_secs(20), || {
        d.path()
            .join("certs/vault.self-signed.crt")
            .exists()
            .then_some(())
    });

    let (code, body) = testkit::http_get(
        d.http,
        "probe.localhost",
        &format!("/probe?pid={vault_pid}&state={}", d.path().display()),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let uid = uid_of("berth-probe");
    assert_ne!(uid, 0);
    assert_eq!(report["uid"], uid, "{report:#}");
    assert_eq!(report["euid"], uid, "{report:#}");
    assert_eq!(report["build_uid"], uid.to_string(), "{report:#}");
    assert_eq!(report["no_new_privs"], "1", "{report:#}");
    for (what, errno) in [
        ("secrets_key", "EACCES"),
        ("state_db", "EACCES"),
        ("certs", "EACCES"),
        ("socket", "EACCES"),
        ("list_state", "EACCES"),
        ("other_shared", "EACCES"),
        ("other_app_dir", "EACCES"),
        ("other_environ", "EACCES"),
        ("signal_other", "EPERM"),
        ("write_own_release", "EACCES"),
        ("create_in_own_release", "EACCES"),
    ] {
        assert_eq!(report[what], errno, "{what}: {report:#}");
    }
    assert_eq!(report["own_shared"], "ok", "{report:#}");
    // Its /tmp is its own directory under the state directory, not the host's.
    assert_eq!(report["own_tmp"], "ok", "{report:#}");
    let marker = report["tmp_marker"].as_str().unwrap();
    assert!(
        d.path().join("apps/probe/tmp").join(marker).exists(),
        "{report:#}"
    );
    assert!(!std::path::Path::new("/tmp").join(marker).exists());
    assert_eq!(report["core_limit"], 0, "core dumps are off: {report:#}");
    assert!(
        report["nofile_limit"].as_u64().unwrap() <= 65_536,
        "{report:#}"
    );

    // Hardening is switchable per service: `loose` asked for no_new_privs = false.
    let logs = wait_for("the loose service's line", Duration::from_secs(10), || {
        let run = d.berth(&["logs", "probe", "loose"]);
        run.stdout.contains("NoNewPrivs").then_some(run.stdout)
    });
    assert!(logs.contains("NoNewPrivs:\t0"), "{logs}");

    // An app deployed before it had a user (its shared files root's): a restart hands them
    // over, and nothing is lost.
    let shared = d.path().join("apps/vault/shared");
    nix::unistd::chown(&shared.join("data.txt"), Some(0.into()), Some(0.into())).unwrap();
    nix::unistd::chown(&shared, Some(0.into()), Some(0.into())).unwrap();
    let mut d = d;
    assert_eq!(d.terminate(), 0);
    d.restart();
    wait_for("the vault to serve again", Duration::from_secs(20), || {
        testkit::http_get(d.http, "vault.localhost", "/").filter(|(c, _)| *c == 200)
    });
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(shared.join("data.txt")).unwrap().uid();
    assert_eq!(owner, uid_of("berth-vault"));
    assert_eq!(
        std::fs::read_to_string(shared.join("data.txt")).unwrap(),
        "private"
    );
}

#[test]
fn memory_max_is_enforced_by_cgroup_where_delegated_and_by_rlimit_where_not() {
    let d = Daemon::start();
    let hog = app(&[(
        "berth.toml",
        "[app]\nname = \"hog\"\n\
         [services.small]\ncommand = \"python3 -c 'b = bytearray(8 << 20); import time; time.sleep(3600)'\"\nmemory_max = \"64M\"\ncpu_max = \"50%\"\npids_max = 64\n",
    )]);
    assert_eq!(d.berth(&["deploy", hog.path().to_str().unwrap()]).code, 0);
    let status = d.status();
    let limits = instances(&status, "hog")[0]["limits"].clone();
    let memory = limits
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "memory_max")
        .unwrap()
        .clone();
    assert_eq!(memory["value"], "64M", "{limits:#}");
    let delegated = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|root| {
            std::fs::read_to_string(format!("{root}/cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        });
    let by = memory["enforced_by"].as_str().unwrap();
    if delegated {
        assert_eq!(by, "cgroup", "{limits:#}");
    } else {
        assert!(by.starts_with("RLIMIT_AS"), "{limits:#}");
    }
    let text = d.berth(&["status", "hog"]);
    assert!(
        text.stdout.contains("small limits: memory_max 64M ("),
        "{text:?}"
    );

    // Beyond the limit the instance cannot start, whichever mechanism holds it.
    std::fs::write(
        hog.path().join("berth.toml"),
        "[app]\nname = \"hog\"\n\
         [services.small]\ncommand = \"python3 -c 'b = bytearray(256 << 20); print(\\\"allocated\\\"); import time; time.sleep(3600)'\"\nmemory_max = \"64M\"\n",
    )
    .unwrap();
    let run = d.berth(&["deploy", hog.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("start gate"), "{run:?}");
    assert!(!run.stderr.contains("allocated"), "{run:?}");
}

#[test]
fn without_root_the_daemon_runs_apps_as_itself_and_says_isolation_is_off() {
    // The daemon as `nobody`, from a copy of the binary that user can run.
    let base = testkit::state_dir("berth-it-nonroot-");
    let bin = base.path().join("berth");
    std::fs::copy(BERTH, &bin).unwrap();
    let state = base.path().join("state");
    std::fs::create_dir(&state).unwrap();
    for p in [base.path(), state.as_path()] {
        nix::unistd::chown(p, Some(65534.into()), Some(65534.into())).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemon = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("BERTH_STATE", &state)
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(base.path().join("daemon.log")).unwrap())
        .spawn()
        .expect("setpriv (util-linux) must be installed");
    let status: Value = wait_for("the daemon to answer", Duration::from_secs(20), || {
        let run = berth(&state, &["status", "--json"]);
        (run.code == 0).then(|| serde_json::from_str(&run.stdout).unwrap())
    });
    let isolation = status["daemon"]["isolation"].as_str().unwrap().to_owned();
    assert!(
        isolation.starts_with("OFF: the daemon runs as uid 65534"),
        "{isolation}"
    );
    let text = berth(&state, &["status"]);
    assert!(
        text.stdout.contains("warning: app isolation is OFF"),
        "{text:?}"
    );
    let log = std::fs::read_to_string(base.path().join("daemon.log")).unwrap();
    assert!(log.contains("app isolation is OFF"), "{log}");

    // Apps run as the daemon's user; one that names a user of its own is refused.
    let plain = app(&[(
        "berth.toml",
        "[app]\nname = \"plain\"\n[services.web]\ncommand = \"sleep 3600\"\n",
    )]);
    let run = berth(&state, &["deploy", plain.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let status = berth(&state, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(status["apps"][0]["user"].is_null(), "{status:#}");
    let pid = instances(&status, "plain")[0]["pid"].as_u64().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}")).unwrap().uid(),
        65534
    );
    let named = app(&[(
        "berth.toml",
        "[app]\nname = \"named\"\nuser = \"www-data\"\n[services.web]\ncommand = \"sleep 3600\"\n",
    )]);
    let run = berth(&state, &["deploy", named.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("failed at the user gate")
            && run.stderr.contains("named asks to run as user www-data"),
        "{run:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = daemon.wait();
}
