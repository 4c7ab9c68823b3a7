//! Secrets in the daemon: generated on deploy, validated before anything starts, decrypted only
//! into a process environment, and redacted from everything berth itself prints.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use spec::{AppSpec, SecretSpec};
use store::SecretOrigin;

use super::apps::{Daemon, Failure};
use crate::api::SecretInfo;

impl Daemon {
    /// Decrypted values of `app`'s secrets, by name.
    pub(super) async fn secret_values(
        self: &Arc<Self>,
        app: &str,
    ) -> Result<BTreeMap<String, String>> {
        let a = app.to_owned();
        let stored = self.with_store(move |s| s.secret_values(&a)).await?;
        stored
            .into_iter()
            .map(|(name, ct)| {
                let plain = self.key().decrypt(&ct).with_context(|| {
                    format!("decrypt secret {name} of {app}: is this the key it was stored with?")
                })?;
                Ok((name, String::from_utf8_lossy(&plain).into_owned()))
            })
            .collect()
    }

    /// Before a release starts: create missing generated secrets, and check that every required
    /// one is set and valid. Every problem is listed at once; values are never shown.
    pub(super) async fn ensure_secrets(self: &Arc<Self>, spec: &AppSpec) -> Result<(), Failure> {
        let app = spec.instance_name();
        let have = self
            .secret_values(&app)
            .await
            .map_err(|e| Failure::new("secrets", format!("{e:#}")))?;
        let mut problems = Vec::new();
        let mut generated = Vec::new();
        for (name, s) in &spec.secrets {
            match (s, have.get(name)) {
                (SecretSpec::Generate { kind, len }, None) => {
                    generated.push((
                        name.clone(),
                        self.key()
                            .encrypt(secrets::generate(*kind, *len).as_bytes()),
                    ));
                }
                (SecretSpec::Required { .. }, None) => {
                    problems.push(format!("{name} is required and not set"))
                }
                (_, Some(value)) => {
                    if let Err(why) = s.check_value(value) {
                        problems.push(format!("{name}: {why}"));
                    }
                }
            }
        }
        if !problems.is_empty() {
            let first = spec
                .secrets
                .keys()
                .find(|n| !have.contains_key(*n))
                .cloned()
                .unwrap_or_else(|| "NAME".to_owned());
            return Err(Failure::new(
                "secrets",
                format!("secrets of {app}: {}", problems.join("; ")),
            )
            .hint(format!(
                "set them with `berth secrets set {app} {first}` (the value is read from stdin)"
            )));
        }
        if !generated.is_empty() {
            let a = app.clone();
            let names: Vec<String> = generated.iter().map(|(n, _)| n.clone()).collect();
            self.with_store(move |s| {
                for (name, ct) in &generated {
                    s.put_secret(&a, name, ct, SecretOrigin::Generated)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| Failure::new("secrets", format!("{e:#}")))?;
            tracing::info!(app, secrets = ?names, "generated secrets");
            self.refresh_redactor().await;
        }
        Ok(())
    }

    /// The complete environment of `app`'s processes in `release`: secrets, `[env]` with
    /// references expanded, and berth's own variables.
    pub(super) async fn release_env(
        self: &Arc<Self>,
        spec: &AppSpec,
        release: &str,
    ) -> Result<BTreeMap<String, String>> {
        let app = spec.instance_name();
        let values = self.secret_values(&app).await?;
        let mut env = spec.resolve_env(|name| values.get(name).cloned());
        let shared = self.state.join("apps").join(&app).join("shared");
        env.insert("BERTH_SHARED".to_owned(), shared.display().to_string());
        env.insert("BERTH_RELEASE".to_owned(), release.to_owned());
        env.insert("BERTH_APP".to_owned(), app);
        Ok(env)
    }

    /// Rebuild the redactor from every stored secret of every app.
    pub(super) async fn refresh_redactor(self: &Arc<Self>) {
        let all = match self.with_store(|s| s.all_secret_values()).await {
            Ok(all) => all,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "read secrets for redaction");
                return;
            }
        };
        let pairs: Vec<(String, String)> = all
            .into_iter()
            .filter_map(|(_, name, ct)| {
                let plain = self.key().decrypt(&ct).ok()?;
                Some((name, String::from_utf8_lossy(&plain).into_owned()))
            })
            .collect();
        *self.redactor.lock().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(secrets::Redactor::new(pairs));
    }

    /// `text` with every known secret value replaced by `[redacted NAME]`.
    pub fn redact(&self, text: &str) -> String {
        let redactor = self
            .redactor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        redactor.redact(text).into_owned()
    }

