//! What the backup tests share: a scratch directory with the backup key, jobs, a backup with
//! no progress shown, random bytes, and the files left under a directory.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use backup::{Failure, Job, Keys, Location, Manifest, Source, Storage, Tools};

/// A temporary directory with `work/` (the jobs' scratch space), the given subdirectories,
/// and the backup key.
pub struct Scratch {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub keys: Keys,
}

impl Scratch {
    pub fn new(dirs: &[&str]) -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in std::iter::once(&"work").chain(dirs) {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let keys = Keys::load_or_create(&root).unwrap();
        Scratch {
            _tmp: tmp,
            root,
            keys,
        }
    }

    /// A job of app `shop` backing up `source` to `location`.
    pub fn job_to(&self, name: &str, source: Source, location: Location, tools: Tools) -> Job {
        Job {
            app: "shop".into(),
            name: name.into(),
            source,
            storage: Storage::open(&location).unwrap(),
            work_dir: self.root.join("work"),
            tools,
        }
    }

    /// A backup of `job` now, with a new id and no progress shown.
    pub async fn backup(&self, job: &Job) -> Result<Manifest, Failure> {
        let id = backup::new_id(SystemTime::now());
        backup::backup(job, &id, self.keys.recipient(), no_progress()).await
    }
}

pub fn no_progress() -> backup::Progress {
    Arc::new(|_| {})
}

/// `len` random (incompressible) bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// Every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out.sort();
    out
}
