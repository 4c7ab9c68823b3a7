//! A backup, a drill and a restore, stage by stage.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use age::x25519::{Identity, Recipient};
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::failure::{At, Failure, Stage};
use crate::manifest::{Durations, FORMAT, Manifest, Receipt};
use crate::pg::{self, Postgres, Tools};
use crate::seal::{self, Hashing, Sealed, Sealer};
use crate::storage::{Chunk, Storage};
use crate::{dir, sqlite};

/// Bytes handed to the upload at a time.
const CHUNK: usize = 1 << 20;
/// Chunks queued between sealing and the upload (and between opening and `pg_restore`).
const CHUNKS_QUEUED: usize = 4;
/// How long a `pg_restore` that stopped reading its input gets to exit and say why.
const TOOL_EXIT: Duration = Duration::from_secs(30);

/// What is backed up.
#[derive(Debug, Clone)]
pub enum Source {
    /// `verify`: the server drills create their scratch database on (default: `db`'s).
    Postgres {
        db: Postgres,
        verify: Option<Postgres>,
    },
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A directory tree.
    Dir(PathBuf),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Postgres { .. } => "postgres",
            Source::Sqlite(_) => "sqlite",
            Source::Dir(_) => "dir",
        }
    }

    /// What it is, without credentials.
    pub fn shown(&self) -> String {
        match self {
            Source::Postgres { db, .. } => db.shown().to_owned(),
            Source::Sqlite(p) | Source::Dir(p) => p.display().to_string(),
        }
    }

    fn extension(&self) -> &'static str {
        match self {
            Source::Postgres { .. } => "pgdump",
            Source::Sqlite(_) => "sqlite",
            Source::Dir(_) => "tar",
        }
    }
}

/// One backup definition at work: what, where to, and the scratch space it may use.
#[derive(Debug, Clone)]
pub struct Job {
    pub app: String,
    pub name: String,
    pub source: Source,
    pub storage: Storage,
    /// A private directory (mode 0700) for SQLite copies and drills' scratch files.
    pub work_dir: PathBuf,
    pub tools: Tools,
}

/// Called with the bytes read from the source so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// A new backup id: the UTC time, then 4 random hex digits (`20261202T020000Z-3f9a`).
pub fn new_id(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        hex::encode(r)
    )
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The source's side of a backup in progress.
enum Started {
    Postgres {
        /// Boxed: a child process and its handles are large beside the other sources.
        dump: Box<pg::Dump>,
        counts: tokio::task::JoinHandle<Result<BTreeMap<String, u64>, Failure>>,
        dumped: oneshot::Sender<()>,
    },
    Sqlite {
        copy: tempfile::TempPath,
        checked: sqlite::Checked,
    },
    Dir,
}

/// Writes the source's plain bytes; for a directory, returns the number of files.
type Produce = Box<dyn FnOnce(&mut dyn Write) -> io::Result<Option<u64>> + Send>;

