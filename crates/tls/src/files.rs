//! Certificates from operator-given PEM files, reloaded when they change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;

use crate::error::Error;
use crate::parse::certified_key_from_pem;

/// A certificate/key file pair and the modification times last loaded.
#[derive(Debug)]
pub(crate) struct FilePair {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    loaded: Option<(SystemTime, SystemTime)>,
}

impl FilePair {
    pub(crate) fn new(cert: PathBuf, key: PathBuf) -> Self {
        FilePair {
            cert,
            key,
            loaded: None,
        }
    }

    /// Loads the pair when either file's mtime differs from the last load (or on the first
    /// call). `Ok(None)`: unchanged. On error nothing is recorded, so the next call tries
    /// again, and the caller keeps serving what it had.
    pub(crate) fn reload_if_changed(&mut self) -> Result<Option<Arc<CertifiedKey>>, Error> {
        let mtimes = (mtime(&self.cert)?, mtime(&self.key)?);
        if self.loaded == Some(mtimes) {
            return Ok(None);
        }
        let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io("read", p, e));
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        let what = format!("{} + {}", self.cert.display(), self.key.display());
        let certified = certified_key_from_pem(&what, &cert, &key)?;
        self.loaded = Some(mtimes);
        Ok(Some(certified))
    }
}

fn mtime(path: &Path) -> Result<SystemTime, Error> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io("read", path, e))
}
