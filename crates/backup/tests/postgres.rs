//! PostgreSQL backups against a real server: one consistent snapshot while pgbench writes,
//! drilled and restored; and what must fail cleanly: `pg_dump` killed halfway, a server
//! nobody answers on, a restore that fails (the database stays as it was), the wrong key.

#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backup::{Job, Location, Source, Stage, Tools};
use testkit::Postgres as Server;

mod common;

use common::{Scratch as Setup, files_under as walk};

fn setup() -> Setup {
    Setup::new(&["store", "bin"])
}

impl Setup {
    /// A job backing up `url` into `store/`.
    fn job(&self, url: &str, tools: Tools) -> Job {
        let source = Source::Postgres {
            db: backup::Postgres::parse(url).unwrap(),
            verify: None,
        };
        self.job_to("nightly", source, Location::Local(self.store()), tools)
    }

    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// `bin/NAME`: an executable shell script.
    fn script(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join("bin").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// `bin/NAME`: the server's own tool.
    fn real_tool(&self, pg: &Server, name: &str) {
        std::os::unix::fs::symlink(pg.bin_dir().join(name), self.root.join("bin").join(name))
            .unwrap();
    }

    /// Tools from `bin/`.
    fn wrapped(&self) -> Tools {
        Tools {
            bin_dir: Some(self.root.join("bin")),
        }
    }
}

/// The files under `dir`, directories left out.
/// The row counts of pgbench's four tables.
fn pgbench_counts(pg: &Server, db: &str) -> [i64; 4] {
    ["accounts", "branches", "tellers", "history"].map(|t| pg.count(db, &format!("pgbench_{t}")))
}

/// TPC-B's invariant: every transaction adds the same delta to an account, its teller, its
/// branch and the history, so the four sums agree in any consistent state of the database.
fn assert_balanced(pg: &Server, db: &str) {
    let sums = pg.psql(
        db,
        "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts) || ' ' || \
                (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches) || ' ' || \
                (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers) || ' ' || \
                (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
    );
    let sums: Vec<&str> = sums.split(' ').collect();
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "{db} is not consistent: sums of accounts, branches, tellers, history: {sums:?}"
    );
}

fn drill_databases(pg: &Server) -> String {
    pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'berth\\_drill\\_%'",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_taken_under_writes_is_consistent_and_drills_and_restores() {
    let pg = Server::start();
    pg.create_db("shop");
    pg.pgbench_init("shop", 5);
    let s = setup();
    let job = s.job(&pg.url("shop"), Tools::default());

    let mut load = pg.pgbench_load("shop", Duration::from_secs(120));
    testkit::eventually("pgbench to write", Duration::from_secs(10), || {
        pg.count("shop", "pgbench_history") > 0
    })
    .await;
    let manifest = s.backup(&job).await.unwrap();

    assert_eq!(manifest.kind, "postgres");
    assert_eq!(manifest.source, format!("127.0.0.1:{}/shop", pg.port()));
    assert!(
        manifest
            .server_version
            .as_deref()
            .unwrap()
            .starts_with("15"),
        "{manifest:?}"
    );
    assert_eq!(manifest.tables["public.pgbench_accounts"], 500_000);
    assert_eq!(manifest.tables["public.pgbench_branches"], 5);
    assert_eq!(manifest.tables["public.pgbench_tellers"], 50);
    let history = manifest.tables["public.pgbench_history"];
    assert!(history > 0, "pgbench had written before the snapshot");
    assert!(
        pg.count("shop", "pgbench_history") as u64 > history,
        "pgbench went on writing after the snapshot"
    );
    let listed = backup::list(&job.storage, "nightly").await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&manifest));

    // The drill restores into a scratch database, compares every table's count with the
    // manifest and drops it; pgbench is still writing to the live one.
    let identity = s.keys.identity().unwrap();
    let receipt = backup::drill(&job, &manifest, identity).await;
    assert!(receipt.ok, "{receipt:?}");
    assert_eq!(receipt.rows, manifest.rows());
    assert_eq!(receipt.tables, 4);
    assert_eq!(drill_databases(&pg), "0", "the scratch database is dropped");

    load.kill().unwrap();
    load.wait().unwrap();
    assert!(pg.count("shop", "pgbench_history") as u64 > history);

    backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap();
    backup::restore(&job, &manifest, identity).await.unwrap();
    assert_eq!(pg.count("shop", "pgbench_history") as u64, history);
    assert_eq!(pg.count("shop", "pgbench_accounts"), 500_000);
    // The rows in the dump are those of one moment, not a mix of several.
    assert_balanced(&pg, "shop");
}