/// Makes a backup: source → zstd → age → sha256 → storage, then reads the object back and
/// checks its sha256, then writes the manifest. Ok only when every stage succeeded; a failure
/// leaves no object and no manifest behind.
pub async fn backup(
    job: &Job,
    id: &str,
    recipient: &Recipient,
    progress: Progress,
) -> Result<Manifest, Failure> {
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    let object = format!("{}/{id}.{}.zst.age", job.name, job.source.extension());

    let mut started = start(job).await?;
    let produce: Produce = match &mut started {
        Started::Postgres { dump, .. } => {
            let stdout = dump.child.stdout.take().expect("pg_dump's stdout is piped");
            let mut from = Tagged(blocking_pipe(stdout).at(Stage::Dump)?);
            Box::new(move |w| copy_large(&mut from, w).map(|_| None))
        }
        Started::Sqlite { copy, .. } => {
            let path = copy.to_path_buf();
            Box::new(move |w| {
                let mut f = Tagged(std::fs::File::open(path)?);
                copy_large(&mut f, w).map(|_| None)
            })
        }
        Started::Dir => {
            let Source::Dir(path) = job.source.clone() else {
                unreachable!()
            };
            Box::new(move |w| dir::pack(&path, w).map(Some).map_err(tag))
        }
    };

    let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
    let upload = {
        let (storage, object) = (job.storage.clone(), object.clone());
        tokio::spawn(async move { storage.upload(&object, rx).await })
    };
    let (recipient, recipient_shown) = (recipient.clone(), recipient.to_string());
    let sealed = tokio::task::spawn_blocking(move || -> io::Result<_> {
        let mut sealer = Sealer::new(ChannelWriter::new(tx), &recipient)?;
        let files = produce(&mut Reporting {
            inner: &mut sealer,
            bytes: 0,
            progress,
        })?;
        let (sealed, sink) = sealer.finish()?;
        Ok((sealed, files, sink.into_sender()?))
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(format!("the sealing thread failed: {e}"))));

    // The source's verdict comes before the upload is completed.
    let (source_ok, facts) = finish_source(started).await;
    let sealed = match (sealed, source_ok) {
        (Ok((sealed, files, tx)), Ok(())) => {
            let _ = tx.send(Chunk::End).await;
            Ok((sealed, files))
        }
        (Err(e), _) if is_tagged(&e) => Err(Failure::new(Stage::Dump, untag(e))),
        (_, Err(failure)) => Err(failure),
        (Err(e), Ok(())) => Err(Failure::new(Stage::Seal, e.to_string())),
    };
    let uploaded = upload.await.unwrap_or_else(|e| {
        Err(object_store::Error::Generic {
            store: "backup",
            source: e.to_string().into(),
        })
    });
    let (sealed, files) = match (sealed, uploaded) {
        (Ok(s), Ok(true)) => s,
        // The upload's own error explains a broken pipe on the sealing side.
        (_, Err(e)) => {
            cleanup(&job.storage, &object).await;
            return Err(Failure::new(
                Stage::Upload,
                job.storage.describe(&object, &e),
            ));
        }
        (Err(f), _) => {
            cleanup(&job.storage, &object).await;
            return Err(f);
        }
        (Ok(_), Ok(false)) => {
            cleanup(&job.storage, &object).await;
            return Err(Failure::new(Stage::Upload, "the upload was not completed"));
        }
    };
    let dump_ms = t0.elapsed().as_millis() as u64;

    let t1 = Instant::now();
    if let Err(f) = read_back(&job.storage, &object, &sealed).await {
        cleanup(&job.storage, &object).await;
        return Err(f);
    }
    let verify_ms = t1.elapsed().as_millis() as u64;

    let (tables, server_version) = match facts.await {
        Ok(f) => f,
        Err(f) => {
            cleanup(&job.storage, &object).await;
            return Err(f);
        }
    };
    let manifest = Manifest {
        format: FORMAT,
        id: id.to_owned(),
        app: job.app.clone(),
        name: job.name.clone(),
        kind: job.source.kind().to_owned(),
        source: job.source.shown(),
        object: object.clone(),
        started_at: unix(started_at),
        finished_at: unix(SystemTime::now()),
        plain_bytes: sealed.plain_bytes,
        stored_bytes: sealed.stored_bytes,
        sha256: sealed.sha256,
        tables,
        files,
        server_version,
        durations_ms: Durations {
            dump: dump_ms,
            verify: verify_ms,
        },
        berth_version: env!("CARGO_PKG_VERSION").to_owned(),
        recipient: recipient_shown,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    if let Err(e) = job
        .storage
        .put(&Manifest::key(&job.name, id), Bytes::from(json))
        .await
    {
        cleanup(&job.storage, &object).await;
        return Err(Failure::new(
            Stage::Manifest,
            job.storage.describe(&Manifest::key(&job.name, id), &e),
        ));
    }
    Ok(manifest)
}

async fn start(job: &Job) -> Result<Started, Failure> {
    match &job.source {
        Source::Postgres { db, .. } => {
            let (dump, snapshot) = pg::start_dump(db, &job.tools).await?;
            let (dumped, wait) = oneshot::channel();
            let counts = tokio::spawn(snapshot.count_and_close(wait));
            Ok(Started::Postgres {
                dump: Box::new(dump),
                counts,
                dumped,
            })
        }
        Source::Sqlite(path) => {
            let (path, work) = (path.clone(), job.work_dir.clone());
            tokio::task::spawn_blocking(move || {
                let copy = tempfile::Builder::new()
                    .prefix(".sqlite-copy-")
                    .tempfile_in(&work)
                    .map_err(|e| format!("a scratch file in {}: {e}", work.display()))?
                    .into_temp_path();
                sqlite::snapshot(&path, &copy)?;
                let checked = sqlite::check(&copy)?;
                Ok(Started::Sqlite { copy, checked })
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .at(Stage::Dump)
        }
        Source::Dir(_) => Ok(Started::Dir),
    }
}

type Facts = (BTreeMap<String, u64>, Option<String>);

/// Ends the source's side: `pg_dump`'s exit status (a dump that failed halfway fails the
/// backup whatever was uploaded) and the facts for the manifest, awaited later.
async fn finish_source(
    started: Started,
) -> (
    Result<(), Failure>,
    futures_util::future::BoxFuture<'static, Result<Facts, Failure>>,
) {
    match started {
        Started::Postgres {
            dump,
            counts,
            dumped,
        } => {
            let version = dump.server_version.clone();
            let ok = pg::finish_tool(dump.child, dump.stderr, &dump.tool, Stage::Dump).await;
            let _ = dumped.send(());
            let facts = Box::pin(async move {
                let tables = counts
                    .await
                    .map_err(|e| Failure::new(Stage::Snapshot, e.to_string()))??;
                Ok((tables, Some(version)))
            });
            (ok, facts)
        }
        Started::Sqlite { copy, checked } => {
            drop(copy);
            let facts = (checked.tables, Some(format!("SQLite {}", checked.version)));
            (Ok(()), Box::pin(async move { Ok(facts) }))
        }
        Started::Dir => (Ok(()), Box::pin(async { Ok((BTreeMap::new(), None)) })),
    }
}

/// Reads the stored object back and compares it with what was written.
async fn read_back(storage: &Storage, object: &str, sealed: &Sealed) -> Result<(), Failure> {
    let (sha256, size) = storage
        .digest(object)
        .await
        .map_err(|e| Failure::new(Stage::ReadBack, storage.describe(object, &e)))?;
    if sha256 != sealed.sha256 || size != sealed.stored_bytes {
        return Err(Failure::new(
            Stage::ReadBack,
            format!(
                "{} reads back as {size} bytes with sha256 {sha256}; {} bytes with sha256 {} \
                 were written",
                storage.show(object),
                sealed.stored_bytes,
                sealed.sha256
            ),
        ));
    }
    Ok(())
}

async fn cleanup(storage: &Storage, object: &str) {
    if let Err(err) = storage.delete(object).await {
        tracing::warn!(object = %storage.show(object), error = %err, "remove a failed backup's object");
    }
}

/// Deletes a backup: the manifest first (from then on it is not a backup), then its object.
pub async fn delete(storage: &Storage, manifest: &Manifest) -> Result<(), Failure> {
    let key = Manifest::key(&manifest.name, &manifest.id);
    storage
        .delete(&key)
        .await
        .map_err(|e| Failure::new(Stage::Cleanup, storage.describe(&key, &e)))?;
    storage
        .delete(&manifest.object)
        .await
        .map_err(|e| Failure::new(Stage::Cleanup, storage.describe(&manifest.object, &e)))
}

/// The manifests of `name` in the storage, oldest first.
pub async fn list(storage: &Storage, name: &str) -> Result<Vec<Manifest>, Failure> {
    let keys = storage
        .list(name)
        .await
        .map_err(|e| Failure::new(Stage::Check, storage.describe(name, &e)))?;
    let mut out = Vec::new();
    for key in keys.iter().filter(|k| k.ends_with(".json")) {
        let bytes = storage
            .get(key)
            .await
            .map_err(|e| Failure::new(Stage::Check, storage.describe(key, &e)))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::new(Stage::Check, format!("{}: {e}", storage.show(key))))?;
        out.push(manifest);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

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

/// The read end of a child's stdout as a plain blocking file, with a 1 MiB pipe buffer: the
/// sealing thread reads it directly, with fewer and larger reads than through the runtime.
fn blocking_pipe(stdout: tokio::process::ChildStdout) -> io::Result<std::fs::File> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fd = stdout.into_owned_fd()?;
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    // Best effort: the system's limit (fs.pipe-max-size) may be lower.
    let _ = fcntl(&fd, FcntlArg::F_SETPIPE_SZ(1 << 20));
    Ok(std::fs::File::from(fd))
}

/// `io::copy` with a 256 KiB buffer: a pipe of pg_dump's gives up to its size per read.
fn copy_large(from: &mut impl Read, to: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Sends what is written as [`CHUNK`]-sized pieces to the upload.
struct ChannelWriter {
    buf: BytesMut,
    tx: mpsc::Sender<Chunk>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Chunk>) -> ChannelWriter {
        ChannelWriter {
            buf: BytesMut::with_capacity(CHUNK),
            tx,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(Chunk::Data(bytes))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends what is buffered; the sender then completes or abandons the upload.
    fn into_sender(mut self) -> io::Result<mpsc::Sender<Chunk>> {
        self.send()?;
        Ok(self.tx)
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the plain bytes and reports them.
struct Reporting<'a, W> {
    inner: &'a mut W,
    bytes: u64,
    progress: Progress,
}

impl<W: Write> Write for Reporting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let before = self.bytes;
        self.bytes += n as u64;
        if before >> 20 != self.bytes >> 20 {
            (self.progress)(self.bytes);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader whose errors are marked as the source's, so that a failed read of the dump is told
/// apart from a failed write to the upload.
struct Tagged<R>(R);

#[derive(Debug)]
struct SourceError(io::Error);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {}

fn tag(e: io::Error) -> io::Error {
    io::Error::other(SourceError(e))
}

fn is_tagged(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SourceError>())
}

fn untag(e: io::Error) -> String {
    e.to_string()
}

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(tag)
    }
}

/// Removes what is not a backup under `name`: objects without a manifest (a backup that
/// failed and could not clean up, or was cut short by a crash) and unfinished uploads. Call it
/// with the definition's lock held, so no backup of it is in flight. Returns what was removed.
pub async fn sweep(storage: &Storage, name: &str) -> Result<Vec<String>, Failure> {
    let keys = storage.list(name).await.at(Stage::Cleanup)?;
    let id_of = |key: &str| {
        let file = key.rsplit('/').next().unwrap_or(key);
        file.split('.').next().unwrap_or(file).to_owned()
    };
    let with_manifest: std::collections::BTreeSet<String> = keys
        .iter()
        .filter(|k| k.ends_with(".json"))
        .map(|k| id_of(k))
        .collect();
    let mut removed = Vec::new();
    for key in keys.iter().filter(|k| !with_manifest.contains(&id_of(k))) {
        storage
            .delete(key)
            .await
            .map_err(|e| Failure::new(Stage::Cleanup, format!("{}: {e}", storage.show(key))))?;
        removed.push(key.clone());
    }
    let staged = storage.remove_staging(name);
    if staged > 0 {
        removed.push(format!("{staged} unfinished upload file(s)"));
    }
    Ok(removed)
}
