//! Releases as files: packing an app directory into a source archive on the client, and
//! unpacking it into an immutable release tree on the server.
//!
//! This crate does no networking and knows nothing about processes; the daemon moves the
//! archive and decides what to do with the tree.

mod archive;

pub use archive::{
    PackError, Packed, UnpackError, digest, escaping_links, link_unchanged, pack, shipped, unpack,
};

/// Name of the per-app ignore file, read like `.gitignore` (which is honoured too).
pub const IGNORE_FILE: &str = ".berthignore";
