//! SQLite databases and directories, backed up to a local directory while another process
//! writes, drilled, restored; and what must refuse: a flipped byte, the wrong key, a full disk.

#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use backup::{Job, Location, Source, Stage, Tools};

mod common;

use common::{Scratch as Setup, files_under as walk, no_progress, random_bytes};

fn setup() -> Setup {
    Setup::new(&["store", "shared"])
}

impl Setup {
    fn job(&self, name: &str, source: Source, store: &Path) -> Job {
        self.job_to(
            name,
            source,
            Location::Local(store.to_path_buf()),
            Tools::default(),
        )
    }
}

/// A Python process inserting rows into `db` (WAL mode) until killed.
fn sqlite_writer(db: &Path) -> Child {
    let script = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, note TEXT)")
db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
db.executemany("INSERT INTO users (name) VALUES (?)", [("u%d" % i,) for i in range(500)])
db.commit()
print("ready", flush=True)
while True:
    db.executemany("INSERT INTO orders (note) VALUES (?)", [("x" * 200,)] * 50)
    db.commit()
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn count(db: &Path, table: &str) -> i64 {
    let c = rusqlite_count(db, table);
    c.unwrap()
}

fn rusqlite_count(db: &Path, table: &str) -> Result<i64, String> {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM ' + sys.argv[2]).fetchone()[0])",
        ])
        .arg(db)
        .arg(table)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_under_writes_backs_up_drills_and_restores() {
    let s = setup();
    let db = s.root.join("shared/app.db");
    let mut writer = sqlite_writer(&db);
    let job = s.job("nightly", Source::Sqlite(db.clone()), &s.root.join("store"));
    let id = backup::new_id(SystemTime::now());
    let manifest = backup::backup(&job, &id, s.keys.recipient(), no_progress())
        .await
        .unwrap();
    writer.kill().unwrap();
    writer.wait().unwrap();

    assert_eq!(manifest.kind, "sqlite");
    assert_eq!(manifest.tables["users"], 500);
    let orders = manifest.tables["orders"];
    assert!(orders > 0, "the writer had written rows");
    assert!(
        count(&db, "orders") as u64 > orders,
        "the writer went on after the copy"
    );
    // No scratch copy is left in the work directory.
    assert_eq!(std::fs::read_dir(s.root.join("work")).unwrap().count(), 0);

    let listed = backup::list(&job.storage, "nightly").await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&manifest));

    let identity = s.keys.identity().unwrap();
    let receipt = backup::drill(&job, &manifest, identity).await;
    assert!(receipt.ok, "{receipt:?}");
    assert_eq!(receipt.rows, manifest.rows());

    backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap();
    backup::restore(&job, &manifest, identity).await.unwrap();
    assert_eq!(count(&db, "orders") as u64, orders);
    assert!(!db.with_file_name("app.db-wal").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_round_trips_and_a_flipped_byte_or_wrong_key_is_refused() {
    let s = setup();
    let uploads = s.root.join("shared/uploads");
    std::fs::create_dir_all(uploads.join("a/b")).unwrap();
    std::fs::write(uploads.join("a/b/photo.jpg"), vec![7u8; 300_000]).unwrap();
    std::fs::write(uploads.join("readme.txt"), "hello").unwrap();
    let job = s.job("files", Source::Dir(uploads.clone()), &s.root.join("store"));
    let manifest = backup::backup(
        &job,
        &backup::new_id(SystemTime::now()),
        s.keys.recipient(),
        no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(manifest.files, Some(2));
    let identity = s.keys.identity().unwrap();

    std::fs::remove_file(uploads.join("readme.txt")).unwrap();
    std::fs::write(uploads.join("new.txt"), "after").unwrap();
    backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap();
    backup::restore(&job, &manifest, identity).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(uploads.join("readme.txt")).unwrap(),
        "hello"
    );
    assert!(!uploads.join("new.txt").exists());
    assert_eq!(
        std::fs::read(uploads.join("a/b/photo.jpg")).unwrap().len(),
        300_000
    );

    // The wrong key: refused before anything is touched.
    let other = age::x25519::Identity::generate();
    let err = backup::check(&job.storage, &manifest, &other)
        .await
        .unwrap_err();
    assert_eq!(err.stage, Stage::Check);
    assert!(err.message.contains("wrong key"), "{err}");
    let receipt = backup::drill(&job, &manifest, &other).await;
    assert!(!receipt.ok);

    // One byte flipped in the stored object: check, drill and restore refuse it.
    let object = s.root.join("store").join(&manifest.object);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();
    let err = backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap_err();
    assert!(err.message.contains("checksum mismatch"), "{err}");
    let receipt = backup::drill(&job, &manifest, identity).await;
    assert!(!receipt.ok, "{receipt:?}");
    let before = std::fs::read_to_string(uploads.join("readme.txt")).unwrap();
    assert!(backup::restore(&job, &manifest, identity).await.is_err());
    assert_eq!(
        std::fs::read_to_string(uploads.join("readme.txt")).unwrap(),
        before
    );
    assert!(!uploads.with_file_name(".uploads.berth-restore").exists());

    // The object gone: refused with its name.
    std::fs::remove_file(&object).unwrap();
    let err = backup::check(&job.storage, &manifest, identity)
        .await
        .unwrap_err();
    assert!(err.message.contains("missing"), "{err}");
}

/// A local target on a 1 MiB tmpfs: the backup fails at the upload, leaves no object and no
/// manifest, and the backup made before on another target is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_upload_and_leaves_nothing() {
    let s = setup();
    let small = s.root.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|st| st.success());
    struct Unmount(PathBuf, bool);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if self.1 {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
    let _unmount = Unmount(small.clone(), mounted);
    if !mounted {
        // No tmpfs here (not root): a read-only directory fails the same stage.
        let mut p = std::fs::metadata(&small).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o500);
        std::fs::set_permissions(&small, p).unwrap();
    }
    let data = s.root.join("shared/big");
    std::fs::create_dir_all(&data).unwrap();
    // Incompressible: 4 MiB of random bytes.
    let random = random_bytes(4 << 20);
    std::fs::write(data.join("blob"), &random).unwrap();

    let job = s.job("files", Source::Dir(data), &small);
    let err = backup::backup(
        &job,
        &backup::new_id(SystemTime::now()),
        s.keys.recipient(),
        no_progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.stage, Stage::Upload, "{err}");
    let left: Vec<_> = walk(&small);
    assert!(left.is_empty(), "nothing left on the full disk: {left:?}");
}

/// What no manifest describes is not a backup: a sweep removes it (an object a crash left, an
/// unfinished upload's staging file) and keeps every backup.
#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_removes_what_no_manifest_describes() {
    let s = setup();
    let dir = s.root.join("shared/uploads");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a"), "a").unwrap();
    let store = s.root.join("store");
    let job = s.job("files", Source::Dir(dir), &store);
    let manifest = backup::backup(
        &job,
        &backup::new_id(SystemTime::now()),
        s.keys.recipient(),
        no_progress(),
    )
    .await
    .unwrap();
    std::fs::write(
        store.join("files/20260101T000000Z-dead.tar.zst.age"),
        "cut short",
    )
    .unwrap();
    std::fs::write(
        store.join("files/20260101T000000Z-beef.tar.zst.age#3"),
        "staging",
    )
    .unwrap();
    let removed = backup::sweep(&job.storage, "files").await.unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    let mut left: Vec<String> = std::fs::read_dir(store.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|n| n.starts_with(&manifest.id)), "{left:?}");
    backup::check(&job.storage, &manifest, s.keys.identity().unwrap())
        .await
        .unwrap();
}
