//! Where a rollout's release comes from, and the release trees on disk.
//!
//! A [`Source`] becomes a [`Target`] (a release id, its tree, its validated spec) in two
//! parts: what needs no slot (unpacking an upload names the app) and what does (a new release
//! id in the store, the tree moved or linked into place). An upload is unpacked into a
//! temporary directory that removes itself unless the rollout moves it into place.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::{DeployKind, Gate, Phase, ReleaseStatus};
use bytes::Bytes;
use spec::AppSpec;

use super::progress::Progress;
use crate::core::Core;
use crate::failure::Failure;
use crate::ownership;
use crate::release::{HISTORY, Lineage, environment_of, load_spec};
use crate::users::{self, AppUser};

/// What a rollout installs.
pub(crate) enum Source {
    /// A source archive from `berth deploy`, with its `--env` overlay.
    Upload { archive: Bytes, env: Option<String> },
    /// A kept release of `app` (`berth rollback`).
    Kept { app: String, release: String },
    /// The live release of `app` again, as a new release with a fresh environment.
    Relink { app: String },
}

impl Source {
    pub fn kind(&self) -> DeployKind {
        match self {
            Source::Upload { .. } => DeployKind::Deploy,
            Source::Kept { .. } => DeployKind::Rollback,
            Source::Relink { .. } => DeployKind::Restart,
        }
    }
}

/// A source once its app is known; still holding no slot.
pub(crate) enum Pending {
    Upload {
        tree: tempfile::TempDir,
        spec: Arc<AppSpec>,
        digest: String,
    },
    Kept {
        release: String,
    },
    Relink,
}

/// The release a rollout goes to.
pub(crate) struct Target {
    pub release: String,
    pub spec: Arc<AppSpec>,
    pub dir: PathBuf,
}

impl Core {
    /// The app a source is for, and what is left to do once its slot is held. An upload is
    /// unpacked and validated here, and must not clash with another app's routes.
    pub async fn pending(
        &self,
        source: Source,
        progress: &Progress,
    ) -> Result<(String, Pending), Failure> {
        match source {
            Source::Upload { archive, env } => {
                progress.phase(Phase::Unpack, format!("{} KiB", archive.len() / 1024));
                let digest = deploy::digest(&archive);
                let (tree, spec) = self.unpack(archive, env).await?;
                self.check_route_conflicts(&spec)?;
                let app = spec.instance_name();
                Ok((app, Pending::Upload { tree, spec, digest }))
            }
            Source::Kept { app, release } => Ok((app, Pending::Kept { release })),
            Source::Relink { app } => Ok((app, Pending::Relink)),
        }
    }

    /// Make the release: a new id for an upload or a relink, its tree in place, its spec read.
    /// `release` is set as soon as the release has an id, for the outcome.
    pub async fn target(
        &self,
        app: &str,
        pending: Pending,
        release: &mut String,
        progress: &Progress,
    ) -> Result<Target, Failure> {
        match pending {
            Pending::Upload { tree, spec, digest } => {
                let created = self
                    .db
                    .create_release(app, &digest)
                    .await
                    .map_err(|e| Failure::new(Gate::Unpack, e.to_string()))?;
                *release = created.id;
                let dir = self.dir.release(app, release);
                self.place(app, tree.path(), &dir).map_err(|err| {
                    Failure::new(
                        Gate::Unpack,
                        format!("place release {release} in {}: {err}", dir.display()),
                    )
                })?;

                Ok(Target {
                    release: release.clone(),
                    spec,
                    dir,
                })
            }
            Pending::Kept { release: kept } => {
                *release = kept;
                let dir = self.dir.release(app, release);
                let spec = load_spec(&dir, environment_of(app))
                    .map_err(|e| Failure::new(Gate::Start, format!("{e:#}")))?;
                Ok(Target {
                    release: release.clone(),
                    spec: Arc::new(spec),
                    dir,
                })
            }
            Pending::Relink => {
                let Some((from, from_dir)) =
                    self.with_running(app, |r| (r.id.clone(), r.dir.clone()))
                else {
                    return Err(Failure::new(Gate::Start, format!("{app} is not running")));
                };
                let (_, releases) = self
                    .db
                    .app_releases(app)
                    .await
                    .map_err(|e| Failure::new(Gate::Start, e.to_string()))?;
                let digest = releases
                    .into_iter()
                    .find(|r| r.id == from)
                    .map(|r| r.digest)
                    .unwrap_or_default();
                let created = self
                    .db
                    .create_release(app, &digest)
                    .await
                    .map_err(|e| Failure::new(Gate::Start, e.to_string()))?;
                *release = created.id;
                let dir = self.dir.release(app, release);
                progress.phase(
                    Phase::Restart,
                    format!(
                        "{release} runs the files of {} with the new environment",
                        from_dir.display()
                    ),
                );
                // A tree of many files: linked off the async workers.
                let (src, dst, env) = (
                    from_dir.clone(),
                    dir.clone(),
                    environment_of(app).map(str::to_owned),
                );
                let spec = tokio::task::spawn_blocking(move || {
                    link_tree(&src, &dst)?;
                    load_spec(&dst, env.as_deref())
                })
                .await
                .map_err(anyhow::Error::new)
                .and_then(|r| r)
                .map_err(|e| {
                    Failure::new(Gate::Start, format!("prepare release {release}: {e:#}"))
                })?;
                Ok(Target {
                    release: release.clone(),
                    spec: Arc::new(spec),
                    dir,
                })
            }
        }
    }

