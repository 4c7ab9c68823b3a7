//! The state directory: its layout, its permissions, and the lock that makes one daemon its
//! only user.
//!
//! ```text
//! STATE/ (0700)  state.db  secrets.key  daemon.lock  berth.sock (0600)
//!   apps/APP/releases/ID/   apps/APP/shared/   logs/APP/SERVICE/   certs/   tmp/
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

    /// `logs/APP`: one directory per service below it.
    pub fn app_logs(&self, app: &str) -> PathBuf {
        self.logs().join(app)
    }

    /// Uploads being unpacked; emptied at start.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn releases(&self, app: &str) -> PathBuf {
        self.root.join("apps").join(app).join("releases")
    }

    pub fn release(&self, app: &str, release: &str) -> PathBuf {
        self.releases(app).join(release)
    }

    /// Data that survives releases (uploads, SQLite files): `BERTH_SHARED`.
    pub fn shared(&self, app: &str) -> PathBuf {
        self.root.join("apps").join(app).join("shared")
    }

    /// Create the directory and its parts, private (0700) whether or not they existed, and
    /// clear what interrupted uploads left in `tmp/`.
    pub fn prepare(&self) -> Result<()> {
        private_dir(&self.root)?;
        // It may have existed already: it holds keys and secrets, so it is private either way.
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("set mode 0700 on {}", self.root.display()))?;
        for sub in ["apps", "logs", "tmp", "certs"] {
            private_dir(&self.root.join(sub))?;
        }
        if let Ok(entries) = std::fs::read_dir(self.tmp()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
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
