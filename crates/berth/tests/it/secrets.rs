//! Secrets and environments through the real CLI: generated, set on stdin, validated before
//! start, injected, kept across restarts, rotated, unset, encrypted at rest, never printed.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// A service that answers `GET /NAME` with the value of env var NAME, and prints `PRINT` at
/// start (to see what berth does with a secret in app output). `EXIT` makes it exit at once.
const PY_ENV: &str = r#"
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
print("starting with", os.environ.get("PRINT", "nothing"), flush=True)
if os.environ.get("EXIT"):
    sys.exit(3)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = os.environ.get(self.path.strip("/"), "-").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn env_app(name: &str, extra: &str) -> tempfile::TempDir {
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n\
                 [secrets]\nSESSION_KEY = {{ generate = \"base64:32\" }}\nDATABASE_URL = {{ required = true, pattern = \"^postgres://\" }}\n\
                 [env]\nDB = \"${{DATABASE_URL}}\"\n{extra}\n\
                 [services.web]\ncommand = \"python3 -u web.py\"\nhealth = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }}\n\
                 [[routes]]\npath = \"/\"\nservice = \"web\"\n"
            ),
        ),
        ("web.py", PY_ENV),
    ])
}

/// Every file under `dir` that contains `needle`, except the apps' own log files.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                let is_app_log = p.strip_prefix(dir).unwrap().starts_with("logs")
                    && p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("current.log")
                    && !p.ends_with("logs/access.log");
                if !is_app_log && bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn secrets_lifecycle() {
    let mut d = Daemon::start();
    let app = env_app("vault", "");
    let dir = app.path().to_str().unwrap();

    // Refused before anything starts: the required secret is missing.
    let run = d.berth(&["deploy", dir]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("failed at the secrets gate"), "{run:?}");
    assert!(
        run.stderr.contains("DATABASE_URL is required and not set"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("hint: set it with `berth secrets set vault DATABASE_URL`"),
        "{run:?}"
    );
    assert!(instances(&d.status(), "vault").is_empty());

    // A value that fails its pattern is refused at deploy, without being shown.
    let bad = "mysql://root:hunter2-not-shown@db/app";
    assert_eq!(
        berth_stdin(&d, &["secrets", "set", "vault", "DATABASE_URL"], bad).code,
        0
    );
    let run = d.berth(&["deploy", dir]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("DATABASE_URL"), "{run:?}");
    assert!(!run.stderr.contains("hunter2"), "{run:?}");

    let url = "postgres://app:s3cr3t-password-123@db/app";
    let set = berth_stdin(
        &d,
        &["secrets", "set", "vault", "DATABASE_URL"],
        &format!("{url}\n"),
    );
    assert_eq!(set.code, 0, "{set:?}");
    assert!(
        set.stdout.contains("replaced vault DATABASE_URL"),
        "{set:?}"
    );
    let run = d.berth(&["deploy", dir]);
    assert_eq!(run.code, 0, "{run:?}");

    // Injected: as a secret, and through ${DATABASE_URL} in [env].
    assert_eq!(d.get("/DATABASE_URL").unwrap().1, url);
    assert_eq!(d.get("/DB").unwrap().1, url);
    let session = d.get("/SESSION_KEY").unwrap().1;
    assert_eq!(session.len(), 44, "base64 of 32 bytes: {session}");

    // Listed without values; declared, origin, users.
    let list = d.berth(&["secrets", "list", "vault", "--json"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(!list.stdout.contains(url) && !list.stdout.contains(&session));
    let parsed: Value = serde_json::from_str(&list.stdout).unwrap();
    let rows: Vec<(&str, &str, bool)> = parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["origin"].as_str().unwrap(),
                s["set"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("DATABASE_URL", "set", true),
            ("SESSION_KEY", "generated", true)
        ]
    );
    assert_eq!(parsed[0]["used_by"], serde_json::json!(["web"]));
    let text = d.berth(&["secrets", "list", "vault"]);
    assert!(
        text.stdout.contains("SESSION_KEY") && !text.stdout.contains(&session),
        "{text:?}"
    );

    // Encrypted at rest: neither value is in any file of the state dir (the app's own log
    // aside), and the key file is private.
    for value in [url, session.as_str()] {
        assert_eq!(files_containing(d.path(), value), Vec::<String>::new());
    }
    let mode = std::fs::metadata(d.path().join("secrets.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Kept across a daemon restart.
    d.terminate();
    d.restart();
    wait_for(
        "the app to serve after restart",
        Duration::from_secs(20),
        || {
            d.get("/SESSION_KEY")
                .filter(|(c, b)| *c == 200 && *b == session)
        },
    );

    // Rotation: a new value, served after a zero-downtime restart.
    let rotated = d.berth(&["secrets", "rotate", "vault", "SESSION_KEY"]);
    assert_eq!(rotated.code, 0, "{rotated:?}");
    assert!(
        rotated.stdout.starts_with("restarted vault r"),
        "{rotated:?}"
    );
    let fresh = d.get("/SESSION_KEY").unwrap().1;
    assert_ne!(fresh, session);
    assert_eq!(fresh.len(), 44);
    let listed: Value =
        serde_json::from_str(&d.berth(&["secrets", "list", "vault", "--json"]).stdout).unwrap();
    assert!(listed[1]["rotated"].is_string(), "{listed:#}");

    // Unset.
    assert_eq!(
        d.berth(&["secrets", "unset", "vault", "DATABASE_URL"]).code,
        0
    );
    let listed: Value =
        serde_json::from_str(&d.berth(&["secrets", "list", "vault", "--json"]).stdout).unwrap();
    assert_eq!(listed[0]["set"], false);
    let again = d.berth(&["secrets", "unset", "vault", "DATABASE_URL"]);
    assert_eq!(again.code, 2, "{again:?}");

    // A name the live release does not declare is kept for the release that will, and the
    // operator is told; a value never comes as an argument.
    let undeclared = berth_stdin(&d, &["secrets", "set", "vault", "NOPE"], "x");
    assert_eq!(undeclared.code, 0, "{undeclared:?}");
    assert!(
        undeclared
            .stderr
            .contains("the live release of vault does not declare NOPE"),
        "{undeclared:?}"
    );
    assert_eq!(
        d.berth(&["secrets", "set", "vault", "DATABASE_URL", "value-as-arg"])
            .code,
        2
    );
}

#[test]
fn a_required_secret_can_be_added_to_a_live_app() {
    let d = Daemon::start();
    let app = env_app("grow", "");
    let dir = app.path().to_str().unwrap();
    let url = "postgres://app:pw-one-23456@db/app";
    // Not deployed yet: refused without --new (a typo must not store a secret), then set.
    let set = berth_stdin(&d, &["secrets", "set", "grow", "DATABASE_URL"], url);
    assert_eq!(set.code, 2, "no release of grow yet: {set:?}");
    assert!(set.stderr.contains("no app named grow"), "{set:?}");
    assert!(
        set.stderr
            .contains("berth secrets set --new grow DATABASE_URL"),
        "{set:?}"
    );
    let set = berth_stdin(
        &d,
        &["secrets", "set", "--new", "grow", "DATABASE_URL"],
        url,
    );
    assert_eq!(set.code, 0, "{set:?}");
    assert_eq!(d.berth(&["deploy", dir]).code, 0);

    // The next release declares two more required secrets (they sort after the generated
    // SESSION_KEY): the deploy fails at the secrets gate, naming exactly the missing ones.
    let more = "DB_PASSWORD = { required = true }\nZ_TOKEN = { required = true }\n";
    std::fs::write(
        app.path().join("berth.toml"),
        std::fs::read_to_string(app.path().join("berth.toml"))
            .unwrap()
            .replace("[env]", &format!("{more}[env]")),
    )
    .unwrap();
    let run = d.berth(&["deploy", dir]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "hint: set them with `berth secrets set grow DB_PASSWORD`, `berth secrets set grow Z_TOKEN`"
        ),
        "{run:?}"
    );
    assert!(!run.stderr.contains("set grow SESSION_KEY"), "{run:?}");
    assert_serves_env(&d, "DB_PASSWORD", "-");

    // Set before the release that declares them: accepted, with a note.
    for name in ["DB_PASSWORD", "Z_TOKEN"] {
        let set = berth_stdin(&d, &["secrets", "set", "grow", name], "pw-two-345678");
        assert_eq!(set.code, 0, "{set:?}");
        assert!(
            set.stderr
                .contains(&format!("the live release of grow does not declare {name}")),
            "{set:?}"
        );
    }
    let run = d.berth(&["deploy", dir]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_serves_env(&d, "DB_PASSWORD", "pw-two-345678");
}

fn assert_serves_env(d: &Daemon, name: &str, value: &str) {
    assert_eq!(d.get(&format!("/{name}")).unwrap(), (200, value.to_owned()));
}

#[test]
fn secrets_of_unknown_apps_and_bad_names_are_refused() {
    let d = Daemon::start();
    for args in [
        vec!["secrets", "set", "nosuchapp", "X"],
        vec!["secrets", "unset", "nosuchapp", "X"],
        vec!["secrets", "list", "nosuchapp"],
    ] {
        let run = berth_stdin(&d, &args, "value");
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("no app named nosuchapp"), "{run:?}");
        assert!(run.stderr.contains("hint: "), "{run:?}");
    }
    for name in ["", "has space", "a/b", "LINE\nBREAK", "PORT"] {
        let run = berth_stdin(&d, &["secrets", "set", "--new", "nosuchapp", name], "value");
        assert_eq!(run.code, 2, "{name:?}: {run:?}");
        assert!(
            run.stderr
                .contains("a secret name is an environment variable name"),
            "{name:?}: {run:?}"
        );
    }
    for app in ["", "No/Such", "two words"] {
        let run = berth_stdin(&d, &["secrets", "set", "--new", app, "X"], "value");
        assert_eq!(run.code, 2, "{app:?}: {run:?}");
        assert!(
            run.stderr.contains("an app is NAME or NAME.ENVIRONMENT"),
            "{run:?}"
        );
    }
    // Nothing was stored: once an app of that name exists, it has no secret X.
    let app = env_app("nosuchapp", "");
    assert_eq!(d.berth(&["deploy", app.path().to_str().unwrap()]).code, 1);
    let list = d.berth(&["secrets", "list", "nosuchapp", "--json"]);
    assert_eq!(list.code, 0, "{list:?}");
    assert_eq!(list.stdout.trim(), "[]", "{list:?}");
}

#[test]
fn a_secret_never_appears_in_what_berth_prints() {
    let d = Daemon::start();
    let canary = "canary-7f3c9e1b5d2a";
    let good = env_app("canary", "");
    assert_eq!(
        berth_stdin(
            &d,
            &["secrets", "set", "--new", "canary", "DATABASE_URL"],
            &format!("postgres://{canary}")
        )
        .code,
        0
    );
    let mut outputs = Vec::new();
    let run = d.berth(&["deploy", good.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    outputs.push(run);

    // A release whose service prints the secret and dies: the failure's log tail is redacted.
    let bad = env_app("canary", "PRINT = \"${DATABASE_URL}\"\nEXIT = \"1\"");
    let run = d.berth(&["deploy", bad.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("starting with [redacted DATABASE_URL]"),
        "{run:?}"
    );
    outputs.push(run);

    for args in [
        vec!["status", "--json"],
        vec!["status"],
        vec!["history", "--json"],
        vec!["releases", "canary", "--json"],
        vec!["secrets", "list", "canary", "--json"],
        vec!["logs", "canary"],
        vec!["deploy", "--dry-run", bad.path().to_str().unwrap()],
    ] {
        let run = d.berth(&args);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        outputs.push(run);
    }
    for run in &outputs {
        assert!(
            !run.stdout.contains(canary) && !run.stderr.contains(canary),
            "leak: {run:?}"
        );
    }
    let logs = d.berth(&["logs", "canary"]);
    assert!(
        logs.stdout
            .contains("starting with [redacted DATABASE_URL]"),
        "{logs:?}"
    );
    // The service's own log file keeps what it wrote; the viewer shows it only when asked.
    let raw = d.berth(&["logs", "canary", "--redact", "false"]);
    assert!(raw.stdout.contains(canary), "{raw:?}");
    assert!(!d.log().contains(canary), "daemon log leaks the secret");
    assert_eq!(files_containing(d.path(), canary), Vec::<String>::new());
}

#[test]
fn environments_run_side_by_side_with_their_own_secrets() {
    let d = Daemon::start();
    let app = env_app(
        "duo",
        "MODE = \"prod\"\n[environments.staging]\nenv = { MODE = \"staging\" }\nroutes = [{ host = \"staging.test\", path = \"/\", service = \"web\" }]\n",
    );
    let dir = app.path().to_str().unwrap();
    let check = d.berth(&["check", dir, "--env", "staging"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("ok: app duo.staging"), "{check:?}");
    let unknown = d.berth(&["check", dir, "--env", "stagign"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(unknown.stderr.contains("staging"), "{unknown:?}");

    for (app, url) in [
        ("duo", "postgres://prod"),
        ("duo.staging", "postgres://staging"),
    ] {
        assert_eq!(
            berth_stdin(&d, &["secrets", "set", "--new", app, "DATABASE_URL"], url).code,
            0
        );
    }
    assert_eq!(d.berth(&["deploy", dir]).code, 0);
    let staged = d.berth(&["deploy", dir, "--env", "staging"]);
    assert_eq!(staged.code, 0, "{staged:?}");
    assert!(
        staged.stdout.starts_with("deployed duo.staging r1"),
        "{staged:?}"
    );

    assert_eq!(http_get(d.http, "example.test", "/MODE").unwrap().1, "prod");
    assert_eq!(
        http_get(d.http, "staging.test", "/MODE").unwrap().1,
        "staging"
    );
    assert_eq!(
        http_get(d.http, "staging.test", "/DB").unwrap().1,
        "postgres://staging"
    );
    assert_eq!(
        http_get(d.http, "example.test", "/DB").unwrap().1,
        "postgres://prod"
    );
    let status = d.status();
    assert_eq!(instances(&status, "duo").len(), 1);
    assert_eq!(instances(&status, "duo.staging").len(), 1);
    assert!(d.path().join("apps/duo.staging/releases/r1").is_dir());
}

#[test]
fn the_key_can_be_exported_and_imported_to_move_a_server() {
    let d = Daemon::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.path().join("secrets.key")), 0o600);
    assert_eq!(mode(&d.path().join("certs")), 0o700);
    assert_eq!(
        berth_stdin(
            &d,
            &["secrets", "set", "--new", "moving", "TOKEN"],
            "tok-123456789"
        )
        .code,
        0
    );
    let exported = d.berth(&["secrets", "export-key"]);
    assert_eq!(exported.code, 0, "{exported:?}");
    assert!(exported.stdout.contains("AGE-SECRET-KEY-"), "{exported:?}");

    // A second server with its own key refuses a key its secrets don't decrypt with...
    let other = Daemon::start();
    assert_eq!(
        berth_stdin(
            &other,
            &["secrets", "set", "--new", "local", "X"],
            "local-value-1"
        )
        .code,
        0
    );
    let refused = berth_stdin(&other, &["secrets", "import-key"], &exported.stdout);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("do not decrypt with this key: local/X"),
        "{refused:?}"
    );
    // ...and takes it when told to.
    let forced = berth_stdin(
        &other,
        &["secrets", "import-key", "--force"],
        &exported.stdout,
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(
        other.berth(&["secrets", "export-key"]).stdout,
        exported.stdout
    );
    let garbage = berth_stdin(&other, &["secrets", "import-key"], "not a key");
    assert_eq!(garbage.code, 2, "{garbage:?}");
    assert!(
        garbage.stderr.contains("not a berth secrets key"),
        "{garbage:?}"
    );
}
