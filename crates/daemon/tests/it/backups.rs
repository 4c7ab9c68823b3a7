//! Backups through the daemon: berth.toml's `[databases]` and `[backups]` of a deployed app,
//! run, listed, drilled and restored through the control API; the proxy's maintenance answer
//! during a restore; retention; metrics; a schedule missed while the daemon was down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use api::client::{Client, for_each_line};
use api::{BackupEvent, BackupQuery, Backups, NoQuery};
use bytes::Bytes;
use http::Method;
use testkit::wait_for;

use crate::harness::{TestDaemon, block_on, deploy};

/// A web service that takes a moment to listen (so a restart is seen from outside) and
/// answers `/count` with the rows of `shared/data/app.db`'s `notes`.
const NOTES_WEB: &str = r#"
import os, sqlite3, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
time.sleep(1.0)
DB = os.path.join(os.environ["BERTH_SHARED"], "data", "app.db")
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/health":
            return self.answer(b"ok\n")
        n = sqlite3.connect(DB).execute("SELECT count(*) FROM notes").fetchone()[0]
        self.answer(("%d\n" % n).encode())
    def answer(self, body):
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn notes_app(extra: &str) -> tempfile::TempDir {
    let toml = format!(
        r#"
[app]
name = "notes"

[services.web]
command = "python3 web.py"
health = {{ path = "/health" }}

[[routes]]
host = "example.test"
path = "/"
service = "web"

[databases.main]
engine = "sqlite"
path = "data/app.db"

[backups.db]
database = "main"
schedule = "0 3 * * *"
verify = "every"

[backups.files]
dir = "uploads"
schedule = "0 4 * * *"
keep = {{ last = 2 }}
verify = "off"
{extra}
"#
    );
    testkit::app(&[("berth.toml", &toml), ("web.py", NOTES_WEB)])
}

fn shared(d: &TestDaemon, app: &str) -> PathBuf {
    d.path().join("apps").join(app).join("shared")
}

/// Creates `shared/data/app.db` with `rows` notes and `shared/uploads/` with a file, owned
/// like the shared directory (the app's user).
fn seed(d: &TestDaemon, rows: u32) {
    let dir = shared(d, "notes");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("uploads")).unwrap();
    std::fs::write(dir.join("uploads/a.txt"), "first").unwrap();
    sql(
        &dir.join("data/app.db"),
        &format!(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT);
         DELETE FROM notes;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO notes (body) SELECT 'note ' || i FROM n;"
        ),
    );
    let owner = std::fs::metadata(&dir).unwrap();
    for p in ["data", "data/app.db", "uploads", "uploads/a.txt"] {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::chown(dir.join(p), Some(owner.uid()), Some(owner.gid())).unwrap();
    }
}

