//! The manifest: what a backup is, written next to its object and only once the object has
//! been read back and its sha256 matched. An object without a manifest is not a backup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest format's version.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `20261202T020000Z-3f9a`: UTC start time, then 4 random hex digits; sorts by time.
    pub id: String,
    pub app: String,
    /// The `[backups.NAME]` it was made for.
    pub name: String,
    /// `postgres`, `sqlite` or `dir`.
    pub kind: String,
    /// What was backed up, without credentials: `127.0.0.1:5432/shop`, `data/app.db`.
    pub source: String,
    /// The object's key in the storage, relative to the target.
    pub object: String,
    /// Unix seconds.
    pub started_at: i64,
    pub finished_at: i64,
    /// Bytes read from the source, and bytes stored (compressed and encrypted).
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    /// Of the stored object; checked on read-back, before a restore and in drills.
    pub sha256: String,
    /// Row counts per table (`schema.table` for PostgreSQL), taken in the dump's snapshot.
    #[serde(default)]
    pub tables: BTreeMap<String, u64>,
    /// Directories: the number of files.
    #[serde(default)]
    pub files: Option<u64>,
    /// PostgreSQL's `server_version`, SQLite's library version.
    #[serde(default)]
    pub server_version: Option<String>,
    /// How long each stage took, in milliseconds.
    pub durations_ms: Durations,
    pub berth_version: String,
    /// The age recipient it was encrypted to: which key opens it.
    pub recipient: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    /// Snapshot, dump, compression, encryption and upload (they run as one stream).
    pub dump: u64,
    /// Reading the object back and checking its sha256.
    pub verify: u64,
}

impl Manifest {
    /// The manifest's key for the backup `id` of `name`.
    pub fn key(name: &str, id: &str) -> String {
        format!("{name}/{id}.json")
    }

    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

/// A restore drill's receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// Unix seconds when the drill ended.
    pub at: i64,
    pub duration_ms: u64,
    pub tables: u64,
    pub rows: u64,
    pub ok: bool,
    /// What did not match, or what failed.
    pub problem: Option<String>,
}
