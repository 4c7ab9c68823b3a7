//! Desired certificates in, served certificates out: load, obtain, renew, report.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use instant_acme::Account;
use rand::Rng;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::acme::{self, Responders};
use crate::error::Error;
use crate::files::FilePair;
use crate::http01::Http01Challenges;
use crate::parse::{CertInfo, certified_key_from_pem, self_signed};
use crate::persist::{check_id, ensure_dir, read_optional, write_private};
use crate::store::CertStore;
use crate::types::{CertSource, CertSpec, CertStatus, ChallengeKind, ManagerConfig, SourceKind};

/// Keeps the [`CertStore`] filled with the certificates of the current [`CertSpec`]s.
/// Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    config: ManagerConfig,
    store: CertStore,
    responders: Responders,
    entries: Mutex<BTreeMap<String, Entry>>,
    wake: Notify,
    accounts: tokio::sync::Mutex<HashMap<String, Account>>,
}

struct Entry {
    spec: CertSpec,
    files: Option<FilePair>,
    info: Option<CertInfo>,
    last_attempt: Option<SystemTime>,
    last_error: Option<String>,
    next_attempt: Option<SystemTime>,
    failures: u32,
}

/// Beside an ACME certificate: what it was ordered for, to notice a change of names or CA.
#[derive(Serialize, Deserialize, PartialEq)]
struct AcmeMeta {
    directory: String,
    names: Vec<String>,
}