fn sql(db: &Path, script: &str) {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()"])
        .arg(db)
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `POST /v1/apps/APP/backups/ACTION` and returns its events, the last being `Done`.
fn action(d: &TestDaemon, app: &str, act: &str, q: &BackupQuery, body: &str) -> Vec<BackupEvent> {
    block_on(async {
        let resp = Client::new(d.path())
            .send(
                Method::POST,
                &api::path(&["v1", "apps", app, "backups", act], q),
                Bytes::from(body.to_owned()),
            )
            .await
            .unwrap();
        let mut events = Vec::new();
        for_each_line(resp.into_body(), |line| {
            events.push(serde_json::from_str(line).unwrap());
            Ok::<_, api::client::Error>(())
        })
        .await
        .unwrap();
        events
    })
}

fn done(events: &[BackupEvent]) -> (bool, Option<api::BackupRecord>, Option<String>) {
    match events.last() {
        Some(BackupEvent::Done {
            ok, backup, error, ..
        }) => (*ok, backup.as_deref().cloned(), error.clone()),
        other => panic!("no done event: {other:?} in {events:?}"),
    }
}

fn named(name: &str) -> BackupQuery {
    BackupQuery {
        name: Some(name.to_owned()),
        ..BackupQuery::default()
    }
}

fn list(d: &TestDaemon, app: &str) -> Backups {
    block_on(
        d.client()
            .get(&api::path(&["v1", "apps", app, "backups"], &NoQuery {})),
    )
    .unwrap()
}

#[test]
fn sqlite_and_directory_backups_run_drill_restore_and_retain_through_the_daemon() {
    let d = TestDaemon::start(None);
    let app = notes_app("");
    // The shared directory exists once the app has a user; seed before the services start.
    deploy(d.path(), app.path(), false).made_live();
    seed(&d, 120);
    assert_eq!(d.get("/count").unwrap(), (200, "120\n".to_owned()));

    // A database backup, drilled at once (verify = "every").
    let events = action(&d, "notes", "run", &named("db"), "");
    let (ok, backup, error) = done(&events);
    assert!(ok, "{events:?}");
    assert_eq!(error, None);
    let backup = backup.unwrap();
    assert_eq!(
        (backup.status, backup.tables, backup.rows),
        (api::BackupStatus::Ok, 1, 120)
    );
    assert!(backup.drill.as_ref().is_some_and(|dr| dr.ok), "{backup:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BackupEvent::Step { detail } if detail.starts_with("drill: db")))
    );

    // A second run while the first holds the lock is refused; here, the name is required.
    let err = block_on(d.client().send(
        Method::POST,
        &api::path(&["v1", "apps", "notes", "backups", "run"], &NoQuery {}),
        Bytes::new(),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("several backups"), "{err}");

    // The data changes; the restore brings it back, answering 503 + Retry-After meanwhile.
    sql(
        &shared(&d, "notes").join("data/app.db"),
        "DELETE FROM notes WHERE id > 20;",
    );
    assert_eq!(d.get("/count").unwrap(), (200, "20\n".to_owned()));
    let http = d.http;
    let watcher = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let mut s = std::net::TcpStream::connect(http).unwrap();
            use std::io::{Read, Write};
            write!(
                s,
                "GET /count HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            if text.starts_with("HTTP/1.1 503") {
                return Some(text);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    });
    let q = BackupQuery {
        name: Some("db".into()),
        id: Some(backup.id.clone()),
        dry_run: false,
    };
    let events = action(&d, "notes", "restore", &q, "");
    let (ok, _, error) = done(&events);
    assert!(ok, "{error:?} {events:?}");
    let during = watcher.join().unwrap().expect("a 503 during the restore");
    assert!(
        during.to_ascii_lowercase().contains("retry-after: 30"),
        "{during}"
    );
    assert!(during.contains("maintenance"), "{during}");
    assert_eq!(d.get("/count").unwrap(), (200, "120\n".to_owned()));
    let steps: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            BackupEvent::Step { detail } => Some(detail.clone()),
            _ => None,
        })
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("safety backup") && s.ends_with("stored)")),
        "{steps:?}"
    );

    let listed = list(&d, "notes");
    let db_backups: Vec<_> = listed.backups.iter().filter(|b| b.name == "db").collect();
    assert_eq!(
        db_backups.len(),
        2,
        "the backup and the restore's safety backup"
    );
    assert_eq!(db_backups[0].trigger, api::BackupTrigger::Safety);
    let def = listed.definitions.iter().find(|x| x.name == "db").unwrap();
    assert!(def.last_success.is_some() && def.last_drill.as_ref().is_some_and(|r| r.ok));
    assert!(def.next_run.is_some(), "{def:?}");

    // Retention: keep = { last = 2 } keeps the two newest file backups.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (ok, b, e) = done(&action(&d, "notes", "run", &named("files"), ""));
        assert!(ok, "{e:?}");
        ids.push(b.unwrap().id);
    }
    let listed = list(&d, "notes");
    let status_of = |id: &str| listed.backups.iter().find(|b| b.id == id).unwrap().status;
    assert_eq!(
        status_of(&ids[0]),
        api::BackupStatus::Deleted,
        "{listed:#?}"
    );
    assert_eq!(status_of(&ids[1]), api::BackupStatus::Ok);
    assert_eq!(status_of(&ids[2]), api::BackupStatus::Ok);
    let stored = d.path().join("backups/notes/files");
    let names: Vec<String> = std::fs::read_dir(&stored)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with(&ids[0])), "{names:?}");
    assert_eq!(names.len(), 4, "two objects and their manifests: {names:?}");

    // Status, history and metrics show it.
    let status = d.status();
    let app_status = &status["apps"][0];
    assert_eq!(app_status["maintenance"], serde_json::Value::Null);
    assert_eq!(app_status["backups"].as_array().unwrap().len(), 2);
    let history = d.history("notes");
    let kinds: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in ["backup", "drill", "restore", "retention"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let metrics = block_on(async {
        let resp = d
            .client()
            .send(Method::GET, "/v1/metrics", Bytes::new())
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    });
    for series in [
        "berth_backup_last_success_timestamp_seconds{app=\"notes\",backup=\"db\"}",
        "berth_backup_last_duration_seconds{app=\"notes\",backup=\"files\"}",
        "berth_backup_size_bytes{app=\"notes\",backup=\"db\"}",
        "berth_backup_failures_total{app=\"notes\",backup=\"db\"} 0",
        "berth_backup_last_verify_success_timestamp_seconds{app=\"notes\",backup=\"db\"}",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    testkit::promtool_check(&metrics);
}

#[test]
fn a_schedule_missed_while_the_daemon_was_down_runs_once_at_start() {
    let mut d = TestDaemon::start(None);
    let app = notes_app("");
    deploy(d.path(), app.path(), false).made_live();
    seed(&d, 5);
    let due = |d: &TestDaemon| {
        list(d, "notes")
            .definitions
            .iter()
            .find(|x| x.name == "db")
            .and_then(|x| x.next_run.clone())
    };
    wait_for(
        "the schedule to be recorded",
        Duration::from_secs(20),
        || due(&d),
    );
    d.terminate();

    // While it was down, the 03:00 run came and went.
    {
        let db = rusqlite_free_set_due(&d.path().join("state.db"));
        assert!(db, "the due time was moved into the past");
    }
    d.restart();
    let ran = wait_for("the missed backup to run", Duration::from_secs(30), || {
        let l = list(&d, "notes");
        let scheduled: Vec<_> = l
            .backups
            .iter()
            .filter(|b| b.name == "db" && b.trigger == api::BackupTrigger::Schedule)
            .cloned()
            .collect();
        (scheduled
            .iter()
            .any(|b| b.status != api::BackupStatus::Running))
        .then_some(scheduled)
    });
    assert_eq!(ran.len(), 1, "once, not once per missed slot: {ran:?}");
    assert_eq!(ran[0].status, api::BackupStatus::Ok, "{ran:?}");
    // The next run is in the future again.
    std::thread::sleep(Duration::from_secs(6));
    let again: Vec<_> = list(&d, "notes")
        .backups
        .into_iter()
        .filter(|b| b.name == "db")
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
}

/// Moves every backup's due time to an hour ago, as the stopped daemon's clock would have
/// passed it. `state.db` is SQLite; the store crate's own API is not a dependency here.
fn rusqlite_free_set_due(db: &Path) -> bool {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); \
             n=c.execute('INSERT OR REPLACE INTO backup_schedules (app, name, next_due) VALUES (?, ?, ?)', \
             ('notes', 'db', int((time.time()-3600)*1000))).rowcount; \
             c.commit(); print(n)",
        ])
        .arg(db)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
        > 0
}

