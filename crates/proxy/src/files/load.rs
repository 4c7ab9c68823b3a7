//! What a request path names under a root, found on disk. Blocking: runs on tokio's blocking
//! pool, once per path and root (the cache keeps the answer).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::asset::{Asset, Budget, Data, MEMORY_FILE_MAX, Variant};
use super::names::{Kind, content_type};
use super::path::RequestPath;
use crate::compress::{self, Encoding};

/// What a path names.
#[derive(Clone)]
pub(crate) enum Found {
    /// A file, or the `index.html` of a directory asked for with a trailing slash.
    File(Arc<Asset>),
    /// A directory asked for without its trailing slash.
    Redirect,
    Missing,
}

/// Looks `path` up under `root` (canonical). Every file it opens is, with every symlink
/// resolved, still under `root`, and is a regular file (a FIFO or device is never read).
pub(crate) fn find(root: &Path, path: &RequestPath<'_>, budget: &Arc<Budget>) -> Found {
    let candidate = path.segments().fold(root.to_path_buf(), |p, s| p.join(s));
    let Some(opened) = open_inside(root, &candidate) else {
        return Found::Missing;
    };
    if opened.meta.is_file() {
        // `/app.js/` names a directory that does not exist.
        if path.is_dir_form() {
            return Found::Missing;
        }
        let name = path.last().unwrap_or_default();
        return Found::File(Arc::new(load(root, opened, name, budget)));
    }
    if !path.is_dir_form() {
        return Found::Redirect;
    }
    match open_inside(root, &opened.real.join("index.html")) {
        Some(index) if index.meta.is_file() => {
            Found::File(Arc::new(load(root, index, "index.html", budget)))
        }
        _ => Found::Missing,
    }
}

/// An open file or directory known to lie inside the root.
struct Opened {
    real: PathBuf,
    file: File,
    meta: Metadata,
}

fn open_inside(root: &Path, candidate: &Path) -> Option<Opened> {
    let real = std::fs::canonicalize(candidate).ok()?;
    if !real.starts_with(root) {
        tracing::debug!("static path resolves outside the root; refused");
        return None;
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused after fstat.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&real)
        .ok()?;
    let meta = file.metadata().ok()?;
    (meta.is_file() || meta.is_dir()).then_some(Opened { real, file, meta })
}

/// `name` is what the client asked for (it decides Content-Type and caching), which may differ
/// from the file's real name when that is a symlink or an index.
fn load(root: &Path, opened: Opened, name: &str, budget: &Arc<Budget>) -> Asset {
    let content_type = content_type(name);
    let kind = Kind::of(name, &content_type);
    let siblings = compress::is_compressible(&content_type).then(|| {
        let sibling = |encoding: Encoding| {
            let mut path = opened.real.clone().into_os_string();
            path.push(encoding.file_suffix());
            let found = open_inside(root, Path::new(&path)).filter(|s| s.meta.is_file())?;
            Some(variant(found, Some(encoding), budget))
        };
        (sibling(Encoding::Br), sibling(Encoding::Gzip))
    });
    let (br, gzip) = siblings.unwrap_or_default();
    let identity = variant(opened, None, budget);
    Asset::new(&content_type, kind, identity, br, gzip, budget.clone())
}

/// A file on disk as a representation: in memory when it is small and the budget allows.
fn variant(opened: Opened, encoding: Option<Encoding>, budget: &Arc<Budget>) -> Variant {
    let len = opened.meta.len();
    let mtime = opened.meta.modified().ok();
    let in_memory = (len <= MEMORY_FILE_MAX)
        .then(|| budget.take(len))
        .flatten()
        .and_then(|charge| {
            let mut buf = Vec::with_capacity(usize::try_from(len).ok()?);
            // One more byte than expected: a file that grew is not taken for the one stat'ed.
            let read = (&opened.file).take(len + 1).read_to_end(&mut buf).ok()?;
            (read as u64 == len).then(|| Data::Memory {
                bytes: Bytes::from(buf),
                _charge: charge,
            })
        });
    let data = in_memory.unwrap_or(Data::Disk(opened.real));
    Variant::new(encoding, len, mtime, (len, mtime), data)
}
