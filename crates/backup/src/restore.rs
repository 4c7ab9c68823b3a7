//! Restores and drills: the stored bytes checked, opened, and restored into the source or a
//! scratch target, then compared with the manifest.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Instant, SystemTime};

use age::x25519::Identity;
use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::failure::{At, Failure, Stage};
use crate::manifest::{Manifest, Receipt};
use crate::pg::{self, Postgres, Tools};
use crate::run::{CHUNK, CHUNKS_QUEUED, Job, Source, TOOL_EXIT, unix};
use crate::seal::{self, Hashing};
use crate::storage::Storage;
use crate::{dir, sqlite};

/// Refuses a backup that cannot be restored, before anything is touched: the object missing,
/// its sha256 or size not the manifest's, or `identity` not the key it was encrypted to.
pub async fn check(
    storage: &Storage,
    manifest: &Manifest,
    identity: &Identity,
) -> Result<(), Failure> {
    let (sha256, size) = storage.digest(&manifest.object).await.map_err(|e| {
        Failure::new(
            Stage::Check,
            match e {
                object_store::Error::NotFound { .. } => {
                    format!("{} is missing", storage.show(&manifest.object))
                }
                e => storage.describe(&manifest.object, &e),
            },
        )
    })?;
    if sha256 != manifest.sha256 || size != manifest.stored_bytes {
        return Err(Failure::new(
            Stage::Check,
            format!(
                "checksum mismatch: {} has sha256 {sha256} ({size} bytes), the manifest says {} \
                 ({} bytes); the object was changed or damaged",
                storage.show(&manifest.object),
                manifest.sha256,
                manifest.stored_bytes
            ),
        ));
    }
    let reader = stored(storage, &manifest.object).await?;
    let identity = identity.clone();
    tokio::task::spawn_blocking(move || seal::open(reader, &identity).map(drop))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .at(Stage::Check)
}

/// The object at `key` as a blocking reader (use it on a blocking thread).
async fn stored(storage: &Storage, key: &str) -> Result<impl Read + Send + 'static, Failure> {
    let stream = storage
        .read(key)
        .await
        .map_err(|e| Failure::new(Stage::Check, storage.describe(key, &e)))?;
    Ok(SyncIoBridge::new(StreamReader::new(
        stream.map_err(io::Error::other),
    )))
}

/// Streams the backup's plain bytes to `consume` on a blocking thread, checking the stored
/// bytes' sha256 as they pass. A mismatch fails after `consume` ran: use it only where what
/// `consume` wrote is thrown away on failure (scratch targets, staged files, a `pg_restore`
/// transaction not yet committed).
async fn feed<T: Send + 'static>(
    storage: &Storage,
    manifest: &Manifest,
    identity: &Identity,
    consume: impl FnOnce(&mut dyn Read) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let reader = stored(storage, &manifest.object).await?;
    let identity = identity.clone();
    let expected = manifest.sha256.clone();
    tokio::task::spawn_blocking(move || {
        let mut hashing = Hashing::new(reader);
        let out = {
            let mut plain = seal::open(&mut hashing, &identity).at(Stage::Check)?;
            let out = consume(&mut plain)?;
            io::copy(&mut plain, &mut io::sink()).at(Stage::Restore)?;
            out
        };
        io::copy(&mut hashing, &mut io::sink()).at(Stage::Check)?;
        let (sha256, _, _) = hashing.finish();
        if sha256 != expected {
            return Err(Failure::new(
                Stage::Check,
                format!("checksum mismatch: read sha256 {sha256}, the manifest says {expected}"),
            ));
        }
        Ok(out)
    })
    .await
    .map_err(|e| Failure::new(Stage::Restore, e.to_string()))?
}

