//! Backups of the apps' data, wired to the daemon: berth.toml's `[databases]` and `[backups]`
//! of the serving release resolved into a [`backup::Job`] (secrets expanded, S3 settings from
//! the app's secrets), runs recorded in the store and the history, drills and retention after
//! each success, metrics, and the schedules (`schedule.rs`) and restores (`restore.rs`).
//!
//! One run of a backup definition at a time: a run holds the definition's lock for its whole
//! length (a second manual run is refused, a scheduled one skipped).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::{BackupStatus, BackupTrigger};
use backup::{Job, Keys, Location, Manifest, Receipt, S3Settings, Source, Storage};
use spec::{AppSpec, BackupSource, BackupSpec, BackupTarget, DatabaseEngine, VerifyCadence};
use store::BackupRow;

use crate::core::Core;
use crate::lock::lock;
use crate::refusal::Refusal;

mod events;
mod metrics;
mod restore;
mod retention;
mod schedule;
mod view;

pub(crate) use events::Events;
use view::receipt;

pub(crate) use metrics::BackupMetrics;

/// What the daemon keeps in memory about backups: the per-definition locks and the figures
/// `/metrics` and `status` show.
#[derive(Default)]
pub(crate) struct Backups {
    locks: Mutex<BTreeMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    pub stats: Arc<Mutex<BTreeMap<Key, Stats>>>,
}

/// A backup definition: (app, `[backups.NAME]`).
pub(crate) type Key = (String, String);

/// The figures of one backup definition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub last_success: Option<SystemTime>,
    pub last_duration: Option<Duration>,
    pub last_size: Option<u64>,
    pub failures: u64,
    pub last_verify_success: Option<SystemTime>,
    /// A retention or drill problem after the last successful backup.
    pub problem: Option<String>,
}

/// A backup definition of the serving release, resolved.
pub(crate) struct Planned {
    pub app: String,
    pub name: String,
    pub spec: BackupSpec,
    pub job: Job,
    /// `postgres 127.0.0.1:5432/shop (database main)`.
    pub what: String,
    pub to: String,
}

impl Core {
    /// The definition `name` of `app` (the only one when `name` is None), resolved against
    /// the serving release.
    pub fn plan_backup(&self, app: &str, name: Option<&str>) -> Result<Planned, Refusal> {
        let (spec, env) = self
            .with_running(app, |r| (r.spec.clone(), r.env.clone()))
            .ok_or_else(|| {
                Refusal::not_found(format!("{app} has no serving release"))
                    .hint("backups are defined by the serving release's berth.toml; deploy it first (`berth status` lists the apps)")
            })?;
        let name = pick_name(&spec, app, name)?;
        let bs = spec.backups[&name].clone();
        let lookup = |n: &str| env.get(n).cloned();
        let shared = self.dir.shared(app);
        let (source, what) = match &bs.source {
            BackupSource::Database(db) => {
                let Some(d) = spec.databases.get(db) else {
                    return Err(Refusal::bad_input(format!(
                        "backup {name} of {app}: no [databases.{db}]"
                    )));
                };
                match &d.engine {
                    DatabaseEngine::Postgres { url, verify_url } => {
                        let parse = |template: &str, key: &str| {
                            backup::Postgres::parse(&spec::expand(template, lookup)).map_err(|e| {
                                Refusal::bad_input(format!("[databases.{db}] {key} of {app}: {e}"))
                                    .hint(format!(
                                        "check the secret it names: `berth secrets list {app}`"
                                    ))
                            })
                        };
                        let pg = parse(url, "url")?;
                        let verify = verify_url
                            .as_deref()
                            .map(|v| parse(v, "verify_url"))
                            .transpose()?;
                        let what = format!("postgres {} (database {db})", pg.shown());
                        (Source::Postgres { db: pg, verify }, what)
                    }
                    DatabaseEngine::Sqlite { path } => (
                        Source::Sqlite(shared.join(path)),
                        format!("sqlite {path} (database {db})"),
                    ),
                }
            }
            BackupSource::Dir(path) => (Source::Dir(shared.join(path)), format!("dir {path}")),
        };
        let location = match &bs.to {
            BackupTarget::Default => Location::Local(self.dir.root().join("backups").join(app)),
            BackupTarget::Local(dir) => Location::Local(dir.clone()),
            BackupTarget::S3 { bucket, prefix } => {
                let need = |key: &str| {
                    env.get(key).filter(|v| !v.is_empty()).cloned().ok_or_else(|| {
                        Refusal::bad_input(format!(
                            "backup {name} of {app} goes to s3://{bucket} but the secret {key} has no value"
                        ))
                        .hint(format!("berth secrets set {app} {key}"))
                    })
                };
                Location::S3 {
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    settings: S3Settings {
                        endpoint: env.get("S3_ENDPOINT").filter(|v| !v.is_empty()).cloned(),
                        region: env.get("S3_REGION").filter(|v| !v.is_empty()).cloned(),
                        access_key_id: need("S3_ACCESS_KEY_ID")?,
                        secret_access_key: need("S3_SECRET_ACCESS_KEY")?,
                        path_style: env
                            .get("S3_PATH_STYLE")
                            .map(|v| matches!(v.as_str(), "1" | "true" | "yes")),
                    },
                }
            }
        };
        let to = location.to_string();
        let storage = Storage::open(&location).map_err(|e| {
            Refusal::from(anyhow::anyhow!(
                "backup {name} of {app}: open the target: {e}"
            ))
        })?;
        let work_dir = self.backup_work_dir().map_err(Refusal::from)?;
        Ok(Planned {
            app: app.to_owned(),
            name: name.clone(),
            spec: bs,
            job: Job {
                app: app.to_owned(),
                name,
                source,
                storage,
                work_dir,
                tools: self.backup_tools.clone(),
            },
            what,
            to,
        })
    }

