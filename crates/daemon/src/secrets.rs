//! Secrets in the daemon: generated on deploy, validated before anything starts, decrypted only
//! into a process environment, and redacted from everything berth itself prints.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use api::{Gate, SecretInfo, SecretOrigin};
use spec::{AppSpec, SecretSpec};

use crate::core::Core;
use crate::failure::Failure;
use crate::refusal::{Refusal, RefusalKind};
use crate::users::AppUser;

impl Core {
    /// Decrypted values of `app`'s secrets, by name.
    pub(crate) async fn secret_values(&self, app: &str) -> Result<BTreeMap<String, String>> {
        let stored = self.db.secret_values(app).await?;
        stored
            .into_iter()
            .map(|(name, ct)| {
                let plain = self.key.load().decrypt(&ct).with_context(|| {
                    format!("decrypt secret {name} of {app}: is this the key it was stored with?")
                })?;
                Ok((name, String::from_utf8_lossy(&plain).into_owned()))
            })
            .collect()
    }

    /// Before a release starts: create missing generated secrets, and check that every required
    /// one is set and valid. Every problem is listed at once; values are never shown.
    pub(crate) async fn ensure_secrets(&self, spec: &AppSpec) -> Result<(), Failure> {
        let app = spec.instance_name();
        let have = self
            .secret_values(&app)
            .await
            .map_err(|e| Failure::new(Gate::Secrets, format!("{e:#}")))?;
        let mut problems = Vec::new();
        // Secrets the operator must set (or set again, when the stored value is not valid).
        let mut to_set = Vec::new();
        let mut generated = Vec::new();
        for (name, s) in &spec.secrets {
            match (s, have.get(name)) {
                (SecretSpec::Generate { kind, len }, None) => {
                    generated.push((
                        name.clone(),
                        self.key
                            .load()
                            .encrypt(secrets::generate(*kind, *len).as_bytes()),
                    ));
                }
                (SecretSpec::Required { .. }, None) => {
                    problems.push(format!("{name} is required and not set"));
                    to_set.push(name.as_str());
                }
                (_, Some(value)) => {
                    if let Err(why) = s.check_value(value) {
                        problems.push(format!("{name}: {why}"));
                        to_set.push(name.as_str());
                    }
                }
            }
        }
        if !problems.is_empty() {
            let commands: Vec<String> = to_set
                .iter()
                .map(|name| format!("`berth secrets set {app} {name}`"))
                .collect();
            return Err(Failure::new(
                Gate::Secrets,
                format!("secrets of {app}: {}", problems.join("; ")),
            )
            .hint(format!(
                "set {} with {} (each value is read from stdin), then deploy again",
                if to_set.len() == 1 { "it" } else { "them" },
                commands.join(", ")
            )));
        }
        if !generated.is_empty() {
            let names: Vec<String> = generated.iter().map(|(n, _)| n.clone()).collect();
            self.db
                .put_secrets(&app, generated, SecretOrigin::Generated)
                .await
                .map_err(|e| Failure::new(Gate::Secrets, e.to_string()))?;
            tracing::info!(app, secrets = ?names, "generated secrets");
            self.refresh_redactor().await;
        }
        Ok(())
    }

    /// The complete environment of `app`'s processes in `release`: secrets, `[env]` with
    /// references expanded, and berth's own variables.
    pub(crate) async fn release_env(
        &self,
        spec: &AppSpec,
        release: &str,
        user: Option<&AppUser>,
    ) -> Result<BTreeMap<String, String>> {
        let app = spec.instance_name();
        let values = self.secret_values(&app).await?;
        let mut env = spec.resolve_env(|name| values.get(name).cloned());
        let path = |p: std::path::PathBuf| p.display().to_string();
        env.insert("BERTH_SHARED".to_owned(), path(self.dir.shared(&app)));
        env.insert("HOME".to_owned(), path(self.dir.home(&app)));
        env.insert("TMPDIR".to_owned(), path(self.dir.app_tmp(&app)));
        if let Some(user) = user {
            env.insert("USER".to_owned(), user.name.clone());
            env.insert("LOGNAME".to_owned(), user.name.clone());
        }
        env.insert("BERTH_RELEASE".to_owned(), release.to_owned());
        env.insert("BERTH_APP".to_owned(), app);
        Ok(env)
    }