/// Restores `manifest` into the job's source, replacing what is there. Call [`check`] first.
/// PostgreSQL restores in one transaction (a failure leaves the database as it was); SQLite
/// files and directories are restored beside the target and swapped in once checked.
/// Afterwards the row counts (files) must equal the manifest's.
pub async fn restore(job: &Job, manifest: &Manifest, identity: &Identity) -> Result<(), Failure> {
    match &job.source {
        Source::Postgres { db, .. } => {
            restore_pg(
                &job.storage,
                manifest,
                identity,
                db,
                &job.tools,
                pg::Into::Replace,
            )
            .await?;
            let now = pg::counts(db).await.at(Stage::Compare)?;
            compare(&manifest.tables, &now, false)
        }
        Source::Sqlite(path) => {
            let (target, staged) = (path.clone(), sqlite::staging(path));
            let expected = manifest.tables.clone();
            feed(&job.storage, manifest, identity, move |plain| {
                write_file(plain, &staged)?;
                let checked = sqlite::check(&staged).at(Stage::Compare);
                let compared = checked.and_then(|c| compare(&expected, &c.tables, true));
                let swapped =
                    compared.and_then(|()| sqlite::swap_in(&staged, &target).at(Stage::Restore));
                if swapped.is_err() {
                    let _ = std::fs::remove_file(&staged);
                }
                swapped
            })
            .await
        }
        Source::Dir(path) => {
            let (target, staged) = (path.clone(), dir::staging(path));
            let expected = manifest.files;
            feed(&job.storage, manifest, identity, move |plain| {
                let _ = std::fs::remove_dir_all(&staged);
                let done = dir::unpack(plain, &staged)
                    .at(Stage::Restore)
                    .and_then(|files| same_files(expected, files))
                    .and_then(|()| dir::swap_in(&staged, &target).at(Stage::Restore));
                if done.is_err() {
                    let _ = std::fs::remove_dir_all(&staged);
                }
                done
            })
            .await
        }
    }
}

async fn restore_pg(
    storage: &Storage,
    manifest: &Manifest,
    identity: &Identity,
    into: &Postgres,
    tools: &Tools,
    how: pg::Into,
) -> Result<(), Failure> {
    let (mut child, stderr, tool) = pg::start_restore(into, tools, how).await?;
    let stdin = child.stdin.take().expect("pg_restore's stdin is piped");
    // The plain bytes reach pg_restore from this task, not from the blocking thread, so that
    // its stdin stays open until `feed` has checked the sha256 of the whole object: only then
    // may pg_restore see the end of its input and commit. On any other outcome it is killed
    // with its stdin still open, and its transaction is rolled back.
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_QUEUED);
    let shown = storage.show(&manifest.object);
    let fed = feed(storage, manifest, identity, move |plain| {
        let mut buf = vec![0u8; CHUNK];
        loop {
            // A read fails on the stored bytes, not on pg_restore: age authenticates every
            // chunk and says `InvalidData` when one was changed.
            let n = plain.read(&mut buf).map_err(|e| {
                Failure::new(
                    Stage::Check,
                    match e.kind() {
                        io::ErrorKind::InvalidData => format!("{shown} is damaged: {e}"),
                        _ => format!("read {shown}: {e}"),
                    },
                )
            })?;
            if n == 0 {
                return Ok(());
            }
            tx.blocking_send(Bytes::copy_from_slice(&buf[..n]))
                .map_err(|_| Failure::new(Stage::Restore, "pg_restore stopped reading"))?;
        }
    });
    let (fed, stdin) = tokio::join!(fed, pipe_to(rx, stdin));
    match fed {
        Ok(()) => {
            drop(stdin);
            pg::finish_tool(child, stderr, &tool, Stage::Restore).await
        }
        // pg_restore stopped reading: it failed, and its own complaint says why.
        Err(f) if f.stage == Stage::Restore => {
            drop(stdin);
            if tokio::time::timeout(TOOL_EXIT, child.wait()).await.is_err() {
                child.kill();
            }
            pg::finish_tool(child, stderr, &tool, Stage::Restore)
                .await
                .and(Err(f))
        }
        Err(f) => {
            child.kill();
            drop(stdin);
            let _ = pg::finish_tool(child, stderr, &tool, Stage::Restore).await;
            Err(f)
        }
    }
}

/// Writes what arrives on `rx` to `stdin` and gives it back, still open, once the sender is
/// done; `None` when the reader stopped reading.
async fn pipe_to(mut rx: mpsc::Receiver<Bytes>, mut stdin: ChildStdin) -> Option<ChildStdin> {
    while let Some(bytes) = rx.recv().await {
        if stdin.write_all(&bytes).await.is_err() {
            return None;
        }
    }
    Some(stdin)
}

