//! Backups: PostgreSQL, SQLite and directories, compressed, encrypted, checksummed and stored
//! in a local directory or S3-compatible storage; restores and restore drills; retention and
//! schedules. This crate knows nothing of the daemon, routes or the proxy: the daemon builds a
//! [`Job`] from berth.toml and calls [`backup`], [`drill`], [`check`] + [`restore`].
//!
//! Invariants:
//! - a backup is ok only after every stage succeeded (the dump tool's exit status included),
//!   the object was read back with the sha256 it was written with, and the manifest was
//!   written, last; a failed backup removes its object and leaves no manifest;
//! - nothing holds a whole backup: bytes stream through zstd, age and sha256 into a multipart
//!   upload with bounded buffers (a SQLite source is first copied, as SQLite snapshots are
//!   files);
//! - a restore refuses an object whose sha256, size or key does not match before it touches
//!   anything ([`check`]), and replaces data only with something checked: PostgreSQL in one
//!   transaction, files and directories staged beside the target and renamed in;
//! - retention deletes only what a policy does not keep, and always keeps the newest backups.

mod catalog;
mod dir;
mod failure;
mod keys;
mod manifest;
mod pg;
mod restore;
pub mod retention;
mod run;
pub mod schedule;
mod seal;
mod sqlite;
mod storage;

pub use catalog::{delete, list, sweep};
pub use failure::{Failure, Stage};
pub use keys::{KEY_FILE, Keys, RECIPIENT_FILE, import as import_identity};
pub use manifest::{Durations, Manifest, Receipt};
pub use pg::{Postgres, Tools};
pub use restore::{check, drill, restore};
pub use run::{Job, Progress, Source, backup, new_id};
pub use storage::{Location, S3Settings, Storage};