    /// Rebuild the redactor from every stored secret of every app.
    pub(crate) async fn refresh_redactor(&self) {
        let all = match self.db.all_secret_values().await {
            Ok(all) => all,
            Err(err) => {
                tracing::error!(error = %err, "read secrets for redaction");
                return;
            }
        };
        let pairs: Vec<(String, String)> = all
            .into_iter()
            .filter_map(|(_, name, ct)| {
                let plain = self.key.load().decrypt(&ct).ok()?;
                Some((name, String::from_utf8_lossy(&plain).into_owned()))
            })
            .collect();
        self.redactor.store(Arc::new(secrets::Redactor::new(pairs)));
    }

    /// `text` with every known secret value replaced by `[redacted NAME]`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.load().redact(text).into_owned()
    }

    /// Names, origin and dates of `app`'s secrets, declared or stored; never values.
    pub async fn list_secrets(&self, app: &str) -> Result<Vec<SecretInfo>, Refusal> {
        self.known_app(app).await?;
        let stored = self.db.secrets(app).await.map_err(anyhow::Error::new)?;
        let spec = self.running_spec(app);
        let mut out: BTreeMap<String, SecretInfo> = BTreeMap::new();
        for m in stored {
            out.insert(
                m.name.clone(),
                SecretInfo {
                    name: m.name,
                    origin: m.origin,
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
                        SecretSpec::Generate { .. } => SecretOrigin::Generated,
                        SecretSpec::Required { .. } => SecretOrigin::Set,
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

    /// Create every missing generated secret of a running app.
    pub async fn generate_secrets(&self, app: &str) -> Result<(), Refusal> {
        let spec = self.running_spec(app).ok_or_else(|| {
            Refusal::bad_input(format!(
                "{app} is not running, so berth does not know its [secrets] yet"
            ))
            .hint("deploy it: missing generated secrets are created on every deploy")
        })?;
        self.ensure_secrets(&spec).await.map_err(|f| Refusal {
            hint: f.hint,
            ..Refusal::bad_input(f.reason)
        })
    }

    /// Store a value the operator gave, for an app berth knows (or, with `new`, one not
    /// deployed yet). Checked against the running spec when it declares the name; a name it
    /// does not declare (yet) is kept for the release that will, and the answer says so.
    pub async fn set_secret(
        &self,
        app: &str,
        name: &str,
        value: &str,
        new: bool,
    ) -> Result<api::SecretSet, Refusal> {
        if new {
            spec::check_app_name(app).map_err(Refusal::bad_input)?;
            spec::check_secret_name(name).map_err(Refusal::bad_input)?;
        } else {
            self.known_app_and_name(app, name).await?;
        }
        let note = match self.running_spec(app) {
            Some(spec) => match spec.secrets.get(name) {
                Some(s) => {
                    s.check_value(value)
                        .map_err(|why| Refusal::bad_input(format!("{name}: {why}")))?;
                    None
                }
                None => Some(format!(
                    "the live release of {app} does not declare {name}; it reaches the app once a release declares it in [secrets] (e.g. `{name} = {{ required = true }}`)"
                )),
            },
            None => None,
        };
        let ciphertext = self.key.load().encrypt(value.as_bytes());
        let replaced = self
            .db
            .put_secret(app, name, ciphertext, SecretOrigin::Set)
            .await
            .map_err(anyhow::Error::new)?;
        self.refresh_redactor().await;
        Ok(api::SecretSet { replaced, note })
    }

    /// `app` is one berth knows (a release of it was ever made) and `name` a valid secret name.
    async fn known_app_and_name(&self, app: &str, name: &str) -> Result<(), Refusal> {
        spec::check_secret_name(name).map_err(Refusal::bad_input)?;
        self.known_app(app).await.map_err(|refusal| match refusal.kind {
            RefusalKind::NotFound => refusal.hint(format!(
                "`berth status` lists the apps; to set a secret of an app before its first deploy, run `berth secrets set --new {app} {name}`"
            )),
            _ => refusal,
        })
    }

    pub async fn unset_secret(&self, app: &str, name: &str) -> Result<bool, Refusal> {
        self.known_app_and_name(app, name).await?;
        let existed = self
            .db
            .delete_secret(app, name)
            .await
            .map_err(anyhow::Error::new)?;
        self.refresh_redactor().await;
        Ok(existed)
    }

    /// A new value for `name`: generated again for a generated secret, else `value`.
    pub async fn rotate_secret(
        &self,
        app: &str,
        name: &str,
        value: Option<String>,
    ) -> Result<(), Refusal> {
        self.known_app_and_name(app, name).await?;
        let spec = self.running_spec(app).ok_or_else(|| {
            Refusal::bad_input(format!("{app} is not running"))
                .hint("deploy it first; `berth status` lists running apps")
        })?;
        let (new, origin) = match (spec.secrets.get(name), value) {
            (None, _) => {
                return Err(Refusal::bad_input(format!(
                    "{app} declares no secret {name}"
                )));
            }
            (Some(SecretSpec::Generate { kind, len }), None) => {
                (secrets::generate(*kind, *len), SecretOrigin::Generated)
            }
            (Some(s), Some(v)) => {
                s.check_value(&v)
                    .map_err(|why| Refusal::bad_input(format!("{name}: {why}")))?;
                let origin = match s {
                    SecretSpec::Generate { .. } => SecretOrigin::Generated,
                    SecretSpec::Required { .. } => SecretOrigin::Set,
                };
                (v, origin)
            }
            (Some(SecretSpec::Required { .. }), None) => {
                return Err(Refusal::bad_input(format!(
                    "{name} is set by the operator: give the new value on stdin"
                )));
            }
        };
        let ciphertext = self.key.load().encrypt(new.as_bytes());
        self.db
            .put_secret(app, name, ciphertext, origin)
            .await
            .map_err(anyhow::Error::new)?;
        self.refresh_redactor().await;
        Ok(())
    }

    /// The key, as text an operator keeps somewhere safe (`berth secrets export-key`).
    pub fn export_key(&self) -> String {
        self.key.load().export()
    }

    /// Replace the key (moving a server). Refused when stored secrets do not decrypt with the
    /// new key, unless `force`: they would be lost.
    pub async fn import_key(&self, text: &str, force: bool) -> Result<(), Refusal> {
        let key = secrets::Key::import(text).map_err(|e| {
            Refusal::bad_input(format!("that is not a berth secrets key: {e}"))
                .hint("pass what `berth secrets export-key` printed")
        })?;
        let stored = self
            .db
            .all_secret_values()
            .await
            .map_err(anyhow::Error::new)?;
        let unreadable: Vec<String> = stored
            .iter()
            .filter(|(_, _, ct)| key.decrypt(ct).is_err())
            .map(|(app, name, _)| format!("{app}/{name}"))
            .collect();
        if !unreadable.is_empty() && !force {
            return Err(Refusal::bad_input(format!(
                "{} stored secret(s) do not decrypt with this key: {}",
                unreadable.len(),
                unreadable.join(", ")
            ))
            .hint("import the key they were stored with, or pass --force and set them again"));
        }
        let path = self.dir.secrets_key();
        key.write(&path)
            .map_err(|e| Refusal::from(anyhow::anyhow!("write {}: {e}", path.display())))?;
        self.key.store(Arc::new(key));
        self.refresh_redactor().await;
        Ok(())
    }

    fn running_spec(&self, app: &str) -> Option<Arc<AppSpec>> {
        self.with_running(app, |r| r.spec.clone())
    }
}