/// PostgreSQL through the daemon, to S3: the URL and the S3 credentials are the app's
/// secrets, the endpoint is plain [env]. The password appears in nothing berth shows.
#[test]
fn postgres_to_s3_from_the_apps_secrets_and_restored() {
    let pg = testkit::Postgres::start();
    pg.create_db("shop");
    pg.pgbench_init("shop", 1);
    let s3 = testkit::S3::start();
    s3.create_bucket("backups");
    let d = TestDaemon::start(None);
    let toml = format!(
        r#"
[app]
name = "shop"

[env]
S3_ENDPOINT = "{endpoint}"

[secrets]
DATABASE_URL = {{ required = true }}
S3_ACCESS_KEY_ID = {{ required = true }}
S3_SECRET_ACCESS_KEY = {{ required = true }}

[services.web]
command = "python3 web.py"

[[routes]]
host = "example.test"
path = "/"
service = "web"

[databases.main]
engine = "postgres"
url = "${{DATABASE_URL}}"

[backups.nightly]
database = "main"
to = "s3://backups/shop"
verify = "every"
"#,
        endpoint = s3.endpoint()
    );
    let app = testkit::app(&[("berth.toml", &toml), ("web.py", testkit::PY_WEB)]);
    for (name, value) in [
        ("DATABASE_URL", pg.url("shop")),
        ("S3_ACCESS_KEY_ID", s3.access_key().to_owned()),
        ("S3_SECRET_ACCESS_KEY", s3.secret_key().to_owned()),
    ] {
        let q = api::SetSecretQuery { new: true };
        block_on(d.client().send(
            Method::PUT,
            &api::path(&["v1", "apps", "shop", "secrets", name], &q),
            Bytes::from(value),
        ))
        .unwrap();
    }
    deploy(d.path(), app.path(), false).made_live();

    let events = action(&d, "shop", "run", &BackupQuery::default(), "");
    let (ok, backup, error) = done(&events);
    assert!(ok, "{error:?} {events:?}");
    let backup = backup.unwrap();
    assert_eq!(
        backup.rows,
        100_000 + 1 + 10,
        "accounts, branches, tellers: {backup:?}"
    );
    assert!(backup.drill.as_ref().is_some_and(|r| r.ok), "{backup:?}");
    let keys = s3.list("backups");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("shop/nightly/{}", backup.id))),
        "{keys:?}"
    );

    pg.psql("shop", "DELETE FROM pgbench_accounts WHERE aid > 10");
    let q = BackupQuery {
        id: Some(backup.id.clone()),
        ..BackupQuery::default()
    };
    let (ok, _, error) = done(&action(&d, "shop", "restore", &q, ""));
    assert!(ok, "{error:?}");
    assert_eq!(pg.count("shop", "pgbench_accounts"), 100_000);
    assert_eq!(d.get("/").unwrap().0, 200, "serving again");

    // Nothing berth shows holds the password.
    let shown = format!(
        "{}{}{}",
        serde_json::to_string(&list(&d, "shop")).unwrap(),
        d.history("shop"),
        d.status()
    );
    assert!(!shown.contains(pg.password()), "{shown}");
    assert!(
        shown.contains("127.0.0.1"),
        "the database is named by host: {shown}"
    );
}