/// The real `pg_dump`, SIGKILLed once it has written 2 MB (its `wchar` in `/proc/PID/io`):
/// the shell's pid becomes `pg_dump`'s with `exec`.
fn killed_pg_dump(real: &Path) -> String {
    format!(
        r#"( while kill -0 $$ 2>/dev/null; do
    written=$(sed -n 's/^wchar: //p' /proc/$$/io 2>/dev/null)
    if [ "${{written:-0}}" -ge 2000000 ]; then kill -9 $$; exit 0; fi
    sleep 0.01
  done ) </dev/null >/dev/null 2>&1 &
exec '{}' "$@"
"#,
        real.join("pg_dump").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_killed_halfway_fails_the_backup_and_leaves_nothing() {
    let pg = Server::start();
    pg.create_db("shop");
    pg.pgbench_init("shop", 1);
    let s = setup();
    let good = s
        .backup(&s.job(&pg.url("shop"), Tools::default()))
        .await
        .unwrap();
    let before = walk(&s.store());
    assert_eq!(before.len(), 2, "{before:?}");

    s.script("pg_dump", &killed_pg_dump(pg.bin_dir()));
    s.real_tool(&pg, "pg_restore");
    let job = s.job(&pg.url("shop"), s.wrapped());
    let seen = Arc::new(AtomicU64::new(0));
    let progress = {
        let seen = seen.clone();
        Arc::new(move |n| seen.store(n, Ordering::Relaxed))
    };
    let id = backup::new_id(SystemTime::now());
    let err = backup::backup(&job, &id, s.keys.recipient(), progress)
        .await
        .unwrap_err();
    assert!(
        seen.load(Ordering::Relaxed) >= 1 << 20,
        "bytes flowed before the kill"
    );
    assert_eq!(err.stage, Stage::Dump, "{err}");
    assert!(
        err.message.contains("pg_dump was killed by signal 9"),
        "{err}"
    );
    assert_eq!(
        walk(&s.store()),
        before,
        "no object and no manifest of the failed backup"
    );
    // The snapshot's transaction is not left open.
    testkit::eventually(
        "the backup's connections to end",
        Duration::from_secs(10),
        || {
            pg.psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop'",
            ) == "0"
        },
    )
    .await;

    let listed = backup::list(&job.storage, "nightly").await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&good));
    let identity = s.keys.identity().unwrap();
    backup::check(&job.storage, &good, identity).await.unwrap();
    let receipt = backup::drill(&job, &good, identity).await;
    assert!(receipt.ok, "{receipt:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_fails_at_the_snapshot_without_showing_the_password() {
    let s = setup();
    let port = testkit::free_port();
    let url = format!("postgres://shop:hunter2-secret@127.0.0.1:{port}/shop");
    let err = s.backup(&s.job(&url, Tools::default())).await.unwrap_err();
    assert_eq!(err.stage, Stage::Snapshot, "{err}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("127.0.0.1:{port}/shop")), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(walk(&s.store()), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_fails_leaves_the_database_as_it_was() {
    let pg = Server::start();
    pg.create_db("shop");
    pg.pgbench_init("shop", 1);
    let s = setup();
    let job = s.job(&pg.url("shop"), Tools::default());
    let manifest = s.backup(&job).await.unwrap();
    let identity = s.keys.identity().unwrap();
    // Written after the backup: a restore that went through would take these away.
    pg.psql(
        "shop",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
         SELECT 1, 1, i, 0, now() FROM generate_series(1, 1000) i; \
         DELETE FROM pgbench_accounts WHERE aid <= 10",
    );
    let live = pgbench_counts(&pg, "shop");
    assert_eq!(live, [99_990, 1, 10, 1000]);

    // 1. pg_restore itself fails: a view made since depends on a table it must replace. Its
    //    drops of the tables before that one are rolled back.
    pg.psql(
        "shop",
        "CREATE VIEW rich AS SELECT * FROM pgbench_accounts WHERE abalance > 0",
    );
    backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap();
    let err = backup::restore(&job, &manifest, identity)
        .await
        .unwrap_err();
    assert_eq!(err.stage, Stage::Restore, "{err}");
    assert!(
        err.message.contains("pg_restore exited with status 1"),
        "{err}"
    );
    assert!(err.message.contains("other objects depend on it"), "{err}");
    assert_eq!(pgbench_counts(&pg, "shop"), live);
    pg.psql("shop", "DROP VIEW rich");

    // 2. pg_restore stops halfway through the data: its input ends after 3 MB (tables
    //    dropped, created again and partly loaded by then).
    s.script(
        "pg_restore",
        &format!(
            "head -c 3000000 | '{}' \"$@\"\n",
            pg.bin_dir().join("pg_restore").display()
        ),
    );
    let wrapped = s.job(&pg.url("shop"), s.wrapped());
    let err = backup::restore(&wrapped, &manifest, identity)
        .await
        .unwrap_err();
    assert_eq!(err.stage, Stage::Restore, "{err}");
    assert!(
        err.message
            .contains("pg_restore exited with status 1: pg_restore: error: could not read"),
        "pg_restore's own complaint: {err}"
    );
    assert_eq!(pgbench_counts(&pg, "shop"), live);

    // 3. The object is not the one the manifest describes (replaced between check and
    //    restore): every byte reaches pg_restore before the sha256 can be compared, and it
    //    must not commit them.
    let mut other = manifest.clone();
    other.sha256 = "0".repeat(64);
    let err = backup::restore(&job, &other, identity).await.unwrap_err();
    assert_eq!(err.stage, Stage::Check, "{err}");
    assert!(err.message.contains("checksum mismatch"), "{err}");
    assert_eq!(pgbench_counts(&pg, "shop"), live);

    // 4. The object damaged since the check (one byte flipped halfway): the restore stops
    //    where decryption fails and says so, not that pg_restore was killed.
    let object = s.store().join(&manifest.object);
    let good = std::fs::read(&object).unwrap();
    let mut damaged = good.clone();
    damaged[good.len() / 2] ^= 0x01;
    std::fs::write(&object, &damaged).unwrap();
    let err = backup::restore(&job, &manifest, identity)
        .await
        .unwrap_err();
    assert_eq!(err.stage, Stage::Check, "{err}");
    assert!(
        err.message
            .contains(&format!("{} is damaged", object.display())),
        "{err}"
    );
    assert_eq!(pgbench_counts(&pg, "shop"), live);
    std::fs::write(&object, &good).unwrap();

    // Nothing was left half-done: the restore still works.
    backup::restore(&job, &manifest, identity).await.unwrap();
    assert_eq!(pgbench_counts(&pg, "shop"), [100_000, 1, 10, 0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wrong_key_is_refused_before_anything_is_touched() {
    let pg = Server::start();
    pg.create_db("shop");
    pg.pgbench_init("shop", 1);
    let s = setup();
    let job = s.job(&pg.url("shop"), Tools::default());
    let manifest = s.backup(&job).await.unwrap();
    pg.psql("shop", "DELETE FROM pgbench_accounts WHERE aid <= 10");

    let other = age::x25519::Identity::generate();
    let err = backup::check(&job.storage, &manifest, &other)
        .await
        .unwrap_err();
    assert_eq!(err.stage, Stage::Check, "{err}");
    assert!(err.message.contains("wrong key"), "{err}");
    assert_eq!(pg.count("shop", "pgbench_accounts"), 99_990);

    // A restore or drill called without the check refuses the same way.
    let err = backup::restore(&job, &manifest, &other).await.unwrap_err();
    assert_eq!(err.stage, Stage::Check, "{err}");
    assert!(err.message.contains("wrong key"), "{err}");
    assert_eq!(pg.count("shop", "pgbench_accounts"), 99_990);
    let receipt = backup::drill(&job, &manifest, &other).await;
    assert!(!receipt.ok);
    assert!(
        receipt.problem.as_deref().unwrap().contains("wrong key"),
        "{receipt:?}"
    );
    assert_eq!(drill_databases(&pg), "0");
}

/// Peak memory and time of a backup of pgbench's scale 20 (2 million accounts) to a local
/// directory, beside `pg_dump -Fc -Z0 | zstd -T0 > file` for the same database. A measurement
/// to run by hand: `cargo nextest run -p backup --test postgres --run-ignored only measure
/// --no-capture` (numbers from a debug build are slower than a release build's).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand"]
#[allow(clippy::print_stderr)]
async fn measure_a_scale_20_backup() {
    fn status(field: &str) -> String {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line[field.len()..].trim().to_owned()
    }
    let pg = Server::start();
    pg.create_db("shop");
    pg.pgbench_init("shop", 20);
    let s = setup();
    let job = s.job(&pg.url("shop"), Tools::default());

    let rss_before = status("VmRSS:");
    // Resets VmHWM, the peak resident set, to the current one.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let t = std::time::Instant::now();
    let manifest = s.backup(&job).await.unwrap();
    let took = t.elapsed();
    let peak = status("VmHWM:");
    eprintln!(
        "backup: {took:?} (dump+seal+upload {} ms, read-back {} ms), {} plain bytes, {} stored, \
         RSS before {rss_before}, peak during the backup {peak}",
        manifest.durations_ms.dump,
        manifest.durations_ms.verify,
        manifest.plain_bytes,
        manifest.stored_bytes
    );

    let out = s.root.join("plain.pgdump.zst");
    let t = std::time::Instant::now();
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "'{}' -Fc -Z0 | zstd -q -T0 > '{}'",
            pg.bin_dir().join("pg_dump").display(),
            out.display()
        ))
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", pg.password())
        .env("PGDATABASE", "shop")
        .status()
        .unwrap();
    assert!(status.success());
    eprintln!(
        "pg_dump -Fc -Z0 | zstd -T0: {:?}, {} bytes",
        t.elapsed(),
        std::fs::metadata(&out).unwrap().len()
    );
}