impl Manager {
    /// Creates `config.dir` (0700). Nothing is served until [`Manager::set_certs`].
    pub fn new(
        config: ManagerConfig,
        store: CertStore,
        http01: Http01Challenges,
    ) -> Result<Manager, Error> {
        ensure_dir(&config.dir)?;
        let responders = Responders {
            store: store.clone(),
            http01,
            dns_hook: config.dns_hook.clone(),
            order_timeout: config.order_timeout,
        };
        Ok(Manager {
            inner: Arc::new(Inner {
                config,
                store,
                responders,
                entries: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                accounts: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Makes `specs` the set of certificates: removed ids stop being served, new or changed
    /// ones are loaded now (self-signed generated or read back, files read, ACME certificates
    /// read from `certs/`); missing ACME certificates are ordered by [`Manager::run`].
    /// Returns the problems per id (also kept in [`Manager::status`]); an id with a problem
    /// keeps serving what it served before, if anything.
    pub fn set_certs(&self, specs: Vec<CertSpec>) -> Vec<(String, Error)> {
        let mut problems = Vec::new();
        let mut entries = self.inner.entries.lock().unwrap();
        let wanted: HashMap<&str, &CertSpec> = specs.iter().map(|s| (s.id.as_str(), s)).collect();
        entries.retain(|id, _| {
            let keep = wanted.contains_key(id.as_str());
            if !keep {
                self.inner.store.remove(id);
            }
            keep
        });
        for spec in specs {
            if let Err(err) = check_id(&spec.id) {
                problems.push((spec.id.clone(), err));
                continue;
            }
            if entries.get(&spec.id).is_some_and(|e| e.spec == spec) {
                continue;
            }
            let id = spec.id.clone();
            let mut entry = Entry {
                spec,
                files: None,
                info: None,
                last_attempt: None,
                last_error: None,
                next_attempt: None,
                failures: 0,
            };
            if let Err(err) = self.load(&mut entry) {
                warn!(cert = id, error = %err, "certificate not loaded");
                entry.last_error = Some(err.to_string());
                problems.push((id.clone(), err));
            }
            entries.insert(id, entry);
        }
        drop(entries);
        self.inner.wake.notify_one();
        problems
    }

    fn load(&self, entry: &mut Entry) -> Result<(), Error> {
        let dir = &self.inner.config.dir;
        let id = entry.spec.id.clone();
        match &entry.spec.source {
            CertSource::SelfSigned { names } => {
                let (crt, key) = paths(dir, &id, "self-signed");
                let saved = read_pair(&crt, &key, &id)?
                    .filter(|(_, info)| info.names == *names && info.not_after > SystemTime::now());
                let (certified, info) = match saved {
                    Some(saved) => saved,
                    None => {
                        let (certified, pem) = self_signed(names)?;
                        write_private(&key, pem.key.as_bytes())?;
                        write_private(&crt, pem.cert.as_bytes())?;
                        let info = CertInfo::from_der(&certified.cert[0])?;
                        (certified, info)
                    }
                };
                self.serve(entry, certified, info);
            }
            CertSource::Files { cert, key } => {
                let mut pair = FilePair::new(cert.clone(), key.clone());
                entry.last_attempt = Some(SystemTime::now());
                let loaded = pair.reload_if_changed();
                entry.files = Some(pair);
                if let Some(certified) = loaded? {
                    let info = CertInfo::from_der(&certified.cert[0])?;
                    self.serve(entry, certified, info);
                }
            }
            CertSource::Acme {
                directory, names, ..
            } => {
                let (crt, key) = paths(dir, &id, "acme");
                entry.next_attempt = Some(SystemTime::now());
                if let Some((certified, info)) = read_pair(&crt, &key, &id)? {
                    let meta = read_optional(&dir.join(format!("{id}.acme.json")))?
                        .and_then(|m| serde_json::from_slice::<AcmeMeta>(&m).ok());
                    let same = meta.is_some_and(|m| m.directory == *directory && m.names == *names);
                    if same {
                        entry.next_attempt = Some(renew_at(&info));
                    }
                    // Serve it even when the names changed: it still covers some of them
                    // until the new one is issued.
                    self.serve(entry, certified, info);
                }
            }
        }
        Ok(())
    }

    fn serve(&self, entry: &mut Entry, certified: Arc<CertifiedKey>, info: CertInfo) {
        let names = match &entry.spec.source {
            CertSource::SelfSigned { names } | CertSource::Acme { names, .. } => names.clone(),
            CertSource::Files { .. } => info.names.clone(),
        };
        self.inner.store.set(&entry.spec.id, names, certified);
        entry.info = Some(info);
    }

    /// Every certificate's state, by id.
    pub fn status(&self) -> Vec<CertStatus> {
        let entries = self.inner.entries.lock().unwrap();
        entries
            .values()
            .map(|e| {
                let (source, names) = match &e.spec.source {
                    CertSource::SelfSigned { names } => (SourceKind::SelfSigned, names.clone()),
                    CertSource::Files { .. } => (SourceKind::Files, Vec::new()),
                    CertSource::Acme { names, .. } => (SourceKind::Acme, names.clone()),
                };
                CertStatus {
                    id: e.spec.id.clone(),
                    source,
                    names: e.info.as_ref().map_or(names, |i| i.names.clone()),
                    serving: e.info.is_some(),
                    issuer: e.info.as_ref().map(|i| i.issuer.clone()),
                    not_before: e.info.as_ref().map(|i| i.not_before),
                    not_after: e.info.as_ref().map(|i| i.not_after),
                    serial: e.info.as_ref().map(|i| i.serial.clone()),
                    last_attempt: e.last_attempt,
                    last_error: e.last_error.clone(),
                    next_attempt: e.next_attempt,
                }
            })
            .collect()
    }

    /// Orders the ACME certificate `id` now (forgetting its backoff). No-op for other sources.
    pub fn renew_now(&self, id: &str) {
        let mut entries = self.inner.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(id)
            && matches!(entry.spec.source, CertSource::Acme { .. })
        {
            entry.next_attempt = Some(SystemTime::now());
            entry.failures = 0;
        }
        drop(entries);
        self.inner.wake.notify_one();
    }

    /// Reloads `Files` certificates whose files changed; a pair that fails to load keeps the
    /// previous certificate serving and records the error. [`Manager::run`] calls this every
    /// `file_check`; the daemon may call it on SIGHUP.
    pub fn reload_files(&self) {
        let mut entries = self.inner.entries.lock().unwrap();
        for entry in entries.values_mut() {
            let Some(files) = entry.files.as_mut() else {
                continue;
            };
            match files.reload_if_changed() {
                Ok(None) => {}
                Ok(Some(certified)) => {
                    entry.last_attempt = Some(SystemTime::now());
                    match CertInfo::from_der(&certified.cert[0]) {
                        Ok(info) => {
                            info!(cert = entry.spec.id, "certificate files reloaded");
                            entry.last_error = None;
                            self.serve(entry, certified, info);
                        }
                        Err(err) => entry.last_error = Some(err.to_string()),
                    }
                }
                Err(err) => {
                    let text = err.to_string();
                    if entry.last_error.as_ref() != Some(&text) {
                        warn!(cert = entry.spec.id, error = %text, "certificate files not reloaded; the previous certificate stays");
                        entry.last_attempt = Some(SystemTime::now());
                        entry.last_error = Some(text);
                    }
                }
            }
        }
    }

    /// Obtains missing and renews due ACME certificates, one order at a time, until
    /// `shutdown` completes; reloads changed files. An order cut short by shutdown is simply
    /// ordered again at the next start.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let file_check = self.inner.config.file_check;
        let mut next_file_check = tokio::time::Instant::now() + file_check;
        loop {
            if tokio::time::Instant::now() >= next_file_check {
                self.reload_files();
                next_file_check = tokio::time::Instant::now() + file_check;
            }
            let due = self.next_due();
            if let Some((id, at)) = &due
                && *at <= SystemTime::now()
            {
                tokio::select! {
                    () = self.attempt(id) => {}
                    () = &mut shutdown => return,
                }
                let gap = jitter(self.inner.config.order_gap, 0.5);
                tokio::select! {
                    () = tokio::time::sleep(gap) => {}
                    () = &mut shutdown => return,
                }
                continue;
            }
            let mut wake_at = next_file_check;
            if let Some((_, at)) = due {
                let until = at.duration_since(SystemTime::now()).unwrap_or_default();
                wake_at = wake_at.min(tokio::time::Instant::now() + until);
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake_at) => {}
                () = self.inner.wake.notified() => {}
                () = &mut shutdown => return,
            }
        }
    }

    fn next_due(&self) -> Option<(String, SystemTime)> {
        let entries = self.inner.entries.lock().unwrap();
        entries
            .values()
            .filter_map(|e| Some((e.spec.id.clone(), e.next_attempt?)))
            .min_by_key(|(_, at)| *at)
    }

    async fn attempt(&self, id: &str) {
        let spec = {
            let mut entries = self.inner.entries.lock().unwrap();
            let Some(entry) = entries.get_mut(id) else {
                return;
            };
            entry.last_attempt = Some(SystemTime::now());
            entry.spec.clone()
        };
        let CertSource::Acme {
            email,
            directory,
            names,
            challenge,
        } = &spec.source
        else {
            return;
        };
        info!(cert = id, names = ?names, "ordering certificate");
        let result = self.order(email, directory, names, *challenge, id).await;

        let mut entries = self.inner.entries.lock().unwrap();
        let Some(entry) = entries.get_mut(id).filter(|e| e.spec == spec) else {
            return; // the spec changed while ordering: the new one gets its own order
        };
        match result {
            Ok((certified, info)) => {
                info!(cert = id, not_after = ?info.not_after, issuer = info.issuer, "certificate installed");
                entry.next_attempt = Some(renew_at(&info));
                entry.failures = 0;
                entry.last_error = None;
                self.serve(entry, certified, info);
            }
            Err(err) => {
                let text = err.to_string();
                entry.failures += 1;
                let delay = if acme::is_rate_limited(&text) {
                    self.inner.config.retry_max
                } else {
                    backoff(
                        entry.failures,
                        self.inner.config.retry_min,
                        self.inner.config.retry_max,
                    )
                };
                warn!(cert = id, error = %text, retry_in = ?delay, serving_old = entry.info.is_some(), "certificate order failed");
                entry.next_attempt = Some(SystemTime::now() + delay);
                entry.last_error = Some(text);
            }
        }
    }

    async fn order(
        &self,
        email: &str,
        directory: &str,
        names: &[String],
        challenge: ChallengeKind,
        id: &str,
    ) -> Result<(Arc<CertifiedKey>, CertInfo), Error> {
        let account = self.account(directory, email).await?;
        let (chain, key) = acme::obtain(&account, names, challenge, &self.inner.responders).await?;
        let certified = certified_key_from_pem(id, chain.as_bytes(), key.as_bytes())?;
        let info = CertInfo::from_der(&certified.cert[0])?;
        let dir = &self.inner.config.dir;
        let (crt_path, key_path) = paths(dir, id, "acme");
        write_private(&key_path, key.as_bytes())?;
        write_private(&crt_path, chain.as_bytes())?;
        let meta = AcmeMeta {
            directory: directory.to_owned(),
            names: names.to_vec(),
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| Error::Acme(e.to_string()))?;
        write_private(&dir.join(format!("{id}.acme.json")), &meta)?;
        Ok((certified, info))
    }

    async fn account(&self, directory: &str, email: &str) -> Result<Account, Error> {
        let mut accounts = self.inner.accounts.lock().await;
        if let Some(account) = accounts.get(directory) {
            return Ok(account.clone());
        }
        let config = &self.inner.config;
        let account = acme::account(&config.dir, directory, email, &config.extra_roots).await?;
        accounts.insert(directory.to_owned(), account.clone());
        Ok(account)
    }
}

fn paths(dir: &Path, id: &str, kind: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{id}.{kind}.crt")),
        dir.join(format!("{id}.{kind}.key")),
    )
}

/// A saved chain + key, or `None` when either file is missing or they do not load (then a
/// new one is made; the broken files are overwritten).
fn read_pair(
    crt: &Path,
    key: &Path,
    id: &str,
) -> Result<Option<(Arc<CertifiedKey>, CertInfo)>, Error> {
    let (Some(chain), Some(key_pem)) = (read_optional(crt)?, read_optional(key)?) else {
        return Ok(None);
    };
    match certified_key_from_pem(id, &chain, &key_pem) {
        Ok(certified) => {
            let info = CertInfo::from_der(&certified.cert[0])?;
            Ok(Some((certified, info)))
        }
        Err(err) => {
            warn!(cert = id, error = %err, "saved certificate unusable; a new one will be made");
            Ok(None)
        }
    }
}

/// Renew when a third of the lifetime remains, a little earlier at random (up to 1/30 of the
/// lifetime) so certificates issued together do not renew together.
fn renew_at(info: &CertInfo) -> SystemTime {
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    let spread = lifetime.mul_f64(rand::rng().random_range(0.0..1.0 / 30.0));
    info.not_after
        .checked_sub(lifetime / 3 + spread)
        .unwrap_or(info.not_before)
}

/// `min · 2^(failures-1)`, capped at `max`, then jittered down by up to half.
fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let exp = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    let delay = min.saturating_mul(exp).min(max);
    delay.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// `d` ± `fraction`.
fn jitter(d: Duration, fraction: f64) -> Duration {
    d.mul_f64(rand::rng().random_range(1.0 - fraction..=1.0 + fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        for (failures, ceiling) in [(1, 60), (2, 120), (3, 240), (7, 3600), (40, 3600)] {
            let d = backoff(failures, min, max);
            let ceiling = Duration::from_secs(ceiling);
            assert!(d <= ceiling && d >= ceiling / 2, "{failures}: {d:?}");
        }
    }

    #[test]
    fn renewal_when_a_third_remains() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        let info = CertInfo {
            names: vec![],
            issuer: String::new(),
            not_before: now,
            not_after: now + 90 * day,
            serial: String::new(),
        };
        let at = renew_at(&info);
        assert!(at <= now + 60 * day && at >= now + 57 * day, "{at:?}");
    }
}