    /// `STATE/tmp/backups` (0700): SQLite copies and drills' scratch files.
    fn backup_work_dir(&self) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.dir.tmp().join("backups");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(dir)
    }

    fn backup_lock(&self, app: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.backups.locks)
            .entry((app.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// A backup now (`berth backup run`, a schedule): refused while another run of the same
    /// definition is going on. Returns the backup and, when it succeeded, what went wrong in
    /// the drill or retention that followed.
    pub async fn run_backup(
        &self,
        app: &str,
        name: Option<&str>,
        trigger: BackupTrigger,
        events: &Events,
    ) -> Result<(api::BackupRecord, Option<String>), Refusal> {
        let planned = self.plan_backup(app, name)?;
        let lock = self.backup_lock(app, &planned.name);
        let Ok(_running) = lock.try_lock() else {
            return Err(Refusal::bad_input(format!(
                "backup {} of {app} is already running",
                planned.name
            ))
            .hint("wait for it: `berth backup list` shows it as running"));
        };
        let (row, manifest) = self.backup_locked(&planned, trigger, events).await?;
        let mut record = self.record(&row);
        let mut problem = None;
        if let Some(manifest) = manifest {
            problem = self.after_success(&planned, &manifest, events).await;
            // The drill's receipt, if one ran.
            if let Ok(Some(row)) = self
                .db
                .call({
                    let (app, id) = (app.to_owned(), row.id.clone());
                    move |s| s.backup(&app, &id)
                })
                .await
            {
                record.drill = self.record(&row).drill;
            }
        }
        Ok((record, problem))
    }

    /// One backup of `planned`, its lock held: recorded as running, then ok (with its manifest)
    /// or failed (with the stage and why).
    async fn backup_locked(
        &self,
        planned: &Planned,
        trigger: BackupTrigger,
        events: &Events,
    ) -> Result<(BackupRow, Option<Manifest>), Refusal> {
        let (app, name) = (planned.app.as_str(), planned.name.as_str());
        let keys = Keys::load_or_create(self.dir.root())
            .map_err(|e| Refusal::from(anyhow::anyhow!("the backup key: {e}")))?;
        let started = SystemTime::now();
        let id = backup::new_id(started);
        {
            let (a, n, i) = (app.to_owned(), name.to_owned(), id.clone());
            self.db
                .call(move |s| s.begin_backup(&a, &n, &i, trigger, started))
                .await
                .map_err(anyhow::Error::from)?;
        }
        events.step(format!(
            "{trigger} backup {name} of {app}: {} to {}, id {id}",
            planned.what, planned.to
        ));
        let result = backup::backup(&planned.job, &id, keys.recipient(), events.progress()).await;
        release_memory();
        let took = started.elapsed().unwrap_or_default();
        let (a, i) = (app.to_owned(), id.clone());
        let manifest = match result {
            Ok(manifest) => {
                let json = serde_json::to_string(&manifest).unwrap_or_default();
                self.db
                    .call(move |s| s.backup_succeeded(&a, &i, &json))
                    .await
                    .map_err(anyhow::Error::from)?;
                self.record_event(
                    app,
                    "backup",
                    format!(
                        "{name} {id} ok ({trigger}): {} stored, {} read, {} tables, {} rows, {:.1}s",
                        api::human_bytes(manifest.stored_bytes),
                        api::human_bytes(manifest.plain_bytes),
                        manifest.tables.len(),
                        manifest.rows(),
                        took.as_secs_f64()
                    ),
                )
                .await;
                let mut stats = lock(&self.backups.stats);
                let st = stats.entry((app.to_owned(), name.to_owned())).or_default();
                st.last_success = Some(started);
                st.last_duration = Some(took);
                st.last_size = Some(manifest.stored_bytes);
                st.problem = None;
                Some(manifest)
            }
            Err(f) => {
                let message = self.redact(&f.message);
                let stage = f.stage.as_str().to_owned();
                let (st2, m2) = (stage.clone(), message.clone());
                self.db
                    .call(move |s| s.backup_failed(&a, &i, &st2, &m2))
                    .await
                    .map_err(anyhow::Error::from)?;
                self.record_event(
                    app,
                    "backup-failed",
                    format!("{name} {id} failed ({trigger}) at {stage}: {message}"),
                )
                .await;
                lock(&self.backups.stats)
                    .entry((app.to_owned(), name.to_owned()))
                    .or_default()
                    .failures += 1;
                self.notify_event(
                    app,
                    spec::NotifyEvent::BackupFailed,
                    format!("backup {name} of {app} failed at {stage}"),
                    message,
                );
                None
            }
        };
        let row = self
            .db
            .call({
                let (a, i) = (app.to_owned(), id.clone());
                move |s| s.backup(&a, &i)
            })
            .await
            .map_err(anyhow::Error::from)?
            .ok_or_else(|| Refusal::from(anyhow::anyhow!("backup {id} vanished from the store")))?;
        Ok((row, manifest))
    }

    /// After a successful backup: a drill when one is due, then retention. Returns what went
    /// wrong in either, which is also recorded (history, status, metrics).
    async fn after_success(
        &self,
        planned: &Planned,
        manifest: &Manifest,
        events: &Events,
    ) -> Option<String> {
        let mut problems = Vec::new();
        if self.drill_due(planned).await {
            events.step(format!("restore drill of {}", manifest.id));
            if let Some(receipt) = self.drill(planned, manifest, None, events).await
                && !receipt.ok
            {
                problems.push(format!(
                    "drill failed: {}",
                    receipt.problem.unwrap_or_default()
                ));
            }
        }
        if let Err(e) = self.retention(planned, events).await {
            problems.push(format!("retention failed: {e}"));
        }
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        lock(&self.backups.stats)
            .entry((planned.app.clone(), planned.name.clone()))
            .or_default()
            .problem = problem.clone();
        problem
    }

    /// Whether the definition's `verify` cadence calls for a drill now.
    async fn drill_due(&self, planned: &Planned) -> bool {
        let window = match planned.spec.verify {
            VerifyCadence::Off => return false,
            VerifyCadence::Every => return true,
            VerifyCadence::Daily => Duration::from_secs(24 * 3600),
            VerifyCadence::Weekly => Duration::from_secs(7 * 24 * 3600),
        };
        let rows = self.backup_rows(&planned.app, Some(&planned.name)).await;
        let last = rows
            .iter()
            .filter_map(receipt)
            .filter(|r| r.ok)
            .map(|r| r.at)
            .max();
        let now = unix(SystemTime::now());
        // A little slack, so a daily backup at 02:00 drills daily although it took a minute.
        last.is_none_or(|at| now - at >= window.as_secs() as i64 - 600)
    }

    /// A restore drill of `manifest`, recorded. None when no drill could start (the key is not
    /// on this server): that is said, not recorded as a failed drill.
    pub async fn drill(
        &self,
        planned: &Planned,
        manifest: &Manifest,
        identity: Option<age::x25519::Identity>,
        events: &Events,
    ) -> Option<Receipt> {
        let (app, name) = (planned.app.as_str(), planned.name.as_str());
        let identity = match identity {
            Some(i) => i,
            None => match self.identity(None).map_err(|r| r.message) {
                Ok(i) => i,
                Err(why) => {
                    events.step(format!("drill skipped: {why}"));
                    self.record_event(
                        app,
                        "drill-skipped",
                        format!("{name} {}: {why}", manifest.id),
                    )
                    .await;
                    return None;
                }
            },
        };
        let mut receipt = backup::drill(&planned.job, manifest, &identity).await;
        release_memory();
        receipt.problem = receipt.problem.map(|p| self.redact(&p));
        let json = serde_json::to_string(&receipt).unwrap_or_default();
        let (a, i) = (app.to_owned(), manifest.id.clone());
        if let Err(err) = self.db.call(move |s| s.record_drill(&a, &i, &json)).await {
            tracing::error!(app, error = %err, "record a drill");
        }
        let detail = match &receipt.problem {
            None => format!(
                "{name} {} restored into a scratch target and matched: {} tables, {} rows in {:.1}s",
                manifest.id,
                receipt.tables,
                receipt.rows,
                receipt.duration_ms as f64 / 1000.0
            ),
            Some(p) => format!("{name} {} FAILED: {p}", manifest.id),
        };
        events.step(format!("drill: {detail}"));
        if !receipt.ok {
            self.notify_event(
                app,
                spec::NotifyEvent::BackupFailed,
                format!("the restore drill of backup {name} of {app} failed"),
                detail.clone(),
            );
        }
        self.record_event(
            app,
            if receipt.ok { "drill" } else { "drill-failed" },
            detail,
        )
        .await;
        if receipt.ok {
            lock(&self.backups.stats)
                .entry((app.to_owned(), name.to_owned()))
                .or_default()
                .last_verify_success = Some(SystemTime::now());
        }
        Some(receipt)
    }

    /// At start: runs a stopped daemon left `running` are failed, their partial objects
    /// removed where the definition is still known; the figures for `/metrics` are loaded.
    pub async fn recover_backups(&self) {
        match self.db.call(|s| s.interrupt_running_backups()).await {
            Ok(rows) => {
                for r in rows {
                    self.record_event(
                        &r.app,
                        "backup-failed",
                        format!(
                            "{} {} failed: the daemon stopped while it ran",
                            r.name, r.id
                        ),
                    )
                    .await;
                }
            }
            Err(err) => tracing::error!(error = %err, "mark interrupted backups"),
        }
        let apps = self.db.apps().await.unwrap_or_default();
        let mut stats = BTreeMap::new();
        for app in apps {
            for r in self.backup_rows(&app.name, None).await {
                let st: &mut Stats = stats.entry((app.name.clone(), r.name.clone())).or_default();
                if r.status == BackupStatus::Ok && st.last_success.is_none() {
                    st.last_success = Some(r.started_at);
                    st.last_duration = r
                        .finished_at
                        .and_then(|f| f.duration_since(r.started_at).ok());
                    st.last_size = r
                        .manifest
                        .as_deref()
                        .and_then(|m| serde_json::from_str::<Manifest>(m).ok())
                        .map(|m| m.stored_bytes);
                }
                if let Some(rc) = receipt(&r).filter(|rc| rc.ok) {
                    let at = UNIX_EPOCH + Duration::from_secs(rc.at.max(0) as u64);
                    if st.last_verify_success.is_none_or(|t| t < at) {
                        st.last_verify_success = Some(at);
                    }
                }
            }
        }
        *lock(&self.backups.stats) = stats;
    }
}

/// Gives the memory a backup, drill or restore freed back to the system. zstd's workers and
/// the stream's buffers are freed on threads of the blocking pool, whose malloc arenas keep
/// them: without this the daemon's RSS stays ~100 MB after one large backup instead of
/// returning to its ~20 MB.
pub(crate) fn release_memory() {
    // SAFETY: malloc_trim only walks glibc's own heaps under their locks; it takes no pointer
    // of ours and is safe to call from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

fn pick_name(spec: &AppSpec, app: &str, name: Option<&str>) -> Result<String, Refusal> {
    let names: Vec<&String> = spec.backups.keys().collect();
    let listed = names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match name {
        Some(n) if spec.backups.contains_key(n) => Ok(n.to_owned()),
        Some(n) if names.is_empty() => Err(Refusal::not_found(format!(
            "{app} has no backup {n}: its berth.toml defines no [backups.NAME]"
        ))),
        Some(n) => Err(Refusal::not_found(format!("{app} has no backup {n}"))
            .hint(format!("its backups: {listed}"))),
        None => match names.as_slice() {
            [only] => Ok((*only).clone()),
            [] => Err(Refusal::not_found(format!("{app} defines no backups"))
                .hint("add a [backups.NAME] table to berth.toml and deploy")),
            _ => Err(
                Refusal::bad_input(format!("{app} defines several backups; name one"))
                    .hint(format!("its backups: {listed}")),
            ),
        },
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
