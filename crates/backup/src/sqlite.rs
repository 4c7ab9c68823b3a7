//! SQLite: an online copy of a live database (SQLite's backup API, in one step, so writers in
//! WAL mode go on meanwhile), checked with `PRAGMA integrity_check` and counted before it is
//! sealed; restores check the same way before they replace anything.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a copy waits for a writer's lock (rollback-journal databases).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies the database at `src` to `dst` (a new file) in one consistent step.
pub(crate) fn snapshot(src: &Path, dst: &Path) -> Result<(), String> {
    if !src.is_file() {
        return Err(format!("{} does not exist", src.display()));
    }
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("open {}: {e}", src.display()))?;
    from.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    let mut to = Connection::open(dst).map_err(|e| format!("create {}: {e}", dst.display()))?;
    let backup = rusqlite::backup::Backup::new(&from, &mut to)
        .map_err(|e| format!("copy {}: {e}", src.display()))?;
    // All pages in one step: a step-wise copy starts over whenever another process writes.
    loop {
        match backup.step(-1) {
            Ok(rusqlite::backup::StepResult::Done) => break,
            Ok(rusqlite::backup::StepResult::More) => continue,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("copy {}: {e}", src.display())),
        }
    }
    drop(backup);
    to.execute_batch("PRAGMA journal_mode = DELETE")
        .map_err(|e| format!("{}: {e}", dst.display()))?;
    Ok(())
}

/// What a check of a database file found.
pub(crate) struct Checked {
    pub tables: BTreeMap<String, u64>,
    pub version: String,
}

/// `PRAGMA integrity_check` and the row count of every table.
pub(crate) fn check(path: &Path) -> Result<Checked, String> {
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let problems: Vec<String> = db
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| format!("integrity_check: {e}"))?;
    if problems != ["ok"] {
        return Err(format!(
            "integrity_check: {}",
            problems.into_iter().take(5).collect::<Vec<_>>().join("; ")
        ));
    }
    let names: Vec<String> = db
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' \
             ESCAPE '\\' ORDER BY name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| e.to_string())?;
    let mut tables = BTreeMap::new();
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let n: i64 = db
            .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))
            .map_err(|e| format!("count {name}: {e}"))?;
        tables.insert(name, n as u64);
    }
    Ok(Checked {
        tables,
        version: rusqlite::version().to_owned(),
    })
}

/// The restored copy's path next to `target` (same filesystem, so the swap is one rename).
pub(crate) fn staging(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    target.with_file_name(format!(".{name}.berth-restore"))
}

/// Puts the checked copy at `staged` in place of `target`: same owner and mode as the file it
/// replaces, the old WAL and shared-memory files removed (they belong to the old database).
pub(crate) fn swap_in(staged: &Path, target: &Path) -> Result<(), String> {
    if let Ok(old) = fs::metadata(target) {
        std::os::unix::fs::chown(staged, Some(old.uid()), Some(old.gid()))
            .map_err(|e| format!("chown {}: {e}", staged.display()))?;
        fs::set_permissions(staged, old.permissions())
            .map_err(|e| format!("chmod {}: {e}", staged.display()))?;
    }
    fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("sync {}: {e}", staged.display()))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        match fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", Path::new(&side).display())),
        }
    }
    fs::rename(staged, target).map_err(|e| format!("rename into {}: {e}", target.display()))
}
