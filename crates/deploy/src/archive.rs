//! Source archives: a zstd-compressed tar of the app directory.
//!
//! Packing honours `.gitignore` (with or without a git repository), `.git/info/exclude`, and
//! `.berthignore`, and never includes `.git/`. Entries are sorted so the same tree gives the
//! same digest. Unpacking refuses entries that would land outside the destination.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::IGNORE_FILE;

/// A packed app directory, ready to send.
pub struct Packed {
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`, hex.
    pub digest: String,
    pub files: usize,
}

/// Why a directory cannot be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Symlinks that would point outside the release tree once deployed: all of them.
    #[error("{} symlink{} point outside the app directory: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|(l, t)| format!("{} -> {}", l.display(), t.display())).collect::<Vec<_>>().join(", "))]
    LinksEscape(Vec<(PathBuf, PathBuf)>),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Pack `dir` into a compressed tar. Refused, naming every one, when symlinks point outside
/// the directory (the daemon would refuse them).
pub fn pack(dir: &Path) -> Result<Packed, PackError> {
    let paths = shipped(dir)?;
    let escaping = escaping_links(dir, &paths);
    if !escaping.is_empty() {
        return Err(PackError::LinksEscape(escaping));
    }
    let encoder = zstd::Encoder::new(Vec::new(), 3)?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    for rel in &paths {
        tar.append_path_with_name(dir.join(rel), rel)?;
    }
    let bytes = tar.into_inner()?.finish()?;
    Ok(Packed {
        digest: digest(&bytes),
        bytes,
        files: paths.len(),
    })
}

/// What a deploy of `dir` ships: every file and symlink not ignored, relative, sorted.
pub fn shipped(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .parents(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walk {
        let entry = entry.map_err(io::Error::other)?;
        let Some(kind) = entry.file_type() else {
            continue;
        };
        if entry.depth() == 0 || kind.is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).map_err(io::Error::other)?;
        paths.push(rel.to_path_buf());
    }
    paths.sort();
    Ok(paths)
}

/// The symlinks among `paths` (relative to `dir`) whose target is absolute or climbs out of
/// `dir`, with their targets: what [`unpack`] would refuse.
pub fn escaping_links(dir: &Path, paths: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    paths
        .iter()
        .filter_map(|rel| {
            let target = std::fs::read_link(dir.join(rel)).ok()?;
            let depth = checked_depth(rel)?;
            (!link_stays_inside(&target, depth)).then(|| (rel.clone(), target))
        })
        .collect()
}

/// Replace each regular file of `tree` that is byte for byte (and mode for mode) the file at
/// the same path in `previous` by a hard link to it: a new release of a large app costs only
/// what changed. Both trees must be immutable release trees on one filesystem. Returns how
/// many files were linked; a file that cannot be compared or linked is simply kept.
pub fn link_unchanged(tree: &Path, previous: &Path) -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let mut linked = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(tree.join(&rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(rel);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let (new, old) = (tree.join(&rel), previous.join(&rel));
            let (Ok(a), Ok(b)) = (
                std::fs::symlink_metadata(&new),
                std::fs::symlink_metadata(&old),
            ) else {
                continue;
            };
            if !b.is_file() || a.len() != b.len() || a.mode() != b.mode() || a.ino() == b.ino() {
                continue;
            }
            if same_bytes(&new, &old).unwrap_or(false) {
                // Link beside, then rename over: the path is never missing.
                let staged = new.with_file_name(format!(
                    ".{}.berth-link",
                    new.file_name().unwrap_or_default().to_string_lossy()
                ));
                if std::fs::hard_link(&old, &staged).is_ok() {
                    match std::fs::rename(&staged, &new) {
                        Ok(()) => linked += 1,
                        Err(_) => {
                            let _ = std::fs::remove_file(&staged);
                        }
                    }
                }
            }
        }
    }
    Ok(linked)
}

fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut a, &mut x)?;
        let m = read_full(&mut b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fill `buf` as far as the file allows; 0 at the end.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The digest that names a source archive: sha256, hex.
pub fn digest(archive: &[u8]) -> String {
    hex::encode(Sha256::digest(archive))
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("archive entry `{0}` would land outside the release directory")]
    Escape(String),
    #[error("archive entry `{0}` is a link pointing outside the release directory")]
    LinkEscape(String),
    #[error("read source archive")]
    Io(#[from] io::Error),
}

/// Unpack a source archive into `dest` (which must exist and be empty).
///
/// Regular files, directories and symlinks are unpacked; a symlink whose target is absolute or
/// climbs above the release root is refused, as is any entry with `..` or an absolute path.
/// Returns the number of entries unpacked.
pub fn unpack(archive: impl Read, dest: &Path) -> Result<usize, UnpackError> {
    let decoder = zstd::Decoder::new(archive)?;
    let mut tar = tar::Archive::new(decoder);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(false);
    let mut count = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let shown = path.display().to_string();
        let depth = checked_depth(&path).ok_or_else(|| UnpackError::Escape(shown.clone()))?;
        if let Some(target) = entry.link_name()?
            && !link_stays_inside(&target, depth)
        {
            return Err(UnpackError::LinkEscape(shown));
        }
        if !entry.unpack_in(dest)? {
            return Err(UnpackError::Escape(shown));
        }
        count += 1;
    }
    Ok(count)
}

/// Depth of the directory holding `path`, or None when the path is absolute or has `..`.
fn checked_depth(path: &Path) -> Option<usize> {
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return None,
        }
    }
    depth.checked_sub(1)
}

/// A relative link target from an entry `depth` directories deep must not climb above the root.
fn link_stays_inside(target: &Path, depth: usize) -> bool {
    let mut level = depth as isize;
    for c in target.components() {
        match c {
            Component::Normal(_) => level += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Build a tar.zst from (path, contents) pairs exactly as given; for tests of hostile archives.
#[cfg(test)]
fn raw_archive(entries: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
    use std::io::Write;
    let mut out = Vec::new();
    {
        let mut enc = zstd::Encoder::new(&mut out, 1)?;
        for (name, data) in entries {
            let mut header = [0u8; 512];
            let name = name.as_bytes();
            header[..name.len()].copy_from_slice(name);
            header[100..108].copy_from_slice(b"0000644\0");
            let size = format!("{:011o}\0", data.len());
            header[124..136].copy_from_slice(size.as_bytes());
            header[136..148].copy_from_slice(b"00000000000\0");
            header[156] = b'0';
            header[148..156].copy_from_slice(b"        ");
            let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
            header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            enc.write_all(&header)?;
            enc.write_all(data)?;
            enc.write_all(&vec![0u8; (512 - data.len() % 512) % 512])?;
        }
        enc.write_all(&[0u8; 1024])?;
        enc.finish()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        dir
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in ignore::WalkBuilder::new(dir)
            .hidden(false)
            .ignore(false)
            .git_ignore(false)
            .build()
        {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn pack_honours_gitignore_and_berthignore_and_skips_git() {
        let src = tree(&[
            ("berth.toml", "[app]"),
            (".gitignore", "target/\n*.log\n"),
            (".berthignore", "secret.env\n"),
            ("src/main.rs", "fn main() {}"),
            ("target/debug/big", "x"),
            ("debug.log", "x"),
            ("secret.env", "X=1"),
            (".git/HEAD", "ref"),
            (
                "static/.well-known/a",
                "kept: hidden files are not ignored by default",
            ),
        ]);
        let packed = pack(src.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack(&packed.bytes[..], out.path()).unwrap();
        assert_eq!(
            listing(out.path()),
            [
                ".berthignore",
                ".gitignore",
                "berth.toml",
                "src/main.rs",
                "static/.well-known/a"
            ]
        );
        assert_eq!(packed.files, 5);
    }

    #[test]
    fn same_tree_same_digest() {
        let a = tree(&[("berth.toml", "x"), ("a/b", "y")]);
        assert_eq!(
            pack(a.path()).unwrap().digest,
            pack(a.path()).unwrap().digest
        );
    }

    #[test]
    fn pack_names_every_link_out_of_the_tree() {
        let dir = tree(&[("a.txt", "a")]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../x", dir.path().join("up")).unwrap();
        std::os::unix::fs::symlink("a.txt", dir.path().join("fine")).unwrap();
        let err = pack(dir.path()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "2 symlinks point outside the app directory: abs -> /etc/passwd, up -> ../../x"
        );
    }

    #[test]
    fn unchanged_files_are_hard_links_to_the_previous_release() {
        use std::os::unix::fs::MetadataExt;
        let old = tree(&[
            ("same.txt", "same"),
            ("changed.txt", "v1"),
            ("sub/deep.txt", "d"),
        ]);
        let new = tree(&[
            ("same.txt", "same"),
            ("changed.txt", "v2"),
            ("sub/deep.txt", "d"),
            ("added.txt", "+"),
        ]);
        assert_eq!(link_unchanged(new.path(), old.path()).unwrap(), 2);
        let ino =
            |d: &tempfile::TempDir, f: &str| std::fs::metadata(d.path().join(f)).unwrap().ino();
        assert_eq!(ino(&new, "same.txt"), ino(&old, "same.txt"));
        assert_eq!(ino(&new, "sub/deep.txt"), ino(&old, "sub/deep.txt"));
        assert_ne!(ino(&new, "changed.txt"), ino(&old, "changed.txt"));
        assert_eq!(
            std::fs::read_to_string(new.path().join("changed.txt")).unwrap(),
            "v2"
        );
        assert_eq!(listing(new.path()).len(), 4, "no staging file left");
    }

    #[test]
    fn unpack_refuses_escapes() {
        for name in ["../evil", "a/../../evil", "/etc/evil"] {
            let bytes = raw_archive(&[(name, b"x")]).unwrap();
            let out = tempfile::tempdir().unwrap();
            let err = unpack(&bytes[..], out.path()).unwrap_err();
            assert!(matches!(err, UnpackError::Escape(_)), "{name}: {err}");
        }
    }

    #[test]
    fn unpack_refuses_symlinks_out_of_the_tree() {
        // `pack` refuses such a link, so the archive is made by hand, as a hostile client would.
        let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, "pw", "../../etc/passwd")
            .unwrap();
        let bytes = tar.into_inner().unwrap().finish().unwrap();
        let out = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(&bytes[..], out.path()),
            Err(UnpackError::LinkEscape(_))
        ));

        let ok = tempfile::tempdir().unwrap();
        fs::create_dir(ok.path().join("d")).unwrap();
        fs::write(ok.path().join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("d/f", ok.path().join("inside")).unwrap();
        let packed = pack(ok.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack(&packed.bytes[..], out.path()).unwrap();
        assert_eq!(fs::read_to_string(out.path().join("inside")).unwrap(), "x");
    }
}