    /// `deploy --dry-run`: unpack and validate the upload, compare with what runs, change
    /// nothing.
    pub async fn plan(&self, archive: Bytes, env: Option<String>) -> Result<api::Plan, Failure> {
        let (_tree, spec) = self.unpack(archive, env).await?;
        self.check_route_conflicts(&spec)?;
        let app = spec.instance_name();
        let running = self.with_running(&app, |r| (r.spec.clone(), r.id.clone()));
        let plan = crate::plan::Plan::new(&spec, running.as_ref().map(|(s, _)| &**s));
        Ok(plan.to_api(spec.name.clone(), running.map(|(_, id)| id)))
    }

    /// Unpack an upload into a temporary directory under `tmp/` and validate its berth.toml.
    async fn unpack(
        &self,
        archive: Bytes,
        env: Option<String>,
    ) -> Result<(tempfile::TempDir, Arc<AppSpec>), Failure> {
        let tmp = self.dir.tmp();
        let unpacked = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let tree = tempfile::Builder::new().prefix("upload-").tempdir_in(tmp)?;
            deploy::unpack(&archive[..], tree.path())?;
            let spec = load_spec(tree.path(), env.as_deref())?;
            Ok((tree, Arc::new(spec)))
        })
        .await;
        match unpacked {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(err)) => Err(Failure::new(Gate::Unpack, format!("{err:#}"))),
            Err(err) => Err(Failure::new(
                Gate::Unpack,
                format!("unpack task failed: {err}"),
            )),
        }
    }

    /// The app's user (made on its first deploy) and its directories, owned as
    /// `ownership.rs` says. `None` when the daemon cannot switch users.
    pub async fn seat(&self, spec: &AppSpec) -> Result<Option<AppUser>, Failure> {
        let app = spec.instance_name();
        let user = users::ensure(&self.isolation, spec, &self.dir.home(&app)).await?;
        let (dir, owner, name) = (self.dir.clone(), user.clone(), app.clone());
        blocking(move || ownership::app_dirs(&dir, &name, owner.as_ref()))
            .await
            .map_err(|e| {
                Failure::new(Gate::User, format!("prepare the directories of {app}: {e}"))
            })?;
        Ok(user)
    }

    /// Give a release tree to the app's user, for its `[build]`.
    pub async fn open_for_build(&self, tree: &Path, user: &AppUser) -> Result<(), Failure> {
        let (tree, user) = (tree.to_owned(), user.clone());
        blocking(move || ownership::for_build(&tree, &user))
            .await
            .map_err(|e| {
                Failure::new(
                    Gate::Build,
                    format!("give the release tree to the app's user: {e}"),
                )
            })
    }

    /// Lock a release tree down (read-only to the app's group, nothing for others), then
    /// hard-link the files it shares with `previous`, so a release costs the disk space of
    /// what changed (the modes compare once both trees are locked). Linking is only an
    /// economy: a failure of it is logged.
    pub async fn seal(
        &self,
        tree: &Path,
        user: Option<&AppUser>,
        previous: Option<PathBuf>,
    ) -> Result<(), Failure> {
        if let Some(user) = user {
            let (t, gid) = (tree.to_owned(), user.gid);
            blocking(move || ownership::lock_down(&t, gid))
                .await
                .map_err(|e| {
                    Failure::new(
                        Gate::Start,
                        format!("lock the release tree {}: {e}", tree.display()),
                    )
                })?;
        }
        if let Some(previous) = previous {
            let t = tree.to_owned();
            match blocking(move || deploy::link_unchanged(&t, &previous)).await {
                Ok(linked) => {
                    tracing::debug!(tree = %tree.display(), linked, "files shared with the previous release")
                }
                Err(err) => {
                    tracing::warn!(tree = %tree.display(), error = %err, "share unchanged files with the previous release")
                }
            }
        }
        Ok(())
    }

    /// Move an unpacked tree to its release directory (same filesystem: a rename). The
    /// temporary directory it leaves is gone, so its guard has nothing left to remove.
    fn place(&self, app: &str, tree: &Path, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir.shared(app))?;
        std::fs::create_dir_all(self.dir.releases(app))?;
        std::fs::rename(tree, dir)
    }

    /// Delete the trees of failed releases, and of the releases that served beyond the `keep`
    /// that served last (never the live one nor the rollback target).
    pub async fn prune(&self, app: &str, keep: usize) {
        let Ok((known, releases)) = self.db.app_releases(app).await else {
            return;
        };
        let current = known.and_then(|c| c.current_release);
        // A release that still drains, or is kept warm, has processes running in its tree.
        let draining: Vec<String> = self
            .apps()
            .get(app)
            .map(|a| {
                let warm = a.standby.as_ref().map(|s| s.release.id.clone());
                a.draining
                    .iter()
                    .map(|(id, ..)| id.clone())
                    .chain(warm)
                    .collect()
            })
            .unwrap_or_default();
        let Ok(deploys) = self.db.deploys(Some(app), HISTORY).await else {
            return;
        };
        let lineage = Lineage::new(&deploys, current.as_deref());
        let doomed = lineage.to_prune(&releases, keep);
        for id in doomed
            .into_iter()
            .filter(|id| !draining.iter().any(|d| d == id))
        {
            let dir = self.dir.release(app, id);
            if let Err(err) = std::fs::remove_dir_all(&dir)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(app, release = %id, error = %err, "prune release");
                continue;
            }
            if let Err(err) = self
                .db
                .set_release_status(app, id, ReleaseStatus::Pruned)
                .await
            {
                tracing::warn!(app, release = %id, error = %err, "record a pruned release");
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

/// Recreate the tree `src` at `dst` with hard links (copies where linking fails): a new release
/// of the same files costs no space and stays independent of the old one's deletion.
fn link_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}
