//! A backup, a drill and a restore, stage by stage.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use age::x25519::Recipient;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use crate::failure::{At, Failure, Stage};
use crate::manifest::{Durations, FORMAT, Manifest};
use crate::pg::{self, Postgres, Tools};
use crate::seal::{Sealed, Sealer};
use crate::storage::{Chunk, Storage};
use crate::{dir, sqlite};

/// Bytes handed to the upload at a time.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks queued between sealing and the upload (and between opening and `pg_restore`).
pub(crate) const CHUNKS_QUEUED: usize = 4;
/// How long a `pg_restore` that stopped reading its input gets to exit and say why.
pub(crate) const TOOL_EXIT: Duration = Duration::from_secs(30);

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

pub(crate) fn unix(t: SystemTime) -> i64 {
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
