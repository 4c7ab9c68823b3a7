//! [`Db`]: the store for async callers. SQLite calls are short but blocking, so each one runs
//! on tokio's blocking pool, one at a time behind one lock. A caller writes
//! `db.create_release(app, digest).await`; the cloning and the thread hop live here, once.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{
    App, Deploy, DeployResult, Error, Gate, Maintenance, NewDeploy, ProcessRecord, Release,
    ReleaseStatus, Result, SecretMeta, SecretOrigin, StandbyRecord, Step, Store,
};

/// A cheap-to-clone handle on the one [`Store`] of a daemon.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db {
            store: Arc::new(Mutex::new(store)),
        }
    }

    /// Run `f` on the store, off the async workers. Every write is its own transaction, so a
    /// panic inside `f` (a bug) leaves nothing half-written: the lock is taken over, not
    /// poisoned for good.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    pub async fn apps(&self) -> Result<Vec<App>> {
        self.call(|s| s.apps()).await
    }

    pub async fn app(&self, name: &str) -> Result<Option<App>> {
        let name = name.to_owned();
        self.call(move |s| s.app(&name)).await
    }

    /// The app (if known) and its releases, newest first, read together.
    pub async fn app_releases(&self, app: &str) -> Result<(Option<App>, Vec<Release>)> {
        let app = app.to_owned();
        self.call(move |s| Ok((s.app(&app)?, s.releases(&app)?)))
            .await
    }

    pub async fn create_release(&self, app: &str, digest: &str) -> Result<Release> {
        let (app, digest) = (app.to_owned(), digest.to_owned());
        self.call(move |s| s.create_release(&app, &digest)).await
    }

    pub async fn set_release_status(
        &self,
        app: &str,
        id: &str,
        status: ReleaseStatus,
    ) -> Result<()> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.call(move |s| s.set_release_status(&app, &id, status))
            .await
    }

    pub async fn set_current(&self, app: &str, id: &str) -> Result<()> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.call(move |s| s.set_current(&app, &id)).await
    }

    pub async fn clear_current(&self, app: &str) -> Result<()> {
        let app = app.to_owned();
        self.call(move |s| s.clear_current(&app)).await
    }

    pub async fn begin_deploy(&self, d: NewDeploy<'_>) -> Result<i64> {
        let (kind, app, release) = (d.kind, d.app.to_owned(), d.release.to_owned());
        let (from, user) = (d.from_release.map(str::to_owned), d.user.to_owned());
        self.call(move |s| {
            s.begin_deploy(&NewDeploy {
                kind,
                app: &app,
                release: &release,
                from_release: from.as_deref(),
                user: &user,
            })
        })
        .await
    }

    pub async fn set_deploy_step(&self, id: i64, step: Step) -> Result<()> {
        self.call(move |s| s.set_deploy_step(id, step)).await
    }

    /// Close a deploy record: its result, the release's status when it changed, and the step
    /// it ends at (`done`, or `drain` while the old release drains).
    pub async fn finish_deploy(
        &self,
        id: i64,
        result: DeployResult,
        gate: Option<Gate>,
        reason: Option<String>,
        release_status: Option<(String, String, ReleaseStatus)>,
        step: Step,
    ) -> Result<()> {
        self.call(move |s| {
            if let Some((app, release, status)) = &release_status {
                s.set_release_status(app, release, *status)?;
            }
            s.set_deploy_step(id, step)?;
            s.finish_deploy(id, result, gate, reason.as_deref())
        })
        .await
    }

    pub async fn set_switched(&self, id: i64) -> Result<()> {
        self.call(move |s| s.set_switched(id)).await
    }

    pub async fn set_drained(&self, id: i64) -> Result<()> {
        self.call(move |s| s.set_drained(id)).await
    }

    pub async fn interrupt_running_deploys(&self) -> Result<usize> {
        self.call(|s| s.interrupt_running_deploys()).await
    }

    pub async fn deploys(&self, app: Option<&str>, limit: u32) -> Result<Vec<Deploy>> {
        let app = app.map(str::to_owned);
        self.call(move |s| s.deploys(app.as_deref(), limit)).await
    }

    pub async fn record_process(&self, p: ProcessRecord) -> Result<()> {
        self.call(move |s| s.record_process(&p)).await
    }

    pub async fn forget_process(&self, p: ProcessRecord) -> Result<()> {
        self.call(move |s| s.forget_process(&p)).await
    }

    pub async fn processes(&self) -> Result<Vec<ProcessRecord>> {
        self.call(|s| s.processes()).await
    }

    pub async fn record_job(&self, pgid: i32, app: &str, what: &'static str) -> Result<()> {
        let app = app.to_owned();
        self.call(move |s| s.record_job(pgid, &app, what)).await
    }

    pub async fn forget_job(&self, pgid: i32) -> Result<()> {
        self.call(move |s| s.forget_job(pgid)).await
    }

    pub async fn take_jobs(&self) -> Result<Vec<(i32, String, String)>> {
        self.call(|s| s.take_jobs()).await
    }

    pub async fn record_event(&self, app: &str, kind: &'static str, detail: String) -> Result<()> {
        let app = app.to_owned();
        self.call(move |s| s.record_event(&app, kind, &detail))
            .await
    }

    // ---- secrets (ciphertext only) ------------------------------------------------------------

    pub async fn put_secret(
        &self,
        app: &str,
        name: &str,
        ciphertext: Vec<u8>,
        origin: SecretOrigin,
    ) -> Result<bool> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.call(move |s| s.put_secret(&app, &name, &ciphertext, origin))
            .await
    }

    /// Several secrets of one app.
    pub async fn put_secrets(
        &self,
        app: &str,
        values: Vec<(String, Vec<u8>)>,
        origin: SecretOrigin,
    ) -> Result<()> {
        let app = app.to_owned();
        self.call(move |s| {
            for (name, ciphertext) in &values {
                s.put_secret(&app, name, ciphertext, origin)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn secret_values(&self, app: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let app = app.to_owned();
        self.call(move |s| s.secret_values(&app)).await
    }

    pub async fn all_secret_values(&self) -> Result<Vec<(String, String, Vec<u8>)>> {
        self.call(|s| s.all_secret_values()).await
    }

    pub async fn secrets(&self, app: &str) -> Result<Vec<SecretMeta>> {
        let app = app.to_owned();
        self.call(move |s| s.secrets(&app)).await
    }

    pub async fn delete_secret(&self, app: &str, name: &str) -> Result<bool> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.call(move |s| s.delete_secret(&app, &name)).await
    }

    // ---- warm standbys --------------------------------------------------------------------------

    pub async fn set_standby(&self, s: StandbyRecord) -> Result<()> {
        self.call(move |st| st.set_standby(&s)).await
    }

    pub async fn standbys(&self) -> Result<Vec<StandbyRecord>> {
        self.call(|s| s.standbys()).await
    }

    // ---- maintenance mode ---------------------------------------------------------------------

    pub async fn set_maintenance(&self, app: &str, message: &str) -> Result<Maintenance> {
        let (app, message) = (app.to_owned(), message.to_owned());
        self.call(move |s| s.set_maintenance(&app, &message)).await
    }

    pub async fn clear_maintenance(&self, app: &str) -> Result<bool> {
        let app = app.to_owned();
        self.call(move |s| s.clear_maintenance(&app)).await
    }

    pub async fn maintenance(&self) -> Result<Vec<Maintenance>> {
        self.call(|s| s.maintenance()).await
    }
}