fn write_file(plain: &mut dyn Read, path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::new(Stage::Restore, format!("create {}: {e}", path.display())))?;
    io::copy(plain, &mut f)
        .and_then(|_| f.sync_all())
        .map_err(|e| Failure::new(Stage::Restore, format!("write {}: {e}", path.display())))
}

/// Every table of the manifest with the same row count; with `exact`, no table besides.
fn compare(
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
    exact: bool,
) -> Result<(), Failure> {
    let mut problems = Vec::new();
    for (table, n) in expected {
        match found.get(table) {
            Some(m) if m == n => {}
            Some(m) => problems.push(format!("{table}: {m} rows, the backup has {n}")),
            None => problems.push(format!("{table}: missing ({n} rows in the backup)")),
        }
    }
    if exact {
        for table in found.keys().filter(|t| !expected.contains_key(*t)) {
            problems.push(format!("{table}: not in the backup"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(5);
    problems.truncate(5);
    let mut message = problems.join("; ");
    if more > 0 {
        message.push_str(&format!("; and {more} more"));
    }
    Err(Failure::new(Stage::Compare, message))
}

fn same_files(expected: Option<u64>, found: u64) -> Result<(), Failure> {
    match expected {
        Some(n) if n != found => Err(Failure::new(
            Stage::Compare,
            format!("{found} files restored, the backup has {n}"),
        )),
        _ => Ok(()),
    }
}

/// A restore drill: the backup restored into a scratch target (a new database on the same
/// server or `verify_url`'s, a temporary SQLite file or directory), compared with the manifest,
/// then thrown away. The receipt says how it went and how long a restore takes.
pub async fn drill(job: &Job, manifest: &Manifest, identity: &Identity) -> Receipt {
    let t0 = Instant::now();
    let result = drill_into_scratch(job, manifest, identity).await;
    Receipt {
        at: unix(SystemTime::now()),
        duration_ms: t0.elapsed().as_millis() as u64,
        tables: manifest.tables.len() as u64,
        rows: manifest.rows(),
        ok: result.is_ok(),
        problem: result.err().map(|f| f.to_string()),
    }
}

async fn drill_into_scratch(
    job: &Job,
    manifest: &Manifest,
    identity: &Identity,
) -> Result<(), Failure> {
    match &job.source {
        Source::Postgres { db, verify } => {
            let server = verify.as_ref().unwrap_or(db);
            let scratch = pg::create_scratch(server, &manifest.id).await?;
            let restored = restore_pg(
                &job.storage,
                manifest,
                identity,
                &scratch,
                &job.tools,
                pg::Into::Scratch,
            )
            .await;
            let compared = match restored {
                Ok(()) => match pg::counts(&scratch).await {
                    Ok(now) => compare(&manifest.tables, &now, true),
                    Err(e) => Err(Failure::new(Stage::Compare, e)),
                },
                Err(f) => Err(f),
            };
            let dropped = pg::drop_scratch(server, &scratch).await;
            compared.and(dropped)
        }
        Source::Sqlite(_) => {
            let scratch = scratch_file(&job.work_dir)?;
            let expected = manifest.tables.clone();
            feed(&job.storage, manifest, identity, move |plain| {
                write_file(plain, &scratch)?;
                let checked = sqlite::check(&scratch).at(Stage::Compare)?;
                compare(&expected, &checked.tables, true)
            })
            .await
        }
        Source::Dir(_) => {
            let scratch = tempfile::Builder::new()
                .prefix(".drill-")
                .tempdir_in(&job.work_dir)
                .map_err(|e| Failure::new(Stage::Restore, e.to_string()))?;
            let expected = manifest.files;
            feed(&job.storage, manifest, identity, move |plain| {
                let files = dir::unpack(plain, scratch.path()).at(Stage::Restore)?;
                same_files(expected, files)
            })
            .await
        }
    }
}

fn scratch_file(work: &Path) -> Result<tempfile::TempPath, Failure> {
    tempfile::Builder::new()
        .prefix(".drill-")
        .tempfile_in(work)
        .map(|f| f.into_temp_path())
        .map_err(|e| {
            Failure::new(
                Stage::Restore,
                format!("a scratch file in {}: {e}", work.display()),
            )
        })
}