    pub(super) fn redactor(&self) -> Arc<secrets::Redactor> {
        self.redactor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Names, origin and dates of `app`'s secrets, declared or stored; never values.
    pub async fn list_secrets(self: &Arc<Self>, app: &str) -> Result<Vec<SecretInfo>> {
        let a = app.to_owned();
        let stored = self.with_store(move |s| s.secrets(&a)).await?;
        let spec = self.running_spec(app);
        let mut out: BTreeMap<String, SecretInfo> = BTreeMap::new();
        for m in stored {
            out.insert(
                m.name.clone(),
                SecretInfo {
                    name: m.name,
                    origin: m.origin.as_str().to_owned(),
                    set: true,
                    created: Some(supervisor::logs::format_time(m.created_at)),
                    rotated: m.rotated_at.map(supervisor::logs::format_time),
                    declared: false,
                    used_by: vec![],
                },
            );
        }
        if let Some(spec) = &spec {
            for (name, s) in &spec.secrets {
                let e = out.entry(name.clone()).or_insert_with(|| SecretInfo {
                    name: name.clone(),
                    origin: match s {
                        SecretSpec::Generate { .. } => "generated".to_owned(),
                        SecretSpec::Required { .. } => "set".to_owned(),
                    },
                    set: false,
                    created: None,
                    rotated: None,
                    declared: true,
                    used_by: vec![],
                });
                e.declared = true;
                // Every service gets every secret of its app.
                e.used_by = spec.services.keys().cloned().collect();
            }
        }
        Ok(out.into_values().collect())
    }

    /// Store a value the operator gave. Checked against the running spec when there is one.
    pub async fn set_secret(
        self: &Arc<Self>,
        app: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, (String, Option<String>)> {
        if let Some(spec) = self.running_spec(app) {
            match spec.secrets.get(name) {
                None => {
                    return Err((
                        format!("{app} declares no secret {name}"),
                        Some(format!(
                            "add `{name} = {{ required = true }}` to [secrets] in berth.toml, or check the name"
                        )),
                    ));
                }
                Some(s) => s
                    .check_value(value)
                    .map_err(|why| (format!("{name}: {why}"), None))?,
            }
        }
        let (a, n, ct) = (
            app.to_owned(),
            name.to_owned(),
            self.key().encrypt(value.as_bytes()),
        );
        let replaced = self
            .with_store(move |s| s.put_secret(&a, &n, &ct, SecretOrigin::Set))
            .await
            .map_err(|e| (format!("{e:#}"), None))?;
        self.refresh_redactor().await;
        Ok(replaced)
    }

    pub async fn unset_secret(self: &Arc<Self>, app: &str, name: &str) -> Result<bool> {
        let (a, n) = (app.to_owned(), name.to_owned());
        let existed = self.with_store(move |s| s.delete_secret(&a, &n)).await?;
        self.refresh_redactor().await;
        Ok(existed)
    }

    /// A new value for `name`: generated again for a generated secret, else `value`.
    pub async fn rotate_secret(
        self: &Arc<Self>,
        app: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), (String, Option<String>)> {
        let spec = self.running_spec(app).ok_or_else(|| {
            (
                format!("{app} is not running"),
                Some("deploy it first; `berth status` lists running apps".to_owned()),
            )
        })?;
        let new = match (spec.secrets.get(name), value) {
            (None, _) => return Err((format!("{app} declares no secret {name}"), None)),
            (Some(SecretSpec::Generate { kind, len }), None) => secrets::generate(*kind, *len),
            (Some(s), Some(v)) => {
                s.check_value(&v)
                    .map_err(|why| (format!("{name}: {why}"), None))?;
                v
            }
            (Some(SecretSpec::Required { .. }), None) => {
                return Err((
                    format!("{name} is set by the operator: give the new value on stdin"),
                    None,
                ));
            }
        };
        let (a, n, ct) = (
            app.to_owned(),
            name.to_owned(),
            self.key().encrypt(new.as_bytes()),
        );
        let origin = match spec.secrets.get(name) {
            Some(SecretSpec::Generate { .. }) => SecretOrigin::Generated,
            _ => SecretOrigin::Set,
        };
        self.with_store(move |s| s.put_secret(&a, &n, &ct, origin))
            .await
            .map_err(|e| (format!("{e:#}"), None))?;
        self.refresh_redactor().await;
        Ok(())
    }

    pub(super) fn key(&self) -> Arc<secrets::Key> {
        self.key.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key, as text an operator keeps somewhere safe (`berth secrets export-key`).
    pub fn export_key(&self) -> String {
        self.key().export()
    }

    /// Replace the key (moving a server). Refused when stored secrets do not decrypt with the
    /// new key, unless `force`: they would be lost.
    pub async fn import_key(
        self: &Arc<Self>,
        text: &str,
        force: bool,
    ) -> Result<(), (String, Option<String>)> {
        let key = secrets::Key::import(text).map_err(|e| {
            (
                format!("that is not a berth secrets key: {e}"),
                Some("pass what `berth secrets export-key` printed".to_owned()),
            )
        })?;
        let stored = self
            .with_store(|s| s.all_secret_values())
            .await
            .map_err(|e| (format!("{e:#}"), None))?;
        let unreadable: Vec<String> = stored
            .iter()
            .filter(|(_, _, ct)| key.decrypt(ct).is_err())
            .map(|(app, name, _)| format!("{app}/{name}"))
            .collect();
        if !unreadable.is_empty() && !force {
            return Err((
                format!(
                    "{} stored secret(s) do not decrypt with this key: {}",
                    unreadable.len(),
                    unreadable.join(", ")
                ),
                Some(
                    "import the key they were stored with, or pass --force and set them again"
                        .to_owned(),
                ),
            ));
        }
        let path = self.state.join(secrets::KEY_FILE);
        key.write(&path)
            .map_err(|e| (format!("write {}: {e}", path.display()), None))?;
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        self.refresh_redactor().await;
        Ok(())
    }

    fn running_spec(&self, app: &str) -> Option<Arc<AppSpec>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .map(|r| r.spec.clone())
    }
}
