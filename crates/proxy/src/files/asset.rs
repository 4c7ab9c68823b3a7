//! A file as the cache holds it: its representations (the file itself, its precompressed
//! siblings, the encodings made once from it), each with the headers that describe it, and the
//! bytes of those small enough to keep in memory under the proxy's memory budget.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;
use tokio::sync::OnceCell;

use super::names::Kind;
use crate::compress::{self, Encoding};

/// Files up to this size are served from memory (while the budget lasts); larger ones are
/// streamed from disk.
pub(crate) const MEMORY_FILE_MAX: u64 = 256 * 1024;

/// Compressible files up to this size are compressed once, into memory, for clients that
/// accept an encoding the file has no precompressed sibling for; larger ones are compressed
/// on the fly, per request.
pub(crate) const COMPRESS_ONCE_MAX: u64 = 8 * 1024 * 1024;

/// Bytes of file contents the proxy keeps in memory, across every static root.
pub(crate) struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Reserve `bytes`, released when the [`Charge`] drops; `None` when they do not fit.
    pub fn take(self: &Arc<Self>, bytes: u64) -> Option<Charge> {
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()?;
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }
}

/// Bytes held against the [`Budget`] until dropped.
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Relaxed);
    }
}

/// Where a representation's bytes are.
pub(crate) enum Data {
    Memory {
        bytes: Bytes,
        /// Held for as long as the bytes are.
        _charge: Charge,
    },
    /// The canonical path, inside the root; opened per request.
    Disk(PathBuf),
}

/// One representation of a file: its bytes and the headers that describe them.
pub(crate) struct Variant {
    pub encoding: Option<Encoding>,
    pub len: u64,
    pub mtime: Option<SystemTime>,
    /// Strong: the bytes of a variant never change while it is cached.
    pub etag: HeaderValue,
    pub last_modified: Option<HeaderValue>,
    pub content_length: HeaderValue,
    pub data: Data,
}

impl Variant {
    /// `tag` is the (length, modification time) the ETag is made of: the variant's own for a
    /// file on disk, the original file's for an encoding made from it.
    pub fn new(
        encoding: Option<Encoding>,
        len: u64,
        mtime: Option<SystemTime>,
        tag: (u64, Option<SystemTime>),
        data: Data,
    ) -> Variant {
        Variant {
            encoding,
            len,
            mtime,
            etag: etag(tag.0, tag.1, encoding, false),
            last_modified: mtime
                .and_then(|t| HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok()),
            content_length: HeaderValue::from(len),
            data,
        }
    }
}

/// A validator from size and modification time (nanoseconds), distinct per encoding.
pub(crate) fn etag(
    len: u64,
    mtime: Option<SystemTime>,
    encoding: Option<Encoding>,
    weak: bool,
) -> HeaderValue {
    let nanos = mtime
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let suffix = encoding.map_or(String::new(), |e| format!("-{}", e.as_str()));
    let weak = if weak { "W/" } else { "" };
    HeaderValue::from_str(&format!("{weak}\"{len:x}-{nanos:x}{suffix}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// A file of a static root, with everything needed to answer for it.
pub(crate) struct Asset {
    pub content_type: HeaderValue,
    pub kind: Kind,
    pub compressible: bool,
    pub identity: Variant,
    /// Precompressed siblings on disk (`app.js.br`, `app.js.gz`), by [`slot`].
    siblings: [Option<Variant>; 2],
    /// Encodings made from `identity` the first time a client asked for them, by [`slot`];
    /// `None` inside when the file is too large or the memory budget is spent.
    made: [OnceCell<Option<Variant>>; 2],
    budget: Arc<Budget>,
}

fn slot(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Br => 0,
        Encoding::Gzip => 1,
    }
}

impl Asset {
    pub fn new(
        content_type: &str,
        kind: Kind,
        identity: Variant,
        br: Option<Variant>,
        gzip: Option<Variant>,
        budget: Arc<Budget>,
    ) -> Asset {
        Asset {
            content_type: HeaderValue::from_str(content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            kind,
            compressible: compress::is_compressible(content_type),
            identity,
            siblings: [br, gzip],
            made: [OnceCell::new(), OnceCell::new()],
            budget,
        }
    }

    pub fn sibling(&self, encoding: Encoding) -> Option<&Variant> {
        self.siblings[slot(encoding)].as_ref()
    }

    /// `encoding` of the file, made once (on the blocking pool) and kept in memory; `None`
    /// when the file is larger than [`COMPRESS_ONCE_MAX`], cannot be read, or the result does
    /// not fit the memory budget.
    pub async fn made(&self, encoding: Encoding) -> Option<&Variant> {
        let cell = &self.made[slot(encoding)];
        cell.get_or_init(|| self.make(encoding)).await.as_ref()
    }

    async fn make(&self, encoding: Encoding) -> Option<Variant> {
        let identity = &self.identity;
        if identity.len > COMPRESS_ONCE_MAX {
            return None;
        }
        let source = match &identity.data {
            Data::Memory { bytes, .. } => Source::Memory(bytes.clone()),
            Data::Disk(path) => Source::Disk(path.clone()),
        };
        let encoded = tokio::task::spawn_blocking(move || {
            let data = match source {
                Source::Memory(bytes) => bytes,
                Source::Disk(path) => Bytes::from(std::fs::read(path).ok()?),
            };
            compress::encode_all(encoding, &data).ok()
        })
        .await
        .ok()??;
        let len = encoded.len() as u64;
        let charge = self.budget.take(len)?;
        let tag = (identity.len, identity.mtime);
        let data = Data::Memory {
            bytes: Bytes::from(encoded),
            _charge: charge,
        };
        Some(Variant::new(Some(encoding), len, identity.mtime, tag, data))
    }
}

enum Source {
    Memory(Bytes),
    Disk(PathBuf),
}
