//! The state directory: its layout, its permissions, and the lock that makes one daemon its
//! only user.
//!
//! ```text
//! STATE/ (0711)  state.db  secrets.key  daemon.lock  berth.sock (0600)
//!   apps/APP/releases/ID/   apps/APP/{shared,home,tmp}/   logs/APP/SERVICE/   certs/   tmp/
//!   pipes/APP/SERVICE.N@RELEASE.{out,err}   (instances' stdout/stderr FIFOs)
//! ```
//!
//! Who may read what, once apps have users of their own, is in `ownership.rs`.
//!
//! ```text
//! ```

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

/// Where everything lives under one state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn secrets_key(&self) -> PathBuf {
        self.root.join(secrets::KEY_FILE)
    }

    pub fn socket(&self) -> PathBuf {
        self.root.join("berth.sock")
    }

    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Instances' stdout/stderr FIFOs (`APP/SERVICE.N@RELEASE.{out,err}`): they outlive the
    /// daemon, and the next one reads on from them.
    pub fn pipes(&self) -> PathBuf {
        self.root.join("pipes")
    }

    /// `logs/APP`: one directory per service below it.
    pub fn app_logs(&self, app: &str) -> PathBuf {
        self.logs().join(app)
    }

    /// Uploads being unpacked; emptied at start.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `apps/APP`: everything of one app.
    pub fn app(&self, app: &str) -> PathBuf {
        self.root.join("apps").join(app)
    }

    pub fn releases(&self, app: &str) -> PathBuf {
        self.app(app).join("releases")
    }

    pub fn release(&self, app: &str, release: &str) -> PathBuf {
        self.releases(app).join(release)
    }

    /// Data that survives releases (uploads, SQLite files): `BERTH_SHARED`.
    pub fn shared(&self, app: &str) -> PathBuf {
        self.app(app).join("shared")
    }

    /// The app's user's `HOME`.
    pub fn home(&self, app: &str) -> PathBuf {
        self.app(app).join("home")
    }

    /// The app's `TMPDIR`, and its `/tmp` where the kernel allows a private one.
    pub fn app_tmp(&self, app: &str) -> PathBuf {
        self.app(app).join("tmp")
    }

    /// Create the directory and its parts whether or not they existed: the root and `apps/`
    /// traversable but not listable (0711: an app's user reaches its own directory and
    /// nothing else), the rest private (0700); and clear what interrupted uploads left in
    /// `tmp/`.
    pub fn prepare(&self) -> Result<()> {
        for (dir, mode) in [
            (self.root.clone(), 0o711),
            (self.root.join("apps"), 0o711),
            (self.logs(), 0o700),
            (self.pipes(), 0o700),
            (self.tmp(), 0o700),
            (self.certs(), 0o700),
        ] {
            private_dir(&dir)?;
            // It may have existed already, with other modes.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("set mode {mode:o} on {}", dir.display()))?;
        }
        if let Ok(entries) = std::fs::read_dir(self.tmp()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    /// The files at the top of the state directory, 0600 whatever made them (an older berth,
    /// SQLite under another umask): the root is traversable, so their mode is what guards them.
    pub fn make_private_files(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("read {}", self.root.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("set mode 0600 on {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// One daemon per state directory: an exclusive lock on `daemon.lock`, held until the
    /// returned value is dropped.
    pub fn lock(&self) -> Result<Flock<std::fs::File>> {
        let path = self.root.join("daemon.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "another berth daemon is running with state directory {}; stop it first or pass a different --state",
                self.root.display()
            ),
            Err((_, err)) => {
                Err(anyhow::Error::new(err).context(format!("lock {}", path.display())))
            }
        }
    }

    /// Listen on `berth.sock` (0600). Only with the lock held: a socket file found here then
    /// belongs to a dead daemon and is replaced.
    pub fn bind_socket(&self) -> Result<UnixListener> {
        let path = self.socket();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(
                    anyhow::Error::new(err).context(format!("remove stale {}", path.display()))
                );
            }
        }
        let listener =
            UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("set mode 0600 on {}", path.display()))?;
        Ok(listener)
    }
}

fn private_dir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("create {}", path.display()))
}
